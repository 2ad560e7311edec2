//! The runtime: [`init`], thread levels, the [`Universe`] guard that owns the MPI lifetime, and the failure policy.
//!
//! # Lifetime
//! [`init`] starts MPI and returns a [`Universe`]; dropping it finalises MPI. Every communicator borrows the
//! universe (`Comm<'u>`), so keeping one past the guard is a compile error, never an abort at run time:
//!
//! ```compile_fail
//! let world = {
//!     let universe = spmd::init().unwrap();
//!     universe.world() // error[E0597]: `universe` does not live long enough
//! };
//! ```
//!
//! # Failure policy
//! MPI has no way to unwind a job: a rank that stops while its peers wait for it in a receive leaves them waiting
//! forever (and rsmpi's `MPI_Finalize` on unwind waits for them too). Under the default policy,
//! [`FailurePolicy::Abort`], spmd therefore ends the whole job, with one line on stderr that names the rank and
//! the cause, when
//! - any thread of any rank panics (a panic hook calls `MPI_Abort`; exit status 101), or
//! - `main` returns an `Err` holding an [`crate::Error`] (for example `fn main() -> spmd::Result<()>`, or an
//!   `anyhow::Error` wrapping one): the universe sees the error alive when it is dropped, skips `MPI_Finalize`,
//!   and aborts the job once the error has been reported (exit status 1).
//!
//! Errors of other types returned from `main` are not seen; convert them with `?` into [`crate::Error`] (it
//! implements `From<std::io::Error>`, `From<String>`, ...) or call [`Universe::abort`].
//! [`FailurePolicy::Unwind`] turns all of this off (rsmpi's behaviour).
//!
//! Not covered yet: MPI-3 process failure detection or recovery (Open MPI 4.1 has none by default); a job that
//! should survive a failing rank must not use MPI across it.

use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, Ordering};

use crate::comm::{Comm, CommInner};
use crate::error::{Error, ErrorKind, Result, fail};
use crate::raw;

/// The levels of thread support of MPI, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ThreadLevel {
    /// Only one thread calls MPI (spmd's default; see [`init`]).
    Single,
    /// Many threads, but only the one that called [`init`] calls MPI (rayon computes, the main thread
    /// communicates).
    Funneled,
    /// Many threads may call MPI, one at a time.
    Serialized,
    /// Many threads may call MPI at the same time.
    Multiple,
}

impl ThreadLevel {
    fn to_mpi(self) -> mpi::Threading {
        match self {
            ThreadLevel::Single => mpi::Threading::Single,
            ThreadLevel::Funneled => mpi::Threading::Funneled,
            ThreadLevel::Serialized => mpi::Threading::Serialized,
            ThreadLevel::Multiple => mpi::Threading::Multiple,
        }
    }

    fn from_mpi(t: mpi::Threading) -> Self {
        match t {
            mpi::Threading::Single => ThreadLevel::Single,
            mpi::Threading::Funneled => ThreadLevel::Funneled,
            mpi::Threading::Serialized => ThreadLevel::Serialized,
            mpi::Threading::Multiple => ThreadLevel::Multiple,
        }
    }

    /// The name MPI uses, e.g. `MPI_THREAD_FUNNELED`.
    pub fn mpi_name(self) -> &'static str {
        match self {
            ThreadLevel::Single => "MPI_THREAD_SINGLE",
            ThreadLevel::Funneled => "MPI_THREAD_FUNNELED",
            ThreadLevel::Serialized => "MPI_THREAD_SERIALIZED",
            ThreadLevel::Multiple => "MPI_THREAD_MULTIPLE",
        }
    }
}

impl std::fmt::Display for ThreadLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.mpi_name())
    }
}

/// What happens when a rank fails (panics, or returns an [`crate::Error`] out of `main`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// End the whole job with `MPI_Abort` and one line on stderr naming the rank and the cause (the default).
    #[default]
    Abort,
    /// Do nothing special: panics unwind and the universe finalises MPI on drop. A failing rank can then leave
    /// its peers blocked forever; use only when something else supervises the job.
    Unwind,
}

// Process-wide state of the runtime, for the panic hook and for errors alive when the universe drops.
const STATE_NONE: u8 = 0;
const STATE_RUNNING: u8 = 1;
const STATE_DEFERRED: u8 = 2;
const STATE_FINALIZED: u8 = 3;
static STATE: AtomicU8 = AtomicU8::new(STATE_NONE);
static WORLD_RANK: AtomicI64 = AtomicI64::new(-1);
static ABORT_ON_FAILURE: AtomicBool = AtomicBool::new(false);
static ERROR_REPORTED: AtomicBool = AtomicBool::new(false);
static HOOK: Once = Once::new();
static CHECKS: AtomicBool = AtomicBool::new(cfg!(debug_assertions));

