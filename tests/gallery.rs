//! The kernel gallery: every example kernel at 1, 2, 3 and 4 ranks with small sizes and its check on, and with
//! `--threads 2`; each must exit successfully and print its `summary:` line with `check=passed`.

#[macro_use]
mod common;

use libtest_mimic::{Failed, Trial};

/// Each kernel and small arguments that make it check itself.
const KERNELS: &[(&str, &[&str])] = &[
    ("pi", &["--intervals", "200000"]),
    ("montecarlo_pi", &["--tasks", "37", "--samples", "20000", "--check"]),
    ("heat2d", &["--n", "45", "--steps", "30", "--check"]),
    ("cg_poisson", &["--n", "40", "--check"]),
    ("summa", &["--n", "53", "--check"]),
    ("fft2d", &["--rows", "24", "--cols", "20", "--check"]),
    ("samplesort", &["--n", "50001", "--check"]),
    ("nbody", &["--n", "301", "--steps", "2", "--check"]),
    (
        "mandelbrot",
        &["--width", "64", "--height", "48", "--max-iter", "200", "--check"],
    ),
    ("serialization_cost", &["--max-bytes", "65536", "--reps", "3"]),
];

fn run(kernel: &str, args: &[&str], np: usize, threads: Option<&str>) -> Result<(), Failed> {
    let mut job = common::mpirun(np, common::example(kernel)).args(args.iter().copied());
    if let Some(t) = threads {
        job = job.args(["--threads", t]);
    }
    let out = job.run();
    let line = out.stdout.lines().find(|l| l.starts_with("summary: kernel="));
    match line {
        Some(l) if out.success() && l.contains("check=passed") && l.contains(&format!("np={np}")) => {
            println!("{l}");
            Ok(())
        }
        _ => Err(format!("{kernel} at np {np} (threads {threads:?}) failed\n{}", out.describe()).into()),
    }
}

fn main() {
    let mut trials = Vec::new();
    for &(kernel, args) in KERNELS {
        for np in [1, 2, 3, 4] {
            trials.push(Trial::test(format!("{kernel}::np{np}"), move || {
                run(kernel, args, np, None)
            }));
        }
        trials.push(Trial::test(format!("{kernel}::np2_threads2"), move || {
            run(kernel, args, 2, Some("2"))
        }));
    }
    common::main(&[], trials);
}
