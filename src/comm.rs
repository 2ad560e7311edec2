//! Communicators: [`Comm`] — rank, size, duplicate, split by colour and key, node-local split, barrier, abort;
//! the raw handle for C libraries ([`Comm::as_raw`], [`Comm::from_raw`]) and conversions to and from rsmpi;
//! [`SharedComm`] for worker threads under `MPI_THREAD_MULTIPLE`.
//!
//! A `Comm<'u>` borrows the [`crate::Universe`] it came from, so it cannot outlive MPI (a compile error, see
//! [`crate::runtime`]). Cloning a `Comm` gives another handle to the same communicator; [`Comm::dup`] creates a
//! new one with its own message context. Messaging operations on `Comm` live in [`crate::p2p`] and
//! [`crate::collective`]. spmd's messages travel on the communicator itself, as a C program's would: a C library
//! given [`Comm::as_raw`] exchanges messages with spmd calls on the same communicator. (Only the size agreements of
//! checked collectives travel on a private duplicate, made by the first of them, see [`crate::collective`].)
//!
//! ```no_run
//! let universe = spmd::init()?;
//! let world = universe.world();
//! // Even and odd ranks in two communicators, ranked by their world rank.
//! let half = world.split(Some((world.rank() % 2) as u32), 0)?.expect("every rank has a colour");
//! let node = world.split_shared()?; // the ranks on this host
//! println!("world {} / half {} / node {}", world.rank(), half.rank(), node.rank());
//! # Ok::<(), spmd::Error>(())
//! ```
//!
//! Not covered yet: inter-communicators, groups, `MPI_Comm_create_group`, communicator names and attributes.
//! Cartesian process grids are not there yet.

use std::marker::PhantomData;
use std::sync::Arc;

use mpi::ffi;

use crate::error::{ErrorKind, Result, fail};
use crate::runtime::{ThreadLevel, Universe};
use crate::sys::RawComm;

/// The state shared by all handles of one communicator.
pub(crate) struct CommInner {
    /// The communicator every message travels on.
    pub(crate) raw: RawComm,
    pub(crate) rank: usize,
    pub(crate) size: usize,
}

impl CommInner {
    /// Wraps a communicator handle (no collective call).
    pub(crate) fn new(raw: RawComm) -> Result<CommInner> {
        let rank = raw.rank()?;
        let size = raw.size()?;
        Ok(CommInner { raw, rank, size })
    }
}

/// A communicator: a group of processes with a private message context.
///
/// Not `Send` or `Sync`: MPI may be called from the thread that owns it (below `MPI_THREAD_MULTIPLE`, that is
/// the only correct use). Under `MPI_THREAD_MULTIPLE`, [`Comm::shared`] gives a handle for other threads. It
/// borrows the universe for `'u`.
#[derive(Clone)]
pub struct Comm<'u> {
    pub(crate) inner: Arc<CommInner>,
    /// Whether buffer collectives check that the ranks agree on sizes (see [`Comm::unchecked`]).
    pub(crate) checked: bool,
    _universe: PhantomData<&'u Universe>,
    _not_send: PhantomData<*const ()>,
}

impl std::fmt::Debug for Comm<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Comm")
            .field("rank", &self.rank())
            .field("size", &self.size())
            .finish()
    }
}

impl<'u> Comm<'u> {
    pub(crate) fn from_inner(inner: Arc<CommInner>) -> Self {
        Comm {
            inner,
            checked: true,
            _universe: PhantomData,
            _not_send: PhantomData,
        }
    }

    /// This process's rank in the communicator, `0..size`.
    #[inline]
    pub fn rank(&self) -> usize {
        self.inner.rank
    }

    /// The number of processes in the communicator.
    #[inline]
    pub fn size(&self) -> usize {
        self.inner.size
    }

