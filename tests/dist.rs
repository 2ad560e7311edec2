//! Data distribution: process grids, scatter/gather round trips, halo exchange (forward and reverse),
//! redistribution and transposes, reductions and parallel `.npy` I/O, at 1 to 4 ranks (and 6 oversubscribed).

#[macro_use]
mod common;

use common::{Case, world_case};
use libtest_mimic::Trial;
use ndarray::{Array, ArrayD, Dimension, IxDyn};
use spmd::dist::{DArray, Ghost, Partition, Stencil};
use spmd::topo::{Grid, balanced_dims};
use spmd::{Comm, ErrorKind, Op, Peer};

/// A value for every global index that differs between indices and is not trivially the index.
fn value(idx: &[usize]) -> f64 {
    idx.iter().fold(0.0, |a, &i| a * 131.0 + i as f64 + 0.25)
}

fn grid_basics(comm: &Comm) -> spmd::Result<()> {
    let p = comm.size();
    let dims = balanced_dims(p, 2)?;
    check!(
        comm,
        dims.iter().product::<usize>() == p,
        "balanced dims {dims:?} for {p}"
    );
    check!(comm, dims[0] >= dims[1], "largest first: {dims:?}");
    check!(comm, balanced_dims(12, 2)? == vec![4, 3], "12 in 2-D");
    check!(comm, balanced_dims(6, 3)? == vec![3, 2, 1], "6 in 3-D");
    let g = comm.grid(&[0, 0], &[false, true])?;
    check!(
        comm,
        g.dims() == dims.as_slice(),
        "grid dims {:?} vs {dims:?}",
        g.dims()
    );
    check!(comm, g.rank() == comm.rank(), "no reordering");
    check!(
        comm,
        g.coords_of(g.rank()) == g.coords(),
        "coords_of agrees with MPI_Cart_coords"
    );
    for d in 0..2 {
        for disp in [1, -1, 2] {
            let (src, dst) = g.shift(d, disp)?;
            let c: Vec<isize> = g.coords().iter().map(|&x| x as isize).collect();
            let mut up = c.clone();
            up[d] += disp as isize;
            let mut down = c.clone();
            down[d] -= disp as isize;
            check!(
                comm,
                dst == g.rank_at(&up),
                "shift({d},{disp}) dest {dst:?} vs rank_at {:?}",
                g.rank_at(&up)
            );
            check!(comm, src == g.rank_at(&down), "shift({d},{disp}) source");
        }
    }
    // Non-periodic edge: no peer; a send to it completes and a receive from it gets nothing.
    let (up, down) = g.shift(0, 1)?;
    if g.coords()[0] == 0 {
        check!(comm, up == Peer::NULL, "no neighbour above the first row");
    }
    let mut got = [usize::MAX];
    g.sendrecv_buf(down, 3, &[g.coords()[0]], up, 3, &mut got)?;
    let expect = if g.coords()[0] == 0 {
        usize::MAX
    } else {
        g.coords()[0] - 1
    };
    check!(comm, got[0] == expect, "row index from above: {} vs {expect}", got[0]);
    let row = g.sub(&[false, true])?;
    let col = g.sub(&[true, false])?;
    check!(
        comm,
        row.size() == g.dims()[1] && col.size() == g.dims()[0],
        "sub-grid sizes"
    );
    check!(comm, row.coords() == [g.coords()[1]], "row coordinates");
    let mut x = [g.coords()[0] as u64];
    row.broadcast_buf(0, &mut x)?;
    check!(comm, x[0] == g.coords()[0] as u64, "a row shares its first coordinate");
    // Errors: dims that cannot fit, mismatched flags, bad dimension.
    let e = comm.grid(&[p + 1], &[false]).expect_err("too many");
    check!(
        comm,
        e.kind() == ErrorKind::InvalidArgument && e.to_string().contains(&format!("{p} processes")),
        "{e}"
    );
    let e = comm.grid(&[0, 0], &[false]).expect_err("flags");
    check!(comm, e.kind() == ErrorKind::InvalidArgument, "{e}");
    check!(comm, g.shift(2, 1).is_err(), "shift along a missing dimension");
    if p == 4 {
        let e = comm.grid(&[3, 0], &[false, false]).expect_err("3 does not divide 4");
        check!(comm, e.to_string().contains("[3, 0]"), "{e}");
        let g = comm.grid(&[2, 2], &[true, true])?;
        // Coordinates (i, j) are rank 2i + j; (-1, -1) wraps to (1, 1).
        check!(comm, g.rank_at(&[-1, -1]) == Peer(Some(3)), "wrap of both coordinates");
        check!(comm, g.rank_at(&[2, 0]) == Peer(Some(0)), "periodic wrap");
    }
    Ok(())
}

