//! Hybrid mode: thread counts under Open MPI's bindings (bound to a core, two cores per rank, unbound,
//! oversubscribed), node information, node-shared arrays, hierarchical collectives and reproducible threaded sums
//! at 1 to 4 ranks, and the hybrid example.

#[macro_use]
mod common;
mod suites;

use libtest_mimic::{Failed, Trial};

use suites::hybrid::CASES;

/// Runs the layout case under `mpirun` with extra launcher options; every rank checks its pool size.
fn layout(np: usize, mpirun_args: &[&str], env: &[(&str, &str)]) -> Result<(), Failed> {
    if np > common::max_np() {
        println!("skipped: {np} ranks > SPMD_TEST_MAX_NP");
        return Ok(());
    }
    let mut job = common::special_job(np, "layout").env("RAYON_NUM_THREADS", "");
    job.mpirun_args = mpirun_args.iter().map(|s| s.to_string()).collect();
    for (k, v) in env {
        job = job.env(k, v);
    }
    let out = job.run();
    println!("{}", out.stdout);
    common::check_cases_ok(CASES, Some(&["layout"]), np, &out)?;
    Ok(())
}

fn openmpi_layout(np: usize, mpirun_args: &'static [&'static str]) -> impl FnOnce() -> Result<(), Failed> {
    move || {
        if !common::open_mpi_launcher() {
            println!("skipped: Open MPI binding options");
            return Ok(());
        }
        layout(np, mpirun_args, &[])
    }
}

/// The example prints the layout table and its reproducible-sum line.
fn example() -> Result<(), Failed> {
    let out = common::mpirun(2, common::example("hybrid"))
        .args(["--table-mib", "8"])
        .run();
    let ok = out.success()
        && out.stdout.contains("2 ranks on 1 node(s)")
        && out.stdout.contains("reproducible sum: same bits")
        && out.stdout.contains("8.0 MiB in all, against 16.0 MiB");
    if !ok {
        return Err(out.describe().into());
    }
    Ok(())
}

fn main() {
    let extra = vec![
        Trial::test("layout::np2_default_binding", || layout(2, &[], &[])),
        Trial::test("layout::np1_two_cores", openmpi_layout(1, &["--map-by", "slot:PE=2"])),
        Trial::test("layout::np2_unbound", openmpi_layout(2, &["--bind-to", "none"])),
        Trial::test("layout::np4_oversubscribed", || layout(4, &[], &[])),
        Trial::test("layout::rayon_num_threads", || {
            layout(2, &[], &[("RAYON_NUM_THREADS", "3"), ("SPMD_TEST_THREADS", "3")])
        }),
        Trial::test("example::hybrid", example),
    ];
    common::main_with_sizes(CASES, &[1, 2, 3, 4], extra);
}
