//! The runtime: communicators, errors, and the failure policy (a failing rank ends the job, never hangs it).

#[macro_use]
mod common;

use std::time::Duration;

use common::{Case, case, special, world_case};
use libtest_mimic::Trial;
use spmd::{Comm, ErrorKind};

fn basics(comm: &Comm) -> spmd::Result<()> {
    check!(
        comm,
        comm.rank() < comm.size(),
        "rank {} outside size {}",
        comm.rank(),
        comm.size()
    );
    let name = spmd::runtime::processor_name()?;
    check!(comm, !name.is_empty(), "empty processor name");
    let sizes = comm.all_gather_obj(&comm.size())?;
    check!(
        comm,
        sizes.iter().all(|&s| s == comm.size()),
        "ranks disagree on the size: {sizes:?}"
    );
    let ranks = comm.all_gather_obj(&comm.rank())?;
    check!(
        comm,
        ranks == (0..comm.size()).collect::<Vec<_>>(),
        "ranks are not 0..size: {ranks:?}"
    );
    Ok(())
}

fn dup_and_split(comm: &Comm) -> spmd::Result<()> {
    let (r, p) = (comm.rank(), comm.size());
    let d = comm.dup()?;
    check!(
        comm,
        d.rank() == r && d.size() == p,
        "dup has rank {} size {}",
        d.rank(),
        d.size()
    );
    // A message on the duplicate is invisible on the original.
    let sent = d.isend_obj(r, 9, &r)?;
    check!(
        comm,
        comm.iprobe(r, 9)?.is_none(),
        "a message on the duplicate matched the original"
    );
    let (v, _): (usize, _) = d.recv_obj(r, 9)?;
    spmd::request::Completion::wait(sent)?;
    check!(comm, v == r, "self-message on the duplicate returned {v}");
    // Split by parity, ranks reversed within each half.
    let s = comm
        .split(Some((r % 2) as u32), -(r as i32))?
        .expect("every rank has a colour");
    let members: Vec<usize> = (0..p).filter(|x| x % 2 == r % 2).collect();
    check!(
        comm,
        s.size() == members.len(),
        "split size {} != {}",
        s.size(),
        members.len()
    );
    let expected_rank = members.iter().rev().position(|&x| x == r).expect("member");
    check!(
        comm,
        s.rank() == expected_rank,
        "split rank {} != {expected_rank}",
        s.rank()
    );
    // A colour of None joins nothing.
    let none = comm.split(if r == 0 { None } else { Some(1) }, 0)?;
    check!(
        comm,
        none.is_none() == (r == 0),
        "split(None) on rank {r} returned {:?}",
        none.map(|c| c.size())
    );
    if let Some(c) = none {
        check!(comm, c.size() == p - 1, "split without rank 0 has size {}", c.size());
    }
    check!(
        comm,
        comm.split(Some(u32::MAX), 0).is_err(),
        "a colour above i32::MAX was accepted"
    );
    Ok(())
}

fn node_local(comm: &Comm) -> spmd::Result<()> {
    let node = comm.split_shared()?;
    // All ranks of these tests share one machine.
    check!(
        comm,
        node.size() == comm.size(),
        "node-local size {} != {}",
        node.size(),
        comm.size()
    );
    check!(
        comm,
        node.rank() == comm.rank(),
        "node-local rank {} != {}",
        node.rank(),
        comm.rank()
    );
    Ok(())
}

fn barrier_orders(comm: &Comm) -> spmd::Result<()> {
    // Rank 0 arrives late; nobody leaves the barrier before it arrives.
    let t0 = std::time::Instant::now();
    if comm.rank() == 0 {
        std::thread::sleep(Duration::from_millis(300));
    }
    comm.barrier()?;
    let waited = t0.elapsed();
    check!(
        comm,
        waited >= Duration::from_millis(250),
        "left the barrier after {waited:?}, before rank 0 arrived"
    );
    for _ in 0..50 {
        comm.barrier()?;
    }
    Ok(())
}

