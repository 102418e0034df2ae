//! Datagram services the loop answers itself: internal dgram services (each datagram
//! checked by address only, no lookups per datagram) and dgram SENSORs, and how a
//! refused datagram is dropped and logged.

use std::io;
use std::mem::MaybeUninit;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use log::debug;
use socket2::SockAddr;

use super::Daemon;
use super::admission::Verdict;
use super::service_log::Reason;
use super::slab::ServiceKey;
use crate::config::spec::{Internal, Program};
use crate::internal;
use crate::sys::socket::as_uninit;

const DGRAM_BATCH: usize = 64;

impl Daemon {
    /// Internal dgram services: each datagram is checked and answered from the loop.
    pub(super) fn serve_datagrams(&mut self, key: ServiceKey, kind: Internal) {
        for _ in 0..DGRAM_BATCH {
            let Some(service) = self.services.get(key) else {
                return;
            };
            let Some(socket) = &service.socket else {
                return;
            };
            let (length, from) = match socket.recv_from(as_uninit(&mut self.datagram)) {
                Ok((length, from)) => match from.as_socket() {
                    Some(from) => (length, from),
                    None => continue,
                },
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    debug!("service {}: recvfrom: {error}", service.spec.id);
                    continue;
                }
            };
            let peer = from.ip().to_canonical();
            let refusal = match self.admission(key, peer, Some(&[]), false) {
                None => return,
                Some(Verdict::Admit) => None,
                Some(Verdict::Refuse { reason, .. }) => Some(reason),
                Some(Verdict::NeedNames | Verdict::Trip(_)) => Some(Reason::Address),
            };
            if let Some(reason) = refusal {
                self.log_datagram_refusal(key, peer, reason, true);
                continue;
            }
            let Some(service) = self.services.get(key) else {
                return;
            };
            let Some(socket) = &service.socket else {
                return;
            };
            let request = &self.datagram[..length.min(self.datagram.len())];
            let Some(reply) = internal::dgram_reply(kind, from, request, &mut self.scratch) else {
                continue;
            };
            // A full send buffer drops the reply, as UDP may.
            if let Err(error) = socket.send_to(reply, &SockAddr::from(from)) {
                debug!("service {}: sendto {from}: {error}", service.spec.id);
            }
        }
    }

    /// A dgram SENSOR: every sender goes on the deny list; the datagram is dropped.
    pub(super) fn sense_datagrams(&mut self, key: ServiceKey) {
        for _ in 0..DGRAM_BATCH {
            let Some(service) = self.services.get(key) else {
                return;
            };
            let Program::Sensor(time) = service.spec.program else {
                return;
            };
            let Some(socket) = &service.socket else {
                return;
            };
            let mut byte = [MaybeUninit::new(0u8); 1];
            match socket.recv_from_with_flags(&mut byte, libc::MSG_DONTWAIT) {
                Ok((_, from)) => {
                    if let Some(from) = from.as_socket() {
                        self.trip_sensor(key, from.ip().to_canonical(), time);
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// A `wait` dgram service refused the sender of its first datagram: that datagram
    /// goes, so the next one is checked.
    pub(super) fn drop_datagram(
        &mut self,
        key: ServiceKey,
        peer: IpAddr,
        reason: Reason,
        log: bool,
    ) {
        let Some(service) = self.services.get(key) else {
            return;
        };
        if let Some(socket) = &service.socket {
            let mut byte = [MaybeUninit::new(0u8); 1];
            let _ = socket.recv_from_with_flags(&mut byte, libc::MSG_DONTWAIT);
        }
        self.log_datagram_refusal(key, peer, reason, log);
    }

    /// Refused datagrams are logged at most once a second per service.
    fn log_datagram_refusal(&mut self, key: ServiceKey, peer: IpAddr, reason: Reason, log: bool) {
        let now = Instant::now();
        let Some(service) = self.services.get_mut(key) else {
            return;
        };
        service.stats.refuse(reason);
        let quiet = service
            .datagram_refusal_logged
            .is_some_and(|at| now.duration_since(at) < Duration::from_secs(1));
        if !log || quiet {
            return;
        }
        service.datagram_refusal_logged = Some(now);
        let service_log = service.log.clone();
        self.lines.fail(&service_log, reason, Some(peer));
    }
}
