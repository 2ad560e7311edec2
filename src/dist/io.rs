//! Parallel `.npy` files: every rank writes its own block of a distributed array into one file through MPI-IO (a
//! subarray file view and a collective write), with no gather to one rank; reading works at any number of ranks
//! and on any grid. The files are numpy's format version 1.0 (C order, little- or big-endian as the machine),
//! for the element types numpy names (`f4`, `f8`, signed and unsigned integers of 1 to 8 bytes).

use std::any::TypeId;
use std::path::Path;

use ndarray::Dimension;

use super::darray::{DArray, Ghost, dim_from};
use crate::buffer::Data;
use crate::error::{Error, ErrorKind, Result, fail};
use crate::sys::file::File;
use crate::topo::Grid;

/// numpy's name for `T` (`'<f8'` for `f64` on a little-endian machine), if it has one.
fn descr<T: 'static>() -> Option<String> {
    let e = if cfg!(target_endian = "little") { '<' } else { '>' };
    let t = TypeId::of::<T>();
    let (kind, size) = [
        (TypeId::of::<f32>(), 'f', 4),
        (TypeId::of::<f64>(), 'f', 8),
        (TypeId::of::<i8>(), 'i', 1),
        (TypeId::of::<i16>(), 'i', 2),
        (TypeId::of::<i32>(), 'i', 4),
        (TypeId::of::<i64>(), 'i', 8),
        (TypeId::of::<u8>(), 'u', 1),
        (TypeId::of::<u16>(), 'u', 2),
        (TypeId::of::<u32>(), 'u', 4),
        (TypeId::of::<u64>(), 'u', 8),
    ]
    .into_iter()
    .find(|(id, _, _)| *id == t)
    .map(|(_, k, s)| (k, s))?;
    Some(if size == 1 {
        format!("|{kind}1")
    } else {
        format!("{e}{kind}{size}")
    })
}

/// The size of a `.npy` file of `shape` with a header of `head` bytes, or an error naming the file if it overflows.
fn npy_bytes<T>(shape: &[usize], head: usize, path: &str) -> Result<usize> {
    shape
        .iter()
        .try_fold(std::mem::size_of::<T>(), |a, &n| a.checked_mul(n))
        .and_then(|b| b.checked_add(head))
        .ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("{path}: an array of shape {shape:?} does not fit in memory addresses"),
            )
        })
}

