//! Memory safety, liveness and edge cases: each case reproduces a way safe code once corrupted memory or hung,
//! and checks that it is now an error (or works), on every rank and without a hang.

use ndarray::{ArcArray2, Array2, CowArray, s};
use serde::{Deserialize, Serialize};
use spmd::request::{Completion, scope};
use spmd::{Comm, ErrorKind, Loc, Oob, Op};

use crate::common::{Case, case, special};

fn ring(comm: &Comm) -> (usize, usize) {
    let (r, p) = (comm.rank(), comm.size());
    ((r + 1) % p, (r + p - 1) % p)
}

/// Receiving into a `CowArray` that borrows a transposed view, and into a shared `ArcArray`: the storage is made
/// unique (a new compact allocation) before MPI is told where to write, so the data lands in the array's own
/// memory, in logical order.
fn receive_into_shared_arrays(comm: &Comm) -> spmd::Result<()> {
    let (right, left) = ring(comm);
    let send: Vec<f64> = (0..64).map(|i| (i + 100 * comm.rank()) as f64).collect();
    let expect: Vec<f64> = (0..64).map(|i| (i + 100 * left) as f64).collect();
    // A borrowed, transposed (non-standard layout) view inside a CowArray.
    let base = Array2::<f64>::from_elem((8, 8), -1.0);
    let mut cow = CowArray::from(base.t());
    let req = comm.isend_obj(right, 1, &send)?;
    let (v, _) = comm.recv_obj::<Vec<f64>>(left, 1)?;
    req.wait()?;
    check!(comm, v == expect, "object");
    comm.sendrecv_buf(right, 2, &send, left, 2, &mut cow)?;
    let got: Vec<f64> = cow.iter().copied().collect();
    check!(comm, got == expect, "CowArray received {:?}...", &got[..4]);
    check!(
        comm,
        base.iter().all(|&x| x == -1.0),
        "the borrowed base array was written"
    );
    // A shared ArcArray: the clone is written, the original keeps its values.
    let a = ArcArray2::<f64>::from_elem((8, 8), -2.0);
    let mut b = a.clone();
    comm.sendrecv_buf(right, 3, &send, left, 3, &mut b)?;
    check!(comm, b.iter().copied().collect::<Vec<_>>() == expect, "ArcArray clone");
    check!(
        comm,
        a.iter().all(|&x| x == -2.0),
        "the shared ArcArray's other owner was written"
    );
    // The same through a non-blocking receive and a broadcast.
    let mut cow2 = CowArray::from(base.slice(s![..;2, ..]));
    scope(|s| -> spmd::Result<()> {
        comm.irecv_buf_into(s, left, 4, &mut cow2)?;
        comm.isend_buf(s, right, 4, &send[..32])?;
        Ok(())
    })?;
    check!(
        comm,
        cow2.iter().copied().collect::<Vec<_>>() == expect[..32],
        "irecv into CowArray"
    );
    let mut cow3 = CowArray::from(base.t());
    if comm.rank() == 0 {
        cow3.iter_mut().zip(0..).for_each(|(x, i)| *x = i as f64);
    }
    comm.broadcast_buf(0, &mut cow3)?;
    let want: Vec<f64> = (0..64).map(|i| i as f64).collect();
    check!(
        comm,
        cow3.iter().copied().collect::<Vec<_>>() == want,
        "broadcast into CowArray"
    );
    Ok(())
}

/// A type whose serde form is made on the fly (`#[serde(into = ...)]`): its `Oob` field lives in a temporary
/// that is gone before the message is sent. The shared storage of `Oob` keeps it alive.
#[derive(Clone, Serialize, Deserialize, PartialEq, Debug)]
#[serde(into = "Wire", from = "Wire")]
struct Field {
    name: String,
    data: Vec<f64>,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    name: String,
    data: Oob<f64>,
}

impl From<Field> for Wire {
    fn from(f: Field) -> Wire {
        Wire {
            name: f.name,
            data: Oob::new(f.data),
        }
    }
}

impl From<Wire> for Field {
    fn from(w: Wire) -> Field {
        Field {
            name: w.name,
            data: w.data.into_vec(),
        }
    }
}

