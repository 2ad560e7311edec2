//! Interoperability with C: MPMD jobs (`mpirun -n 2 peer : -n 2 <this binary>`, and spmd first) in which a C
//! program (`tests/interop/peer.c`) and spmd ranks share one `MPI_COMM_WORLD` and exchange buffers with plain MPI
//! calls on the C side: point-to-point both ways, the buffer collectives with C and spmd roots on checked handles
//! (the C side mirrors spmd's size agreement) and unchecked ones (the bare calls), a C library
//! (`tests/interop/clib.c`, loaded with dlopen) called on `Comm::as_raw()`, a split, a duplicate made in C and
//! wrapped with `Comm::from_raw`, and plain bytes reaching `recv_obj`.
//!
//! Both programs run the same steps in the same order; each checks what it receives and prints
//! `interop <c|spmd> ok <step>` from its first rank. The C programs are built with `$MPICC` (default `mpicc`);
//! `SPMD_MPIRUN` names the launcher (`mpirun.mpich` for MPICH, with spmd built by `MPICC=mpicc.mpich`).

#[macro_use]
mod common;

use std::ffi::{CString, c_void};
use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use libtest_mimic::{Arguments, Failed, Trial};
use mpi::ffi::MPI_Comm;
use spmd::{Comm, ErrorKind, Op, Result, Universe};

const STEPS: &[&str] = &[
    "hello",
    "p2p_checked",
    "p2p_unchecked",
    "wrong_family",
    "collectives_checked",
    "collectives_unchecked",
    "comms",
    "finish",
];

/// Message sizes in bytes for point-to-point: empty, small, around Open MPI's eager limit, 64 KiB, 8 MiB.
const SIZES: [usize; 6] = [0, 8, 4000, 4001, 65536, 8 << 20];

fn main() {
    if std::env::var_os("SPMD_TEST_CHILD").is_some() {
        child();
    }
    let mut args = Arguments::from_args();
    args.test_threads.get_or_insert(1);
    let trials = vec![
        Trial::test("c_ranks_first", || run_layout(true)),
        Trial::test("spmd_ranks_first", || run_layout(false)),
    ];
    libtest_mimic::run(&args, trials).exit();
}

// ----- parent: build the C side, launch, read the reports ------------------------------------------------------

struct Built {
    peer: PathBuf,
    clib: PathBuf,
}

fn built() -> std::result::Result<&'static Built, String> {
    static BUILT: OnceLock<std::result::Result<Built, String>> = OnceLock::new();
    BUILT.get_or_init(build).as_ref().map_err(Clone::clone)
}

fn build() -> std::result::Result<Built, String> {
    let mpicc = std::env::var("MPICC").unwrap_or_else(|_| "mpicc".into());
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("interop");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("interop");
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let built = Built {
        peer: out.join("peer"),
        clib: out.join("libclib.so"),
    };
    let (peer_c, clib_c) = (src.join("peer.c"), src.join("clib.c"));
    let flags = ["-O1", "-Wall", "-Wextra", "-Werror"];
    let compile = |args: &[&Path]| {
        let o = Command::new(&mpicc)
            .args(flags)
            .args(args)
            .output()
            .map_err(|e| format!("could not run {mpicc}: {e}"))?;
        if o.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{mpicc} {args:?} failed:\n{}",
                String::from_utf8_lossy(&o.stderr)
            ))
        }
    };
    compile(&[Path::new("-o"), &built.peer, &peer_c, &clib_c])?;
    compile(&[
        Path::new("-shared"),
        Path::new("-fPIC"),
        Path::new("-o"),
        &built.clib,
        &clib_c,
    ])?;
    Ok(built)
}

fn run_layout(c_first: bool) -> std::result::Result<(), Failed> {
    let b = built()?;
    let exe = std::env::current_exe().expect("test binary");
    let none: [&str; 0] = [];
    let job = if c_first {
        common::mpirun(2, &b.peer).then(2, exe, none)
    } else {
        common::mpirun(2, exe).then(2, &b.peer, none)
    };
    let out = job
        .env("SPMD_TEST_CHILD", "1")
        .env("SPMD_INTEROP_CLIB", &b.clib.to_string_lossy())
        .timeout(Duration::from_secs(60))
        .run();
    println!("{} steps, {:.2} s", STEPS.len(), out.elapsed.as_secs_f64());
    if !out.success() {
        return Err(out.describe().into());
    }
    for side in ["c", "spmd"] {
        for step in STEPS {
            if !out.stdout.contains(&format!("interop {side} ok {step}\n")) {
                return Err(format!("the {side} side did not report step {step}\n{}", out.describe()).into());
            }
        }
    }
    Ok(())
}

