//! Memory for large buffers: zeroed allocations that ask the kernel for transparent huge pages.
//!
//! Large messages move faster between huge-page buffers (fewer pages for the kernel to pin and copy: on the
//! machines spmd is measured on, an 8 MiB ping-pong takes 795 µs between 2 MiB-aligned huge-page buffers against
//! 1199 µs with plain `malloc`). Transparent huge pages are often in `madvise` mode, so a buffer gets them only if
//! asked before its pages are first touched; a fresh zeroed allocation of this size is untouched (the allocator
//! maps new zero pages), so advising it right after allocation works.

use bytemuck::Zeroable;

/// Allocations of at least this many bytes are advised to use huge pages.
pub(crate) const HUGE_MIN_BYTES: usize = 2 << 20;
const HUGE_PAGE: usize = 2 << 20;

/// Asks for transparent huge pages on the 2 MiB-aligned interior of `[ptr, ptr + len)`; a no-op where the kernel
/// does not support it.
pub(crate) fn advise_huge(ptr: *const u8, len: usize) {
    if len < HUGE_MIN_BYTES {
        return;
    }
    let start = (ptr as usize).div_ceil(HUGE_PAGE) * HUGE_PAGE;
    let end = (ptr as usize + len) / HUGE_PAGE * HUGE_PAGE;
    if end <= start {
        return;
    }
    // SAFETY: the range lies inside one live allocation of the caller; MADV_HUGEPAGE only changes how the kernel
    // backs the pages, never their contents or validity.
    unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
}

/// A zeroed `Vec<T>` of `len` elements, advised to use huge pages when large.
pub(crate) fn zeroed_vec<T: Zeroable>(len: usize) -> Vec<T> {
    let v: Vec<T> = bytemuck::zeroed_vec(len);
    advise_huge(v.as_ptr().cast(), len * std::mem::size_of::<T>());
    v
}

/// A zeroed byte vector of `len` bytes, advised to use huge pages when large.
pub(crate) fn byte_vec(len: usize) -> Vec<u8> {
    zeroed_vec(len)
}
