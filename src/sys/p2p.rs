//! Point-to-point calls: sends, matched probes and the receives of matched messages.

use std::ffi::c_int;
use std::mem::MaybeUninit;

use mpi::ffi;

use super::{Desc, RawComm, RawRequest, RawResult, byte_type, rc};

/// Source, tag and size in bytes of a probed or received message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawStatus {
    pub(crate) source: i32,
    pub(crate) tag: i32,
    pub(crate) bytes: usize,
}

/// A zeroed `MPI_Status` (its layout is the MPI library's; only the public fields are read).
pub(crate) fn new_status() -> ffi::MPI_Status {
    // SAFETY: `MPI_Status` is a plain C struct of integers, for which all-zero bytes are valid.
    unsafe { MaybeUninit::<ffi::MPI_Status>::zeroed().assume_init() }
}

impl RawStatus {
    /// The status of an operation with no message (a send's or a collective's, a cancelled receive's).
    pub(crate) fn empty() -> RawStatus {
        RawStatus {
            source: super::proc_null(),
            tag: super::any_tag(),
            bytes: 0,
        }
    }

    /// Reads source, tag and byte count: `MPI_Get_count` with `MPI_BYTE` (the cheap call), and
    /// `MPI_Get_elements_x` for messages whose byte count does not fit an `int`.
    #[inline]
    pub(crate) fn from(s: &ffi::MPI_Status) -> RawStatus {
        let mut small: c_int = 0;
        // SAFETY: `s` is a status filled by MPI; MPI_BYTE is predefined; valid out pointer.
        unsafe { ffi::MPI_Get_count(s, byte_type(), &mut small) };
        // SAFETY: reads a constant of the MPI library.
        let undefined = unsafe { ffi::RSMPI_UNDEFINED };
        let bytes = match usize::try_from(small) {
            Ok(n) if small != undefined => n,
            _ => {
                let mut n: ffi::MPI_Count = 0;
                // SAFETY: as above.
                unsafe { ffi::MPI_Get_elements_x(s, byte_type(), &mut n) };
                usize::try_from(n).unwrap_or(0)
            }
        };
        RawStatus {
            source: s.MPI_SOURCE,
            tag: s.MPI_TAG,
            bytes,
        }
    }
}

/// Send modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `MPI_Send`: may return before the receive starts (eager) or wait for it.
    Standard,
    /// `MPI_Ssend`: returns only once the receive has started.
    Synchronous,
}

impl RawComm {
    /// Blocking send of a description (its memory is borrowed by the caller for the call).
    #[inline]
    pub(crate) fn send(&self, d: &Desc, dest: i32, tag: i32, mode: Mode) -> RawResult<()> {
        // SAFETY: `d` describes live memory of the caller's borrow for the duration of this blocking call.
        rc(unsafe {
            match mode {
                Mode::Standard => ffi::MPI_Send(d.ptr, d.count, d.dt.handle, dest, tag, self.handle),
                Mode::Synchronous => ffi::MPI_Ssend(d.ptr, d.count, d.dt.handle, dest, tag, self.handle),
            }
        })
    }

    /// Non-blocking send. The caller keeps `d`'s memory valid and unmodified until the request completes.
    #[inline]
    pub(crate) fn isend(&self, d: &Desc, dest: i32, tag: i32, mode: Mode) -> RawResult<RawRequest> {
        let mut r = MaybeUninit::<ffi::MPI_Request>::uninit();
        // SAFETY: the caller keeps the memory alive until completion (scope or owned bytes).
        rc(unsafe {
            match mode {
                Mode::Standard => ffi::MPI_Isend(d.ptr, d.count, d.dt.handle, dest, tag, self.handle, r.as_mut_ptr()),
                Mode::Synchronous => {
                    ffi::MPI_Issend(d.ptr, d.count, d.dt.handle, dest, tag, self.handle, r.as_mut_ptr())
                }
            }
        })?;
        // SAFETY: initialised by the successful call.
        Ok(RawRequest::new(unsafe { r.assume_init() }))
    }