fn oob_from_temporaries(comm: &Comm) -> spmd::Result<()> {
    let (right, left) = ring(comm);
    for n in [10usize, 1 << 20] {
        let f = Field {
            name: format!("from {}", comm.rank()),
            data: (0..n).map(|i| (i * (comm.rank() + 1)) as f64).collect(),
        };
        let expect = Field {
            name: format!("from {left}"),
            data: (0..n).map(|i| (i * (left + 1)) as f64).collect(),
        };
        // Blocking, then non-blocking (which outlives the call that encoded it).
        let req = comm.isend_obj(right, 10, &f)?;
        let (got, _): (Field, _) = comm.recv_obj(left, 10)?;
        req.wait()?;
        check!(comm, got == expect, "isend_obj of {n} floats from a temporary");
        let r = comm.irecv_obj::<Field>(left, 11)?;
        comm.send_obj(right, 11, &f)?;
        let (got, _) = r.wait()?;
        check!(comm, got == expect, "send_obj of {n} floats from a temporary");
    }
    Ok(())
}

/// An object receive dropped while its message is in flight, then its communicator dropped too: the receive
/// engine keeps the communicator and the receive memory until MPI is done, and the sender completes.
fn dropped_receive_and_comm(comm: &Comm) -> spmd::Result<()> {
    let (right, left) = ring(comm);
    let c = comm.dup()?;
    let r = c.irecv_obj::<Vec<f64>>(left, 20)?;
    let big = vec![1.5f64; 1 << 20]; // 8 MB: rendezvous, sent in parts
    let w = c.isend_obj(right, 20, &big)?;
    drop(r);
    drop(c);
    // The send completes: the dropped receive still takes its message, as every spmd call advances it.
    w.wait()?;
    comm.barrier()?;
    // And again with the receive dropped before anything was sent.
    let c = comm.dup()?;
    drop(c.irecv_obj::<Vec<u8>>(left, 21)?);
    comm.barrier()?;
    c.send_obj(right, 21, &vec![7u8; 100_000])?;
    drop(c);
    comm.barrier()?;
    Ok(())
}

/// Buffer collectives whose lengths disagree are errors on every rank (the root broadcasts 4096 values, the
/// others pass 16), whatever the build profile.
fn disagreeing_lengths(comm: &Comm) -> spmd::Result<()> {
    let p = comm.size();
    if p == 1 {
        return Ok(());
    }
    let n = if comm.rank() == 0 { 4096 } else { 16 };
    let mut v = vec![0.0f64; n];
    let e = comm.broadcast_buf(0, &mut v).unwrap_err();
    check!(
        comm,
        e.kind() == ErrorKind::SizeMismatch && e.message().contains("between 16 and 4096"),
        "{e}"
    );
    let e = comm.all_reduce_buf(&v, &mut vec![0.0; n], Op::Sum).unwrap_err();
    check!(comm, e.kind() == ErrorKind::SizeMismatch, "{e}");
    let e = comm.all_gather_buf(&v, &mut vec![0.0; n * p]).unwrap_err();
    check!(comm, e.kind() == ErrorKind::SizeMismatch, "{e}");
    let mut out = vec![0.0; 16 * p];
    let e = comm
        .gather_buf(0, &v, (comm.rank() == 0).then_some(&mut out[..]))
        .unwrap_err();
    check!(comm, e.kind() == ErrorKind::SizeMismatch, "{e}");
    check!(
        comm,
        v.iter().all(|&x| x == 0.0),
        "a failed collective wrote the buffer"
    );
    Ok(())
}

