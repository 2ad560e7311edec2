//! Non-blocking operations: [`scope`] and [`Request`] for buffers, [`SendRequest`] and [`RecvRequest`] for
//! objects, and the [`Completion`] trait with [`wait_all`], [`wait_any`] and [`test_all`].
//!
//! # Buffers: scoped requests
//! A non-blocking buffer operation lends the buffer to MPI until it completes. [`scope`] makes that safe the way
//! `std::thread::scope` makes borrowing threads safe: buffers are borrowed for the whole scope, and the scope
//! does not end before every request started in it has completed (receives that nothing has matched yet are
//! cancelled instead), even if a handle was dropped or forgotten.
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
//! yields the value on completion. Any size works: the receive is matched with a (non-blocking) matched probe,
//! so nothing depends on a guessed buffer size.
//!
//! # Progress and order
//! Open MPI makes progress only inside MPI calls. spmd registers a callback in Open MPI's progress loop, so its
//! pending receives advance inside every MPI call the program makes (a blocking send, a collective, a wait), as
//! MPI's own receives do: the usual patterns (post receives, send, compute, reduce, wait) cannot deadlock. During
//! long computations without MPI calls, call [`Completion::test`] now and then to keep messages moving. Pending
//! receives are matched in the order they were started, as MPI promises.
//!
//! Not covered yet: persistent requests, `MPI_Request_get_status`, cancelling sends.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::marker::PhantomData;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::buffer::{Buffer, BufferMut, View, ViewMut, ViewSource};
use crate::codec;
use crate::comm::{Comm, CommInner};
use crate::env::Universe;
use crate::error::{ErrorKind, Result, fail};
use crate::p2p::{self, Source, Status, Tag, TagMatch};
use crate::raw::{self, Desc, Mode, RawRequest, RawStatus};

// ---------------------------------------------------------------------------------------------------------------
// The receive engine
// ---------------------------------------------------------------------------------------------------------------

/// Identifies a pending receive in a communicator's engine.
pub(crate) type Id = u64;

/// Where a pending receive puts its message.
pub(crate) enum Target {
    /// A user buffer, borrowed for the life of the request's scope.
    Buf(ViewMut),
    /// An object's bytes and out-of-band arrays, owned by the engine until the request collects them.
    Obj { bytes: Vec<u8>, oob: VecDeque<Vec<u8>> },
}

enum State {
    /// Buffer: `MPI_Irecv` posted on the communicator; completes with the data or a header.
    Posted(RawRequest),
    /// Object: waiting for a matching message (non-blocking matched probe on each progress).
    Probing,
    /// Object: receiving a message that came directly (its bytes are all there is, besides out-of-band arrays).
    MainRecv(RawRequest, RawStatus),
    /// A header was matched: the data waits on the private communicator from `key`.
    Aux,
    /// Receiving the data from the private communicator.
    AuxRecv(RawRequest, RawStatus),
    /// Object: receiving out-of-band arrays from the private communicator.
    Oob {
        remaining: usize,
        pending: Option<RawRequest>,
    },
    /// Finished.
    Done(Result<Status>),
}

/// Which communicator a receive takes its (first) message from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Chan {
    /// The user's communicator, under the wire protocol (direct, or header + data on the private duplicate).
    User,
    /// The private communicator of object collectives: one message of any size, always probed first.
    Coll,
}

/// A pending receive.
pub(crate) struct Entry {
    id: Id,
    op: &'static str,
    chan: Chan,
    source: i32,
    tag: i32,
    target: Target,
    state: State,
    /// (source, tag) of the matched message: its later parts come from there on the private communicator.
    key: (i32, i32),
    /// The handle is gone: drop the entry once it is done.
    abandoned: bool,
    /// The thread is blocked in MPI on this entry's request: progress must not test it meanwhile.
    blocked: bool,
}

impl Entry {
    /// A buffer receive (`MPI_Irecv` is posted when the entry is pushed).
    pub(crate) fn buffer(op: &'static str, source: i32, tag: i32, view: ViewMut) -> Entry {
        Entry {
            id: 0,
            op,
            chan: Chan::User,
            source,
            tag,
            target: Target::Buf(view),
            state: State::Done(Ok(Status::new(0, 0, 0))),
            key: (-1, -1),
            abandoned: false,
            blocked: false,
        }
    }

    /// An object receive.
    pub(crate) fn object(op: &'static str, source: i32, tag: i32) -> Entry {
        Entry::object_on(Chan::User, op, source, tag)
    }

    /// An object receive on the given channel.
    pub(crate) fn object_on(chan: Chan, op: &'static str, source: i32, tag: i32) -> Entry {
        Entry {
            id: 0,
            op,
            chan,
            source,
            tag,
            target: Target::Obj {
                bytes: Vec::new(),
                oob: VecDeque::new(),
            },
            state: State::Probing,
            key: (-1, -1),
            abandoned: false,
            blocked: false,
        }
    }

