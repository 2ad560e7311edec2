//! Datatypes and buffer descriptions: what MPI is told about the memory of a buffer.
//!
//! One file over the usual size: every way of describing a buffer (numbers straight from their slice, views of
//! any layout, blocks of a view, derived datatypes for large and strided buffers) keeps one invariant, that a
//! description covers exactly the memory its buffer lends, and reviewing it means reading them together.

use std::collections::HashMap;
use std::ffi::{c_int, c_void};
use std::mem::MaybeUninit;
use std::sync::Mutex;

use mpi::ffi;

use super::{RawResult, is_finalized, rc};
use crate::buffer::{Buffer, BufferMut, Data, Elem, Layout, View, ViewMut, is_number};
use crate::error::{Error, ErrorKind, Result};

/// Counts above this are described with derived datatypes of this many elements per block.
pub(crate) const CHUNK: usize = 1 << 30;

/// A datatype handle, freed on drop when spmd created it.
pub(crate) struct Dt {
    pub(crate) handle: ffi::MPI_Datatype,
    owned: bool,
}

// SAFETY: a datatype handle is a process-wide identifier, usable from any thread MPI allows to call it.
unsafe impl Send for Dt {}
// SAFETY: as above; `&Dt` only reads the handle.
unsafe impl Sync for Dt {}

impl Dt {
    pub(crate) fn borrowed(handle: ffi::MPI_Datatype) -> Dt {
        Dt { handle, owned: false }
    }

    /// Takes ownership of a committed datatype created by this module tree.
    pub(crate) fn owned_committed(handle: ffi::MPI_Datatype) -> Dt {
        Dt { handle, owned: true }
    }

    pub(super) fn commit_owned(mut handle: ffi::MPI_Datatype) -> RawResult<Dt> {
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
pub(super) struct ElemType {
    pub(super) handle: ffi::MPI_Datatype,
    mpi_size: usize,
}

// SAFETY: datatype handles are process-wide identifiers.
unsafe impl Send for ElemType {}

static ELEM_TYPES: Mutex<Option<HashMap<std::any::TypeId, ElemType>>> = Mutex::new(None);

/// The MPI datatype for one element of `elem` whose extent is exactly `size_of::<T>()`, and its MPI size.
pub(super) fn elem_type(elem: &Elem) -> RawResult<ElemType> {
    if elem.predefined {
        return Ok(ElemType {
            handle: elem.datatype,
            mpi_size: elem.size,
        });
    }
    let mut cache = ELEM_TYPES.lock().unwrap_or_else(|p| p.into_inner());
    let cache = cache.get_or_insert_with(HashMap::new);
    if let Some(t) = cache.get(&elem.key) {
        return Ok(*t);
    }
    let mut lb: ffi::MPI_Aint = 0;
    let mut extent: ffi::MPI_Aint = 0;
    // SAFETY: `elem.datatype` is a committed datatype from rsmpi's `Equivalence`; the out pointers are valid.
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
        mpi_size: usize::try_from(size).unwrap_or(0),
    };
    cache.insert(elem.key, et);
    Ok(et)
}

/// The number of bytes MPI moves for one element (without padding): divides a byte count into an element count.
#[inline]
pub(crate) fn elem_mpi_size(elem: &Elem) -> RawResult<usize> {
    if elem.predefined {
        return Ok(elem.size);
    }
    Ok(elem_type(elem)?.mpi_size)
}

pub(super) fn c_count(n: usize) -> RawResult<c_int> {
    c_int::try_from(n).map_err(|_| super::Code(ffi::MPI_ERR_COUNT as c_int))
}

fn contiguous(count: usize, old: ffi::MPI_Datatype) -> RawResult<ffi::MPI_Datatype> {
    let count = c_count(count)?;
    let mut t = MaybeUninit::<ffi::MPI_Datatype>::uninit();
    // SAFETY: valid count and old type; valid out pointer.
    rc(unsafe { ffi::MPI_Type_contiguous(count, old, t.as_mut_ptr()) })?;
    // SAFETY: initialised by the successful call.
    Ok(unsafe { t.assume_init() })
}

fn free_type(mut t: ffi::MPI_Datatype) {
    // SAFETY: `t` is an intermediate type created in this module and used only to build another type; MPI allows
    // freeing it once the derived type exists.
    unsafe { ffi::MPI_Type_free(&mut t) };
}

/// `len` consecutive elements as one datatype (for counts above `i32::MAX`): `len / CHUNK` chunks followed by
/// the remainder. Its type signature is `len` elements, so a peer matches it with any description of `len`
/// elements (a C program with its own large type, or `len` split over several messages is not needed).
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
    // SAFETY: arrays of length 2 as the count says; both types valid.
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
    assert_eq!(
        shape.len(),
        strides.len(),
        "a strided layout has one stride per dimension"
    );
    let mut t = e;
    let mut owned = false;
    for d in (0..shape.len()).rev() {
        let Ok(n) = c_int::try_from(shape[d]) else {
            if owned {
                free_type(t);
            }
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "a strided view with a dimension of {} elements (above i32::MAX) is not supported",
                    shape[d]
                ),
            ));
        };
        let mut next = MaybeUninit::<ffi::MPI_Datatype>::uninit();
        let stride = strides[d] as ffi::MPI_Aint * elem_size as ffi::MPI_Aint;
        // SAFETY: count fits c_int (checked above); `t` is a valid type; the stride is in bytes as hvector expects.
        let code = unsafe { ffi::MPI_Type_create_hvector(n, 1, stride, t, next.as_mut_ptr()) };
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

