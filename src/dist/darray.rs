//! The distributed n-dimensional array: global shape, one partition per dimension over a process grid, and on each
//! rank its owned block stored with ghost layers.

use std::ops::Range;

use ndarray::{Array, ArrayView, ArrayViewMut, Axis, Dimension, IntoDimension, Slice};

use super::Partition;
use crate::buffer::Data;
use crate::error::{ErrorKind, Result, fail};
use crate::sys::boxes::BoxSel;
use crate::topo::Grid;

/// Which ghost cells a halo exchange fills (PETSc's `DMDA_STENCIL_STAR` and `DMDA_STENCIL_BOX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stencil {
    /// Faces only: the ghost cells that differ from an owned cell in one coordinate (5-point stencils in 2-D).
    Star,
    /// Faces, edges and corners: every ghost cell (9-point stencils in 2-D).
    Box,
}

/// Ghost layers of a [`DArray`]: a width per dimension and the stencil the halo exchange serves.
///
/// ```
/// use spmd::dist::{Ghost, Stencil};
/// let g = Ghost::star(1);                    // one layer on every side, faces only
/// let b = Ghost::boxed(2).widths(&[2, 0]);   // two layers along dimension 0, none along 1; corners too
/// assert_eq!(b.stencil(), Stencil::Box);
/// assert_eq!(Ghost::none().width(0), 0);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ghost {
    uniform: usize,
    per_dim: Option<Vec<usize>>,
    stencil: Stencil,
}

impl Ghost {
    /// No ghost cells.
    pub fn none() -> Ghost {
        Ghost::star(0)
    }

    /// `width` layers on every side of every dimension, exchanged with face neighbours only.
    pub fn star(width: usize) -> Ghost {
        Ghost {
            uniform: width,
            per_dim: None,
            stencil: Stencil::Star,
        }
    }

    /// `width` layers on every side of every dimension, exchanged with face, edge and corner neighbours.
    pub fn boxed(width: usize) -> Ghost {
        Ghost {
            stencil: Stencil::Box,
            ..Ghost::star(width)
        }
    }

    /// One width per dimension instead of the same for all.
    pub fn widths(mut self, widths: &[usize]) -> Ghost {
        self.per_dim = Some(widths.to_vec());
        self
    }

    /// The width along dimension `d`.
    pub fn width(&self, d: usize) -> usize {
        self.per_dim
            .as_ref()
            .map_or(self.uniform, |w| w.get(d).copied().unwrap_or(0))
    }

    /// The stencil.
    pub fn stencil(&self) -> Stencil {
        self.stencil
    }
}

/// A distributed n-dimensional array (see the [module docs](super) for the halo pattern and examples).
///
/// The global array of shape `shape()` is cut along each dimension `d` by a [`Partition`] into
/// `grid.dims()[d]` parts; the rank at grid coordinates `c` owns the block of part `c[d]` along every `d`. Its
/// local storage is that block with `ghost.width(d)` extra layers on both sides of each dimension, in C order:
/// `local()` is the whole storage, `owned()` the block alone. Construction is collective over the grid.
#[derive(Debug, Clone)]
pub struct DArray<'u, T, D: Dimension> {
    pub(crate) grid: Grid<'u>,
    pub(crate) shape: Vec<usize>,
    pub(crate) parts: Vec<Partition>,
    pub(crate) ghost: Vec<usize>,
    pub(crate) stencil: Stencil,
    pub(crate) start: Vec<usize>,
    pub(crate) owned: Vec<usize>,
    pub(crate) data: Array<T, D>,
}

pub(crate) fn dim_from<D: Dimension>(v: &[usize]) -> D {
    let mut d = D::zeros(v.len());
    for (i, &x) in v.iter().enumerate() {
        d[i] = x;
    }
    d
}

/// The block owned by grid rank `rank` under `parts`, as global ranges.
pub(crate) fn block_of(grid: &Grid<'_>, parts: &[Partition], rank: usize) -> Vec<Range<usize>> {
    let c = grid.coords_of(rank);
    parts
        .iter()
        .zip(&c)
        .map(|(p, &k)| p.range(k).expect("contiguous partition"))
        .collect()
}

