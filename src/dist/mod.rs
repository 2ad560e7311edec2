//! Data distribution: spreading arrays over the ranks so that each computes on its own block and communicates
//! only at the block edges.
//!
//! - [`Partition`]: block (the first `n % p` parts one longer, PETSc's rule), explicit-count, cyclic and
//!   block-cyclic partitions of `n` items over `p` parts, with owner and local-index maps and the counts and
//!   displacements the variable-count collectives take. Pure arithmetic, no MPI.
//! - [`DArray`]: a distributed n-dimensional ndarray over a [process grid](crate::topo::Grid): a partition per
//!   dimension, each rank's owned block stored with [`Ghost`] layers; views of the owned block and of the whole
//!   local storage, local ↔ global index maps, construction from a function of the global index.
//! - Halo exchange ([`DArray::exchange_halo`], the split-phase [`DArray::exchange_halo_overlap`] and the reverse
//!   [`DArray::accumulate_halo`]): one message per neighbour, star or box stencils, any width, periodic or not.
//! - Moving data: [`DArray::scatter_from`], [`DArray::gather_to`], [`DArray::all_gather`],
//!   [`DArray::redistribute`] (slab ↔ pencil), [`DArray::transpose`] and [`DArray::permuted`], each one
//!   `MPI_Alltoallw` of subarray datatypes (no packing; there and back is the identity, bit for bit).
//! - Reductions over the owned blocks: [`DArray::sum`], [`DArray::dot`], [`DArray::norm2`],
//!   [`DArray::norm_inf`], [`DArray::min_loc`], [`DArray::max_loc`], and [`DArray::sum_reproducible`], whose bits do
//!   not depend on the number of threads.
//! - Parallel `.npy` files: [`DArray::write_npy`] (blocks regrouped into row slabs, each rank writing one
//!   contiguous range) and [`DArray::read_npy`] (each rank reading its own block), through MPI-IO, readable by
//!   numpy and at any number of ranks.
//!
//! # The halo pattern
//!
//! A stencil computation reads neighbours of every cell. The cells next to a block's edge belong to another rank,
//! so each rank keeps a copy of them, the ghost layer, and refreshes it before each sweep. The library splits
//! the borrows (ghost cells written by MPI, boundary cells read) and the user writes one call. Ghost cells beyond
//! a non-periodic edge are never touched by the exchange: they hold the boundary condition.
//!
//! A 1-D heat equation (explicit Euler), complete:
//!
//! ```no_run
//! use spmd::dist::{DArray, Ghost};
//!
//! fn main() -> spmd::Result<()> {
//!     let universe = spmd::init()?;
//!     let world = universe.world();
//!     let grid = world.grid(&[0], &[false])?;
//!     let n = 1000;
//!     let mut u = DArray::from_fn(&grid, [n], Ghost::star(1), |i| if i == n / 2 { 1.0 } else { 0.0 })?;
//!     let mut v = u.clone();
//!     for _ in 0..500 {
//!         u.exchange_halo()?;
//!         let (a, mut b) = (u.local(), v.local_mut());
//!         for i in 1..a.len() - 1 {
//!             b[i] = a[i] + 0.25 * (a[i - 1] - 2.0 * a[i] + a[i + 1]);
//!         }
//!         std::mem::swap(&mut u, &mut v);
//!     }
//!     let heat = u.sum()?;
//!     if world.rank() == 0 {
//!         println!("total heat {heat}");
//!     }
//!     Ok(())
//! }
//! ```
//!
//! A 2-D Jacobi iteration on an automatic process grid (rows and columns both split), complete:
//!
//! ```no_run
//! use ndarray::s;
//! use spmd::dist::{DArray, Ghost};
//!
//! fn main() -> spmd::Result<()> {
//!     let universe = spmd::init()?;
//!     let world = universe.world();
//!     let grid = world.grid(&[0, 0], &[false, false])?;
//!     let mut u = DArray::<f64, _>::zeros(&grid, [512, 512], Ghost::star(1))?;
//!     if u.touches_edge(0)[0] {
//!         u.local_mut().row_mut(0).fill(1.0); // the row above the domain is hot
//!     }
//!     let mut v = u.clone();
//!     for _ in 0..1000 {
//!         u.exchange_halo()?;
//!         let a = u.local();
//!         let sum = &a.slice(s![..-2, 1..-1]) + &a.slice(s![2.., 1..-1]) + &a.slice(s![1..-1, ..-2])
//!             + &a.slice(s![1..-1, 2..]);
//!         v.owned_mut().assign(&(sum * 0.25));
//!         std::mem::swap(&mut u, &mut v);
//!     }
//!     let (max, at) = u.max_loc()?.expect("not empty");
//!     if world.rank() == 0 {
//!         println!("hottest {max:.4} at {at:?}");
//!     }
//!     Ok(())
//! }
//! ```
//!
//! `examples/heat2d.rs` is the same computation with a hand-written sweep, timing, a serial check, a PNG and
//! `.npy` checkpoints.
//!
//! # Grids and layouts
//!
//! Grid coordinates are row-major (the last dimension varies fastest), and a block partition along dimension
//! `d` is cut into `grid.dims()[d]` parts, so the rank at coordinates `(i, j)` owns rows `partition(0).range(i)`
//! and columns `partition(1).range(j)`. Blocks may be empty when a dimension has fewer elements than processes;
//! a ghost width wider than some block along a dimension that exchanges halos is an error naming the dimension
//! and the sizes.
//!
//! # From PETSc and mpi4py
//!
//! | task | PETSc (DMDA) / mpi4py | spmd |
//! |---|---|---|
//! | balanced grid shape | `MPI_Dims_create` / `MPI.Compute_dims` | [`crate::topo::balanced_dims`] |
//! | Cartesian communicator | `MPI_Cart_create` / `comm.Create_cart` | [`Comm::grid`](crate::Comm::grid) |
//! | neighbours, `MPI_PROC_NULL` at edges | `MPI_Cart_shift` / `cart.Shift` | [`Grid::shift`](crate::topo::Grid::shift) → [`Peer::NULL`](crate::Peer::NULL) |
//! | rows and columns | `MPI_Cart_sub` / `cart.Sub` | [`Grid::sub`](crate::topo::Grid::sub) |
//! | distributed array | `DMDACreate2d` + `DMCreateGlobalVector` | [`DArray::zeros`], [`DArray::from_fn`], [`DArray::with_parts`] (`lx`, `ly`) |
//! | owned corner and size | `DMDAGetCorners` | [`DArray::owned_start`], [`DArray::owned_shape`] |
//! | ghosted local array | `DMGetLocalVector`, `DMDAVecGetArray` | [`DArray::local`], [`DArray::local_mut`] |
//! | fill ghosts | `DMGlobalToLocalBegin/End` | [`DArray::exchange_halo_overlap`], [`DArray::exchange_halo`] |
//! | add ghosts to owners | `DMLocalToGlobal(ADD_VALUES)` | [`DArray::accumulate_halo`] |
//! | to / from one rank | `VecScatterCreateToZero` / `comm.Scatterv`, `comm.Gatherv` | [`DArray::scatter_from`], [`DArray::gather_to`], [`DArray::all_gather`] |
//! | slab / pencil transpose | mpi4py-fft `Pencil.transfer` | [`DArray::redistribute`], [`DArray::transpose`] |
//! | reductions | `VecSum`, `VecDot`, `VecNorm`, `VecMax` | [`DArray::sum`], [`DArray::dot`], [`DArray::norm2`], [`DArray::max_loc`] |
//! | files | `VecView` (PETSc binary) / `numpy.save` on rank 0 | [`DArray::write_npy`], [`DArray::read_npy`] |
//!
//! Not covered yet: cyclic and block-cyclic layouts for [`DArray`] (the partitions exist; the array needs
//! contiguous blocks), PETSc's MIRROR boundaries, unstructured meshes, and thread-parallel local kernels
//! (the sweep is the user's; the hybrid module will size the threads).

mod darray;
mod halo;
mod io;
mod partition;
mod redistribute;
mod reduce;

pub use darray::{DArray, Ghost, Stencil};
pub use halo::HaloProgress;
pub use partition::Partition;
pub use reduce::Scalar;
pub(crate) use reduce::pairwise;
