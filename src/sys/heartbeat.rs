//! A heartbeat of spmd's own on top of MPI: a thread per rank that sends a one-byte message to the next rank of a
//! ring every interval and watches the previous one, so that a rank whose host is frozen (stopped), cut off or
//! gone is noticed even while every other rank waits in MPI, where nothing else would ever time out.
//!
//! The thread calls MPI, so it runs only at `MPI_THREAD_MULTIPLE` (checked here, where the handle is moved to the
//! thread). It talks on a private duplicate of the world communicator, never touching the user's messages. At
//! shutdown each rank sends a farewell to the next and waits for the previous one's, so no beat is left unmatched
//! at `MPI_Finalize`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::p2p::Mode;
use super::{Desc, RawComm, RawRequest};
use crate::error::{Error, ErrorKind, Result};

const TAG: i32 = 1;
static BEAT: [u8; 1] = [0];
static BYE: [u8; 1] = [1];

/// A communicator handle that may move to the heartbeat thread.
struct Moved(RawComm);

// SAFETY: constructed only in `start`, after checking that MPI runs at MPI_THREAD_MULTIPLE, where any thread may
// call MPI on any communicator; the handle is used by that one thread only.
unsafe impl Send for Moved {}

/// The running heartbeat; [`Heartbeat::stop`] ends it cleanly.
pub(crate) struct Heartbeat {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Starts the heartbeat on `comm` (a private duplicate of the world): a beat every `interval`; if the previous
/// rank of the ring stays silent longer than `limit`, `silent(rank, seconds)` is called on the heartbeat thread
/// (it ends the job).
pub(crate) fn start(comm: RawComm, interval: Duration, limit: Duration, silent: fn(usize, f64)) -> Result<Heartbeat> {
    if super::query_thread() != super::thread_constants()[3] {
        return Err(Error::new(
            ErrorKind::ThreadLevel,
            "the heartbeat needs MPI_THREAD_MULTIPLE (its thread calls MPI)",
        ));
    }
    let (rank, size) = (comm.rank()?, comm.size()?);
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let moved = Moved(comm);
    let thread = std::thread::Builder::new()
        .name("spmd-heartbeat".into())
        .spawn(move || {
            let moved = moved;
            run(&moved.0, rank, size, interval, limit, &flag, silent)
        })
        .map_err(|e| Error::new(ErrorKind::Other, format!("heartbeat thread: {e}")))?;
    Ok(Heartbeat {
        stop,
        thread: Some(thread),
    })
}

fn run(
    comm: &RawComm,
    rank: usize,
    size: usize,
    interval: Duration,
    limit: Duration,
    stop: &AtomicBool,
    silent: fn(usize, f64),
) {
    if size < 2 {
        while !stop.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(20));
        }
        return;
    }
    let (right, left) = (((rank + 1) % size) as i32, ((rank + size - 1) % size) as i32);
    let beat = Desc::bytes(&BEAT).expect("one byte");
    let bye = Desc::bytes(&BYE).expect("one byte");
    let mut sends: Vec<RawRequest> = Vec::new();
    let mut last_seen = Instant::now();
    let mut next_beat = Instant::now();
    let (mut sent_bye, mut left_done) = (false, false);
    let nap = (interval / 4).min(Duration::from_millis(50));
    loop {
        let now = Instant::now();
        if stop.load(Ordering::Acquire) && !sent_bye {
            // SAFETY of the memory: `BYE` is static, alive for as long as MPI may read it.
            if let Ok(r) = comm.isend(&bye, right, TAG, Mode::Standard) {
                sends.push(r);
            }
            sent_bye = true;
        } else if !sent_bye && now >= next_beat {
            if let Ok(r) = comm.isend(&beat, right, TAG, Mode::Standard) {
                sends.push(r);
            }
            next_beat = now + interval;
        }
        sends.retain_mut(|r| !matches!(r.test(), Ok(Some(_)) | Err(_)));
        while !left_done {
            match comm.improbe(left, TAG) {
                Ok(Some((m, _))) => {
                    last_seen = Instant::now();
                    if let Ok((b, _)) = m.recv_bytes()
                        && b == BYE
                    {
                        left_done = true;
                    }
                }
                _ => break,
            }
        }
        if sent_bye && left_done && sends.is_empty() {
            return;
        }
        let quiet = last_seen.elapsed();
        if !left_done && quiet > limit {
            silent(left as usize, quiet.as_secs_f64());
            return;
        }
        std::thread::sleep(nap);
    }
}

impl Heartbeat {
    /// Says farewell to the next rank, waits for the previous one's farewell, and joins the thread (every rank
    /// calls it at shutdown).
    pub(crate) fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
