//! The one module with `unsafe`: every call into the MPI C library and every view of user memory handed to it.
//!
//! Everything above this module is safe Rust. Functions here take handles that cannot outlive MPI (they are owned
//! by [`crate::comm::Comm`] values, which borrow the [`crate::env::Universe`]) and buffers described by
//! [`crate::buffer`] descriptors, which are built only from live borrows. Each `unsafe` block says why it is sound.
//!
//! Communicators created here use `MPI_ERRORS_RETURN`, so a failing call returns a code that becomes an
//! [`Error`] instead of killing the job; every return code is checked.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::mem::MaybeUninit;
use std::ptr;

use mpi::ffi;

use crate::error::{Error, ErrorKind, Result};

/// Turns an MPI return code into a `Result`, naming the operation.
pub(crate) fn check(code: c_int, what: &str) -> Result<()> {
    if code == ffi::MPI_SUCCESS as c_int {
        Ok(())
    } else {
        Err(mpi_error(code, what))
    }
}

/// An [`ErrorKind::Mpi`] error with the library's text for `code`.
pub(crate) fn mpi_error(code: c_int, what: &str) -> Error {
    Error::new(
        ErrorKind::Mpi,
        format!("{what}: MPI error {code}: {}", error_string(code)),
    )
}

/// The MPI library's description of an error code.
pub(crate) fn error_string(code: c_int) -> String {
    let mut buf = vec![0 as c_char; ffi::MPI_MAX_ERROR_STRING as usize + 1];
    let mut len: c_int = 0;
    // SAFETY: `buf` holds MPI_MAX_ERROR_STRING + 1 chars, the most MPI_Error_string writes; `len` is a valid out
    // pointer. MPI_Error_string may be called at any time, even outside init/finalize.
    let rc = unsafe { ffi::MPI_Error_string(code, buf.as_mut_ptr(), &mut len) };
    if rc != ffi::MPI_SUCCESS as c_int {
        return format!("unknown error code {code}");
    }
    let bytes: Vec<u8> = buf[..len.max(0) as usize].iter().map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

// ---------------------------------------------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------------------------------------------

/// Whether `MPI_Init` has been called in this process.
pub(crate) fn is_initialized() -> bool {
    let mut flag: c_int = 0;
    // SAFETY: MPI_Initialized may be called before init and after finalize; `flag` is a valid out pointer.
    unsafe { ffi::MPI_Initialized(&mut flag) };
    flag != 0
}

/// Whether `MPI_Finalize` has been called in this process.
pub(crate) fn is_finalized() -> bool {
    let mut flag: c_int = 0;
    // SAFETY: MPI_Finalized may be called at any time; `flag` is a valid out pointer.
    unsafe { ffi::MPI_Finalized(&mut flag) };
    flag != 0
}

/// Ends every process of the job with `code`: `MPI_Abort` on `MPI_COMM_WORLD`. Does nothing when MPI is not
/// running (then the caller exits the process itself).
pub(crate) fn abort_world(code: i32) {
    if is_initialized() && !is_finalized() {
        // SAFETY: MPI is initialised and not finalised (checked just above); MPI_COMM_WORLD is always valid then.
        // MPI_Abort does not return on Open MPI; it may be called from any thread in practice.
        unsafe { ffi::MPI_Abort(ffi::RSMPI_COMM_WORLD, code) };
    }
}

/// The name of this processor (host), from `MPI_Get_processor_name`. MPI must be running.
pub(crate) fn processor_name() -> Result<String> {
    let mut buf = vec![0 as c_char; ffi::MPI_MAX_PROCESSOR_NAME as usize + 1];
    let mut len: c_int = 0;
    check(
        // SAFETY: the buffer holds MPI_MAX_PROCESSOR_NAME + 1 chars as the standard requires; called only while MPI
        // runs (the Universe exists).
        unsafe { ffi::MPI_Get_processor_name(buf.as_mut_ptr(), &mut len) },
        "MPI_Get_processor_name",
    )?;
    let bytes: Vec<u8> = buf[..len.max(0) as usize].iter().map(|&c| c as u8).collect();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The MPI library's version string, without the trailing NUL rsmpi keeps.
pub(crate) fn library_version() -> String {
    let mut buf = vec![0 as c_char; ffi::MPI_MAX_LIBRARY_VERSION_STRING as usize + 1];
    let mut len: c_int = 0;
    // SAFETY: the buffer holds MPI_MAX_LIBRARY_VERSION_STRING + 1 chars; the call is allowed at any time.
    unsafe { ffi::MPI_Get_library_version(buf.as_mut_ptr(), &mut len) };
    // SAFETY: MPI writes a NUL-terminated string into the zeroed buffer, which is longer than any string it writes.
    let s = unsafe { CStr::from_ptr(buf.as_ptr()) };
    s.to_string_lossy().trim_end().to_string()
}

/// Seconds since an arbitrary time in the past (`MPI_Wtime`).
pub(crate) fn wtime() -> f64 {
    // SAFETY: MPI_Wtime has no preconditions beyond a running MPI; called only while the Universe exists.
    unsafe { ffi::RSMPI_Wtime() }
}

/// The largest tag value this MPI accepts (`MPI_TAG_UB` attribute of `MPI_COMM_WORLD`).
pub(crate) fn tag_ub() -> i32 {
    let mut val: *mut c_int = ptr::null_mut();
    let mut flag: c_int = 0;
    // SAFETY: for MPI_TAG_UB, MPI stores a pointer to an int into `val` (the attribute value is `int*`); the flag
    // says whether it did. MPI_COMM_WORLD is valid while MPI runs.
    unsafe {
        ffi::MPI_Comm_get_attr(
            ffi::RSMPI_COMM_WORLD,
            ffi::MPI_TAG_UB as c_int,
            (&mut val as *mut *mut c_int).cast::<c_void>(),
            &mut flag,
        )
    };
    if flag == 0 || val.is_null() {
        32767 // the minimum the standard guarantees
    } else {
        // SAFETY: MPI set `val` to point at its stored tag bound, which lives as long as MPI runs.
        unsafe { *val }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Progress
// ---------------------------------------------------------------------------------------------------------------

/// A function Open MPI calls from its progress loop (inside every MPI call that waits or polls).
pub(crate) type ProgressFn = extern "C" fn() -> c_int;

#[link(name = "open-pal")]
unsafe extern "C" {
    /// Open MPI's registry of progress callbacks (`opal/runtime/opal_progress.h`).
    fn opal_progress_register(cb: ProgressFn) -> c_int;
    fn opal_progress_unregister(cb: ProgressFn) -> c_int;
}

/// Asks Open MPI to call `cb` from its progress loop, so that spmd's pending receives advance while the program
/// waits in any MPI call, as MPI's own receives do. Returns whether Open MPI accepted it.
pub(crate) fn register_progress(cb: ProgressFn) -> bool {
    // SAFETY: `cb` is a plain `extern "C"` function with the signature Open MPI expects; it stays valid for the
    // life of the process; MPI is initialised (called from init).
    unsafe { opal_progress_register(cb) == 0 }
}

/// Removes a callback added by [`register_progress`] (before `MPI_Finalize`).
pub(crate) fn unregister_progress(cb: ProgressFn) {
    // SAFETY: as in `register_progress`; unregistering a function that is not registered is harmless.
    unsafe { opal_progress_unregister(cb) };
}

// ---------------------------------------------------------------------------------------------------------------
// Communicators
// ---------------------------------------------------------------------------------------------------------------

/// An MPI communicator handle that spmd owns (freed on drop) or borrows (`MPI_COMM_WORLD`).
///
/// Values of this type live inside [`crate::comm::Comm`] and the [`crate::env::Universe`], which drop them before
/// MPI is finalised.
pub(crate) struct RawComm {
    handle: ffi::MPI_Comm,
    owned: bool,
}

impl RawComm {
    /// The world communicator itself (not owned, never freed).
    pub(crate) fn world() -> RawComm {
        RawComm {
            // SAFETY: reading the predefined handle constant exported by the MPI shim.
            handle: unsafe { ffi::RSMPI_COMM_WORLD },
            owned: false,
        }
    }

    /// This process's rank in the communicator.
    pub(crate) fn rank(&self) -> Result<usize> {
        let mut r: c_int = 0;
        // SAFETY: `self.handle` is a valid communicator while `self` lives; `r` is a valid out pointer.
        check(unsafe { ffi::MPI_Comm_rank(self.handle, &mut r) }, "MPI_Comm_rank")?;
        Ok(r as usize)
    }

    /// The number of processes in the communicator.
    pub(crate) fn size(&self) -> Result<usize> {
        let mut s: c_int = 0;
        // SAFETY: as in `rank`.
        check(unsafe { ffi::MPI_Comm_size(self.handle, &mut s) }, "MPI_Comm_size")?;
        Ok(s as usize)
    }

    /// A duplicate with a fresh context and `MPI_ERRORS_RETURN` (collective).
    pub(crate) fn dup(&self) -> Result<RawComm> {
        let mut new = MaybeUninit::<ffi::MPI_Comm>::uninit();
        check(
            // SAFETY: `self.handle` is valid; MPI writes the new handle into `new` on success, which is checked before
            // the value is read.
            unsafe { ffi::MPI_Comm_dup(self.handle, new.as_mut_ptr()) },
            "MPI_Comm_dup",
        )?;
        let c = RawComm {
            // SAFETY: initialised by the successful call above.
            handle: unsafe { new.assume_init() },
            owned: true,
        };
        c.set_errors_return()?;
        Ok(c)
    }

    /// `MPI_Comm_split`: `color` of `None` is `MPI_UNDEFINED` (this process joins no new communicator).
    pub(crate) fn split(&self, color: Option<i32>, key: i32) -> Result<Option<RawComm>> {
        // SAFETY: reading a constant exported by the MPI shim.
        let undefined = unsafe { ffi::RSMPI_UNDEFINED };
        let mut new = MaybeUninit::<ffi::MPI_Comm>::uninit();
        check(
            // SAFETY: `self.handle` is valid; MPI writes the new handle (or MPI_COMM_NULL) into `new`.
            unsafe { ffi::MPI_Comm_split(self.handle, color.unwrap_or(undefined), key, new.as_mut_ptr()) },
            "MPI_Comm_split",
        )?;
        // SAFETY: initialised by the successful call above.
        Self::adopt(unsafe { new.assume_init() })
    }

    /// `MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)`: the processes that can share memory with this one.
    pub(crate) fn split_shared(&self, key: i32) -> Result<Option<RawComm>> {
        let mut new = MaybeUninit::<ffi::MPI_Comm>::uninit();
        check(
            // SAFETY: `self.handle` is valid; constants come from the MPI shim; MPI_INFO_NULL is a valid info
            // argument; MPI writes the new handle into `new`.
            unsafe {
                ffi::MPI_Comm_split_type(
                    self.handle,
                    ffi::RSMPI_COMM_TYPE_SHARED,
                    key,
                    ffi::RSMPI_INFO_NULL,
                    new.as_mut_ptr(),
                )
            },
            "MPI_Comm_split_type",
        )?;
        // SAFETY: initialised by the successful call above.
        Self::adopt(unsafe { new.assume_init() })
    }

    fn adopt(handle: ffi::MPI_Comm) -> Result<Option<RawComm>> {
        // SAFETY: comparing against the null handle constant of the MPI shim.
        if handle.0 == unsafe { ffi::RSMPI_COMM_NULL }.0 {
            return Ok(None);
        }
        let c = RawComm { handle, owned: true };
        c.set_errors_return()?;
        Ok(Some(c))
    }

    fn set_errors_return(&self) -> Result<()> {
        // SAFETY: `self.handle` is a valid communicator; MPI_ERRORS_RETURN is a predefined error handler.
        check(
            unsafe { ffi::MPI_Comm_set_errhandler(self.handle, ffi::RSMPI_ERRORS_RETURN) },
            "MPI_Comm_set_errhandler",
        )
    }

    /// `MPI_Abort` on this communicator: ends the job (Open MPI ends every process of the job).
    pub(crate) fn abort(&self, code: i32) -> ! {
        // SAFETY: `self.handle` is valid; MPI_Abort does not return on Open MPI.
        unsafe { ffi::MPI_Abort(self.handle, code) };
        std::process::exit(code)
    }
}

impl Drop for RawComm {
    fn drop(&mut self) {
        if self.owned && !is_finalized() {
            // SAFETY: the handle is one this process created and still owns; nothing uses it after this drop.
            // Owners drop before MPI_Finalize (Comm borrows the Universe), and the check above guards the rest.
            unsafe { ffi::MPI_Comm_free(&mut self.handle) };
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Datatypes and buffer descriptions
// ---------------------------------------------------------------------------------------------------------------

use crate::buffer::{Elem, Layout, View, ViewMut};
use std::cell::RefCell;
use std::collections::HashMap;

/// Largest count handed to MPI in one piece when describing a large buffer.
const CHUNK: usize = 1 << 30;

/// An MPI return code other than `MPI_SUCCESS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Code(pub(crate) c_int);

impl Code {
    /// Whether the code is `MPI_ERR_TRUNCATE` (message larger than the receive buffer).
    pub(crate) fn is_truncate(self) -> bool {
        self.0 == ffi::MPI_ERR_TRUNCATE as c_int
    }

    /// The code as an [`ErrorKind::Mpi`] error for the operation `what`.
    pub(crate) fn error(self, what: &str) -> Error {
        mpi_error(self.0, what)
    }
}

/// Result of a raw call: the value or the MPI code.
pub(crate) type RawResult<T> = std::result::Result<T, Code>;

/// How a receive or wait ended: its status, or the error code with the status MPI filled in.
pub(crate) type Completed = std::result::Result<RawStatus, (Code, RawStatus)>;

fn rc(code: c_int) -> RawResult<()> {
    if code == ffi::MPI_SUCCESS as c_int {
        Ok(())
    } else {
        Err(Code(code))
    }
}

/// A datatype handle, freed on drop when spmd created it.
pub(crate) struct Dt {
    handle: ffi::MPI_Datatype,
    owned: bool,
}

impl Dt {
    fn borrowed(handle: ffi::MPI_Datatype) -> Dt {
        Dt { handle, owned: false }
    }

    fn commit_owned(mut handle: ffi::MPI_Datatype) -> RawResult<Dt> {
        // SAFETY: `handle` is a datatype this module just created and has not freed.
        rc(unsafe { ffi::MPI_Type_commit(&mut handle) })?;
        Ok(Dt { handle, owned: true })
    }
}

impl Drop for Dt {
    #[inline]
    fn drop(&mut self) {
        if self.owned && !is_finalized() {
            // SAFETY: an owned handle was created by this module and is freed once, here. MPI lets a datatype be
            // freed while operations that use it are pending: they complete normally.
            unsafe { ffi::MPI_Type_free(&mut self.handle) };
        }
    }
}

/// Per element type: the datatype to use (resized when rsmpi's extent differs from `size_of`) and its MPI size.
#[derive(Clone, Copy)]
struct ElemType {
    handle: ffi::MPI_Datatype,
    mpi_size: usize,
}

thread_local! {
    static ELEM_TYPES: RefCell<HashMap<std::any::TypeId, ElemType>> = RefCell::new(HashMap::new());
}

/// The MPI datatype for one element of `elem` whose extent is exactly `size_of::<T>()`, and its MPI size.
fn elem_type(elem: &Elem) -> RawResult<ElemType> {
    if elem.predefined {
        return Ok(ElemType {
            handle: elem.datatype,
            mpi_size: elem.size,
        });
    }
    if let Some(t) = ELEM_TYPES.with(|m| m.borrow().get(&elem.key).copied()) {
        return Ok(t);
    }
    let mut lb: ffi::MPI_Aint = 0;
    let mut extent: ffi::MPI_Aint = 0;
    // SAFETY: `elem.datatype` is a committed datatype from rsmpi's `Equivalence` (predefined or derived and
    // committed by rsmpi); the out pointers are valid.
    rc(unsafe { ffi::MPI_Type_get_extent(elem.datatype, &mut lb, &mut extent) })?;
    let mut size: ffi::MPI_Count = 0;
    // SAFETY: as above.
    rc(unsafe { ffi::MPI_Type_size_x(elem.datatype, &mut size) })?;
    let handle = if lb == 0 && extent as usize == elem.size {
        elem.datatype
    } else {
        let mut t = MaybeUninit::<ffi::MPI_Datatype>::uninit();
        // SAFETY: valid datatype and out pointer; the new type has lb 0 and extent size_of::<T>(), so arrays of T
        // are described element by element.
        rc(unsafe { ffi::MPI_Type_create_resized(elem.datatype, 0, elem.size as ffi::MPI_Aint, t.as_mut_ptr()) })?;
        // SAFETY: initialised by the successful call.
        let mut t = unsafe { t.assume_init() };
        // SAFETY: `t` was just created. It is kept for the life of the process (cached), never freed.
        rc(unsafe { ffi::MPI_Type_commit(&mut t) })?;
        t
    };
    let et = ElemType {
        handle,
        mpi_size: size as usize,
    };
    ELEM_TYPES.with(|m| m.borrow_mut().insert(elem.key, et));
    Ok(et)
}

/// The MPI size in bytes of one element (without padding): divides a byte count into an element count.
#[inline]
pub(crate) fn elem_mpi_size(elem: &Elem) -> RawResult<usize> {
    if elem.predefined {
        return Ok(elem.size);
    }
    Ok(elem_type(elem)?.mpi_size)
}

fn contiguous(count: usize, old: ffi::MPI_Datatype) -> RawResult<ffi::MPI_Datatype> {
    let mut t = MaybeUninit::<ffi::MPI_Datatype>::uninit();
    // SAFETY: `count` fits in c_int (callers pass at most CHUNK or a quotient by CHUNK); valid old type.
    rc(unsafe { ffi::MPI_Type_contiguous(count as c_int, old, t.as_mut_ptr()) })?;
    // SAFETY: initialised by the successful call.
    Ok(unsafe { t.assume_init() })
}

fn free_type(mut t: ffi::MPI_Datatype) {
    // SAFETY: `t` is an intermediate type created in this module and used only to build another type; MPI allows
    // freeing it once the derived type exists.
    unsafe { ffi::MPI_Type_free(&mut t) };
}

/// `len` consecutive elements as one datatype (for counts above `i32::MAX`): `len / CHUNK` chunks followed by
/// the remainder.
fn big_contiguous(len: usize, e: ffi::MPI_Datatype, elem_size: usize) -> RawResult<Dt> {
    let q = len / CHUNK;
    let r = len % CHUNK;
    let chunk = contiguous(CHUNK, e)?;
    let chunks = contiguous(q, chunk)?;
    free_type(chunk);
    if r == 0 {
        return Dt::commit_owned(chunks);
    }
    let rest = contiguous(r, e)?;
    let lens: [c_int; 2] = [1, 1];
    let disps: [ffi::MPI_Aint; 2] = [0, (q * CHUNK * elem_size) as ffi::MPI_Aint];
    let types = [chunks, rest];
    let mut t = MaybeUninit::<ffi::MPI_Datatype>::uninit();
    // SAFETY: arrays of length 2 as `count` says; both types valid.
    rc(unsafe { ffi::MPI_Type_create_struct(2, lens.as_ptr(), disps.as_ptr(), types.as_ptr(), t.as_mut_ptr()) })?;
    free_type(chunks);
    free_type(rest);
    // SAFETY: initialised by the successful call.
    let mut t = unsafe { t.assume_init() };
    // The struct's extent must be the whole run, so that consecutive blocks (per rank in collectives) line up.
    let mut resized = MaybeUninit::<ffi::MPI_Datatype>::uninit();
    // SAFETY: valid type and out pointer.
    rc(unsafe { ffi::MPI_Type_create_resized(t, 0, (len * elem_size) as ffi::MPI_Aint, resized.as_mut_ptr()) })?;
    // SAFETY: `t` was created above and is now only an ingredient of `resized`.
    unsafe { ffi::MPI_Type_free(&mut t) };
    // SAFETY: initialised by the successful call.
    Dt::commit_owned(unsafe { resized.assume_init() })
}

/// A strided n-dimensional view as one datatype: nested `hvector`s, last dimension innermost.
fn strided(shape: &[usize], strides: &[isize], e: ffi::MPI_Datatype, elem_size: usize) -> Result<Dt> {
    let mut t = e;
    let mut owned = false;
    for d in (0..shape.len()).rev() {
        if shape[d] > i32::MAX as usize {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "a strided view with a dimension of {} elements (above i32::MAX) is not supported",
                    shape[d]
                ),
            ));
        }
        let mut next = MaybeUninit::<ffi::MPI_Datatype>::uninit();
        let stride = strides[d] as ffi::MPI_Aint * elem_size as ffi::MPI_Aint;
        // SAFETY: count fits c_int (checked above); `t` is a valid type; the stride is in bytes as hvector expects.
        let code = unsafe { ffi::MPI_Type_create_hvector(shape[d] as c_int, 1, stride, t, next.as_mut_ptr()) };
        if owned {
            free_type(t);
        }
        rc(code).map_err(|c| c.error("MPI_Type_create_hvector"))?;
        // SAFETY: initialised by the successful call.
        t = unsafe { next.assume_init() };
        owned = true;
    }
    if !owned {
        return Ok(Dt::borrowed(e));
    }
    Dt::commit_owned(t).map_err(|c| c.error("MPI_Type_commit"))
}

/// A buffer as MPI sees it: address, count and datatype.
pub(crate) struct Desc {
    ptr: *mut c_void,
    count: c_int,
    dt: Dt,
}

impl Desc {
    /// No data: the zero-length message spmd uses as a header (see `p2p`).
    pub(crate) fn empty() -> Desc {
        Desc {
            ptr: ptr::NonNull::<u8>::dangling().as_ptr().cast(),
            count: 0,
            // SAFETY: reading a predefined handle; a zero count never touches the (dangling, non-null) address.
            dt: Dt::borrowed(unsafe { ffi::RSMPI_UINT8_T }),
        }
    }

    /// Describes `len` (at most `i32::MAX`) contiguous elements of a predefined datatype at `ptr`, as returned by a
    /// buffer's `contig()` (the fast path of collectives).
    #[inline]
    pub(crate) fn contig(ptr: *const u8, len: usize, dt: ffi::MPI_Datatype) -> Desc {
        debug_assert!(len <= i32::MAX as usize);
        Desc {
            ptr: ptr.cast_mut().cast(),
            count: len as c_int,
            dt: Dt::borrowed(dt),
        }
    }

    /// Describes a byte vector (any length).
    pub(crate) fn bytes(b: &[u8]) -> Result<Desc> {
        Desc::new(b.as_ptr().cast_mut(), b.len(), &Elem::of::<u8>(), &Layout::Contiguous)
    }

    /// Describes a writable byte vector (any length).
    pub(crate) fn bytes_mut(b: &mut [u8]) -> Result<Desc> {
        Desc::new(b.as_mut_ptr(), b.len(), &Elem::of::<u8>(), &Layout::Contiguous)
    }

    #[inline]
    fn new(ptr: *mut u8, len: usize, elem: &Elem, layout: &Layout) -> Result<Desc> {
        // The common case, kept small so it inlines: contiguous elements of a predefined type.
        if elem.predefined && len <= i32::MAX as usize && matches!(layout, Layout::Contiguous) {
            return Ok(Desc {
                ptr: ptr.cast(),
                count: len as c_int,
                dt: Dt::borrowed(elem.datatype),
            });
        }
        Desc::new_general(ptr, len, elem, layout)
    }

    #[inline(never)]
    fn new_general(ptr: *mut u8, len: usize, elem: &Elem, layout: &Layout) -> Result<Desc> {
        let e = elem_type(elem).map_err(|c| c.error("describing the element type"))?;
        let (count, dt) = match layout {
            Layout::Contiguous if len <= i32::MAX as usize => (len as c_int, Dt::borrowed(e.handle)),
            Layout::Contiguous => (
                1,
                big_contiguous(len, e.handle, elem.size).map_err(|c| c.error("describing a large buffer"))?,
            ),
            Layout::Strided { .. } if len == 0 => (0, Dt::borrowed(e.handle)),
            Layout::Strided { shape, strides } => (1, strided(shape, strides, e.handle, elem.size)?),
        };
        Ok(Desc {
            ptr: ptr.cast(),
            count,
            dt,
        })
    }

    /// Describes a read-only view.
    #[inline]
    pub(crate) fn of(v: &View) -> Result<Desc> {
        Desc::new(v.ptr.cast_mut(), v.len, &v.elem, &v.layout)
    }

    /// Describes a writable view.
    #[inline]
    pub(crate) fn of_mut(v: &ViewMut) -> Result<Desc> {
        Desc::new(v.ptr, v.len, &v.elem, &v.layout)
    }

    /// Describes `len` contiguous elements starting `offset` elements into a contiguous view (one rank's block).
    pub(crate) fn block(v: &ViewMut, offset: usize, len: usize) -> Result<Desc> {
        debug_assert!(offset + len <= v.len);
        // `wrapping_add` keeps this free of `unsafe`; the caller checked that the block lies inside the view.
        let ptr = v.ptr.wrapping_add(offset * v.elem.size);
        Desc::new(ptr, len, &v.elem, &Layout::Contiguous)
    }

    /// Describes `len` contiguous elements starting `offset` elements into a contiguous read-only view.
    pub(crate) fn block_of(v: &View, offset: usize, len: usize) -> Result<Desc> {
        debug_assert!(offset + len <= v.len);
        let ptr = v.ptr.cast_mut().wrapping_add(offset * v.elem.size);
        Desc::new(ptr, len, &v.elem, &Layout::Contiguous)
    }
}

/// Source, tag and size of a received or probed message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawStatus {
    pub(crate) source: i32,
    pub(crate) tag: i32,
    pub(crate) bytes: usize,
}

impl RawStatus {
    fn from(s: &ffi::MPI_Status) -> RawStatus {
        // `_ucount` is Open MPI's byte count of the message (public field of its status struct).
        RawStatus {
            source: s.MPI_SOURCE,
            tag: s.MPI_TAG,
            bytes: s._ucount,
        }
    }
}

fn new_status() -> ffi::MPI_Status {
    ffi::MPI_Status {
        MPI_SOURCE: 0,
        MPI_TAG: 0,
        MPI_ERROR: 0,
        _cancelled: 0,
        _ucount: 0,
    }
}

/// `MPI_ANY_SOURCE`, `MPI_ANY_TAG` and `MPI_PROC_NULL` of this MPI.
pub(crate) fn any_source() -> i32 {
    // SAFETY: reading a constant exported by the MPI shim.
    unsafe { ffi::RSMPI_ANY_SOURCE }
}

/// `MPI_ANY_TAG`.
pub(crate) fn any_tag() -> i32 {
    // SAFETY: reading a constant exported by the MPI shim.
    unsafe { ffi::RSMPI_ANY_TAG }
}

// ---------------------------------------------------------------------------------------------------------------
// Point-to-point
// ---------------------------------------------------------------------------------------------------------------

/// Send modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `MPI_Send`: may return before the receive starts (eager) or wait for it.
    Standard,
    /// `MPI_Ssend`: returns only once the receive has started.
    Synchronous,
}

impl RawComm {
    /// Standard-mode send of `count` contiguous elements of predefined type `dt` at `ptr` (the fast path).
    ///
    /// `ptr` and `count` come from `contig()` of a buffer borrowed by the caller for this call.
    #[inline]
    pub(crate) fn send_contig(
        &self,
        ptr: *const u8,
        count: c_int,
        dt: ffi::MPI_Datatype,
        dest: i32,
        tag: i32,
    ) -> RawResult<()> {
        // SAFETY: `ptr`/`count` describe the borrowed buffer's elements (built by `contig()` from a live borrow);
        // `dt` is the predefined datatype of that element type; MPI only reads.
        rc(unsafe { ffi::MPI_Send(ptr.cast(), count, dt, dest, tag, self.handle) })
    }

    /// Receive into `count` contiguous elements of predefined type `dt` at `ptr` (the fast path). The caller must
    /// handle a zero-length result (a header) and truncation as [`RawComm::recv`] does.
    #[inline]
    pub(crate) fn recv_contig(
        &self,
        ptr: *mut u8,
        count: c_int,
        dt: ffi::MPI_Datatype,
        source: i32,
        tag: i32,
    ) -> Completed {
        let mut st = MaybeUninit::<ffi::MPI_Status>::uninit();
        // SAFETY: `ptr`/`count` describe an exclusively borrowed buffer (from `contig_mut()`); MPI writes at most
        // `count` elements there (messages on spmd's communicators are at most DIRECT_MAX bytes or empty, so a
        // truncation is reported, never overrun) and fills the status.
        let code = unsafe { ffi::MPI_Recv(ptr.cast(), count, dt, source, tag, self.handle, st.as_mut_ptr()) };
        // SAFETY: MPI_Recv fills the status whatever the outcome.
        let s = RawStatus::from(unsafe { st.assume_init_ref() });
        if code == 0 { Ok(s) } else { Err((Code(code), s)) }
    }

    /// Blocking send of a described buffer.
    pub(crate) fn send(&self, d: &Desc, dest: i32, tag: i32, mode: Mode) -> RawResult<()> {
        // SAFETY: `d` describes memory borrowed for the duration of this call (built from a live View); the
        // communicator is valid; MPI only reads the buffer.
        rc(unsafe {
            match mode {
                Mode::Standard => ffi::MPI_Send(d.ptr, d.count, d.dt.handle, dest, tag, self.handle),
                Mode::Synchronous => ffi::MPI_Ssend(d.ptr, d.count, d.dt.handle, dest, tag, self.handle),
            }
        })
    }

    /// Blocking receive into a described buffer. On truncation the error code is returned with the status.
    pub(crate) fn recv(&self, d: &Desc, source: i32, tag: i32) -> Completed {
        let mut st = new_status();
        // SAFETY: `d` describes memory exclusively borrowed for this call (built from a live ViewMut); MPI writes
        // at most the described elements into it.
        let code = unsafe { ffi::MPI_Recv(d.ptr, d.count, d.dt.handle, source, tag, self.handle, &mut st) };
        let s = RawStatus::from(&st);
        rc(code).map(|_| s).map_err(|c| (c, s))
    }

    /// `MPI_Sendrecv` of two described buffers.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn sendrecv(&self, sd: &Desc, dest: i32, stag: i32, rd: &Desc, source: i32, rtag: i32) -> Completed {
        let mut st = new_status();
        // SAFETY: both descriptions come from live borrows (the receive one exclusive) that outlast the call.
        let code = unsafe {
            ffi::MPI_Sendrecv(
                sd.ptr,
                sd.count,
                sd.dt.handle,
                dest,
                stag,
                rd.ptr,
                rd.count,
                rd.dt.handle,
                source,
                rtag,
                self.handle,
                &mut st,
            )
        };
        let s = RawStatus::from(&st);
        rc(code).map(|_| s).map_err(|c| (c, s))
    }

    /// Blocking probe.
    pub(crate) fn probe(&self, source: i32, tag: i32) -> RawResult<RawStatus> {
        let mut st = new_status();
        // SAFETY: valid communicator and status pointer.
        rc(unsafe { ffi::MPI_Probe(source, tag, self.handle, &mut st) })?;
        Ok(RawStatus::from(&st))
    }

    /// Non-blocking probe.
    pub(crate) fn iprobe(&self, source: i32, tag: i32) -> RawResult<Option<RawStatus>> {
        let mut st = new_status();
        let mut flag: c_int = 0;
        // SAFETY: valid communicator, flag and status pointers.
        rc(unsafe { ffi::MPI_Iprobe(source, tag, self.handle, &mut flag, &mut st) })?;
        Ok((flag != 0).then(|| RawStatus::from(&st)))
    }

    /// Matched probe: the message is removed from matching and must be received with [`RawMessage::recv`].
    pub(crate) fn mprobe(&self, source: i32, tag: i32) -> RawResult<(RawMessage, RawStatus)> {
        let mut st = new_status();
        let mut m = MaybeUninit::<ffi::MPI_Message>::uninit();
        // SAFETY: valid communicator and out pointers.
        rc(unsafe { ffi::MPI_Mprobe(source, tag, self.handle, m.as_mut_ptr(), &mut st) })?;
        let st = RawStatus::from(&st);
        Ok((
            RawMessage {
                // SAFETY: initialised by the successful call.
                handle: unsafe { m.assume_init() },
                bytes: st.bytes,
            },
            st,
        ))
    }

    /// Non-blocking matched probe.
    pub(crate) fn improbe(&self, source: i32, tag: i32) -> RawResult<Option<(RawMessage, RawStatus)>> {
        let mut st = new_status();
        let mut flag: c_int = 0;
        let mut m = MaybeUninit::<ffi::MPI_Message>::uninit();
        // SAFETY: valid communicator and out pointers.
        rc(unsafe { ffi::MPI_Improbe(source, tag, self.handle, &mut flag, m.as_mut_ptr(), &mut st) })?;
        if flag == 0 {
            return Ok(None);
        }
        let st = RawStatus::from(&st);
        Ok(Some((
            RawMessage {
                // SAFETY: initialised by the successful call with flag set.
                handle: unsafe { m.assume_init() },
                bytes: st.bytes,
            },
            st,
        )))
    }

    /// Non-blocking send. The request must complete before the memory `d` describes is released or reused.
    pub(crate) fn isend(&self, d: &Desc, dest: i32, tag: i32, mode: Mode) -> RawResult<RawRequest> {
        let mut r = MaybeUninit::<ffi::MPI_Request>::uninit();
        // SAFETY: the memory stays valid until the request completes: every owner of a RawRequest keeps the
        // buffer borrowed or owned for at least as long, and RawRequest's drop waits for completion.
        rc(unsafe {
            match mode {
                Mode::Standard => ffi::MPI_Isend(d.ptr, d.count, d.dt.handle, dest, tag, self.handle, r.as_mut_ptr()),
                Mode::Synchronous => {
                    ffi::MPI_Issend(d.ptr, d.count, d.dt.handle, dest, tag, self.handle, r.as_mut_ptr())
                }
            }
        })?;
        // SAFETY: initialised by the successful call.
        Ok(RawRequest(unsafe { r.assume_init() }))
    }

    /// Non-blocking receive, with the same rule as [`RawComm::isend`] for the memory.
    pub(crate) fn irecv(&self, d: &Desc, source: i32, tag: i32) -> RawResult<RawRequest> {
        let mut r = MaybeUninit::<ffi::MPI_Request>::uninit();
        // SAFETY: as in `isend`; the memory is exclusively borrowed or owned by the request's owner.
        rc(unsafe { ffi::MPI_Irecv(d.ptr, d.count, d.dt.handle, source, tag, self.handle, r.as_mut_ptr()) })?;
        // SAFETY: initialised by the successful call.
        Ok(RawRequest(unsafe { r.assume_init() }))
    }
}

/// A message matched by a matched probe, to be received exactly once.
pub(crate) struct RawMessage {
    handle: ffi::MPI_Message,
    /// The message size, so that dropping it unreceived can take it into a buffer that fits.
    bytes: usize,
}

impl RawMessage {
    /// Receives the matched message into `d`, which the caller checked is large enough.
    pub(crate) fn recv(mut self, d: &Desc) -> Completed {
        let mut st = new_status();
        // SAFETY: `self.handle` is a matched message not yet received (consumed by value); `d` describes
        // exclusively borrowed memory at least as large as the message (checked by the caller from the probe).
        let code = unsafe { ffi::MPI_Mrecv(d.ptr, d.count, d.dt.handle, &mut self.handle, &mut st) };
        std::mem::forget(self);
        let s = RawStatus::from(&st);
        rc(code).map(|_| s).map_err(|c| (c, s))
    }

    /// Starts receiving the matched message into `d`; same memory rule as [`RawComm::irecv`].
    pub(crate) fn irecv(mut self, d: &Desc) -> RawResult<RawRequest> {
        let mut r = MaybeUninit::<ffi::MPI_Request>::uninit();
        // SAFETY: as in `recv`, with the memory rule of `RawComm::irecv`.
        let code = unsafe { ffi::MPI_Imrecv(d.ptr, d.count, d.dt.handle, &mut self.handle, r.as_mut_ptr()) };
        std::mem::forget(self);
        rc(code)?;
        // SAFETY: initialised by the successful call.
        Ok(RawRequest(unsafe { r.assume_init() }))
    }
}

impl Drop for RawMessage {
    fn drop(&mut self) {
        // A matched message must be received, or it stays in MPI forever: take it into a scratch buffer of its
        // full size (never a smaller one: Open MPI 4.1 writes past the buffer when it truncates a large message).
        if !is_finalized() {
            let mut scratch = vec![0u8; self.bytes];
            let Ok(d) = Desc::bytes_mut(&mut scratch) else { return };
            let mut st = new_status();
            // SAFETY: the scratch buffer, described with a datatype that covers any size, holds the whole message;
            // the matched message is consumed here once.
            unsafe { ffi::MPI_Mrecv(d.ptr, d.count, d.dt.handle, &mut self.handle, &mut st) };
        }
    }
}

/// Copies `bytes`, received as raw bytes (MPI's packed form), into the elements of a contiguous view.
pub(crate) fn unpack_bytes(bytes: &[u8], into: &ViewMut) -> Result<()> {
    let e = elem_type(&into.elem).map_err(|c| c.error("unpacking an array"))?;
    if bytes.len() != into.len * e.mpi_size || !into.is_contiguous() {
        return Err(Error::new(
            ErrorKind::SizeMismatch,
            format!(
                "{} bytes do not unpack into {} elements of {}",
                bytes.len(),
                into.len,
                into.elem.name
            ),
        ));
    }
    if into.elem.predefined {
        // SAFETY: a predefined element type has no padding, so the packed form is the memory image; the view is
        // contiguous, exclusively borrowed and exactly `bytes.len()` bytes long (checked above).
        unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), into.ptr, bytes.len()) };
        return Ok(());
    }
    if bytes.len() > i32::MAX as usize {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            "out-of-band arrays of structs above 2 GiB are not supported",
        ));
    }
    let d = Desc::of_mut(into)?;
    let mut pos: c_int = 0;
    // SAFETY: `bytes` is read for its length; `d` describes the exclusively borrowed view, whose element count
    // times the element's MPI size equals the byte count (checked above), so MPI writes only inside the view.
    rc(unsafe {
        ffi::MPI_Unpack(
            bytes.as_ptr().cast(),
            bytes.len() as c_int,
            &mut pos,
            d.ptr,
            d.count,
            d.dt.handle,
            ffi::RSMPI_COMM_SELF,
        )
    })
    .map_err(|c| c.error("MPI_Unpack"))
}

