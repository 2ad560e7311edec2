//! Point-to-point messaging for both families, blocking: send, synchronous send, receive, send-receive, probe;
//! and [`Status`], [`Source`], [`TagMatch`], [`Peer`].
//!
//! Two families, named so the call site shows which one travels:
//! - **buffers** (`*_buf`): slices, `Vec`, arrays, ndarrays of [`Data`] move as raw memory, no serialisation;
//!   each call is the MPI call a C program would make (`MPI_Send` of the elements with their datatype), so C,
//!   Fortran and mpi4py peers send and receive them with their own plain calls, at any size, 0 bytes included;
//! - **objects** (`*_obj`): any serde value; the receiver learns the size with a matched probe, so any size
//!   arrives without a guessed buffer.
//!
//! ```no_run
//! # fn main() -> spmd::Result<()> {
//! # let universe = spmd::init()?; let world = universe.world();
//! use std::collections::HashMap;
//! if world.rank() == 0 {
//!     world.send_buf(1, 0, &[1.0f64, 2.0, 3.0])?;             // raw memory
//!     let table = HashMap::from([("alpha".to_string(), 1u64)]);
//!     world.send_obj(1, 1, &table)?;                          // serialised
//! } else if world.rank() == 1 {
//!     let mut v = [0.0f64; 3];
//!     world.recv_buf_into(0, 0, &mut v)?;
//!     let (table, status): (HashMap<String, u64>, _) = world.recv_obj(0, 1)?;
//!     assert_eq!(table["alpha"], 1);
//!     assert_eq!(status.source(), 0);
//! }
//! # Ok(()) }
//! ```
//!
//! Receiving from any source with any tag, and looking at what arrived:
//!
//! ```no_run
//! # fn main() -> spmd::Result<()> {
//! # let universe = spmd::init()?; let world = universe.world();
//! use spmd::{ANY_SOURCE, ANY_TAG};
//! if world.rank() == 0 {
//!     for _ in 1..world.size() {
//!         let (v, st) = world.recv_buf::<u64>(ANY_SOURCE, ANY_TAG)?;
//!         println!("{} values from rank {} with tag {}", v.len(), st.source(), st.tag());
//!     }
//! } else {
//!     world.send_buf(0, world.rank() as i32, &vec![7u64; world.rank()])?;
//! }
//! # Ok(()) }
//! ```
//!
//! A strided ndarray view travels point-to-point as it is (a derived datatype, no copy):
//!
//! ```no_run
//! # fn main() -> spmd::Result<()> {
//! # let universe = spmd::init()?; let world = universe.world();
//! use ndarray::{Array2, s};
//! let mut a = Array2::<f64>::zeros((4, 6));
//! if world.rank() == 0 {
//!     a.fill(1.0);
//!     world.send_buf(1, 0, &a.column(2))?;        // 4 elements, 6 apart
//! } else if world.rank() == 1 {
//!     world.recv_buf_into(0, 0, &mut a.slice_mut(s![.., 5]))?;
//! }
//! # Ok(()) }
//! ```
//!
//! # Safety of receives
//! Open MPI writes past the end of a receive buffer when it truncates a large message (it reports
//! `MPI_ERR_TRUNCATE`, too late). spmd receives every message after a matched probe (`MPI_Mprobe`) has told its
//! size: a buffer that is too small is an [`ErrorKind::Truncated`] error naming both sizes, and the message is
//! consumed, so its sender completes. The probe costs ~0.04 µs per small message (see README's performance
//! table); on a [`Comm::unchecked`] handle, whose contract is that messages fit, receives into a given buffer are
//! the bare `MPI_Recv` / `MPI_Irecv`.
//!
//! # Families
//! Object messages start with a 16-byte header (`spmdOBJ1`, see [`crate::codec`]); out-of-band arrays follow as
//! messages of their own on the same communicator and tag. A buffer message received with `recv_obj`, or an object
//! message received with `recv_buf_into`, is an [`ErrorKind::WrongFamily`] error naming both families, and the
//! message (with its parts) is consumed. (A buffer whose first 8 bytes happen to spell `spmdOBJ1` would be taken
//! for an object: an unlikely pattern for numeric data.)
//!
//! Not covered yet: buffered and ready send modes (`MPI_Bsend`, `MPI_Rsend`), persistent requests.

mod object;
mod recv;

