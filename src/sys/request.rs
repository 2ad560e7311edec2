//! Request handles of non-blocking operations.

use std::ffi::c_int;

use mpi::ffi;

use super::p2p::new_status;
use super::{RawResult, RawStatus, rc};

/// An MPI request. Dropping one that has not completed waits for it: whatever memory the operation uses is
/// released only after MPI is done with it (owners declare the request before the memory, so it drops first).
/// Only receives made with [`RawRequest::receive`] read their completion's status: MPI leaves the status of sends
/// and collectives undefined (Open MPI copies uninitialised memory into it).
pub(crate) struct RawRequest(ffi::MPI_Request, bool);

// SAFETY: a request handle is a process-wide identifier; it is tested or waited for by whichever thread holds it,
// at thread levels that allow that thread to call MPI.
unsafe impl Send for RawRequest {}

impl RawRequest {
    pub(crate) fn new(handle: ffi::MPI_Request) -> RawRequest {
        RawRequest(handle, false)
    }

    /// A request that has completed (`MPI_REQUEST_NULL`).
    pub(crate) fn null() -> RawRequest {
        RawRequest(null_handle(), false)
    }

    /// A receive's request, whose completion status tells source, tag and size.
    pub(crate) fn receive(handle: ffi::MPI_Request) -> RawRequest {
        RawRequest(handle, true)
    }

    /// Whether this is a receive's request, whose completion status is read.
    pub(crate) fn is_receive(&self) -> bool {
        self.1
    }

    /// The status out-parameter for a completion: `MPI_STATUS_IGNORE` unless this is a receive.
    fn status_arg(&self, st: &mut ffi::MPI_Status) -> *mut ffi::MPI_Status {
        if self.1 {
            st
        } else {
            // SAFETY: reads a constant exported by rsmpi's shim.
            unsafe { ffi::RSMPI_STATUS_IGNORE }
        }
    }

    /// The completion's status, or a placeholder when it was ignored.
    fn status_of(&self, st: &ffi::MPI_Status) -> RawStatus {
        if self.1 {
            RawStatus::from(st)
        } else {
            RawStatus::empty()
        }
    }

    /// Cancels a receive (`MPI_Cancel`) and waits for it: `None` if it was cancelled, or the status of the message
    /// that had already matched it and has now been received.
    pub(crate) fn cancel_receive(&mut self) -> RawResult<Option<RawStatus>> {
        if self.is_null() {
            return Ok(Some(RawStatus::empty()));
        }
        let mut st = new_status();
        let mut flag: c_int = 0;
        // SAFETY: a valid, active request handle and out pointers; the status is a real one, which
        // MPI_Test_cancelled reads.
        unsafe {
            rc(ffi::MPI_Cancel(&mut self.0))?;
            rc(ffi::MPI_Wait(&mut self.0, &mut st))?;
            rc(ffi::MPI_Test_cancelled(&st, &mut flag))?;
        }
        self.set_null();
        Ok((flag == 0).then(|| self.status_of(&st)))
    }

    /// Marks the request as completed. MPI resets the handle of a completed non-blocking request itself, except
    /// that Open MPI hands out one shared, already complete request for sends done at once and leaves that handle
    /// as it is; without the reset, dropping such a request would call MPI again for nothing.
    fn set_null(&mut self) {
        self.0 = null_handle();
    }

    /// Whether the request has completed (its handle was reset to `MPI_REQUEST_NULL`).
    pub(crate) fn is_null(&self) -> bool {
        self.0 == null_handle()
    }

    /// `MPI_Test`: the status once complete.
    #[inline]
    pub(crate) fn test(&mut self) -> RawResult<Option<RawStatus>> {
        if self.is_null() {
            return Ok(Some(RawStatus::empty()));
        }
        let mut flag: c_int = 0;
        let mut st = new_status();
        let out = self.status_arg(&mut st);
        // SAFETY: a valid, active request handle and out pointers (or MPI_STATUS_IGNORE).
        rc(unsafe { ffi::MPI_Test(&mut self.0, &mut flag, out) })?;
        if flag == 0 {
            return Ok(None);
        }
        self.set_null();
        Ok(Some(self.status_of(&st)))
    }

    /// `MPI_Wait`.
    pub(crate) fn wait(&mut self) -> RawResult<RawStatus> {
        let mut st = new_status();
        let out = self.status_arg(&mut st);
        // SAFETY: a valid request handle (or MPI_REQUEST_NULL, which returns at once) and out pointer (or
        // MPI_STATUS_IGNORE).
        rc(unsafe { ffi::MPI_Wait(&mut self.0, out) })?;
        self.set_null();
        Ok(self.status_of(&st))
    }
}

impl Drop for RawRequest {
    fn drop(&mut self) {
        if !self.is_null() && super::is_running() {
            let _ = self.wait();
        }
    }
}

/// `MPI_REQUEST_NULL`.
fn null_handle() -> ffi::MPI_Request {
    // SAFETY: reading a constant exported by rsmpi's shim.
    unsafe { ffi::RSMPI_REQUEST_NULL }
}
