//! Hybrid mode: shared-memory threads inside each rank, sized to the CPUs the rank really has, plus what ranks
//! on one node can share.
//!
//! Inside a node, threads share memory and need no serialisation; between nodes, ranks exchange messages. The
//! usual layout is a few ranks per node and a few threads per rank. What goes wrong is silent: under
//! `mpirun -n 2` Open MPI binds each rank to one core, so rayon's default pool gets one thread; under
//! `--bind-to none` both ranks start a pool as large as the node, and an oversubscribed job starts `np × cores`
//! threads on the same cores.
//!
//! - [`Hybrid::new`] (collective) finds each rank's node, reads its CPU affinity, and builds a rayon pool with as
//!   many threads as the rank has CPUs to itself (CPUs shared with other ranks of the node count by share,
//!   at least one thread) — unless [`Threads::Exactly`] or `RAYON_NUM_THREADS` says otherwise. It also sets
//!   rayon's global pool to that size when nothing has used rayon yet, so plain `par_iter` calls agree.
//! - [`Hybrid::layout`] / [`Hybrid::report`]: every rank's host, node, local rank, CPU set and threads as one table
//!   on rank 0, with the mpirun command that would give a balanced layout on these hosts.
//! - [`NodeInfo`] (node index, number of nodes, local rank and size, from `MPI_Comm_split_type(SHARED)`);
//!   [`local_rank_hint`] reads the launchers' environment before MPI starts.
//! - [`NodeArray`]: one array per node in MPI-3 shared memory (`MPI_Win_allocate_shared`), allocated once per node
//!   and read by every rank of the node in place; writes happen in collective phases on disjoint ranges.
//! - Hierarchical collectives ([`Hybrid::all_reduce_buf`], [`Hybrid::broadcast_buf`]): node-local step over shared
//!   memory, leaders across nodes, node-local step back.
//! - Overlap: [`in_chunks`] runs work in pieces and advances pending communication between them (Open MPI has no
//!   asynchronous progress: a transfer moves only while some MPI call runs).
//! - [`sum_reproducible`]: a threaded sum whose bits do not depend on the number of threads.
//!
//! The threads compute; the calling (main) thread talks MPI. Worker threads that call MPI themselves need
//! `MPI_THREAD_MULTIPLE` and [`Comm::shared`].
//!
//! Not covered yet: a progress thread under `MPI_THREAD_MULTIPLE`, GPU affinity, NUMA placement of memory, and
//! hierarchical forms of the rooted and all-to-all collectives.
//!
//! ```no_run
//! use rayon::prelude::*;
//! use spmd::hybrid::{Hybrid, Threads};
//!
//! fn main() -> spmd::Result<()> {
//!     let universe = spmd::init()?;
//!     let world = universe.world();
//!     let hybrid = Hybrid::new(&world, Threads::Auto)?;
//!     hybrid.report()?; // the layout table, on rank 0
//!     let x: Vec<f64> = (0..1_000_000).map(|i| i as f64).collect();
//!     let local: f64 = hybrid.install(|| x.par_iter().map(|v| v.sqrt()).sum());
//!     let total = world.all_reduce_scalar(local, spmd::Op::Sum)?;
//!     if world.rank() == 0 {
//!         println!("{total}");
//!     }
//!     Ok(())
//! }
//! ```

mod collectives;
mod layout;
mod node_array;
mod overlap;

use std::fmt;

use crate::comm::Comm;
use crate::dist::Scalar;
use crate::error::{Error, ErrorKind, Result};

pub use collectives::Strategy;
pub use layout::{Layout, RankLayout};
pub use node_array::NodeArray;
pub use overlap::{Overlap, Progress, in_chunks};

/// How many threads each rank's pool gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Threads {
    /// `RAYON_NUM_THREADS` if set (and positive), else the CPUs the rank has to itself (at least one).
    #[default]
    Auto,
    /// Exactly this many (at least one).
    Exactly(usize),
}

