//! Moving a distributed array between layouts: scatter from and gather to one rank, all-gather, redistribution
//! over another grid (slab and pencil transposes) and axis permutation. Every move is one `MPI_Alltoallw` whose
//! per-peer datatypes are subarrays of the arrays' storage: no packing, ghost layers skipped in place.

use std::ops::Range;

use ndarray::{Array, ArrayBase, Dimension, IntoDimension};

use super::Partition;
use super::darray::{DArray, Ghost, block_of, dim_from};
use crate::buffer::Data;
use crate::comm::Comm;
use crate::error::{ErrorKind, Result, fail};
use crate::sys::boxes::BoxSel;
use crate::sys::boxes::Side;
use crate::topo::Grid;

/// Per rank, the global block it holds on one side of a move (`None`: nothing).
type Blocks = Vec<Option<Vec<Range<usize>>>>;

/// The part of `a` inside `b`, or `None` if empty.
fn intersect(a: &[Range<usize>], b: &[Range<usize>]) -> Option<Vec<Range<usize>>> {
    let r: Vec<Range<usize>> = a
        .iter()
        .zip(b)
        .map(|(x, y)| x.start.max(y.start)..x.end.min(y.end))
        .collect();
    r.iter().all(|x| x.start < x.end).then_some(r)
}

/// A global box as a box of a storage whose element 0 sits at global index `origin` (+ ghost offset).
fn local_box(global: &[Range<usize>], first_owned: &[usize], ghost: &[usize]) -> BoxSel {
    BoxSel {
        start: (0..global.len())
            .map(|d| global[d].start - first_owned[d] + ghost[d])
            .collect(),
        len: global.iter().map(|r| r.len()).collect(),
    }
}

/// One side of a move: storage, its shape, where its owned block starts globally and its ghost widths, and the
/// global block every rank holds on this side (`None`: nothing).
pub(crate) struct Layout<'a, P> {
    pub(crate) data: P,
    pub(crate) shape: &'a [usize],
    pub(crate) first: &'a [usize],
    pub(crate) ghost: &'a [usize],
    pub(crate) blocks: &'a [Option<Vec<Range<usize>>>],
}

/// Moves every element that some rank holds on the source side to the ranks that hold it on the target side.
pub(crate) fn move_blocks<T: Data>(
    comm: &Comm<'_>,
    op: &str,
    src: Layout<'_, &[T]>,
    dst: Layout<'_, &mut [T]>,
) -> Result<()> {
    let (me, p) = (comm.rank(), comm.size());
    let none = || -> Vec<Option<BoxSel>> { vec![None; p] };
    let (mut sends, mut recvs) = (none(), none());
    for r in 0..p {
        if let (Some(a), Some(b)) = (&src.blocks[me], &dst.blocks[r])
            && let Some(i) = intersect(a, b)
        {
            sends[r] = Some(local_box(&i, src.first, src.ghost));
        }
        if let (Some(a), Some(b)) = (&src.blocks[r], &dst.blocks[me])
            && let Some(i) = intersect(a, b)
        {
            recvs[r] = Some(local_box(&i, dst.first, dst.ghost));
        }
    }
    let busy = crate::request::engine::busy();
    comm.inner.raw.exchange_boxes(
        op,
        Side {
            data: src.data,
            shape: src.shape,
            boxes: &sends,
        },
        Side {
            data: dst.data,
            shape: dst.shape,
            boxes: &recvs,
        },
        busy,
        &|req| crate::request::wait_raw(req, op),
    )
}

fn full(shape: &[usize]) -> Vec<Range<usize>> {
    shape.iter().map(|&n| 0..n).collect()
}

impl<'u, T: Data, D: Dimension> DArray<'u, T, D> {
    /// Every rank's block, as the source or target side of a move.
    fn all_blocks(&self) -> Vec<Option<Vec<Range<usize>>>> {
        self.blocks().into_iter().map(Some).collect()
    }

