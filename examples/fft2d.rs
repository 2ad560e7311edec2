//! 2-D FFT of a distributed array: FFTs of the local rows, a global transpose, FFTs of the rows again.
//!
//! ```text
//! mpirun -n 4 target/release/examples/fft2d --rows 1024 --cols 1024 --check
//! ```
//!
//! The `rows × cols` complex array is distributed in row slabs. Each rank transforms its rows (length `cols`, with
//! `rustfft`), then `DArray::transpose` (one `MPI_Alltoallw` of subarray types) makes the columns local as rows,
//! and each rank transforms those (length `rows`). The result is the 2-D transform, transposed (`cols × rows`),
//! which is how distributed FFT libraries leave it unless asked to transpose back. The program then runs the inverse
//! the same way and checks that forward + inverse gives the input back (relative 1e-12), and with `--check` that
//! the forward result equals a serial 2-D FFT on rank 0 (relative 1e-10). Complex numbers travel as a `#[repr(C)]`
//! pair of `f64` with rsmpi's derived datatype.

use clap::Parser;
use ndarray::Array2;
use num_complex::Complex;
use rayon::prelude::*;
use rustfft::{Fft, FftPlanner};
use spmd::Op;
use spmd::dist::{DArray, Ghost};
use spmd::hybrid::{Hybrid, Threads};
use std::sync::Arc;

/// Distributed 2-D FFT by row FFTs and a global transpose.
#[derive(Parser)]
struct Args {
    /// Rows of the array.
    #[arg(long, default_value_t = 512)]
    rows: usize,
    /// Columns of the array.
    #[arg(long, default_value_t = 512)]
    cols: usize,
    /// Repetitions of forward + inverse (the time is the total).
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Threads per rank (0: the CPUs the rank has to itself).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Compare the forward transform with a serial 2-D FFT on rank 0.
    #[arg(long)]
    check: bool,
}

/// A complex number as it travels: two `f64`, an MPI datatype derived by rsmpi, the layout of `Complex<f64>`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, mpi::traits::Equivalence, bytemuck::Pod, bytemuck::Zeroable)]
struct C {
    re: f64,
    im: f64,
}

fn input((i, j): (usize, usize)) -> C {
    let x = (i * 131 + j * 71) % 997;
    C {
        re: (x as f64 / 997.0) - 0.5,
        im: ((x * 7) % 101) as f64 / 101.0 - 0.5,
    }
}

/// Transforms every row of a row-major block of `len`-long rows, on the pool's threads.
fn rows_fft(hybrid: &Hybrid<'_>, data: &mut [C], fft: &Arc<dyn Fft<f64>>) {
    let len = fft.len();
    if len == 0 {
        return;
    }
    let z: &mut [Complex<f64>] = bytemuck::cast_slice_mut(data);
    hybrid.install(|| z.par_chunks_mut(len).for_each(|row| fft.process(row)));
}

/// Row FFTs, transpose, row FFTs: the 2-D transform of `a`, transposed.
fn fft2<'u>(
    hybrid: &Hybrid<'_>,
    a: &mut DArray<'u, C, ndarray::Ix2>,
    row_fft: &Arc<dyn Fft<f64>>,
    col_fft: &Arc<dyn Fft<f64>>,
    grid: &spmd::topo::Grid<'u>,
) -> spmd::Result<DArray<'u, C, ndarray::Ix2>> {
    rows_fft(hybrid, a.local_mut_slice(), row_fft);
    let mut t = a.transpose(grid, Ghost::none())?;
    rows_fft(hybrid, t.local_mut_slice(), col_fft);
    Ok(t)
}