    /// Plain `MPI_Recv` into `d`. Only for receives where truncation cannot write past `d` (an MPI that truncates
    /// safely, or the caller's explicit `unsafe` promise that the message fits).
    pub(crate) fn recv_plain(&self, d: &Desc, source: i32, tag: i32) -> RawResult<RawStatus> {
        let mut st = new_status();
        // SAFETY: `d` describes memory exclusively borrowed by the caller for this blocking call; see above for
        // the truncation condition, which the caller establishes.
        rc(unsafe { ffi::MPI_Recv(d.ptr, d.count, d.dt.handle, source, tag, self.handle, &mut st) })?;
        Ok(RawStatus::from(&st))
    }

    /// Plain `MPI_Irecv` into `d`, under the same condition as [`RawComm::recv_plain`]; the caller keeps `d`'s
    /// memory valid until the request completes.
    pub(crate) fn irecv_plain(&self, d: &Desc, source: i32, tag: i32) -> RawResult<RawRequest> {
        let mut r = MaybeUninit::<ffi::MPI_Request>::uninit();
        // SAFETY: `d` describes memory the caller's scope borrows until completion; see `recv_plain` for the
        // truncation condition, which the caller establishes.
        rc(unsafe { ffi::MPI_Irecv(d.ptr, d.count, d.dt.handle, source, tag, self.handle, r.as_mut_ptr()) })?;
        // SAFETY: initialised by the successful call.
        Ok(RawRequest::receive(unsafe { r.assume_init() }))
    }

    /// `MPI_Probe`.
    pub(crate) fn probe(&self, source: i32, tag: i32) -> RawResult<RawStatus> {
        let mut st = new_status();
        // SAFETY: valid handle and out pointer.
        rc(unsafe { ffi::MPI_Probe(source, tag, self.handle, &mut st) })?;
        Ok(RawStatus::from(&st))
    }

    /// `MPI_Iprobe`.
    pub(crate) fn iprobe(&self, source: i32, tag: i32) -> RawResult<Option<RawStatus>> {
        let mut st = new_status();
        let mut flag: c_int = 0;
        // SAFETY: valid handle and out pointers.
        rc(unsafe { ffi::MPI_Iprobe(source, tag, self.handle, &mut flag, &mut st) })?;
        Ok((flag != 0).then(|| RawStatus::from(&st)))
    }

    /// `MPI_Mprobe`: blocks until a message matches and removes it from matching.
    pub(crate) fn mprobe(&self, source: i32, tag: i32) -> RawResult<(RawMessage, RawStatus)> {
        let mut st = new_status();
        let mut m = MaybeUninit::<ffi::MPI_Message>::uninit();
        // SAFETY: valid handle and out pointers.
        rc(unsafe { ffi::MPI_Mprobe(source, tag, self.handle, m.as_mut_ptr(), &mut st) })?;
        let status = RawStatus::from(&st);
        // SAFETY: initialised by the successful call.
        Ok((RawMessage::new(unsafe { m.assume_init() }, status), status))
    }

    /// `MPI_Mprobe`, then — when the message fits `d` — `MPI_Mrecv` into `d` at once (`Ok(Ok(status))`);
    /// a message larger than `d` is returned unreceived (`Ok(Err(..))`) for the caller to report.
    #[inline]
    pub(crate) fn mprobe_recv(&self, d: &Desc, source: i32, tag: i32) -> RawResult<Result<RawStatus, RawMessage>> {
        let mut st = new_status();
        let mut m = MaybeUninit::<ffi::MPI_Message>::uninit();
        // SAFETY: valid handle and out pointers.
        rc(unsafe { ffi::MPI_Mprobe(source, tag, self.handle, m.as_mut_ptr(), &mut st) })?;
        let status = RawStatus::from(&st);
        // SAFETY: initialised by the successful call.
        let mut handle = unsafe { m.assume_init() };
        if status.bytes > d.bytes {
            return Ok(Err(RawMessage::new(handle, status)));
        }
        // SAFETY: `d` describes memory exclusively borrowed by the caller for this blocking call and holds at least
        // the message's bytes (checked just above), so MPI writes only inside it.
        rc(unsafe { ffi::MPI_Mrecv(d.ptr, d.count, d.dt.handle, &mut handle, ffi::RSMPI_STATUS_IGNORE) })?;
        Ok(Ok(status))
    }

