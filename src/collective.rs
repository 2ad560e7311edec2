//! Collective operations for both families: barrier, broadcast, scatter, gather, all-gather, all-to-all, reduce,
//! all-reduce, scan, exclusive scan, reduce-scatter; variable-count forms for buffers; non-blocking forms.
//!
//! # Buffers
//! `*_buf` operations hand typed memory to MPI's own collectives (no copies, no serialisation). Reductions take an
//! [`Op`]. Every rank must pass buffers of agreeing sizes, as in MPI; with checks on (see
//! [`crate::Builder::checks`]; on by default in debug builds or with `SPMD_CHECKS=1`), every buffer collective
//! first compares the sizes across ranks and reports a disagreement on every rank as
//! [`ErrorKind::SizeMismatch`]. Without checks a disagreement is undefined (Open MPI may overwrite memory).
//!
//! Root-only inputs and results are `Option`s: the root passes `Some(buffer)`, the others `None` (ignored
//! there). A mistake only one rank can see (the root's buffer has the wrong size, a scatter of the wrong number
//! of items) ends the job through the failure policy with a message naming it, since the other ranks could not
//! learn of it and would wait forever.
//!
//! Counts above `i32::MAX` work everywhere: one-block collectives describe large blocks with derived datatypes,
//! reductions run in chunks, and variable-count collectives go through `MPI_Alltoallw` with byte offsets folded
//! into datatypes.
//!
//! # Objects
//! `*_obj` operations take any serde value, of a different size on every rank. They run as point-to-point trees
//! and rings on a private communicator, so a failure at the root (no value, wrong item count) reaches every rank
//! as an error instead of a hang. Reductions of objects take any closure `Fn(T, T) -> T` and combine in rank order
//! (`f(f(x0, x1), x2) ...` up to associativity), so non-commutative operations such as string concatenation give
//! the same result on any number of processes. Out-of-band arrays ([`crate::Oob`]) are serialised inline in
//! collectives.
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
//! Not covered yet: neighbourhood collectives, user-defined MPI operations on buffers, non-blocking forms of
//! the variable-count collectives and of scatter/scan/reduce-scatter for objects.

use std::marker::PhantomData;
use std::rc::Rc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::buffer::{Buffer, BufferMut, Data, Elem, ElemKind, View, ViewMut, ViewSource, ViewSourceMut, fast_type};
use crate::codec;
use crate::comm::{Comm, CommInner};
use crate::env::{self, Universe};
use crate::error::{Error, ErrorKind, Result, fail};
use crate::raw::{self, BlockKind, Desc, Mode, RawOp, RawRequest, ScanKind};
use crate::request::{self, Chan, Completion, Entry, Request, Scope, Target};

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
    /// Logical or (integers).
    LogicalOr,
    /// Logical exclusive or (integers).
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
    fn raw(self) -> RawOp {
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

    /// Whether the operation is defined for `T`, a type with a predefined datatype (see `fast_type`).
    #[inline]
    fn fits_number<T: 'static>(self) -> bool {
        use std::any::TypeId;
        let float = TypeId::of::<T>() == TypeId::of::<f64>() || TypeId::of::<T>() == TypeId::of::<f32>();
        match self {
            Op::Sum | Op::Product | Op::Min | Op::Max => true,
            Op::MinLoc | Op::MaxLoc => false,
            _ => !float,
        }
    }

    /// Checks that the operation is defined for the element type.
    fn check(self, op: &str, elem: &Elem) -> Result<()> {
        let ok = match self {
            Op::Sum | Op::Product | Op::Min | Op::Max => matches!(elem.kind, ElemKind::Float | ElemKind::Int),
            Op::LogicalAnd | Op::LogicalOr | Op::LogicalXor | Op::BitAnd | Op::BitOr | Op::BitXor => {
                elem.kind == ElemKind::Int
            }
            Op::MinLoc | Op::MaxLoc => elem.kind == ElemKind::Loc,
        };
        if ok {
            Ok(())
        } else {
            let hint = match self {
                Op::MinLoc | Op::MaxLoc => " (use spmd::Loc<f64>, Loc<f32>, Loc<i32> or Loc<i64> elements)",
                _ if elem.kind == ElemKind::Other => {
                    " (built-in operations work on numbers; reduce structs as objects)"
                }
                _ => "",
            };
            fail(
                ErrorKind::InvalidArgument,
                format!("{op}: {self:?} is not defined for elements of {}{hint}", elem.name),
            )
        }
    }
}

/// Reductions run in pieces of at most this many elements (MPI counts are `int`s).
const REDUCE_CHUNK: usize = 1 << 30;

/// A tag for the internal messages of one object collective: all ranks call collectives in the same order, so
/// they agree on it; consecutive collectives never share one.
fn next_tag(inner: &CommInner) -> i32 {
    let t = inner.coll_seq.get();
    inner.coll_seq.set(t.wrapping_add(1));
    (t % 32768) as i32
}

fn check_root(comm: &Comm<'_>, op: &str, root: usize) -> Result<()> {
    if root < comm.size() {
        Ok(())
    } else {
        fail(
            ErrorKind::InvalidRank,
            format!(
                "{op}: root {root} is not a rank of a communicator of size {}",
                comm.size()
            ),
        )
    }
}

/// A mistake that only this rank can see, in a collective the others are already in: ends the job through the
/// failure policy (or becomes an error under [`crate::FailurePolicy::Unwind`]).
fn misuse(op: &str, message: String) -> Error {
    env::collective_misuse(format!("{op}: {message}"))
}

fn need_contiguous(op: &str, what: &str, contiguous: bool) -> Result<()> {
    if contiguous {
        Ok(())
    } else {
        Err(misuse(
            op,
            format!("the {what} must be contiguous (a standard-layout array or a slice)"),
        ))
    }
}

impl<'u> Comm<'u> {
    /// With checks on, verifies that every rank passed the same `n` (one extra small collective).
    fn agree(&self, op: &str, what: &str, n: usize) -> Result<()> {
        if !env::checks() {
            return Ok(());
        }
        let mine = [n as i64, -(n as i64)];
        let mut out = [0i64; 2];
        let (sv, rv) = (mine.view(), out.view_mut());
        let (sd, rd) = (Desc::of(&sv)?, Desc::of_mut(&rv)?);
        request::blocking(op, |nb| {
            self.inner
                .raw
                .allreduce_like(ScanKind::All, Some(&sd), &rd, RawOp::Max, nb)
        })?;
        let (max, min) = (out[0], -out[1]);
        if max != min {
            return fail(
                ErrorKind::SizeMismatch,
                format!("{op}: the ranks disagree on {what}: between {min} and {max} (this rank: {n})"),
            );
        }
        Ok(())
    }

    // ----- buffers: one block per rank ---------------------------------------------------------------------------

    /// Broadcasts `buf` from `root` to every rank (`MPI_Bcast`); every rank passes a buffer of the same length.
    /// Any layout works, strided ndarray views included.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidRank`] for a bad root; [`ErrorKind::SizeMismatch`] with checks on; [`ErrorKind::Mpi`].
    pub fn broadcast_buf<B: BufferMut + ?Sized>(&self, root: usize, buf: &mut B) -> Result<()> {
        let op = "broadcast_buf";
        if let (Some(dt), false) = (fast_type::<B::Item>(), env::checks())
            && let Some((ptr, len)) = buf.contig_mut()
            && len <= i32::MAX as usize
            && root < self.size()
        {
            let d = Desc::contig(ptr, len, dt);
            return self
                .inner
                .raw
                .bcast(&d, root as i32, false)
                .map(|_| ())
                .map_err(|c| c.error(op));
        }
        check_root(self, op, root)?;
        let v = buf.view_mut();
        self.agree(op, "the buffer length", v.len)?;
        let d = Desc::of_mut(&v)?;
        request::blocking(op, |nb| self.inner.raw.bcast(&d, root as i32, nb))
    }

    #[inline]
    fn fast_blocks(
        &self,
        op: &str,
        kind: BlockKind,
        send: Option<&Desc>,
        recv: Option<&Desc>,
        root: usize,
    ) -> Result<()> {
        self.inner
            .raw
            .blocks(kind, send, recv, root as i32, false)
            .map(|_| ())
            .map_err(|c| c.error(op))
    }

