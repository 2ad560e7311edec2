//! Object collectives: serde values of any size on every rank, moved by MPI collectives on the communicator —
//! first the sizes (one `u64` per rank), then the bytes. Reductions gather the values and combine them in rank
//! order, so any closure works, commutative or not.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec;
use crate::comm::Comm;
use crate::error::{Error, ErrorKind, Result, fail};

/// Splits `all` into consecutive pieces of the given lengths.
fn split<'a>(all: &'a [u8], lens: &[u64]) -> Vec<&'a [u8]> {
    let mut off = 0usize;
    lens.iter()
        .map(|&l| {
            let s = &all[off..off + l as usize];
            off += l as usize;
            s
        })
        .collect()
}

/// Every rank's value, from their encodings stored one after the other.
fn decode_each<T: DeserializeOwned>(op: &str, all: &[u8], lens: &[u64]) -> Result<Vec<T>> {
    split(all, lens)
        .into_iter()
        .enumerate()
        .map(|(r, b)| decode_from(op, r, b))
        .collect()
}

fn decode_from<T: DeserializeOwned>(op: &str, source: usize, bytes: &[u8]) -> Result<T> {
    codec::decode_inline(bytes, &|| format!("{op}: the value from rank {source}"))
}

impl<'u> Comm<'u> {
    /// Broadcasts encoded bytes from `root` (lengths first).
    fn bcast_bytes(&self, op: &str, root: usize, mine: Option<Vec<u8>>) -> Result<Vec<u8>> {
        self.check_root(op, root)?;
        let raw = self;
        let mut len = mine.as_ref().map_or(0, |b| b.len() as u64);
        raw.broadcast_buf(root, &mut len)?;
        let mut bytes = match mine {
            Some(b) if self.rank() == root => b,
            _ => crate::sys::memory::byte_vec(len as usize),
        };
        raw.broadcast_buf(root, &mut bytes[..])?;
        Ok(bytes)
    }

    /// This rank's encoded value (or an error packet, and the error, if it cannot be encoded) and every rank's
    /// length.
    fn encode_and_lengths<T: Serialize>(&self, value: &T) -> Result<(Vec<u8>, Option<Error>, Vec<u64>)> {
        let (mine, err) = match codec::encode_inline(value) {
            Ok(b) => (b, None),
            Err(e) => (codec::error_packet_of(&e), Some(e)),
        };
        let lens = self.all_gather_buf_vec(&(mine.len() as u64))?;
        Ok((mine, err, lens))
    }

    /// Broadcasts a value from `root` to every rank: the root passes `Some(value)`, the others `None`; every rank
    /// gets the value.
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// use std::collections::HashMap;
    /// let config = (world.rank() == 0).then(|| HashMap::from([("steps".to_string(), 100u32)]));
    /// let config: HashMap<String, u32> = world.broadcast_obj(0, config)?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// On every rank: [`ErrorKind::InvalidArgument`] if the root passes `None`; [`ErrorKind::Encode`] (at the
    /// root) or the root's encode error; [`ErrorKind::Decode`]; [`ErrorKind::InvalidRank`].
    #[track_caller]
    pub fn broadcast_obj<T: Serialize + DeserializeOwned>(&self, root: usize, value: Option<T>) -> Result<T> {
        let _wait = self.watch("broadcast_obj");
        let op = "broadcast_obj";
        let mine = if self.rank() == root {
            Some(match &value {
                None => codec::error_packet(
                    ErrorKind::InvalidArgument,
                    &format!("{op}: the root (rank {root}) passed no value"),
                ),
                Some(v) => codec::encode_inline(v).unwrap_or_else(|e| codec::error_packet_of(&e)),
            })
        } else {
            None
        };
        let bytes = self.bcast_bytes(op, root, mine)?;
        if self.rank() == root
            && let Some(v) = value
            && codec::packet_error(&bytes).is_none()
        {
            return Ok(v);
        }
        decode_from(op, root, &bytes)
    }

