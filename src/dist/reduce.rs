//! Reductions over the owned parts of a distributed array: sum, dot, norms, minimum and maximum with their
//! global index, and a reproducible sum whose bits do not depend on the number of threads.

use std::ops::{Add, Mul};

use ndarray::{ArrayView1, Axis, Dimension, IntoDimension, s};
use rayon::prelude::*;

use super::darray::{DArray, dim_from};
use crate::buffer::Data;
use crate::collective::Op;
use crate::error::{ErrorKind, Result, fail};

/// Element types the reductions work on: MPI's predefined integer and floating-point types.
pub trait Scalar: Data + Copy + PartialOrd + Add<Output = Self> + Mul<Output = Self> {
    /// The additive identity.
    const ZERO: Self;
    /// The value as `f64` (for norms).
    fn to_f64(self) -> f64;
}

macro_rules! scalar {
    ($($t:ty),*) => {$(
        impl Scalar for $t {
            const ZERO: Self = 0 as $t;
            #[inline]
            fn to_f64(self) -> f64 {
                self as f64
            }
        }
    )*};
}
scalar!(f32, f64, i8, i16, i32, i64, u8, u16, u32, u64);

/// Elements per piece of the reproducible sum: each piece is summed in order by one thread.
const PIECE: usize = 4096;

/// Sums in a fixed pairwise order (the same for any number of threads).
pub(crate) fn pairwise<T: Scalar>(v: &[T]) -> T {
    match v.len() {
        0 => T::ZERO,
        1 => v[0],
        n => pairwise(&v[..n / 2]) + pairwise(&v[n / 2..]),
    }
}

