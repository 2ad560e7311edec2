//! The agreements of checked collectives (sizes, counts and flags): small all-reduces and all-to-alls made of
//! point-to-point messages on a private duplicate of the user's communicator.
//!
//! A checked buffer collective first agrees on sizes (see [`crate::collective`]), and a rank with non-blocking
//! receives pending must keep them moving while it waits, so the agreement cannot be a blocking collective. A
//! non-blocking MPI collective would do, but Open MPI 4.1's `MPI_Iallreduce` of four integers costs twice a
//! message exchange (0.9 against 0.4 µs at two ranks here). Here an agreement is a recursive-doubling all-reduce
//! (element-wise maximum) of non-blocking messages, or for variable-count all-to-alls one message to and from
//! every other rank, completed by the caller's wait, which advances pending receives.
//!
//! Its messages travel on a duplicate of the communicator, so they never meet the user's (or a C peer's)
//! messages. The first checked collective of a communicator agrees with a non-blocking MPI collective on the
//! communicator itself; when that shows the ranks agreed and none has receives pending, every rank then makes the
//! duplicate (`MPI_Comm_dup`: with no receive pending anywhere, a blocking call holds up no peer), and it is kept
//! as an attribute of the communicator: every handle of one communicator finds the same duplicate, `MPI_Comm_dup`
//! does not copy it, and it is freed when the communicator is. If making it fails, agreements stay MPI collectives
//! (and the next one tries again). With the hang diagnosis on, every rank counts as having receives pending (its
//! waits are test loops that watch the clock), so the duplicate is not made and agreements stay MPI collectives.
//!
//! Not handled: an MPI error in the middle of an agreement over the duplicate (a failed peer) leaves its message
//! streams out of step, so a later agreement could pair values of different collectives; such an error ends the
//! job under spmd's failure policy.

use std::ffi::{c_int, c_void};
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::sync::OnceLock;

use mpi::ffi;

use super::p2p::Mode;
use super::{Desc, RawComm, RawRequest, RawResult, check};
use crate::error::Result;

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

/// Attribute delete callback: frees the duplicate when its communicator is freed. Always succeeds: the value is
/// gone once this runs (an error here would leave MPI holding a freed pointer).
unsafe extern "C" fn free_duplicate(
    _comm: ffi::MPI_Comm,
    _keyval: c_int,
    value: *mut c_void,
    _extra: *mut c_void,
) -> c_int {
    // SAFETY: every value stored under `KEYVAL` is a `Box<MPI_Comm>` leaked by `make_private`, and MPI calls this
    // once per stored value, so the box is taken back once.
    let mut dup = unsafe { Box::from_raw(value.cast::<ffi::MPI_Comm>()) };
    // SAFETY: the duplicate was created by `make_private` and is freed once, here.
    let _ = unsafe { ffi::MPI_Comm_free(&mut *dup) };
    ffi::MPI_SUCCESS as c_int
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
    pub(crate) fn make_private(&self) -> Result<()> {
        let key = keyval()?;
        let mut new = MaybeUninit::<ffi::MPI_Comm>::uninit();
        // SAFETY: valid handle and out pointer.
        let code = unsafe { ffi::MPI_Comm_dup(self.handle, new.as_mut_ptr()) };
        check(code, "MPI_Comm_dup")?;
        // SAFETY: initialised by the successful call.
        let mut dup = unsafe { new.assume_init() };
        let stored = RawComm::borrowed(dup).set_errors_return().and_then(|()| {
            let boxed = Box::into_raw(Box::new(dup));
            // SAFETY: valid handle and key; on success the box is owned by the attribute (`free_duplicate`).
            let code = unsafe { ffi::MPI_Comm_set_attr(self.handle, key, boxed.cast()) };
            check(code, "MPI_Comm_set_attr").inspect_err(|_| {
                // SAFETY: not stored, so still ours: taken back once.
                drop(unsafe { Box::from_raw(boxed) });
            })
        });
        if stored.is_err() {
            // SAFETY: the duplicate was not stored: freed once, here.
            let _ = unsafe { ffi::MPI_Comm_free(&mut dup) };
        }
        stored
    }
}