    fn blocks_op(
        &self,
        op: &str,
        kind: BlockKind,
        send: Option<&View>,
        recv: Option<&ViewMut>,
        block: usize,
        root: usize,
    ) -> Result<()> {
        let sd = match send {
            Some(v) if matches!(kind, BlockKind::Scatter | BlockKind::Alltoall) => Some(Desc::block_of(v, 0, block)?),
            Some(v) => Some(Desc::of(v)?),
            None => None,
        };
        let rd = match recv {
            Some(v) if matches!(kind, BlockKind::Scatter) => Some(Desc::of_mut(v)?),
            Some(v) => Some(Desc::block(v, 0, block)?),
            None => None,
        };
        request::blocking(op, |nb| {
            self.inner.raw.blocks(kind, sd.as_ref(), rd.as_ref(), root as i32, nb)
        })
    }

    /// Gathers every rank's `send` (all of the same length n) into the root's `recv` (n × size elements, in rank
    /// order). Non-roots pass `None`.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidRank`]; [`ErrorKind::SizeMismatch`] with checks on; a root without a buffer of the
    /// right size ends the job (see the module docs).
    pub fn gather_buf<S, R>(&self, root: usize, send: &S, mut recv: Option<&mut R>) -> Result<()>
    where
        S: Buffer + ?Sized,
        R: BufferMut<Item = S::Item> + ?Sized,
    {
        let op = "gather_buf";
        if let (Some(dt), false) = (fast_type::<S::Item>(), env::checks())
            && let Some((sp, n)) = send.contig()
            && n <= i32::MAX as usize
            && root < self.size()
        {
            let sd = Desc::contig(sp, n, dt);
            if self.rank() != root {
                return self.fast_blocks(op, BlockKind::Gather, Some(&sd), None, root);
            }
            if let Some(r) = recv.as_deref_mut()
                && let Some((rp, rn)) = r.contig_mut()
                && rn == n * self.size()
            {
                let rd = Desc::contig(rp, n, dt);
                return self.fast_blocks(op, BlockKind::Gather, Some(&sd), Some(&rd), root);
            }
            // Anything else at the root: the general path reports it.
        }
        check_root(self, op, root)?;
        let sv = send.view();
        self.agree(op, "the send length", sv.len)?;
        let n = sv.len;
        if self.rank() != root {
            return self.blocks_op(op, BlockKind::Gather, Some(&sv), None, n, root);
        }
        let Some(recv) = recv else {
            return Err(misuse(op, "the root must pass a receive buffer".into()));
        };
        let rv = recv.view_mut();
        if rv.len != n * self.size() {
            return Err(misuse(
                op,
                format!(
                    "the root's receive buffer holds {} elements, {} ranks × {n} are needed",
                    rv.len,
                    self.size()
                ),
            ));
        }
        need_contiguous(op, "receive buffer", rv.is_contiguous())?;
        self.blocks_op(op, BlockKind::Gather, Some(&sv), Some(&rv), n, root)
    }

    /// Gathers every rank's `send` into a new `Vec` on the root (`None` elsewhere).
    ///
    /// # Errors
    /// As [`Comm::gather_buf`].
    pub fn gather_buf_vec<S: Buffer + ?Sized>(&self, root: usize, send: &S) -> Result<Option<Vec<S::Item>>> {
        if self.rank() == root {
            let mut out: Vec<S::Item> = bytemuck::zeroed_vec(send.count() * self.size());
            self.gather_buf(root, send, Some(&mut out[..]))?;
            Ok(Some(out))
        } else {
            self.gather_buf::<S, [S::Item]>(root, send, None)?;
            Ok(None)
        }
    }

    /// Scatters the root's `send` (n × size elements) in blocks of n, block r to rank r's `recv` (n elements).
    /// Non-roots pass `None`.
    ///
    /// # Errors
    /// As [`Comm::gather_buf`].
    pub fn scatter_buf<S, R>(&self, root: usize, send: Option<&S>, recv: &mut R) -> Result<()>
    where
        S: Buffer + ?Sized,
        R: BufferMut<Item = S::Item> + ?Sized,
    {
        let op = "scatter_buf";
        if let (Some(dt), false) = (fast_type::<S::Item>(), env::checks())
            && let Some((rp, n)) = recv.contig_mut()
            && n <= i32::MAX as usize
            && root < self.size()
        {
            let rd = Desc::contig(rp, n, dt);
            if self.rank() != root {
                return self.fast_blocks(op, BlockKind::Scatter, None, Some(&rd), root);
            }
            if let Some(send) = send
                && let Some((sp, sn)) = send.contig()
                && sn == n * self.size()
            {
                let sd = Desc::contig(sp, n, dt);
                return self.fast_blocks(op, BlockKind::Scatter, Some(&sd), Some(&rd), root);
            }
            // Anything else at the root: the general path reports it.
        }
        check_root(self, op, root)?;
        let rv = recv.view_mut();
        self.agree(op, "the receive length", rv.len)?;
        let n = rv.len;
        if self.rank() != root {
            return self.blocks_op(op, BlockKind::Scatter, None, Some(&rv), n, root);
        }
        let Some(send) = send else {
            return Err(misuse(op, "the root must pass a send buffer".into()));
        };
        let sv = send.view();
        if sv.len != n * self.size() {
            return Err(misuse(
                op,
                format!(
                    "the root's send buffer holds {} elements, {} ranks × {n} are needed",
                    sv.len,
                    self.size()
                ),
            ));
        }
        need_contiguous(op, "send buffer", sv.is_contiguous())?;
        self.blocks_op(op, BlockKind::Scatter, Some(&sv), Some(&rv), n, root)
    }

    /// Gathers every rank's `send` (all of length n) into every rank's `recv` (n × size, rank order).
    ///
    /// # Errors
    /// [`ErrorKind::SizeMismatch`] with checks on; a `recv` of the wrong length ends the job.
    pub fn all_gather_buf<S, R>(&self, send: &S, recv: &mut R) -> Result<()>
    where
        S: Buffer + ?Sized,
        R: BufferMut<Item = S::Item> + ?Sized,
    {
        let op = "all_gather_buf";
        if let (Some(dt), false) = (fast_type::<S::Item>(), env::checks())
            && let Some((sp, n)) = send.contig()
            && let Some((rp, rn)) = recv.contig_mut()
            && n <= i32::MAX as usize
            && rn == n * self.size()
        {
            let (sd, rd) = (Desc::contig(sp, n, dt), Desc::contig(rp, n, dt));
            return self.fast_blocks(op, BlockKind::Allgather, Some(&sd), Some(&rd), 0);
        }
        let sv = send.view();
        self.agree(op, "the send length", sv.len)?;
        let rv = recv.view_mut();
        if rv.len != sv.len * self.size() {
            return Err(misuse(
                op,
                format!(
                    "the receive buffer holds {} elements, {} × {} are needed",
                    rv.len,
                    self.size(),
                    sv.len
                ),
            ));
        }
        need_contiguous(op, "receive buffer", rv.is_contiguous())?;
        self.blocks_op(op, BlockKind::Allgather, Some(&sv), Some(&rv), sv.len, 0)
    }

    /// [`Comm::all_gather_buf`] into a new `Vec`.
    ///
    /// # Errors
    /// As [`Comm::all_gather_buf`].
    pub fn all_gather_buf_vec<S: Buffer + ?Sized>(&self, send: &S) -> Result<Vec<S::Item>> {
        let mut out: Vec<S::Item> = bytemuck::zeroed_vec(send.count() * self.size());
        self.all_gather_buf(send, &mut out[..])?;
        Ok(out)
    }

