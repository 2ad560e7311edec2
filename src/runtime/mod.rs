//! The runtime: [`init`], thread levels, the [`Universe`] guard that owns the MPI lifetime, the failure policy, and
//! adoption of an MPI that other code started.
//!
//! # Start-up
//! [`init`] calls `MPI_Init_thread` and nothing else that involves other processes: no barrier, no communicator
//! duplication (unless `SPMD_HEARTBEAT` is set, below). [`Universe::world`] is `MPI_COMM_WORLD` itself, so spmd ranks
//! can share a job with C, Fortran or mpi4py ranks (`mpirun -np 2 ./c_prog : -np 2 ./spmd_prog`), whose collective
//! calls on `MPI_COMM_WORLD` match those of spmd's unchecked handles one for one (a checked collective adds its size
//! agreement, see [`crate::collective`]).
//!
//! # Adoption
//! When MPI was started by other code in the same process (a C `main` that calls into Rust, mpi4py, rsmpi),
//! [`init`] adopts it: the universe uses MPI as it is and leaves `MPI_Finalize` to whoever started it.
//! ([`Universe::adopted`] tells which case holds.) Under adoption, `#[derive(Equivalence)]` types of rsmpi cannot
//! be used (rsmpi insists on having started MPI itself); spmd's own element types work.
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
//! # Hangs: `SPMD_TIMEOUT`
//! A deadlock (ranks in different collectives, a receive nobody sends to) leaves a job silent. With
//! `SPMD_TIMEOUT=secs` in the ranks' environment (`spmdrun --timeout` sets it), a rank that waits longer than that
//! inside one spmd operation prints where it waits — the operation, its communicator, peer or root, tag, element
//! count and the caller's source line — and rank 0 prints one table of every rank's wait before the job ends with
//! status 124:
//!
//! ```text
//! spmd: hang diagnosis (SPMD_TIMEOUT=2 s): where each rank waits
//!   rank  host         operation
//!      0  node1        barrier() on world at src/main.rs:26:14, waiting 2.0 s
//!      1  node1        broadcast_buf(root 0, 3 elements) on a communicator of 3 ranks at src/main.rs:29:13, waiting 2.0 s
//! ```
//!
//! Every blocking operation then waits in a test loop that watches the clock. Off (the default) it costs one
//! relaxed atomic load per operation. Operations on [`Comm::unchecked`] handles are bare MPI calls and are not
//! watched. While it is on, spmd sends its reports on the world communicator with the highest tag
//! ([`crate::p2p::tag_ub`]): a program should not use that tag on the world communicator then.
//!
//! # Frozen or cut-off hosts: `SPMD_HEARTBEAT`
//! A host that is stopped (or cut off while its processes wait) is never noticed by mpirun. With
//! `SPMD_HEARTBEAT=secs` (`spmdrun` sets 4 when given a hostfile), spmd asks for `MPI_THREAD_MULTIPLE` and runs a
//! thread per rank that sends a one-byte message to the next rank of a ring every quarter of that time, on a private
//! communicator; a rank that hears nothing from the previous one for that long prints which rank and host fell
//! silent and ends the job (status 125). A thread rather than the hang diagnosis, because a silent peer must be
//! noticed even while every rank computes or waits inside MPI for as long as the program legitimately takes. It
//! needs every rank of the job to be an spmd program (C or Python ranks do not beat).
//!
//! Not covered yet: MPI-3 process failure detection or recovery (Open MPI 4.1 has none by default); a job that
//! should survive a failing rank must not use MPI across it.

mod heartbeat;
pub(crate) mod watch;

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Once};

use crate::comm::{Comm, CommInner};
use crate::error::{self, Error, ErrorKind, Result, fail};
use crate::sys::{self as raw, RawComm};

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

    /// The level MPI runs at now (`MPI_Query_thread`).
    fn query() -> Self {
        let q = raw::query_thread();
        let all = [
            ThreadLevel::Single,
            ThreadLevel::Funneled,
            ThreadLevel::Serialized,
            ThreadLevel::Multiple,
        ];
        raw::thread_constants()
            .iter()
            .position(|&c| c == q)
            .map_or(ThreadLevel::Single, |i| all[i])
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
static ABORT_ON_FAILURE: AtomicBool = AtomicBool::new(false);
static ERROR_REPORTED: AtomicBool = AtomicBool::new(false);
static HOOK: Once = Once::new();
/// The granted thread level while MPI runs (index into `ThreadLevel`'s variants).
static LEVEL: AtomicU8 = AtomicU8::new(0);

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
    error::world_rank()
}

