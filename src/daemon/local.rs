//! A Unix-domain listener is ready: accept, learn the peer's credentials, admit it by
//! its uid (`admission::decide_local`) and start its server with UCSPI-ipc's variables.
//!
//! Only exec'd servers listen on Unix sockets (`config` refuses the rest), so a
//! connection here goes straight from accept to a server or to its refusal: no names,
//! no ident, no session.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use super::Daemon;
use super::accept::ACCEPT_BATCH;
use super::admission::{self, Counts, Verdict};
use super::incoming;
use super::services::Service;
use super::slab::ServiceKey;
use crate::peer::{Credentials, Ends, Source};
use crate::spawn::Connection;
use crate::sys::socket::{accept_local, discard_unread, send_now};

impl Daemon {
    /// `wait = false` stream and seqpacket services on a Unix socket.
    pub(super) fn accept_local_batch(&mut self, key: ServiceKey) {
        for _ in 0..ACCEPT_BATCH {
            let Some(socket) = self.services.get(key).and_then(|s| s.socket.as_ref()) else {
                return;
            };
            let (fd, peer) = match accept_local(socket) {
                Ok(accepted) => accepted,
                Err(error) => {
                    self.accept_failed(key, error);
                    return;
                }
            };
            self.fd_exhaustion_logged = false;
            self.serve_local(key, fd, peer);
        }
    }

    fn serve_local(&mut self, key: ServiceKey, fd: OwnedFd, peer: Credentials) {
        let Some(verdict) = self.local_admission(key, peer.uid) else {
            return;
        };
        let Some(service) = self.services.get_mut(key) else {
            return;
        };
        // What `oxinetd status` counts, as for IP peers.
        match verdict {
            Verdict::Admit => service.stats.accepted += 1,
            Verdict::Refuse { reason, .. } => service.stats.refuse(reason),
            Verdict::NeedNames | Verdict::Trip(_) => {}
        }
        if let Some(banner) = &service.spec.banners.always {
            send_now(&fd, banner);
        }
        let source = Source::Uid(peer.uid);
        match verdict {
            Verdict::Admit => {
                if let Some(banner) = &service.spec.banners.success {
                    send_now(&fd, banner);
                }
                let Some(prepared) = &service.prepared else {
                    return;
                };
                let connection = Connection {
                    fd: fd.as_fd(),
                    ends: Ends::Ipc(Some(peer)),
                };
                let result = self.spawner.spawn(prepared, &connection);
                self.record_spawn(key, result, Some(source), false);
            }
            Verdict::Refuse { reason, log } => {
                if let Some(banner) = &service.spec.banners.fail {
                    send_now(&fd, banner);
                }
                if service.spec.banners.fail.is_some() || service.spec.banners.always.is_some() {
                    discard_unread(&fd);
                }
                if log {
                    let service_log = service.log.clone();
                    self.lines.fail(&service_log, reason, Some(source));
                }
            }
            // Address rules and sensors are refused for Unix sockets at load.
            Verdict::NeedNames | Verdict::Trip(_) => {}
        }
        // `fd` closes here: a server has its own copies on 0-2.
    }

    /// Gathers what `decide_local` reads, as `admission` does for IP peers: the local
    /// time and the load only for a service that asks for them, the peer's count only
    /// with `per_source`.
    fn local_admission(&mut self, key: ServiceKey, uid: u32) -> Option<Verdict> {
        let instant = Instant::now();
        let servers = self.children.len();
        let max_servers = self.max_servers;
        let load = &mut self.load;
        let Service {
            spec,
            running,
            per_source,
            ..
        } = self.services.get_mut(key)?;
        let now = incoming::now_for(spec, instant, load);
        let counts = Counts {
            running: *running,
            from_peer: match spec.limits.per_source {
                Some(_) => per_source.count(Source::Uid(uid)),
                None => 0,
            },
            servers,
            max_servers,
            cps: None,
        };
        Some(admission::decide_local(spec, counts, &now))
    }
}