    /// Every rank sends block r of its `send` (n × size elements) to rank r, which stores it as block (sender) of
    /// its `recv` (n × size).
    ///
    /// # Errors
    /// [`ErrorKind::SizeMismatch`] with checks on; buffers whose length is not size × n end the job.
    pub fn all_to_all_buf<S, R>(&self, send: &S, recv: &mut R) -> Result<()>
    where
        S: Buffer + ?Sized,
        R: BufferMut<Item = S::Item> + ?Sized,
    {
        let op = "all_to_all_buf";
        let p = self.size();
        if let (Some(dt), false) = (fast_type::<S::Item>(), env::checks())
            && let Some((sp, sn)) = send.contig()
            && let Some((rp, rn)) = recv.contig_mut()
            && sn == rn
            && sn % p == 0
            && sn / p <= i32::MAX as usize
        {
            let (sd, rd) = (Desc::contig(sp, sn / p, dt), Desc::contig(rp, sn / p, dt));
            return self.fast_blocks(op, BlockKind::Alltoall, Some(&sd), Some(&rd), 0);
        }
        let (sv, rv) = (send.view(), recv.view_mut());
        if sv.len % p != 0 || rv.len != sv.len {
            return Err(misuse(
                op,
                format!(
                    "send ({}) and receive ({}) buffers must both hold {p} equal blocks",
                    sv.len, rv.len
                ),
            ));
        }
        self.agree(op, "the block length", sv.len / p)?;
        need_contiguous(op, "send buffer", sv.is_contiguous())?;
        need_contiguous(op, "receive buffer", rv.is_contiguous())?;
        self.blocks_op(op, BlockKind::Alltoall, Some(&sv), Some(&rv), sv.len / p, 0)
    }

    // ----- buffers: variable counts --------------------------------------------------------------------------

    fn alltoallw_op(&self, op: &str, send: &[Option<Desc>], recv: &[Option<Desc>]) -> Result<()> {
        self.inner
            .raw
            .alltoallw(send, recv, false)
            .map(|_| ())
            .map_err(|c| c.error(op))
    }

    /// Gathers a different number of elements from every rank into the root's `recv`, packed in rank order:
    /// the root passes the buffer and the per-rank `counts`; non-roots pass `None`.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidRank`]; at the root, counts that do not match the buffer end the job.
    pub fn gather_varcount_buf<S, R>(&self, root: usize, send: &S, recv: Option<(&mut R, &[usize])>) -> Result<()>
    where
        S: Buffer + ?Sized,
        R: BufferMut<Item = S::Item> + ?Sized,
    {
        let op = "gather_varcount_buf";
        check_root(self, op, root)?;
        let p = self.size();
        let sv = send.view();
        let mut sends: Vec<Option<Desc>> = (0..p).map(|_| None).collect();
        let mut recvs: Vec<Option<Desc>> = (0..p).map(|_| None).collect();
        sends[root] = Some(Desc::of(&sv)?);
        let rv;
        if self.rank() == root {
            let Some((recv, counts)) = recv else {
                return Err(misuse(op, "the root must pass a receive buffer and counts".into()));
            };
            rv = recv.view_mut();
            self.check_counts(op, counts, rv.len, "receive")?;
            need_contiguous(op, "receive buffer", rv.is_contiguous())?;
            if counts[root] != sv.len {
                return Err(misuse(
                    op,
                    format!("the root sends {} elements but counts say {}", sv.len, counts[root]),
                ));
            }
            let mut off = 0;
            for (r, &c) in counts.iter().enumerate() {
                recvs[r] = Some(Desc::block(&rv, off, c)?);
                off += c;
            }
        }
        self.alltoallw_op(op, &sends, &recvs)
    }

    /// Scatters the root's `send`, packed in rank order with per-rank `counts`, to every rank's `recv` (which
    /// must hold exactly its count). Non-roots pass `None`.
    ///
    /// # Errors
    /// As [`Comm::gather_varcount_buf`]; a rank whose `recv` does not fit its part gets a truncation error.
    pub fn scatter_varcount_buf<S, R>(&self, root: usize, send: Option<(&S, &[usize])>, recv: &mut R) -> Result<()>
    where
        S: Buffer + ?Sized,
        R: BufferMut<Item = S::Item> + ?Sized,
    {
        let op = "scatter_varcount_buf";
        check_root(self, op, root)?;
        let p = self.size();
        let rv = recv.view_mut();
        let mut sends: Vec<Option<Desc>> = (0..p).map(|_| None).collect();
        let mut recvs: Vec<Option<Desc>> = (0..p).map(|_| None).collect();
        recvs[root] = Some(Desc::of_mut(&rv)?);
        let sv;
        if self.rank() == root {
            let Some((send, counts)) = send else {
                return Err(misuse(op, "the root must pass a send buffer and counts".into()));
            };
            sv = send.view();
            self.check_counts(op, counts, sv.len, "send")?;
            need_contiguous(op, "send buffer", sv.is_contiguous())?;
            if counts[root] != rv.len {
                return Err(misuse(
                    op,
                    format!("the root receives {} elements but counts say {}", rv.len, counts[root]),
                ));
            }
            let mut off = 0;
            for (r, &c) in counts.iter().enumerate() {
                sends[r] = Some(Desc::block_of(&sv, off, c)?);
                off += c;
            }
        }
        self.alltoallw_op(op, &sends, &recvs)
    }

    fn check_counts(&self, op: &str, counts: &[usize], len: usize, what: &str) -> Result<()> {
        if counts.len() != self.size() {
            return Err(misuse(
                op,
                format!("{} counts given for {} ranks", counts.len(), self.size()),
            ));
        }
        let total: usize = counts.iter().sum();
        if total != len {
            return Err(misuse(
                op,
                format!("the counts add up to {total} but the {what} buffer holds {len} elements"),
            ));
        }
        Ok(())
    }

    /// Gathers a different number of elements from every rank into every rank's `recv`, packed in rank order;
    /// every rank passes the same `counts`.
    ///
    /// # Errors
    /// [`ErrorKind::SizeMismatch`] if `counts` does not fit the buffers (every rank sees it when all pass the
    /// same counts).
    pub fn all_gather_varcount_buf<S, R>(&self, send: &S, recv: &mut R, counts: &[usize]) -> Result<()>
    where
        S: Buffer + ?Sized,
        R: BufferMut<Item = S::Item> + ?Sized,
    {
        let op = "all_gather_varcount_buf";
        let p = self.size();
        let (sv, rv) = (send.view(), recv.view_mut());
        if counts.len() != p || counts.iter().sum::<usize>() != rv.len || counts[self.rank()] != sv.len {
            return fail(
                ErrorKind::SizeMismatch,
                format!(
                    "{op}: counts {counts:?} do not fit a send of {} and a receive of {} elements on rank {} of {p}",
                    sv.len,
                    rv.len,
                    self.rank()
                ),
            );
        }
        need_contiguous(op, "receive buffer", rv.is_contiguous())?;
        let sends: Vec<Option<Desc>> = (0..p).map(|_| Desc::of(&sv).ok()).collect();
        let mut recvs = Vec::with_capacity(p);
        let mut off = 0;
        for &c in counts {
            recvs.push(Some(Desc::block(&rv, off, c)?));
            off += c;
        }
        self.alltoallw_op(op, &sends, &recvs)
    }

    /// Every rank sends `send_counts[r]` elements (packed in rank order in `send`) to rank r and receives
    /// `recv_counts[r]` elements from rank r (packed in rank order in `recv`).
    ///
    /// # Errors
    /// [`ErrorKind::SizeMismatch`] if the counts do not fit the buffers; counts that disagree between sender and
    /// receiver end in a truncation error or the job's end.
    pub fn all_to_all_varcount_buf<S, R>(
        &self,
        send: &S,
        send_counts: &[usize],
        recv: &mut R,
        recv_counts: &[usize],
    ) -> Result<()>
    where
        S: Buffer + ?Sized,
        R: BufferMut<Item = S::Item> + ?Sized,
    {
        let op = "all_to_all_varcount_buf";
        let p = self.size();
        let (sv, rv) = (send.view(), recv.view_mut());
        if send_counts.len() != p
            || recv_counts.len() != p
            || send_counts.iter().sum::<usize>() != sv.len
            || recv_counts.iter().sum::<usize>() != rv.len
        {
            return Err(misuse(
                op,
                format!(
                    "counts ({send_counts:?} to send, {recv_counts:?} to receive) do not fit buffers of {} and {} elements",
                    sv.len, rv.len
                ),
            ));
        }
        need_contiguous(op, "send buffer", sv.is_contiguous())?;
        need_contiguous(op, "receive buffer", rv.is_contiguous())?;
        let (mut sends, mut recvs) = (Vec::with_capacity(p), Vec::with_capacity(p));
        let (mut so, mut ro) = (0, 0);
        for r in 0..p {
            sends.push(Some(Desc::block_of(&sv, so, send_counts[r])?));
            recvs.push(Some(Desc::block(&rv, ro, recv_counts[r])?));
            so += send_counts[r];
            ro += recv_counts[r];
        }
        self.alltoallw_op(op, &sends, &recvs)
    }

