//! Hang diagnosis: with `SPMD_TIMEOUT=secs`, a rank that waits longer than that inside one spmd operation reports
//! where it waits and the job ends.
//!
//! Every blocking spmd operation then waits in a test loop (as it does anyway when receives are pending), so a
//! waiting rank keeps running spmd code and can notice the time. Public operations record what they are (name,
//! communicator, peer or root, tag, element count, the caller's source line through `#[track_caller]`) in a
//! thread-local slot; the wait loops check the clock. On expiry a rank prints one line, sends it to rank 0 on the
//! world communicator with the highest tag (a tag programs do not use in practice), and ends the job after a
//! short grace; rank 0, when it expires or receives a report while waiting itself, gathers the reports for a
//! moment and prints one table of every rank's wait before ending the job. Nothing is communicated at init, so
//! ranks of other languages in the same job are unaffected; ranks may even disagree on the setting, because
//! checked collectives agree on their (blocking or non-blocking) form anyway.
//!
//! Off (the default) this costs one relaxed atomic load per operation.

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::panic::Location;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::sys::{Desc, RawComm};

/// Exit status of a job ended by the hang diagnosis (as `timeout(1)`).
pub(crate) const HANG_EXIT_CODE: i32 = 124;
/// How long rank 0 gathers reports, and how long other ranks wait for rank 0 to end the job.
const GATHER: Duration = Duration::from_millis(1000);
const GRACE: Duration = Duration::from_millis(1500);

/// The timeout in milliseconds; 0 when off.
static TIMEOUT_MS: AtomicU64 = AtomicU64::new(0);

/// Whether the diagnosis is on.
#[inline(always)]
pub(crate) fn on() -> bool {
    TIMEOUT_MS.load(Ordering::Relaxed) != 0
}

/// The peer side of a wait.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Side {
    None,
    Peer(i32),
    AnySource,
    Root(usize),
}

/// What a thread is waiting in.
#[derive(Clone, Copy, Debug)]
struct Wait {
    op: &'static str,
    comm_size: usize,
    comm_world: bool,
    side: Side,
    tag: Option<i32>,
    count: Option<usize>,
    at: &'static Location<'static>,
}

struct State {
    rank: usize,
    size: usize,
    host: String,
    comm: RawComm,
    tag: i32,
    world_ctx: usize,
}

thread_local! {
    static CURRENT: Cell<Option<Wait>> = const { Cell::new(None) };
    static SINCE: Cell<Option<Instant>> = const { Cell::new(None) };
    static LAST_POLL: Cell<Option<Instant>> = const { Cell::new(None) };
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

/// Turns the diagnosis on for this process (called at init, on the init thread).
pub(crate) fn start(timeout: Duration, rank: usize, size: usize, world_ctx: usize) {
    let host = crate::sys::processor_name().unwrap_or_else(|_| "?".into());
    STATE.with(|s| {
        *s.borrow_mut() = Some(State {
            rank,
            size,
            host,
            comm: RawComm::world(),
            tag: crate::p2p::tag_ub(),
            world_ctx,
        })
    });
    TIMEOUT_MS.store(
        u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX).max(1),
        Ordering::SeqCst,
    );
}

/// Turns it off (before `MPI_Finalize`).
pub(crate) fn stop() {
    TIMEOUT_MS.store(0, Ordering::SeqCst);
    STATE.with(|s| drop(s.borrow_mut().take()));
}

/// Records that the calling thread enters operation `op` on a communicator (of `size` ranks; `ctx` identifies
/// it), called from `#[track_caller]` public operations; the outermost operation is the one reported. The
/// returned guard clears the record.
#[inline]
#[track_caller]
pub(crate) fn enter(op: &'static str, ctx: usize, size: usize) -> Guard {
    if !on() {
        return Guard(false);
    }
    enter_slow(op, ctx, size, Location::caller())
}

