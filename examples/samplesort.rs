//! Parallel sort of seeded random `u64` by sample sort: local sort, regular samples, splitters, one
//! variable-count all-to-all, a local merge.
//!
//! ```text
//! mpirun -n 4 target/release/examples/samplesort --n 100000000 --check
//! ```
//!
//! Element `i` of the global input is a hash of `(--seed, i)`, and rank `r` generates the block of indices a
//! block partition gives it, so the input is the same for any number of ranks. Each rank sorts its block (on its
//! threads), takes `--oversample × p` evenly spaced samples of it, and all ranks gather the samples (an object
//! all-gather); the `p - 1` splitters are evenly spaced in the sorted samples. Each rank cuts its sorted block at
//! the splitters, the counts go out with `all_to_all_buf` and the data with `all_to_all_varcount_buf`, and each
//! rank merges the sorted runs it received (pairwise, O(n log p)). The program reports the largest bucket against the mean (the imbalance), checks
//! that every rank's data is sorted, that the ranks' ranges are in order, and that the count and a checksum of the
//! values are preserved; `--check` compares the whole result with a serial sort on rank 0.

use clap::Parser;
use rayon::prelude::*;
use spmd::Op;
use spmd::hybrid::{Hybrid, Threads};

/// Sample sort of seeded random u64 across the ranks.
#[derive(Parser)]
struct Args {
    /// Number of values.
    #[arg(long, default_value_t = 10_000_000)]
    n: u64,
    /// Seed of the values.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Samples per rank and per bucket.
    #[arg(long, default_value_t = 16)]
    oversample: usize,
    /// Threads per rank (0: the CPUs the rank has to itself).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Compare the whole result with a serial sort on rank 0.
    #[arg(long)]
    check: bool,
}

