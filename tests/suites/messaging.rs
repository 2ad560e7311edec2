//! The messaging cases, shared by the single-machine suite (`tests/messaging.rs`) and the simulated cluster
//! (`tests/cluster.rs`).

use std::collections::{BTreeMap, HashMap};

use bytemuck::AnyBitPattern;
use mpi::traits::Equivalence;
use ndarray::{Array1, Array2, s};
use serde::{Deserialize, Serialize};
use spmd::request::{Completion, scope, test_all, wait_all, wait_any};
use spmd::{ANY_SOURCE, ANY_TAG, Comm, ErrorKind, Loc, Oob, Op};

use crate::common::{Case, case, special};

// ---------------------------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------------------------

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
enum Shape {
    Empty,
    Point(f64, f64),
    Named { name: String, sides: Vec<u32> },
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Record {
    id: u64,
    tags: BTreeMap<String, Option<i32>>,
    shapes: Vec<Shape>,
    pair: (i8, u128),
}

/// A struct with padding (28 bytes of fields in 32), sent as a buffer through its derived MPI datatype.
#[derive(Equivalence, Clone, Copy, AnyBitPattern, Debug, PartialEq)]
#[repr(C)]
struct Particle {
    pos: [f64; 3],
    id: u32,
}

/// Values of every shape the object family must carry, made different on every rank.
#[derive(Serialize, Deserialize, Debug, Clone)]
struct Corpus {
    unit: (),
    bools: (bool, bool),
    ints: (i8, i16, i32, i64, i128, u8, u16, u32, u64, u128, isize, usize),
    floats: Vec<f64>,
    f32s: Vec<f32>,
    strings: (String, String, String),
    nested: Vec<Vec<Option<(u8, String)>>>,
    map: HashMap<String, u64>,
    btree: BTreeMap<i64, Vec<Shape>>,
    record: Record,
    empty_vec: Vec<u64>,
    empty_map: HashMap<u8, u8>,
    large: Vec<f64>,
    ch: char,
}

fn corpus(rank: usize) -> Corpus {
    let r = rank as i64;
    Corpus {
        unit: (),
        bools: (true, rank.is_multiple_of(2)),
        ints: (
            i8::MIN,
            i16::MAX,
            i32::MIN + rank as i32,
            i64::MAX - r,
            i128::MIN,
            u8::MAX,
            0,
            u32::MAX,
            u64::MAX,
            u128::MAX,
            isize::MIN,
            usize::MAX,
        ),
        floats: vec![
            0.0,
            -0.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
            f64::EPSILON,
            r as f64,
        ],
        f32s: vec![-0.0, f32::NAN, f32::MAX],
        strings: (String::new(), "héllo wörld ✓ 数学 🦀".into(), "x".repeat(5000 + rank)),
        nested: vec![
            vec![],
            vec![None, Some((7, "seven".into()))],
            vec![Some((rank as u8, String::new()))],
        ],
        map: (0..50u64).map(|i| (format!("key{i}-{rank}"), i * r as u64)).collect(),
        btree: [(-1, vec![]), (r, vec![Shape::Empty, Shape::Point(1.5, -2.5)])]
            .into_iter()
            .collect(),
        record: Record {
            id: rank as u64,
            tags: [("a".to_string(), None), ("b".to_string(), Some(-3))]
                .into_iter()
                .collect(),
            shapes: vec![Shape::Named {
                name: "tri".into(),
                sides: vec![3, 4, 5],
            }],
            pair: (-1, u128::MAX - rank as u128),
        },
        empty_vec: vec![],
        empty_map: HashMap::new(),
        large: (0..200_000).map(|i| i as f64 * 0.5 + r as f64).collect(),
        ch: 'λ',
    }
}

/// Compares two corpora; floats bit for bit (NaN and -0.0 included).
fn same(a: &Corpus, b: &Corpus) -> bool {
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let bits32 = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    a.bools == b.bools
        && a.ints == b.ints
        && bits(&a.floats) == bits(&b.floats)
        && bits32(&a.f32s) == bits32(&b.f32s)
        && a.strings == b.strings
        && a.nested == b.nested
        && a.map == b.map
        && a.btree == b.btree
        && a.record == b.record
        && a.empty_vec == b.empty_vec
        && a.empty_map == b.empty_map
        && bits(&a.large) == bits(&b.large)
        && a.ch == b.ch
}

fn particles(rank: usize, n: usize) -> Vec<Particle> {
    (0..n)
        .map(|i| Particle {
            pos: [i as f64, rank as f64, -(i as f64)],
            id: (rank * 1000 + i) as u32,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------------------
// Objects, point-to-point
// ---------------------------------------------------------------------------------------------------------------

fn obj_ring_corpus(comm: &Comm) -> spmd::Result<()> {
    let (r, p) = (comm.rank(), comm.size());
    let (right, left) = ((r + 1) % p, (r + p - 1) % p);
    let mine = corpus(r);
    let req = comm.isend_obj(right, 11, &mine)?;
    let (got, st): (Corpus, _) = comm.recv_obj(left, 11)?;
    req.wait()?;
    check!(comm, same(&got, &corpus(left)), "ring: corpus from rank {left} differs");
    check!(comm, st.source() == left && st.tag() == 11, "ring status {st:?}");
    // Every corpus field on its own, so a failure points at the type.
    fn pass<T: Serialize + serde::de::DeserializeOwned>(
        comm: &Comm,
        v: &T,
        right: usize,
        left: usize,
    ) -> spmd::Result<T> {
        comm.sendrecv_obj(right, 12, v, left, 12).map(|(v, _)| v)
    }
    macro_rules! each {
        ($($f:ident),*) => {$(
            let v = pass(comm, &mine.$f, right, left)?;
            check!(comm, v == corpus(left).$f, "field {} differs", stringify!($f));
        )*};
    }
    each!(
        unit, bools, ints, strings, nested, map, btree, record, empty_vec, empty_map, ch
    );
    // A self-send goes through too (non-blocking send, then receive).
    let req = comm.isend_obj(r, 13, &mine.record)?;
    let (back, _): (Record, _) = comm.recv_obj(r, 13)?;
    req.wait()?;
    check!(comm, back == mine.record, "self-send");
    Ok(())
}

fn obj_chain_and_any_source(comm: &Comm) -> spmd::Result<()> {
    let (r, p) = (comm.rank(), comm.size());
    // A chain: rank r waits for r-1, appends itself, passes on.
    let mut trail: Vec<usize> = if r == 0 { vec![] } else { comm.recv_obj(r - 1, 20)?.0 };
    trail.push(r);
    if r + 1 < p {
        comm.send_obj(r + 1, 20, &trail)?;
    } else {
        check!(comm, trail == (0..p).collect::<Vec<_>>(), "chain arrived as {trail:?}");
    }
    // Any source, any tag: rank 0 collects one message from everyone else, tagged with the sender.
    if r == 0 {
        let mut seen = vec![false; p];
        seen[0] = true;
        for _ in 1..p {
            let (v, st): (String, _) = comm.recv_obj(ANY_SOURCE, ANY_TAG)?;
            check!(
                comm,
                v == format!("from {}", st.source()) && st.tag() == 100 + st.source() as i32,
                "any-source got {v} {st:?}"
            );
            seen[st.source()] = true;
        }
        check!(comm, seen.iter().all(|&s| s), "missing senders {seen:?}");
    } else {
        comm.send_obj(0, 100 + r as i32, &format!("from {r}"))?;
    }
    comm.barrier()
}

fn obj_out_of_order_tags(comm: &Comm) -> spmd::Result<()> {
    let (r, p) = (comm.rank(), comm.size());
    if p < 2 {
        return Ok(());
    }
    let big = vec![r as u32; 100_000]; // travels as header + data
    if r == 0 {
        for t in 1..=3 {
            comm.send_obj(1, t, &(t, "small"))?;
        }
        let req = comm.isend_obj(1, 5, &big)?;
        comm.send_obj(1, 4, &"after the big one")?;
        req.wait()?;
    } else if r == 1 {
        for t in (1..=3).rev() {
            let ((tt, s), st): ((i32, String), _) = comm.recv_obj(0, t)?;
            check!(comm, tt == t && s == "small" && st.tag() == t, "tag {t}: got {tt} {s}");
        }
        let (s, _): (String, _) = comm.recv_obj(0, 4)?;
        check!(comm, s == "after the big one", "tag 4: {s}");
        let (v, st): (Vec<u32>, _) = comm.recv_obj(0, 5)?;
        check!(
            comm,
            v == vec![0u32; 100_000] && st.bytes() > 400_000,
            "tag 5: {} elements {st:?}",
            v.len()
        );
    }
    comm.barrier()
}

fn obj_wrong_type_is_decode_error(comm: &Comm) -> spmd::Result<()> {
    let (r, p) = (comm.rank(), comm.size());
    let right = (r + 1) % p;
    let left = (r + p - 1) % p;
    let req = comm.isend_obj(right, 30, &(1u64, 2u64))?;
    let e = comm.recv_obj::<String>(left, 30).unwrap_err();
    req.wait()?;
    check!(comm, e.kind() == ErrorKind::Decode, "kind {:?}: {e}", e.kind());
    let msg = e.to_string();
    check!(
        comm,
        msg.contains(&format!("from rank {left}")) && msg.contains("tag 30") && msg.contains("String"),
        "message: {msg}"
    );
    // The next message still arrives intact.
    let req = comm.isend_obj(right, 31, &"fine")?;
    let (s, _): (String, _) = comm.recv_obj(left, 31)?;
    req.wait()?;
    check!(comm, s == "fine", "after a decode error: {s}");
    Ok(())
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Field {
    name: String,
    step: u64,
    values: Oob<f64>,
    ids: Oob<u32>,
    empty: Oob<f64>,
}

fn obj_out_of_band(comm: &Comm) -> spmd::Result<()> {
    let (r, p) = (comm.rank(), comm.size());
    let (right, left) = ((r + 1) % p, (r + p - 1) % p);
    let make = |k: usize| Field {
        name: format!("field {k}"),
        step: k as u64,
        values: Oob::new((0..300_000).map(|i| i as f64 + k as f64).collect()),
        ids: Oob::new(vec![k as u32; 7]),
        empty: Oob::new(vec![]),
    };
    // Blocking.
    let req = comm.isend_obj(right, 40, &make(r))?;
    let (f, _): (Field, _) = comm.recv_obj(left, 40)?;
    req.wait()?;
    check!(comm, f == make(left), "oob blocking: {} {}", f.name, f.values.len());
    // Non-blocking receive posted first, then a blocking send (the receive must make progress meanwhile).
    let rr = comm.irecv_obj::<Field>(left, 41)?;
    let sr = comm.isend_obj(right, 41, &make(r + 10))?;
    let (f, _) = rr.wait()?;
    sr.wait()?;
    check!(comm, f == make(left + 10), "oob non-blocking");
    // In collectives, out-of-band fields travel inline.
    let all = comm.all_gather_obj(&make(r))?;
    check!(
        comm,
        all.iter().enumerate().all(|(k, f)| *f == make(k)),
        "oob in all_gather_obj"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// Buffers, point-to-point
// ---------------------------------------------------------------------------------------------------------------

fn buf_types_and_sizes(comm: &Comm) -> spmd::Result<()> {
    let (r, p) = (comm.rank(), comm.size());
    let (right, left) = ((r + 1) % p, (r + p - 1) % p);
    // Sizes around the direct limit (4000 bytes), zero, and large.
    for n in [0usize, 1, 499, 500, 501, 4096, 1 << 18] {
        let send: Vec<f64> = (0..n).map(|i| (i * p + r) as f64).collect();
        let mut recv = vec![-1.0; n];
        let st = comm.sendrecv_buf(right, 1, &send, left, 1, &mut recv)?;
        let ok = recv.iter().enumerate().all(|(i, &x)| x == (i * p + left) as f64);
        check!(
            comm,
            ok && st.count::<f64>() == n && st.source() == left,
            "f64 × {n}: {st:?}"
        );
        // Blocking send and receive in a pair order that cannot deadlock: even ranks send first.
        let mut got = vec![0.0; n];
        if p > 1 {
            let partner = r ^ 1;
            if partner < p {
                if r % 2 == 0 {
                    comm.send_buf(partner, 2, &send)?;
                    comm.recv_buf_into(partner, 2, &mut got)?;
                } else {
                    comm.recv_buf_into(partner, 2, &mut got)?;
                    comm.send_buf(partner, 2, &send)?;
                }
                check!(
                    comm,
                    got.iter().enumerate().all(|(i, &x)| x == (i * p + partner) as f64),
                    "pair f64 × {n}"
                );
            }
        }
    }
    // Other element types: integers at their extremes, a padded struct, Loc pairs, arrays and scalars.
    let ints = [i64::MIN, -1, 0, 1, i64::MAX - r as i64];
    let mut got = [0i64; 5];
    comm.sendrecv_buf(right, 3, &ints, left, 3, &mut got)?;
    check!(
        comm,
        got[4] == i64::MAX - left as i64 && got[0] == i64::MIN,
        "i64 extremes {got:?}"
    );
    let ps = particles(r, 1000);
    let mut pg = particles(0, 1000);
    comm.sendrecv_buf(right, 4, &ps, left, 4, &mut pg[..])?;
    check!(comm, pg == particles(left, 1000), "padded structs");
    let mut x = 0u8;
    comm.sendrecv_buf(right, 5, &(r as u8), left, 5, &mut x)?;
    check!(comm, x == left as u8, "scalar u8: {x}");
    let mut l = Loc::new(0.0f64, 0);
    comm.sendrecv_buf(right, 6, &Loc::new(r as f64, r as i32), left, 6, &mut l)?;
    check!(comm, l == Loc::new(left as f64, left as i32), "Loc: {l:?}");
    // recv_buf allocates to the message size.
    let req_send: Vec<u16> = vec![r as u16; 3 + r];
    let sr = comm.isend_obj(r, 0, &0u8)?; // unrelated self-message on another tag must not interfere
    let (v, st) = scope(|s| -> spmd::Result<_> {
        let w = comm.isend_buf(s, right, 7, &req_send)?;
        let out = comm.recv_buf::<u16>(left, 7)?;
        w.wait()?;
        Ok(out)
    })?;
    let _: (u8, _) = comm.recv_obj(r, 0)?;
    sr.wait()?;
    check!(
        comm,
        v == vec![left as u16; 3 + left] && st.count::<u16>() == 3 + left,
        "recv_buf: {v:?}"
    );
    Ok(())
}

fn buf_ndarray(comm: &Comm) -> spmd::Result<()> {
    let (r, p) = (comm.rank(), comm.size());
    let (right, left) = ((r + 1) % p, (r + p - 1) % p);
    let a = Array2::from_shape_fn((60, 70), |(i, j)| (i * 1000 + j + r * 100_000) as f64);
    let expect = |rank: usize| Array2::from_shape_fn((60, 70), |(i, j)| (i * 1000 + j + rank * 100_000) as f64);
    // Whole array, contiguous.
    let mut b = Array2::<f64>::zeros((60, 70));
    comm.sendrecv_buf(right, 1, &a, left, 1, &mut b)?;
    check!(comm, b == expect(left), "contiguous 2-D");
    // A strided column, received into a contiguous vector, and the other way round.
    let mut col = Array1::<f64>::zeros(60);
    comm.sendrecv_buf(right, 2, &a.column(3), left, 2, &mut col)?;
    check!(comm, col == expect(left).column(3), "strided column");
    let mut c = Array2::<f64>::zeros((60, 70));
    let v: Vec<f64> = a.column(5).to_vec();
    let mut target = c.column_mut(5);
    scope(|s| -> spmd::Result<()> {
        let rr = comm.irecv_buf_into(s, left, 3, &mut target)?;
        let w = comm.isend_buf(s, right, 3, &v)?;
        wait_all(vec![rr, w])?;
        Ok(())
    })?;
    check!(comm, c.column(5) == expect(left).column(5), "into a strided column");
    // Reversed and sliced views; a transposed (Fortran-order) view.
    let mut rev = Array1::<f64>::zeros(35);
    comm.sendrecv_buf(right, 4, &a.slice(s![7, ..;-2]), left, 4, &mut rev)?;
    check!(comm, rev == expect(left).slice(s![7, ..;-2]), "reversed step-2 row");
    let mut t = Array2::<f64>::zeros((70, 60));
    comm.sendrecv_buf(right, 5, &a.t(), left, 5, &mut t)?;
    check!(comm, t == expect(left).t(), "transposed view");
    // Broadcast into a strided view from every root.
    for root in 0..p {
        let mut m = Array2::from_elem((8, 9), -1.0f64);
        if r == root {
            m.fill(root as f64);
        }
        comm.broadcast_buf(root, &mut m.slice_mut(s![.., 2..;3]))?;
        let ok = m.indexed_iter().all(|((_, j), &x)| {
            if j >= 2 && (j - 2) % 3 == 0 {
                x == root as f64
            } else {
                x == if r == root { root as f64 } else { -1.0 }
            }
        });
        check!(comm, ok, "strided broadcast from {root}");
    }
    Ok(())
}

fn buf_truncation(comm: &Comm) -> spmd::Result<()> {
    let (r, p) = (comm.rank(), comm.size());
    let (right, left) = ((r + 1) % p, (r + p - 1) % p);
    for n in [5usize, 100_000] {
        let send = vec![r as f64; n];
        let mut small = [7.0f64; 2];
        let after = vec![9.0f64; 3];
        let e = scope(|s| -> spmd::Result<spmd::Error> {
            let w = comm.isend_buf(s, right, 50, &send)?;
            let w2 = comm.isend_buf(s, right, 51, &after)?;
            let e = comm.recv_buf_into(left, 50, &mut small[..]).unwrap_err();
            let mut next = [0.0f64; 3];
            comm.recv_buf_into(left, 51, &mut next)?;
            if next != [9.0; 3] {
                return Err(spmd::Error::new(
                    ErrorKind::Other,
                    format!("message after a truncation: {next:?}"),
                ));
            }
            wait_all(vec![w, w2])?;
            Ok(e)
        })?;
        let msg = e.to_string();
        check!(comm, e.kind() == ErrorKind::Truncated, "kind {:?}: {msg}", e.kind());
        check!(
            comm,
            msg.contains(&format!("{} bytes", n * 8)) && msg.contains("buffer of 2 elements"),
            "sizes missing: {msg}"
        );
        check!(
            comm,
            msg.contains(&format!("rank {left}")) && msg.contains("tag 50"),
            "peer/tag missing: {msg}"
        );
        // Nothing past the buffer was touched: the buffer is still a Vec of 2 whose memory is intact.
        check!(comm, small.len() == 2, "buffer changed length");
        // The non-blocking receive reports it on completion.
        let mut tiny = [0.0f64; 1];
        let e = scope(|s| -> spmd::Result<spmd::Error> {
            let rr = comm.irecv_buf_into(s, left, 52, &mut tiny)?;
            let w = comm.isend_buf(s, right, 52, &send)?;
            let e = rr.wait().unwrap_err();
            w.wait()?;
            Ok(e)
        })?;
        check!(comm, e.kind() == ErrorKind::Truncated, "non-blocking truncation: {e}");
    }
    Ok(())
}

fn probes(comm: &Comm) -> spmd::Result<()> {
    let (r, p) = (comm.rank(), comm.size());
    let (right, left) = ((r + 1) % p, (r + p - 1) % p);
    check!(
        comm,
        comm.iprobe(ANY_SOURCE, 999)?.is_none(),
        "iprobe found a message nobody sent"
    );
    for n in [3usize, 50_000] {
        let send = vec![r as i32; n];
        let got = scope(|s| -> spmd::Result<(spmd::Status, Vec<i32>)> {
            let w = comm.isend_buf(s, right, 60, &send)?;
            let st = comm.probe(left, ANY_TAG)?;
            let (v, _) = comm.recv_buf::<i32>(st.source(), st.tag())?;
            w.wait()?;
            Ok((st, v))
        })?;
        check!(
            comm,
            got.0.source() == left && got.0.tag() == 60 && got.0.bytes() == n * 4,
            "probe status {:?}",
            got.0
        );
        check!(comm, got.1 == vec![left as i32; n], "probe then recv");
    }
    // iprobe eventually sees a message.
    let w = comm.isend_obj(right, 61, &"x")?;
    let mut found = None;
    let t0 = std::time::Instant::now();
    while t0.elapsed() < std::time::Duration::from_secs(20) {
        found = comm.iprobe(left, 61)?;
        if found.is_some() {
            break;
        }
        std::thread::yield_now(); // let an oversubscribed sender run
    }
    check!(comm, found.is_some(), "iprobe never saw the message");
    let _: (String, _) = comm.recv_obj(left, 61)?;
    w.wait()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// Non-blocking requests
// ---------------------------------------------------------------------------------------------------------------

fn request_semantics(comm: &Comm) -> spmd::Result<()> {
    let (r, p) = (comm.rank(), comm.size());
    let (right, left) = ((r + 1) % p, (r + p - 1) % p);
    // A receive posted before anything is sent does not complete until the message is sent.
    let mut buf = [0u64; 4];
    let mut big = vec![0u64; 10_000];
    let mut tested_early = true;
    let (s71, s70) = (vec![r as u64; 10_000], [r as u64; 4]);
    scope(|s| -> spmd::Result<()> {
        let mut rr = comm.irecv_buf_into(s, left, 70, &mut buf)?;
        let mut rb = comm.irecv_buf_into(s, left, 71, &mut big)?;
        tested_early = rr.test()? || rb.test()?;
        comm.barrier()?;
        let w1 = comm.isend_buf(s, right, 71, &s71)?;
        let w2 = comm.isend_buf(s, right, 70, &s70)?;
        let mut all = vec![rr, rb, w1, w2];
        let mut done = 0;
        while !all.is_empty() {
            let (_, st) = wait_any(&mut all)?;
            let _ = st;
            done += 1;
        }
        check!(comm, done == 4, "wait_any completed {done}");
        Ok(())
    })?;
    check!(
        comm,
        !tested_early || p == 1,
        "a receive completed before its message was sent"
    );
    check!(
        comm,
        buf == [left as u64; 4] && big.iter().all(|&x| x == left as u64),
        "irecv data"
    );
    // Two pending receives with the same source and tag match in the order they were posted.
    let (mut a, mut b) = ([0u32; 1], vec![0u32; 5000]);
    let big = vec![2u32; 5000];
    scope(|s| -> spmd::Result<()> {
        let ra = comm.irecv_buf_into(s, left, 72, &mut a)?;
        let rb = comm.irecv_buf_into(s, left, 72, &mut b)?;
        let w1 = comm.isend_buf(s, right, 72, &[1u32])?;
        let w2 = comm.isend_buf(s, right, 72, &big)?;
        // Wait for the second first: the first must still get the first message.
        let stb = rb.wait()?;
        let sta = ra.wait()?;
        wait_all(vec![w1, w2])?;
        check!(
            comm,
            sta.count::<u32>() == 1 && stb.count::<u32>() == 5000,
            "order: {sta:?} {stb:?}"
        );
        Ok(())
    })?;
    check!(comm, a == [1] && b.iter().all(|&x| x == 2), "posting order not kept");
    // The same for objects, with sizes on both sides of the direct limit.
    let o1 = comm.irecv_obj::<Vec<u8>>(left, 73)?;
    let o2 = comm.irecv_obj::<Vec<u8>>(left, 73)?;
    let o3 = comm.irecv_obj::<Vec<u8>>(ANY_SOURCE, 73)?;
    let s1 = comm.isend_obj(right, 73, &vec![1u8; 10])?;
    let s2 = comm.isend_obj(right, 73, &vec![2u8; 100_000])?;
    let s3 = comm.isend_obj(right, 73, &vec![3u8; 20])?;
    let (v3, _) = o3.wait()?;
    let (v2, _) = o2.wait()?;
    let (v1, _) = o1.wait()?;
    wait_all(vec![s1, s2, s3])?;
    check!(
        comm,
        v1 == vec![1u8; 10] && v2 == vec![2u8; 100_000] && v3 == vec![3u8; 20],
        "object order"
    );
    // test_all over objects; a large object (past mpi4py's 32 KiB irecv limit) arrives whole.
    let mut recvs = vec![
        comm.irecv_obj::<Vec<f64>>(left, 74)?,
        comm.irecv_obj::<Vec<f64>>(left, 75)?,
    ];
    let sends = vec![
        comm.isend_obj(right, 75, &vec![0.5f64; 1 << 20])?,
        comm.isend_obj(right, 74, &vec![0.25f64; 9])?,
    ];
    while !test_all(&mut recvs)? {}
    let got = wait_all(recvs)?;
    wait_all(sends)?;
    check!(
        comm,
        got[0].0 == vec![0.25; 9] && got[1].0 == vec![0.5; 1 << 20],
        "test_all objects"
    );
    // wait_all takes every request from its argument before it waits for any: a lazy iterator that starts a large
    // send to the right, then the receive from the left, completes although every rank sends first (a send of
    // 1 MiB completes only once its receive is posted).
    let big = vec![1.5f64; 1 << 17];
    let mut from_left = vec![0f64; 1 << 17];
    scope(|s| -> spmd::Result<()> {
        let mut into = Some(&mut from_left);
        let started = (0..2).map(|k| {
            let r = match k {
                0 => comm.isend_buf(s, right, 87, &big),
                _ => comm.irecv_buf_into(s, left, 87, into.take().expect("one receive")),
            };
            r.expect("starting a request")
        });
        wait_all(started)?;
        Ok(())
    })?;
    check!(comm, from_left == big, "wait_all over a lazy iterator");
    // Cancelling a receive that nothing matched: the message goes to the next receive.
    comm.barrier()?; // nothing in flight from earlier steps
    let c = comm.irecv_obj::<u8>(left, 76)?;
    check!(comm, c.cancel(), "cancel of an unmatched object receive");
    drop(c);
    let mut x = [0u8; 1];
    scope(|s| -> spmd::Result<()> {
        let r = comm.irecv_buf_into(s, left, 77, &mut x)?;
        check!(comm, r.cancel(), "cancel of an unmatched buffer receive");
        let e = r.wait().unwrap_err();
        check!(comm, e.kind() == ErrorKind::Cancelled, "wait after cancel: {e}");
        Ok(())
    })?;
    comm.barrier()?; // no rank sends with tag 76 before every rank has cancelled
    let w = comm.isend_obj(right, 76, &5u8)?;
    let (five, _): (u8, _) = comm.recv_obj(left, 76)?;
    w.wait()?;
    check!(comm, five == 5, "a cancelled receive took the message");
    // A dropped object receive is detached, not cancelled: it still takes the first message, so the sender
    // completes and the next receive gets the next message.
    drop(comm.irecv_obj::<u8>(left, 81)?);
    let w1 = comm.isend_obj(right, 81, &7u8)?;
    let w2 = comm.isend_obj(right, 81, &8u8)?;
    let (eight, _): (u8, _) = comm.recv_obj(left, 81)?;
    wait_all(vec![w1, w2])?;
    check!(comm, eight == 8, "a dropped receive lost its place: got {eight}");
    // Handles dropped inside a scope lose nothing: the scope completes every receive (a ring of ghost values).
    let mut ghosts = vec![0u64; 2000];
    let sends: Vec<[u64; 1]> = (0..2000).map(|i| [(r * 10_000 + i) as u64]).collect();
    scope(|s| -> spmd::Result<()> {
        for (i, g) in ghosts.chunks_mut(1).enumerate() {
            comm.irecv_buf_into(s, left, 82 + (i % 4) as i32, g)?;
        }
        for (i, v) in sends.iter().enumerate() {
            comm.isend_buf(s, right, 82 + (i % 4) as i32, v)?;
        }
        Ok(())
    })?;
    let lost = ghosts
        .iter()
        .enumerate()
        .filter(|&(i, &g)| g != (left * 10_000 + i) as u64)
        .count();
    check!(comm, lost == 0, "{lost} of 2000 ghost values lost with dropped handles");
    // The same with 8 KB messages (rendezvous protocol): the scope's end completes them, no hang.
    let mut big_ghosts = vec![0u8; 16 * 8192];
    let big_sends = vec![r as u8; 16 * 8192];
    scope(|s| -> spmd::Result<()> {
        for g in big_ghosts.chunks_mut(8192) {
            comm.irecv_buf_into(s, left, 86, g)?;
        }
        for v in big_sends.chunks(8192) {
            comm.isend_buf(s, right, 86, v)?;
        }
        Ok(())
    })?;
    check!(
        comm,
        big_ghosts.iter().all(|&g| g == left as u8),
        "8 KB ghosts lost with dropped handles"
    );
    comm.barrier()?;
    // Synchronous send: not complete before the receive starts.
    if p > 1 {
        if r == 0 {
            let done_early = scope(|s| -> spmd::Result<bool> {
                let mut w = comm.issend_buf(s, 1, 78, &[1u8])?;
                let early = w.test()?;
                comm.barrier()?;
                w.wait()?;
                Ok(early)
            })?;
            check!(comm, !done_early, "issend completed before the receive was posted");
        } else {
            comm.barrier()?;
            if r == 1 {
                let mut y = [0u8];
                comm.recv_buf_into(0, 78, &mut y)?;
            }
        }
        // Synchronous object sends around a ring: even ranks send first, odd ranks receive first.
        if r % 2 == 0 {
            comm.ssend_obj(right, 79, &"sync")?;
            let _: (String, _) = comm.recv_obj(left, 79)?;
        } else {
            let _: (String, _) = comm.recv_obj(left, 79)?;
            comm.ssend_obj(right, 79, &"sync")?;
        }
    } else {
        comm.barrier()?;
    }
    // A self-send completes once received.
    let w = comm.isend_obj(r, 80, &1u8)?;
    let _: (u8, _) = comm.recv_obj(r, 80)?;
    w.wait()?;
    Ok(())
}

fn deadlock_free_patterns(comm: &Comm) -> spmd::Result<()> {
    // Post receives, then blocking sends of large messages, then wait: works in MPI, must work here.
    let (r, p) = (comm.rank(), comm.size());
    let (right, left) = ((r + 1) % p, (r + p - 1) % p);
    let send = vec![r as f64; 500_000];
    let mut a = vec![0.0; 500_000];
    let mut b = vec![0.0; 500_000];
    scope(|s| -> spmd::Result<()> {
        let ra = comm.irecv_buf_into(s, left, 90, &mut a)?;
        let rb = comm.irecv_buf_into(s, right, 91, &mut b)?;
        comm.send_buf(right, 90, &send)?;
        comm.send_buf(left, 91, &send)?;
        // A blocking collective while receives are pending.
        comm.barrier()?;
        wait_all(vec![ra, rb])?;
        Ok(())
    })?;
    check!(
        comm,
        a[0] == left as f64 && b[499_999] == right as f64,
        "irecv + blocking send exchange"
    );
    // Objects: post receive, blocking send, blocking object collective, wait.
    let rr = comm.irecv_obj::<Vec<u64>>(left, 92)?;
    comm.send_obj(right, 92, &vec![r as u64; 300_000])?;
    let all = comm.all_gather_obj(&r)?;
    let (v, _) = rr.wait()?;
    check!(
        comm,
        v.len() == 300_000 && v[0] == left as u64 && all.len() == p,
        "object exchange with a collective inside"
    );
    // Dropping a non-blocking object send waits for it while keeping this rank's receives moving: the peer's
    // large blocking send to one of them must complete before the peer receives what this rank sends.
    if p >= 2 && r < 2 {
        let peer = 1 - r;
        let big = vec![r as u8 + 1; 1 << 20];
        if r == 0 {
            let pending = comm.irecv_obj::<Vec<u8>>(peer, 93)?;
            drop(comm.isend_obj(peer, 93, &big)?);
            let (v, _) = pending.wait()?;
            check!(
                comm,
                v.len() == 1 << 20 && v[0] == 2,
                "receive pending while a dropped send completes"
            );
        } else {
            comm.send_obj(peer, 93, &big)?;
            let (v, _) = comm.recv_obj::<Vec<u8>>(peer, 93)?;
            check!(comm, v.len() == 1 << 20 && v[0] == 1, "the dropped send arrived");
        }
    }
    // Dropping a non-blocking collective finishes all of its steps: the others, which wait for theirs, see the
    // whole broadcast.
    let root = p - 1;
    let value = vec![7u32; 100_000];
    let req = comm.ibroadcast_obj(root, (r == root).then_some(&value))?;
    if r == root {
        drop(req);
    } else {
        let v = req.wait()?;
        check!(comm, v == value, "ibroadcast_obj whose root dropped its request");
    }
    Ok(())
}

/// A receive whose pattern meets that of an earlier one still waiting takes a message only the later one
/// matches, as a posted receive would: rank 0 waits for rank 1's message on (ANY_SOURCE, 7) while its receive
/// from rank 2 (any tag) waits for a message rank 2 sends only after hearing from rank 0.
fn wildcards_past_a_waiting_receive(comm: &Comm) -> spmd::Result<()> {
    let r = comm.rank();
    if comm.size() < 3 || r > 2 {
        return Ok(());
    }
    for blocking in [false, true] {
        match r {
            0 => {
                let a = comm.irecv_obj::<String>(2, spmd::ANY_TAG)?;
                let (got, st) = if blocking {
                    comm.recv_obj::<String>(spmd::ANY_SOURCE, 7)?
                } else {
                    comm.irecv_obj::<String>(spmd::ANY_SOURCE, 7)?.wait()?
                };
                check!(
                    comm,
                    got == "from 1" && st.source() == 1,
                    "(ANY_SOURCE, 7) got {got:?} from {} (blocking {blocking})",
                    st.source()
                );
                comm.send_obj(2, 0, &"go".to_string())?;
                let (got, st) = a.wait()?;
                check!(
                    comm,
                    got == "from 2" && st.tag() == 3,
                    "(2, ANY_TAG) got {got:?} tag {}",
                    st.tag()
                );
            }
            1 => comm.send_obj(0, 7, &"from 1".to_string())?,
            _ => {
                let (go, _) = comm.recv_obj::<String>(0, 0)?;
                check!(comm, go == "go", "rank 2 got {go:?}");
                comm.send_obj(0, 3, &"from 2".to_string())?;
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// Collectives
// ---------------------------------------------------------------------------------------------------------------

fn coll_obj_every_root(comm: &Comm) -> spmd::Result<()> {
    let (r, p) = (comm.rank(), comm.size());
    let all: Vec<Corpus> = (0..p).map(corpus).collect();
    for root in 0..p {
        let v = comm.broadcast_obj(root, (r == root).then(|| corpus(root)))?;
        check!(comm, same(&v, &corpus(root)), "broadcast_obj from {root}");
        let g = comm.gather_obj(root, &corpus(r))?;
        if r == root {
            let g = g.expect("root gets the values");
            check!(
                comm,
                g.len() == p && g.iter().zip(&all).all(|(a, b)| same(a, b)),
                "gather_obj to {root}"
            );
        } else {
            check!(comm, g.is_none(), "gather_obj: non-root got a value");
        }
        let items = (r == root).then(|| (0..p).map(|k| format!("item {k} from {root}").repeat(k + 1)).collect());
        let mine: String = comm.scatter_obj(root, items)?;
        check!(
            comm,
            mine == format!("item {r} from {root}").repeat(r + 1),
            "scatter_obj from {root}: {mine}"
        );
        let red = comm.reduce_obj(root, r.to_string(), |a, b| a + &b)?;
        let expect: String = (0..p).map(|k| k.to_string()).collect();
        check!(
            comm,
            red.as_ref().is_some() == (r == root) && red.is_none_or(|s| s == expect),
            "reduce_obj to {root}"
        );
    }
    let ag = comm.all_gather_obj(&corpus(r))?;
    check!(comm, ag.iter().zip(&all).all(|(a, b)| same(a, b)), "all_gather_obj");
    let a2a = comm.all_to_all_obj((0..p).map(|d| vec![(r, d); d + 1]).collect())?;
    check!(
        comm,
        a2a.iter().enumerate().all(|(s, v)| *v == vec![(s, r); r + 1]),
        "all_to_all_obj {a2a:?}"
    );
    // Non-commutative combinations come out in rank order.
    let cat = |a: String, b: String| a + &b;
    let word = |k: usize| format!("<{k}>");
    let full: String = (0..p).map(word).collect();
    check!(comm, comm.all_reduce_obj(word(r), cat)? == full, "all_reduce_obj order");
    check!(
        comm,
        comm.scan_obj(word(r), cat)? == (0..=r).map(word).collect::<String>(),
        "scan_obj order"
    );
    let ex = comm.exscan_obj(word(r), cat)?;
    check!(
        comm,
        ex == (r > 0).then(|| (0..r).map(word).collect::<String>()),
        "exscan_obj {ex:?}"
    );
    let rs = comm.reduce_scatter_obj((0..p).map(|d| format!("{r}>{d};")).collect(), cat)?;
    check!(
        comm,
        rs == (0..p).map(|s| format!("{s}>{r};")).collect::<String>(),
        "reduce_scatter_obj {rs}"
    );
    // Matrix products do not commute either.
    let m = |k: usize| [[1.0, k as f64], [0.0, 1.0 + k as f64]];
    let mul = |a: [[f64; 2]; 2], b: [[f64; 2]; 2]| {
        [
            [
                a[0][0] * b[0][0] + a[0][1] * b[1][0],
                a[0][0] * b[0][1] + a[0][1] * b[1][1],
            ],
            [
                a[1][0] * b[0][0] + a[1][1] * b[1][0],
                a[1][0] * b[0][1] + a[1][1] * b[1][1],
            ],
        ]
    };
    let serial = (1..p).fold(m(0), |acc, k| mul(acc, m(k)));
    check!(comm, comm.all_reduce_obj(m(r), mul)? == serial, "matrix product order");
    Ok(())
}

fn coll_buf_every_root(comm: &Comm) -> spmd::Result<()> {
    let (r, p) = (comm.rank(), comm.size());
    for n in [0usize, 1, 7, 3000] {
        for root in 0..p {
            let mut b: Vec<i64> = if r == root {
                (0..n as i64).map(|i| i * 3 + root as i64).collect()
            } else {
                vec![-9; n]
            };
            comm.broadcast_buf(root, &mut b)?;
            check!(
                comm,
                b.iter().enumerate().all(|(i, &x)| x == i as i64 * 3 + root as i64),
                "broadcast_buf n={n} root={root}"
            );
            let send: Vec<i64> = (0..n as i64).map(|i| i + 100 * r as i64).collect();
            let g = comm.gather_buf_vec(root, &send)?;
            if r == root {
                let g = g.expect("root");
                let ok = (0..p).all(|k| (0..n).all(|i| g[k * n + i] == i as i64 + 100 * k as i64));
                check!(comm, ok && g.len() == n * p, "gather_buf n={n} root={root}");
            }
            let all: Vec<i64> = (0..(n * p) as i64).collect();
            let mut part = vec![0i64; n];
            comm.scatter_buf(root, (r == root).then_some(&all[..]), &mut part[..])?;
            check!(
                comm,
                part.iter().enumerate().all(|(i, &x)| x == (r * n + i) as i64),
                "scatter_buf n={n} root={root}"
            );
            let mut red = vec![0i64; n];
            comm.reduce_buf(root, &send, (r == root).then_some(&mut red[..]), Op::Sum)?;
            if r == root {
                let sum_r: i64 = (0..p as i64).map(|k| 100 * k).sum();
                check!(
                    comm,
                    red.iter().enumerate().all(|(i, &x)| x == i as i64 * p as i64 + sum_r),
                    "reduce_buf n={n} root={root}"
                );
            }
            // Variable counts: rank k contributes k + n elements.
            let mine: Vec<u32> = vec![r as u32; r + n];
            let counts: Vec<usize> = (0..p).map(|k| k + n).collect();
            let total: usize = counts.iter().sum();
            let mut gv = vec![0u32; total];
            comm.gather_varcount_buf(root, &mine, (r == root).then_some((&mut gv[..], &counts[..])))?;
            if r == root {
                let expect: Vec<u32> = (0..p).flat_map(|k| vec![k as u32; k + n]).collect();
                check!(comm, gv == expect, "gather_varcount_buf root={root}");
            }
            let src: Vec<u32> = (0..p).flat_map(|k| vec![(k * 10) as u32; k + n]).collect();
            let mut sv = vec![0u32; r + n];
            comm.scatter_varcount_buf(root, (r == root).then_some((&src[..], &counts[..])), &mut sv)?;
            check!(
                comm,
                sv == vec![(r * 10) as u32; r + n],
                "scatter_varcount_buf root={root}"
            );
        }
        let send: Vec<f32> = (0..n).map(|i| (i + r) as f32).collect();
        let ag = comm.all_gather_buf_vec(&send)?;
        check!(
            comm,
            (0..p).all(|k| (0..n).all(|i| ag[k * n + i] == (i + k) as f32)),
            "all_gather_buf n={n}"
        );
        let send: Vec<u16> = (0..p * n).map(|i| (r * 1000 + i / n.max(1)) as u16).collect();
        let mut recv = vec![0u16; p * n];
        comm.all_to_all_buf(&send, &mut recv)?;
        check!(
            comm,
            (0..p).all(|k| (0..n).all(|i| recv[k * n + i] == (k * 1000 + r) as u16)),
            "all_to_all_buf n={n}"
        );
    }
    let counts: Vec<usize> = (0..p).map(|k| 2 * k + 1).collect();
    let mut out = vec![0i8; counts.iter().sum()];
    comm.all_gather_varcount_buf(&vec![r as i8; 2 * r + 1], &mut out, &counts)?;
    check!(
        comm,
        out == (0..p).flat_map(|k| vec![k as i8; 2 * k + 1]).collect::<Vec<_>>(),
        "all_gather_varcount_buf"
    );
    let sc: Vec<usize> = (0..p).map(|d| d + 1).collect(); // to rank d: d+1 elements
    let rc: Vec<usize> = vec![r + 1; p];
    let send: Vec<u64> = (0..p).flat_map(|d| vec![(r * 100 + d) as u64; d + 1]).collect();
    let mut recv = vec![0u64; p * (r + 1)];
    comm.all_to_all_varcount_buf(&send, &sc, &mut recv, &rc)?;
    check!(
        comm,
        recv == (0..p)
            .flat_map(|s| vec![(s * 100 + r) as u64; r + 1])
            .collect::<Vec<_>>(),
        "all_to_all_varcount_buf"
    );
    Ok(())
}

fn coll_reductions(comm: &Comm) -> spmd::Result<()> {
    let (r, p) = (comm.rank(), comm.size());
    let v = |k: usize| -> Vec<i64> { vec![k as i64 + 1, -(k as i64), 1 << k, 3] };
    let sum = comm.all_reduce_scalar(r as f64, Op::Sum)?;
    check!(comm, sum == (p * (p - 1) / 2) as f64, "sum {sum}");
    let mut out = vec![0i64; 4];
    for (op, f) in [
        (Op::Sum, (|a, b| a + b) as fn(i64, i64) -> i64),
        (Op::Product, |a, b| a * b),
        (Op::Min, |a: i64, b: i64| a.min(b)),
        (Op::Max, |a: i64, b: i64| a.max(b)),
        (Op::BitAnd, |a, b| a & b),
        (Op::BitOr, |a, b| a | b),
        (Op::BitXor, |a, b| a ^ b),
        (Op::LogicalAnd, |a, b| ((a != 0) && (b != 0)) as i64),
        (Op::LogicalOr, |a, b| ((a != 0) || (b != 0)) as i64),
        (Op::LogicalXor, |a, b| ((a != 0) != (b != 0)) as i64),
    ] {
        comm.all_reduce_buf(&v(r), &mut out, op)?;
        let expect: Vec<i64> = (0..4).map(|i| (1..p).fold(v(0)[i], |acc, k| f(acc, v(k)[i]))).collect();
        // With one rank MPI applies no operation: the input comes back as it is.
        // (Logical operations still give truth values.)
        let logical = matches!(op, Op::LogicalAnd | Op::LogicalOr | Op::LogicalXor);
        let expect = match (p, logical) {
            (1, true) => v(0).iter().map(|&x| (x != 0) as i64).collect(),
            (1, false) => v(0),
            _ => expect,
        };
        check!(comm, out == expect, "{op:?}: {out:?} != {expect:?}");
    }
    let mut inplace = v(r);
    comm.all_reduce_buf_in_place(&mut inplace, Op::Max)?;
    check!(comm, inplace[2] == 1 << (p - 1), "in place {inplace:?}");
    let mut scan = [0u32; 2];
    comm.scan_buf(&[r as u32 + 1, 1], &mut scan, Op::Sum)?;
    check!(
        comm,
        scan == [((r + 1) * (r + 2) / 2) as u32, r as u32 + 1],
        "scan {scan:?}"
    );
    let mut ex = [777u32; 1];
    comm.exscan_buf(&[r as u32 + 1], &mut ex, Op::Sum)?;
    check!(
        comm,
        if r == 0 {
            ex == [777]
        } else {
            ex == [(r * (r + 1) / 2) as u32]
        },
        "exscan {ex:?}"
    );
    // Min/max with location: the smallest index among equal values wins.
    let val = ((r as f64) - 1.5).abs();
    let mut lo = Loc::new(0.0f64, 0);
    comm.all_reduce_buf(&Loc::new(val, r as i32), &mut lo, Op::MinLoc)?;
    let best = (0..p)
        .map(|k| ((k as f64 - 1.5).abs(), k))
        .fold((f64::MAX, 0), |a, b| if b.0 < a.0 { b } else { a });
    check!(comm, lo == Loc::new(best.0, best.1 as i32), "minloc {lo:?}");
    let mut hi = Loc::new(0i32, 0);
    comm.all_reduce_buf(&Loc::new(7i32, r as i32), &mut hi, Op::MaxLoc)?;
    check!(comm, hi == Loc::new(7, 0), "maxloc ties: {hi:?}");
    let mut l64 = Loc::new(0i64, 0);
    comm.all_reduce_buf(&Loc::new(r as i64 * 10, r as i32), &mut l64, Op::MaxLoc)?;
    check!(comm, l64 == Loc::new((p as i64 - 1) * 10, p as i32 - 1), "maxloc i64");
    let mut l32 = Loc::new(0f32, 0);
    comm.all_reduce_buf(&Loc::new(-(r as f32), r as i32), &mut l32, Op::MinLoc)?;
    check!(comm, l32 == Loc::new(-(p as f32 - 1.0), p as i32 - 1), "minloc f32");
    // Reduce-scatter.
    let send: Vec<i32> = (0..3 * p).map(|i| i as i32 + r as i32).collect();
    let mut blk = [0i32; 3];
    comm.reduce_scatter_block_buf(&send, &mut blk, Op::Sum)?;
    let tot = (p * (p - 1) / 2) as i32;
    check!(
        comm,
        blk == [0, 1, 2].map(|j| (3 * r + j) as i32 * p as i32 + tot),
        "reduce_scatter_block {blk:?}"
    );
    let counts: Vec<usize> = (0..p).map(|k| k + 1).collect();
    let n: usize = counts.iter().sum();
    let send: Vec<i32> = (0..n).map(|i| i as i32).collect();
    let mut mine = vec![0i32; r + 1];
    comm.reduce_scatter_buf(&send, &mut mine, &counts, Op::Sum)?;
    let off: usize = counts[..r].iter().sum();
    check!(
        comm,
        mine == (0..r + 1).map(|j| ((off + j) * p) as i32).collect::<Vec<_>>(),
        "reduce_scatter {mine:?}"
    );
    // Floats: -0.0 and infinities survive max/min.
    let mut f = [0.0f64; 2];
    comm.all_reduce_buf(&[f64::NEG_INFINITY, -0.0], &mut f, Op::Max)?;
    check!(comm, f[0] == f64::NEG_INFINITY && f[1] == 0.0, "float max {f:?}");
    Ok(())
}

fn coll_nonblocking(comm: &Comm) -> spmd::Result<()> {
    let (r, p) = (comm.rank(), comm.size());
    // Several object collectives in flight at once, completed out of order, mixed with blocking ones.
    let b0 = comm.ibroadcast_obj(0, (r == 0).then_some(&vec![1u8; 100_000]))?;
    let g = comm.igather_obj(p - 1, &format!("g{r}"))?;
    let a = comm.iall_reduce_obj(&format!("<{r}>"), |x: String, y: String| x + &y)?;
    let bar = comm.ibarrier()?;
    let blocking = comm.all_gather_obj(&r)?;
    let b1 = comm.ibroadcast_obj(p - 1, (r == p - 1).then_some(&corpus(p - 1)))?;
    let all = a.wait()?;
    let got1 = b1.wait()?;
    let got0 = b0.wait()?;
    let gathered = g.wait()?;
    bar.wait()?;
    check!(
        comm,
        all == (0..p).map(|k| format!("<{k}>")).collect::<String>(),
        "iall_reduce_obj {all}"
    );
    check!(
        comm,
        got0 == vec![1u8; 100_000] && same(&got1, &corpus(p - 1)),
        "ibroadcast_obj"
    );
    check!(
        comm,
        gathered == (r == p - 1).then(|| (0..p).map(|k| format!("g{k}")).collect()),
        "igather_obj"
    );
    check!(
        comm,
        blocking == (0..p).collect::<Vec<_>>(),
        "blocking collective among non-blocking ones"
    );
    // Every root for the non-blocking broadcast.
    for root in 0..p {
        let v = comm.ibroadcast_obj(root, (r == root).then_some(&root))?.wait()?;
        check!(comm, v == root, "ibroadcast_obj root {root}");
    }
    // Buffers in a scope.
    let mut b = if r == 0 { vec![5u64; 10_000] } else { vec![0u64; 10_000] };
    let send = [r as f64 + 1.0; 3];
    let mut sum = [0.0f64; 3];
    let mine = [r as i32; 2];
    let mut gat = vec![0i32; 2 * p];
    scope(|s| -> spmd::Result<()> {
        let rb = comm.ibroadcast_buf(s, 0, &mut b)?;
        let ra = comm.iall_reduce_buf(s, &send, &mut sum, Op::Sum)?;
        let rg = comm.igather_buf(s, 0, &mine, (r == 0).then_some(&mut gat[..]))?;
        wait_all(vec![rb, ra, rg])?;
        Ok(())
    })?;
    check!(comm, b.iter().all(|&x| x == 5), "ibroadcast_buf");
    check!(comm, sum == [(p * (p + 1) / 2) as f64; 3], "iall_reduce_buf {sum:?}");
    if r == 0 {
        check!(
            comm,
            gat == (0..p).flat_map(|k| [k as i32; 2]).collect::<Vec<_>>(),
            "igather_buf {gat:?}"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// Bad input: consistent errors on every rank
// ---------------------------------------------------------------------------------------------------------------

fn bad_input_errors(comm: &Comm) -> spmd::Result<()> {
    let (r, p) = (comm.rank(), comm.size());
    let kind = |res: spmd::Result<()>| res.err().map(|e| e.kind());
    check!(
        comm,
        kind(comm.send_buf(p, 0, &[1u8])) == Some(ErrorKind::InvalidRank),
        "bad destination"
    );
    check!(
        comm,
        kind(comm.send_obj(0, -5, &1u8)) == Some(ErrorKind::InvalidTag),
        "negative tag"
    );
    if spmd::p2p::tag_ub() < i32::MAX {
        check!(
            comm,
            kind(comm.send_obj(0, spmd::p2p::tag_ub() + 1, &1u8)) == Some(ErrorKind::InvalidTag),
            "tag above tag_ub"
        );
    }
    check!(
        comm,
        kind(comm.broadcast_buf(p, &mut [0u8; 1])) == Some(ErrorKind::InvalidRank),
        "bad broadcast root"
    );
    let e = comm.broadcast_obj::<u8>(p + 1, Some(1)).unwrap_err();
    check!(
        comm,
        e.kind() == ErrorKind::InvalidRank && e.to_string().contains(&format!("root {}", p + 1)),
        "bad object root: {e}"
    );
    // Operations that do not fit the element type.
    let e = comm.all_reduce_buf(&[1.0f64], &mut [0.0f64], Op::BitAnd).unwrap_err();
    check!(
        comm,
        e.kind() == ErrorKind::InvalidArgument && e.to_string().contains("f64"),
        "BitAnd on f64: {e}"
    );
    let e = comm.all_reduce_buf(&[1.0f64], &mut [0.0f64], Op::MaxLoc).unwrap_err();
    check!(comm, e.to_string().contains("Loc"), "MaxLoc on f64: {e}");
    let e = comm
        .all_reduce_buf(&particles(r, 1), &mut particles(r, 1)[..], Op::Sum)
        .unwrap_err();
    check!(comm, e.kind() == ErrorKind::InvalidArgument, "Sum on a struct: {e}");
    // The root's mistakes reach every rank for objects.
    let e = comm
        .scatter_obj::<u8>(0, (r == 0).then(|| vec![1u8; p + 1]))
        .unwrap_err();
    check!(
        comm,
        e.kind() == ErrorKind::SizeMismatch && e.to_string().contains(&format!("{} items for {p} ranks", p + 1)),
        "scatter_obj count: {e}"
    );
    let e = comm.scatter_obj::<u8>(0, None).unwrap_err();
    check!(
        comm,
        e.to_string().contains("passed no items"),
        "scatter_obj without items: {e}"
    );
    let e = comm.broadcast_obj::<String>(0, None).unwrap_err();
    check!(
        comm,
        e.to_string().contains("root (rank 0) passed no value"),
        "broadcast_obj without value: {e}"
    );
    let e = comm
        .all_to_all_obj(vec![r; if r == 0 { p + 2 } else { p }])
        .unwrap_err();
    check!(
        comm,
        e.kind() == ErrorKind::SizeMismatch && e.to_string().contains("rank 0 passed"),
        "all_to_all_obj count: {e}"
    );
    // After all these, the communicator still works.
    let s = comm.all_reduce_scalar(1u32, Op::Sum)?;
    check!(comm, s == p as u32, "after errors: {s}");
    // Buffers of disagreeing sizes are an error on every rank.
    let n = if r == 0 && p > 1 { 5 } else { 4 };
    let e = comm.broadcast_buf(0, &mut vec![0u8; n]);
    let e2 = comm.all_reduce_buf(&vec![1i32; n], &mut vec![0; n], Op::Sum);
    let ok = comm.all_reduce_buf(&[1i32; 3], &mut [0i32; 3], Op::Sum);
    if p > 1 {
        let e = e.unwrap_err();
        check!(
            comm,
            e.kind() == ErrorKind::SizeMismatch && e.to_string().contains("between 4 and 5"),
            "checked broadcast: {e}"
        );
        check!(comm, e2.is_err(), "checked all_reduce");
    }
    check!(comm, ok.is_ok(), "checked all_reduce with agreeing sizes failed");
    Ok(())
}

/// Mistakes only one rank can see (a root buffer of the wrong size, a strided buffer where contiguous memory is
/// needed) are errors on every rank: the rank that made it names it, the others point to it. Nobody hangs.
fn one_rank_mistakes(comm: &Comm) -> spmd::Result<()> {
    let (r, p) = (comm.rank(), comm.size());
    let mut part = [0u8; 2];
    let all = vec![0u8; 2 * p + 1];
    let e = comm
        .scatter_buf(0, (r == 0).then_some(&all[..]), &mut part[..])
        .unwrap_err();
    let want = if r == 0 {
        format!(
            "the root's send buffer holds {} elements, {p} ranks × 2 are needed",
            2 * p + 1
        )
    } else {
        "another rank passed a buffer of the wrong size".to_string()
    };
    check!(
        comm,
        e.kind() == ErrorKind::SizeMismatch && e.to_string().contains(&want),
        "scatter_buf: {e}"
    );
    let a = Array2::<f64>::zeros((4, 4));
    let mut out = vec![0.0; 4 * p];
    let mut strided = Array2::<f64>::zeros((4 * p, 2));
    let e = if r == p - 1 {
        comm.all_gather_buf(&a.column(0), &mut strided.column_mut(0))
    } else {
        comm.all_gather_buf(&a.column(0), &mut out[..])
    }
    .unwrap_err();
    let ok = if r == p - 1 {
        e.kind() == ErrorKind::NotContiguous && e.to_string().contains("contiguous")
    } else {
        e.kind() == ErrorKind::SizeMismatch
    };
    check!(comm, ok, "all_gather_buf with a strided receive buffer: {e}");
    // Still usable afterwards.
    check!(
        comm,
        comm.all_reduce_scalar(1u8, Op::Sum)? as usize == p,
        "after mistakes"
    );
    Ok(())
}

/// A 3 GiB buffer and a 3 GiB object between ranks 0 and 1, and collectives above 2^31 elements (run at np 2 with
/// `--ignored`).
fn huge(comm: &Comm) -> spmd::Result<()> {
    const N: usize = 3 << 30;
    let r = comm.rank();
    let pattern = |i: usize| (i % 251) as u8;
    let t0 = std::time::Instant::now();
    if r == 0 {
        let mut v = vec![0u8; N];
        v.iter_mut()
            .enumerate()
            .step_by(4093)
            .for_each(|(i, x)| *x = pattern(i));
        *v.last_mut().expect("non-empty") = 42;
        comm.send_buf(1, 1, &v)?;
        // As an object: a Vec of numbers travels out of band; inside a tuple it goes through bincode.
        comm.send_obj(1, 2, &v)?;
        comm.send_obj(1, 3, &("three gibibytes", &v))?;
    } else if r == 1 {
        let mut v = vec![1u8; N];
        let st = comm.recv_buf_into(0, 1, &mut v)?;
        let ok = st.bytes() == N && v[N - 1] == 42 && v.iter().enumerate().step_by(4093).all(|(i, &x)| x == pattern(i));
        println!("HUGE buffer of {N} bytes in {:.1} s", t0.elapsed().as_secs_f64());
        check!(comm, ok, "3 GiB buffer corrupted: {st:?}");
        drop(v);
        let t1 = std::time::Instant::now();
        let (o, st): (Vec<u8>, _) = comm.recv_obj(0, 2)?;
        println!(
            "HUGE object (Vec<u8>, out of band) of {} bytes in {:.1} s",
            st.bytes(),
            t1.elapsed().as_secs_f64()
        );
        check!(
            comm,
            o.len() == N && o[N - 1] == 42 && o[4093] == pattern(4093),
            "3 GiB object corrupted"
        );
        drop(o);
        let t2 = std::time::Instant::now();
        let ((name, o), st): ((String, Vec<u8>), _) = comm.recv_obj(0, 3)?;
        println!(
            "HUGE object ((String, Vec<u8>), bincode) of {} bytes in {:.1} s",
            st.bytes(),
            t2.elapsed().as_secs_f64()
        );
        check!(
            comm,
            name == "three gibibytes" && o.len() == N && o[N - 1] == 42,
            "3 GiB bincode object corrupted"
        );
    }
    // Collectives past i32::MAX elements: a broadcast (one big datatype) and an all-reduce (in pieces).
    let m = (1usize << 31) + 7;
    let t3 = std::time::Instant::now();
    let mut b = if r == 0 { vec![3u8; m] } else { vec![0u8; m] };
    comm.broadcast_buf(0, &mut b)?;
    check!(
        comm,
        b[0] == 3 && b[m - 1] == 3 && b[m / 2] == 3,
        "broadcast of {m} bytes"
    );
    let mut out = vec![0u8; m];
    b[m - 1] = 1 << r;
    comm.all_reduce_buf(&b, &mut out, spmd::Op::BitOr)?;
    let all: u8 = (0..comm.size()).map(|k| 1u8 << k).fold(0, |a, x| a | x);
    check!(
        comm,
        out[0] == 3 && out[m - 1] == all,
        "all-reduce of {m} bytes: {} {}",
        out[0],
        out[m - 1]
    );
    if r == 0 {
        println!(
            "HUGE broadcast and all-reduce of {m} bytes in {:.1} s",
            t3.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// Buffer receives on an unchecked handle are the bare `MPI_Irecv`: their statuses still say who sent what and
/// how much, and with a checked receive pending they still match in the order they started.
fn unchecked_receives(comm: &Comm) -> spmd::Result<()> {
    let (r, p) = (comm.rank(), comm.size());
    let (right, left) = ((r + 1) % p, (r + p - 1) % p);
    // SAFETY: every message below fits the buffer it is received into.
    let fast = unsafe { comm.unchecked() };
    if r == 0 {
        let mut bufs = vec![vec![u32::MAX; p]; p - 1];
        let sts = scope(|s| -> spmd::Result<Vec<spmd::Status>> {
            let reqs = bufs
                .iter_mut()
                .map(|b| fast.irecv_buf_into(s, ANY_SOURCE, 5, &mut b[..]))
                .collect::<spmd::Result<Vec<_>>>()?;
            wait_all(reqs)
        })?;
        let mut sources: Vec<usize> = sts.iter().map(|st| st.source()).collect();
        sources.sort_unstable();
        check!(comm, sources == (1..p).collect::<Vec<_>>(), "sources {sources:?}");
        for (st, b) in sts.iter().zip(&bufs) {
            let src = st.source();
            let n = st.count::<u32>();
            check!(
                comm,
                st.tag() == 5
                    && n == src + 1
                    && b[..n].iter().all(|&x| x as usize == src)
                    && b[n..].iter().all(|&x| x == u32::MAX),
                "from {src}: tag {} count {n}, buffer {b:?}",
                st.tag()
            );
        }
    } else {
        comm.send_buf(0, 5, &vec![r as u32; r + 1])?;
    }
    let (mut a, mut b) = ([0u64; 1], [0u64; 1]);
    scope(|s| -> spmd::Result<()> {
        let ra = comm.irecv_buf_into(s, left, 6, &mut a)?; // checked: waits in the receive engine
        let rb = fast.irecv_buf_into(s, left, 6, &mut b)?; // must not overtake it
        comm.send_buf(right, 6, &[1u64])?;
        comm.send_buf(right, 6, &[2u64])?;
        wait_all(vec![ra, rb])?;
        Ok(())
    })?;
    check!(
        comm,
        a[0] == 1 && b[0] == 2,
        "order of receives: got {} then {}",
        a[0],
        b[0]
    );
    // A bare receive can be cancelled like any other: its wait is a Cancelled error and the scope ends.
    let mut x = 0u32;
    let (cancelled, waited) = scope(|s| -> spmd::Result<(bool, Option<ErrorKind>)> {
        let r = fast.irecv_buf_into(s, ANY_SOURCE, 99, &mut x)?;
        let cancelled = r.cancel();
        Ok((cancelled, r.wait().err().map(|e| e.kind())))
    })?;
    check!(
        comm,
        cancelled && waited == Some(ErrorKind::Cancelled),
        "cancel of a bare receive: {cancelled}, wait: {waited:?}"
    );
    Ok(())
}

/// Checked collectives agree on sizes over a private duplicate of the communicator that the first one makes
/// (kept with the communicator, not with a handle): ranks that reach the same communicator through different
/// handles (`Comm::from_raw`) must still meet, and a disagreement seen over the duplicate is still an error on
/// every rank.
fn agreement_on_every_handle(comm: &Comm) -> spmd::Result<()> {
    let fresh = comm.dup()?;
    // SAFETY: `fresh`'s handle stays valid while `alias` is used (within this function).
    let alias = unsafe { Comm::from_raw(crate::common::universe(), fresh.as_raw()) }?;
    let (r, n) = (fresh.rank(), fresh.size());
    for round in 0..4 {
        // Every rank uses `fresh` first (its agreement makes the duplicate), then even and odd ranks use
        // different handles, swapping them every round: a duplicate kept per handle would have some ranks agree
        // over it and others over the communicator (a hang).
        let h = if round == 0 || (r + round) % 2 == 0 {
            &fresh
        } else {
            &alias
        };
        let mut out = [0u64];
        h.all_reduce_buf(&[(r + round) as u64], &mut out, Op::Max)?;
        check!(
            comm,
            out[0] == (n - 1 + round) as u64,
            "round {round}: all-reduce gave {}",
            out[0]
        );
    }
    let len = if r == 0 { 3 } else { 2 };
    let mut out = vec![0u64; len];
    let got = alias.all_reduce_buf(&vec![1u64; len][..], &mut out[..], Op::Sum);
    if n > 1 {
        check!(
            comm,
            matches!(&got, Err(e) if e.kind() == ErrorKind::SizeMismatch),
            "lengths 3 and 2 after the first agreement: {got:?}"
        );
    }
    // The duplicate still works after that error.
    let mut out = [0u64];
    fresh.all_reduce_buf(&[1u64], &mut out, Op::Sum)?;
    check!(comm, out[0] == n as u64, "all-reduce after a mismatch gave {}", out[0]);
    // The variable-count agreements (counts of every rank, a root's counts, counts for every pair) travel on a
    // duplicate too, through either handle; on a new communicator the first of them makes it.
    let fresh = comm.dup()?;
    // SAFETY: as above.
    let alias = unsafe { Comm::from_raw(crate::common::universe(), fresh.as_raw()) }?;
    for round in 0..3 {
        let h = if round == 0 || (r + round) % 2 == 0 {
            &fresh
        } else {
            &alias
        };
        let counts: Vec<usize> = (0..n).map(|q| q + 1).collect();
        let mut all = vec![0u64; counts.iter().sum()];
        h.all_gather_varcount_buf(&vec![r as u64; r + 1][..], &mut all[..], &counts)?;
        let want: Vec<u64> = (0..n).flat_map(|q| vec![q as u64; q + 1]).collect();
        check!(comm, all == want, "round {round}: all-gather with counts gave {all:?}");
        let mut mine = vec![0u64; r + 1];
        if r == 0 {
            h.scatter_varcount_buf_root(&want[..], &counts, &mut mine[..])?;
        } else {
            h.scatter_varcount_buf_from(0, &mut mine[..])?;
        }
        check!(
            comm,
            mine == vec![r as u64; r + 1],
            "round {round}: scatter with counts gave {mine:?}"
        );
        // Rank r sends q + 1 values to rank q.
        let send: Vec<u64> = (0..n).flat_map(|q| vec![r as u64; q + 1]).collect();
        let mut got = vec![0u64; n * (r + 1)];
        h.all_to_all_varcount_buf(&send[..], &counts, &mut got[..], &vec![r + 1; n])?;
        let want: Vec<u64> = (0..n).flat_map(|q| vec![q as u64; r + 1]).collect();
        check!(comm, got == want, "round {round}: all-to-all with counts gave {got:?}");
    }
    // Counts that disagree, seen over the duplicate: an error on every rank.
    let mut all = vec![0u64; n + 1];
    let counts: Vec<usize> = (0..n).map(|q| if q == 0 { 2 } else { 1 }).collect();
    let got = fresh.all_gather_varcount_buf(&[1u64][..], &mut all[..], &counts);
    if n > 1 {
        check!(
            comm,
            matches!(&got, Err(e) if e.kind() == ErrorKind::SizeMismatch),
            "rank 0 sent 1 value where the counts say 2: {got:?}"
        );
    }
    Ok(())
}

pub const CASES: &[Case] = &[
    case("obj_ring_corpus", obj_ring_corpus),
    case("obj_chain_and_any_source", obj_chain_and_any_source),
    case("obj_out_of_order_tags", obj_out_of_order_tags),
    case("obj_wrong_type_is_decode_error", obj_wrong_type_is_decode_error),
    case("obj_out_of_band", obj_out_of_band),
    case("buf_types_and_sizes", buf_types_and_sizes),
    case("buf_ndarray", buf_ndarray),
    case("buf_truncation", buf_truncation),
    case("probes", probes),
    case("request_semantics", request_semantics),
    case("unchecked_receives", unchecked_receives),
    case("deadlock_free_patterns", deadlock_free_patterns),
    case("wildcards_past_a_waiting_receive", wildcards_past_a_waiting_receive),
    case("coll_obj_every_root", coll_obj_every_root),
    case("coll_buf_every_root", coll_buf_every_root),
    case("coll_reductions", coll_reductions),
    case("agreement_on_every_handle", agreement_on_every_handle),
    case("coll_nonblocking", coll_nonblocking),
    case("bad_input_errors", bad_input_errors),
    case("one_rank_mistakes", one_rank_mistakes),
    special("huge", huge),
];