/// Exit status of a job ended because a rank panicked (the status Rust uses for a panic).
pub const PANIC_EXIT_CODE: i32 = 101;
/// Exit status of a job ended because a rank returned an error out of `main`.
pub const ERROR_EXIT_CODE: i32 = 1;

/// The name of the host this process runs on (`MPI_Get_processor_name`), while MPI runs.
///
/// # Errors
/// [`ErrorKind::InvalidArgument`] if MPI is not running; [`ErrorKind::Mpi`] if MPI cannot tell.
pub fn processor_name() -> Result<String> {
    if STATE.load(Ordering::SeqCst) != STATE_RUNNING {
        return fail(ErrorKind::InvalidArgument, "processor_name: MPI is not running");
    }
    raw::processor_name()
}

/// The rank of this process in the world communicator while MPI runs.
pub(crate) fn world_rank() -> Option<usize> {
    let r = WORLD_RANK.load(Ordering::Relaxed);
    (r >= 0).then_some(r as usize)
}

/// Whether buffer collectives compare sizes across ranks first (see [`Builder::checks`]).
#[inline]
pub fn checks() -> bool {
    CHECKS.load(Ordering::Relaxed)
}

/// Turns the size checks of buffer collectives on or off (see [`Builder::checks`]). Every rank must make the same
/// change at the same point of the program, since a check is itself a collective.
pub fn set_checks(on: bool) {
    CHECKS.store(on, Ordering::Relaxed);
}

/// A collective was misused in a way only this rank can see, while the others already wait in it: under the
/// abort policy the job ends here with the message; under [`FailurePolicy::Unwind`] the caller gets the error.
pub(crate) fn collective_misuse(message: String) -> Error {
    if ABORT_ON_FAILURE.load(Ordering::SeqCst) && STATE.load(Ordering::SeqCst) == STATE_RUNNING {
        let rank = world_rank()
            .map(|r| format!("rank {r}"))
            .unwrap_or_else(|| "a rank".into());
        eprintln!("spmd: {rank}: {message} (the other ranks cannot know; ending the job)");
        raw::abort_world(ERROR_EXIT_CODE);
        std::process::exit(ERROR_EXIT_CODE);
    }
    Error::new(ErrorKind::InvalidArgument, message)
}

/// Called by `Debug` of [`Error`]: the line `main`'s error report prints already names the rank and cause.
pub(crate) fn error_reported() {
    if STATE.load(Ordering::SeqCst) == STATE_DEFERRED {
        ERROR_REPORTED.store(true, Ordering::SeqCst);
    }
}

/// Called when the last live [`Error`] of the process is dropped. If the universe was dropped while errors were
/// alive (an error on its way out of `main`), this ends the job.
pub(crate) fn last_error_dropped(message: &str) {
    if STATE.load(Ordering::SeqCst) == STATE_DEFERRED {
        if !ERROR_REPORTED.load(Ordering::SeqCst) {
            eprintln!("spmd: {message}");
        }
        raw::abort_world(ERROR_EXIT_CODE);
        std::process::exit(ERROR_EXIT_CODE);
    }
}

fn install_panic_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let state = STATE.load(Ordering::SeqCst);
            let running = state == STATE_RUNNING || state == STATE_DEFERRED;
            if !(running && ABORT_ON_FAILURE.load(Ordering::SeqCst)) {
                previous(info);
                return;
            }
            let payload = info.payload();
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(non-string panic payload)".to_string());
            let location = info.location().map(|l| format!(" at {l}")).unwrap_or_default();
            let thread = std::thread::current();
            let thread = thread.name().map(|n| format!(" (thread '{n}')")).unwrap_or_default();
            let rank = world_rank()
                .map(|r| format!("rank {r}{}", crate::farm::panic_context()))
                .unwrap_or_else(|| "a rank".into());
            let bt = std::backtrace::Backtrace::capture();
            if bt.status() == std::backtrace::BacktraceStatus::Captured {
                eprintln!("spmd: {rank} panicked{location}{thread}: {msg}\n{bt}");
            } else {
                eprintln!("spmd: {rank} panicked{location}{thread}: {msg}");
            }
            raw::abort_world(PANIC_EXIT_CODE);
            std::process::exit(PANIC_EXIT_CODE);
        }));
    });
}