/// An MPI request handle. Dropping an active request waits for it (the memory it uses is still borrowed then).
pub(crate) struct RawRequest(ffi::MPI_Request);

impl RawRequest {
    /// Whether the request has completed and been released.
    pub(crate) fn is_null(&self) -> bool {
        // SAFETY: reading a constant exported by the MPI shim.
        self.0.0 == unsafe { ffi::RSMPI_REQUEST_NULL }.0
    }

    /// Waits for completion; the request becomes null.
    pub(crate) fn wait(&mut self) -> Completed {
        let mut st = new_status();
        // SAFETY: `self.0` is an active or null request; MPI_Wait sets it to MPI_REQUEST_NULL.
        let code = unsafe { ffi::MPI_Wait(&mut self.0, &mut st) };
        let s = RawStatus::from(&st);
        rc(code).map(|_| s).map_err(|c| (c, s))
    }

    /// Tests for completion; on completion the request becomes null.
    pub(crate) fn test(&mut self) -> std::result::Result<Option<RawStatus>, (Code, RawStatus)> {
        let mut st = new_status();
        let mut flag: c_int = 0;
        // SAFETY: `self.0` is an active or null request; out pointers valid.
        let code = unsafe { ffi::MPI_Test(&mut self.0, &mut flag, &mut st) };
        let s = RawStatus::from(&st);
        rc(code).map(|_| (flag != 0).then_some(s)).map_err(|c| (c, s))
    }
}

