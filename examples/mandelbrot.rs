//! The Mandelbrot set, one image row per task of a farm: an irregular workload (rows through the set cost up to
//! `--max-iter` iterations a pixel, rows outside it a few), on which the schedules differ.
//!
//! ```text
//! mpirun -n 4 target/release/examples/mandelbrot --schedule all --check --png mandelbrot.png
//! mpirun -n 4 target/release/examples/mandelbrot --empty-tasks 100000    # the farm's own cost per task
//! ```
//!
//! For each schedule the root prints the per-rank load table (tasks, chunks, busy time, share), the load
//! imbalance (largest busy time over the mean) and the elapsed time; `--schedule all` runs static block, static
//! cyclic, dynamic and guided in turn and ends with a summary (medians over `--repeat` rounds). `--check` computes the image serially on the root
//! and compares every pixel's iteration count (the program fails if one differs); `--png` writes the image.

use std::time::Instant;

use clap::Parser;
use spmd::farm::{Farm, FarmStats, Schedule, Tasks};

/// The Mandelbrot set computed by a task farm, one row per task.
#[derive(Parser)]
struct Args {
    /// Image width in pixels.
    #[arg(long, default_value_t = 1200)]
    width: usize,
    /// Image height in pixels (= number of tasks).
    #[arg(long, default_value_t = 900)]
    height: usize,
    /// The region of the complex plane: x0,x1,y0,y1.
    #[arg(long, default_value = "-2.2,0.8,-1.2,1.2", allow_hyphen_values = true)]
    region: String,
    /// Iterations before a point counts as inside the set.
    #[arg(long, default_value_t = 2000)]
    max_iter: u32,
    /// static-block, static-cyclic, dynamic[:CHUNK], guided[:MIN_CHUNK], or all (the four in turn).
    #[arg(long, default_value = "dynamic")]
    schedule: String,
    /// Chunk size for dynamic and guided when --schedule gives none.
    #[arg(long, default_value_t = 1)]
    chunk: usize,
    /// The root only coordinates (by default it computes rows too).
    #[arg(long)]
    coordinator_only: bool,
    /// Run every schedule this many times (rounds interleave the schedules); the summary shows medians.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Threads per rank running a chunk's rows.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Write the image to this PNG file.
    #[arg(long)]
    png: Option<std::path::PathBuf>,
    /// Compare every pixel with a serial computation on the root; fail on any difference.
    #[arg(long)]
    check: bool,
    /// Instead of the image: time this many empty tasks (dynamic, chunk 1, root coordinating) and print the cost
    /// per task.
    #[arg(long)]
    empty_tasks: Option<usize>,
    /// Alter one pixel of the farm's image (to see --check fail).
    #[arg(long, hide = true)]
    inject_error: bool,
}

/// The region of the plane an image covers.
#[derive(Clone, Copy)]
struct Region {
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
}

impl std::str::FromStr for Region {
    type Err = String;
    fn from_str(s: &str) -> Result<Region, String> {
        let v: Vec<f64> = s
            .split(',')
            .map(|p| p.trim().parse::<f64>().map_err(|e| format!("--region {s:?}: {e}")))
            .collect::<Result<_, _>>()?;
        match v[..] {
            [x0, x1, y0, y1] if x0 < x1 && y0 < y1 => Ok(Region { x0, x1, y0, y1 }),
            _ => Err(format!("--region {s:?}: expected x0,x1,y0,y1 with x0 < x1 and y0 < y1")),
        }
    }
}

/// The iteration counts of row `y` (top row 0): the escape time of each pixel's centre, `max_iter` inside.
fn row(y: usize, width: usize, height: usize, r: Region, max_iter: u32) -> Vec<u32> {
    let ci = r.y1 - (y as f64 + 0.5) * (r.y1 - r.y0) / height as f64;
    let dx = (r.x1 - r.x0) / width as f64;
    (0..width)
        .map(|x| {
            let cr = r.x0 + (x as f64 + 0.5) * dx;
            let (mut zr, mut zi, mut n) = (0.0f64, 0.0f64, 0);
            while n < max_iter && zr * zr + zi * zi <= 4.0 {
                let t = zr * zr - zi * zi + cr;
                zi = 2.0 * zr * zi + ci;
                zr = t;
                n += 1;
            }
            n
        })
        .collect()
}

/// A colour for an iteration count: black inside the set, a blue-gold-white gradient outside.
fn colour(n: u32, max_iter: u32) -> [u8; 3] {
    if n >= max_iter {
        return [0, 0, 0];
    }
    let t = ((n as f64 + 1.0).ln() / (max_iter as f64).ln()).clamp(0.0, 1.0);
    let stops = [
        [0.0, 7.0, 100.0],
        [32.0, 107.0, 203.0],
        [237.0, 255.0, 255.0],
        [255.0, 170.0, 0.0],
    ];
    let s = t * (stops.len() - 1) as f64;
    let (i, f) = ((s as usize).min(stops.len() - 2), s.fract());
    let f = if s as usize >= stops.len() - 1 { 1.0 } else { f };
    let mix = |k: usize| (stops[i][k] * (1.0 - f) + stops[i + 1][k] * f) as u8;
    [mix(0), mix(1), mix(2)]
}

