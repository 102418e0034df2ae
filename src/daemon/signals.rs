//! The signals the loop takes (SIGCHLD, SIGHUP, SIGTERM, SIGINT, SIGUSR1): blocked at start-up,
//! read from a signalfd, merged into what to do.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::sys;

/// Blocks the signals the loop reads from its signalfd. Servers start with an empty
/// mask whatever this one is (`spawn::Spawner`).
pub fn block() -> io::Result<()> {
    sys::signal::block(&handled())
}

fn handled() -> SigSet {
    let mut set = SigSet::empty();
    for signal in [
        Signal::SIGCHLD,
        Signal::SIGHUP,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGUSR1,
    ] {
        set.add(signal);
    }
    set
}

/// What the pending signals ask for; each at most once, however many arrived.
#[derive(Default)]
pub struct Pending {
    pub reap: bool,
    pub reload: bool,
    pub stop: bool,
    /// SIGUSR1: the status table to stderr, as xinetd's users expect of it.
    pub status: bool,
}

pub struct Signals {
    fd: SignalFd,
}

impl Signals {
    pub fn new() -> nix::Result<Signals> {
        let fd = SignalFd::with_flags(&handled(), SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        Ok(Signals { fd })
    }

    /// The pending signals, in one read(2). Standard signals merge, so at most the five
    /// the loop takes can be pending; any left would keep the (level-triggered)
    /// signalfd readable. Reading on until EAGAIN would cost a system call per wake.
    pub fn take(&self) -> Pending {
        let mut pending = Pending::default();
        let (numbers, count) = sys::signal::read_signalfd::<8>(&self.fd);
        for signal in numbers.into_iter().take(count) {
            match signal {
                libc::SIGCHLD => pending.reap = true,
                libc::SIGHUP => pending.reload = true,
                libc::SIGTERM | libc::SIGINT => pending.stop = true,
                libc::SIGUSR1 => pending.status = true,
                _ => {}
            }
        }
        pending
    }
}

impl AsFd for Signals {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