impl Threads {
    /// The convention of spmd's examples: a `--threads T` flag, absent or 0 meaning [`Threads::Auto`].
    ///
    /// ```
    /// use spmd::hybrid::Threads;
    /// assert_eq!(Threads::from_flag(None), Threads::Auto);
    /// assert_eq!(Threads::from_flag(Some(0)), Threads::Auto);
    /// assert_eq!(Threads::from_flag(Some(2)), Threads::Exactly(2));
    /// ```
    pub fn from_flag(flag: Option<usize>) -> Threads {
        match flag {
            None | Some(0) => Threads::Auto,
            Some(n) => Threads::Exactly(n),
        }
    }
}

/// Where a rank's thread count came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ThreadSource {
    /// [`Threads::Exactly`].
    Explicit,
    /// The `RAYON_NUM_THREADS` environment variable.
    Environment,
    /// The rank's CPU affinity and the ranks sharing its node.
    Affinity,
}

impl fmt::Display for ThreadSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ThreadSource::Explicit => "explicit",
            ThreadSource::Environment => "RAYON_NUM_THREADS",
            ThreadSource::Affinity => "affinity",
        })
    }
}

/// Where a rank sits: its node and its place on it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeInfo {
    /// The host name (`MPI_Get_processor_name`).
    pub host: String,
    /// This node's index, 0 ≤ node < nodes, in the order of the nodes' lowest ranks.
    pub node: usize,
    /// How many nodes the communicator spans.
    pub nodes: usize,
    /// The rank among the ranks of this node (in the order of their ranks in the communicator).
    pub local_rank: usize,
    /// How many ranks of the communicator run on this node.
    pub local_size: usize,
}

/// The node-local rank that the launcher announces in the environment, readable before MPI starts (Open MPI's
/// `OMPI_COMM_WORLD_LOCAL_RANK`, MPICH's `MPI_LOCALRANKID`, Slurm's `SLURM_LOCALID`); `None` if none is set. Only
/// a hint (e.g. to pick a GPU or a scratch directory early); after init, [`Hybrid::node`] is authoritative.
///
/// ```
/// let hint = spmd::hybrid::local_rank_hint(); // Some(k) under mpirun
/// # let _ = hint;
/// ```
pub fn local_rank_hint() -> Option<usize> {
    ["OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"]
        .iter()
        .find_map(|k| std::env::var(k).ok()?.trim().parse().ok())
}

/// A rank's hybrid setup: its node, its CPUs, its thread pool, and the node and leader communicators the
/// hierarchical collectives use. Made by [`Hybrid::new`].
pub struct Hybrid<'u> {
    comm: Comm<'u>,
    node_comm: Comm<'u>,
    /// The communicator of the nodes' first ranks (`Some` on those ranks only).
    leaders: Option<Comm<'u>>,
    info: NodeInfo,
    /// Per rank of `comm`: its node index and its local rank.
    places: Vec<(usize, usize)>,
    cpus: Vec<usize>,
    share: f64,
    threads: usize,
    source: ThreadSource,
    global_pool: bool,
    pool: rayon::ThreadPool,
    /// The all-reduce decisions of `tune_all_reduce`: (up to bytes, hierarchical).
    tuned: Vec<(usize, bool)>,
}

