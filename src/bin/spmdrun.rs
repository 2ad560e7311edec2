//! `spmdrun`: runs a program, a cargo example or a cargo binary under the real `mpirun`, with the layout and
//! fault settings that are easy to get wrong, and prints the exact mpirun command it runs.
//!
//! ```text
//! spmdrun -n 4 --example pi -- --intervals 10000000
//! spmdrun -n 2 --threads 2 target/release/examples/heat2d --n 2048 --threads 2
//! spmdrun -n 6 --hostfile hosts --map-by node --timeout 600 ./app
//! spmdrun --dry-run -n 1 --threads 2 ./app      # prints the mpirun command only
//! ```
//!
//! What it adds to mpirun (Open MPI's options; with MPICH's `mpirun.mpich` only the portable ones):
//! - ranks × threads: `--threads T` binds each rank to T cores (`--map-by slot:PE=T`, or `node:PE=T` with
//!   `--map-by node`) and sets `RAYON_NUM_THREADS=T` for every rank;
//! - `--allow-run-as-root` when run as root, `--oversubscribe` when asked;
//! - TCP keepalive settings for mpirun's daemons (`oob_tcp_keepalive_time 2`, `_intvl 1`, `_probes 3`), so a job
//!   across hosts ends within seconds when a host is cut off or crashes instead of after ~500 s;
//! - `--timeout SECS`: every rank gets `SPMD_TIMEOUT` (a rank waiting longer than that in one spmd operation
//!   reports where, rank 0 prints a table of all ranks' waits, the job ends with status 124), and the whole job
//!   is killed if it runs longer than that plus `--grace`;
//! - a heartbeat (`SPMD_HEARTBEAT`, on by default with a hostfile): each rank hears from its neighbour every
//!   second; 4 s of silence ends the job, so a frozen host (which mpirun never notices) cannot hang it;
//! - once a rank has reported a failure (a panic, a hang, a silent peer, an error from `main`), the job gets
//!   `--grace` seconds to end before spmdrun ends it, since mpirun may wait forever for a host that is frozen or
//!   cut off;
//! - Ctrl-C (SIGINT), SIGTERM and SIGHUP to spmdrun end the whole job (mpirun runs in a process group of its own).
//!
//! Not covered yet: Slurm's `srun`, MPICH-specific fault settings.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;

/// Runs an SPMD program under mpirun with ranks × threads layout, fault settings and a timeout.
#[derive(Parser, Debug)]
#[command(name = "spmdrun", version, trailing_var_arg = true)]
struct Args {
    /// Number of ranks.
    #[arg(short = 'n', long = "np", default_value_t = 1)]
    np: usize,
    /// Threads per rank: each rank is bound to this many cores and gets RAYON_NUM_THREADS set to it.
    #[arg(long)]
    threads: Option<usize>,
    /// Hostfile listing the hosts and their slots.
    #[arg(long)]
    hostfile: Option<String>,
    /// Placement of consecutive ranks: `slot` fills a host first, `node` spreads over hosts.
    #[arg(long, value_parser = ["slot", "node", "core", "socket"])]
    map_by: Option<String>,
    /// Allow more ranks (× threads) than cores.
    #[arg(long)]
    oversubscribe: bool,
    /// Kill the job and exit with status 124 if it runs longer than this many seconds.
    #[arg(long)]
    timeout: Option<f64>,
    /// Leave out the TCP keepalive settings of mpirun's daemons.
    #[arg(long)]
    no_keepalive: bool,
    /// Binding of ranks to cores (`core`, `socket`, `none`); with --threads it is `core`.
    #[arg(long)]
    bind_to: Option<String>,
    /// Pass an MCA setting to Open MPI's mpirun (repeatable): `--mca btl tcp,self`.
    #[arg(long, num_args = 2, value_names = ["KEY", "VALUE"], action = clap::ArgAction::Append)]
    mca: Vec<String>,
    /// Export an environment variable to every rank (repeatable): `-x NAME` or `-x NAME=VALUE`.
    #[arg(short = 'x', action = clap::ArgAction::Append)]
    export: Vec<String>,
    /// Ends the job when a rank hears nothing from its neighbour for this many seconds (a heartbeat of spmd's own,
    /// which catches hosts that are frozen or cut off while the other ranks wait in MPI). Default: 4 when a
    /// hostfile is given, else off; 0 turns it off. Needs MPI_THREAD_MULTIPLE, which spmd then requests.
    #[arg(long)]
    heartbeat: Option<f64>,
    /// Seconds a job may stay alive after a rank has reported a failure (a panic, an error, a hang, a silent
    /// peer) before spmdrun ends it: mpirun itself may wait forever for a host that is frozen or cut off.
    #[arg(long, default_value_t = 3.0)]
    grace: f64,
    /// The mpirun to use (default: $SPMD_MPIRUN, else `mpirun`).
    #[arg(long)]
    mpirun: Option<String>,
    /// Build and run this cargo example (release profile).
    #[arg(long, conflicts_with = "bin")]
    example: Option<String>,
    /// Build and run this cargo binary (release profile).
    #[arg(long)]
    bin: Option<String>,
    /// Print the mpirun command and exit without running it.
    #[arg(long)]
    dry_run: bool,
    /// The program and its arguments (after --example or --bin: the program's arguments only).
    program: Vec<String>,
}

