//! Scopes and the non-blocking buffer operations that borrow buffers in them (see the `request` module docs).

use std::cell::RefCell;
use std::marker::PhantomData;

use super::{Completion, engine, poll, wait_raw_ref};
use crate::buffer::{Buffer, BufferMut};
use crate::comm::Comm;
use crate::error::Result;
use crate::p2p::{Peer, Source, Status, Tag, TagMatch};
use crate::sys::{Desc, RawRequest, RawStatus, p2p::Mode};

enum Slot {
    /// A send or a collective: its MPI request, what it must keep alive until completion, and its status.
    Raw {
        req: RawRequest,
        // Declared after `req`, so that it is dropped after the request (whose drop waits).
        _keep: Option<Box<dyn std::any::Any>>,
        /// The status to report: fixed at the start (a send, a collective), or for a receive (`req.is_receive()`)
        /// its own (source, tag and size of what arrived), filled in once the request has completed.
        status: RawStatus,
        /// Whether a poll has seen the request complete.
        done: bool,
        op: &'static str,
    },
    /// A receive in the engine.
    Recv(engine::Id),
    /// A receive taken from the engine, with its result (see `collect_done`).
    Taken(Result<Status>),
    /// A bare receive (of an unchecked handle) that was cancelled before a message matched it.
    Cancelled(&'static str),
    Done,
}

/// The operations of a scope; completes what is left when dropped.
struct Slots(RefCell<Vec<Slot>>);

/// A region in which non-blocking buffer operations may borrow buffers; see [`scope`].
pub struct Scope<'scope, 'env: 'scope> {
    slots: Slots,
    _scope: PhantomData<&'scope mut &'scope ()>,
    _env: PhantomData<&'env mut &'env ()>,
}

/// Runs `f` with a [`Scope`] for non-blocking buffer operations and completes every operation started in it
/// before returning (see the [module docs](crate::request)).
///
/// ```no_run
/// # fn main() -> spmd::Result<()> {
/// # let universe = spmd::init()?; let world = universe.world();
/// let mut ghost = [0.0f64; 2];
/// let edge = [world.rank() as f64; 2];
/// spmd::request::scope(|s| -> spmd::Result<()> {
///     let peer = world.rank() ^ 1;
///     if peer < world.size() {
///         world.irecv_buf_into(s, peer, 0, &mut ghost)?; // handle dropped: the scope completes it
///         world.isend_buf(s, peer, 0, &edge)?;
///     }
///     Ok(())
/// })?;
/// # Ok(()) }
/// ```
pub fn scope<'env, F, T>(f: F) -> T
where
    F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> T,
{
    let s = Scope {
        slots: Slots(RefCell::new(Vec::with_capacity(8))),
        _scope: PhantomData,
        _env: PhantomData,
    };
    f(&s)
    // `s` drops here and completes what is left.
}

impl Drop for Slots {
    fn drop(&mut self) {
        let slots = std::mem::take(&mut *self.0.borrow_mut());
        for slot in slots {
            match slot {
                Slot::Raw { mut req, _keep, op, .. } => {
                    let _ = wait_raw_ref(&mut req, op);
                    drop(req);
                    drop(_keep);
                }
                Slot::Recv(id) => {
                    let _ = engine::wait(id);
                }
                Slot::Taken(_) | Slot::Cancelled(_) | Slot::Done => {}
            }
        }
    }
}

impl<'scope> Scope<'scope, '_> {
    /// Registers a started operation, with what it must keep alive and the status to report (a receive reports
    /// its completion's instead).
    #[inline]
    pub(crate) fn add_raw(
        &'scope self,
        req: RawRequest,
        keep: Option<Box<dyn std::any::Any>>,
        op: &'static str,
        status: RawStatus,
    ) -> Request<'scope> {
        self.add(Slot::Raw {
            req,
            _keep: keep,
            status,
            done: false,
            op,
        })
    }

    /// Registers a request that completed when it started (a blocking fallback, or no peer).
    pub(crate) fn add_done(&'scope self) -> Request<'scope> {
        self.add(Slot::Done)
    }

    #[inline]
    fn add(&'scope self, slot: Slot) -> Request<'scope> {
        let mut s = self.slots.0.borrow_mut();
        s.push(slot);
        Request {
            slots: &self.slots,
            slot: s.len() - 1,
        }
    }
}

/// A non-blocking buffer operation started in a [`Scope`]; completes with a [`Status`].
///
/// Dropping it without waiting is allowed: the scope completes the operation at its end.
pub struct Request<'scope> {
    slots: &'scope Slots,
    slot: usize,
}