impl<'u> Hybrid<'u> {
    /// Finds each rank's node and CPUs and builds its thread pool (collective over `comm`).
    ///
    /// The automatic count gives each rank the CPUs of its affinity mask, a CPU that `k` ranks of the node share
    /// counting `1/k`, rounded down, at least one: 1 thread per rank under `mpirun -n 2` on 2 cores (bound to a
    /// core each), 2 under `mpirun -n 1 --map-by slot:PE=2`, 1 under `--bind-to none -n 2`, and 1 (not 2) for
    /// each of 4 oversubscribed ranks.
    ///
    /// ```no_run
    /// # let universe = spmd::init()?; let world = universe.world();
    /// use spmd::hybrid::{Hybrid, Threads};
    /// let hybrid = Hybrid::new(&world, Threads::Auto)?;
    /// println!("rank {} on node {}: {} threads", world.rank(), hybrid.node().node, hybrid.threads());
    /// # Ok::<(), spmd::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] for `Threads::Exactly(0)`; [`ErrorKind::Mpi`] if MPI fails;
    /// [`ErrorKind::Other`] if the thread pool cannot be built.
    pub fn new(comm: &Comm<'u>, threads: Threads) -> Result<Hybrid<'u>> {
        if threads == Threads::Exactly(0) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "Hybrid::new: Threads::Exactly(0); a pool needs at least one thread",
            ));
        }
        let node_comm = comm.split_shared()?;
        let leader = node_comm.rank() == 0;
        let leaders = comm.split(leader.then_some(0), 0)?;
        let counts = leaders.as_ref().map(|l| (l.rank(), l.size()));
        let (node, nodes) = node_comm.broadcast_obj(0, counts)?;
        let host = crate::runtime::processor_name()?;
        let info = NodeInfo {
            host,
            node,
            nodes,
            local_rank: node_comm.rank(),
            local_size: node_comm.size(),
        };
        let places = comm.all_gather_obj(&(node, info.local_rank))?;

        let cpus = crate::sys::affinity::cpus();
        let node_cpus = node_comm.all_gather_obj(&cpus)?;
        let share = cpu_share(&cpus, &node_cpus);
        let env = std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&n| n > 0);
        let (threads, source) = match (threads, env) {
            (Threads::Exactly(n), _) => (n, ThreadSource::Explicit),
            (Threads::Auto, Some(n)) => (n, ThreadSource::Environment),
            (Threads::Auto, None) => ((share + 1e-9).floor().max(1.0) as usize, ThreadSource::Affinity),
        };
        let rank = comm.rank();
        let global_pool = builder(threads, rank).build_global().is_ok() || rayon::current_num_threads() == threads;
        let pool = builder(threads, rank)
            .build()
            .map_err(|e| Error::new(ErrorKind::Other, format!("Hybrid::new: thread pool: {e}")))?;
        Ok(Hybrid {
            comm: comm.clone(),
            node_comm,
            leaders,
            info,
            places,
            cpus,
            share,
            threads,
            source,
            global_pool,
            pool,
            tuned: Vec::new(),
        })
    }

    /// The number of threads of this rank's pool.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Where the thread count came from.
    pub fn thread_source(&self) -> ThreadSource {
        self.source
    }

    /// The CPUs this rank may run on (its affinity mask, as the launcher's binding set it).
    pub fn cpus(&self) -> &[usize] {
        &self.cpus
    }

    /// The CPUs this rank has to itself: each CPU of its mask counted `1/k` if `k` ranks of the node share it.
    pub fn cpu_share(&self) -> f64 {
        self.share
    }

    /// This rank's node and place on it.
    pub fn node(&self) -> &NodeInfo {
        &self.info
    }

    /// The ranks of this node (`MPI_Comm_split_type(SHARED)`), in the order of their ranks in the communicator.
    pub fn node_comm(&self) -> &Comm<'u> {
        &self.node_comm
    }

    /// The communicator of the nodes' first ranks, one per node; `None` on the other ranks.
    pub fn leaders(&self) -> Option<&Comm<'u>> {
        self.leaders.as_ref()
    }

    /// The communicator this setup was made on.
    pub fn comm(&self) -> &Comm<'u> {
        &self.comm
    }

    /// This rank's pool.
    pub fn pool(&self) -> &rayon::ThreadPool {
        &self.pool
    }

    /// Whether rayon's global pool has this rank's thread count too (it does unless something used rayon before
    /// [`Hybrid::new`] with another count); if not, run parallel code inside [`Hybrid::install`].
    pub fn global_pool_matches(&self) -> bool {
        self.global_pool
    }

    /// Runs `f` in this rank's pool: rayon's parallel iterators inside it use the pool's threads.
    ///
    /// ```no_run
    /// # let universe = spmd::init()?; let world = universe.world();
    /// use rayon::prelude::*;
    /// let hybrid = spmd::hybrid::Hybrid::new(&world, spmd::hybrid::Threads::Auto)?;
    /// let squares: Vec<u64> = hybrid.install(|| (0..1000u64).into_par_iter().map(|i| i * i).collect());
    /// # Ok::<(), spmd::Error>(())
    /// ```
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool.install(f)
    }

    /// The sum of `data` on this rank's threads, with the same bits for any number of threads
    /// ([`sum_reproducible`] in this rank's pool).
    pub fn sum_reproducible<T: Scalar>(&self, data: &[T]) -> T {
        sum_reproducible(&self.pool, data)
    }
}