    fn is_done(&self) -> bool {
        matches!(self.state, State::Done(_))
    }

    /// Whether the entry has matched a message whose later parts it has not all taken yet.
    fn holds_key(&self) -> bool {
        matches!(
            self.state,
            State::MainRecv(..) | State::Aux | State::AuxRecv(..) | State::Oob { .. }
        )
    }

    fn context(&self) -> String {
        format!("{} from rank {} (tag {})", self.op, self.key.0, self.key.1)
    }

    /// Moves a completed receive of data (direct or from the private communicator) to its next state.
    fn data_arrived(&mut self, st: RawStatus) {
        match &self.target {
            Target::Buf(_) => self.state = State::Done(Ok(Status::from_raw(st))),
            Target::Obj { bytes, .. } if self.chan == Chan::Coll => {
                self.state = State::Done(Ok(Status::new(st.source as usize, st.tag, bytes.len())));
            }
            Target::Obj { bytes, .. } => {
                let ctx = self.context();
                self.state = match codec::oob_count(bytes, &|| ctx.clone()) {
                    Ok(0) => State::Done(Ok(Status::new(st.source as usize, st.tag, bytes.len()))),
                    Ok(n) => State::Oob {
                        remaining: n,
                        pending: None,
                    },
                    Err(e) => State::Done(Err(e)),
                };
            }
        }
    }
}

/// The pending receives of one communicator, in the order they were started.
#[derive(Default)]
pub(crate) struct Engine {
    entries: VecDeque<Entry>,
    next: Id,
}

impl Engine {
    /// Whether no receive is pending.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds an entry (not yet started for buffers: see [`start_entry`]); returns its id.
    pub(crate) fn push(&mut self, mut e: Entry) -> Id {
        self.next += 1;
        e.id = self.next;
        self.entries.push_back(e);
        self.next
    }

    fn index(&self, id: Id) -> Option<usize> {
        // Ids grow in posting order, so the entries stay sorted by id.
        self.entries.binary_search_by_key(&id, |e| e.id).ok()
    }
}

thread_local! {
    /// Communicators of this thread whose engines have pending receives.
    static ACTIVE: RefCell<Vec<Weak<CommInner>>> = const { RefCell::new(Vec::new()) };
    /// Set while spmd's own code advances engines, so the progress callback does not re-enter it.
    static BUSY: Cell<bool> = const { Cell::new(false) };

}

/// Whether any engine of any thread may have pending receives (a cheap hint for the progress callback).
static PENDING: AtomicBool = AtomicBool::new(false);

/// Marks the thread as inside engine code until dropped.
struct Busy(bool);

impl Busy {
    fn enter() -> Busy {
        Busy(BUSY.with(|b| b.replace(true)))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        BUSY.with(|b| b.set(self.0));
    }
}

/// Called by Open MPI from its progress loop (registered at init): advances this thread's pending receives while
/// the program waits in any MPI call.
pub(crate) extern "C" fn on_mpi_progress() -> std::ffi::c_int {
    if !PENDING.load(Ordering::Relaxed) || BUSY.with(|b| b.get()) {
        return 0;
    }
    progress_all();
    0
}

fn register(inner: &Rc<CommInner>) {
    PENDING.store(true, Ordering::Relaxed);
    ACTIVE.with(|a| {
        let mut a = a.borrow_mut();
        if !a.iter().any(|w| std::ptr::eq(w.as_ptr(), Rc::as_ptr(inner))) {
            a.push(Rc::downgrade(inner));
        }
    });
}

/// Advances the pending receives of every communicator of this thread.
pub(crate) fn progress_all() {
    let _busy = Busy::enter();
    let list: Vec<Weak<CommInner>> = ACTIVE.with(|a| a.borrow().clone());
    if list.is_empty() {
        return;
    }
    for w in list {
        if let Some(inner) = w.upgrade() {
            progress(&inner);
        }
    }
    ACTIVE.with(|a| {
        let mut a = a.borrow_mut();
        a.retain(|w| w.upgrade().is_some_and(|i| !i.engine.borrow().is_empty()));
        if a.is_empty() {
            PENDING.store(false, Ordering::Relaxed);
        }
    });
}

/// Adds a receive to `inner`'s engine and starts it. Returns its id.
pub(crate) fn start_entry(inner: &Rc<CommInner>, mut e: Entry) -> Result<Id> {
    if let Target::Buf(v) = &e.target {
        let d = Desc::of_mut(v)?;
        let req = inner.raw.irecv(&d, e.source, e.tag).map_err(|c| c.error(e.op))?;
        e.state = State::Posted(req);
    }
    let id = inner.engine.borrow_mut().push(e);
    register(inner);
    Ok(id)
}

