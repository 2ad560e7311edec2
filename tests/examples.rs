//! The examples, run as users run them: under mpirun at several rank counts, with their output checked.

mod common;

use libtest_mimic::{Failed, Trial};

fn hello(np: usize) -> Result<(), Failed> {
    let out = common::mpirun(np, common::example("hello")).run();
    if !out.success() {
        return Err(out.describe().into());
    }
    for r in 0..np {
        let prefix = format!("hello from rank {r} of {np} on ");
        let Some(line) = out.stdout.lines().find(|l| l.starts_with(&prefix)) else {
            return Err(format!("no line for rank {r}\n{}", out.describe()).into());
        };
        if !line.contains("thread level MPI_THREAD_") {
            return Err(format!("no thread level in: {line}").into());
        }
    }
    let lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("hello from rank"))
        .collect();
    let in_order = lines
        .iter()
        .enumerate()
        .all(|(i, l)| l.starts_with(&format!("hello from rank {i} ")));
    if lines.len() != np || !in_order {
        return Err(format!("expected {np} lines in rank order, got:\n{}", lines.join("\n")).into());
    }
    Ok(())
}

fn pi(np: usize) -> Result<(), Failed> {
    let out = common::mpirun(np, common::example("pi"))
        .args(["--intervals", "10000000"])
        .run();
    if !out.success() {
        return Err(out.describe().into());
    }
    let error: f64 = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("error ").and_then(|v| v.trim().parse().ok()))
        .ok_or_else(|| format!("no error line\n{}", out.describe()))?;
    println!("np {np}: error {error:.3e}");
    if error.is_nan() || error >= 1e-10 {
        return Err(format!("error {error:e} is not below 1e-10\n{}", out.describe()).into());
    }
    if !out.stdout.contains(&format!("ranks {np},")) {
        return Err(format!("the output does not report {np} ranks\n{}", out.describe()).into());
    }
    Ok(())
}

fn pi_rejects_bad_input() -> Result<(), Failed> {
    let out = common::mpirun(2, common::example("pi"))
        .args(["--intervals", "0"])
        .run();
    if out.success() || !out.stderr.contains("--intervals must be at least 1") {
        return Err(format!("--intervals 0 was not rejected clearly\n{}", out.describe()).into());
    }
    Ok(())
}

fn bench_runs() -> Result<(), Failed> {
    // A quick pass (1 ms per case, one repetition): the program works and prints the baseline's line format.
    for what in ["coll", "obj"] {
        let out = common::mpirun(2, common::example("bench"))
            .args([what])
            .env("BENCH_TARGET_MS", "1")
            .env("BENCH_REPS", "1")
            .run();
        if !out.success() {
            return Err(out.describe().into());
        }
        let lines: Vec<&str> = out.stdout.lines().filter(|l| l.starts_with("case=")).collect();
        let well_formed = lines.iter().all(|l| {
            l.split_whitespace()
                .any(|f| f.starts_with("usec=") && f[5..].parse::<f64>().is_ok_and(|u| u > 0.0))
                && l.contains(" size=")
                && l.contains(" probe=")
        });
        println!("bench {what}: {} cases", lines.len());
        if lines.len() < 10 || !well_formed {
            return Err(format!("unexpected bench output\n{}", out.describe()).into());
        }
    }
    Ok(())
}

/// The value of `key=` in the heat2d summary line.
fn heat2d_field(out: &common::Outcome, key: &str) -> Result<String, Failed> {
    out.stdout
        .lines()
        .filter(|l| l.starts_with("heat2d:"))
        .flat_map(|l| l.split_whitespace())
        .find_map(|w| w.strip_prefix(&format!("{key}=")).map(str::to_string))
        .ok_or_else(|| format!("no {key}= in the output\n{}", out.describe()).into())
}

fn heat2d_run(np: usize, args: &[&str]) -> Result<common::Outcome, Failed> {
    let out = common::mpirun(np, common::example("heat2d"))
        .args(args.iter().copied())
        .run();
    if !out.success() {
        return Err(format!("heat2d {args:?} at np {np} failed\n{}", out.describe()).into());
    }
    Ok(out)
}

/// Bit-identical to the serial computation, on the automatic grid and on row slabs and columns.
fn heat2d(np: usize) -> Result<(), Failed> {
    let rows = format!("{np}x1");
    let cols = format!("1x{np}");
    for grid in ["0x0", rows.as_str(), cols.as_str()] {
        let out = heat2d_run(np, &["--n", "37", "--steps", "25", "--grid", grid, "--check"])?;
        if !out.stdout.contains("check: bit-identical to the serial computation") {
            return Err(format!("no check line\n{}", out.describe()).into());
        }
    }
    Ok(())
}