/// The version 1.0 header for an array of `shape` and element `descr`, padded to a multiple of 64 bytes.
fn header(descr: &str, shape: &[usize]) -> Vec<u8> {
    let dims = match shape {
        [n] => format!("({n},)"),
        s => format!("({})", s.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}");
    let total = (10 + dict.len() + 1).div_ceil(64) * 64;
    while 10 + dict.len() + 1 < total {
        dict.push(' ');
    }
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    let len = u16::try_from(dict.len()).expect("a .npy v1.0 header of a DArray's few dimensions fits in 64 KiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

/// Parses a header: (element descr, shape, byte offset of the data).
fn parse_header(bytes: &[u8], path: &str) -> Result<(String, Vec<usize>, usize)> {
    let bad = |why: &str| {
        Error::new(
            ErrorKind::InvalidArgument,
            format!("{path}: not a .npy file we can read: {why}"),
        )
    };
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("no numpy magic"));
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(bad(&format!("format version {v}"))),
    };
    let dict = bytes
        .get(start..start + len)
        .ok_or_else(|| bad("header longer than the file"))?;
    let dict = std::str::from_utf8(dict).map_err(|_| bad("header is not text"))?;
    let value_after = |key: &str| -> Option<&str> {
        let at = dict.find(&format!("'{key}'"))? + key.len() + 2;
        Some(dict[at..].trim_start().strip_prefix(':')?.trim_start())
    };
    let d = value_after("descr").ok_or_else(|| bad("no descr"))?;
    let d = d
        .strip_prefix('\'')
        .and_then(|r| r.split('\'').next())
        .ok_or_else(|| bad("descr"))?;
    let fortran = value_after("fortran_order").ok_or_else(|| bad("no fortran_order"))?;
    if fortran.starts_with("True") {
        return Err(bad(
            "Fortran order is not supported (save with numpy.ascontiguousarray)",
        ));
    }
    let sh = value_after("shape").ok_or_else(|| bad("no shape"))?;
    let sh = sh
        .strip_prefix('(')
        .and_then(|r| r.split(')').next())
        .ok_or_else(|| bad("shape"))?;
    let shape = sh
        .split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(|x| x.parse::<usize>().map_err(|_| bad("shape")))
        .collect::<Result<Vec<usize>>>()?;
    Ok((d.to_string(), shape, start + len))
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .ok_or_else(|| Error::new(ErrorKind::InvalidArgument, format!("{path:?} is not valid UTF-8")))
}

impl<'u, T: Data, D: Dimension> DArray<'u, T, D> {
    /// Writes the array to a `.npy` file that numpy loads (collective): rank 0 writes the header; the blocks are
    /// first regrouped into slabs of whole rows (one `MPI_Alltoallw`), and every rank writes its slab as one
    /// contiguous range of the file.
    ///
    /// ```no_run
    /// # let universe = spmd::init()?; let world = universe.world();
    /// use spmd::dist::{DArray, Ghost};
    /// let grid = world.grid(&[0, 0], &[false, false])?;
    /// let a = DArray::from_fn(&grid, [300, 200], Ghost::star(1), |(i, j)| (i * 200 + j) as f64)?;
    /// a.write_npy("field.npy")?; // numpy.load("field.npy") is the 300 x 200 array
    /// let b = DArray::<f64, ndarray::Ix2>::read_npy(&grid, "field.npy", Ghost::none())?;
    /// # Ok::<(), spmd::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] if numpy has no name for `T` or the path is not UTF-8;
    /// [`ErrorKind::Mpi`] if the file cannot be created or written (the message names it).
    pub fn write_npy(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path_str(path.as_ref())?;
        let Some(d) = descr::<T>() else {
            return fail(
                ErrorKind::InvalidArgument,
                format!(
                    "write_npy: numpy has no element type for {}",
                    std::any::type_name::<T>()
                ),
            );
        };
        let head = header(&d, &self.shape);
        let total = npy_bytes::<T>(&self.shape, head.len(), path)?;
        // Staged through row slabs, so that each rank writes one contiguous range with one plain write and the
        // ranges tile the file. A collective write of strided blocks lets an implementation write by reading a
        // whole range, patching it and writing it back ("data sieving"); Open MPI 4.1's OMPIO does so on local
        // file systems without locking, and silently loses bytes another rank wrote in between.
        let (rows, slab) = self.row_slab("write_npy")?;
        let comm = self.grid.lib();
        let file = File::open(&comm.inner.raw, path, true)?;
        file.set_size(total)?;
        if comm.rank() == 0 {
            file.write_bytes_at(0, &head)?;
        }
        // A failed write on one rank becomes an error on every rank (never a rank waiting alone).
        let written = (|| -> Result<()> {
            if comm.rank() == 0 {
                file.write_bytes_at(0, &head)?;
            }
            let row = self.shape[1..].iter().product::<usize>() * std::mem::size_of::<T>();
            file.write_at(head.len() + rows.start * row, &slab)
        })();
        drop(file);
        let all_ok = comm.all_reduce_scalar(u8::from(written.is_ok()), crate::collective::Op::Min)? == 1;
        match written {
            Err(e) => Err(e),
            Ok(()) if !all_ok => fail(
                ErrorKind::Mpi,
                format!("write_npy: another rank failed to write {path}"),
            ),
            Ok(()) => Ok(()),
        }
    }

    /// Reads a `.npy` file written by numpy or by [`DArray::write_npy`] (at any number of ranks) into an array
    /// distributed in blocks over `grid` (collective): every rank reads only its block.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] on every rank if the file is not a C-order `.npy` of element type `T` and
    /// of as many dimensions as the grid (the message says which); [`ErrorKind::Mpi`] if it cannot be read.
    pub fn read_npy(grid: &Grid<'u>, path: impl AsRef<Path>, ghost: Ghost) -> Result<Self> {
        let path = path_str(path.as_ref())?;
        let comm = grid.lib();
        let file = File::open(&comm.inner.raw, path, false)?;
        let head: std::result::Result<Vec<u8>, String> = if comm.rank() == 0 {
            let mut buf = vec![0u8; 4096];
            match file.read_bytes_at(0, &mut buf) {
                Ok(n) => {
                    buf.truncate(n);
                    Ok(buf)
                }
                Err(e) => Err(e.to_string()),
            }
        } else {
            Ok(Vec::new())
        };
        let head = comm
            .broadcast_obj(0, (comm.rank() == 0).then_some(head))?
            .map_err(|e| Error::new(ErrorKind::Mpi, e))?;
        let (d, shape, offset) = parse_header(&head, path)?;
        let want = descr::<T>().unwrap_or_else(|| std::any::type_name::<T>().to_string());
        if d != want {
            return fail(
                ErrorKind::InvalidArgument,
                format!(
                    "read_npy: {path} holds elements '{d}', not {want} ({})",
                    std::any::type_name::<T>()
                ),
            );
        }
        if shape.len() != grid.ndims() || D::NDIM.is_some_and(|n| n != shape.len()) {
            return fail(
                ErrorKind::InvalidArgument,
                format!(
                    "read_npy: {path} holds a {}-dimensional array {shape:?}, the grid has {} dimensions",
                    shape.len(),
                    grid.ndims()
                ),
            );
        }
        let bytes = npy_bytes::<T>(&shape, offset, path)?;
        if file.size()? < bytes {
            return fail(
                ErrorKind::InvalidArgument,
                format!("read_npy: {path} is shorter than its header says ({bytes} bytes)"),
            );
        }
        let mut out = Self::zeros(grid, dim_from::<D>(&shape), ghost)?;
        let (file_box, mem_box) = out.owned_boxes();
        let storage = out.data.shape().to_vec();
        file.read_box(offset, &shape, &file_box, out.local_mut_slice(), &storage, &mem_box)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_alignment() {
        for shape in [vec![5], vec![3, 4], vec![2, 0, 7], vec![123_456, 7, 8, 9]] {
            let h = header("<f8", &shape);
            assert_eq!(h.len() % 64, 0);
            assert_eq!(*h.last().unwrap(), b'\n');
            let (d, s, off) = parse_header(&h, "x").unwrap();
            assert_eq!((d.as_str(), s, off), ("<f8", shape, h.len()));
        }
        assert_eq!(descr::<u8>().as_deref(), Some("|u1"));
        assert!(descr::<(u8, u8)>().is_none());
        assert!(parse_header(b"not numpy", "x").is_err());
        let mut fortran = header("<f8", &[2, 2]);
        let at = fortran.windows(5).position(|w| w == b"False").unwrap();
        fortran[at..at + 5].copy_from_slice(b"True ");
        assert!(parse_header(&fortran, "x").unwrap_err().to_string().contains("Fortran"));
    }
}
