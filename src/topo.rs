//! Cartesian process grids: a communicator whose ranks are laid out on a d-dimensional grid, with balanced
//! automatic dimensions (`MPI_Dims_create`), coordinates, neighbours (`shift`, which gives no peer at the edge of a
//! non-periodic dimension, so boundary code needs no branches) and sub-grids along chosen dimensions (rows,
//! columns).
//!
//! A [`Grid`] is a real MPI Cartesian communicator (`MPI_Cart_create`, without reordering: grid rank `r` is rank
//! `r` of the communicator it was made from). Coordinates are row-major, as MPI orders them: the **last**
//! dimension varies fastest (PETSc's DMDA orders x fastest). It dereferences to [`Comm`], so every messaging call
//! works on it, and `grid.as_raw()` can be handed to C code that calls `MPI_Cart_*`.
//!
//! ```no_run
//! # fn main() -> spmd::Result<()> {
//! let universe = spmd::init()?;
//! let world = universe.world();
//! let grid = world.grid(&[0, 0], &[false, true])?; // 2-D, dims chosen by MPI_Dims_create; periodic in y
//! let [rows, cols] = [grid.dims()[0], grid.dims()[1]];
//! let (up, down) = grid.shift(0, 1)?;               // no peer above the first row and below the last
//! // Send my row index down, receive the one from above: the edges need no special case.
//! let mut above = [usize::MAX];
//! grid.sendrecv_buf(down, 0, &[grid.coords()[0]], up, 0, &mut above)?;
//! let row_comm = grid.sub(&[false, true])?;          // the processes of my grid row
//! assert_eq!(row_comm.size(), cols);
//! # let _ = rows; Ok(()) }
//! ```
//!
//! Not covered yet: graph and distributed-graph topologies, neighbourhood collectives, and rank reordering.

use std::ops::Deref;
use std::sync::Arc;

use crate::comm::{Comm, CommInner};
use crate::error::{ErrorKind, Result, fail};
use crate::p2p::Peer;
use crate::sys::RawComm;

/// A Cartesian process grid (see the [module docs](self)). Cheap to clone: clones share the communicator.
#[derive(Clone, Debug)]
pub struct Grid<'u> {
    comm: Comm<'u>,
    /// A duplicate for spmd's own traffic on this grid (halo exchanges, redistributions), apart from the user's.
    lib: Comm<'u>,
    dims: Vec<usize>,
    periodic: Vec<bool>,
    coords: Vec<usize>,
}

/// The balanced grid shape MPI chooses (`MPI_Dims_create`) for `nprocs` processes in `ndims` dimensions, largest
/// first: 12 in 2-D gives `[4, 3]`, 6 in 3-D `[3, 2, 1]`. Needs MPI running.
///
/// ```no_run
/// # let universe = spmd::init()?;
/// assert_eq!(spmd::topo::balanced_dims(12, 2)?, vec![4, 3]);
/// # Ok::<(), spmd::Error>(())
/// ```
///
/// # Errors
/// [`ErrorKind::InvalidArgument`] for `nprocs == 0` or `ndims == 0`; [`ErrorKind::Mpi`] if MPI fails.
pub fn balanced_dims(nprocs: usize, ndims: usize) -> Result<Vec<usize>> {
    let mut dims = vec![0; ndims];
    fill_dims("balanced_dims", nprocs, &mut dims)?;
    Ok(dims)
}

/// Checks `dims` against `size` and fills its zero entries (`MPI_Dims_create`).
fn fill_dims(op: &str, size: usize, dims: &mut [usize]) -> Result<()> {
    if dims.is_empty() {
        return fail(
            ErrorKind::InvalidArgument,
            format!("{op}: a grid needs at least one dimension"),
        );
    }
    if size == 0 {
        return fail(ErrorKind::InvalidArgument, format!("{op}: no processes to lay out"));
    }
    let fixed: usize = dims.iter().filter(|&&d| d > 0).product();
    let free = dims.iter().filter(|&&d| d == 0).count();
    if (free == 0 && fixed != size) || (free > 0 && !size.is_multiple_of(fixed)) {
        return fail(
            ErrorKind::InvalidArgument,
            format!(
                "{op}: dims {dims:?} do not fit {size} processes (the product of the dims must be {size}; \
                 0 lets MPI choose)"
            ),
        );
    }
    if free > 0 {
        crate::sys::topo::dims_create(size, dims)?;
    }
    Ok(())
}

