//! Partitions of `n` items over `p` parts: block, explicit counts, cyclic and block-cyclic. Pure arithmetic, no
//! MPI: which part owns an item, where it sits locally, and the counts and displacements that the variable-count
//! collectives take.

use std::ops::Range;

use crate::error::{ErrorKind, Result, fail};

/// How `n` items are dealt to `p` parts.
///
/// - **Block** (PETSc DMDA, Tpetra, mpi4py's inferred `Scatterv` counts): part k gets `n / p` items, plus one if
///   `k < n % p`, consecutive; 10 items over 4 parts: 3, 3, 2, 2 starting at 0, 3, 6, 8.
/// - **Counts**: consecutive blocks of given lengths (PETSc's `lx`, Tpetra's non-uniform maps).
/// - **Cyclic**: item i to part `i % p`.
/// - **Block-cyclic** (ScaLAPACK): blocks of `nb` items dealt round-robin; part lengths by NUMROC.
///
/// Parts may be empty (`n < p` is legal).
///
/// ```
/// use spmd::dist::Partition;
/// let b = Partition::block(10, 4);
/// assert_eq!(b.counts(), [3, 3, 2, 2]);
/// assert_eq!(b.displs(), [0, 3, 6, 8]);
/// assert_eq!(b.owner(7), 2);
/// assert_eq!(b.local_index(7), 1);
/// assert_eq!(b.range(2), Some(6..8));
///
/// let bc = Partition::block_cyclic(17, 3, 2)?;
/// assert_eq!(bc.counts(), [6, 6, 5]);
/// assert_eq!(bc.indices(1).collect::<Vec<_>>(), [2, 3, 8, 9, 14, 15]);
/// # Ok::<(), spmd::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    n: usize,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Block { p: usize },
    Counts { counts: Vec<usize>, starts: Vec<usize> },
    Cyclic { p: usize },
    BlockCyclic { p: usize, nb: usize },
}

impl Partition {
    /// `n` items in `p` consecutive blocks, the first `n % p` one item longer.
    ///
    /// # Panics
    /// If `p` is 0.
    pub fn block(n: usize, p: usize) -> Partition {
        assert!(p > 0, "a partition has at least one part");
        Partition {
            n,
            kind: Kind::Block { p },
        }
    }

    /// Consecutive blocks of the given lengths (one per part).
    ///
    /// ```
    /// let c = spmd::dist::Partition::from_counts(vec![4, 0, 2]);
    /// assert_eq!(c.len(), 6);
    /// assert_eq!(c.owner(5), 2);
    /// ```
    ///
    /// # Panics
    /// If `counts` is empty or its sum overflows `usize`.
    pub fn from_counts(counts: Vec<usize>) -> Partition {
        assert!(!counts.is_empty(), "a partition has at least one part");
        let mut starts = Vec::with_capacity(counts.len());
        let mut n = 0usize;
        for &c in &counts {
            starts.push(n);
            n = n
                .checked_add(c)
                .expect("the counts of a partition add up to at most usize::MAX");
        }
        Partition {
            n,
            kind: Kind::Counts { counts, starts },
        }
    }

    /// Item i to part `i % p`.
    ///
    /// ```
    /// let c = spmd::dist::Partition::cyclic(10, 4);
    /// assert_eq!(c.counts(), [3, 3, 2, 2]);
    /// assert_eq!(c.owner(6), 2);
    /// assert_eq!(c.local_index(6), 1);
    /// ```
    ///
    /// # Panics
    /// If `p` is 0.
    pub fn cyclic(n: usize, p: usize) -> Partition {
        assert!(p > 0, "a partition has at least one part");
        Partition {
            n,
            kind: Kind::Cyclic { p },
        }
    }

