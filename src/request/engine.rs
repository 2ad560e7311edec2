//! The receive engine: non-blocking receives that wait for their message with a matched probe.
//!
//! A non-blocking receive cannot be posted to MPI as `MPI_Irecv` into the user's buffer: Open MPI would write past
//! the buffer if a larger message arrived. Instead each receive is an entry here that probes for its message
//! (`MPI_Improbe`), checks the size, and only then receives that very message (`MPI_Imrecv`) into memory known to
//! hold it. Entries advance whenever spmd is inside MPI on any thread: every blocking spmd call is a test loop
//! that calls [`progress`] while receives are pending, so the usual patterns (post receives, send, reduce, wait)
//! cannot deadlock. With no pending receive, blocking calls are the bare MPI calls.
//!
//! Entries are matched in the order they were started, as MPI matches posted receives: a message goes to the
//! earliest receive it matches. A receive whose pattern meets that of an earlier one still waiting (wildcards)
//! first looks at the first message it matches (`MPI_Iprobe`) and takes that very message, by its source and tag,
//! only if no earlier waiting receive matches it. An object message of
//! several parts holds its (communicator, source, tag) until all parts are in, so no other receive can take a
//! part of it; so does any message of object size still arriving into a buffer receive (an object sent to it by
//! mistake is only recognised once its bytes are in, and its parts are then received and discarded). While all
//! pending receives share one (communicator, source, tag), a progress pass stops at the first one still waiting
//! for its message: the later ones could only take messages after it.
//!
//! One file over the usual size: the registry, the matching-order rules and an entry's state machine keep one
//! invariant together (an entry's state, the keys it holds and the active count change under one lock).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::codec;
use crate::comm::CommInner;
use crate::error::{Error, ErrorKind, Result};
use crate::p2p::{Status, wrong_family_for_buffer};
use crate::sys::{Desc, RawComm, RawMessage, RawRequest, RawResult, RawStatus, any_source, any_tag};

/// Identifies a pending receive.
pub(crate) type Id = u64;

/// What a finished receive yields.
pub(crate) enum Outcome {
    /// A buffer receive: the data is in the user's buffer.
    Buf(Status),
    /// An object message: its bytes and its out-of-band parts.
    Obj {
        bytes: Vec<u8>,
        parts: VecDeque<Vec<u8>>,
        status: Status,
    },
}

impl Outcome {
    /// The status of the message received.
    pub(crate) fn status(&self) -> Status {
        match self {
            Outcome::Buf(status) | Outcome::Obj { status, .. } => *status,
        }
    }
}

/// The error of a receive cancelled before a message matched it.
pub(crate) fn cancelled(op: &str) -> Error {
    Error::new(
        ErrorKind::Cancelled,
        format!("{op}: cancelled before a message arrived"),
    )
}

/// Where a receive puts its message.
pub(crate) enum Target {
    /// Into a user's buffer, borrowed by a scope until the entry is done.
    Buf {
        desc: Desc,
        name: &'static str,
        elem_bytes: usize,
    },
    /// Into memory the entry owns.
    Obj,
}

enum State {
    Probing,
    Receiving {
        req: RawRequest,
        status: RawStatus,
        // Declared after `req`: the memory is dropped only after the request (whose drop waits).
        bytes: Vec<u8>,
    },
    /// The out-of-band parts of an object (or, with `error`, the parts of an object a buffer receive got by
    /// mistake, received only to be discarded so the sender completes).
    Parts {
        status: RawStatus,
        bytes: Vec<u8>,
        parts: VecDeque<Vec<u8>>,
        remaining: usize,
        error: Option<Error>,
    },
    Done(Result<Outcome>),
}

struct Entry {
    id: Id,
    comm: Arc<CommInner>,
    op: &'static str,
    source: i32,
    tag: i32,
    target: Target,
    state: State,
    /// Nobody will ask for the outcome (the handle was dropped): remove it when done.
    detached: bool,
}

type Key = (usize, i32, i32);

