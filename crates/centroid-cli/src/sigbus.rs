//! A memory-mapped data file truncated by another program while training
//! reads it makes the next read of a vanished page fault with SIGBUS, which
//! would kill the process without a word. The handler installed here turns
//! it into the usual one-line error naming the file, and exit status 1.

use std::path::Path;

#[cfg(unix)]
mod imp {
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

    /// The message, prepared in advance: a signal handler may not allocate.
    static MESSAGE: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
    static MESSAGE_LEN: AtomicUsize = AtomicUsize::new(0);
    /// Set by the first thread to fault: the kernels' threads read the
    /// same vanished pages at once, and each would print the message.
    static REPORTED: AtomicBool = AtomicBool::new(false);

    extern "C" fn on_sigbus(_: libc::c_int) {
        if REPORTED.swap(true, Ordering::SeqCst) {
            // Another thread is writing the message and will end the
            // process; exiting here could cut its line short.
            loop {
                // SAFETY: pause(2) is async-signal-safe.
                unsafe {
                    libc::pause();
                }
            }
        }
        let ptr = MESSAGE.load(Ordering::SeqCst);
        let len = MESSAGE_LEN.load(Ordering::SeqCst);
        // SAFETY: write(2) and _exit(2) are async-signal-safe; the message
        // is a leaked, never-freed buffer of `len` bytes.
        unsafe {
            if !ptr.is_null() {
                libc::write(2, ptr as *const libc::c_void, len);
            }
            libc::_exit(1);
        }
    }

    pub fn report_as_truncated(path: &Path) {
        let text = format!(
            "centroid: error: {}: the file shrank while it was being read (another program truncated or rewrote it); its rows are gone\n",
            path.display()
        );
        let leaked: &'static mut [u8] = Box::leak(text.into_bytes().into_boxed_slice());
        MESSAGE_LEN.store(0, Ordering::SeqCst);
        MESSAGE.store(leaked.as_mut_ptr(), Ordering::SeqCst);
        MESSAGE_LEN.store(leaked.len(), Ordering::SeqCst);
        // SAFETY: installs a handler that only calls async-signal-safe
        // functions; the sigaction struct is fully initialised.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigbus as *const () as usize;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut());
        }
    }
}

/// From now on, a SIGBUS reports `path` as truncated and exits.
pub fn report_as_truncated(path: &Path) {
    #[cfg(unix)]
    imp::report_as_truncated(path);
    #[cfg(not(unix))]
    let _ = path;
}
