//! OSU-style micro-benchmarks of spmd, in the format of the C MPI baseline (`mpi_bench.c`), so the two can be run
//! side by side:
//!
//! ```text
//! mpirun -n 2 --bind-to core target/release/examples/bench            # everything
//! mpirun -n 2 --bind-to core target/release/examples/bench pt2pt      # ping-pong and streaming bandwidth
//! mpirun -n 2 --bind-to core target/release/examples/bench coll       # collectives
//! mpirun -n 2 --bind-to core target/release/examples/bench obj        # the object family, each size right after
//!                                                                     # the buffer ping-pong of the same size
//! ```
//!
//! Method (the baseline's): each case doubles its iteration count until a repetition takes half of
//! `BENCH_TARGET_MS` (default 50), scales it to the target, then times `BENCH_REPS` (default 5) repetitions, each
//! between a barrier and a max-reduction of the elapsed time over the ranks, and prints the median per operation
//! on rank 0 as `case=<name> size=<bytes> usec=<median> mbps=<bytes/usec> ... probe=<a>,<b>`. Ping-pong times are
//! one way; `probe` is an 8-byte ping-pong before and after the case, which tells which placement of the two vCPUs
//! the case ran on (about 0.1-0.2 µs near, 0.35 µs far on the machines spmd is measured on).
//!
//! Buffer cases use the baseline's names (`pingpong`, `bw`, `allreduce`, `bcast`, `gather`, `scatter`,
//! `alltoall`, `barrier`) and page-aligned buffers like it. Object cases are `obj_*`: `obj_pingpong` sends a
//! `Vec<f64>` (size = its bytes of floats), `obj_oob_pingpong` the same floats inside a struct as an
//! [`spmd::Oob`] field, `obj_map_pingpong` a `HashMap<String, u64>` of 1000 entries, and `obj_bcast`,
//! `obj_allreduce` the collectives on `Vec<f64>`.
//!
//! `examples/bench_tools/run.sh` runs this program and the baseline alternately and compares them, over all
//! rounds and over the rounds where both ran on the same vCPU placement.
//!
//! Settings: `BENCH_UNCHECKED=1` runs everything on `unsafe { world.unchecked() }`: collectives are the bare MPI
//! calls without spmd's size agreement, and receives into a buffer the bare `MPI_Recv` / `MPI_Irecv` without the
//! matched probe (compare the two runs to see what the checks cost); `BENCH_HUGE=1` allocates
//! the buffers with [`spmd::buffer::huge_vec`] (transparent huge pages, as numpy gives large arrays) instead of
//! plain page-aligned `Vec`s.
//!
//! `bench overhead` measures the layer's own cost where placement cannot interfere: in one process, it alternates
//! blocks of the same operation through spmd and straight through rsmpi (MPI calls with nothing around them),
//! and prints the median of each and their ratio over 15 alternations; `pingpong_vs_probed` compares spmd's
//! ping-pong with rsmpi's making the same matched probe before each receive.

use std::collections::HashMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use spmd::request::{scope, wait_all};
use spmd::{Comm, Oob, Op};

const MAXBUF: usize = 64 << 20;
const MAXWIN: usize = 64;

/// Settings of a run.
struct Bench<'a, 'u> {
    comm: &'a Comm<'u>,
    reps: usize,
    target: f64,
}

impl Bench<'_, '_> {
    /// One-way time of an 8-byte ping-pong between ranks 0 and 1 (2000 round trips), as the baseline measures
    /// before and after each case: it tells which placement of the vCPUs the case ran on.
    fn probe(&self) -> spmd::Result<f64> {
        let (rank, comm) = (self.comm.rank(), self.comm);
        let (s, mut r) = ([0u8; 8], [0u8; 8]);
        let mut f = |iters: u64| -> spmd::Result<()> {
            if comm.size() < 2 || rank > 1 {
                return Ok(());
            }
            for _ in 0..iters {
                if rank == 0 {
                    comm.send_buf(1, 9, &s)?;
                    comm.recv_buf_into(1, 9, &mut r)?;
                } else {
                    comm.recv_buf_into(0, 9, &mut r)?;
                    comm.send_buf(0, 9, &s)?;
                }
            }
            Ok(())
        };
        Ok(self.timed(&mut f, 2000)? * 1e6 / 4000.0)
    }

    /// Runs `f(iters)` between a barrier and a max-reduction of the elapsed seconds.
    fn timed(&self, f: &mut dyn FnMut(u64) -> spmd::Result<()>, iters: u64) -> spmd::Result<f64> {
        self.comm.barrier()?;
        let t0 = Instant::now();
        f(iters)?;
        let t = t0.elapsed().as_secs_f64();
        self.comm.all_reduce_scalar(t, Op::Max)
    }

