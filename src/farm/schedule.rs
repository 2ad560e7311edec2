//! How a farm hands out task indices: the [`Schedule`] a user picks, and the bookkeeping of the root that follows
//! it (pure logic, unit-tested here without MPI).

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};

/// How the tasks of a farm are divided among the ranks that compute.
///
/// "Computing ranks" are every rank of the farm's communicator, less the root when it only coordinates (see
/// [`crate::farm::Farm::root_works`]). Whatever the schedule, every task runs exactly once and results come back
/// in task order.
///
/// ```
/// use spmd::farm::Schedule;
///
/// let s: Schedule = "guided:2".parse().unwrap();
/// assert_eq!(s, Schedule::Guided { min_chunk: 2 });
/// assert_eq!(Schedule::Dynamic { chunk: 4 }.to_string(), "dynamic:4");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Schedule {
    /// Each computing rank gets one contiguous block of tasks, decided up front (the first `n % p` blocks are one
    /// task longer). No coordination while running; poor when task costs vary along the index.
    StaticBlock,
    /// Computing rank `k` of `p` gets tasks `k, k + p, k + 2p, ...`, decided up front. Spreads a smooth variation
    /// of cost evenly; cannot react to costs that vary at random.
    StaticCyclic,
    /// The root hands out `chunk` consecutive tasks at a time to whichever rank asks next: balances any
    /// irregularity, at the price of one request per chunk.
    Dynamic {
        /// Tasks per request (at least 1).
        chunk: usize,
    },
    /// Like [`Schedule::Dynamic`], with chunks shrinking with the remaining work:
    /// `max(min_chunk, remaining / (2p))`, where `p` counts the chunks held at once: two per computing rank,
    /// since a worker holds its next chunk while it runs one. Few requests early, fine balance at the end.
    Guided {
        /// The smallest chunk handed out (at least 1).
        min_chunk: usize,
    },
}

impl Default for Schedule {
    /// [`Schedule::Guided`] with `min_chunk: 1`: few messages, good balance whatever the costs.
    fn default() -> Self {
        Schedule::Guided { min_chunk: 1 }
    }
}

impl Schedule {
    /// All four schedules, with `chunk` for the dynamic and guided ones (for comparisons).
    pub fn all(chunk: usize) -> [Schedule; 4] {
        [
            Schedule::StaticBlock,
            Schedule::StaticCyclic,
            Schedule::Dynamic { chunk },
            Schedule::Guided { min_chunk: chunk },
        ]
    }

    /// Checks the parameters: chunk sizes are at least 1.
    pub(crate) fn validate(self) -> Result<()> {
        match self {
            Schedule::Dynamic { chunk: 0 } | Schedule::Guided { min_chunk: 0 } => Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("farm: schedule {self} needs a chunk size of at least 1"),
            )),
            _ => Ok(()),
        }
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Schedule::StaticBlock => f.write_str("static-block"),
            Schedule::StaticCyclic => f.write_str("static-cyclic"),
            Schedule::Dynamic { chunk } => write!(f, "dynamic:{chunk}"),
            Schedule::Guided { min_chunk } => write!(f, "guided:{min_chunk}"),
        }
    }
}

impl std::str::FromStr for Schedule {
    type Err = Error;

    /// Parses `static-block`, `static-cyclic`, `dynamic[:CHUNK]`, `guided[:MIN_CHUNK]` (chunk 1 by default), the
    /// forms [`Schedule`]'s `Display` writes.
    fn from_str(s: &str) -> Result<Schedule> {
        let (name, arg) = match s.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (s, None),
        };
        let chunk = match arg {
            None => Ok(1),
            Some(a) => a.parse::<usize>().map_err(|_| format!("bad chunk size {a:?}")),
        };
        let parsed = match (name, chunk) {
            ("static-block" | "block", _) if arg.is_none() => Ok(Schedule::StaticBlock),
            ("static-cyclic" | "cyclic", _) if arg.is_none() => Ok(Schedule::StaticCyclic),
            ("dynamic", Ok(chunk)) => Ok(Schedule::Dynamic { chunk }),
            ("guided", Ok(min_chunk)) => Ok(Schedule::Guided { min_chunk }),
            (_, Err(e)) => Err(e),
            _ => Err("expected static-block, static-cyclic, dynamic[:CHUNK] or guided[:MIN_CHUNK]".to_string()),
        };
        parsed
            .map_err(|e| Error::new(ErrorKind::InvalidArgument, format!("schedule {s:?}: {e}")))
            .and_then(|sch| sch.validate().map(|()| sch))
    }
}