/// Advances every pending receive of one communicator as far as it can go without blocking.
pub(crate) fn progress(inner: &CommInner) {
    let _busy = Busy::enter();
    let mut eng = inner.engine.borrow_mut();
    // 1. Posted buffer receives, all at once: a consistent look, so a receive seen complete was matched after
    //    every older one seen complete, which keeps the order of their later parts right.
    let mut posted: Vec<&mut RawRequest> = Vec::new();
    let mut which: Vec<usize> = Vec::new();
    for (i, e) in eng.entries.iter_mut().enumerate() {
        if e.blocked {
            continue;
        }
        if let State::Posted(req) = &mut e.state {
            posted.push(req);
            which.push(i);
        }
    }
    let done = raw::test_some(&mut posted);
    drop(posted);
    match done {
        Ok(done) => {
            for (k, r) in done {
                posted_done(&mut eng.entries[which[k]], r);
            }
        }
        Err(code) => {
            for &i in &which {
                let op = eng.entries[i].op;
                eng.entries[i].state = State::Done(Err(code.error(op)));
            }
        }
    }
    // 2. Object receives, oldest first: a message goes to the oldest receive that matches it.
    let n = eng.entries.len();
    for i in 0..n {
        loop {
            if !matches!(eng.entries[i].state, State::Probing) {
                break;
            }
            let (s, t) = (eng.entries[i].source, eng.entries[i].tag);
            let comm = match eng.entries[i].chan {
                Chan::User => &inner.raw,
                Chan::Coll => &inner.coll,
            };
            match comm.improbe(s, t) {
                Ok(None) => break,
                Err(c) => {
                    let op = eng.entries[i].op;
                    eng.entries[i].state = State::Done(Err(c.error(op)));
                    break;
                }
                Ok(Some((msg, st))) => {
                    let chan = eng.entries[i].chan;
                    let j = (0..=i)
                        .find(|&j| {
                            let e = &eng.entries[j];
                            matches!(e.state, State::Probing)
                                && e.chan == chan
                                && (e.source == raw::any_source() || e.source == st.source)
                                && (e.tag == raw::any_tag() || e.tag == st.tag)
                        })
                        .unwrap_or(i);
                    let e = &mut eng.entries[j];
                    e.key = (st.source, st.tag);
                    if st.bytes > 0 {
                        let Target::Obj { bytes, .. } = &mut e.target else {
                            unreachable!()
                        };
                        *bytes = vec![0u8; st.bytes];
                        e.state = match Desc::bytes_mut(bytes).and_then(|d| msg.irecv(&d).map_err(|c| c.error(e.op))) {
                            Ok(req) => State::MainRecv(req, st),
                            Err(err) => State::Done(Err(err)),
                        };
                    } else {
                        e.state = match msg.recv(&Desc::empty()) {
                            Ok(_) => State::Aux,
                            Err((c, _)) => State::Done(Err(c.error(e.op))),
                        };
                    }
                    if j == i {
                        break;
                    }
                }
            }
        }
    }
    // 3. Later parts from the private communicator, oldest first; one receive at a time per (source, tag).
    let mut busy: Vec<(i32, i32)> = Vec::new();
    for e in eng.entries.iter_mut() {
        if !e.holds_key() {
            continue;
        }
        if e.blocked {
            busy.push(e.key);
            continue;
        }
        let blocked = busy.contains(&e.key);
        advance(inner, e, blocked);
        if e.holds_key() && !blocked {
            busy.push(e.key);
        }
    }
    if eng.entries.iter().any(|e| e.abandoned && e.is_done()) {
        eng.entries.retain(|e| !(e.abandoned && e.is_done()));
    }
}