// ----- child: an spmd rank ---------------------------------------------------------------------------------------

/// Who is who in the job, learnt in the first step.
struct Peers {
    c: Vec<usize>,
    s: Vec<usize>,
    /// This rank's place among the spmd ranks; its partner is `c[idx]`.
    idx: usize,
}

/// The C library, loaded with dlopen (it resolves MPI from the libmpi spmd already loaded).
struct Clib {
    allreduce_sum: unsafe extern "C" fn(MPI_Comm, f64) -> f64,
    ring: unsafe extern "C" fn(MPI_Comm, i32) -> i32,
    dup: unsafe extern "C" fn(MPI_Comm, *mut MPI_Comm) -> i32,
    free: unsafe extern "C" fn(*mut MPI_Comm) -> i32,
}

impl Clib {
    fn load(path: &str) -> Clib {
        let cpath = CString::new(path).expect("a path without NUL");
        // SAFETY: a library of four plain functions built by the parent; it is never unloaded.
        let lib = unsafe { libc::dlopen(cpath.as_ptr(), libc::RTLD_NOW) };
        assert!(!lib.is_null(), "dlopen {path} failed");
        let sym = |name: &str| -> *mut c_void {
            let n = CString::new(name).expect("a name without NUL");
            // SAFETY: `lib` is a live handle from dlopen; `n` is a NUL-terminated name.
            let f = unsafe { libc::dlsym(lib, n.as_ptr()) };
            assert!(!f.is_null(), "{name} not found in {path}");
            f
        };
        // SAFETY: each symbol is the function of clib.c with exactly this C signature.
        unsafe {
            Clib {
                allreduce_sum: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(MPI_Comm, f64) -> f64>(sym(
                    "clib_allreduce_sum",
                )),
                ring: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(MPI_Comm, i32) -> i32>(sym("clib_ring")),
                dup: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(MPI_Comm, *mut MPI_Comm) -> i32>(sym(
                    "clib_dup",
                )),
                free: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(*mut MPI_Comm) -> i32>(sym("clib_free")),
            }
        }
    }
}

fn child() -> ! {
    let universe = spmd::init().expect("spmd::init");
    let world = universe.world();
    let clib = Clib::load(&std::env::var("SPMD_INTEROP_CLIB").expect("SPMD_INTEROP_CLIB"));
    let fail = |step: &str, e: spmd::Error| -> ! {
        eprintln!(
            "interop: spmd rank (world rank {}) failed in step {step}: {e}",
            world.rank()
        );
        universe.abort(1)
    };
    let peers = hello(&world).unwrap_or_else(|e| fail("hello", e));
    let report = |step: &str| {
        if world.rank() == peers.s[0] {
            println!("interop spmd ok {step}");
        }
    };
    report("hello");
    let steps: [(&str, &dyn Fn() -> Result<()>); 7] = [
        ("p2p_checked", &|| p2p(&world, &peers, true)),
        ("p2p_unchecked", &|| p2p(&world, &peers, false)),
        ("wrong_family", &|| wrong_family(&world, &peers)),
        ("collectives_checked", &|| collectives(&world, true)),
        ("collectives_unchecked", &|| collectives(&world, false)),
        ("comms", &|| comms(&universe, &world, &peers, &clib)),
        ("finish", &|| world.barrier()),
    ];
    for (step, run) in steps {
        if let Err(e) = run() {
            fail(step, e);
        }
        report(step);
    }
    drop(world);
    drop(universe);
    std::process::exit(0)
}

fn appnum(world: &Comm) -> i32 {
    let mut attr: *mut i32 = std::ptr::null_mut();
    let mut flag = 0;
    // SAFETY: MPI_APPNUM is a predefined attribute of MPI_COMM_WORLD; its value is a pointer to an int, written
    // into `attr`.
    unsafe {
        mpi::ffi::MPI_Comm_get_attr(
            world.as_raw(),
            mpi::ffi::MPI_APPNUM as i32,
            (&mut attr as *mut *mut i32).cast(),
            &mut flag,
        );
    }
    if flag != 0 && !attr.is_null() {
        // SAFETY: MPI set the flag, so `attr` points to the attribute's int.
        unsafe { *attr }
    } else {
        -1
    }
}

