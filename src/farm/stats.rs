//! What a farm operation measured: tasks, chunks and busy time per rank, and the load imbalance they show.

use serde::{Deserialize, Serialize};

use super::Schedule;

/// Measurements of one farm operation, the same on every rank (see [`crate::farm::Farm::stats`]).
///
/// `busy[r]` is the wall time rank `r` spent running tasks. The load imbalance is the largest busy time over
/// the mean among the ranks that compute: 1.0 is a perfect balance; 2.0 means the job waited for one rank as
/// long again as the average work.
///
/// ```
/// use spmd::farm::{FarmStats, Schedule};
///
/// let stats = FarmStats {
///     schedule: Schedule::StaticBlock,
///     root: 0,
///     root_works: true,
///     tasks: vec![50, 50],
///     chunks: vec![1, 1],
///     busy: vec![1.0, 3.0],
///     elapsed: 3.1,
/// };
/// assert_eq!(stats.imbalance(), 1.5);
/// assert_eq!(stats.total_tasks(), 100);
/// println!("{stats}"); // a table: one line per rank, then the totals
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FarmStats {
    /// The schedule that was followed.
    pub schedule: Schedule,
    /// The rank that coordinated.
    pub root: usize,
    /// Whether the root ran tasks too (always true on one rank).
    pub root_works: bool,
    /// Tasks run by each rank, indexed by rank in the farm's communicator.
    pub tasks: Vec<usize>,
    /// Chunks run by each rank (a rank's static share counts as one chunk).
    pub chunks: Vec<usize>,
    /// Seconds each rank spent running tasks.
    pub busy: Vec<f64>,
    /// Seconds from the start of the operation to its end, measured at the root.
    pub elapsed: f64,
}

impl FarmStats {
    /// The ranks that ran tasks or could have: all, less the root when it only coordinated.
    fn computing(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.busy.len()).filter(|&r| self.root_works || r != self.root)
    }

    /// Largest busy time over the mean busy time of the computing ranks (1.0 if nobody was busy).
    pub fn imbalance(&self) -> f64 {
        let busy: Vec<f64> = self.computing().map(|r| self.busy[r]).collect();
        let mean = busy.iter().sum::<f64>() / busy.len().max(1) as f64;
        let max = busy.iter().copied().fold(0.0, f64::max);
        if mean > 0.0 { max / mean } else { 1.0 }
    }

    /// The number of tasks run, over all ranks.
    pub fn total_tasks(&self) -> usize {
        self.tasks.iter().sum()
    }

    /// The sum of the busy times of all ranks, in seconds.
    pub fn total_busy(&self) -> f64 {
        self.busy.iter().sum()
    }
}

/// A table, one line per rank (tasks, chunks, busy seconds, share of the total busy time), then the schedule,
/// the imbalance and the elapsed time.
impl std::fmt::Display for FarmStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{:>5} {:>9} {:>7} {:>10} {:>6}",
            "rank", "tasks", "chunks", "busy s", "share"
        )?;
        let total = self.total_busy();
        for r in 0..self.busy.len() {
            let share = if total > 0.0 { 100.0 * self.busy[r] / total } else { 0.0 };
            let note = if r == self.root && !self.root_works {
                "  (root, coordinates)"
            } else {
                ""
            };
            writeln!(
                f,
                "{r:>5} {:>9} {:>7} {:>10.4} {share:>5.1}%{note}",
                self.tasks[r], self.chunks[r], self.busy[r]
            )?;
        }
        write!(
            f,
            "schedule {}: {} tasks, imbalance {:.3} (max/mean busy), elapsed {:.4} s",
            self.schedule,
            self.total_tasks(),
            self.imbalance(),
            self.elapsed
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imbalance_leaves_out_a_coordinating_root() {
        let mut s = FarmStats {
            schedule: Schedule::Dynamic { chunk: 1 },
            root: 0,
            root_works: false,
            tasks: vec![0, 10, 10],
            chunks: vec![0, 10, 10],
            busy: vec![0.0, 2.0, 2.0],
            elapsed: 2.0,
        };
        assert_eq!(s.imbalance(), 1.0);
        s.root_works = true;
        assert_eq!(s.imbalance(), 1.5);
        let table = s.to_string();
        assert!(table.contains("imbalance 1.500"), "{table}");
        assert_eq!(table.lines().count(), 5);
        s.busy = vec![0.0; 3];
        assert_eq!(s.imbalance(), 1.0);
    }
}
