//! The price of processes over threads: the same `f64` data moved between two ranks as a buffer, as a serde
//! object, as an object holding an `Oob` array, and handed to another thread of the same process without moving.
//!
//! ```text
//! mpirun -n 2 target/release/examples/serialization_cost
//! ```
//!
//! Ranks pair up (0 with 1, 2 with 3, ...; a rank without a partner exchanges with itself) and exchange each payload
//! with `sendrecv` (`sendrecv_buf` for the buffer, `sendrecv_obj` for the objects). The object forms serialise: a
//! `Vec<f64>` is encoded by bincode into a byte buffer and decoded on arrival; an `Oob<f64>` inside an object travels
//! as its own raw message next to the encoded rest, with no encoding of the floats. The thread form passes an
//! `Arc<Vec<f64>>` to a worker thread and back through channels: the data never moves. The table shows the median
//! time per exchange and per byte; every received payload is checked against the sent one.

use std::sync::Arc;
use std::sync::mpsc;

use clap::Parser;
use serde::{Deserialize, Serialize};
use spmd::{Oob, Op};

/// Time per byte of moving data as a buffer, a serde object, an Oob object, and between threads.
#[derive(Parser)]
struct Args {
    /// Largest payload in bytes (sizes go up by 16× from 8 bytes).
    #[arg(long, default_value_t = 64 << 20)]
    max_bytes: usize,
    /// Repetitions per size and form (the median is reported).
    #[arg(long, default_value_t = 15)]
    reps: usize,
    /// Threads per rank (accepted for the gallery's common flags; this program uses one worker thread).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

#[derive(Serialize, Deserialize)]
struct WithOob {
    step: u64,
    data: Oob<f64>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> spmd::Result<()> {
    let args = Args::parse();
    let universe = spmd::init()?;
    let world = universe.world();
    let (rank, p) = (world.rank(), world.size());
    let peer = if (rank ^ 1) < p { rank ^ 1 } else { rank };
    let t_start = universe.time();

    // A worker thread that returns whatever it is handed.
    let (to_worker, worker_in) = mpsc::channel::<Arc<Vec<f64>>>();
    let (worker_out, from_worker) = mpsc::channel::<Arc<Vec<f64>>>();
    let worker = std::thread::spawn(move || {
        for v in worker_in {
            let _ = worker_out.send(v);
        }
    });

    if rank == 0 {
        println!(
            "median µs per exchange (µs per MiB in brackets), {} repetitions; pairs of ranks exchange with sendrecv",
            args.reps
        );
        println!(
            "{:>10} {:>22} {:>22} {:>22} {:>22}",
            "bytes", "buffer", "serde object", "Oob object", "thread handover"
        );
    }
    let mut n = 1usize;
    while n * 8 <= args.max_bytes.max(8) {
        let data: Vec<f64> = (0..n).map(|i| (i as f64) * 0.5 + rank as f64).collect();
        let expect: Vec<f64> = (0..n).map(|i| (i as f64) * 0.5 + peer as f64).collect();
        let mut times = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
        let mut recv = vec![0.0f64; n];
        let shared = Arc::new(data.clone());
        for _ in 0..args.reps {
            world.barrier()?;
            let t = universe.time();
            world.sendrecv_buf(peer, 1, &data[..], peer, 1, &mut recv[..])?;
            times[0].push(universe.time() - t);
            if recv != expect {
                return Err(format!("rank {rank}: buffer payload of {n} doubles differs").into());
            }

            world.barrier()?;
            let t = universe.time();
            let (got, _): (Vec<f64>, _) = world.sendrecv_obj(peer, 2, &data, peer, 2)?;
            times[1].push(universe.time() - t);
            if got != expect {
                return Err(format!("rank {rank}: object payload of {n} doubles differs").into());
            }

            let msg = WithOob {
                step: n as u64,
                data: Oob::new(data.clone()),
            };
            world.barrier()?;
            let t = universe.time();
            let (got, _): (WithOob, _) = world.sendrecv_obj(peer, 3, &msg, peer, 3)?;
            times[2].push(universe.time() - t);
            if got.step != n as u64 || *got.data != expect {
                return Err(format!("rank {rank}: Oob payload of {n} doubles differs").into());
            }

            let t = universe.time();
            to_worker.send(Arc::clone(&shared)).expect("worker alive");
            let back = from_worker.recv().expect("worker alive");
            times[3].push(universe.time() - t);
            if !Arc::ptr_eq(&back, &shared) {
                return Err("the thread got a copy, not the same data".into());
            }
        }
        // The slowest rank's median for each form.
        let mut cells = Vec::new();
        for t in times {
            let m = world.all_reduce_scalar(median(t), Op::Max)?;
            cells.push(format!(
                "{:.2} ({:.0})",
                m * 1e6,
                m * 1e6 / (n * 8) as f64 * (1 << 20) as f64
            ));
        }
        if rank == 0 {
            println!(
                "{:>10} {:>22} {:>22} {:>22} {:>22}",
                n * 8,
                cells[0],
                cells[1],
                cells[2],
                cells[3]
            );
        }
        n *= 16;
    }
    drop(to_worker);
    let _ = worker.join();
    let elapsed = world.all_reduce_scalar(universe.time() - t_start, Op::Max)?;
    if rank == 0 {
        println!("check: every payload arrived intact; the thread received the very same allocation");
        println!("summary: kernel=serialization_cost np={p} threads=1 elapsed_s={elapsed:.4} check=passed");
    }
    let _ = args.threads;
    Ok(())
}