impl<'u, T: Data, D: Dimension> DArray<'u, T, D> {
    /// An array of global `shape` split in blocks over `grid` (the first `n % p` parts one longer, PETSc's rule),
    /// every element zero, ghost layers as given (collective).
    ///
    /// ```no_run
    /// # let universe = spmd::init()?; let world = universe.world();
    /// use spmd::dist::{DArray, Ghost};
    /// let grid = world.grid(&[0, 0], &[false, false])?;
    /// let u = DArray::<f64, _>::zeros(&grid, [1024, 1024], Ghost::star(1))?;
    /// assert_eq!(u.shape(), &[1024, 1024]);
    /// # Ok::<(), spmd::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] if the array and the grid differ in dimensions, or if a ghost width is
    /// wider than some rank's owned extent along a dimension that exchanges halos (the message names the
    /// dimension and the sizes).
    pub fn zeros<Sh: IntoDimension<Dim = D>>(grid: &Grid<'u>, shape: Sh, ghost: Ghost) -> Result<Self> {
        let shape = shape.into_dimension();
        let parts = Self::block_parts(grid, shape.slice())?;
        Self::with_parts(grid, parts, ghost, |_| T::zeroed())
    }

    /// An array whose element at global index `i` is `f(i)`; each rank calls `f` only for the block it owns
    /// (collective). Ghost cells start at zero.
    ///
    /// ```no_run
    /// # let universe = spmd::init()?; let world = universe.world();
    /// use spmd::dist::{DArray, Ghost};
    /// let grid = world.grid(&[0, 0], &[false, false])?;
    /// let a = DArray::from_fn(&grid, [100, 60], Ghost::none(), |(i, j)| (i * 60 + j) as f64)?;
    /// # Ok::<(), spmd::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`DArray::zeros`].
    pub fn from_fn<Sh: IntoDimension<Dim = D>>(
        grid: &Grid<'u>,
        shape: Sh,
        ghost: Ghost,
        f: impl FnMut(D::Pattern) -> T,
    ) -> Result<Self> {
        let shape = shape.into_dimension();
        let parts = Self::block_parts(grid, shape.slice())?;
        Self::with_parts(grid, parts, ghost, f)
    }

    /// An array cut by the given partitions, one per dimension (block or explicit counts; PETSc's `lx`, `ly`),
    /// with `f(i)` at global index `i` (collective).
    ///
    /// ```no_run
    /// # let universe = spmd::init()?; let world = universe.world();
    /// use spmd::dist::{DArray, Ghost, Partition};
    /// let grid = world.grid(&[world.size()], &[false])?;
    /// // Rank 0 owns nothing, the others share 90 elements.
    /// let mut counts = vec![0];
    /// counts.extend(Partition::block(90, world.size() - 1).counts());
    /// let a = DArray::<u32, ndarray::Ix1>::with_parts(&grid, vec![Partition::from_counts(counts)], Ghost::none(), |i| i as u32)?;
    /// # Ok::<(), spmd::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] for cyclic partitions (blocks must be contiguous), a partition with
    /// another number of parts than the grid has processes along that dimension, or as [`DArray::zeros`].
    pub fn with_parts(
        grid: &Grid<'u>,
        parts: Vec<Partition>,
        ghost: Ghost,
        mut f: impl FnMut(D::Pattern) -> T,
    ) -> Result<Self> {
        let nd = parts.len();
        if let Some(n) = D::NDIM
            && n != nd
        {
            return fail(
                ErrorKind::InvalidArgument,
                format!("DArray: {nd} partitions for a {n}-dimensional array"),
            );
        }
        if nd != grid.ndims() {
            return fail(
                ErrorKind::InvalidArgument,
                format!(
                    "DArray: a {nd}-dimensional array on a {}-dimensional grid",
                    grid.ndims()
                ),
            );
        }
        for (d, p) in parts.iter().enumerate() {
            if p.parts() != grid.dims()[d] {
                return fail(
                    ErrorKind::InvalidArgument,
                    format!(
                        "DArray: the partition of dimension {d} has {} parts but the grid has {} processes along it",
                        p.parts(),
                        grid.dims()[d]
                    ),
                );
            }
            if (0..p.parts()).any(|k| p.range(k).is_none()) {
                return fail(
                    ErrorKind::InvalidArgument,
                    format!("DArray: the partition of dimension {d} is not made of contiguous blocks (cyclic)"),
                );
            }
        }
        let widths: Vec<usize> = (0..nd).map(|d| ghost.width(d)).collect();
        for d in 0..nd {
            let w = widths[d];
            let exchanges = grid.dims()[d] > 1 || grid.periodic()[d];
            if w == 0 || !exchanges {
                continue;
            }
            if let Some(k) = (0..parts[d].parts()).find(|&k| parts[d].part_len(k) < w) {
                return fail(
                    ErrorKind::InvalidArgument,
                    format!(
                        "DArray: ghost width {w} along dimension {d} is wider than the {} element(s) owned by \
                         the processes at coordinate {k} (length {} over {} processes); use fewer processes along \
                         dimension {d} or a narrower halo",
                        parts[d].part_len(k),
                        parts[d].len(),
                        parts[d].parts()
                    ),
                );
            }
        }
        let block = block_of(grid, &parts, grid.rank());
        let start: Vec<usize> = block.iter().map(|r| r.start).collect();
        let owned: Vec<usize> = block.iter().map(|r| r.len()).collect();
        let shape: Vec<usize> = parts.iter().map(|p| p.len()).collect();
        let storage: Vec<usize> = (0..nd).map(|d| owned[d] + 2 * widths[d]).collect();
        let mut data = Array::from_elem(dim_from::<D>(&storage), T::zeroed());
        {
            let mut view = data.slice_each_axis_mut(|ax| {
                let d = ax.axis.index();
                Slice::from(widths[d]..widths[d] + owned[d])
            });
            for (idx, x) in view.indexed_iter_mut() {
                let mut g = idx.into_dimension();
                for d in 0..nd {
                    g[d] += start[d];
                }
                *x = f(g.into_pattern());
            }
        }
        Ok(DArray {
            grid: grid.clone(),
            shape,
            parts,
            ghost: widths,
            stencil: ghost.stencil(),
            start,
            owned,
            data,
        })
    }

