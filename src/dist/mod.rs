//! Data distribution: how items are spread over ranks.
//!
//! Covered so far: [`Partition`] — block, explicit-count, cyclic and block-cyclic partitions of `n` items over `p`
//! parts, with owner and local-index maps and the counts and displacements that the variable-count collectives
//! ([`crate::Comm::scatter_varcount_buf`], [`crate::Comm::gather_varcount_buf`]) take:
//!
//! ```no_run
//! # fn main() -> spmd::Result<()> {
//! # let universe = spmd::init()?; let world = universe.world();
//! use spmd::dist::Partition;
//! let n = 1_000_003;
//! let part = Partition::block(n, world.size());
//! let mut mine = vec![0.0f64; part.part_len(world.rank())];
//! if world.rank() == 0 {
//!     let all: Vec<f64> = (0..n).map(|i| i as f64).collect();
//!     world.scatter_varcount_buf_root(&all, &part.counts(), &mut mine)?;
//! } else {
//!     world.scatter_varcount_buf_from(0, &mut mine)?;
//! }
//! let first = part.range(world.rank()).map(|r| r.start);
//! # Ok(()) }
//! ```
//!
//! Not covered yet: Cartesian process grids, distributed n-d arrays with ghost cells and halo exchange,
//! redistribution (transposes), distributed reductions and parallel `.npy` I/O.

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