/// Options for starting MPI: thread level and failure policy. [`init`] and [`init_thread`] are shorthands.
#[derive(Debug, Clone, Copy)]
pub struct Builder {
    level: ThreadLevel,
    policy: FailurePolicy,
    checks: Option<bool>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            level: ThreadLevel::Single,
            policy: FailurePolicy::Abort,
            checks: None,
        }
    }
}

impl Builder {
    /// Defaults: [`ThreadLevel::Single`], [`FailurePolicy::Abort`], checks as described at [`Builder::checks`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The thread level to request; [`Builder::init`] fails if MPI grants less.
    pub fn thread_level(mut self, level: ThreadLevel) -> Self {
        self.level = level;
        self
    }

    /// What happens when a rank fails.
    pub fn failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Whether buffer collectives first check that every rank passed buffers of agreeing sizes (one extra small
    /// collective per call), reporting a disagreement on every rank as [`ErrorKind::SizeMismatch`]. Without the
    /// check a disagreement is undefined behaviour of MPI (Open MPI 4.1 may write past a buffer).
    ///
    /// Default: the environment variable `SPMD_CHECKS` (`1` or `0`) if set, else on in debug builds and off in
    /// release builds.
    pub fn checks(mut self, on: bool) -> Self {
        self.checks = Some(on);
        self
    }

    /// Starts MPI.
    ///
    /// # Errors
    /// [`ErrorKind::AlreadyInitialized`] if MPI was started before in this process (MPI allows one start per
    /// process); [`ErrorKind::ThreadLevel`] if MPI grants less than the requested level (MPI is then finalised
    /// again, so the process cannot use it).
    pub fn init(self) -> Result<Universe> {
        if raw::is_initialized() {
            return fail(
                ErrorKind::AlreadyInitialized,
                "MPI was initialised already in this process (it can be initialised once per process)",
            );
        }
        let Some((mpi_universe, granted)) = mpi::initialize_with_threading(self.level.to_mpi()) else {
            return fail(
                ErrorKind::AlreadyInitialized,
                "MPI was initialised already in this process",
            );
        };
        let granted = ThreadLevel::from_mpi(granted);
        if granted < self.level {
            drop(mpi_universe);
            STATE.store(STATE_FINALIZED, Ordering::SeqCst);
            return fail(
                ErrorKind::ThreadLevel,
                format!(
                    "requested thread level {}, but MPI granted only {}",
                    self.level, granted
                ),
            );
        }
        crate::p2p::init_tag_ub();
        // A first barrier on MPI_COMM_WORLD (whose errors are fatal) reaches every peer once: a process that cannot
        // reach another (no common transport) ends the job here with Open MPI's message, instead of leaving the
        // communicator duplications below waiting.
        let world_comm = raw::RawComm::world();
        world_comm
            .barrier_nb(false)
            .map_err(|c| c.error("MPI_Barrier at init"))?;
        let world = CommInner::new(world_comm.dup()?)?;
        WORLD_RANK.store(world.rank as i64, Ordering::SeqCst);
        ABORT_ON_FAILURE.store(self.policy == FailurePolicy::Abort, Ordering::SeqCst);
        let env_checks = std::env::var("SPMD_CHECKS").ok().map(|v| v != "0" && !v.is_empty());
        CHECKS.store(
            self.checks.or(env_checks).unwrap_or(cfg!(debug_assertions)),
            Ordering::SeqCst,
        );
        STATE.store(STATE_RUNNING, Ordering::SeqCst);
        if self.policy == FailurePolicy::Abort {
            install_panic_hook();
        }
        // Pending receives advance inside every MPI call (see `request`).
        raw::register_progress(crate::request::on_mpi_progress);
        Ok(Universe {
            mpi: Some(mpi_universe),
            world: Some(Rc::new(world)),
            level: granted,
            requested: self.level,
            policy: self.policy,
            start: raw::wtime(),
            _not_send: PhantomData,
        })
    }
}

/// Starts MPI with the default thread level, [`ThreadLevel::Single`], and the abort-on-failure policy.
///
/// `Single` is the fastest level of Open MPI 4.1: from `Funneled` up, every blocking call takes thread-safety
/// locks (8-byte ping-pong 0.133 µs at `Single`, 0.161 µs at `Funneled` on the machines spmd is developed on).
/// Threads that never call MPI, such as a rayon pool computing between messages, work at `Single` under Open MPI;
/// a program that wants the letter of the MPI standard for that pattern asks for
/// `init_thread(ThreadLevel::Funneled)`.
///
/// ```no_run
/// fn main() -> spmd::Result<()> {
///     let universe = spmd::init()?;
///     let world = universe.world();
///     println!("rank {} of {}", world.rank(), world.size());
///     Ok(())
/// }
/// ```
///
/// # Errors
/// See [`Builder::init`].
pub fn init() -> Result<Universe> {
    Builder::new().init()
}

/// Starts MPI with the given thread level (an error if MPI grants less), abort-on-failure policy.
///
/// # Errors
/// See [`Builder::init`].
pub fn init_thread(level: ThreadLevel) -> Result<Universe> {
    Builder::new().thread_level(level).init()
}

/// The running MPI environment. Dropping it finalises MPI; communicators borrow it, so none can outlive it.
///
/// Not `Send`: MPI is finalised by the thread that started it.
pub struct Universe {
    // Both are `Some` until `drop`, which takes them in order: communicators first, then MPI itself.
    mpi: Option<mpi::environment::Universe>,
    world: Option<Rc<CommInner>>,
    level: ThreadLevel,
    requested: ThreadLevel,
    policy: FailurePolicy,
    start: f64,
    _not_send: PhantomData<*const ()>,
}

impl Universe {
    /// The world communicator: every process of the job. (A private duplicate of `MPI_COMM_WORLD`, so spmd's
    /// messages never match those of other libraries in the same program.)
    pub fn world(&self) -> Comm<'_> {
        Comm::from_inner(Rc::clone(self.world_inner()))
    }

