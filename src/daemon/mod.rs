//! The event loop: one epoll set holding the signalfd, every listener and every
//! internal stream session. It calls the pure layers (config, reload plan) and the
//! spawner; it owns every fd and every child.

pub mod listeners;
pub mod lookup;
pub mod relay;
pub mod reload;

use std::collections::HashMap;
use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use socket2::{SockAddr, Socket};

use crate::config::spec::{Program, SocketType};
use crate::config::{self, Config, ServiceSpec};
use crate::internal::{self, Session};
use crate::peer;
use crate::spawn::{Connection, Prepared, Spawner};
use crate::system::System;
use listeners::Queue;
use reload::Change;

/// Connections accepted per listener per wakeup, so one busy service cannot starve
/// the others.
const ACCEPT_BATCH: usize = 64;
const DGRAM_BATCH: usize = 64;
/// A `wait` server that lives this long is taken to have served, whatever the queue.
const SERVED_AFTER: Duration = Duration::from_secs(1);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long accepting pauses when the fd table is full.
const FD_EXHAUSTION_PAUSE: Duration = Duration::from_millis(100);
/// After SIGKILL, how long shutdown waits for the kernel to reap.
const KILL_WAIT: Duration = Duration::from_secs(2);

const SIGNALS_TOKEN: u64 = u64::MAX;
const SESSION_BIT: u64 = 1 << 63;

/// An epoll token: slot index and the slot's generation, so an event for a slot that
/// has since been freed and reused is recognised and dropped.
fn token(index: usize, generation: u32, session: bool) -> u64 {
    (if session { SESSION_BIT } else { 0 }) | (u64::from(generation) << 32) | index as u64
}

fn untoken(token: u64) -> (usize, u32, bool) {
    (
        (token & 0xffff_ffff) as usize,
        ((token >> 32) & 0x7fff_ffff) as u32,
        token & SESSION_BIT != 0,
    )
}

struct Service {
    spec: ServiceSpec,
    prepared: Option<Prepared>,
    socket: Socket,
    armed: bool,
    running: usize,
    /// `wait` services: quick exits in a row that served nobody.
    idle_exits: u32,
    queue_at_spawn: Queue,
}

/// Slots are reused; the generation tells old tokens and children from new ones.
struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

/// The index of a free slot, appended if none is free.
fn vacant<T>(slots: &mut Vec<Slot<T>>) -> usize {
    slots
        .iter()
        .position(|slot| slot.value.is_none())
        .unwrap_or_else(|| {
            slots.push(Slot {
                generation: 0,
                value: None,
            });
            slots.len() - 1
        })
}

struct Child {
    service: (usize, u32),
    id: String,
    started: Instant,
    holds_socket: bool,
}

struct SessionEntry {
    session: Session,
    service: (usize, u32),
}

enum Timer {
    Arm(usize, u32),
}

pub struct Daemon {
    config_path: PathBuf,
    epoll: Epoll,
    signals: SignalFd,
    spawner: Spawner,
    services: Vec<Slot<Service>>,
    sessions: Vec<Slot<SessionEntry>>,
    children: HashMap<Pid, Child>,
    timers: Vec<(Instant, Timer)>,
    shutdown_grace: Duration,
    /// Set once shutdown begins: when to SIGKILL, then when to give up waiting.
    stopping: Option<Instant>,
    killed: bool,
    fd_exhaustion_logged: bool,
    datagram: Vec<u8>,
    scratch: Vec<u8>,
}

/// Blocks the signals the loop reads from its signalfd; returns the mask to restore
/// in servers.
pub fn block_signals() -> io::Result<libc::sigset_t> {
    let mut original: libc::sigset_t = unsafe { std::mem::zeroed() };
    let handled = handled_signals();
    // SAFETY: both sets are valid sigset_t values.
    let result = unsafe { libc::sigprocmask(libc::SIG_BLOCK, handled.as_ref(), &mut original) };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(original)
}

