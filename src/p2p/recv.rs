//! The receive path: every blocking receive learns the size of its message with a matched probe before
//! receiving it, so no message is ever received into memory that cannot hold it.

use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::Status;
use crate::buffer::{Data, Elem, ViewMut, ViewSourceMut};
use crate::codec::{self, OobSource};
use crate::comm::{Comm, CommInner};
use crate::error::{Error, ErrorKind, Result};
use crate::request::engine;
use crate::sys::{Desc, RawMessage, RawStatus, datatype::elem_mpi_size};

/// Takes the next message matching (`s`, `t`) out of matching: `MPI_Mprobe` when no receive is pending, else a
/// loop that lets the pending receives (started earlier) match first.
pub(crate) fn probe_message(inner: &CommInner, op: &str, s: i32, t: i32) -> Result<(RawMessage, RawStatus)> {
    if !engine::busy() {
        return inner.raw.mprobe(s, t).map_err(|c| c.error(op));
    }
    let _loop = crate::runtime::watch::wait_loop();
    let mut spins = 0u32;
    loop {
        let found = engine::progress_then(inner, s, t, |pattern| match pattern {
            Some((ps, pt)) => inner.raw.improbe(ps, pt),
            None => Ok(None),
        });
        if let Some(m) = found.map_err(|c| c.error(op))? {
            return Ok(m);
        }
        crate::runtime::watch::waiting(op);
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(16) {
            std::thread::yield_now();
        }
    }
}

/// Receives one buffer message into `desc`.
pub(crate) fn recv_into_desc(
    comm: &Comm<'_>,
    op: &str,
    desc: &Desc,
    name: &'static str,
    elem_bytes: usize,
    s: i32,
    t: i32,
) -> Result<Status> {
    let inner = &comm.inner;
    if !comm.checked && !engine::busy() {
        // The caller promised (`Comm::unchecked`) that messages fit. (With receives pending, the probe keeps
        // the order in which receives match and keeps them moving.)
        return inner
            .raw
            .recv_plain(desc, s, t)
            .map(Status::from_raw)
            .map_err(|c| c.error(op));
    }
    let got = if engine::busy() {
        let (msg, st) = probe_message(inner, op, s, t)?;
        if st.bytes > desc.bytes {
            return Err(too_long(inner, op, msg, desc.bytes, elem_bytes, name));
        }
        msg.recv(desc)
            .map_err(|c| c.error(&format!("{op} from rank {} (tag {})", st.source, st.tag)))?
    } else {
        // The common case in one call: probe, and receive when the message fits.
        match inner.raw.mprobe_recv(desc, s, t).map_err(|c| c.error(op))? {
            Ok(st) => st,
            Err(msg) => return Err(too_long(inner, op, msg, desc.bytes, elem_bytes, name)),
        }
    };
    if got.bytes >= codec::PREFIX && desc.starts_with(&codec::MAGIC) {
        let mut head = [0u8; codec::PREFIX];
        desc.read_prefix(&mut head);
        drain_parts(inner, got, &head);
        return Err(wrong_family_for_buffer(op, got, got.bytes));
    }
    Ok(Status::from_raw(got))
}

/// Takes a message longer than the buffer out of the way and names the mistake: an object message, or a
/// buffer message that does not fit.
#[cold]
fn too_long(inner: &CommInner, op: &str, msg: RawMessage, cap: usize, elem_bytes: usize, name: &str) -> Error {
    let st = msg.status();
    match msg.recv_bytes() {
        Ok((bytes, _)) if codec::is_object(&bytes) => {
            drain_parts(inner, st, &bytes);
            wrong_family_for_buffer(op, st, bytes.len())
        }
        Ok(_) => truncated(op, st, cap, elem_bytes, name),
        Err(e) => e,
    }
}

/// Receives one buffer message into a new `Vec<T>` of its size.
pub(crate) fn recv_vec<T: Data>(comm: &Comm<'_>, s: i32, t: i32) -> Result<(Vec<T>, Status)> {
    let op = "recv_buf";
    let inner = &comm.inner;
    let elem = Elem::of::<T>();
    let size = elem_mpi_size(&elem)
        .map_err(|c| c.error("describing the element type"))?
        .max(1);
    let (msg, st) = probe_message(inner, op, s, t)?;
    if st.bytes % size != 0 {
        let (bytes, _) = msg.recv_bytes()?;
        if codec::is_object(&bytes) {
            drain_parts(inner, st, &bytes);
            return Err(wrong_family_for_buffer(op, st, bytes.len()));
        }
        return Err(Error::new(
            ErrorKind::SizeMismatch,
            format!(
                "{op} from rank {} (tag {}): a message of {} bytes is not a whole number of {} ({size} bytes each); \
                 the message was discarded",
                st.source, st.tag, st.bytes, elem.name
            ),
        ));
    }
    let mut v: Vec<T> = crate::sys::memory::zeroed_vec(st.bytes / size);
    let got = {
        let view = v.view_mut();
        let desc = Desc::of_mut(&view)?;
        let got = msg.recv(&desc).map_err(|c| c.error(op))?;
        if got.bytes >= codec::PREFIX && desc.starts_with(&codec::MAGIC) {
            let mut head = [0u8; codec::PREFIX];
            desc.read_prefix(&mut head);
            drain_parts(inner, st, &head);
            return Err(wrong_family_for_buffer(op, st, got.bytes));
        }
        got
    };
    Ok((v, Status::from_raw(got)))
}

