//! π by Monte Carlo: darts thrown at the unit square, the fraction inside the quarter circle times 4.
//!
//! ```text
//! mpirun -n 4 target/release/examples/montecarlo_pi --tasks 256 --samples 1000000 --threads 1 --check
//! ```
//!
//! The darts come in `--tasks` tasks of `--samples` darts; task `t` draws from its own generator seeded with
//! `(--seed, t)`, so each dart is the same whichever rank or thread throws it: the count of hits, and so the
//! estimate, has the same value for any number of ranks, threads and any schedule. Tasks are spread in blocks over
//! the ranks and over each rank's threads; the counts are added as integers (`reduce_scalar`). The answer is
//! checked against π within 6 standard deviations of the estimator (`sqrt(π(4-π)/N)`); `--check` also recounts
//! every task serially on rank 0 and requires the same count exactly.

use clap::Parser;
use rayon::prelude::*;
use spmd::Op;
use spmd::hybrid::{Hybrid, Threads};

/// Monte Carlo π with per-task seeded generators.
#[derive(Parser)]
struct Args {
    /// Number of tasks.
    #[arg(long, default_value_t = 256)]
    tasks: u64,
    /// Darts per task.
    #[arg(long, default_value_t = 1_000_000)]
    samples: u64,
    /// Seed of the generators.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// Threads per rank (0: the CPUs the rank has to itself).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Recount serially on rank 0 and require the same count.
    #[arg(long)]
    check: bool,
}

/// SplitMix64: a small, well-mixed generator (one state word per task).
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hits of task `t`: darts inside the quarter circle.
fn task(seed: u64, t: u64, samples: u64) -> u64 {
    let mut s = seed ^ t.wrapping_mul(0xD1B5_4A32_D192_ED03);
    let unit = |s: &mut u64| (next(s) >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
    (0..samples)
        .filter(|_| {
            let (x, y) = (unit(&mut s), unit(&mut s));
            x * x + y * y < 1.0
        })
        .count() as u64
}

fn main() -> spmd::Result<()> {
    let args = Args::parse();
    if args.tasks == 0 || args.samples == 0 {
        return Err("--tasks and --samples must be at least 1".into());
    }
    let universe = spmd::init()?;
    let world = universe.world();
    let hybrid = Hybrid::new(&world, Threads::from_flag(Some(args.threads)))?;
    let (rank, size) = (world.rank() as u64, world.size() as u64);

    world.barrier()?;
    let t0 = universe.time();
    let (q, r) = (args.tasks / size, args.tasks % size);
    let first = rank * q + rank.min(r);
    let mine = first..first + q + u64::from(rank < r);
    let local: u64 = hybrid.install(|| mine.into_par_iter().map(|t| task(args.seed, t, args.samples)).sum());
    let hits = world.reduce_scalar(0, local, Op::Sum)?;
    let elapsed = world.all_reduce_scalar(universe.time() - t0, Op::Max)?;

    if let Some(hits) = hits {
        let n = (args.tasks * args.samples) as f64;
        let pi = 4.0 * hits as f64 / n;
        let sigma = (std::f64::consts::PI * (4.0 - std::f64::consts::PI) / n).sqrt();
        let error = (pi - std::f64::consts::PI).abs();
        println!(
            "pi ~ {pi:.10} from {hits} hits of {n} darts, error {error:.2e} ({:.2} sigma)",
            error / sigma
        );
        if error > 6.0 * sigma {
            return Err(format!("error {error:.3e} exceeds 6 standard deviations ({:.3e})", 6.0 * sigma).into());
        }
        if args.check {
            let serial: u64 = (0..args.tasks).map(|t| task(args.seed, t, args.samples)).sum();
            if serial != hits {
                return Err(format!("parallel count {hits} differs from the serial count {serial}").into());
            }
            println!("check: the same count as the serial computation");
        }
        println!(
            "summary: kernel=montecarlo_pi np={size} threads={} elapsed_s={elapsed:.4} check=passed",
            hybrid.threads()
        );
    }
    Ok(())
}
