//! From a ready listener to a running server: accept, decide who may connect (access
//! rules, times, load, sensors, limits), wait off-loop for names or ident when a rule
//! needs them, then write banners and start the server, session or relay.
//!
//! A refused connection never runs anything: it is accepted, given `banner_fail`, and
//! closed in the parent.

use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use log::{debug, warn};
use nix::unistd::Pid;
use socket2::SockAddr;

use super::lookup::{Answer, IDENT_PORT, Job};
use super::relay::Relay;
use super::service_log::Reason;
use super::sessions::{MuxRequest, Work};
use super::{
    ACCEPT_BATCH, Child, DGRAM_BATCH, Daemon, FD_EXHAUSTION_PAUSE, FIRST_BACKOFF, LOOKUPS_TOKEN,
    Timer, as_uninit, local_address, peek_sender, vacant,
};
use crate::access::Decision;
use crate::clock;
use crate::config::spec::{Internal, Program, SocketType, TcpMux};
use crate::internal::{self, Session};
use crate::limits::{CpsVerdict, DenyTime};
use crate::spawn::{Connection, SpawnError};
use crate::sys::socket::{accept, send_now};
use crate::tcpmux;

/// A name lookup that has not answered by then counts as "no name".
const NAMES_TIMEOUT: Duration = Duration::from_secs(5);
const IDENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Resolving a redirect target: the resolver's own timeouts, bounded here too.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);
/// /proc/loadavg changes every 5 s; reading it once per 100 ms is plenty.
const LOAD_REFRESH: Duration = Duration::from_millis(100);
/// How often expired cps buckets and deny-list entries are forgotten.
const HOUSEKEEPING: Duration = Duration::from_secs(10);

/// A connection waiting for an answer from the lookup threads.
pub struct Parked {
    fd: OwnedFd,
    remote: SocketAddr,
    service: (usize, u32),
    stage: Stage,
    via_tcpmux: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Names,
    Ident,
    Resolve,
}

/// The 1-minute load average, read at most once per `LOAD_REFRESH`.
#[derive(Default)]
pub struct LoadAverage {
    value: f64,
    read_at: Option<Instant>,
}

impl LoadAverage {
    fn current(&mut self, now: Instant) -> f64 {
        if self
            .read_at
            .is_none_or(|at| now.duration_since(at) >= LOAD_REFRESH)
        {
            if let Some(value) = std::fs::read_to_string("/proc/loadavg")
                .ok()
                .and_then(|text| text.split_whitespace().next()?.parse().ok())
            {
                self.value = value;
            }
            self.read_at = Some(now);
        }
        self.value
    }
}

enum Check {
    Pass,
    Refuse(Reason),
    NeedNames,
}

impl Daemon {
    pub(super) fn on_listener(&mut self, index: usize, generation: u32) {
        let Some(service) = self.service(index, generation) else {
            return;
        };
        match (&service.spec.program, service.spec.socket.socket_type) {
            (Program::Internal(kind), SocketType::Dgram) => {
                let kind = *kind;
                self.serve_datagrams(index, generation, kind);
            }
            (Program::Sensor(_), SocketType::Dgram) => self.sense_datagrams(index, generation),
            (Program::Exec(_), _) if service.spec.wait => {
                self.spawn_holding_socket(index, generation)
            }
            _ => self.accept_batch(index, generation),
        }
    }