/// Receives and discards the out-of-band parts announced by an object header, so that their sender completes.
pub(crate) fn drain_parts(inner: &CommInner, st: RawStatus, header: &[u8]) {
    let n = codec::oob_count(header, &String::new).unwrap_or(0);
    if n == 0 {
        return;
    }
    let _hold = engine::hold(inner, st.source, st.tag);
    for _ in 0..n {
        // Dropping the matched message receives it into a scratch buffer of its size.
        if inner.raw.mprobe(st.source, st.tag).is_err() {
            break;
        }
    }
}

/// The error for a message too large for the buffer.
pub(crate) fn truncated(op: &str, st: RawStatus, cap_bytes: usize, elem_bytes: usize, name: &str) -> Error {
    let size = elem_bytes.max(1);
    Error::new(
        ErrorKind::Truncated,
        format!(
            "{op} from rank {} (tag {}): a message of {} bytes ({} elements of {name}) does not fit a buffer of {} \
             elements; the message was discarded",
            st.source,
            st.tag,
            st.bytes,
            st.bytes / size,
            cap_bytes / size
        ),
    )
}

/// The error for an object message that reached a buffer receive.
pub(crate) fn wrong_family_for_buffer(op: &str, st: RawStatus, bytes: usize) -> Error {
    Error::new(
        ErrorKind::WrongFamily,
        format!(
            "{op} from rank {} (tag {}): received an object message ({bytes} bytes, sent with a *_obj call) where a \
             buffer was expected; receive it with recv_obj, or send it with a *_buf call. The message was discarded",
            st.source, st.tag
        ),
    )
}

/// Receives one object message (header, then its out-of-band parts straight into the decoded value's arrays).
pub(crate) fn recv_object<T: DeserializeOwned>(comm: &Comm<'_>, op: &str, s: i32, t: i32) -> Result<(T, Status)> {
    let inner = &comm.inner;
    let (msg, st) = probe_message(inner, op, s, t)?;
    let mut bytes = codec::recv_buffer(st.bytes);
    let got = msg.recv(&Desc::bytes_mut(&mut bytes)?).map_err(|c| c.error(op))?;
    let context = || format!("{op} from rank {} (tag {})", got.source, got.tag);
    let n = match codec::oob_count(&bytes, &context) {
        Ok(n) => n,
        Err(e) => {
            codec::recycle_recv(bytes);
            return Err(e);
        }
    };
    let source: Box<dyn OobSource> = if n == 0 {
        Box::new(codec::NoOob)
    } else {
        Box::new(ProbedParts {
            comm: Arc::clone(inner),
            status: got,
            remaining: n,
            current: None,
            _hold: engine::hold(inner, got.source, got.tag),
            total: 0,
        })
    };
    let r = codec::decode::<T>(&bytes, source, &context);
    codec::recycle_recv(bytes);
    let v = r?;
    Ok((v, Status::from_raw(got)))
}

/// Out-of-band parts received one by one as the decoder asks for them, straight into their arrays. Parts the
/// decoder did not take (a decoding error) are received and discarded on drop.
struct ProbedParts {
    comm: Arc<CommInner>,
    status: RawStatus,
    remaining: usize,
    current: Option<RawMessage>,
    _hold: engine::Hold,
    total: usize,
}

impl OobSource for ProbedParts {
    fn next_len(&mut self, elem: &Elem) -> Result<usize> {
        if self.current.is_none() {
            if self.remaining == 0 {
                return codec::NoOob.next_len(elem);
            }
            let (msg, _) = self
                .comm
                .raw
                .mprobe(self.status.source, self.status.tag)
                .map_err(|c| c.error("receiving an out-of-band array"))?;
            self.remaining -= 1;
            self.current = Some(msg);
        }
        let bytes = self.current.as_ref().map_or(0, RawMessage::bytes);
        let size = elem_mpi_size(elem)
            .map_err(|c| c.error("out-of-band element type"))?
            .max(1);
        if !bytes.is_multiple_of(size) {
            return Err(Error::new(
                ErrorKind::Decode,
                format!(
                    "out-of-band array of {bytes} bytes is not a whole number of {}",
                    elem.name
                ),
            ));
        }
        Ok(bytes / size)
    }

    fn fill(&mut self, into: ViewMut) -> Result<()> {
        let msg = self
            .current
            .take()
            .ok_or_else(|| Error::new(ErrorKind::Decode, "no out-of-band array to fill"))?;
        let d = Desc::of_mut(&into)?;
        if d.bytes != msg.bytes() {
            return Err(Error::new(ErrorKind::Decode, "out-of-band array size changed"));
        }
        let st = msg.recv(&d).map_err(|c| c.error("receiving an out-of-band array"))?;
        self.total += st.bytes;
        Ok(())
    }
}

impl Drop for ProbedParts {
    fn drop(&mut self) {
        drop(self.current.take());
        while self.remaining > 0 {
            self.remaining -= 1;
            if self.comm.raw.mprobe(self.status.source, self.status.tag).is_err() {
                break;
            }
        }
    }
}
