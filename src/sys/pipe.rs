//! Kernel pipes for `splice(2)`: a non-blocking pipe pair and the two splices a relay makes.
//!
//! nix wraps both calls safely; they live here so the relay names what it means
//! (socket → pipe, pipe → socket) and every errno maps to `io::Error` in one place.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use nix::fcntl::{FcntlArg, OFlag, SpliceFFlags, fcntl, splice};

/// Both ends of one pipe, each non-blocking and close-on-exec.
#[derive(Debug)]
pub struct PipePair {
    pub read: OwnedFd,
    pub write: OwnedFd,
    /// Bytes the pipe holds at most (F_GETPIPE_SZ after the resize, if any).
    pub capacity: usize,
}

/// A new pipe, asked to hold `size` bytes (F_SETPIPE_SZ). A refused resize (over
/// /proc/sys/fs/pipe-max-size, or the user's pipe quota) keeps the default size.
pub fn pipe_pair(size: usize) -> io::Result<PipePair> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
    let asked = i32::try_from(size).unwrap_or(i32::MAX);
    let capacity = match fcntl(&write, FcntlArg::F_SETPIPE_SZ(asked)) {
        Ok(got) => got,
        Err(_) => fcntl(&write, FcntlArg::F_GETPIPE_SZ)?,
    };
    Ok(PipePair {
        read,
        write,
        capacity: usize::try_from(capacity).unwrap_or(0),
    })
}

/// Moves at most `len` bytes from `from` to `to` without a user-space copy, one of them
/// a pipe. Never blocks (SPLICE_F_NONBLOCK): `WouldBlock` when the socket has nothing,
/// the pipe is full or empty, or the destination socket is full. `Ok(0)` is EOF on `from`.
pub fn splice_move(from: impl AsFd, to: impl AsFd, len: usize) -> io::Result<usize> {
    loop {
        match splice(
            from.as_fd(),
            None,
            to.as_fd(),
            None,
            len,
            SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK,
        ) {
            Err(nix::errno::Errno::EINTR) => continue,
            result => return result.map_err(io::Error::from),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_pipe_pair_is_nonblocking_and_sized() {
        let pipe = pipe_pair(256 << 10).unwrap();
        assert!(pipe.capacity >= 4096);
        let flags = fcntl(&pipe.read, FcntlArg::F_GETFL).unwrap();
        assert_ne!(flags & libc::O_NONBLOCK, 0);
        let fd_flags = fcntl(&pipe.write, FcntlArg::F_GETFD).unwrap();
        assert_ne!(fd_flags & libc::FD_CLOEXEC, 0);
    }

    #[test]
    fn bytes_go_socket_to_pipe_to_socket() {
        let pipe = pipe_pair(64 << 10).unwrap();
        let (mut a, b) = UnixStream::pair().unwrap();
        let (c, mut d) = UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        let error = splice_move(&b, &pipe.write, 100).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::WouldBlock);
        a.write_all(b"spliced").unwrap();
        assert_eq!(splice_move(&b, &pipe.write, 100).unwrap(), 7);
        assert_eq!(splice_move(&pipe.read, &c, 100).unwrap(), 7);
        let mut got = [0u8; 7];
        d.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"spliced");
        drop(a);
        assert_eq!(splice_move(&b, &pipe.write, 100).unwrap(), 0);
    }
}
