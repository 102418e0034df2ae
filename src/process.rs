//! Process hygiene at start-up, before any fd is opened.

/// Servers must get exactly fds 0-2. Make sure 0-2 exist (so no socket ever lands
/// there) and that nothing oxinetd inherited above them can leak into a server.
pub fn sanitize_fds() {
    for fd in 0..3 {
        // SAFETY: fcntl(F_GETFD) only queries; open returns a new fd we deliberately leak
        // as the stand-in for a missing standard fd.
        unsafe {
            if libc::fcntl(fd, libc::F_GETFD) < 0 {
                libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            }
        }
    }
    // SAFETY: close_range only changes flags of fds; none is closed.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }
}