/// A valid, non-null address for zero-length buffers. A dangling pointer such as `NonNull::dangling()` (address
/// 1 for bytes) is Open MPI's `MPI_IN_PLACE`, which collectives would take as "in place".
static EMPTY: u64 = 0;

fn nonempty_ptr(ptr: *mut u8, len: usize) -> *mut c_void {
    if len == 0 {
        (&raw const EMPTY).cast_mut().cast()
    } else {
        ptr.cast()
    }
}

/// A buffer as MPI sees it: address, count and datatype, plus the number of bytes it holds.
///
/// Built only from a view of a live borrow (or memory the holder owns); the holder keeps that memory valid while
/// any MPI operation uses the description.
pub(crate) struct Desc {
    pub(crate) ptr: *mut c_void,
    pub(crate) count: c_int,
    pub(crate) dt: Dt,
    /// Bytes MPI moves for this description (elements × MPI size of one element).
    pub(crate) bytes: usize,
    /// Whether those bytes lie contiguously from `ptr` with no padding (numbers, bytes).
    packed: bool,
    /// For a receive buffer that is not packed: where its first elements lie, to read the first bytes MPI sends
    /// without packing them all.
    head: Option<Box<Head>>,
}

/// The first elements of a description that is not one packed run: their datatype and byte offsets from `ptr`,
/// in the order MPI sends them.
struct Head {
    elem: ffi::MPI_Datatype,
    offsets: Vec<isize>,
}

/// How many leading elements [`Head`] records: enough for the 16-byte prefix of an object message.
const HEAD_ELEMS: usize = 16;

/// Byte offsets of the first `HEAD_ELEMS` elements of a layout, in MPI's (row-major) order.
fn head_offsets(len: usize, elem_size: usize, layout: &Layout) -> Vec<isize> {
    let k = len.min(HEAD_ELEMS);
    match layout {
        Layout::Contiguous => (0..k).map(|i| (i * elem_size) as isize).collect(),
        Layout::Strided { shape, strides } => {
            let mut idx = vec![0usize; shape.len()];
            let mut out = Vec::with_capacity(k);
            for _ in 0..k {
                let elems: isize = idx.iter().zip(strides).map(|(&i, &st)| i as isize * st).sum();
                out.push(elems * elem_size as isize);
                for d in (0..shape.len()).rev() {
                    idx[d] += 1;
                    if idx[d] < shape[d] {
                        break;
                    }
                    idx[d] = 0;
                }
            }
            out
        }
    }
}