    /// Distributes `global`, given on rank `root` (`None` elsewhere), in blocks over `grid` (collective): each
    /// rank receives only its block, straight into its storage.
    ///
    /// ```no_run
    /// # let universe = spmd::init()?; let world = universe.world();
    /// use spmd::dist::{DArray, Ghost};
    /// let grid = world.grid(&[0, 0], &[false, false])?;
    /// let whole = (grid.rank() == 0).then(|| ndarray::Array2::from_shape_fn((30, 20), |(i, j)| (i * 20 + j) as f64));
    /// let a = DArray::scatter_from(&grid, 0, whole.as_ref(), Ghost::star(1))?;
    /// let back = a.gather_to(0)?; // Some(the same array) on rank 0
    /// # Ok::<(), spmd::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] on every rank if the root passes no array or `root` is not a rank; as
    /// [`DArray::zeros`] for the layout.
    pub fn scatter_from<S: ndarray::Data<Elem = T>>(
        grid: &Grid<'u>,
        root: usize,
        global: Option<&ArrayBase<S, D>>,
        ghost: Ghost,
    ) -> Result<Self> {
        let op = "scatter_from";
        if root >= grid.size() {
            return fail(
                ErrorKind::InvalidArgument,
                format!("{op}: root {root} of a grid of {} processes", grid.size()),
            );
        }
        let shape: Vec<usize> = grid.lib().broadcast_obj(root, global.map(|g| g.shape().to_vec()))?;
        let mut out = Self::zeros(grid, dim_from::<D>(&shape).into_dimension(), ghost)?;
        let (shape_src, blocks_src): (Vec<usize>, Blocks) = {
            let mut b = vec![None; grid.size()];
            b[root] = Some(full(&shape));
            (
                if grid.rank() == root {
                    shape.clone()
                } else {
                    vec![0; shape.len()]
                },
                b,
            )
        };
        let standard = global.map(|g| g.as_standard_layout());
        let src: &[T] = standard
            .as_ref()
            .map_or(&[], |g| g.as_slice().expect("standard layout"));
        let zeros = vec![0; shape.len()];
        let blocks_dst = out.all_blocks();
        let (first, g) = (out.start.clone(), out.ghost.clone());
        let storage: Vec<usize> = out.data.shape().to_vec();
        move_blocks(
            grid.lib(),
            op,
            Layout {
                data: src,
                shape: &shape_src,
                first: &zeros,
                ghost: &zeros,
                blocks: &blocks_src,
            },
            Layout {
                data: out.local_mut_slice(),
                shape: &storage,
                first: &first,
                ghost: &g,
                blocks: &blocks_dst,
            },
        )?;
        Ok(out)
    }

    /// Moves this array's blocks into `dst`'s storage (any layout of the same global array on the same
    /// processes).
    fn move_into(&self, op: &str, target: Target<'_, T>) -> Result<()> {
        let blocks_src = self.all_blocks();
        move_blocks(
            self.grid.lib(),
            op,
            Layout {
                data: self.local_slice(),
                shape: self.data.shape(),
                first: &self.start,
                ghost: &self.ghost,
                blocks: &blocks_src,
            },
            Layout {
                data: target.data,
                shape: target.shape,
                first: target.first,
                ghost: target.ghost,
                blocks: target.blocks,
            },
        )
    }

    /// Collects the whole array on rank `root` (collective): `Some(array)` there, `None` elsewhere. Each rank
    /// sends its owned block straight from its storage.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] if `root` is not a rank; [`ErrorKind::Mpi`] if MPI fails.
    pub fn gather_to(&self, root: usize) -> Result<Option<Array<T, D>>> {
        let op = "gather_to";
        let p = self.grid.size();
        if root >= p {
            return fail(
                ErrorKind::InvalidArgument,
                format!("{op}: root {root} of a grid of {p} processes"),
            );
        }
        let out = self.collect(op, |r| r == root)?;
        Ok((self.grid.rank() == root).then_some(out))
    }

    /// The whole array on every rank (collective).
    ///
    /// # Errors
    /// [`ErrorKind::Mpi`] if MPI fails.
    pub fn all_gather(&self) -> Result<Array<T, D>> {
        self.collect("all_gather", |_| true)
    }

