//! Boxes of n-dimensional arrays ([`BoxSel`], described to MPI as subarray datatypes, also by the parallel file
//! I/O) and box exchanges between arrays: `MPI_Alltoallw` with one subarray datatype per peer, so that scatter,
//! gather and redistribution of distributed arrays move elements straight between the arrays' storage, without
//! packing.

use std::ffi::{c_int, c_void};
use std::mem::MaybeUninit;

use mpi::ffi;

use super::datatype::{Dt, c_count, elem_type};
use super::{RawComm, RawOp, RawRequest, RawResult, byte_type, rc};
use crate::buffer::{Data, Elem};
use crate::error::{Error, ErrorKind, Result};

/// One side of a box exchange: an n-dimensional array in C order and, per peer, the box to send from it or to
/// receive into it (`None`: nothing).
pub(crate) struct Side<'a, P> {
    pub(crate) data: P,
    pub(crate) shape: &'a [usize],
    pub(crate) boxes: &'a [Option<BoxSel>],
}

fn check_side(what: &str, len: usize, shape: &[usize], boxes: &[Option<BoxSel>], size: usize) {
    assert_eq!(boxes.len(), size, "{what}: one box per rank");
    assert_eq!(
        shape_count(shape),
        Some(len),
        "{what}: shape {shape:?} does not describe {len} elements"
    );
    for b in boxes.iter().flatten() {
        assert_eq!(b.start.len(), shape.len(), "{what}: box dimensions");
        for d in 0..shape.len() {
            let end = b.start[d].checked_add(b.len[d]);
            assert!(
                end.is_some_and(|e| e <= shape[d]),
                "{what}: box {b:?} outside shape {shape:?}"
            );
        }
    }
}

fn counts(boxes: &[Option<BoxSel>]) -> Vec<u64> {
    boxes
        .iter()
        .map(|b| b.as_ref().map_or(0, |b| b.count() as u64))
        .collect()
}

impl RawComm {
    /// Sends each peer its box of `send` and receives each peer's box into `recv` (collective).
    ///
    /// First the ranks check, with two small non-blocking collectives, that what each rank sends a peer is as
    /// long as what that peer expects (otherwise every rank returns an error and no data moves) and whether any
    /// rank has receives pending (`busy`; the two checks are completed by `wait`, which keeps them moving). The data
    /// then moves with a blocking `MPI_Alltoallw` (see the note at the call).
    /// MPI touches only elements inside the boxes, which are asserted to lie inside the arrays.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn exchange_boxes<T: Data>(
        &self,
        op: &str,
        send: Side<'_, &[T]>,
        recv: Side<'_, &mut [T]>,
        busy: bool,
        wait: &dyn Fn(RawRequest) -> Result<()>,
    ) -> Result<()> {
        let size = self.size()?;
        check_side(op, send.data.len(), send.shape, send.boxes, size);
        check_side(op, recv.data.len(), recv.shape, recv.boxes, size);

        // 1. What each peer will send me, against what I expect.
        let sc = counts(send.boxes);
        let expected = counts(recv.boxes);
        let mut got = vec![0u64; size];
        {
            let n: c_int = 1;
            let mut req = MaybeUninit::<ffi::MPI_Request>::uninit();
            // SAFETY: `sc` and `got` hold one u64 per rank; the request is waited for before they drop.
            rc(unsafe {
                ffi::MPI_Ialltoall(
                    sc.as_ptr().cast::<c_void>(),
                    n,
                    ffi::RSMPI_UINT64_T,
                    got.as_mut_ptr().cast::<c_void>(),
                    n,
                    ffi::RSMPI_UINT64_T,
                    self.handle,
                    req.as_mut_ptr(),
                )
            })
            .map_err(|c| c.error(op))?;
            // SAFETY: initialised by the successful call.
            wait(RawRequest::new(unsafe { req.assume_init() }))?;
        }
        let wrong = (0..size).find(|&p| got[p] != expected[p]);
        // 2. Whether any rank found a mismatch, and whether any has receives pending.
        let mine = [wrong.is_some() as i64, busy as i64];
        let mut all = [0i64; 2];
        {
            let mut req = MaybeUninit::<ffi::MPI_Request>::uninit();
            // SAFETY: two i64 in, two out; waited for before they drop.
            rc(unsafe {
                ffi::MPI_Iallreduce(
                    mine.as_ptr().cast::<c_void>(),
                    all.as_mut_ptr().cast::<c_void>(),
                    2,
                    ffi::RSMPI_INT64_T,
                    RawOp::Max.handle(),
                    self.handle,
                    req.as_mut_ptr(),
                )
            })
            .map_err(|c| c.error(op))?;
            // SAFETY: initialised by the successful call.
            wait(RawRequest::new(unsafe { req.assume_init() }))?;
        }
        if let Some(p) = wrong {
            return Err(Error::new(
                ErrorKind::SizeMismatch,
                format!(
                    "{op}: rank {p} sends {} elements where this rank expects {}",
                    got[p], expected[p]
                ),
            ));
        }
        if all[0] != 0 {
            return Err(Error::new(
                ErrorKind::SizeMismatch,
                format!("{op}: the ranks disagree on the layout (see the error of the rank that noticed)"),
            ));
        }

        // 3. The data.
        let elem = Elem::of::<T>();
        let mut keep: Vec<Dt> = Vec::new();
        let mut side = |shape: &[usize], boxes: &[Option<BoxSel>]| -> Result<(Vec<c_int>, Vec<ffi::MPI_Datatype>)> {
            let mut cnt = vec![0 as c_int; size];
            let mut types = vec![byte_type(); size];
            for (p, b) in boxes.iter().enumerate() {
                let Some(b) = b else { continue };
                if b.count() == 0 {
                    continue;
                }
                let t = subarray(&elem, shape, b).map_err(|c| c.error(op))?;
                cnt[p] = 1;
                types[p] = t.handle;
                keep.push(t);
            }
            Ok((cnt, types))
        };
        let (s_cnt, s_types) = side(send.shape, send.boxes)?;
        let (r_cnt, r_types) = side(recv.shape, recv.boxes)?;
        let displs = vec![0 as c_int; size];
        // Never hand MPI a dangling address (a one-byte type's dangling pointer equals Open MPI's MPI_IN_PLACE):
        // an empty array has no boxes, so MPI reads nothing from this stand-in.
        let mut stand_in = [0u64; 1];
        let s_ptr: *const c_void = if send.data.is_empty() {
            stand_in.as_ptr().cast()
        } else {
            send.data.as_ptr().cast()
        };
        let r_ptr: *mut c_void = if recv.data.is_empty() {
            stand_in.as_mut_ptr().cast()
        } else {
            recv.data.as_mut_ptr().cast()
        };
        // Blocking even when receives are pending: Open MPI 4.1.4's MPI_Ialltoallw crashes while retaining
        // the datatypes of these subarray types (signal 11, reproduced by `dist`'s cases under
        // SPMD_TIMEOUT, which makes every wait non-blocking).
        // SAFETY: per peer a count of 0 or 1 subarray type whose box lies inside the array at the pointer (checked
        // above and by `subarray`); send read-only, receive exclusively borrowed for this call.
        rc(unsafe {
            ffi::MPI_Alltoallw(
                s_ptr,
                s_cnt.as_ptr(),
                displs.as_ptr(),
                s_types.as_ptr(),
                r_ptr,
                r_cnt.as_ptr(),
                displs.as_ptr(),
                r_types.as_ptr(),
                self.handle,
            )
        })
        .map_err(|c| c.error(op))?;
        drop(keep);
        Ok(())
    }
}