fn handled_signals() -> SigSet {
    let mut set = SigSet::empty();
    for signal in [
        Signal::SIGCHLD,
        Signal::SIGHUP,
        Signal::SIGTERM,
        Signal::SIGINT,
    ] {
        set.add(signal);
    }
    set
}

impl Daemon {
    pub fn new(config_path: &Path, original_mask: libc::sigset_t) -> io::Result<Daemon> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let signals = SignalFd::with_flags(
            &handled_signals(),
            SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
        )?;
        epoll.add(
            &signals,
            EpollEvent::new(EpollFlags::EPOLLIN, SIGNALS_TOKEN),
        )?;
        Ok(Daemon {
            config_path: config_path.to_path_buf(),
            epoll,
            signals,
            spawner: Spawner::new(original_mask),
            services: Vec::new(),
            sessions: Vec::new(),
            children: HashMap::new(),
            timers: Vec::new(),
            shutdown_grace: config::DEFAULT_SHUTDOWN_GRACE,
            stopping: None,
            killed: false,
            fd_exhaustion_logged: false,
            datagram: vec![0; 65536],
            scratch: Vec::new(),
        })
    }

    /// Starts every service of a loaded configuration; returns how many listen.
    pub fn start(&mut self, config: Config) -> usize {
        self.shutdown_grace = config.shutdown_grace;
        for spec in config.services {
            let name = spec.id.clone();
            if let Err(message) = self.add_service(spec) {
                error!("service {name}: {message}");
            }
        }
        self.service_count()
    }

    fn service_count(&self) -> usize {
        self.services
            .iter()
            .filter(|slot| slot.value.is_some())
            .count()
    }

    /// Runs until shutdown completes.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = vec![EpollEvent::empty(); 256];
        loop {
            let timeout = self.timeout();
            let count = match self.epoll.wait(&mut events, timeout) {
                Ok(count) => count,
                Err(Errno::EINTR) => continue,
                Err(errno) => return Err(errno.into()),
            };
            for event in &events[..count] {
                if event.data() == SIGNALS_TOKEN {
                    self.handle_signals();
                    continue;
                }
                match untoken(event.data()) {
                    (index, generation, true) => self.on_session(index, generation),
                    (index, generation, false) => self.on_listener(index, generation),
                }
            }
            self.run_timers();
            if self.stopping.is_some() && (self.children.is_empty() || self.gave_up_waiting()) {
                info!("shutdown: done");
                return Ok(());
            }
        }
    }

    fn timeout(&self) -> EpollTimeout {
        let next = self
            .timers
            .iter()
            .map(|(at, _)| *at)
            .chain(self.stopping)
            .min();
        match next {
            None => EpollTimeout::NONE,
            Some(at) => {
                let wait = at.saturating_duration_since(Instant::now());
                // Round up so the timer has passed when the loop wakes.
                let millis = wait.as_micros().div_ceil(1000).min(60_000) as u16;
                EpollTimeout::from(millis)
            }
        }
    }

    fn service(&mut self, index: usize, generation: u32) -> Option<&mut Service> {
        let slot = self.services.get_mut(index)?;
        (slot.generation == generation)
            .then_some(slot.value.as_mut())
            .flatten()
    }

    fn add_service(&mut self, spec: ServiceSpec) -> Result<(), String> {
        let prepared = prepare(&spec)?;
        let socket = open_socket(&spec)?;
        let index = vacant(&mut self.services);
        let generation = self.services[index].generation;
        self.epoll
            .add(
                &socket,
                EpollEvent::new(EpollFlags::EPOLLIN, token(index, generation, false)),
            )
            .map_err(|errno| format!("epoll: {errno}"))?;
        info!("service {}: listening on {}", spec.id, spec.describe());
        self.services[index].value = Some(Service {
            spec,
            prepared,
            socket,
            armed: true,
            running: 0,
            idle_exits: 0,
            queue_at_spawn: Queue::Empty,
        });
        Ok(())
    }

    fn remove_service(&mut self, index: usize) {
        let slot = &mut self.services[index];
        if let Some(service) = slot.value.take() {
            let _ = self.epoll.delete(&service.socket);
            info!(
                "service {}: stopped ({} running to finish)",
                service.spec.id, service.running
            );
        }
        slot.generation = slot.generation.wrapping_add(1) & 0x7fff_ffff;
    }

    fn set_armed(&mut self, index: usize, generation: u32, armed: bool) {
        let epoll = &self.epoll;
        let Some(service) = self
            .services
            .get_mut(index)
            .filter(|s| s.generation == generation)
            .and_then(|s| s.value.as_mut())
        else {
            return;
        };
        if service.armed == armed {
            return;
        }
        let flags = if armed {
            EpollFlags::EPOLLIN
        } else {
            EpollFlags::empty()
        };
        let mut event = EpollEvent::new(flags, token(index, generation, false));
        if let Err(errno) = epoll.modify(&service.socket, &mut event) {
            error!("service {}: epoll: {errno}", service.spec.id);
        }
        service.armed = armed;
    }

    fn on_listener(&mut self, index: usize, generation: u32) {
        let Some(service) = self.service(index, generation) else {
            return;
        };
        match (&service.spec.program, service.spec.socket.socket_type) {
            (Program::Internal(kind), SocketType::Dgram) => {
                let kind = *kind;
                self.serve_datagrams(index, kind);
            }
            (Program::Exec(_), _) if service.spec.wait => {
                self.spawn_holding_socket(index, generation)
            }
            _ => self.accept_batch(index, generation),
        }
    }

    /// `wait = no` stream services and internal stream services.
    fn accept_batch(&mut self, index: usize, generation: u32) {
        for _ in 0..ACCEPT_BATCH {
            let Some(service) = self.service(index, generation) else {
                return;
            };
            let internal = matches!(service.spec.program, Program::Internal(_));
            let (fd, remote) = match accept(&service.socket, internal) {
                Ok(accepted) => accepted,
                Err(error) => {
                    self.accept_failed(index, generation, error);
                    return;
                }
            };
            self.fd_exhaustion_logged = false;
            let Some(service) = self.service(index, generation) else {
                return;
            };
            let from = remote.ip().to_canonical();
            if !service.spec.instances.admits(service.running) {
                // The connection closes here, in the parent: one accept, one close.
                info!("FAIL: {} service_limit from={from}", service.spec.id);
                continue;
            }
            match &service.spec.program {
                Program::Internal(kind) => {
                    let session = Session::new(*kind, TcpStream::from(fd));
                    self.start_session(session, (index, generation));
                }
                Program::Exec(_) => self.spawn_for_connection(index, generation, fd, remote),
            }
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
        let local = if bound.ip().is_unspecified() {
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
        let id = service.spec.id.clone();
        self.record_spawn(index, generation, result, &id, Some(remote.ip()), false);
        // `fd` closes here: the server has its own copies on 0-2.
    }

    /// `wait = yes`: the server gets the socket itself, and the loop stops watching it
    /// until the server exits.
    fn spawn_holding_socket(&mut self, index: usize, generation: u32) {
        let Some(service) = self.services[index].value.as_mut() else {
            return;
        };
        let Some(prepared) = &service.prepared else {
            return;
        };
        let socket_type = service.spec.socket.socket_type;
        // Servers expect a blocking socket, and O_NONBLOCK is shared with every copy.
        // From now on the loop only waits on it and peeks without blocking.
        if let Err(error) = service.socket.set_nonblocking(false) {
            warn!(
                "service {}: cannot make the socket blocking: {error}",
                service.spec.id
            );
        }
        let remote = match socket_type {
            SocketType::Dgram => peek_sender(&service.socket),
            SocketType::Stream => None,
        };
        service.queue_at_spawn = Queue::of(&service.socket, socket_type);
        let connection = Connection {
            fd: service.socket.as_fd(),
            protocol: service.spec.socket.protocol,
            remote,
            local: Some(service.spec.socket.address),
        };
        let result = self.spawner.spawn(prepared, &connection);
        let id = service.spec.id.clone();
        let spawned = result.is_ok() || result.as_ref().is_err_and(|e| e.pid.is_some());
        self.record_spawn(index, generation, result, &id, remote.map(|r| r.ip()), true);
        self.set_armed(index, generation, false);
        if !spawned {
            // No child will return the socket: try again shortly instead of spinning.
            self.timers.push((
                Instant::now() + FIRST_BACKOFF,
                Timer::Arm(index, generation),
            ));
        }
    }

    fn record_spawn(
        &mut self,
        index: usize,
        generation: u32,
        result: Result<Pid, crate::spawn::SpawnError>,
        id: &str,
        remote: Option<IpAddr>,
        holds_socket: bool,
    ) {
        let from = remote
            .map(|ip| ip.to_canonical().to_string())
            .unwrap_or_else(|| "-".to_string());
        let pid = match result {
            Ok(pid) => {
                info!("START: {id} pid={pid} from={from}");
                pid
            }
            Err(failure) => {
                error!(
                    "FAIL: {id} {}: {} from={from}",
                    failure.stage.action(),
                    failure.errno.desc()
                );
                match failure.pid {
                    Some(pid) => pid,
                    None => return,
                }
            }
        };
        if let Some(service) = self.service(index, generation) {
            service.running += 1;
        }
        self.children.insert(
            pid,
            Child {
                service: (index, generation),
                id: id.to_string(),
                started: Instant::now(),
                holds_socket,
            },
        );
    }

    fn serve_datagrams(&mut self, index: usize, kind: crate::config::spec::Internal) {
        let Some(service) = self.services[index].value.as_ref() else {
            return;
        };
        for _ in 0..DGRAM_BATCH {
            let (length, from) = match service.socket.recv_from(as_uninit(&mut self.datagram)) {
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
            let request = &self.datagram[..length.min(self.datagram.len())];
            let Some(reply) = internal::dgram_reply(kind, from, request, &mut self.scratch) else {
                continue;
            };
            // A full send buffer drops the reply, as UDP may.
            if let Err(error) = service.socket.send_to(reply, &SockAddr::from(from)) {
                debug!("service {}: sendto {from}: {error}", service.spec.id);
            }
        }
    }

    fn start_session(&mut self, mut session: Session, service: (usize, u32)) {
        match session.advance() {
            Ok(true) => {}
            Ok(false) | Err(_) => return,
        }
        let index = vacant(&mut self.sessions);
        let generation = self.sessions[index].generation;
        let event = EpollEvent::new(session_flags(&session), token(index, generation, true));
        if let Err(errno) = self.epoll.add(&session.stream, event) {
            error!("epoll: {errno}");
            return;
        }
        self.sessions[index].value = Some(SessionEntry { session, service });
        if let Some(service) = self.service(service.0, service.1) {
            service.running += 1;
        }
    }

    fn on_session(&mut self, index: usize, generation: u32) {
        let Some(slot) = self
            .sessions
            .get_mut(index)
            .filter(|slot| slot.generation == generation)
        else {
            return;
        };
        let Some(entry) = slot.value.as_mut() else {
            return;
        };
        let before = session_flags(&entry.session);
        match entry.session.advance() {
            Ok(true) => {
                let after = session_flags(&entry.session);
                if after != before {
                    let mut event = EpollEvent::new(after, token(index, generation, true));
                    if let Err(errno) = self.epoll.modify(&entry.session.stream, &mut event) {
                        error!("epoll: {errno}");
                    }
                }
            }
            Ok(false) | Err(_) => self.end_session(index),
        }
    }

    fn end_session(&mut self, index: usize) {
        let slot = &mut self.sessions[index];
        slot.generation = slot.generation.wrapping_add(1) & 0x7fff_ffff;
        if let Some(entry) = slot.value.take() {
            let _ = self.epoll.delete(&entry.session.stream);
            if let Some(service) = self.service(entry.service.0, entry.service.1) {
                service.running -= 1;
            }
        }
    }

    fn handle_signals(&mut self) {
        let mut reap = false;
        let mut reload = false;
        let mut stop = false;
        // Signals merge: read them all, then act once for each kind.
        while let Ok(Some(info)) = self.signals.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGCHLD) => reap = true,
                Ok(Signal::SIGHUP) => reload = true,
                Ok(Signal::SIGTERM | Signal::SIGINT) => stop = true,
                _ => {}
            }
        }
        if reap {
            self.reap();
        }
        if stop && self.stopping.is_none() {
            self.begin_shutdown();
        } else if reload && self.stopping.is_none() {
            self.reload();
        }
    }

    fn reap(&mut self) {
        loop {
            let (pid, outcome) = match nix::sys::wait::waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, format!("status={code}")),
                Ok(WaitStatus::Signaled(pid, signal, _)) => {
                    (pid, format!("signal={}", signal as i32))
                }
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Ok(_) => continue,
                Err(Errno::EINTR) => continue,
                Err(errno) => {
                    error!("waitpid: {errno}");
                    return;
                }
            };
            let Some(child) = self.children.remove(&pid) else {
                continue;
            };
            let lived = child.started.elapsed();
            info!(
                "EXIT: {} {outcome} pid={pid} duration={:.3}s",
                child.id,
                lived.as_secs_f64()
            );
            let (index, generation) = child.service;
            let Some(service) = self.service(index, generation) else {
                continue;
            };
            service.running = service.running.saturating_sub(1);
            if child.holds_socket && self.stopping.is_none() {
                self.socket_returned(index, generation, lived);
            }
        }
    }

    /// A `wait` server exited: listen again, at once if it served, after a growing
    /// pause if it exited quickly leaving its queue untouched (a broken server must
    /// not be respawned in a hot loop).
    fn socket_returned(&mut self, index: usize, generation: u32, lived: Duration) {
        let Some(service) = self.service(index, generation) else {
            return;
        };
        let queue = Queue::of(&service.socket, service.spec.socket.socket_type);
        let served = lived >= SERVED_AFTER || service.queue_at_spawn.drained_to(queue);
        if served {
            service.idle_exits = 0;
            self.set_armed(index, generation, true);
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
        self.timers
            .push((Instant::now() + delay, Timer::Arm(index, generation)));
    }

    fn run_timers(&mut self) {
        let now = Instant::now();
        let due: Vec<Timer> = {
            let (due, pending): (Vec<_>, Vec<_>) =
                self.timers.drain(..).partition(|(at, _)| *at <= now);
            self.timers = pending;
            due.into_iter().map(|(_, timer)| timer).collect()
        };
        for timer in due {
            match timer {
                Timer::Arm(index, generation) => self.set_armed(index, generation, true),
            }
        }
        if let Some(deadline) = self.stopping
            && now >= deadline
            && !self.killed
        {
            for pid in self.children.keys() {
                warn!(
                    "shutdown: killing pid={pid} after {} s",
                    self.shutdown_grace.as_secs()
                );
                signal_group(*pid, Signal::SIGKILL);
            }
            self.killed = true;
            self.stopping = Some(now + KILL_WAIT);
        }
    }

    fn gave_up_waiting(&self) -> bool {
        self.killed
            && self
                .stopping
                .is_some_and(|deadline| Instant::now() >= deadline)
    }

    fn begin_shutdown(&mut self) {
        info!(
            "shutdown: closing listeners, stopping {} servers",
            self.children.len()
        );
        for index in 0..self.services.len() {
            self.remove_service(index);
        }
        for index in 0..self.sessions.len() {
            self.end_session(index);
        }
        for pid in self.children.keys() {
            signal_group(*pid, Signal::SIGTERM);
        }
        self.stopping = Some(Instant::now() + self.shutdown_grace);
    }

    fn reload(&mut self) {
        info!("reloading {}", self.config_path.display());
        let config = config::load(&self.config_path, &System::new());
        log_diagnostics(&config);
        if config.fatal {
            error!("reload: failed, keeping the old configuration");
            return;
        }
        self.shutdown_grace = config.shutdown_grace;
        let running: Vec<&ServiceSpec> = self
            .services
            .iter()
            .filter_map(|slot| slot.value.as_ref().map(|s| &s.spec))
            .collect();
        let changes: Vec<OwnedChange> = reload::plan(&running, &config.services, &config.broken)
            .into_iter()
            .map(OwnedChange::from)
            .collect();
        for change in changes {
            self.apply(change);
        }
        info!("reload: done ({} services)", self.service_count());
    }

    fn index_of(&self, id: &str) -> Option<usize> {
        self.services
            .iter()
            .position(|slot| slot.value.as_ref().is_some_and(|s| s.spec.id == id))
    }

    fn apply(&mut self, change: OwnedChange) {
        match change {
            OwnedChange::Keep => {}
            OwnedChange::KeepOld(name) => {
                warn!("service {name}: the new definition has errors; keeping the previous one")
            }
            OwnedChange::Remove(name) => {
                if let Some(index) = self.index_of(&name) {
                    self.remove_service(index);
                }
            }
            OwnedChange::Add(spec) => {
                let name = spec.id.clone();
                if let Err(message) = self.add_service(*spec) {
                    error!("service {name}: {message}");
                }
            }
            OwnedChange::Update { spec, rebind } => {
                let name = spec.id.clone();
                if let Err(message) = self.update_service(*spec, rebind) {
                    error!("service {name}: {message}; keeping the previous definition");
                }
            }
        }
    }

    /// New settings for new connections; the running servers keep theirs.
    fn update_service(&mut self, spec: ServiceSpec, rebind: bool) -> Result<(), String> {
        let Some(index) = self.index_of(&spec.id) else {
            return Ok(());
        };
        let prepared = prepare(&spec)?;
        if rebind {
            let socket = match open_socket(&spec) {
                Ok(socket) => socket,
                Err(_) => {
                    // The new address may overlap the old one: free it and try again.
                    let old = self.services[index].value.as_ref().map(|s| &s.socket);
                    if let Some(old) = old {
                        let _ = self.epoll.delete(old);
                    }
                    match open_socket(&spec) {
                        Ok(socket) => socket,
                        Err(message) => {
                            self.remove_service(index);
                            return Err(message);
                        }
                    }
                }
            };
            let generation = self.services[index].generation;
            let service = self.services[index]
                .value
                .as_mut()
                .expect("index_of found it");
            let _ = self.epoll.delete(&service.socket);
            self.epoll
                .add(
                    &socket,
                    EpollEvent::new(EpollFlags::EPOLLIN, token(index, generation, false)),
                )
                .map_err(|errno| format!("epoll: {errno}"))?;
            service.socket = socket;
            service.armed = true;
            service.idle_exits = 0;
        }
        let service = self.services[index]
            .value
            .as_mut()
            .expect("index_of found it");
        info!("service {}: updated: {}", spec.id, spec.describe());
        let hands_over_socket = spec.wait && prepared.is_some();
        if !hands_over_socket && let Err(error) = service.socket.set_nonblocking(true) {
            return Err(format!("cannot make the socket non-blocking: {error}"));
        }
        service.spec = spec;
        service.prepared = prepared;
        Ok(())
    }
}