    /// Calibrates, times `reps` repetitions and prints the median time per operation (`per` ops per iteration).
    fn case(&self, name: &str, bytes: usize, per: f64, f: &mut dyn FnMut(u64) -> spmd::Result<()>) -> spmd::Result<()> {
        let (mut iters, mut hits, mut best) = (1u64, 0, f64::MAX);
        while hits < 2 && iters < (1 << 26) {
            let t = self.timed(f, iters)?;
            best = best.min(t / iters as f64);
            if t >= self.target / 2.0 {
                hits += 1;
            } else {
                iters *= 2;
            }
        }
        let iters = ((self.target / best.max(1e-12)) as u64).clamp(1, 1 << 26);
        let p0 = self.probe()?;
        let mut us = Vec::with_capacity(self.reps);
        for _ in 0..self.reps {
            us.push(self.timed(f, iters)? * 1e6 / (iters as f64 * per));
        }
        let p1 = self.probe()?;
        us.sort_by(f64::total_cmp);
        let n = us.len();
        let med = if n % 2 == 1 {
            us[n / 2]
        } else {
            0.5 * (us[n / 2 - 1] + us[n / 2])
        };
        if self.comm.rank() == 0 {
            let mbps = if bytes > 0 {
                format!("{:.2}", bytes as f64 / med)
            } else {
                "-".into()
            };
            println!(
                "case={name} size={bytes} usec={med:.3} mbps={mbps} np={} iters={iters} min={:.3} max={:.3} probe={p0:.3},{p1:.3}",
                self.comm.size(),
                us[0],
                us[n - 1]
            );
        }
        Ok(())
    }
}

