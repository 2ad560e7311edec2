//! Buffer reductions: reduce, all-reduce, scan, exclusive scan, reduce-scatter, with an [`Op`]. One driver
//! ([`Comm::reduce_driver`]) serves them all; buffers beyond `int` elements are reduced in chunks.

use super::{Local, Op, REDUCE_CHUNK, not_contiguous, size_error};
use crate::buffer::{Buffer, BufferMut, Data, View, ViewMut};
use crate::comm::Comm;
use crate::error::Result;
use crate::request;
use crate::sys::Desc;
use crate::sys::coll::ScanKind;

/// Which reduction.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    Reduce(usize),
    Like(ScanKind),
}

impl<'u> Comm<'u> {
    /// The one driver of the reductions. `send` `None` is in place (`recv` holds this rank's contribution); `recv`
    /// is absent on non-roots of a reduce.
    pub(crate) fn reduce_driver(
        &self,
        name: &str,
        shape: Shape,
        send: Option<&View>,
        recv: Option<&ViewMut>,
        op: Op,
    ) -> Result<()> {
        let elem = send
            .map(|v| v.elem)
            .or(recv.map(|v| v.elem))
            .expect("a reduction has a buffer");
        op.check(name, &elem)?;
        let n = send.map_or_else(|| recv.map_or(0, |r| r.len), |s| s.len);
        let needs_recv = match shape {
            Shape::Reduce(root) => root == self.rank(),
            Shape::Like(_) => true,
        };
        let local: Local = if send.is_some_and(|s| !s.is_contiguous()) {
            Some(not_contiguous(name, "send buffer"))
        } else if !needs_recv {
            None
        } else {
            match recv {
                None => Some(size_error(name, "the root must pass a receive buffer".into())),
                Some(r) if !r.is_contiguous() => Some(not_contiguous(name, "receive buffer")),
                Some(r) if r.len != n => Some(size_error(
                    name,
                    format!("the send buffer holds {n} elements but the receive buffer {}", r.len),
                )),
                Some(_) => None,
            }
        };
        let nb = self.agree(name, "buffer lengths", n, local)?;
        let recv = if needs_recv { recv } else { None };
        let mut off = 0;
        loop {
            let len = (n - off).min(REDUCE_CHUNK);
            let sd = send.map(|s| Desc::block_of(s, off, len)).transpose()?;
            let rd = recv.map(|r| Desc::block(r, off, len)).transpose()?;
            request::run_collective(name, nb, |nb| match shape {
                Shape::Reduce(root) => self
                    .inner
                    .raw
                    .reduce(sd.as_ref(), rd.as_ref(), op.raw(), root as i32, nb),
                Shape::Like(kind) => {
                    let rd = rd.as_ref().expect("every rank receives");
                    self.inner.raw.allreduce_like(kind, sd.as_ref(), rd, op.raw(), nb)
                }
            })?;
            off += len;
            if off >= n {
                break;
            }
        }
        // MPI leaves a single rank's contribution as it is; a truth-valued operation promises 0 or 1.
        if op.is_logical()
            && self.size() == 1
            && let Some(r) = recv
        {
            crate::sys::datatype::normalize_truth(r);
        }
        Ok(())
    }

    /// Reduces every rank's `send` element-wise with `op` into the root's `recv` (`MPI_Reduce`). Non-roots pass
    /// `None` (or use [`Comm::reduce_buf_to`]).
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// use spmd::Op;
    /// let mut total = [0.0f64; 2];
    /// let recv = (world.rank() == 0).then_some(&mut total[..]);
    /// world.reduce_buf(0, &[1.0, world.rank() as f64], recv, Op::Sum)?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidArgument`] if `op` is not defined for the element type;
    /// [`crate::ErrorKind::SizeMismatch`] on every rank if lengths disagree; [`crate::ErrorKind::NotContiguous`];
    /// [`crate::ErrorKind::InvalidRank`].
    #[track_caller]
    pub fn reduce_buf<S, R>(&self, root: usize, send: &S, recv: Option<&mut R>, op: Op) -> Result<()>
    where
        S: Buffer + ?Sized,
        R: BufferMut<Item = S::Item> + ?Sized,
    {
        let _wait = self.watch("reduce_buf");
        self.check_root("reduce_buf", root)?;
        let sv = send.view();
        let rv = recv.map(|r| r.view_mut());
        self.reduce_driver("reduce_buf", Shape::Reduce(root), Some(&sv), rv.as_ref(), op)
    }

