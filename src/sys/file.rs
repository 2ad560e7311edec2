//! MPI-IO files: collective open and close, independent reads and writes at an offset, and collective reads of
//! one box of an n-dimensional array stored in the file (a subarray file view) into a box of memory, each rank its
//! own box.

use std::ffi::{CString, c_int, c_void};
use std::mem::MaybeUninit;

use mpi::ffi;

use super::boxes::{BoxSel, shape_count, subarray};
use super::datatype::Dt;
use super::{RawComm, check};
use crate::buffer::{Data, Elem};
use crate::error::{Error, ErrorKind, Result};

/// An open MPI file, closed (collectively) on drop.
pub(crate) struct File {
    handle: ffi::MPI_File,
    path: String,
}

fn offset(what: &str, x: usize) -> Result<ffi::MPI_Offset> {
    ffi::MPI_Offset::try_from(x)
        .map_err(|_| Error::new(ErrorKind::InvalidArgument, format!("{what}: offset {x} too large")))
}

fn element_type(elem: &Elem) -> Result<Dt> {
    // A one-element box of a one-element array: the element's own type, resized to its Rust size.
    let one = BoxSel {
        start: vec![0],
        len: vec![1],
    };
    subarray(elem, &[1], &one).map_err(|c| c.error("MPI_Type_create_subarray"))
}

