//! Non-blocking collectives: barrier, broadcast, all-reduce and gather of buffers (in a
//! [`crate::request::Scope`]), and broadcast, gather and all-reduce of objects ([`CollRequest`], which owns its
//! memory). Each is MPI's own non-blocking collective (`MPI_Ibcast`, ...); object forms chain two of them (sizes,
//! then bytes), the second started when the first is seen complete.
//!
//! On a checked handle, the buffer forms agree on sizes when they start (a small blocking all-reduce), so
//! starting one waits until every rank has started it; on an [`Comm::unchecked`] handle they start at once.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::object::fold;
use super::{Op, not_contiguous, size_error};
use crate::buffer::{Buffer, BufferMut, ViewSource, ViewSourceMut};
use crate::codec;
use crate::comm::Comm;
use crate::error::{ErrorKind, Result, fail};
use crate::request::{self, Completion, Request, Scope, engine, poll};
use crate::runtime::Universe;
use crate::sys::coll::{BlockKind, ScanKind, VArgs, VKind, int_layout};
use crate::sys::datatype::VBase;
use crate::sys::{Desc, RawRequest, RawStatus};

/// What comes after a step completes.
type Then<T> = Box<dyn FnOnce() -> Result<Step<T>>>;

enum Step<T> {
    /// An MPI request in flight, and what to do once it completes (which owns the memory the request uses:
    /// declared after it, so it is dropped after the request, whose drop waits).
    Wait {
        req: RawRequest,
        then: Then<T>,
    },
    Done(Result<T>),
    Taken,
}

/// A non-blocking collective that owns its memory: [`Comm::ibarrier`], [`Comm::ibroadcast_obj`],
/// [`Comm::igather_obj`], [`Comm::iall_reduce_obj`]. Complete it with [`Completion::wait`] or test it with
/// [`Completion::test`]; dropping it waits for it.
pub struct CollRequest<'u, T> {
    step: Step<T>,
    op: &'static str,
    _u: PhantomData<&'u Universe>,
}

impl<T> CollRequest<'_, T> {
    fn new(op: &'static str, step: Step<T>) -> Self {
        CollRequest {
            step,
            op,
            _u: PhantomData,
        }
    }

    /// Advances as far as completed MPI requests allow. After an error the operation is over (later steps would
    /// work on what the failed one left).
    fn advance(&mut self, block: bool) -> Result<bool> {
        let r = self.advance_steps(block);
        if r.is_err() {
            self.step = Step::Taken;
        }
        r
    }

    fn advance_steps(&mut self, block: bool) -> Result<bool> {
        loop {
            match &mut self.step {
                Step::Wait { req, .. } => {
                    let done = if block {
                        request::wait_raw(std::mem::replace(req, RawRequest::null()), self.op)?;
                        true
                    } else {
                        req.test().map_err(|c| c.error(self.op))?.is_some()
                    };
                    if !done {
                        return Ok(false);
                    }
                    let Step::Wait { then, .. } = std::mem::replace(&mut self.step, Step::Taken) else {
                        unreachable!("matched above")
                    };
                    self.step = match then() {
                        Ok(s) => s,
                        Err(e) => Step::Done(Err(e)),
                    };
                }
                Step::Done(_) => return Ok(true),
                Step::Taken => return fail(ErrorKind::InvalidArgument, format!("{}: already completed", self.op)),
            }
        }
    }
}

impl<T> poll::Poll for CollRequest<'_, T> {
    fn poll(&mut self) -> Result<bool> {
        self.advance(false)
    }
}

impl<T> Drop for CollRequest<'_, T> {
    /// Finishes the collective: every rank must make each of its steps, and a bare `MPI_Wait` on the current one
    /// would neither start the next steps nor keep this rank's pending receives moving. Errors go with it.
    fn drop(&mut self) {
        if !matches!(self.step, Step::Wait { .. }) {
            return;
        }
        let _loop = crate::runtime::watch::wait_loop();
        while let Ok(false) = self.advance(!engine::busy()) {
            crate::runtime::watch::waiting("collective (dropped)");
            engine::progress();
        }
    }
}

