//! Buffer collectives with variable counts: `MPI_Gatherv`, `MPI_Scatterv`, `MPI_Allgatherv`, `MPI_Alltoallv`.
//!
//! On a checked handle each starts by exchanging the counts every rank really sends (one `u64` per rank, in the shape
//! of an all-gather, or of an all-to-all for `MPI_Alltoallv`; non-blocking messages on the communicator's private
//! duplicate, see [`Comm::agreement`]), so a receiver never trusts counts that disagree with the sender: a rank whose
//! counts are wrong receives into scratch memory of the right size and returns [`ErrorKind::SizeMismatch`], and its
//! buffer is never overrun. The same exchange carries two flags: a local error (every rank then fails without moving
//! data) and "some count or offset exceeds `int`", which sends every rank to the large-count path (`MPI_Alltoallw` with
//! one datatype per block) together. A third flag says a rank has receives pending, which makes every rank use the
//! non-blocking form of the data call (see [`crate::collective`]).
//!
//! (One file for the four calls: they share the count exchange, its flags and the large-count path.)

use super::{not_contiguous, size_error};
use crate::buffer::{Buffer, BufferMut, Data, View, ViewMut, ViewSource, ViewSourceMut};
use crate::comm::Comm;
use crate::error::{Error, ErrorKind, Result, fail};
use crate::request;
use crate::sys::coll::{BlockKind, VArgs, VKind, int_layout};
use crate::sys::datatype::VBase;
use crate::sys::{Desc, agree};

/// Flag bits in the exchanged counts.
const BAD: u64 = 1 << 63;
const BIG: u64 = 1 << 62;
const BUSY: u64 = 1 << 61;
const COUNT: u64 = BUSY - 1;

/// This rank's busy flag.
fn busy() -> u64 {
    if request::engine::busy() { BUSY } else { 0 }
}

fn prefix(counts: &[usize]) -> Vec<usize> {
    let mut off = 0;
    counts
        .iter()
        .map(|&c| {
            let o = off;
            off += c;
            o
        })
        .collect()
}

/// One description per rank of consecutive blocks of a contiguous send buffer, `counts[r]` elements for rank r.
fn send_blocks(v: &View, counts: &[usize]) -> Result<Vec<Option<Desc>>> {
    let offsets = prefix(counts);
    counts
        .iter()
        .zip(offsets)
        .map(|(&c, o)| Desc::block_of(v, o, c).map(Some))
        .collect()
}

/// The same for a receive buffer.
fn recv_blocks(v: &ViewMut, counts: &[usize]) -> Result<Vec<Option<Desc>>> {
    let offsets = prefix(counts);
    counts
        .iter()
        .zip(offsets)
        .map(|(&c, o)| Desc::block(v, o, c).map(Some))
        .collect()
}

/// Whether counts (of consecutive blocks) need the large-count path.
fn big(counts: &[usize]) -> bool {
    int_layout(counts).is_none()
}

fn sum(counts: &[usize]) -> Option<usize> {
    counts.iter().try_fold(0usize, |a, &c| a.checked_add(c))
}

fn int_args(send: Option<&[usize]>, recv: Option<&[usize]>) -> VArgs {
    let (sc, sd) = send.and_then(int_layout).unwrap_or_default();
    let (rc, rd) = recv.and_then(int_layout).unwrap_or_default();
    VArgs {
        send_counts: sc,
        send_displs: sd,
        recv_counts: rc,
        recv_displs: rd,
    }
}

impl<'u> Comm<'u> {
    /// Exchanges one `u64` per rank with the all-gather or all-to-all shape (see [`Comm::agreement`]).
    fn exchange(&self, op: &str, kind: BlockKind, mine: &[u64]) -> Result<Vec<u64>> {
        let (rank, p) = (self.inner.rank, self.inner.size);
        self.agreement(
            op,
            |private, wait| {
                if kind == BlockKind::Alltoall {
                    return agree::all_to_all(private, rank, p, mine, wait);
                }
                // An all-gather as a maximum: every rank sets its own entry.
                let mut all = vec![0u64; p];
                all[rank] = mine[0];
                agree::all_max(private, rank, p, agree::Kind::PerRank, &mut all, wait).map(|()| all)
            },
            || {
                let mut out = vec![0u64; p];
                let sd = Desc::of(&mine.view())?;
                let rd = Desc::block(&out.view_mut(), 0, 1)?;
                let sd1 = if kind == BlockKind::Alltoall {
                    Desc::block_of(&mine.view(), 0, 1)?
                } else {
                    sd
                };
                request::run_collective(op, true, |nb| self.inner.raw.blocks(kind, Some(&sd1), Some(&rd), 0, nb))?;
                Ok(out)
            },
            |got| got.iter().all(|g| g & (BAD | BUSY) == 0),
        )
    }

