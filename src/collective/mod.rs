//! Collective operations for both families: barrier, broadcast, scatter, gather, all-gather, all-to-all, reduce,
//! all-reduce, scan, exclusive scan, reduce-scatter; variable-count forms for buffers; non-blocking forms.
//!
//! # Buffers
//! `*_buf` operations are MPI's own collectives on the user's communicator (`MPI_Bcast`, `MPI_Gather`,
//! `MPI_Gatherv`, `MPI_Allreduce`, ...), on typed memory with no copies and no serialisation, so a C or mpi4py
//! rank making the mirror-image call takes part in the same collective (of an unchecked handle; a checked one
//! first agrees on sizes, below, which a C peer would have to mirror step for step, as `tests/interop/peer.c`
//! does). Reductions take an [`Op`].
//!
//! Every rank must pass sizes that agree, as in MPI — but where MPI would then write past a buffer (Open MPI does),
//! spmd first agrees on them: each buffer collective starts with one small all-reduce of the sizes, and a disagreement
//! is an [`ErrorKind::SizeMismatch`] error on every rank, naming the sizes (a mistake only one rank can see, such as a
//! root buffer of the wrong length, is reported by that rank and as "another rank" by the others). Variable-count
//! collectives exchange the actual counts instead (one value per rank), which also tells every rank how much really
//! arrives. Both are made of non-blocking point-to-point messages on a private duplicate of the communicator,
//! which the first checked collective on it makes (its own agreement is a non-blocking MPI collective on the
//! communicator itself); an agreement costs about one message exchange at two ranks (see README's performance table).
//! Each communicator that makes checked collectives thus holds a second one, freed with it (MPI libraries bound how
//! many communicators exist: MPICH to a few thousand). [`Comm::unchecked`] gives a handle without the agreement, whose
//! collectives are the bare MPI calls.
//!
//! Root-only arguments are `Option`s, and every rooted operation also comes as a pair of methods that need no
//! `None`: `*_root` (called by the root) and `*_to` / `*_from` (called by the others):
//!
//! ```no_run
//! # fn main() -> spmd::Result<()> {
//! # let universe = spmd::init()?; let world = universe.world();
//! let mine = [world.rank() as f64; 2];
//! if world.rank() == 0 {
//!     let mut all = vec![0.0; 2 * world.size()];
//!     world.gather_buf_root(&mine, &mut all)?;
//! } else {
//!     world.gather_buf_to(0, &mine)?;
//! }
//! // The same with the Option form, which infers with a typed None:
//! let mut all = vec![0.0; 2 * world.size()];
//! let recv = (world.rank() == 0).then_some(&mut all[..]);
//! world.gather_buf(0, &mine, recv)?;
//! # Ok(()) }
//! ```
//!
//! Variable counts (`MPI_Gatherv` and friends) take one count per rank:
//!
//! ```no_run
//! # fn main() -> spmd::Result<()> {
//! # let universe = spmd::init()?; let world = universe.world();
//! let mine = vec![world.rank() as u32; world.rank() + 1]; // rank r sends r + 1 values
//! if world.rank() == 0 {
//!     let counts: Vec<usize> = (1..=world.size()).collect();
//!     let mut all = vec![0u32; counts.iter().sum()];
//!     world.gather_varcount_buf_root(&mine, &mut all, &counts)?;
//! } else {
//!     world.gather_varcount_buf_to(0, &mine)?;
//! }
//! # Ok(()) }
//! ```
//!
//! Counts above `i32::MAX` work everywhere: one-block collectives describe large blocks with derived datatypes,
//! reductions run in chunks of 2^30 elements, and variable-count collectives whose counts or offsets exceed `int`
//! go through `MPI_Alltoallw` with one datatype per block (a C peer cannot express such counts in the `*v` calls
//! anyway).
//!
//! # Objects
//! `*_obj` operations take any serde value, of a different size on every rank, serialised with bincode (out-of-band
//! arrays inline). They are also MPI collectives on the communicator: the sizes travel first (a broadcast or
//! gather of one `u64` per rank), then the bytes (`MPI_Bcast`, `MPI_Gatherv`, ...). Reductions of objects take any
//! closure `Fn(T, T) -> T` and combine in rank order (`f(f(x0, x1), x2) ...`), so non-commutative operations such
//! as string concatenation give the same result on any number of processes. A failure at the root (no value, a
//! wrong item count, a value that cannot be serialised) reaches every rank as an error.
//!
//! ```no_run
//! # fn main() -> spmd::Result<()> {
//! # let universe = spmd::init()?; let world = universe.world();
//! use spmd::Op;
//! let mut sum = 0.0;
//! world.all_reduce_buf(&(world.rank() as f64), &mut sum, Op::Sum)?;
//! let names = world.all_gather_obj(&format!("rank {}", world.rank()))?;
//! let joined = world.all_reduce_obj(world.rank().to_string(), |a, b| a + &b)?; // "0123..."
//! # Ok(()) }
//! ```
//!
//! Not covered yet: neighbourhood collectives, user-defined MPI operations on buffers, non-blocking forms of the
//! variable-count collectives and of scatter/scan/reduce-scatter for objects.