/// Variable counts whose sum overflows, or that exceed the buffer, are errors on every rank: no wrapped sum, no
/// truncated `int`, no write outside the buffer.
fn overflowing_counts(comm: &Comm) -> spmd::Result<()> {
    let p = comm.size();
    let mut counts = vec![1usize; p];
    counts[0] = 1;
    if p > 1 {
        counts[1] = (1 << 62) + 5;
    }
    if p > 2 {
        counts[2] = 3 << 62;
    }
    if p == 1 {
        counts[0] = usize::MAX;
    }
    let mine = vec![1u8; 1];
    let mut recv = vec![0u8; 6];
    let e = if comm.rank() == 0 {
        comm.gather_varcount_buf_root(&mine, &mut recv, &counts)
    } else {
        comm.gather_varcount_buf_to(0, &mine)
    }
    .unwrap_err();
    check!(comm, e.kind() == ErrorKind::SizeMismatch, "gatherv: {e}");
    let e = comm.all_gather_varcount_buf(&mine, &mut recv, &counts).unwrap_err();
    check!(comm, e.kind() == ErrorKind::SizeMismatch, "allgatherv: {e}");
    let e = comm
        .all_to_all_varcount_buf(&mine, &counts, &mut recv, &counts)
        .unwrap_err();
    check!(comm, e.kind() == ErrorKind::SizeMismatch, "alltoallv: {e}");
    let e = comm.reduce_scatter_buf(&mine, &mut recv, &counts, Op::Sum).unwrap_err();
    check!(comm, e.kind() == ErrorKind::SizeMismatch, "reduce_scatter: {e}");
    check!(
        comm,
        recv.iter().all(|&x| x == 0),
        "a failed collective wrote the buffer"
    );
    // Counts the ranks disagree on (rank 0 expects one element more from the last rank than it sends): an error
    // where the counts are wrong, the buffer untouched.
    let good: Vec<usize> = (0..p).map(|r| r + 1).collect();
    let mut mine_counts = good.clone();
    if comm.rank() == 0 {
        mine_counts[p - 1] += 1;
    }
    let send = vec![comm.rank() as u16; comm.rank() + 1];
    let mut all = vec![9u16; mine_counts.iter().sum()];
    let r = comm.all_gather_varcount_buf(&send, &mut all, &mine_counts);
    if comm.rank() == 0 {
        let e = r.unwrap_err();
        check!(
            comm,
            e.kind() == ErrorKind::SizeMismatch && e.message().contains("differ"),
            "{e}"
        );
        check!(
            comm,
            all.iter().all(|&x| x == 9),
            "the buffer of a rank with wrong counts was written"
        );
    } else {
        r?;
        let want: Vec<u16> = (0..p).flat_map(|k| vec![k as u16; k + 1]).collect();
        check!(comm, all == want, "allgatherv on the ranks with the right counts");
    }
    Ok(())
}

/// A message larger than the receive buffer is an error and never reaches memory past the buffer, whatever the
/// transport's eager limit (this case also runs with `btl_vader_eager_limit` 1024).
fn truncation_never_overruns(comm: &Comm) -> spmd::Result<()> {
    let (right, left) = ring(comm);
    for n in [9usize, 1000, 4100, 70_000, 1 << 20] {
        let msg = vec![0xABu8; n];
        // An 8-byte window inside a larger canary buffer.
        let mut canary = vec![0x11u8; 64 + n];
        let req = comm.isend_obj(right, 30, &0u8)?; // interleave another family
        let w = spmd::request::scope(|s| -> spmd::Result<()> {
            let w = comm.isend_buf(s, right, 31, &msg)?;
            let e = comm.recv_buf_into(left, 31, &mut canary[8..16]).unwrap_err();
            check!(
                comm,
                e.kind() == ErrorKind::Truncated && e.message().contains(&format!("{n} bytes")),
                "{e}"
            );
            w.wait()?;
            Ok(())
        });
        w?;
        let (_, _): (u8, _) = comm.recv_obj(left, 30)?;
        req.wait()?;
        check!(
            comm,
            canary.iter().all(|&x| x == 0x11),
            "truncated message of {n} bytes wrote memory"
        );
        // Non-blocking receive too.
        let mut small = [0u8; 8];
        let r = scope(|s| -> spmd::Result<()> {
            let r = comm.irecv_buf_into(s, left, 32, &mut small)?;
            comm.isend_buf(s, right, 32, &msg)?;
            let e = r.wait().unwrap_err();
            check!(comm, e.kind() == ErrorKind::Truncated, "{e}");
            Ok(())
        });
        r?;
        check!(
            comm,
            small == [0u8; 8],
            "a truncated non-blocking receive wrote its buffer"
        );
    }
    Ok(())
}

