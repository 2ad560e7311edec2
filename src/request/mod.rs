//! Non-blocking operations: [`scope`] and [`Request`] for buffers, [`SendRequest`] and [`RecvRequest`] for
//! objects, and the [`Completion`] trait with [`wait_all`], [`wait_any`] and [`test_all`].
//!
//! # Buffers: scoped requests
//! A non-blocking buffer operation lends the buffer to MPI until it completes. [`scope`] makes that safe the way
//! `std::thread::scope` makes borrowing threads safe: buffers are borrowed for the whole scope, and the scope
//! ends by completing every operation started in it, as `std::thread::scope` joins its threads. Dropping a
//! handle only detaches it: the operation still completes (a receive still receives its message into the
//! buffer) by the end of the scope. Cancelling a receive is an explicit call ([`Request::cancel`]).
//!
//! ```no_run
//! # fn main() -> spmd::Result<()> {
//! # let universe = spmd::init()?; let world = universe.world();
//! use spmd::request::{scope, wait_all};
//! let (rank, size) = (world.rank(), world.size());
//! let right = (rank + 1) % size;
//! let left = (rank + size - 1) % size;
//! let send = vec![rank as f64; 1000];
//! let mut recv = vec![0.0; 1000];
//! scope(|s| -> spmd::Result<()> {
//!     let r = world.irecv_buf_into(s, left, 0, &mut recv)?;
//!     let w = world.isend_buf(s, right, 0, &send)?;
//!     wait_all(vec![r, w])?;
//!     Ok(())
//! })?;
//! assert_eq!(recv[0], left as f64);
//! # Ok(()) }
//! ```
//!
//! # Objects: owned requests
//! [`Comm::isend_obj`] serialises at once and owns the bytes; [`Comm::irecv_obj`] owns its receive buffer and
//! yields the value on completion. Any size works. Dropping an object receive detaches it: a message that
//! matches it is still received (and discarded), so its sender completes and later messages keep their order.
//!
//! # Progress and order
//! A non-blocking receive waits for its message with a matched probe (see the receive engine in
//! `request/engine.rs`), so that its size is known before any byte lands in the buffer. Pending receives advance
//! whenever spmd is inside MPI: every blocking spmd call (send, receive, collective, wait) is then a test loop that
//! also advances them, so the usual patterns (post receives, send, reduce, wait) cannot deadlock. During long
//! computations without spmd calls, call [`Completion::test`] now and then to keep messages moving (Open MPI
//! makes no progress outside MPI calls). Pending receives are matched in the order they were started, as MPI
//! promises.
//!
//! Not covered yet: persistent requests, `MPI_Request_get_status`, cancelling sends.

pub(crate) mod engine;
mod object;

pub use object::{RecvRequest, SendRequest};

use std::cell::RefCell;
use std::marker::PhantomData;

use crate::buffer::{Buffer, BufferMut};
use crate::comm::Comm;
use crate::error::{ErrorKind, Result, fail};
use crate::p2p::{Peer, Source, Status, Tag, TagMatch};
use crate::sys::coll::Started;
use crate::sys::{Desc, RawRequest, RawStatus, p2p::Mode};

pub(crate) use engine::shutdown;

/// Completes a raw request: `MPI_Wait` when no receive is pending, else a test loop that keeps them moving.
pub(crate) fn wait_raw(mut req: RawRequest, what: &str) -> Result<()> {
    wait_raw_ref(&mut req, what).map(|_| ())
}

fn wait_raw_ref(req: &mut RawRequest, what: &str) -> Result<RawStatus> {
    wait_raw_code(req, what).map_err(|c| c.error(what))
}

/// As [`wait_raw`], with the MPI error code for the caller to describe.
pub(crate) fn wait_raw_code(req: &mut RawRequest, what: &str) -> crate::sys::RawResult<RawStatus> {
    if !engine::busy() {
        return req.wait();
    }
    let _loop = crate::runtime::watch::wait_loop();
    let mut spins = 0u32;
    loop {
        if let Some(st) = req.test()? {
            return Ok(st);
        }
        crate::runtime::watch::waiting(what);
        engine::progress();
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(16) {
            std::thread::yield_now();
        }
    }
}

/// Runs a collective: the blocking MPI call (`nb` false), or its non-blocking form completed by a test loop that
/// keeps pending receives moving (`nb` true). All ranks must choose the same form: MPI never matches a blocking
/// collective with a non-blocking one. Checked collectives let the size agreement choose (non-blocking as soon as
/// any rank has receives pending, see [`crate::collective`]).
pub(crate) fn run_collective(op: &str, nb: bool, start: impl FnOnce(bool) -> Started) -> Result<()> {
    if !nb {
        return start(false).map(|_| ()).map_err(|c| c.error(op));
    }
    match start(true).map_err(|c| c.error(op))? {
        Some(req) => wait_raw(req, op),
        None => Ok(()),
    }
}

/// A blocking call with no non-blocking form in spmd (communicator creation): made as it is.
pub(crate) fn blocking_call<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    f()
}