/// A reload change that owns its spec, so the plan's borrow of the running services
/// ends before they are changed.
enum OwnedChange {
    Keep,
    KeepOld(String),
    Remove(String),
    Add(Box<ServiceSpec>),
    Update {
        spec: Box<ServiceSpec>,
        rebind: bool,
    },
}

impl From<Change<'_>> for OwnedChange {
    fn from(change: Change<'_>) -> OwnedChange {
        match change {
            Change::Keep(_) => OwnedChange::Keep,
            Change::KeepOld(name) => OwnedChange::KeepOld(name.to_string()),
            Change::Remove(name) => OwnedChange::Remove(name.to_string()),
            Change::Add(spec) => OwnedChange::Add(Box::new(spec.clone())),
            Change::Update { spec, rebind } => OwnedChange::Update {
                spec: Box::new(spec.clone()),
                rebind,
            },
        }
    }
}

pub fn log_diagnostics(config: &Config) {
    for error in &config.errors {
        error!("{error}");
    }
    for warning in &config.warnings {
        warn!("{warning}");
    }
}

fn prepare(spec: &ServiceSpec) -> Result<Option<Prepared>, String> {
    match &spec.program {
        Program::Exec(exec) => Prepared::new(exec).map(Some),
        Program::Internal(_) => Ok(None),
    }
}

