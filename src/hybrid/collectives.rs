//! Hierarchical collectives: a node-local step over shared memory, one step between the nodes' first ranks, and
//! a node-local step back, so that only one rank per node talks across the network.

use super::Hybrid;
use crate::buffer::{Buffer, BufferMut};
use crate::collective::Op;
use crate::error::{ErrorKind, Result, fail};

/// How [`Hybrid::all_reduce_buf_with`] and [`Hybrid::broadcast_buf_with`] run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Strategy {
    /// [`Strategy::Hierarchical`] when the communicator spans several nodes and some node runs several of its
    /// ranks, else [`Strategy::Flat`].
    #[default]
    Auto,
    /// The MPI library's own collective on the whole communicator.
    Flat,
    /// Node-local step, leaders' step, node-local step.
    Hierarchical,
}

impl Hybrid<'_> {
    fn hierarchical(&self, s: Strategy) -> bool {
        match s {
            Strategy::Flat => false,
            Strategy::Hierarchical => true,
            Strategy::Auto => {
                let max_local = self.places.iter().map(|&(_, l)| l + 1).max().unwrap_or(1);
                self.info.nodes > 1 && max_local > 1
            }
        }
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
        if !self.hierarchical(strategy) {
            return self.comm.all_reduce_buf(send, recv, op);
        }
        match &self.leaders {
            Some(leaders) => {
                self.node_comm.reduce_buf(0, send, Some(&mut *recv), op)?;
                leaders.all_reduce_buf_in_place(recv, op)?;
            }
            None => self.node_comm.reduce_buf(0, send, None::<&mut R>, op)?,
        }
        self.node_comm.broadcast_buf(0, recv)
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

    /// Broadcast with a chosen [`Strategy`]: hierarchically, the root's node first, then the nodes' first ranks,
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
        if !self.hierarchical(strategy) {
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
        if self.info.node == rnode {
            self.node_comm.broadcast_buf(rlocal, buf)?;
        }
        if let Some(leaders) = &self.leaders {
            leaders.broadcast_buf(rnode, buf)?;
        }
        if self.info.node != rnode {
            self.node_comm.broadcast_buf(0, buf)?;
        }
        Ok(())
    }
}
