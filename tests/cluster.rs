//! A simulated cluster: three hosts in network namespaces, ranks on different hosts talking over TCP
//! (`tests/simcluster.sh`). Runs the examples, the messaging and hybrid cases and the node-local split across the hosts, shows
//! that the job needs TCP, and injects faults (a host dies, a rank dies, a remote rank panics): each must end the
//! job in time and leave no namespace or process behind. Needs root; elsewhere the tests say so and are skipped.

#[macro_use]
mod common;
mod suites;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Case, Job, special, world_case};
use libtest_mimic::{Completion, Failed, Trial};
use spmd::Comm;

const HOSTS: usize = 3;
const NP: usize = 6;

/// The node-local split sees one communicator per host, holding the ranks of that host, in rank blocks.
fn node_local(comm: &Comm) -> spmd::Result<()> {
    let name = spmd::runtime::processor_name()?;
    let names = comm.all_gather_obj(&name)?;
    let hosts: BTreeSet<&String> = names.iter().collect();
    let expected: usize = std::env::var("SPMD_SIM_HOSTS")
        .ok()
        .and_then(|h| h.parse().ok())
        .unwrap_or(1);
    check!(
        comm,
        hosts.len() == expected,
        "{} hosts seen, {expected} expected: {names:?}",
        hosts.len()
    );
    let node = comm.split_shared()?;
    let same: Vec<usize> = (0..comm.size()).filter(|&r| names[r] == name).collect();
    check!(
        comm,
        node.size() == same.len(),
        "node communicator of {} for {} ranks on {name}",
        node.size(),
        same.len()
    );
    let node_names = node.all_gather_obj(&name)?;
    check!(
        comm,
        node_names.iter().all(|n| *n == name),
        "node communicator spans hosts: {node_names:?}"
    );
    // Ranks are placed host by host: each host holds a contiguous block of ranks.
    check!(
        comm,
        same.windows(2).all(|w| w[1] == w[0] + 1),
        "ranks of {name} are not contiguous: {same:?}"
    );
    let count = comm.all_reduce_scalar(u64::from(node.rank() == 0), spmd::Op::Sum)?;
    check!(
        comm,
        count as usize == expected,
        "{count} node leaders for {expected} hosts"
    );
    if comm.rank() == 0 {
        println!("NODES {}", names.join(" "));
    }
    Ok(())
}

/// Says where this rank runs, once every rank is up: the test waits for these lines before a fault.
fn announce(comm: &Comm) -> spmd::Result<()> {
    comm.barrier()?;
    println!(
        "READY rank {} pid {} host {}",
        comm.rank(),
        std::process::id(),
        spmd::runtime::processor_name()?
    );
    Ok(())
}

