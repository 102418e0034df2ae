//! The servers oxinetd started and has not reaped: what each belongs to, and reaping.

use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Instant;

use log::error;
use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::service_log::{Outcome, ServiceLog};
use super::slab::ServiceKey;

pub struct Child {
    pub service: ServiceKey,
    /// The service's log as it was at the start, so the EXIT line is right even after
    /// a reload changed or removed the service.
    pub log: Rc<ServiceLog>,
    /// Counted against `per_source` until the child exits.
    pub peer: Option<IpAddr>,
    pub started: Instant,
    /// A `wait` server: its service's listener is out of the poll set until it exits.
    pub holds_socket: bool,
}

#[derive(Default)]
pub struct Children {
    running: HashMap<Pid, Child>,
}

impl Children {
    pub fn insert(&mut self, pid: Pid, child: Child) {
        self.running.insert(pid, child);
    }

    /// Exec'd servers of all services, against `max_servers`.
    pub fn len(&self) -> usize {
        self.running.len()
    }

    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// Whether a `wait` server of `service` holds its socket.
    pub fn holds_socket(&self, service: ServiceKey) -> bool {
        self.running
            .values()
            .any(|child| child.holds_socket && child.service == service)
    }

    /// The next child that exited, with how; `None` when no more have. Call until
    /// `None`: SIGCHLDs merge, so one signal may stand for many exits.
    pub fn reap(&mut self) -> Option<(Pid, Outcome, Child)> {
        loop {
            let (pid, outcome) = match nix::sys::wait::waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, Outcome::Status(code)),
                Ok(WaitStatus::Signaled(pid, signal, _)) => (pid, Outcome::Signal(signal as i32)),
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return None,
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(errno) => {
                    error!("waitpid: {errno}");
                    return None;
                }
            };
            if let Some(child) = self.running.remove(&pid) {
                return Some((pid, outcome, child));
            }
        }
    }

    /// Signals every server's process group; `each` is told of every pid first.
    pub fn signal_all(&self, signal: Signal, mut each: impl FnMut(Pid)) {
        for pid in self.running.keys() {
            each(*pid);
            signal_group(*pid, signal);
        }
    }
}

/// Every server leads a process group of its own (a session too with `setsid = true`),
/// so the children it started go with it.
fn signal_group(pid: Pid, signal: Signal) {
    if nix::sys::signal::killpg(pid, signal).is_err() {
        let _ = nix::sys::signal::kill(pid, signal);
    }
}
