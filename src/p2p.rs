//! Point-to-point messaging for both families, blocking: send, synchronous send, receive, send-receive, probe;
//! and [`Status`], [`Source`], [`TagMatch`].
//!
//! Two families, named so the call site shows which one travels:
//! - **buffers** (`*_buf`): slices, `Vec`, arrays, ndarrays of [`Data`] move as raw memory, no serialisation;
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
//! Messages of any size work (counts above `i32::MAX` are described with derived datatypes), zero-length ones
//! too. Non-blocking operations are in [`crate::request`].
//!
//! # Wire protocol
//! Open MPI 4.1 writes past the end of a receive buffer when it truncates a message sent with its rendezvous
//! protocol (above ~4 KiB over shared memory, ~64 KiB over TCP), instead of only reporting `MPI_ERR_TRUNCATE`.
//! spmd therefore never lets a large message meet a receive of unknown size: a message of 1 to
//! [`DIRECT_MAX`] bytes to another rank travels as itself (the fast path: one MPI message, received straight into
//! the user's buffer); any other message (and any message to the own rank, since Open MPI's self transport
//! truncates silently) travels as a zero-length header on the communicator followed by the data on a
//! private duplicate, which the receiver takes only after a matched probe has told it the size. A receive buffer
//! that is too small is an [`ErrorKind::Truncated`] error naming both sizes; the message is consumed.
//!
//! Messages are matched in order, as MPI promises, within each family. Do not receive messages of one family with
//! operations of the other on the same source and tag while receives are pending: the order between families is
//! not kept.
//!
//! Not covered yet: buffered and ready send modes (`MPI_Bsend`, `MPI_Rsend`), persistent requests,
//! `MPI_PROC_NULL` as a peer.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::buffer::{Buffer, BufferMut, Data, Elem, View, ViewMut, ViewSource, fast_type};
use crate::codec::{self, OobSource};
use crate::comm::{Comm, CommInner};
use crate::error::{Error, ErrorKind, Result, fail};
use std::rc::Rc;

use crate::raw::{self, Desc, Mode, RawComm, RawMessage, RawStatus};
use crate::request::Entry;

/// The largest message, in bytes, that travels as itself; larger (and empty) ones travel as a header plus data
/// on a private communicator. Below every eager limit of Open MPI's transports (4096 bytes with headers over
/// shared memory), where truncation is handled safely.
pub const DIRECT_MAX: usize = 4000;

/// A message tag: `0..=tag_ub` (at least 32767; 2^31-1 under Open MPI).
pub type Tag = i32;

/// Where a receive or probe takes its message from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// Any process of the communicator (`MPI_ANY_SOURCE`).
    Any,
    /// The process with this rank.
    Rank(usize),
}

/// Receive from any source; see [`Source::Any`].
pub const ANY_SOURCE: Source = Source::Any;

impl From<usize> for Source {
    fn from(rank: usize) -> Self {
        Source::Rank(rank)
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
    source: usize,
    tag: Tag,
    bytes: usize,
}

impl Status {
    #[inline(always)]
    pub(crate) fn from_raw(s: RawStatus) -> Status {
        Status {
            source: s.source.max(0) as usize,
            tag: s.tag,
            bytes: s.bytes,
        }
    }

    pub(crate) fn new(source: usize, tag: Tag, bytes: usize) -> Status {
        Status { source, tag, bytes }
    }

