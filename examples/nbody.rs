//! All-pairs gravity with a ring pipeline: each rank's bodies meet every other block as the blocks travel around a
//! periodic 1-D process grid, each transfer overlapping the computation on the block that arrived before.
//!
//! ```text
//! mpirun -n 4 target/release/examples/nbody --n 20000 --steps 3 --check
//! ```
//!
//! `n` bodies with seeded positions and masses are distributed in blocks. Each step, every rank starts sending
//! the block it holds to its right neighbour and receiving the next from its left (`isend_buf` / `irecv_buf_into`
//! in a scope, neighbours from `Grid::shift` on a periodic grid), adds the accelerations that block causes on its
//! own bodies (on its threads) while the messages travel, then waits; after `p` rounds every pair has met. Blocks
//! are padded to the largest block length with massless bodies. Then a leapfrog step moves the bodies. The program
//! checks that the total momentum stays zero (relative 1e-10 of the sum of |m v|) and, with `--check`, that the
//! first step's accelerations equal a serial all-pairs computation on rank 0 (relative 1e-12).

use clap::Parser;
use rayon::prelude::*;
use spmd::Op;
use spmd::hybrid::{Hybrid, Threads};
use spmd::request::{scope, wait_all};

/// All-pairs gravity with a ring pipeline.
#[derive(Parser)]
struct Args {
    /// Number of bodies.
    #[arg(long, default_value_t = 8000)]
    n: usize,
    /// Time steps.
    #[arg(long, default_value_t = 2)]
    steps: usize,
    /// Time step.
    #[arg(long, default_value_t = 1e-3)]
    dt: f64,
    /// Threads per rank (0: the CPUs the rank has to itself).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Compare the first step's accelerations with a serial computation on rank 0.
    #[arg(long)]
    check: bool,
}

const SOFTENING2: f64 = 1e-4;

/// Body `i`: position and mass, from a hash of `i`.
fn body(i: usize) -> [f64; 4] {
    let mut z = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5151;
    let mut next = || {
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    };
    [next() * 2.0 - 1.0, next() * 2.0 - 1.0, next() * 2.0 - 1.0, 0.5 + next()]
}

/// Adds to `acc` the accelerations that the bodies of `other` cause on the bodies of `mine`.
fn accumulate(hybrid: &Hybrid<'_>, mine: &[[f64; 4]], other: &[[f64; 4]], acc: &mut [[f64; 3]]) {
    hybrid.install(|| {
        acc.par_iter_mut().zip(mine.par_iter()).for_each(|(a, b)| {
            let (mut ax, mut ay, mut az) = (0.0, 0.0, 0.0);
            for o in other {
                let (dx, dy, dz) = (o[0] - b[0], o[1] - b[1], o[2] - b[2]);
                let r2 = dx * dx + dy * dy + dz * dz + SOFTENING2;
                let f = o[3] / (r2 * r2.sqrt());
                ax += f * dx;
                ay += f * dy;
                az += f * dz;
            }
            a[0] += ax;
            a[1] += ay;
            a[2] += az;
        })
    });
}

