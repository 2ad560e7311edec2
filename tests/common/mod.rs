//! The multi-rank test harness: every test runs as a real `mpirun -n N` job.
//!
//! A test binary (with `harness = false`) lists its cases and calls [`main`]. Started by `cargo test`, it is the
//! *parent*: it makes one trial per rank count, which runs `mpirun -n N <this binary>` with `SPMD_TEST_CHILD`
//! set, under a timeout, and checks that every case reported success. Started by mpirun, it is a *child* rank: it
//! initialises spmd and runs each case on the world communicator, a duplicate and a split (ranks reordered), so
//! context and rank-translation bugs show. A failing rank ends the job through spmd's failure policy; the trial
//! then fails with the rank's message. A job that outlives its timeout is killed and the trial fails.
//!
//! Extra trials (failure-policy tests, example runs) use [`mpirun`] directly.
#![allow(dead_code)]

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use spmd::Comm;

/// What a launched job did.
#[derive(Debug)]
pub struct Outcome {
    /// Exit status of mpirun (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Whether the harness killed the job at its timeout.
    pub timed_out: bool,
    /// Wall time from launch to exit.
    pub elapsed: Duration,
    /// When the job ended (ms since the epoch).
    pub ended_ms: u128,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// Whether mpirun exited with status 0 in time.
    pub fn success(&self) -> bool {
        !self.timed_out && self.code == Some(0)
    }

    /// A report for a failed test: status, timing and the job's output.
    pub fn describe(&self) -> String {
        let status = if self.timed_out {
            format!("timed out after {:.1} s and was killed", self.elapsed.as_secs_f64())
        } else {
            format!("exited with {:?} after {:.2} s", self.code, self.elapsed.as_secs_f64())
        };
        format!(
            "job {status}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            tail(&self.stdout),
            tail(&self.stderr)
        )
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    let start = lines.len().saturating_sub(60);
    lines[start..].join("\n")
}

/// Milliseconds from the time a rank printed in a line `<marker> <ms since the epoch>` to the job's end.
pub fn ms_after_marker(out: &Outcome, marker: &str) -> Result<u128, String> {
    let lines: Vec<&str> = out.stdout.lines().collect();
    ms_after(&lines, marker, out.ended_ms).ok_or_else(|| format!("no {marker} line\n{}", out.describe()))
}

/// Milliseconds from the time printed in the first line `<marker> <ms>` among `lines` to `ended_ms`.
pub fn ms_after<S: AsRef<str>>(lines: &[S], marker: &str, ended_ms: u128) -> Option<u128> {
    let prefix = format!("{marker} ");
    lines
        .iter()
        .find_map(|l| {
            l.as_ref()
                .strip_prefix(prefix.as_str())
                .and_then(|t| t.trim().parse::<u128>().ok())
        })
        .map(|at| ended_ms.saturating_sub(at))
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis()
}

/// Where a job runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Launcher {
    /// `mpirun` on this machine.
    Local,
    /// `tests/simcluster.sh`: a simulated cluster of `hosts` network namespaces; `tcp` false allows only the
    /// shared-memory and self transports.
    Sim { hosts: usize, tcp: bool },
}

/// The simulated-cluster script of this repository.
pub fn simcluster_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("simcluster.sh")
}

/// A job to launch under mpirun.
pub struct Job {
    pub np: usize,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub mpirun_args: Vec<String>,
    pub timeout: Duration,
    pub launcher: Launcher,
    /// Further programs of an MPMD job (local launcher only): rank count, program, arguments.
    pub more: Vec<(usize, PathBuf, Vec<String>)>,
}

impl Job {
    pub fn new(np: usize, program: impl Into<PathBuf>) -> Job {
        Job {
            np,
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            mpirun_args: Vec::new(),
            timeout: Duration::from_secs(default_timeout()),
            launcher: Launcher::Local,
            more: Vec::new(),
        }
    }

    /// Runs the job on a simulated cluster of `hosts` hosts instead (see `tests/simcluster.sh`).
    pub fn on_sim(mut self, hosts: usize, tcp: bool) -> Job {
        self.launcher = Launcher::Sim { hosts, tcp };
        self
    }

