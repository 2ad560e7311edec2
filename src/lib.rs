//! # spmd — SPMD message passing for Rust, on real MPI
//!
//! One binary, launched by `mpirun -n N`, runs as N ranks that cooperate by exchanging messages over Open MPI
//! (through the `mpi` crate, rsmpi). spmd adds what numerical programs otherwise write by hand: typed buffers that
//! move without copies, any serde value as a message, collectives for both, no size limits, clear errors, and a
//! failure policy under which a failing rank ends the job instead of hanging it.
//!
//! ```no_run
//! use spmd::Op;
//!
//! fn main() -> spmd::Result<()> {
//!     let universe = spmd::init()?;
//!     let world = universe.world();
//!     let (rank, size) = (world.rank(), world.size());
//!
//!     // Buffers: raw memory, no serialisation.
//!     let mut data = vec![0.0f64; 1000];
//!     if rank == 0 {
//!         data.fill(1.5);
//!     }
//!     world.broadcast_buf(0, &mut data)?;
//!     let total = world.all_reduce_scalar(data.iter().sum::<f64>(), Op::Sum)?;
//!
//!     // Objects: any serde value, any size.
//!     let greeting = format!("rank {rank} of {size} saw {total}");
//!     if let Some(all) = world.gather_obj(0, &greeting)? {
//!         all.iter().for_each(|g| println!("{g}"));
//!     }
//!     Ok(())
//! }
//! ```
//!
//! ## A guided tour
//! - [`mod@env`]: [`init`], thread levels, the [`Universe`] guard (communicators borrow it, so none outlives MPI),
//!   and the failure policy.
//! - [`comm`]: [`Comm`] — rank, size, duplicate, split, node-local split, barrier.
//! - [`buffer`]: the element trait [`Data`] and the [`Buffer`] / [`BufferMut`] traits (slices, `Vec`, arrays,
//!   scalars, ndarray arrays and strided views).
//! - [`p2p`]: point-to-point for buffers (`send_buf`, `recv_buf_into`, ...) and objects (`send_obj`,
//!   `recv_obj`, ...), probes, [`p2p::Status`]; and the wire protocol that keeps truncation safe.
//! - [`request`]: non-blocking operations — [`request::scope`] for borrowed buffers, owned object requests,
//!   `wait_all` / `wait_any` / `test_all`.
//! - [`collective`]: broadcast, scatter, gather, all-gather, all-to-all (also with variable counts),
//!   reductions with [`Op`] (buffers) or closures in rank order (objects), scans, reduce-scatter, non-blocking
//!   forms.
//! - [`codec`]: how objects are encoded (bincode 1.3) and [`Oob`], which sends large arrays inside objects as
//!   zero-copy messages.
//! - [`error`]: [`Error`], [`ErrorKind`], [`Result`].
//! - [`farm`]: a task farm — [`farm::Farm`] runs a function over many tasks across the ranks with a static,
//!   dynamic or guided [`farm::Schedule`], results in task order, and reports the load balance.
//!
//! Examples (run with `mpirun -n 4 target/release/examples/<name>`): `hello` (ranks, hosts, thread level),
//! `pi` (a midpoint-rule integral and a reduction), `bench` (OSU-style micro-benchmarks for both families).
//!
//! Not covered yet: Cartesian grids, distributed arrays and the hybrid (threads per rank) helpers.
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod buffer;
pub mod codec;
pub mod collective;
pub mod comm;
pub mod env;
pub mod error;
pub mod farm;
pub mod p2p;
mod raw;
pub mod request;

pub use buffer::{Buffer, BufferMut, Data, Loc};
pub use codec::Oob;
pub use collective::Op;
pub use comm::Comm;
pub use env::{Builder, FailurePolicy, ThreadLevel, Universe, init, init_thread};
pub use error::{Error, ErrorKind, Result};
pub use p2p::{ANY_SOURCE, ANY_TAG, Source, Status, Tag, TagMatch};