pub(crate) mod poll {
    /// Looks whether a request has completed without driving the other pending receives (which the caller has
    /// just done), so that waiting on many requests costs one round of progress per pass, not one per request.
    pub trait Poll {
        /// Whether the request has completed.
        fn poll(&mut self) -> crate::Result<bool>;
    }
}

/// Something that completes later: a non-blocking send, receive or collective. Implemented by spmd's request
/// types only.
pub trait Completion: poll::Poll {
    /// What completion yields: a [`Status`] for buffer operations, the value for object receives.
    type Output;

    /// Advances the operation (and every pending receive) and tells whether it has completed. After `true`,
    /// [`Completion::wait`] returns at once.
    ///
    /// # Errors
    /// The operation's error, if it failed.
    fn test(&mut self) -> Result<bool> {
        engine::progress();
        self.poll()
    }

    /// Waits for completion and yields the result.
    ///
    /// # Errors
    /// The operation's error, if it failed.
    fn wait(self) -> Result<Self::Output>;
}

fn spin_until(mut done: impl FnMut() -> Result<bool>) -> Result<()> {
    let _loop = crate::runtime::watch::wait_loop();
    let mut spins = 0u32;
    loop {
        crate::runtime::watch::waiting("wait");
        engine::progress();
        if done()? {
            return Ok(());
        }
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(16) {
            std::thread::yield_now();
        }
    }
}

/// Waits for all requests and returns their results in order. Stops at the first error (the remaining requests
/// still complete when their scope ends or, for object requests, when they drop).
///
/// ```no_run
/// # fn main() -> spmd::Result<()> {
/// # let universe = spmd::init()?; let world = universe.world();
/// use spmd::request::wait_all;
/// let peers: Vec<usize> = (0..world.size()).filter(|&r| r != world.rank()).collect();
/// let sends = peers
///     .iter()
///     .map(|&p| world.isend_obj(p, 0, &world.rank()))
///     .collect::<spmd::Result<Vec<_>>>()?;
/// let recvs = peers
///     .iter()
///     .map(|&p| world.irecv_obj::<usize>(p, 0))
///     .collect::<spmd::Result<Vec<_>>>()?;
/// let got = wait_all(recvs)?;
/// wait_all(sends)?;
/// assert!(got.iter().all(|(r, st)| *r == st.source()));
/// # Ok(()) }
/// ```
///
/// # Errors
/// The first failing request's error.
#[track_caller]
pub fn wait_all<R: Completion>(reqs: impl IntoIterator<Item = R>) -> Result<Vec<R::Output>> {
    let _wait = crate::runtime::watch::enter("wait_all", 0, 0);
    let mut reqs: Vec<R> = reqs.into_iter().collect();
    // Requests before `first` have completed: each pass looks at the others, from the first not yet done.
    let mut first = 0;
    spin_until(|| {
        while first < reqs.len() && reqs[first].poll()? {
            first += 1;
        }
        Ok(first == reqs.len())
    })?;
    reqs.into_iter().map(Completion::wait).collect()
}

/// Polls every request once (progress is the caller's); `true` if all have completed.
fn poll_all<R: Completion>(reqs: &mut [R]) -> Result<bool> {
    let mut all = true;
    for r in reqs.iter_mut() {
        all &= r.poll()?;
    }
    Ok(all)
}

/// Waits until one of the requests completes, removes it from `reqs` and returns its index and result.
///
/// ```no_run
/// # fn main() -> spmd::Result<()> {
/// # let universe = spmd::init()?; let world = universe.world();
/// use spmd::request::wait_any;
/// if world.rank() == 0 {
///     let mut pending: Vec<_> = (1..world.size())
///         .map(|r| world.irecv_obj::<String>(r, 0))
///         .collect::<spmd::Result<_>>()?;
///     while !pending.is_empty() {
///         let (_, (msg, st)) = wait_any(&mut pending)?;
///         println!("rank {} says {msg}", st.source());
///     }
/// } else {
///     world.send_obj(0, 0, &"hi".to_string())?;
/// }
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`ErrorKind::InvalidArgument`] if `reqs` is empty; the completed request's error.
#[track_caller]
pub fn wait_any<R: Completion>(reqs: &mut Vec<R>) -> Result<(usize, R::Output)> {
    let _wait = crate::runtime::watch::enter("wait_any", 0, 0);
    if reqs.is_empty() {
        return fail(ErrorKind::InvalidArgument, "wait_any: no requests");
    }
    let mut found = None;
    spin_until(|| {
        for (i, r) in reqs.iter_mut().enumerate() {
            if r.poll()? {
                found = Some(i);
                return Ok(true);
            }
        }
        Ok(false)
    })?;
    let i = found.expect("set when the loop ends");
    Ok((i, reqs.remove(i).wait()?))
}