    /// The command that launches the job, in its own process group.
    pub fn command(&self) -> Command {
        let mut cmd = match self.launcher {
            Launcher::Local => {
                let mpirun = std::env::var("SPMD_MPIRUN").unwrap_or_else(|_| "mpirun".into());
                let mut c = Command::new(&mpirun);
                c.arg("-n").arg(self.np.to_string());
                // Running more ranks than cores needs --oversubscribe under Open MPI; idle ranks then yield the
                // CPU. MPICH's Hydra needs neither and rejects both.
                if is_open_mpi(&mpirun) {
                    c.args(["--oversubscribe", "--mca", "mpi_yield_when_idle", "1"]);
                }
                c.args(&self.mpirun_args);
                c
            }
            Launcher::Sim { hosts, tcp } => {
                let mut c = Command::new("bash");
                c.arg(simcluster_script())
                    .arg("run")
                    .arg(hosts.to_string())
                    .arg(self.np.to_string());
                if !tcp {
                    c.arg("--no-tcp");
                }
                c.arg("--");
                c
            }
        };
        cmd.arg(&self.program).args(&self.args);
        for (np, program, args) in &self.more {
            cmd.arg(":").arg("-n").arg(np.to_string()).arg(program).args(args);
        }
        // mpirun refuses to run as root without these; they are harmless for other users.
        cmd.env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.process_group(0);
        cmd
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Job {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Adds a program to the job (MPMD, `mpirun -n N a : -n M b`): its `np` ranks follow the ranks added before
    /// in the one `MPI_COMM_WORLD`, and the `MPI_APPNUM` attribute tells the programs apart.
    pub fn then<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        np: usize,
        program: impl Into<PathBuf>,
        args: I,
    ) -> Job {
        self.more
            .push((np, program.into(), args.into_iter().map(Into::into).collect()));
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Job {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn timeout(mut self, t: Duration) -> Job {
        self.timeout = t;
        self
    }

    /// Launches the job and waits for it (at most the timeout; then the whole process group is killed).
    pub fn run(&self) -> Outcome {
        let mut cmd = self.command();
        let start = Instant::now();
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                return Outcome {
                    code: Some(-1),
                    timed_out: false,
                    elapsed: start.elapsed(),
                    ended_ms: now_ms(),
                    stdout: String::new(),
                    stderr: format!("could not start the job: {e} (is Open MPI installed?)"),
                };
            }
        };
        let pid = child.id() as i32;
        let mut out = child.stdout.take().expect("piped");
        let mut err = child.stderr.take().expect("piped");
        let t_out = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        let t_err = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let mut timed_out = false;
        let status = loop {
            if let Some(st) = child.try_wait().expect("wait for mpirun") {
                break st;
            }
            if start.elapsed() > self.timeout {
                timed_out = true;
                terminate_group(pid, &mut child);
                break child.wait().expect("wait for mpirun");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let elapsed = start.elapsed();
        let ended_ms = now_ms();
        // Whatever the job left behind in its process group goes too.
        kill_group(pid);
        Outcome {
            code: status.code(),
            timed_out,
            elapsed,
            ended_ms,
            stdout: t_out.join().unwrap_or_default(),
            stderr: t_err.join().unwrap_or_default(),
        }
    }
}

/// Whether `mpirun` is Open MPI's rather than MPICH's Hydra (`--version` says `HYDRA`); asked once.
pub fn is_open_mpi(mpirun: &str) -> bool {
    static OPEN_MPI: OnceLock<bool> = OnceLock::new();
    *OPEN_MPI.get_or_init(|| {
        Command::new(mpirun)
            .arg("--version")
            .output()
            .map(|o| !String::from_utf8_lossy(&o.stdout).contains("HYDRA"))
            .unwrap_or(true)
    })
}

/// Ends what is left of the process group the harness started (mpirun and its ranks): TERM, then KILL.
pub fn kill_group(pgid: i32) {
    // SAFETY: kill(2) with a negative pid signals the process group we created for the job; no memory involved.
    unsafe {
        if libc::kill(-pgid, libc::SIGTERM) == 0 {
            std::thread::sleep(Duration::from_millis(200));
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

/// Stops a job that overran its time: TERM to its process group, up to 10 s for the leader (a launcher script
/// tears down what it set up), then KILL to the group.
pub fn terminate_group(pgid: i32, child: &mut std::process::Child) {
    // SAFETY: kill(2) on the process group we created for the job.
    unsafe { libc::kill(-pgid, libc::SIGTERM) };
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: as above.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
}

/// Seconds a job may run: `SPMD_TEST_TIMEOUT` or 120.
pub fn default_timeout() -> u64 {
    std::env::var("SPMD_TEST_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120)
}

/// Launches `program` on `np` ranks (see [`Job`]).
pub fn mpirun(np: usize, program: impl Into<PathBuf>) -> Job {
    Job::new(np, program)
}

/// The path of an example binary built alongside the tests (`target/<profile>/examples/<name>`).
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    dir.join("examples").join(name)
}

// ---------------------------------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------------------------------

/// Which communicators a case runs on.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Comms {
    /// The world communicator only.
    World,
    /// The world, a duplicate, and a split into two halves with ranks reversed.
    All,
}

/// A test body run on every rank of a job.
#[derive(Clone, Copy)]
pub struct Case {
    pub name: &'static str,
    pub run: fn(&Comm) -> spmd::Result<()>,
    pub comms: Comms,
    /// Only run when named explicitly (failure tests that end their job).
    pub special: bool,
}

/// A case run on world, duplicate and split.
pub const fn case(name: &'static str, run: fn(&Comm) -> spmd::Result<()>) -> Case {
    Case {
        name,
        run,
        comms: Comms::All,
        special: false,
    }
}

/// A case run on the world communicator only.
pub const fn world_case(name: &'static str, run: fn(&Comm) -> spmd::Result<()>) -> Case {
    Case {
        name,
        run,
        comms: Comms::World,
        special: false,
    }
}

/// A case run only when a trial names it (it ends its job on purpose).
pub const fn special(name: &'static str, run: fn(&Comm) -> spmd::Result<()>) -> Case {
    Case {
        name,
        run,
        comms: Comms::World,
        special: true,
    }
}

static CURRENT: Mutex<String> = Mutex::new(String::new());

/// The child's universe while its cases run (for cases that wrap handles with `Comm::from_raw`).
static UNIVERSE: std::sync::atomic::AtomicPtr<spmd::Universe> = std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());

/// The universe of the running child rank (only inside a case, on the thread that runs cases).
pub fn universe() -> &'static spmd::Universe {
    let u = UNIVERSE.load(std::sync::atomic::Ordering::Relaxed);
    assert!(!u.is_null(), "no universe: not inside a case");
    // SAFETY: set by `child` to its universe, which lives until the child exits after its cases; cases run on
    // the thread that owns it.
    unsafe { &*u }
}

fn variants(c: &Case) -> &'static [&'static str] {
    match c.comms {
        Comms::World => &["world"],
        Comms::All => &["world", "dup", "split"],
    }
}

/// Runs as a child rank: initialises spmd and runs the cases named in `SPMD_TEST_CASES` (or all ordinary ones).
fn child(cases: &[Case]) -> ! {
    // `SPMD_TEST_LEVEL=multiple` starts MPI at MPI_THREAD_MULTIPLE (the threads cases).
    let level = match std::env::var("SPMD_TEST_LEVEL").as_deref() {
        Ok("multiple") => spmd::ThreadLevel::Multiple,
        _ => spmd::ThreadLevel::Single,
    };
    let universe = match spmd::init_thread(level) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("spmd-test: init failed: {e}");
            std::process::exit(3);
        }
    };
    UNIVERSE.store(
        &universe as *const spmd::Universe as *mut spmd::Universe,
        std::sync::atomic::Ordering::Relaxed,
    );
    let world = universe.world();
    // Name the case and communicator when a rank panics; spmd's hook then ends the job.
    let spmd_hook = std::panic::take_hook();
    let rank = world.rank();
    std::panic::set_hook(Box::new(move |info| {
        let current = CURRENT.lock().map(|c| c.clone()).unwrap_or_default();
        eprintln!("spmd-test: rank {rank} failed in case {current}");
        spmd_hook(info)
    }));
    let wanted = std::env::var("SPMD_TEST_CASES").unwrap_or_default();
    let wanted: Vec<&str> = wanted.split(',').filter(|s| !s.is_empty()).collect();
    let dup = world.dup().expect("dup");
    let split = world
        .split(Some((world.rank() % 2) as u32), -(world.rank() as i32))
        .expect("split")
        .expect("a colour");
    for c in cases {
        let named = wanted.contains(&c.name);
        if !(named || (wanted.is_empty() && !c.special)) {
            continue;
        }
        for &v in variants(c) {
            let comm = match v {
                "world" => &world,
                "dup" => &dup,
                _ => &split,
            };
            *CURRENT.lock().expect("lock") = format!("{} [{v}]", c.name);
            if let Err(e) = (c.run)(comm) {
                eprintln!("spmd-test: case {} [{v}] failed: {e}", c.name);
                universe.abort(1);
            }
            world.barrier().expect("barrier");
            if world.rank() == 0 {
                println!("spmd-test ok {} [{v}] np={}", c.name, world.size());
            }
        }
    }
    drop(split);
    drop(dup);
    drop(world);
    UNIVERSE.store(std::ptr::null_mut(), std::sync::atomic::Ordering::Relaxed);
    drop(universe);
    std::process::exit(0)
}