struct Registry {
    next: Id,
    /// In the order the receives started (ids ascending), so an entry is found by binary search. Done entries
    /// stay until their handles take their outcomes.
    entries: VecDeque<Entry>,
    /// Every entry before this index is done: progress starts here.
    live_from: usize,
    /// How many entries from `live_from` on are done (finished out of order).
    ahead: usize,
    /// How many entries were taking the parts of an object at the end of the last pass.
    parts: usize,
    /// The (communicator, source, tag) of the first entry since the registry was last empty, and whether a
    /// later one differed. While all share one pattern, the entries after the first one still waiting for its
    /// message all wait too (they match in order), so a pass stops there instead of looking at each.
    pattern: Key,
    mixed: bool,
    /// (communicator, source, tag) of object messages whose parts a blocking receive is taking.
    held: Vec<Key>,
    /// Scratch lists of one progress pass, kept to avoid allocating on every pass.
    keys: Vec<Key>,
    waiting: Vec<Key>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    next: 1,
    entries: VecDeque::new(),
    live_from: 0,
    ahead: 0,
    parts: 0,
    pattern: (0, 0, 0),
    mixed: false,
    held: Vec::new(),
    keys: Vec::new(),
    waiting: Vec::new(),
});

impl Registry {
    /// The position of an entry.
    fn find(&self, id: Id) -> Option<usize> {
        // Receives are mostly taken in the order they started: the first entry, then a search.
        match self.entries.front() {
            Some(e) if e.id == id => Some(0),
            _ => self.entries.binary_search_by_key(&id, |e| e.id).ok(),
        }
    }

    /// Removes the entry at `i`.
    fn remove(&mut self, i: usize) -> Option<Entry> {
        if i < self.live_from {
            self.live_from -= 1;
        } else if self.entries.get(i).is_some_and(|e| matches!(e.state, State::Done(_))) {
            self.ahead -= 1;
        }
        self.entries.remove(i)
    }

    /// Removes the entry at `i` and returns its outcome if it is done (else leaves it). The entry is dropped
    /// where it lies; only its outcome moves.
    fn take_done(&mut self, i: usize) -> Option<Result<Outcome>> {
        let e = self.entries.get_mut(i)?;
        if !matches!(e.state, State::Done(_)) {
            return None;
        }
        let State::Done(outcome) = std::mem::replace(&mut e.state, State::Probing) else {
            unreachable!("checked above")
        };
        // As `remove` counts a done entry.
        if i < self.live_from {
            self.live_from -= 1;
        } else {
            self.ahead -= 1;
        }
        self.entries.drain(i..=i);
        Some(outcome)
    }

    /// Moves `live_from` past the done entries and publishes what [`is_done`] may know without the lock.
    fn settle(&mut self) {
        while self
            .entries
            .get(self.live_from)
            .is_some_and(|e| matches!(e.state, State::Done(_)))
        {
            self.live_from += 1;
            self.ahead -= 1;
        }
        let below = self.entries.get(self.live_from).map_or(self.next, |e| e.id);
        DONE_BELOW.store(below, Ordering::Release);
        DONE_AHEAD.store(self.ahead, Ordering::Release);
    }

    /// Counts again which entries from `live_from` on are done (after entries were removed wholesale).
    fn recount(&mut self) {
        self.live_from = 0;
        self.ahead = self
            .entries
            .iter()
            .filter(|e| matches!(e.state, State::Done(_)))
            .count();
    }
}

/// Every receive with a smaller id is done (or taken), and how many receives from there on are done: with
/// both, [`is_done`] mostly answers without taking the lock. Written under the lock.
static DONE_BELOW: AtomicU64 = AtomicU64::new(0);
static DONE_AHEAD: AtomicUsize = AtomicUsize::new(0);

/// Number of entries not yet done, plus held keys: when 0, blocking calls take the bare MPI path. Written only
/// with the registry's lock held (so a load and a store suffice: no locked instruction), read without it.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);

