//! MPI-3 shared-memory windows (`MPI_Win_allocate_shared`): one segment per node, allocated by the node's first
//! rank, that every rank of the node maps and addresses directly.
//!
//! Shared memory is written by other processes, which Rust's borrows know nothing of. [`SharedSegment`] keeps
//! the borrows honest with phases: a shared borrow (`read`) exists only outside write phases, and a write phase is
//! collective over the node (every rank enters it with `&mut self`, so none holds a read borrow), hands each rank
//! `&mut` access to a range that is checked to be disjoint from every other rank's, and ends only when every
//! rank's writes are complete and visible (`MPI_Win_sync` + barrier on both sides).

use std::ffi::{c_int, c_void};
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::ops::Range;

use mpi::ffi;

use super::{RawComm, RawRequest, check};
use crate::buffer::Data;
use crate::error::{Error, ErrorKind, Result};

/// A node-shared array of `len` elements of `T`, zeroed, mapped in every rank of a node communicator and held in a
/// passive-target epoch (`MPI_Win_lock_all`) until it is freed (collectively) on drop.
pub(crate) struct SharedSegment<T> {
    win: ffi::MPI_Win,
    /// A private duplicate of the node communicator for the phases' own synchronisation.
    comm: RawComm,
    base: *mut T,
    len: usize,
    allocated: usize,
    locked: bool,
    _t: PhantomData<T>,
}

impl RawComm {
    /// Allocates `len` elements on this communicator's rank 0 only; every rank maps them (collective; every rank
    /// passes the same `len`). The communicator must be one node's (from `MPI_Comm_split_type(SHARED)`).
    pub(crate) fn allocate_shared<T: Data>(&self, len: usize) -> Result<SharedSegment<T>> {
        let comm = self.dup()?;
        let me = comm.rank()?;
        let align = std::mem::align_of::<T>();
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .and_then(|b| b.checked_add(align))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidArgument,
                    format!("allocate_shared: {len} elements overflow"),
                )
            })?;
        // Room to align the start by hand if MPI's alignment is weaker than the element's. Every rank checks the
        // size (they all pass the same length), so all of them fail alike before any collective call.
        let total = ffi::MPI_Aint::try_from(bytes).map_err(|_| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("allocate_shared: {bytes} bytes exceed MPI_Aint"),
            )
        })?;
        let here = if me == 0 { bytes } else { 0 };
        let size = if me == 0 { total } else { 0 };
        let mut base = MaybeUninit::<*mut c_void>::uninit();
        let mut win = MaybeUninit::<ffi::MPI_Win>::uninit();
        // SAFETY: valid (node) communicator; `base` receives a pointer (MPI's baseptr is a pointer to a pointer),
        // `win` a handle; info null handle.
        let rc = unsafe {
            ffi::MPI_Win_allocate_shared(
                size,
                1,
                ffi::RSMPI_INFO_NULL,
                comm.handle,
                base.as_mut_ptr().cast(),
                win.as_mut_ptr(),
            )
        };
        check(rc, "MPI_Win_allocate_shared")?;
        // SAFETY: initialised by the successful call.
        let win = unsafe { win.assume_init() };
        let mut seg = SharedSegment {
            win,
            comm,
            base: std::ptr::null_mut(),
            len,
            allocated: here,
            locked: false,
            _t: PhantomData,
        };
        // SAFETY: valid window and predefined error handler: errors come back as codes instead of aborting.
        let rc = unsafe { ffi::MPI_Win_set_errhandler(win, ffi::RSMPI_ERRORS_RETURN) };
        check(rc, "MPI_Win_set_errhandler")?;
        let mut got: ffi::MPI_Aint = 0;
        let mut unit: c_int = 0;
        let mut first = MaybeUninit::<*mut c_void>::uninit();
        // SAFETY: valid window; out pointers for the size, unit and base of rank 0's segment.
        let rc = unsafe { ffi::MPI_Win_shared_query(win, 0, &mut got, &mut unit, first.as_mut_ptr().cast()) };
        check(rc, "MPI_Win_shared_query")?;
        // SAFETY: initialised by the successful call.
        let first = unsafe { first.assume_init() }.cast::<u8>();
        if usize::try_from(got).ok() != Some(bytes) {
            return Err(Error::new(
                ErrorKind::Mpi,
                format!(
                    "allocate_shared: the node's segment has {got} bytes, {bytes} expected (is the communicator \
                     one node's?)"
                ),
            ));
        }
        let skew = (first as usize).next_multiple_of(align) - first as usize;
        // SAFETY: `skew < align`, so the aligned start and the `len * size_of::<T>()` bytes after it lie inside
        // the segment of `bytes` just checked.
        seg.base = unsafe { first.add(skew) }.cast::<T>();
        // SAFETY: valid window; NOCHECK: no rank takes a conflicting lock (all use lock_all only).
        let rc = unsafe { ffi::MPI_Win_lock_all(super::spmd_mode_nocheck(), win) };
        check(rc, "MPI_Win_lock_all")?;
        seg.locked = true;
        if me == 0 {
            // SAFETY: the elements lie inside the segment (above) and are aligned; no rank reads before the
            // synchronisation below. Zero bytes are a valid `T` (`Data: AnyBitPattern`).
            unsafe { std::ptr::write_bytes(seg.base, 0, len) };
        }
        seg.fence(&|| {})?;
        Ok(seg)
    }
}