    /// `wait = no` stream services, internal stream services, redirects and sensors.
    fn accept_batch(&mut self, index: usize, generation: u32) {
        for _ in 0..ACCEPT_BATCH {
            let Some(service) = self.service(index, generation) else {
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
                    self.accept_failed(index, generation, error);
                    return;
                }
            };
            self.fd_exhaustion_logged = false;
            self.admit(index, generation, fd, remote, false);
        }
    }

    fn accept_failed(&mut self, index: usize, generation: u32, error: io::Error) {
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
                self.set_armed(index, generation, false);
                self.timers.push((
                    Instant::now() + FD_EXHAUSTION_PAUSE,
                    Timer::Arm(index, generation),
                ));
            }
            _ => warn!("accept: {error}"),
        }
    }

    /// Runs every check on a new connection, then starts what serves it.
    pub(super) fn admit(
        &mut self,
        index: usize,
        generation: u32,
        fd: OwnedFd,
        remote: SocketAddr,
        via_tcpmux: bool,
    ) {
        let Some(service) = self.service(index, generation) else {
            return;
        };
        let peer = remote.ip().to_canonical();
        // Through tcpmux the protocol's reply line must come first: banners wait.
        if !via_tcpmux && let Some(banner) = &service.spec.banners.always {
            send_now(&fd, banner);
        }
        if let Program::Sensor(time) = service.spec.program {
            self.trip_sensor(index, generation, peer, time);
            return;
        }
        match self.check_peer(index, generation, peer, None) {
            Check::Pass => self.admit_within_limits(index, generation, fd, remote, via_tcpmux),
            Check::Refuse(reason) => {
                self.refuse(index, generation, &fd, peer, reason, true, via_tcpmux)
            }
            Check::NeedNames => self.park(
                index,
                generation,
                fd,
                remote,
                Stage::Names,
                via_tcpmux,
                Job::Names { ticket: 0, peer },
            ),
        }
    }

    /// The second half of `admit`, once the peer itself is acceptable.
    fn admit_within_limits(
        &mut self,
        index: usize,
        generation: u32,
        fd: OwnedFd,
        remote: SocketAddr,
        via_tcpmux: bool,
    ) {
        let peer = remote.ip().to_canonical();
        if let Err((reason, log)) = self.check_limits(index, generation, peer) {
            self.refuse(index, generation, &fd, peer, reason, log, via_tcpmux);
            return;
        }
        let Some(service) = self.service(index, generation) else {
            return;
        };
        let wants_ident = service.spec.access.ident_required || service.spec.logging.wants_ident();
        if wants_ident {
            let local = local_address(&fd).unwrap_or(service.spec.socket.address);
            let job = Job::Ident {
                ticket: 0,
                local,
                remote,
                port: IDENT_PORT,
                timeout: IDENT_TIMEOUT,
            };
            self.park(index, generation, fd, remote, Stage::Ident, via_tcpmux, job);
            return;
        }
        self.dispatch(index, generation, fd, remote, via_tcpmux);
    }

    /// Address rules, the sensors' deny list, access times and load.
    fn check_peer(
        &mut self,
        index: usize,
        generation: u32,
        peer: IpAddr,
        names: Option<&[String]>,
    ) -> Check {
        if !self.deny_list.is_empty() && self.deny_list.denies(peer, Instant::now()) {
            return Check::Refuse(Reason::Address);
        }
        let load = &mut self.load;
        let Some(service) = self
            .services
            .get_mut(index)
            .filter(|slot| slot.generation == generation)
            .and_then(|slot| slot.value.as_mut())
        else {
            return Check::Refuse(Reason::Address);
        };
        let access = &service.spec.access;
        if !access.rules.is_open() {
            match access.rules.decide(peer, names) {
                Decision::Allow => {}
                Decision::Deny => return Check::Refuse(Reason::Address),
                Decision::NeedNames => return Check::NeedNames,
            }
        }
        if let Some(times) = &access.times
            && !times.admits(clock::local_now().minute_of_day())
        {
            return Check::Refuse(Reason::Time);
        }
        if let Some(max) = access.max_load
            && load.current(Instant::now()) >= max
        {
            return Check::Refuse(Reason::Load);
        }
        Check::Pass
    }

    /// `instances`, `per_source`, `max_servers` and `cps`. The flag says whether to log:
    /// cps logs once per episode, not per connection.
    fn check_limits(
        &mut self,
        index: usize,
        generation: u32,
        peer: IpAddr,
    ) -> Result<(), (Reason, bool)> {
        let servers = self.servers;
        let max_servers = self.max_servers;
        let Some(service) = self.service(index, generation) else {
            return Err((Reason::ServiceLimit, false));
        };
        if !service.spec.instances.admits(service.running) {
            return Err((Reason::ServiceLimit, true));
        }
        if let Some(limit) = service.spec.limits.per_source
            && service.per_source.count(peer) >= limit
        {
            return Err((Reason::PerSourceLimit, true));
        }
        let runs_process = matches!(service.spec.program, Program::Exec(_));
        if runs_process && max_servers.is_some_and(|max| servers >= max as usize) {
            return Err((Reason::ProcessLimit, true));
        }
        if let Some(cps) = &mut service.cps {
            let now = Instant::now();
            let verdict = cps.admit(peer, now);
            if let CpsVerdict::Shed { episode_started } = verdict {
                self.schedule_housekeeping(now);
                return Err((Reason::Cps, episode_started));
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn refuse(
        &mut self,
        index: usize,
        generation: u32,
        fd: &OwnedFd,
        peer: IpAddr,
        reason: Reason,
        log: bool,
        via_tcpmux: bool,
    ) {
        let Some(service) = self.services[index]
            .value
            .as_ref()
            .filter(|_| self.services[index].generation == generation)
        else {
            return;
        };
        if via_tcpmux {
            send_now(fd, &tcpmux::refusal("Service not available"));
        } else if let Some(banner) = &service.spec.banners.fail {
            send_now(fd, banner);
        }
        if log {
            let service_log = service.log.clone();
            self.lines.fail(&service_log, reason, Some(peer));
        }
        // `fd` closes when the caller drops it: one accept, one close.
    }

    fn trip_sensor(&mut self, index: usize, generation: u32, peer: IpAddr, time: DenyTime) {
        let now = Instant::now();
        let added = self.deny_list.add(peer, time, now);
        let Some(service) = self.service(index, generation) else {
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
    fn dispatch(
        &mut self,
        index: usize,
        generation: u32,
        fd: OwnedFd,
        remote: SocketAddr,
        via_tcpmux: bool,
    ) {
        let Some(service) = self.service(index, generation) else {
            return;
        };
        if via_tcpmux {
            // TCPMUXPLUS: the daemon answers. TCPMUX: the server does, unless the daemon
            // itself serves the connection.
            let exec = matches!(service.spec.program, Program::Exec(_));
            if service.spec.tcpmux == Some(TcpMux::Plus) || !exec {
                send_now(&fd, tcpmux::GO);
            }
            if let Some(banner) = &service.spec.banners.always {
                send_now(&fd, banner);
            }
        }
        if let Some(banner) = &service.spec.banners.success {
            send_now(&fd, banner);
        }
        let peer = remote.ip().to_canonical();
        match &service.spec.program {
            Program::Exec(_) => self.spawn_for_connection(index, generation, fd, remote),
            Program::Internal(Internal::TcpMux) => {
                let stream = TcpStream::from(fd);
                let work = Work::Mux(MuxRequest { stream, remote });
                self.start_session(work, (index, generation), peer);
            }
            Program::Internal(kind) => {
                let kind = *kind;
                let stream = TcpStream::from(fd);
                let session = Session::new(kind, stream);
                self.start_session(Work::Internal(session), (index, generation), peer);
            }
            Program::Redirect(target) => match target.host.parse::<IpAddr>() {
                Ok(ip) => {
                    let to = SocketAddr::new(ip, target.port);
                    self.start_relay(index, generation, fd, remote, to);
                }
                Err(_) => {
                    // Names are resolved per connection, so a moved upstream is followed.
                    let job = Job::Resolve {
                        ticket: 0,
                        host: target.host.clone(),
                        port: target.port,
                    };
                    self.park(index, generation, fd, remote, Stage::Resolve, false, job);
                }
            },
            Program::Sensor(_) => {}
        }
    }

    fn start_relay(
        &mut self,
        index: usize,
        generation: u32,
        fd: OwnedFd,
        remote: SocketAddr,
        to: SocketAddr,
    ) {
        let peer = remote.ip().to_canonical();
        let client = TcpStream::from(fd);
        match Relay::connect(client, to) {
            Ok(relay) => {
                self.start_session(Work::Relay(Box::new(relay)), (index, generation), peer)
            }
            Err(error) => {
                if let Some(service) = self.service(index, generation) {
                    let log = service.log.clone();
                    let what = format!("redirect to {to}: {error}");
                    self.lines.fail_with(&log, &what, Some(peer));
                }
            }
        }
    }

    fn spawn_for_connection(
        &mut self,
        index: usize,
        generation: u32,
        fd: OwnedFd,
        remote: SocketAddr,
    ) {
        let Some(service) = self.services[index].value.as_ref() else {
            return;
        };
        let Some(prepared) = &service.prepared else {
            return;
        };
        let bound = service.spec.socket.address;
        let local = if bound.ip().is_unspecified() || service.spec.tcpmux.is_some() {
            local_address(&fd)
        } else {
            Some(bound)
        };
        let connection = Connection {
            fd: fd.as_fd(),
            protocol: service.spec.socket.protocol,
            remote: Some(remote),
            local,
        };
        let result = self.spawner.spawn(prepared, &connection);
        self.record_spawn(index, generation, result, Some(remote.ip()), false);
        // `fd` closes here: the server has its own copies on 0-2.
    }

    /// `wait = yes`: the server gets the socket itself, and the loop stops watching it
    /// until the server exits.
    fn spawn_holding_socket(&mut self, index: usize, generation: u32) {
        let Some(service) = self.services[index].value.as_mut() else {
            return;
        };
        let Some(socket) = &service.socket else {
            return;
        };
        let socket_type = service.spec.socket.socket_type;
        let remote = match socket_type {
            SocketType::Dgram => peek_sender(socket),
            SocketType::Stream => None,
        };
        // A wait dgram server is checked on its first datagram, as in xinetd: a refused
        // sender's datagram is dropped and no server starts for it.
        if let Some(sender) = remote {
            let peer = sender.ip().to_canonical();
            let check = match self.check_peer(index, generation, peer, Some(&[])) {
                Check::Pass => self.check_limits(index, generation, peer).err(),
                Check::Refuse(reason) => Some((reason, true)),
                Check::NeedNames => Some((Reason::Address, true)),
            };
            if let Some((reason, log)) = check {
                self.drop_datagram(index, generation, peer, reason, log);
                return;
            }
        }
        let Some(service) = self.services[index].value.as_mut() else {
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
        service.queue_at_spawn = super::Queue::of(socket, socket_type);
        let Some(prepared) = &service.prepared else {
            return;
        };
        let connection = Connection {
            fd: socket.as_fd(),
            protocol: service.spec.socket.protocol,
            remote,
            local: Some(service.spec.socket.address),
        };
        let result = self.spawner.spawn(prepared, &connection);
        let spawned = result.is_ok() || result.as_ref().is_err_and(|e| e.pid.is_some());
        self.record_spawn(index, generation, result, remote.map(|r| r.ip()), true);
        self.set_armed(index, generation, false);
        if !spawned {
            // No child will return the socket: try again shortly instead of spinning.
            self.timers.push((
                Instant::now() + FIRST_BACKOFF,
                Timer::Arm(index, generation),
            ));
        }
    }

    fn drop_datagram(
        &mut self,
        index: usize,
        generation: u32,
        peer: IpAddr,
        reason: Reason,
        log: bool,
    ) {
        let Some(service) = self.service(index, generation) else {
            return;
        };
        if let Some(socket) = &service.socket {
            let mut byte = [MaybeUninit::new(0u8); 1];
            let _ = socket.recv_from_with_flags(&mut byte, libc::MSG_DONTWAIT);
        }
        self.log_datagram_refusal(index, generation, peer, reason, log);
    }

    fn log_datagram_refusal(
        &mut self,
        index: usize,
        generation: u32,
        peer: IpAddr,
        reason: Reason,
        log: bool,
    ) {
        let now = Instant::now();
        let Some(service) = self.service(index, generation) else {
            return;
        };
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

    fn record_spawn(
        &mut self,
        index: usize,
        generation: u32,
        result: Result<Pid, SpawnError>,
        remote: Option<IpAddr>,
        holds_socket: bool,
    ) {
        let peer = remote.map(|ip| ip.to_canonical());
        let Some(service) = self.service(index, generation) else {
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
                        self.set_armed(index, generation, false);
                        self.timers.push((
                            Instant::now() + FIRST_BACKOFF,
                            Timer::Arm(index, generation),
                        ));
                    }
                } else {
                    let what = format!("{}: {}", failure.stage.action(), failure.errno.desc());
                    self.lines.fail_with(&log, &what, peer);
                }
                match failure.pid {
                    Some(pid) => pid,
                    None => return,
                }
            }
        };
        let Some(service) = self.service(index, generation) else {
            return;
        };
        service.running += 1;
        // Counting costs a hash per connection: only where `per_source` asks for it.
        let counted_peer =
            peer.filter(|_| !holds_socket && service.spec.limits.per_source.is_some());
        if let Some(peer) = counted_peer {
            service.per_source.add(peer);
        }
        self.servers += 1;
        self.children.insert(
            pid,
            Child {
                service: (index, generation),
                log,
                peer: counted_peer,
                started: Instant::now(),
                holds_socket,
            },
        );
    }

    /// Internal dgram services: each datagram is checked (by address only: no lookups
    /// per datagram) and answered from the loop.
    fn serve_datagrams(&mut self, index: usize, generation: u32, kind: Internal) {
        for _ in 0..DGRAM_BATCH {
            let Some(service) = self.services[index].value.as_ref() else {
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
            let refusal = match self.check_peer(index, generation, peer, Some(&[])) {
                Check::Pass => None,
                Check::Refuse(reason) => Some(reason),
                Check::NeedNames => Some(Reason::Address),
            };
            if let Some(reason) = refusal {
                self.log_datagram_refusal(index, generation, peer, reason, true);
                continue;
            }
            let Some(service) = self.services[index].value.as_ref() else {
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
    fn sense_datagrams(&mut self, index: usize, generation: u32) {
        for _ in 0..DGRAM_BATCH {
            let Some(service) = self.service(index, generation) else {
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
                        self.trip_sensor(index, generation, from.ip().to_canonical(), time);
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn park(
        &mut self,
        index: usize,
        generation: u32,
        fd: OwnedFd,
        remote: SocketAddr,
        stage: Stage,
        via_tcpmux: bool,
        job: Job,
    ) {
        let slot = vacant(&mut self.parked);
        let ticket = super::token(slot, self.parked[slot].generation, false);
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
            let event = nix::sys::epoll::EpollEvent::new(
                nix::sys::epoll::EpollFlags::EPOLLIN,
                LOOKUPS_TOKEN,
            );
            match self.epoll.add(self.lookups.fd(), event) {
                Ok(()) => self.lookups_watched = true,
                Err(errno) => warn!("epoll: lookups: {errno}"),
            }
        }
        if !self.lookups_watched || !self.lookups.submit(job) {
            // Too many lookups outstanding: refuse rather than queue without bound.
            let peer = remote.ip().to_canonical();
            self.refuse(
                index,
                generation,
                &fd,
                peer,
                Reason::Lookup,
                true,
                via_tcpmux,
            );
            return;
        }
        let timeout = match stage {
            Stage::Names => NAMES_TIMEOUT,
            Stage::Ident => IDENT_TIMEOUT + Duration::from_secs(1),
            Stage::Resolve => RESOLVE_TIMEOUT,
        };
        let generation_of_slot = self.parked[slot].generation;
        self.parked[slot].value = Some(Parked {
            fd,
            remote,
            service: (index, generation),
            stage,
            via_tcpmux,
        });
        self.timers.push((
            Instant::now() + timeout,
            Timer::Parked(slot, generation_of_slot),
        ));
    }

    /// Takes a parked connection out of its slot.
    pub(super) fn unpark(&mut self, slot: usize) -> Option<Parked> {
        let entry = self.parked.get_mut(slot)?;
        let parked = entry.value.take()?;
        entry.generation = entry.generation.wrapping_add(1) & 0x7fff_ffff;
        Some(parked)
    }

    fn take_parked(&mut self, slot: usize, generation: u32) -> Option<Parked> {
        let current = self.parked.get(slot)?;
        if current.generation != generation || current.value.is_none() {
            return None;
        }
        self.unpark(slot)
    }

    pub(super) fn on_lookup_answers(&mut self) {
        for answer in self.lookups.answers() {
            let (slot, generation, _) = super::untoken(answer.ticket());
            let Some(parked) = self.take_parked(slot, generation) else {
                continue;
            };
            match answer {
                Answer::Names { names, .. } => self.resume_with_names(parked, &names),
                Answer::Ident { user, .. } => self.resume_with_ident(parked, user),
                Answer::Resolve { result, .. } => self.resume_with_target(parked, result),
            }
        }
    }

    /// A lookup took too long: decide without its answer.
    pub(super) fn parked_deadline(&mut self, slot: usize, generation: u32) {
        let Some(parked) = self.take_parked(slot, generation) else {
            return;
        };
        match parked.stage {
            Stage::Names => self.resume_with_names(parked, &[]),
            Stage::Ident => self.resume_with_ident(parked, None),
            Stage::Resolve => {
                self.resume_with_target(parked, Err("name lookup timed out".to_string()))
            }
        }
    }

    fn resume_with_names(&mut self, parked: Parked, names: &[String]) {
        let (index, generation) = parked.service;
        let peer = parked.remote.ip().to_canonical();
        match self.check_peer(index, generation, peer, Some(names)) {
            Check::Pass => self.admit_within_limits(
                index,
                generation,
                parked.fd,
                parked.remote,
                parked.via_tcpmux,
            ),
            Check::Refuse(reason) => {
                let via = parked.via_tcpmux;
                self.refuse(index, generation, &parked.fd, peer, reason, true, via);
            }
            // With names given, rules always decide.
            Check::NeedNames => {}
        }
    }

    fn resume_with_ident(&mut self, parked: Parked, user: Option<String>) {
        let (index, generation) = parked.service;
        let peer = parked.remote.ip().to_canonical();
        let Some(service) = self.service(index, generation) else {
            return;
        };
        let log = service.log.clone();
        let required = service.spec.access.ident_required;
        match user {
            Some(user) if log.logging.userid => self.lines.userid(&log, &user),
            Some(_) => {}
            None if required => {
                self.lines.noid(&log, peer);
                if parked.via_tcpmux {
                    send_now(&parked.fd, &tcpmux::refusal("Service not available"));
                } else if let Some(service) = self.service(index, generation)
                    && let Some(banner) = &service.spec.banners.fail
                {
                    send_now(&parked.fd, banner);
                }
                return;
            }
            None => {}
        }
        self.dispatch(
            index,
            generation,
            parked.fd,
            parked.remote,
            parked.via_tcpmux,
        );
    }

    fn resume_with_target(&mut self, parked: Parked, target: Result<SocketAddr, String>) {
        let (index, generation) = parked.service;
        match target {
            Ok(to) => self.start_relay(index, generation, parked.fd, parked.remote, to),
            Err(message) => {
                let Some(service) = self.service(index, generation) else {
                    return;
                };
                let log = service.log.clone();
                let what = match &service.spec.program {
                    Program::Redirect(to) => format!("redirect to {}: {message}", to.host),
                    _ => message,
                };
                let peer = parked.remote.ip().to_canonical();
                self.lines.fail_with(&log, &what, Some(peer));
            }
        }
    }

    pub(super) fn schedule_housekeeping(&mut self, now: Instant) {
        if self.housekeeping_due.is_none() {
            self.housekeeping_due = Some(now + HOUSEKEEPING);
            self.timers.push((now + HOUSEKEEPING, Timer::Housekeeping));
        }
    }

    /// Ends cps episodes (with a summary line each) and forgets expired deny entries.
    pub(super) fn housekeeping(&mut self, now: Instant) {
        self.housekeeping_due = None;
        self.deny_list.purge(now);
        let mut busy = !self.deny_list.is_empty();
        for slot in &mut self.services {
            let Some(service) = slot.value.as_mut() else {
                continue;
            };
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