/// What an agreement exchanges, which fixes the length of its messages on a communicator of `size` ranks. Each
/// kind has tags of its own, so every message on the duplicate has the length its tag says: over the duplicate,
/// ranks that call collectives in different orders wait (as MPI's own collectives would), but no receive meets a
/// longer message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Four values (a fixed-count collective's sizes and flags).
    Fixed,
    /// One value per rank (each rank sets its own: an all-gather made of a maximum).
    PerRank,
    /// One value per rank and two flags (a root's counts for every rank).
    PerRankAndFlags,
}

impl Kind {
    /// The number of values of this kind on a communicator of `size` ranks.
    pub(crate) fn len(self, size: usize) -> usize {
        match self {
            Kind::Fixed => 4,
            Kind::PerRank => size,
            Kind::PerRankAndFlags => size + 2,
        }
    }

    /// The first of the three tags of this kind's messages.
    fn tag(self) -> c_int {
        match self {
            Kind::Fixed => 0,
            Kind::PerRank => 10,
            Kind::PerRankAndFlags => 20,
        }
    }
}

/// The tag of [`all_to_all`]'s messages (one value each).
const ALL_TO_ALL_TAG: c_int = 30;

/// A communicator's rank as MPI's `int`.
fn int_rank(k: usize) -> c_int {
    c_int::try_from(k).expect("the ranks of a communicator are `int`s")
}

/// Replaces `acc` by the element-wise maximum of every rank's `acc` over the `size` ranks of the communicator whose
/// private duplicate is `p` (this rank is `rank`). Every rank must call it at the same point with the same `kind`.
/// `wait` completes a request while advancing pending receives.
///
/// # Panics
/// If `acc` is not `kind.len(size)` long.
pub(crate) fn all_max(
    p: &RawComm,
    rank: usize,
    size: usize,
    kind: Kind,
    acc: &mut [u64],
    wait: &mut dyn FnMut(&mut RawRequest) -> RawResult<()>,
) -> RawResult<()> {
    assert_eq!(acc.len(), kind.len(size), "an agreement of {kind:?} at {size} ranks");
    if size < 2 {
        return Ok(());
    }
    // What a partner sends: on the stack for the fixed-count agreement, which every checked collective makes.
    let (mut small, mut large) = ([0u64; 4], Vec::new());
    let got: &mut [u64] = if acc.len() <= small.len() {
        &mut small[..acc.len()]
    } else {
        large.resize(acc.len(), 0);
        &mut large
    };
    let max = |a: &mut [u64], b: &[u64]| a.iter_mut().zip(b).for_each(|(x, y)| *x = (*x).max(*y));
    let tag = kind.tag();
    // The largest power of two not above `size`; the first `2 * extra` ranks pair up first, the even one of each
    // pair handing its values to the odd one and waiting for the result.
    let pof2 = 1usize << (usize::BITS - 1 - size.leading_zeros());
    let extra = size - pof2;
    let active = if rank < 2 * extra {
        if rank.is_multiple_of(2) {
            exchange(p, Some(int_rank(rank + 1)), None, tag, acc, got, wait)?;
            None
        } else {
            exchange(p, None, Some(int_rank(rank - 1)), tag, acc, got, wait)?;
            max(acc, got);
            Some(rank / 2)
        }
    } else {
        Some(rank - extra)
    };
    if let Some(me) = active {
        let mut mask = 1;
        while mask < pof2 {
            let other = me ^ mask;
            let partner = int_rank(if other < extra { 2 * other + 1 } else { other + extra });
            exchange(p, Some(partner), Some(partner), tag + 1, acc, got, wait)?;
            max(acc, got);
            mask <<= 1;
        }
    }
    if rank < 2 * extra {
        if rank % 2 == 1 {
            exchange(p, Some(int_rank(rank - 1)), None, tag + 2, acc, got, wait)?;
        } else {
            exchange(p, None, Some(int_rank(rank + 1)), tag + 2, acc, got, wait)?;
            acc.copy_from_slice(got);
        }
    }
    Ok(())
}