// SAFETY: the description is a plain address plus datatype; whoever holds it across threads (the receive
// registry) also holds the borrow or ownership that keeps the memory valid, and MPI calls on it are made only
// at thread levels that allow them.
unsafe impl Send for Desc {}

impl Desc {
    #[inline]
    fn new(ptr: *mut u8, len: usize, elem: &Elem, layout: &Layout) -> Result<Desc> {
        // The common case, kept small so it inlines: contiguous elements of a predefined type.
        if elem.predefined && len <= i32::MAX as usize && len > 0 && matches!(layout, Layout::Contiguous) {
            return Ok(Desc {
                ptr: ptr.cast(),
                count: len as c_int,
                dt: Dt::borrowed(elem.datatype),
                bytes: len * elem.size,
                packed: true,
                head: None,
            });
        }
        Desc::new_general(ptr, len, elem, layout)
    }

    #[inline(never)]
    fn new_general(ptr: *mut u8, len: usize, elem: &Elem, layout: &Layout) -> Result<Desc> {
        let e = elem_type(elem).map_err(|c| c.error("describing the element type"))?;
        let bytes = len
            .checked_mul(e.mpi_size)
            .ok_or_else(|| Error::new(ErrorKind::InvalidArgument, "buffer size overflows usize"))?;
        let ptr = nonempty_ptr(ptr, len);
        let (count, dt) = match layout {
            _ if len == 0 => (0, Dt::borrowed(e.handle)),
            Layout::Contiguous => match c_int::try_from(len) {
                Ok(n) => (n, Dt::borrowed(e.handle)),
                Err(_) => (
                    1,
                    big_contiguous(len, e.handle, elem.size).map_err(|c| c.error("describing a large buffer"))?,
                ),
            },
            Layout::Strided { shape, strides } => (1, strided(shape, strides, e.handle, elem.size)?),
        };
        let packed = matches!(layout, Layout::Contiguous) && e.mpi_size == elem.size;
        Ok(Desc {
            ptr,
            count,
            dt,
            bytes,
            packed,
            head: None,
        })
    }

    /// Whether the description holds a derived datatype of its own (else a predefined one).
    pub(crate) fn owns_datatype(&self) -> bool {
        self.dt.owned
    }

    /// Whether the described memory, in the order MPI sends it, starts with `prefix` (false when it is shorter).
    pub(crate) fn starts_with(&self, prefix: &[u8]) -> bool {
        self.with_head(prefix.len(), |head| head == prefix).unwrap_or(false)
    }

    /// Copies the first `out.len()` bytes of the described memory, in the order MPI sends it, into `out`.
    ///
    /// # Panics
    /// If the description holds fewer bytes.
    pub(crate) fn read_prefix(&self, out: &mut [u8]) {
        self.with_head(out.len(), |head| out.copy_from_slice(head))
            .expect("read_prefix past the described memory");
    }