impl Request<'_> {
    /// Cancels a receive that no message has matched yet (`true`); a receive that has matched, or a send or
    /// collective, completes as usual (`false`). A cancelled receive's `wait` is an [`crate::ErrorKind::Cancelled`] error.
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// let mut x = 0u32;
    /// spmd::request::scope(|s| -> spmd::Result<()> {
    ///     let r = world.irecv_buf_into(s, spmd::ANY_SOURCE, 99, &mut x)?;
    ///     r.cancel(); // nobody sends with tag 99
    ///     Ok(())
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn cancel(&self) -> bool {
        let mut slots = self.slots.0.borrow_mut();
        let slot = &mut slots[self.slot];
        match slot {
            Slot::Recv(id) => engine::cancel(*id),
            Slot::Raw {
                req,
                status,
                done: done @ false,
                op,
                ..
            } if req.is_receive() => match req.cancel_receive() {
                Ok(None) => {
                    *slot = Slot::Cancelled(op);
                    true
                }
                Ok(Some(st)) => {
                    *status = st;
                    *done = true;
                    false
                }
                Err(_) => false,
            },
            _ => false,
        }
    }
}

impl poll::Poll for Request<'_> {
    fn poll(&mut self) -> Result<bool> {
        let mut slots = self.slots.0.borrow_mut();
        match &mut slots[self.slot] {
            Slot::Raw { done: true, .. } => Ok(true),
            Slot::Raw {
                req, op, status, done, ..
            } => {
                if let Some(st) = req.test().map_err(|c| c.error(op))? {
                    *done = true;
                    if req.is_receive() {
                        *status = st;
                    }
                }
                Ok(*done)
            }
            Slot::Recv(id) => Ok(engine::is_done(*id)),
            Slot::Taken(_) | Slot::Cancelled(_) | Slot::Done => Ok(true),
        }
    }

    fn collect_done(reqs: &[Self]) {
        // Worth a lock held across all of them only with several receives.
        let receives = reqs
            .iter()
            .filter(|r| matches!(r.slots.0.borrow()[r.slot], Slot::Recv(_)))
            .take(2)
            .count();
        if receives < 2 {
            return;
        }
        let mut taker = engine::taker();
        for r in reqs {
            let mut slots = r.slots.0.borrow_mut();
            let slot = &mut slots[r.slot];
            if let Slot::Recv(id) = *slot
                && let Some(outcome) = taker.take(id)
            {
                *slot = Slot::Taken(outcome.map(|o| o.status()));
            }
        }
    }
}

impl Completion for Request<'_> {
    type Output = Status;

    #[track_caller]
    fn wait(self) -> Result<Status> {
        let _wait = crate::runtime::watch::enter("wait", 0, 0);
        let mut slots = self.slots.0.borrow_mut();
        let slot = &mut slots[self.slot];
        if let Slot::Raw {
            req, status, done, op, ..
        } = slot
        {
            // Completed in place (the engine's progress, which a wait may run, never looks at scopes); after an
            // error the slot stays as it is and the scope's end waits for it again.
            if !*done {
                let got = wait_raw_ref(req, op)?;
                if req.is_receive() {
                    *status = got;
                }
            }
            let status = Status::from_raw(*status);
            *slot = Slot::Done;
            return Ok(status);
        }
        let slot = std::mem::replace(slot, Slot::Done);
        drop(slots);
        match slot {
            Slot::Raw { .. } => unreachable!("handled above"),
            Slot::Recv(id) => engine::wait(id).map(|o| o.status()),
            Slot::Taken(r) => r,
            Slot::Cancelled(op) => Err(engine::cancelled(op)),
            Slot::Done => Ok(Status::null()),
        }
    }
}

