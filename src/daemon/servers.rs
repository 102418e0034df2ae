//! Starting servers and what their exit means: a server per connection, a `wait`
//! server holding its service's socket, the record of each child, and the listener's
//! return (or back-off) when a `wait` server exits.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use log::{info, warn};
use nix::unistd::Pid;

use super::Daemon;
use super::admission::Verdict;
use super::children::{Child, Overdue};
use super::incoming::Incoming;
use super::listeners::Queue;
use super::service_log::Reason;
use super::slab::ServiceKey;
use super::timers::Timer;
use crate::config::spec::{Address, Instances, SocketType};
use crate::peer::{Ends, Source};
use crate::spawn::{Connection, SpawnError};
use crate::sys::socket::{local_address, peek_sender};

/// A `wait` server that lives this long is taken to have served, whatever the queue.
const SERVED_AFTER: Duration = Duration::from_secs(1);
pub(super) const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// The longest a quiet server stays a zombie (see `reap_later`).
const REAP_LATER: Duration = Duration::from_millis(100);

impl Daemon {
    pub(super) fn spawn_for_connection(&mut self, incoming: Incoming) {
        let Some(service) = self.services.get(incoming.key) else {
            return;
        };
        let Some(prepared) = &service.prepared else {
            return;
        };
        let local = match service.spec.socket.address {
            Address::Ip(bound) if !bound.ip().is_unspecified() && service.spec.tcpmux.is_none() => {
                Some(bound)
            }
            _ => local_address(&incoming.fd),
        };
        let connection = Connection {
            fd: incoming.fd.as_fd(),
            ends: Ends::Ip {
                protocol: service.spec.socket.protocol,
                remote: Some(incoming.remote),
                local,
            },
        };
        let result = self.spawner.spawn(prepared, &connection);
        // Closed at once: the server has its own copies on 0-2. Closed later, after a
        // server that already exited, the daemon would tear the connection down itself.
        drop(incoming.fd);
        let source = Source::from(incoming.remote.ip());
        self.record_spawn(incoming.key, result, Some(source), false);
    }

    /// `wait = yes`: the server gets the socket itself, and the loop stops watching it
    /// until the server exits.
    pub(super) fn spawn_holding_socket(&mut self, key: ServiceKey) {
        let Some(service) = self.services.get(key) else {
            return;
        };
        let Some(socket) = &service.socket else {
            return;
        };
        let remote = match service.spec.socket.socket_type {
            SocketType::Dgram => peek_sender(socket),
            SocketType::Stream | SocketType::Seqpacket => None,
        };
        // A wait dgram server is checked on its first datagram, as in xinetd: a refused
        // sender's datagram is dropped and no server starts for it.
        if let Some(sender) = remote {
            let peer = sender.ip().to_canonical();
            let refusal = match self.admission(key, peer, Some(&[]), true) {
                None | Some(Verdict::Admit) => None,
                Some(Verdict::Refuse { reason, log }) => Some((reason, log)),
                Some(Verdict::NeedNames | Verdict::Trip(_)) => Some((Reason::Address, true)),
            };
            if let Some((reason, log)) = refusal {
                self.drop_datagram(key, peer, reason, log);
                return;
            }
        }
        let Some(service) = self.services.get_mut(key) else {
            return;
        };
        let Some(socket) = &service.socket else {
            return;
        };
        // Servers expect a blocking socket, and O_NONBLOCK is shared with every copy.
        // From now on the loop only waits on it and peeks without blocking.
        if let Err(error) = socket.set_nonblocking(false) {
            warn!(
                "service {}: cannot make the socket blocking: {error}",
                service.spec.id
            );
        }
        service.queue_at_spawn = Queue::of(socket, service.spec.socket.socket_type);
        let Some(prepared) = &service.prepared else {
            return;
        };
        let ends = match service.spec.socket.address {
            Address::Ip(bound) => Ends::Ip {
                protocol: service.spec.socket.protocol,
                remote,
                local: Some(bound),
            },
            Address::Unix(_) => Ends::Ipc(None),
        };
        let connection = Connection {
            fd: socket.as_fd(),
            ends,
        };
        let result = self.spawner.spawn(prepared, &connection);
        let spawned = result.is_ok() || result.as_ref().is_err_and(|e| e.pid.is_some());
        self.record_spawn(key, result, remote.map(|r| Source::from(r.ip())), true);
        self.services.set_armed(key, false, &self.poller);
        if !spawned {
            // No child will return the socket: try again shortly instead of spinning.
            self.timers
                .push(Instant::now() + FIRST_BACKOFF, Timer::Arm(key));
        }
    }