    /// The array in row slabs: rank `r` gets the global rows `Partition::block(shape[0], p).range(r)` (all of
    /// the other dimensions) as one C-order buffer, i.e. one contiguous range of the array's bytes in C order.
    /// Returns the slab's global rows and its elements.
    pub(crate) fn row_slab(&self, op: &str) -> Result<(Range<usize>, Vec<T>)> {
        let p = self.grid.size();
        let rows = Partition::block(self.shape[0], p);
        let slab = |r: usize| -> Vec<Range<usize>> {
            let mut b = full(&self.shape);
            b[0] = rows.range(r).expect("contiguous partition");
            b
        };
        let mine = slab(self.grid.rank());
        let mut shape = self.shape.clone();
        shape[0] = mine[0].len();
        let mut out = vec![T::zeroed(); shape.iter().product()];
        let blocks: Blocks = (0..p).map(|r| Some(slab(r))).collect();
        let first: Vec<usize> = mine.iter().map(|r| r.start).collect();
        let zeros = vec![0; self.shape.len()];
        self.move_into(
            op,
            Target {
                data: &mut out,
                shape: &shape,
                first: &first,
                ghost: &zeros,
                blocks: &blocks,
            },
        )?;
        Ok((mine[0].clone(), out))
    }

    /// Copies the whole array to the ranks for which `wanted(rank)` holds; the others get an empty array.
    fn collect(&self, op: &str, wanted: impl Fn(usize) -> bool) -> Result<Array<T, D>> {
        let nd = self.shape.len();
        let shape = if wanted(self.grid.rank()) {
            self.shape.clone()
        } else {
            vec![0; nd]
        };
        let mut out = Array::from_elem(dim_from::<D>(&shape), T::zeroed());
        let blocks: Blocks = (0..self.grid.size())
            .map(|r| wanted(r).then(|| full(&self.shape)))
            .collect();
        let zeros = vec![0; nd];
        self.move_into(
            op,
            Target {
                data: out.as_slice_mut().expect("standard layout"),
                shape: &shape,
                first: &zeros,
                ghost: &zeros,
                blocks: &blocks,
            },
        )?;
        Ok(out)
    }

    /// The same global array distributed in blocks over `grid` instead (collective), e.g. from row slabs to
    /// column slabs for the second pass of a 2-D FFT. `grid` must have the same processes in the same order
    /// (made from the same communicator). There and back gives the original, bit for bit.
    ///
    /// ```no_run
    /// # let universe = spmd::init()?; let world = universe.world();
    /// use spmd::dist::{DArray, Ghost};
    /// let p = world.size();
    /// let rows = world.grid(&[p, 1], &[false, false])?;
    /// let cols = world.grid(&[1, p], &[false, false])?;
    /// let a = DArray::from_fn(&rows, [64, 48], Ghost::none(), |(i, j)| (i * 48 + j) as f64)?;
    /// let b = a.redistribute(&cols, Ghost::none())?; // each rank now holds whole columns
    /// assert_eq!(b.owned_shape()[0], 64);
    /// # Ok::<(), spmd::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] if `grid` has other processes or dimensions; as [`DArray::zeros`].
    pub fn redistribute(&self, grid: &Grid<'u>, ghost: Ghost) -> Result<Self> {
        let parts: Vec<Partition> = self
            .shape
            .iter()
            .zip(grid.dims())
            .map(|(&n, &p)| Partition::block(n, p))
            .collect();
        self.redistribute_parts(grid, parts, ghost)
    }

    /// [`DArray::redistribute`] with the target's partitions given.
    ///
    /// # Errors
    /// As [`DArray::redistribute`] and [`DArray::with_parts`].
    pub fn redistribute_parts(&self, grid: &Grid<'u>, parts: Vec<Partition>, ghost: Ghost) -> Result<Self> {
        let op = "redistribute";
        self.check_same_processes(op, grid)?;
        let lens: Vec<usize> = parts.iter().map(|p| p.len()).collect();
        if lens != self.shape {
            return fail(
                ErrorKind::InvalidArgument,
                format!(
                    "{op}: partitions of lengths {lens:?} for an array of shape {:?}",
                    self.shape
                ),
            );
        }
        let mut out = Self::with_parts(grid, parts, ghost, |_| T::zeroed())?;
        let blocks = out.all_blocks();
        let (first, g, storage) = (out.start.clone(), out.ghost.clone(), out.data.shape().to_vec());
        self.move_into(
            op,
            Target {
                data: out.local_mut_slice(),
                shape: &storage,
                first: &first,
                ghost: &g,
                blocks: &blocks,
            },
        )?;
        Ok(out)
    }

