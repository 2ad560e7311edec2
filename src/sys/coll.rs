//! Collective calls, each blocking or non-blocking (`nb`), on the user's communicator: the calls a C program
//! would make for the same exchange.

use std::ffi::{c_int, c_void};
use std::mem::MaybeUninit;
use std::ptr;

use mpi::ffi;

use super::datatype::{Dt, VBase};
use super::{Desc, RawComm, RawOp, RawRequest, RawResult, byte_type, in_place, rc};

/// A blocking call done (`None`) or a non-blocking one started (`Some`).
pub(crate) type Started = RawResult<Option<RawRequest>>;

/// Runs a collective blocking (`nb` false) or starts its non-blocking form (`nb` true, returning the request).
/// Used only inside `unsafe` blocks whose SAFETY notes cover both calls.
macro_rules! collective {
    ($nb:expr, $blocking:expr, |$r:ident| $nonblocking:expr) => {{
        if $nb {
            let mut req = MaybeUninit::<ffi::MPI_Request>::uninit();
            let $r = req.as_mut_ptr();
            rc($nonblocking)?;
            // (inside the caller's `unsafe` block) initialised by the successful call.
            Ok(Some(RawRequest::new(req.assume_init())))
        } else {
            rc($blocking)?;
            Ok(None)
        }
    }};
}

/// Which of the one-block-per-rank calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlockKind {
    Gather,
    Scatter,
    Allgather,
    Alltoall,
}

/// Which of the reduce-like calls with one buffer per rank and a result on every rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScanKind {
    All,
    Scan,
    Exscan,
}

/// Which of the variable-count calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VKind {
    Gatherv,
    Scatterv,
    Allgatherv,
    Alltoallv,
}

/// Counts and displacements (in elements) of a variable-count call, which MPI reads until a non-blocking call
/// completes: keep this value alive at least as long as the request.
pub(crate) struct VArgs {
    pub(crate) send_counts: Vec<c_int>,
    pub(crate) send_displs: Vec<c_int>,
    pub(crate) recv_counts: Vec<c_int>,
    pub(crate) recv_displs: Vec<c_int>,
}

/// Per-rank counts and displacements as `int`s, or `None` if any does not fit (then a large-count path is
/// needed). `counts` are element counts of consecutive blocks; displacements are their prefix sums.
pub(crate) fn int_layout(counts: &[usize]) -> Option<(Vec<c_int>, Vec<c_int>)> {
    let mut c = Vec::with_capacity(counts.len());
    let mut d = Vec::with_capacity(counts.len());
    let mut off: usize = 0;
    for &n in counts {
        c.push(c_int::try_from(n).ok()?);
        d.push(c_int::try_from(off).ok()?);
        off = off.checked_add(n)?;
    }
    Some((c, d))
}

impl RawComm {
    pub(crate) fn barrier(&self, nb: bool) -> Started {
        // SAFETY: valid communicator; no buffers.
        unsafe { collective!(nb, ffi::MPI_Barrier(self.handle), |r| ffi::MPI_Ibarrier(self.handle, r)) }
    }

    /// `MPI_Bcast` of `d` (the same length on every rank: callers agree on it first).
    pub(crate) fn bcast(&self, d: &Desc, root: i32, nb: bool) -> Started {
        let h = self.handle;
        // SAFETY: `d` describes a live exclusive borrow (written on non-roots); the ranks agreed on its size.
        unsafe {
            collective!(nb, ffi::MPI_Bcast(d.ptr, d.count, d.dt.handle, root, h), |r| {
                ffi::MPI_Ibcast(d.ptr, d.count, d.dt.handle, root, h, r)
            })
        }
    }