fn open_socket(spec: &ServiceSpec) -> Result<Socket, String> {
    match listeners::open(&spec.socket) {
        Ok(socket) => Ok(socket),
        Err(error) => match listeners::ipv4_fallback(&spec.socket, &error) {
            Some(fallback) => {
                warn!(
                    "service {}: no IPv6 on this host; listening on {}",
                    spec.name, fallback.address
                );
                listeners::open(&fallback)
                    .map_err(|e| format!("cannot listen on {}: {e}", fallback.address))
            }
            None => Err(format!("cannot listen on {}: {error}", spec.socket.address)),
        },
    }
}

fn session_flags(session: &Session) -> EpollFlags {
    let interest = session.interest();
    let mut flags = EpollFlags::empty();
    if interest.read {
        flags |= EpollFlags::EPOLLIN;
    }
    if interest.write {
        flags |= EpollFlags::EPOLLOUT;
    }
    flags
}

/// Accepts close-on-exec (socket2 uses accept4), and non-blocking for connections
/// the daemon serves itself; a server's stdin stays blocking as servers expect.
fn accept(listener: &Socket, nonblocking: bool) -> io::Result<(OwnedFd, SocketAddr)> {
    let (connection, address) = listener.accept()?;
    if nonblocking {
        connection.set_nonblocking(true)?;
    }
    let remote = address
        .as_socket()
        .ok_or_else(|| io::Error::other("peer is not an IP address"))?;
    Ok((connection.into(), remote))
}