/// Advances one entry that holds its key; `blocked` means an older entry still takes parts of the same key.
fn advance(inner: &CommInner, e: &mut Entry, blocked: bool) {
    loop {
        let before = std::mem::discriminant(&e.state);
        match &mut e.state {
            State::MainRecv(req, st) | State::AuxRecv(req, st) => {
                let st0 = *st;
                match req.test() {
                    Ok(None) => return,
                    Ok(Some(_)) => e.data_arrived(st0),
                    Err((c, _)) => e.state = State::Done(Err(c.error(&e.context()))),
                }
            }
            State::Aux if !blocked => match inner.aux.improbe(e.key.0, e.key.1) {
                Ok(None) => return,
                Err(c) => e.state = State::Done(Err(c.error(&e.context()))),
                Ok(Some((msg, st))) => {
                    let started = match &mut e.target {
                        Target::Buf(v) => {
                            let cap = p2p::wire_bytes(v.len, &v.elem).unwrap_or(0);
                            if st.bytes > cap {
                                drop(msg);
                                Err(p2p::truncated(e.op, st.source, st.tag, st.bytes, v))
                            } else {
                                Desc::of_mut(v).and_then(|d| msg.irecv(&d).map_err(|c| c.error(e.op)))
                            }
                        }
                        Target::Obj { bytes, .. } => {
                            *bytes = vec![0u8; st.bytes];
                            Desc::bytes_mut(bytes).and_then(|d| msg.irecv(&d).map_err(|c| c.error(e.op)))
                        }
                    };
                    e.state = match started {
                        Ok(req) => State::AuxRecv(req, st),
                        Err(err) => State::Done(Err(err)),
                    };
                }
            },
            State::Oob { remaining, pending } if !blocked => {
                if let Some(req) = pending {
                    match req.test() {
                        Ok(None) => return,
                        Ok(Some(_)) => *pending = None,
                        Err((c, _)) => {
                            e.state = State::Done(Err(c.error(&e.context())));
                            continue;
                        }
                    }
                }
                if *remaining == 0 {
                    let len = match &e.target {
                        Target::Obj { bytes, .. } => bytes.len(),
                        Target::Buf(_) => 0,
                    };
                    e.state = State::Done(Ok(Status::new(e.key.0 as usize, e.key.1, len)));
                    continue;
                }
                match inner.aux.improbe(e.key.0, e.key.1) {
                    Ok(None) => return,
                    Err(c) => e.state = State::Done(Err(c.error(&e.context()))),
                    Ok(Some((msg, st))) => {
                        let Target::Obj { oob, .. } = &mut e.target else {
                            unreachable!()
                        };
                        oob.push_back(vec![0u8; st.bytes]);
                        let buf = oob.back_mut().expect("just pushed");
                        match Desc::bytes_mut(buf).and_then(|d| msg.irecv(&d).map_err(|c| c.error(e.op))) {
                            Ok(req) => {
                                *remaining -= 1;
                                *pending = Some(req);
                            }
                            Err(err) => e.state = State::Done(Err(err)),
                        }
                    }
                }
            }
            _ => return,
        }
        if std::mem::discriminant(&e.state) == before && !matches!(e.state, State::Oob { .. }) {
            return;
        }
    }
}

/// Spins on `done`, advancing every engine of the thread, yielding the CPU now and then when nothing moves.
pub(crate) fn spin_until(mut done: impl FnMut() -> Result<bool>) -> Result<()> {
    let mut idle = 0u32;
    loop {
        progress_all();
        if done()? {
            return Ok(());
        }
        idle += 1;
        if idle.is_multiple_of(1024) {
            std::thread::yield_now();
        }
    }
}

/// Waits for entry `id` of `inner`'s engine and removes it: its target and status.
pub(crate) fn wait_entry(inner: &Rc<CommInner>, id: Id) -> Result<(Target, Status)> {
    loop {
        progress_all();
        if entry_done(inner, id) {
            break;
        }
        if !block_on_entry(inner, id) {
            spin_until(|| Ok(entry_done(inner, id)))?;
            break;
        }
    }
    take_entry(inner, id)
}

/// Blocks in `MPI_Wait` on the MPI request entry `id` is waiting for, if it has one (a posted receive or a
/// receive of data), and applies the result. Other pending receives advance meanwhile through the progress
/// callback, which leaves this entry alone. Returns `false` if the entry has no request to block on.
pub(crate) fn block_on_entry(inner: &CommInner, id: Id) -> bool {
    block_on_entries(inner, &[id])
}

/// Blocks in `MPI_Waitsome` until the MPI request of at least one of the entries `ids` completes, and applies
/// what completed (as `MPI_Waitall` would, many at once). Returns `false` if none has a request to block on.
pub(crate) fn block_on_entries(inner: &CommInner, ids: &[Id]) -> bool {
    let mut handles = Vec::with_capacity(ids.len());
    let mut owners = Vec::with_capacity(ids.len());
    {
        let mut eng = inner.engine.borrow_mut();
        for &id in ids {
            let Some(i) = eng.index(id) else { continue };
            let e = &mut eng.entries[i];
            if let State::Posted(r) | State::MainRecv(r, _) | State::AuxRecv(r, _) = &e.state {
                handles.push(r.handle());
                owners.push(id);
                e.blocked = true;
            }
        }
    }
    if handles.is_empty() {
        return false;
    }
    let result = raw::wait_some_handles(&handles);
    let _busy = Busy::enter();
    let mut eng = inner.engine.borrow_mut();
    let done: Vec<(usize, raw::Completed)> = match result {
        Ok(d) => d,
        Err(code) => {
            for &id in &owners {
                if let Some(i) = eng.index(id) {
                    let e = &mut eng.entries[i];
                    e.blocked = false;
                    e.state = State::Done(Err(code.error(e.op)));
                }
            }
            return true;
        }
    };
    for (k, r) in done {
        let Some(i) = eng.index(owners[k]) else { continue };
        let e = &mut eng.entries[i];
        match std::mem::replace(&mut e.state, State::Probing) {
            State::Posted(mut req) => {
                req.completed_elsewhere();
                posted_done(e, r);
            }
            State::MainRecv(mut req, st) | State::AuxRecv(mut req, st) => {
                req.completed_elsewhere();
                match r {
                    Ok(_) => e.data_arrived(st),
                    Err((c, _)) => e.state = State::Done(Err(c.error(&e.context()))),
                }
            }
            other => e.state = other,
        }
    }
    for &id in &owners {
        if let Some(i) = eng.index(id) {
            eng.entries[i].blocked = false;
        }
    }
    true
}

