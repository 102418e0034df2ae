//! Connections the daemon serves itself, without a process: internal stream services,
//! redirect relays, and tcpmux clients still sending the name of their service.

use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{debug, error};
use nix::sys::epoll::{EpollEvent, EpollFlags};

use super::relay::{Progress, Relay};
use super::service_log::{Outcome, Reason, ServiceLog};
use super::{Daemon, Timer, token, vacant};
use crate::config::spec::Program;
use crate::internal::{Interest, Session};
use crate::sys::socket::send_now;
use crate::tcpmux::{self, Request};

/// How long a tcpmux client may take to name its service.
const MUX_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub enum Work {
    Internal(Session),
    Relay(Box<Relay>),
    Mux(MuxRequest),
}

/// A tcpmux client that has not sent its whole request line yet.
pub struct MuxRequest {
    pub stream: TcpStream,
    pub remote: SocketAddr,
}

pub struct SessionEntry {
    work: Work,
    service: (usize, u32),
    log: Rc<ServiceLog>,
    peer: IpAddr,
    /// Counted against `per_source`.
    counted: bool,
    started: Instant,
    /// The flags each fd is in the epoll set with; empty means not in the set, since
    /// epoll reports hang-ups whatever the flags and would wake the loop forever.
    registered: [EpollFlags; 2],
}

impl SessionEntry {
    fn streams(&self) -> [Option<&TcpStream>; 2] {
        match &self.work {
            Work::Internal(session) => [Some(&session.stream), None],
            Work::Relay(relay) => [Some(relay.client()), Some(relay.upstream())],
            Work::Mux(request) => [Some(&request.stream), None],
        }
    }

    fn wanted(&self) -> [EpollFlags; 2] {
        match &self.work {
            Work::Internal(session) => [flags(session.interest()), EpollFlags::empty()],
            Work::Relay(relay) => [
                flags(relay.client_interest()),
                flags(relay.upstream_interest()),
            ],
            Work::Mux(_) => [EpollFlags::EPOLLIN, EpollFlags::empty()],
        }
    }
}

fn flags(interest: Interest) -> EpollFlags {
    let mut flags = EpollFlags::empty();
    if interest.read {
        flags |= EpollFlags::EPOLLIN;
    }
    if interest.write {
        flags |= EpollFlags::EPOLLOUT;
    }
    flags
}