/// Changes [`ACTIVE`]; the caller holds the registry's lock.
fn active_add(delta: isize) {
    let v = ACTIVE.load(Ordering::Relaxed);
    ACTIVE.store(v.wrapping_add_signed(delta), Ordering::Release);
}

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether any receive is pending (or a message's parts are being taken): blocking calls must then progress.
#[inline(always)]
pub(crate) fn busy() -> bool {
    // With the hang diagnosis on, every wait is a test loop that watches the clock.
    ACTIVE.load(Ordering::Relaxed) != 0 || crate::runtime::watch::on()
}

/// Identifies the MPI communicator (not the spmd handle: two handles may wrap one communicator, e.g. through
/// `Comm::from_raw`, and their receives must still match in order and respect each other's holds).
fn comm_key(c: &CommInner) -> usize {
    c.raw.key()
}

/// Whether a receive for (`source`, `tag`) could match a message of (`s`, `t`).
fn overlaps(source: i32, tag: i32, s: i32, t: i32) -> bool {
    (source == s || source == any_source()) && (tag == t || tag == any_tag())
}

/// Whether some message could match both receive patterns.
fn patterns_meet(s1: i32, t1: i32, s2: i32, t2: i32) -> bool {
    let (a, b) = (any_source(), any_tag());
    (s1 == s2 || s1 == a || s2 == a) && (t1 == t2 || t1 == b || t2 == b)
}

/// For a receive for (`source`, `tag`) on `raw` whose pattern meets that of an earlier receive still waiting or
/// a held (source, tag): the envelope of the first message it matches, if that message is its to take (no earlier
/// waiting receive matches it and it is not held). A probe for that concrete envelope then finds that very message
/// (the first from its source with its tag). `None` when every message it could match would go first to an
/// earlier receive (no probe is made), or when there is none yet. `earlier(p)` tells whether some earlier receive
/// still waiting has a pattern (s, t) with `p(s, t)`; `held(s, t)` whether messages of exactly (s, t) are held.
fn first_free(
    raw: &RawComm,
    (source, tag): (i32, i32),
    earlier: impl Fn(&dyn Fn(i32, i32) -> bool) -> bool,
    held: impl Fn(i32, i32) -> bool,
) -> RawResult<Option<(i32, i32)>> {
    let (a, b) = (any_source(), any_tag());
    if earlier(&|s, t| (s == a || s == source) && (t == b || t == tag)) || held(source, tag) {
        return Ok(None);
    }
    let Some(st) = raw.iprobe(source, tag)? else {
        return Ok(None);
    };
    let taken_first = earlier(&|s, t| overlaps(s, t, st.source, st.tag));
    Ok((!taken_first && !held(st.source, st.tag)).then_some((st.source, st.tag)))
}

/// Whether a receive started earlier, still waiting for its message, could take a message a receive for
/// (`source`, `tag`) on `comm` would take: then the later one must not probe yet (MPI gives a message to the
/// earliest matching receive).
fn earlier_waits(waiting: &[(usize, i32, i32)], comm: usize, source: i32, tag: i32) -> bool {
    waiting
        .iter()
        .any(|&(c, s, t)| c == comm && patterns_meet(s, t, source, tag))
}

fn is_held(held: &[(usize, i32, i32)], comm: usize, source: i32, tag: i32) -> bool {
    held.iter().any(|&(c, s, t)| c == comm && overlaps(source, tag, s, t))
}

/// Starts a receive; returns its id.
pub(crate) fn start(comm: Arc<CommInner>, op: &'static str, source: i32, tag: i32, target: Target) -> Id {
    let mut reg = registry();
    let id = reg.next;
    reg.next += 1;
    let pattern = (comm_key(&comm), source, tag);
    if reg.entries.is_empty() {
        reg.pattern = pattern;
        reg.mixed = false;
    } else if reg.pattern != pattern {
        reg.mixed = true;
    }
    reg.entries.push_back(Entry {
        id,
        comm,
        op,
        source,
        tag,
        target,
        state: State::Probing,
        detached: false,
    });
    active_add(1);
    // It first probes at the next progress (any spmd call, or a test or wait of a request).
    id
}

/// Advances every pending receive once.
pub(crate) fn progress() {
    if busy() {
        progress_locked(&mut registry());
    }
}

/// Advances every pending receive, then runs `f` under the same lock (a blocking receive or a probe looking for
/// its own message after the receives started before it had their chance, as MPI's matching order requires). `f`
/// gets the pattern to probe with: its own, the concrete envelope of the first message it matches when receives
/// started before it still wait for messages of a pattern that meets its own (see [`first_free`]), or `None` when
/// it must wait.
pub(crate) fn progress_then<R>(comm: &CommInner, source: i32, tag: i32, f: impl FnOnce(Option<(i32, i32)>) -> R) -> R {
    let mut reg = registry();
    progress_locked(&mut reg);
    let key = comm_key(comm);
    let earlier = |p: &dyn Fn(i32, i32) -> bool| {
        reg.entries
            .iter()
            .any(|e| matches!(e.state, State::Probing) && comm_key(&e.comm) == key && p(e.source, e.tag))
    };
    if !earlier(&|s, t| patterns_meet(s, t, source, tag)) && !is_busy_key(&reg, key, source, tag) {
        return f(Some((source, tag)));
    }
    let held = |s: i32, t: i32| {
        reg.held.contains(&(key, s, t))
            || reg
                .entries
                .iter()
                .any(|e| comm_key(&e.comm) == key && holds(e) == Some((s, t)))
    };
    match first_free(&comm.raw, (source, tag), earlier, held) {
        Ok(pattern) => f(pattern),
        // Let the caller's own probe report it.
        Err(_) => f(Some((source, tag))),
    }
}

/// Whether a probe for (`source`, `tag`) on the communicator `key` must wait: its messages are held by a blocking
/// receive, or by an entry receiving the parts of an object.
fn is_busy_key(reg: &Registry, key: usize, source: i32, tag: i32) -> bool {
    is_held(&reg.held, key, source, tag)
        || reg
            .entries
            .iter()
            .any(|e| holds(e).is_some_and(|(s, t)| comm_key(&e.comm) == key && overlaps(source, tag, s, t)))
}

/// The (source, tag) whose messages an entry holds: an object message taking its parts, or a message still
/// arriving that may be an object whose parts follow (any object message, and a message of object size taken by
/// a buffer receive, which only tells objects apart once the bytes are in). Its parts, which may be in already,
/// must not go to a later receive.
fn holds(e: &Entry) -> Option<(i32, i32)> {
    match &e.state {
        State::Parts { status, .. } => Some((status.source, status.tag)),
        State::Receiving { status, .. } if matches!(e.target, Target::Obj) || status.bytes >= codec::PREFIX => {
            Some((status.source, status.tag))
        }
        _ => None,
    }
}

/// Holds (`comm`, `source`, `tag`) while a blocking receive takes the parts of an object message; released on drop.
pub(crate) struct Hold {
    key: (usize, i32, i32),
}

pub(crate) fn hold(comm: &CommInner, source: i32, tag: i32) -> Hold {
    let key = (comm_key(comm), source, tag);
    let mut reg = registry();
    reg.held.push(key);
    active_add(1);
    Hold { key }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut reg = registry();
        if let Some(i) = reg.held.iter().position(|k| *k == self.key) {
            reg.held.swap_remove(i);
            active_add(-1);
        }
    }
}