    /// [`Comm::reduce_buf`] called by the root.
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// use spmd::Op;
    /// let x = [world.rank() as i64];
    /// if world.rank() == 0 {
    ///     let mut max = [0i64];
    ///     world.reduce_buf_root(&x, &mut max, Op::Max)?;
    /// } else {
    ///     world.reduce_buf_to(0, &x, Op::Max)?;
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Comm::reduce_buf`].
    #[track_caller]
    pub fn reduce_buf_root<S, R>(&self, send: &S, recv: &mut R, op: Op) -> Result<()>
    where
        S: Buffer + ?Sized,
        R: BufferMut<Item = S::Item> + ?Sized,
    {
        let _wait = self.watch("reduce_buf_root");
        self.reduce_buf(self.rank(), send, Some(recv), op)
    }

    /// [`Comm::reduce_buf`] called by a rank other than the root.
    ///
    /// # Errors
    /// As [`Comm::reduce_buf`].
    #[track_caller]
    pub fn reduce_buf_to<S: Buffer + ?Sized>(&self, root: usize, send: &S, op: Op) -> Result<()> {
        let _wait = self.watch("reduce_buf_to");
        self.reduce_buf::<S, [S::Item]>(root, send, None, op)
    }

    /// Reduces every rank's `send` element-wise into every rank's `recv` (`MPI_Allreduce`).
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// use spmd::Op;
    /// let local = [1.0f64, 2.0, 3.0];
    /// let mut global = [0.0; 3];
    /// world.all_reduce_buf(&local, &mut global, Op::Sum)?;
    /// assert_eq!(global[2], 3.0 * world.size() as f64);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Comm::reduce_buf`].
    #[track_caller]
    pub fn all_reduce_buf<S, R>(&self, send: &S, recv: &mut R, op: Op) -> Result<()>
    where
        S: Buffer + ?Sized,
        R: BufferMut<Item = S::Item> + ?Sized,
    {
        let _wait = self.watch("all_reduce_buf");
        let (sv, rv) = (send.view(), recv.view_mut());
        self.reduce_driver("all_reduce_buf", Shape::Like(ScanKind::All), Some(&sv), Some(&rv), op)
    }

    /// [`Comm::all_reduce_buf`] with `buf` as both the contribution and the result (`MPI_IN_PLACE`).
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// let mut hist = vec![1u64; 10];
    /// world.all_reduce_buf_in_place(&mut hist, spmd::Op::Sum)?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Comm::reduce_buf`].
    #[track_caller]
    pub fn all_reduce_buf_in_place<B: BufferMut + ?Sized>(&self, buf: &mut B, op: Op) -> Result<()> {
        let _wait = self.watch("all_reduce_buf_in_place");
        let rv = buf.view_mut();
        self.reduce_driver(
            "all_reduce_buf_in_place",
            Shape::Like(ScanKind::All),
            None,
            Some(&rv),
            op,
        )
    }

    /// Reduces one value per rank to the root: `Some(result)` there, `None` elsewhere.
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// if let Some(n) = world.reduce_scalar(0, 1u64, spmd::Op::Sum)? {
    ///     assert_eq!(n as usize, world.size());
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Comm::reduce_buf`].
    #[track_caller]
    pub fn reduce_scalar<T: Data>(&self, root: usize, value: T, op: Op) -> Result<Option<T>> {
        let _wait = self.watch("reduce_scalar");
        let mut out = [value];
        if self.rank() == root {
            self.reduce_buf(root, &[value], Some(&mut out[..]), op)?;
            Ok(Some(out[0]))
        } else {
            self.reduce_buf_to(root, &[value], op)?;
            Ok(None)
        }
    }

    /// Reduces one value per rank; every rank gets the result.
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// let residual = world.all_reduce_scalar(0.25f64, spmd::Op::Max)?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Comm::reduce_buf`].
    #[track_caller]
    pub fn all_reduce_scalar<T: Data>(&self, value: T, op: Op) -> Result<T> {
        let _wait = self.watch("all_reduce_scalar");
        let mut out = [value];
        self.all_reduce_buf(&[value], &mut out[..], op)?;
        Ok(out[0])
    }

    /// Inclusive prefix reduction: rank r gets `send[0] op ... op send[r]` element-wise (`MPI_Scan`).
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// let mut upto = 0u64;
    /// world.scan_buf(&1u64, &mut upto, spmd::Op::Sum)?;
    /// assert_eq!(upto as usize, world.rank() + 1);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Comm::reduce_buf`].
    #[track_caller]
    pub fn scan_buf<S, R>(&self, send: &S, recv: &mut R, op: Op) -> Result<()>
    where
        S: Buffer + ?Sized,
        R: BufferMut<Item = S::Item> + ?Sized,
    {
        let _wait = self.watch("scan_buf");
        let (sv, rv) = (send.view(), recv.view_mut());
        self.reduce_driver("scan_buf", Shape::Like(ScanKind::Scan), Some(&sv), Some(&rv), op)
    }

    /// Exclusive prefix reduction: rank r gets `send[0] op ... op send[r-1]` (`MPI_Exscan`); rank 0's `recv` is
    /// left unchanged.
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// let my_len = 10 + world.rank() as u64;
    /// let mut offset = 0u64; // stays 0 on rank 0
    /// world.exscan_buf(&my_len, &mut offset, spmd::Op::Sum)?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Comm::reduce_buf`].
    #[track_caller]
    pub fn exscan_buf<S, R>(&self, send: &S, recv: &mut R, op: Op) -> Result<()>
    where
        S: Buffer + ?Sized,
        R: BufferMut<Item = S::Item> + ?Sized,
    {
        let _wait = self.watch("exscan_buf");
        let (sv, rv) = (send.view(), recv.view_mut());
        self.reduce_driver("exscan_buf", Shape::Like(ScanKind::Exscan), Some(&sv), Some(&rv), op)
    }

    /// Reduces `send` (size blocks of n) element-wise and scatters the result: rank r gets block r in `recv` (n
    /// elements, `MPI_Reduce_scatter_block`).
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// let send = vec![1i32; 3 * world.size()];
    /// let mut mine = [0i32; 3];
    /// world.reduce_scatter_block_buf(&send, &mut mine, spmd::Op::Sum)?;
    /// assert_eq!(mine[0] as usize, world.size());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Comm::reduce_buf`].
    #[track_caller]
    pub fn reduce_scatter_block_buf<S, R>(&self, send: &S, recv: &mut R, op: Op) -> Result<()>
    where
        S: Buffer + ?Sized,
        R: BufferMut<Item = S::Item> + ?Sized,
    {
        let _wait = self.watch("reduce_scatter_block_buf");
        let counts = vec![recv.count(); self.size()];
        self.reduce_scatter_driver("reduce_scatter_block_buf", send, recv, &counts, op, true)
    }

    /// Reduces `send` (the sum of `counts` elements) element-wise and scatters the result: rank r gets
    /// `counts[r]` elements in `recv` (`MPI_Reduce_scatter`). Every rank passes the same `counts`.
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// let counts: Vec<usize> = (1..=world.size()).collect();
    /// let send = vec![2u64; counts.iter().sum()];
    /// let mut mine = vec![0u64; counts[world.rank()]];
    /// world.reduce_scatter_buf(&send, &mut mine, &counts, spmd::Op::Sum)?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Comm::reduce_buf`]; [`crate::ErrorKind::SizeMismatch`] on every rank if the ranks pass different
    /// `counts`, or `counts` does not have one entry per rank.
    #[track_caller]
    pub fn reduce_scatter_buf<S, R>(&self, send: &S, recv: &mut R, counts: &[usize], op: Op) -> Result<()>
    where
        S: Buffer + ?Sized,
        R: BufferMut<Item = S::Item> + ?Sized,
    {
        let _wait = self.watch("reduce_scatter_buf");
        self.reduce_scatter_driver("reduce_scatter_buf", send, recv, counts, op, false)
    }

    fn reduce_scatter_driver<S, R>(
        &self,
        name: &str,
        send: &S,
        recv: &mut R,
        counts: &[usize],
        op: Op,
        block: bool,
    ) -> Result<()>
    where
        S: Buffer + ?Sized,
        R: BufferMut<Item = S::Item> + ?Sized,
    {
        let (sv, rv) = (send.view(), recv.view_mut());
        op.check(name, &sv.elem)?;
        let p = self.size();
        let total = counts.iter().try_fold(0usize, |a, &c| a.checked_add(c));
        let local: Local = if counts.len() != p {
            Some(size_error(name, format!("{} counts for {p} ranks", counts.len())))
        } else if !sv.is_contiguous() || !rv.is_contiguous() {
            Some(not_contiguous(name, "send and receive buffers"))
        } else if total != Some(sv.len) {
            Some(size_error(
                name,
                format!(
                    "the send buffer holds {} elements, the counts add up to {total:?}",
                    sv.len
                ),
            ))
        } else if rv.len != counts[self.rank()] {
            Some(size_error(
                name,
                format!(
                    "the receive buffer holds {} elements, this rank's count is {}",
                    rv.len,
                    counts[self.rank()]
                ),
            ))
        } else {
            None
        };
        // Every rank must pass the same counts: agree on a fingerprint of them.
        let fingerprint = counts.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &c| {
            (h ^ c as u64).wrapping_mul(0x0100_0000_01b3)
        }) >> 2;
        let nb = self.agree(name, "counts", fingerprint as usize, local)?;
        let ints: Option<Vec<i32>> = counts.iter().map(|&c| i32::try_from(c).ok()).collect();
        match ints {
            Some(ints) if counts.iter().sum::<usize>() <= i32::MAX as usize => {
                let sd = Desc::of(&sv)?;
                let rd = Desc::of_mut(&rv)?;
                request::run_collective(name, nb, |nb| {
                    if block {
                        self.inner.raw.reduce_scatter_block(&sd, &rd, op.raw(), nb)
                    } else {
                        self.inner.raw.reduce_scatter(&sd, &rd, &ints, op.raw(), nb)
                    }
                })
            }
            _ => {
                // Beyond `int`: one (chunked) reduce per rank's block.
                let mut off = 0;
                for (r, &c) in counts.iter().enumerate() {
                    let mut o = 0;
                    while o < c || (c == 0 && o == 0) {
                        let len = (c - o).min(REDUCE_CHUNK);
                        let sd = Desc::block_of(&sv, off + o, len)?;
                        let rd = if r == self.rank() {
                            Some(Desc::block(&rv, o, len)?)
                        } else {
                            None
                        };
                        request::run_collective(name, nb, |nb| {
                            self.inner.raw.reduce(Some(&sd), rd.as_ref(), op.raw(), r as i32, nb)
                        })?;
                        o += len;
                        if c == 0 {
                            break;
                        }
                    }
                    off += c;
                }
                Ok(())
            }
        }
    }
}