    /// The array with its axes permuted (axis `k` of the result is axis `axes[k]` of this one), distributed in
    /// blocks over `grid` (collective). `permuted(&[1, 0], ..)` of a 2-D array is its transpose.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] if `axes` is not a permutation of the dimensions, or as
    /// [`DArray::redistribute`].
    pub fn permuted(&self, axes: &[usize], grid: &Grid<'u>, ghost: Ghost) -> Result<Self> {
        let op = "permuted";
        let nd = self.shape.len();
        let mut seen = vec![false; nd];
        if axes.len() != nd || axes.iter().any(|&a| a >= nd || std::mem::replace(&mut seen[a], true)) {
            return fail(
                ErrorKind::InvalidArgument,
                format!("{op}: {axes:?} is not a permutation of the {nd} axes"),
            );
        }
        self.check_same_processes(op, grid)?;
        let new_shape: Vec<usize> = axes.iter().map(|&a| self.shape[a]).collect();
        let mut out = Self::zeros(grid, dim_from::<D>(&new_shape).into_dimension(), ghost)?;
        // Every rank's target block, seen in this array's axes.
        let back = |b: &[Range<usize>]| -> Vec<Range<usize>> {
            let mut r = vec![0..0; nd];
            for (k, &a) in axes.iter().enumerate() {
                r[a] = b[k].clone();
            }
            r
        };
        let blocks: Vec<Option<Vec<Range<usize>>>> = out.blocks().iter().map(|b| Some(back(b))).collect();
        let mine = back(&block_of(grid, &out.parts, grid.rank()));
        let tmp_shape: Vec<usize> = mine.iter().map(|r| r.len()).collect();
        let first: Vec<usize> = mine.iter().map(|r| r.start).collect();
        let mut tmp = Array::from_elem(dim_from::<D>(&tmp_shape), T::zeroed());
        let zeros = vec![0; nd];
        self.move_into(
            op,
            Target {
                data: tmp.as_slice_mut().expect("standard layout"),
                shape: &tmp_shape,
                first: &first,
                ghost: &zeros,
                blocks: &blocks,
            },
        )?;
        out.owned_mut().assign(&tmp.permuted_axes(dim_from::<D>(axes)));
        Ok(out)
    }

    /// The transpose (axes reversed), distributed in blocks over `grid` (collective).
    ///
    /// ```no_run
    /// # let universe = spmd::init()?; let world = universe.world();
    /// use spmd::dist::{DArray, Ghost};
    /// let grid = world.grid(&[0, 0], &[false, false])?;
    /// let a = DArray::from_fn(&grid, [40, 30], Ghost::none(), |(i, j)| (i * 30 + j) as f64)?;
    /// let t = a.transpose(&grid, Ghost::none())?;
    /// assert_eq!(t.shape(), &[30, 40]);
    /// # Ok::<(), spmd::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`DArray::permuted`].
    pub fn transpose(&self, grid: &Grid<'u>, ghost: Ghost) -> Result<Self> {
        let axes: Vec<usize> = (0..self.shape.len()).rev().collect();
        self.permuted(&axes, grid, ghost)
    }

    fn check_same_processes(&self, op: &str, grid: &Grid<'u>) -> Result<()> {
        if grid.ndims() != self.shape.len() {
            return fail(
                ErrorKind::InvalidArgument,
                format!(
                    "{op}: a {}-dimensional array onto a {}-dimensional grid",
                    self.shape.len(),
                    grid.ndims()
                ),
            );
        }
        if !self.grid.same_processes(grid)? {
            return fail(
                ErrorKind::InvalidArgument,
                format!("{op}: the target grid has other processes (make both grids from the same communicator)"),
            );
        }
        Ok(())
    }
}

/// The target side of a move out of a [`DArray`].
struct Target<'a, T> {
    data: &'a mut [T],
    shape: &'a [usize],
    first: &'a [usize],
    ghost: &'a [usize],
    blocks: &'a [Option<Vec<Range<usize>>>],
}
