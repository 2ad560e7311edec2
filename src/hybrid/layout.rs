//! The layout report: every rank's host, node, CPUs and threads as one table, and the mpirun command that would
//! balance ranks and threads on these hosts.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Hybrid, ThreadSource};
use crate::error::Result;

/// One rank's line of the [`Layout`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RankLayout {
    /// Its rank in the communicator.
    pub rank: usize,
    /// Its host name.
    pub host: String,
    /// Its node index.
    pub node: usize,
    /// Its rank on the node.
    pub local_rank: usize,
    /// The CPUs of its affinity mask.
    pub cpus: Vec<usize>,
    /// The CPUs it has to itself (shared CPUs counted by share).
    pub cpu_share: f64,
    /// Its pool's thread count.
    pub threads: usize,
    /// Where that count came from.
    pub source: ThreadSource,
    /// The CPUs online on its host.
    pub host_cpus: usize,
}

/// Every rank's placement, gathered on one rank by [`Hybrid::layout`]; `Display` prints the table and advice.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Layout {
    /// One line per rank, in rank order.
    pub ranks: Vec<RankLayout>,
}

impl Layout {
    /// The number of nodes.
    pub fn nodes(&self) -> usize {
        self.ranks.iter().map(|r| r.node + 1).max().unwrap_or(0)
    }

    /// Ranks whose threads outnumber the CPUs they have to themselves.
    pub fn oversubscribed(&self) -> Vec<usize> {
        self.ranks
            .iter()
            .filter(|r| r.threads as f64 > r.cpu_share.max(1.0) + 1e-9)
            .map(|r| r.rank)
            .collect()
    }

    /// The mpirun command (Open MPI's options) that would place as many ranks per node as now, each bound to an
    /// equal share of its node's cores, with a matching thread count.
    pub fn balanced_command(&self) -> String {
        let mut per_node: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
        for r in &self.ranks {
            let e = per_node.entry(r.node).or_insert((0, r.host_cpus));
            e.0 += 1;
        }
        let ppn = per_node.values().map(|v| v.0).max().unwrap_or(1);
        let cores = per_node.values().map(|v| v.1).min().unwrap_or(1).max(1);
        let nodes = per_node.len().max(1);
        let hostfile = if nodes > 1 { " --hostfile HOSTFILE" } else { "" };
        if ppn > cores {
            return format!(
                "mpirun -n {n}{hostfile} --map-by ppr:{cores}:node:PE=1 -x RAYON_NUM_THREADS=1 PROGRAM   \
                 (at most {cores} ranks per node: more ranks than cores share them)",
                n = nodes * cores
            );
        }
        let pe = cores / ppn;
        format!(
            "mpirun -n {n}{hostfile} --map-by ppr:{ppn}:node:PE={pe} -x RAYON_NUM_THREADS={pe} PROGRAM",
            n = nodes * ppn
        )
    }
}

/// `0-3,6` for CPUs 0, 1, 2, 3, 6.
fn cpu_list(cpus: &[usize]) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        out.push(if j > i {
            format!("{}-{}", cpus[i], cpus[j])
        } else {
            cpus[i].to_string()
        });
        i = j + 1;
    }
    out.join(",")
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hosts: std::collections::BTreeSet<&str> = self.ranks.iter().map(|r| r.host.as_str()).collect();
        writeln!(
            f,
            "{} ranks on {} node(s) ({})",
            self.ranks.len(),
            self.nodes(),
            hosts.into_iter().collect::<Vec<_>>().join(", ")
        )?;
        writeln!(
            f,
            "{:>5}  {:<16} {:>4} {:>5}  {:<12} {:>6} {:>7}  from",
            "rank", "host", "node", "local", "cpus", "share", "threads"
        )?;
        for r in &self.ranks {
            writeln!(
                f,
                "{:>5}  {:<16} {:>4} {:>5}  {:<12} {:>6.2} {:>7}  {}",
                r.rank,
                r.host,
                r.node,
                r.local_rank,
                cpu_list(&r.cpus),
                r.cpu_share,
                r.threads,
                r.source
            )?;
        }
        let over = self.oversubscribed();
        if !over.is_empty() {
            writeln!(f, "oversubscribed: ranks {over:?} run more threads than they have CPUs")?;
        }
        write!(f, "balanced layout: {}", self.balanced_command())
    }
}