impl Daemon {
    pub(super) fn start_session(&mut self, mut work: Work, service: (usize, u32), peer: IpAddr) {
        let Some(running) = self.service(service.0, service.1) else {
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
        let deadline = match (&work, &running_spec_timeouts(self, service)) {
            (Work::Mux(_), _) => Some(Instant::now() + MUX_REQUEST_TIMEOUT),
            (Work::Relay(relay), Some((connect, idle))) => relay.deadline(*connect, *idle),
            _ => None,
        };
        let index = vacant(&mut self.sessions);
        let generation = self.sessions[index].generation;
        self.sessions[index].value = Some(SessionEntry {
            work,
            service,
            log,
            peer,
            counted: false,
            started: Instant::now(),
            registered: [EpollFlags::empty(); 2],
        });
        if !self.update_interest(index, generation) {
            self.end_session(index);
            return;
        }
        if let Some(service) = self.service(service.0, service.1) {
            service.running += 1;
            if service.spec.limits.per_source.is_some() {
                service.per_source.add(peer);
                if let Some(entry) = self.sessions[index].value.as_mut() {
                    entry.counted = true;
                }
            }
        }
        if let Some(deadline) = deadline {
            self.timers
                .push((deadline, Timer::Session(index, generation)));
        }
    }

    /// Brings the epoll set in line with what the session waits for.
    fn update_interest(&mut self, index: usize, generation: u32) -> bool {
        let Some(entry) = self.sessions[index].value.as_ref() else {
            return false;
        };
        let wanted = entry.wanted();
        for (side, stream) in entry.streams().into_iter().enumerate() {
            let Some(stream) = stream else {
                continue;
            };
            let (had, want) = (entry.registered[side], wanted[side]);
            if had == want {
                continue;
            }
            let mut event = EpollEvent::new(want, token(index, generation, true));
            let result = if had.is_empty() {
                self.epoll.add(stream, event)
            } else if want.is_empty() {
                self.epoll.delete(stream)
            } else {
                self.epoll.modify(stream, &mut event)
            };
            if let Err(errno) = result {
                error!("epoll: {errno}");
                return false;
            }
        }
        if let Some(entry) = self.sessions[index].value.as_mut() {
            entry.registered = wanted;
        }
        true
    }

    pub(super) fn on_session(&mut self, index: usize, generation: u32) {
        let Some(entry) = self
            .sessions
            .get_mut(index)
            .filter(|slot| slot.generation == generation)
            .and_then(|slot| slot.value.as_mut())
        else {
            return;
        };
        let was_connected = matches!(&entry.work, Work::Relay(relay) if relay.connected());
        let result = match &mut entry.work {
            Work::Internal(session) => session.advance().map(|open| open.then_some(())),
            Work::Relay(relay) => match relay.advance() {
                Ok(Progress::Open) => {
                    if !was_connected && relay.connected() {
                        // The pending timer is the connect deadline; now idleness counts.
                        let service = entry.service;
                        let idle = running_spec_timeouts(self, service).and_then(|(_, idle)| idle);
                        if let Some(idle) = idle {
                            self.timers
                                .push((Instant::now() + idle, Timer::Session(index, generation)));
                        }
                    }
                    Ok(Some(()))
                }
                Ok(Progress::Done) => Ok(None),
                Err(error) => {
                    let connected = relay.connected();
                    let log = entry.log.clone();
                    let peer = entry.peer;
                    if !connected {
                        let what = format!("redirect: {error}");
                        self.lines.fail_with(&log, &what, Some(peer));
                    } else {
                        debug!("service {}: relay: {error}", log.id);
                    }
                    Ok(None)
                }
            },
            Work::Mux(_) => {
                self.read_mux_request(index);
                return;
            }
        };
        match result {
            Ok(Some(())) => {
                if !self.update_interest(index, generation) {
                    self.end_session(index);
                }
            }
            Ok(None) | Err(_) => self.end_session(index),
        }
    }

    pub(super) fn end_session(&mut self, index: usize) {
        let Some(entry) = self.take_session(index) else {
            return;
        };
        let lived = entry.started.elapsed();
        match &entry.work {
            Work::Relay(relay) => {
                self.lines
                    .traffic(&entry.log, relay.bytes_in, relay.bytes_out);
                self.lines.exit(&entry.log, Outcome::Status(0), 0, lived);
            }
            Work::Internal(_) => self.lines.exit(&entry.log, Outcome::Status(0), 0, lived),
            Work::Mux(_) => {}
        }
    }

    /// Removes a session from the loop and its service's counts, without logging.
    fn take_session(&mut self, index: usize) -> Option<SessionEntry> {
        let slot = &mut self.sessions[index];
        slot.generation = slot.generation.wrapping_add(1) & 0x7fff_ffff;
        let entry = slot.value.take()?;
        for (stream, flags) in entry.streams().into_iter().zip(entry.registered) {
            if let Some(stream) = stream
                && !flags.is_empty()
            {
                let _ = self.epoll.delete(stream);
            }
        }
        if let Some(service) = self.service(entry.service.0, entry.service.1) {
            service.running = service.running.saturating_sub(1);
            if entry.counted {
                service.per_source.remove(entry.peer);
            }
        }
        Some(entry)
    }

    /// A session's timer: a relay that did not connect in time or sat idle too long,
    /// or a tcpmux client that never finished its line.
    pub(super) fn session_deadline(&mut self, index: usize, generation: u32) {
        let Some(entry) = self
            .sessions
            .get(index)
            .filter(|slot| slot.generation == generation)
            .and_then(|slot| slot.value.as_ref())
        else {
            return;
        };
        let deadline = match &entry.work {
            Work::Relay(relay) => running_spec_timeouts(self, entry.service)
                .and_then(|(connect, idle)| relay.deadline(connect, idle)),
            Work::Mux(_) => Some(entry.started + MUX_REQUEST_TIMEOUT),
            Work::Internal(_) => None,
        };
        match deadline {
            Some(at) if at > Instant::now() => {
                self.timers.push((at, Timer::Session(index, generation)));
            }
            Some(_) => {
                if let Work::Relay(relay) = &entry.work
                    && !relay.connected()
                {
                    let (log, peer) = (entry.log.clone(), entry.peer);
                    self.lines
                        .fail_with(&log, "redirect: connect timed out", Some(peer));
                }
                self.end_session(index);
            }
            None => {}
        }
    }

    /// RFC 1078: peek at the request line, consume exactly it, and hand the rest of the
    /// connection to the named TCPMUX service, checked as if it had its own port.
    fn read_mux_request(&mut self, index: usize) {
        let Some(entry) = self.sessions[index].value.as_mut() else {
            return;
        };
        let Work::Mux(request) = &mut entry.work else {
            return;
        };
        let mut peeked = [0u8; tcpmux::MAX_LINE];
        let length = match request.stream.peek(&mut peeked) {
            Ok(0) => return self.end_session(index),
            Ok(length) => length,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
            Err(_) => return self.end_session(index),
        };
        let parsed = tcpmux::parse(&peeked[..length]);
        let name = match parsed.request {
            Request::Incomplete => return,
            Request::Invalid(why) => {
                debug!("tcpmux: {why}");
                send_now(&request.stream, &tcpmux::refusal(why));
                return self.end_session(index);
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
            return self.end_session(index);
        }
        let Some(entry) = self.take_session(index) else {
            return;
        };
        let Work::Mux(request) = entry.work else {
            return;
        };
        let peer = entry.peer;
        // Only TCPMUX and TCPMUXPLUS services are candidates (CVE-2012-0862).
        let candidates: Vec<(usize, u32, &str)> = self
            .services
            .iter()
            .enumerate()
            .filter_map(|(index, slot)| {
                let service = slot.value.as_ref()?;
                service.spec.tcpmux?;
                Some((index, slot.generation, service.spec.name.as_str()))
            })
            .collect();
        let Some(name) = name else {
            let names: Vec<&str> = candidates.iter().map(|(_, _, name)| *name).collect();
            send_now(&request.stream, &tcpmux::help(&names));
            return;
        };
        let found = candidates
            .iter()
            .find(|(_, _, candidate)| candidate.eq_ignore_ascii_case(&name))
            .map(|(index, generation, _)| (*index, *generation));
        let Some((target, target_generation)) = found else {
            send_now(&request.stream, &tcpmux::refusal("Service not available"));
            self.lines
                .fail(&entry.log, Reason::ServiceNotFound, Some(peer));
            return;
        };
        // An exec'd server expects a blocking socket; the daemon's own stay non-blocking.
        let stream = request.stream;
        let exec = self
            .service(target, target_generation)
            .is_some_and(|service| matches!(service.spec.program, Program::Exec(_)));
        if exec && stream.set_nonblocking(false).is_err() {
            return;
        }
        // The target's own identity, access rules and limits apply (CVE-2013-4342).
        self.admit(
            target,
            target_generation,
            OwnedFd::from(stream),
            request.remote,
            true,
        );
    }
}

/// A redirect service's connect and idle timeouts, if the service still exists.
fn running_spec_timeouts(
    daemon: &Daemon,
    service: (usize, u32),
) -> Option<(Duration, Option<Duration>)> {
    let slot = daemon.services.get(service.0)?;
    if slot.generation != service.1 {
        return None;
    }
    match &slot.value.as_ref()?.spec.program {
        Program::Redirect(target) => Some((target.connect_timeout, target.idle_timeout)),
        _ => None,
    }
}
