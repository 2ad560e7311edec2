//! Hierarchical collectives: a node-local step over shared memory, one step between the nodes' first ranks, and
//! a node-local step back, so that only one rank per node talks across the network.

use super::Hybrid;
use crate::buffer::{Buffer, BufferMut};
use crate::collective::{Op, size_error};
use crate::error::{ErrorKind, Result, fail};

/// How [`Hybrid::all_reduce_buf_with`] and [`Hybrid::broadcast_buf_with`] run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Strategy {
    /// [`Strategy::Flat`], unless [`Hybrid::tune_all_reduce`] measured the hierarchical all-reduce faster for
    /// the message's size class on this communicator.
    #[default]
    Auto,
    /// The MPI library's own collective on the whole communicator.
    Flat,
    /// Node-local step, leaders' step, node-local step.
    Hierarchical,
}

impl Hybrid<'_> {
    fn hierarchical(&self, s: Strategy, bytes: usize) -> bool {
        match s {
            Strategy::Flat => false,
            Strategy::Hierarchical => true,
            Strategy::Auto => self.tuned.iter().find(|t| bytes <= t.0).is_some_and(|t| t.1),
        }
    }

    /// Times the flat and the hierarchical all-reduce on this communicator at 8 B, 1 KiB, 64 KiB and 1 MiB
    /// (collective; a few hundred calls, interleaved) and makes [`Strategy::Auto`] use, for each size class, the
    /// faster one. Every rank takes the same decision (the slowest rank's times count). Without tuning, `Auto`
    /// is flat: on the machines spmd is measured on, the flat all-reduce was the faster at every size even
    /// across simulated hosts (see the README), while on clusters whose network is much slower than their
    /// shared memory the hierarchical one usually wins. Returns the decisions as (up to bytes, hierarchical).
    ///
    /// ```no_run
    /// # let universe = spmd::init()?; let world = universe.world();
    /// let mut hybrid = spmd::hybrid::Hybrid::new(&world, spmd::hybrid::Threads::Auto)?;
    /// for (bytes, hier) in hybrid.tune_all_reduce()? {
    ///     println!("up to {bytes} bytes: {}", if hier { "hierarchical" } else { "flat" });
    /// }
    /// # Ok::<(), spmd::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`crate::ErrorKind::Mpi`] if MPI fails.
    pub fn tune_all_reduce(&mut self) -> Result<Vec<(usize, bool)>> {
        let mut out = Vec::new();
        let sizes = [1usize, 128, 8192, 131_072];
        for (k, &n) in sizes.iter().enumerate() {
            let send = vec![0.0f64; n];
            let mut recv = vec![0.0f64; n];
            let reps = (2_000_000 / (n * 8 + 20_000)).clamp(2, 50);
            let mut best = [f64::INFINITY; 2];
            for _ in 0..3 {
                for (i, s) in [Strategy::Flat, Strategy::Hierarchical].into_iter().enumerate() {
                    self.comm.barrier()?;
                    let t0 = crate::sys::wtime();
                    for _ in 0..reps {
                        self.all_reduce_buf_with(s, &send[..], &mut recv[..], Op::Sum)?;
                    }
                    let t = self.comm.all_reduce_scalar(crate::sys::wtime() - t0, Op::Max)?;
                    best[i] = best[i].min(t);
                }
            }
            let upto = if k + 1 == sizes.len() { usize::MAX } else { n * 8 * 8 };
            out.push((upto, best[1] < best[0]));
        }
        self.tuned = out.clone();
        Ok(out)
    }

    /// All-reduce of a buffer over the communicator with [`Strategy::Auto`] (collective).
    ///
    /// ```no_run
    /// # let universe = spmd::init()?; let world = universe.world();
    /// let hybrid = spmd::hybrid::Hybrid::new(&world, spmd::hybrid::Threads::Auto)?;
    /// let mut total = [0.0; 4];
    /// hybrid.all_reduce_buf(&[1.0, 2.0, 3.0, 4.0], &mut total, spmd::Op::Sum)?;
    /// assert_eq!(total[3], 4.0 * world.size() as f64);
    /// # Ok::<(), spmd::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`crate::Comm::all_reduce_buf`].
    pub fn all_reduce_buf<S, R>(&self, send: &S, recv: &mut R, op: Op) -> Result<()>
    where
        S: Buffer + ?Sized,
        R: BufferMut<Item = S::Item> + ?Sized,
    {
        self.all_reduce_buf_with(Strategy::Auto, send, recv, op)
    }

    /// All-reduce with a chosen [`Strategy`]. The hierarchical form reduces on each node, all-reduces among the
    /// nodes' first ranks and broadcasts on each node: floating-point sums may differ in the last bits from the
    /// flat form (another order of additions), but are the same on every rank.
    ///
    /// # Errors
    /// As [`crate::Comm::all_reduce_buf`].
    pub fn all_reduce_buf_with<S, R>(&self, strategy: Strategy, send: &S, recv: &mut R, op: Op) -> Result<()>
    where
        S: Buffer + ?Sized,
        R: BufferMut<Item = S::Item> + ?Sized,
    {
        if !self.hierarchical(strategy, send.view().len * std::mem::size_of::<S::Item>()) {
            return self.comm.all_reduce_buf(send, recv, op);
        }
        // One agreement on the lengths over the whole communicator, then three steps whose lengths agree.
        let name = "all_reduce_buf";
        let (n, m) = (send.view().len, recv.view_mut().len);
        let local = (n != m).then(|| {
            size_error(
                name,
                format!("the send buffer holds {n} elements but the receive buffer {m}"),
            )
        });
        self.comm.agree(name, "buffer lengths", n, local)?;
        let node = self.node_comm.agreed();
        match &self.leaders {
            Some(leaders) => {
                node.reduce_buf(0, send, Some(&mut *recv), op)?;
                leaders.agreed().all_reduce_buf_in_place(recv, op)?;
            }
            None => node.reduce_buf(0, send, None::<&mut R>, op)?,
        }
        node.broadcast_buf(0, recv)
    }

    /// Broadcast of a buffer from `root` with [`Strategy::Auto`] (collective).
    ///
    /// ```no_run
    /// # let universe = spmd::init()?; let world = universe.world();
    /// let hybrid = spmd::hybrid::Hybrid::new(&world, spmd::hybrid::Threads::Auto)?;
    /// let mut table = vec![0u32; 1 << 20];
    /// if world.rank() == 0 {
    ///     table.iter_mut().enumerate().for_each(|(i, x)| *x = i as u32);
    /// }
    /// hybrid.broadcast_buf(0, &mut table)?;
    /// # Ok::<(), spmd::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`crate::Comm::broadcast_buf`].
    pub fn broadcast_buf<B: BufferMut + ?Sized>(&self, root: usize, buf: &mut B) -> Result<()> {
        self.broadcast_buf_with(Strategy::Auto, root, buf)
    }

    /// Broadcast with a chosen [`Strategy`] ([`Strategy::Auto`] is flat): hierarchically, the root's node first, then the nodes' first ranks,
    /// then the other nodes.
    ///
    /// # Errors
    /// As [`crate::Comm::broadcast_buf`].
    pub fn broadcast_buf_with<B: BufferMut + ?Sized>(
        &self,
        strategy: Strategy,
        root: usize,
        buf: &mut B,
    ) -> Result<()> {
        if strategy != Strategy::Hierarchical {
            return self.comm.broadcast_buf(root, buf);
        }
        let Some(&(rnode, rlocal)) = self.places.get(root) else {
            return fail(
                ErrorKind::InvalidArgument,
                format!(
                    "broadcast_buf: root {root} of a communicator of {} ranks",
                    self.places.len()
                ),
            );
        };
        let n = buf.view_mut().len;
        self.comm.agree("broadcast_buf", "buffer lengths", n, None)?;
        let node = self.node_comm.agreed();
        if self.info.node == rnode {
            node.broadcast_buf(rlocal, buf)?;
        }
        if let Some(leaders) = &self.leaders {
            leaders.agreed().broadcast_buf(rnode, buf)?;
        }
        if self.info.node != rnode {
            node.broadcast_buf(0, buf)?;
        }
        Ok(())
    }
}