/// Ready for a fault: every rank says where it runs, then all keep meeting in barriers for up to a minute.
fn fault_wait(comm: &Comm) -> spmd::Result<()> {
    announce(comm)?;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(60) {
        comm.barrier()?;
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The last rank (on the last host) panics while the others wait in a barrier.
fn fault_panic(comm: &Comm) -> spmd::Result<()> {
    announce(comm)?;
    if comm.rank() == comm.size() - 1 {
        std::thread::sleep(Duration::from_millis(300));
        println!("PANIC_AT {}", common::now_ms());
        panic!("deliberate failure on a remote host");
    }
    loop {
        comm.barrier()?;
    }
}

fn cases() -> Vec<Case> {
    let mut v: Vec<Case> = vec![world_case("node_local", node_local)];
    v.extend(suites::messaging::CASES.iter().filter(|c| !c.special).copied());
    v.extend(suites::hybrid::CASES.iter().filter(|c| !c.special).copied());
    v.push(special("fault_wait", fault_wait));
    v.push(special("fault_panic", fault_panic));
    v
}

/// Why the simulated cluster cannot run here, if it cannot.
fn unavailable() -> Option<String> {
    let out = Command::new("bash")
        .arg(common::simcluster_script())
        .arg("check")
        .output()
        .ok()?;
    if out.status.success() {
        None
    } else {
        Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

fn sim(np: usize, program: impl Into<std::path::PathBuf>) -> Job {
    common::mpirun(np, program)
        .on_sim(HOSTS, true)
        .env("SPMD_SIM_HOSTS", &HOSTS.to_string())
}

/// A trial that is skipped, with the reason shown, where the simulated cluster cannot run.
fn cluster_trial(name: &str, f: impl FnOnce() -> Result<(), Failed> + Send + 'static) -> Trial {
    Trial::ignorable_test(format!("cluster::{name}"), move || {
        match unavailable().or_else(|| {
            // The simulated cluster starts its daemons through Open MPI's launcher agent option.
            (!common::open_mpi_launcher())
                .then(|| "the simulated cluster runs under Open MPI's mpirun only".to_string())
        }) {
            Some(why) => {
                println!("skipped: {why}");
                Ok(Completion::Ignored { reason: Some(why) })
            }
            None => f().map(|_| Completion::Completed),
        }
    })
}

fn hello() -> Result<(), Failed> {
    let out = sim(NP, common::example("hello")).run();
    if !out.success() {
        return Err(out.describe().into());
    }
    let hosts: BTreeSet<String> = out
        .stdout
        .lines()
        .filter_map(|l| {
            l.strip_prefix("hello from rank ")?
                .split(" on ")
                .nth(1)?
                .split(' ')
                .next()
                .map(String::from)
        })
        .collect();
    println!("processor names: {hosts:?}");
    if hosts.len() != HOSTS {
        return Err(format!(
            "expected {HOSTS} distinct processor names, got {hosts:?}\n{}",
            out.describe()
        )
        .into());
    }
    Ok(())
}

fn pi() -> Result<(), Failed> {
    let out = sim(NP, common::example("pi")).args(["--intervals", "10000000"]).run();
    let error: f64 = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("error ").and_then(|v| v.trim().parse().ok()))
        .ok_or_else(|| out.describe())?;
    println!("pi on {HOSTS} hosts, {NP} ranks: error {error:.3e}");
    if !out.success() || error.is_nan() || error >= 1e-10 {
        return Err(out.describe().into());
    }
    Ok(())
}

fn messaging() -> Result<(), Failed> {
    let exe = std::env::current_exe().expect("test binary");
    let out = sim(NP, exe)
        .env("SPMD_TEST_CHILD", "1")
        .timeout(Duration::from_secs(300))
        .run();
    let names: String = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("NODES "))
        .unwrap_or("(no NODES line)")
        .to_string();
    println!(
        "{} cases across {HOSTS} hosts in {:.1} s; ranks on: {names}",
        cases().len(),
        out.elapsed.as_secs_f64()
    );
    common::check_cases_ok(&cases(), None, NP, &out).map_err(Failed::from)
}

/// The hybrid example across the hosts: the layout table shows 3 nodes with their ranks and threads, and each
/// node allocates its own copy of the shared table.
fn hybrid() -> Result<(), Failed> {
    let out = sim(NP, common::example("hybrid")).args(["--table-mib", "4"]).run();
    println!("{}", out.stdout);
    let nodes_line = format!("{NP} ranks on {HOSTS} node(s)");
    let per_node = out
        .stdout
        .lines()
        .filter(|l| l.contains("MiB allocated by its 2 rank(s)"))
        .count();
    let rows = out
        .stdout
        .lines()
        .filter(|l| l.trim_end().ends_with("affinity"))
        .count();
    if !out.success() || !out.stdout.contains(&nodes_line) || per_node != HOSTS || rows != NP {
        return Err(format!(
            "expected {nodes_line}, {NP} rank rows and {HOSTS} node copies\n{}",
            out.describe()
        )
        .into());
    }
    Ok(())
}

fn tcp_is_needed() -> Result<(), Failed> {
    // The same job with only the shared-memory and self transports cannot connect ranks on different hosts.
    let out = common::mpirun(NP, common::example("hello"))
        .on_sim(HOSTS, false)
        .timeout(Duration::from_secs(60))
        .run();
    println!(
        "without TCP: exit {:?} after {:.1} s",
        out.code,
        out.elapsed.as_secs_f64()
    );
    if out.success() || out.timed_out {
        return Err(format!("the job ran without TCP (or hung)\n{}", out.describe()).into());
    }
    if !out.stderr.contains("unreachable") && !out.stderr.contains("unable to reach") {
        return Err(format!("no 'unreachable' error from Open MPI\n{}", out.describe()).into());
    }
    Ok(())
}

/// What to do to a running job.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Kill every process of host 2.
    KillHost,
    /// Kill rank 3 (on host 2).
    KillRank,
    /// Rank 5 (on host 3) panics by itself.
    RemotePanic,
    /// Host 2's network cable is cut (its interface goes down); its processes keep running.
    Cut,
    /// Host 2 crashes silently: cut, then every process killed.
    Crash,
    /// Host 2 freezes: every process stopped (SIGSTOP).
    Freeze,
}

/// How a fault job is launched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    /// mpirun with the keepalive settings of `tests/simcluster.sh`.
    Mpirun,
    /// mpirun with its own defaults.
    Plain,
    /// The `spmdrun` launcher with its defaults.
    Launcher,
}