    fn block_parts(grid: &Grid<'u>, shape: &[usize]) -> Result<Vec<Partition>> {
        if shape.len() != grid.ndims() {
            return fail(
                ErrorKind::InvalidArgument,
                format!(
                    "DArray: a {}-dimensional array on a {}-dimensional grid",
                    shape.len(),
                    grid.ndims()
                ),
            );
        }
        Ok(shape
            .iter()
            .zip(grid.dims())
            .map(|(&n, &p)| Partition::block(n, p))
            .collect())
    }

    /// The process grid.
    pub fn grid(&self) -> &Grid<'u> {
        &self.grid
    }

    /// The global shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The partition of dimension `d`.
    pub fn partition(&self, d: usize) -> &Partition {
        &self.parts[d]
    }

    /// Ghost widths, one per dimension.
    pub fn ghost_widths(&self) -> &[usize] {
        &self.ghost
    }

    /// The stencil the halo exchange serves.
    pub fn stencil(&self) -> Stencil {
        self.stencil
    }

    /// The global index of this rank's first owned element.
    pub fn owned_start(&self) -> &[usize] {
        &self.start
    }

    /// The shape of this rank's owned block (zero along some dimension if it owns nothing).
    pub fn owned_shape(&self) -> &[usize] {
        &self.owned
    }

    /// The global index range this rank owns along dimension `d`.
    pub fn owned_range(&self, d: usize) -> Range<usize> {
        self.start[d]..self.start[d] + self.owned[d]
    }

    /// Whether this rank's block touches the lower and the upper end of the global domain along `d` (where a
    /// non-periodic dimension's ghost cells hold boundary values the halo exchange leaves alone).
    pub fn touches_edge(&self, d: usize) -> [bool; 2] {
        let periodic = self.grid.periodic()[d];
        [
            !periodic && self.start[d] == 0,
            !periodic && self.start[d] + self.owned[d] == self.shape[d],
        ]
    }

    /// The owned block, without ghosts.
    pub fn owned(&self) -> ArrayView<'_, T, D> {
        self.data.slice_each_axis(|ax| {
            let d = ax.axis.index();
            Slice::from(self.ghost[d]..self.ghost[d] + self.owned[d])
        })
    }

    /// The owned block, writable.
    pub fn owned_mut(&mut self) -> ArrayViewMut<'_, T, D> {
        let (g, o) = (&self.ghost, &self.owned);
        self.data.slice_each_axis_mut(|ax| {
            let d = ax.axis.index();
            Slice::from(g[d]..g[d] + o[d])
        })
    }

    /// The whole local storage: the owned block with its ghost layers (standard layout, so `as_slice()` gives
    /// it as one slice). Local index `ghost_widths()` is the first owned element.
    pub fn local(&self) -> ArrayView<'_, T, D> {
        self.data.view()
    }

    /// The whole local storage, writable (e.g. to set boundary values in ghost cells).
    pub fn local_mut(&mut self) -> ArrayViewMut<'_, T, D> {
        self.data.view_mut()
    }

    /// The local storage as one slice in C order (with [`DArray::local_mut_slice`], for kernels that index by
    /// hand).
    pub fn local_slice(&self) -> &[T] {
        self.data.as_slice().expect("DArray storage is in standard layout")
    }

    /// The local storage as one writable slice in C order.
    pub fn local_mut_slice(&mut self) -> &mut [T] {
        self.data.as_slice_mut().expect("DArray storage is in standard layout")
    }

    /// Takes the local storage out (the owned block with ghosts).
    pub fn into_local(self) -> Array<T, D> {
        self.data
    }

    /// The global index of the local storage index `local`: owned cells and ghost cells inside the domain
    /// (wrapped around periodic dimensions); `None` for ghost cells beyond a non-periodic edge or indices outside
    /// the storage.
    ///
    /// ```no_run
    /// # let universe = spmd::init()?; let world = universe.world();
    /// use spmd::dist::{DArray, Ghost};
    /// let grid = world.grid(&[0], &[true])?;
    /// let a = DArray::<f64, _>::zeros(&grid, [10], Ghost::star(1))?;
    /// if grid.size() == 1 {
    ///     assert_eq!(a.global_index([0]), Some(ndarray::Dim([9])));  // the left ghost wraps to the last element
    /// }
    /// # Ok::<(), spmd::Error>(())
    /// ```
    pub fn global_index<I: IntoDimension<Dim = D>>(&self, local: I) -> Option<D> {
        let local = local.into_dimension();
        let mut g = local.clone();
        for d in 0..self.shape.len() {
            let l = local[d];
            if l >= self.owned[d] + 2 * self.ghost[d] {
                return None;
            }
            let x = (self.start[d] + l) as isize - self.ghost[d] as isize;
            let n = self.shape[d] as isize;
            g[d] = if (0..n).contains(&x) {
                x as usize
            } else if self.grid.periodic()[d] && n > 0 {
                x.rem_euclid(n) as usize
            } else {
                return None;
            };
        }
        Some(g)
    }

    /// The local storage index of global index `global` if this rank owns it.
    pub fn local_index<I: IntoDimension<Dim = D>>(&self, global: I) -> Option<D> {
        let global = global.into_dimension();
        let mut l = global.clone();
        for d in 0..self.shape.len() {
            if !self.owned_range(d).contains(&global[d]) {
                return None;
            }
            l[d] = global[d] - self.start[d] + self.ghost[d];
        }
        Some(l)
    }

    /// This rank's block as a box of the global array and as a box of the local storage.
    pub(crate) fn owned_boxes(&self) -> (BoxSel, BoxSel) {
        let global = BoxSel {
            start: self.start.clone(),
            len: self.owned.clone(),
        };
        let local = BoxSel {
            start: self.ghost.clone(),
            len: self.owned.clone(),
        };
        (global, local)
    }

    /// The global block owned by every rank.
    pub(crate) fn blocks(&self) -> Vec<Vec<Range<usize>>> {
        (0..self.grid.size())
            .map(|r| block_of(&self.grid, &self.parts, r))
            .collect()
    }

    /// Splits the storage into the 3^d pieces of the ghost layout: direction `δ` (one of -1, 0, 1 per dimension)
    /// is the piece below the owned range (-1), on it (0) or above it (1) along each dimension. The piece of all
    /// zeros is the owned block.
    pub(crate) fn pieces(&mut self) -> Vec<(Vec<i8>, ArrayViewMut<'_, T, D>)> {
        let nd = self.shape.len();
        let mut out = vec![(Vec::with_capacity(nd), self.data.view_mut())];
        for d in 0..nd {
            let mut next = Vec::with_capacity(out.len() * 3);
            for (dir, v) in out {
                let (lo, rest) = v.split_at(Axis(d), self.ghost[d]);
                let (mid, hi) = rest.split_at(Axis(d), self.owned[d]);
                for (s, piece) in [(-1i8, lo), (0, mid), (1, hi)] {
                    let mut dir = dir.clone();
                    dir.push(s);
                    next.push((dir, piece));
                }
            }
            out = next;
        }
        out
    }
}