/// Applies the completion of a posted receive (stage 1) to its entry.
fn posted_done(e: &mut Entry, r: raw::Completed) {
    match r {
        Ok(st) if st.bytes > 0 => e.state = State::Done(Ok(Status::from_raw(st))),
        Ok(st) => {
            e.key = (st.source, st.tag);
            e.state = State::Aux;
        }
        Err((code, st)) => {
            let err = match &e.target {
                Target::Buf(v) if code.is_truncate() => p2p::truncated(e.op, st.source, st.tag, st.bytes, v),
                _ => code.error(e.op),
            };
            e.state = State::Done(Err(err));
        }
    }
}

fn take_entry(inner: &CommInner, id: Id) -> Result<(Target, Status)> {
    let mut eng = inner.engine.borrow_mut();
    let Some(i) = eng.index(id) else {
        return fail(ErrorKind::InvalidArgument, "the request was already completed");
    };
    let e = eng.entries.remove(i).expect("index from the search");
    match e.state {
        State::Done(r) => r.map(|st| (e.target, st)),
        _ => fail(ErrorKind::InvalidArgument, "the request is not complete"),
    }
}

/// Whether entry `id` is done (or gone); advances nothing.
pub(crate) fn entry_done(inner: &CommInner, id: Id) -> bool {
    let eng = inner.engine.borrow();
    eng.index(id).is_none_or(|i| eng.entries[i].is_done())
}

/// Stops tracking an entry whose handle is gone (see [`abandon`]).
pub(crate) fn abandon_entry(inner: &CommInner, id: Id) {
    abandon(inner, id);
}

/// Waits for an object entry and decodes it.
pub(crate) fn wait_object<T: DeserializeOwned>(inner: &Rc<CommInner>, id: Id) -> Result<(T, Status)> {
    let (target, st) = wait_entry(inner, id)?;
    decode_target(target, st)
}

fn decode_target<T: DeserializeOwned>(target: Target, st: Status) -> Result<(T, Status)> {
    let Target::Obj { bytes, oob } = target else {
        return fail(ErrorKind::InvalidArgument, "not an object receive");
    };
    let ctx = || format!("recv_obj from rank {} (tag {})", st.source(), st.tag());
    let oob_bytes: usize = oob.iter().map(Vec::len).sum();
    let v = codec::decode(&bytes, Box::new(codec::BytesOob { arrays: oob }), &ctx)?;
    Ok((v, Status::new(st.source(), st.tag(), bytes.len() + oob_bytes)))
}

/// Stops tracking entry `id` whose handle is gone: removed at once if nothing has matched it (cancelled, for a
/// posted buffer receive), otherwise completed and dropped by later progress. Returns whether it still runs.
fn abandon(inner: &CommInner, id: Id) -> bool {
    let _busy = Busy::enter();
    let mut eng = inner.engine.borrow_mut();
    let Some(i) = eng.index(id) else { return false };
    let e = &mut eng.entries[i];
    if e.chan == Chan::Coll && !e.is_done() {
        // Part of a collective: every rank takes part, so the message will come; take it in the background.
        e.abandoned = true;
        return true;
    }
    match &mut e.state {
        State::Probing | State::Done(_) => {
            eng.entries.remove(i);
            false
        }
        State::Posted(req) => match req.cancel() {
            Ok(None) => {
                eng.entries.remove(i);
                false
            }
            Ok(Some(st)) if st.bytes > 0 => {
                eng.entries.remove(i);
                false
            }
            Ok(Some(st)) => {
                e.key = (st.source, st.tag);
                e.state = State::Aux;
                e.abandoned = true;
                true
            }
            Err(_) => {
                eng.entries.remove(i);
                false
            }
        },
        _ => {
            e.abandoned = true;
            true
        }
    }
}

