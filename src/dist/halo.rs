//! Halo exchange: filling ghost cells from their owners (forward) and adding ghost contributions back to their
//! owners (reverse), straight between the arrays' storage (strided datatypes, no packing).
//!
//! Every neighbour (face neighbours for [`Stencil::Star`], also edge and corner neighbours for [`Stencil::Box`])
//! exchanges one message in each direction, all started at once, so the exchange takes one round and the
//! split-phase form can overlap all of it with computation. Direction `δ` (one of -1, 0, 1 per dimension) is
//! the neighbour at grid coordinates `c + δ`; the message travelling along `δ` carries tag `index(δ)`, so the
//! messages to one rank (a periodic dimension of one or two processes) never mix.

use std::ops::AddAssign;

use ndarray::{ArrayView, ArrayViewMut, Dimension, Slice, Zip};

use super::darray::{DArray, Stencil};
use crate::buffer::Data;
use crate::error::Result;
use crate::p2p::Peer;
use crate::request::{Request, scope, test_all, wait_all};

/// The tag of the message travelling along `dir`.
fn tag_of(dir: &[i8]) -> i32 {
    dir.iter().fold(0i32, |t, &s| t * 3 + (s + 1) as i32)
}

/// Whether the exchange serves direction `dir` (never the owned piece).
fn serves(dir: &[i8], stencil: Stencil, ghost: &[usize]) -> bool {
    let moving = dir.iter().filter(|&&s| s != 0).count();
    let wide = dir.iter().zip(ghost).all(|(&s, &w)| s == 0 || w > 0);
    moving > 0 && wide && (stencil == Stencil::Box || moving == 1)
}

/// Along one dimension of the owned block (`n` long, ghost width `w`), the cells next to the neighbour in
/// direction `s`: the first `w`, the last `w`, or all.
fn side(n: usize, w: usize, s: i8) -> Slice {
    match s {
        -1 => Slice::from(0..w),
        1 => Slice::from(n - w..n),
        _ => Slice::from(0..n),
    }
}

/// The region of the owned block (in its own coordinates) next to the neighbour along `dir`.
fn boundary<'a, T, D: Dimension>(owned: &ArrayView<'a, T, D>, dir: &[i8], ghost: &[usize]) -> ArrayView<'a, T, D> {
    let mut v = owned.clone();
    let shape = v.shape().to_vec();
    v.slice_each_axis_inplace(|ax| side(shape[ax.axis.index()], ghost[ax.axis.index()], dir[ax.axis.index()]));
    v
}

/// [`boundary`], writable.
fn boundary_mut<'a, T, D: Dimension>(
    mut owned: ArrayViewMut<'a, T, D>,
    dir: &[i8],
    ghost: &[usize],
) -> ArrayViewMut<'a, T, D> {
    let shape = owned.shape().to_vec();
    owned.slice_each_axis_inplace(|ax| side(shape[ax.axis.index()], ghost[ax.axis.index()], dir[ax.axis.index()]));
    owned
}

/// Pending halo messages handed to the work that overlaps them: [`HaloProgress::test`] lets the messages advance
/// (Open MPI moves data only inside MPI calls) and tells whether all have arrived.
pub struct HaloProgress<'a, 's> {
    reqs: &'a mut Vec<Request<'s>>,
}

impl HaloProgress<'_, '_> {
    /// Advances the exchange; `true` once every message has arrived.
    ///
    /// # Errors
    /// A failed message's error.
    pub fn test(&mut self) -> Result<bool> {
        test_all(self.reqs)
    }
}

impl<'u, T: Data, D: Dimension> DArray<'u, T, D> {
    /// The neighbour along `dir`, or no peer past a non-periodic edge.
    fn neighbour(&self, dir: &[i8]) -> Peer {
        let c: Vec<isize> = self
            .grid
            .coords()
            .iter()
            .zip(dir)
            .map(|(&c, &s)| c as isize + s as isize)
            .collect();
        self.grid.rank_at(&c)
    }

    /// Bytes this rank sends to other ranks in one halo exchange (messages to itself, the wrap of a periodic
    /// dimension with one process, are not counted).
    ///
    /// ```no_run
    /// # let universe = spmd::init()?; let world = universe.world();
    /// # use spmd::dist::{DArray, Ghost};
    /// let grid = world.grid(&[0, 0], &[false, false])?;
    /// let u = DArray::<f64, _>::zeros(&grid, [512, 512], Ghost::star(1))?;
    /// let total = world.all_reduce_scalar(u.halo_bytes() as u64, spmd::Op::Sum)?;
    /// # Ok::<(), spmd::Error>(())
    /// ```
    pub fn halo_bytes(&self) -> usize {
        let nd = self.shape.len();
        let me = self.grid.rank();
        all_dirs(nd)
            .into_iter()
            .filter(|dir| serves(dir, self.stencil, &self.ghost))
            .filter(|dir| matches!(self.neighbour(dir), Peer(Some(r)) if r != me))
            .map(|dir| {
                (0..nd)
                    .map(|d| if dir[d] == 0 { self.owned[d] } else { self.ghost[d] })
                    .product::<usize>()
                    * std::mem::size_of::<T>()
            })
            .sum()
    }