fn progress_locked(reg: &mut Registry) {
    if reg.entries.is_empty() {
        return;
    }
    let Registry {
        entries,
        live_from,
        ahead,
        parts,
        held,
        keys,
        waiting,
        mixed,
        ..
    } = reg;
    let uniform = !*mixed;
    let mut finished = false;
    // Entries taking parts first: their next parts must not go to anyone else.
    if *parts > 0 {
        for e in entries.range_mut(*live_from..) {
            if matches!(e.state, State::Parts { .. }) {
                advance(e);
                if matches!(e.state, State::Done(_)) {
                    *ahead += 1;
                    finished |= e.detached;
                }
            }
        }
    }
    *parts = 0;
    keys.clear();
    keys.extend_from_slice(held);
    waiting.clear();
    for e in entries.range_mut(*live_from..) {
        if let State::Parts { status, .. } = &e.state {
            keys.push((comm_key(&e.comm), status.source, status.tag));
            *parts += 1;
            continue;
        }
        let probing = matches!(e.state, State::Probing);
        if !probing && matches!(e.state, State::Done(_)) {
            continue;
        }
        let key = comm_key(&e.comm);
        let pattern = (key, e.source, e.tag);
        // (Patterns are recorded once each: receives tend to share a few, so these lists stay short.)
        let mut probe_as = (e.source, e.tag);
        if probing && (is_held(keys, key, e.source, e.tag) || earlier_waits(waiting, key, e.source, e.tag)) {
            if uniform {
                break;
            }
            // MPI gives a message to the earliest receive it matches: this one may still take the first message
            // it matches if no earlier receive still waiting could take it and it is not a held part.
            let found = first_free(
                &e.comm.raw,
                probe_as,
                |p| waiting.iter().any(|&(c, s, t)| c == key && p(s, t)),
                |s, t| keys.contains(&(key, s, t)),
            );
            match found {
                Ok(Some(envelope)) => probe_as = envelope,
                Ok(None) => {
                    if !waiting.contains(&pattern) {
                        waiting.push(pattern);
                    }
                    continue;
                }
                Err(c) => {
                    e.state = State::Done(Err(c.error(e.op)));
                    finish(e);
                }
            }
        }
        advance_as(e, probe_as);
        match &e.state {
            State::Parts { status, .. } => {
                keys.push((key, status.source, status.tag));
                *parts += 1;
            }
            // Every later entry waits behind this one.
            State::Probing if uniform => break,
            State::Probing if !waiting.contains(&pattern) => waiting.push(pattern),
            State::Probing => {}
            State::Done(_) => {
                *ahead += 1;
                finished |= e.detached;
            }
            State::Receiving { .. } => {
                if let Some((s, t)) = holds(e) {
                    keys.push((key, s, t));
                }
            }
        }
    }
    if finished {
        entries.retain(|e| !(e.detached && matches!(e.state, State::Done(_))));
        reg.recount();
    }
    reg.settle();
}

