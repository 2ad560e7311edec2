//! The runtime side of the heartbeat (`SPMD_HEARTBEAT`): reading the setting, starting the thread of
//! `sys::heartbeat` at init, and ending the job when a neighbour falls silent.

use super::{ThreadLevel, Universe};
use crate::error::Result;
use crate::sys as raw;

/// The silence limit of the heartbeat, from `SPMD_HEARTBEAT=secs` (unset, empty or 0: no heartbeat).
pub(super) fn limit() -> Option<f64> {
    std::env::var("SPMD_HEARTBEAT")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|x| x.is_finite() && *x > 0.0)
}

/// Exit status of a job ended by the heartbeat.
const SILENT_EXIT_CODE: i32 = 125;

/// Every rank's host, for the heartbeat's message.
static HOSTS: std::sync::OnceLock<(usize, Vec<String>)> = std::sync::OnceLock::new();

fn peer_silent(left: usize, seconds: f64) {
    let (me, hosts) = HOSTS.get().map(|(r, h)| (*r, h.as_slice())).unwrap_or((0, &[]));
    let host = |r: usize| hosts.get(r).map_or("?", String::as_str);
    let line = format!(
        "spmd: rank {me} ({}): nothing heard from rank {left} ({}) for {seconds:.1} s: its host may be frozen, cut \
         off or down; ending the job\n",
        host(me),
        host(left)
    );
    {
        use std::io::Write;
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
    raw::abort_world(SILENT_EXIT_CODE);
}

/// Starts the heartbeat if `SPMD_HEARTBEAT=secs` is set (collective): a thread per rank beats to the next rank
/// every quarter of the limit and ends the job if the previous rank is silent for longer than the limit.
pub(super) fn start(universe: &Universe) -> Result<Option<raw::heartbeat::Heartbeat>> {
    let Some(limit) = limit() else {
        return Ok(None);
    };
    let world = universe.world().agreed();
    let ok = universe.level == ThreadLevel::Multiple;
    let all_ok = world.all_reduce_scalar(u8::from(ok), crate::Op::Min)? == 1;
    if !all_ok {
        if world.rank() == 0 {
            eprintln!("spmd: SPMD_HEARTBEAT is set but MPI does not grant MPI_THREAD_MULTIPLE; no heartbeat");
        }
        return Ok(None);
    }
    let host = raw::processor_name().unwrap_or_else(|_| "?".into());
    let hosts = world.all_gather_obj(&host)?;
    let _ = HOSTS.set((world.rank(), hosts));
    let dup = universe.world_inner().raw.dup()?;
    let limit = std::time::Duration::try_from_secs_f64(limit).unwrap_or(std::time::Duration::from_secs(1 << 40));
    raw::heartbeat::start(dup, limit / 4, limit, peer_silent).map(Some)
}
