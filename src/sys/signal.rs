//! The signal mask and the signalfd's records.

use std::io;
use std::os::fd::AsRawFd;

use nix::errno::Errno;
use nix::sys::signal::SigSet;

/// Blocks `signals` in the calling thread.
pub fn block(signals: &SigSet) -> io::Result<()> {
    // SAFETY: `signals` is a valid sigset_t for the duration of the call; a null old
    // set is allowed.
    let result =
        unsafe { libc::sigprocmask(libc::SIG_BLOCK, signals.as_ref(), std::ptr::null_mut()) };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A signal set with no signal in it.
pub fn empty_set() -> libc::sigset_t {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the whole set it is given.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        set.assume_init()
    }
}

/// The signal numbers pending on a signalfd, in one read(2) of at most `ROOM` records,
/// retried on EINTR. Nothing pending (EAGAIN) or an error reads as none.
pub fn read_signalfd<const ROOM: usize>(signals: &impl AsRawFd) -> ([i32; ROOM], usize) {
    // SAFETY: signalfd_siginfo is plain integers; all-zero is a valid value.
    let mut infos: [libc::signalfd_siginfo; ROOM] = unsafe { std::mem::zeroed() };
    let read = loop {
        // SAFETY: the buffer is live and its size is passed; the kernel writes whole
        // signalfd_siginfo records into it.
        let read = unsafe {
            libc::read(
                signals.as_raw_fd(),
                infos.as_mut_ptr().cast(),
                std::mem::size_of_val(&infos),
            )
        };
        if read >= 0 || Errno::last() != Errno::EINTR {
            break read.max(0) as usize;
        }
    };
    let count = read / std::mem::size_of::<libc::signalfd_siginfo>();
    let mut numbers = [0; ROOM];
    for (number, info) in numbers.iter_mut().zip(&infos).take(count) {
        *number = info.ssi_signo as i32;
    }
    (numbers, count)
}