/// One step of an entry.
fn advance(e: &mut Entry) {
    advance_as(e, (e.source, e.tag));
}

/// One step of an entry; a probing one probes for (`source`, `tag`): its own pattern, or the concrete envelope
/// of a message [`first_free`] found for it.
fn advance_as(e: &mut Entry, (source, tag): (i32, i32)) {
    // The frequent cases that change nothing, decided in place.
    match &mut e.state {
        State::Done(_) => return,
        State::Probing => match e.comm.raw.improbe(source, tag) {
            Ok(None) => return,
            Ok(Some((msg, st))) => {
                e.state = matched(e, msg, st).unwrap_or_else(|err| State::Done(Err(err)));
                // A small message is usually in at once: look now rather than on the next pass.
                if !matches!(e.state, State::Receiving { .. }) {
                    return finish(e);
                }
                return advance(e);
            }
            Err(c) => {
                e.state = State::Done(Err(c.error(e.op)));
                return finish(e);
            }
        },
        State::Receiving { req, status, .. } => match req.test() {
            Ok(None) => return,
            Ok(Some(_)) => {
                // A buffer that received a buffer message: done, with no more moves of the state.
                let status = *status;
                if let Target::Buf { desc, .. } = &e.target
                    && !(status.bytes >= codec::PREFIX && desc.starts_with(&codec::MAGIC))
                {
                    e.state = State::Done(Ok(Outcome::Buf(Status::from_raw(status))));
                    return finish(e);
                }
            }
            Err(c) => {
                e.state = State::Done(Err(c.error(e.op)));
                return finish(e);
            }
        },
        State::Parts { .. } => {}
    }
    let state = std::mem::replace(&mut e.state, State::Probing);
    e.state = match step(e, state) {
        Ok(s) => s,
        Err(err) => State::Done(Err(err)),
    };
    finish(e);
}