impl<'u> Comm<'u> {
    /// Starts sending a buffer (`MPI_Isend`); it stays borrowed until the scope ends.
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// let data = vec![1u8; 1 << 20];
    /// spmd::request::scope(|s| -> spmd::Result<()> {
    ///     if world.rank() == 0 && world.size() > 1 {
    ///         let req = world.isend_buf(s, 1, 0, &data)?;
    ///         // ... compute while the data travels ...
    ///         spmd::request::Completion::wait(req)?;
    ///     }
    ///     Ok(())
    /// })?;
    /// # if world.rank() == 1 { world.recv_buf::<u8>(0, 0)?; }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Comm::send_buf`].
    pub fn isend_buf<'scope, B: Buffer + ?Sized>(
        &self,
        scope: &'scope Scope<'scope, '_>,
        dest: impl Into<Peer>,
        tag: Tag,
        buf: &'scope B,
    ) -> Result<Request<'scope>> {
        self.isend_buf_mode(scope, "isend_buf", dest.into(), tag, buf, Mode::Standard)
    }

    /// Starts a synchronous send (`MPI_Issend`): completes once the matching receive has started.
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// let x = [1.0f64];
    /// spmd::request::scope(|s| -> spmd::Result<()> {
    ///     if world.rank() == 0 && world.size() > 1 {
    ///         world.issend_buf(s, 1, 0, &x)?;
    ///     }
    ///     Ok(())
    /// })?;
    /// # if world.rank() == 1 { world.recv_buf::<f64>(0, 0)?; }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Comm::send_buf`].
    pub fn issend_buf<'scope, B: Buffer + ?Sized>(
        &self,
        scope: &'scope Scope<'scope, '_>,
        dest: impl Into<Peer>,
        tag: Tag,
        buf: &'scope B,
    ) -> Result<Request<'scope>> {
        self.isend_buf_mode(scope, "issend_buf", dest.into(), tag, buf, Mode::Synchronous)
    }

    fn isend_buf_mode<'scope, B: Buffer + ?Sized>(
        &self,
        scope: &'scope Scope<'scope, '_>,
        op: &'static str,
        dest: Peer,
        tag: Tag,
        buf: &'scope B,
        mode: Mode,
    ) -> Result<Request<'scope>> {
        let Some(d) = self.dest_arg(op, dest, tag)? else {
            return Ok(scope.add_done());
        };
        let desc = Desc::of_buf(buf)?;
        let req = self
            .inner
            .raw
            .isend(&desc, d, tag, mode)
            .map_err(|c| c.error(&format!("{op} to rank {d} (tag {tag})")))?;
        let status = RawStatus {
            source: d,
            tag,
            bytes: desc.bytes,
        };
        // A derived datatype may be freed while the send is pending (MPI completes it normally); it is kept anyway.
        Ok(scope.add_raw(req, keep_datatype(desc), op, status))
    }

    /// Starts receiving a buffer message into `buf`, which stays borrowed until the scope ends. The message's
    /// size is checked before anything lands in `buf`.
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// use spmd::request::{Completion, scope};
    /// let mut v = vec![0i64; 16];
    /// scope(|s| -> spmd::Result<()> {
    ///     if world.rank() == 1 {
    ///         let r = world.irecv_buf_into(s, 0, 0, &mut v)?;
    ///         let st = r.wait()?;
    ///         assert_eq!(st.count::<i64>(), 16);
    ///     } else if world.rank() == 0 && world.size() > 1 {
    ///         world.send_buf(1, 0, &vec![3i64; 16])?;
    ///     }
    ///     Ok(())
    /// })?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Comm::recv_buf_into`]; a message longer than `buf` (or of the other family) is reported when the
    /// request completes.
    pub fn irecv_buf_into<'scope, B: BufferMut + ?Sized>(
        &self,
        scope: &'scope Scope<'scope, '_>,
        source: impl Into<Source>,
        tag: impl Into<TagMatch>,
        buf: &'scope mut B,
    ) -> Result<Request<'scope>> {
        let op = "irecv_buf_into";
        let Some((s, t)) = self.match_args(op, source.into(), tag.into())? else {
            return Ok(scope.add_done());
        };
        let desc = Desc::of_buf_mut(buf)?;
        if !self.checked && !engine::busy() {
            // The caller promised (`Comm::unchecked`) that messages fit: the bare `MPI_Irecv`. With receives
            // pending in the engine it goes there too, so that receives still match in the order they started.
            let req = self
                .inner
                .raw
                .irecv_plain(&desc, s, t)
                .map_err(|c| c.error(&format!("{op} from rank {s} (tag {t})")))?;
            return Ok(scope.add_raw(req, keep_datatype(desc), op, RawStatus::empty()));
        }
        let target = engine::Target::Buf {
            desc,
            name: std::any::type_name::<B::Item>(),
            elem_bytes: size_of::<B::Item>(),
        };
        let id = engine::start(std::sync::Arc::clone(&self.inner), op, s, t, target);
        Ok(scope.add(Slot::Recv(id)))
    }
}

/// What a point-to-point request keeps alive: its description when it owns a derived datatype (MPI would let the
/// datatype go while the operation is pending, but spmd frees its own handles only after completion).
fn keep_datatype(desc: Desc) -> Option<Box<dyn std::any::Any>> {
    desc.owns_datatype().then(|| Box::new(desc) as Box<dyn std::any::Any>)
}