mod blocks;
mod nonblocking;
mod object;
mod reduce;
mod varcount;

pub use nonblocking::CollRequest;

use crate::buffer::{Elem, ElemKind, ViewSource, ViewSourceMut};
use crate::comm::Comm;
use crate::error::{Error, ErrorKind, Result, fail};
use crate::request;
use crate::sys::coll::ScanKind;
use crate::sys::{Desc, RawComm, RawOp, RawRequest, RawResult, agree};

/// Built-in reduction operations for buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Sum (numbers).
    Sum,
    /// Product (numbers).
    Product,
    /// Minimum (numbers).
    Min,
    /// Maximum (numbers).
    Max,
    /// Logical and (integers: non-zero is true; the result is 0 or 1).
    LogicalAnd,
    /// Logical or (integers; the result is 0 or 1).
    LogicalOr,
    /// Logical exclusive or (integers; the result is 0 or 1).
    LogicalXor,
    /// Bitwise and (integers).
    BitAnd,
    /// Bitwise or (integers).
    BitOr,
    /// Bitwise exclusive or (integers).
    BitXor,
    /// The minimum value and the smallest index holding it ([`crate::Loc`] elements only).
    MinLoc,
    /// The maximum value and the smallest index holding it ([`crate::Loc`] elements only).
    MaxLoc,
}

impl Op {
    pub(crate) fn raw(self) -> RawOp {
        match self {
            Op::Sum => RawOp::Sum,
            Op::Product => RawOp::Prod,
            Op::Min => RawOp::Min,
            Op::Max => RawOp::Max,
            Op::LogicalAnd => RawOp::LAnd,
            Op::LogicalOr => RawOp::LOr,
            Op::LogicalXor => RawOp::LXor,
            Op::BitAnd => RawOp::BAnd,
            Op::BitOr => RawOp::BOr,
            Op::BitXor => RawOp::BXor,
            Op::MinLoc => RawOp::MinLoc,
            Op::MaxLoc => RawOp::MaxLoc,
        }
    }

    /// Whether the result of the operation is a truth value (0 or 1).
    pub(crate) fn is_logical(self) -> bool {
        matches!(self, Op::LogicalAnd | Op::LogicalOr | Op::LogicalXor)
    }

    /// Checks that the operation is defined for the element type.
    pub(crate) fn check(self, op: &str, elem: &Elem) -> Result<()> {
        let ok = match self {
            Op::Sum | Op::Product | Op::Min | Op::Max => matches!(elem.kind, ElemKind::Float | ElemKind::Int),
            Op::LogicalAnd | Op::LogicalOr | Op::LogicalXor | Op::BitAnd | Op::BitOr | Op::BitXor => {
                elem.kind == ElemKind::Int
            }
            Op::MinLoc | Op::MaxLoc => elem.kind == ElemKind::Loc,
        };
        if ok {
            return Ok(());
        }
        let hint = match self {
            Op::MinLoc | Op::MaxLoc => " (use spmd::Loc<f64>, Loc<f32>, Loc<i32> or Loc<i64> elements)",
            _ if elem.kind == ElemKind::Other => " (built-in operations work on numbers; reduce structs as objects)",
            _ => "",
        };
        fail(
            ErrorKind::InvalidArgument,
            format!("{op}: {self:?} is not defined for elements of {}{hint}", elem.name),
        )
    }
}

/// Reductions run in pieces of at most this many elements (MPI counts are `int`s).
pub(crate) const REDUCE_CHUNK: usize = 1 << 30;

/// A check that only this rank can make (its buffers against the agreed block size, contiguity): `None` when
/// fine.
pub(crate) type Local = Option<Error>;

impl<'u> Comm<'u> {
    pub(crate) fn check_root(&self, op: &str, root: usize) -> Result<()> {
        if root < self.size() {
            crate::runtime::watch::note_side(crate::runtime::watch::Side::Root(root));
            Ok(())
        } else {
            fail(
                ErrorKind::InvalidRank,
                format!(
                    "{op}: root {root} is not a rank of a communicator of size {}",
                    self.size()
                ),
            )
        }
    }

