//! Heat equation in 2-D: Jacobi sweeps of the 5-point stencil on an `n × n` grid distributed over a Cartesian
//! process grid, with one ghost layer exchanged before every sweep.
//!
//! ```text
//! mpirun -n 4 target/release/examples/heat2d --n 1024 --steps 500 --grid 2x2 --check --png heat.png
//! mpirun -n 1 --map-by slot:PE=2 target/release/examples/heat2d --n 1024 --threads 2 --check
//! ```
//!
//! The problem is the one of the C reference `jacobi.c`: interior initially 0, Dirichlet boundary with the row
//! above the first row at 1.0 and the other edges at 0, each sweep `u' = (N + S + W + E) / 4`. The program
//! prints the time per sweep (the slowest rank's), the bytes the halo exchange moves between ranks per sweep
//! (which the decomposition decides: `--grid 4x1` sends whole rows, `--grid 2x2` half rows and half columns) and
//! a checksum. `--check` repeats the computation serially on rank 0 and fails unless every value is the same,
//! bit for bit. `--save`/`--restart` write and read the field as `.npy` through MPI-IO (checkpoint/restart at
//! any number of ranks); `--png` writes a heat map of the final field.

use clap::Parser;
use rayon::prelude::*;
use spmd::dist::{DArray, Ghost};
use spmd::hybrid::{Hybrid, Threads};
use spmd::topo::Grid;

