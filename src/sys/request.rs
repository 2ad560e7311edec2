//! Request handles of non-blocking operations.

use std::ffi::c_int;

use mpi::ffi;

use super::p2p::new_status;
use super::{RawResult, RawStatus, rc};

/// An MPI request. Dropping one that has not completed waits for it: whatever memory the operation uses is
/// released only after MPI is done with it (owners declare the request before the memory, so it drops first).
pub(crate) struct RawRequest(ffi::MPI_Request);

// SAFETY: a request handle is a process-wide identifier; it is tested or waited for by whichever thread holds it,
// at thread levels that allow that thread to call MPI.
unsafe impl Send for RawRequest {}

impl RawRequest {
    pub(crate) fn new(handle: ffi::MPI_Request) -> RawRequest {
        RawRequest(handle)
    }

    /// Whether the request has completed (its handle was reset to `MPI_REQUEST_NULL`).
    pub(crate) fn is_null(&self) -> bool {
        // SAFETY: reading a constant exported by rsmpi's shim.
        self.0 == unsafe { ffi::RSMPI_REQUEST_NULL }
    }

    /// `MPI_Test`: the status once complete.
    #[inline]
    pub(crate) fn test(&mut self) -> RawResult<Option<RawStatus>> {
        if self.is_null() {
            return Ok(Some(RawStatus {
                source: super::proc_null(),
                tag: super::any_tag(),
                bytes: 0,
            }));
        }
        let mut flag: c_int = 0;
        let mut st = new_status();
        // SAFETY: a valid, active request handle and out pointers.
        rc(unsafe { ffi::MPI_Test(&mut self.0, &mut flag, &mut st) })?;
        Ok((flag != 0).then(|| RawStatus::from(&st)))
    }

    /// `MPI_Wait`.
    pub(crate) fn wait(&mut self) -> RawResult<RawStatus> {
        let mut st = new_status();
        // SAFETY: a valid request handle (or MPI_REQUEST_NULL, which returns at once) and out pointer.
        rc(unsafe { ffi::MPI_Wait(&mut self.0, &mut st) })?;
        Ok(RawStatus::from(&st))
    }
}

impl Drop for RawRequest {
    fn drop(&mut self) {
        if !self.is_null() && super::is_running() {
            let _ = self.wait();
        }
    }
}