use crate::buffer::{Buffer, BufferMut, Data, Elem};
use crate::comm::Comm;
use crate::error::{ErrorKind, Result, fail};
use crate::runtime::watch;
use crate::sys::{self as raw, Desc, RawStatus, p2p::Mode};

pub(crate) use recv::{recv_into_desc, recv_object, truncated, wrong_family_for_buffer};

/// A message tag: `0..=tag_ub` (at least 32767; 2^31-1 under Open MPI).
pub type Tag = i32;

/// Where a receive or probe takes its message from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// Any process of the communicator (`MPI_ANY_SOURCE`).
    Any,
    /// The process with this rank.
    Rank(usize),
    /// No process (`MPI_PROC_NULL`): the receive completes at once with no data.
    Null,
}

/// Receive from any source; see [`Source::Any`].
pub const ANY_SOURCE: Source = Source::Any;

impl From<usize> for Source {
    fn from(rank: usize) -> Self {
        Source::Rank(rank)
    }
}

/// `None` is no process ([`Source::Null`]), as a neighbour at the edge of a non-periodic grid.
impl From<Option<usize>> for Source {
    fn from(rank: Option<usize>) -> Self {
        rank.map_or(Source::Null, Source::Rank)
    }
}

/// A [`Peer`] as a source: no peer is [`Source::Null`] (e.g. the `source` of [`crate::topo::Grid::shift`]).
impl From<Peer> for Source {
    fn from(peer: Peer) -> Self {
        peer.0.map_or(Source::Null, Source::Rank)
    }
}

/// A destination: a rank, or no process (`MPI_PROC_NULL`), to which a send completes at once and sends nothing.
///
/// `usize` and `Option<usize>` convert into it, so boundary code needs no branches:
///
/// ```no_run
/// # fn main() -> spmd::Result<()> {
/// # let universe = spmd::init()?; let world = universe.world();
/// let (rank, size) = (world.rank(), world.size());
/// let left = rank.checked_sub(1);                       // None at the left edge
/// let right = (rank + 1 < size).then_some(rank + 1);    // None at the right edge
/// let mut ghost = [0.0f64];
/// world.sendrecv_buf(right, 0, &[rank as f64], left, 0, &mut ghost)?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer(pub Option<usize>);

impl Peer {
    /// No process (`MPI_PROC_NULL`).
    pub const NULL: Peer = Peer(None);
}

impl From<usize> for Peer {
    fn from(rank: usize) -> Self {
        Peer(Some(rank))
    }
}

impl From<Option<usize>> for Peer {
    fn from(rank: Option<usize>) -> Self {
        Peer(rank)
    }
}

/// Which tags a receive or probe accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TagMatch {
    /// Any tag (`MPI_ANY_TAG`).
    Any,
    /// Exactly this tag.
    Tag(Tag),
}

/// Accept any tag; see [`TagMatch::Any`].
pub const ANY_TAG: TagMatch = TagMatch::Any;

impl From<Tag> for TagMatch {
    fn from(tag: Tag) -> Self {
        TagMatch::Tag(tag)
    }
}

/// What a completed receive or a probe tells about a message: its source, tag and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    source: Option<usize>,
    tag: Tag,
    bytes: usize,
}

impl Status {
    #[inline(always)]
    pub(crate) fn from_raw(s: RawStatus) -> Status {
        Status {
            source: usize::try_from(s.source).ok(),
            tag: s.tag,
            bytes: s.bytes,
        }
    }

    /// The status of a receive from no process ([`Source::Null`]).
    pub(crate) fn null() -> Status {
        Status {
            source: None,
            tag: raw::any_tag(),
            bytes: 0,
        }
    }

    /// The rank of the sender.
    ///
    /// # Panics
    /// For a receive from no process ([`Source::Null`]); see [`Status::source_peer`].
    pub fn source(&self) -> usize {
        self.source
            .expect("a receive from no process (Source::Null) has no source rank")
    }

    /// The rank of the sender, or `None` for a receive from no process.
    pub fn source_peer(&self) -> Option<usize> {
        self.source
    }

    /// The tag the message was sent with.
    pub fn tag(&self) -> Tag {
        self.tag
    }

    /// The size of the message in bytes (for objects: of its serialised form plus its out-of-band arrays).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The number of whole elements of `T` in the message (for a buffer message of `T`).
    pub fn count<T: Data>(&self) -> usize {
        let size = raw::datatype::elem_mpi_size(&Elem::of::<T>())
            .unwrap_or(std::mem::size_of::<T>())
            .max(1);
        self.bytes / size
    }
}

