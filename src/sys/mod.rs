//! The only module tree with `unsafe`: every call into the MPI C library, every view of user memory handed to it,
//! and the owning types whose constructors enforce what MPI needs.
//!
//! The invariants each `unsafe` block relies on are established here, next to it, not by callers elsewhere:
//! - memory handed to MPI comes from a [`Desc`](datatype::Desc), built only from a live borrow of a buffer
//!   (`crate::buffer` views) with its element count checked against the borrow; requests that still use memory
//!   own the borrow's lifetime (scopes) or the memory itself (object requests);
//! - integer conversions to MPI's `int` counts are checked (`try_from`), never `as`; counts beyond `int` become
//!   derived datatypes;
//! - a receive never meets a message larger than its buffer: the size is learnt first with a matched probe
//!   (`MPI_Mprobe` / `MPI_Improbe`) and that very message is received (`MPI_Mrecv` / `MPI_Imrecv`) — except on
//!   the private duplicate of the size agreements ([`agree`]), where only spmd sends, each tag with a length of
//!   its own;
//! - zero-length buffers never pass a dangling address (which some MPIs read as `MPI_IN_PLACE`).
//!
//! Standard MPI only: constants that are macros in `mpi.h` come from a small C file compiled against the MPI in
//! use (`shim.c`), so the same code builds on Open MPI and MPICH.

#![allow(unsafe_code)]

pub(crate) mod affinity;
pub(crate) mod agree;
pub(crate) mod boxes;
pub(crate) mod coll;
pub(crate) mod comm;
pub(crate) mod datatype;
pub(crate) mod file;
pub(crate) mod heartbeat;
pub(crate) mod memory;
pub(crate) mod p2p;
pub(crate) mod request;
pub(crate) mod topo;
pub(crate) mod window;

use std::ffi::{CStr, c_char, c_int, c_void};

use mpi::ffi;

use crate::error::{Error, ErrorKind, Result};

pub(crate) use comm::RawComm;
pub(crate) use datatype::Desc;
pub(crate) use p2p::{RawMessage, RawStatus};
pub(crate) use request::RawRequest;

unsafe extern "C" {
    fn spmd_in_place() -> *mut c_void;
    fn spmd_bottom() -> *mut c_void;
    fn spmd_op_minloc() -> ffi::MPI_Op;
    fn spmd_op_maxloc() -> ffi::MPI_Op;
    fn spmd_type_byte() -> ffi::MPI_Datatype;
    fn spmd_type_float_int() -> ffi::MPI_Datatype;
    fn spmd_type_double_int() -> ffi::MPI_Datatype;
    fn spmd_type_2int() -> ffi::MPI_Datatype;
    fn spmd_type_long_int() -> ffi::MPI_Datatype;
    fn spmd_tag_ub_key() -> c_int;
    fn spmd_order_c() -> c_int;
    pub(crate) fn spmd_mode_create() -> c_int;
    pub(crate) fn spmd_mode_wronly() -> c_int;
    pub(crate) fn spmd_mode_rdonly() -> c_int;
    fn spmd_mode_nocheck() -> c_int;
}

/// An MPI error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Code(pub(crate) c_int);

impl Code {
    /// An [`Error`] of kind [`ErrorKind::Mpi`] naming the call that failed.
    pub(crate) fn error(self, what: &str) -> Error {
        Error::new(
            ErrorKind::Mpi,
            format!("{what} failed: {} (MPI error {})", error_string(self.0), self.0),
        )
    }
}

/// The result of a raw call: the MPI error code on failure.
pub(crate) type RawResult<T> = std::result::Result<T, Code>;

#[inline(always)]
pub(crate) fn rc(code: c_int) -> RawResult<()> {
    if code == ffi::MPI_SUCCESS as c_int {
        Ok(())
    } else {
        Err(Code(code))
    }
}

/// `Ok` for `MPI_SUCCESS`, else an [`ErrorKind::Mpi`] error naming `what`.
pub(crate) fn check(code: c_int, what: &str) -> Result<()> {
    rc(code).map_err(|c| c.error(what))
}