/// Whether the mpirun is Open MPI's (which takes `--mca`, `--map-by ...:PE=` and `-x`).
fn is_open_mpi(mpirun: &str) -> bool {
    if mpirun.contains("mpich") || mpirun.contains("hydra") {
        return false;
    }
    Command::new(mpirun)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("Open MPI"))
        .unwrap_or(true)
}

/// Whether this process runs as root (from /proc, no unsafe call needed).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|u| u.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// The mpirun command line (without the program) for these settings.
fn mpirun_args(a: &Args, open_mpi: bool, root: bool) -> Result<Vec<String>, String> {
    if a.np == 0 {
        return Err("-n must be at least 1".into());
    }
    if a.threads == Some(0) {
        return Err("--threads must be at least 1".into());
    }
    let mut v = vec!["-n".to_string(), a.np.to_string()];
    if let Some(h) = &a.hostfile {
        v.extend(["--hostfile".into(), h.clone()]);
    }
    if open_mpi {
        if root {
            v.push("--allow-run-as-root".into());
        }
        if a.oversubscribe {
            v.push("--oversubscribe".into());
        }
        let policy = a.map_by.clone().unwrap_or_else(|| "slot".into());
        match a.threads {
            Some(t) => {
                v.extend([
                    "--map-by".into(),
                    format!("{policy}:PE={t}"),
                    "--bind-to".into(),
                    "core".into(),
                ]);
                v.extend(["-x".into(), format!("RAYON_NUM_THREADS={t}")]);
            }
            None => {
                if let Some(m) = &a.map_by {
                    v.extend(["--map-by".into(), m.clone()]);
                }
                if let Some(b) = &a.bind_to {
                    v.extend(["--bind-to".into(), b.clone()]);
                }
            }
        }
        for kv in a.mca.chunks(2) {
            v.extend(["--mca".into(), kv[0].clone(), kv[1].clone()]);
        }
        for x in &a.export {
            v.extend(["-x".into(), x.clone()]);
        }
        if !a.no_keepalive {
            for (k, val) in [
                ("oob_tcp_keepalive_time", "2"),
                ("oob_tcp_keepalive_intvl", "1"),
                ("oob_tcp_keepalive_probes", "3"),
            ] {
                v.extend(["--mca".into(), k.into(), val.into()]);
            }
        }
        if let Some(t) = a.timeout {
            v.extend(["-x".into(), format!("SPMD_TIMEOUT={t}")]);
        }
        if let Some(h) = heartbeat(a) {
            v.extend(["-x".into(), format!("SPMD_HEARTBEAT={h}")]);
        }
    } else {
        // MPICH's Hydra: its own spelling of placement and environment.
        if let Some(m) = &a.map_by {
            v.extend(["-map-by".into(), m.clone()]);
        }
        if let Some(t) = a.threads {
            v.extend([
                "-bind-to".into(),
                format!("core:{t}"),
                "-genv".into(),
                "RAYON_NUM_THREADS".into(),
                t.to_string(),
            ]);
        } else if let Some(b) = &a.bind_to {
            v.extend(["-bind-to".into(), b.clone()]);
        }
        for x in &a.export {
            match x.split_once('=') {
                Some((k, val)) => v.extend(["-genv".into(), k.into(), val.into()]),
                None => v.extend(["-genvlist".into(), x.clone()]),
            }
        }
        if let Some(t) = a.timeout {
            v.extend(["-genv".into(), "SPMD_TIMEOUT".into(), t.to_string()]);
        }
        if let Some(h) = heartbeat(a) {
            v.extend(["-genv".into(), "SPMD_HEARTBEAT".into(), h.to_string()]);
        }
    }
    Ok(v)
}