/// Sends `mine[r]` to every other rank r and returns what each rank sent to this one (this rank's own value in
/// its place), on the private duplicate `p`.
///
/// # Panics
/// If `mine` is not `size` long.
pub(crate) fn all_to_all(
    p: &RawComm,
    rank: usize,
    size: usize,
    mine: &[u64],
    wait: &mut dyn FnMut(&mut RawRequest) -> RawResult<()>,
) -> RawResult<Vec<u64>> {
    assert_eq!(mine.len(), size, "one value per rank");
    // Declared before the requests, so that they are dropped (which waits for them) first.
    let mut got = vec![0u64; size];
    got[rank] = mine[rank];
    let mut reqs = Vec::with_capacity(2 * size);
    for (r, slot) in got.iter_mut().enumerate().filter(|&(r, _)| r != rank) {
        reqs.push(irecv(p, int_rank(r), ALL_TO_ALL_TAG, std::slice::from_mut(slot))?);
    }
    for (r, v) in mine.iter().enumerate().filter(|&(r, _)| r != rank) {
        reqs.push(isend(p, int_rank(r), ALL_TO_ALL_TAG, std::slice::from_ref(v))?);
    }
    for req in &mut reqs {
        wait(req)?;
    }
    drop(reqs);
    Ok(got)
}

/// Sends `out` to `to` and receives `into` from `from` (either may be absent), with `tag`, on the private
/// duplicate.
fn exchange(
    p: &RawComm,
    to: Option<c_int>,
    from: Option<c_int>,
    tag: c_int,
    out: &[u64],
    into: &mut [u64],
    wait: &mut dyn FnMut(&mut RawRequest) -> RawResult<()>,
) -> RawResult<()> {
    let recv = from.map(|s| irecv(p, s, tag, into)).transpose()?;
    let send = to.map(|d| isend(p, d, tag, out)).transpose()?;
    for mut req in recv.into_iter().chain(send) {
        wait(&mut req)?;
    }
    Ok(())
}

/// `MPI_Irecv` of `into.len()` values. The request borrows `into` (its drop waits for it). A plain receive is
/// sound here: only this module sends on the private duplicate (it is never handed out), and a message with this
/// tag holds exactly as many values as the receive of this tag asks for (`Kind`), so no message is larger than
/// `into`.
fn irecv<'a>(p: &RawComm, source: c_int, tag: c_int, into: &'a mut [u64]) -> RawResult<Borrowed<'a>> {
    let d = Desc::of_buf_mut(into).expect("agreements are 1 to size + 2 values");
    Ok(Borrowed(p.irecv_plain(&d, source, tag)?, PhantomData))
}

/// `MPI_Isend` of `out`. The request borrows `out` (its drop waits for it).
fn isend<'a>(p: &RawComm, dest: c_int, tag: c_int, out: &'a [u64]) -> RawResult<Borrowed<'a>> {
    let d = Desc::of_buf(out).expect("agreements are 1 to size + 2 values");
    Ok(Borrowed(p.isend(&d, dest, tag, Mode::Standard)?, PhantomData))
}

/// A request that borrows its memory for `'a`: dropping it waits for it (`RawRequest`'s drop) before the borrow
/// ends.
struct Borrowed<'a>(RawRequest, PhantomData<&'a mut [u64]>);

impl std::ops::Deref for Borrowed<'_> {
    type Target = RawRequest;
    fn deref(&self) -> &RawRequest {
        &self.0
    }
}

impl std::ops::DerefMut for Borrowed<'_> {
    fn deref_mut(&mut self) -> &mut RawRequest {
        &mut self.0
    }
}