/// A set of task indices handed out at once: `start, start + step, ...` (`count` of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Chunk {
    pub(crate) start: u64,
    pub(crate) step: u64,
    pub(crate) count: u64,
}

impl Chunk {
    /// Consecutive indices `start..start + count`.
    pub(crate) fn range(start: usize, count: usize) -> Chunk {
        Chunk {
            start: start as u64,
            step: 1,
            count: count as u64,
        }
    }

    /// The task indices, in increasing order.
    pub(crate) fn indices(self) -> impl ExactSizeIterator<Item = usize> + Clone {
        (0..self.count as usize).map(move |k| (self.start + k as u64 * self.step) as usize)
    }

    /// At most `max` of the indices, from the `skip`-th on.
    pub(crate) fn part(self, skip: usize, max: usize) -> Chunk {
        let skip = skip.min(self.len());
        Chunk {
            start: self.start + skip as u64 * self.step,
            step: self.step,
            count: (self.len() - skip).min(max.max(1)) as u64,
        }
    }

    pub(crate) fn len(self) -> usize {
        self.count as usize
    }
}

/// The root's side of a schedule: which chunk the computing rank in `slot` (0-based among the computing ranks)
/// runs next.
#[derive(Debug)]
pub(crate) struct Dealer {
    schedule: Schedule,
    n: usize,
    slots: usize,
    /// Next index for the dynamic schedules.
    next: usize,
    /// Whether each slot has had its static share.
    dealt: Vec<bool>,
    /// Chunks dealt out at once (the guided divisor): `slots` unless a slot holds several.
    held: usize,
}

impl Dealer {
    /// A dealer of `n` tasks among `slots` computing ranks (at least 1).
    pub(crate) fn new(schedule: Schedule, n: usize, slots: usize) -> Dealer {
        let slots = slots.max(1);
        Dealer {
            schedule,
            n,
            slots,
            next: 0,
            dealt: vec![false; slots],
            held: slots,
        }
    }

    /// Each slot holds up to `depth` chunks at once (guided chunks shrink accordingly).
    pub(crate) fn holding(mut self, depth: usize) -> Dealer {
        self.held = self.slots * depth.max(1);
        self
    }

    /// The next chunk for `slot`, or `None` when it has nothing more to do.
    pub(crate) fn next_for(&mut self, slot: usize) -> Option<Chunk> {
        let (n, p) = (self.n, self.slots);
        let chunk = match self.schedule {
            Schedule::StaticBlock | Schedule::StaticCyclic => {
                if std::mem::replace(&mut self.dealt[slot], true) {
                    return None;
                }
                if self.schedule == Schedule::StaticBlock {
                    let (q, r) = (n / p, n % p);
                    Chunk::range(slot * q + slot.min(r), q + usize::from(slot < r))
                } else {
                    Chunk {
                        start: slot as u64,
                        step: p as u64,
                        count: n.saturating_sub(slot).div_ceil(p) as u64,
                    }
                }
            }
            Schedule::Dynamic { chunk } => {
                let c = chunk.max(1).min(n - self.next);
                self.next += c;
                Chunk::range(self.next - c, c)
            }
            Schedule::Guided { min_chunk } => {
                let remaining = n - self.next;
                let c = (remaining / (2 * self.held)).max(min_chunk.max(1)).min(remaining);
                self.next += c;
                Chunk::range(self.next - c, c)
            }
        };
        (chunk.count > 0).then_some(chunk)
    }