    // ----- buffers: reductions ----------------------------------------------------------------------------------

    /// Runs a reduction in pieces of at most [`REDUCE_CHUNK`] elements.
    /// Runs `f(offset, count)` over pieces of at most [`REDUCE_CHUNK`] elements (at least one piece).
    fn chunked(&self, op: &str, len: usize, mut f: impl FnMut(usize, usize) -> Result<raw::Started>) -> Result<()> {
        let mut off = 0;
        loop {
            let n = (len - off).min(REDUCE_CHUNK);
            f(off, n)?.map(|_| ()).map_err(|c| c.error(op))?;
            off += n;
            if off >= len {
                return Ok(());
            }
        }
    }

    /// Combines every rank's `send` element-wise with `op` into the root's `recv` (same length); non-roots pass
    /// `None`.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidRank`]; [`ErrorKind::InvalidArgument`] if `op` is not defined for the element type;
    /// [`ErrorKind::SizeMismatch`] with checks on; a root without a fitting buffer ends the job.
    pub fn reduce_buf<S, R>(&self, root: usize, send: &S, mut recv: Option<&mut R>, op: Op) -> Result<()>
    where
        S: Buffer + ?Sized,
        R: BufferMut<Item = S::Item> + ?Sized,
    {
        let name = "reduce_buf";
        if let (Some(dt), false) = (fast_type::<S::Item>(), env::checks())
            && let Some((sp, n)) = send.contig()
            && n <= REDUCE_CHUNK
            && root < self.size()
            && op.fits_number::<S::Item>()
        {
            let sd = Desc::contig(sp, n, dt);
            let rd = if self.rank() != root {
                Some(None)
            } else {
                match recv.as_deref_mut().and_then(|r| r.contig_mut()) {
                    Some((rp, rn)) if rn == n => Some(Some(Desc::contig(rp, n, dt))),
                    _ => None, // the general path reports it
                }
            };
            if let Some(rd) = rd {
                return self
                    .inner
                    .raw
                    .reduce(Some(&sd), rd.as_ref(), op.raw(), root as i32, false)
                    .map(|_| ())
                    .map_err(|c| c.error(name));
            }
        }
        check_root(self, name, root)?;
        let sv = send.view();
        op.check(name, &sv.elem)?;
        self.agree(name, "the buffer length", sv.len)?;
        need_contiguous(name, "send buffer", sv.is_contiguous())?;
        let rv = if self.rank() == root {
            let Some(recv) = recv else {
                return Err(misuse(name, "the root must pass a receive buffer".into()));
            };
            let rv = recv.view_mut();
            if rv.len != sv.len {
                return Err(misuse(
                    name,
                    format!("send holds {} elements but receive {}", sv.len, rv.len),
                ));
            }
            need_contiguous(name, "receive buffer", rv.is_contiguous())?;
            Some(rv)
        } else {
            None
        };
        self.chunked(name, sv.len, |off, n| {
            let sd = Desc::block_of(&sv, off, n)?;
            let rd = rv.as_ref().map(|rv| Desc::block(rv, off, n)).transpose()?;
            Ok(self
                .inner
                .raw
                .reduce(Some(&sd), rd.as_ref(), op.raw(), root as i32, false))
        })
    }

    #[inline]
    fn reduce_like<S, R>(&self, name: &str, kind: ScanKind, send: Option<&S>, recv: &mut R, op: Op) -> Result<()>
    where
        S: Buffer + ?Sized,
        R: BufferMut<Item = S::Item> + ?Sized,
    {
        if let (Some(dt), false) = (fast_type::<S::Item>(), env::checks())
            && op.fits_number::<S::Item>()
            && let Some((rp, n)) = recv.contig_mut()
            && n <= REDUCE_CHUNK
        {
            let rd = Desc::contig(rp, n, dt);
            let sd = match send.map(|s| s.contig()) {
                None => None,
                Some(Some((sp, sn))) if sn == n => Some(Desc::contig(sp, n, dt)),
                Some(_) => return self.reduce_like_general(name, kind, send, recv, op),
            };
            return self
                .inner
                .raw
                .allreduce_like(kind, sd.as_ref(), &rd, op.raw(), false)
                .map(|_| ())
                .map_err(|c| c.error(name));
        }
        self.reduce_like_general(name, kind, send, recv, op)
    }

    #[inline(never)]
    fn reduce_like_general<S, R>(
        &self,
        name: &str,
        kind: ScanKind,
        send: Option<&S>,
        recv: &mut R,
        op: Op,
    ) -> Result<()>
    where
        S: Buffer + ?Sized,
        R: BufferMut<Item = S::Item> + ?Sized,
    {
        let rv = recv.view_mut();
        op.check(name, &rv.elem)?;
        let sv = send.map(|s| s.view());
        if let Some(sv) = &sv {
            if sv.len != rv.len {
                return Err(misuse(
                    name,
                    format!("send holds {} elements but receive {}", sv.len, rv.len),
                ));
            }
            need_contiguous(name, "send buffer", sv.is_contiguous())?;
        }
        self.agree(name, "the buffer length", rv.len)?;
        need_contiguous(name, "receive buffer", rv.is_contiguous())?;
        self.chunked(name, rv.len, |off, n| {
            let sd = sv.as_ref().map(|sv| Desc::block_of(sv, off, n)).transpose()?;
            let rd = Desc::block(&rv, off, n)?;
            Ok(self.inner.raw.allreduce_like(kind, sd.as_ref(), &rd, op.raw(), false))
        })
    }

    /// Combines every rank's `send` element-wise with `op`; every rank gets the result in `recv`.
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// let mut total = 0u64;
    /// world.all_reduce_buf(&(world.rank() as u64), &mut total, spmd::Op::Sum)?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] if `op` is not defined for the element type; [`ErrorKind::SizeMismatch`]
    /// with checks on; buffers of different lengths end the job.
    pub fn all_reduce_buf<S, R>(&self, send: &S, recv: &mut R, op: Op) -> Result<()>
    where
        S: Buffer + ?Sized,
        R: BufferMut<Item = S::Item> + ?Sized,
    {
        self.reduce_like("all_reduce_buf", ScanKind::All, Some(send), recv, op)
    }

