//! Cartesian topologies: `MPI_Dims_create`, `MPI_Cart_create`, coordinates, shifts and sub-grids.

use std::ffi::c_int;
use std::mem::MaybeUninit;

use mpi::ffi;

use super::check;
use super::comm::RawComm;
use crate::error::{Error, ErrorKind, Result};

fn c_ints(what: &str, v: &[usize]) -> Result<Vec<c_int>> {
    v.iter()
        .map(|&x| {
            c_int::try_from(x).map_err(|_| {
                Error::new(
                    ErrorKind::InvalidArgument,
                    format!("{what}: {x} does not fit MPI's int"),
                )
            })
        })
        .collect()
}

/// `MPI_Dims_create`: fills the zero entries of `dims` with a balanced factorisation of `nnodes` (entries already
/// set are kept). The caller checks beforehand that the set entries divide `nnodes`.
pub(crate) fn dims_create(nnodes: usize, dims: &mut [usize]) -> Result<()> {
    let n = c_ints("process grid size", &[nnodes])?[0];
    let mut d = c_ints("process grid dimension", dims)?;
    let ndims = c_int::try_from(d.len()).map_err(|_| Error::new(ErrorKind::InvalidArgument, "too many dimensions"))?;
    // SAFETY: `d` holds exactly `ndims` ints, which MPI reads and writes in place.
    let rc = unsafe { ffi::MPI_Dims_create(n, ndims, d.as_mut_ptr()) };
    check(rc, "MPI_Dims_create")?;
    for (o, &x) in dims.iter_mut().zip(&d) {
        *o = x.max(0) as usize;
    }
    Ok(())
}

impl RawComm {
    /// `MPI_Cart_create` without reordering (collective): ranks keep their numbers, so the grid's rank `r` is this
    /// communicator's rank `r`. The product of `dims` must equal the size (checked by the caller), so every rank
    /// gets the new communicator.
    pub(crate) fn cart_create(&self, dims: &[usize], periodic: &[bool]) -> Result<RawComm> {
        assert_eq!(dims.len(), periodic.len(), "one periodic flag per dimension");
        let d = c_ints("process grid dimension", dims)?;
        let p: Vec<c_int> = periodic.iter().map(|&b| b as c_int).collect();
        let ndims =
            c_int::try_from(d.len()).map_err(|_| Error::new(ErrorKind::InvalidArgument, "too many dimensions"))?;
        let mut new = MaybeUninit::<ffi::MPI_Comm>::uninit();
        // SAFETY: valid handle; `d` and `p` hold `ndims` ints each; valid out pointer.
        let rc = unsafe { ffi::MPI_Cart_create(self.handle, ndims, d.as_ptr(), p.as_ptr(), 0, new.as_mut_ptr()) };
        check(rc, "MPI_Cart_create")?;
        // SAFETY: initialised by the successful call.
        RawComm::adopt(unsafe { new.assume_init() })?.ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidArgument,
                "MPI_Cart_create left this rank out of the grid",
            )
        })
    }

    /// `MPI_Cart_coords` of `rank` on a Cartesian communicator of `ndims` dimensions.
    pub(crate) fn cart_coords(&self, rank: usize, ndims: usize) -> Result<Vec<usize>> {
        let r = c_ints("rank", &[rank])?[0];
        let mut c: Vec<c_int> = vec![0; ndims];
        let n = c_int::try_from(ndims).map_err(|_| Error::new(ErrorKind::InvalidArgument, "too many dimensions"))?;
        // SAFETY: valid Cartesian handle; `c` holds `ndims` ints.
        let rc = unsafe { ffi::MPI_Cart_coords(self.handle, r, n, c.as_mut_ptr()) };
        check(rc, "MPI_Cart_coords")?;
        Ok(c.into_iter().map(|x| x.max(0) as usize).collect())
    }

    /// `MPI_Cart_shift`: (source, destination) ranks, `None` where MPI answers `MPI_PROC_NULL`.
    pub(crate) fn cart_shift(&self, dim: usize, disp: i32) -> Result<(Option<usize>, Option<usize>)> {
        let d = c_ints("dimension", &[dim])?[0];
        let (mut src, mut dst): (c_int, c_int) = (0, 0);
        // SAFETY: valid Cartesian handle (the caller checked `dim` against its dimensions); valid out pointers.
        let rc = unsafe { ffi::MPI_Cart_shift(self.handle, d, disp, &mut src, &mut dst) };
        check(rc, "MPI_Cart_shift")?;
        let null = super::proc_null();
        let peer = |r: c_int| (r != null && r >= 0).then_some(r as usize);
        Ok((peer(src), peer(dst)))
    }

    /// `MPI_Cart_sub` (collective over the grid): keeps the dimensions whose flag is set.
    pub(crate) fn cart_sub(&self, keep: &[bool]) -> Result<RawComm> {
        let k: Vec<c_int> = keep.iter().map(|&b| b as c_int).collect();
        let mut new = MaybeUninit::<ffi::MPI_Comm>::uninit();
        // SAFETY: valid Cartesian handle whose dimension count equals `keep.len()` (checked by the caller); valid
        // out pointer.
        let rc = unsafe { ffi::MPI_Cart_sub(self.handle, k.as_ptr(), new.as_mut_ptr()) };
        check(rc, "MPI_Cart_sub")?;
        // SAFETY: initialised by the successful call.
        RawComm::adopt(unsafe { new.assume_init() })?
            .ok_or_else(|| Error::new(ErrorKind::InvalidArgument, "MPI_Cart_sub gave no communicator"))
    }

    /// Whether `other` has the same processes in the same order (`MPI_IDENT` or `MPI_CONGRUENT`).
    pub(crate) fn same_group_order(&self, other: &RawComm) -> Result<bool> {
        let mut result: c_int = 0;
        // SAFETY: valid handles and out pointer.
        let rc = unsafe { ffi::MPI_Comm_compare(self.handle, other.handle, &mut result) };
        check(rc, "MPI_Comm_compare")?;
        // SAFETY: reading constants exported by rsmpi's shim.
        Ok(result == unsafe { ffi::RSMPI_IDENT } || result == unsafe { ffi::RSMPI_CONGRUENT })
    }
}