/// Shapes to distribute in `nd` dimensions at `p` processes: uneven, and one with fewer elements than
/// processes along the first dimension (empty blocks).
fn shapes(nd: usize, p: usize) -> Vec<Vec<usize>> {
    let base: Vec<Vec<usize>> = match nd {
        1 => vec![vec![17], vec![1], vec![p.saturating_sub(1)]],
        2 => vec![vec![13, 7], vec![p.saturating_sub(1), 5], vec![1, 1]],
        _ => vec![vec![5, 4, 3], vec![2, 1, 3]],
    };
    base
}

fn global_of(shape: &[usize]) -> ArrayD<f64> {
    Array::from_shape_fn(IxDyn(shape), |i| value(i.slice()))
}

fn scatter_gather(comm: &Comm) -> spmd::Result<()> {
    for nd in 1..=3 {
        for periodic in [false, true] {
            for g in grids_of(comm, nd, periodic)? {
                for shape in shapes(nd, comm.size()) {
                    let whole = global_of(&shape);
                    let root = comm.size() - 1;
                    let mine = (comm.rank() == root).then_some(&whole);
                    let a = DArray::scatter_from(&g, root, mine, Ghost::none())?;
                    for (idx, &x) in a.owned().indexed_iter() {
                        let gi: Vec<usize> = (0..nd).map(|d| idx[d] + a.owned_start()[d]).collect();
                        check!(comm, x.to_bits() == value(&gi).to_bits(), "scattered element {gi:?}");
                    }
                    let back = a.gather_to(root)?;
                    if comm.rank() == root {
                        let back = back.expect("root gets the array");
                        check!(
                            comm,
                            back == whole,
                            "gather(scatter(A)) == A for {shape:?} on {:?}",
                            g.dims()
                        );
                    } else {
                        check!(comm, back.is_none(), "only the root gets the array");
                    }
                    let all = a.all_gather()?;
                    check!(comm, all == whole, "all_gather for {shape:?} on {:?}", g.dims());
                    // from_fn builds the same distribution.
                    let b = DArray::from_fn(&g, IxDyn(&shape), Ghost::none(), |i| value(i.slice()))?;
                    check!(comm, b.owned() == a.owned(), "from_fn equals scatter");
                }
            }
        }
    }
    // With ghost layers, on explicit uneven counts including an empty block.
    let p = comm.size();
    let g = comm.grid(&[p], &[false])?;
    let mut counts = vec![0usize];
    counts.extend(Partition::block(40, p.saturating_sub(1).max(1)).counts());
    counts.truncate(p);
    if p == 1 {
        counts = vec![40];
    }
    let n: usize = counts.iter().sum();
    let a = DArray::<f64, ndarray::Ix1>::with_parts(&g, vec![Partition::from_counts(counts)], Ghost::none(), |i| {
        value(&[i])
    })?;
    let all = a.all_gather()?;
    check!(
        comm,
        all == global_of(&[n]).into_dimensionality().expect("1-D"),
        "counts layout"
    );
    Ok(())
}