impl RawRequest {
    /// A copy of the handle, for [`wait_handle`] while the request stays where it is.
    pub(crate) fn handle(&self) -> ffi::MPI_Request {
        self.0
    }

    /// Marks the request as completed elsewhere (by [`wait_handle`] on a copy of its handle).
    pub(crate) fn completed_elsewhere(&mut self) {
        // SAFETY: reading a constant exported by the MPI shim.
        self.0 = unsafe { ffi::RSMPI_REQUEST_NULL };
    }

    /// Cancels a pending receive: `Ok(None)` if it was cancelled, `Ok(Some(status))` if it had completed
    /// (matched) before the cancel took effect. The request becomes null either way.
    pub(crate) fn cancel(&mut self) -> RawResult<Option<RawStatus>> {
        // SAFETY: `self.0` is an active request (callers check); MPI_Cancel marks it, MPI_Wait completes it.
        rc(unsafe { ffi::MPI_Cancel(&mut self.0) })?;
        let mut st = new_status();
        // SAFETY: as above; the status pointer is valid.
        rc(unsafe { ffi::MPI_Wait(&mut self.0, &mut st) })?;
        let mut flag: c_int = 0;
        // SAFETY: `st` was filled by MPI_Wait.
        rc(unsafe { ffi::MPI_Test_cancelled(&st, &mut flag) })?;
        Ok(if flag != 0 { None } else { Some(RawStatus::from(&st)) })
    }
}

