//! The servers oxinetd started and has not reaped: what each belongs to, and reaping.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::error;
use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::service_log::{Outcome, ServiceLog};
use super::slab::ServiceKey;
use crate::peer::Source;

pub struct Child {
    pub service: ServiceKey,
    /// The service's log as it was at the start, so the EXIT line is right even after
    /// a reload changed or removed the service.
    pub log: Rc<ServiceLog>,
    /// Counted against `per_source` until the child exits.
    pub peer: Option<Source>,
    pub started: Instant,
    /// A `wait` server: its service's listener is out of the poll set until it exits.
    pub holds_socket: bool,
    /// `max_duration`: when it is sent SIGTERM, then, once it was, SIGKILL.
    pub deadline: Option<Instant>,
    /// Sent SIGTERM for running past `max_duration`.
    pub overran: bool,
    /// Its exit asks for something at once: an EXIT line, a count a limit reads, a
    /// socket to listen on again, a deadline. A quiet one only needs reaping.
    pub prompt: bool,
}

/// What `Children::end_overdue` did to a server past its `max_duration`.
pub enum Overdue {
    /// SIGTERM to its process group; SIGKILL follows at `then` if it still runs.
    Terminated {
        log: Rc<ServiceLog>,
        lived: Duration,
        then: Instant,
    },
    /// It outlived the grace after SIGTERM: SIGKILL to its process group.
    Killed {
        log: Rc<ServiceLog>,
        grace: Duration,
    },
}

#[derive(Default)]
pub struct Children {
    running: HashMap<Pid, Child>,
    /// How many of them are `prompt`.
    prompt: usize,
}

impl Children {
    pub fn insert(&mut self, pid: Pid, child: Child) {
        self.prompt += usize::from(child.prompt);
        if let Some(earlier) = self.running.insert(pid, child) {
            // A pid is reused only once reaped: cannot happen, but keep the count right.
            self.prompt -= usize::from(earlier.prompt);
        }
    }

    /// Whether any running server's exit must be seen at once.
    pub fn any_prompt(&self) -> bool {
        self.prompt > 0
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
                self.prompt -= usize::from(child.prompt);
                return Some((pid, outcome, child));
            }
        }
    }

    /// Ends a server whose `max_duration` deadline passed by `now`, as shutdown does:
    /// SIGTERM to its process group, then SIGKILL `grace` later. `None` when its
    /// deadline has not passed: the timer was for an earlier server with that pid.
    pub fn end_overdue(&mut self, pid: Pid, now: Instant, grace: Duration) -> Option<Overdue> {
        let child = self.running.get_mut(&pid)?;
        child.deadline.filter(|at| *at <= now)?;
        let log = child.log.clone();
        if child.overran {
            child.deadline = None;
            signal_group(pid, Signal::SIGKILL);
            return Some(Overdue::Killed { log, grace });
        }
        let then = now + grace;
        child.overran = true;
        child.deadline = Some(then);
        signal_group(pid, Signal::SIGTERM);
        Some(Overdue::Terminated {
            log,
            lived: now.saturating_duration_since(child.started),
            then,
        })
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