/// The heartbeat's silence limit: as given, else 4 s for jobs across hosts (a hostfile); `None` for off.
fn heartbeat(a: &Args) -> Option<f64> {
    match a.heartbeat {
        Some(h) if h > 0.0 => Some(h),
        Some(_) => None,
        None => a.hostfile.is_some().then_some(4.0),
    }
}

/// Builds a cargo example or binary and returns its path and the program arguments.
fn cargo_target(kind: &str, name: &str, dry_run: bool) -> Result<String, String> {
    let dir = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let path = match kind {
        "example" => format!("{dir}/release/examples/{name}"),
        _ => format!("{dir}/release/{name}"),
    };
    if dry_run {
        return Ok(path);
    }
    eprintln!("spmdrun: cargo build --release --{kind} {name}");
    let st = Command::new("cargo")
        .args(["build", "--release", &format!("--{kind}"), name])
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !st.success() {
        return Err(format!("cargo build --release --{kind} {name} failed"));
    }
    Ok(path)
}

/// The last of SIGINT, SIGTERM or SIGHUP that spmdrun received (0: none).
static SIGNALLED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    SIGNALLED.store(sig, Ordering::Relaxed);
}

/// Notes SIGINT, SIGTERM and SIGHUP instead of dying of them, so that the job can be ended with spmdrun.
#[allow(unsafe_code)]
fn catch_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // SAFETY: the handler only stores to an atomic (async-signal-safe); `signal` takes no pointers of ours.
        unsafe { libc::signal(sig, handler) };
    }
}

/// Sends `sig` to the process group `pgid` (mpirun's, which it leads: spmdrun started it in a new group).
#[allow(unsafe_code)]
fn signal_group(pgid: u32, sig: i32) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    if pgid > 1 {
        // SAFETY: killpg(2) takes no pointers; the group is the job's own (a group id above 1, never ours).
        unsafe { libc::killpg(pgid, sig) };
    }
}