/// A private copy of a contiguous view (16-byte aligned storage), for sends that outlive the borrowed data.
pub(crate) struct OwnedCopy {
    storage: Vec<u128>,
    len: usize,
    elem: Elem,
}

impl OwnedCopy {
    /// Copies the elements of a contiguous view.
    pub(crate) fn of(v: &View) -> OwnedCopy {
        let bytes = v.len * v.elem.size;
        let mut storage = vec![0u128; bytes.div_ceil(16)];
        // SAFETY: the view is contiguous (out-of-band arrays are `Vec`s) and borrowed for this call; the storage
        // holds at least `bytes` bytes; the regions do not overlap.
        unsafe { ptr::copy_nonoverlapping(v.ptr, storage.as_mut_ptr().cast::<u8>(), bytes) };
        OwnedCopy {
            storage,
            len: v.len,
            elem: v.elem,
        }
    }

    /// A view of the copy.
    pub(crate) fn view(&self) -> View {
        View {
            ptr: self.storage.as_ptr().cast(),
            len: self.len,
            elem: self.elem,
            layout: Layout::Contiguous,
        }
    }
}

impl Drop for RawRequest {
    fn drop(&mut self) {
        if !self.is_null() && !is_finalized() {
            let _ = self.wait();
        }
    }
}