#[cold]
fn enter_slow(op: &'static str, ctx: usize, size: usize, at: &'static Location<'static>) -> Guard {
    if CURRENT.get().is_some() {
        return Guard(false);
    }
    let world = STATE.with(|s| s.borrow().as_ref().is_some_and(|s| s.world_ctx == ctx));
    CURRENT.set(Some(Wait {
        op,
        comm_size: size,
        comm_world: world,
        side: Side::None,
        tag: None,
        count: None,
        at,
    }));
    SINCE.set(None);
    Guard(true)
}

/// Marks a wait loop (made before it starts): when no operation is recorded, the loop's wait is timed from its
/// own start, and the guard forgets that start when the loop ends.
#[inline]
pub(crate) fn wait_loop() -> LoopGuard {
    LoopGuard(on() && CURRENT.get().is_none())
}

/// Ends the timing of an unrecorded wait loop.
pub(crate) struct LoopGuard(bool);

impl Drop for LoopGuard {
    fn drop(&mut self) {
        if self.0 {
            SINCE.set(None);
        }
    }
}

/// Clears the record of the operation it was made for.
pub(crate) struct Guard(bool);

impl Drop for Guard {
    fn drop(&mut self) {
        if self.0 {
            CURRENT.set(None);
            SINCE.set(None);
        }
    }
}

/// Adds the peer or root of the current operation to its record.
#[inline]
pub(crate) fn note_side(side: Side) {
    if on() {
        update(|w| w.side = side);
    }
}

/// Adds the tag of the current operation to its record.
#[inline]
pub(crate) fn note_tag(tag: i32) {
    if on() {
        update(|w| w.tag = Some(tag));
    }
}

/// Adds the element count of the current operation to its record (the first one noted counts).
#[inline]
pub(crate) fn note_count(n: usize) {
    if on() {
        update(|w| {
            if w.count.is_none() {
                w.count = Some(n)
            }
        });
    }
}

fn update(f: impl FnOnce(&mut Wait)) {
    if let Some(mut w) = CURRENT.get() {
        f(&mut w);
        CURRENT.set(Some(w));
    }
}

/// Called by every wait loop on each pass: ends the job if the current wait has lasted longer than the timeout
/// (or, on rank 0, if another rank has reported a hang).
#[inline]
pub(crate) fn waiting(what: &str) {
    if on() {
        waiting_slow(what);
    }
}

#[cold]
fn waiting_slow(what: &str) {
    let now = Instant::now();
    let since = match SINCE.get() {
        Some(t) => t,
        None => {
            SINCE.set(Some(now));
            now
        }
    };
    let limit = Duration::from_millis(TIMEOUT_MS.load(Ordering::Relaxed));
    if now - since > limit {
        expire(what, now - since);
    }
    // Rank 0 looks for reports of other ranks every 100 ms while it waits.
    if LAST_POLL.get().is_none_or(|t| now - t > Duration::from_millis(100)) {
        LAST_POLL.set(Some(now));
        let incoming = STATE.with(|s| {
            s.borrow().as_ref().is_some_and(|s| {
                s.rank == 0 && s.size > 1 && s.comm.iprobe(crate::sys::any_source(), s.tag).ok().flatten().is_some()
            })
        });
        if incoming {
            expire(what, now - since);
        }
    }
}

/// One line describing this thread's wait.
fn describe(what: &str, waited: Duration) -> String {
    let mut s = String::new();
    match CURRENT.get() {
        Some(w) => {
            let _ = write!(s, "{}(", w.op);
            let mut parts = Vec::new();
            match w.side {
                Side::None => {}
                Side::Peer(p) => parts.push(format!("peer {p}")),
                Side::AnySource => parts.push("any source".to_string()),
                Side::Root(r) => parts.push(format!("root {r}")),
            }
            if let Some(t) = w.tag {
                parts.push(if t < 0 {
                    "any tag".to_string()
                } else {
                    format!("tag {t}")
                });
            }
            if let Some(n) = w.count {
                parts.push(format!("{n} elements"));
            }
            let _ = write!(s, "{})", parts.join(", "));
            if w.comm_world {
                s.push_str(" on world");
            } else if w.comm_size > 0 {
                let _ = write!(s, " on a communicator of {} ranks", w.comm_size);
            }
            let _ = write!(s, " at {}:{}:{}", w.at.file(), w.at.line(), w.at.column());
        }
        None => s.push_str(what),
    }
    let _ = write!(s, ", waiting {:.1} s", waited.as_secs_f64());
    s
}