fn main() -> spmd::Result<()> {
    let args = Args::parse();
    if args.n == 0 {
        return Err("--n must be at least 1".into());
    }
    let universe = spmd::init()?;
    let world = universe.world();
    let hybrid = Hybrid::new(&world, Threads::from_flag(Some(args.threads)))?;
    let (rank, p) = (world.rank(), world.size());
    let ring = world.grid(&[p], &[true])?;
    let (left, right) = ring.shift(0, 1)?;
    let part = spmd::dist::Partition::block(args.n, p);
    let range = part.range(rank).unwrap_or(0..0);
    let width = args.n.div_ceil(p);
    // My bodies, padded with massless ones to the common block width.
    let mut mine: Vec<[f64; 4]> = range.clone().map(body).collect();
    mine.resize(width, [0.0, 0.0, 0.0, 0.0]);
    let mut vel = vec![[0.0f64; 3]; width];
    let mut first_acc = None;

    world.barrier()?;
    let t0 = universe.time();
    for step in 0..args.steps.max(1) {
        let mut acc = vec![[0.0f64; 3]; width];
        let mut cur = mine.clone();
        let mut next = vec![[0.0f64; 4]; width];
        for round in 0..p {
            let last = round + 1 == p;
            scope(|s| -> spmd::Result<()> {
                let mut reqs = Vec::new();
                if !last {
                    reqs.push(world.irecv_buf_into(s, left, 0, as_f64_mut(&mut next))?);
                    reqs.push(world.isend_buf(s, right, 0, as_f64(&cur))?);
                }
                accumulate(&hybrid, &mine, &cur, &mut acc);
                wait_all(reqs)?;
                Ok(())
            })?;
            std::mem::swap(&mut cur, &mut next);
        }
        if step == 0 {
            first_acc = Some(acc.clone());
        }
        for ((b, v), a) in mine.iter_mut().zip(vel.iter_mut()).zip(&acc) {
            if b[3] == 0.0 {
                continue;
            }
            for d in 0..3 {
                v[d] += a[d] * args.dt;
                b[d] += v[d] * args.dt;
            }
        }
    }
    let elapsed = world.all_reduce_scalar(universe.time() - t0, Op::Max)?;

    // Total momentum (zero at the start) stays zero.
    let mut mom = [0.0f64; 4];
    for (b, v) in mine.iter().zip(&vel) {
        for d in 0..3 {
            mom[d] += b[3] * v[d];
        }
        mom[3] += b[3] * (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    }
    let mut total = [0.0f64; 4];
    world.all_reduce_buf(&mom[..], &mut total[..], Op::Sum)?;
    // The first step's accelerations, gathered for the check.
    let local = &first_acc.expect("one step")[..range.len()];
    let flat: Vec<f64> = local.iter().flatten().copied().collect();
    let gathered = if args.check {
        let counts: Vec<usize> = (0..p).map(|r| 3 * part.range(r).map_or(0, |r| r.len())).collect();
        if rank == 0 {
            let mut all = vec![0.0f64; 3 * args.n];
            world.gather_varcount_buf_root(&flat[..], &mut all[..], &counts)?;
            Some(all)
        } else {
            world.gather_varcount_buf_to(0, &flat[..])?;
            None
        }
    } else {
        None
    };
    if rank == 0 {
        let drift = (total[0].powi(2) + total[1].powi(2) + total[2].powi(2)).sqrt() / total[3].max(f64::MIN_POSITIVE);
        println!(
            "nbody: n={} steps={} np={p} elapsed={elapsed:.3} s pairs_per_s={:.3e} momentum_drift={drift:.2e}",
            args.n,
            args.steps.max(1),
            (args.n * args.n * args.steps.max(1)) as f64 / elapsed
        );
        if drift > 1e-10 {
            return Err(format!("total momentum drifted by {drift:.2e} (relative)").into());
        }
        if let Some(all) = gathered {
            let bodies: Vec<[f64; 4]> = (0..args.n).map(body).collect();
            let mut serial = vec![[0.0f64; 3]; args.n];
            accumulate(&hybrid, &bodies, &bodies, &mut serial);
            let scale = serial.iter().flatten().fold(0.0f64, |m, x| m.max(x.abs()));
            let worst = serial
                .iter()
                .flatten()
                .zip(&all)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f64, f64::max)
                / scale;
            if worst > 1e-12 {
                return Err(format!("accelerations differ from the serial ones by {worst:.2e} (relative)").into());
            }
            println!("check: accelerations equal the serial computation (relative difference {worst:.1e})");
        }
        println!(
            "summary: kernel=nbody np={p} threads={} elapsed_s={elapsed:.4} check=passed",
            hybrid.threads()
        );
    }
    Ok(())
}

fn as_f64(v: &[[f64; 4]]) -> &[f64] {
    bytemuck::cast_slice(v)
}

fn as_f64_mut(v: &mut [[f64; 4]]) -> &mut [f64] {
    bytemuck::cast_slice_mut(v)
}