fn grids_of<'u>(comm: &Comm<'u>, nd: usize, periodic: bool) -> spmd::Result<Vec<Grid<'u>>> {
    let p = comm.size();
    let flags = vec![periodic; nd];
    let mut out = vec![comm.grid(&vec![0; nd], &flags)?];
    for d in 0..nd {
        let mut dims = vec![1; nd];
        dims[d] = p;
        if dims != out[0].dims() {
            out.push(comm.grid(&dims, &flags)?);
        }
    }
    Ok(out)
}

/// After an exchange, every ghost cell the stencil serves holds the value of its (wrapped) global index; ghost
/// cells beyond a non-periodic edge and cells the stencil does not serve keep their sentinel.
fn halo(comm: &Comm) -> spmd::Result<()> {
    const SENTINEL: f64 = -7.5;
    for nd in 1..=3 {
        for periodic in [false, true] {
            for stencil in [Stencil::Star, Stencil::Box] {
                for w in [1usize, 2] {
                    for g in grids_of(comm, nd, periodic)? {
                        let shape: Vec<usize> = g.dims().iter().map(|&p| p * w + 3).collect();
                        let ghost = if stencil == Stencil::Star {
                            Ghost::star(w)
                        } else {
                            Ghost::boxed(w)
                        };
                        let mut a = DArray::from_fn(&g, IxDyn(&shape), ghost, |i| value(i.slice()))?;
                        let owned: Vec<std::ops::Range<usize>> = (0..nd).map(|d| w..w + a.owned_shape()[d]).collect();
                        let is_owned = |i: &IxDyn| (0..nd).all(|d| owned[d].contains(&i[d]));
                        for (i, x) in a.local_mut().indexed_iter_mut() {
                            if !is_owned(&i) {
                                *x = SENTINEL;
                            }
                        }
                        a.exchange_halo()?;
                        let l = a.local().to_owned();
                        for (i, &x) in l.indexed_iter() {
                            if is_owned(&i) {
                                continue;
                            }
                            let outside = (0..nd).filter(|&d| !owned[d].contains(&i[d])).count();
                            let served = stencil == Stencil::Box || outside == 1;
                            let want = match a.global_index(i.clone()) {
                                Some(gi) if served => value(gi.slice()),
                                _ => SENTINEL,
                            };
                            check!(
                                comm,
                                x.to_bits() == want.to_bits(),
                                "{nd}-D {stencil:?} w={w} periodic={periodic} grid {:?}: ghost {:?} = {x}, want {want}",
                                g.dims(),
                                i.slice()
                            );
                        }
                        reverse_is_adjoint(&mut a)?;
                    }
                }
            }
        }
    }
    // Overlap form: the same result, and the work sees the owned block.
    let g = comm.grid(&[0, 0], &[true, false])?;
    let mut a = DArray::from_fn(&g, [9, 8], Ghost::boxed(1), |(i, j)| value(&[i, j]))?;
    let mut seen = 0.0;
    a.exchange_halo_overlap(|owned, progress| {
        for x in owned.iter() {
            seen += x;
        }
        let _ = progress.test();
    })?;
    let local_sum: f64 = a.owned().sum();
    check!(comm, seen == local_sum, "the overlapped work saw the owned block");
    // A ghost wider than a block is an error naming the dimension and sizes.
    let p = comm.size();
    if p > 1 {
        let g = comm.grid(&[p], &[false])?;
        let e = DArray::<f64, _>::zeros(&g, [2 * p - 1], Ghost::star(2)).expect_err("too wide");
        check!(comm, e.kind() == ErrorKind::InvalidArgument, "{e}");
        check!(
            comm,
            e.to_string().contains("dimension 0") && e.to_string().contains("ghost width 2"),
            "{e}"
        );
    }
    // One process along a periodic dimension wraps locally.
    let g = comm.grid(&[p, 1], &[false, true])?;
    let mut a = DArray::from_fn(&g, [p * 2, 5], Ghost::star(1), |(i, j)| value(&[i, j]))?;
    a.exchange_halo()?;
    let l = a.local();
    let i0 = a.owned_start()[0];
    check!(
        comm,
        l[[1, 0]] == value(&[i0, 4]),
        "left ghost wraps to the last column"
    );
    check!(
        comm,
        l[[1, 6]] == value(&[i0, 0]),
        "right ghost wraps to the first column"
    );
    // A 1-D scatter-add: every cell deposits 0.5 on each neighbour.
    let g = comm.grid(&[0], &[true])?;
    let mut m = DArray::<f64, _>::zeros(&g, [4 * p + 1], Ghost::star(1))?;
    let n = m.owned_shape()[0];
    for i in 1..=n {
        m.local_mut()[i - 1] += 0.5;
        m.local_mut()[i + 1] += 0.5;
    }
    m.accumulate_halo()?;
    check!(
        comm,
        m.owned().iter().all(|&x| x == 1.0),
        "scatter-add: {:?}",
        m.owned()
    );
    Ok(())
}