    /// Reduces one value per rank to `root`: `Some(result)` there, `None` elsewhere.
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// if let Some(total) = world.reduce_scalar(0, world.rank() as u64, spmd::Op::Sum)? {
    ///     println!("sum of ranks: {total}");
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Comm::reduce_buf`].
    pub fn reduce_scalar<T: Data>(&self, root: usize, value: T, op: Op) -> Result<Option<T>> {
        let mut out = [value];
        if self.rank() == root {
            self.reduce_buf(root, &[value], Some(&mut out[..]), op)?;
            Ok(Some(out[0]))
        } else {
            self.reduce_buf::<[T], [T]>(root, &[value], None, op)?;
            Ok(None)
        }
    }

    /// Reduces one value per rank; every rank gets the result.
    ///
    /// # Errors
    /// As [`Comm::all_reduce_buf`].
    pub fn all_reduce_scalar<T: Data>(&self, value: T, op: Op) -> Result<T> {
        let mut out = [value];
        self.all_reduce_buf(&[value], &mut out[..], op)?;
        Ok(out[0])
    }

    /// [`Comm::all_reduce_buf`] in place: `buf` holds this rank's input and receives the result.
    ///
    /// # Errors
    /// As [`Comm::all_reduce_buf`].
    pub fn all_reduce_buf_in_place<B: BufferMut + ?Sized>(&self, buf: &mut B, op: Op) -> Result<()> {
        self.reduce_like::<B, B>("all_reduce_buf_in_place", ScanKind::All, None, buf, op)
    }

    /// Inclusive prefix reduction: rank r gets `send(0) op ... op send(r)`.
    ///
    /// # Errors
    /// As [`Comm::all_reduce_buf`].
    pub fn scan_buf<S, R>(&self, send: &S, recv: &mut R, op: Op) -> Result<()>
    where
        S: Buffer + ?Sized,
        R: BufferMut<Item = S::Item> + ?Sized,
    {
        self.reduce_like("scan_buf", ScanKind::Scan, Some(send), recv, op)
    }

    /// Exclusive prefix reduction: rank r > 0 gets `send(0) op ... op send(r-1)`; rank 0's `recv` is left as it
    /// was (MPI defines no value there).
    ///
    /// # Errors
    /// As [`Comm::all_reduce_buf`].
    pub fn exscan_buf<S, R>(&self, send: &S, recv: &mut R, op: Op) -> Result<()>
    where
        S: Buffer + ?Sized,
        R: BufferMut<Item = S::Item> + ?Sized,
    {
        self.reduce_like("exscan_buf", ScanKind::Exscan, Some(send), recv, op)
    }

    /// Reduces `send` (size × n elements) element-wise and scatters the result: rank r gets block r in `recv`
    /// (n elements).
    ///
    /// # Errors
    /// As [`Comm::all_reduce_buf`].
    pub fn reduce_scatter_block_buf<S, R>(&self, send: &S, recv: &mut R, op: Op) -> Result<()>
    where
        S: Buffer + ?Sized,
        R: BufferMut<Item = S::Item> + ?Sized,
    {
        let name = "reduce_scatter_block_buf";
        let (sv, rv) = (send.view(), recv.view_mut());
        op.check(name, &rv.elem)?;
        if sv.len != rv.len * self.size() {
            return Err(misuse(
                name,
                format!(
                    "send holds {} elements, {} × {} are needed",
                    sv.len,
                    self.size(),
                    rv.len
                ),
            ));
        }
        self.agree(name, "the block length", rv.len)?;
        need_contiguous(name, "send buffer", sv.is_contiguous())?;
        need_contiguous(name, "receive buffer", rv.is_contiguous())?;
        let (sd, rd) = (Desc::of(&sv)?, Desc::of_mut(&rv)?);
        if rv.len > i32::MAX as usize {
            return fail(
                ErrorKind::InvalidArgument,
                format!("{name}: blocks above i32::MAX elements are not supported"),
            );
        }
        request::blocking(name, |nb| self.inner.raw.reduce_scatter_block(&sd, &rd, op.raw(), nb))
    }

    /// Reduces `send` element-wise and scatters the result in blocks of `counts[r]` elements to rank r's `recv`.
    /// Every rank passes the same `counts`.
    ///
    /// # Errors
    /// [`ErrorKind::SizeMismatch`] if `counts` does not fit the buffers; as [`Comm::all_reduce_buf`].
    pub fn reduce_scatter_buf<S, R>(&self, send: &S, recv: &mut R, counts: &[usize], op: Op) -> Result<()>
    where
        S: Buffer + ?Sized,
        R: BufferMut<Item = S::Item> + ?Sized,
    {
        let name = "reduce_scatter_buf";
        let (sv, rv) = (send.view(), recv.view_mut());
        op.check(name, &rv.elem)?;
        if counts.len() != self.size() || counts.iter().sum::<usize>() != sv.len || counts[self.rank()] != rv.len {
            return fail(
                ErrorKind::SizeMismatch,
                format!(
                    "{name}: counts {counts:?} do not fit a send of {} and a receive of {} elements",
                    sv.len, rv.len
                ),
            );
        }
        if counts.iter().any(|&c| c > i32::MAX as usize) {
            return fail(
                ErrorKind::InvalidArgument,
                format!("{name}: blocks above i32::MAX elements are not supported"),
            );
        }
        need_contiguous(name, "send buffer", sv.is_contiguous())?;
        need_contiguous(name, "receive buffer", rv.is_contiguous())?;
        let c: Vec<i32> = counts.iter().map(|&c| c as i32).collect();
        let (sd, rd) = (Desc::of(&sv)?, Desc::of_mut(&rv)?);
        request::blocking(name, |nb| self.inner.raw.reduce_scatter(&sd, &rd, &c, op.raw(), nb))
    }

    // ----- buffers: non-blocking --------------------------------------------------------------------------------

    /// Starts a barrier; it completes once every rank has started it.
    ///
    /// # Errors
    /// [`ErrorKind::Mpi`].
    pub fn ibarrier(&self) -> Result<CollRequest<'u, ()>> {
        let req = self
            .inner
            .raw
            .barrier_nb(true)
            .map_err(|c| c.error("ibarrier"))?
            .expect("non-blocking");
        Ok(CollRequest::raw(req, "ibarrier"))
    }

    /// Starts a broadcast of a buffer borrowed for the scope.
    ///
    /// # Errors
    /// As [`Comm::broadcast_buf`] (without the size check).
    pub fn ibroadcast_buf<'scope, B: BufferMut + ?Sized>(
        &self,
        scope: &'scope Scope<'scope, '_>,
        root: usize,
        buf: &'scope mut B,
    ) -> Result<Request<'scope>> {
        let op = "ibroadcast_buf";
        check_root(self, op, root)?;
        let v = buf.view_mut();
        let d = Desc::of_mut(&v)?;
        let req = self
            .inner
            .raw
            .bcast(&d, root as i32, true)
            .map_err(|c| c.error(op))?
            .expect("non-blocking");
        Ok(scope.add_raw(req, op, 0))
    }

    /// Starts an all-reduce of buffers borrowed for the scope.
    ///
    /// # Errors
    /// As [`Comm::all_reduce_buf`] (no checks, at most `i32::MAX` elements).
    pub fn iall_reduce_buf<'scope, S, R>(
        &self,
        scope: &'scope Scope<'scope, '_>,
        send: &'scope S,
        recv: &'scope mut R,
        op: Op,
    ) -> Result<Request<'scope>>
    where
        S: Buffer + ?Sized,
        R: BufferMut<Item = S::Item> + ?Sized,
    {
        let name = "iall_reduce_buf";
        let (sv, rv) = (send.view(), recv.view_mut());
        op.check(name, &rv.elem)?;
        if sv.len != rv.len || rv.len > i32::MAX as usize {
            return Err(misuse(
                name,
                format!("send holds {} elements but receive {}", sv.len, rv.len),
            ));
        }
        need_contiguous(name, "send buffer", sv.is_contiguous())?;
        need_contiguous(name, "receive buffer", rv.is_contiguous())?;
        let (sd, rd) = (Desc::of(&sv)?, Desc::of_mut(&rv)?);
        let req = self
            .inner
            .raw
            .allreduce_like(ScanKind::All, Some(&sd), &rd, op.raw(), true)
            .map_err(|c| c.error(name))?
            .expect("non-blocking");
        Ok(scope.add_raw(req, name, 0))
    }

    /// Starts a gather of buffers borrowed for the scope (see [`Comm::gather_buf`]).
    ///
    /// # Errors
    /// As [`Comm::gather_buf`] (no checks).
    pub fn igather_buf<'scope, S, R>(
        &self,
        scope: &'scope Scope<'scope, '_>,
        root: usize,
        send: &'scope S,
        recv: Option<&'scope mut R>,
    ) -> Result<Request<'scope>>
    where
        S: Buffer + ?Sized,
        R: BufferMut<Item = S::Item> + ?Sized,
    {
        let op = "igather_buf";
        check_root(self, op, root)?;
        let sv = send.view();
        let n = sv.len;
        let sd = Desc::of(&sv)?;
        let rv = if self.rank() == root {
            let Some(recv) = recv else {
                return Err(misuse(op, "the root must pass a receive buffer".into()));
            };
            let rv = recv.view_mut();
            if rv.len != n * self.size() {
                return Err(misuse(
                    op,
                    format!(
                        "the root's receive buffer holds {} elements, {} × {n} are needed",
                        rv.len,
                        self.size()
                    ),
                ));
            }
            need_contiguous(op, "receive buffer", rv.is_contiguous())?;
            Some(rv)
        } else {
            None
        };
        let rd = match &rv {
            Some(rv) => Some(Desc::block(rv, 0, n)?),
            None => None,
        };
        let req = self
            .inner
            .raw
            .blocks(BlockKind::Gather, Some(&sd), rd.as_ref(), root as i32, true)
            .map_err(|c| c.error(op))?
            .expect("non-blocking");
        Ok(scope.add_raw(req, op, 0))
    }

    // ----- objects: internal point-to-point on the private communicator ------------------------------------------

    /// Sends packet bytes to `dest` on the collective communicator (any size: the receiver probes first).
    fn coll_send(&self, op: &str, dest: usize, tag: i32, bytes: &[u8]) -> Result<()> {
        let d = Desc::bytes(bytes)?;
        self.inner
            .coll
            .send(&d, dest as i32, tag, Mode::Standard)
            .map_err(|c| c.error(&format!("{op}: sending to rank {dest}")))
    }

    /// Receives packet bytes from `source` on the collective communicator.
    fn coll_recv(&self, op: &str, source: usize, tag: i32) -> Result<Vec<u8>> {
        let ctx = || format!("{op}: receiving from rank {source}");
        let (msg, st) = self
            .inner
            .coll
            .mprobe(source as i32, tag)
            .map_err(|c| c.error(&ctx()))?;
        let mut buf = vec![0u8; st.bytes];
        let d = Desc::bytes_mut(&mut buf)?;
        msg.recv(&d).map_err(|(c, _)| c.error(&ctx()))?;
        Ok(buf)
    }

    /// Sends to `dest` and receives from `source` without deadlock (non-blocking send, then receive).
    fn coll_sendrecv(&self, op: &str, dest: usize, bytes: &[u8], source: usize, tag: i32) -> Result<Vec<u8>> {
        let d = Desc::bytes(bytes)?;
        let req = self
            .inner
            .coll
            .isend(&d, dest as i32, tag, Mode::Standard)
            .map_err(|c| c.error(&format!("{op}: sending to rank {dest}")))?;
        let r = self.coll_recv(op, source, tag);
        let w = request::finish_sends(vec![req], op);
        let out = r?;
        w?;
        Ok(out)
    }

    fn decode_packet<T: DeserializeOwned>(&self, op: &str, source: usize, bytes: &[u8]) -> Result<T> {
        codec::decode_inline(bytes, &|| format!("{op} from rank {source}"))
    }

    // ----- objects: blocking ------------------------------------------------------------------------------------

    /// Broadcasts an object from `root`: the root passes `Some(value)` and gets it back; every other rank passes
    /// `None` (a value there is ignored) and gets a copy.
    ///
    /// # Errors
    /// On every rank: [`ErrorKind::InvalidArgument`] if the root passed `None` (the root's error names it);
    /// [`ErrorKind::InvalidRank`] for a bad root; [`ErrorKind::Encode`] / [`ErrorKind::Decode`].
    pub fn broadcast_obj<T: Serialize + DeserializeOwned>(&self, root: usize, value: Option<T>) -> Result<T> {
        let op = "broadcast_obj";
        check_root(self, op, root)?;
        let tag = next_tag(&self.inner);
        let (p, vr) = (self.size(), (self.rank() + self.size() - root) % self.size());
        let mut root_error = None;
        let packet = if vr == 0 {
            match &value {
                Some(v) => codec::encode_inline(v)?,
                None => {
                    let msg = format!("{op}: the root (rank {root}) passed no value");
                    root_error = Some(msg.clone());
                    codec::error_packet(&msg)
                }
            }
        } else {
            let mut mask = 1;
            let mut got = None;
            while mask < p {
                if vr & mask != 0 {
                    let src = (vr - mask + root) % p;
                    got = Some(self.coll_recv(op, src, tag)?);
                    break;
                }
                mask <<= 1;
            }
            got.expect("a non-root has a parent")
        };
        // Forward down the tree.
        let mut mask = 1;
        while mask < p && vr & mask == 0 {
            mask <<= 1;
        }
        let mut m = if vr == 0 { p.next_power_of_two() >> 1 } else { mask >> 1 };
        while m > 0 {
            if vr + m < p {
                self.coll_send(op, (vr + m + root) % p, tag, &packet)?;
            }
            m >>= 1;
        }
        if let Some(msg) = root_error {
            return fail(ErrorKind::InvalidArgument, msg);
        }
        match value {
            Some(v) if vr == 0 => Ok(v),
            _ => self.decode_packet(op, root, &packet),
        }
    }

    /// Gathers every rank's object to `root`: `Some(values in rank order)` there, `None` elsewhere.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidRank`]; encode/decode errors (a rank that cannot encode its value sends the error to
    /// the root, which reports it).
    pub fn gather_obj<T: Serialize + DeserializeOwned>(&self, root: usize, value: &T) -> Result<Option<Vec<T>>> {
        let op = "gather_obj";
        check_root(self, op, root)?;
        let tag = next_tag(&self.inner);
        let packet = codec::encode_inline(value).unwrap_or_else(|e| codec::error_packet(&e.to_string()));
        if self.rank() != root {
            self.coll_send(op, root, tag, &packet)?;
            return Ok(None);
        }
        let mut out = Vec::with_capacity(self.size());
        let mut first_err = None;
        for r in 0..self.size() {
            let bytes = if r == root {
                packet.clone()
            } else {
                self.coll_recv(op, r, tag)?
            };
            match self.decode_packet(op, r, &bytes) {
                Ok(v) => out.push(v),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(Some(out)),
        }
    }

    /// Scatters the root's `items` (exactly one per rank, in rank order): rank r gets item r. Non-roots pass
    /// `None`.
    ///
    /// # Errors
    /// On every rank: [`ErrorKind::SizeMismatch`] if the root's item count is not the communicator size,
    /// [`ErrorKind::InvalidArgument`] if the root passed `None`.
    pub fn scatter_obj<T: Serialize + DeserializeOwned>(&self, root: usize, items: Option<Vec<T>>) -> Result<T> {
        let op = "scatter_obj";
        check_root(self, op, root)?;
        let tag = next_tag(&self.inner);
        if self.rank() != root {
            let bytes = self.coll_recv(op, root, tag)?;
            return match codec::packet_error(&bytes) {
                Some(msg) => fail(ErrorKind::SizeMismatch, msg),
                None => self.decode_packet(op, root, &bytes),
            };
        }
        let problem = match &items {
            None => Some(format!("{op}: the root (rank {root}) passed no items")),
            Some(v) if v.len() != self.size() => Some(format!(
                "{op}: the root (rank {root}) passed {} items for {} ranks",
                v.len(),
                self.size()
            )),
            Some(_) => None,
        };
        if let Some(msg) = problem {
            let packet = codec::error_packet(&msg);
            for r in (0..self.size()).filter(|&r| r != root) {
                self.coll_send(op, r, tag, &packet)?;
            }
            return fail(ErrorKind::SizeMismatch, msg);
        }
        let mut mine = None;
        for (r, item) in items.expect("checked above").into_iter().enumerate() {
            if r == root {
                mine = Some(item);
            } else {
                self.coll_send(op, r, tag, &codec::encode_inline(&item)?)?;
            }
        }
        Ok(mine.expect("the root's own item"))
    }

    /// Gathers every rank's object to every rank (in rank order).
    ///
    /// # Errors
    /// Encode/decode errors.
    pub fn all_gather_obj<T: Serialize + DeserializeOwned>(&self, value: &T) -> Result<Vec<T>> {
        let op = "all_gather_obj";
        let tag = next_tag(&self.inner);
        let (p, r) = (self.size(), self.rank());
        let mut packets: Vec<Vec<u8>> = vec![Vec::new(); p];
        packets[r] = codec::encode_inline(value).unwrap_or_else(|e| codec::error_packet(&e.to_string()));
        // Ring: in step k, pass on the packet of rank r - k to the right, take that of r - k - 1 from the left.
        let (right, left) = ((r + 1) % p, (r + p - 1) % p);
        for k in 0..p.saturating_sub(1) {
            let send_idx = (r + p - k) % p;
            let recv_idx = (r + p - k - 1) % p;
            packets[recv_idx] = self.coll_sendrecv(op, right, &packets[send_idx].clone(), left, tag)?;
        }
        packets
            .iter()
            .enumerate()
            .map(|(s, b)| self.decode_packet(op, s, b))
            .collect()
    }

    /// Every rank passes one item per rank; item r goes to rank r, which gets the items addressed to it in the
    /// order of the senders.
    ///
    /// # Errors
    /// [`ErrorKind::SizeMismatch`] on every rank that receives from a rank whose item count is wrong (every rank).
    pub fn all_to_all_obj<T: Serialize + DeserializeOwned>(&self, items: Vec<T>) -> Result<Vec<T>> {
        let op = "all_to_all_obj";
        let tag = next_tag(&self.inner);
        let (p, r) = (self.size(), self.rank());
        let bad = (items.len() != p).then(|| format!("{op}: rank {r} passed {} items for {p} ranks", items.len()));
        let packets: Vec<Vec<u8>> = match &bad {
            Some(msg) => vec![codec::error_packet(msg); p],
            None => items.iter().map(|it| codec::encode_inline(it)).collect::<Result<_>>()?,
        };
        let mut received: Vec<Vec<u8>> = vec![Vec::new(); p];
        received[r] = packets[r].clone();
        for k in 1..p {
            let (dest, src) = ((r + k) % p, (r + p - k) % p);
            received[src] = self.coll_sendrecv(op, dest, &packets[dest], src, tag)?;
        }
        if let Some(msg) = bad {
            return fail(ErrorKind::SizeMismatch, msg);
        }
        let mut out = Vec::with_capacity(p);
        for (s, b) in received.iter().enumerate() {
            match codec::packet_error(b) {
                Some(msg) => return fail(ErrorKind::SizeMismatch, msg),
                None => out.push(self.decode_packet(op, s, b)?),
            }
        }
        Ok(out)
    }

    /// Combines every rank's object with `f` in rank order (`f(f(x0, x1), x2)...`, grouped as a tree, so `f`
    /// must be associative but need not be commutative); the result goes to `root` (`None` elsewhere).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidRank`]; encode/decode errors.
    pub fn reduce_obj<T, F>(&self, root: usize, value: T, f: F) -> Result<Option<T>>
    where
        T: Serialize + DeserializeOwned,
        F: Fn(T, T) -> T,
    {
        let op = "reduce_obj";
        check_root(self, op, root)?;
        let tag = next_tag(&self.inner);
        let result = self.tree_reduce(op, tag, value, &f)?;
        // The tree ends on rank 0; hand the result to the root.
        if root == 0 {
            return Ok(result);
        }
        if self.rank() == 0 {
            let packet = codec::encode_inline(result.as_ref().expect("rank 0 holds the result"))?;
            self.coll_send(op, root, tag, &packet)?;
            Ok(None)
        } else if self.rank() == root {
            let bytes = self.coll_recv(op, 0, tag)?;
            self.decode_packet(op, 0, &bytes).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Binomial reduction to rank 0 keeping rank order: the partial result of rank r covers ranks r..r+2^k.
    fn tree_reduce<T, F>(&self, op: &str, tag: i32, value: T, f: &F) -> Result<Option<T>>
    where
        T: Serialize + DeserializeOwned,
        F: Fn(T, T) -> T,
    {
        let (p, r) = (self.size(), self.rank());
        let mut acc = value;
        let mut mask = 1;
        while mask < p {
            if r & mask != 0 {
                self.coll_send(op, r - mask, tag, &codec::encode_inline(&acc)?)?;
                return Ok(None);
            }
            if r + mask < p {
                let bytes = self.coll_recv(op, r + mask, tag)?;
                let higher: T = self.decode_packet(op, r + mask, &bytes)?;
                acc = f(acc, higher);
            }
            mask <<= 1;
        }
        Ok(Some(acc))
    }

    /// Combines every rank's object with `f` in rank order; every rank gets the result.
    ///
    /// # Errors
    /// Encode/decode errors.
    pub fn all_reduce_obj<T, F>(&self, value: T, f: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: Fn(T, T) -> T,
    {
        let op = "all_reduce_obj";
        let tag = next_tag(&self.inner);
        let result = self.tree_reduce(op, tag, value, &f)?;
        self.broadcast_obj(0, result)
    }

    /// Inclusive prefix combination in rank order: rank r gets `f(...f(x0, x1)..., xr)`.
    ///
    /// # Errors
    /// Encode/decode errors.
    pub fn scan_obj<T, F>(&self, value: T, f: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: Fn(T, T) -> T,
    {
        let op = "scan_obj";
        let tag = next_tag(&self.inner);
        let (p, r) = (self.size(), self.rank());
        let mut acc = value;
        let mut d = 1;
        // Recursive doubling: after the step with distance d, rank r holds ranks r-2d+1..=r combined.
        while d < p {
            let packet = codec::encode_inline(&acc)?;
            let req = if r + d < p {
                let desc = Desc::bytes(&packet)?;
                Some(
                    self.inner
                        .coll
                        .isend(&desc, (r + d) as i32, tag, Mode::Standard)
                        .map_err(|c| c.error(op))?,
                )
            } else {
                None
            };
            let lower = if r >= d {
                Some(self.coll_recv(op, r - d, tag)?)
            } else {
                None
            };
            request::finish_sends(req.into_iter().collect(), op)?;
            if let Some(bytes) = lower {
                let lower: T = self.decode_packet(op, r - d, &bytes)?;
                acc = f(lower, acc);
            }
            d <<= 1;
        }
        Ok(acc)
    }

    /// Exclusive prefix combination in rank order: rank r > 0 gets `f(...f(x0, x1)..., x(r-1))`; rank 0 gets
    /// `None`.
    ///
    /// # Errors
    /// Encode/decode errors.
    pub fn exscan_obj<T, F>(&self, value: T, f: F) -> Result<Option<T>>
    where
        T: Serialize + DeserializeOwned,
        F: Fn(T, T) -> T,
    {
        let op = "exscan_obj";
        let inclusive = self.scan_obj(value, f)?;
        let tag = next_tag(&self.inner);
        let (p, r) = (self.size(), self.rank());
        let packet = codec::encode_inline(&inclusive)?;
        let req = if r + 1 < p {
            let desc = Desc::bytes(&packet)?;
            Some(
                self.inner
                    .coll
                    .isend(&desc, (r + 1) as i32, tag, Mode::Standard)
                    .map_err(|c| c.error(op))?,
            )
        } else {
            None
        };
        let out = if r > 0 {
            let bytes = self.coll_recv(op, r - 1, tag)?;
            Some(self.decode_packet(op, r - 1, &bytes)?)
        } else {
            None
        };
        request::finish_sends(req.into_iter().collect(), op)?;
        Ok(out)
    }

    /// Every rank passes one item per rank; rank r gets the items addressed to it combined with `f` in rank order.
    ///
    /// # Errors
    /// As [`Comm::all_to_all_obj`].
    pub fn reduce_scatter_obj<T, F>(&self, items: Vec<T>, f: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: Fn(T, T) -> T,
    {
        let mut mine = self.all_to_all_obj(items)?.into_iter();
        let first = mine
            .next()
            .ok_or_else(|| Error::new(ErrorKind::InvalidArgument, "reduce_scatter_obj: no ranks"))?;
        Ok(mine.fold(first, f))
    }

    // ----- objects: non-blocking --------------------------------------------------------------------------------

    /// Starts broadcasting an object (see [`Comm::broadcast_obj`]): the root sends it to every rank at once; the
    /// request completes with the value on every rank.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidRank`], [`ErrorKind::Encode`] now; the root's missing value and decode errors on
    /// completion.
    pub fn ibroadcast_obj<T: Serialize + DeserializeOwned + 'static>(
        &self,
        root: usize,
        value: Option<&T>,
    ) -> Result<CollRequest<'u, T>> {
        let op = "ibroadcast_obj";
        check_root(self, op, root)?;
        let tag = next_tag(&self.inner);
        if self.rank() == root {
            let packet = match value {
                Some(v) => codec::encode_inline(v)?,
                None => codec::error_packet(&format!("{op}: the root (rank {root}) passed no value")),
            };
            let dests: Vec<usize> = (0..self.size()).filter(|&d| d != root).collect();
            self.start_coll(op, tag, packet, &dests, &[], true, move |packets| {
                decode_one(op, root, &packets[0].1)
            })
        } else {
            self.start_coll(op, tag, Vec::new(), &[], &[root], false, move |packets| {
                decode_one(op, root, &packets[0].1)
            })
        }
    }

    /// Starts gathering every rank's object to `root` (see [`Comm::gather_obj`]); completes with `Some(values)`
    /// on the root and `None` elsewhere.
    ///
    /// # Errors
    /// As [`Comm::ibroadcast_obj`].
    pub fn igather_obj<T: Serialize + DeserializeOwned + 'static>(
        &self,
        root: usize,
        value: &T,
    ) -> Result<CollRequest<'u, Option<Vec<T>>>> {
        let op = "igather_obj";
        check_root(self, op, root)?;
        let tag = next_tag(&self.inner);
        let packet = codec::encode_inline(value)?;
        if self.rank() == root {
            let sources: Vec<usize> = (0..self.size()).filter(|&s| s != root).collect();
            self.start_coll(op, tag, packet, &[], &sources, true, move |packets| {
                packets
                    .iter()
                    .map(|(s, b)| decode_one(op, *s, b))
                    .collect::<Result<Vec<T>>>()
                    .map(Some)
            })
        } else {
            self.start_coll(op, tag, packet, &[root], &[], false, |_| Ok(None))
        }
    }

    /// Starts combining every rank's object with `f` in rank order (see [`Comm::all_reduce_obj`]); every rank
    /// gets the result. Every rank sends its value to every other, so this suits moderate numbers of ranks.
    ///
    /// # Errors
    /// As [`Comm::ibroadcast_obj`].
    pub fn iall_reduce_obj<T, F>(&self, value: &T, f: F) -> Result<CollRequest<'u, T>>
    where
        T: Serialize + DeserializeOwned + 'static,
        F: Fn(T, T) -> T + 'static,
    {
        let op = "iall_reduce_obj";
        let tag = next_tag(&self.inner);
        let packet = codec::encode_inline(value)?;
        let others: Vec<usize> = (0..self.size()).filter(|&s| s != self.rank()).collect();
        self.start_coll(op, tag, packet, &others, &others, true, move |packets| {
            let mut it = packets.iter().map(|(s, b)| decode_one::<T>(op, *s, b));
            let first = it.next().expect("at least one rank")?;
            it.try_fold(first, |acc, x| Ok(f(acc, x?)))
        })
    }

    /// Starts a non-blocking object collective: sends `packet` to `dests`, receives one packet from each of
    /// `sources` (through the receive engine, on the collective communicator), and keeps the own packet among the
    /// results when `keep_own`. `finish` gets the packets sorted by source rank.
    #[allow(clippy::too_many_arguments)]
    fn start_coll<T>(
        &self,
        op: &'static str,
        tag: i32,
        packet: Vec<u8>,
        dests: &[usize],
        sources: &[usize],
        keep_own: bool,
        finish: impl FnOnce(Vec<(usize, Vec<u8>)>) -> Result<T> + 'static,
    ) -> Result<CollRequest<'u, T>> {
        let mut sends = Vec::with_capacity(dests.len());
        let d = Desc::bytes(&packet)?;
        for &dest in dests {
            sends.push(
                self.inner
                    .coll
                    .isend(&d, dest as i32, tag, Mode::Standard)
                    .map_err(|c| c.error(&format!("{op}: sending to rank {dest}")))?,
            );
        }
        let mut recvs = Vec::with_capacity(sources.len());
        for &source in sources {
            let id = request::start_entry(&self.inner, Entry::object_on(Chan::Coll, op, source as i32, tag))?;
            recvs.push((source, id));
        }
        Ok(CollRequest {
            kind: CollKind::Obj(ObjColl {
                sends,
                packet,
                inner: Rc::clone(&self.inner),
                recvs,
                own: keep_own.then_some(self.rank()),
            }),
            finish: Some(Box::new(finish)),
            op,
            _u: PhantomData,
        })
    }
}

fn decode_one<T: DeserializeOwned>(op: &str, source: usize, bytes: &[u8]) -> Result<T> {
    codec::decode_inline(bytes, &|| format!("{op} from rank {source}"))
}

/// The state of a non-blocking object collective.
struct ObjColl {
    // Field order matters: the sends (which wait on drop) go before the packet they read.
    sends: Vec<RawRequest>,
    packet: Vec<u8>,
    inner: Rc<CommInner>,
    /// Pending receives: source rank and engine entry.
    recvs: Vec<(usize, request::Id)>,
    /// This rank, if its own packet is part of the result.
    own: Option<usize>,
}

enum CollKind {
    /// A plain MPI request (ibarrier).
    Raw(Option<RawRequest>),
    /// Point-to-point messages on the collective communicator.
    Obj(ObjColl),
}

type Finish<T> = Box<dyn FnOnce(Vec<(usize, Vec<u8>)>) -> Result<T>>;

/// A non-blocking collective that owns its data (barrier, object collectives); completes with its value.
///
/// Dropping it before completion lets it finish in the background.
pub struct CollRequest<'u, T> {
    kind: CollKind,
    finish: Option<Finish<T>>,
    op: &'static str,
    _u: PhantomData<&'u Universe>,
}

