//! Communicator handles.

use std::ffi::c_int;
use std::mem::MaybeUninit;

use mpi::ffi;

use super::{check, is_running};
use crate::error::Result;

/// A communicator handle. Freed on drop when spmd created it (`dup`, `split`); `MPI_COMM_WORLD` and handles
/// adopted from other code are never freed by spmd.
pub(crate) struct RawComm {
    pub(crate) handle: ffi::MPI_Comm,
    owned: bool,
}

// SAFETY: a communicator handle is a process-wide identifier; which threads may call MPI on it is governed by
// the thread level, which the public types enforce (`Comm` is `!Send`; `SharedComm` exists only at
// `MPI_THREAD_MULTIPLE`).
unsafe impl Send for RawComm {}
// SAFETY: as above.
unsafe impl Sync for RawComm {}

impl RawComm {
    /// The handle as a number that identifies the communicator while it exists (a pointer for Open MPI, an
    /// integer for MPICH).
    pub(crate) fn key(&self) -> usize {
        self.handle.0 as usize
    }

    /// `MPI_COMM_WORLD` itself.
    pub(crate) fn world() -> RawComm {
        RawComm {
            // SAFETY: reading a constant exported by rsmpi's shim.
            handle: unsafe { ffi::RSMPI_COMM_WORLD },
            owned: false,
        }
    }

    /// A handle owned by someone else (never freed by spmd).
    pub(crate) fn borrowed(handle: ffi::MPI_Comm) -> RawComm {
        RawComm { handle, owned: false }
    }

    /// Whether the handle is `MPI_COMM_NULL`.
    pub(crate) fn is_null_handle(handle: ffi::MPI_Comm) -> bool {
        // SAFETY: reading a constant exported by rsmpi's shim.
        handle == unsafe { ffi::RSMPI_COMM_NULL }
    }

    pub(crate) fn rank(&self) -> Result<usize> {
        let mut r: c_int = 0;
        // SAFETY: valid handle and out pointer.
        check(unsafe { ffi::MPI_Comm_rank(self.handle, &mut r) }, "MPI_Comm_rank")?;
        Ok(r.max(0) as usize)
    }

    pub(crate) fn size(&self) -> Result<usize> {
        let mut s: c_int = 0;
        // SAFETY: valid handle and out pointer.
        check(unsafe { ffi::MPI_Comm_size(self.handle, &mut s) }, "MPI_Comm_size")?;
        Ok(s.max(0) as usize)
    }

    /// `MPI_Comm_dup` (collective); the new handle returns errors instead of aborting.
    pub(crate) fn dup(&self) -> Result<RawComm> {
        let mut new = MaybeUninit::<ffi::MPI_Comm>::uninit();
        // SAFETY: valid handle and out pointer.
        let rc = unsafe { ffi::MPI_Comm_dup(self.handle, new.as_mut_ptr()) };
        check(rc, "MPI_Comm_dup")?;
        // SAFETY: initialised by the successful call.
        Self::adopt(unsafe { new.assume_init() }).map(|c| c.expect("MPI_Comm_dup never gives MPI_COMM_NULL"))
    }

    /// `MPI_Comm_split` (collective); `None` colour is `MPI_UNDEFINED` and yields no communicator.
    pub(crate) fn split(&self, color: Option<i32>, key: i32) -> Result<Option<RawComm>> {
        // SAFETY: reading a constant exported by rsmpi's shim.
        let undefined = unsafe { ffi::RSMPI_UNDEFINED };
        let mut new = MaybeUninit::<ffi::MPI_Comm>::uninit();
        // SAFETY: valid handle and out pointer.
        let rc = unsafe { ffi::MPI_Comm_split(self.handle, color.unwrap_or(undefined), key, new.as_mut_ptr()) };
        check(rc, "MPI_Comm_split")?;
        // SAFETY: initialised by the successful call.
        Self::adopt(unsafe { new.assume_init() })
    }

    /// `MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)` (collective).
    pub(crate) fn split_shared(&self, key: i32) -> Result<Option<RawComm>> {
        let mut new = MaybeUninit::<ffi::MPI_Comm>::uninit();
        // SAFETY: valid handle, split type constant, info null handle and out pointer.
        let rc = unsafe {
            ffi::MPI_Comm_split_type(
                self.handle,
                ffi::RSMPI_COMM_TYPE_SHARED,
                key,
                ffi::RSMPI_INFO_NULL,
                new.as_mut_ptr(),
            )
        };
        check(rc, "MPI_Comm_split_type")?;
        // SAFETY: initialised by the successful call.
        Self::adopt(unsafe { new.assume_init() })
    }

    pub(super) fn adopt(handle: ffi::MPI_Comm) -> Result<Option<RawComm>> {
        if Self::is_null_handle(handle) {
            return Ok(None);
        }
        let c = RawComm { handle, owned: true };
        c.set_errors_return()?;
        Ok(Some(c))
    }

    /// Makes MPI return error codes on this communicator instead of aborting, so spmd can report them.
    pub(crate) fn set_errors_return(&self) -> Result<()> {
        // SAFETY: valid handle and predefined error handler.
        check(
            unsafe { ffi::MPI_Comm_set_errhandler(self.handle, ffi::RSMPI_ERRORS_RETURN) },
            "MPI_Comm_set_errhandler",
        )
    }

    /// Hands an owned handle to rsmpi, which frees it when its value drops.
    ///
    /// # Panics
    /// If the handle is not owned by spmd (the world communicator, a borrowed handle).
    pub(crate) fn into_rsmpi(self) -> mpi::topology::SimpleCommunicator {
        use mpi::raw::FromRaw;
        assert!(self.owned, "only a communicator spmd created can be handed over");
        let handle = self.handle;
        std::mem::forget(self);
        // SAFETY: an owned intra-communicator (a duplicate made by spmd, never MPI_COMM_WORLD or
        // MPI_COMM_SELF), owned from here on by the rsmpi value only: the spmd wrapper was forgotten, so it is
        // freed once, by rsmpi.
        unsafe { mpi::topology::SimpleCommunicator::from_raw(handle) }
    }

    /// `MPI_Abort` on this communicator (Open MPI and MPICH end the whole job).
    pub(crate) fn abort(&self, code: i32) -> ! {
        // SAFETY: valid handle.
        unsafe { ffi::MPI_Abort(self.handle, code) };
        std::process::exit(code)
    }
}

impl Drop for RawComm {
    fn drop(&mut self) {
        if self.owned && is_running() {
            // SAFETY: an owned handle was created by spmd and is freed once, here, while MPI runs. Pending
            // operations on it complete normally (MPI marks it for deallocation).
            unsafe { ffi::MPI_Comm_free(&mut self.handle) };
        }
    }
}