/// `MPI_TAG_UB`, read once when MPI starts (-1 before).
static TAG_UB: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

/// Reads `MPI_TAG_UB` (called by init).
pub(crate) fn init_tag_ub() {
    TAG_UB.store(raw::tag_ub(), std::sync::atomic::Ordering::Relaxed);
}

/// The largest valid tag (at least 32767; 2^31-1 under Open MPI).
#[inline]
pub fn tag_ub() -> Tag {
    TAG_UB.load(std::sync::atomic::Ordering::Relaxed)
}

/// Checks that a tag is within `0..=tag_ub`.
#[inline(always)]
pub(crate) fn check_tag(op: &str, tag: Tag) -> Result<()> {
    if (tag as u32) <= tag_ub() as u32 {
        return Ok(());
    }
    bad_tag(op, tag)
}

#[cold]
#[inline(never)]
fn bad_tag(op: &str, tag: Tag) -> Result<()> {
    fail(
        ErrorKind::InvalidTag,
        format!("{op}: tag {tag} is outside 0..={}", tag_ub()),
    )
}

impl<'u> Comm<'u> {
    /// Checks a destination and tag; `Ok(None)` for no process.
    #[inline]
    pub(crate) fn dest_arg(&self, op: &str, dest: Peer, tag: Tag) -> Result<Option<i32>> {
        check_tag(op, tag)?;
        match dest.0 {
            None => Ok(None),
            Some(d) if d < self.size() => {
                watch::note_side(watch::Side::Peer(d as i32));
                watch::note_tag(tag);
                Ok(Some(d as i32))
            }
            Some(d) => fail(
                ErrorKind::InvalidRank,
                format!(
                    "{op} to rank {d} (tag {tag}): no such rank in a communicator of size {}",
                    self.size()
                ),
            ),
        }
    }

    /// Validates and converts a source and tag filter to MPI's values; `Ok(None)` for no process.
    #[inline]
    pub(crate) fn match_args(&self, op: &str, source: Source, tag: TagMatch) -> Result<Option<(i32, i32)>> {
        let s = match source {
            Source::Null => return Ok(None),
            Source::Any => raw::any_source(),
            Source::Rank(r) if r < self.size() => r as i32,
            Source::Rank(r) => {
                return fail(
                    ErrorKind::InvalidRank,
                    format!(
                        "{op} from rank {r}: no such rank in a communicator of size {}",
                        self.size()
                    ),
                );
            }
        };
        let t = match tag {
            TagMatch::Any => raw::any_tag(),
            TagMatch::Tag(t) => {
                check_tag(op, t)?;
                t
            }
        };
        watch::note_side(if s == raw::any_source() {
            watch::Side::AnySource
        } else {
            watch::Side::Peer(s)
        });
        watch::note_tag(t);
        Ok(Some((s, t)))
    }

    /// Sends a description: the bare MPI call when nothing is pending, else a test loop that keeps pending
    /// receives moving.
    pub(crate) fn send_desc(&self, op: &str, d: &Desc, dest: i32, tag: Tag, mode: Mode) -> Result<()> {
        let ctx = || format!("{op} to rank {dest} (tag {tag})");
        if !crate::request::engine::busy() {
            return self.inner.raw.send(d, dest, tag, mode).map_err(|c| c.error(&ctx()));
        }
        let mut req = self.inner.raw.isend(d, dest, tag, mode).map_err(|c| c.error(&ctx()))?;
        crate::request::wait_raw_code(&mut req, op)
            .map(|_| ())
            .map_err(|c| c.error(&ctx()))
    }

    // ----- buffers --------------------------------------------------------------------------------------------

    /// Sends a buffer to `dest` with `tag` (`MPI_Send`: may return before the receive starts). A [`Peer::NULL`]
    /// (or `None`) destination sends nothing.
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// if world.rank() == 0 {
    ///     world.send_buf(1, 7, &[1.0f64, 2.0, 3.0])?;
    /// } else if world.rank() == 1 {
    ///     let mut v = [0.0f64; 3];
    ///     let status = world.recv_buf_into(0, 7, &mut v)?;
    ///     assert_eq!(status.count::<f64>(), 3);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::InvalidRank`], [`ErrorKind::InvalidTag`], or [`ErrorKind::Mpi`].
    #[inline]
    #[track_caller]
    pub fn send_buf<B: Buffer + ?Sized>(&self, dest: impl Into<Peer>, tag: Tag, buf: &B) -> Result<()> {
        let _wait = self.watch("send_buf");
        let Some(d) = self.dest_arg("send_buf", dest.into(), tag)? else {
            return Ok(());
        };
        let desc = Desc::of_buf(buf)?;
        self.send_desc("send_buf", &desc, d, tag, Mode::Standard)
    }