impl<T> Completion for CollRequest<'_, T> {
    type Output = T;

    #[track_caller]
    fn wait(mut self) -> Result<T> {
        let _wait = crate::runtime::watch::enter("wait (collective)", 0, 0);
        let _loop = crate::runtime::watch::wait_loop();
        while !self.advance(!engine::busy())? {
            crate::runtime::watch::waiting("collective wait");
            engine::progress();
        }
        match std::mem::replace(&mut self.step, Step::Taken) {
            Step::Done(r) => r,
            _ => unreachable!("advance returned true"),
        }
    }
}

/// Starts a non-blocking call whose memory `keep` owns; `then` runs when it completes.
fn chain<T, K: 'static>(
    op: &str,
    mut keep: K,
    start: impl FnOnce(&mut K) -> crate::sys::coll::Started,
    then: impl FnOnce(K) -> Result<Step<T>> + 'static,
) -> Result<Step<T>> {
    let req = start(&mut keep)
        .map_err(|c| c.error(op))?
        .expect("a non-blocking call returns a request");
    Ok(Step::Wait {
        req,
        then: Box::new(move || then(keep)),
    })
}

impl<'u> Comm<'u> {
    /// Starts a barrier (`MPI_Ibarrier`); it completes once every rank has started it.
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// use spmd::request::Completion;
    /// let mut b = world.ibarrier()?;
    /// while !b.test()? { /* work */ }
    /// b.wait()?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Mpi`].
    pub fn ibarrier(&self) -> Result<CollRequest<'u, ()>> {
        let raw = &self.inner.raw;
        let step = chain("ibarrier", (), |_| raw.barrier(true), |_| Ok(Step::Done(Ok(()))))?;
        Ok(CollRequest::new("ibarrier", step))
    }

    /// Starts a broadcast of a buffer borrowed for the scope (`MPI_Ibcast`).
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// let mut table = vec![0.0f64; 1 << 16];
    /// spmd::request::scope(|s| -> spmd::Result<()> {
    ///     let r = world.ibroadcast_buf(s, 0, &mut table)?;
    ///     // ... work that does not touch `table` ...
    ///     spmd::request::Completion::wait(r)?;
    ///     Ok(())
    /// })?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Comm::broadcast_buf`].
    pub fn ibroadcast_buf<'scope, B: BufferMut + ?Sized>(
        &self,
        scope: &'scope Scope<'scope, '_>,
        root: usize,
        buf: &'scope mut B,
    ) -> Result<Request<'scope>> {
        let op = "ibroadcast_buf";
        self.check_root(op, root)?;
        let v = buf.view_mut();
        self.agree(op, "buffer lengths", v.len, None)?;
        let d = Desc::of_mut(&v)?;
        let req = self
            .inner
            .raw
            .bcast(&d, root as i32, true)
            .map_err(|c| c.error(op))?
            .expect("non-blocking");
        Ok(scope.add_raw(req, Some(Box::new(d)), op, RawStatus::empty()))
    }

    /// Starts an all-reduce of buffers borrowed for the scope (`MPI_Iallreduce`; at most `i32::MAX` elements).
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// let local = [1.0f64; 4];
    /// let mut global = [0.0; 4];
    /// spmd::request::scope(|s| -> spmd::Result<()> {
    ///     world.iall_reduce_buf(s, &local, &mut global, spmd::Op::Sum)?; // completed by the scope
    ///     Ok(())
    /// })?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Comm::all_reduce_buf`]; [`ErrorKind::InvalidArgument`] above `i32::MAX` elements.
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
        let local = if !sv.is_contiguous() || !rv.is_contiguous() {
            Some(not_contiguous(name, "send and receive buffers"))
        } else if sv.len != rv.len {
            Some(size_error(
                name,
                format!("send holds {} elements but receive {}", sv.len, rv.len),
            ))
        } else if rv.len > i32::MAX as usize {
            Some(size_error(
                name,
                format!("{} elements exceed i32::MAX (use all_reduce_buf)", rv.len),
            ))
        } else {
            None
        };
        self.agree(name, "buffer lengths", sv.len, local)?;
        let (sd, rd) = (Desc::of(&sv)?, Desc::of_mut(&rv)?);
        let req = self
            .inner
            .raw
            .allreduce_like(ScanKind::All, Some(&sd), &rd, op.raw(), true)
            .map_err(|c| c.error(name))?
            .expect("non-blocking");
        Ok(scope.add_raw(req, Some(Box::new((sd, rd))), name, RawStatus::empty()))
    }

    /// Starts a gather of buffers borrowed for the scope (`MPI_Igather`, see [`Comm::gather_buf`]).
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// let mine = [world.rank() as u32];
    /// let mut all = vec![0u32; world.size()];
    /// spmd::request::scope(|s| -> spmd::Result<()> {
    ///     world.igather_buf(s, 0, &mine, (world.rank() == 0).then_some(&mut all[..]))?;
    ///     Ok(())
    /// })?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Comm::gather_buf`].
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
        self.check_root(op, root)?;
        let sv = send.view();
        let n = sv.len;
        let p = self.size();
        let rv = if self.rank() == root {
            recv.map(|r| r.view_mut())
        } else {
            None
        };
        let local = if self.rank() != root {
            None
        } else {
            match &rv {
                None => Some(size_error(op, "the root must pass a receive buffer".into())),
                Some(r) if !r.is_contiguous() => Some(not_contiguous(op, "receive buffer")),
                Some(r) if Some(r.len) != n.checked_mul(p) => Some(size_error(
                    op,
                    format!(
                        "the root's receive buffer holds {} elements, {p} × {n} are needed",
                        r.len
                    ),
                )),
                Some(_) => None,
            }
        };
        self.agree(op, "block lengths", n, local)?;
        let sd = Desc::of(&sv)?;
        let rd = rv.as_ref().map(|rv| Desc::block(rv, 0, n)).transpose()?;
        let req = self
            .inner
            .raw
            .blocks(BlockKind::Gather, Some(&sd), rd.as_ref(), root as i32, true)
            .map_err(|c| c.error(op))?
            .expect("non-blocking");
        Ok(scope.add_raw(req, Some(Box::new((sd, rd))), op, RawStatus::empty()))
    }

    /// Starts broadcasting a value from `root` (the root passes `Some(&value)`); completes with the value on every
    /// rank.
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// use spmd::request::Completion;
    /// let msg = "start".to_string();
    /// let req = world.ibroadcast_obj(0, (world.rank() == 0).then_some(&msg))?;
    /// let got: String = req.wait()?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::InvalidRank`] now; on completion as [`Comm::broadcast_obj`].
    pub fn ibroadcast_obj<T: Serialize + DeserializeOwned + 'static>(
        &self,
        root: usize,
        value: Option<&T>,
    ) -> Result<CollRequest<'u, T>> {
        let op = "ibroadcast_obj";
        self.check_root(op, root)?;
        let is_root = self.rank() == root;
        let bytes = if is_root {
            match value {
                Some(v) => codec::encode_inline(v).unwrap_or_else(|e| codec::error_packet_of(&e)),
                None => codec::error_packet(
                    ErrorKind::InvalidArgument,
                    &format!("{op}: the root (rank {root}) passed no value"),
                ),
            }
        } else {
            Vec::new()
        };
        let inner = std::sync::Arc::clone(&self.inner);
        let raw0 = &self.inner.raw;
        let len = vec![bytes.len() as u64];
        let step = chain(
            op,
            (len, bytes),
            |(len, _)| raw0.bcast(&Desc::of_mut(&len.view_mut()).expect("8 bytes"), root as i32, true),
            move |(len, bytes)| {
                let bytes = if is_root {
                    bytes
                } else {
                    crate::sys::memory::byte_vec(len[0] as usize)
                };
                let raw = &inner.raw;
                let d = Desc::bytes(&bytes)?;
                let req = raw
                    .bcast(&d, root as i32, true)
                    .map_err(|c| c.error(op))?
                    .expect("non-blocking");
                drop(d);
                Ok(Step::Wait {
                    req,
                    then: Box::new(move || {
                        Ok(Step::Done(codec::decode_inline(&bytes, &|| {
                            format!("{op}: the value from rank {root}")
                        })))
                    }),
                })
            },
        )?;
        Ok(CollRequest::new(op, step))
    }

    /// Starts gathering every rank's value at `root` (completes with `Some(values)` there, `None` elsewhere).
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// use spmd::request::Completion;
    /// let req = world.igather_obj(0, &world.rank().to_string())?;
    /// if let Some(all) = req.wait()? {
    ///     assert_eq!(all.len(), world.size());
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::InvalidRank`], [`ErrorKind::Encode`] now; on completion decode errors, and
    /// [`ErrorKind::InvalidArgument`] if the values together exceed `i32::MAX` bytes (use [`Comm::gather_obj`]).
    pub fn igather_obj<T: Serialize + DeserializeOwned + 'static>(
        &self,
        root: usize,
        value: &T,
    ) -> Result<CollRequest<'u, Option<Vec<T>>>> {
        let op = "igather_obj";
        self.check_root(op, root)?;
        let is_root = self.rank() == root;
        self.byte_gather(op, codec::encode_inline(value)?, Some(root), move |parts| {
            if !is_root {
                return Ok(None);
            }
            parts
                .iter()
                .enumerate()
                .map(|(r, b)| codec::decode_inline(b, &|| format!("{op}: the value from rank {r}")))
                .collect::<Result<Vec<T>>>()
                .map(Some)
        })
    }

    /// Starts combining every rank's value with `f` in rank order; completes with the result on every rank.
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// use spmd::request::Completion;
    /// let req = world.iall_reduce_obj(&vec![world.rank()], |mut a, b| { a.extend(b); a })?;
    /// let all = req.wait()?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Comm::igather_obj`].
    pub fn iall_reduce_obj<T, F>(&self, value: &T, f: F) -> Result<CollRequest<'u, T>>
    where
        T: Serialize + DeserializeOwned + 'static,
        F: Fn(T, T) -> T + 'static,
    {
        let op = "iall_reduce_obj";
        self.byte_gather(op, codec::encode_inline(value)?, None, move |parts| {
            let values = parts
                .iter()
                .enumerate()
                .map(|(r, b)| codec::decode_inline(b, &|| format!("{op}: the value from rank {r}")))
                .collect::<Result<Vec<T>>>()?;
            Ok(fold(values, &f))
        })
    }

    /// Lengths by `MPI_Iallgather`, then bytes by `MPI_Igatherv` (to `root`) or `MPI_Iallgatherv` (`None`);
    /// `finish` gets every rank's bytes (empty on non-roots of a gather).
    fn byte_gather<T: 'static>(
        &self,
        op: &'static str,
        mine: Vec<u8>,
        root: Option<usize>,
        finish: impl FnOnce(Vec<Vec<u8>>) -> Result<T> + 'static,
    ) -> Result<CollRequest<'u, T>> {
        let p = self.size();
        let me = self.rank();
        let inner = std::sync::Arc::clone(&self.inner);
        let raw0 = &self.inner.raw;
        let keep = (vec![mine.len() as u64], vec![0u64; p], mine);
        let step = chain(
            op,
            keep,
            |(len, lens, _)| {
                let sd = Desc::of(&len.view()).expect("8 bytes");
                let rd = Desc::block(&lens.view_mut(), 0, 1).expect("one per rank");
                raw0.blocks(BlockKind::Allgather, Some(&sd), Some(&rd), 0, true)
            },
            move |(_, lens, mine)| {
                let counts: Vec<usize> = lens.iter().map(|&l| l as usize).collect();
                let Some((rc, rd)) = int_layout(&counts) else {
                    return Ok(Step::Done(fail(
                        ErrorKind::InvalidArgument,
                        format!("{op}: the values add up to more than i32::MAX bytes"),
                    )));
                };
                let receives = root.is_none_or(|r| r == me);
                let mut all = crate::sys::memory::byte_vec(if receives { counts.iter().sum() } else { 0 });
                let args = VArgs {
                    send_counts: Vec::new(),
                    send_displs: Vec::new(),
                    recv_counts: rc,
                    recv_displs: rd,
                };
                let sb = VBase::of(&mine.view())?;
                let rb = if receives {
                    Some(VBase::of_mut(&all.view_mut())?)
                } else {
                    None
                };
                let (kind, r) = match root {
                    Some(r) => (VKind::Gatherv, r as i32),
                    None => (VKind::Allgatherv, 0),
                };
                let req = inner
                    .raw
                    .vector(kind, Some(&sb), rb.as_ref(), &args, r, true)
                    .map_err(|c| c.error(op))?
                    .expect("non-blocking");
                Ok(Step::Wait {
                    req,
                    then: Box::new(move || {
                        let _keep = (&args, &mine);
                        let parts = if receives {
                            let mut off = 0;
                            counts
                                .iter()
                                .map(|&c| {
                                    let b = all[off..off + c].to_vec();
                                    off += c;
                                    b
                                })
                                .collect()
                        } else {
                            Vec::new()
                        };
                        Ok(Step::Done(finish(parts)))
                    }),
                })
            },
        )?;
        Ok(CollRequest::new(op, step))
    }
}