impl fmt::Debug for Hybrid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hybrid")
            .field("node", &self.info)
            .field("cpus", &self.cpus)
            .field("threads", &self.threads)
            .field("source", &self.source)
            .finish()
    }
}

/// A pool builder for `threads` threads named after the rank.
fn builder(threads: usize, rank: usize) -> rayon::ThreadPoolBuilder {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(move |i| format!("spmd-r{rank}-t{i}"))
}

/// The CPUs of `mine` counted by share: a CPU in the masks of `k` ranks of the node counts `1/k`.
fn cpu_share(mine: &[usize], node: &[Vec<usize>]) -> f64 {
    mine.iter()
        .map(|c| {
            let k = node.iter().filter(|m| m.contains(c)).count().max(1);
            1.0 / k as f64
        })
        .sum()
}

/// Elements per piece of [`sum_reproducible`]: each piece is summed in order by one thread.
const PIECE: usize = 4096;

/// The sum of `data` on the threads of `pool`, with the same bits for every number of threads: the data is cut
/// into fixed pieces of 4096 elements, each summed in order, and the piece sums are combined pairwise in a fixed
/// order.
///
/// ```
/// let data: Vec<f64> = (0..100_000).map(|i| 1.0 / (i as f64 + 1.0)).collect();
/// let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
/// let three = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
/// let a = spmd::hybrid::sum_reproducible(&one, &data);
/// let b = spmd::hybrid::sum_reproducible(&three, &data);
/// assert_eq!(a.to_bits(), b.to_bits());
/// ```
pub fn sum_reproducible<T: Scalar>(pool: &rayon::ThreadPool, data: &[T]) -> T {
    use rayon::prelude::*;
    let sums: Vec<T> = pool.install(|| {
        data.par_chunks(PIECE)
            .map(|c| c.iter().fold(T::ZERO, |a, &b| a + b))
            .collect()
    });
    crate::dist::pairwise(&sums)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_counts_shared_cpus_by_fraction() {
        // Bound to a core each.
        assert_eq!(cpu_share(&[0], &[vec![0], vec![1]]), 1.0);
        // Unbound, two ranks on two cores.
        assert_eq!(cpu_share(&[0, 1], &[vec![0, 1], vec![0, 1]]), 1.0);
        // One rank with two cores.
        assert_eq!(cpu_share(&[0, 1], &[vec![0, 1]]), 2.0);
        // Four ranks on two cores.
        assert_eq!(cpu_share(&[0, 1], &vec![vec![0, 1]; 4]), 0.5);
    }

    #[test]
    fn reproducible_sum_is_the_same_for_any_thread_count() {
        let data: Vec<f64> = (0..50_000).map(|i| ((i * 7919) % 1000) as f64 * 1e-3 + 1e10).collect();
        let bits: Vec<u64> = (1..=4)
            .map(|t| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap();
                sum_reproducible(&pool, &data).to_bits()
            })
            .collect();
        assert!(bits.windows(2).all(|w| w[0] == w[1]), "{bits:?}");
    }
}
