//! The size agreement of checked collectives: a small all-reduce made of point-to-point messages on a private
//! duplicate of the user's communicator.
//!
//! A checked buffer collective first agrees on sizes (see [`crate::collective`]), and a rank with non-blocking
//! receives pending must keep them moving while it waits, so the agreement cannot be a blocking collective.
//! `MPI_Iallreduce` would do, but costs twice a message exchange (Open MPI 4.1: 0.9 against 0.4 µs at two
//! ranks); this is a recursive-doubling all-reduce (element-wise maximum of four integers) of non-blocking
//! messages, completed by the caller's wait, which advances pending receives.
//!
//! Its messages travel on a duplicate of the communicator, so they never meet the user's (or a C peer's)
//! messages. The first checked collective of a communicator agrees with `MPI_Iallreduce` on the communicator
//! itself; when the ranks agreed and none has receives pending, every rank then makes the duplicate
//! (`MPI_Comm_dup`: with no receive pending anywhere, a blocking call holds up no peer), and it is kept as an
//! attribute of the communicator: every handle of one communicator finds the same duplicate, `MPI_Comm_dup` does
//! not copy it, and it is freed when the communicator is.

use std::ffi::{c_int, c_void};
use std::mem::MaybeUninit;
use std::sync::OnceLock;

use mpi::ffi;

use super::{RawComm, RawRequest, RawResult, check, rc};
use crate::error::Result;

/// Four integers each rank contributes to an agreement.
pub(crate) type Values = [i64; 4];

/// The length of [`Values`], as MPI counts it.
const LEN: c_int = 4;

/// The attribute key under which a communicator keeps its private duplicate.
static KEYVAL: OnceLock<c_int> = OnceLock::new();

/// Attribute copy callback: `MPI_Comm_dup` does not give the new communicator the old one's duplicate.
unsafe extern "C" fn no_copy(
    _comm: ffi::MPI_Comm,
    _keyval: c_int,
    _extra: *mut c_void,
    _value_in: *mut c_void,
    _value_out: *mut c_void,
    flag: *mut c_int,
) -> c_int {
    // SAFETY: MPI passes a valid out pointer for the flag.
    unsafe { *flag = 0 };
    ffi::MPI_SUCCESS as c_int
}

/// Attribute delete callback: frees the duplicate when its communicator is freed.
unsafe extern "C" fn free_duplicate(
    _comm: ffi::MPI_Comm,
    _keyval: c_int,
    value: *mut c_void,
    _extra: *mut c_void,
) -> c_int {
    // SAFETY: every value stored under `KEYVAL` is a `Box<MPI_Comm>` leaked by `private`, and MPI calls this
    // once per stored value, so the box is taken back once.
    let mut dup = unsafe { Box::from_raw(value.cast::<ffi::MPI_Comm>()) };
    // SAFETY: the duplicate was created by `private` and is freed once, here.
    unsafe { ffi::MPI_Comm_free(&mut *dup) }
}

fn keyval() -> Result<c_int> {
    if let Some(k) = KEYVAL.get() {
        return Ok(*k);
    }
    let mut k: c_int = 0;
    // SAFETY: valid callbacks of the types MPI expects, an out pointer, and no extra state.
    let code =
        unsafe { ffi::MPI_Comm_create_keyval(Some(no_copy), Some(free_duplicate), &mut k, std::ptr::null_mut()) };
    check(code, "MPI_Comm_create_keyval")?;
    // Two threads may both create one; the key that was not kept is never used.
    Ok(*KEYVAL.get_or_init(|| k))
}

impl RawComm {
    /// The private duplicate of this communicator for agreements, if [`RawComm::make_private`] made one.
    pub(crate) fn private(&self) -> Result<Option<RawComm>> {
        let key = keyval()?;
        let mut value: *mut c_void = std::ptr::null_mut();
        let mut flag: c_int = 0;
        // SAFETY: valid handle and key; `value` receives the stored pointer.
        let code = unsafe { ffi::MPI_Comm_get_attr(self.handle, key, (&raw mut value).cast(), &mut flag) };
        check(code, "MPI_Comm_get_attr")?;
        // SAFETY: values under `KEYVAL` are `Box<MPI_Comm>`s, alive until the communicator is freed.
        Ok((flag != 0).then(|| RawComm::borrowed(unsafe { *value.cast::<ffi::MPI_Comm>() })))
    }