    fn world_inner(&self) -> &Rc<CommInner> {
        self.world
            .as_ref()
            .expect("the world communicator exists until the universe drops")
    }

    /// This process's rank in the world communicator.
    pub fn rank(&self) -> usize {
        self.world_inner().rank
    }

    /// The number of processes in the job.
    pub fn size(&self) -> usize {
        self.world_inner().size
    }

    /// The thread level MPI granted (at least the one requested).
    pub fn thread_level(&self) -> ThreadLevel {
        self.level
    }

    /// The thread level that was requested.
    pub fn requested_thread_level(&self) -> ThreadLevel {
        self.requested
    }

    /// The failure policy in force.
    pub fn failure_policy(&self) -> FailurePolicy {
        self.policy
    }

    /// The name of the host this rank runs on (`MPI_Get_processor_name`).
    ///
    /// # Errors
    /// [`ErrorKind::Mpi`] if MPI cannot tell.
    pub fn processor_name(&self) -> Result<String> {
        processor_name()
    }

    /// The MPI library's version string (e.g. `Open MPI v4.1.4, ...`).
    pub fn library_version(&self) -> String {
        raw::library_version()
    }

    /// Wall-clock seconds since [`init`] (from `MPI_Wtime`; not synchronised across hosts).
    pub fn time(&self) -> f64 {
        raw::wtime() - self.start
    }

    /// Ends every process of the job with exit status `code` (`MPI_Abort`).
    pub fn abort(&self, code: i32) -> ! {
        raw::abort_world(code);
        std::process::exit(code)
    }
}

impl Drop for Universe {
    fn drop(&mut self) {
        let abort = self.policy == FailurePolicy::Abort;
        if abort && std::thread::panicking() {
            // Reached only if the panic hook was replaced after init: never finalise under a panic.
            eprintln!("spmd: rank {} is unwinding from a panic; ending the job", self.rank());
            raw::abort_world(PANIC_EXIT_CODE);
        }
        // Free spmd's communicators before MPI_Finalize. Every `Comm` borrows `self`, so none is alive now and
        // this is the last reference to the world's handles.
        drop(self.world.take());
        raw::unregister_progress(crate::request::on_mpi_progress);
        let mpi_universe = self.mpi.take();
        if abort && Error::live() > 0 {
            // An error is alive while the universe drops: most likely on its way out of `main`. Finalising now
            // could wait forever for peers blocked on this rank; end the job once the error has been reported.
            STATE.store(STATE_DEFERRED, Ordering::SeqCst);
            std::mem::forget(mpi_universe);
            return;
        }
        STATE.store(STATE_FINALIZED, Ordering::SeqCst);
        WORLD_RANK.store(-1, Ordering::SeqCst);
        drop(mpi_universe);
    }
}