fn main() -> spmd::Result<()> {
    let args = Args::parse();
    if args.rows == 0 || args.cols == 0 {
        return Err("--rows and --cols must be at least 1".into());
    }
    let universe = spmd::init()?;
    let world = universe.world();
    let hybrid = Hybrid::new(&world, Threads::from_flag(Some(args.threads)))?;
    let grid = world.grid(&[world.size(), 1], &[false, false])?;
    let (n, m) = (args.rows, args.cols);
    let mut planner = FftPlanner::<f64>::new();
    let (fwd_m, fwd_n) = (planner.plan_fft_forward(m), planner.plan_fft_forward(n));
    let (inv_m, inv_n) = (planner.plan_fft_inverse(m), planner.plan_fft_inverse(n));

    let original = DArray::from_fn(&grid, [n, m], Ghost::none(), input)?;
    let mut a = original.clone();
    let mut forward = None;
    world.barrier()?;
    let t0 = universe.time();
    for _ in 0..args.repeat.max(1) {
        let mut f = fft2(&hybrid, &mut a, &fwd_m, &fwd_n, &grid)?; // cols × rows
        forward = Some(f.clone());
        // Inverse: the same steps with inverse transforms, back to rows × cols; rustfft does not scale.
        a = fft2(&hybrid, &mut f, &inv_n, &inv_m, &grid)?;
        let scale = 1.0 / (n * m) as f64;
        a.owned_mut().iter_mut().for_each(|z| {
            *z = C {
                re: z.re * scale,
                im: z.im * scale,
            }
        });
    }
    let elapsed = world.all_reduce_scalar(universe.time() - t0, Op::Max)?;

    // Forward + inverse is the identity.
    let norm = |x: &C| x.re.hypot(x.im);
    let local_diff = a
        .owned()
        .iter()
        .zip(original.owned().iter())
        .map(|(x, y)| {
            norm(&C {
                re: x.re - y.re,
                im: x.im - y.im,
            })
        })
        .fold(0.0f64, f64::max);
    let local_max = original.owned().iter().map(norm).fold(0.0f64, f64::max);
    let diff = world.all_reduce_scalar(local_diff, Op::Max)?;
    let max = world.all_reduce_scalar(local_max, Op::Max)?;
    let gathered = match (&forward, args.check) {
        (Some(f), true) => f.gather_to(0)?,
        _ => None,
    };
    if world.rank() == 0 {
        let round_trip = diff / max;
        println!(
            "fft2d: {n}x{m} np={} repeat={} elapsed={elapsed:.3} s round_trip_error={round_trip:.2e}",
            world.size(),
            args.repeat.max(1)
        );
        if round_trip > 1e-12 {
            return Err(format!("forward + inverse differs from the input by {round_trip:.2e} (relative)").into());
        }
        if let Some(f) = gathered {
            // Serial: rows, then columns, on a plain array; compare with the transposed parallel result.
            let mut s: Array2<Complex<f64>> = Array2::from_shape_fn((n, m), |ij| {
                let c = input(ij);
                Complex::new(c.re, c.im)
            });
            for mut row in s.rows_mut() {
                let mut v = row.to_vec();
                fwd_m.process(&mut v);
                row.assign(&ndarray::Array1::from(v));
            }
            for mut col in s.columns_mut() {
                let mut v = col.to_vec();
                fwd_n.process(&mut v);
                col.assign(&ndarray::Array1::from(v));
            }
            let scale = s.iter().map(|z| z.norm()).fold(0.0f64, f64::max);
            let worst = s
                .indexed_iter()
                .map(|((i, j), z)| {
                    let p = f[[j, i]];
                    (Complex::new(p.re, p.im) - z).norm()
                })
                .fold(0.0f64, f64::max)
                / scale;
            if worst > 1e-10 {
                return Err(
                    format!("the forward transform differs from the serial one by {worst:.2e} (relative)").into(),
                );
            }
            println!("check: the forward transform equals a serial 2-D FFT (relative difference {worst:.1e})");
        }
        println!(
            "summary: kernel=fft2d np={} threads={} elapsed_s={elapsed:.4} check=passed",
            world.size(),
            hybrid.threads()
        );
    }
    Ok(())
}