/// Waits until no pending receive of `inner` takes parts of messages from (`source`, `tag`).
pub(crate) fn drain_key(inner: &CommInner, source: i32, tag: i32) -> Result<()> {
    if inner.engine.borrow().is_empty() {
        return Ok(());
    }
    spin_until(|| {
        progress(inner);
        Ok(!inner
            .engine
            .borrow()
            .entries
            .iter()
            .any(|e| e.holds_key() && e.key == (source, tag)))
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Sends
// ---------------------------------------------------------------------------------------------------------------

/// Starts the messages of one send under the wire protocol (see [`crate::p2p`]).
pub(crate) fn start_send(
    inner: &CommInner,
    op: &str,
    v: &View,
    dest: usize,
    tag: Tag,
    mode: Mode,
) -> Result<Vec<RawRequest>> {
    let bytes = p2p::wire_bytes(v.len, &v.elem)?;
    let d = Desc::of(v)?;
    let ctx = || format!("{op} to rank {dest} (tag {tag})");
    if p2p::direct(inner, bytes, dest) {
        Ok(vec![
            inner
                .raw
                .isend(&d, dest as i32, tag, mode)
                .map_err(|c| c.error(&ctx()))?,
        ])
    } else {
        let h = inner
            .raw
            .isend(&Desc::empty(), dest as i32, tag, Mode::Standard)
            .map_err(|c| c.error(&ctx()))?;
        let a = inner
            .aux
            .isend(&d, dest as i32, tag, mode)
            .map_err(|c| c.error(&ctx()))?;
        Ok(vec![h, a])
    }
}

/// Waits for send requests (pending receives keep moving through the progress callback).
pub(crate) fn finish_sends(mut reqs: Vec<RawRequest>, op: &str) -> Result<()> {
    raw::wait_all(&mut reqs).map(|_| ()).map_err(|c| c.error(op))
}

fn test_raw(reqs: &mut [RawRequest], op: &str) -> Result<bool> {
    let mut all = true;
    for r in reqs.iter_mut() {
        if r.is_null() {
            continue;
        }
        match r.test() {
            Ok(Some(_)) => {}
            Ok(None) => all = false,
            Err((c, _)) => return Err(c.error(op)),
        }
    }
    Ok(all)
}

/// Runs a blocking MPI operation (`start(false)`), mapping its error code to an error naming `op`.
pub(crate) fn blocking(op: &str, start: impl FnOnce(bool) -> raw::RawResult<Option<RawRequest>>) -> Result<()> {
    start(false).map(|_| ()).map_err(|c| c.error(op))
}

// ---------------------------------------------------------------------------------------------------------------
// Public API: completion
// ---------------------------------------------------------------------------------------------------------------

pub(crate) mod poll {
    /// Looks whether a request has completed without driving the thread's other receives (which the caller has
    /// just done), so that waiting on many requests costs one round of progress per pass, not one per request.
    pub trait Poll {
        /// Whether the request has completed.
        fn poll(&mut self) -> crate::Result<bool>;
        /// Blocks in MPI until the request's next step completes, if it has an MPI request to block on
        /// (pending receives advance meanwhile through the progress callback); `false` if it has none.
        fn block(&mut self) -> crate::Result<bool> {
            Ok(false)
        }
    }
}

/// Something that completes later: a non-blocking send, receive or collective. Implemented by spmd's request
/// types only.
pub trait Completion: poll::Poll {
    /// What completion yields: a [`Status`] for buffer operations, the value for object receives.
    type Output;

    /// Advances the operation (and every pending receive of the thread) and tells whether it has completed.
    /// After `true`, [`Completion::wait`] returns at once.
    ///
    /// # Errors
    /// The operation's error, if it failed.
    fn test(&mut self) -> Result<bool> {
        progress_all();
        self.poll()
    }

    /// Waits for completion and yields the result.
    ///
    /// # Errors
    /// The operation's error, if it failed.
    fn wait(self) -> Result<Self::Output>;
}

/// Waits for all requests and returns their results in order. Stops at the first error (the remaining requests
/// still complete when they drop or their scope ends).
///
/// # Errors
/// The first failing request's error.
pub fn wait_all<R: Completion>(reqs: impl IntoIterator<Item = R>) -> Result<Vec<R::Output>> {
    let mut reqs: Vec<R> = reqs.into_iter().collect();
    let mut idle = 0u32;
    loop {
        progress_all();
        let mut all = true;
        let mut blocked = false;
        for r in reqs.iter_mut() {
            if !r.poll()? {
                all = false;
                // Block in MPI on the first unfinished request that has an MPI request, as MPI_Waitall would:
                // everything else progresses inside MPI meanwhile.
                if !blocked {
                    blocked = r.block()?;
                }
            }
        }
        if all {
            break;
        }
        if !blocked {
            idle += 1;
            if idle.is_multiple_of(1024) {
                std::thread::yield_now();
            }
        }
    }
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
/// # Errors
/// [`ErrorKind::InvalidArgument`] if `reqs` is empty; the completed request's error.
pub fn wait_any<R: Completion>(reqs: &mut Vec<R>) -> Result<(usize, R::Output)> {
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
/// # Errors
/// The first failing request's error.
pub fn test_all<R: Completion>(reqs: &mut [R]) -> Result<bool> {
    progress_all();
    poll_all(reqs)
}

// ---------------------------------------------------------------------------------------------------------------
// Scopes and buffer requests
// ---------------------------------------------------------------------------------------------------------------

enum Slot {
    Send {
        reqs: Vec<RawRequest>,
        status: Status,
        op: &'static str,
    },
    Recv {
        inner: Rc<CommInner>,
        id: Id,
    },
    Done,
}

/// The requests of a scope; completes what is left when dropped.
struct Slots(RefCell<Vec<Slot>>);

/// A region in which non-blocking buffer operations may borrow buffers; see [`scope`].
pub struct Scope<'scope, 'env: 'scope> {
    slots: Slots,
    _scope: PhantomData<&'scope mut &'scope ()>,
    _env: PhantomData<&'env mut &'env ()>,
}

/// Runs `f` with a [`Scope`] for non-blocking buffer operations and completes every request started in it before
/// returning: sends and matched receives are waited for, receives that nothing has matched are cancelled.
pub fn scope<'env, F, T>(f: F) -> T
where
    F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> T,
{
    let s = Scope {
        slots: Slots(RefCell::new(Vec::new())),
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
                Slot::Send { reqs, .. } => {
                    let _ = finish_sends(reqs, "scope end");
                }
                Slot::Recv { inner, id } => {
                    if abandon(&inner, id) {
                        let _ = spin_until(|| {
                            let eng = inner.engine.borrow();
                            Ok(eng.index(id).is_none())
                        });
                    }
                }
                Slot::Done => {}
            }
        }
    }
}

impl<'scope> Scope<'scope, '_> {
    /// Registers started send-like requests (sends, non-blocking buffer collectives).
    pub(crate) fn add_send(&'scope self, reqs: Vec<RawRequest>, op: &'static str, status: Status) -> Request<'scope> {
        self.add(Slot::Send { reqs, status, op })
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
/// Dropping it without waiting is allowed: the scope completes it (or cancels an unmatched receive) at its end.
pub struct Request<'scope> {
    slots: &'scope Slots,
    slot: usize,
}

impl poll::Poll for Request<'_> {
    fn poll(&mut self) -> Result<bool> {
        let mut slots = self.slots.0.borrow_mut();
        match &mut slots[self.slot] {
            // (The progress callback never touches a scope's slots, so they may stay borrowed over MPI_Test.)
            Slot::Send { reqs, op, .. } => test_raw(reqs, op),
            Slot::Recv { inner, id } => Ok(entry_done(inner, *id)),
            Slot::Done => Ok(true),
        }
    }

    fn block(&mut self) -> Result<bool> {
        let mut slots = self.slots.0.borrow_mut();
        match &mut slots[self.slot] {
            Slot::Send { reqs, op, .. } => {
                raw::wait_all(reqs).map_err(|c| c.error(op))?;
                Ok(true)
            }
            Slot::Recv { inner, id } => {
                let (inner, id) = (Rc::clone(inner), *id);
                drop(slots);
                Ok(block_on_entry(&inner, id))
            }
            Slot::Done => Ok(false),
        }
    }
}