/// Tests every request once; `true` if all have completed.
///
/// ```no_run
/// # fn main() -> spmd::Result<()> {
/// # let universe = spmd::init()?; let world = universe.world();
/// let mut reqs = vec![world.irecv_obj::<u64>(spmd::ANY_SOURCE, 0)?];
/// while !spmd::request::test_all(&mut reqs)? {
///     // compute a chunk of work
/// #   break;
/// }
/// # Ok(()) }
/// ```
///
/// # Errors
/// The first failing request's error.
pub fn test_all<R: Completion>(reqs: &mut [R]) -> Result<bool> {
    engine::progress();
    poll_all(reqs)
}

// ---------------------------------------------------------------------------------------------------------------
// Scopes and buffer requests
// ---------------------------------------------------------------------------------------------------------------

enum Slot {
    /// A send or a collective: its MPI request, what it must keep alive until completion, and its status.
    Raw {
        req: RawRequest,
        // Declared after `req`, so that it is dropped after the request (whose drop waits).
        _keep: Option<Box<dyn std::any::Any>>,
        /// The status to report, or `None` for a receive's own (source, tag and size of what arrived).
        status: Option<Status>,
        /// The completion's status, once a poll has seen it complete.
        got: Option<RawStatus>,
        op: &'static str,
    },
    /// A receive in the engine.
    Recv(engine::Id),
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
/// before returning (see the [module docs](self)).
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
                Slot::Done => {}
            }
        }
    }
}

impl<'scope> Scope<'scope, '_> {
    /// Registers a started send or collective, with what it must keep alive.
    pub(crate) fn add_raw(
        &'scope self,
        req: RawRequest,
        keep: Option<Box<dyn std::any::Any>>,
        op: &'static str,
        status: Option<Status>,
    ) -> Request<'scope> {
        self.add(Slot::Raw {
            req,
            _keep: keep,
            status,
            got: None,
            op,
        })
    }

    /// Registers a request that completed when it started (a blocking fallback, or no peer).
    pub(crate) fn add_done(&'scope self) -> Request<'scope> {
        self.add(Slot::Done)
    }

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
    /// collective, completes as usual (`false`). A cancelled receive's `wait` is an [`ErrorKind::Cancelled`] error.
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
        let slots = self.slots.0.borrow();
        match &slots[self.slot] {
            Slot::Recv(id) => engine::cancel(*id),
            _ => false,
        }
    }
}

impl poll::Poll for Request<'_> {
    fn poll(&mut self) -> Result<bool> {
        let mut slots = self.slots.0.borrow_mut();
        match &mut slots[self.slot] {
            Slot::Raw { got: Some(_), .. } => Ok(true),
            Slot::Raw { req, op, got, .. } => {
                *got = req.test().map_err(|c| c.error(op))?;
                Ok(got.is_some())
            }
            Slot::Recv(id) => Ok(engine::is_done(*id)),
            Slot::Done => Ok(true),
        }
    }
}

impl Completion for Request<'_> {
    type Output = Status;

    #[track_caller]
    fn wait(self) -> Result<Status> {
        let _wait = crate::runtime::watch::enter("wait", 0, 0);
        let slot = std::mem::replace(&mut self.slots.0.borrow_mut()[self.slot], Slot::Done);
        match slot {
            Slot::Raw {
                mut req,
                _keep,
                status,
                got,
                op,
            } => {
                let got = match got {
                    Some(st) => st,
                    None => wait_raw_ref(&mut req, op)?,
                };
                Ok(status.unwrap_or_else(|| Status::from_raw(got)))
            }
            Slot::Recv(id) => match engine::wait(id)? {
                engine::Outcome::Buf(st) => Ok(st),
                engine::Outcome::Obj { status, .. } => Ok(status),
            },
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
        let desc = Desc::of(&buf.view())?;
        let req = self
            .inner
            .raw
            .isend(&desc, d, tag, mode)
            .map_err(|c| c.error(&format!("{op} to rank {d} (tag {tag})")))?;
        let status = Status::from_raw(RawStatus {
            source: d,
            tag,
            bytes: desc.bytes,
        });
        // A derived datatype may be freed while the send is pending (MPI completes it normally); it is kept anyway.
        let keep = desc.owns_datatype().then(|| Box::new(desc) as Box<dyn std::any::Any>);
        Ok(scope.add_raw(req, keep, op, Some(status)))
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
        let v = buf.view_mut();
        let desc = Desc::of_mut(&v)?;
        if !self.checked && !engine::busy() {
            // The caller promised (`Comm::unchecked`) that messages fit: the bare `MPI_Irecv`. With receives
            // pending in the engine it goes there too, so that receives still match in the order they started.
            let req = self
                .inner
                .raw
                .irecv_plain(&desc, s, t)
                .map_err(|c| c.error(&format!("{op} from rank {s} (tag {t})")))?;
            let keep = desc.owns_datatype().then(|| Box::new(desc) as Box<dyn std::any::Any>);
            return Ok(scope.add_raw(req, keep, op, None));
        }
        let target = engine::Target::Buf {
            desc,
            name: v.elem.name,
            elem_bytes: v.elem.size,
        };
        let id = engine::start(std::sync::Arc::clone(&self.inner), op, s, t, target);
        Ok(scope.add(Slot::Recv(id)))
    }
}