/// A message of one family received by the other is an error naming both, at once, and the sender completes.
fn cross_family_mistakes(comm: &Comm) -> spmd::Result<()> {
    let (right, left) = ring(comm);
    let t0 = std::time::Instant::now();
    for n in [0usize, 8, 4000, 100_000] {
        // A buffer received as an object.
        let buf = vec![3u8; n];
        let e = scope(|s| -> spmd::Result<spmd::Error> {
            let w = comm.isend_buf(s, right, 40, &buf)?;
            let e = comm.recv_obj::<Vec<u8>>(left, 40).unwrap_err();
            w.wait()?;
            Ok(e)
        })?;
        check!(
            comm,
            e.kind() == ErrorKind::WrongFamily && e.message().contains("buffer message"),
            "{e}"
        );
        let r = comm.irecv_obj::<String>(left, 41)?;
        comm.send_buf(right, 41, &buf)?;
        let e = r.wait().unwrap_err();
        check!(comm, e.kind() == ErrorKind::WrongFamily, "irecv_obj of a buffer: {e}");
    }
    for n in [1usize, 1 << 20] {
        // An object (small, and 8 MB with an out-of-band part) received as a buffer.
        let obj = vec![1.25f64; n];
        let w = comm.isend_obj(right, 42, &obj)?;
        let mut b = vec![0f64; 4];
        let e = comm.recv_buf_into(left, 42, &mut b).unwrap_err();
        w.wait()?;
        check!(
            comm,
            e.kind() == ErrorKind::WrongFamily && e.message().contains("object message"),
            "{e}"
        );
        let w = comm.isend_obj(right, 43, &obj)?;
        let e = comm.recv_buf::<f64>(left, 43).unwrap_err();
        w.wait()?;
        check!(comm, e.kind() == ErrorKind::WrongFamily, "recv_buf of an object: {e}");
        let w = comm.isend_obj(right, 44, &obj)?;
        let mut big = vec![0f64; 2 << 20];
        let e = scope(|s| -> spmd::Result<spmd::Error> {
            let r = comm.irecv_buf_into(s, left, 44, &mut big)?;
            Ok(r.wait().unwrap_err())
        })?;
        w.wait()?;
        check!(
            comm,
            e.kind() == ErrorKind::WrongFamily,
            "irecv_buf_into of an object: {e}"
        );
    }
    for n in [1usize, 1 << 20] {
        // The same into a strided view (a column), whose first bytes are not one run in memory: the object is
        // still recognised, and its out-of-band part taken and discarded (else its sender's wait never ends).
        let obj = vec![1.25f64; n];
        let mut a = Array2::<f64>::zeros((200, 2));
        let w = comm.isend_obj(right, 46, &obj)?;
        let got = comm.recv_buf_into(left, 46, &mut a.slice_mut(s![.., 0]));
        w.wait()?;
        check!(
            comm,
            matches!(&got, Err(e) if e.kind() == ErrorKind::WrongFamily),
            "recv_buf_into a column, of an object: {got:?}"
        );
        let w = comm.isend_obj(right, 47, &obj)?;
        let mut col = a.slice_mut(s![.., 1]);
        let got = scope(|s| comm.irecv_buf_into(s, left, 47, &mut col)?.wait());
        w.wait()?;
        check!(
            comm,
            matches!(&got, Err(e) if e.kind() == ErrorKind::WrongFamily),
            "irecv_buf_into a column, of an object: {got:?}"
        );
    }
    // Nothing left over: the next messages arrive as sent.
    let (v, _): (String, _) = comm.sendrecv_obj(right, 45, &"after".to_string(), left, 45)?;
    check!(comm, v == "after", "after the mistakes");
    check!(
        comm,
        t0.elapsed() < std::time::Duration::from_secs(20),
        "mistakes took {:?}",
        t0.elapsed()
    );
    Ok(())
}

macro_rules! zero_len_all {
    ($comm:expr, $($t:ty),*) => {$(
        zero_len::<$t>($comm, stringify!($t))?;
    )*};
}