    /// `MPI_Reduce`: `send` `None` means in place at the root (the root's `recv` holds its contribution);
    /// `recv` is `None` on non-roots.
    pub(crate) fn reduce(&self, send: Option<&Desc>, recv: Option<&Desc>, op: RawOp, root: i32, nb: bool) -> Started {
        let d = send.or(recv).expect("a reduction has a send or a receive buffer");
        let (count, dt) = (d.count, d.dt.handle);
        let sp = send.map_or(in_place(), |s| s.ptr);
        let rp = recv.map_or(ptr::null_mut(), |r| r.ptr);
        let (o, h) = (op.handle(), self.handle);
        // SAFETY: descriptions of live borrows of `count` elements each (agreed across ranks); the receive buffer
        // exists at the root.
        unsafe {
            collective!(nb, ffi::MPI_Reduce(sp, rp, count, dt, o, root, h), |r| {
                ffi::MPI_Ireduce(sp, rp, count, dt, o, root, h, r)
            })
        }
    }

    /// `MPI_Allreduce`, `MPI_Scan`, `MPI_Exscan`; `send` `None` means in place.
    pub(crate) fn allreduce_like(
        &self,
        kind: ScanKind,
        send: Option<&Desc>,
        recv: &Desc,
        op: RawOp,
        nb: bool,
    ) -> Started {
        let sp = send.map_or(in_place(), |s| s.ptr);
        let (rp, count, dt) = (recv.ptr, recv.count, recv.dt.handle);
        let (o, h) = (op.handle(), self.handle);
        // SAFETY: descriptions of live borrows of `count` elements each (agreed across ranks).
        unsafe {
            match kind {
                ScanKind::All => collective!(nb, ffi::MPI_Allreduce(sp, rp, count, dt, o, h), |r| {
                    ffi::MPI_Iallreduce(sp, rp, count, dt, o, h, r)
                }),
                ScanKind::Scan => collective!(nb, ffi::MPI_Scan(sp, rp, count, dt, o, h), |r| {
                    ffi::MPI_Iscan(sp, rp, count, dt, o, h, r)
                }),
                ScanKind::Exscan => collective!(nb, ffi::MPI_Exscan(sp, rp, count, dt, o, h), |r| {
                    ffi::MPI_Iexscan(sp, rp, count, dt, o, h, r)
                }),
            }
        }
    }

    /// `MPI_Reduce_scatter_block`: `recv` holds one block, `send` one block per rank.
    pub(crate) fn reduce_scatter_block(&self, send: &Desc, recv: &Desc, op: RawOp, nb: bool) -> Started {
        let (o, h) = (op.handle(), self.handle);
        // SAFETY: live borrows; `send` holds size × `recv.count` elements (checked by the caller).
        unsafe {
            collective!(
                nb,
                ffi::MPI_Reduce_scatter_block(send.ptr, recv.ptr, recv.count, recv.dt.handle, o, h),
                |r| ffi::MPI_Ireduce_scatter_block(send.ptr, recv.ptr, recv.count, recv.dt.handle, o, h, r)
            )
        }
    }

    /// `MPI_Reduce_scatter` with `int` counts (kept alive by the caller for a non-blocking call).
    pub(crate) fn reduce_scatter(&self, send: &Desc, recv: &Desc, counts: &[c_int], op: RawOp, nb: bool) -> Started {
        let (o, h, dt) = (op.handle(), self.handle, recv.dt.handle);
        // SAFETY: live borrows; `send` holds the sum of `counts`, `recv` this rank's count (checked by callers);
        // `counts` has one entry per rank.
        unsafe {
            collective!(
                nb,
                ffi::MPI_Reduce_scatter(send.ptr, recv.ptr, counts.as_ptr(), dt, o, h),
                |r| ffi::MPI_Ireduce_scatter(send.ptr, recv.ptr, counts.as_ptr(), dt, o, h, r)
            )
        }
    }

