//! A listener is ready: accept, gather what admission needs and apply its verdict, then
//! hand the connection to what serves it (a server, a session, a relay or tcpmux).
//!
//! A refused connection never runs anything: it is accepted, given `banner_fail`, and
//! closed in the parent.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use log::warn;

use super::Daemon;
use super::admission::{self, Counts, Peer, Verdict};
use super::incoming::{self, IDENT_TIMEOUT, Incoming, Stage};
use super::lookup::{IDENT_PORT, Job};
use super::relay::Relay;
use super::service_log::Reason;
use super::services::Service;
use super::sessions::{MuxRequest, Work};
use super::slab::ServiceKey;
use super::timers::Timer;
use crate::config::spec::{Address, Internal, Program, SocketType, TcpMux};
use crate::internal::Session;
use crate::limits::DenyTime;
use crate::sys::socket::{accept, discard_unread, local_address, send_now};
use crate::tcpmux;

/// Connections accepted per listener per wakeup, so one busy service cannot starve
/// the others.
pub(super) const ACCEPT_BATCH: usize = 64;
/// How long accepting pauses when the fd table is full.
const FD_EXHAUSTION_PAUSE: Duration = Duration::from_millis(100);
/// How often expired cps buckets and deny-list entries are forgotten.
const HOUSEKEEPING: Duration = Duration::from_secs(10);

impl Daemon {
    pub(super) fn on_listener(&mut self, key: ServiceKey) {
        let Some(service) = self.services.get(key) else {
            return;
        };
        match (&service.spec.program, service.spec.socket.socket_type) {
            (Program::Internal(kind), SocketType::Dgram) => {
                let kind = *kind;
                self.serve_datagrams(key, kind);
            }
            (Program::Sensor(_), SocketType::Dgram) => self.sense_datagrams(key),
            (Program::Exec(_), _) if service.spec.wait => self.spawn_holding_socket(key),
            _ if matches!(service.spec.socket.address, Address::Unix(_)) => {
                self.accept_local_batch(key)
            }
            _ => self.accept_batch(key),
        }
    }

    /// `wait = no` stream services, internal stream services, redirects and sensors.
    fn accept_batch(&mut self, key: ServiceKey) {
        for _ in 0..ACCEPT_BATCH {
            let Some(service) = self.services.get(key) else {
                return;
            };
            // Exec'd servers expect a blocking socket; what the daemon serves itself
            // must not block the loop.
            let served_here = !matches!(service.spec.program, Program::Exec(_));
            let Some(socket) = &service.socket else {
                return;
            };
            let (fd, remote) = match accept(socket, served_here) {
                Ok(accepted) => accepted,
                Err(error) => {
                    self.accept_failed(key, error);
                    return;
                }
            };
            self.fd_exhaustion_logged = false;
            self.admit(Incoming {
                key,
                fd,
                remote,
                via_tcpmux: false,
            });
        }
    }