/// The reverse exchange is the adjoint of the forward one: <F x, y> over ghost cells equals <x, R y> over owned
/// cells for integer-valued x and y, so every contribution lands on the right owner exactly once.
fn reverse_is_adjoint(a: &mut DArray<'_, f64, IxDyn>) -> spmd::Result<()> {
    let comm = a.grid().comm().clone();
    let nd = a.shape().len();
    let w = a.ghost_widths().to_vec();
    let owned: Vec<std::ops::Range<usize>> = (0..nd).map(|d| w[d]..w[d] + a.owned_shape()[d]).collect();
    let is_owned = |i: &IxDyn| (0..nd).all(|d| owned[d].contains(&i[d]));
    let seed = a.grid().rank() as u64 * 7919 + 17;
    let val = |i: &IxDyn, salt: u64| -> f64 {
        let h = i.slice().iter().fold(seed ^ salt, |h, &x| {
            h.wrapping_mul(6364136223846793005).wrapping_add(x as u64 + 1)
        });
        ((h >> 33) % 7) as f64 + 1.0
    };
    // x: owned values, ghosts zero; forward fills ghosts: F x.
    let mut x = a.clone();
    for (i, v) in x.local_mut().indexed_iter_mut() {
        *v = if is_owned(&i) { val(&i, 1) } else { 0.0 };
    }
    let x_owned = x.local().to_owned();
    x.exchange_halo()?;
    // y: ghost values (only where the forward exchange wrote), owned zero.
    let mut y = a.clone();
    let mut lhs = 0.0;
    let fx = x.local().to_owned();
    for (i, v) in y.local_mut().indexed_iter_mut() {
        *v = if is_owned(&i) { 0.0 } else { val(&i, 2) };
        if !is_owned(&i) {
            lhs += fx[&i] * *v;
        }
    }
    // Cells the forward exchange did not write (no neighbour) held zero in x: they add nothing to lhs. The
    // reverse exchange ignores them too.
    y.accumulate_halo()?;
    let ry = y.local().to_owned();
    let mut rhs = 0.0;
    for (i, &v) in x_owned.indexed_iter() {
        if is_owned(&i) {
            rhs += v * ry[&i];
        }
    }
    let (lhs, rhs) = (
        comm.all_reduce_scalar(lhs, Op::Sum)?,
        comm.all_reduce_scalar(rhs, Op::Sum)?,
    );
    check!(
        comm,
        lhs == rhs,
        "<Fx, y> = {lhs} but <x, Ry> = {rhs} for {:?} on {:?}",
        a.stencil(),
        a.grid().dims()
    );
    Ok(())
}