/// Runs `cases` at np 1..=4 as one job per rank count, plus the `extra` trials. Call from `main` of a test
/// binary with `harness = false`.
pub fn main(cases: &[Case], extra: Vec<libtest_mimic::Trial>) {
    main_with_sizes(cases, &[1, 2, 3, 4], extra)
}

/// Runs as a child rank if this process was started as one (see [`main`]); returns otherwise.
pub fn child_if_asked(cases: &[Case]) {
    if std::env::var_os("SPMD_TEST_CHILD").is_some() {
        child(cases);
    }
}

/// Checks that every case reported success on every communicator at `np` ranks.
pub fn check_cases_ok(cases: &[Case], wanted: Option<&[&str]>, np: usize, out: &Outcome) -> Result<(), String> {
    if !out.success() {
        return Err(out.describe());
    }
    for c in cases
        .iter()
        .filter(|c| !c.special && wanted.is_none_or(|w| w.contains(&c.name)))
    {
        for v in variants(c) {
            let line = format!("spmd-test ok {} [{v}] np={np}", c.name);
            if !out.stdout.contains(&line) {
                return Err(format!(
                    "case {} [{v}] did not report success\n{}",
                    c.name,
                    out.describe()
                ));
            }
        }
    }
    Ok(())
}

/// [`main`] with the given rank counts.
pub fn main_with_sizes(cases: &[Case], sizes: &[usize], extra: Vec<libtest_mimic::Trial>) {
    child_if_asked(cases);
    let mut args = libtest_mimic::Arguments::from_args();
    // One mpirun at a time: jobs of up to four ranks already fill a small machine.
    args.test_threads.get_or_insert(1);
    let names: Vec<&'static str> = cases.iter().filter(|c| !c.special).map(|c| c.name).collect();
    let expected: Vec<(String, &'static [&'static str])> = cases
        .iter()
        .filter(|c| !c.special)
        .map(|c| (c.name.to_string(), variants(c)))
        .collect();
    let mut trials = Vec::new();
    if !names.is_empty() {
        for &np in sizes.iter().filter(|&&np| np <= max_np()) {
            let expected = expected.clone();
            trials.push(libtest_mimic::Trial::test(format!("np{np}"), move || {
                let exe = std::env::current_exe().expect("test binary");
                let out = mpirun(np, exe).env("SPMD_TEST_CHILD", "1").run();
                println!(
                    "mpirun -n {np}: {} cases, {:.2} s",
                    expected.len(),
                    out.elapsed.as_secs_f64()
                );
                if !out.success() {
                    return Err(out.describe().into());
                }
                for (name, vs) in &expected {
                    for v in vs.iter() {
                        let line = format!("spmd-test ok {name} [{v}] np={np}");
                        if !out.stdout.contains(&line) {
                            return Err(format!("case {name} [{v}] did not report success\n{}", out.describe()).into());
                        }
                    }
                }
                Ok(())
            }));
        }
    }
    trials.extend(extra);
    libtest_mimic::run(&args, trials).exit();
}