/// Whether a line of the job's stderr reports a failure: spmd's lines for a panic, a hang or a silent peer
/// (`spmd: rank ...`, `spmd: hang ...`), or an error returned from `main` (`Error: rank ...`). spmd's warnings
/// (`spmd: SPMD_...`) are not failures.
fn is_failure(line: &str) -> bool {
    line.starts_with("spmd: rank ") || line.starts_with("spmd: hang") || line.starts_with("Error: rank ")
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn run() -> Result<u8, String> {
    let a = Args::parse();
    for (name, v) in [
        ("--timeout", a.timeout),
        ("--heartbeat", a.heartbeat),
        ("--grace", Some(a.grace)),
    ] {
        if let Some(v) = v
            && !(v.is_finite() && (0.0..=1e9).contains(&v))
        {
            return Err(format!("{name} {v}: expected seconds between 0 and 1e9"));
        }
    }
    if a.timeout == Some(0.0) {
        return Err("--timeout 0: expected a positive number of seconds".into());
    }
    let mpirun = a
        .mpirun
        .clone()
        .or_else(|| std::env::var("SPMD_MPIRUN").ok())
        .unwrap_or_else(|| "mpirun".into());
    let open_mpi = is_open_mpi(&mpirun);
    let mut args = mpirun_args(&a, open_mpi, is_root())?;
    let program: Vec<String> = match (&a.example, &a.bin) {
        (Some(e), _) => std::iter::once(cargo_target("example", e, a.dry_run)?)
            .chain(a.program.iter().cloned())
            .collect(),
        (None, Some(b)) => std::iter::once(cargo_target("bin", b, a.dry_run)?)
            .chain(a.program.iter().cloned())
            .collect(),
        (None, None) => a.program.clone(),
    };
    if program.is_empty() {
        return Err("no program given (a path, --example NAME or --bin NAME)".into());
    }
    args.extend(program);
    let line = std::iter::once(mpirun.clone())
        .chain(args.iter().cloned())
        .map(|s| shell_quote(&s))
        .collect::<Vec<_>>()
        .join(" ");
    if a.dry_run {
        println!("{line}");
        return Ok(0);
    }
    eprintln!("spmdrun: {line}");
    let mut cmd = Command::new(&mpirun);
    cmd.args(&args).stderr(Stdio::piped()).process_group(0);
    catch_signals();
    let mut child = cmd.spawn().map_err(|e| format!("cannot start {mpirun}: {e}"))?;
    let pgid = child.id();
    // Forward the job's stderr, noting when a rank reports a failure (spmd's lines start with "spmd: ").
    let failed: Arc<Mutex<Option<(Instant, bool)>>> = Arc::new(Mutex::new(None));
    let stderr = child.stderr.take().expect("piped");
    let seen = Arc::clone(&failed);
    let forward = std::thread::spawn(move || {
        let mut out = std::io::stderr();
        let mut reader = BufReader::new(stderr);
        let mut raw = Vec::new();
        while reader.read_until(b'\n', &mut raw).is_ok_and(|n| n > 0) {
            let line = String::from_utf8_lossy(&raw).trim_end_matches('\n').to_string();
            raw.clear();
            if is_failure(&line) {
                let mut f = seen.lock().expect("lock");
                if f.is_none() {
                    *f = Some((Instant::now(), line.starts_with("spmd: hang")));
                }
            }
            let _ = writeln!(out, "{line}");
        }
    });
    let start = Instant::now();
    let end_job = |child: &mut std::process::Child| {
        signal_group(pgid, libc::SIGTERM);
        std::thread::sleep(Duration::from_millis(300));
        signal_group(pgid, libc::SIGKILL);
        let _ = child.wait();
    };
    let code = loop {
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            break st.code().map_or(1, |c| c.clamp(0, 255) as u8);
        }
        let sig = SIGNALLED.load(Ordering::Relaxed);
        if sig != 0 {
            // Ctrl-C, or the batch system ending spmdrun: pass it on to the job (mpirun sits in its own group).
            eprintln!("spmdrun: signal {sig}; ending the job");
            end_job(&mut child);
            break 128u8.saturating_add(sig as u8);
        }
        if let Some(t) = a.timeout
            && start.elapsed() > Duration::from_secs_f64(t + a.grace)
        {
            eprintln!("spmdrun: the job ran longer than --timeout {t} s; ending it");
            end_job(&mut child);
            break 124;
        }
        let reported = *failed.lock().expect("lock");
        if let Some((at, hang)) = reported
            && at.elapsed() > Duration::from_secs_f64(a.grace)
        {
            eprintln!(
                "spmdrun: a rank reported a failure {:.1} s ago and mpirun has not ended the job (a host may be \
                 frozen or cut off); ending it",
                at.elapsed().as_secs_f64()
            );
            end_job(&mut child);
            break if hang { 124 } else { 1 };
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // The last lines of stderr, unless something outside the job holds the pipe open.
    let until = Instant::now() + Duration::from_secs(1);
    while !forward.is_finished() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(code)
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("spmdrun: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(argv: &[&str]) -> String {
        let a = Args::parse_from(std::iter::once("spmdrun").chain(argv.iter().copied()));
        mpirun_args(&a, true, false).unwrap().join(" ")
    }

    const KEEP: &str =
        "--mca oob_tcp_keepalive_time 2 --mca oob_tcp_keepalive_intvl 1 --mca oob_tcp_keepalive_probes 3";

    #[test]
    fn layouts() {
        assert_eq!(cmd(&["-n", "4", "./a"]), format!("-n 4 {KEEP}"));
        assert_eq!(
            cmd(&["-n", "2", "--threads", "1", "./a"]),
            format!("-n 2 --map-by slot:PE=1 --bind-to core -x RAYON_NUM_THREADS=1 {KEEP}")
        );
        assert_eq!(
            cmd(&["-n", "1", "--threads", "2", "./a"]),
            format!("-n 1 --map-by slot:PE=2 --bind-to core -x RAYON_NUM_THREADS=2 {KEEP}")
        );
        assert!(is_failure("spmd: rank 3 panicked at src/main.rs:1:1: boom"));
        assert!(is_failure("spmd: hang: rank 0 (h): barrier() on world"));
        assert!(!is_failure(
            "spmd: SPMD_HEARTBEAT is set but MPI does not grant MPI_THREAD_MULTIPLE; no heartbeat"
        ));
        assert_eq!(
            cmd(&["-n", "6", "--hostfile", "hosts", "--map-by", "node", "./a"]),
            format!("-n 6 --hostfile hosts --map-by node {KEEP} -x SPMD_HEARTBEAT=4")
        );
    }
}