fn write_png(path: &std::path::Path, image: &[Vec<u32>], width: usize, max_iter: u32) -> spmd::Result<()> {
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut enc = png::Encoder::new(file, width as u32, image.len() as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let data: Vec<u8> = image.iter().flatten().flat_map(|&n| colour(n, max_iter)).collect();
    let mut w = enc.write_header().map_err(|e| format!("{}: {e}", path.display()))?;
    w.write_image_data(&data)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    w.finish().map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(())
}

fn main() -> spmd::Result<()> {
    let args = Args::parse();
    let region: Region = args.region.parse()?;
    if args.width == 0 || args.height == 0 || args.max_iter == 0 {
        return Err("--width, --height and --max-iter must be at least 1".into());
    }
    let schedules: Vec<Schedule> = match args.schedule.as_str() {
        "all" => Schedule::all(args.chunk).to_vec(),
        s => {
            let s = if matches!(s, "dynamic" | "guided") {
                format!("{s}:{}", args.chunk)
            } else {
                s.to_string()
            };
            vec![s.parse()?]
        }
    };
    let universe = spmd::init()?;
    let world = universe.world();
    let is_root = world.rank() == 0;
    let mut farm = Farm::new(&world)?
        .root_works(!args.coordinator_only)
        .threads(args.threads);

    if let Some(n) = args.empty_tasks {
        let farm = farm.schedule(Schedule::Dynamic { chunk: 1 }).root_works(false);
        farm.map(Tasks::range(n.min(1000)), |&i| i)?; // warm-up
        world.barrier()?;
        let t0 = Instant::now();
        farm.map(Tasks::range(n), |&i| i)?;
        let dt = t0.elapsed().as_secs_f64();
        if is_root {
            println!(
                "empty tasks: {n} on {} ranks (dynamic:1, root coordinates): {:.3} s, {:.2} us per task",
                world.size(),
                dt,
                dt * 1e6 / n.max(1) as f64
            );
        }
        return Ok(());
    }

    let (w, h, m) = (args.width, args.height, args.max_iter);
    let serial = if args.check && is_root {
        let t0 = Instant::now();
        let img: Vec<Vec<u32>> = (0..h).map(|y| row(y, w, h, region, m)).collect();
        println!("serial: {:.4} s", t0.elapsed().as_secs_f64());
        Some(img)
    } else {
        None
    };
    if is_root {
        println!("mandelbrot {w}x{h}, max {m} iterations, {} ranks", world.size());
    }
    let mut summary: Vec<FarmStats> = Vec::new();
    let mut image = None;
    let rounds = (0..args.repeat.max(1)).flat_map(|_| schedules.iter().copied());
    for schedule in rounds {
        farm = farm.schedule(schedule);
        world.barrier()?;
        let rows = farm.map(Tasks::range(h), |&y| row(y, w, h, region, m))?;
        let stats = farm.stats().expect("the farm ran");
        if let Some(mut rows) = rows {
            let total: u64 = rows.iter().flatten().map(|&n| u64::from(n)).sum();
            println!("\n{stats}\ntotal iterations {total}");
            if args.inject_error {
                rows[h / 2][w / 2] ^= 1;
            }
            if let Some(serial) = &serial {
                let differ = serial
                    .iter()
                    .flatten()
                    .zip(rows.iter().flatten())
                    .filter(|(a, b)| a != b)
                    .count();
                if differ > 0 {
                    return Err(format!(
                        "{differ} of {} pixels differ from the serial computation ({})",
                        w * h,
                        stats.schedule
                    )
                    .into());
                }
                println!("check: all {} pixels equal the serial computation", w * h);
            }
            image = Some(rows);
        }
        summary.push(stats);
    }
    if let Some(image) = image {
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let title = if args.repeat > 1 {
            format!(" (medians of {})", args.repeat)
        } else {
            String::new()
        };
        println!("\n{:<15} {:>9} {:>10}{title}", "schedule", "imbalance", "elapsed s");
        for schedule in &schedules {
            let runs: Vec<&FarmStats> = summary.iter().filter(|s| s.schedule == *schedule).collect();
            let imbalance = median(runs.iter().map(|s| s.imbalance()).collect());
            let elapsed = median(runs.iter().map(|s| s.elapsed).collect());
            println!("{:<15} {imbalance:>9.3} {elapsed:>10.4}", schedule.to_string());
        }
        if let Some(path) = &args.png {
            write_png(path, &image, w, m)?;
            println!("wrote {}", path.display());
        }
        let elapsed = median(summary.iter().map(|s| s.elapsed).collect());
        println!(
            "summary: kernel=mandelbrot np={} threads={} elapsed_s={elapsed:.4} check=passed",
            world.size(),
            args.threads
        );
    }
    Ok(())
}
