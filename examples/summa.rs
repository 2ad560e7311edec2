//! Dense matrix product `C = A·B` by SUMMA on a 2-D process grid: panels of `A` broadcast along grid rows, panels of
//! `B` along grid columns, each rank accumulating its block of `C`.
//!
//! ```text
//! mpirun -n 4 target/release/examples/summa --n 1024 --check
//! ```
//!
//! `A`, `B` and `C` are distributed in blocks over the same `pr × pc` grid (`MPI_Dims_create`'s choice, so any
//! number of ranks works: 3 ranks make a 3 × 1 grid). The inner dimension is cut where either `A`'s column blocks
//! or `B`'s row blocks change; for each piece, the grid column that owns those columns of `A` broadcasts them along
//! its grid row (a sub-communicator from `Grid::sub`), the grid row that owns those rows of `B` broadcasts along its
//! grid column, and every rank multiplies the two panels into its block of `C` (on its threads). The entries are
//! small integers, so every product is exact in `f64`: the program checks the sum of all of `C` against
//! `Σ_k (Σ_i A_ik)(Σ_j B_kj)`, and with `--check` every entry against a serial product on rank 0.

use clap::Parser;
use ndarray::{Array2, ArrayViewMut2, Axis, s};
use rayon::prelude::*;
use spmd::Op;
use spmd::dist::{DArray, Ghost, Partition};
use spmd::hybrid::{Hybrid, Threads};

/// SUMMA matrix product on a 2-D process grid.
#[derive(Parser)]
struct Args {
    /// Matrix size (n × n).
    #[arg(long, default_value_t = 512)]
    n: usize,
    /// Threads per rank (0: the CPUs the rank has to itself).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Compare every entry with a serial product on rank 0.
    #[arg(long)]
    check: bool,
}

fn a_entry((i, j): (usize, usize)) -> f64 {
    ((i * 7 + j * 3) % 11) as f64 - 5.0
}

fn b_entry((i, j): (usize, usize)) -> f64 {
    ((i * 5 + j * 2) % 13) as f64 - 6.0
}

/// `c += a · b`, rows of `c` split over the pool's threads.
fn multiply_add(hybrid: &Hybrid<'_>, a: &Array2<f64>, b: &Array2<f64>, c: &mut ArrayViewMut2<'_, f64>) {
    let rows = c.nrows();
    let chunk = rows.div_ceil(hybrid.threads() * 4).max(1);
    hybrid.install(|| {
        let pieces: Vec<_> = c.axis_chunks_iter_mut(Axis(0), chunk).collect();
        pieces.into_par_iter().enumerate().for_each(|(k, mut cc)| {
            let aa = a.slice(s![k * chunk..k * chunk + cc.nrows(), ..]);
            ndarray::linalg::general_mat_mul(1.0, &aa, b, 1.0, &mut cc);
        });
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
    let grid = world.grid(&[0, 0], &[false, false])?;
    let (pr, pc) = (grid.dims()[0], grid.dims()[1]);
    let (my_r, my_c) = (grid.coords()[0], grid.coords()[1]);
    let row_comm = grid.sub(&[false, true])?; // my grid row; rank = grid column
    let col_comm = grid.sub(&[true, false])?; // my grid column; rank = grid row
    let n = args.n;
    let a = DArray::from_fn(&grid, [n, n], Ghost::none(), a_entry)?;
    let b = DArray::from_fn(&grid, [n, n], Ghost::none(), b_entry)?;
    let mut c = DArray::<f64, _>::zeros(&grid, [n, n], Ghost::none())?;
    let (rows, cols) = (c.owned_shape()[0], c.owned_shape()[1]);

    // The inner dimension cut where A's column blocks or B's row blocks change.
    let a_cols = Partition::block(n, pc);
    let b_rows = Partition::block(n, pr);
    let mut cuts: Vec<usize> = (0..pc)
        .filter_map(|k| a_cols.range(k).map(|r| r.start))
        .chain((0..pr).filter_map(|k| b_rows.range(k).map(|r| r.start)))
        .chain([n])
        .collect();
    cuts.sort_unstable();
    cuts.dedup();

    world.barrier()?;
    let t0 = universe.time();
    for w in cuts.windows(2) {
        let (k0, k1) = (w[0], w[1]);
        let owner_c = a_cols.owner(k0);
        let owner_r = b_rows.owner(k0);
        let mut pa = Array2::<f64>::zeros((rows, k1 - k0));
        if my_c == owner_c {
            let start = a.owned_start()[1];
            pa.assign(&a.owned().slice(s![.., k0 - start..k1 - start]));
        }
        row_comm.broadcast_buf(owner_c, pa.as_slice_mut().expect("standard layout"))?;
        let mut pb = Array2::<f64>::zeros((k1 - k0, cols));
        if my_r == owner_r {
            let start = b.owned_start()[0];
            pb.assign(&b.owned().slice(s![k0 - start..k1 - start, ..]));
        }
        col_comm.broadcast_buf(owner_r, pb.as_slice_mut().expect("standard layout"))?;
        multiply_add(&hybrid, &pa, &pb, &mut c.owned_mut());
    }
    let elapsed = world.all_reduce_scalar(universe.time() - t0, Op::Max)?;

    // Check: the sum of C against Σ_k (Σ_i A_ik)(Σ_j B_kj), exact in integers.
    let total = c.sum()?;
    let full = if args.check { c.gather_to(0)? } else { None };
    if world.rank() == 0 {
        let expect: f64 = (0..n)
            .map(|k| (0..n).map(|i| a_entry((i, k))).sum::<f64>() * (0..n).map(|j| b_entry((k, j))).sum::<f64>())
            .sum();
        println!(
            "summa: n={n} np={} grid={pr}x{pc} elapsed={elapsed:.3} s gflops={:.2}",
            world.size(),
            2.0 * (n as f64).powi(3) / elapsed / 1e9
        );
        if total != expect {
            return Err(format!("sum of C is {total}, expected {expect}").into());
        }
        if let Some(cf) = full {
            let sa = Array2::from_shape_fn((n, n), a_entry);
            let sb = Array2::from_shape_fn((n, n), b_entry);
            let serial = sa.dot(&sb);
            let differ = cf.iter().zip(serial.iter()).filter(|(x, y)| x != y).count();
            if differ > 0 {
                return Err(format!("{differ} entries differ from the serial product").into());
            }
            println!("check: every entry equals the serial product");
        }
        println!(
            "summary: kernel=summa np={} threads={} elapsed_s={elapsed:.4} check=passed",
            world.size(),
            hybrid.threads()
        );
    }
    Ok(())
}
