//! Overlapping a halo exchange with interior work, and what progress calls change.
//!
//! ```text
//! mpirun -n 2 target/release/examples/overlap --cols 16384 --width 64 --chunks 64
//! ```
//!
//! Each rank owns a block of rows of a `rows × cols` array with `--width` ghost rows above and below (a
//! `width × cols` message per neighbour) and starts the exchange with `exchange_halo_overlap`. While the messages
//! are in flight it does interior work on its owned block: either in one piece, with no MPI call, or in
//! `--chunks` pieces with a progress test between them (`spmd::hybrid::in_chunks`). Open MPI has no
//! asynchronous progress, so a large message moves only inside MPI calls: without progress calls the transfer
//! happens in the final wait; with them it happens during the work. The program prints, for both modes, the
//! median time of the work and of the wait that follows it, the exchange alone for comparison, and the share of
//! the exchange hidden behind the work. `--check` verifies the ghost rows after each exchange.

use clap::Parser;
use spmd::dist::{DArray, Ghost};

/// Halo exchange overlapped with interior work, with and without progress calls.
#[derive(Parser)]
struct Args {
    /// Owned rows per rank.
    #[arg(long, default_value_t = 256)]
    rows: usize,
    /// Columns (the length of each ghost row).
    #[arg(long, default_value_t = 16384)]
    cols: usize,
    /// Ghost rows exchanged with each neighbour.
    #[arg(long, default_value_t = 64)]
    width: usize,
    /// Passes of interior work over the owned block per exchange.
    #[arg(long, default_value_t = 4)]
    passes: usize,
    /// Pieces of work (with a progress call after each) in the overlapped mode.
    #[arg(long, default_value_t = 64)]
    chunks: usize,
    /// Repetitions of each mode (interleaved); medians are printed.
    #[arg(long, default_value_t = 9)]
    reps: usize,
    /// Check the ghost rows after every exchange.
    #[arg(long)]
    check: bool,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Some arithmetic on each owned element (the "interior work").
fn work(block: &[f64], passes: usize) -> f64 {
    let mut acc = 0.0;
    for p in 0..passes {
        for &x in block {
            acc += (x + p as f64).sqrt();
        }
    }
    acc
}

fn main() -> spmd::Result<()> {
    let args = Args::parse();
    if args.width == 0 || args.width > args.rows {
        return Err(format!("--width {} must be between 1 and --rows {}", args.width, args.rows).into());
    }
    let universe = spmd::init()?;
    let world = universe.world();
    let p = world.size();
    let grid = world.grid(&[p, 1], &[false, false])?;
    let (n, m) = (args.rows * p, args.cols);
    let value = |(i, j): (usize, usize)| (i * m + j) as f64;
    let mut u = DArray::from_fn(&grid, [n, m], Ghost::star(args.width).widths(&[args.width, 0]), value)?;
    let owned_len = u.owned_shape().iter().product::<usize>();
    let block: Vec<f64> = u.owned().iter().copied().collect();

    let mut sink = 0.0;
    let (mut alone, mut work_plain, mut wait_plain, mut work_prog, mut wait_prog) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut tests = 0;
    for _ in 0..args.reps {
        // The exchange alone.
        world.barrier()?;
        let t0 = universe.time();
        u.exchange_halo()?;
        alone.push(universe.time() - t0);
        // Work in one piece, then wait.
        world.barrier()?;
        let mut t_end = 0.0;
        let t0 = universe.time();
        u.exchange_halo_overlap(|_, _| {
            sink += work(&block, args.passes);
            t_end = universe.time();
        })?;
        let t1 = universe.time();
        work_plain.push(t_end - t0);
        wait_plain.push(t1 - t_end);
        // Work in chunks with progress calls, then wait.
        world.barrier()?;
        let t0 = universe.time();
        let stats = u.exchange_halo_overlap(|_, progress| {
            let o = spmd::hybrid::in_chunks(progress, owned_len, args.chunks, |r| {
                sink += work(&block[r], args.passes)
            });
            t_end = universe.time();
            o
        })??;
        let t1 = universe.time();
        tests += stats.tests;
        work_prog.push(t_end - t0);
        wait_prog.push(t1 - t_end);
        if args.check {
            let (lo, hi) = (u.owned_start()[0], u.owned_start()[0] + args.rows);
            let local = u.local();
            let w = args.width;
            for (k, row) in local.rows().into_iter().enumerate() {
                let gi = (lo + k) as isize - w as isize;
                if gi < 0 || gi as usize >= n || (lo..hi).contains(&(gi as usize)) {
                    continue;
                }
                if row.iter().enumerate().any(|(j, &x)| x != value((gi as usize, j))) {
                    return Err(format!("rank {}: ghost row {gi} is wrong", world.rank()).into());
                }
            }
        }
    }
    let gather = |v: &Vec<f64>| world.all_reduce_scalar(median(v.clone()), spmd::Op::Max);
    let (a, wp, xp, wq, xq) = (
        gather(&alone)?,
        gather(&work_plain)?,
        gather(&wait_plain)?,
        gather(&work_prog)?,
        gather(&wait_prog)?,
    );
    if world.rank() == 0 {
        let bytes = args.width * m * 8;
        println!(
            "overlap: np={p} message={:.1} MiB per neighbour, work {} passes over {} elements, {} chunks ({} progress \
             calls per exchange)",
            bytes as f64 / (1 << 20) as f64,
            args.passes,
            owned_len,
            args.chunks,
            tests / args.reps
        );
        println!("exchange alone:           {:8.3} ms", a * 1e3);
        println!(
            "no progress calls:  work  {:8.3} ms, then wait {:8.3} ms",
            wp * 1e3,
            xp * 1e3
        );
        println!(
            "progress calls:     work  {:8.3} ms, then wait {:8.3} ms",
            wq * 1e3,
            xq * 1e3
        );
        println!(
            "hidden: {:.0} % of the exchange without progress calls, {:.0} % with (slowest rank, medians of {})",
            (1.0 - xp / a).clamp(0.0, 1.0) * 100.0,
            (1.0 - xq / a).clamp(0.0, 1.0) * 100.0,
            args.reps
        );
        if args.check {
            println!("check: ghost rows correct after every exchange");
        }
    }
    std::hint::black_box(sink);
    Ok(())
}