impl Completion for Request<'_> {
    type Output = Status;

    fn wait(self) -> Result<Status> {
        let slot = std::mem::replace(&mut self.slots.0.borrow_mut()[self.slot], Slot::Done);
        match slot {
            Slot::Send { reqs, status, op } => finish_sends(reqs, op).map(|_| status),
            Slot::Recv { inner, id } => wait_entry(&inner, id).map(|(_, st)| st),
            Slot::Done => fail(ErrorKind::InvalidArgument, "the request was already waited for"),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Object requests
// ---------------------------------------------------------------------------------------------------------------

/// A non-blocking object send ([`Comm::isend_obj`]): owns the serialised bytes until completion.
pub struct SendRequest<'u> {
    // Field order matters: the requests (which wait on drop) go before the memory they read.
    reqs: Vec<RawRequest>,
    bytes: Vec<u8>,
    _oob: Vec<raw::OwnedCopy>,
    op: &'static str,
    _u: PhantomData<&'u Universe>,
}

impl poll::Poll for SendRequest<'_> {
    fn poll(&mut self) -> Result<bool> {
        test_raw(&mut self.reqs, self.op)
    }

    fn block(&mut self) -> Result<bool> {
        raw::wait_all(&mut self.reqs).map_err(|c| c.error(self.op))?;
        Ok(true)
    }
}

impl Completion for SendRequest<'_> {
    type Output = ();

    fn wait(mut self) -> Result<()> {
        let reqs = std::mem::take(&mut self.reqs);
        let r = finish_sends(reqs, self.op);
        codec::recycle_send(std::mem::take(&mut self.bytes));
        r
    }
}

/// A non-blocking object receive ([`Comm::irecv_obj`]): completes with the value and its [`Status`].
///
/// Dropping it before completion cancels it if no message has matched it yet; otherwise the message is still
/// received (and discarded), so later messages keep their order.
pub struct RecvRequest<'u, T> {
    inner: Rc<CommInner>,
    id: Id,
    taken: bool,
    _t: PhantomData<fn() -> T>,
    _u: PhantomData<&'u Universe>,
}

impl<T> poll::Poll for RecvRequest<'_, T> {
    fn poll(&mut self) -> Result<bool> {
        Ok(entry_done(&self.inner, self.id))
    }

    fn block(&mut self) -> Result<bool> {
        Ok(block_on_entry(&self.inner, self.id))
    }
}