/// The namespace of simulated host `k`, from the file `tests/simcluster.sh` writes.
fn host_namespace(info: &std::path::Path, k: usize) -> Option<String> {
    let text = std::fs::read_to_string(info).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("ns {k} ")))
        .map(str::to_string)
}

/// The processes of a namespace.
fn namespace_pids(ns: &str) -> Vec<i32> {
    Command::new("ip")
        .args(["netns", "pids", ns])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Takes every network interface of a namespace down (but its loopback).
fn cut_cable(ns: &str) -> Result<(), String> {
    let out = Command::new("ip")
        .args(["-n", ns, "-o", "link", "show"])
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let links: Vec<String> = text
        .lines()
        .filter_map(|l| {
            l.split(':')
                .nth(1)
                .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
        })
        .filter(|n| !n.is_empty() && n != "lo")
        .collect();
    if links.is_empty() {
        return Err(format!("no interface in {ns}: {text}"));
    }
    for l in links {
        let st = Command::new("ip")
            .args(["-n", ns, "link", "set", "dev", &l, "down"])
            .status();
        if !st.is_ok_and(|s| s.success()) {
            return Err(format!("cannot take {l} down in {ns}"));
        }
    }
    Ok(())
}

/// Sends `sig` to every process of a namespace; fails if it has none.
fn signal_namespace(ns: &str, sig: i32) -> Result<(), String> {
    let pids = namespace_pids(ns);
    if pids.is_empty() {
        return Err(format!("{ns} has no processes"));
    }
    for p in pids {
        // SAFETY: kill(2) on processes of a simulated host this test started.
        unsafe { libc::kill(p, sig) };
    }
    Ok(())
}

/// Runs one job with a fault; returns a line describing it. Checks the time limits and that nothing is left.
fn fault_once(fault: Fault, round: usize) -> Result<String, String> {
    fault_run(fault, round, Via::Mpirun, 30.0).and_then(|r| r.map_err(|e| e.to_string()))
}

/// Runs one job with a fault, launched `via`; gives up `cap` seconds after the fault. The outer error is a failure
/// of the test itself; the inner one says the job did not end as it should (ended successfully, too late, never).
fn fault_run(fault: Fault, round: usize, via: Via, cap: f64) -> Result<Result<String, String>, String> {
    let exe = std::env::current_exe().expect("test binary");
    let info = std::env::temp_dir().join(format!("spmd-sim-info-{}-{round}", std::process::id()));
    let _ = std::fs::remove_file(&info);
    let case = if matches!(fault, Fault::RemotePanic) {
        "fault_panic"
    } else {
        "fault_wait"
    };
    let mut job = sim(NP, &exe)
        .env("SPMD_TEST_CHILD", "1")
        .env("SPMD_TEST_CASES", case)
        .env("SIMCLUSTER_INFO", info.to_str().expect("utf-8 path"));
    match via {
        Via::Mpirun => {}
        Via::Plain => job = job.env("SIMCLUSTER_NO_KEEPALIVE", "1"),
        Via::Launcher => job = job.env("SIMCLUSTER_LAUNCHER", env!("CARGO_BIN_EXE_spmdrun")),
    }
    let start = Instant::now();
    let mut child = job
        .command()
        .spawn()
        .map_err(|e| format!("cannot start the job: {e}"))?;
    let pgid = child.id() as i32;
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .for_each(|l| drop(tx.send(l)))
    });
    let err_lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let el = std::sync::Arc::clone(&err_lines);
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            el.lock().expect("lock").push(l);
        }
        drop(tx2);
    });
    let give_up = |child: &mut std::process::Child, why: String| {
        common::terminate_group(pgid, child);
        let _ = child.wait();
        Err(why)
    };
    // Wait until every rank is up.
    let mut ready: Vec<(usize, i32)> = Vec::new();
    let mut lines = Vec::new();
    while ready.len() < NP {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) => {
                if let Some(rest) = l.strip_prefix("READY rank ") {
                    let f: Vec<&str> = rest.split_whitespace().collect();
                    ready.push((f[0].parse().unwrap_or(0), f[2].parse().unwrap_or(0)));
                }
                lines.push(l);
            }
            Err(_) => {
                return give_up(
                    &mut child,
                    format!("ranks did not start: {lines:?} {:?}", err_lines.lock()),
                );
            }
        }
    }
    let fault_at = match fault {
        Fault::KillHost => {
            let text = std::fs::read_to_string(&info).unwrap_or_default();
            let ns = text.lines().find_map(|l| l.strip_prefix("ns 2 ")).map(str::to_string);
            let Some(ns) = ns else {
                return give_up(&mut child, format!("no namespace for host 2 in {text:?}"));
            };
            let pids = Command::new("ip")
                .args(["netns", "pids", &ns])
                .output()
                .map_err(|e| e.to_string())?;
            let pids: Vec<i32> = String::from_utf8_lossy(&pids.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect();
            if pids.is_empty() {
                return give_up(&mut child, "host 2 has no processes".into());
            }
            for p in &pids {
                // SAFETY: kill(2) on processes of the simulated host this test started.
                unsafe { libc::kill(*p, libc::SIGKILL) };
            }
            Instant::now()
        }
        Fault::KillRank => {
            let pid = ready.iter().find(|(r, _)| *r == 3).map(|&(_, p)| p).unwrap_or(0);
            if pid <= 0 {
                return give_up(&mut child, format!("no pid for rank 3: {ready:?}"));
            }
            // SAFETY: kill(2) on a rank process this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            Instant::now()
        }
        Fault::RemotePanic => Instant::now(),
        Fault::Cut | Fault::Crash | Fault::Freeze => {
            let Some(ns) = host_namespace(&info, 2) else {
                return give_up(&mut child, "no namespace for host 2".into());
            };
            let done = match fault {
                Fault::Cut => cut_cable(&ns),
                Fault::Crash => cut_cable(&ns).and_then(|_| signal_namespace(&ns, libc::SIGKILL)),
                _ => signal_namespace(&ns, libc::SIGSTOP),
            };
            if let Err(e) = done {
                return give_up(&mut child, e);
            }
            Instant::now()
        }
    };
    // Wait for the job to end.
    let status = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break st;
        }
        if fault_at.elapsed() > Duration::from_secs_f64(cap) {
            common::terminate_group(pgid, &mut child);
            let _ = child.wait();
            // The script may have been killed before its teardown: remove what it left.
            let _ = Command::new("bash")
                .arg(common::simcluster_script())
                .arg("clean")
                .status();
            leftovers(&exe)?;
            return Ok(Err(format!(
                "{fault:?} via {via:?}: no exit within {cap} s of the fault"
            )));
        }
        while let Ok(l) = rx.try_recv() {
            lines.push(l);
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let ended = Instant::now();
    let ended_ms = common::now_ms();
    common::kill_group(pgid);
    std::thread::sleep(Duration::from_millis(100));
    while let Ok(l) = rx.try_recv() {
        lines.push(l);
    }
    let stderr = err_lines.lock().map(|v| v.join("\n")).unwrap_or_default();
    let _ = std::fs::remove_file(&info);
    if status.success() {
        return Ok(Err(format!("the job exited successfully after {fault:?}")));
    }
    let (after, limit) = match fault {
        Fault::RemotePanic => {
            let after = common::ms_after(&lines, "PANIC_AT", ended_ms).ok_or("no PANIC_AT line")?;
            if !stderr
                .lines()
                .any(|l| l.contains("spmd: rank 5 panicked") && l.contains("deliberate failure"))
            {
                return Ok(Err(format!("no line names rank 5 and the panic:\n{stderr}")));
            }
            (after as f64 / 1e3, 5.0)
        }
        _ => ((ended - fault_at).as_secs_f64(), 10.0),
    };
    leftovers(&exe)?;
    let total = start.elapsed().as_secs_f64();
    let line = format!(
        "{fault:?} via {via:?} #{round}: exit {:?}, ended {after:.2} s after the fault, run {total:.1} s",
        status.code()
    );
    if after >= limit {
        return Ok(Err(format!("{line}: over the limit of {limit} s\n{stderr}")));
    }
    if total >= 30.0 + cap {
        return Ok(Err(format!("{line}: the run took too long")));
    }
    Ok(Ok(line))
}