/// The completions reported by `MPI_Waitsome` / `MPI_Testsome`: indices with their status or error code.
fn some_completed(
    code: c_int,
    out: c_int,
    indices: &[c_int],
    sts: &[ffi::MPI_Status],
) -> RawResult<Vec<(usize, Completed)>> {
    if code != 0 && code != ffi::MPI_ERR_IN_STATUS as c_int {
        return Err(Code(code));
    }
    if out == ffi::MPI_UNDEFINED || out <= 0 {
        return Ok(Vec::new());
    }
    Ok((0..out as usize)
        .map(|k| {
            let s = RawStatus::from(&sts[k]);
            let e = if code == 0 { 0 } else { sts[k].MPI_ERROR };
            (indices[k] as usize, if e == 0 { Ok(s) } else { Err((Code(e), s)) })
        })
        .collect())
}

/// Blocks until at least one of the requests with handles `hs` (copies taken with [`RawRequest::handle`]) completes
/// (`MPI_Waitsome`); returns the indices that completed with their status or error code. The caller marks the
/// originals with [`RawRequest::completed_elsewhere`].
pub(crate) fn wait_some_handles(hs: &[ffi::MPI_Request]) -> RawResult<Vec<(usize, Completed)>> {
    let n = hs.len();
    let mut handles = hs.to_vec();
    let mut indices = vec![0 as c_int; n];
    let mut sts: Vec<ffi::MPI_Status> = (0..n).map(|_| new_status()).collect();
    let mut out: c_int = 0;
    // SAFETY: arrays of `n` handles, indices and statuses; each handle belongs to an active request owned by an
    // engine entry that nothing else tests while this wait runs (the progress callback skips marked entries).
    let code = unsafe {
        ffi::MPI_Waitsome(
            n as c_int,
            handles.as_mut_ptr(),
            &mut out,
            indices.as_mut_ptr(),
            sts.as_mut_ptr(),
        )
    };
    some_completed(code, out, &indices, &sts)
}

