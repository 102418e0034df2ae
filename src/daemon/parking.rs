//! Connections that wait in the parent for a lookup thread (names, ident, a redirect
//! target): parked under a key that is the lookup's ticket, resumed by its answer or by
//! its deadline, whichever comes first.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::warn;
use nix::sys::epoll::EpollFlags;

use super::Daemon;
use super::incoming::{IDENT_TIMEOUT, Incoming, Parked, Stage};
use super::lookup::{Answer, Job};
use super::poller::Token;
use super::service_log::Reason;
use super::slab::{Key, ParkedKey};
use super::timers::Timer;
use crate::config::spec::Program;
use crate::sys::socket::send_now;
use crate::tcpmux;

/// A name lookup that has not answered by then counts as "no name".
const NAMES_TIMEOUT: Duration = Duration::from_secs(5);
/// Resolving a redirect target: the resolver's own timeouts, bounded here too.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

impl Daemon {
    pub(super) fn park(&mut self, incoming: Incoming, stage: Stage, job: Job) {
        let key = self.parked.vacant_key();
        let ticket = key.to_u64();
        let job = match job {
            Job::Names { peer, .. } => Job::Names { ticket, peer },
            Job::Ident {
                local,
                remote,
                port,
                timeout,
                ..
            } => Job::Ident {
                ticket,
                local,
                remote,
                port,
                timeout,
            },
            Job::Resolve { host, port, .. } => Job::Resolve { ticket, host, port },
        };
        if !self.lookups_watched {
            match self
                .poller
                .add(self.lookups.fd(), Token::Lookups, EpollFlags::EPOLLIN)
            {
                Ok(()) => self.lookups_watched = true,
                Err(errno) => warn!("epoll: lookups: {errno}"),
            }
        }
        if !self.lookups_watched || !self.lookups.submit(job) {
            // Too many lookups outstanding: refuse rather than queue without bound.
            self.refuse(&incoming, Reason::Lookup, true);
            return;
        }
        let timeout = match stage {
            Stage::Names => NAMES_TIMEOUT,
            Stage::Ident => IDENT_TIMEOUT + Duration::from_secs(1),
            Stage::Resolve => RESOLVE_TIMEOUT,
        };
        let parked = self.parked.insert(Parked { incoming, stage });
        debug_assert_eq!(parked, key);
        self.timers
            .push(Instant::now() + timeout, Timer::Parked(key));
    }

    pub(super) fn on_lookup_answers(&mut self) {
        for answer in self.lookups.answers() {
            let key = ParkedKey::from_u64(answer.ticket());
            let Some(parked) = self.parked.remove(key) else {
                continue;
            };
            match answer {
                Answer::Names { names, .. } => self.decided(parked.incoming, Some(&names)),
                Answer::Ident { user, .. } => self.resume_with_ident(parked.incoming, user),
                Answer::Resolve { result, .. } => self.resume_with_target(parked.incoming, result),
            }
        }
    }

    /// A lookup took too long: decide without its answer.
    pub(super) fn parked_deadline(&mut self, key: ParkedKey) {
        let Some(parked) = self.parked.remove(key) else {
            return;
        };
        match parked.stage {
            Stage::Names => self.decided(parked.incoming, Some(&[])),
            Stage::Ident => self.resume_with_ident(parked.incoming, None),
            Stage::Resolve => {
                self.resume_with_target(parked.incoming, Err("name lookup timed out".to_string()))
            }
        }
    }

    /// Drops every parked connection (shutdown).
    pub(super) fn unpark_all(&mut self) {
        for key in self.parked.keys() {
            self.parked.remove(key);
        }
    }

    fn resume_with_ident(&mut self, incoming: Incoming, user: Option<String>) {
        let Some(service) = self.services.get(incoming.key) else {
            return;
        };
        let log = service.log.clone();
        let required = service.spec.access.ident_required;
        match user {
            Some(user) if log.logging.userid => self.lines.userid(&log, &user),
            Some(_) => {}
            None if required => {
                self.lines.noid(&log, incoming.peer());
                if incoming.via_tcpmux {
                    send_now(&incoming.fd, &tcpmux::refusal("Service not available"));
                } else if let Some(service) = self.services.get(incoming.key)
                    && let Some(banner) = &service.spec.banners.fail
                {
                    send_now(&incoming.fd, banner);
                }
                return;
            }
            None => {}
        }
        self.dispatch(incoming);
    }

    fn resume_with_target(&mut self, incoming: Incoming, target: Result<SocketAddr, String>) {
        match target {
            Ok(to) => self.start_relay(incoming, to),
            Err(message) => {
                let Some(service) = self.services.get(incoming.key) else {
                    return;
                };
                let log = service.log.clone();
                let what = match &service.spec.program {
                    Program::Redirect(to) => format!("redirect to {}: {message}", to.host),
                    _ => message,
                };
                self.lines.fail_with(&log, &what, Some(incoming.peer()));
            }
        }
    }
}