    /// A new communicator with the same processes and a new message context (collective: every process must
    /// call it). Messages on the duplicate never match receives on the original.
    ///
    /// ```no_run
    /// # let universe = spmd::init()?; let world = universe.world();
    /// let library_comm = world.dup()?; // a library's own traffic, apart from the program's
    /// assert_eq!(library_comm.size(), world.size());
    /// # Ok::<(), spmd::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Mpi`] if MPI cannot create the communicator.
    pub fn dup(&self) -> Result<Comm<'u>> {
        let raw = crate::request::blocking_call(|| self.inner.raw.dup())?;
        Ok(Comm::from_inner(Arc::new(CommInner::new(raw)?)))
    }

    /// Splits the communicator (collective): processes with the same `color` form a new communicator, ordered by
    /// `key` and then by their rank here. A `color` of `None` joins no communicator and gets `Ok(None)`.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] if `color` exceeds `i32::MAX` (MPI colours are non-negative `int`s);
    /// [`ErrorKind::Mpi`] if MPI fails.
    pub fn split(&self, color: Option<u32>, key: i32) -> Result<Option<Comm<'u>>> {
        let color = match color {
            Some(c) => match i32::try_from(c) {
                Ok(c) => Some(c),
                Err(_) => {
                    return fail(
                        ErrorKind::InvalidArgument,
                        format!("split: colour {c} exceeds i32::MAX"),
                    );
                }
            },
            None => None,
        };
        let raw = crate::request::blocking_call(|| self.inner.raw.split(color, key))?;
        self.wrap(raw)
    }

    /// The processes of this communicator that share memory with this one: one communicator per node
    /// (`MPI_Comm_split_type` with `MPI_COMM_TYPE_SHARED`), ranked in the order of their ranks here (collective).
    ///
    /// # Errors
    /// [`ErrorKind::Mpi`] if MPI fails.
    pub fn split_shared(&self) -> Result<Comm<'u>> {
        let key = i32::try_from(self.rank()).unwrap_or(i32::MAX);
        let raw = crate::request::blocking_call(|| self.inner.raw.split_shared(key))?;
        match self.wrap(raw)? {
            Some(c) => Ok(c),
            None => fail(ErrorKind::Mpi, "split_shared: MPI returned no node-local communicator"),
        }
    }

    fn wrap(&self, raw: Option<RawComm>) -> Result<Option<Comm<'u>>> {
        raw.map(|r| Ok(Comm::from_inner(Arc::new(CommInner::new(r)?))))
            .transpose()
    }

    /// Blocks until every process of the communicator has called `barrier` (collective). On a checked handle
    /// this is `MPI_Ibarrier` completed by a test loop, which keeps pending receives moving while it waits (a C
    /// peer calls `MPI_Ibarrier` + `MPI_Wait`); on an [`Comm::unchecked`] handle it is `MPI_Barrier`.
    ///
    /// ```no_run
    /// # let universe = spmd::init()?; let world = universe.world();
    /// world.barrier()?;
    /// # Ok::<(), spmd::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Mpi`] if MPI fails.
    #[track_caller]
    pub fn barrier(&self) -> Result<()> {
        let _wait = self.watch("barrier");
        crate::request::run_collective("barrier", self.checked, |nb| self.inner.raw.barrier(nb))
    }

    /// Ends every process of the job (not only of this communicator: Open MPI and MPICH abort the whole job)
    /// with exit status `code`.
    pub fn abort(&self, code: i32) -> ! {
        self.inner.raw.abort(code)
    }

    /// The MPI handle, for C libraries and other bindings (it stays owned by spmd: do not free it).
    ///
    /// ```no_run
    /// # let universe = spmd::init()?; let world = universe.world();
    /// let handle: mpi::ffi::MPI_Comm = world.as_raw();
    /// let mut size = 0;
    /// // SAFETY: a valid communicator handle while `world` lives.
    /// unsafe { mpi::ffi::MPI_Comm_size(handle, &mut size) };
    /// assert_eq!(size as usize, world.size());
    /// # Ok::<(), spmd::Error>(())
    /// ```
    pub fn as_raw(&self) -> ffi::MPI_Comm {
        self.inner.raw.handle
    }

    /// A `Comm` on a communicator handle made elsewhere (a C library, mpi4py via `MPI._handleof`). spmd never
    /// frees it.
    ///
    /// # Safety
    /// `handle` must be a valid intra-communicator of this MPI and stay valid (not freed) for as long as the
    /// returned `Comm` and its clones are used.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] for `MPI_COMM_NULL`; [`ErrorKind::Mpi`] if MPI rejects the handle.
    #[allow(unsafe_code)] // an `unsafe fn` states a contract; it performs no unsafe operation itself
    pub unsafe fn from_raw(_universe: &'u Universe, handle: ffi::MPI_Comm) -> Result<Comm<'u>> {
        if RawComm::is_null_handle(handle) {
            return fail(
                ErrorKind::InvalidArgument,
                "from_raw: MPI_COMM_NULL is not a communicator",
            );
        }
        Ok(Comm::from_inner(Arc::new(CommInner::new(RawComm::borrowed(handle))?)))
    }

    /// A `Comm` on a duplicate of an rsmpi communicator (collective over its processes); spmd owns the duplicate.
    ///
    /// ```no_run
    /// use mpi::traits::Communicator;
    /// # let universe = spmd::init()?;
    /// let rs = universe.world().to_rsmpi()?;          // an rsmpi SimpleCommunicator
    /// let back = spmd::Comm::from_rsmpi(&universe, &rs)?;
    /// assert_eq!(back.size() as i32, rs.size());
    /// # Ok::<(), spmd::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Mpi`] if MPI cannot duplicate it.
    pub fn from_rsmpi<C: mpi::raw::AsRaw<Raw = ffi::MPI_Comm>>(universe: &'u Universe, comm: &C) -> Result<Comm<'u>> {
        let _ = universe;
        let raw = crate::request::blocking_call(|| RawComm::borrowed(comm.as_raw()).dup())?;
        Ok(Comm::from_inner(Arc::new(CommInner::new(raw)?)))
    }

    /// An rsmpi communicator on a duplicate of this one (collective), for calls spmd does not wrap. Drop it before
    /// the universe: rsmpi frees it on drop, and MPI aborts if that happens after `MPI_Finalize`.
    ///
    /// # Errors
    /// [`ErrorKind::Mpi`] if MPI cannot duplicate it.
    pub fn to_rsmpi(&self) -> Result<mpi::topology::SimpleCommunicator> {
        let raw = crate::request::blocking_call(|| self.inner.raw.dup())?;
        Ok(raw.into_rsmpi())
    }

    /// This communicator without spmd's size checks for buffers: each buffer collective is then exactly the bare
    /// MPI call, and buffer receives into a given buffer (`recv_buf_into`, `irecv_buf_into`) are the bare
    /// `MPI_Recv` / `MPI_Irecv`, at C's speed.
    ///
    /// Safe collectives first agree on sizes across ranks (one small extra collective, see
    /// [`crate::collective`]), and safe receives learn a message's size with a matched probe before receiving it,
    /// because Open MPI writes past a receive buffer when a larger message arrives. Receives that size their own
    /// buffer (`recv_buf`) and object operations keep their checks on this handle; while non-blocking receives of
    /// a checked handle are pending, receives of this one also go through the probe, so that receives still match
    /// in the order they started.
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// // SAFETY: every rank passes one f64 to each all-reduce, and every message to this rank fits its buffer.
    /// let fast = unsafe { world.unchecked() };
    /// let mut sum = 0.0;
    /// fast.all_reduce_buf(&1.0f64, &mut sum, spmd::Op::Sum)?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Safety
    /// In every buffer collective made through the returned handle, all ranks must pass sizes that agree as MPI
    /// requires (the same count to a broadcast, the root's blocks matching the others' buffers, varcount counts
    /// matching what each rank sends); and every message a buffer receive of the handle gets must fit its buffer.
    /// Otherwise MPI may write past a buffer. (Not memory safety, but worth knowing: such a receive takes an object
    /// message that fits as bytes, leaving the object's out-of-band parts to later receives; and the collectives
    /// of this handle are blocking MPI calls that do not advance pending non-blocking receives, see
    /// [`crate::request`].)
    #[allow(unsafe_code)] // an `unsafe fn` states a contract; it performs no unsafe operation itself
    pub unsafe fn unchecked(&self) -> Comm<'u> {
        self.agreed()
    }

    /// Records, for the hang diagnosis, that the calling thread enters operation `op` on this communicator.
    #[track_caller]
    #[inline]
    pub(crate) fn watch(&self, op: &'static str) -> crate::runtime::watch::Guard {
        crate::runtime::watch::enter(op, Arc::as_ptr(&self.inner) as usize, self.inner.size)
    }

    /// A handle without the size agreement, for spmd's own steps whose sizes agree by construction (lengths
    /// exchanged just before, or one element on every rank).
    pub(crate) fn agreed(&self) -> Comm<'u> {
        Comm {
            checked: false,
            ..self.clone()
        }
    }

    /// A handle that worker threads can use to communicate, when MPI runs at `MPI_THREAD_MULTIPLE`; each thread
    /// calls [`SharedComm::comm`] to get its own `Comm`.
    ///
    /// MPI does not order the messages of different threads. An object travels as a header and its out-of-band
    /// arrays, so two threads that send objects to one rank with one tag at the same time, or receive objects
    /// from one rank with one tag at the same time, can mix the parts of their objects: give each thread its own
    /// tags (or peers), as below.
    ///
    /// ```no_run
    /// use spmd::ThreadLevel;
    /// let universe = spmd::init_thread(ThreadLevel::Multiple)?;
    /// let world = universe.world();
    /// let shared = world.shared()?;
    /// std::thread::scope(|s| {
    ///     for t in 0..4 {
    ///         let shared = shared.clone();
    ///         s.spawn(move || {
    ///             let comm = shared.comm();
    ///             let peer = (comm.rank() + 1) % comm.size();
    ///             comm.send_obj(peer, t, &format!("hello from thread {t}")).unwrap();
    ///         });
    ///     }
    /// });
    /// # Ok::<(), spmd::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::ThreadLevel`] below `MPI_THREAD_MULTIPLE`, where other threads must not call MPI.
    pub fn shared(&self) -> Result<SharedComm<'u>> {
        let level = crate::runtime::thread_level();
        if level != ThreadLevel::Multiple {
            return fail(
                ErrorKind::ThreadLevel,
                format!(
                    "shared: worker threads may call MPI only at MPI_THREAD_MULTIPLE, but MPI runs at {level} \
                     (start it with spmd::init_thread(ThreadLevel::Multiple))"
                ),
            );
        }
        Ok(SharedComm {
            inner: Arc::clone(&self.inner),
            checked: self.checked,
            _universe: PhantomData,
        })
    }
}

/// A communicator handle that is `Send + Sync`: made by [`Comm::shared`], only when MPI runs at
/// `MPI_THREAD_MULTIPLE`, so that its existence proves other threads may call MPI.
#[derive(Clone)]
pub struct SharedComm<'u> {
    inner: Arc<CommInner>,
    checked: bool,
    // The lifetime of the universe, without its `!Send`.
    _universe: PhantomData<fn() -> &'u ()>,
}

impl<'u> SharedComm<'u> {
    /// A `Comm` for the calling thread, on the same communicator.
    pub fn comm(&self) -> Comm<'u> {
        Comm {
            checked: self.checked,
            ..Comm::from_inner(Arc::clone(&self.inner))
        }
    }
}

impl std::fmt::Debug for SharedComm<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedComm")
            .field("rank", &self.inner.rank)
            .field("size", &self.inner.size)
            .finish()
    }
}