    pub(super) fn accept_failed(&mut self, key: ServiceKey, error: io::Error) {
        match error.raw_os_error() {
            Some(libc::EAGAIN | libc::ECONNABORTED | libc::EINTR) => {}
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                // Out of fds: stop accepting for a moment rather than spin on a
                // listener that stays readable.
                if !self.fd_exhaustion_logged {
                    warn!(
                        "accept: {error}; pausing accepts for {} ms",
                        FD_EXHAUSTION_PAUSE.as_millis()
                    );
                    self.fd_exhaustion_logged = true;
                }
                self.services.set_armed(key, false, &self.poller);
                self.timers
                    .push(Instant::now() + FD_EXHAUSTION_PAUSE, Timer::Arm(key));
            }
            _ => warn!("accept: {error}"),
        }
    }

    /// A new connection: `banner_always`, then admission, then what serves it.
    pub(super) fn admit(&mut self, incoming: Incoming) {
        let Some(service) = self.services.get(incoming.key) else {
            return;
        };
        // Through tcpmux the protocol's reply line must come first: banners wait.
        if !incoming.via_tcpmux
            && let Some(banner) = &service.spec.banners.always
        {
            send_now(&incoming.fd, banner);
        }
        self.decided(incoming, None);
    }

    /// Applies admission's verdict on a connection, with the peer's names once known.
    pub(super) fn decided(&mut self, incoming: Incoming, names: Option<&[String]>) {
        let peer = incoming.peer();
        let Some(verdict) = self.admission(incoming.key, peer, names, true) else {
            return;
        };
        match verdict {
            Verdict::Admit => self.admitted(incoming),
            Verdict::Refuse { reason, log } => self.refuse(&incoming, reason, log),
            // With names given, rules always decide.
            Verdict::NeedNames if names.is_none() => {
                self.park(incoming, Stage::Names, Job::Names { ticket: 0, peer })
            }
            Verdict::NeedNames => {}
            Verdict::Trip(time) => self.trip_sensor(incoming.key, peer, time),
        }
    }

    /// Gathers admission's inputs for a connection from `ip` and decides. Reads the
    /// local time only for a service with `access_times`, the load only for one with
    /// `max_load`, and counts the peer's connections only for one with `per_source`.
    /// `counted`: whether the connection would count against the limits.
    pub(super) fn admission(
        &mut self,
        key: ServiceKey,
        ip: IpAddr,
        names: Option<&[String]>,
        counted: bool,
    ) -> Option<Verdict> {
        let instant = Instant::now();
        let denied = !self.deny_list.is_empty() && self.deny_list.denies(ip, instant);
        let servers = self.children.len();
        let max_servers = self.max_servers;
        let load = &mut self.load;
        let Service {
            spec,
            running,
            per_source,
            cps,
            stats,
            ..
        } = self.services.get_mut(key)?;
        let now = incoming::now_for(spec, instant, load);
        let counts = counted.then(|| Counts {
            running: *running,
            from_peer: match spec.limits.per_source {
                Some(_) => per_source.count(ip),
                None => 0,
            },
            servers,
            max_servers,
            cps: cps.as_mut(),
        });
        let verdict = admission::decide(spec, counts, Peer { ip, denied }, names, &now);
        if verdict == Verdict::Admit {
            stats.accepted += 1;
        }
        if let Verdict::Refuse {
            reason: Reason::Cps,
            ..
        } = verdict
        {
            self.schedule_housekeeping(instant);
        }
        Some(verdict)
    }

    /// Admitted: ask the peer's ident server first if the service wants its user.
    fn admitted(&mut self, incoming: Incoming) {
        let Some(service) = self.services.get(incoming.key) else {
            return;
        };
        let wants_ident = service.spec.access.ident_required || service.spec.logging.wants_ident();
        // Only IP services ask (`config` refuses USERID and IDONLY for Unix sockets).
        if wants_ident
            && let Some(local) =
                local_address(&incoming.fd).or_else(|| service.spec.socket.address.ip())
        {
            let job = Job::Ident {
                ticket: 0,
                local,
                remote: incoming.remote,
                port: IDENT_PORT,
                timeout: IDENT_TIMEOUT,
            };
            self.park(incoming, Stage::Ident, job);
            return;
        }
        self.dispatch(incoming);
    }

    /// `banner_fail` (or tcpmux's refusal) and a FAIL line; the connection closes when
    /// the caller drops it: one accept, one close.
    pub(super) fn refuse(&mut self, incoming: &Incoming, reason: Reason, log: bool) {
        let Some(service) = self.services.get_mut(incoming.key) else {
            return;
        };
        service.stats.refuse(reason);
        if incoming.via_tcpmux {
            send_now(&incoming.fd, &tcpmux::refusal("Service not available"));
        } else if let Some(banner) = &service.spec.banners.fail {
            send_now(&incoming.fd, banner);
        }
        let written = incoming.via_tcpmux
            || service.spec.banners.fail.is_some()
            || service.spec.banners.always.is_some();
        if written {
            discard_unread(&incoming.fd);
        }
        if log {
            let service_log = service.log.clone();
            self.lines.fail(&service_log, reason, Some(incoming.peer()));
        }
    }

    pub(super) fn trip_sensor(&mut self, key: ServiceKey, peer: IpAddr, time: DenyTime) {
        let now = Instant::now();
        let added = self.deny_list.add(peer, time, now);
        let Some(service) = self.services.get(key) else {
            return;
        };
        let log = service.log.clone();
        if added || matches!(time, DenyTime::Never) {
            let minutes = match time {
                DenyTime::Never => Some(0),
                DenyTime::Forever => None,
                DenyTime::Minutes(minutes) => Some(minutes),
            };
            self.lines.sensor(&log, peer, minutes);
        }
        self.schedule_housekeeping(now);
    }

    /// Sends the connection to what serves it: a server, a session, a relay or tcpmux.
    pub(super) fn dispatch(&mut self, incoming: Incoming) {
        let Some(service) = self.services.get(incoming.key) else {
            return;
        };
        if incoming.via_tcpmux {
            // TCPMUXPLUS: the daemon answers. TCPMUX: the server does, unless the daemon
            // itself serves the connection.
            let exec = matches!(service.spec.program, Program::Exec(_));
            if service.spec.tcpmux == Some(TcpMux::Plus) || !exec {
                send_now(&incoming.fd, tcpmux::GO);
            }
            if let Some(banner) = &service.spec.banners.always {
                send_now(&incoming.fd, banner);
            }
        }
        if let Some(banner) = &service.spec.banners.success {
            send_now(&incoming.fd, banner);
        }
        let peer = incoming.peer();
        let key = incoming.key;
        match &service.spec.program {
            Program::Exec(_) => self.spawn_for_connection(incoming),
            Program::Internal(Internal::TcpMux) => {
                let stream = TcpStream::from(incoming.fd);
                let work = Work::Mux(MuxRequest {
                    stream,
                    remote: incoming.remote,
                });
                self.start_session(work, key, peer);
            }
            Program::Internal(kind) => {
                let session = Session::new(*kind, TcpStream::from(incoming.fd));
                self.start_session(Work::Internal(session), key, peer);
            }
            Program::Redirect(target) => match target.host.parse::<IpAddr>() {
                Ok(ip) => {
                    let to = SocketAddr::new(ip, target.port);
                    self.start_relay(incoming, to);
                }
                Err(_) => {
                    // Names are resolved per connection, so a moved upstream is followed.
                    let job = Job::Resolve {
                        ticket: 0,
                        host: target.host.clone(),
                        port: target.port,
                    };
                    let incoming = Incoming {
                        via_tcpmux: false,
                        ..incoming
                    };
                    self.park(incoming, Stage::Resolve, job);
                }
            },
            Program::Sensor(_) => {}
        }
    }

    pub(super) fn start_relay(&mut self, incoming: Incoming, to: SocketAddr) {
        let peer = incoming.peer();
        let key = incoming.key;
        match Relay::connect(TcpStream::from(incoming.fd), to) {
            Ok(relay) => self.start_session(Work::Relay(Box::new(relay)), key, peer),
            Err(error) => {
                if let Some(service) = self.services.get_mut(key) {
                    let log = service.log.clone();
                    let what = format!("redirect to {to}: {error}");
                    service.stats.set_last_error(what.clone());
                    self.lines.fail_with(&log, &what, Some(peer));
                }
            }
        }
    }

    pub(super) fn schedule_housekeeping(&mut self, now: Instant) {
        if self.housekeeping_due.is_none() {
            self.housekeeping_due = Some(now + HOUSEKEEPING);
            self.timers.push(now + HOUSEKEEPING, Timer::Housekeeping);
        }
    }

    /// Ends cps episodes (with a summary line each) and forgets expired deny entries.
    pub(super) fn housekeeping(&mut self, now: Instant) {
        self.housekeeping_due = None;
        self.deny_list.purge(now);
        let mut busy = !self.deny_list.is_empty();
        for (_, service) in self.services.iter_mut() {
            let Some(cps) = &mut service.cps else {
                continue;
            };
            for (peer, shed, lasted) in cps.expire(now) {
                warn!(
                    "service {}: cps: shed {shed} connections from {peer} over {} s",
                    service.spec.id,
                    lasted.as_secs()
                );
            }
            busy |= cps.next_deadline().is_some();
        }
        if busy {
            self.schedule_housekeeping(now);
        }
    }
}
