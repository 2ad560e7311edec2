//! Overlapping communication with computation: work in chunks, with a progress call between chunks.
//!
//! Open MPI (and MPICH by default) has no asynchronous progress: a large message moves only while some MPI
//! call runs on both sides. Starting an exchange, computing for a long time and then waiting leaves most of the
//! transfer to the wait. Testing the pending requests every few chunks of the computation moves the data while
//! the computation runs, so the final wait finds it arrived.

use std::ops::Range;

use crate::dist::HaloProgress;
use crate::error::Result;

/// Communication in flight that a compute loop can advance.
pub trait Progress {
    /// Advances the pending operations; `true` once all of them have completed.
    ///
    /// # Errors
    /// [`crate::ErrorKind::Mpi`] if MPI fails.
    fn test(&mut self) -> Result<bool>;
}

impl Progress for HaloProgress<'_, '_> {
    fn test(&mut self) -> Result<bool> {
        HaloProgress::test(self)
    }
}

/// What [`in_chunks`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overlap {
    /// Chunks of work run.
    pub chunks: usize,
    /// Progress calls made.
    pub tests: usize,
    /// The number of chunks after which the communication had completed, if it did before the work ended.
    pub done_after: Option<usize>,
}

/// Runs `work` over `0..n` in `chunks` consecutive ranges (the last ones one shorter when `chunks` does not
/// divide `n`), calling `progress.test()` after each until it reports completion.
///
/// ```no_run
/// # let universe = spmd::init()?; let world = universe.world();
/// use spmd::dist::{DArray, Ghost};
/// let grid = world.grid(&[0], &[false])?;
/// let mut u = DArray::<f64, _>::zeros(&grid, [1 << 22], Ghost::star(1024))?;
/// let mut interior_sum = 0.0;
/// u.exchange_halo_overlap(|owned, progress| {
///     let owned = owned.as_slice().unwrap();
///     spmd::hybrid::in_chunks(progress, owned.len(), 64, |r| interior_sum += owned[r].iter().sum::<f64>())
/// })??;
/// # Ok::<(), spmd::Error>(())
/// ```
///
/// # Errors
/// [`crate::ErrorKind::Mpi`] if a progress call fails (the remaining chunks are not run).
pub fn in_chunks<P: Progress + ?Sized>(
    progress: &mut P,
    n: usize,
    chunks: usize,
    mut work: impl FnMut(Range<usize>),
) -> Result<Overlap> {
    let chunks = chunks.max(1);
    let mut out = Overlap {
        chunks: 0,
        tests: 0,
        done_after: None,
    };
    for k in 0..chunks {
        let (a, b) = (k * n / chunks, (k + 1) * n / chunks);
        if a < b {
            work(a..b);
            out.chunks += 1;
        }
        if out.done_after.is_none() {
            out.tests += 1;
            if progress.test()? {
                out.done_after = Some(out.chunks);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct After(usize);
    impl Progress for After {
        fn test(&mut self) -> Result<bool> {
            self.0 = self.0.saturating_sub(1);
            Ok(self.0 == 0)
        }
    }

    #[test]
    fn covers_the_range_and_stops_testing_once_done() {
        let mut seen = Vec::new();
        let mut p = After(3);
        let o = in_chunks(&mut p, 10, 4, |r| seen.extend(r)).unwrap();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        assert_eq!(
            o,
            Overlap {
                chunks: 4,
                tests: 3,
                done_after: Some(3)
            }
        );
    }
}