/// The thread level granted to the running MPI.
pub(crate) fn thread_level() -> ThreadLevel {
    [
        ThreadLevel::Single,
        ThreadLevel::Funneled,
        ThreadLevel::Serialized,
        ThreadLevel::Multiple,
    ][LEVEL.load(Ordering::Relaxed) as usize]
}

/// Called by `Debug` of [`Error`]: the line `main`'s error report prints already names the rank and cause.
fn error_reported() {
    if STATE.load(Ordering::SeqCst) == STATE_DEFERRED {
        ERROR_REPORTED.store(true, Ordering::SeqCst);
    }
}

/// Called when the last live [`Error`] of the process is dropped. If the universe was dropped while errors were
/// alive (an error on its way out of `main`), this ends the job.
fn last_error_dropped(message: &str) {
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
///
/// ```no_run
/// use spmd::{Builder, FailurePolicy, ThreadLevel};
/// let universe = Builder::new()
///     .thread_level(ThreadLevel::Funneled)
///     .failure_policy(FailurePolicy::Abort)
///     .init()?;
/// # Ok::<(), spmd::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Builder {
    level: ThreadLevel,
    policy: FailurePolicy,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            level: ThreadLevel::Single,
            policy: FailurePolicy::Abort,
        }
    }
}

impl Builder {
    /// Defaults: [`ThreadLevel::Single`], [`FailurePolicy::Abort`].
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

    /// Starts MPI, or adopts it if other code in this process started it already (see the [module docs](self)).
    /// Makes no call that involves other processes.
    ///
    /// # Errors
    /// [`ErrorKind::AlreadyInitialized`] if an spmd universe exists already, or MPI was finalised (MPI can run once
    /// per process); [`ErrorKind::ThreadLevel`] if MPI grants (or, adopted, runs at) less than the requested
    /// level (MPI started here is then finalised again).
    pub fn init(self) -> Result<Universe> {
        let state = STATE.load(Ordering::SeqCst);
        if state == STATE_RUNNING || state == STATE_DEFERRED || raw::is_finalized() {
            return fail(
                ErrorKind::AlreadyInitialized,
                "MPI was initialised already by spmd in this process (it can be initialised once per process)",
            );
        }
        let (mpi_universe, granted, adopted) = if raw::is_initialized() {
            (None, ThreadLevel::query(), true)
        } else {
            let ask = if heartbeat::limit().is_some() {
                ThreadLevel::Multiple
            } else {
                self.level
            };
            let Some((u, granted)) = mpi::initialize_with_threading(ask.to_mpi()) else {
                return fail(
                    ErrorKind::AlreadyInitialized,
                    "MPI was initialised already in this process",
                );
            };
            (Some(u), ThreadLevel::from_mpi(granted), false)
        };
        if granted < self.level {
            if let Some(u) = mpi_universe {
                drop(u);
                STATE.store(STATE_FINALIZED, Ordering::SeqCst);
            }
            return fail(
                ErrorKind::ThreadLevel,
                format!(
                    "requested thread level {}, but MPI {} only {}",
                    self.level,
                    if adopted { "runs at" } else { "granted" },
                    granted
                ),
            );
        }
        let world_comm = RawComm::world();
        if !adopted {
            // Errors on MPI_COMM_WORLD become return codes that spmd reports with context (MPI's default would
            // abort with a terse message). Adopted MPI keeps the error handling its owner chose.
            world_comm.set_errors_return()?;
        }
        let world = CommInner::new(world_comm)?;
        error::set_world_rank(Some(world.rank));
        error::set_hooks(error::Hooks {
            last_dropped: last_error_dropped,
            reported: error_reported,
        });
        crate::p2p::init_tag_ub();
        LEVEL.store(granted as u8, Ordering::SeqCst);
        ABORT_ON_FAILURE.store(self.policy == FailurePolicy::Abort, Ordering::SeqCst);
        STATE.store(STATE_RUNNING, Ordering::SeqCst);
        if self.policy == FailurePolicy::Abort {
            install_panic_hook();
        }
        let mut universe = Universe {
            heartbeat: None,
            mpi: mpi_universe,
            world: Some(Arc::new(world)),
            level: granted,
            requested: self.level,
            policy: self.policy,
            adopted,
            start: raw::wtime(),
            _not_send: PhantomData,
        };
        start_watch(&universe);
        universe.heartbeat = heartbeat::start(&universe)?;
        Ok(universe)
    }
}