/// A ping-pong between ranks 0 and 1 of `value`: rank 0 sends it and receives the echo; rank 1 receives and sends
/// back what it got (a new value each time, as a real receiver would have).
fn pingpong_obj<T>(
    b: &Bench<'_, '_>,
    name: &str,
    bytes: usize,
    value: &T,
    send: impl Fn(&Comm<'_>, usize, &T) -> spmd::Result<()>,
    recv: impl Fn(&Comm<'_>, usize) -> spmd::Result<T>,
) -> spmd::Result<()> {
    let (comm, rank) = (b.comm, b.comm.rank());
    b.case(name, bytes, 2.0, &mut |iters| {
        if rank > 1 {
            return Ok(());
        }
        let peer = 1 - rank;
        for _ in 0..iters {
            if rank == 0 {
                send(comm, peer, value)?;
                recv(comm, peer)?;
            } else {
                let got = recv(comm, peer)?;
                send(comm, peer, &got)?;
            }
        }
        Ok(())
    })
}

/// spmd against rsmpi in the same process: 8-byte ping-pong, all-reduce of one double, broadcast of 8 bytes.
/// One 8-byte round trip between ranks 0 and 1 through spmd (other ranks idle).
fn pingpong_once(world: &Comm<'_>, rank: usize, peer: usize, s: &[u8; 8], r: &mut [u8; 8]) -> spmd::Result<()> {
    if rank == 0 {
        world.send_buf(peer, 1, s)?;
        world.recv_buf_into(peer, 1, r)?;
    } else if rank == 1 {
        world.recv_buf_into(peer, 1, r)?;
        world.send_buf(peer, 1, s)?;
    }
    Ok(())
}

fn overhead(world: &Comm<'_>) -> spmd::Result<()> {
    use mpi::collective::SystemOperation;
    use mpi::traits::{Communicator, CommunicatorCollectives, Destination, Root, Source};
    let raw = mpi::topology::SimpleCommunicator::world();
    let (rank, iters) = (world.rank(), 100_000u32);
    let peer = 1 - rank.min(1);
    let (s, mut r) = ([1u8; 8], [0u8; 8]);
    let (x, mut y) = ([1.0f64], [0.0f64]);
    let mut b = [0u8; 8];
    let p = raw.process_at_rank(peer as i32);
    let root = raw.process_at_rank(0);
    let (mut r2, mut y2, mut b2) = ([0u8; 8], [0.0f64], [0u8; 8]);
    type Run<'a> = Box<dyn FnMut() -> spmd::Result<()> + 'a>;
    let mut cases: Vec<(&str, f64, Run, Run)> = Vec::new();
    // (name, operations per iteration, spmd, rsmpi); ranks above 1 idle in the ping-pong.
    let pp_spmd: Run = Box::new(|| pingpong_once(world, rank, peer, &s, &mut r));
    let pp_raw: Run = Box::new(|| {
        if rank == 0 {
            p.send(&s[..]);
            p.receive_into(&mut r2[..]);
        } else if rank == 1 {
            p.receive_into(&mut r2[..]);
            p.send(&s[..]);
        }
        Ok(())
    });
    cases.push(("pingpong", 2.0, pp_spmd, pp_raw));
    // The same with the matched probe spmd makes before every receive, straight through rsmpi.
    let pp_spmd2: Run = Box::new(|| pingpong_once(world, rank, peer, &s, &mut [0u8; 8]));
    let pp_probe: Run = Box::new(|| {
        let mut b = [0u8; 8];
        if rank == 0 {
            p.send(&s[..]);
            let (m, _) = p.matched_probe();
            m.matched_receive_into(&mut b[..]);
        } else if rank == 1 {
            let (m, _) = p.matched_probe();
            m.matched_receive_into(&mut b[..]);
            p.send(&s[..]);
        }
        Ok(())
    });
    cases.push(("pingpong_vs_probed", 2.0, pp_spmd2, pp_probe));
    cases.push((
        "allreduce",
        1.0,
        Box::new(|| world.all_reduce_buf(&x, &mut y, Op::Sum)),
        Box::new(|| {
            raw.all_reduce_into(&x[..], &mut y2[..], SystemOperation::sum());
            Ok(())
        }),
    ));
    cases.push((
        "bcast",
        1.0,
        Box::new(|| world.broadcast_buf(0, &mut b)),
        Box::new(|| {
            root.broadcast_into(&mut b2[..]);
            Ok(())
        }),
    ));
    for (name, per, a, c) in cases.iter_mut() {
        let (mut ta, mut tc) = (Vec::new(), Vec::new());
        for _ in 0..15 {
            for (f, out) in [(&mut *a, &mut ta), (&mut *c, &mut tc)] {
                world.barrier()?;
                let t0 = Instant::now();
                for _ in 0..iters {
                    f()?;
                }
                let t = world.all_reduce_scalar(t0.elapsed().as_secs_f64(), Op::Max)?;
                out.push(t * 1e6 / (f64::from(iters) * *per));
            }
        }
        ta.sort_by(f64::total_cmp);
        tc.sort_by(f64::total_cmp);
        if rank == 0 {
            let (ma, mc) = (ta[7], tc[7]);
            println!(
                "overhead case={name} size=8 spmd_usec={ma:.3} rsmpi_usec={mc:.3} ratio={:.3}",
                ma / mc
            );
        }
    }
    // Objects against spmd's own buffer ping-pong of the same bytes (8 MiB of f64), alternating.
    let n = 1 << 20;
    let v = vec![1.0f64; n];
    let mut rv = vec![0.0f64; n];
    let f = Field {
        step: 7,
        values: Oob::new(vec![1.0; n]),
    };
    let reps = 20u32;
    let mut times: [Vec<f64>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..15 {
        for (k, out) in times.iter_mut().enumerate() {
            world.barrier()?;
            let t0 = Instant::now();
            for _ in 0..reps {
                if rank > 1 {
                    continue;
                }
                match (k, rank) {
                    (0, 0) => {
                        world.send_buf(peer, 2, &v)?;
                        world.recv_buf_into(peer, 2, &mut rv)?;
                    }
                    (0, _) => {
                        world.recv_buf_into(peer, 2, &mut rv)?;
                        world.send_buf(peer, 2, &rv)?;
                    }
                    (1, 0) => {
                        world.send_obj(peer, 2, &v)?;
                        world.recv_obj::<Vec<f64>>(peer, 2)?;
                    }
                    (1, _) => {
                        let (g, _) = world.recv_obj::<Vec<f64>>(peer, 2)?;
                        world.send_obj(peer, 2, &g)?;
                    }
                    (_, 0) => {
                        world.send_obj(peer, 2, &f)?;
                        world.recv_obj::<Field>(peer, 2)?;
                    }
                    _ => {
                        let (g, _) = world.recv_obj::<Field>(peer, 2)?;
                        world.send_obj(peer, 2, &g)?;
                    }
                }
            }
            let t = world.all_reduce_scalar(t0.elapsed().as_secs_f64(), Op::Max)?;
            out.push(t * 1e6 / (f64::from(reps) * 2.0));
        }
    }
    for t in times.iter_mut() {
        t.sort_by(f64::total_cmp);
    }
    if rank == 0 {
        let b = times[0][7];
        for (name, t) in [("obj_pingpong", &times[1]), ("obj_oob_pingpong", &times[2])] {
            println!(
                "overhead case={name} size={} spmd_usec={:.1} buffer_usec={b:.1} bandwidth_ratio={:.3}",
                8 * n,
                t[7],
                b / t[7]
            );
        }
    }
    Ok(())
}

/// A page-aligned window of `len` bytes inside `v` (as the baseline's posix_memalign'd buffers).
fn aligned(v: &mut [u8], len: usize) -> &mut [u8] {
    let off = v.as_ptr().align_offset(4096);
    &mut v[off..off + len]
}

/// The same floats as an object with an out-of-band field.
#[derive(Serialize, Deserialize)]
struct Field {
    step: u64,
    values: Oob<f64>,
}

fn main() -> spmd::Result<()> {
    let what = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    let universe = spmd::init()?;
    let env_num = |k: &str, d: f64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let world = if env_num("BENCH_UNCHECKED", 0.0) != 0.0 {
        // SAFETY: every rank passes the same sizes to every collective below, and every message fits its receive.
        unsafe { universe.world().unchecked() }
    } else {
        universe.world()
    };
    let (rank, np) = (world.rank(), world.size());
    let reps = env_num("BENCH_REPS", 5.0) as usize;
    let b = Bench {
        comm: &world,
        reps: reps.clamp(1, 64),
        target: env_num("BENCH_TARGET_MS", 50.0) / 1e3,
    };
    if rank == 0 {
        let lib = universe.library_version();
        let lib = lib.split([',', '\n']).next().unwrap_or("");
        println!(
            "# impl=spmd np={np} reps={} target_ms={:.0} mpi=\"{lib}\" checked={} huge={}",
            b.reps,
            b.target * 1e3,
            env_num("BENCH_UNCHECKED", 0.0) == 0.0,
            env_num("BENCH_HUGE", 0.0) != 0.0
        );
    }
    let huge = env_num("BENCH_HUGE", 0.0) != 0.0;
    let alloc = |fill: u8| -> Vec<u8> {
        let mut v = if huge {
            spmd::buffer::huge_vec(MAXBUF + 4096)
        } else {
            vec![0u8; MAXBUF + 4096]
        };
        v.fill(fill);
        v
    };
    let mut sraw = alloc(1);
    let mut rraw = alloc(0);
    let sbuf = aligned(&mut sraw, MAXBUF);
    let rbuf = aligned(&mut rraw, MAXBUF);
    let mut sizes: Vec<usize> = std::iter::successors(Some(8usize), |s| Some(s * 4))
        .take_while(|&s| s <= 8 << 20)
        .collect();
    sizes.push(16 << 20);
    let peer = 1 - rank.min(1);
    let pair = rank < 2;

    if (what == "all" || what == "pt2pt") && np >= 2 {
        for &n in &sizes {
            b.case("pingpong", n, 2.0, &mut |iters| {
                if !pair {
                    return Ok(());
                }
                for _ in 0..iters {
                    if rank == 0 {
                        world.send_buf(peer, 1, &sbuf[..n])?;
                        world.recv_buf_into(peer, 1, &mut rbuf[..n])?;
                    } else {
                        world.recv_buf_into(peer, 1, &mut rbuf[..n])?;
                        world.send_buf(peer, 1, &sbuf[..n])?;
                    }
                }
                Ok(())
            })?;
        }
        for &n in &sizes {
            let w = (MAXBUF / n).clamp(1, MAXWIN);
            b.case("bw", n, w as f64, &mut |iters| {
                for _ in 0..iters {
                    if rank == 0 {
                        let src = &sbuf[..n];
                        scope(|s| -> spmd::Result<()> {
                            let reqs = (0..w)
                                .map(|_| world.isend_buf(s, 1, 2, src))
                                .collect::<spmd::Result<Vec<_>>>()?;
                            wait_all(reqs)?;
                            Ok(())
                        })?;
                        world.recv_buf_into(1, 3, &mut rbuf[..4])?;
                    } else if rank == 1 {
                        scope(|s| -> spmd::Result<()> {
                            let reqs = rbuf
                                .chunks_mut(n)
                                .take(w)
                                .map(|chunk| world.irecv_buf_into(s, 0, 2, chunk))
                                .collect::<spmd::Result<Vec<_>>>()?;
                            wait_all(reqs)?;
                            Ok(())
                        })?;
                        world.send_buf(0, 3, &sbuf[..4])?;
                    }
                }
                Ok(())
            })?;
        }
    }

    if what == "all" || what == "coll" {
        let doubles: Vec<usize> = vec![1, 8, 64, 512, 4096, 32768, 262144, 1 << 20];
        let sd: Vec<f64> = vec![1.0; 1 << 20];
        let mut rd: Vec<f64> = vec![0.0; 1 << 20];
        for &n in &doubles {
            b.case("allreduce", 8 * n, 1.0, &mut |iters| {
                for _ in 0..iters {
                    world.all_reduce_buf(&sd[..n], &mut rd[..n], Op::Sum)?;
                }
                Ok(())
            })?;
        }
        for &n in &sizes {
            b.case("bcast", n, 1.0, &mut |iters| {
                for _ in 0..iters {
                    world.broadcast_buf(0, &mut sbuf[..n])?;
                }
                Ok(())
            })?;
        }
        for n in [1024usize, 65536] {
            b.case("gather", n, 1.0, &mut |iters| {
                for _ in 0..iters {
                    world.gather_buf(0, &sbuf[..n], (rank == 0).then_some(&mut rbuf[..n * np]))?;
                }
                Ok(())
            })?;
        }
        for n in [1024usize, 65536] {
            b.case("scatter", n, 1.0, &mut |iters| {
                for _ in 0..iters {
                    world.scatter_buf(0, (rank == 0).then_some(&sbuf[..n * np]), &mut rbuf[..n])?;
                }
                Ok(())
            })?;
        }
        for n in [1024usize, 65536] {
            b.case("alltoall", n, 1.0, &mut |iters| {
                for _ in 0..iters {
                    world.all_to_all_buf(&sbuf[..n * np], &mut rbuf[..n * np])?;
                }
                Ok(())
            })?;
        }
        b.case("barrier", 0, 1.0, &mut |iters| {
            for _ in 0..iters {
                world.barrier()?;
            }
            Ok(())
        })?;
    }

    if what == "overhead" && np >= 2 {
        overhead(&world)?;
    }

    if (what == "all" || what == "obj") && np >= 2 {
        for &bytes in &sizes {
            let n = bytes / 8;
            // In `obj` mode the buffer ping-pong of the same size runs right before, as the reference measured on
            // the same placement of the vCPUs.
            if what == "obj" {
                let mut r = vec![0u8; bytes];
                let (s, rb) = (&sbuf[..bytes], std::cell::RefCell::new(&mut r));
                pingpong_obj(
                    &b,
                    "pingpong",
                    bytes,
                    &(),
                    |c, p, _| c.send_buf(p, 1, s),
                    |c, p| c.recv_buf_into(p, 1, &mut rb.borrow_mut()[..]).map(|_| ()),
                )?;
            }
            pingpong_obj(
                &b,
                "obj_pingpong",
                bytes,
                &vec![1.0f64; n],
                |c, p, v| c.send_obj(p, 1, v),
                |c, p| Ok(c.recv_obj::<Vec<f64>>(p, 1)?.0),
            )?;
            let f = Field {
                step: 7,
                values: Oob::new(vec![1.0; n]),
            };
            pingpong_obj(
                &b,
                "obj_oob_pingpong",
                bytes,
                &f,
                |c, p, v| c.send_obj(p, 1, v),
                |c, p| Ok(c.recv_obj::<Field>(p, 1)?.0),
            )?;
        }
        let map: HashMap<String, u64> = (0..1000u64).map(|i| (format!("key-{i:04}"), i)).collect();
        let map_bytes = bincode::serialized_size(&map).unwrap_or(0) as usize;
        pingpong_obj(
            &b,
            "obj_map_pingpong",
            map_bytes,
            &map,
            |c, p, v| c.send_obj(p, 1, v),
            |c, p| Ok(c.recv_obj::<HashMap<String, u64>>(p, 1)?.0),
        )?;
        for n in [1usize, 512, 65536, 1 << 20] {
            let v: Vec<f64> = vec![1.0; n];
            b.case("obj_bcast", 8 * n, 1.0, &mut |iters| {
                for _ in 0..iters {
                    let _ = world.broadcast_obj(0, (rank == 0).then(|| v.clone()))?;
                }
                Ok(())
            })?;
        }
        for n in [1usize, 512, 65536] {
            let v: Vec<f64> = vec![1.0; n];
            b.case("obj_allreduce", 8 * n, 1.0, &mut |iters| {
                for _ in 0..iters {
                    let _ = world.all_reduce_obj(v.clone(), |a, b| a.iter().zip(&b).map(|(x, y)| x + y).collect())?;
                }
                Ok(())
            })?;
        }
    }
    Ok(())
}