    /// `MPI_Improbe`.
    pub(crate) fn improbe(&self, source: i32, tag: i32) -> RawResult<Option<(RawMessage, RawStatus)>> {
        let mut st = new_status();
        let mut flag: c_int = 0;
        let mut m = MaybeUninit::<ffi::MPI_Message>::uninit();
        // SAFETY: valid handle and out pointers.
        rc(unsafe { ffi::MPI_Improbe(source, tag, self.handle, &mut flag, m.as_mut_ptr(), &mut st) })?;
        if flag == 0 {
            return Ok(None);
        }
        let status = RawStatus::from(&st);
        // SAFETY: initialised by the successful call (flag set).
        Ok(Some((RawMessage::new(unsafe { m.assume_init() }, status), status)))
    }
}

/// A message taken out of matching by a matched probe. It must be received; if dropped unreceived, it is received
/// into a scratch buffer and discarded, so its sender never waits for it.
pub(crate) struct RawMessage {
    handle: ffi::MPI_Message,
    status: RawStatus,
    received: bool,
}

// SAFETY: a message handle is a process-wide identifier; it is received by whichever thread holds it, at thread
// levels that allow that thread to call MPI.
unsafe impl Send for RawMessage {}

impl RawMessage {
    fn new(handle: ffi::MPI_Message, status: RawStatus) -> RawMessage {
        RawMessage {
            handle,
            status,
            received: false,
        }
    }

    /// The probed size in bytes.
    pub(crate) fn bytes(&self) -> usize {
        self.status.bytes
    }

    /// The probed source, tag and size.
    pub(crate) fn status(&self) -> RawStatus {
        self.status
    }

    /// Receives the message into `d`.
    ///
    /// # Panics
    /// If `d` holds fewer bytes than the message: the size check that makes the receive safe is here, next to the
    /// call (callers report a too-small buffer as an error before reaching this).
    pub(crate) fn recv(mut self, d: &Desc) -> RawResult<RawStatus> {
        assert!(
            d.bytes >= self.status.bytes,
            "a message of {} bytes cannot be received into {} bytes",
            self.status.bytes,
            d.bytes
        );
        self.received = true;
        // SAFETY: `d` describes memory exclusively borrowed (or owned) by the caller for this blocking call, and
        // holds at least the message's bytes (asserted above), so MPI writes only inside it. The status is the
        // probe's: the whole message arrives, from the probed source with the probed tag.
        rc(unsafe { ffi::MPI_Mrecv(d.ptr, d.count, d.dt.handle, &mut self.handle, ffi::RSMPI_STATUS_IGNORE) })?;
        Ok(self.status)
    }

    /// Starts receiving the message into `d`; the caller keeps `d`'s memory valid until the request completes.
    ///
    /// # Panics
    /// If `d` holds fewer bytes than the message.
    pub(crate) fn irecv(mut self, d: &Desc) -> RawResult<RawRequest> {
        assert!(
            d.bytes >= self.status.bytes,
            "a message of {} bytes cannot be received into {} bytes",
            self.status.bytes,
            d.bytes
        );
        let mut r = MaybeUninit::<ffi::MPI_Request>::uninit();
        self.received = true;
        // SAFETY: as in `recv`; the caller (a scope or an owning request) keeps the memory alive until completion.
        rc(unsafe { ffi::MPI_Imrecv(d.ptr, d.count, d.dt.handle, &mut self.handle, r.as_mut_ptr()) })?;
        // SAFETY: initialised by the successful call.
        Ok(RawRequest::new(unsafe { r.assume_init() }))
    }

    /// Receives the message into a new byte vector of its exact size.
    pub(crate) fn recv_bytes(self) -> crate::Result<(Vec<u8>, RawStatus)> {
        let mut bytes = super::memory::byte_vec(self.status.bytes);
        let d = Desc::bytes_mut(&mut bytes)?;
        let st = self.recv(&d).map_err(|c| c.error("MPI_Mrecv"))?;
        Ok((bytes, st))
    }
}

impl Drop for RawMessage {
    fn drop(&mut self) {
        if !self.received && super::is_running() {
            let mut scratch = vec![0u8; self.status.bytes];
            if let Ok(d) = Desc::bytes_mut(&mut scratch) {
                let mut st = new_status();
                // SAFETY: the scratch buffer holds exactly the message's bytes.
                unsafe { ffi::MPI_Mrecv(d.ptr, d.count, d.dt.handle, &mut self.handle, &mut st) };
            }
        }
    }
}
