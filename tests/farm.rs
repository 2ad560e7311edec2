//! The task farm: every schedule at 1 to 4 ranks on world, duplicate and split communicators; outputs equal the
//! serial map in order, each task run exactly once (counted on the ranks that ran it); empty input, one task,
//! fewer tasks than ranks, very uneven costs; a root that computes or only coordinates; results at the root, on
//! every rank, streamed, or folded; thread pools; misuse; a panicking task ending the job; the Mandelbrot example.

#[macro_use]
mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{Case, case, special, world_case};
use libtest_mimic::{Failed, Trial};
use spmd::farm::{Farm, Schedule, Tasks};
use spmd::{ANY_SOURCE, ANY_TAG, Comm, ErrorKind};

/// Every schedule, with chunks of 1 and 3.
fn schedules() -> Vec<Schedule> {
    Schedule::all(1).into_iter().chain(Schedule::all(3)).collect()
}

/// The task function of most cases: deterministic, different for every index, not trivially the index.
fn task(x: u64) -> (u64, String) {
    (x.wrapping_mul(2_654_435_761) % 1_000_003, format!("t{x}"))
}

/// The ways inputs can reach a farm, with the same task function for each.
#[derive(Clone, Copy, Debug)]
enum Source {
    Range,
    AtRoot,
    Everywhere,
}

/// Runs `map` over `n` tasks from `source`, recording the indices each rank ran, and checks on the root that the
/// results equal the serial map and that every index ran exactly once over all ranks.
fn map_and_count(farm: &Farm, comm: &Comm, root: usize, n: usize, source: Source) -> spmd::Result<()> {
    let ran = Mutex::new(Vec::new());
    let inputs: Vec<u64> = (0..n as u64).map(|i| i * 10).collect();
    let record = |i: usize| ran.lock().expect("lock").push(i);
    let results = match source {
        Source::Range => farm.map(Tasks::range(n), |&i| {
            record(i);
            task(i as u64 * 10)
        })?,
        Source::AtRoot => {
            let mine = (comm.rank() == root).then_some(&inputs[..]);
            farm.map(Tasks::at_root(mine), |&x| {
                record((x / 10) as usize);
                task(x)
            })?
        }
        Source::Everywhere => farm.map(Tasks::everywhere(&inputs), |&x| {
            record((x / 10) as usize);
            task(x)
        })?,
    };
    let ran = ran.into_inner().expect("lock");
    let stats = farm.stats().expect("stats after an operation");
    check!(
        comm,
        stats.tasks[comm.rank()] == ran.len(),
        "stats say rank {} ran {} tasks, it counted {}",
        comm.rank(),
        stats.tasks[comm.rank()],
        ran.len()
    );
    let all_ran = comm.gather_obj(root, &ran)?;
    check!(
        comm,
        results.is_some() == (comm.rank() == root),
        "results at a non-root"
    );
    if let (Some(results), Some(all_ran)) = (results, all_ran) {
        let serial: Vec<(u64, String)> = inputs.iter().map(|&x| task(x)).collect();
        check!(
            comm,
            results == serial,
            "{} {source:?} n={n} root={root}: results differ from the serial map",
            stats.schedule
        );
        let mut count = vec![0u32; n];
        for i in all_ran.iter().flatten() {
            count[*i] += 1;
        }
        check!(
            comm,
            count.iter().all(|&c| c == 1),
            "{} {source:?} n={n}: run counts {count:?}",
            stats.schedule
        );
        check!(
            comm,
            stats.total_tasks() == n,
            "stats count {} tasks",
            stats.total_tasks()
        );
    }
    Ok(())
}