/// Counts the entry out of the active ones if it has just become done.
fn finish(e: &Entry) {
    if matches!(e.state, State::Done(_)) {
        active_add(-1);
    }
}

fn step(e: &mut Entry, state: State) -> Result<State> {
    match state {
        State::Probing => {
            let found = e.comm.raw.improbe(e.source, e.tag).map_err(|c| c.error(e.op))?;
            let Some((msg, st)) = found else {
                return Ok(State::Probing);
            };
            matched(e, msg, st)
        }
        State::Receiving { mut req, status, bytes } => match req.test().map_err(|c| c.error(e.op))? {
            None => Ok(State::Receiving { req, status, bytes }),
            Some(_) => {
                drop(req);
                received(e, status, bytes)
            }
        },
        State::Parts {
            status,
            bytes,
            mut parts,
            mut remaining,
            error,
        } => {
            while remaining > 0 {
                match e
                    .comm
                    .raw
                    .improbe(status.source, status.tag)
                    .map_err(|c| c.error(e.op))?
                {
                    None => break,
                    Some((msg, _)) => {
                        let (b, _) = msg.recv_bytes()?;
                        if error.is_none() {
                            parts.push_back(b);
                        }
                        remaining -= 1;
                    }
                }
            }
            if remaining > 0 {
                return Ok(State::Parts {
                    status,
                    bytes,
                    parts,
                    remaining,
                    error,
                });
            }
            Ok(State::Done(match error {
                Some(err) => Err(err),
                None => Ok(Outcome::Obj {
                    bytes,
                    parts,
                    status: Status::from_raw(status),
                }),
            }))
        }
        done @ State::Done(_) => Ok(done),
    }
}

/// A message matched the entry's probe.
fn matched(e: &mut Entry, msg: RawMessage, st: RawStatus) -> Result<State> {
    match &e.target {
        Target::Buf { desc, name, elem_bytes } => {
            if st.bytes <= desc.bytes {
                let req = msg.irecv(desc).map_err(|c| c.error(e.op))?;
                return Ok(State::Receiving {
                    req,
                    status: st,
                    bytes: Vec::new(),
                });
            }
            // Too large: take the message (so its sender completes), then report.
            let (bytes, _) = msg.recv_bytes()?;
            let err = if codec::is_object(&bytes) {
                wrong_family_for_buffer(e.op, st, bytes.len())
            } else {
                crate::p2p::truncated(e.op, st, desc.bytes, *elem_bytes, name)
            };
            discard_parts(st, &bytes, err)
        }
        Target::Obj => {
            let mut bytes = crate::sys::memory::byte_vec(st.bytes);
            let d = Desc::bytes_mut(&mut bytes)?;
            let req = msg.irecv(&d).map_err(|c| c.error(e.op))?;
            Ok(State::Receiving { req, status: st, bytes })
        }
    }
}

/// After a message that turned out to be an object reached a buffer receive: its parts are received and dropped
/// before the error is reported.
fn discard_parts(st: RawStatus, bytes: &[u8], err: Error) -> Result<State> {
    let n = codec::oob_count(bytes, &String::new).unwrap_or(0);
    if n == 0 || !codec::is_object(bytes) {
        return Ok(State::Done(Err(err)));
    }
    Ok(State::Parts {
        status: st,
        bytes: Vec::new(),
        parts: VecDeque::new(),
        remaining: n,
        error: Some(err),
    })
}

