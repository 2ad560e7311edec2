//! Hybrid layout: how many threads each rank gets, where ranks sit, one shared table per node, and
//! hierarchical against flat all-reduce.
//!
//! ```text
//! mpirun -n 2 target/release/examples/hybrid                      # bound to a core each: 1 thread per rank
//! mpirun -n 1 --map-by slot:PE=2 target/release/examples/hybrid   # 2 cores for one rank: 2 threads
//! mpirun -n 2 target/release/examples/hybrid --table-mib 64       # one 64 MiB table per node
//! mpirun -n 6 ... target/release/examples/hybrid --bench-allreduce  # across hosts: flat vs hierarchical
//! ```
//!
//! It prints the layout table (every rank's host, node, CPUs and threads, and the mpirun command that would
//! balance this job), then checks a threaded reproducible sum against the single-thread one, bit for bit.
//! `--table-mib` fills a lookup table in node-shared memory on each node's first rank, has every rank read all of
//! it, and reports the memory per node against a copy per rank. `--bench-allreduce` times the flat and the
//! hierarchical all-reduce, interleaved, at several sizes, and prints medians.

use clap::Parser;
use spmd::hybrid::{Hybrid, NodeArray, Strategy, Threads};

/// Hybrid layout report, node-shared table and hierarchical all-reduce.
#[derive(Parser)]
struct Args {
    /// Threads per rank (0: from RAYON_NUM_THREADS or the rank's CPUs).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Size in MiB of a lookup table shared by the ranks of each node (0: none).
    #[arg(long, default_value_t = 0)]
    table_mib: usize,
    /// Time the flat and the hierarchical all-reduce.
    #[arg(long)]
    bench_allreduce: bool,
    /// Repetitions per size and strategy in each round of --bench-allreduce.
    #[arg(long, default_value_t = 200)]
    reps: usize,
    /// Rounds of --bench-allreduce (the strategies alternate; medians over rounds are printed).
    #[arg(long, default_value_t = 7)]
    rounds: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> spmd::Result<()> {
    let args = Args::parse();
    let universe = spmd::init()?;
    let world = universe.world();
    let mut hybrid = Hybrid::new(&world, Threads::from_flag(Some(args.threads)))?;
    hybrid.report()?;

    // A threaded sum with the same bits as on one thread.
    let data: Vec<f64> = (0..1_000_000).map(|i| 1.0 / (i as f64 + 1.0)).collect();
    let threaded = hybrid.sum_reproducible(&data);
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("pool");
    let single = spmd::hybrid::sum_reproducible(&one, &data);
    if threaded.to_bits() != single.to_bits() {
        return Err(format!(
            "rank {}: threaded sum {threaded:e} differs from {single:e}",
            world.rank()
        )
        .into());
    }
    let ok = world.all_reduce_scalar(1u32, spmd::Op::Sum)?;
    if world.rank() == 0 {
        println!(
            "reproducible sum: same bits on {} threads as on 1 ({ok} ranks)",
            hybrid.threads()
        );
    }

    if args.table_mib > 0 {
        let len = args.table_mib << 17; // f64 elements
        let mut table = NodeArray::<f64>::new(&world, len)?;
        let t0 = universe.time();
        table.fill_on_leader(|t| {
            for (k, x) in t.iter_mut().enumerate() {
                *x = (k % 1000) as f64;
            }
        })?;
        let fill = universe.time() - t0;
        let sum: f64 = table.as_slice().iter().sum();
        let expect = (len / 1000) as f64 * 499_500.0 + ((len % 1000) * (len % 1000 - 1) / 2) as f64;
        if sum != expect {
            return Err(format!("rank {}: table sum {sum} != {expect}", world.rank()).into());
        }
        let node = hybrid.node_comm();
        let per_node = node.all_reduce_scalar(table.allocated_bytes() as u64, spmd::Op::Sum)?;
        let total = world.all_reduce_scalar(table.allocated_bytes() as u64, spmd::Op::Sum)?;
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        if world.rank() == 0 {
            println!(
                "node table: {} MiB per node on {} node(s): {:.1} MiB in all, against {:.1} MiB with a copy per \
                 rank ({} ranks); filled in {:.3} s, every rank read all of it",
                args.table_mib,
                hybrid.node().nodes,
                mib(total),
                (args.table_mib * world.size()) as f64,
                world.size(),
                fill
            );
        }
        if hybrid.node().local_rank == 0 {
            println!(
                "node {} ({}): {:.1} MiB allocated by its {} rank(s)",
                hybrid.node().node,
                hybrid.node().host,
                mib(per_node),
                hybrid.node().local_size
            );
        }
    }

    if args.bench_allreduce {
        if world.rank() == 0 {
            println!(
                "all-reduce (sum of f64), median µs over {} rounds of {} calls:",
                args.rounds, args.reps
            );
            println!("{:>10} {:>12} {:>12} {:>8}", "bytes", "flat", "hierarchical", "ratio");
        }
        for n in [1usize, 128, 8192, 131_072] {
            let send = vec![1.0f64; n];
            let mut recv = vec![0.0f64; n];
            let mut times = [Vec::new(), Vec::new()];
            for _ in 0..args.rounds {
                for (k, s) in [Strategy::Flat, Strategy::Hierarchical].into_iter().enumerate() {
                    world.barrier()?;
                    let t0 = universe.time();
                    for _ in 0..args.reps {
                        hybrid.all_reduce_buf_with(s, &send[..], &mut recv[..], spmd::Op::Sum)?;
                    }
                    let t = world.all_reduce_scalar(universe.time() - t0, spmd::Op::Max)?;
                    times[k].push(t / args.reps as f64 * 1e6);
                    if recv[0] != world.size() as f64 {
                        return Err(format!("{s:?} all-reduce gave {}", recv[0]).into());
                    }
                }
            }
            let [f, h] = times.map(median);
            if world.rank() == 0 {
                println!("{:>10} {f:>12.1} {h:>12.1} {:>8.2}", n * 8, h / f);
            }
        }
        let tuned = hybrid.tune_all_reduce()?;
        if world.rank() == 0 {
            let t: Vec<String> = tuned
                .iter()
                .map(|&(b, h)| {
                    let upto = if b == usize::MAX {
                        "larger".to_string()
                    } else {
                        format!("<= {b} B")
                    };
                    format!("{upto}: {}", if h { "hierarchical" } else { "flat" })
                })
                .collect();
            println!("tuned default (Strategy::Auto): {}", t.join(", "));
        }
    }
    Ok(())
}