    /// Fills every ghost cell with the value its owner holds (collective over the grid): the cell at the same
    /// global index, wrapped around periodic dimensions. Ghost cells beyond a non-periodic edge are left as they
    /// are (they hold boundary values).
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// use spmd::dist::{DArray, Ghost};
    /// let grid = world.grid(&[0, 0], &[true, true])?;
    /// let mut a = DArray::from_fn(&grid, [64, 64], Ghost::boxed(1), |(i, j)| (i * 64 + j) as f64)?;
    /// a.exchange_halo()?;
    /// let l = a.local();
    /// // The upper-left ghost corner holds the element up and to the left, wrapped.
    /// let [i0, j0] = [a.owned_start()[0], a.owned_start()[1]];
    /// assert_eq!(l[[0, 0]], (((i0 + 63) % 64) * 64 + (j0 + 63) % 64) as f64);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`crate::ErrorKind::Mpi`] if MPI fails; a message of another size than expected (ranks that built the
    /// array differently) is a [`crate::ErrorKind::Truncated`] error.
    pub fn exchange_halo(&mut self) -> Result<()> {
        self.exchange_halo_overlap(|_, _| ())
    }

    /// Split-phase halo exchange: starts every message, runs `work` while they travel, then waits for them.
    /// `work` gets the owned block (read-only: the exchange reads its boundary and writes the ghost cells) and
    /// a [`HaloProgress`] to call now and then, so that the messages advance during long work.
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// use spmd::dist::{DArray, Ghost};
    /// use ndarray::s;
    /// let grid = world.grid(&[0, 0], &[false, false])?;
    /// let mut u = DArray::from_fn(&grid, [256, 256], Ghost::star(1), |(i, j)| (i + j) as f64)?;
    /// let mut interior_sum = 0.0;
    /// u.exchange_halo_overlap(|owned, progress| {
    ///     // Work that needs no ghost cells: rows 1..n-1 of the owned block.
    ///     for row in owned.slice(s![1..owned.nrows().saturating_sub(1), ..]).rows() {
    ///         interior_sum += row.sum();
    ///         let _ = progress.test();
    ///     }
    /// })?;
    /// // Now the ghost cells are filled: finish the boundary rows.
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`DArray::exchange_halo`].
    pub fn exchange_halo_overlap<R>(
        &mut self,
        work: impl FnOnce(ArrayView<'_, T, D>, &mut HaloProgress<'_, '_>) -> R,
    ) -> Result<R> {
        let (stencil, ghost) = (self.stencil, self.ghost.clone());
        let dirs = all_dirs(self.shape.len());
        let peers: Vec<Peer> = dirs.iter().map(|d| self.neighbour(d)).collect();
        let comm = self.grid.lib().clone();
        let mut pieces = self.pieces();
        let owned_at = pieces
            .iter()
            .position(|(d, _)| d.iter().all(|&s| s == 0))
            .expect("owned piece");
        let (_, owned_mut) = pieces.swap_remove(owned_at);
        let owned = owned_mut.view();
        // The views MPI reads are made here, outside the scope, so that they outlive it.
        let sends: Vec<(usize, ArrayView<'_, T, D>)> = dirs
            .iter()
            .enumerate()
            .filter(|(_, d)| serves(d, stencil, &ghost))
            .map(|(k, d)| (k, boundary(&owned, d, &ghost)))
            .collect();
        scope(|s| {
            let mut reqs = Vec::new();
            for (dir, ghost_piece) in pieces.iter_mut() {
                if !serves(dir, stencil, &ghost) {
                    continue;
                }
                let from = peers[dirs.iter().position(|d| d == dir).expect("direction")];
                let back: Vec<i8> = dir.iter().map(|&x| -x).collect();
                reqs.push(comm.irecv_buf_into(s, from, tag_of(&back), ghost_piece)?);
            }
            for (k, view) in &sends {
                reqs.push(comm.isend_buf(s, peers[*k], tag_of(&dirs[*k]), view)?);
            }
            let out = work(owned.clone(), &mut HaloProgress { reqs: &mut reqs });
            wait_all(reqs)?;
            Ok(out)
        })
    }

    /// The reverse exchange: adds the value of every ghost cell into the cell that owns it (PETSc's
    /// `DMLocalToGlobal` with `ADD_VALUES`), for scatter-add kernels that write contributions into neighbours'
    /// cells. Ghost cells beyond a non-periodic edge are ignored; ghost values stay as they are (set them to
    /// zero before accumulating again).
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// use spmd::dist::{DArray, Ghost};
    /// let grid = world.grid(&[0], &[true])?;
    /// let mut mass = DArray::<f64, _>::zeros(&grid, [100], Ghost::star(1))?;
    /// // Every owned cell deposits 0.5 on each neighbour, ghosts included.
    /// let n = mass.owned_shape()[0];
    /// for i in 1..=n {
    ///     mass.local_mut()[i - 1] += 0.5;
    ///     mass.local_mut()[i + 1] += 0.5;
    /// }
    /// mass.accumulate_halo()?;
    /// assert!(mass.owned().iter().all(|&m| m == 1.0));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`DArray::exchange_halo`].
    pub fn accumulate_halo(&mut self) -> Result<()>
    where
        T: AddAssign + Copy,
    {
        let (stencil, ghost, owned_shape) = (self.stencil, self.ghost.clone(), self.owned.clone());
        let dirs = all_dirs(self.shape.len());
        let peers: Vec<Peer> = dirs.iter().map(|d| self.neighbour(d)).collect();
        let comm = self.grid.lib().clone();
        let served: Vec<usize> = (0..dirs.len()).filter(|&k| serves(&dirs[k], stencil, &ghost)).collect();
        // One buffer per direction for what the neighbour there sends back.
        let mut incoming: Vec<Vec<T>> = served
            .iter()
            .map(|&k| {
                let n = (0..ghost.len())
                    .map(|d| if dirs[k][d] == 0 { owned_shape[d] } else { ghost[d] })
                    .product();
                vec![T::zeroed(); n]
            })
            .collect();
        let mut got = vec![false; served.len()];
        let mut pieces = self.pieces();
        scope(|s| -> Result<()> {
            let mut reqs = Vec::new();
            for (buf, &k) in incoming.iter_mut().zip(&served) {
                let back: Vec<i8> = dirs[k].iter().map(|&x| -x).collect();
                reqs.push(comm.irecv_buf_into(s, peers[k], tag_of(&back), &mut buf[..])?);
            }
            for (dir, piece) in pieces.iter() {
                if serves(dir, stencil, &ghost) {
                    let k = dirs.iter().position(|d| d == dir).expect("direction");
                    reqs.push(comm.isend_buf(s, peers[k], tag_of(dir), piece)?);
                }
            }
            wait_all(reqs)?;
            Ok(())
        })?;
        for (i, &k) in served.iter().enumerate() {
            got[i] = peers[k].0.is_some();
        }
        let owned_at = pieces
            .iter()
            .position(|(d, _)| d.iter().all(|&s| s == 0))
            .expect("owned piece");
        let (_, mut owned) = pieces.swap_remove(owned_at);
        for ((buf, &k), arrived) in incoming.iter().zip(&served).zip(&got) {
            if !arrived {
                continue;
            }
            let target = boundary_mut(owned.view_mut(), &dirs[k], &ghost);
            let src = ArrayView::from_shape(target.raw_dim(), &buf[..]).expect("buffer matches its region");
            Zip::from(target).and(&src).for_each(|t, &x| *t += x);
        }
        Ok(())
    }
}

/// Every direction of `nd` dimensions, in tag order.
fn all_dirs(nd: usize) -> Vec<Vec<i8>> {
    let mut out = vec![Vec::new()];
    for _ in 0..nd {
        out = out
            .into_iter()
            .flat_map(|d| {
                [-1i8, 0, 1].into_iter().map(move |s| {
                    let mut d = d.clone();
                    d.push(s);
                    d
                })
            })
            .collect();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_distinct_and_directions_complete() {
        for nd in 1..=4 {
            let dirs = all_dirs(nd);
            assert_eq!(dirs.len(), 3usize.pow(nd as u32));
            let mut tags: Vec<i32> = dirs.iter().map(|d| tag_of(d)).collect();
            tags.sort();
            tags.dedup();
            assert_eq!(tags.len(), dirs.len());
        }
    }

    #[test]
    fn star_serves_faces_and_box_everything_with_width() {
        let g = [1, 1];
        assert_eq!(all_dirs(2).iter().filter(|d| serves(d, Stencil::Star, &g)).count(), 4);
        assert_eq!(all_dirs(2).iter().filter(|d| serves(d, Stencil::Box, &g)).count(), 8);
        assert_eq!(
            all_dirs(2).iter().filter(|d| serves(d, Stencil::Box, &[1, 0])).count(),
            2
        );
        assert_eq!(
            all_dirs(3)
                .iter()
                .filter(|d| serves(d, Stencil::Box, &[2, 2, 2]))
                .count(),
            26
        );
    }
}
