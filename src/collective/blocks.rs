//! Buffer collectives with one block per rank: broadcast, gather, scatter, all-gather, all-to-all. One driver
//! ([`Comm::blocks_driver`]) serves the four block shapes.

use super::{Local, not_contiguous, size_error};
use crate::buffer::{Buffer, BufferMut, View, ViewMut};
use crate::comm::Comm;
use crate::error::Result;
use crate::request;
use crate::sys::Desc;
use crate::sys::coll::BlockKind;

impl<'u> Comm<'u> {
    /// Broadcasts `buf` from `root` to every rank (`MPI_Bcast`); every rank passes a buffer of the same length.
    /// Any layout works, strided ndarray views included.
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// let mut params = [0.0f64; 3];
    /// if world.rank() == 0 {
    ///     params = [0.1, 2.0, 1e-6];
    /// }
    /// world.broadcast_buf(0, &mut params)?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidRank`] for a bad root; [`crate::ErrorKind::SizeMismatch`] on every rank if the
    /// lengths differ; [`crate::ErrorKind::Mpi`].
    #[track_caller]
    pub fn broadcast_buf<B: BufferMut + ?Sized>(&self, root: usize, buf: &mut B) -> Result<()> {
        let _wait = self.watch("broadcast_buf");
        let op = "broadcast_buf";
        self.check_root(op, root)?;
        let v = buf.view_mut();
        let nb = self.agree(op, "buffer lengths", v.len, None)?;
        let d = Desc::of_mut(&v)?;
        request::run_collective(op, nb, |nb| self.inner.raw.bcast(&d, root as i32, nb))
    }

    /// The one driver of the block collectives: checks the shapes, agrees on the block length `n`, and makes the
    /// call. `send`/`recv` are absent where the shape has none on this rank.
    pub(crate) fn blocks_driver(
        &self,
        op: &str,
        kind: BlockKind,
        root: usize,
        send: Option<&View>,
        recv: Option<&ViewMut>,
    ) -> Result<()> {
        let p = self.size();
        let is_root = self.rank() == root;
        // The block length n each rank contributes or receives, and what this rank alone can see is wrong.
        let (n, local): (usize, Local) = match kind {
            BlockKind::Gather => {
                let n = send.map_or(0, |v| v.len);
                let local = if !is_root {
                    None
                } else {
                    match recv {
                        None => Some(size_error(op, "the root must pass a receive buffer".into())),
                        Some(r) if !r.is_contiguous() => Some(not_contiguous(op, "root's receive buffer")),
                        Some(r) if Some(r.len) != n.checked_mul(p) => Some(size_error(
                            op,
                            format!(
                                "the root's receive buffer holds {} elements, {p} ranks × {n} are needed",
                                r.len
                            ),
                        )),
                        Some(_) => None,
                    }
                };
                (n, local)
            }
            BlockKind::Scatter => {
                let n = recv.map_or(0, |v| v.len);
                let local = if !is_root {
                    None
                } else {
                    match send {
                        None => Some(size_error(op, "the root must pass a send buffer".into())),
                        Some(s) if !s.is_contiguous() => Some(not_contiguous(op, "root's send buffer")),
                        Some(s) if Some(s.len) != n.checked_mul(p) => Some(size_error(
                            op,
                            format!(
                                "the root's send buffer holds {} elements, {p} ranks × {n} are needed",
                                s.len
                            ),
                        )),
                        Some(_) => None,
                    }
                };
                (n, local)
            }
            BlockKind::Allgather => {
                let (s, r) = (send.expect("all-gather sends"), recv.expect("all-gather receives"));
                let local = if !r.is_contiguous() {
                    Some(not_contiguous(op, "receive buffer"))
                } else if Some(r.len) != s.len.checked_mul(p) {
                    Some(size_error(
                        op,
                        format!(
                            "the receive buffer holds {} elements, {p} × {} are needed",
                            r.len, s.len
                        ),
                    ))
                } else {
                    None
                };
                (s.len, local)
            }
            BlockKind::Alltoall => {
                let (s, r) = (send.expect("all-to-all sends"), recv.expect("all-to-all receives"));
                let n = s.len / p;
                let local = if !s.is_contiguous() || !r.is_contiguous() {
                    Some(not_contiguous(op, "send and receive buffers"))
                } else if s.len % p != 0 || r.len != s.len {
                    Some(size_error(
                        op,
                        format!(
                            "send ({}) and receive ({}) buffers must both hold {p} equal blocks",
                            s.len, r.len
                        ),
                    ))
                } else {
                    None
                };
                (n, local)
            }
        };
        let nb = self.agree(op, "block lengths", n, local)?;
        // The side with `size` blocks is described as its first block (a derived datatype beyond `int` elements,
        // whose extent is the whole block); the other side as the whole buffer.
        let sd = match send {
            Some(v) if matches!(kind, BlockKind::Scatter | BlockKind::Alltoall) => Some(Desc::block_of(v, 0, n)?),
            Some(v) => Some(Desc::of(v)?),
            None => None,
        };
        let rd = match recv {
            Some(v) if matches!(kind, BlockKind::Scatter) => Some(Desc::of_mut(v)?),
            Some(_) if kind == BlockKind::Gather && !is_root => None,
            Some(v) => Some(Desc::block(v, 0, n)?),
            None => None,
        };
        let sd = if kind == BlockKind::Scatter && !is_root {
            None
        } else {
            sd
        };
        request::run_collective(op, nb, |nb| {
            self.inner.raw.blocks(kind, sd.as_ref(), rd.as_ref(), root as i32, nb)
        })
    }

