//! Hints to the operating system about large buffers.

/// Asks Linux to back `buf` with transparent huge pages (`madvise`), for a
/// buffer about to be written for the first time: one fault per 2 MiB
/// instead of one per 4 KiB. Only a hint, with no effect on any value; it
/// does nothing elsewhere, for small buffers, or where the system refuses.
pub(crate) fn advise_huge_pages<T>(buf: &mut [T]) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        const PAGE: usize = 4096;
        let start = buf.as_mut_ptr() as usize;
        let end = start + std::mem::size_of_val(buf);
        // Whole pages inside the buffer only.
        let first = start.next_multiple_of(PAGE);
        let last = end - end % PAGE;
        if last <= first || last - first < HUGE {
            return;
        }
        // SAFETY: the range lies inside `buf`, which we hold mutably, and
        // MADV_HUGEPAGE changes no content; a failure only means no huge
        // pages, so its result is ignored.
        unsafe {
            libc::madvise(
                first as *mut libc::c_void,
                last - first,
                libc::MADV_HUGEPAGE,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = buf;
}