    /// Makes the private duplicate (`MPI_Comm_dup`, collective) and keeps it as an attribute of this
    /// communicator, which frees it when it is freed.
    pub(crate) fn make_private(&self) -> Result<RawComm> {
        let key = keyval()?;
        let mut new = MaybeUninit::<ffi::MPI_Comm>::uninit();
        // SAFETY: valid handle and out pointer.
        let code = unsafe { ffi::MPI_Comm_dup(self.handle, new.as_mut_ptr()) };
        check(code, "MPI_Comm_dup")?;
        // SAFETY: initialised by the successful call.
        let dup = RawComm::borrowed(unsafe { new.assume_init() });
        dup.set_errors_return()?;
        let boxed = Box::into_raw(Box::new(dup.handle));
        // SAFETY: valid handle and key; the box is owned by the attribute from now on (`free_duplicate`).
        let code = unsafe { ffi::MPI_Comm_set_attr(self.handle, key, boxed.cast()) };
        if let Err(e) = check(code, "MPI_Comm_set_attr") {
            // SAFETY: not stored: the box and the duplicate are still ours, freed once here.
            let mut h = unsafe { Box::from_raw(boxed) };
            // SAFETY: as above.
            unsafe { ffi::MPI_Comm_free(&mut *h) };
            return Err(e);
        }
        Ok(dup)
    }
}

/// The element-wise maximum of `mine` over the `size` ranks of the communicator whose private duplicate is `p`
/// (this rank is `rank`). Every rank must call it at the same point. `wait` completes a request while advancing
/// pending receives.
pub(crate) fn all_max(
    p: &RawComm,
    rank: usize,
    size: usize,
    mine: Values,
    wait: &mut dyn FnMut(&mut RawRequest) -> RawResult<()>,
) -> RawResult<Values> {
    let mut acc = mine;
    if size < 2 {
        return Ok(acc);
    }
    let max = |a: &mut Values, b: Values| a.iter_mut().zip(b).for_each(|(x, y)| *x = (*x).max(y));
    let r = |k: usize| c_int::try_from(k).expect("the ranks of a communicator are `int`s");
    // The largest power of two not above `size`; the first `2 * extra` ranks pair up first, the even one of each
    // pair handing its values to the odd one and waiting for the result.
    let pof2 = 1usize << (usize::BITS - 1 - size.leading_zeros());
    let extra = size - pof2;
    let active = if rank < 2 * extra {
        if rank.is_multiple_of(2) {
            exchange(p, Some(r(rank + 1)), None, 0, &acc, wait)?;
            None
        } else {
            let got = exchange(p, None, Some(r(rank - 1)), 0, &acc, wait)?;
            max(&mut acc, got);
            Some(rank / 2)
        }
    } else {
        Some(rank - extra)
    };
    if let Some(me) = active {
        let mut mask = 1;
        while mask < pof2 {
            let other = me ^ mask;
            let partner = if other < extra { 2 * other + 1 } else { other + extra };
            let got = exchange(p, Some(r(partner)), Some(r(partner)), 1, &acc, wait)?;
            max(&mut acc, got);
            mask <<= 1;
        }
    }
    if rank < 2 * extra {
        if rank % 2 == 1 {
            exchange(p, Some(r(rank - 1)), None, 2, &acc, wait)?;
        } else {
            acc = exchange(p, None, Some(r(rank + 1)), 2, &acc, wait)?;
        }
    }
    Ok(acc)
}

/// Sends `out` to `to` and receives from `from` (either may be absent), with `tag`, on the private duplicate.
fn exchange(
    p: &RawComm,
    to: Option<c_int>,
    from: Option<c_int>,
    tag: c_int,
    out: &Values,
    wait: &mut dyn FnMut(&mut RawRequest) -> RawResult<()>,
) -> RawResult<Values> {
    // Declared before the requests, so that they are dropped (which waits for them) first.
    let mut got: Values = [0; 4];
    // SAFETY: reading a constant exported by rsmpi's shim.
    let dt = unsafe { ffi::RSMPI_INT64_T };
    let mut recv = None;
    if let Some(s) = from {
        let mut h = MaybeUninit::<ffi::MPI_Request>::uninit();
        // SAFETY: `got` holds four 64-bit integers and outlives the request. Only `exchange` sends on the private
        // duplicate (it is never handed out), and always four such integers, so no message is larger than `got`.
        rc(unsafe { ffi::MPI_Irecv(got.as_mut_ptr().cast(), LEN, dt, s, tag, p.handle, h.as_mut_ptr()) })?;
        // SAFETY: initialised by the successful call.
        recv = Some(RawRequest::new(unsafe { h.assume_init() }));
    }
    let mut send = None;
    if let Some(d) = to {
        let mut h = MaybeUninit::<ffi::MPI_Request>::uninit();
        // SAFETY: `out` is borrowed for this call, which completes (or drops, which waits for) the request.
        rc(unsafe { ffi::MPI_Isend(out.as_ptr().cast(), LEN, dt, d, tag, p.handle, h.as_mut_ptr()) })?;
        // SAFETY: initialised by the successful call.
        send = Some(RawRequest::new(unsafe { h.assume_init() }));
    }
    if let Some(req) = recv.as_mut() {
        wait(req)?;
    }
    if let Some(req) = send.as_mut() {
        wait(req)?;
    }
    drop((recv, send));
    Ok(got)
}