impl<T: Scalar, D: Dimension> DArray<'_, T, D> {
    /// The sum of all elements, on every rank (collective: a local sum, then `MPI_Allreduce`). For
    /// floating-point data the bits may change with the number of ranks; see [`DArray::sum_reproducible`].
    ///
    /// ```no_run
    /// # let universe = spmd::init()?; let world = universe.world();
    /// use spmd::dist::{DArray, Ghost};
    /// let grid = world.grid(&[0, 0], &[false, false])?;
    /// let a = DArray::from_fn(&grid, [100, 100], Ghost::star(1), |(i, j)| (i + j) as f64)?;
    /// assert_eq!(a.sum()?, 990_000.0);
    /// # Ok::<(), spmd::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Mpi`] if MPI fails.
    pub fn sum(&self) -> Result<T> {
        let local = self.owned().iter().fold(T::ZERO, |a, &b| a + b);
        self.grid.lib().all_reduce_scalar(local, Op::Sum)
    }

    /// The sum with a fixed order of additions: each rank cuts its block into pieces of whole rows (at most
    /// 4096 elements each), sums the pieces on the rank's rayon threads, combines the piece sums pairwise in
    /// order, and every rank adds the ranks' sums in rank order. The result has the same bits for any number of
    /// threads at a fixed number of ranks (and layout).
    ///
    /// ```no_run
    /// # let universe = spmd::init()?; let world = universe.world();
    /// use spmd::dist::{DArray, Ghost};
    /// let grid = world.grid(&[0], &[false])?;
    /// let a = DArray::from_fn(&grid, [1_000_000], Ghost::none(), |i| 1.0 / (i as f64 + 1.0))?;
    /// let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    /// let four = rayon::ThreadPoolBuilder::new().num_threads(4).build().unwrap();
    /// let s1 = a.sum_reproducible_in(&one)?;
    /// let s4 = a.sum_reproducible_in(&four)?;
    /// assert_eq!(s1.to_bits(), s4.to_bits());
    /// assert_eq!(a.sum_reproducible()?.to_bits(), s1.to_bits()); // rayon's global pool
    /// # Ok::<(), spmd::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Mpi`] if MPI fails.
    pub fn sum_reproducible(&self) -> Result<T> {
        self.reproducible(None)
    }

    /// [`DArray::sum_reproducible`] on the threads of `pool`.
    ///
    /// # Errors
    /// [`ErrorKind::Mpi`] if MPI fails.
    pub fn sum_reproducible_in(&self, pool: &rayon::ThreadPool) -> Result<T> {
        self.reproducible(Some(pool))
    }

    fn reproducible(&self, pool: Option<&rayon::ThreadPool>) -> Result<T> {
        let owned = self.owned();
        let last = Axis(owned.ndim() - 1);
        let lanes: Vec<ArrayView1<'_, T>> = owned.lanes(last).into_iter().collect();
        let pieces: Vec<(usize, usize)> = lanes
            .iter()
            .enumerate()
            .flat_map(|(k, l)| (0..l.len()).step_by(PIECE).map(move |a| (k, a)))
            .collect();
        let sum_pieces = || -> Vec<T> {
            pieces
                .par_iter()
                .map(|&(k, a)| {
                    let l = &lanes[k];
                    l.slice(s![a..(a + PIECE).min(l.len())])
                        .iter()
                        .fold(T::ZERO, |x, &y| x + y)
                })
                .collect()
        };
        let sums = match pool {
            Some(p) => p.install(sum_pieces),
            None => sum_pieces(),
        };
        let mine = [pairwise(&sums)];
        let mut all = vec![T::ZERO; self.grid.size()];
        self.grid.lib().all_gather_buf(&mine, &mut all)?;
        Ok(all.into_iter().fold(T::ZERO, |a, b| a + b))
    }

    /// The dot product `sum(self * other)` of two arrays with the same layout, on every rank (collective).
    ///
    /// ```no_run
    /// # let universe = spmd::init()?; let world = universe.world();
    /// use spmd::dist::{DArray, Ghost};
    /// let grid = world.grid(&[0], &[false])?;
    /// let x = DArray::from_fn(&grid, [10], Ghost::none(), |i| i as f64)?;
    /// assert_eq!(x.dot(&x)?, 285.0);
    /// # Ok::<(), spmd::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] if the layouts differ (global shape or owned block); [`ErrorKind::Mpi`]
    /// if MPI fails.
    pub fn dot(&self, other: &DArray<'_, T, D>) -> Result<T> {
        if self.shape != other.shape || self.start != other.start || self.owned != other.owned {
            return fail(
                ErrorKind::InvalidArgument,
                format!(
                    "dot: arrays of different layouts (shape {:?} block {:?}+{:?} vs shape {:?} block {:?}+{:?})",
                    self.shape, self.start, self.owned, other.shape, other.start, other.owned
                ),
            );
        }
        let local = ndarray::Zip::from(&self.owned())
            .and(&other.owned())
            .fold(T::ZERO, |a, &x, &y| a + x * y);
        self.grid.lib().all_reduce_scalar(local, Op::Sum)
    }

    /// The Euclidean norm, computed in `f64`, on every rank (collective).
    ///
    /// # Errors
    /// [`ErrorKind::Mpi`] if MPI fails.
    pub fn norm2(&self) -> Result<f64> {
        let local = self.owned().iter().fold(0.0, |a, &x| a + x.to_f64() * x.to_f64());
        Ok(self.grid.lib().all_reduce_scalar(local, Op::Sum)?.sqrt())
    }

    /// The largest absolute value, on every rank (collective); 0 for an empty array.
    ///
    /// # Errors
    /// [`ErrorKind::Mpi`] if MPI fails.
    pub fn norm_inf(&self) -> Result<f64> {
        let local = self.owned().iter().fold(0.0f64, |a, &x| a.max(x.to_f64().abs()));
        self.grid.lib().all_reduce_scalar(local, Op::Max)
    }

    /// The smallest element and its global index (the first in C order among equal ones), on every rank
    /// (collective); `None` for an empty array. NaNs are never the minimum.
    ///
    /// ```no_run
    /// # let universe = spmd::init()?; let world = universe.world();
    /// use spmd::dist::{DArray, Ghost};
    /// let grid = world.grid(&[0, 0], &[false, false])?;
    /// let a = DArray::from_fn(&grid, [8, 8], Ghost::none(), |(i, j)| ((i as f64) - 3.0).powi(2) + j as f64)?;
    /// assert_eq!(a.min_loc()?, Some((0.0, (3, 0))));
    /// # Ok::<(), spmd::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Mpi`] if MPI fails.
    pub fn min_loc(&self) -> Result<Option<(T, D::Pattern)>> {
        self.extreme(|a, b| a < b)
    }

    /// The largest element and its global index (the first in C order among equal ones), on every rank
    /// (collective); `None` for an empty array.
    ///
    /// # Errors
    /// [`ErrorKind::Mpi`] if MPI fails.
    pub fn max_loc(&self) -> Result<Option<(T, D::Pattern)>> {
        self.extreme(|a, b| a > b)
    }

    fn extreme(&self, better: impl Fn(T, T) -> bool) -> Result<Option<(T, D::Pattern)>> {
        let flat = |idx: &[usize]| -> u64 {
            idx.iter()
                .enumerate()
                .fold(0u64, |a, (d, &i)| a * self.shape[d] as u64 + (i + self.start[d]) as u64)
        };
        let mut best: Option<(T, u64)> = None;
        for (idx, &x) in self.owned().indexed_iter() {
            let f = flat(idx.into_dimension().slice());
            match best {
                Some((b, _)) if !better(x, b) => {}
                _ if best.is_none() && x.partial_cmp(&x).is_none() => {}
                _ => best = Some((x, f)),
            }
        }
        let p = self.grid.size();
        let (mut vals, mut keys) = (vec![T::ZERO; p], vec![[0u64; 2]; p]);
        let mine_v = [best.map_or(T::ZERO, |b| b.0)];
        let mine_k = [[best.is_some() as u64, best.map_or(0, |b| b.1)]];
        self.grid.lib().all_gather_buf(&mine_v, &mut vals)?;
        self.grid
            .lib()
            .all_gather_buf(&mine_k.concat()[..], keys.as_flattened_mut())?;
        let mut out: Option<(T, u64)> = None;
        for r in 0..p {
            if keys[r][0] == 0 {
                continue;
            }
            let (v, f) = (vals[r], keys[r][1]);
            out = match out {
                None => Some((v, f)),
                Some((b, bf)) if better(v, b) || (!better(b, v) && f < bf) => Some((v, f)),
                keep => keep,
            };
        }
        Ok(out.map(|(v, mut f)| {
            let mut idx = vec![0; self.shape.len()];
            for d in (0..self.shape.len()).rev() {
                idx[d] = (f % self.shape[d] as u64) as usize;
                f /= self.shape[d] as u64;
            }
            (v, dim_from::<D>(&idx).into_pattern())
        }))
    }
}