    pub(super) fn record_spawn(
        &mut self,
        key: ServiceKey,
        result: Result<Pid, SpawnError>,
        peer: Option<Source>,
        holds_socket: bool,
    ) {
        let Some(service) = self.services.get_mut(key) else {
            return;
        };
        let log = service.log.clone();
        let pid = match result {
            Ok(pid) => {
                service.fork_failing = false;
                self.lines.start(&log, pid.as_raw() as u32, peer);
                pid
            }
            Err(failure) => {
                if failure.pid.is_none() {
                    // clone itself failed: out of processes or memory. Logged once per
                    // episode; every failure pauses the listener, unless NORETRY says
                    // to just refuse (a wait service pauses in spawn_holding_socket).
                    let episode_starts = !service.fork_failing;
                    service.fork_failing = true;
                    service.stats.refuse(Reason::Fork);
                    service
                        .stats
                        .set_last_error(format!("cannot start a server: {}", failure.errno.desc()));
                    let retry = !service.spec.no_retry && !holds_socket;
                    if episode_starts {
                        self.lines.fail(&log, Reason::Fork, peer);
                        warn!(
                            "service {}: cannot start a server: {}",
                            log.id,
                            failure.errno.desc()
                        );
                    }
                    if retry {
                        self.services.set_armed(key, false, &self.poller);
                        self.timers
                            .push(Instant::now() + FIRST_BACKOFF, Timer::Arm(key));
                    }
                } else {
                    let what = format!("{}: {}", failure.stage.action(), failure.errno.desc());
                    service.stats.set_last_error(what.clone());
                    self.lines.fail_with(&log, &what, peer);
                }
                match failure.pid {
                    Some(pid) => pid,
                    None => return,
                }
            }
        };
        let Some(service) = self.services.get_mut(key) else {
            return;
        };
        service.running += 1;
        // Counting costs a hash per connection: only where `per_source` asks for it.
        let counted_peer =
            peer.filter(|_| !holds_socket && service.spec.limits.per_source.is_some());
        if let Some(peer) = counted_peer {
            service.per_source.add(peer);
        }
        let started = Instant::now();
        let deadline = service.spec.limits.max_duration.map(|max| started + max);
        if let Some(at) = deadline {
            self.timers.push(at, Timer::Child(pid));
        }
        let prompt = holds_socket
            || counted_peer.is_some()
            || deadline.is_some()
            || log.logging.exit
            || log.logging.duration
            || service.spec.instances != Instances::Unlimited
            || self.max_servers.is_some();
        self.children.insert(
            pid,
            Child {
                service: key,
                log,
                peer: counted_peer,
                started,
                holds_socket,
                deadline,
                overran: false,
                prompt,
            },
        );
        if prompt {
            self.reap_on_exit();
        } else {
            self.reap_later();
        }
    }

    /// A quiet server was started: unless some running server's exit must be seen at
    /// once, stop waking for exits and reap at the end of each loop turn instead, and
    /// at the latest after `REAP_LATER`. Under load that saves the loop a wake per
    /// connection (the exit and the next connection arrive apart); idle, a server is a
    /// zombie for at most `REAP_LATER`.
    fn reap_later(&mut self) {
        // `max_servers` need not be asked: with it every server is prompt.
        if !self.signals.wakes_on_exits() || self.children.any_prompt() || self.stopping.is_some() {
            return;
        }
        self.signals.wake_on_exits(false);
        if !self.signals.wakes_on_exits() {
            self.timers
                .push(Instant::now() + REAP_LATER, Timer::ReapLater);
        }
    }

    /// Exits wake the loop again; reaps what exited meanwhile.
    pub(super) fn reap_on_exit(&mut self) {
        if self.signals.wakes_on_exits() {
            return;
        }
        self.signals.wake_on_exits(true);
        if !self.signals.wakes_on_exits() {
            // The signalfd refused: keep reaping on the timer.
            self.timers
                .push(Instant::now() + REAP_LATER, Timer::ReapLater);
        }
        self.reap();
    }

    /// A server's `max_duration` timer: SIGTERM, and SIGKILL after `shutdown_grace`.
    pub(super) fn child_deadline(&mut self, pid: Pid) {
        let now = Instant::now();
        let grace = self.shutdown_grace;
        match self.children.end_overdue(pid, now, grace) {
            Some(Overdue::Terminated { log, lived, then }) => {
                info!(
                    "service {}: pid={pid} ran {} s, its max_duration: SIGTERM",
                    log.id,
                    lived.as_secs()
                );
                self.timers.push(then, Timer::Child(pid));
            }
            Some(Overdue::Killed { log, grace }) => warn!(
                "service {}: pid={pid} still runs {} s after SIGTERM (max_duration): SIGKILL",
                log.id,
                grace.as_secs()
            ),
            None => {}
        }
    }

    /// Reaps every child that exited: its EXIT line, its service's counts, and its
    /// socket back to the loop for a `wait` server.
    pub(super) fn reap(&mut self) {
        while let Some((pid, outcome, child)) = self.children.reap() {
            let lived = child.started.elapsed();
            let ended = child.overran.then_some("max_duration");
            self.lines
                .exit_ended(&child.log, outcome, pid.as_raw() as u32, lived, ended);
            let Some(service) = self.services.get_mut(child.service) else {
                continue;
            };
            service.running = service.running.saturating_sub(1);
            if let Some(peer) = child.peer {
                service.per_source.remove(peer);
            }
            if child.holds_socket && self.stopping.is_none() {
                self.socket_returned(child.service, lived);
            }
        }
    }

    /// A `wait` server exited: listen again, at once if it served, after a growing
    /// pause if it exited quickly leaving its queue untouched (a broken server must
    /// not be respawned in a hot loop).
    fn socket_returned(&mut self, key: ServiceKey, lived: Duration) {
        let Some(service) = self.services.get_mut(key) else {
            return;
        };
        let Some(socket) = &service.socket else {
            return;
        };
        let queue = Queue::of(socket, service.spec.socket.socket_type);
        let served = lived >= SERVED_AFTER || service.queue_at_spawn.drained_to(queue);
        if served {
            service.idle_exits = 0;
            self.services.set_armed(key, true, &self.poller);
            return;
        }
        service.idle_exits += 1;
        let delay = FIRST_BACKOFF
            .saturating_mul(1 << (service.idle_exits - 1).min(16))
            .min(MAX_BACKOFF);
        if service.idle_exits == 1 {
            warn!(
                "service {}: server exited after {} ms without serving; backing off",
                service.spec.id,
                lived.as_millis()
            );
        }
        self.timers.push(Instant::now() + delay, Timer::Arm(key));
    }
}
