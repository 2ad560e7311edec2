//! Memory safety, liveness and edge cases at 1 to 4 ranks; threads under `MPI_THREAD_MULTIPLE` at 2 and 3
//! ranks; truncation with a small eager limit; an object's parts while its header still arrives in fragments; and
//! (with `--ignored`) the safety cases under valgrind.

#[macro_use]
mod common;
mod suites;

use std::time::Duration;

use libtest_mimic::Trial;

fn outcome(out: common::Outcome, expect: &[&str]) -> Result<(), libtest_mimic::Failed> {
    if !out.success() {
        return Err(out.describe().into());
    }
    for e in expect {
        if !out.stdout.contains(e) {
            return Err(format!("no line {e:?}\n{}", out.describe()).into());
        }
    }
    Ok(())
}

fn main() {
    let mut extra = Vec::new();
    for np in [2usize, 3].into_iter().filter(|&np| np <= common::max_np()) {
        extra.push(Trial::test(format!("threads::np{np}"), move || {
            let out = common::special_job(np, "threads")
                .env("SPMD_TEST_LEVEL", "multiple")
                .timeout(Duration::from_secs(120))
                .run();
            println!(
                "4 threads per rank, 10 000 messages each, {np} ranks: {:.1} s",
                out.elapsed.as_secs_f64()
            );
            outcome(out, &[&format!("spmd-test ok threads [world] np={np}")])
        }));
    }
    extra.push(Trial::test("truncation::eager_limit_1024", || {
        if !common::open_mpi_launcher() {
            println!("skipped: the eager limit setting is Open MPI's");
            return Ok(());
        }
        let mut job = common::special_job(2, "truncation_never_overruns,cross_family_mistakes");
        job.mpirun_args
            .extend(["--mca", "btl_vader_eager_limit", "1024"].map(String::from));
        outcome(
            job.run(),
            &[
                "spmd-test ok truncation_never_overruns [world] np=2",
                "spmd-test ok cross_family_mistakes [world] np=2",
            ],
        )
    }));
    extra.push(Trial::test("object_parts::header_in_fragments", || {
        let mut job = common::special_job(2, "parts_while_header_arrives");
        if common::open_mpi_launcher() {
            // Without single-copy transfers a large header arrives in fragments, over many progress passes.
            job.mpirun_args
                .extend(["--mca", "btl_vader_single_copy_mechanism", "none"].map(String::from));
        }
        outcome(job.run(), &["spmd-test ok parts_while_header_arrives [world] np=2"])
    }));
    extra.push(
        Trial::test("valgrind::safety_cases", || {
            // Open MPI's own reads of uninitialised memory are suppressed with the file it ships.
            let supp = [
                "/usr/share/openmpi/openmpi-valgrind.supp",
                "/usr/share/mpich/mpich-valgrind.supp",
            ]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists());
            let exe = std::env::current_exe().expect("test binary");
            let mut args = vec![
                "--error-exitcode=77".to_string(),
                "--leak-check=no".to_string(),
                "--errors-for-leak-kinds=none".to_string(),
                "--undef-value-errors=no".to_string(),
            ];
            if let Some(s) = supp {
                args.push(format!("--suppressions={s}"));
            }
            args.push(exe.display().to_string());
            let cases = "receive_into_shared_arrays,oob_from_temporaries,dropped_receive_and_comm,\
                         disagreeing_lengths,overflowing_counts,truncation_never_overruns,cross_family_mistakes,\
                         zero_length_buffers";
            let out = common::mpirun(2, "valgrind")
                .args(args)
                .env("SPMD_TEST_CHILD", "1")
                .env("SPMD_TEST_CASES", cases)
                .timeout(Duration::from_secs(900))
                .run();
            let errors: Vec<&str> = out.stderr.lines().filter(|l| l.contains("ERROR SUMMARY")).collect();
            println!("{}", errors.join("\n"));
            outcome(out, &["spmd-test ok zero_length_buffers [split] np=2"])
        })
        .with_ignored_flag(true),
    );
    common::main(suites::safety::CASES, extra);
}