fn transpose(comm: &Comm) -> spmd::Result<()> {
    let p = comm.size();
    for shape in [[7usize, 5], [1, 9], [p + 2, 3]] {
        let whole = Array::from_shape_fn(shape, |(i, j)| value(&[i, j]));
        for g in grids_of(comm, 2, false)? {
            let a = DArray::from_fn(&g, shape, Ghost::star(1).widths(&[0, 0]), |(i, j)| value(&[i, j]))?;
            let t = a.transpose(&g, Ghost::none())?;
            check!(
                comm,
                t.all_gather()? == whole.t(),
                "distributed transpose of {shape:?} on {:?}",
                g.dims()
            );
            let tt = t.transpose(&g, Ghost::none())?;
            check!(comm, tt.all_gather()? == whole, "transpose twice");
            // Slabs: rows to columns and back.
            let rows = comm.grid(&[p, 1], &[false, false])?;
            let cols = comm.grid(&[1, p], &[false, false])?;
            let r = a.redistribute(&rows, Ghost::none())?;
            let c = r.redistribute(&cols, Ghost::star(0))?;
            check!(comm, c.owned_shape()[0] == shape[0], "column slabs hold whole columns");
            let back = c.redistribute(&g, Ghost::none())?;
            check!(comm, back.owned() == a.owned(), "there and back is the identity");
        }
    }
    // 3-D permutation.
    let g = comm.grid(&[0, 0, 0], &[false; 3])?;
    let whole = Array::from_shape_fn((4, 3, 5), |(i, j, k)| value(&[i, j, k]));
    let a = DArray::from_fn(&g, (4, 3, 5), Ghost::none(), |(i, j, k)| value(&[i, j, k]))?;
    let b = a.permuted(&[2, 0, 1], &g, Ghost::none())?;
    check!(
        comm,
        b.all_gather()? == whole.view().permuted_axes([2, 0, 1]),
        "3-D permutation"
    );
    check!(
        comm,
        a.permuted(&[0, 0, 1], &g, Ghost::none()).is_err(),
        "not a permutation"
    );
    Ok(())
}

fn reductions(comm: &Comm) -> spmd::Result<()> {
    let shape = [23usize, 11];
    let f = |(i, j): (usize, usize)| ((i * 7 + j * 3) % 17) as f64 - 8.0;
    let whole = Array::from_shape_fn(shape, f);
    for g in grids_of(comm, 2, false)? {
        let a = DArray::from_fn(&g, shape, Ghost::star(1), f)?;
        check!(comm, a.sum()? == whole.sum(), "sum");
        check!(comm, a.dot(&a)? == whole.iter().map(|x| x * x).sum::<f64>(), "dot");
        check!(
            comm,
            a.norm2()? == whole.iter().map(|x| x * x).sum::<f64>().sqrt(),
            "norm2"
        );
        check!(comm, a.norm_inf()? == 8.0, "norm_inf");
        let min = whole.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = whole.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let first = |v: f64| {
            whole
                .indexed_iter()
                .find(|(_, x)| **x == v)
                .map(|(i, _)| i)
                .expect("present")
        };
        check!(
            comm,
            a.min_loc()? == Some((min, first(min))),
            "min_loc {:?}",
            a.min_loc()?
        );
        check!(
            comm,
            a.max_loc()? == Some((max, first(max))),
            "max_loc {:?}",
            a.max_loc()?
        );
        let i = DArray::from_fn(&g, shape, Ghost::none(), |(i, j)| (i * 11 + j) as i64)?;
        check!(comm, i.sum()? == (0..253).sum::<i64>(), "integer sum");
        // Reproducible: the same bits with 1, 2 and 4 threads, for data whose sum rounds.
        let r = DArray::from_fn(&g, [3000usize, 7], Ghost::none(), |(i, j)| {
            1.0 / ((i * 7 + j) as f64 + 1.0)
        })?;
        let sums: Vec<u64> = [1, 2, 4]
            .iter()
            .map(|&t| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build().expect("pool");
                r.sum_reproducible_in(&pool).map(f64::to_bits)
            })
            .collect::<spmd::Result<_>>()?;
        check!(
            comm,
            sums.iter().all(|&b| b == sums[0]),
            "reproducible sum bits {sums:?}"
        );
        let serial: f64 = (0..21000).map(|k| 1.0 / (k as f64 + 1.0)).sum();
        check!(
            comm,
            approx::abs_diff_eq!(f64::from_bits(sums[0]), serial, epsilon = 1e-12),
            "reproducible sum value"
        );
    }
    let p = comm.size();
    let g = comm.grid(&[p], &[false])?;
    let e = DArray::<f64, _>::zeros(&g, [0], Ghost::none())?;
    check!(comm, e.min_loc()?.is_none() && e.sum()? == 0.0, "empty array");
    let b = DArray::<f64, _>::zeros(&g, [p + 1], Ghost::none())?;
    let c = DArray::<f64, _>::zeros(&g, [p + 2], Ghost::none())?;
    check!(comm, b.dot(&c).is_err(), "dot of different layouts");
    Ok(())
}

