//! π by the midpoint rule: the integral of 4/(1+x²) over [0, 1], split over the ranks, combined with a reduction.
//!
//! ```text
//! mpirun -n 4 target/release/examples/pi --intervals 10000000
//! ```
//!
//! Each rank integrates its block of the intervals (a block partition: the first `n % p` ranks take one more)
//! with compensated summation, in pieces on its threads (`--threads`), rank 0 adds the parts with `reduce_scalar` and prints the estimate, its error
//! against `std::f64::consts::PI`, and the elapsed time. The program checks the answer: it fails (and ends the
//! job) if the error exceeds `--tolerance`.

use clap::Parser;
use rayon::prelude::*;
use spmd::Op;
use spmd::hybrid::{Hybrid, Threads};

/// Midpoint-rule integration of 4/(1+x²) on [0, 1], in parallel.
#[derive(Parser)]
struct Args {
    /// Number of intervals.
    #[arg(long, default_value_t = 10_000_000)]
    intervals: u64,
    /// Largest acceptable error against π.
    #[arg(long, default_value_t = 1e-9)]
    tolerance: f64,
    /// Threads per rank (0: the CPUs the rank has to itself).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

/// The sum of f over the midpoints of intervals `start..end` of width `h`, with Kahan summation.
fn partial_sum(start: u64, end: u64, h: f64) -> f64 {
    let (mut sum, mut c) = (0.0f64, 0.0f64);
    for i in start..end {
        let x = h * (i as f64 + 0.5);
        let y = 4.0 / (1.0 + x * x) - c;
        let t = sum + y;
        c = (t - sum) - y;
        sum = t;
    }
    sum
}

fn main() -> spmd::Result<()> {
    let args = Args::parse();
    if args.intervals == 0 {
        return Err("--intervals must be at least 1".into());
    }
    let universe = spmd::init()?;
    let world = universe.world();
    let hybrid = Hybrid::new(&world, Threads::from_flag(Some(args.threads)))?;
    let (rank, size) = (world.rank() as u64, world.size() as u64);

    world.barrier()?;
    let t0 = universe.time();
    let n = args.intervals;
    let (q, r) = (n / size, n % size);
    let start = rank * q + rank.min(r);
    let len = q + u64::from(rank < r);
    let h = 1.0 / n as f64;
    // The rank's block in pieces, one per task of its threads.
    let pieces = (hybrid.threads() as u64 * 4).min(len.max(1));
    let local: f64 = hybrid.install(|| {
        (0..pieces)
            .into_par_iter()
            .map(|k| partial_sum(start + k * len / pieces, start + (k + 1) * len / pieces, h))
            .sum()
    });
    let total = world.reduce_scalar(0, local, Op::Sum)?;
    let elapsed = universe.time() - t0;

    if let Some(total) = total {
        let pi = total * h;
        let error = (pi - std::f64::consts::PI).abs();
        println!("pi ~ {pi:.16}");
        println!("error {error:.3e}");
        println!("intervals {n}, ranks {size}, time {elapsed:.6} s");
        if error > args.tolerance {
            return Err(format!("error {error:.3e} exceeds the tolerance {:.1e}", args.tolerance).into());
        }
        println!(
            "summary: kernel=pi np={size} threads={} elapsed_s={elapsed:.4} check=passed",
            hybrid.threads()
        );
    }
    Ok(())
}