/// The largest rank count to launch: `SPMD_TEST_MAX_NP` if set (MPICH busy-polls, so jobs with more ranks than
/// cores crawl under it), else unlimited.
pub fn max_np() -> usize {
    std::env::var("SPMD_TEST_MAX_NP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(usize::MAX)
}

/// Runs one special case at `np` ranks with a timeout.
pub fn run_special(np: usize, name: &str, timeout: Duration) -> Outcome {
    special_job(np, name).timeout(timeout).run()
}

/// The job that runs the named cases (comma-separated) at `np` ranks; add settings before running it.
pub fn special_job(np: usize, names: &str) -> Job {
    let exe = std::env::current_exe().expect("test binary");
    mpirun(np, exe)
        .env("SPMD_TEST_CHILD", "1")
        .env("SPMD_TEST_CASES", names)
}

/// Whether the launcher is Open MPI's (whose `--mca` settings the tests may use).
pub fn open_mpi_launcher() -> bool {
    let mpirun = std::env::var("SPMD_MPIRUN").unwrap_or_else(|_| "mpirun".into());
    Command::new(&mpirun)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("Open MPI"))
        .unwrap_or(false)
}

/// Checks a condition in a case, with a message naming the rank.
#[macro_export]
macro_rules! check {
    ($comm:expr, $cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(spmd::Error::new(
                spmd::ErrorKind::Other,
                format!("check failed on rank {} of {}: {}", $comm.rank(), $comm.size(), format!($($fmt)+)),
            ));
        }
    };
}
