//! Communicators: [`Comm`] — rank, size, duplicate, split by colour and key, node-local split, barrier, abort.
//!
//! A `Comm<'u>` borrows the [`crate::Universe`] it came from, so it cannot outlive MPI (a compile error, see
//! [`crate::env`]). Cloning a `Comm` gives another handle to the same communicator; [`Comm::dup`] creates a new
//! one with its own message context. Messaging operations on `Comm` live in [`crate::p2p`] and
//! [`crate::collective`].
//!
//! Each communicator carries two private duplicates that spmd uses for its own traffic (the later parts of
//! chunked object messages and the internal steps of object collectives), so that no user receive, even one for
//! any source and any tag, can match them.
//!
//! Not covered yet: inter-communicators, groups, `MPI_Comm_create_group`, communicator names and attributes.
//! Cartesian process grids are not there yet.

use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::rc::Rc;

use crate::env::Universe;
use crate::error::{ErrorKind, Result, fail};
use crate::raw::RawComm;
use crate::request::Engine;

/// The state shared by all handles of one communicator.
pub(crate) struct CommInner {
    /// The communicator user messages travel on.
    pub(crate) raw: RawComm,
    /// Private duplicate for the continuation parts of point-to-point object messages.
    pub(crate) aux: RawComm,
    /// Private duplicate for the internal messages of object collectives.
    pub(crate) coll: RawComm,
    pub(crate) rank: usize,
    pub(crate) size: usize,
    /// Pending receives, in the order they were started.
    pub(crate) engine: RefCell<Engine>,
    /// Number of object collectives started so far (tags their internal messages).
    pub(crate) coll_seq: Cell<u32>,
}

impl CommInner {
    /// Wraps a freshly created communicator (collective: creates its private duplicates).
    pub(crate) fn new(raw: RawComm) -> Result<CommInner> {
        let aux = raw.dup()?;
        let coll = raw.dup()?;
        let rank = raw.rank()?;
        let size = raw.size()?;
        Ok(CommInner {
            raw,
            aux,
            coll,
            rank,
            size,
            engine: RefCell::new(Engine::default()),
            coll_seq: Cell::new(0),
        })
    }
}

/// A communicator: a group of processes with a private message context.
///
/// Not `Send` or `Sync` (MPI handles are not, under Open MPI); it borrows the universe for `'u`.
#[derive(Clone)]
pub struct Comm<'u> {
    pub(crate) inner: Rc<CommInner>,
    _universe: PhantomData<&'u Universe>,
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
    pub(crate) fn from_inner(inner: Rc<CommInner>) -> Self {
        Comm {
            inner,
            _universe: PhantomData,
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
    /// # Errors
    /// [`ErrorKind::Mpi`] if MPI cannot create the communicator.
    pub fn dup(&self) -> Result<Comm<'u>> {
        Ok(Comm::from_inner(Rc::new(CommInner::new(self.inner.raw.dup()?)?)))
    }

    /// Splits the communicator (collective): processes with the same `color` form a new communicator, ordered by
    /// `key` and then by their rank here. A `color` of `None` joins no communicator and gets `Ok(None)`.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] if `color` exceeds `i32::MAX` (MPI colours are non-negative `int`s);
    /// [`ErrorKind::Mpi`] if MPI fails.
    pub fn split(&self, color: Option<u32>, key: i32) -> Result<Option<Comm<'u>>> {
        let color = match color {
            Some(c) if c > i32::MAX as u32 => {
                return fail(
                    ErrorKind::InvalidArgument,
                    format!("split: colour {c} exceeds i32::MAX"),
                );
            }
            c => c.map(|c| c as i32),
        };
        self.wrap(self.inner.raw.split(color, key)?)
    }

    /// The processes of this communicator that share memory with this one: one communicator per node
    /// (`MPI_Comm_split_type` with `MPI_COMM_TYPE_SHARED`), ranked in the order of their ranks here (collective).
    ///
    /// # Errors
    /// [`ErrorKind::Mpi`] if MPI fails.
    pub fn split_shared(&self) -> Result<Comm<'u>> {
        match self.wrap(self.inner.raw.split_shared(self.rank() as i32)?)? {
            Some(c) => Ok(c),
            None => fail(ErrorKind::Mpi, "split_shared: MPI returned no node-local communicator"),
        }
    }

    fn wrap(&self, raw: Option<RawComm>) -> Result<Option<Comm<'u>>> {
        raw.map(|r| Ok(Comm::from_inner(Rc::new(CommInner::new(r)?))))
            .transpose()
    }

    /// Blocks until every process of the communicator has called `barrier` (collective).
    ///
    /// # Errors
    /// [`ErrorKind::Mpi`] if MPI fails.
    pub fn barrier(&self) -> Result<()> {
        crate::request::blocking("barrier", |nb| self.inner.raw.barrier_nb(nb))
    }

    /// Ends every process of the job (not only of this communicator: Open MPI aborts the whole job) with exit
    /// status `code`.
    pub fn abort(&self, code: i32) -> ! {
        self.inner.raw.abort(code)
    }
}