fn errors_name_context(comm: &Comm) -> spmd::Result<()> {
    let p = comm.size();
    let e = comm.send_obj(p, 3, &1u8).unwrap_err();
    check!(comm, e.kind() == ErrorKind::InvalidRank, "kind {:?}", e.kind());
    let text = e.to_string();
    // The world rank as the launcher tells it (Open MPI's or MPICH's Hydra variable).
    let me = std::env::var("OMPI_COMM_WORLD_RANK")
        .or_else(|_| std::env::var("PMI_RANK"))
        .unwrap_or_default();
    check!(
        comm,
        text.contains(&format!("rank {p}")) && text.contains(&format!("size {p}")),
        "message: {text}"
    );
    check!(
        comm,
        text.starts_with(&format!("rank {me}: ")),
        "message does not name the failing rank: {text}"
    );
    let e = comm.send_buf(0, -1, &[1u8]).unwrap_err();
    check!(
        comm,
        e.kind() == ErrorKind::InvalidTag && e.to_string().contains("tag -1"),
        "tag error: {e}"
    );
    let e = comm.recv_obj::<u8>(p + 3, 0).unwrap_err();
    check!(comm, e.kind() == ErrorKind::InvalidRank, "recv from a bad rank: {e}");
    Ok(())
}

fn init_twice(comm: &Comm) -> spmd::Result<()> {
    let e = spmd::init().err().expect("a second init must fail");
    check!(comm, e.kind() == ErrorKind::AlreadyInitialized, "second init: {e}");
    check!(comm, e.to_string().contains("once"), "second init message: {e}");
    Ok(())
}

/// Rank 2 panics while every other rank waits for it in a receive.
fn fail_panic(comm: &Comm) -> spmd::Result<()> {
    comm.barrier()?;
    if comm.rank() == 2 {
        println!("PANIC_AT {}", common::now_ms());
        panic!("deliberate failure on rank 2");
    }
    let _: (u8, _) = comm.recv_obj(2, 1)?;
    Ok(())
}

/// Rank 1 panics in a rayon worker thread, not the main thread.
fn fail_panic_thread(comm: &Comm) -> spmd::Result<()> {
    comm.barrier()?;
    if comm.rank() == 1 {
        std::thread::spawn(|| panic!("deliberate failure in a worker thread"))
            .join()
            .ok();
    }
    let _: (u8, _) = comm.recv_obj(1, 1)?;
    Ok(())
}

/// Every rank waits for a message nobody sends.
fn deadlock(comm: &Comm) -> spmd::Result<()> {
    let _: (u8, _) = comm.recv_obj((comm.rank() + 1) % comm.size(), 77)?;
    Ok(())
}

const CASES: &[Case] = &[
    case("basics", basics),
    case("dup_and_split", dup_and_split),
    case("node_local", node_local),
    case("barrier_orders", barrier_orders),
    case("errors_name_context", errors_name_context),
    world_case("init_twice", init_twice),
    special("fail_panic", fail_panic),
    special("fail_panic_thread", fail_panic_thread),
    special("deadlock", deadlock),
];

fn panic_on_rank2_ends_job() -> Result<(), libtest_mimic::Failed> {
    let out = common::run_special(4, "fail_panic", Duration::from_secs(30));
    if out.success() || out.timed_out {
        return Err(format!("the job did not end with an error\n{}", out.describe()).into());
    }
    let line = out.stderr.lines().find(|l| l.starts_with("spmd: rank 2 panicked"));
    let Some(line) = line else {
        return Err(format!("no line names rank 2\n{}", out.describe()).into());
    };
    if !line.contains("deliberate failure on rank 2") {
        return Err(format!("the line lacks the panic message: {line}").into());
    }
    let after = common::ms_after_marker(&out, "PANIC_AT")?;
    println!("rank 2 panicked; mpirun exited with {:?} {after} ms later", out.code);
    if after >= 2000 {
        return Err(format!("the job took {after} ms to end after the panic (limit 2000)").into());
    }
    Ok(())
}

fn panic_in_thread_ends_job() -> Result<(), libtest_mimic::Failed> {
    let out = common::run_special(3, "fail_panic_thread", Duration::from_secs(30));
    let named = out
        .stderr
        .lines()
        .any(|l| l.starts_with("spmd: rank 1 panicked") && l.contains("worker thread"));
    if out.success() || out.timed_out || !named {
        return Err(format!("expected the job to end naming rank 1\n{}", out.describe()).into());
    }
    Ok(())
}

fn err_from_main_on_rank3_ends_job() -> Result<(), libtest_mimic::Failed> {
    let exe = std::env::current_exe().expect("test binary");
    let out = common::mpirun(4, exe)
        .env("SPMD_TEST_MAIN_ERR", "3")
        .timeout(Duration::from_secs(30))
        .run();
    if out.success() || out.timed_out {
        return Err(format!("the job did not end with an error\n{}", out.describe()).into());
    }
    if !out.stderr.lines().any(|l| l.contains("rank 3: main failed on purpose")) {
        return Err(format!("no line names rank 3 and the error\n{}", out.describe()).into());
    }
    let after = common::ms_after_marker(&out, "ERR_AT")?;
    println!(
        "rank 3 returned Err from main; mpirun exited with {:?} {after} ms later",
        out.code
    );
    if after >= 2000 {
        return Err(format!("the job took {after} ms to end after the error (limit 2000)").into());
    }
    Ok(())
}

