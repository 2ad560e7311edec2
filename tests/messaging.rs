//! Messaging: point-to-point and collectives for buffers and objects, blocking and non-blocking, on world,
//! duplicate and split communicators at 1 to 4 ranks, every root; and every bad input.

#[macro_use]
mod common;
mod suites;

use std::time::Duration;

use libtest_mimic::Trial;

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
    common::main(suites::messaging::CASES, vec![huge]);
}
