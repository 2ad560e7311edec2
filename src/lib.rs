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
//! - [`runtime`]: [`init`], thread levels, the [`Universe`] guard (communicators borrow it, so none outlives MPI),
//!   the failure policy, and adoption of an MPI started by other code.
//! - [`comm`]: [`Comm`] — rank, size, duplicate, split, node-local split, barrier; the raw handle for C
//!   libraries; [`comm::SharedComm`] for worker threads at `MPI_THREAD_MULTIPLE`.
//! - [`buffer`]: the element trait [`Data`] and the [`Buffer`] / [`BufferMut`] traits (slices, `Vec`, arrays,
//!   scalars, ndarray arrays and strided views); [`buffer::huge_vec`] for large buffers.
//! - [`p2p`]: point-to-point for buffers (`send_buf`, `recv_buf_into`, ...) and objects (`send_obj`,
//!   `recv_obj`, ...), probes, [`Status`], null peers ([`Peer`]).
//! - [`request`]: non-blocking operations — [`request::scope`] for borrowed buffers, owned object requests,
//!   `wait_all` / `wait_any` / `test_all`.
//! - [`collective`]: broadcast, scatter, gather, all-gather, all-to-all (also with variable counts),
//!   reductions with [`Op`] (buffers) or closures in rank order (objects), scans, reduce-scatter, non-blocking
//!   forms.
//! - [`codec`]: how objects are encoded (bincode 1.3) and [`Oob`], which sends large arrays inside objects as
//!   zero-copy messages.
//! - [`topo`]: Cartesian process grids — [`topo::Grid`] from [`Comm::grid`], neighbours with no peer at the edges,
//!   rows and columns as sub-grids.
//! - [`dist`]: data distribution — [`dist::Partition`] (block, counts, cyclic, block-cyclic) and the distributed
//!   ndarray [`dist::DArray`] with ghost layers, halo exchange, scatter/gather, transposes, reductions and `.npy`
//!   files through MPI-IO.
//! - [`hybrid`]: threads inside ranks — [`hybrid::Hybrid`] sizes each rank's rayon pool to the CPUs it has to
//!   itself and reports the layout; node information, node-shared arrays ([`hybrid::NodeArray`]), hierarchical
//!   collectives, overlap with progress calls, thread-count-independent sums.
//! - [`error`]: [`Error`], [`ErrorKind`], [`Result`].
//! - [`farm`]: a task farm — [`farm::Farm`] runs a function over many tasks across the ranks with a static,
//!   dynamic or guided [`farm::Schedule`], results in task order, and reports the load balance.
//!
//! Buffer operations are the MPI calls a C program makes for the same exchange, on the same communicator: spmd
//! ranks share jobs and communicators with C, Fortran and mpi4py ranks. All `unsafe` code is in one private
//! module tree (`sys`), which enforces what MPI needs next to each call.
//!
//! ## From mpi4py
//!
//! | mpi4py | spmd |
//! |---|---|
//! | `from mpi4py import MPI`; `comm = MPI.COMM_WORLD` | `let universe = spmd::init()?; let world = universe.world();` |
//! | `comm.Get_rank()`, `comm.Get_size()` | `world.rank()`, `world.size()` |
//! | `comm.Send(buf, dest, tag)` / `comm.Recv(buf, source, tag)` | `world.send_buf(dest, tag, &buf)` / `world.recv_buf_into(source, tag, &mut buf)` |
//! | `comm.send(obj, dest, tag)` / `obj = comm.recv(source=s, tag=t)` | `world.send_obj(dest, tag, &obj)` / `let (obj, status) = world.recv_obj(s, t)?` |
//! | `MPI.ANY_SOURCE`, `MPI.ANY_TAG`, `MPI.PROC_NULL` | `spmd::ANY_SOURCE`, `spmd::ANY_TAG`, `Peer::NULL` (or `None`) |
//! | `comm.Sendrecv(sbuf, dest, ..., rbuf, source)` | `world.sendrecv_buf(dest, stag, &sbuf, source, rtag, &mut rbuf)` |
//! | `req = comm.Isend(buf, dest)`; `req.Wait()` | `scope(\|s\| { let r = world.isend_buf(s, dest, tag, &buf)?; r.wait() })` |
//! | `req = comm.irecv(source=s)`; `obj = req.wait()` | `let r = world.irecv_obj::<T>(s, tag)?; let (obj, st) = r.wait()?;` |
//! | `comm.Bcast(buf, root=0)` / `obj = comm.bcast(obj, root=0)` | `world.broadcast_buf(0, &mut buf)` / `let obj = world.broadcast_obj(0, value_at_root)?` |
//! | `comm.Allreduce(sbuf, rbuf, op=MPI.SUM)` | `world.all_reduce_buf(&sbuf, &mut rbuf, Op::Sum)` |
//! | `total = comm.allreduce(x, op=MPI.SUM)` | `let total = world.all_reduce_scalar(x, Op::Sum)?` (numbers) or `all_reduce_obj(x, \|a, b\| a + b)` |
//! | `comm.Gatherv(sbuf, (rbuf, counts), root=0)` | `world.gather_varcount_buf_root(&sbuf, &mut rbuf, &counts)` / `gather_varcount_buf_to(0, &sbuf)` |
//! | `comm.Scatterv((sbuf, counts), rbuf, root=0)` | `world.scatter_varcount_buf_root(&sbuf, &counts, &mut rbuf)` / `scatter_varcount_buf_from(0, &mut rbuf)` |
//! | `comm.Alltoallv((s, scounts), (r, rcounts))` | `world.all_to_all_varcount_buf(&s, &scounts, &mut r, &rcounts)` |
//! | `objs = comm.gather(obj, root=0)` | `let objs: Option<Vec<T>> = world.gather_obj(0, &obj)?` |
//! | `comm.Dup()`, `comm.Split(color, key)` | `world.dup()`, `world.split(Some(color), key)` |
//! | `comm.Split_type(MPI.COMM_TYPE_SHARED)` | `world.split_shared()` |
//! | `MPI.Wtime()` | `universe.time()` |
//! | `comm.Abort(code)` | `world.abort(code)` (also automatic on a panic: see [`runtime`]) |
//!
//! Examples (run with `mpirun -n 4 target/release/examples/<name>`): `hello` (ranks, hosts, thread level),
//! `pi` (a midpoint-rule integral and a reduction), `mandelbrot` (a task farm), `heat2d` (a distributed array with
//! halo exchange), `bench` (OSU-style micro-benchmarks for both families).
//!
//! Not covered yet: the hybrid (threads per rank) helpers.
#![deny(missing_docs)]
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod buffer;
pub mod codec;
pub mod collective;
pub mod comm;
pub mod dist;
pub mod error;
pub mod farm;
pub mod hybrid;
pub mod p2p;
pub mod request;
pub mod runtime;
mod sys;
pub mod topo;

pub use buffer::{Buffer, BufferMut, Data, Loc};
pub use codec::Oob;
pub use collective::Op;
pub use comm::{Comm, SharedComm};
pub use error::{Error, ErrorKind, Result};
pub use p2p::{ANY_SOURCE, ANY_TAG, Peer, Source, Status, Tag, TagMatch};
pub use runtime::{Builder, FailurePolicy, ThreadLevel, Universe, init, init_thread};

/// The traits a program needs in scope to call `wait`/`test` on requests.
pub mod prelude {
    pub use crate::request::Completion;
}