    /// Gathers every rank's `send` (all of the same length n) into the root's `recv` (n × size elements, in rank
    /// order, `MPI_Gather`). Non-roots pass `None` (or use [`Comm::gather_buf_to`]).
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// let mut all = vec![0u64; world.size()];
    /// let recv = (world.rank() == 0).then_some(&mut all[..]);
    /// world.gather_buf(0, &(world.rank() as u64), recv)?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidRank`]; [`crate::ErrorKind::SizeMismatch`] on every rank if lengths disagree or
    /// the root's buffer is missing or of the wrong length; [`crate::ErrorKind::NotContiguous`] for a strided
    /// receive buffer.
    #[track_caller]
    pub fn gather_buf<S, R>(&self, root: usize, send: &S, recv: Option<&mut R>) -> Result<()>
    where
        S: Buffer + ?Sized,
        R: BufferMut<Item = S::Item> + ?Sized,
    {
        let _wait = self.watch("gather_buf");
        self.check_root("gather_buf", root)?;
        let sv = send.view();
        let rv = recv.map(|r| r.view_mut());
        self.blocks_driver("gather_buf", BlockKind::Gather, root, Some(&sv), rv.as_ref())
    }

    /// [`Comm::gather_buf`] called by the root, which receives into `recv`.
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// if world.rank() == 0 {
    ///     let mut all = vec![0i32; world.size()];
    ///     world.gather_buf_root(&0i32, &mut all)?;
    /// } else {
    ///     world.gather_buf_to(0, &(world.rank() as i32))?;
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Comm::gather_buf`].
    #[track_caller]
    pub fn gather_buf_root<S, R>(&self, send: &S, recv: &mut R) -> Result<()>
    where
        S: Buffer + ?Sized,
        R: BufferMut<Item = S::Item> + ?Sized,
    {
        let _wait = self.watch("gather_buf_root");
        self.gather_buf(self.rank(), send, Some(recv))
    }

    /// [`Comm::gather_buf`] called by a rank other than the root.
    ///
    /// # Errors
    /// As [`Comm::gather_buf`].
    #[track_caller]
    pub fn gather_buf_to<S: Buffer + ?Sized>(&self, root: usize, send: &S) -> Result<()> {
        let _wait = self.watch("gather_buf_to");
        self.gather_buf::<S, [S::Item]>(root, send, None)
    }

    /// Gathers every rank's `send` into a new `Vec` on the root (`None` elsewhere).
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// if let Some(all) = world.gather_buf_vec(0, &[world.rank() as f32; 4])? {
    ///     assert_eq!(all.len(), 4 * world.size());
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Comm::gather_buf`].
    #[track_caller]
    pub fn gather_buf_vec<S: Buffer + ?Sized>(&self, root: usize, send: &S) -> Result<Option<Vec<S::Item>>> {
        let _wait = self.watch("gather_buf_vec");
        if self.rank() == root {
            let mut out: Vec<S::Item> = crate::sys::memory::zeroed_vec(send.count().saturating_mul(self.size()));
            self.gather_buf(root, send, Some(&mut out[..]))?;
            Ok(Some(out))
        } else {
            self.gather_buf_to(root, send)?;
            Ok(None)
        }
    }

    /// Scatters the root's `send` (n × size elements) in blocks of n, block r to rank r's `recv` (n elements,
    /// `MPI_Scatter`). Non-roots pass `None` (or use [`Comm::scatter_buf_from`]).
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// let all: Vec<f64> = (0..2 * world.size()).map(|i| i as f64).collect();
    /// let mut mine = [0.0; 2];
    /// world.scatter_buf(0, (world.rank() == 0).then_some(&all[..]), &mut mine)?;
    /// assert_eq!(mine[0], 2.0 * world.rank() as f64);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Comm::gather_buf`].
    #[track_caller]
    pub fn scatter_buf<S, R>(&self, root: usize, send: Option<&S>, recv: &mut R) -> Result<()>
    where
        S: Buffer + ?Sized,
        R: BufferMut<Item = S::Item> + ?Sized,
    {
        let _wait = self.watch("scatter_buf");
        self.check_root("scatter_buf", root)?;
        let sv = send.map(|s| s.view());
        let rv = recv.view_mut();
        self.blocks_driver("scatter_buf", BlockKind::Scatter, root, sv.as_ref(), Some(&rv))
    }

    /// [`Comm::scatter_buf`] called by the root, which sends `send`.
    ///
    /// # Errors
    /// As [`Comm::scatter_buf`].
    #[track_caller]
    pub fn scatter_buf_root<S, R>(&self, send: &S, recv: &mut R) -> Result<()>
    where
        S: Buffer + ?Sized,
        R: BufferMut<Item = S::Item> + ?Sized,
    {
        let _wait = self.watch("scatter_buf_root");
        self.scatter_buf(self.rank(), Some(send), recv)
    }

    /// [`Comm::scatter_buf`] called by a rank other than the root.
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// let mut mine = [0u8; 16];
    /// if world.rank() == 0 {
    ///     world.scatter_buf_root(&vec![7u8; 16 * world.size()], &mut mine)?;
    /// } else {
    ///     world.scatter_buf_from(0, &mut mine)?;
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Comm::scatter_buf`].
    #[track_caller]
    pub fn scatter_buf_from<R: BufferMut + ?Sized>(&self, root: usize, recv: &mut R) -> Result<()> {
        let _wait = self.watch("scatter_buf_from");
        self.scatter_buf::<[R::Item], R>(root, None, recv)
    }

    /// Gathers every rank's `send` (all of length n) into every rank's `recv` (n × size, rank order,
    /// `MPI_Allgather`).
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// let mut ranks = vec![0usize; world.size()];
    /// world.all_gather_buf(&world.rank(), &mut ranks)?;
    /// assert_eq!(ranks, (0..world.size()).collect::<Vec<_>>());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`crate::ErrorKind::SizeMismatch`] on every rank if lengths disagree; [`crate::ErrorKind::NotContiguous`].
    #[track_caller]
    pub fn all_gather_buf<S, R>(&self, send: &S, recv: &mut R) -> Result<()>
    where
        S: Buffer + ?Sized,
        R: BufferMut<Item = S::Item> + ?Sized,
    {
        let _wait = self.watch("all_gather_buf");
        let (sv, rv) = (send.view(), recv.view_mut());
        self.blocks_driver("all_gather_buf", BlockKind::Allgather, 0, Some(&sv), Some(&rv))
    }

    /// [`Comm::all_gather_buf`] into a new `Vec`.
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// let all = world.all_gather_buf_vec(&[world.rank() as i64, -(world.rank() as i64)])?;
    /// assert_eq!(all.len(), 2 * world.size());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Comm::all_gather_buf`].
    #[track_caller]
    pub fn all_gather_buf_vec<S: Buffer + ?Sized>(&self, send: &S) -> Result<Vec<S::Item>> {
        let _wait = self.watch("all_gather_buf_vec");
        let mut out: Vec<S::Item> = crate::sys::memory::zeroed_vec(send.count().saturating_mul(self.size()));
        self.all_gather_buf(send, &mut out[..])?;
        Ok(out)
    }

    /// Every rank sends block r of its `send` (n × size elements) to rank r, which stores it as block (sender) of
    /// its `recv` (n × size, `MPI_Alltoall`).
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// let send: Vec<u32> = (0..world.size()).map(|r| (100 * world.rank() + r) as u32).collect();
    /// let mut recv = vec![0u32; world.size()];
    /// world.all_to_all_buf(&send, &mut recv)?;
    /// assert_eq!(recv[0], world.rank() as u32); // from rank 0, block `rank`
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`crate::ErrorKind::SizeMismatch`] on every rank if the buffers are not size equal blocks or the block
    /// lengths disagree; [`crate::ErrorKind::NotContiguous`].
    #[track_caller]
    pub fn all_to_all_buf<S, R>(&self, send: &S, recv: &mut R) -> Result<()>
    where
        S: Buffer + ?Sized,
        R: BufferMut<Item = S::Item> + ?Sized,
    {
        let _wait = self.watch("all_to_all_buf");
        let (sv, rv) = (send.view(), recv.view_mut());
        self.blocks_driver("all_to_all_buf", BlockKind::Alltoall, 0, Some(&sv), Some(&rv))
    }
}