impl<T: DeserializeOwned> Completion for RecvRequest<'_, T> {
    type Output = (T, Status);

    fn wait(mut self) -> Result<(T, Status)> {
        self.taken = true;
        wait_object(&self.inner, self.id)
    }
}

impl<T> Drop for RecvRequest<'_, T> {
    fn drop(&mut self) {
        if !self.taken {
            abandon(&self.inner, self.id);
        }
    }
}

impl<'u> Comm<'u> {
    /// Starts sending a buffer; it stays borrowed until the scope ends.
    ///
    /// # Errors
    /// As [`Comm::send_buf`].
    pub fn isend_buf<'scope, B: Buffer + ?Sized>(
        &self,
        scope: &'scope Scope<'scope, '_>,
        dest: usize,
        tag: Tag,
        buf: &'scope B,
    ) -> Result<Request<'scope>> {
        self.isend_buf_mode(scope, "isend_buf", dest, tag, buf, Mode::Standard)
    }

    /// Starts a synchronous send: completes once the matching receive has started.
    ///
    /// # Errors
    /// As [`Comm::send_buf`].
    pub fn issend_buf<'scope, B: Buffer + ?Sized>(
        &self,
        scope: &'scope Scope<'scope, '_>,
        dest: usize,
        tag: Tag,
        buf: &'scope B,
    ) -> Result<Request<'scope>> {
        self.isend_buf_mode(scope, "issend_buf", dest, tag, buf, Mode::Synchronous)
    }

    fn isend_buf_mode<'scope, B: Buffer + ?Sized>(
        &self,
        scope: &'scope Scope<'scope, '_>,
        op: &'static str,
        dest: usize,
        tag: Tag,
        buf: &'scope B,
        mode: Mode,
    ) -> Result<Request<'scope>> {
        self.check_dest(op, dest, tag)?;
        let v = buf.view();
        let bytes = p2p::wire_bytes(v.len, &v.elem)?;
        let reqs = start_send(&self.inner, op, &v, dest, tag, mode)?;
        Ok(scope.add(Slot::Send {
            reqs,
            status: Status::new(dest, tag, bytes),
            op,
        }))
    }

    /// Starts receiving a buffer message into `buf`, which stays borrowed until the scope ends.
    ///
    /// # Errors
    /// As [`Comm::recv_buf_into`]; a message longer than `buf` is reported when the request completes.
    pub fn irecv_buf_into<'scope, B: BufferMut + ?Sized>(
        &self,
        scope: &'scope Scope<'scope, '_>,
        source: impl Into<Source>,
        tag: impl Into<TagMatch>,
        buf: &'scope mut B,
    ) -> Result<Request<'scope>> {
        let op = "irecv_buf_into";
        let (s, t) = self.match_args(op, source.into(), tag.into())?;
        let id = start_entry(&self.inner, Entry::buffer(op, s, t, buf.view_mut()))?;
        Ok(scope.add(Slot::Recv {
            inner: Rc::clone(&self.inner),
            id,
        }))
    }

    /// Starts sending an object: it is serialised now (out-of-band arrays are copied), so `value` is free again
    /// when this returns.
    ///
    /// # Errors
    /// As [`Comm::send_obj`].
    pub fn isend_obj<T: Serialize + ?Sized>(&self, dest: usize, tag: Tag, value: &T) -> Result<SendRequest<'u>> {
        let op = "isend_obj";
        self.check_dest(op, dest, tag)?;
        let enc = codec::encode(value)?;
        let mut reqs = start_send(&self.inner, op, &enc.bytes.view(), dest, tag, Mode::Standard)?;
        let mut copies = Vec::with_capacity(enc.oob.len());
        for v in &enc.oob {
            let copy = raw::OwnedCopy::of(v);
            let d = Desc::of(&copy.view())?;
            reqs.push(
                self.inner
                    .aux
                    .isend(&d, dest as i32, tag, Mode::Standard)
                    .map_err(|c| c.error(&format!("{op} to rank {dest} (tag {tag})")))?,
            );
            copies.push(copy);
        }
        Ok(SendRequest {
            reqs,
            bytes: enc.bytes,
            _oob: copies,
            op,
            _u: PhantomData,
        })
    }

    /// Starts receiving an object of type `T` of any size.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidRank`], [`ErrorKind::InvalidTag`] now; decode and MPI errors on completion.
    pub fn irecv_obj<T: DeserializeOwned>(
        &self,
        source: impl Into<Source>,
        tag: impl Into<TagMatch>,
    ) -> Result<RecvRequest<'u, T>> {
        let (s, t) = self.match_args("irecv_obj", source.into(), tag.into())?;
        let id = start_entry(&self.inner, Entry::object("irecv_obj", s, t))?;
        Ok(RecvRequest {
            inner: Rc::clone(&self.inner),
            id,
            taken: false,
            _t: PhantomData,
            _u: PhantomData,
        })
    }
}