impl<T: Data> SharedSegment<T> {
    /// The node's elements.
    pub(crate) fn read(&self) -> &[T] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `base` is aligned and valid for `len` elements until drop (`allocate_shared`), initialised
        // (zeroed, then written only with `T`s). Other ranks write only inside `write`, which every rank of the node
        // enters with `&mut self` — so this rank holds no borrow from `read` then — and which returns only after
        // all writes are complete and visible; a `&self` borrow therefore never sees a concurrent write.
        unsafe { std::slice::from_raw_parts(self.base, self.len) }
    }

    /// A write phase (collective over the node): this rank may write `range`, which must not overlap any other
    /// rank's range; `f` gets `&mut` access to it. Ranks' ranges are exchanged and checked first: overlapping or
    /// out-of-bounds ranges are an error on every rank, before anything is written.
    ///
    /// The phase's collectives are non-blocking, completed by test loops that call `progress` (so that the
    /// caller's pending receives keep moving). A panic in `f` still ends the phase (its fence runs) before it
    /// propagates, so no rank leaves the phase while others write.
    pub(crate) fn write<R>(
        &mut self,
        range: Range<usize>,
        progress: &dyn Fn(),
        f: impl FnOnce(&mut [T]) -> R,
    ) -> Result<R> {
        let mine = vec![range.start as u64, range.end as u64];
        let size = self.comm.size()?;
        let mut all = vec![0u64; 2 * size];
        let mut req = MaybeUninit::<ffi::MPI_Request>::uninit();
        // SAFETY: `mine` holds 2 u64, `all` 2 per rank; both outlive the request, completed just below (or, on an
        // error of the test, leaked with the request so MPI never writes into freed memory); valid communicator.
        let rc = unsafe {
            ffi::MPI_Iallgather(
                mine.as_ptr().cast(),
                2,
                ffi::RSMPI_UINT64_T,
                all.as_mut_ptr().cast(),
                2,
                ffi::RSMPI_UINT64_T,
                self.comm.handle,
                req.as_mut_ptr(),
            )
        };
        check(rc, "MPI_Iallgather")?;
        // SAFETY: initialised by the successful call.
        let mut req = RawRequest::new(unsafe { req.assume_init() });
        if let Err(e) = complete(&mut req, progress, "MPI_Iallgather") {
            std::mem::forget(req);
            std::mem::forget(all);
            std::mem::forget(mine);
            return Err(e);
        }
        let ranges: Vec<Range<u64>> = all.chunks(2).map(|c| c[0]..c[1]).collect();
        if let Some(r) = ranges.iter().position(|r| r.start > r.end || r.end > self.len as u64) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "node array write: node rank {r} asked for elements {:?} of {}",
                    ranges[r], self.len
                ),
            ));
        }
        for a in 0..size {
            for b in a + 1..size {
                let (x, y) = (&ranges[a], &ranges[b]);
                if x.start < x.end && y.start < y.end && x.start < y.end && y.start < x.end {
                    return Err(Error::new(
                        ErrorKind::InvalidArgument,
                        format!(
                            "node array write: node ranks {a} and {b} asked for overlapping elements {x:?} and \
                             {y:?}"
                        ),
                    ));
                }
            }
        }
        let part: &mut [T] = if range.is_empty() {
            &mut []
        } else {
            // SAFETY: `range` lies inside the `len` elements (checked above, the same check on every rank) and is
            // disjoint from every other rank's range, so this is the only access to these elements during the
            // phase: every rank is inside it (the allgather above completes only when all have entered) with
            // `&mut self`, so no rank holds a `read` borrow; the phase ends with a fence.
            unsafe { std::slice::from_raw_parts_mut(self.base.add(range.start), range.len()) }
        };
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(part)));
        self.fence(progress)?;
        match out {
            Ok(out) => Ok(out),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Makes every rank's writes visible to every rank: `MPI_Win_sync`, barrier, `MPI_Win_sync`.
    fn fence(&self, progress: &dyn Fn()) -> Result<()> {
        // SAFETY: valid window inside the lock_all epoch.
        check(unsafe { ffi::MPI_Win_sync(self.win) }, "MPI_Win_sync")?;
        let mut req = MaybeUninit::<ffi::MPI_Request>::uninit();
        // SAFETY: valid communicator and out pointer.
        let rc = unsafe { ffi::MPI_Ibarrier(self.comm.handle, req.as_mut_ptr()) };
        check(rc, "MPI_Ibarrier")?;
        // SAFETY: initialised by the successful call.
        let mut req = RawRequest::new(unsafe { req.assume_init() });
        complete(&mut req, progress, "MPI_Ibarrier")?;
        // SAFETY: valid window inside the lock_all epoch.
        check(unsafe { ffi::MPI_Win_sync(self.win) }, "MPI_Win_sync")
    }

    /// Bytes this rank allocated for the node (the whole array plus alignment slack on node rank 0, 0 elsewhere).
    pub(crate) fn allocated_here(&self) -> usize {
        self.allocated
    }
}

/// Completes a request by testing it, calling `progress` between tests.
fn complete(req: &mut RawRequest, progress: &dyn Fn(), what: &str) -> Result<()> {
    loop {
        if req.test().map_err(|c| c.error(what))?.is_some() {
            return Ok(());
        }
        progress();
    }
}

impl<T> Drop for SharedSegment<T> {
    fn drop(&mut self) {
        // SAFETY: valid window, unlocked only if locked; freed once; no borrow of the memory outlives `self`.
        unsafe {
            if self.locked {
                ffi::MPI_Win_unlock_all(self.win);
            }
            ffi::MPI_Win_free(&mut self.win);
        }
    }
}