    /// Agrees across ranks that every rank passed the same `n` and that no rank's local check failed (one small
    /// all-reduce of non-blocking messages, see `sys::agree`; skipped on unchecked handles). On disagreement every
    /// rank returns an error.
    /// Returns whether the data phase must be non-blocking (some rank has receives pending), the same on every
    /// rank.
    pub(crate) fn agree(&self, op: &str, what: &str, n: usize, local: Local) -> Result<bool> {
        crate::runtime::watch::note_count(n);
        if !self.checked {
            return match local {
                None => Ok(false),
                Some(e) => Err(e),
            };
        }
        // Sizes as [n, !n]: the maximum of both gives the largest and the smallest `n`.
        let n64 = n as u64;
        let mine = [n64, !n64, local.is_some() as u64, request::engine::busy() as u64];
        let out = self.agree_max(op, agree::Kind::Fixed, mine, |out| *out == [n64, !n64, 0, 0])?;
        let (max, min, bad, busy) = (out[0], !out[1], out[2], out[3] != 0);
        if let Some(e) = local {
            return Err(e);
        }
        if max != min {
            return fail(
                ErrorKind::SizeMismatch,
                format!("{op}: the ranks passed different {what}: between {min} and {max} (this rank: {n})"),
            );
        }
        if bad != 0 {
            return fail(
                ErrorKind::SizeMismatch,
                format!("{op}: another rank passed a buffer of the wrong size (see its error)"),
            );
        }
        Ok(busy)
    }
}

impl Comm<'_> {
    /// Runs an agreement step of a checked collective: `over_private` on the communicator's private duplicate
    /// (see `sys::agree`) when it has one; otherwise `first`, an MPI collective on the communicator itself, after
    /// which every rank makes the duplicate if `settled` says so of the result (which must be the same on every
    /// rank, and true only if no rank reported an error and none has receives pending).
    pub(crate) fn agreement<T>(
        &self,
        op: &str,
        over_private: impl FnOnce(&RawComm, &mut dyn FnMut(&mut RawRequest) -> RawResult<()>) -> RawResult<T>,
        first: impl FnOnce() -> Result<T>,
        settled: impl FnOnce(&T) -> bool,
    ) -> Result<T> {
        if let Some(p) = self.inner.raw.private()? {
            let mut wait = |req: &mut RawRequest| request::wait_raw_code(req, op).map(|_| ());
            return over_private(&p, &mut wait).map_err(|c| c.error(op));
        }
        let out = first()?;
        if settled(&out) {
            // If making it fails (MPI fails a communicator creation on every rank), agreements stay MPI
            // collectives on every rank.
            let _ = self.inner.raw.make_private();
        }
        Ok(out)
    }

    /// An agreement that is the element-wise maximum of every rank's `mine` (of `kind`'s length; an array for
    /// the fixed-count agreement, so that it allocates nothing): over the duplicate, or first an `MPI_Iallreduce`
    /// on the communicator (see [`Comm::agreement`]).
    pub(crate) fn agree_max<V: AsRef<[u64]> + AsMut<[u64]> + Clone>(
        &self,
        op: &str,
        kind: agree::Kind,
        mine: V,
        settled: impl FnOnce(&V) -> bool,
    ) -> Result<V> {
        let (rank, size) = (self.inner.rank, self.inner.size);
        self.agreement(
            op,
            |p, wait| {
                let mut acc = mine.clone();
                agree::all_max(p, rank, size, kind, acc.as_mut(), wait).map(|()| acc)
            },
            || {
                let mut out = mine.clone();
                let (sd, rd) = (
                    Desc::of(&mine.as_ref().view())?,
                    Desc::of_mut(&out.as_mut().view_mut())?,
                );
                request::run_collective(op, true, |nb| {
                    self.inner
                        .raw
                        .allreduce_like(ScanKind::All, Some(&sd), &rd, RawOp::Max, nb)
                })?;
                Ok(out)
            },
            settled,
        )
    }
}

/// A local size error for [`Comm::agree`].
pub(crate) fn size_error(op: &str, message: String) -> Error {
    Error::new(ErrorKind::SizeMismatch, format!("{op}: {message}"))
}

/// The error for a buffer that must be contiguous.
pub(crate) fn not_contiguous(op: &str, what: &str) -> Error {
    Error::new(
        ErrorKind::NotContiguous,
        format!("{op}: the {what} must be contiguous (a standard-layout array, a slice or a Vec)"),
    )
}