/// Every schedule, input source and size (including none, one, and fewer tasks than ranks), with the root
/// computing or only coordinating, the root first or last.
fn every_schedule(comm: &Comm) -> spmd::Result<()> {
    let p = comm.size();
    for root in [0, p - 1] {
        for root_works in [true, false] {
            for schedule in schedules() {
                let farm = Farm::new(comm)?
                    .schedule(schedule)
                    .root(root)
                    .root_works(root_works)
                    .progress(false);
                for n in [0, 1, 2, 3, 5, 37] {
                    for source in [Source::Range, Source::AtRoot, Source::Everywhere] {
                        map_and_count(&farm, comm, root, n, source)?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// A root that only coordinates runs nothing; one that computes takes a share (with enough tasks).
fn root_roles(comm: &Comm) -> spmd::Result<()> {
    for schedule in schedules() {
        let farm = Farm::new(comm)?.schedule(schedule).root_works(false).progress(false);
        farm.map(Tasks::range(40), |&i| i)?;
        let s = farm.stats().expect("stats");
        check!(comm, !s.root_works || comm.size() == 1, "root_works in stats");
        if comm.size() > 1 {
            check!(
                comm,
                s.tasks[0] == 0,
                "{schedule}: a coordinating root ran {} tasks",
                s.tasks[0]
            );
        }
        let farm = farm.root_works(true);
        farm.map(Tasks::range(40), |&i| {
            std::thread::sleep(Duration::from_micros(200));
            i
        })?;
        let s = farm.stats().expect("stats");
        check!(
            comm,
            s.tasks[0] > 0,
            "{schedule}: a computing root ran no task: {:?}",
            s.tasks
        );
        check!(comm, s.total_tasks() == 40, "{schedule}: {} tasks", s.total_tasks());
    }
    Ok(())
}

/// `map_all`: the serial results on every rank, for every schedule.
fn results_everywhere(comm: &Comm) -> spmd::Result<()> {
    for schedule in schedules() {
        let farm = Farm::new(comm)?.schedule(schedule).progress(false);
        for n in [0, 1, 4, 29] {
            let inputs: Vec<u64> = (0..n).collect();
            let root_inputs = (comm.rank() == 0).then_some(&inputs[..]);
            let got = farm.map_all(Tasks::at_root(root_inputs), |&x| task(x))?;
            let serial: Vec<_> = inputs.iter().map(|&x| task(x)).collect();
            check!(
                comm,
                got == serial,
                "{schedule} n={n}: map_all differs from the serial map"
            );
        }
    }
    Ok(())
}

/// Inputs and results far above the size of a single small message (16 KB each) travel both ways intact.
fn large_values(comm: &Comm) -> spmd::Result<()> {
    let inputs: Vec<Vec<f64>> = (0..24)
        .map(|i| (0..2000).map(|k| (i * 2000 + k) as f64).collect())
        .collect();
    for schedule in [
        Schedule::Dynamic { chunk: 1 },
        Schedule::Guided { min_chunk: 2 },
        Schedule::StaticCyclic,
    ] {
        let farm = Farm::new(comm)?.schedule(schedule).progress(false);
        let root_inputs = (comm.rank() == 0).then_some(&inputs[..]);
        let got = farm.map(Tasks::at_root(root_inputs), |v| {
            v.iter().map(|x| x * 2.0).collect::<Vec<f64>>()
        })?;
        if let Some(got) = got {
            let serial: Vec<Vec<f64>> = inputs.iter().map(|v| v.iter().map(|x| x * 2.0).collect()).collect();
            check!(comm, got == serial, "{schedule}: large results differ");
        }
    }
    Ok(())
}

/// Busy-waits for `micros` (sleeping would leave the core to other ranks and hide the imbalance).
fn spin(micros: u64) -> u64 {
    let t = Instant::now();
    let mut x = 0u64;
    while t.elapsed() < Duration::from_micros(micros) {
        x = x.wrapping_add(1);
    }
    x
}

/// Tasks of very uneven cost (every 16th costs 200 times the others, all at the start): correct results for
/// every schedule; the statistics add up.
fn uneven_costs(comm: &Comm) -> spmd::Result<()> {
    let cost = |i: usize| if i.is_multiple_of(16) && i < 48 { 4000 } else { 20 };
    for schedule in schedules() {
        let farm = Farm::new(comm)?.schedule(schedule).progress(false);
        let got = farm.map(Tasks::range(96), |&i| {
            spin(cost(i));
            task(i as u64)
        })?;
        let s = farm.stats().expect("stats");
        check!(comm, s.total_tasks() == 96, "{schedule}: {} tasks", s.total_tasks());
        let (sane_imbalance, busy_enough) = (s.imbalance() >= 1.0, s.busy.iter().sum::<f64>() >= 0.011);
        check!(comm, sane_imbalance, "{schedule}: imbalance {}", s.imbalance());
        check!(comm, busy_enough, "{schedule}: busy {:?}", s.busy);
        if let Some(got) = got {
            let serial: Vec<_> = (0..96).map(task).collect();
            check!(comm, got == serial, "{schedule}: results differ from the serial map");
            let timed = s.elapsed > 0.0;
            check!(comm, timed, "{schedule}: elapsed {}", s.elapsed);
        }
    }
    Ok(())
}

/// `map_stream`: every index exactly once at the root, results as the serial map; an early drop stops the farm
/// cleanly (the same farm and the communicator work afterwards).
fn streaming(comm: &Comm) -> spmd::Result<()> {
    for schedule in schedules() {
        let farm = Farm::new(comm)?.schedule(schedule).progress(false);
        let mut seen = vec![0u32; 50];
        let mut items = 0;
        for item in farm.map_stream(Tasks::range(50), |&i| task(i as u64))? {
            let (i, r) = item?;
            check!(
                comm,
                r == task(i as u64),
                "{schedule}: task {i} streamed a wrong result"
            );
            seen[i] += 1;
            items += 1;
        }
        if comm.rank() == 0 {
            check!(comm, seen.iter().all(|&c| c == 1), "{schedule}: stream counts {seen:?}");
        } else {
            check!(comm, items == 0, "{schedule}: a non-root streamed {items} items");
        }
        // Take three results and drop the rest.
        let stream = farm.map_stream(Tasks::range(200), |&i| {
            spin(20);
            i
        })?;
        let first: Vec<usize> = stream.take(3).map(|r| r.map(|(i, _)| i)).collect::<spmd::Result<_>>()?;
        check!(
            comm,
            first.len() == if comm.rank() == 0 { 3 } else { 0 },
            "{schedule}: took {first:?}"
        );
        let s = farm.stats().expect("stats");
        check!(
            comm,
            s.total_tasks() <= 200,
            "{schedule}: {} tasks after a cancel",
            s.total_tasks()
        );
        let again = farm.map_all(Tasks::range(7), |&i| i + 1)?;
        check!(
            comm,
            again == (1..8).collect::<Vec<_>>(),
            "{schedule}: after a cancel: {again:?}"
        );
    }
    comm.barrier()
}

/// `reduce`: integer sums equal the serial sum for every schedule and source; an empty farm gives the identity;
/// with a thread pool too.
fn reduce_form(comm: &Comm) -> spmd::Result<()> {
    for threads in [1, 2] {
        for schedule in schedules() {
            let farm = Farm::new(comm)?.schedule(schedule).threads(threads).progress(false);
            for n in [0usize, 1, 3, 100] {
                let serial: u64 = (0..n as u64).map(|i| i * i + 1).sum();
                let sum = farm.reduce(Tasks::range(n), |&i| (i * i + 1) as u64, || 0, |a, b| a + b)?;
                let values: Vec<u64> = (0..n as u64).collect();
                let root_values = (comm.rank() == 0).then_some(&values[..]);
                let max = farm.reduce(Tasks::at_root(root_values), |&x| x * 3, || 0, u64::max)?;
                let s = farm.stats().expect("stats");
                check!(comm, s.total_tasks() == n, "{schedule}: {} tasks", s.total_tasks());
                check!(comm, sum.is_some() == (comm.rank() == 0), "reduce result off the root");
                if let (Some(sum), Some(max)) = (sum, max) {
                    check!(
                        comm,
                        sum == serial,
                        "{schedule} n={n} threads={threads}: sum {sum} != {serial}"
                    );
                    let want = n.saturating_sub(1) as u64 * 3;
                    check!(comm, max == want, "{schedule} n={n}: max {max} != {want}");
                }
            }
        }
    }
    Ok(())
}

/// A chunk's tasks on a pool of threads: same results, tasks really on the pool's threads.
fn thread_pool(comm: &Comm) -> spmd::Result<()> {
    for schedule in [
        Schedule::Dynamic { chunk: 8 },
        Schedule::StaticBlock,
        Schedule::Guided { min_chunk: 4 },
    ] {
        let farm = Farm::new(comm)?.schedule(schedule).threads(2).progress(false);
        let inputs: Vec<u64> = (0..77).collect();
        let got = farm.map_all(Tasks::everywhere(&inputs), |&x| {
            let name = std::thread::current().name().map(String::from).unwrap_or_default();
            (task(x), name.starts_with("spmd-farm-"))
        })?;
        let serial: Vec<_> = inputs.iter().map(|&x| task(x)).collect();
        let results: Vec<_> = got.iter().map(|(r, _)| r.clone()).collect();
        check!(comm, results == serial, "{schedule}: threaded results differ");
        check!(
            comm,
            got.iter().all(|(_, pooled)| *pooled),
            "{schedule}: a task ran off the pool"
        );
    }
    Ok(())
}

/// The farm's messages never meet the program's: messages sent to the root before a farm are still there, for a
/// receive from any source with any tag, after it.
fn private_messages(comm: &Comm) -> spmd::Result<()> {
    let farm = Farm::new(comm)?
        .schedule(Schedule::Dynamic { chunk: 1 })
        .progress(false);
    // Non-blocking: a blocking send to the own rank before its receive may wait forever (MPICH over UCX does).
    let sent = comm.isend_obj(0, 9, &format!("user {}", comm.rank()))?;
    farm.map(Tasks::range(20), |&i| i)?;
    if comm.rank() == 0 {
        let mut got: Vec<String> = Vec::new();
        for _ in 0..comm.size() {
            let (s, st): (String, _) = comm.recv_obj(ANY_SOURCE, ANY_TAG)?;
            check!(
                comm,
                st.tag() == 9 && s == format!("user {}", st.source()),
                "matched {s:?}"
            );
            got.push(s);
        }
        check!(comm, got.len() == comm.size(), "got {got:?}");
    }
    spmd::request::Completion::wait(sent)?;
    comm.barrier()
}

/// Misuse gives the same error on every rank, and the farm goes on working.
fn misuse(comm: &Comm) -> spmd::Result<()> {
    let farm = Farm::new(comm)?.progress(false);
    let e = farm.map(Tasks::<u8>::at_root(None), |&x| x).unwrap_err();
    check!(comm, e.kind() == ErrorKind::InvalidArgument, "no inputs: {e}");
    check!(comm, e.to_string().contains("passed no inputs"), "no inputs: {e}");
    let farm = farm.schedule(Schedule::Dynamic { chunk: 0 });
    let e = farm.map(Tasks::range(3), |&i| i).unwrap_err();
    check!(comm, e.to_string().contains("chunk size"), "chunk 0: {e}");
    let farm = farm.schedule(Schedule::default()).root(comm.size());
    let e = farm.map(Tasks::range(3), |&i| i).unwrap_err();
    check!(comm, e.kind() == ErrorKind::InvalidArgument, "bad root: {e}");
    let farm = farm.root(0);
    let ok = farm.map_all(Tasks::range(3), |&i| i)?;
    check!(comm, ok == [0, 1, 2], "after misuse: {ok:?}");
    Ok(())
}

/// Task 17 panics; with static blocks of 30 tasks over 3 computing ranks it runs on rank 1.
fn panic_task(comm: &Comm) -> spmd::Result<()> {
    let farm = Farm::new(comm)?.schedule(Schedule::StaticBlock).progress(false);
    farm.map(Tasks::range(30), |&i| {
        if i == 17 {
            panic!("task {i} failed on purpose");
        }
        spin(1000);
        i
    })?;
    Ok(())
}

/// The same on a thread pool: the panic happens on one of the pool's threads.
fn panic_task_threads(comm: &Comm) -> spmd::Result<()> {
    let farm = Farm::new(comm)?
        .schedule(Schedule::StaticBlock)
        .threads(2)
        .progress(false);
    farm.map(Tasks::range(30), |&i| {
        if i == 17 {
            panic!("task {i} failed on purpose");
        }
        spin(1000);
        i
    })?;
    Ok(())
}

const CASES: &[Case] = &[
    case("every_schedule", every_schedule),
    world_case("root_roles", root_roles),
    case("results_everywhere", results_everywhere),
    case("large_values", large_values),
    world_case("uneven_costs", uneven_costs),
    case("streaming", streaming),
    case("reduce_form", reduce_form),
    world_case("thread_pool", thread_pool),
    case("private_messages", private_messages),
    world_case("misuse", misuse),
    special("panic_task", panic_task),
    special("panic_task_threads", panic_task_threads),
];

fn panic_names_task_and_rank(name: &'static str) -> Result<(), Failed> {
    let out = common::run_special(3, name, Duration::from_secs(30));
    let line = out
        .stderr
        .lines()
        .find(|l| l.starts_with("spmd: rank 1 (task 17 of a farm) panicked"));
    if out.success() || out.timed_out || line.is_none_or(|l| !l.contains("task 17 failed on purpose")) {
        return Err(format!(
            "expected the job to end with a line naming rank 1 and task 17\n{}",
            out.describe()
        )
        .into());
    }
    println!("{}", line.unwrap_or_default());
    Ok(())
}

/// The Mandelbrot example at `np` ranks, checked pixel by pixel against its serial computation, with a PNG.
fn mandelbrot(np: usize, schedule: &'static str) -> Result<(), Failed> {
    let png = std::env::temp_dir().join(format!("spmd-farm-mandelbrot-{np}-{}.png", std::process::id()));
    let out = common::mpirun(np, common::example("mandelbrot"))
        .args(["--width", "240", "--height", "160", "--max-iter", "300", "--check"])
        .args(["--schedule", schedule, "--png"])
        .args([png.to_string_lossy().to_string()])
        .run();
    let header = std::fs::read(&png).map(|b| b.starts_with(b"\x89PNG\r\n\x1a\n"));
    let _ = std::fs::remove_file(&png);
    if !out.success() {
        return Err(out.describe().into());
    }
    if !out
        .stdout
        .contains("check: all 38400 pixels equal the serial computation")
    {
        return Err(format!("no successful check line\n{}", out.describe()).into());
    }
    if !matches!(header, Ok(true)) {
        return Err(format!("no PNG written ({header:?})\n{}", out.describe()).into());
    }
    for line in out.stdout.lines().filter(|l| l.starts_with("schedule ")) {
        println!("{line}");
    }
    Ok(())
}

/// The example's check fails (non-zero exit) when the farm's image is not the serial one.
fn mandelbrot_check_fails() -> Result<(), Failed> {
    let out = common::mpirun(2, common::example("mandelbrot"))
        .args([
            "--width",
            "64",
            "--height",
            "32",
            "--max-iter",
            "50",
            "--check",
            "--inject-error",
        ])
        .run();
    if out.success() || !out.stderr.contains("differ from the serial computation") {
        return Err(format!("a corrupted image passed the check\n{}", out.describe()).into());
    }
    Ok(())
}

fn main() {
    let mut trials = vec![
        Trial::test("failure::panic_names_task_and_rank", || {
            panic_names_task_and_rank("panic_task")
        }),
        Trial::test("failure::panic_on_pool_thread_names_task_and_rank", || {
            panic_names_task_and_rank("panic_task_threads")
        }),
        Trial::test("mandelbrot::check_fails_on_mismatch", mandelbrot_check_fails),
    ];
    for (np, schedule) in [(1, "all"), (2, "dynamic:2"), (3, "all"), (4, "guided:1")] {
        trials.push(Trial::test(format!("mandelbrot::np{np}"), move || {
            mandelbrot(np, schedule)
        }));
    }
    common::main(CASES, trials);
}