/// Tests all requests at once (`MPI_Testsome`: one round of progress, then a consistent look at every request).
/// Returns the indices of those that completed, with their status or error code; they become null.
pub(crate) fn test_some(reqs: &mut [&mut RawRequest]) -> RawResult<Vec<(usize, Completed)>> {
    let n = reqs.len();
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut handles: Vec<ffi::MPI_Request> = reqs.iter().map(|r| r.0).collect();
    let mut indices = vec![0 as c_int; n];
    let mut sts: Vec<ffi::MPI_Status> = (0..n).map(|_| new_status()).collect();
    let mut out: c_int = 0;
    // SAFETY: arrays of `n` requests, indices and statuses; every request is active or null.
    let code = unsafe {
        ffi::MPI_Testsome(
            n as c_int,
            handles.as_mut_ptr(),
            &mut out,
            indices.as_mut_ptr(),
            sts.as_mut_ptr(),
        )
    };
    for (r, h) in reqs.iter_mut().zip(&handles) {
        r.0 = *h;
    }
    some_completed(code, out, &indices, &sts)
}

/// Waits for all requests (`MPI_Waitall`); each becomes null. Returns the first failing code, if any.
pub(crate) fn wait_all(reqs: &mut [RawRequest]) -> std::result::Result<Vec<RawStatus>, Code> {
    let mut handles: Vec<ffi::MPI_Request> = reqs.iter().map(|r| r.0).collect();
    let mut sts: Vec<ffi::MPI_Status> = (0..reqs.len()).map(|_| new_status()).collect();
    // SAFETY: arrays of `len` requests and statuses; each request active or null.
    let code = unsafe { ffi::MPI_Waitall(handles.len() as c_int, handles.as_mut_ptr(), sts.as_mut_ptr()) };
    for (r, h) in reqs.iter_mut().zip(handles) {
        r.0 = h;
    }
    rc(code)?;
    Ok(sts.iter().map(RawStatus::from).collect())
}

// ---------------------------------------------------------------------------------------------------------------
// Collectives
// ---------------------------------------------------------------------------------------------------------------

/// Built-in reduction operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RawOp {
    Sum,
    Prod,
    Min,
    Max,
    LAnd,
    LOr,
    LXor,
    BAnd,
    BOr,
    BXor,
    MinLoc,
    MaxLoc,
}

fn op_handle(op: RawOp) -> ffi::MPI_Op {
    // SAFETY: reading predefined operation handles. MINLOC and MAXLOC are not exported by the rsmpi shim; under
    // Open MPI the handle `MPI_MAXLOC` is the address of the global `ompi_mpi_op_maxloc`, which is what is taken.
    unsafe {
        match op {
            RawOp::Sum => ffi::RSMPI_SUM,
            RawOp::Prod => ffi::RSMPI_PROD,
            RawOp::Min => ffi::RSMPI_MIN,
            RawOp::Max => ffi::RSMPI_MAX,
            RawOp::LAnd => ffi::RSMPI_LAND,
            RawOp::LOr => ffi::RSMPI_LOR,
            RawOp::LXor => ffi::RSMPI_LXOR,
            RawOp::BAnd => ffi::RSMPI_BAND,
            RawOp::BOr => ffi::RSMPI_BOR,
            RawOp::BXor => ffi::RSMPI_BXOR,
            RawOp::MinLoc => ffi::MPI_Op((&raw mut ffi::ompi_mpi_op_minloc).cast()),
            RawOp::MaxLoc => ffi::MPI_Op((&raw mut ffi::ompi_mpi_op_maxloc).cast()),
        }
    }
}

/// `MPI_IN_PLACE` of Open MPI (`(void *) 1`); bindgen drops the macro.
const IN_PLACE: *mut c_void = std::ptr::without_provenance_mut::<c_void>(1);