/// The CPUs online on this host (`/sys/devices/system/cpu/online`, else the available parallelism).
fn host_cpus() -> usize {
    let parsed = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|s| {
            s.trim()
                .split(',')
                .map(|part| match part.split_once('-') {
                    Some((a, b)) => Some(b.parse::<usize>().ok()? + 1 - a.parse::<usize>().ok()?),
                    None => part.parse::<usize>().ok().map(|_| 1),
                })
                .sum::<Option<usize>>()
        });
    parsed.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

impl Hybrid<'_> {
    /// Every rank's placement, on rank `root` of the communicator (`None` elsewhere; collective).
    ///
    /// ```no_run
    /// # let universe = spmd::init()?; let world = universe.world();
    /// let hybrid = spmd::hybrid::Hybrid::new(&world, spmd::hybrid::Threads::Auto)?;
    /// if let Some(layout) = hybrid.layout(0)? {
    ///     assert_eq!(layout.ranks.len(), world.size());
    /// }
    /// # Ok::<(), spmd::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidArgument`] for a root outside the communicator; [`crate::ErrorKind::Mpi`] if
    /// MPI fails.
    pub fn layout(&self, root: usize) -> Result<Option<Layout>> {
        let me = RankLayout {
            rank: self.comm.rank(),
            host: self.info.host.clone(),
            node: self.info.node,
            local_rank: self.info.local_rank,
            cpus: self.cpus.clone(),
            cpu_share: self.share,
            threads: self.threads,
            source: self.source,
            host_cpus: host_cpus(),
        };
        Ok(self.comm.gather_obj(root, &me)?.map(|ranks| Layout { ranks }))
    }

    /// Prints the [`Layout`] table on rank 0 (collective).
    ///
    /// ```text
    /// 2 ranks on 1 node(s) (box)
    ///  rank  host             node local  cpus          share threads  from
    ///     0  box                 0     0  0              1.00       1  affinity
    ///     1  box                 0     1  1              1.00       1  affinity
    /// balanced layout: mpirun -n 2 --map-by ppr:2:node:PE=1 -x RAYON_NUM_THREADS=1 PROGRAM
    /// ```
    ///
    /// # Errors
    /// [`crate::ErrorKind::Mpi`] if MPI fails.
    pub fn report(&self) -> Result<()> {
        if let Some(layout) = self.layout(0)? {
            println!("{layout}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rank(rank: usize, node: usize, cpus: Vec<usize>, share: f64, threads: usize) -> RankLayout {
        RankLayout {
            rank,
            host: format!("h{node}"),
            node,
            local_rank: 0,
            cpus,
            cpu_share: share,
            threads,
            source: ThreadSource::Affinity,
            host_cpus: 8,
        }
    }

    #[test]
    fn cpu_lists_are_compressed() {
        assert_eq!(cpu_list(&[0, 1, 2, 3, 6]), "0-3,6");
        assert_eq!(cpu_list(&[5]), "5");
        assert_eq!(cpu_list(&[]), "");
    }

    #[test]
    fn advice_splits_cores_between_ranks() {
        let l = Layout {
            ranks: vec![
                rank(0, 0, vec![0], 1.0, 1),
                rank(1, 0, vec![1], 1.0, 1),
                rank(2, 1, vec![0], 1.0, 1),
            ],
        };
        assert_eq!(l.nodes(), 2);
        assert_eq!(
            l.balanced_command(),
            "mpirun -n 4 --hostfile HOSTFILE --map-by ppr:2:node:PE=4 -x RAYON_NUM_THREADS=4 PROGRAM"
        );
        let over = Layout {
            ranks: vec![rank(0, 0, vec![0, 1], 0.5, 2)],
        };
        assert_eq!(over.oversubscribed(), vec![0]);
    }
}
