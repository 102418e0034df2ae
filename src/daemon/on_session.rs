//! Events of the connections the daemon serves itself: a session starts, its fds are
//! ready, its deadline passes, it ends; and a tcpmux client's request line arrives.

use std::io::{self, Read};
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use log::{debug, info};

use super::Daemon;
use super::incoming::Incoming;
use super::relay::Progress;
use super::service_log::{Outcome, Reason};
use super::sessions::{SessionEntry, Work};
use super::slab::{ServiceKey, SessionKey};
use super::timers::Timer;
use crate::config::spec::Program;
use crate::sys::socket::send_now;
use crate::tcpmux::{self, Request};

/// How long a tcpmux client may take to name its service.
const MUX_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl Daemon {
    pub(super) fn start_session(&mut self, mut work: Work, service: ServiceKey, peer: IpAddr) {
        let Some(running) = self.services.get(service) else {
            return;
        };
        let log = running.log.clone();
        let counts = !matches!(work, Work::Mux(_));
        if counts {
            self.lines.start(&log, 0, Some(peer));
        }
        if let Work::Internal(session) = &mut work {
            // Daytime and time are done in one write: no need to enter the loop.
            match session.advance() {
                Ok(true) => {}
                Ok(false) | Err(_) => {
                    self.lines.exit(&log, Outcome::Status(0), 0, Duration::ZERO);
                    return;
                }
            }
        }
        let deadline = match (&work, &self.redirect_timeouts(service)) {
            (Work::Mux(_), _) => Some(Instant::now() + MUX_REQUEST_TIMEOUT),
            (Work::Relay(relay), Some((connect, idle))) => relay.deadline(*connect, *idle),
            _ => None,
        };
        let mut entry = SessionEntry::new(work, service, log, peer);
        entry.ends = running
            .spec
            .limits
            .max_duration
            .map(|max| entry.started + max);
        let deadline = earliest(deadline, entry.ends);
        let key = self.sessions.insert(entry);
        if !self.sessions.update_interest(key, &self.poller) {
            self.end_session(key);
            return;
        }
        if let Some(service) = self.services.get_mut(service) {
            service.running += 1;
            if service.spec.limits.per_source.is_some() {
                service.per_source.add(peer);
                if let Some(entry) = self.sessions.get_mut(key) {
                    entry.counted = true;
                }
            }
        }
        if let Some(deadline) = deadline {
            self.timers.push(deadline, Timer::Session(key));
        }
    }

    pub(super) fn on_session(&mut self, key: SessionKey) {
        let Some(entry) = self.sessions.get_mut(key) else {
            return;
        };
        let was_connected = matches!(&entry.work, Work::Relay(relay) if relay.connected());
        let open = match &mut entry.work {
            Work::Internal(session) => session.advance().unwrap_or(false),
            Work::Relay(relay) => match relay.advance() {
                Ok(Progress::Open) => {
                    if !was_connected && relay.connected() {
                        // The pending timer is the connect deadline; now idleness counts.
                        let service = entry.service;
                        let idle = self.redirect_timeouts(service).and_then(|(_, idle)| idle);
                        if let Some(idle) = idle {
                            self.timers.push(Instant::now() + idle, Timer::Session(key));
                        }
                    }
                    true
                }
                Ok(Progress::Done) => false,
                Err(error) => {
                    let (log, peer) = (entry.log.clone(), entry.peer);
                    if !relay.connected() {
                        let what = format!("redirect: {error}");
                        self.lines.fail_with(&log, &what, Some(peer));
                    } else {
                        debug!("service {}: relay: {error}", log.id);
                    }
                    false
                }
            },
            Work::Mux(_) => return self.read_mux_request(key),
        };
        if !open || !self.sessions.update_interest(key, &self.poller) {
            self.end_session(key);
        }
    }

    pub(super) fn end_session(&mut self, key: SessionKey) {
        if let Some(entry) = self.take_session(key) {
            self.log_session_end(&entry, None);
        }
    }

    /// A session past its `max_duration`: closed whatever it is doing.
    fn end_overdue_session(&mut self, key: SessionKey) {
        let Some(entry) = self.take_session(key) else {
            return;
        };
        info!(
            "service {}: closing the connection from {} after {} s, its max_duration",
            entry.log.id,
            entry.peer,
            entry.started.elapsed().as_secs()
        );
        self.log_session_end(&entry, Some("max_duration"));
    }

    fn log_session_end(&mut self, entry: &SessionEntry, ended: Option<&str>) {
        let lived = entry.started.elapsed();
        let exit = Outcome::Status(0);
        match &entry.work {
            Work::Relay(relay) => {
                self.lines
                    .traffic(&entry.log, relay.bytes_in, relay.bytes_out);
                self.lines.exit_ended(&entry.log, exit, 0, lived, ended);
            }
            Work::Internal(_) => self.lines.exit_ended(&entry.log, exit, 0, lived, ended),
            Work::Mux(_) => {}
        }
    }

    /// Removes a session from the loop and its service's counts, without logging.
    fn take_session(&mut self, key: SessionKey) -> Option<SessionEntry> {
        let entry = self.sessions.take(key, &self.poller)?;
        if let Some(service) = self.services.get_mut(entry.service) {
            service.running = service.running.saturating_sub(1);
            if entry.counted {
                service.per_source.remove(entry.peer);
            }
        }
        Some(entry)
    }

    /// A session's timer: a relay that did not connect in time or sat idle too long,
    /// a tcpmux client that never finished its line, or any session past its
    /// `max_duration`.
    pub(super) fn session_deadline(&mut self, key: SessionKey) {
        let Some(entry) = self.sessions.get(key) else {
            return;
        };
        let now = Instant::now();
        if entry.ends.is_some_and(|at| at <= now) {
            return self.end_overdue_session(key);
        }
        let deadline = match &entry.work {
            Work::Relay(relay) => self
                .redirect_timeouts(entry.service)
                .and_then(|(connect, idle)| relay.deadline(connect, idle)),
            Work::Mux(_) => Some(entry.started + MUX_REQUEST_TIMEOUT),
            Work::Internal(_) => None,
        };
        match deadline {
            Some(at) if at <= now => {
                if let Work::Relay(relay) = &entry.work
                    && !relay.connected()
                {
                    let (log, peer) = (entry.log.clone(), entry.peer);
                    self.lines
                        .fail_with(&log, "redirect: connect timed out", Some(peer));
                }
                self.end_session(key);
            }
            _ => {
                if let Some(next) = earliest(deadline, entry.ends) {
                    self.timers.push(next, Timer::Session(key));
                }
            }
        }
    }

    /// RFC 1078: peek at the request line, consume exactly it, and hand the rest of the
    /// connection to the named TCPMUX service, checked as if it had its own port.
    fn read_mux_request(&mut self, key: SessionKey) {
        let Some(entry) = self.sessions.get_mut(key) else {
            return;
        };
        let Work::Mux(request) = &mut entry.work else {
            return;
        };
        let mut peeked = [0u8; tcpmux::MAX_LINE];
        let length = match request.stream.peek(&mut peeked) {
            Ok(0) => return self.end_session(key),
            Ok(length) => length,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
            Err(_) => return self.end_session(key),
        };
        let parsed = tcpmux::parse(&peeked[..length]);
        let name = match parsed.request {
            Request::Incomplete => return,
            Request::Invalid(why) => {
                debug!("tcpmux: {why}");
                send_now(&request.stream, &tcpmux::refusal(why));
                return self.end_session(key);
            }
            Request::Help => None,
            Request::Service(name) => Some(name.to_string()),
        };
        // Consume exactly the line: what follows it belongs to the server.
        let mut line = [0u8; tcpmux::MAX_LINE];
        if request
            .stream
            .read_exact(&mut line[..parsed.consumed])
            .is_err()
        {
            return self.end_session(key);
        }
        let Some(entry) = self.take_session(key) else {
            return;
        };
        let Work::Mux(request) = entry.work else {
            return;
        };
        let Some(name) = name else {
            let names: Vec<&str> = self.services.tcpmux_names().collect();
            send_now(&request.stream, &tcpmux::help(&names));
            return;
        };
        let Some(target) = self.services.tcpmux_target(&name) else {
            send_now(&request.stream, &tcpmux::refusal("Service not available"));
            self.lines
                .fail(&entry.log, Reason::ServiceNotFound, Some(entry.peer));
            return;
        };
        // An exec'd server expects a blocking socket; the daemon's own stay non-blocking.
        let stream = request.stream;
        let exec = self
            .services
            .get(target)
            .is_some_and(|service| matches!(service.spec.program, Program::Exec(_)));
        if exec && stream.set_nonblocking(false).is_err() {
            return;
        }
        // The target's own identity, access rules and limits apply (CVE-2013-4342).
        self.admit(Incoming {
            key: target,
            fd: OwnedFd::from(stream),
            remote: request.remote,
            via_tcpmux: true,
        });
    }

    /// A redirect service's connect and idle timeouts, if the service still exists.
    fn redirect_timeouts(&self, service: ServiceKey) -> Option<(Duration, Option<Duration>)> {
        match &self.services.get(service)?.spec.program {
            Program::Redirect(target) => Some((target.connect_timeout, target.idle_timeout)),
            _ => None,
        }
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        _ => a.or(b),
    }
}