    /// Runs `f` on the first `n` bytes of the described memory as MPI sends it: straight from memory for one
    /// packed run, else packed from its first elements (a strided or padded receive buffer, see [`Head`]) with
    /// `MPI_Pack`. `None` if the description holds fewer bytes.
    fn with_head<R>(&self, n: usize, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        if self.bytes < n {
            return None;
        }
        if self.packed {
            // SAFETY: the description covers at least `n` contiguous, initialised bytes of live memory (a packed
            // run of `bytes` bytes from `ptr`, checked above).
            return Some(f(unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), n) }));
        }
        let h = self.head.as_ref()?;
        // SAFETY: reading a constant exported by rsmpi's shim.
        let comm = unsafe { ffi::RSMPI_COMM_WORLD };
        let mut one: c_int = 0;
        // SAFETY: a valid element datatype; valid out pointer.
        if unsafe { ffi::MPI_Pack_size(1, h.elem, comm, &mut one) } != 0 || one <= 0 {
            return None;
        }
        let mut packed = vec![0u8; one as usize * h.offsets.len()];
        let mut position: c_int = 0;
        for &off in &h.offsets {
            if position as usize >= n {
                break;
            }
            // SAFETY: `off` is the byte offset of one of the described elements from `ptr` (computed from the
            // view's shape and strides when the description was made), so it addresses a live, initialised element
            // of the elem type; the output holds `MPI_Pack_size` bytes per recorded element.
            let rc = unsafe {
                ffi::MPI_Pack(
                    self.ptr.cast::<u8>().wrapping_offset(off).cast(),
                    1,
                    h.elem,
                    packed.as_mut_ptr().cast(),
                    packed.len() as c_int,
                    &mut position,
                    comm,
                )
            };
            if rc != 0 {
                return None;
            }
        }
        ((position as usize) >= n).then(|| f(&packed[..n]))
    }

    /// Describes a buffer: [`Desc::of_contig`] where it applies, else [`Desc::of`] its view.
    #[inline]
    pub(crate) fn of_buf<B: Buffer + ?Sized>(buf: &B) -> Result<Desc> {
        match Desc::of_contig(buf) {
            Some(d) => Ok(d),
            None => Desc::of(&buf.view()),
        }
    }

    /// Describes a buffer to receive into: [`Desc::of_contig_mut`] where it applies, else [`Desc::of_mut`] its
    /// view.
    #[inline]
    pub(crate) fn of_buf_mut<B: BufferMut + ?Sized>(buf: &mut B) -> Result<Desc> {
        match Desc::of_contig_mut(buf) {
            Some(d) => Ok(d),
            None => Desc::of_mut(&buf.view_mut()),
        }
    }

    /// Describes a buffer of one of the number types whose elements lie contiguously (slices, vectors, arrays,
    /// standard-layout ndarrays, scalars) straight from its memory, without building a view; `None` for any other
    /// buffer, and for none or more than `i32::MAX` elements, which [`Desc::of`] describes.
    #[inline]
    fn of_contig<B: Buffer + ?Sized>(buf: &B) -> Option<Desc> {
        if !is_number::<B::Item>() {
            return None;
        }
        let (ptr, len) = buf.contig()?;
        Desc::number_run::<B::Item>(ptr.cast_mut(), len)
    }

    /// As [`Desc::of_contig`], for a buffer to receive into (its memory exclusively borrowed by the caller).
    #[inline]
    fn of_contig_mut<B: BufferMut + ?Sized>(buf: &mut B) -> Option<Desc> {
        if !is_number::<B::Item>() {
            return None;
        }
        let (ptr, len) = buf.contig_mut()?;
        Desc::number_run::<B::Item>(ptr, len)
    }

    /// `len` contiguous elements of the number type `T` from `ptr`, which the buffer that gave them covers.
    #[inline(always)]
    fn number_run<T: Data>(ptr: *mut u8, len: usize) -> Option<Desc> {
        if len == 0 || len > i32::MAX as usize {
            return None;
        }
        Some(Desc {
            ptr: ptr.cast(),
            count: len as c_int,
            // A number type's datatype is predefined: its size is `size_of::<T>()` and nothing to free.
            dt: Dt::borrowed(mpi::raw::AsRaw::as_raw(&T::equivalent_datatype())),
            bytes: len * std::mem::size_of::<T>(),
            packed: true,
            head: None,
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
        let mut d = Desc::new(v.ptr, v.len, &v.elem, &v.layout)?;
        if !d.packed && v.len > 0 {
            // A receive buffer: what arrives is checked for an object's header (`starts_with`).
            let elem = elem_type(&v.elem)
                .map_err(|c| c.error("describing the element type"))?
                .handle;
            d.head = Some(Box::new(Head {
                elem,
                offsets: head_offsets(v.len, v.elem.size, &v.layout),
            }));
        }
        Ok(d)
    }

    /// Describes bytes (any length).
    pub(crate) fn bytes(b: &[u8]) -> Result<Desc> {
        Desc::new(b.as_ptr().cast_mut(), b.len(), &Elem::of::<u8>(), &Layout::Contiguous)
    }

    /// Describes writable bytes (any length).
    pub(crate) fn bytes_mut(b: &mut [u8]) -> Result<Desc> {
        Desc::new(b.as_mut_ptr(), b.len(), &Elem::of::<u8>(), &Layout::Contiguous)
    }

    /// Describes `len` contiguous elements starting `offset` elements into a contiguous view (one rank's block).
    ///
    /// # Panics
    /// If the block does not lie inside the view, or the view is not contiguous.
    pub(crate) fn block(v: &ViewMut, offset: usize, len: usize) -> Result<Desc> {
        assert!(v.is_contiguous(), "blocks are taken from contiguous views only");
        assert!(
            offset.checked_add(len).is_some_and(|end| end <= v.len),
            "block {offset}+{len} outside a view of {} elements",
            v.len
        );
        // `wrapping_add` keeps this free of `unsafe`; the assertion above keeps it inside the view.
        let ptr = v.ptr.wrapping_add(offset * v.elem.size);
        Desc::new(ptr, len, &v.elem, &Layout::Contiguous)
    }

    /// Describes `len` contiguous elements starting `offset` elements into a contiguous read-only view.
    ///
    /// # Panics
    /// If the block does not lie inside the view, or the view is not contiguous.
    pub(crate) fn block_of(v: &View, offset: usize, len: usize) -> Result<Desc> {
        assert!(v.is_contiguous(), "blocks are taken from contiguous views only");
        assert!(
            offset.checked_add(len).is_some_and(|end| end <= v.len),
            "block {offset}+{len} outside a view of {} elements",
            v.len
        );
        let ptr = v.ptr.cast_mut().wrapping_add(offset * v.elem.size);
        Desc::new(ptr, len, &v.elem, &Layout::Contiguous)
    }
}

/// The base of a contiguous buffer for the variable-count calls: address, element datatype and length, with
/// per-rank counts and displacements given apart (in elements).
pub(crate) struct VBase {
    pub(crate) ptr: *mut c_void,
    pub(crate) dt: ffi::MPI_Datatype,
    pub(crate) len: usize,
}

impl VBase {
    fn new(ptr: *mut u8, len: usize, elem: &Elem) -> Result<VBase> {
        let e = elem_type(elem).map_err(|c| c.error("describing the element type"))?;
        Ok(VBase {
            ptr: nonempty_ptr(ptr, len),
            dt: e.handle,
            len,
        })
    }

    /// The base of a contiguous read-only view.
    ///
    /// # Panics
    /// If the view is not contiguous.
    pub(crate) fn of(v: &View) -> Result<VBase> {
        assert!(v.is_contiguous(), "variable-count buffers are contiguous");
        VBase::new(v.ptr.cast_mut(), v.len, &v.elem)
    }

    /// The base of a contiguous writable view.
    ///
    /// # Panics
    /// If the view is not contiguous.
    pub(crate) fn of_mut(v: &ViewMut) -> Result<VBase> {
        assert!(v.is_contiguous(), "variable-count buffers are contiguous");
        VBase::new(v.ptr, v.len, &v.elem)
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
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), into.ptr, bytes.len()) };
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

/// Sets every element of a contiguous view of integers to 0 or 1 (non-zero becomes 1): the truth values of a
/// logical reduction.
///
/// # Panics
/// If the view is not contiguous.
pub(crate) fn normalize_truth(v: &ViewMut) {
    assert!(v.is_contiguous(), "truth values are normalised in contiguous buffers");
    let size = v.elem.size;
    if v.len == 0 || size == 0 {
        return;
    }
    // SAFETY: a contiguous view of `len` elements of `size` bytes each, exclusively borrowed by the caller's
    // `ViewMut`; integers accept any bit pattern, so writing 0 or 1 (little- or big-endian) keeps them valid.
    let bytes = unsafe { std::slice::from_raw_parts_mut(v.ptr, v.len * size) };
    for e in bytes.chunks_exact_mut(size) {
        let truth = e.iter().any(|&b| b != 0);
        e.fill(0);
        if truth {
            if cfg!(target_endian = "little") {
                e[0] = 1;
            } else {
                e[size - 1] = 1;
            }
        }
    }
}
