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
    let mut set = read_without_exits();
    set.add(Signal::SIGCHLD);
    set
}

/// The signalfd's set while child exits wait for the loop to look (`Signals::wake_on_exits`).
fn read_without_exits() -> SigSet {
    let mut set = SigSet::empty();
    for signal in [
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
    wakes_on_exits: bool,
}

impl Signals {
    pub fn new() -> nix::Result<Signals> {
        let fd = SignalFd::with_flags(&handled(), SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        Ok(Signals {
            fd,
            wakes_on_exits: true,
        })
    }

    /// Whether a server's exit wakes the loop (SIGCHLD in the signalfd's set). When not,
    /// SIGCHLD stays blocked and pending, and the loop reaps on its own schedule; put
    /// back, a pending one makes the signalfd readable at once. One system call, only
    /// when the answer changes.
    pub fn wake_on_exits(&mut self, wake: bool) {
        if self.wakes_on_exits == wake {
            return;
        }
        let set = if wake {
            handled()
        } else {
            read_without_exits()
        };
        match self.fd.set_mask(&set) {
            Ok(()) => self.wakes_on_exits = wake,
            Err(errno) => log::error!("signalfd: {errno}"),
        }
    }

    pub fn wakes_on_exits(&self) -> bool {
        self.wakes_on_exits
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