    /// Receives the data of a collective this rank's buffers cannot take, into scratch memory, then reports it.
    fn flags_error(&self, op: &str, flags: &[u64], local: Option<Error>) -> Result<()> {
        if let Some(e) = local {
            return Err(e);
        }
        if flags.iter().any(|f| f & BAD != 0) {
            return fail(
                ErrorKind::SizeMismatch,
                format!("{op}: another rank passed buffers or counts of the wrong size (see its error)"),
            );
        }
        Ok(())
    }

    /// The large-count path: every block a datatype of its own in one `MPI_Alltoallw`.
    fn alltoallw_blocks(&self, op: &str, nb: bool, send: &[Option<Desc>], recv: &[Option<Desc>]) -> Result<()> {
        let (req, args) = self.inner.raw.alltoallw(send, recv, nb).map_err(|c| c.error(op))?;
        if let Some(req) = req {
            request::wait_raw(req, op)?;
        }
        drop(args);
        Ok(())
    }

    /// Gathers every rank's `send` (any length) into the root's `recv`, rank after rank (`MPI_Gatherv`); the root
    /// passes `Some((recv, counts))` with one count per rank, the others `None`.
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// let mine = vec![world.rank() as f64; world.rank()];
    /// let counts: Vec<usize> = (0..world.size()).collect();
    /// let mut all = vec![0.0; counts.iter().sum()];
    /// let recv = (world.rank() == 0).then_some((&mut all[..], &counts[..]));
    /// world.gather_varcount_buf(0, &mine, recv)?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::SizeMismatch`]: on every rank if a rank's buffers are unusable (the root's `recv` does not
    /// hold the sum of the counts, the counts are not one per rank); at the root if a rank sends a different
    /// count than the root's `counts` say (nothing is written to `recv` then). [`ErrorKind::NotContiguous`],
    /// [`ErrorKind::InvalidRank`].
    #[track_caller]
    pub fn gather_varcount_buf<S, R>(&self, root: usize, send: &S, recv: Option<(&mut R, &[usize])>) -> Result<()>
    where
        S: Buffer + ?Sized,
        R: BufferMut<Item = S::Item> + ?Sized,
    {
        let _wait = self.watch("gather_varcount_buf");
        let op = "gather_varcount_buf";
        self.check_root(op, root)?;
        let (p, me) = (self.size(), self.rank());
        let sv = send.view();
        let recv = recv.map(|(r, c)| (r.view_mut(), c));
        let mut local = None;
        if !sv.is_contiguous() {
            local = Some(not_contiguous(op, "send buffer"));
        }
        if me == root {
            let buf = recv.as_ref().map(|(r, c)| (r.len, r.is_contiguous(), *c));
            local = local.or(root_side(op, "receive", buf, p));
        }
        let mut nb = false;
        let actual: Vec<usize> = if self.checked {
            let flag = if local.is_some() || sv.len as u64 > COUNT {
                BAD
            } else {
                0
            } | busy();
            let got = self.exchange(op, BlockKind::Allgather, &[sv.len as u64 | flag])?;
            self.flags_error(op, &got, local)?;
            nb = got.iter().any(|g| g & BUSY != 0);
            got.iter().map(|&g| (g & COUNT) as usize).collect()
        } else {
            if let Some(e) = local {
                return Err(e);
            }
            match &recv {
                Some((_, c)) if me == root => c.to_vec(),
                _ => Vec::new(),
            }
        };
        // At the root, counts that disagree with what the ranks send: receive into scratch, then report.
        let mut scratch: Vec<S::Item> = Vec::new();
        let mut mismatch = None;
        let rv: Option<ViewMut> = match recv {
            Some((r, c)) if me == root => {
                let (t, e) = target(op, "the root's counts", c, &actual, r, &mut scratch);
                mismatch = e;
                Some(t)
            }
            _ => None,
        };
        let is_big = self.checked && big(&actual);
        if !is_big {
            let args = int_args(None, (me == root).then_some(actual.as_slice()));
            if !self.checked && c_int_ok(sv.len).is_none() {
                return fail(
                    ErrorKind::InvalidArgument,
                    format!("{op}: counts above i32::MAX need a checked handle"),
                );
            }
            let sb = VBase::of(&sv)?;
            let rb = rv.as_ref().map(VBase::of_mut).transpose()?;
            let r = request::run_collective(op, nb, |nb| {
                self.inner
                    .raw
                    .vector(VKind::Gatherv, Some(&sb), rb.as_ref(), &args, root as i32, nb)
            });
            drop(scratch);
            r?;
        } else {
            let mut sends: Vec<Option<Desc>> = (0..p).map(|_| None).collect();
            sends[root] = Some(Desc::of(&sv)?);
            let recvs = match &rv {
                Some(rv) => recv_blocks(rv, &actual)?,
                None => (0..p).map(|_| None).collect(),
            };
            self.alltoallw_blocks(op, nb, &sends, &recvs)?;
            drop(scratch);
        }
        match mismatch {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// [`Comm::gather_varcount_buf`] called by the root.
    ///
    /// # Errors
    /// As [`Comm::gather_varcount_buf`].
    #[track_caller]
    pub fn gather_varcount_buf_root<S, R>(&self, send: &S, recv: &mut R, counts: &[usize]) -> Result<()>
    where
        S: Buffer + ?Sized,
        R: BufferMut<Item = S::Item> + ?Sized,
    {
        let _wait = self.watch("gather_varcount_buf_root");
        self.gather_varcount_buf(self.rank(), send, Some((recv, counts)))
    }

    /// [`Comm::gather_varcount_buf`] called by a rank other than the root.
    ///
    /// # Errors
    /// As [`Comm::gather_varcount_buf`].
    #[track_caller]
    pub fn gather_varcount_buf_to<S: Buffer + ?Sized>(&self, root: usize, send: &S) -> Result<()> {
        let _wait = self.watch("gather_varcount_buf_to");
        self.gather_varcount_buf::<S, [S::Item]>(root, send, None)
    }

    /// Scatters the root's `send`, `counts[r]` elements to rank r (`MPI_Scatterv`); the root passes
    /// `Some((send, counts))`, the others `None`. Each rank's `recv` must hold exactly its count.
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// let counts: Vec<usize> = (0..world.size()).map(|r| r + 1).collect();
    /// let all = vec![1i32; counts.iter().sum()];
    /// let mut mine = vec![0i32; world.rank() + 1];
    /// world.scatter_varcount_buf(0, (world.rank() == 0).then_some((&all[..], &counts[..])), &mut mine)?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::SizeMismatch`]: on every rank if the root's arguments are unusable; on a rank whose `recv`
    /// does not hold its count (nothing is written to it then). [`ErrorKind::NotContiguous`],
    /// [`ErrorKind::InvalidRank`].
    #[track_caller]
    pub fn scatter_varcount_buf<S, R>(&self, root: usize, send: Option<(&S, &[usize])>, recv: &mut R) -> Result<()>
    where
        S: Buffer + ?Sized,
        R: BufferMut<Item = S::Item> + ?Sized,
    {
        let _wait = self.watch("scatter_varcount_buf");
        let op = "scatter_varcount_buf";
        self.check_root(op, root)?;
        let (p, me) = (self.size(), self.rank());
        let send = send.map(|(s, c)| (s.view(), c));
        let rv = recv.view_mut();
        let mut local = None;
        if me == root {
            let buf = send.as_ref().map(|(s, c)| (s.len, s.is_contiguous(), *c));
            local = root_side(op, "send", buf, p);
        }
        if !rv.is_contiguous() {
            return Err(not_contiguous(op, "receive buffer"));
        }
        // The root's counts reach every rank (a non-blocking all-reduce with MAX: the others contribute zeros),
        // with two more entries: whether some rank's arguments are unusable, whether some rank is busy.
        let mut nb = false;
        let counts: Vec<usize> = if self.checked {
            let mut v: Vec<u64> = match (&send, &local) {
                (Some((_, c)), None) if me == root => c.iter().map(|&c| (c as u64).min(COUNT)).collect(),
                _ => vec![0; p],
            };
            v.push(local.is_some() as u64);
            v.push((busy() != 0) as u64);
            let out = self.agree_max(op, agree::Kind::PerRankAndFlags, v, |out| {
                out[p] == 0 && out[p + 1] == 0
            })?;
            if out[p] != 0 {
                self.flags_error(op, &[BAD], local)?;
            }
            nb = out[p + 1] != 0;
            out[..p].iter().map(|&x| x as usize).collect()
        } else {
            if let Some(e) = local {
                return Err(e);
            }
            send.as_ref()
                .map(|(_, c)| c.to_vec())
                .unwrap_or_else(|| vec![rv.len; p])
        };
        let mut scratch: Vec<S::Item> = Vec::new();
        let given = if self.checked { rv.len } else { counts[me] };
        let (rv, mismatch) = target(
            op,
            "this rank's receive length",
            &[given],
            &counts[me..=me],
            rv,
            &mut scratch,
        );
        if !(self.checked && big(&counts)) {
            if c_int_ok(rv.len).is_none() {
                return fail(
                    ErrorKind::InvalidArgument,
                    format!("{op}: counts above i32::MAX need a checked handle"),
                );
            }
            let args = int_args((me == root).then_some(counts.as_slice()), None);
            let sb = match &send {
                Some((s, _)) if me == root => Some(VBase::of(s)?),
                _ => None,
            };
            let rb = VBase::of_mut(&rv)?;
            request::run_collective(op, nb, |nb| {
                self.inner
                    .raw
                    .vector(VKind::Scatterv, sb.as_ref(), Some(&rb), &args, root as i32, nb)
            })?;
        } else {
            let sends = match &send {
                Some((s, _)) if me == root => send_blocks(s, &counts)?,
                _ => (0..p).map(|_| None).collect(),
            };
            let mut recvs: Vec<Option<Desc>> = (0..p).map(|_| None).collect();
            recvs[root] = Some(Desc::of_mut(&rv)?);
            self.alltoallw_blocks(op, nb, &sends, &recvs)?;
        }
        drop(scratch);
        match mismatch {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// [`Comm::scatter_varcount_buf`] called by the root.
    ///
    /// # Errors
    /// As [`Comm::scatter_varcount_buf`].
    #[track_caller]
    pub fn scatter_varcount_buf_root<S, R>(&self, send: &S, counts: &[usize], recv: &mut R) -> Result<()>
    where
        S: Buffer + ?Sized,
        R: BufferMut<Item = S::Item> + ?Sized,
    {
        let _wait = self.watch("scatter_varcount_buf_root");
        self.scatter_varcount_buf(self.rank(), Some((send, counts)), recv)
    }

    /// [`Comm::scatter_varcount_buf`] called by a rank other than the root.
    ///
    /// # Errors
    /// As [`Comm::scatter_varcount_buf`].
    #[track_caller]
    pub fn scatter_varcount_buf_from<R: BufferMut + ?Sized>(&self, root: usize, recv: &mut R) -> Result<()> {
        let _wait = self.watch("scatter_varcount_buf_from");
        self.scatter_varcount_buf::<[R::Item], R>(root, None, recv)
    }

    /// Gathers every rank's `send` (any length) into every rank's `recv`, rank after rank (`MPI_Allgatherv`);
    /// `counts[r]` is rank r's length.
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// let counts: Vec<usize> = (0..world.size()).map(|r| 2 * r).collect();
    /// let mine = vec![world.rank() as u16; counts[world.rank()]];
    /// let mut all = vec![0u16; counts.iter().sum()];
    /// world.all_gather_varcount_buf(&mine, &mut all, &counts)?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::SizeMismatch`] on every rank if a rank's buffers are unusable, and on a rank whose `counts`
    /// disagree with what the ranks send (nothing is written to its `recv` then); [`ErrorKind::NotContiguous`].
    #[track_caller]
    pub fn all_gather_varcount_buf<S, R>(&self, send: &S, recv: &mut R, counts: &[usize]) -> Result<()>
    where
        S: Buffer + ?Sized,
        R: BufferMut<Item = S::Item> + ?Sized,
    {
        let _wait = self.watch("all_gather_varcount_buf");
        let op = "all_gather_varcount_buf";
        let p = self.size();
        let (sv, rv) = (send.view(), recv.view_mut());
        let local = if counts.len() != p {
            Some(size_error(op, format!("{} counts for {p} ranks", counts.len())))
        } else if !sv.is_contiguous() || !rv.is_contiguous() {
            Some(not_contiguous(op, "send and receive buffers"))
        } else if sum(counts) != Some(rv.len) {
            Some(size_error(
                op,
                format!(
                    "the receive buffer holds {} elements, the counts add up to {:?}",
                    rv.len,
                    sum(counts)
                ),
            ))
        } else {
            None
        };
        let mut nb = false;
        let actual: Vec<usize> = if self.checked {
            let flag = busy()
                | if local.is_some() || sv.len as u64 > COUNT {
                    BAD
                } else {
                    0
                };
            let got = self.exchange(op, BlockKind::Allgather, &[sv.len as u64 | flag])?;
            self.flags_error(op, &got, local)?;
            nb = got.iter().any(|g| g & BUSY != 0);
            got.iter().map(|&g| (g & COUNT) as usize).collect()
        } else {
            if let Some(e) = local {
                return Err(e);
            }
            counts.to_vec()
        };
        let mut scratch: Vec<S::Item> = Vec::new();
        let (rv, mismatch) = target(op, "the counts", counts, &actual, rv, &mut scratch);
        if !big(&actual) {
            let args = int_args(None, Some(&actual));
            let (sb, rb) = (VBase::of(&sv)?, VBase::of_mut(&rv)?);
            request::run_collective(op, nb, |nb| {
                self.inner
                    .raw
                    .vector(VKind::Allgatherv, Some(&sb), Some(&rb), &args, 0, nb)
            })?;
        } else if !self.checked {
            return fail(
                ErrorKind::InvalidArgument,
                format!("{op}: counts above i32::MAX need a checked handle"),
            );
        } else {
            let sends: Vec<Option<Desc>> = (0..p).map(|_| Desc::of(&sv).map(Some)).collect::<Result<_>>()?;
            let recvs = recv_blocks(&rv, &actual)?;
            self.alltoallw_blocks(op, nb, &sends, &recvs)?;
        }
        drop(scratch);
        match mismatch {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Every rank sends `send_counts[r]` elements of `send` to rank r and receives `recv_counts[r]` from rank r
    /// into `recv`, blocks in rank order (`MPI_Alltoallv`).
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// let p = world.size();
    /// let send_counts: Vec<usize> = (0..p).map(|r| r + 1).collect();     // r + 1 values to rank r
    /// let recv_counts = vec![world.rank() + 1; p];                        // rank + 1 from everyone
    /// let send = vec![world.rank() as u64; send_counts.iter().sum()];
    /// let mut recv = vec![0u64; recv_counts.iter().sum()];
    /// world.all_to_all_varcount_buf(&send, &send_counts, &mut recv, &recv_counts)?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::SizeMismatch`] on every rank if a rank's buffers are unusable, and on a rank whose
    /// `recv_counts` disagree with what the others send it (nothing is written to its `recv` then);
    /// [`ErrorKind::NotContiguous`].
    #[track_caller]
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
        let _wait = self.watch("all_to_all_varcount_buf");
        let op = "all_to_all_varcount_buf";
        let p = self.size();
        let (sv, rv) = (send.view(), recv.view_mut());
        let local = if send_counts.len() != p || recv_counts.len() != p {
            Some(size_error(
                op,
                format!(
                    "{} send and {} receive counts for {p} ranks",
                    send_counts.len(),
                    recv_counts.len()
                ),
            ))
        } else if !sv.is_contiguous() || !rv.is_contiguous() {
            Some(not_contiguous(op, "send and receive buffers"))
        } else if sum(send_counts) != Some(sv.len) || sum(recv_counts) != Some(rv.len) {
            Some(size_error(
                op,
                format!(
                    "the buffers hold {} and {} elements, the counts add up to {:?} and {:?}",
                    sv.len,
                    rv.len,
                    sum(send_counts),
                    sum(recv_counts)
                ),
            ))
        } else {
            None
        };
        let mut nb = false;
        let (actual, is_big) = if self.checked {
            let flag = busy()
                | if local.is_some() || send_counts.iter().any(|&c| c as u64 > COUNT) {
                    BAD
                } else {
                    0
                }
                | if local.is_none() && (big(send_counts) || big(recv_counts)) {
                    BIG
                } else {
                    0
                };
            let mine: Vec<u64> = (0..p)
                .map(|r| send_counts.get(r).map_or(0, |&c| c as u64) | flag)
                .collect();
            let got = self.exchange(op, BlockKind::Alltoall, &mine)?;
            self.flags_error(op, &got, local)?;
            nb = got.iter().any(|g| g & BUSY != 0);
            (
                got.iter().map(|&g| (g & COUNT) as usize).collect::<Vec<_>>(),
                got.iter().any(|g| g & BIG != 0),
            )
        } else {
            if let Some(e) = local {
                return Err(e);
            }
            if big(send_counts) || big(recv_counts) {
                return fail(
                    ErrorKind::InvalidArgument,
                    format!("{op}: counts above i32::MAX need a checked handle"),
                );
            }
            (recv_counts.to_vec(), false)
        };
        let mut scratch: Vec<S::Item> = Vec::new();
        let (rv, mismatch) = target(op, "the receive counts", recv_counts, &actual, rv, &mut scratch);
        if !is_big && !big(&actual) {
            let args = int_args(Some(send_counts), Some(&actual));
            let (sb, rb) = (VBase::of(&sv)?, VBase::of_mut(&rv)?);
            request::run_collective(op, nb, |nb| {
                self.inner
                    .raw
                    .vector(VKind::Alltoallv, Some(&sb), Some(&rb), &args, 0, nb)
            })?;
        } else {
            let (sends, recvs) = (send_blocks(&sv, send_counts)?, recv_blocks(&rv, &actual)?);
            self.alltoallw_blocks(op, nb, &sends, &recvs)?;
        }
        drop(scratch);
        match mismatch {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// The receive buffer to use: `rv` when the `given` counts match what really arrives (`actual`), else scratch memory
/// of the right size (kept in `scratch`) and the error to report once the collective is done. A rank whose counts
/// are wrong still takes part, so nobody waits for it, but its buffer is never written.
fn target<T: Data>(
    op: &str,
    what: &str,
    given: &[usize],
    actual: &[usize],
    rv: ViewMut,
    scratch: &mut Vec<T>,
) -> (ViewMut, Option<Error>) {
    if given == actual {
        return (rv, None);
    }
    *scratch = crate::sys::memory::zeroed_vec(actual.iter().sum());
    let e = size_error(
        op,
        format!("{what} {given:?} differ from what arrives, {actual:?}; nothing was received into the buffer"),
    );
    (scratch.view_mut(), Some(e))
}

/// What only the root can check of its own buffer (`what`: "send" or "receive") and counts: one count per rank,
/// contiguous, holding their sum.
fn root_side(op: &str, what: &str, buf: Option<(usize, bool, &[usize])>, p: usize) -> Option<Error> {
    match buf {
        None => Some(size_error(op, format!("the root must pass a {what} buffer and counts"))),
        Some((_, _, c)) if c.len() != p => Some(size_error(op, format!("{} counts for {p} ranks", c.len()))),
        Some((_, false, _)) => Some(not_contiguous(op, &format!("{what} buffer"))),
        Some((len, true, c)) if sum(c) != Some(len) => Some(size_error(
            op,
            format!(
                "the {what} buffer holds {len} elements, the counts add up to {:?}",
                sum(c)
            ),
        )),
        Some(_) => None,
    }
}

fn c_int_ok(n: usize) -> Option<i32> {
    i32::try_from(n).ok()
}

#[allow(dead_code)]
fn unused(_: &View) {}