/// Every rank tells its kind (0 C, 1 spmd) and `MPI_APPNUM` (`MPI_Allgather` of two ints, as the C side).
fn hello(world: &Comm) -> Result<Peers> {
    let (me, p) = (world.rank(), world.size());
    let mut all = vec![0i32; 2 * p];
    // SAFETY: every rank, C or spmd, passes two ints.
    unsafe { world.unchecked() }.all_gather_buf(&[1i32, appnum(world)], &mut all[..])?;
    for r in 0..p {
        for q in 0..p {
            check!(
                world,
                (all[2 * r] == all[2 * q]) == (all[2 * r + 1] == all[2 * q + 1]),
                "MPI_APPNUM does not tell the programs apart: {all:?}"
            );
        }
    }
    let (s, c): (Vec<usize>, Vec<usize>) = (0..p).partition(|&r| all[2 * r] == 1);
    check!(
        world,
        c.len() == s.len(),
        "C ranks {c:?} and spmd ranks {s:?}: the test pairs them"
    );
    let idx = s.iter().position(|&r| r == me).expect("this rank is an spmd rank");
    Ok(Peers { c, s, idx })
}

/// The byte pattern both sides use (see `byte_at` in peer.c).
fn pattern(seed: usize, n: usize) -> Vec<u8> {
    (0..n).map(|j| ((j * 7 + seed * 13 + (j >> 9)) % 251) as u8).collect()
}

/// Where two sequences first differ, for messages that do not print megabytes.
fn diff<T: PartialEq + std::fmt::Debug>(got: &[T], want: &[T]) -> String {
    match got.iter().zip(want).position(|(a, b)| a != b) {
        _ if got.len() != want.len() => format!("{} elements, expected {}", got.len(), want.len()),
        Some(i) => format!("element {i} is {:?}, expected {:?}", got[i], want[i]),
        None => "equal".into(),
    }
}

/// Point-to-point both ways at every size; on an unchecked handle receives are the bare `MPI_Recv`.
fn p2p(world: &Comm, peers: &Peers, checked: bool) -> Result<()> {
    let (me, c) = (world.rank(), peers.c[peers.idx]);
    let world = &if checked {
        world.clone()
    } else {
        // SAFETY: every message fits the buffer it is received into.
        unsafe { world.unchecked() }
    };
    for (k, &n) in SIZES.iter().enumerate() {
        let tag = 100 + 10 * k as i32;
        let from_c = pattern(c * 100 + k, n);
        // A buffer longer than the message: the status tells how much arrived, the rest stays as it was.
        let mut buf = vec![0u8; n + 3];
        let st = world.recv_buf_into(c, tag, &mut buf[..])?;
        check!(
            world,
            st.bytes() == n && st.source() == c && st.tag() == tag,
            "recv_buf_into of {n} B: status {st:?}"
        );
        check!(
            world,
            buf[..n] == from_c[..] && buf[n..] == [0; 3],
            "recv_buf_into of {n} B: {}",
            diff(&buf, &[&from_c[..], &[0; 3]].concat())
        );
        let (v, st) = world.recv_buf::<u8>(c, tag + 1)?;
        check!(
            world,
            v == from_c && st.bytes() == n,
            "recv_buf of {n} B: {}",
            diff(&v, &from_c)
        );
        world.send_buf(c, tag + 2, &pattern(me * 100 + k, n)[..])?;
        let mut r = vec![0u8; n];
        let st = world.sendrecv_buf(c, tag + 3, &pattern(me * 100 + k + 50, n)[..], c, tag + 4, &mut r[..])?;
        let want = pattern(c * 100 + k + 50, n);
        check!(
            world,
            r == want && st.bytes() == n,
            "sendrecv_buf of {n} B: {}",
            diff(&r, &want)
        );
    }
    Ok(())
}

/// Plain bytes from C reach `recv_obj`: a `WrongFamily` error, the message consumed, the next one received.
fn wrong_family(world: &Comm, peers: &Peers) -> Result<()> {
    let c = peers.c[peers.idx];
    for n in [0usize, 24, 4001, 65536] {
        match world.recv_obj::<Vec<u8>>(c, 20) {
            Err(e) if e.kind() == ErrorKind::WrongFamily => {}
            Err(e) => check!(world, false, "recv_obj of {n} plain bytes: {:?} error {e}", e.kind()),
            Ok((v, _)) => check!(world, false, "recv_obj of {n} plain bytes returned {} bytes", v.len()),
        }
    }
    let mut after = 0i64;
    world.recv_buf_into(c, 21, &mut after)?;
    check!(world, after == 42 + c as i64, "the message after them is {after}");
    Ok(())
}