/// A box inside an n-dimensional array in C order (last index fastest): first index and extent per dimension.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct BoxSel {
    pub(crate) start: Vec<usize>,
    pub(crate) len: Vec<usize>,
}

impl BoxSel {
    /// The number of elements in the box (saturating; boxes inside real arrays never saturate).
    pub(crate) fn count(&self) -> usize {
        self.len.iter().fold(1usize, |a, &b| a.saturating_mul(b))
    }
}

/// The number of elements of an array of `shape`, or `None` if it overflows `usize`.
pub(crate) fn shape_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &b| a.checked_mul(b))
}

/// `MPI_Type_create_subarray` (C order) describing `sel` inside an array of `shape` whose elements are `elem`,
/// committed. Its extent is the whole array, so a count of one at the array's first element describes the box.
///
/// # Panics
/// If the box has another number of dimensions than the array, is empty, or does not lie inside the array: every
/// use relies on MPI touching only elements of the array.
pub(crate) fn subarray(elem: &Elem, shape: &[usize], sel: &BoxSel) -> RawResult<Dt> {
    assert!(!shape.is_empty(), "a subarray needs at least one dimension");
    assert_eq!(shape.len(), sel.start.len(), "box and array dimensions differ");
    assert_eq!(shape.len(), sel.len.len(), "box and array dimensions differ");
    for d in 0..shape.len() {
        let end = sel.start[d].checked_add(sel.len[d]).expect("box end overflows");
        assert!(sel.len[d] > 0, "empty subarray box");
        assert!(end <= shape[d], "box {sel:?} outside array of shape {shape:?}");
    }
    let ints = |v: &[usize]| -> RawResult<Vec<c_int>> { v.iter().map(|&x| c_count(x)).collect() };
    let (sizes, subsizes, starts) = (ints(shape)?, ints(&sel.len)?, ints(&sel.start)?);
    let ndims = c_count(shape.len())?;
    let base = elem_type(elem)?.handle;
    let mut t = MaybeUninit::<ffi::MPI_Datatype>::uninit();
    // SAFETY: the three arrays hold `ndims` ints each, checked above to describe a non-empty box inside the array;
    // the element type has extent `size_of::<T>()`; valid out pointer.
    rc(unsafe {
        ffi::MPI_Type_create_subarray(
            ndims,
            sizes.as_ptr(),
            subsizes.as_ptr(),
            starts.as_ptr(),
            super::order_c(),
            base,
            t.as_mut_ptr(),
        )
    })?;
    // SAFETY: initialised by the successful call.
    Dt::commit_owned(unsafe { t.assume_init() })
}