/// MPI's text for an error code.
pub(crate) fn error_string(code: c_int) -> String {
    let mut buf = vec![0 as c_char; ffi::MPI_MAX_ERROR_STRING as usize + 1];
    let mut len: c_int = 0;
    // SAFETY: the buffer holds MPI_MAX_ERROR_STRING characters as MPI requires.
    let rc = unsafe { ffi::MPI_Error_string(code, buf.as_mut_ptr(), &mut len) };
    if rc != 0 {
        return format!("unknown MPI error {code}");
    }
    let bytes: Vec<u8> = buf[..len.clamp(0, buf.len() as c_int) as usize]
        .iter()
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Whether `MPI_Init` has been called in this process.
pub(crate) fn is_initialized() -> bool {
    let mut flag: c_int = 0;
    // SAFETY: callable at any time; valid out pointer.
    unsafe { ffi::MPI_Initialized(&mut flag) };
    flag != 0
}

/// Whether `MPI_Finalize` has been called in this process.
pub(crate) fn is_finalized() -> bool {
    let mut flag: c_int = 0;
    // SAFETY: callable at any time; valid out pointer.
    unsafe { ffi::MPI_Finalized(&mut flag) };
    flag != 0
}

/// Whether MPI is usable now (initialised, not finalised).
pub(crate) fn is_running() -> bool {
    is_initialized() && !is_finalized()
}

/// The thread level MPI runs at (`MPI_Query_thread`), as MPI's constant.
pub(crate) fn query_thread() -> c_int {
    let mut level: c_int = 0;
    // SAFETY: MPI is initialised (callers check); valid out pointer.
    unsafe { ffi::MPI_Query_thread(&mut level) };
    level
}

/// MPI's constants for the four thread levels, lowest first.
pub(crate) fn thread_constants() -> [c_int; 4] {
    // SAFETY: reading constants exported by rsmpi's shim.
    unsafe {
        [
            ffi::RSMPI_THREAD_SINGLE,
            ffi::RSMPI_THREAD_FUNNELED,
            ffi::RSMPI_THREAD_SERIALIZED,
            ffi::RSMPI_THREAD_MULTIPLE,
        ]
    }
}

/// `MPI_ORDER_C`.
pub(crate) fn order_c() -> c_int {
    // SAFETY: a function of the shim returning a constant.
    unsafe { spmd_order_c() }
}

/// Ends the whole job (`MPI_Abort` on `MPI_COMM_WORLD`) if MPI is running.
///
/// Waits a moment first: the launcher kills every process as soon as the abort reaches it, and MPICH's launcher
/// then drops output it has not forwarded yet, which would lose the line that says why the job ended.
pub(crate) fn abort_world(code: i32) {
    if is_running() {
        use std::io::Write;
        let _ = std::io::stderr().flush();
        std::thread::sleep(std::time::Duration::from_millis(200));
        // SAFETY: MPI is running; the world handle is valid for the life of MPI.
        unsafe { ffi::MPI_Abort(ffi::RSMPI_COMM_WORLD, code) };
    }
}

/// `MPI_Get_processor_name`.
pub(crate) fn processor_name() -> Result<String> {
    let mut buf = vec![0 as c_char; ffi::MPI_MAX_PROCESSOR_NAME as usize + 1];
    let mut len: c_int = 0;
    // SAFETY: the buffer holds MPI_MAX_PROCESSOR_NAME characters; MPI is running (checked by the caller).
    let rc = unsafe { ffi::MPI_Get_processor_name(buf.as_mut_ptr(), &mut len) };
    check(rc, "MPI_Get_processor_name")?;
    let bytes: Vec<u8> = buf[..len.clamp(0, buf.len() as c_int) as usize]
        .iter()
        .map(|&c| c as u8)
        .collect();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// `MPI_Get_library_version`, without trailing NULs or newlines.
pub(crate) fn library_version() -> String {
    let mut buf = vec![0 as c_char; ffi::MPI_MAX_LIBRARY_VERSION_STRING as usize + 1];
    let mut len: c_int = 0;
    // SAFETY: the buffer holds MPI_MAX_LIBRARY_VERSION_STRING characters; callable before init.
    unsafe { ffi::MPI_Get_library_version(buf.as_mut_ptr(), &mut len) };
    // SAFETY: MPI writes a NUL-terminated string into the zeroed buffer.
    let s = unsafe { CStr::from_ptr(buf.as_ptr()) };
    s.to_string_lossy().trim_end_matches(['\0', '\n', ' ']).to_string()
}

/// `MPI_Wtime`.
pub(crate) fn wtime() -> f64 {
    // SAFETY: a plain call.
    unsafe { ffi::RSMPI_Wtime() }
}

/// The largest tag (`MPI_TAG_UB` attribute of the world communicator).
pub(crate) fn tag_ub() -> i32 {
    let mut val: *mut c_int = std::ptr::null_mut();
    let mut flag: c_int = 0;
    // SAFETY: MPI is running; the attribute value of MPI_TAG_UB is a pointer to an int owned by MPI.
    unsafe {
        ffi::MPI_Comm_get_attr(
            ffi::RSMPI_COMM_WORLD,
            spmd_tag_ub_key(),
            (&mut val as *mut *mut c_int).cast(),
            &mut flag,
        )
    };
    if flag == 0 || val.is_null() {
        return 32767;
    }
    // SAFETY: MPI said the attribute is set; it points to an int for the life of MPI.
    unsafe { *val }
}

/// `MPI_PROC_NULL`.
pub(crate) fn proc_null() -> i32 {
    // SAFETY: reading a constant exported by rsmpi's shim.
    unsafe { ffi::RSMPI_PROC_NULL }
}

/// `MPI_ANY_SOURCE`.
pub(crate) fn any_source() -> i32 {
    // SAFETY: reading a constant exported by rsmpi's shim.
    unsafe { ffi::RSMPI_ANY_SOURCE }
}

/// `MPI_ANY_TAG`.
pub(crate) fn any_tag() -> i32 {
    // SAFETY: reading a constant exported by rsmpi's shim.
    unsafe { ffi::RSMPI_ANY_TAG }
}

/// `MPI_BYTE`.
pub(crate) fn byte_type() -> ffi::MPI_Datatype {
    // SAFETY: a constant from the shim.
    unsafe { spmd_type_byte() }
}

/// `MPI_IN_PLACE`.
pub(crate) fn in_place() -> *mut c_void {
    // SAFETY: a constant from the shim.
    unsafe { spmd_in_place() }
}

/// `MPI_BOTTOM` (address 0 for absolute-address datatypes).
pub(crate) fn bottom() -> *mut c_void {
    // SAFETY: a constant from the shim.
    unsafe { spmd_bottom() }
}

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

impl RawOp {
    pub(crate) fn handle(self) -> ffi::MPI_Op {
        // SAFETY: reading predefined operation handles (rsmpi's shim and ours).
        unsafe {
            match self {
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
                RawOp::MinLoc => spmd_op_minloc(),
                RawOp::MaxLoc => spmd_op_maxloc(),
            }
        }
    }
}

macro_rules! loc_type {
    ($t:ty, $shim:ident) => {
        // SAFETY: `Loc<$t>` is `#[repr(C)] { value: $t, index: i32 }`, the layout of MPI's predefined pair type
        // (value, then a C int, padded to the value's alignment), whose handle the shim returns.
        unsafe impl mpi::datatype::Equivalence for crate::buffer::Loc<$t> {
            type Out = mpi::datatype::DatatypeRef<'static>;
            fn equivalent_datatype() -> Self::Out {
                // SAFETY: a predefined datatype handle, valid for the whole process.
                unsafe { <mpi::datatype::DatatypeRef<'static> as mpi::raw::FromRaw>::from_raw($shim()) }
            }
        }
        // SAFETY: all-zero bytes are a valid `Loc<$t>` (zero value, index 0).
        unsafe impl bytemuck::Zeroable for crate::buffer::Loc<$t> {}
        // SAFETY: both fields accept any bit pattern; padding bytes carry no meaning.
        unsafe impl bytemuck::AnyBitPattern for crate::buffer::Loc<$t> {}
    };
}
loc_type!(f32, spmd_type_float_int);
loc_type!(f64, spmd_type_double_int);
loc_type!(i32, spmd_type_2int);
loc_type!(i64, spmd_type_long_int);

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
    Ok(unsafe { std::ptr::read((&*value as *const U).cast::<T>()) })
}