impl<T> CollRequest<'_, T> {
    fn raw(req: RawRequest, op: &'static str) -> Self
    where
        T: Default + 'static,
    {
        CollRequest {
            kind: CollKind::Raw(Some(req)),
            finish: Some(Box::new(|_| Ok(T::default()))),
            op,
            _u: PhantomData,
        }
    }

    fn done(&mut self) -> Result<bool> {
        match &mut self.kind {
            CollKind::Raw(req) => match req {
                Some(r) => {
                    let done = r.test().map_err(|(c, _)| c.error(self.op))?.is_some();
                    if done {
                        *req = None;
                    }
                    Ok(done)
                }
                None => Ok(true),
            },
            CollKind::Obj(c) => {
                let mut all = true;
                for r in c.sends.iter_mut() {
                    if !r.is_null() && r.test().map_err(|(code, _)| code.error(self.op))?.is_none() {
                        all = false;
                    }
                }
                for &(_, id) in &c.recvs {
                    all &= request::entry_done(&c.inner, id);
                }
                Ok(all)
            }
        }
    }
}

impl<T> request::poll::Poll for CollRequest<'_, T> {
    fn poll(&mut self) -> Result<bool> {
        self.done()
    }
}

impl<T> Completion for CollRequest<'_, T> {
    type Output = T;

    fn wait(mut self) -> Result<T> {
        let mut packets = Vec::new();
        if let CollKind::Obj(c) = &mut self.kind {
            request::finish_sends(std::mem::take(&mut c.sends), self.op)?;
            for (source, id) in std::mem::take(&mut c.recvs) {
                match request::wait_entry(&c.inner, id)? {
                    (Target::Obj { bytes, .. }, _) => packets.push((source, bytes)),
                    (Target::Buf(_), _) => unreachable!("collective receives are object receives"),
                }
            }
            if let Some(me) = c.own {
                packets.push((me, std::mem::take(&mut c.packet)));
            }
            packets.sort_by_key(|(s, _)| *s);
        } else {
            request::spin_until(|| self.done())?;
        }
        let finish = self.finish.take().expect("finished once");
        finish(packets)
    }
}

impl<T> Drop for CollRequest<'_, T> {
    fn drop(&mut self) {
        if let CollKind::Obj(c) = &mut self.kind {
            // The other ranks take part whatever happens here: finish the receives in the background.
            for (_, id) in std::mem::take(&mut c.recvs) {
                request::abandon_entry(&c.inner, id);
            }
        }
    }
}

impl<'scope> Scope<'scope, '_> {
    /// Registers a started MPI request (a non-blocking buffer collective).
    fn add_raw(&'scope self, req: RawRequest, op: &'static str, bytes: usize) -> Request<'scope> {
        self.add_send(vec![req], op, crate::p2p::Status::new(0, 0, bytes))
    }
}