/// The entry's receive completed.
fn received(e: &mut Entry, st: RawStatus, bytes: Vec<u8>) -> Result<State> {
    match &e.target {
        Target::Buf { desc, .. } => {
            if st.bytes >= codec::PREFIX && desc.starts_with(&codec::MAGIC) {
                let mut head = [0u8; codec::PREFIX];
                desc.read_prefix(&mut head);
                return discard_parts(st, &head, wrong_family_for_buffer(e.op, st, st.bytes));
            }
            Ok(State::Done(Ok(Outcome::Buf(Status::from_raw(st)))))
        }
        Target::Obj => {
            let context = || format!("{} from rank {} (tag {})", e.op, st.source, st.tag);
            let n = codec::oob_count(&bytes, &context)?;
            if n == 0 {
                return Ok(State::Done(Ok(Outcome::Obj {
                    bytes,
                    parts: VecDeque::new(),
                    status: Status::from_raw(st),
                })));
            }
            Ok(State::Parts {
                status: st,
                bytes,
                parts: VecDeque::new(),
                remaining: n,
                error: None,
            })
        }
    }
}

/// Whether the entry is done (its outcome waits for [`take`]).
///
/// Makes no progress itself: callers advance all pending receives once per pass ([`progress`]) and then look at
/// each of theirs, so that waiting on n receives costs one round per pass, not n.
pub(crate) fn is_done(id: Id) -> bool {
    if id < DONE_BELOW.load(Ordering::Acquire) {
        return true;
    }
    if DONE_AHEAD.load(Ordering::Acquire) == 0 {
        return false;
    }
    let reg = registry();
    reg.find(id)
        .is_some_and(|i| matches!(reg.entries[i].state, State::Done(_)))
}

/// Removes the entry and returns its outcome if it is done.
fn try_take(id: Id) -> Option<Result<Outcome>> {
    Taker(registry()).take(id)
}

/// Takes the outcomes of done receives under one lock (waiting on many receives then costs one lock, not one
/// each).
pub(crate) struct Taker(MutexGuard<'static, Registry>);

/// A [`Taker`], holding the registry's lock until it drops.
pub(crate) fn taker() -> Taker {
    Taker(registry())
}

impl Taker {
    /// Removes the entry and returns its outcome if it is done.
    pub(crate) fn take(&mut self, id: Id) -> Option<Result<Outcome>> {
        let reg = &mut self.0;
        let i = reg.find(id)?;
        reg.take_done(i)
    }
}

/// Waits until the entry is done and returns its outcome.
pub(crate) fn wait(id: Id) -> Result<Outcome> {
    if let Some(r) = try_take(id) {
        return r;
    }
    let _loop = crate::runtime::watch::wait_loop();
    let mut spins = 0u32;
    loop {
        crate::runtime::watch::waiting("receive");
        progress();
        if let Some(r) = try_take(id) {
            return r;
        }
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(16) {
            std::thread::yield_now();
        }
    }
}

/// The handle of the entry was dropped: its outcome will not be asked for.
pub(crate) fn detach(id: Id) {
    let mut reg = registry();
    if let Some(i) = reg.find(id) {
        if matches!(reg.entries[i].state, State::Done(_)) {
            reg.remove(i);
        } else {
            reg.entries[i].detached = true;
        }
    }
}

/// Cancels a receive that no message has matched yet: `true` if it was cancelled, `false` if a message had
/// matched it already (it then completes as usual).
pub(crate) fn cancel(id: Id) -> bool {
    let mut reg = registry();
    progress_locked(&mut reg);
    if let Some(i) = reg.find(id)
        && matches!(reg.entries[i].state, State::Probing)
    {
        reg.entries[i].state = State::Done(Err(cancelled(reg.entries[i].op)));
        active_add(-1);
        reg.ahead += 1;
        reg.settle();
        return true;
    }
    false
}

/// Before MPI ends: receives that have matched a message finish (so their senders complete); receives still
/// waiting for one are given up.
pub(crate) fn shutdown() {
    let mut reg = registry();
    loop {
        progress_locked(&mut reg);
        let receiving = reg
            .entries
            .iter()
            .any(|e| matches!(e.state, State::Receiving { .. } | State::Parts { .. }));
        if !receiving {
            break;
        }
    }
    let pending = reg
        .entries
        .iter()
        .filter(|e| !matches!(e.state, State::Done(_)))
        .count();
    active_add(-(pending as isize));
    reg.entries.clear();
    reg.live_from = 0;
    reg.ahead = 0;
    reg.parts = 0;
}