/// Zero-length buffers of one element type through every buffer collective (an empty `Vec`'s dangling address is
/// Open MPI's `MPI_IN_PLACE`, so it must never reach MPI).
fn zero_len<T: spmd::Data + Default + PartialEq + std::fmt::Debug>(comm: &Comm, name: &str) -> spmd::Result<()> {
    let p = comm.size();
    let root = p - 1;
    let is_root = comm.rank() == root;
    let e: Vec<T> = Vec::new();
    let mut r: Vec<T> = Vec::new();
    let ctx = |what: &str| format!("{what} of empty {name}");
    comm.broadcast_buf(root, &mut r)
        .map_err(|x| spmd::Error::from(format!("{}: {x}", ctx("broadcast"))))?;
    comm.gather_buf(root, &e, is_root.then_some(&mut r[..]))?;
    check!(
        comm,
        comm.gather_buf_vec(root, &e)?.is_none_or(|v| v.is_empty()),
        "{}",
        ctx("gather_vec")
    );
    comm.scatter_buf(root, is_root.then_some(&e[..]), &mut r)?;
    comm.all_gather_buf(&e, &mut r)?;
    check!(
        comm,
        comm.all_gather_buf_vec(&e)?.is_empty(),
        "{}",
        ctx("all_gather_vec")
    );
    comm.all_to_all_buf(&e, &mut r)?;
    let zeros = vec![0usize; p];
    if is_root {
        comm.gather_varcount_buf_root(&e, &mut r, &zeros)?;
        comm.scatter_varcount_buf_root(&e, &zeros, &mut r)?;
    } else {
        comm.gather_varcount_buf_to(root, &e)?;
        comm.scatter_varcount_buf_from(root, &mut r)?;
    }
    comm.all_gather_varcount_buf(&e, &mut r, &zeros)?;
    comm.all_to_all_varcount_buf(&e, &zeros, &mut r, &zeros)?;
    comm.reduce_buf(root, &e, is_root.then_some(&mut r[..]), Op::Max)?;
    comm.all_reduce_buf(&e, &mut r, Op::Sum)?;
    comm.all_reduce_buf_in_place(&mut r, Op::Min)?;
    comm.scan_buf(&e, &mut r, Op::Sum)?;
    comm.exscan_buf(&e, &mut r, Op::Sum)?;
    comm.reduce_scatter_block_buf(&e, &mut r, Op::Sum)?;
    comm.reduce_scatter_buf(&e, &mut r, &zeros, Op::Sum)?;
    // Point-to-point and non-blocking forms.
    let (right, left) = ring(comm);
    let st = comm.sendrecv_buf(right, 50, &e, left, 50, &mut r)?;
    check!(comm, st.bytes() == 0, "{}", ctx("sendrecv"));
    let (v, _) = {
        let w = comm.isend_obj(right, 51, &e.len())?;
        let got = comm.recv_obj::<usize>(left, 51)?;
        w.wait()?;
        got
    };
    check!(comm, v == 0, "{}", ctx("object"));
    let mut r2: Vec<T> = Vec::new();
    scope(|s| -> spmd::Result<()> {
        comm.ibroadcast_buf(s, root, &mut r)?;
        comm.iall_reduce_buf(s, &e, &mut r2, Op::Sum)?;
        Ok(())
    })?;
    let mut r3: Vec<T> = Vec::new();
    scope(|s| -> spmd::Result<()> {
        comm.igather_buf(s, root, &e, is_root.then_some(&mut r3[..]))?;
        Ok(())
    })?;
    Ok(())
}

fn zero_length_buffers(comm: &Comm) -> spmd::Result<()> {
    zero_len_all!(comm, f32, f64, i8, i16, i32, i64, u8, u16, u32, u64, isize, usize);
    // Pair types through the collectives that take them.
    let e: Vec<Loc<f64>> = Vec::new();
    let mut r: Vec<Loc<f64>> = Vec::new();
    comm.all_reduce_buf(&e, &mut r, Op::MinLoc)?;
    comm.all_gather_buf(&e, &mut r)?;
    Ok(())
}

/// Logical reductions give truth values (0 or 1) at every size, one rank included.
fn logical_ops_are_truth_values(comm: &Comm) -> spmd::Result<()> {
    let v = [5i32, 0, -3, 1];
    let mut out = [9i32; 4];
    comm.all_reduce_buf(&v, &mut out, Op::LogicalAnd)?;
    check!(comm, out == [1, 0, 1, 1], "LogicalAnd {out:?}");
    comm.all_reduce_buf(&v, &mut out, Op::LogicalOr)?;
    check!(comm, out == [1, 0, 1, 1], "LogicalOr {out:?}");
    let x = comm.all_reduce_scalar(7u64, Op::LogicalXor)?;
    check!(comm, x == (comm.size() % 2) as u64, "LogicalXor {x}");
    Ok(())
}