/// Writes `text` to stderr in one write, so that lines of different ranks do not interleave.
fn say(text: &str) {
    use std::io::Write;
    let mut e = std::io::stderr().lock();
    let _ = e.write_all(text.as_bytes());
    let _ = e.flush();
}

/// Reports this rank's wait, lets rank 0 print the table, and ends the job.
fn expire(what: &str, waited: Duration) -> ! {
    let expired = Instant::now();
    let line = describe(what, waited);
    let limit = TIMEOUT_MS.load(Ordering::Relaxed) as f64 / 1e3;
    STATE.with(|s| {
        let guard = s.borrow();
        let Some(st) = guard.as_ref() else {
            say(&format!("spmd: hang: {line}\n"));
            crate::sys::abort_world(HANG_EXIT_CODE);
            std::process::exit(HANG_EXIT_CODE);
        };
        say(&format!("spmd: hang: rank {} ({}): {line}\n", st.rank, st.host));
        let row = format!("{}\t{}\t{line}", st.rank, st.host);
        if st.rank == 0 {
            let mut rows: Vec<Option<String>> = vec![None; st.size];
            rows[0] = Some(row);
            let end = Instant::now() + GATHER;
            while Instant::now() < end && rows.iter().any(Option::is_none) {
                match st.comm.improbe(crate::sys::any_source(), st.tag) {
                    Ok(Some((m, status))) => {
                        if let Ok((bytes, _)) = m.recv_bytes() {
                            let r = status.source.max(0) as usize;
                            if r < rows.len() {
                                rows[r] = Some(String::from_utf8_lossy(&bytes).into_owned());
                            }
                        }
                    }
                    _ => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            let mut table = format!(
                "spmd: hang diagnosis (SPMD_TIMEOUT={limit} s): where each rank waits\n{:>6}  {:<12} operation\n",
                "rank", "host"
            );
            for (r, row) in rows.iter().enumerate() {
                match row {
                    Some(row) => {
                        let mut f = row.splitn(3, '\t');
                        let (rk, host, what) = (f.next().unwrap_or(""), f.next().unwrap_or(""), f.next().unwrap_or(""));
                        let _ = writeln!(table, "{rk:>6}  {host:<12} {what}");
                    }
                    None => {
                        let _ = writeln!(
                            table,
                            "{r:>6}  {:<12} no report (not waiting in spmd, or for less than the timeout)",
                            "?"
                        );
                    }
                }
            }
            say(&table);
        } else {
            // Leaked: MPI may still read it when the job ends.
            let bytes: &'static [u8] = Box::leak(row.into_bytes().into_boxed_slice());
            if let Ok(d) = Desc::bytes(bytes)
                && let Ok(mut req) = st.comm.isend(&d, 0, st.tag, crate::sys::p2p::Mode::Standard)
            {
                let end = Instant::now() + GATHER;
                while Instant::now() < end && !matches!(req.test(), Ok(Some(_)) | Err(_)) {
                    std::thread::sleep(Duration::from_millis(2));
                }
                std::mem::forget(req);
            }
            std::thread::sleep(GRACE.saturating_sub(expired.elapsed()));
        }
        crate::sys::abort_world(HANG_EXIT_CODE);
        std::process::exit(HANG_EXIT_CODE)
    })
}