/// Fails if a simulated host, or a process of the job, is still there.
fn leftovers(exe: &std::path::Path) -> Result<(), String> {
    // The launcher tears down after mpirun exits; give it a moment.
    let t = Instant::now();
    loop {
        let list = Command::new("bash")
            .arg(common::simcluster_script())
            .arg("list")
            .output()
            .map_err(|e| e.to_string())?;
        let ns = String::from_utf8_lossy(&list.stdout).trim().to_string();
        let procs = processes_of(exe);
        let orted = processes_named("orted");
        if ns.is_empty() && procs.is_empty() && orted.is_empty() {
            return Ok(());
        }
        if t.elapsed() > Duration::from_secs(5) {
            return Err(format!(
                "left behind: namespaces [{ns}], job processes {procs:?}, daemons {orted:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Processes running `exe` other than this one.
fn processes_of(exe: &std::path::Path) -> Vec<i32> {
    let me = std::process::id() as i32;
    let exe = exe.to_string_lossy().to_string();
    list_processes(|cmdline, _| cmdline.starts_with(&exe))
        .into_iter()
        .filter(|&p| p != me)
        .collect()
}

fn processes_named(name: &str) -> Vec<i32> {
    list_processes(|_, comm| comm == name)
}

fn list_processes(pred: impl Fn(&str, &str) -> bool) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        // A zombie has ended (only its exit status waits for its parent): not left behind.
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let zombie = stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z'));
        if !zombie && pred(cmdline.trim(), comm.trim()) {
            out.push(pid);
        }
    }
    out
}

/// Rounds per fault test: `SPMD_FAULT_ROUNDS`, else `default`.
fn fault_rounds(default: usize) -> usize {
    std::env::var("SPMD_FAULT_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(default)
}

fn faults(fault: Fault) -> Result<(), Failed> {
    let rounds = fault_rounds(10);
    for round in 1..=rounds {
        let line = fault_once(fault, round).map_err(|e| format!("{fault:?} round {round}: {e}"))?;
        println!("{line}");
    }
    Ok(())
}

/// Cut, crash and freeze of one host through the launcher: each must end the job, non-zero, within 10 s.
fn launcher_faults(fault: Fault) -> Result<(), Failed> {
    let rounds = fault_rounds(5);
    for round in 1..=rounds {
        let line = fault_run(fault, round, Via::Launcher, 30.0)
            .and_then(|r| r)
            .map_err(|e| format!("{fault:?} round {round}: {e}"))?;
        println!("{line}");
    }
    Ok(())
}

/// The README's table: each fault once per way of launching, waiting up to 60 s (run with `--ignored`).
fn fault_table() -> Result<(), Failed> {
    println!("| fault | mpirun (defaults) | mpirun + keepalive | spmdrun (defaults) |");
    println!("|---|---|---|---|");
    for fault in [Fault::Cut, Fault::Crash, Fault::Freeze] {
        let mut row = format!("| {fault:?} |");
        for via in [Via::Plain, Via::Mpirun, Via::Launcher] {
            let cell = match fault_run(fault, 1, via, 60.0)? {
                Ok(line) => line
                    .split("ended ")
                    .nth(1)
                    .and_then(|r| r.split(' ').next())
                    .map_or(line.clone(), |s| format!("{s} s")),
                Err(e) if e.contains("no exit") => "no exit in 60 s".to_string(),
                Err(e) => e.lines().next().unwrap_or("").to_string(),
            };
            row.push_str(&format!(" {cell} |"));
        }
        println!("{row}");
    }
    Ok(())
}

fn main() {
    let cases = cases();
    common::child_if_asked(&cases);
    let trials = vec![
        cluster_trial("hello_sees_three_hosts", hello),
        cluster_trial("pi", pi),
        cluster_trial("messaging_and_node_local", messaging),
        cluster_trial("tcp_is_needed", tcp_is_needed),
        cluster_trial("hybrid_three_nodes", hybrid),
        cluster_trial("fault_kill_host", || faults(Fault::KillHost)),
        cluster_trial("fault_kill_rank", || faults(Fault::KillRank)),
        cluster_trial("fault_remote_panic", || faults(Fault::RemotePanic)),
        cluster_trial("launcher_cut_cable", || launcher_faults(Fault::Cut)),
        cluster_trial("launcher_host_crash", || launcher_faults(Fault::Crash)),
        cluster_trial("launcher_host_frozen", || launcher_faults(Fault::Freeze)),
        cluster_trial("fault_table", fault_table).with_ignored_flag(true),
    ];
    let mut args = libtest_mimic::Arguments::from_args();
    args.test_threads.get_or_insert(1);
    libtest_mimic::run(&args, trials).exit();
}