    /// Blocks of `nb` items dealt round-robin over `p` parts (ScaLAPACK's layout).
    ///
    /// ```
    /// let bc = spmd::dist::Partition::block_cyclic(10, 2, 3)?;
    /// assert_eq!(bc.counts(), [6, 4]);
    /// # Ok::<(), spmd::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] if `p` or `nb` is 0.
    pub fn block_cyclic(n: usize, p: usize, nb: usize) -> Result<Partition> {
        if p == 0 || nb == 0 {
            return fail(
                ErrorKind::InvalidArgument,
                format!("block_cyclic: {p} parts with blocks of {nb}: both must be at least 1"),
            );
        }
        Ok(Partition {
            n,
            kind: Kind::BlockCyclic { p, nb },
        })
    }

    /// The number of items.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether there are no items.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The number of parts.
    pub fn parts(&self) -> usize {
        match &self.kind {
            Kind::Block { p } | Kind::Cyclic { p } | Kind::BlockCyclic { p, .. } => *p,
            Kind::Counts { counts, .. } => counts.len(),
        }
    }

    fn check_part(&self, k: usize) {
        assert!(k < self.parts(), "part {k} of a partition into {} parts", self.parts());
    }

    fn check_item(&self, i: usize) {
        assert!(i < self.n, "item {i} of a partition of {} items", self.n);
    }

    /// The number of items of part `k`.
    ///
    /// # Panics
    /// If `k` is not a part.
    pub fn part_len(&self, k: usize) -> usize {
        self.check_part(k);
        let n = self.n;
        match &self.kind {
            Kind::Block { p } | Kind::Cyclic { p } => n / p + usize::from(k < n % p),
            Kind::Counts { counts, .. } => counts[k],
            Kind::BlockCyclic { p, nb } => {
                // ScaLAPACK's NUMROC.
                let blocks = n / nb;
                let mut len = (blocks / p) * nb;
                let extra = blocks % p;
                if k < extra {
                    len += nb;
                } else if k == extra {
                    len += n % nb;
                }
                len
            }
        }
    }

    /// The first item of part `k` in a consecutive partition (block, counts).
    fn start(&self, k: usize) -> Option<usize> {
        match &self.kind {
            Kind::Block { p } => {
                let (q, r) = (self.n / p, self.n % p);
                Some(k * q + k.min(r))
            }
            Kind::Counts { starts, .. } => Some(starts[k]),
            _ => None,
        }
    }

    /// The items of part `k` as one range, for consecutive partitions (block, counts); `None` for cyclic ones.
    ///
    /// # Panics
    /// If `k` is not a part.
    pub fn range(&self, k: usize) -> Option<Range<usize>> {
        self.check_part(k);
        self.start(k).map(|s| s..s + self.part_len(k))
    }