/// Every buffer collective with each rank as the root in turn, as `collectives` in peer.c.
fn collectives(world: &Comm, checked: bool) -> Result<()> {
    let comm = if checked {
        world.clone()
    } else {
        // SAFETY: every rank, C or spmd, passes the sizes the formulas below give.
        unsafe { world.unchecked() }
    };
    let (me, p) = (comm.rank(), comm.size());
    let block = |counts: &[usize], f: &dyn Fn(usize, usize) -> usize| -> Vec<usize> {
        (0..p)
            .flat_map(|r| (0..counts[r]).map(move |j| (r, j)))
            .map(|(r, j)| f(r, j))
            .collect()
    };
    for root in 0..p {
        let n = 1000 + 7 * root;
        let want: Vec<f64> = (0..n).map(|j| (root * 1000) as f64 + j as f64 * 0.5).collect();
        let mut v = if me == root { want.clone() } else { vec![0.0; n] };
        comm.broadcast_buf(root, &mut v[..])?;
        check!(comm, v == want, "broadcast_buf from {root}: {}", diff(&v, &want));

        let counts: Vec<usize> = (0..p).map(|r| ((r + root) % p) * 5).collect();
        let mine: Vec<i64> = (0..counts[me]).map(|j| (me * 100000 + j) as i64).collect();
        if me == root {
            let mut all = vec![0i64; counts.iter().sum()];
            comm.gather_varcount_buf_root(&mine[..], &mut all[..], &counts)?;
            let want: Vec<i64> = block(&counts, &|r, j| r * 100000 + j)
                .into_iter()
                .map(|x| x as i64)
                .collect();
            check!(
                comm,
                all == want,
                "gather_varcount_buf to {root}: {}",
                diff(&all, &want)
            );
        } else {
            comm.gather_varcount_buf_to(root, &mine[..])?;
        }

        let counts: Vec<usize> = (0..p).map(|r| ((r + 2 * root + 1) % p) * 7).collect();
        let mut mine = vec![0i32; counts[me]];
        if me == root {
            let all: Vec<i32> = block(&counts, &|r, j| r * 10000 + j + root)
                .into_iter()
                .map(|x| x as i32)
                .collect();
            comm.scatter_varcount_buf_root(&all[..], &counts, &mut mine[..])?;
        } else {
            comm.scatter_varcount_buf_from(root, &mut mine[..])?;
        }
        let want: Vec<i32> = (0..counts[me]).map(|j| (me * 10000 + j + root) as i32).collect();
        check!(
            comm,
            mine == want,
            "scatter_varcount_buf from {root}: {}",
            diff(&mine, &want)
        );
    }

    let send: Vec<f64> = (0..257).map(|j| me as f64 + j as f64 * 0.25).collect();
    let mut sum = vec![0.0; 257];
    comm.all_reduce_buf(&send[..], &mut sum[..], Op::Sum)?;
    let want: Vec<f64> = (0..257)
        .map(|j| (p * (p - 1) / 2) as f64 + (p * j) as f64 * 0.25)
        .collect();
    check!(comm, sum == want, "all_reduce_buf: {}", diff(&sum, &want));

    let counts: Vec<usize> = (0..p).map(|r| (r % 3) * 4).collect();
    let mine: Vec<f32> = (0..counts[me]).map(|j| (me * 100 + j) as f32).collect();
    let mut all = vec![0f32; counts.iter().sum()];
    comm.all_gather_varcount_buf(&mine[..], &mut all[..], &counts)?;
    let want: Vec<f32> = block(&counts, &|r, j| r * 100 + j)
        .into_iter()
        .map(|x| x as f32)
        .collect();
    check!(comm, all == want, "all_gather_varcount_buf: {}", diff(&all, &want));

    let a2a = |from: usize, to: usize| ((from + 2 * to) % 3) * 3;
    let sc: Vec<usize> = (0..p).map(|q| a2a(me, q)).collect();
    let rc: Vec<usize> = (0..p).map(|q| a2a(q, me)).collect();
    let send: Vec<u64> = block(&sc, &|q, j| me * 1_000_000 + q * 1000 + j)
        .into_iter()
        .map(|x| x as u64)
        .collect();
    let mut recv = vec![0u64; rc.iter().sum()];
    comm.all_to_all_varcount_buf(&send[..], &sc, &mut recv[..], &rc)?;
    let want: Vec<u64> = block(&rc, &|q, j| q * 1_000_000 + me * 1000 + j)
        .into_iter()
        .map(|x| x as u64)
        .collect();
    check!(comm, recv == want, "all_to_all_varcount_buf: {}", diff(&recv, &want));
    Ok(())
}