impl File {
    /// `MPI_File_open` (collective over `comm`): for writing (created if missing) or for reading.
    pub(crate) fn open(comm: &RawComm, path: &str, write: bool) -> Result<File> {
        let c = CString::new(path).map_err(|_| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("file name {path:?} contains a NUL byte"),
            )
        })?;
        // SAFETY: shim functions returning constants.
        let mode = unsafe {
            if write {
                super::spmd_mode_create() | super::spmd_mode_wronly()
            } else {
                super::spmd_mode_rdonly()
            }
        };
        let mut fh = MaybeUninit::<ffi::MPI_File>::uninit();
        // SAFETY: valid communicator, NUL-terminated name, mode, info null handle, out pointer.
        let rc = unsafe { ffi::MPI_File_open(comm.handle, c.as_ptr(), mode, ffi::RSMPI_INFO_NULL, fh.as_mut_ptr()) };
        check(rc, &format!("MPI_File_open of {path}"))?;
        Ok(File {
            // SAFETY: initialised by the successful call.
            handle: unsafe { fh.assume_init() },
            path: path.to_string(),
        })
    }

    /// `MPI_File_set_size` (collective).
    pub(crate) fn set_size(&self, bytes: usize) -> Result<()> {
        let n = offset("set_size", bytes)?;
        // SAFETY: open file handle.
        let rc = unsafe { ffi::MPI_File_set_size(self.handle, n) };
        check(rc, &format!("MPI_File_set_size of {}", self.path))
    }

    /// `MPI_File_get_size`.
    pub(crate) fn size(&self) -> Result<usize> {
        let mut n: ffi::MPI_Offset = 0;
        // SAFETY: open file handle, out pointer.
        let rc = unsafe { ffi::MPI_File_get_size(self.handle, &mut n) };
        check(rc, &format!("MPI_File_get_size of {}", self.path))?;
        Ok(n.max(0) as usize)
    }

    /// `MPI_File_write_at` of bytes (independent).
    pub(crate) fn write_bytes_at(&self, at: usize, bytes: &[u8]) -> Result<()> {
        let n = c_int::try_from(bytes.len())
            .map_err(|_| Error::new(ErrorKind::InvalidArgument, "write_bytes_at: more than i32::MAX bytes"))?;
        let mut st = super::p2p::new_status();
        // SAFETY: open file; `bytes` is readable for `n` bytes; valid status pointer.
        let rc = unsafe {
            ffi::MPI_File_write_at(
                self.handle,
                offset("write", at)?,
                bytes.as_ptr().cast(),
                n,
                super::byte_type(),
                &mut st,
            )
        };
        check(rc, &format!("MPI_File_write_at of {}", self.path))
    }

    /// `MPI_File_write_at` of the elements of `data` as one contiguous range from byte `at` (independent), in
    /// pieces of at most 1 GiB.
    pub(crate) fn write_at<T: Data>(&self, at: usize, data: &[T]) -> Result<()> {
        let elem = Elem::of::<T>();
        let dt = element_type(&elem)?;
        // At most 1 GiB per call: some MPI-IO implementations mishandle single calls of 2 GiB or more.
        let size = std::mem::size_of::<T>().max(1);
        let per_call = ((1usize << 30) / size).clamp(1, c_int::MAX as usize);
        for (k, piece) in data.chunks(per_call).enumerate() {
            let mut st = super::p2p::new_status();
            let from = offset("write", at + k * per_call * size)?;
            // SAFETY: open file with the default (byte) view; `piece` holds `piece.len()` (<= i32::MAX) elements of
            // the committed type `dt`, read only during the call; valid status pointer.
            let rc = unsafe {
                ffi::MPI_File_write_at(
                    self.handle,
                    from,
                    piece.as_ptr().cast(),
                    piece.len() as c_int,
                    dt.handle,
                    &mut st,
                )
            };
            check(rc, &format!("MPI_File_write_at of {}", self.path))?;
        }
        Ok(())
    }

    /// `MPI_File_read_at` of up to `buf.len()` bytes (independent); returns how many were read.
    pub(crate) fn read_bytes_at(&self, at: usize, buf: &mut [u8]) -> Result<usize> {
        let n = c_int::try_from(buf.len())
            .map_err(|_| Error::new(ErrorKind::InvalidArgument, "read_bytes_at: more than i32::MAX bytes"))?;
        let mut st = super::p2p::new_status();
        // SAFETY: open file; `buf` is writable for `n` bytes; valid status pointer.
        let rc = unsafe {
            ffi::MPI_File_read_at(
                self.handle,
                offset("read", at)?,
                buf.as_mut_ptr().cast(),
                n,
                super::byte_type(),
                &mut st,
            )
        };
        check(rc, &format!("MPI_File_read_at of {}", self.path))?;
        let mut got: c_int = 0;
        // SAFETY: the status of the completed read; valid out pointer.
        let rc = unsafe { ffi::MPI_Get_count(&st, super::byte_type(), &mut got) };
        check(rc, "MPI_Get_count")?;
        Ok(got.clamp(0, n) as usize)
    }

    /// Sets the view to the array of `global` shape stored in C order from byte `disp`, showing this rank
    /// `file_box` of it. Returns the memory description of `mem_box` inside an array of `mem_shape`, or `None`
    /// if the box is empty (the rank then takes part with a count of 0).
    fn view<T: Data>(
        &self,
        disp: usize,
        global: &[usize],
        file_box: &BoxSel,
        mem_shape: &[usize],
        mem_box: &BoxSel,
    ) -> Result<Option<Dt>> {
        assert_eq!(file_box.len, mem_box.len, "file and memory boxes differ");
        let elem = Elem::of::<T>();
        let etype = element_type(&elem)?;
        let empty = file_box.count() == 0;
        let filetype = if empty {
            None
        } else {
            Some(subarray(&elem, global, file_box).map_err(|c| c.error("MPI_Type_create_subarray"))?)
        };
        let native = CString::new("native").expect("no NUL");
        let ft = filetype.as_ref().map_or(etype.handle, |t| t.handle);
        // SAFETY: open file; committed element and file types; NUL-terminated representation; info null handle.
        let rc = unsafe {
            ffi::MPI_File_set_view(
                self.handle,
                offset("view", disp)?,
                etype.handle,
                ft,
                native.as_ptr(),
                ffi::RSMPI_INFO_NULL,
            )
        };
        check(rc, &format!("MPI_File_set_view of {}", self.path))?;
        if empty {
            return Ok(None);
        }
        Ok(Some(
            subarray(&elem, mem_shape, mem_box).map_err(|c| c.error("MPI_Type_create_subarray"))?,
        ))
    }

    /// Reads `file_box` of the array of `global` shape stored from byte `disp` into `mem_box` of `data`
    /// (`MPI_File_read_all`, collective).
    pub(crate) fn read_box<T: Data>(
        &self,
        disp: usize,
        global: &[usize],
        file_box: &BoxSel,
        data: &mut [T],
        mem_shape: &[usize],
        mem_box: &BoxSel,
    ) -> Result<()> {
        assert_eq!(
            shape_count(mem_shape),
            Some(data.len()),
            "memory shape does not describe the data"
        );
        let memtype = self.view::<T>(disp, global, file_box, mem_shape, mem_box)?;
        let mut stand_in = [0u64; 1];
        let (ptr, count, dt): (*mut c_void, c_int, ffi::MPI_Datatype) = match &memtype {
            Some(t) => (data.as_mut_ptr().cast(), 1, t.handle),
            None => (stand_in.as_mut_ptr().cast(), 0, super::byte_type()),
        };
        let mut st = super::p2p::new_status();
        // SAFETY: the memory type describes a box inside `data` (as in `write_box`), exclusively borrowed during
        // the call; `T` accepts any bit pattern; valid status pointer.
        let rc = unsafe { ffi::MPI_File_read_all(self.handle, ptr, count, dt, &mut st) };
        check(rc, &format!("MPI_File_read_all of {}", self.path))
    }
}

impl Drop for File {
    fn drop(&mut self) {
        if super::is_running() {
            // SAFETY: an open handle, closed once, here (collective: every rank holds its `File` over the same
            // collective calls and drops it at the same point).
            unsafe { ffi::MPI_File_close(&mut self.handle) };
        }
    }
}