    /// Gathers every rank's value at `root`, in rank order (`None` elsewhere).
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// let host = spmd::runtime::processor_name()?;
    /// if let Some(hosts) = world.gather_obj(0, &host)? {
    ///     println!("{hosts:?}");
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Encode`] on the rank whose value cannot be serialised, and at the root a decode error naming
    /// that rank; [`ErrorKind::InvalidRank`].
    #[track_caller]
    pub fn gather_obj<T: Serialize + DeserializeOwned>(&self, root: usize, value: &T) -> Result<Option<Vec<T>>> {
        let _wait = self.watch("gather_obj");
        let op = "gather_obj";
        self.check_root(op, root)?;
        let (mine, err, lens) = self.encode_and_lengths(value)?;
        let counts: Vec<usize> = lens.iter().map(|&l| l as usize).collect();
        if self.rank() != root {
            self.gather_varcount_buf_to(root, &mine[..])?;
            return match err {
                Some(e) => Err(e),
                None => Ok(None),
            };
        }
        let mut all = crate::sys::memory::byte_vec(counts.iter().sum());
        self.gather_varcount_buf_root(&mine[..], &mut all[..], &counts)?;
        if let Some(e) = err {
            return Err(e);
        }
        decode_each(op, &all, &lens).map(Some)
    }

    /// Scatters the root's items, one per rank in rank order: the root passes `Some(items)` with exactly size
    /// items, the others `None`; every rank gets its item.
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// let jobs = (world.rank() == 0).then(|| (0..world.size()).map(|r| format!("job {r}")).collect());
    /// let mine: String = world.scatter_obj(0, jobs)?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// On every rank: [`ErrorKind::InvalidArgument`] if the root passes `None` or a wrong number of items; the
    /// root's encode error; [`ErrorKind::Decode`]; [`ErrorKind::InvalidRank`].
    #[track_caller]
    pub fn scatter_obj<T: Serialize + DeserializeOwned>(&self, root: usize, items: Option<Vec<T>>) -> Result<T> {
        let _wait = self.watch("scatter_obj");
        let op = "scatter_obj";
        self.check_root(op, root)?;
        let p = self.size();
        let parts: Option<Vec<Vec<u8>>> = (self.rank() == root).then(|| {
            let problem = match &items {
                None => Some((
                    ErrorKind::InvalidArgument,
                    format!("{op}: the root (rank {root}) passed no items"),
                )),
                Some(v) if v.len() != p => Some((
                    ErrorKind::SizeMismatch,
                    format!("{op}: the root (rank {root}) passed {} items for {p} ranks", v.len()),
                )),
                Some(_) => None,
            };
            match (problem, &items) {
                (Some((kind, m)), _) => vec![codec::error_packet(kind, &m); p],
                (None, Some(v)) => v
                    .iter()
                    .map(|x| codec::encode_inline(x).unwrap_or_else(|e| codec::error_packet_of(&e)))
                    .collect(),
                (None, None) => unreachable!("no items is a problem"),
            }
        });
        let mut lens: Vec<u64> = parts
            .as_ref()
            .map_or(vec![0; p], |v| v.iter().map(|b| b.len() as u64).collect());
        self.broadcast_buf(root, &mut lens[..])?;
        let mut mine = crate::sys::memory::byte_vec(lens[self.rank()] as usize);
        match &parts {
            Some(v) => {
                let all: Vec<u8> = v.concat();
                let counts: Vec<usize> = lens.iter().map(|&l| l as usize).collect();
                self.scatter_varcount_buf_root(&all[..], &counts, &mut mine[..])?;
            }
            None => self.scatter_varcount_buf_from(root, &mut mine[..])?,
        }
        if self.rank() == root
            && let Some(mut v) = items
            && v.len() == p
            && codec::packet_error(&mine).is_none()
        {
            return Ok(v.swap_remove(root));
        }
        decode_from(op, root, &mine)
    }

    /// Gathers every rank's value on every rank, in rank order.
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// let all: Vec<(usize, String)> = world.all_gather_obj(&(world.rank(), "ready".to_string()))?;
    /// assert_eq!(all.len(), world.size());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Encode`] on the rank whose value cannot be serialised, a decode error naming it elsewhere.
    #[track_caller]
    pub fn all_gather_obj<T: Serialize + DeserializeOwned>(&self, value: &T) -> Result<Vec<T>> {
        let _wait = self.watch("all_gather_obj");
        let op = "all_gather_obj";
        let (mine, err, lens) = self.encode_and_lengths(value)?;
        let counts: Vec<usize> = lens.iter().map(|&l| l as usize).collect();
        let mut all = crate::sys::memory::byte_vec(counts.iter().sum());
        self.all_gather_varcount_buf(&mine[..], &mut all[..], &counts)?;
        if let Some(e) = err {
            return Err(e);
        }
        decode_each(op, &all, &lens)
    }

    /// Every rank sends `items[r]` to rank r and gets one item from every rank, in rank order.
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// let out: Vec<String> = (0..world.size()).map(|r| format!("{} -> {r}", world.rank())).collect();
    /// let inbox: Vec<String> = world.all_to_all_obj(out)?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] (on every rank) if a rank passes a wrong number of items; encode and decode
    /// errors.
    #[track_caller]
    pub fn all_to_all_obj<T: Serialize + DeserializeOwned>(&self, items: Vec<T>) -> Result<Vec<T>> {
        let _wait = self.watch("all_to_all_obj");
        let op = "all_to_all_obj";
        let p = self.size();
        let parts: Vec<Vec<u8>> = if items.len() != p {
            vec![
                codec::error_packet(
                    ErrorKind::SizeMismatch,
                    &format!("{op}: rank {} passed {} items for {p} ranks", self.rank(), items.len())
                );
                p
            ]
        } else {
            items
                .iter()
                .map(|x| codec::encode_inline(x).unwrap_or_else(|e| codec::error_packet_of(&e)))
                .collect()
        };
        let send_lens: Vec<u64> = parts.iter().map(|b| b.len() as u64).collect();
        let mut recv_lens = vec![0u64; p];
        self.all_to_all_buf(&send_lens[..], &mut recv_lens[..])?;
        let send_counts: Vec<usize> = send_lens.iter().map(|&l| l as usize).collect();
        let recv_counts: Vec<usize> = recv_lens.iter().map(|&l| l as usize).collect();
        let all_send: Vec<u8> = parts.concat();
        let mut all = crate::sys::memory::byte_vec(recv_counts.iter().sum());
        self.all_to_all_varcount_buf(&all_send[..], &send_counts, &mut all[..], &recv_counts)?;
        if items.len() != p {
            return fail(
                ErrorKind::SizeMismatch,
                format!("{op}: rank {} passed {} items for {p} ranks", self.rank(), items.len()),
            );
        }
        decode_each(op, &all, &recv_lens)
    }

    /// Combines every rank's value with `f` in rank order (`f(f(v0, v1), v2)...`) at the root: `Some(result)`
    /// there, `None` elsewhere. `f` need not be commutative.
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// let names = world.reduce_obj(0, vec![world.rank()], |mut a, b| { a.extend(b); a })?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Comm::gather_obj`].
    #[track_caller]
    pub fn reduce_obj<T, F>(&self, root: usize, value: T, f: F) -> Result<Option<T>>
    where
        T: Serialize + DeserializeOwned,
        F: Fn(T, T) -> T,
    {
        let _wait = self.watch("reduce_obj");
        Ok(self.gather_obj(root, &value)?.map(|all| fold(all, &f)))
    }

    /// Combines every rank's value with `f` in rank order; every rank gets the result.
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// let joined = world.all_reduce_obj(world.rank().to_string(), |a, b| a + "," + &b)?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Comm::all_gather_obj`].
    #[track_caller]
    pub fn all_reduce_obj<T, F>(&self, value: T, f: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: Fn(T, T) -> T,
    {
        let _wait = self.watch("all_reduce_obj");
        Ok(fold(self.all_gather_obj(&value)?, &f))
    }

    /// Inclusive prefix combination: rank r gets `f(...f(v0, v1)..., vr)`.
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// let path = world.scan_obj(vec![world.rank()], |mut a, b| { a.extend(b); a })?;
    /// assert_eq!(path.len(), world.rank() + 1);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Comm::all_gather_obj`].
    #[track_caller]
    pub fn scan_obj<T, F>(&self, value: T, f: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: Fn(T, T) -> T,
    {
        let _wait = self.watch("scan_obj");
        let mut all = self.all_gather_obj(&value)?;
        all.truncate(self.rank() + 1);
        Ok(fold(all, &f))
    }

    /// Exclusive prefix combination: rank r gets `f(...f(v0, v1)..., v(r-1))`, rank 0 gets `None`.
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// let before: Option<u64> = world.exscan_obj(10u64, |a, b| a + b)?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Comm::all_gather_obj`].
    #[track_caller]
    pub fn exscan_obj<T, F>(&self, value: T, f: F) -> Result<Option<T>>
    where
        T: Serialize + DeserializeOwned,
        F: Fn(T, T) -> T,
    {
        let _wait = self.watch("exscan_obj");
        let mut all = self.all_gather_obj(&value)?;
        all.truncate(self.rank());
        Ok((!all.is_empty()).then(|| fold(all, &f)))
    }

    /// Every rank passes one item per rank; rank r gets the items addressed to it combined with `f` in rank
    /// order of the senders.
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// let items: Vec<u64> = (0..world.size()).map(|r| r as u64).collect();
    /// let mine = world.reduce_scatter_obj(items, |a, b| a + b)?; // rank × size
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Comm::all_to_all_obj`].
    #[track_caller]
    pub fn reduce_scatter_obj<T, F>(&self, items: Vec<T>, f: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: Fn(T, T) -> T,
    {
        let _wait = self.watch("reduce_scatter_obj");
        Ok(fold(self.all_to_all_obj(items)?, &f))
    }
}

/// Combines values in order; the input is never empty (one value per rank).
pub(crate) fn fold<T>(all: Vec<T>, f: &impl Fn(T, T) -> T) -> T {
    let mut it = all.into_iter();
    let first = it.next().expect("one value per rank");
    it.fold(first, f)
}