/// Runs a collective call blocking (`nb` false) or starts its non-blocking form (`nb` true, returning the
/// request). `$blocking` and `$nonblocking` are the two calls, the latter taking the request pointer last.
/// Used only inside `unsafe` blocks whose SAFETY notes cover both calls.
macro_rules! collective {
    ($nb:expr, $blocking:expr, |$r:ident| $nonblocking:expr) => {{
        if $nb {
            let mut req = MaybeUninit::<ffi::MPI_Request>::uninit();
            let $r = req.as_mut_ptr();
            rc($nonblocking)?;
            // (inside the caller's `unsafe` block) initialised by the successful call.
            Ok(Some(RawRequest(req.assume_init())))
        } else {
            rc($blocking)?;
            Ok(None)
        }
    }};
}

/// A blocking call done (`None`) or a non-blocking one started (`Some`).
pub(crate) type Started = RawResult<Option<RawRequest>>;

/// Argument arrays of a vector collective, which MPI reads until a non-blocking call completes: keep this value
/// alive at least as long as the request.
pub(crate) struct VArgs {
    counts: [Vec<c_int>; 2],
    displs: [Vec<c_int>; 2],
    types: [Vec<ffi::MPI_Datatype>; 2],
    _keep: Vec<Dt>,
}

impl RawComm {
    /// `MPI_Barrier` / `MPI_Ibarrier`.
    pub(crate) fn barrier_nb(&self, nb: bool) -> Started {
        // SAFETY: valid communicator; the request pointer (non-blocking form) is valid.
        unsafe { collective!(nb, ffi::MPI_Barrier(self.handle), |r| ffi::MPI_Ibarrier(self.handle, r)) }
    }

    /// `MPI_Bcast` / `MPI_Ibcast`. Memory rule (non-blocking): the buffer stays borrowed until completion.
    pub(crate) fn bcast(&self, d: &Desc, root: i32, nb: bool) -> Started {
        let h = self.handle;
        // SAFETY: `d` describes exclusively borrowed memory (written on non-roots, read on the root), kept alive
        // by the caller until the request completes.
        unsafe {
            collective!(nb, ffi::MPI_Bcast(d.ptr, d.count, d.dt.handle, root, h), |r| {
                ffi::MPI_Ibcast(d.ptr, d.count, d.dt.handle, root, h, r)
            })
        }
    }

    /// `MPI_Reduce`; `send` of `None` means in place (root only: the data is in `recv`).
    pub(crate) fn reduce(&self, send: Option<&Desc>, recv: Option<&Desc>, op: RawOp, root: i32, nb: bool) -> Started {
        let (sp, count, dt) = match (send, recv) {
            (Some(s), _) => (s.ptr, s.count, s.dt.handle),
            (None, Some(r)) => (IN_PLACE, r.count, r.dt.handle),
            (None, None) => return Err(Code(ffi::MPI_ERR_BUFFER as c_int)),
        };
        let rp = recv.map_or(ptr::null_mut(), |r| r.ptr);
        let (o, h) = (op_handle(op), self.handle);
        // SAFETY: the send description (or IN_PLACE) and the root's receive description come from live borrows
        // with the same element count (checked by the caller); non-roots pass no receive buffer, which MPI
        // ignores.
        unsafe {
            collective!(
                nb,
                ffi::MPI_Reduce(sp, rp, count, dt, o, root, h),
                |r| ffi::MPI_Ireduce(sp, rp, count, dt, o, root, h, r)
            )
        }
    }

    /// `MPI_Allreduce`, `MPI_Scan` or `MPI_Exscan` (and their non-blocking forms); `send` of `None`: in place.
    pub(crate) fn allreduce_like(
        &self,
        kind: ScanKind,
        send: Option<&Desc>,
        recv: &Desc,
        op: RawOp,
        nb: bool,
    ) -> Started {
        let sp = send.map_or(IN_PLACE, |s| s.ptr);
        let (o, h, rp, n, t) = (op_handle(op), self.handle, recv.ptr, recv.count, recv.dt.handle);
        // SAFETY: both descriptions come from live borrows of equal element counts (checked by the caller).
        unsafe {
            match kind {
                ScanKind::All => {
                    collective!(nb, ffi::MPI_Allreduce(sp, rp, n, t, o, h), |r| ffi::MPI_Iallreduce(
                        sp, rp, n, t, o, h, r
                    ))
                }
                ScanKind::Scan => collective!(nb, ffi::MPI_Scan(sp, rp, n, t, o, h), |r| ffi::MPI_Iscan(
                    sp, rp, n, t, o, h, r
                )),
                ScanKind::Exscan => {
                    collective!(nb, ffi::MPI_Exscan(sp, rp, n, t, o, h), |r| ffi::MPI_Iexscan(
                        sp, rp, n, t, o, h, r
                    ))
                }
            }
        }
    }

    /// `MPI_Reduce_scatter_block`: `recv` holds one block; `send` (or `recv` in place) holds `size` blocks.
    pub(crate) fn reduce_scatter_block(&self, send: &Desc, recv: &Desc, op: RawOp, nb: bool) -> Started {
        let (o, h) = (op_handle(op), self.handle);
        // SAFETY: the caller checked that `send` holds size × the elements of `recv`.
        unsafe {
            collective!(
                nb,
                ffi::MPI_Reduce_scatter_block(send.ptr, recv.ptr, recv.count, recv.dt.handle, o, h),
                |r| ffi::MPI_Ireduce_scatter_block(send.ptr, recv.ptr, recv.count, recv.dt.handle, o, h, r)
            )
        }
    }

    /// `MPI_Reduce_scatter` with per-rank element counts; `counts` must stay alive until completion.
    pub(crate) fn reduce_scatter(&self, send: &Desc, recv: &Desc, counts: &[c_int], op: RawOp, nb: bool) -> Started {
        let (o, h, t) = (op_handle(op), self.handle, recv.dt.handle);
        // SAFETY: `counts` has one entry per rank summing to the elements of `send`, this rank's entry equals the
        // elements of `recv` (checked by the caller); the element type is the same on both sides.
        unsafe {
            collective!(
                nb,
                ffi::MPI_Reduce_scatter(send.ptr, recv.ptr, counts.as_ptr(), t, o, h),
                |r| ffi::MPI_Ireduce_scatter(send.ptr, recv.ptr, counts.as_ptr(), t, o, h, r)
            )
        }
    }

    /// `MPI_Gather`, `MPI_Scatter`, `MPI_Allgather`, `MPI_Alltoall` (and non-blocking forms): `send` and `recv`
    /// describe one rank's block each; `recv` (gather) or `send` (scatter) is absent on non-roots.
    pub(crate) fn blocks(
        &self,
        kind: BlockKind,
        send: Option<&Desc>,
        recv: Option<&Desc>,
        root: i32,
        nb: bool,
    ) -> Started {
        // SAFETY: reading a constant exported by the MPI shim.
        let null_type = unsafe { ffi::RSMPI_DATATYPE_NULL };
        let null = (ptr::null_mut(), 0, send.or(recv).map_or(null_type, |d| d.dt.handle));
        let (sp, sc, st) = send.map_or(null, |d| (d.ptr, d.count, d.dt.handle));
        let (rp, rn, rt) = recv.map_or(null, |d| (d.ptr, d.count, d.dt.handle));
        let h = self.handle;
        // SAFETY: the descriptions come from live borrows; the caller checked the root's buffer holds `size`
        // blocks of the described length; arguments MPI ignores on non-roots are null/zero.
        unsafe {
            match kind {
                BlockKind::Gather => collective!(nb, ffi::MPI_Gather(sp, sc, st, rp, rn, rt, root, h), |r| {
                    ffi::MPI_Igather(sp, sc, st, rp, rn, rt, root, h, r)
                }),
                BlockKind::Scatter => collective!(nb, ffi::MPI_Scatter(sp, sc, st, rp, rn, rt, root, h), |r| {
                    ffi::MPI_Iscatter(sp, sc, st, rp, rn, rt, root, h, r)
                }),
                BlockKind::Allgather => collective!(nb, ffi::MPI_Allgather(sp, sc, st, rp, rn, rt, h), |r| {
                    ffi::MPI_Iallgather(sp, sc, st, rp, rn, rt, h, r)
                }),
                BlockKind::Alltoall => collective!(nb, ffi::MPI_Alltoall(sp, sc, st, rp, rn, rt, h), |r| {
                    ffi::MPI_Ialltoall(sp, sc, st, rp, rn, rt, h, r)
                }),
            }
        }
    }

