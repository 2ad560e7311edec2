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

fn main() {
    let mut trials = Vec::new();
    for np in [1, 2, 3, 4] {
        trials.push(Trial::test(format!("hello::np{np}"), move || hello(np)));
        trials.push(Trial::test(format!("pi::np{np}"), move || pi(np)));
    }
    trials.push(Trial::test("pi::rejects_bad_input", pi_rejects_bad_input));
    trials.push(Trial::test("bench::runs", bench_runs));
    common::main(&[], trials);
}