impl<'u> Comm<'u> {
    /// A Cartesian grid over this communicator's processes (collective). `dims[d]` is the number of processes
    /// along dimension `d`, 0 to let MPI choose a balanced value (`MPI_Dims_create`); `periodic[d]` makes
    /// dimension `d` wrap around. Grid rank `r` is rank `r` here (no reordering).
    ///
    /// ```no_run
    /// # let universe = spmd::init()?; let world = universe.world();
    /// let grid = world.grid(&[0, 0, 0], &[true; 3])?;    // 3-D torus
    /// let line = world.grid(&[world.size()], &[false])?; // a chain
    /// # Ok::<(), spmd::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] if `dims` and `periodic` differ in length or the dims cannot multiply to
    /// the size (the message names both); [`ErrorKind::Mpi`] if MPI fails.
    pub fn grid(&self, dims: &[usize], periodic: &[bool]) -> Result<Grid<'u>> {
        if dims.len() != periodic.len() {
            return fail(
                ErrorKind::InvalidArgument,
                format!("grid: {} dims but {} periodic flags", dims.len(), periodic.len()),
            );
        }
        let mut dims = dims.to_vec();
        fill_dims("grid", self.size(), &mut dims)?;
        let raw = crate::request::blocking_call(|| self.inner.raw.cart_create(&dims, periodic))?;
        let coords = raw.cart_coords(raw.rank()?, dims.len())?;
        Grid::wrap(raw, dims, periodic.to_vec(), coords)
    }
}

impl<'u> Grid<'u> {
    /// A grid around a new Cartesian communicator, with the private duplicate for the library's own traffic.
    fn wrap(raw: RawComm, dims: Vec<usize>, periodic: Vec<bool>, coords: Vec<usize>) -> Result<Grid<'u>> {
        let comm = Comm::from_inner(Arc::new(CommInner::new(raw)?));
        let lib = comm.dup()?;
        Ok(Grid {
            comm,
            lib,
            dims,
            periodic,
            coords,
        })
    }
}