/// A 2x2 grid exchanges fewer bytes per sweep than 4x1 slabs: 4 interfaces of n/2 against 3 of n.
fn heat2d_decomposition_bytes() -> Result<(), Failed> {
    let n = 64usize;
    let ns = n.to_string();
    let slabs = heat2d_field(
        &heat2d_run(4, &["--n", &ns, "--steps", "2", "--grid", "4x1"])?,
        "halo_bytes_per_sweep",
    )?;
    let blocks = heat2d_field(
        &heat2d_run(4, &["--n", &ns, "--steps", "2", "--grid", "2x2"])?,
        "halo_bytes_per_sweep",
    )?;
    let (slabs, blocks): (usize, usize) = (slabs.parse()?, blocks.parse()?);
    // Each interface is crossed both ways by n (or n/2) doubles.
    if slabs != 3 * 2 * n * 8 || blocks != 4 * 2 * (n / 2) * 8 {
        return Err(format!("bytes per sweep: 4x1 {slabs}, 2x2 {blocks}").into());
    }
    Ok(())
}

/// `--png` writes an image of the field's size.
fn heat2d_png() -> Result<(), Failed> {
    let dir = std::env::temp_dir().join(format!("spmd-heat2d-png-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("heat.png");
    heat2d_run(
        2,
        &["--n", "48", "--steps", "40", "--png", path.to_str().expect("utf-8")],
    )?;
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path)?));
    let reader = decoder.read_info()?;
    let (w, h) = (reader.info().width, reader.info().height);
    let _ = std::fs::remove_dir_all(&dir);
    if (w, h) != (48, 48) {
        return Err(format!("PNG of {w}x{h}, want 48x48").into());
    }
    Ok(())
}

/// 20 sweeps at np 4 equal 10 sweeps at np 4, saved, and 10 more restarted at np 3: the files are identical.
fn heat2d_checkpoint_restart() -> Result<(), Failed> {
    let dir = std::env::temp_dir().join(format!("spmd-heat2d-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let p = |name: &str| dir.join(name).to_str().expect("utf-8").to_string();
    let (full, half, resumed) = (p("full.npy"), p("half.npy"), p("resumed.npy"));
    heat2d_run(4, &["--n", "30", "--steps", "20", "--save", &full])?;
    heat2d_run(4, &["--n", "30", "--steps", "10", "--save", &half])?;
    let out = heat2d_run(
        3,
        &[
            "--n",
            "30",
            "--steps",
            "10",
            "--restart",
            &half,
            "--save",
            &resumed,
            "--check",
        ],
    )?;
    let same = std::fs::read(&full)? == std::fs::read(&resumed)?;
    let _ = std::fs::remove_dir_all(&dir);
    if !same || !out.stdout.contains("bit-identical") {
        return Err(format!("restarted run differs from the straight run\n{}", out.describe()).into());
    }
    Ok(())
}

/// `--threads T` gives the same field, bit for bit, as the serial computation (and so as one thread).
fn heat2d_threads(np: usize) -> Result<(), Failed> {
    for t in ["1", "2", "3"] {
        let out = heat2d_run(np, &["--n", "41", "--steps", "30", "--threads", t, "--check"])?;
        let line = format!("threads={t} ");
        if !out.stdout.contains(&line) || !out.stdout.contains("bit-identical") {
            return Err(format!("--threads {t}: no {line:?} or no check line\n{}", out.describe()).into());
        }
    }
    Ok(())
}

/// The overlap example moves correct ghost rows in both modes, at any number of ranks.
fn overlap(np: usize) -> Result<(), Failed> {
    let out = common::mpirun(np, common::example("overlap"))
        .args([
            "--rows", "40", "--cols", "300", "--width", "7", "--reps", "3", "--check",
        ])
        .run();
    if !out.success() || !out.stdout.contains("check: ghost rows correct") || !out.stdout.contains("hidden:") {
        return Err(out.describe().into());
    }
    Ok(())
}

fn main() {
    let mut trials = Vec::new();
    for np in [1, 2, 3, 4] {
        trials.push(Trial::test(format!("hello::np{np}"), move || hello(np)));
        trials.push(Trial::test(format!("pi::np{np}"), move || pi(np)));
        trials.push(Trial::test(format!("heat2d::np{np}"), move || heat2d(np)));
        trials.push(Trial::test(format!("overlap::np{np}"), move || overlap(np)));
    }
    trials.push(Trial::test("heat2d::decomposition_bytes", heat2d_decomposition_bytes));
    trials.push(Trial::test("heat2d::png", heat2d_png));
    trials.push(Trial::test("heat2d::threads_np1", || heat2d_threads(1)));
    trials.push(Trial::test("heat2d::threads_np2", || heat2d_threads(2)));
    trials.push(Trial::test("heat2d::checkpoint_restart", heat2d_checkpoint_restart));
    trials.push(Trial::test("pi::rejects_bad_input", pi_rejects_bad_input));
    trials.push(Trial::test("bench::runs", bench_runs));
    common::main(&[], trials);
}