fn deadlock_is_a_timeout() -> Result<(), libtest_mimic::Failed> {
    let out = common::run_special(2, "deadlock", Duration::from_secs(4));
    println!(
        "deadlocked job: timed out = {}, after {:.1} s",
        out.timed_out,
        out.elapsed.as_secs_f64()
    );
    if !out.timed_out || out.success() {
        return Err(format!(
            "the harness did not report the deadlock as a timeout\n{}",
            out.describe()
        )
        .into());
    }
    if !out.describe().contains("timed out") {
        return Err("the failure report does not say the job timed out".into());
    }
    Ok(())
}

/// `main` that returns `Err` on one rank, for the failure-policy test (`SPMD_TEST_MAIN_ERR=<rank>`).
fn main_err(rank: usize) -> spmd::Result<()> {
    let universe = spmd::init()?;
    let world = universe.world();
    world.barrier()?;
    if world.rank() == rank {
        println!("ERR_AT {}", common::now_ms());
        return Err(spmd::Error::new(ErrorKind::Other, "main failed on purpose"));
    }
    let _: (u8, _) = world.recv_obj(rank, 5)?;
    Ok(())
}

/// `main` in which rsmpi starts MPI and spmd adopts it (`SPMD_TEST_ADOPT=1`): spmd works on it, converts
/// communicators both ways, and leaves MPI running for rsmpi to finalise.
fn main_adopt() -> spmd::Result<()> {
    use mpi::traits::Communicator;
    let rsmpi_universe = mpi::initialize().expect("rsmpi starts MPI");
    {
        let universe = spmd::init()?;
        let world = universe.world();
        let p = world.size();
        let ok = universe.adopted()
            && world.all_reduce_scalar(1u32, spmd::Op::Sum)? as usize == p
            && world.all_gather_obj(&world.rank())? == (0..p).collect::<Vec<_>>();
        let rs = world.to_rsmpi()?;
        let back = Comm::from_rsmpi(&universe, &rs)?;
        let ok = ok && rs.size() as usize == p && back.all_reduce_scalar(2u64, spmd::Op::Sum)? == 2 * p as u64;
        drop(back);
        drop(rs);
        if !ok {
            return Err(spmd::Error::new(ErrorKind::Other, "adopted MPI misbehaved"));
        }
    }
    // spmd is gone, MPI is still running: rsmpi's world works, and spmd can adopt it again.
    let n = rsmpi_universe.world().size();
    let again = spmd::init()?;
    let ok = again.adopted() && again.world().size() as i32 == n;
    drop(again);
    println!("ADOPT {} {ok}", rsmpi_universe.world().rank());
    Ok(())
}

fn adoption() -> Result<(), libtest_mimic::Failed> {
    let exe = std::env::current_exe().expect("test binary");
    let out = common::mpirun(2, exe)
        .env("SPMD_TEST_ADOPT", "1")
        .timeout(Duration::from_secs(30))
        .run();
    if !out.success() || !out.stdout.contains("ADOPT 0 true") || !out.stdout.contains("ADOPT 1 true") {
        return Err(format!("adopting an MPI started by rsmpi failed\n{}", out.describe()).into());
    }
    Ok(())
}

fn main() -> spmd::Result<()> {
    if let Some(r) = std::env::var("SPMD_TEST_MAIN_ERR").ok().and_then(|v| v.parse().ok()) {
        return main_err(r);
    }
    if std::env::var_os("SPMD_TEST_ADOPT").is_some() {
        return main_adopt();
    }
    common::main(
        CASES,
        vec![
            Trial::test("failure::panic_on_rank2_ends_job", panic_on_rank2_ends_job),
            Trial::test("failure::panic_in_thread_ends_job", panic_in_thread_ends_job),
            Trial::test(
                "failure::err_from_main_on_rank3_ends_job",
                err_from_main_on_rank3_ends_job,
            ),
            Trial::test("failure::deadlock_is_a_timeout", deadlock_is_a_timeout),
            Trial::test("adoption::mpi_started_by_rsmpi", adoption),
        ],
    );
    Ok(())
}