/// Value `i` of the input: SplitMix64's output for `seed + i`.
fn value(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Merges the sorted runs of `v` (lengths `runs`, in order) into one sorted vector, pairwise: O(n log p).
fn merge_runs(mut v: Vec<u64>, runs: &[usize]) -> Vec<u64> {
    let mut bounds: Vec<usize> = std::iter::once(0)
        .chain(runs.iter().scan(0, |a, &r| {
            *a += r;
            Some(*a)
        }))
        .collect();
    let mut tmp = vec![0u64; v.len()];
    while bounds.len() > 2 {
        let mut next = vec![0];
        for w in bounds.windows(3).step_by(2) {
            let (a, m, b) = (w[0], w[1], w[2]);
            let (mut i, mut j, mut k) = (a, m, a);
            while i < m && j < b {
                if v[i] <= v[j] {
                    tmp[k] = v[i];
                    i += 1;
                } else {
                    tmp[k] = v[j];
                    j += 1;
                }
                k += 1;
            }
            tmp[k..k + m - i].copy_from_slice(&v[i..m]);
            k += m - i;
            tmp[k..k + b - j].copy_from_slice(&v[j..b]);
            next.push(b);
        }
        if bounds.len().is_multiple_of(2) {
            // An odd number of runs: the last one is carried over as it is.
            let (a, b) = (bounds[bounds.len() - 2], bounds[bounds.len() - 1]);
            tmp[a..b].copy_from_slice(&v[a..b]);
            next.push(b);
        }
        std::mem::swap(&mut v, &mut tmp);
        bounds = next;
    }
    v
}

fn main() -> spmd::Result<()> {
    let args = Args::parse();
    let universe = spmd::init()?;
    let world = universe.world();
    let hybrid = Hybrid::new(&world, Threads::from_flag(Some(args.threads)))?;
    let (rank, p) = (world.rank(), world.size());
    let (q, r) = (args.n / p as u64, args.n % p as u64);
    let first = rank as u64 * q + (rank as u64).min(r);
    let len = q + u64::from((rank as u64) < r);
    let mut data: Vec<u64> = hybrid.install(|| {
        (first..first + len)
            .into_par_iter()
            .map(|i| value(args.seed, i))
            .collect()
    });
    let checksum_in = world.all_reduce_scalar(data.iter().fold(0u64, |a, &b| a.wrapping_add(b)), Op::Sum)?;

    world.barrier()?;
    let t0 = universe.time();
    hybrid.install(|| data.par_sort_unstable());
    let t_sorted = universe.time();
    // Regular samples, gathered everywhere; splitters evenly spaced among them.
    let s = args.oversample.max(1) * p;
    let samples: Vec<u64> = if data.is_empty() {
        Vec::new()
    } else {
        (0..s).map(|k| data[(k * data.len()) / s]).collect()
    };
    let mut all: Vec<u64> = world.all_gather_obj(&samples)?.into_iter().flatten().collect();
    all.sort_unstable();
    let splitters: Vec<u64> = (1..p)
        .map(|k| all.get(k * all.len() / p).copied().unwrap_or(u64::MAX))
        .collect();
    // Cut the sorted block at the splitters: bucket k gets values in (splitter k-1, splitter k].
    let mut cuts = vec![0usize];
    cuts.extend(splitters.iter().map(|&sp| data.partition_point(|&v| v <= sp)));
    cuts.push(data.len());
    for k in 1..cuts.len() {
        cuts[k] = cuts[k].max(cuts[k - 1]);
    }
    let send_counts: Vec<usize> = cuts.windows(2).map(|w| w[1] - w[0]).collect();
    let sc64: Vec<u64> = send_counts.iter().map(|&c| c as u64).collect();
    let mut rc64 = vec![0u64; p];
    world.all_to_all_buf(&sc64[..], &mut rc64[..])?;
    let recv_counts: Vec<usize> = rc64.iter().map(|&c| c as usize).collect();
    let mut mine = vec![0u64; recv_counts.iter().sum()];
    world.all_to_all_varcount_buf(&data[..], &send_counts, &mut mine[..], &recv_counts)?;
    drop(data);
    let t_moved = universe.time();
    let mine = merge_runs(mine, &recv_counts);
    let t_end = universe.time();
    let elapsed = world.all_reduce_scalar(t_end - t0, Op::Max)?;
    let mut phases = [0.0f64; 3];
    world.all_reduce_buf(
        &[t_sorted - t0, t_moved - t_sorted, t_end - t_moved][..],
        &mut phases[..],
        Op::Max,
    )?;

    // Checks: sorted here, ranges in rank order, count and checksum preserved.
    let sorted_here = mine.windows(2).all(|w| w[0] <= w[1]);
    let ends = world.all_gather_obj(&(mine.first().copied(), mine.last().copied()))?;
    let counts = world.all_gather_obj(&(mine.len() as u64))?;
    let checksum_out = world.all_reduce_scalar(mine.iter().fold(0u64, |a, &b| a.wrapping_add(b)), Op::Sum)?;
    let all_sorted = world.all_reduce_scalar(u8::from(sorted_here), Op::Min)? == 1;
    let full = if args.check {
        let mut buf = if rank == 0 {
            vec![0u64; args.n as usize]
        } else {
            Vec::new()
        };
        let cs: Vec<usize> = counts.iter().map(|&c| c as usize).collect();
        if rank == 0 {
            world.gather_varcount_buf_root(&mine[..], &mut buf[..], &cs)?;
        } else {
            world.gather_varcount_buf_to(0, &mine[..])?;
        }
        Some(buf)
    } else {
        None
    };
    if rank == 0 {
        let total: u64 = counts.iter().sum();
        let largest = counts.iter().copied().max().unwrap_or(0);
        let imbalance = largest as f64 / (total as f64 / p as f64).max(1.0);
        println!(
            "samplesort: n={} np={p} elapsed={elapsed:.3} s largest_bucket={largest} imbalance={imbalance:.3}",
            args.n
        );
        println!(
            "phases (slowest rank): local sort {:.3} s, splitters and all-to-all {:.3} s, merge {:.3} s",
            phases[0], phases[1], phases[2]
        );
        let bounds: Vec<(u64, u64)> = ends.iter().filter_map(|&(a, b)| Some((a?, b?))).collect();
        let in_order = bounds.windows(2).all(|w| w[0].1 <= w[1].0);
        if !all_sorted || !in_order || total != args.n || checksum_out != checksum_in {
            return Err(format!(
                "not sorted: sorted on every rank {all_sorted}, ranges in order {in_order}, count {total} of {}, \
                 checksum {checksum_out} vs {checksum_in}",
                args.n
            )
            .into());
        }
        if let Some(buf) = full {
            let mut serial: Vec<u64> = (0..args.n).map(|i| value(args.seed, i)).collect();
            serial.sort_unstable();
            if serial != buf {
                return Err("the result differs from a serial sort".into());
            }
            println!("check: equal to the serial sort");
        }
        println!(
            "summary: kernel=samplesort np={p} threads={} elapsed_s={elapsed:.4} check=passed",
            hybrid.threads()
        );
    }
    Ok(())
}