fn npy_value((i, j): (usize, usize)) -> f64 {
    i as f64 * 1000.0 + j as f64 * 0.5
}

fn npy_path() -> String {
    std::env::var("SPMD_NPY").expect("SPMD_NPY names the file")
}

/// Writes a 2-D array from a 2x2 grid (run at 4 ranks).
fn npy_write(comm: &Comm) -> spmd::Result<()> {
    let g = comm.grid(&[0, 0], &[false, false])?;
    let a = DArray::from_fn(&g, [37usize, 21], Ghost::boxed(1), npy_value)?;
    a.write_npy(npy_path())?;
    let b = DArray::from_fn(&g, [10usize, 3], Ghost::none(), |(i, j)| (i * 3 + j) as u8)?;
    b.write_npy(format!("{}.u8.npy", npy_path()))
}

/// Writes one file many times over and checks every byte after each write: ranks write concurrently into one
/// file, and none may lose another's bytes (Open MPI 4.1's collective writes of strided blocks did, sometimes).
fn npy_rewrite(comm: &Comm) -> spmd::Result<()> {
    let g = comm.grid(&[0, 0], &[false, false])?;
    let name = (comm.rank() == 0).then(|| {
        let dir = std::env::temp_dir().join(format!("spmd-rewrite-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temporary directory");
        dir.join("a.npy").to_str().expect("utf-8").to_string()
    });
    let path: String = comm.broadcast_obj(0, name)?;
    let shape = [29usize, 23];
    let a = DArray::from_fn(&g, shape, Ghost::boxed(1), npy_value)?;
    let want: Vec<u8> = Array::from_shape_fn(shape, npy_value)
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    for round in 0..60 {
        a.write_npy(&path)?;
        if comm.rank() == 0 {
            let got = std::fs::read(&path).expect("written file");
            let data = &got[got.len() - want.len()..];
            let bad = data.iter().zip(&want).position(|(x, y)| x != y);
            check!(comm, bad.is_none(), "round {round}: byte {bad:?} of the data differs");
        }
        comm.barrier()?;
    }
    if comm.rank() == 0 {
        let _ = std::fs::remove_dir_all(std::path::Path::new(&path).parent().expect("dir"));
    }
    Ok(())
}

/// Reads the file back at another number of ranks and on two grids.
fn npy_read(comm: &Comm) -> spmd::Result<()> {
    for g in grids_of(comm, 2, false)? {
        let a = DArray::<f64, ndarray::Ix2>::read_npy(&g, npy_path(), Ghost::star(1))?;
        check!(comm, a.shape() == [37, 21], "shape {:?}", a.shape());
        for ((i, j), &x) in a.owned().indexed_iter() {
            let gi = (i + a.owned_start()[0], j + a.owned_start()[1]);
            check!(comm, x == npy_value(gi), "element {gi:?}");
        }
        let e = DArray::<f32, ndarray::Ix2>::read_npy(&g, npy_path(), Ghost::none()).expect_err("wrong type");
        check!(comm, e.to_string().contains("'<f8'"), "{e}");
        let b = DArray::<u8, ndarray::Ix2>::read_npy(&g, format!("{}.u8.npy", npy_path()), Ghost::none())?;
        check!(
            comm,
            b.all_gather()? == Array::from_shape_fn((10, 3), |(i, j)| (i * 3 + j) as u8),
            "u8 file"
        );
    }
    Ok(())
}

fn npy_numpy() -> Result<(), libtest_mimic::Failed> {
    if common::max_np() < 4 {
        return Ok(());
    }
    let dir = std::env::temp_dir().join(format!("spmd-npy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let path = dir.join("field.npy");
    let path_s = path.to_str().expect("utf-8").to_string();
    let out = common::special_job(4, "npy_write").env("SPMD_NPY", &path_s).run();
    if !out.success() {
        return Err(format!("writing at np 4 failed\n{}", out.describe()).into());
    }
    let script = format!(
        "import numpy as np\n\
         a = np.load({path_s:?})\n\
         i, j = np.meshgrid(np.arange(37), np.arange(21), indexing='ij')\n\
         assert a.dtype == np.float64 and a.shape == (37, 21), (a.dtype, a.shape)\n\
         assert (a == i * 1000.0 + j * 0.5).all()\n\
         b = np.load({path_s:?} + '.u8.npy')\n\
         assert b.dtype == np.uint8 and (b == np.arange(30).reshape(10, 3)).all()\n\
         print('numpy ok')\n"
    );
    // Debian's python3-numpy is installed for /usr/bin/python3, which a python3 earlier on PATH may hide.
    let python = ["/usr/bin/python3", "python3"]
        .into_iter()
        .find(|p| {
            std::process::Command::new(p)
                .args(["-c", "import numpy"])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .ok_or("no python3 with numpy (Debian: apt-get install python3-numpy)")?;
    let py = std::process::Command::new(python)
        .arg("-c")
        .arg(&script)
        .output()
        .map_err(|e| e.to_string())?;
    if !String::from_utf8_lossy(&py.stdout).contains("numpy ok") {
        return Err(format!("numpy could not load the file: {}", String::from_utf8_lossy(&py.stderr)).into());
    }
    let out = common::special_job(3, "npy_read").env("SPMD_NPY", &path_s).run();
    let _ = std::fs::remove_dir_all(&dir);
    if !out.success() || !out.stdout.contains("spmd-test ok npy_read") {
        return Err(format!("reading at np 3 failed\n{}", out.describe()).into());
    }
    Ok(())
}

const CASES: &[Case] = &[
    world_case("reductions", reductions),
    common::special("npy_write", npy_write),
    common::special("npy_read", npy_read),
    world_case("grid_basics", grid_basics),
    world_case("scatter_gather", scatter_gather),
    world_case("halo", halo),
    world_case("transpose", transpose),
    world_case("npy_rewrite", npy_rewrite),
];

/// The same cases with the hang diagnosis on, which makes every wait a test loop (and once crashed the box
/// exchanges inside Open MPI's MPI_Ialltoallw).
fn cases_with_timeout() -> Result<(), libtest_mimic::Failed> {
    let exe = std::env::current_exe().expect("test binary");
    let out = common::mpirun(2, exe)
        .env("SPMD_TEST_CHILD", "1")
        .env("SPMD_TIMEOUT", "60")
        .run();
    common::check_cases_ok(CASES, None, 2, &out)?;
    Ok(())
}

fn main() {
    let extra = vec![
        Trial::test("np2_with_spmd_timeout", cases_with_timeout),
        Trial::test("npy::written_at_np4_loads_in_numpy_and_reads_at_np3", npy_numpy),
    ];
    common::main_with_sizes(CASES, &[1, 2, 3, 4, 6], extra);
}