    /// Stops dealing: every later request gets `None`.
    pub(crate) fn cancel(&mut self) {
        self.next = self.n;
        self.dealt.fill(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deals every chunk, slots asking in turn, and returns (slot, chunk) in the order dealt.
    fn deal(s: Schedule, n: usize, p: usize) -> Vec<(usize, Chunk)> {
        let mut d = Dealer::new(s, n, p);
        let mut out = Vec::new();
        let mut live: Vec<usize> = (0..p).collect();
        while !live.is_empty() {
            live.retain(|&slot| match d.next_for(slot) {
                Some(c) => {
                    out.push((slot, c));
                    true
                }
                None => false,
            });
        }
        out
    }

    #[test]
    fn every_index_exactly_once() {
        for s in Schedule::all(1).into_iter().chain(Schedule::all(3)) {
            for n in [0, 1, 2, 3, 5, 7, 64, 1000] {
                for p in 1..=5 {
                    let mut seen = vec![0u32; n];
                    for (_, c) in deal(s, n, p) {
                        assert!(c.count > 0, "{s} n={n} p={p}: empty chunk");
                        c.indices().for_each(|i| seen[i] += 1);
                    }
                    assert!(seen.iter().all(|&k| k == 1), "{s} n={n} p={p}: {seen:?}");
                }
            }
        }
    }

    #[test]
    fn static_shares() {
        let block = deal(Schedule::StaticBlock, 10, 3);
        let ranges: Vec<Vec<usize>> = block.iter().map(|(_, c)| c.indices().collect()).collect();
        assert_eq!(ranges, vec![vec![0, 1, 2, 3], vec![4, 5, 6], vec![7, 8, 9]]);
        let cyclic = deal(Schedule::StaticCyclic, 7, 3);
        let sets: Vec<Vec<usize>> = cyclic.iter().map(|(_, c)| c.indices().collect()).collect();
        assert_eq!(sets, vec![vec![0, 3, 6], vec![1, 4], vec![2, 5]]);
        // Fewer tasks than ranks: the last slots get nothing.
        assert_eq!(deal(Schedule::StaticBlock, 2, 4).len(), 2);
        assert_eq!(deal(Schedule::StaticCyclic, 2, 4).len(), 2);
    }

    #[test]
    fn guided_shrinks_to_the_minimum() {
        let sizes: Vec<usize> = deal(Schedule::Guided { min_chunk: 2 }, 100, 2)
            .iter()
            .map(|(_, c)| c.len())
            .collect();
        assert_eq!(sizes[0], 25);
        let held = Dealer::new(Schedule::Guided { min_chunk: 1 }, 100, 2)
            .holding(2)
            .next_for(0);
        assert_eq!(held.map(|c| c.len()), Some(12));
        assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "{sizes:?}");
        // Chunks never go below the minimum, except the remainder at the very end.
        assert!(sizes[..sizes.len() - 1].iter().all(|&c| c >= 2), "{sizes:?}");
        assert_eq!(sizes.iter().sum::<usize>(), 100);
        let dynamic: Vec<usize> = deal(Schedule::Dynamic { chunk: 4 }, 10, 2)
            .iter()
            .map(|(_, c)| c.len())
            .collect();
        assert_eq!(dynamic, vec![4, 4, 2]);
    }

    #[test]
    fn parts_of_a_chunk() {
        let c = Chunk {
            start: 1,
            step: 3,
            count: 5,
        };
        let parts: Vec<Vec<usize>> = (0..5).step_by(2).map(|k| c.part(k, 2).indices().collect()).collect();
        assert_eq!(parts, vec![vec![1, 4], vec![7, 10], vec![13]]);
        assert_eq!(c.part(5, 2).len(), 0);
    }

    #[test]
    fn cancel_stops_dealing() {
        let mut d = Dealer::new(Schedule::Dynamic { chunk: 1 }, 10, 2);
        assert!(d.next_for(0).is_some());
        d.cancel();
        assert!(d.next_for(1).is_none());
    }

    #[test]
    fn parse_and_print() {
        for s in Schedule::all(1).into_iter().chain(Schedule::all(7)) {
            assert_eq!(s.to_string().parse::<Schedule>().unwrap(), s);
        }
        assert_eq!("dynamic".parse::<Schedule>().unwrap(), Schedule::Dynamic { chunk: 1 });
        assert_eq!("cyclic".parse::<Schedule>().unwrap(), Schedule::StaticCyclic);
        for bad in ["dynamic:0", "guided:x", "static-block:3", "spiral", ""] {
            let e = bad.parse::<Schedule>().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad}");
        }
    }
}