    /// The rank of the sender.
    pub fn source(&self) -> usize {
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
        let size = raw::elem_mpi_size(&Elem::of::<T>())
            .unwrap_or(std::mem::size_of::<T>())
            .max(1);
        self.bytes / size
    }
}

/// Describes a peer for messages: "rank 3" or "any source".
pub(crate) fn source_name(s: Source) -> String {
    match s {
        Source::Any => "any source".into(),
        Source::Rank(r) => format!("rank {r}"),
    }
}

/// Describes a tag filter: "tag 5" or "any tag".
pub(crate) fn tag_name(t: TagMatch) -> String {
    match t {
        TagMatch::Any => "any tag".into(),
        TagMatch::Tag(t) => format!("tag {t}"),
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

/// Bytes on the wire for a view: elements times the MPI size of one element.
#[inline]
pub(crate) fn wire_bytes(len: usize, elem: &Elem) -> Result<usize> {
    Ok(len * raw::elem_mpi_size(elem).map_err(|c| c.error("describing the element type"))?)
}

/// Sends one message under the wire protocol: direct if 1..=DIRECT_MAX bytes, else header + data on `aux`.
pub(crate) fn send_view(inner: &CommInner, op: &str, v: &View, dest: usize, tag: Tag, mode: Mode) -> Result<()> {
    let bytes = wire_bytes(v.len, &v.elem)?;
    let d = Desc::of(v)?;
    let ctx = || format!("{op} to rank {dest} (tag {tag})");
    if direct(inner, bytes, dest) {
        inner.raw.send(&d, dest as i32, tag, mode).map_err(|c| c.error(&ctx()))
    } else {
        inner
            .raw
            .send(&Desc::empty(), dest as i32, tag, Mode::Standard)
            .map_err(|c| c.error(&ctx()))?;
        inner.aux.send(&d, dest as i32, tag, mode).map_err(|c| c.error(&ctx()))
    }
}

/// Whether a message of `bytes` to `dest` travels as itself. Messages to the own rank always use the header
/// protocol: Open MPI's self transport truncates an oversized message without reporting it.
#[inline]
pub(crate) fn direct(inner: &CommInner, bytes: usize, dest: usize) -> bool {
    bytes > 0 && bytes <= DIRECT_MAX && dest != inner.rank
}

/// Receives the data part of a message whose header came from `source` with `tag`, into a buffer view.
pub(crate) fn recv_aux_view(aux: &RawComm, op: &str, v: &ViewMut, source: i32, tag: i32) -> Result<RawStatus> {
    let (msg, st) = aux.mprobe(source, tag).map_err(|c| c.error(op))?;
    let cap = wire_bytes(v.len, &v.elem)?;
    if st.bytes > cap {
        drop(msg); // takes the message into a scratch buffer of its size
        return Err(truncated(op, source, tag, st.bytes, v));
    }
    let d = Desc::of_mut(v)?;
    msg.recv(&d)
        .map_err(|(c, _)| c.error(&format!("{op} from rank {source} (tag {tag})")))
}

/// The error for a message of `bytes` that does not fit `v`.
pub(crate) fn truncated(op: &str, source: i32, tag: i32, bytes: usize, v: &ViewMut) -> Error {
    let size = raw::elem_mpi_size(&v.elem).unwrap_or(v.elem.size).max(1);
    Error::new(
        ErrorKind::Truncated,
        format!(
            "{op} from rank {source} (tag {tag}): message of {bytes} bytes ({} elements of {}) does not fit a buffer \
             of {} elements; the message was discarded",
            bytes / size,
            v.elem.name,
            v.len
        ),
    )
}

/// Receives the bytes of an object message (header protocol included) after `msg` was matched on the main
/// communicator. Returns the bytes (from the thread's pool) and the status of the data.
pub(crate) fn recv_obj_bytes(
    inner: &CommInner,
    op: &str,
    msg: RawMessage,
    st: RawStatus,
) -> Result<(Vec<u8>, RawStatus)> {
    let ctx = |s: &RawStatus| format!("{op} from rank {} (tag {})", s.source, s.tag);
    if st.bytes > 0 {
        let mut buf = codec::recv_buffer(st.bytes);
        let d = Desc::bytes_mut(&mut buf)?;
        let st = msg.recv(&d).map_err(|(c, s)| c.error(&ctx(&s)))?;
        return Ok((buf, st));
    }
    msg.recv(&Desc::empty()).map_err(|(c, s)| c.error(&ctx(&s)))?;
    let (amsg, ast) = inner.aux.mprobe(st.source, st.tag).map_err(|c| c.error(&ctx(&st)))?;
    let mut buf = codec::recv_buffer(ast.bytes);
    let d = Desc::bytes_mut(&mut buf)?;
    amsg.recv(&d).map_err(|(c, s)| c.error(&ctx(&s)))?;
    Ok((buf, ast))
}

/// Out-of-band arrays taken straight from the private communicator while an object decodes (blocking receives):
/// zero-copy into the new `Vec<T>`.
struct AuxOob {
    inner: Rc<CommInner>,
    source: i32,
    tag: i32,
    remaining: usize,
    pending: Option<RawMessage>,
    /// Bytes of the arrays received so far (reported in the status).
    bytes: Rc<std::cell::Cell<usize>>,
}

impl OobSource for AuxOob {
    fn next_len(&mut self, elem: &Elem) -> Result<usize> {
        if self.remaining == 0 {
            return codec::NoOob.next_len(elem);
        }
        let (msg, st) = self
            .inner
            .aux
            .mprobe(self.source, self.tag)
            .map_err(|c| c.error("out-of-band array"))?;
        self.remaining -= 1;
        self.bytes.set(self.bytes.get() + st.bytes);
        self.pending = Some(msg);
        let size = raw::elem_mpi_size(elem).map_err(|c| c.error("out-of-band element type"))?;
        if size == 0 || st.bytes % size != 0 {
            return fail(
                ErrorKind::Decode,
                format!(
                    "out-of-band array of {} bytes is not a whole number of {}",
                    st.bytes, elem.name
                ),
            );
        }
        Ok(st.bytes / size)
    }

    fn fill(&mut self, into: ViewMut) -> Result<()> {
        let msg = self
            .pending
            .take()
            .ok_or_else(|| Error::new(ErrorKind::Decode, "no out-of-band array"))?;
        let d = Desc::of_mut(&into)?;
        msg.recv(&d).map_err(|(c, _)| c.error("out-of-band array"))?;
        Ok(())
    }
}

impl Drop for AuxOob {
    fn drop(&mut self) {
        // Arrays the decoder did not take (it failed early) are drained so later messages stay in order.
        drop(self.pending.take());
        for _ in 0..self.remaining {
            if let Ok((msg, _)) = self.inner.aux.mprobe(self.source, self.tag) {
                drop(msg);
            }
        }
    }
}

/// Sends an encoded object: its bytes under the wire protocol, then its out-of-band arrays on `aux`.
pub(crate) fn send_encoded(
    inner: &CommInner,
    op: &str,
    enc: &codec::Encoded,
    dest: usize,
    tag: Tag,
    mode: Mode,
) -> Result<()> {
    send_view(inner, op, &enc.bytes.view(), dest, tag, mode)?;
    for v in &enc.oob {
        let d = Desc::of(v)?;
        inner
            .aux
            .send(&d, dest as i32, tag, Mode::Standard)
            .map_err(|c| c.error(&format!("{op} to rank {dest} (tag {tag})")))?;
    }
    Ok(())
}

/// Decodes received object bytes, taking out-of-band arrays from the private communicator (blocking).
/// Returns the value and the bytes of its out-of-band arrays.
pub(crate) fn decode_blocking<T: DeserializeOwned>(
    inner: &Rc<CommInner>,
    op: &str,
    bytes: &[u8],
    st: RawStatus,
) -> Result<(T, usize)> {
    let oob_bytes = Rc::new(std::cell::Cell::new(0));
    let ctx = || format!("{op} from rank {} (tag {})", st.source, st.tag);
    let n = codec::oob_count(bytes, &ctx)?;
    let source = AuxOob {
        inner: Rc::clone(inner),
        source: st.source,
        tag: st.tag,
        remaining: n,
        pending: None,
        bytes: Rc::clone(&oob_bytes),
    };
    let v = codec::decode(bytes, Box::new(source), &ctx)?;
    Ok((v, oob_bytes.get()))
}

impl<'u> Comm<'u> {
    /// Checks a destination rank and tag; `op` names the operation for the error.
    #[inline]
    pub(crate) fn check_dest(&self, op: &str, dest: usize, tag: Tag) -> Result<()> {
        if dest >= self.size() {
            return fail(
                ErrorKind::InvalidRank,
                format!(
                    "{op} to rank {dest} (tag {tag}): no such rank in a communicator of size {}",
                    self.size()
                ),
            );
        }
        check_tag(op, tag)
    }

    /// Validates and converts a source and tag filter to MPI's values.
    #[inline(always)]
    pub(crate) fn match_args(&self, op: &str, source: Source, tag: TagMatch) -> Result<(i32, i32)> {
        let s = match source {
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
            TagMatch::Tag(t) if (t as u32) <= tag_ub() as u32 => t,
            TagMatch::Tag(t) => return bad_tag(op, t).map(|_| (0, 0)),
        };
        Ok((s, t))
    }

    // ----- buffers --------------------------------------------------------------------------------------------

    /// Sends a buffer to `dest` with `tag` (standard mode: may return before the receive starts).
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
    pub fn send_buf<B: Buffer + ?Sized>(&self, dest: usize, tag: Tag, buf: &B) -> Result<()> {
        // Fast path: a small contiguous buffer of numbers to another rank is one MPI_Send.
        if let (Some((ptr, len)), Some(dt)) = (buf.contig(), fast_type::<B::Item>()) {
            let bytes = len * std::mem::size_of::<B::Item>();
            if dest < self.inner.size
                && dest != self.inner.rank
                && (tag as u32) <= tag_ub() as u32
                && bytes.wrapping_sub(1) < DIRECT_MAX
            {
                return self
                    .inner
                    .raw
                    .send_contig(ptr, len as i32, dt, dest as i32, tag)
                    .map_err(|c| c.error(&format!("send_buf to rank {dest} (tag {tag})")));
            }
        }
        self.check_dest("send_buf", dest, tag)?;
        send_view(&self.inner, "send_buf", &buf.view(), dest, tag, Mode::Standard)
    }

    /// Synchronous send: returns only once the matching receive has started.
    ///
    /// # Errors
    /// As [`Comm::send_buf`].
    pub fn ssend_buf<B: Buffer + ?Sized>(&self, dest: usize, tag: Tag, buf: &B) -> Result<()> {
        self.check_dest("ssend_buf", dest, tag)?;
        send_view(&self.inner, "ssend_buf", &buf.view(), dest, tag, Mode::Synchronous)
    }

    /// Receives a buffer message into `buf`, which must be at least as long as the message.
    ///
    /// `source` is a rank or [`ANY_SOURCE`]; `tag` a tag or [`ANY_TAG`]. The returned [`Status`] tells the actual
    /// source, tag and size ([`Status::count`]); elements of `buf` past the message are left as they were.
    ///
    /// # Errors
    /// [`ErrorKind::Truncated`] if the message is longer than `buf` (it is consumed);
    /// [`ErrorKind::InvalidRank`], [`ErrorKind::InvalidTag`], [`ErrorKind::Mpi`].
    #[inline]
    pub fn recv_buf_into<B: BufferMut + ?Sized>(
        &self,
        source: impl Into<Source>,
        tag: impl Into<TagMatch>,
        buf: &mut B,
    ) -> Result<Status> {
        let op = "recv_buf_into";
        let (source, tag) = (source.into(), tag.into());
        let (s, t) = self.match_args(op, source, tag)?;
        // Fast path: contiguous numbers, nothing pending on this communicator: one MPI_Recv.
        // (The engine's borrow must end before any MPI call: the progress callback borrows it.)
        let idle = self.inner.engine.borrow().is_empty();
        if let (Some(dt), true) = (fast_type::<B::Item>(), idle)
            && let Some((ptr, len)) = buf.contig_mut()
            && len <= i32::MAX as usize
        {
            return match self.inner.raw.recv_contig(ptr, len as i32, dt, s, t) {
                Ok(st) if st.bytes > 0 => Ok(Status::from_raw(st)),
                // A header: the data follows on the private communicator.
                Ok(st) => recv_aux_view(&self.inner.aux, op, &buf.view_mut(), st.source, st.tag).map(Status::from_raw),
                Err((code, st)) if code.is_truncate() => {
                    Err(truncated(op, st.source, st.tag, st.bytes, &buf.view_mut()))
                }
                Err((code, _)) => Err(code.error(&format!("{op} from {} ({})", source_name(source), tag_name(tag)))),
            };
        }
        let v = buf.view_mut();
        if !self.inner.engine.borrow().is_empty() {
            // Receives are pending on this communicator: take a place in the line behind them.
            return self.recv_via_engine(Entry::buffer(op, s, t, v));
        }
        let d = Desc::of_mut(&v)?;
        match self.inner.raw.recv(&d, s, t) {
            Ok(st) if st.bytes > 0 => Ok(Status::from_raw(st)),
            Ok(st) => recv_aux_view(&self.inner.aux, op, &v, st.source, st.tag).map(Status::from_raw),
            Err((code, st)) if code.is_truncate() => Err(truncated(op, st.source, st.tag, st.bytes, &v)),
            Err((code, _)) => Err(code.error(&format!("{op} from {} ({})", source_name(source), tag_name(tag)))),
        }
    }

    /// Receives a buffer message of any length into a new `Vec`.
    ///
    /// # Errors
    /// [`ErrorKind::SizeMismatch`] if the message is not a whole number of `T`; others as
    /// [`Comm::recv_buf_into`].
    pub fn recv_buf<T: Data>(&self, source: impl Into<Source>, tag: impl Into<TagMatch>) -> Result<(Vec<T>, Status)> {
        let op = "recv_buf";
        let (source, tag) = (source.into(), tag.into());
        // Probe for the size, then receive from exactly that source and tag.
        let st = self.probe(source, tag)?;
        let elem = Elem::of::<T>();
        let size = raw::elem_mpi_size(&elem).map_err(|c| c.error(op))?;
        if size == 0 || st.bytes() % size != 0 {
            return fail(
                ErrorKind::SizeMismatch,
                format!(
                    "{op} from rank {} (tag {}): message of {} bytes is not a whole number of {} ({size} bytes each)",
                    st.source(),
                    st.tag(),
                    st.bytes(),
                    elem.name,
                ),
            );
        }
        let mut v: Vec<T> = bytemuck::zeroed_vec(st.bytes() / size);
        let st = self.recv_buf_into(st.source(), st.tag(), &mut v)?;
        Ok((v, st))
    }

    /// Sends `send` to `dest` and receives into `recv` from `source` in one call, so that pairs and rings of
    /// exchanges cannot deadlock.
    ///
    /// # Errors
    /// As [`Comm::send_buf`] and [`Comm::recv_buf_into`].
    pub fn sendrecv_buf<S: Buffer + ?Sized, R: BufferMut + ?Sized>(
        &self,
        dest: usize,
        send_tag: Tag,
        send: &S,
        source: impl Into<Source>,
        recv_tag: impl Into<TagMatch>,
        recv: &mut R,
    ) -> Result<Status> {
        let op = "sendrecv_buf";
        let (source, recv_tag) = (source.into(), recv_tag.into());
        self.check_dest(op, dest, send_tag)?;
        let (s, t) = self.match_args(op, source, recv_tag)?;
        let sv = send.view();
        let bytes = wire_bytes(sv.len, &sv.elem)?;
        let rv = recv.view_mut();
        if direct(&self.inner, bytes, dest) && self.inner.engine.borrow().is_empty() {
            // Fast path: one MPI_Sendrecv.
            let sd = Desc::of(&sv)?;
            let rd = Desc::of_mut(&rv)?;
            return match self.inner.raw.sendrecv(&sd, dest as i32, send_tag, &rd, s, t) {
                Ok(st) if st.bytes > 0 => Ok(Status::from_raw(st)),
                Ok(st) => recv_aux_view(&self.inner.aux, op, &rv, st.source, st.tag).map(Status::from_raw),
                Err((code, st)) if code.is_truncate() => Err(truncated(op, st.source, st.tag, st.bytes, &rv)),
                Err((code, _)) => Err(code.error(op)),
            };
        }
        // General case: start the send, receive, then finish the send.
        let sends = crate::request::start_send(&self.inner, op, &sv, dest, send_tag, Mode::Standard)?;
        let r = self.recv_via_engine(Entry::buffer(op, s, t, rv));
        let w = crate::request::finish_sends(sends, op);
        let st = r?;
        w?;
        Ok(st)
    }

    /// Waits until a message matching `source` and `tag` can be received and tells its source, tag and size
    /// (of the data: the header of a large message is looked through), without receiving it.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidRank`], [`ErrorKind::InvalidTag`], [`ErrorKind::Mpi`].
    pub fn probe(&self, source: impl Into<Source>, tag: impl Into<TagMatch>) -> Result<Status> {
        let (s, t) = self.match_args("probe", source.into(), tag.into())?;
        let st = self.inner.raw.probe(s, t).map_err(|c| c.error("probe"))?;
        self.look_through(st).map(Status::from_raw)
    }

    /// Like [`Comm::probe`] but returns at once: `None` if no matching message has arrived.
    ///
    /// # Errors
    /// As [`Comm::probe`].
    pub fn iprobe(&self, source: impl Into<Source>, tag: impl Into<TagMatch>) -> Result<Option<Status>> {
        let (s, t) = self.match_args("iprobe", source.into(), tag.into())?;
        match self.inner.raw.iprobe(s, t).map_err(|c| c.error("iprobe"))? {
            Some(st) => self.look_through(st).map(|s| Some(Status::from_raw(s))),
            None => Ok(None),
        }
    }

    /// For a probed header, the status of the data it announces.
    fn look_through(&self, st: RawStatus) -> Result<RawStatus> {
        if st.bytes > 0 {
            return Ok(st);
        }
        // Earlier receives still taking data of the same source and tag go first.
        crate::request::drain_key(&self.inner, st.source, st.tag)?;
        let ast = self.inner.aux.probe(st.source, st.tag).map_err(|c| c.error("probe"))?;
        Ok(RawStatus {
            source: st.source,
            tag: st.tag,
            bytes: ast.bytes,
        })
    }

    fn recv_via_engine(&self, entry: Entry) -> Result<Status> {
        let id = crate::request::start_entry(&self.inner, entry)?;
        crate::request::wait_entry(&self.inner, id).map(|(_, st)| st)
    }

    // ----- objects --------------------------------------------------------------------------------------------

    /// Sends any serde value to `dest` with `tag` (standard mode). Fields wrapped in [`crate::Oob`] travel as
    /// their own zero-copy messages.
    ///
    /// # Errors
    /// [`ErrorKind::Encode`] if the value cannot be serialised; [`ErrorKind::InvalidRank`],
    /// [`ErrorKind::InvalidTag`], [`ErrorKind::Mpi`].
    pub fn send_obj<T: Serialize + ?Sized>(&self, dest: usize, tag: Tag, value: &T) -> Result<()> {
        self.send_obj_mode("send_obj", dest, tag, value, Mode::Standard)
    }

    /// Synchronous object send: returns only once the matching receive has started.
    ///
    /// # Errors
    /// As [`Comm::send_obj`].
    pub fn ssend_obj<T: Serialize + ?Sized>(&self, dest: usize, tag: Tag, value: &T) -> Result<()> {
        self.send_obj_mode("ssend_obj", dest, tag, value, Mode::Synchronous)
    }

    fn send_obj_mode<T: Serialize + ?Sized>(
        &self,
        op: &str,
        dest: usize,
        tag: Tag,
        value: &T,
        mode: Mode,
    ) -> Result<()> {
        self.check_dest(op, dest, tag)?;
        let enc = codec::encode(value)?;
        let r = send_encoded(&self.inner, op, &enc, dest, tag, mode);
        codec::recycle_send(enc.bytes);
        r
    }

    /// Receives an object of type `T` from `source` with `tag` (either may be "any"), whatever its size.
    ///
    /// # Errors
    /// [`ErrorKind::Decode`] if the message is not a `T` (the error names source, tag and type);
    /// [`ErrorKind::InvalidRank`], [`ErrorKind::InvalidTag`], [`ErrorKind::Mpi`].
    pub fn recv_obj<T: DeserializeOwned>(
        &self,
        source: impl Into<Source>,
        tag: impl Into<TagMatch>,
    ) -> Result<(T, Status)> {
        let op = "recv_obj";
        let (source, tag) = (source.into(), tag.into());
        let (s, t) = self.match_args(op, source, tag)?;
        if !self.inner.engine.borrow().is_empty() {
            let id = crate::request::start_entry(&self.inner, Entry::object(op, s, t))?;
            return crate::request::wait_object(&self.inner, id);
        }
        let (msg, st) = self.inner.raw.mprobe(s, t).map_err(|c| c.error(op))?;
        let (bytes, dst) = recv_obj_bytes(&self.inner, op, msg, st)?;
        let r = decode_blocking(&self.inner, op, &bytes, dst);
        let len = bytes.len();
        codec::recycle_recv(bytes);
        let (v, oob) = r?;
        Ok((v, Status::new(dst.source as usize, dst.tag, len + oob)))
    }

    /// Sends `value` to `dest` and receives an object from `source` in one call, without deadlock in pairs and
    /// rings.
    ///
    /// # Errors
    /// As [`Comm::send_obj`] and [`Comm::recv_obj`].
    pub fn sendrecv_obj<S: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        dest: usize,
        send_tag: Tag,
        value: &S,
        source: impl Into<Source>,
        recv_tag: impl Into<TagMatch>,
    ) -> Result<(R, Status)> {
        let req = self.isend_obj(dest, send_tag, value)?;
        let r = self.recv_obj(source, recv_tag);
        let w = crate::request::Completion::wait(req);
        let out = r?;
        w?;
        Ok(out)
    }
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