impl<'u> Grid<'u> {
    /// The grid's communicator (also reachable through `Deref`).
    pub fn comm(&self) -> &Comm<'u> {
        &self.comm
    }

    /// The number of dimensions.
    pub fn ndims(&self) -> usize {
        self.dims.len()
    }

    /// Processes along each dimension.
    pub fn dims(&self) -> &[usize] {
        &self.dims
    }

    /// Which dimensions wrap around.
    pub fn periodic(&self) -> &[bool] {
        &self.periodic
    }

    /// This process's coordinates.
    pub fn coords(&self) -> &[usize] {
        &self.coords
    }

    /// The coordinates of grid rank `rank` (row-major: the last dimension varies fastest).
    ///
    /// # Panics
    /// If `rank` is not below the size.
    pub fn coords_of(&self, rank: usize) -> Vec<usize> {
        assert!(
            rank < self.size(),
            "coords_of: rank {rank} of a grid of {} processes",
            self.size()
        );
        let mut c = vec![0; self.ndims()];
        let mut r = rank;
        for d in (0..self.ndims()).rev() {
            c[d] = r % self.dims[d];
            r /= self.dims[d];
        }
        c
    }

    /// The rank at `coords`, which may lie off the grid by any amount: periodic dimensions wrap, other
    /// dimensions give no peer. `grid.rank_at(&[i - 1, j + 1])` is the upper-right neighbour.
    ///
    /// ```no_run
    /// # let universe = spmd::init()?; let world = universe.world();
    /// let grid = world.grid(&[0, 0], &[true, false])?;
    /// let [i, j] = [grid.coords()[0] as isize, grid.coords()[1] as isize];
    /// let upper_right = grid.rank_at(&[i - 1, j + 1]); // wraps in i; None past the last column
    /// # Ok::<(), spmd::Error>(())
    /// ```
    ///
    /// # Panics
    /// If `coords` has another length than the grid has dimensions.
    pub fn rank_at(&self, coords: &[isize]) -> Peer {
        assert_eq!(coords.len(), self.ndims(), "rank_at: coordinates of another dimension");
        let mut rank = 0usize;
        for (d, &c) in coords.iter().enumerate() {
            let n = self.dims[d] as isize;
            let c = if self.periodic[d] {
                c.rem_euclid(n)
            } else if (0..n).contains(&c) {
                c
            } else {
                return Peer::NULL;
            };
            rank = rank * self.dims[d] + c as usize;
        }
        Peer(Some(rank))
    }

    /// `MPI_Cart_shift`: the ranks `disp` steps before and after this one along `dim`, as (source, destination):
    /// send to the destination, receive from the source. At the edge of a non-periodic dimension the missing
    /// neighbour is [`Peer::NULL`], to which sends and from which receives complete at once with no data.
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// let grid = world.grid(&[0], &[false])?;
    /// let (left, right) = grid.shift(0, 1)?;
    /// let mut from_left = [-1i64];
    /// grid.sendrecv_buf(right, 7, &[grid.rank() as i64], left, 7, &mut from_left)?; // -1 stays on rank 0
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] if `dim` is not a dimension of the grid.
    pub fn shift(&self, dim: usize, disp: i32) -> Result<(Peer, Peer)> {
        if dim >= self.ndims() {
            return fail(
                ErrorKind::InvalidArgument,
                format!("shift: dimension {dim} of a {}-dimensional grid", self.ndims()),
            );
        }
        let (s, d) = self.comm.inner.raw.cart_shift(dim, disp)?;
        Ok((Peer(s), Peer(d)))
    }

    /// The sub-grids that keep the dimensions flagged in `keep` (`MPI_Cart_sub`, collective): on a 2-D grid,
    /// `sub(&[false, true])` is this process's row (the processes that share its first coordinate) and
    /// `sub(&[true, false])` its column.
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// let grid = world.grid(&[0, 0], &[false, false])?;
    /// let row = grid.sub(&[false, true])?;
    /// // Broadcast along the row from its first process (as SUMMA does).
    /// let mut block = vec![grid.coords()[0] as f64; 4];
    /// row.broadcast_buf(0, &mut block)?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] if `keep` has another length than the grid has dimensions;
    /// [`ErrorKind::Mpi`] if MPI fails.
    pub fn sub(&self, keep: &[bool]) -> Result<Grid<'u>> {
        if keep.len() != self.ndims() {
            return fail(
                ErrorKind::InvalidArgument,
                format!("sub: {} flags for a {}-dimensional grid", keep.len(), self.ndims()),
            );
        }
        let raw = crate::request::blocking_call(|| self.comm.inner.raw.cart_sub(keep))?;
        let pick = |v: &[usize]| -> Vec<usize> { v.iter().zip(keep).filter(|(_, k)| **k).map(|(x, _)| *x).collect() };
        let (mut dims, mut coords) = (pick(&self.dims), pick(&self.coords));
        let mut periodic: Vec<bool> = self
            .periodic
            .iter()
            .zip(keep)
            .filter(|(_, k)| **k)
            .map(|(p, _)| *p)
            .collect();
        if dims.is_empty() {
            // MPI gives a 0-dimensional grid of one process; spmd keeps one dimension of length 1.
            (dims, coords, periodic) = (vec![1], vec![0], vec![false]);
        }
        Grid::wrap(raw, dims, periodic, coords)
    }

    /// The communicator for spmd's own traffic on this grid.
    pub(crate) fn lib(&self) -> &Comm<'u> {
        &self.lib
    }

    /// Whether `other` has the same processes in the same order (so that rank `r` is the same process on both).
    pub(crate) fn same_processes(&self, other: &Grid<'_>) -> Result<bool> {
        self.comm.inner.raw.same_group_order(&other.comm.inner.raw)
    }
}

impl<'u> Deref for Grid<'u> {
    type Target = Comm<'u>;
    fn deref(&self) -> &Comm<'u> {
        &self.comm
    }
}
