//! One array per node in MPI-3 shared memory: allocated once on each node, read in place by every rank there.

use std::marker::PhantomData;
use std::ops::Range;

use ndarray::{ArrayView, Dimension, IntoDimension};

use crate::buffer::Data;
use crate::comm::Comm;
use crate::dist::Partition;
use crate::error::{Error, ErrorKind, Result};
use crate::sys::window::SharedSegment;

/// An array of `len` elements shared by the ranks of each node (`MPI_Win_allocate_shared`): the node's first rank
/// allocates it, every rank of the node maps the same memory, so read-mostly data (a lookup table, a mesh, a
/// matrix read by all) takes one copy per node instead of one per rank.
///
/// Reads ([`NodeArray::as_slice`], [`NodeArray::view`]) need no communication. Writes happen in phases that
/// every rank of the node enters together ([`NodeArray::write`], [`NodeArray::write_part`],
/// [`NodeArray::fill_on_leader`]); each rank writes only a range that no other rank writes in the same phase (the
/// ranges are exchanged and checked), and a phase returns only when every rank's writes are visible to all. So a
/// rank's slice never changes under it, and two ranks never write the same element at once.
///
/// Created and dropped collectively: every rank of the communicator creates it, and every rank of a node must
/// drop it (`MPI_Win_free`) at the same point of the program. Ranks on different nodes have different copies.
///
/// ```no_run
/// # let universe = spmd::init()?; let world = universe.world();
/// use spmd::hybrid::NodeArray;
/// // A 1000 x 1000 table, one copy per node, filled by the node's first rank.
/// let mut table = NodeArray::<f64>::new(&world, 1000 * 1000)?;
/// table.fill_on_leader(|t| {
///     for (k, x) in t.iter_mut().enumerate() {
///         *x = (k as f64).sqrt();
///     }
/// })?;
/// let view = table.view([1000, 1000])?; // every rank of the node reads the same memory
/// assert_eq!(view[[0, 4]], 2.0);
/// # Ok::<(), spmd::Error>(())
/// ```
pub struct NodeArray<'u, T> {
    seg: SharedSegment<T>,
    local_rank: usize,
    local_size: usize,
    _u: PhantomData<&'u ()>,
}

impl<'u, T: Data> NodeArray<'u, T> {
    /// Allocates a zeroed array of `len` elements on every node that `comm` spans, one allocation per node
    /// (collective over `comm`; every rank passes the same `len`).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] if the ranks of a node disagree on `len` or the size overflows;
    /// [`ErrorKind::Mpi`] if MPI cannot allocate shared memory.
    pub fn new(comm: &Comm<'u>, len: usize) -> Result<NodeArray<'u, T>> {
        let node = comm.split_shared()?;
        let lens = node.all_gather_obj(&(len as u64))?;
        if let Some(r) = lens.iter().position(|&l| l != len as u64) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "NodeArray::new: node ranks ask for different lengths ({} on node rank {r}, {len} on node rank {})",
                    lens[r],
                    node.rank()
                ),
            ));
        }
        let seg = node.inner.raw.allocate_shared::<T>(len)?;
        Ok(NodeArray {
            seg,
            local_rank: node.rank(),
            local_size: node.size(),
            _u: PhantomData,
        })
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.seg.read().len()
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The node's elements, as last written by any rank of the node.
    pub fn as_slice(&self) -> &[T] {
        self.seg.read()
    }

    /// The elements as an n-dimensional array view of `shape` (C order).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] if `shape` does not hold exactly `len()` elements.
    pub fn view<Sh: IntoDimension>(&self, shape: Sh) -> Result<ArrayView<'_, T, Sh::Dim>> {
        let dim = shape.into_dimension();
        let bad = || {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("NodeArray::view: shape {:?} for {} elements", dim.slice(), self.len()),
            )
        };
        if dim.size_checked() != Some(self.len()) {
            return Err(bad());
        }
        ArrayView::from_shape(dim.clone(), self.as_slice()).map_err(|_| bad())
    }

    /// This rank's part for [`NodeArray::write_part`]: the array split in blocks over the node's ranks.
    pub fn part(&self) -> Range<usize> {
        Partition::block(self.len(), self.local_size)
            .range(self.local_rank)
            .expect("block partition")
    }

    /// A write phase (collective over the node): `f` gets elements `range` to write; other ranks' ranges in the
    /// same phase must not overlap it. Returns `f`'s result once every rank's writes are visible.
    ///
    /// ```no_run
    /// # let universe = spmd::init()?; let world = universe.world();
    /// # let mut a = spmd::hybrid::NodeArray::<u32>::new(&world, 8)?;
    /// let node = world.split_shared()?;
    /// // Node rank k writes element k (an empty range on ranks beyond the length).
    /// let k = node.rank().min(8);
    /// a.write(k..(k + 1).min(8), |mine| mine.fill(k as u32))?;
    /// # Ok::<(), spmd::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] on every rank of the node, before anything is written, if a range lies
    /// outside the array or two ranks' ranges overlap (the message names both); [`ErrorKind::Mpi`] if MPI fails.
    pub fn write<R>(&mut self, range: Range<usize>, f: impl FnOnce(&mut [T]) -> R) -> Result<R> {
        let _loop = crate::runtime::watch::wait_loop();
        self.seg.write(range, &progress, f)
    }

    /// A write phase in which each rank writes its [`NodeArray::part`]; `f` gets the part's first index and its
    /// elements.
    ///
    /// # Errors
    /// [`ErrorKind::Mpi`] if MPI fails.
    pub fn write_part<R>(&mut self, f: impl FnOnce(usize, &mut [T]) -> R) -> Result<R> {
        let _loop = crate::runtime::watch::wait_loop();
        let part = self.part();
        let start = part.start;
        self.seg.write(part, &progress, |s| f(start, s))
    }

    /// A write phase in which the node's first rank writes the whole array and the others wait; `f` runs on that
    /// rank only.
    ///
    /// # Errors
    /// [`ErrorKind::Mpi`] if MPI fails.
    pub fn fill_on_leader(&mut self, f: impl FnOnce(&mut [T])) -> Result<()> {
        let _loop = crate::runtime::watch::wait_loop();
        let range = if self.local_rank == 0 { 0..self.len() } else { 0..0 };
        let leader = self.local_rank == 0;
        self.seg.write(range, &progress, |s| {
            if leader {
                f(s)
            }
        })
    }

    /// The bytes this rank allocated: the whole array (plus alignment) on each node's first rank, 0 elsewhere.
    pub fn allocated_bytes(&self) -> usize {
        self.seg.allocated_here()
    }
}

/// What a node array's write phase does while it waits: keeps pending receives moving and watches for hangs.
fn progress() {
    crate::request::engine::progress();
    crate::runtime::watch::waiting("node array write phase");
}

impl<T: Data> std::fmt::Debug for NodeArray<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeArray")
            .field("local_rank", &self.local_rank)
            .field("local_size", &self.local_size)
            .field("allocated_bytes", &self.seg.allocated_here())
            .finish()
    }
}