    /// `MPI_Alltoallw` with one block per peer given as a description (address, count, datatype), so that any
    /// size and any offset can be expressed: byte offsets beyond `int` are folded into struct datatypes.
    /// The returned [`VArgs`] must outlive the request (non-blocking form).
    pub(crate) fn alltoallw(
        &self,
        send: &[Option<Desc>],
        recv: &[Option<Desc>],
        nb: bool,
    ) -> RawResult<(Option<RawRequest>, VArgs)> {
        let mut keep: Vec<Dt> = Vec::new();
        let (base_s, sc, sd, st) = w_args(send, &mut keep)?;
        let (base_r, rcnt, rd, rt) = w_args(recv, &mut keep)?;
        let args = VArgs {
            counts: [sc, rcnt],
            displs: [sd, rd],
            types: [st, rt],
            _keep: keep,
        };
        let h = self.handle;
        let a = &args;
        // SAFETY: all arrays have one entry per rank and live in `args`, which the caller keeps until the request
        // completes; every block lies inside a live borrow (send read, receive exclusively borrowed) at base +
        // displacement (or inside its struct type); absent blocks have count 0.
        let req = unsafe {
            collective!(
                nb,
                ffi::MPI_Alltoallw(
                    base_s as *const c_void,
                    a.counts[0].as_ptr(),
                    a.displs[0].as_ptr(),
                    a.types[0].as_ptr(),
                    base_r as *mut c_void,
                    a.counts[1].as_ptr(),
                    a.displs[1].as_ptr(),
                    a.types[1].as_ptr(),
                    h
                ),
                |r| ffi::MPI_Ialltoallw(
                    base_s as *const c_void,
                    a.counts[0].as_ptr(),
                    a.displs[0].as_ptr(),
                    a.types[0].as_ptr(),
                    base_r as *mut c_void,
                    a.counts[1].as_ptr(),
                    a.displs[1].as_ptr(),
                    a.types[1].as_ptr(),
                    h,
                    r
                )
            )
        }?;
        Ok((req, args))
    }
}

/// Per-peer arrays for `MPI_Alltoallw`: base address, counts, byte displacements, datatypes.
#[allow(clippy::type_complexity)]
fn w_args(
    ds: &[Option<Desc>],
    keep: &mut Vec<Dt>,
) -> RawResult<(usize, Vec<c_int>, Vec<c_int>, Vec<ffi::MPI_Datatype>)> {
    let n = ds.len();
    let base = ds.iter().flatten().map(|d| d.ptr as usize).min().unwrap_or(0);
    // SAFETY: reading a predefined handle.
    let byte = unsafe { ffi::RSMPI_UINT8_T };
    let (mut c, mut disp, mut t) = (vec![0 as c_int; n], vec![0 as c_int; n], vec![byte; n]);
    for (i, d) in ds.iter().enumerate() {
        let Some(d) = d else { continue };
        let off = d.ptr as usize - base;
        if off <= i32::MAX as usize {
            c[i] = d.count;
            disp[i] = off as c_int;
            t[i] = d.dt.handle;
        } else {
            let lens = [d.count];
            let disps = [off as ffi::MPI_Aint];
            let types = [d.dt.handle];
            let mut s = MaybeUninit::<ffi::MPI_Datatype>::uninit();
            // SAFETY: one-element arrays as the count 1 says; valid element type; valid out pointer.
            rc(unsafe {
                ffi::MPI_Type_create_struct(1, lens.as_ptr(), disps.as_ptr(), types.as_ptr(), s.as_mut_ptr())
            })?;
            // SAFETY: initialised by the successful call.
            let dt = Dt::commit_owned(unsafe { s.assume_init() })?;
            c[i] = 1;
            t[i] = dt.handle;
            keep.push(dt);
        }
    }
    Ok((base, c, disp, t))
}

/// Which of the reduce-like calls with one buffer per rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScanKind {
    All,
    Scan,
    Exscan,
}

/// Which of the one-block-per-rank calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlockKind {
    Gather,
    Scatter,
    Allgather,
    Alltoall,
}

// ---------------------------------------------------------------------------------------------------------------
// MPI datatypes of spmd's own element types
// ---------------------------------------------------------------------------------------------------------------

macro_rules! loc_type {
    ($t:ty, $global:ident) => {
        // SAFETY: `Loc<$t>` is `#[repr(C)] { value: $t, index: i32 }`, exactly the layout of the predefined pair
        // type (Open MPI's `$global`: value, then a C int, padded to the value's alignment).
        unsafe impl mpi::datatype::Equivalence for crate::buffer::Loc<$t> {
            type Out = mpi::datatype::DatatypeRef<'static>;
            fn equivalent_datatype() -> Self::Out {
                // SAFETY: the address of Open MPI's predefined datatype object is the `MPI_Datatype` handle; it
                // lives for the whole process.
                unsafe {
                    <mpi::datatype::DatatypeRef<'static> as mpi::raw::FromRaw>::from_raw(ffi::MPI_Datatype(
                        (&raw mut ffi::$global).cast(),
                    ))
                }
            }
        }
        // SAFETY: all-zero bytes are a valid `Loc<$t>` (zero value, index 0).
        unsafe impl bytemuck::Zeroable for crate::buffer::Loc<$t> {}
        // SAFETY: both fields accept any bit pattern; padding bytes carry no meaning.
        unsafe impl bytemuck::AnyBitPattern for crate::buffer::Loc<$t> {}
    };
}
loc_type!(f32, ompi_mpi_float_int);
loc_type!(f64, ompi_mpi_double_int);
loc_type!(i32, ompi_mpi_2int);
loc_type!(i64, ompi_mpi_long_int);

// ---------------------------------------------------------------------------------------------------------------
// Type identity and uninitialised receive targets
// ---------------------------------------------------------------------------------------------------------------

/// `value` as a `&U` when `T` is `U` (fast paths for `Vec`s of numbers in the object codec).
pub(crate) fn same_type_ref<T: ?Sized, U: 'static>(value: &T) -> Option<&U> {
    if typeid::of::<T>() != std::any::TypeId::of::<U>() {
        return None;
    }
    // SAFETY: the type ids are equal, so `T` is `U` (`U` is `'static` and the callers' `U`s have no lifetime
    // parameters, so erasing lifetimes in `T`'s id cannot equate two different types); `U` is sized, hence so is
    // `T`, and the reference is reborrowed for the same lifetime.
    Some(unsafe { &*(value as *const T).cast::<U>() })
}

/// `value` as a `T` when `T` is `U`; otherwise gives it back.
pub(crate) fn same_type_owned<U: 'static, T>(value: U) -> std::result::Result<T, U> {
    if typeid::of::<T>() != std::any::TypeId::of::<U>() {
        return Err(value);
    }
    let value = std::mem::ManuallyDrop::new(value);
    // SAFETY: `T` is `U` (as in `same_type_ref`); the value is read once and its original is never dropped.
    Ok(unsafe { ptr::read((&*value as *const U).cast::<T>()) })
}

/// A new `Vec` of `len` elements filled by `fill` (an MPI receive of exactly `len` elements into the view), without
/// zeroing the memory first.
pub(crate) fn vec_filled<T: crate::buffer::Data>(
    len: usize,
    fill: impl FnOnce(ViewMut) -> Result<()>,
) -> Result<Vec<T>> {
    let mut v: Vec<T> = Vec::with_capacity(len);
    let view = ViewMut {
        ptr: v.as_mut_ptr().cast(),
        len,
        elem: crate::buffer::Elem::of::<T>(),
        layout: Layout::Contiguous,
    };
    fill(view)?;
    // SAFETY: the capacity is at least `len`; `fill` succeeded, which means MPI wrote a message of exactly
    // `len` elements (callers derive `len` from the probed message size) into the first `len` slots, so every
    // field of every element is initialised (padding bytes may not be, which is allowed). `T: AnyBitPattern`, so
    // whatever bytes arrived form valid values.
    unsafe { v.set_len(len) };
    Ok(v)
}
