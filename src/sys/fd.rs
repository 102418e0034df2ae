//! File descriptors: the standard ones at start-up, whole writes, and poll(2).

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

/// Opens /dev/null on each of fds 0-2 that is closed, so no socket ever lands there.
/// The fds opened are deliberately never closed.
pub fn fill_standard_fds() {
    for fd in 0..3 {
        // SAFETY: fcntl(F_GETFD) only queries; open returns a new fd we deliberately leak
        // as the stand-in for a missing standard fd.
        unsafe {
            if libc::fcntl(fd, libc::F_GETFD) < 0 {
                libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            }
        }
    }
}

/// Marks every fd from `first` up close-on-exec (close_range with CLOSE_RANGE_CLOEXEC).
pub fn cloexec_from(first: u32) {
    // SAFETY: close_range only changes flags of fds; none is closed.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }
}

/// Writes `bytes` with write(2), retrying on EINTR. A short write (disk full, a pipe's
/// capacity) continues with the rest; EAGAIN and every other error give up.
pub fn write_all(fd: RawFd, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a live slice for the duration of the call; a bad fd is
        // reported as EBADF, not undefined behaviour.
        let written = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if written < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[written as usize..];
    }
    Ok(())
}

/// poll(2) on `fds` for at most `timeout` (rounded to whole milliseconds); how many are
/// ready. Used by tests that drive what the loop would.
pub fn poll(fds: &mut [libc::pollfd], timeout: Duration) -> io::Result<usize> {
    let millis = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: the pointer and length describe the live slice `fds`.
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, millis) };
    if ready < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ready as usize)
}

/// Takes the fds `first .. first + count` that oxinetd inherited (systemd's `LISTEN_FDS`):
/// each open one is marked close-on-exec and returned owned; closed numbers are skipped.
/// Only the first call takes anything (later ones return nothing), so no fd gets two
/// owners.
pub fn take_inherited(first: RawFd, count: usize) -> Vec<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    use std::sync::atomic::{AtomicBool, Ordering};
    static TAKEN: AtomicBool = AtomicBool::new(false);
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Vec::new();
    }
    (first..first.saturating_add(count as RawFd))
        // SAFETY: F_SETFD only sets a flag; it fails (EBADF) on a closed number.
        .filter(|&fd| unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } == 0)
        // SAFETY: the fd is open, and nothing in oxinetd opened it or refers to it by
        // number: it came from the parent, and this runs once (TAKEN).
        .map(|fd| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
        .collect()
}