/// Threads under `MPI_THREAD_MULTIPLE`: 4 threads per rank, each exchanging 10 000 messages with its peer
/// thread on the next and previous rank; every message arrives, in order, with the right content.
fn threads(comm: &Comm) -> spmd::Result<()> {
    const T: usize = 4;
    const N: usize = 10_000;
    let shared = comm.shared()?;
    let (right, left) = ring(comm);
    let results: Vec<spmd::Result<usize>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..T)
            .map(|t| {
                let shared = shared.clone();
                s.spawn(move || -> spmd::Result<usize> {
                    let comm = shared.comm();
                    let me = comm.rank();
                    let tag = t as i32;
                    let mut ok = 0;
                    for i in 0..N {
                        let out = [(me * 1_000_000 + t * N + i) as u64];
                        let mut got = [0u64];
                        if i % 10 == 9 {
                            // Objects and non-blocking calls too, on the same thread's tag.
                            let r = comm.irecv_obj::<(usize, usize)>(left, tag)?;
                            comm.send_obj(right, tag, &(me, i))?;
                            let ((from, k), _) = r.wait()?;
                            ok += usize::from(from == left && k == i);
                        } else {
                            comm.sendrecv_buf(right, tag, &out, left, tag, &mut got)?;
                            ok += usize::from(got[0] == (left * 1_000_000 + t * N + i) as u64);
                        }
                    }
                    Ok(ok)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    for (t, r) in results.into_iter().enumerate() {
        let ok = r?;
        check!(comm, ok == N, "thread {t}: {ok} of {N} messages right");
    }
    Ok(())
}

/// Below `MPI_THREAD_MULTIPLE` there is no handle for other threads.
fn no_shared_below_multiple(comm: &Comm) -> spmd::Result<()> {
    let e = comm.shared().unwrap_err();
    check!(comm, e.kind() == ErrorKind::ThreadLevel, "{e}");
    Ok(())
}

/// An object with a large body (its header message arrives by rendezvous) and a small out-of-band part.
#[derive(Serialize, Deserialize)]
struct Framed {
    head: Vec<u8>,
    tail: Oob<u32>,
}

/// While an object's header is still arriving, its small out-of-band part (already in) must go to that object, not
/// to a later receive with the same source and tag, also when a buffer receive took the object by mistake.
/// (Provoked reliably when the header travels in fragments, as with Open MPI's
/// `btl_vader_single_copy_mechanism none`; see `tests/safety.rs`.)
fn parts_while_header_arrives(comm: &Comm) -> spmd::Result<()> {
    if comm.size() < 2 || comm.rank() > 1 {
        return Ok(());
    }
    object_then_buffer(comm, 1, |round| {
        let mut b = [0u32; 1];
        let got = scope(|s| -> spmd::Result<Framed> {
            let o = comm.irecv_obj::<Framed>(0, 5)?;
            let rb = comm.irecv_buf_into(s, 0, 5, &mut b)?;
            let (v, _) = o.wait()?;
            rb.wait()?;
            Ok(v)
        })?;
        check!(
            comm,
            got.tail[..] == [2 * round + 1] && b[0] == 2 * round + 2 && got.head.len() == HEAD_LEN,
            "round {round}: the object's part is {:?} (want {}), the later buffer {} (want {})",
            &got.tail[..],
            2 * round + 1,
            b[0],
            2 * round + 2
        );
        Ok(())
    })?;
    // A probe while the object's header arrives shows the later buffer (8 bytes), not the object's part (4).
    object_then_buffer(comm, 2, |round| {
        let o = comm.irecv_obj::<Framed>(0, 5)?;
        let st = comm.probe(0, 5)?;
        let mut b = vec![0u32; st.bytes() / 4];
        comm.recv_buf_into(0, 5, &mut b)?;
        let (v, _) = o.wait()?;
        check!(
            comm,
            st.bytes() == 8 && b == [2 * round + 2; 2] && v.tail[..] == [2 * round + 1],
            "round {round}: probe saw {} bytes (want 8), then got {b:?} (want [{}; 2]); the object's part {:?}",
            st.bytes(),
            2 * round + 2,
            &v.tail[..]
        );
        Ok(())
    })?;
    // The same when the later receive is made on another handle of the same communicator (`Comm::from_raw`):
    // a blocking one, which must wait for the object's part to be taken as well.
    // SAFETY: `comm`'s handle stays valid while `alias` is used (within this function).
    let alias = unsafe { Comm::from_raw(crate::common::universe(), comm.as_raw()) }?;
    object_then_buffer(comm, 1, |round| {
        let o = comm.irecv_obj::<Framed>(0, 5)?;
        let mut b = [0u32; 1];
        alias.recv_buf_into(0, 5, &mut b)?;
        let (v, _) = o.wait()?;
        check!(
            comm,
            b[0] == 2 * round + 2 && v.tail[..] == [2 * round + 1],
            "round {round}: on another handle the later buffer is {} (want {}), the object's part {:?}",
            b[0],
            2 * round + 2,
            &v.tail[..]
        );
        Ok(())
    })?;
    // The same when a buffer receive takes the object by mistake: it reports the mistake and discards the
    // object's part, and the later receive still gets the later buffer.
    object_then_buffer(comm, 1, |round| {
        let mut big = vec![0u8; 2 * HEAD_LEN];
        let mut b = [0u32; 1];
        let (first, second) = scope(|s| -> spmd::Result<_> {
            let rbig = comm.irecv_buf_into(s, 0, 5, &mut big[..])?;
            let rb = comm.irecv_buf_into(s, 0, 5, &mut b)?;
            Ok((rbig.wait(), rb.wait()))
        })?;
        check!(
            comm,
            matches!(&first, Err(e) if e.kind() == spmd::ErrorKind::WrongFamily) && second.is_ok(),
            "round {round}: a buffer receive of an object gave {first:?}, the later one {second:?}"
        );
        check!(
            comm,
            b[0] == 2 * round + 2,
            "round {round}: the later buffer receive got {} (want {}; {} is the object's part)",
            b[0],
            2 * round + 2,
            2 * round + 1
        );
        Ok(())
    })
}

/// The body of the objects [`parts_while_header_arrives`] sends: large enough to arrive by rendezvous.
const HEAD_LEN: usize = 4 << 20;

/// Ten rounds of: rank 0 sends an object (body of `HEAD_LEN` bytes, out-of-band part `[2r + 1]`; non-blocking, so
/// the part leaves while the body is still on its way), then a buffer `[2r + 2; later_len]` with the same tag;
/// rank 1 receives with `receive(r)`.
fn object_then_buffer(
    comm: &Comm,
    later_len: usize,
    mut receive: impl FnMut(u32) -> spmd::Result<()>,
) -> spmd::Result<()> {
    for round in 0..10u32 {
        if comm.rank() == 0 {
            let obj = Framed {
                head: vec![7u8; HEAD_LEN],
                tail: Oob::new(vec![2 * round + 1]),
            };
            comm.isend_obj(1, 5, &obj)?.wait()?;
            comm.send_buf(1, 5, &vec![2 * round + 2; later_len])?;
        } else {
            receive(round)?;
        }
    }
    Ok(())
}

pub const CASES: &[Case] = &[
    case("receive_into_shared_arrays", receive_into_shared_arrays),
    case("oob_from_temporaries", oob_from_temporaries),
    case("dropped_receive_and_comm", dropped_receive_and_comm),
    case("disagreeing_lengths", disagreeing_lengths),
    case("overflowing_counts", overflowing_counts),
    case("truncation_never_overruns", truncation_never_overruns),
    case("cross_family_mistakes", cross_family_mistakes),
    case("parts_while_header_arrives", parts_while_header_arrives),
    case("zero_length_buffers", zero_length_buffers),
    case("logical_ops_are_truth_values", logical_ops_are_truth_values),
    case("no_shared_below_multiple", no_shared_below_multiple),
    special("threads", threads),
];