    /// `MPI_Gather`, `MPI_Scatter`, `MPI_Allgather`, `MPI_Alltoall`: `send` and `recv` describe one rank's block
    /// each (at the start of the whole buffer); `recv` (gather) or `send` (scatter) is absent on non-roots.
    pub(crate) fn blocks(
        &self,
        kind: BlockKind,
        send: Option<&Desc>,
        recv: Option<&Desc>,
        root: i32,
        nb: bool,
    ) -> Started {
        let null = (ptr::null_mut(), 0, byte_type());
        let (sp, sc, st) = send.map_or(null, |d| (d.ptr, d.count, d.dt.handle));
        let (rp, rn, rt) = recv.map_or(null, |d| (d.ptr, d.count, d.dt.handle));
        let h = self.handle;
        // SAFETY: the descriptions come from live borrows; the caller checked that the whole buffers hold `size`
        // blocks where MPI reads or writes `size` blocks; arguments MPI ignores on non-roots are null/zero.
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

    /// `MPI_Gatherv`, `MPI_Scatterv`, `MPI_Allgatherv`, `MPI_Alltoallv` with `int` counts and displacements in
    /// elements. `send`/`recv` give the base address, element datatype and length of each buffer; absent on ranks
    /// where MPI ignores them. For the side with a single block (the send side of gatherv and allgatherv, the
    /// receive side of scatterv) the whole buffer is the block.
    ///
    /// # Panics
    /// If a count or displacement array does not have one entry per rank, a block lies outside its buffer, or a
    /// single-block buffer exceeds `int` elements.
    pub(crate) fn vector(
        &self,
        kind: VKind,
        send: Option<&VBase>,
        recv: Option<&VBase>,
        a: &VArgs,
        root: i32,
        nb: bool,
    ) -> Started {
        let size = self.size().map_err(|_| super::Code(ffi::MPI_ERR_COMM as c_int))?;
        // The blocks must lie inside the described buffers: enforced here, next to the call.
        let inside = |b: &VBase, counts: &[c_int], displs: &[c_int]| {
            assert_eq!(counts.len(), size, "one count per rank");
            assert_eq!(displs.len(), size, "one displacement per rank");
            for (&c, &o) in counts.iter().zip(displs) {
                assert!(c >= 0 && o >= 0, "negative count or displacement");
                assert!(
                    c == 0 || c as usize + o as usize <= b.len,
                    "block {o}+{c} outside a buffer of {}",
                    b.len
                );
            }
        };
        let single = |b: Option<&VBase>| b.map_or(0, |b| c_int::try_from(b.len).expect("a single block fits an int"));
        match kind {
            VKind::Gatherv => {
                if let Some(r) = recv {
                    inside(r, &a.recv_counts, &a.recv_displs);
                }
            }
            VKind::Scatterv => {
                if let Some(s) = send {
                    inside(s, &a.send_counts, &a.send_displs);
                }
            }
            VKind::Allgatherv => inside(recv.expect("allgatherv receives"), &a.recv_counts, &a.recv_displs),
            VKind::Alltoallv => {
                inside(send.expect("alltoallv sends"), &a.send_counts, &a.send_displs);
                inside(recv.expect("alltoallv receives"), &a.recv_counts, &a.recv_displs);
            }
        }
        let h = self.handle;
        let null = (ptr::null_mut::<c_void>(), byte_type());
        let (sp, st) = send.map_or(null, |d| (d.ptr, d.dt));
        let (rp, rt) = recv.map_or(null, |d| (d.ptr, d.dt));
        let (scs, sds, rcs, rds) = (
            a.send_counts.as_ptr(),
            a.send_displs.as_ptr(),
            a.recv_counts.as_ptr(),
            a.recv_displs.as_ptr(),
        );
        // SAFETY: every block lies inside its buffer (asserted above); single blocks are whole buffers; the buffers
        // are live borrows; the arrays have one entry per rank and live in `a`, which the caller keeps until a
        // non-blocking call completes.
        unsafe {
            match kind {
                VKind::Gatherv => {
                    let sc = single(send);
                    collective!(nb, ffi::MPI_Gatherv(sp, sc, st, rp, rcs, rds, rt, root, h), |r| {
                        ffi::MPI_Igatherv(sp, sc, st, rp, rcs, rds, rt, root, h, r)
                    })
                }
                VKind::Scatterv => {
                    let rc_ = single(recv);
                    collective!(nb, ffi::MPI_Scatterv(sp, scs, sds, st, rp, rc_, rt, root, h), |r| {
                        ffi::MPI_Iscatterv(sp, scs, sds, st, rp, rc_, rt, root, h, r)
                    })
                }
                VKind::Allgatherv => {
                    let sc = single(send);
                    collective!(nb, ffi::MPI_Allgatherv(sp, sc, st, rp, rcs, rds, rt, h), |r| {
                        ffi::MPI_Iallgatherv(sp, sc, st, rp, rcs, rds, rt, h, r)
                    })
                }
                VKind::Alltoallv => collective!(nb, ffi::MPI_Alltoallv(sp, scs, sds, st, rp, rcs, rds, rt, h), |r| {
                    ffi::MPI_Ialltoallv(sp, scs, sds, st, rp, rcs, rds, rt, h, r)
                }),
            }
        }
    }

    /// `MPI_Alltoallw` with one block per peer given as a description (address, count, datatype), so that any
    /// size and any offset can be expressed (the large-count path of the variable-count collectives): each block is
    /// a struct datatype at its absolute address, relative to `MPI_BOTTOM`.
    pub(crate) fn alltoallw(
        &self,
        send: &[Option<Desc>],
        recv: &[Option<Desc>],
        nb: bool,
    ) -> RawResult<(Option<RawRequest>, WArgs)> {
        let args = WArgs {
            send: w_args(send)?,
            recv: w_args(recv)?,
        };
        let h = self.handle;
        let (s, r) = (&args.send, &args.recv);
        let bottom = super::bottom();
        // SAFETY: every block is a datatype at the absolute address of a live borrow (send read, receive
        // exclusively borrowed); the arrays have one entry per rank and live in `args`, which the caller keeps until
        // the request completes; absent blocks have count 0.
        let req = unsafe {
            collective!(
                nb,
                ffi::MPI_Alltoallw(
                    bottom,
                    s.counts.as_ptr(),
                    s.displs.as_ptr(),
                    s.types.as_ptr(),
                    bottom,
                    r.counts.as_ptr(),
                    r.displs.as_ptr(),
                    r.types.as_ptr(),
                    h
                ),
                |q| ffi::MPI_Ialltoallw(
                    bottom,
                    s.counts.as_ptr(),
                    s.displs.as_ptr(),
                    s.types.as_ptr(),
                    bottom,
                    r.counts.as_ptr(),
                    r.displs.as_ptr(),
                    r.types.as_ptr(),
                    h,
                    q
                )
            )
        }?;
        Ok((req, args))
    }
}

/// Per-peer arrays of one side of `MPI_Alltoallw`.
pub(crate) struct WSide {
    counts: Vec<c_int>,
    displs: Vec<c_int>,
    types: Vec<ffi::MPI_Datatype>,
    _keep: Vec<Dt>,
}

// SAFETY: datatype handles are process-wide identifiers.
unsafe impl Send for WSide {}

/// Both sides' arrays of `MPI_Alltoallw`; keep alive until the call completes.
pub(crate) struct WArgs {
    send: WSide,
    recv: WSide,
}

fn w_args(ds: &[Option<Desc>]) -> RawResult<WSide> {
    let n = ds.len();
    let byte = byte_type();
    let mut side = WSide {
        counts: vec![0; n],
        displs: vec![0; n],
        types: vec![byte; n],
        _keep: Vec::new(),
    };
    for (i, d) in ds.iter().enumerate() {
        let Some(d) = d else { continue };
        if d.count == 0 {
            continue;
        }
        let mut addr: ffi::MPI_Aint = 0;
        // SAFETY: MPI_Get_address only computes the address.
        rc(unsafe { ffi::MPI_Get_address(d.ptr, &mut addr) })?;
        let lens = [d.count];
        let disps = [addr];
        let types = [d.dt.handle];
        let mut s = MaybeUninit::<ffi::MPI_Datatype>::uninit();
        // SAFETY: one-element arrays as the count 1 says; valid element type; valid out pointer.
        rc(unsafe { ffi::MPI_Type_create_struct(1, lens.as_ptr(), disps.as_ptr(), types.as_ptr(), s.as_mut_ptr()) })?;
        // SAFETY: initialised by the successful call.
        let mut t = unsafe { s.assume_init() };
        // SAFETY: `t` was just created.
        rc(unsafe { ffi::MPI_Type_commit(&mut t) })?;
        side.counts[i] = 1;
        side.types[i] = t;
        side._keep.push(Dt::owned_committed(t));
    }
    Ok(side)
}