/// Turns the hang diagnosis on if `SPMD_TIMEOUT=secs` is set (no communication: ranks of other languages in the
/// same job must see no extra collective). Ranks may differ: checked collectives agree on their form anyway.
fn start_watch(universe: &Universe) {
    let Ok(v) = std::env::var("SPMD_TIMEOUT") else {
        return;
    };
    if v.trim().is_empty() {
        return;
    }
    let inner = universe.world_inner();
    match v.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => watch::start(
            std::time::Duration::try_from_secs_f64(x).unwrap_or(std::time::Duration::MAX),
            inner.rank,
            inner.size,
            Arc::as_ptr(inner) as usize,
        ),
        Ok(0.0) => {}
        _ => {
            if inner.rank == 0 {
                eprintln!("spmd: SPMD_TIMEOUT={v:?} is not a number of seconds; the hang diagnosis stays off");
            }
        }
    }
}

/// Starts MPI with the default thread level, [`ThreadLevel::Single`], and the abort-on-failure policy.
///
/// `Single` is the fastest level of Open MPI 4.1: from `Funneled` up, every blocking call takes thread-safety
/// locks (8-byte ping-pong 0.133 µs at `Single`, 0.161 µs at `Funneled` on a 2-vCPU machine).
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

/// The running MPI environment. Dropping it finalises MPI (unless MPI was adopted); communicators borrow it, so
/// none can outlive it.
///
/// Not `Send`: MPI is finalised by the thread that started it.
pub struct Universe {
    // `mpi` is `Some` when spmd started MPI. `world` is `Some` until `drop`, which takes it first: communicators
    // first, then MPI itself.
    mpi: Option<mpi::environment::Universe>,
    world: Option<Arc<CommInner>>,
    level: ThreadLevel,
    requested: ThreadLevel,
    policy: FailurePolicy,
    adopted: bool,
    start: f64,
    heartbeat: Option<raw::heartbeat::Heartbeat>,
    _not_send: PhantomData<*const ()>,
}

impl Universe {
    /// The world communicator: every process of the job — `MPI_COMM_WORLD` itself, so buffer messages and
    /// collectives match those of C, Fortran or mpi4py ranks in the same job.
    ///
    /// ```no_run
    /// let universe = spmd::init()?;
    /// let world = universe.world();
    /// println!("rank {} of {}", world.rank(), world.size());
    /// # Ok::<(), spmd::Error>(())
    /// ```
    pub fn world(&self) -> Comm<'_> {
        Comm::from_inner(Arc::clone(self.world_inner()))
    }

    /// Whether this universe adopted an MPI that other code started (and will finalise).
    pub fn adopted(&self) -> bool {
        self.adopted
    }

    fn world_inner(&self) -> &Arc<CommInner> {
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
        // Receives still pending (their handles dropped) finish or are given up first, then spmd's communicators
        // are freed before MPI_Finalize. Every `Comm` borrows `self`, so none is alive now.
        if let Some(h) = self.heartbeat.take() {
            if abort && Error::live() > 0 {
                // The job is about to end with an error: do not wait for the neighbours' farewells.
                std::mem::forget(h);
            } else {
                h.stop();
            }
        }
        crate::request::shutdown();
        watch::stop();
        drop(self.world.take());
        let mpi_universe = self.mpi.take();
        if abort && Error::live() > 0 {
            // An error is alive while the universe drops: most likely on its way out of `main`. Finalising now
            // could wait forever for peers blocked on this rank; end the job once the error has been reported.
            STATE.store(STATE_DEFERRED, Ordering::SeqCst);
            std::mem::forget(mpi_universe);
            return;
        }
        // Adopted MPI stays running for its owner, who finalises it; a later `init` may adopt it again.
        STATE.store(
            if self.adopted { STATE_NONE } else { STATE_FINALIZED },
            Ordering::SeqCst,
        );
        error::set_world_rank(None);
        drop(mpi_universe);
    }
}
