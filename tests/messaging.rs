//! Messaging: point-to-point and collectives for buffers and objects, blocking and non-blocking, on world,
//! duplicate and split communicators at 1 to 4 ranks, every root; and every bad input.

#[macro_use]
mod common;
mod suites;

use std::time::Duration;

use libtest_mimic::Trial;

fn misuse_ends_job(name: &'static str, expect: &'static [&'static str]) -> Trial {
    Trial::test(format!("misuse::{name}"), move || {
        let out = common::run_special(3, name, Duration::from_secs(30));
        let line = out.stderr.lines().find(|l| expect.iter().all(|e| l.contains(e)));
        if out.success() || out.timed_out || line.is_none() {
            return Err(format!(
                "expected the job to end with a line containing {expect:?}\n{}",
                out.describe()
            )
            .into());
        }
        println!("{}", line.unwrap_or_default());
        Ok(())
    })
}

fn main() {
    let huge = Trial::test("huge::three_gib_buffer_and_object", || {
        let out = common::run_special(2, "huge", Duration::from_secs(600));
        for l in out.stdout.lines().filter(|l| l.starts_with("HUGE")) {
            println!("{l}");
        }
        if out.success() {
            Ok(())
        } else {
            Err(out.describe().into())
        }
    })
    .with_ignored_flag(true);
    common::main(
        suites::messaging::CASES,
        vec![
            misuse_ends_job(
                "misuse_scatter_size",
                &["spmd: rank 0:", "scatter_buf", "7 elements", "3 ranks × 2"],
            ),
            misuse_ends_job(
                "misuse_noncontiguous",
                &["spmd: rank 1:", "all_gather_buf", "contiguous"],
            ),
            huge,
        ],
    );
}
