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
//! [`crate::Comm::isend_obj`] serialises at once and owns the bytes; [`crate::Comm::irecv_obj`] owns its receive buffer and
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
//! promises. Two kinds of blocking calls are bare MPI calls that do not advance them, so that C or mpi4py peers
//! can match them: the collectives of an unchecked handle ([`crate::Comm::unchecked`]) and the creation of
//! communicators (`dup`, `split`, Cartesian grids). Before these, complete the receives a peer may be blocked
//! sending to (as a large blocking send waits for its receive), or that peer and this rank wait for each other.
//! While a message of 16 bytes or more is still arriving, later receives that could match its source
//! and tag wait for it to be in before they look for their own: it may be an object sent by mistake, whose
//! out-of-band parts follow and must be discarded with it, not given to them. Over shared memory this is not
//! measurable; over a network, large receives from one source and tag (or `ANY_SOURCE`) arrive one at a time.
//!
//! Not covered yet: persistent requests, `MPI_Request_get_status`, cancelling sends.

pub(crate) mod engine;
mod object;
mod scope;

pub use object::{RecvRequest, SendRequest};
pub use scope::{Request, Scope, scope};

use crate::error::{ErrorKind, Result, fail};
use crate::sys::coll::Started;
use crate::sys::{RawRequest, RawStatus};

pub(crate) use engine::shutdown;

/// Completes a raw request: `MPI_Wait` when no receive is pending, else a test loop that keeps them moving.
pub(crate) fn wait_raw(mut req: RawRequest, what: &str) -> Result<()> {
    wait_raw_ref(&mut req, what).map(|_| ())
}

pub(super) fn wait_raw_ref(req: &mut RawRequest, what: &str) -> Result<RawStatus> {
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

        /// Once all of `reqs` have completed, collects what they yield in one step where the request type can
        /// (the receives of a scope share the engine's lock); their `wait` then returns at once.
        fn collect_done(_reqs: &[Self])
        where
            Self: Sized,
        {
        }
    }
}

/// Something that completes later: a non-blocking send, receive or collective. Implemented by spmd's request
/// types only.
pub trait Completion: poll::Poll {
    /// What completion yields: a [`crate::Status`] for buffer operations, the value for object receives.
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

/// Waits for all requests and returns their results in order. An iterator is run to its end (starting every
/// request it makes) before any request is waited for. Stops at the first error (the remaining requests still
/// complete when their scope ends or, for object requests, when they drop).
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
    // Every request is taken (and so started, for a lazy iterator) before any is waited for.
    let mut reqs: Vec<R> = reqs.into_iter().collect();
    if !engine::busy() {
        // No receive waits in the engine: each request's own wait is the bare MPI_Wait (or returns at once; it
        // looks again whether a receive is pending), and MPI advances all of them while it waits for one.
        let mut out = Vec::with_capacity(reqs.len());
        for r in reqs {
            out.push(r.wait()?);
        }
        return Ok(out);
    }
    // Requests before `first` have completed: each pass looks at the others, from the first not yet done.
    let mut first = 0;
    spin_until(|| {
        while first < reqs.len() && reqs[first].poll()? {
            first += 1;
        }
        Ok(first == reqs.len())
    })?;
    R::collect_done(&reqs);
    let mut out = Vec::with_capacity(reqs.len());
    for r in reqs {
        out.push(r.wait()?);
    }
    Ok(out)
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