    /// Synchronous send (`MPI_Ssend`): returns only once the receiver has started receiving.
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// if world.rank() == 0 {
    ///     world.ssend_buf(1, 0, &42u64)?; // rank 1 is receiving when this returns
    /// } else if world.rank() == 1 {
    ///     let mut x = 0u64;
    ///     world.recv_buf_into(0, 0, &mut x)?;
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Comm::send_buf`].
    #[track_caller]
    pub fn ssend_buf<B: Buffer + ?Sized>(&self, dest: impl Into<Peer>, tag: Tag, buf: &B) -> Result<()> {
        let _wait = self.watch("ssend_buf");
        let Some(d) = self.dest_arg("ssend_buf", dest.into(), tag)? else {
            return Ok(());
        };
        let desc = Desc::of_buf(buf)?;
        self.send_desc("ssend_buf", &desc, d, tag, Mode::Synchronous)
    }

    /// Receives a buffer message into `buf` (which may be longer than the message: the [`Status`] tells how much
    /// arrived). From [`Source::Null`] (or `None`) it completes at once and leaves `buf` as it is.
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// if world.rank() == 1 {
    ///     let mut buf = vec![0i32; 100];
    ///     let st = world.recv_buf_into(0, 3, &mut buf)?;
    ///     println!("got {} ints", st.count::<i32>());
    /// } else if world.rank() == 0 {
    ///     world.send_buf(1, 3, &vec![5i32; 10])?;
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Truncated`] if the message is larger than `buf` (the message is consumed);
    /// [`ErrorKind::WrongFamily`] if an object message arrived; [`ErrorKind::InvalidRank`],
    /// [`ErrorKind::InvalidTag`], [`ErrorKind::Mpi`].
    #[track_caller]
    pub fn recv_buf_into<B: BufferMut + ?Sized>(
        &self,
        source: impl Into<Source>,
        tag: impl Into<TagMatch>,
        buf: &mut B,
    ) -> Result<Status> {
        let _wait = self.watch("recv_buf_into");
        let Some((s, t)) = self.match_args("recv_buf_into", source.into(), tag.into())? else {
            return Ok(Status::null());
        };
        let desc = Desc::of_buf_mut(buf)?;
        let (name, size) = (std::any::type_name::<B::Item>(), size_of::<B::Item>());
        recv_into_desc(self, "recv_buf_into", &desc, name, size, s, t)
    }

    /// Receives a buffer message of any length into a new `Vec` (sized by a matched probe first).
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// if world.rank() == 1 {
    ///     let (v, _status) = world.recv_buf::<f32>(0, 0)?;
    ///     assert_eq!(v.len(), 1000);
    /// } else if world.rank() == 0 {
    ///     world.send_buf(1, 0, &vec![0.5f32; 1000])?;
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::SizeMismatch`] if the message is not a whole number of `T`s; [`ErrorKind::WrongFamily`];
    /// [`ErrorKind::InvalidRank`], [`ErrorKind::InvalidTag`], [`ErrorKind::Mpi`].
    #[track_caller]
    pub fn recv_buf<T: Data>(&self, source: impl Into<Source>, tag: impl Into<TagMatch>) -> Result<(Vec<T>, Status)> {
        let _wait = self.watch("recv_buf");
        let Some((s, t)) = self.match_args("recv_buf", source.into(), tag.into())? else {
            return Ok((Vec::new(), Status::null()));
        };
        recv::recv_vec(self, s, t)
    }

    /// Sends `send` to `dest` and receives into `recv` from `source` at the same time (`MPI_Sendrecv` semantics:
    /// no deadlock in exchanges). Either peer may be no process.
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// let (rank, size) = (world.rank(), world.size());
    /// let mut from_left = 0usize;
    /// world.sendrecv_buf((rank + 1) % size, 0, &rank, (rank + size - 1) % size, 0, &mut from_left)?;
    /// assert_eq!(from_left, (rank + size - 1) % size);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Comm::send_buf`] and [`Comm::recv_buf_into`].
    #[track_caller]
    pub fn sendrecv_buf<S: Buffer + ?Sized, R: BufferMut + ?Sized>(
        &self,
        dest: impl Into<Peer>,
        send_tag: Tag,
        send: &S,
        source: impl Into<Source>,
        recv_tag: impl Into<TagMatch>,
        recv: &mut R,
    ) -> Result<Status> {
        let _wait = self.watch("sendrecv_buf");
        let d = self.dest_arg("sendrecv_buf", dest.into(), send_tag)?;
        let st = self.match_args("sendrecv_buf", source.into(), recv_tag.into())?;
        let sd = Desc::of(&send.view())?;
        let req = match d {
            Some(d) => Some(
                self.inner
                    .raw
                    .isend(&sd, d, send_tag, Mode::Standard)
                    .map_err(|c| c.error(&format!("sendrecv_buf to rank {d} (tag {send_tag})")))?,
            ),
            None => None,
        };
        let v = recv.view_mut();
        let rd = Desc::of_mut(&v)?;
        let r = match st {
            Some((s, t)) => recv_into_desc(self, "sendrecv_buf", &rd, v.elem.name, v.elem.size, s, t),
            None => Ok(Status::null()),
        };
        if let Some(req) = req {
            crate::request::wait_raw(req, "sendrecv_buf")?;
        }
        r
    }

    /// Waits for a message and tells its source, tag and size without receiving it (`MPI_Probe`).
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// if world.rank() == 0 {
    ///     let st = world.probe(spmd::ANY_SOURCE, 5)?;
    ///     let mut v = vec![0u8; st.bytes()];
    ///     world.recv_buf_into(st.source(), 5, &mut v)?;
    /// } else if world.rank() == 1 {
    ///     world.send_buf(0, 5, b"hello".as_slice())?;
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::InvalidRank`], [`ErrorKind::InvalidTag`], [`ErrorKind::Mpi`].
    #[track_caller]
    pub fn probe(&self, source: impl Into<Source>, tag: impl Into<TagMatch>) -> Result<Status> {
        let _wait = self.watch("probe");
        let Some((s, t)) = self.match_args("probe", source.into(), tag.into())? else {
            return Ok(Status::null());
        };
        if !crate::request::engine::busy() {
            return self
                .inner
                .raw
                .probe(s, t)
                .map(Status::from_raw)
                .map_err(|c| c.error("probe"));
        }
        let _loop = watch::wait_loop();
        loop {
            if let Some(st) = self.iprobe(Source::from_raw(s), TagMatch::from_raw(t))? {
                return Ok(st);
            }
            crate::runtime::watch::waiting("probe");
        }
    }

    /// Whether a message is waiting, without receiving it (`MPI_Iprobe`).
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// while world.iprobe(spmd::ANY_SOURCE, spmd::ANY_TAG)?.is_none() {
    ///     // compute something else meanwhile
    /// #   break;
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::InvalidRank`], [`ErrorKind::InvalidTag`], [`ErrorKind::Mpi`].
    pub fn iprobe(&self, source: impl Into<Source>, tag: impl Into<TagMatch>) -> Result<Option<Status>> {
        let Some((s, t)) = self.match_args("iprobe", source.into(), tag.into())? else {
            return Ok(Some(Status::null()));
        };
        let raw = &self.inner.raw;
        let found = if crate::request::engine::busy() {
            // As if pending receives were posted: a message they will take first, or a part of an object being
            // received, is not shown.
            crate::request::engine::progress_then(&self.inner, s, t, |pattern| match pattern {
                Some((ps, pt)) => raw.iprobe(ps, pt),
                None => Ok(None),
            })
        } else {
            raw.iprobe(s, t)
        };
        found.map(|o| o.map(Status::from_raw)).map_err(|c| c.error("iprobe"))
    }
}

impl Source {
    pub(crate) fn from_raw(s: i32) -> Source {
        if s == raw::any_source() {
            Source::Any
        } else {
            Source::Rank(s.max(0) as usize)
        }
    }
}

impl TagMatch {
    pub(crate) fn from_raw(t: i32) -> TagMatch {
        if t == raw::any_tag() {
            TagMatch::Any
        } else {
            TagMatch::Tag(t)
        }
    }
}