    /// The global indices of part `k`'s items, in local order.
    ///
    /// # Panics
    /// If `k` is not a part.
    pub fn indices(&self, k: usize) -> impl Iterator<Item = usize> + '_ {
        let len = self.part_len(k);
        (0..len).map(move |l| self.global_index(k, l))
    }

    /// The part that owns item `i`.
    ///
    /// # Panics
    /// If `i` is not an item.
    pub fn owner(&self, i: usize) -> usize {
        self.check_item(i);
        match &self.kind {
            Kind::Block { p } => {
                let (q, r) = (self.n / p, self.n % p);
                if i < r * (q + 1) {
                    i / (q + 1)
                } else {
                    r + (i - r * (q + 1)) / q
                }
            }
            Kind::Counts { starts, counts } => {
                // The last part whose start is at most i and that holds items.
                let k = starts.partition_point(|&s| s <= i) - 1;
                (0..=k).rev().find(|&j| counts[j] > 0 && starts[j] <= i).unwrap_or(k)
            }
            Kind::Cyclic { p } => i % p,
            Kind::BlockCyclic { p, nb } => (i / nb) % p,
        }
    }

    /// Where item `i` sits in its owner's local storage.
    ///
    /// # Panics
    /// If `i` is not an item.
    pub fn local_index(&self, i: usize) -> usize {
        let k = self.owner(i);
        match &self.kind {
            Kind::Block { .. } | Kind::Counts { .. } => i - self.start(k).expect("consecutive"),
            Kind::Cyclic { p } => i / p,
            Kind::BlockCyclic { p, nb } => (i / (nb * p)) * nb + i % nb,
        }
    }

    /// The global index of the `local`-th item of part `k`.
    ///
    /// # Panics
    /// If `k` is not a part or `local` not one of its items.
    pub fn global_index(&self, k: usize, local: usize) -> usize {
        assert!(
            local < self.part_len(k),
            "local item {local} of part {k}, which holds {}",
            self.part_len(k)
        );
        match &self.kind {
            Kind::Block { .. } | Kind::Counts { .. } => self.start(k).expect("consecutive") + local,
            Kind::Cyclic { p } => local * p + k,
            Kind::BlockCyclic { p, nb } => (local / nb) * nb * p + k * nb + local % nb,
        }
    }

    /// Every part's length, for the counts of the variable-count collectives.
    pub fn counts(&self) -> Vec<usize> {
        (0..self.parts()).map(|k| self.part_len(k)).collect()
    }

    /// Exclusive prefix sums of [`Partition::counts`]: where each part's items start when they are stored part
    /// after part (as a gather to one rank stores them).
    pub fn displs(&self) -> Vec<usize> {
        let mut off = 0;
        self.counts()
            .into_iter()
            .map(|c| {
                let d = off;
                off += c;
                d
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every partition of up to 40 items over up to 7 parts (block sizes up to 5): the parts cover every item
    /// exactly once, and owner / local index / global index agree with each other and with the counts.
    #[test]
    fn every_small_partition_is_consistent() {
        for n in 0..40 {
            for p in 1..8 {
                let mut all = vec![Partition::block(n, p), Partition::cyclic(n, p)];
                for nb in 1..6 {
                    all.push(Partition::block_cyclic(n, p, nb).unwrap());
                }
                let counts: Vec<usize> = (0..p).map(|k| (k * 7 + n) % 5).collect();
                all.push(Partition::from_counts(counts));
                for part in &all {
                    let mut seen = vec![0u8; part.len()];
                    assert_eq!(part.counts().iter().sum::<usize>(), part.len(), "{part:?}");
                    for k in 0..part.parts() {
                        let idx: Vec<usize> = part.indices(k).collect();
                        assert_eq!(idx.len(), part.part_len(k));
                        if let Some(r) = part.range(k) {
                            assert_eq!(idx, r.collect::<Vec<_>>(), "{part:?} part {k}");
                        }
                        for (l, &i) in idx.iter().enumerate() {
                            seen[i] += 1;
                            assert_eq!(part.owner(i), k, "{part:?}: owner of {i}");
                            assert_eq!(part.local_index(i), l, "{part:?}: local index of {i}");
                        }
                    }
                    assert!(seen.iter().all(|&s| s == 1), "{part:?}: {seen:?}");
                }
            }
        }
    }

    #[test]
    fn the_fields_rules() {
        let b = Partition::block(10, 4);
        assert_eq!((b.counts(), b.displs()), (vec![3, 3, 2, 2], vec![0, 3, 6, 8]));
        assert_eq!(Partition::block(3, 5).counts(), [1, 1, 1, 0, 0]);
        assert_eq!(Partition::block_cyclic(10, 2, 3).unwrap().counts(), [6, 4]);
        assert_eq!(Partition::block_cyclic(17, 3, 2).unwrap().counts(), [6, 6, 5]);
        assert_eq!(Partition::cyclic(10, 4).counts(), [3, 3, 2, 2]);
        let c = Partition::from_counts(vec![0, 3, 0, 2]);
        assert_eq!((c.owner(0), c.owner(3), c.displs()), (1, 3, vec![0, 0, 3, 3]));
        assert!(Partition::block_cyclic(5, 2, 0).is_err());
    }
}