fn local_address(fd: &OwnedFd) -> Option<SocketAddr> {
    nix::sys::socket::getsockname::<nix::sys::socket::SockaddrStorage>(fd.as_raw_fd())
        .ok()
        .and_then(|address| {
            if let Some(v4) = address.as_sockaddr_in() {
                Some(SocketAddr::from(std::net::SocketAddrV4::from(*v4)))
            } else {
                address
                    .as_sockaddr_in6()
                    .map(|v6| SocketAddr::from(std::net::SocketAddrV6::from(*v6)))
            }
        })
        .map(peer::canonical)
}

/// The sender of the first queued datagram, for a dgram server's environment.
fn peek_sender(socket: &Socket) -> Option<SocketAddr> {
    let mut byte = [MaybeUninit::new(0u8); 1];
    socket
        .recv_from_with_flags(&mut byte, libc::MSG_PEEK | libc::MSG_DONTWAIT)
        .ok()
        .and_then(|(_, from)| from.as_socket())
}

fn as_uninit(buffer: &mut [u8]) -> &mut [MaybeUninit<u8>] {
    // SAFETY: initialised bytes are valid MaybeUninit<u8>, and the callee only writes
    // bytes, never uninitialised ones, into the slice.
    unsafe { &mut *(buffer as *mut [u8] as *mut [MaybeUninit<u8>]) }
}

/// Servers run in their own session, so their own children go with them.
fn signal_group(pid: Pid, signal: Signal) {
    if nix::sys::signal::killpg(pid, signal).is_err() {
        let _ = nix::sys::signal::kill(pid, signal);
    }
}