/// 2-D Jacobi heat equation on a process grid.
#[derive(Parser)]
struct Args {
    /// Interior points along each side.
    #[arg(long, default_value_t = 512)]
    n: usize,
    /// Jacobi sweeps.
    #[arg(long, default_value_t = 200)]
    steps: usize,
    /// Process grid as ROWSxCOLS (e.g. 4x1 for row slabs, 2x2 for blocks); 0 lets MPI choose (0x0, the default).
    #[arg(long, default_value = "0x0")]
    grid: String,
    /// Compare with a serial run on rank 0, bit for bit (exit status 1 if any value differs).
    #[arg(long)]
    check: bool,
    /// Write a heat map of the final field to this PNG file.
    #[arg(long)]
    png: Option<String>,
    /// Write the final field (interior) to this .npy file.
    #[arg(long)]
    save: Option<String>,
    /// Start from the field in this .npy file (written by --save) instead of zeros.
    #[arg(long)]
    restart: Option<String>,
    /// Threads per rank for the sweeps (0: from RAYON_NUM_THREADS or the CPUs the rank has to itself).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

fn parse_grid(s: &str) -> Result<[usize; 2], String> {
    let (a, b) = s
        .split_once('x')
        .ok_or_else(|| format!("--grid {s}: expected ROWSxCOLS, e.g. 2x2"))?;
    let p = |x: &str| {
        x.parse::<usize>()
            .map_err(|_| format!("--grid {s}: {x:?} is not a number"))
    };
    Ok([p(a)?, p(b)?])
}

/// One row of a sweep: `out` (the owned part of row `i` of `v`) from rows `i - 1`, `i`, `i + 1` of `u`.
fn sweep_row(u: &[f64], out: &mut [f64], i: usize, w: usize) {
    let up = &u[(i - 1) * w..i * w];
    let mid = &u[i * w..(i + 1) * w];
    let down = &u[(i + 1) * w..(i + 2) * w];
    for ((((o, &n), &s), &west), &east) in out.iter_mut().zip(&up[1..]).zip(&down[1..]).zip(mid).zip(&mid[2..]) {
        *o = 0.25 * (n + s + west + east);
    }
}

/// One sweep over the interior of `u` (storage with one ghost layer, `rows × cols` owned) into `v`, on the
/// rank's pool when it has more than one thread (each row is computed the same way, so the result has the same
/// bits for any number of threads).
fn sweep(hybrid: &Hybrid<'_>, u: &[f64], v: &mut [f64], rows: usize, cols: usize) {
    let w = cols + 2;
    let interior = &mut v[w..(rows + 1) * w];
    if hybrid.threads() == 1 {
        for (k, row) in interior.chunks_mut(w).enumerate() {
            sweep_row(u, &mut row[1..=cols], k + 1, w);
        }
    } else {
        hybrid.install(|| {
            interior
                .par_chunks_mut(w)
                .enumerate()
                .for_each(|(k, row)| sweep_row(u, &mut row[1..=cols], k + 1, w));
        });
    }
}

/// Sets the boundary values a block holds in its ghost layer: 1.0 above the first global row.
fn set_boundary(a: &mut DArray<'_, f64, ndarray::Ix2>) {
    if a.touches_edge(0)[0] {
        a.local_mut().row_mut(0).fill(1.0);
    }
}

/// The serial computation: the same sweeps on one `(n + 2) × (n + 2)` array.
fn serial(n: usize, steps: usize, start: Option<&ndarray::Array2<f64>>) -> ndarray::Array2<f64> {
    let mut u = ndarray::Array2::<f64>::zeros((n + 2, n + 2));
    if let Some(s) = start {
        u.slice_mut(ndarray::s![1..=n, 1..=n]).assign(s);
    }
    u.row_mut(0).fill(1.0);
    let mut v = u.clone();
    let w = n + 2;
    for _ in 0..steps {
        let (a, b) = (u.as_slice().expect("standard"), v.as_slice_mut().expect("standard"));
        for i in 1..=n {
            sweep_row(a, &mut b[i * w + 1..i * w + 1 + n], i, w);
        }
        std::mem::swap(&mut u, &mut v);
    }
    u.slice(ndarray::s![1..=n, 1..=n]).to_owned()
}

/// A heat map: black through red and yellow to white.
fn write_png(path: &str, field: &ndarray::Array2<f64>) -> Result<(), String> {
    let (h, w) = field.dim();
    let mut pixels = Vec::with_capacity(h * w * 3);
    for &x in field.iter() {
        let t = x.clamp(0.0, 1.0).powf(0.35);
        let c = |a: f64| (a.clamp(0.0, 1.0) * 255.0) as u8;
        pixels.extend_from_slice(&[c(3.0 * t), c(3.0 * t - 1.0), c(3.0 * t - 2.0)]);
    }
    let file = std::fs::File::create(path).map_err(|e| format!("{path}: {e}"))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w as u32, h as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().map_err(|e| e.to_string())?;
    writer.write_image_data(&pixels).map_err(|e| e.to_string())
}

fn main() -> spmd::Result<()> {
    let args = Args::parse();
    if args.n == 0 {
        return Err("--n must be at least 1".into());
    }
    let dims = parse_grid(&args.grid)?;
    let universe = spmd::init()?;
    let world = universe.world();
    let grid: Grid = world.grid(&dims, &[false, false])?;
    let hybrid = Hybrid::new(&world, Threads::from_flag(Some(args.threads)))?;

    let mut u = match &args.restart {
        Some(path) => {
            let u = DArray::<f64, ndarray::Ix2>::read_npy(&grid, path, Ghost::star(1))?;
            if u.shape() != [args.n, args.n] {
                return Err(format!("--restart {path}: a {:?} field, not {n}x{n}", u.shape(), n = args.n).into());
            }
            u
        }
        None => DArray::<f64, _>::zeros(&grid, [args.n, args.n], Ghost::star(1))?,
    };
    let start = match (&args.restart, args.check) {
        (Some(_), true) => u.gather_to(0)?,
        _ => None,
    };
    set_boundary(&mut u);
    let mut v = u.clone();
    let [rows, cols] = [u.owned_shape()[0], u.owned_shape()[1]];

    world.barrier()?;
    let t0 = universe.time();
    for _ in 0..args.steps {
        u.exchange_halo()?;
        sweep(&hybrid, u.local_slice(), v.local_mut_slice(), rows, cols);
        std::mem::swap(&mut u, &mut v);
    }
    let elapsed = world.all_reduce_scalar(universe.time() - t0, spmd::Op::Max)?;

    let bytes = world.all_reduce_scalar(u.halo_bytes() as u64, spmd::Op::Sum)?;
    let checksum = u.sum()?;
    let field = if args.check || args.png.is_some() {
        u.gather_to(0)?
    } else {
        None
    };
    if let Some(path) = &args.save {
        u.write_npy(path)?;
    }
    if world.rank() == 0 {
        let per_sweep = elapsed / args.steps.max(1) as f64;
        println!(
            "heat2d: n={} steps={} np={} threads={} grid={}x{} usec_per_sweep={:.1} halo_bytes_per_sweep={} checksum={:.12e}",
            args.n,
            args.steps,
            world.size(),
            hybrid.threads(),
            grid.dims()[0],
            grid.dims()[1],
            per_sweep * 1e6,
            bytes,
            checksum
        );
        let field = field.as_ref();
        if args.check {
            let reference = serial(args.n, args.steps, start.as_ref());
            let field = field.expect("gathered on rank 0");
            let differ = field
                .iter()
                .zip(reference.iter())
                .filter(|(a, b)| a.to_bits() != b.to_bits())
                .count();
            if differ > 0 {
                return Err(format!(
                    "{differ} of {} values differ from the serial computation",
                    args.n * args.n
                )
                .into());
            }
            println!("check: bit-identical to the serial computation");
        }
        if let (Some(path), Some(field)) = (&args.png, field) {
            write_png(path, field)?;
            println!("wrote {path}");
        }
        println!(
            "summary: kernel=heat2d np={} threads={} elapsed_s={elapsed:.4} check=passed",
            world.size(),
            hybrid.threads()
        );
    }
    Ok(())
}