/// The C library on `as_raw()`, a split shared with the C ranks, and a duplicate made in C wrapped by `from_raw`.
fn comms(universe: &Universe, world: &Comm, peers: &Peers, clib: &Clib) -> Result<()> {
    let (me, p, idx) = (world.rank(), world.size(), peers.idx);
    let c = peers.c[idx];
    // SAFETY: a valid communicator while `world` lives; the functions make one MPI collective on it, as every
    // rank does.
    let (sum, left) = unsafe {
        (
            (clib.allreduce_sum)(world.as_raw(), me as f64 + 0.25),
            (clib.ring)(world.as_raw(), 100 + me as i32),
        )
    };
    check!(
        world,
        sum == (p * (p - 1) / 2) as f64 + 0.25 * p as f64,
        "clib_allreduce_sum gave {sum}"
    );
    check!(world, left == 100 + ((me + p - 1) % p) as i32, "clib_ring gave {left}");

    // Pairs {C[i], spmd[i]}: the spmd rank first in even pairs, the C rank first in odd ones.
    let key = (idx % 2) as i32;
    let pair = world.split(Some(idx as u32), key)?.expect("every rank has a colour");
    check!(
        world,
        pair.size() == 2 && pair.rank() == key as usize,
        "split: rank {} of {}",
        pair.rank(),
        pair.size()
    );
    let other = 1 - pair.rank();
    let data = pattern(7 + idx, 4001);
    pair.send_buf(other, 5, &data[..])?;
    let (echo, st) = pair.recv_buf::<u8>(other, 6)?;
    check!(
        world,
        echo == data && st.source() == other,
        "split: echo {}",
        diff(&echo, &data)
    );
    let mut v = vec![0.0f64; 33];
    pair.broadcast_buf(other, &mut v[..])?;
    let want: Vec<f64> = (0..33).map(|j| (j + idx) as f64).collect();
    check!(world, v == want, "split: broadcast_buf from C: {}", diff(&v, &want));
    // SAFETY: as above, on the split communicator.
    let psum = unsafe { (clib.allreduce_sum)(pair.as_raw(), me as f64) };
    check!(
        world,
        psum == (me + c) as f64,
        "clib_allreduce_sum on the split gave {psum}"
    );
    drop(pair);

    let mut h = MaybeUninit::<MPI_Comm>::uninit();
    // SAFETY: `world`'s handle is valid; clib_dup writes a new communicator into `h` (MPI_Comm_dup, collective).
    let rc = unsafe { (clib.dup)(world.as_raw(), h.as_mut_ptr()) };
    check!(world, rc == 0, "clib_dup returned {rc}");
    // SAFETY: MPI_Comm_dup succeeded, so `h` holds a communicator.
    let mut h = unsafe { h.assume_init() };
    {
        // SAFETY: `h` stays valid until clib_free below, after `d` and its clones are dropped.
        let d = unsafe { Comm::from_raw(universe, h) }?;
        check!(
            world,
            d.size() == p && d.rank() == me,
            "from_raw: rank {} of {}",
            d.rank(),
            d.size()
        );
        let mut out = [0i64; 2];
        d.all_reduce_buf(&[me as i64, 1], &mut out, Op::Sum)?;
        check!(
            world,
            out == [(p * (p - 1) / 2) as i64, p as i64],
            "all_reduce_buf on the duplicate: {out:?}"
        );
        // The C rank sent the same tag on world, then on the duplicate: each arrives on its own communicator.
        let mut x = 0i32;
        d.recv_buf_into(c, 8, &mut x)?;
        check!(world, x == 2000 + c as i32, "the duplicate received {x}");
        world.recv_buf_into(c, 8, &mut x)?;
        check!(world, x == 1000 + c as i32, "world received {x}");
    }
    // SAFETY: `h` came from clib_dup and nothing uses it any more.
    let rc = unsafe { (clib.free)(&mut h) };
    check!(world, rc == 0, "clib_free returned {rc}");
    Ok(())
}
