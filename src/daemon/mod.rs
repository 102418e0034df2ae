//! The event loop: one epoll set holding the signalfd, every listener and every
//! internal stream session. It calls the pure layers (config, reload plan) and the
//! spawner; it owns every fd and every child.

mod admission;
pub mod listeners;
pub mod lookup;
pub mod relay;
pub mod reload;
mod service_log;
mod sessions;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use socket2::Socket;

use crate::config::spec::{Program, Protocol, SocketType};
use crate::config::{self, Config, ServiceSpec};
use crate::limits::{Cps, DenyList, PerSource};
use crate::logging;
use crate::rpc;
use crate::spawn::{Prepared, Spawner};
use crate::sys;
use crate::sys::socket::{as_uninit, local_address, peek_sender};
use crate::system::System;
use listeners::Queue;
use lookup::Lookups;
use reload::{Change, SocketChange};
use service_log::{Lines, Outcome, ServiceLog};
use sessions::SessionEntry;

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
const LOOKUPS_TOKEN: u64 = u64::MAX - 1;
const SESSION_BIT: u64 = 1 << 63;
/// Threads for DNS and ident lookups; started only when a service needs one.
const LOOKUP_THREADS: usize = 4;

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
    log: Rc<ServiceLog>,
    prepared: Option<Prepared>,
    /// `None` for TCPMUX services, which are reached through the tcpmux service.
    socket: Option<Socket>,
    armed: bool,
    /// Servers, sessions and relays of this service.
    running: usize,
    /// `wait` services: quick exits in a row that served nobody.
    idle_exits: u32,
    queue_at_spawn: Queue,
    per_source: PerSource,
    cps: Option<Cps>,
    /// Spawning failed for want of processes; logged once per episode.
    fork_failing: bool,
    /// Refused datagrams are logged at most once a second, so a flood is no log flood.
    datagram_refusal_logged: Option<Instant>,
    /// RPC versions this service registered with rpcbind: the ones to withdraw.
    rpc_registered: Vec<u32>,
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
    log: Rc<ServiceLog>,
    /// Counted against `per_source` until the child exits.
    peer: Option<IpAddr>,
    started: Instant,
    holds_socket: bool,
}

enum Timer {
    Arm(usize, u32),
    /// A session's connect, idle or request deadline may have passed.
    Session(usize, u32),
    /// A parked connection's lookup took too long.
    Parked(usize, u32),
    /// Forget cps buckets and deny-list entries that expired.
    Housekeeping,
}

pub struct Daemon {
    config_path: PathBuf,
    epoll: Epoll,
    signals: SignalFd,
    spawner: Spawner,
    services: Vec<Slot<Service>>,
    sessions: Vec<Slot<SessionEntry>>,
    parked: Vec<Slot<admission::Parked>>,
    children: HashMap<Pid, Child>,
    timers: Vec<(Instant, Timer)>,
    lines: Lines,
    lookups: Lookups,
    lookups_watched: bool,
    deny_list: DenyList,
    load: admission::LoadAverage,
    /// Exec'd servers of all services, against `max_servers`.
    servers: usize,
    max_servers: Option<u32>,
    housekeeping_due: Option<Instant>,
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
    sys::signal::block(&handled_signals())
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
    pub fn new(
        config_path: &Path,
        original_mask: libc::sigset_t,
        syslog_socket: PathBuf,
    ) -> io::Result<Daemon> {
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
            parked: Vec::new(),
            children: HashMap::new(),
            timers: Vec::new(),
            lines: Lines::new(syslog_socket),
            lookups: Lookups::new(LOOKUP_THREADS)?,
            lookups_watched: false,
            deny_list: DenyList::new(),
            load: admission::LoadAverage::default(),
            servers: 0,
            max_servers: None,
            housekeeping_due: None,
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
        self.max_servers = config.max_servers;
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
        logging::hold_lines();
        let result = self.run_loop();
        self.lines.sinks.flush();
        logging::release_lines();
        result
    }

    fn run_loop(&mut self) -> io::Result<()> {
        let mut events = vec![EpollEvent::empty(); 256];
        loop {
            // Log lines are written once per turn, not once per line.
            self.lines.sinks.flush();
            logging::flush();
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
                if event.data() == LOOKUPS_TOKEN {
                    self.on_lookup_answers();
                    continue;
                }
                match untoken(event.data()) {
                    (index, generation, true) => self.on_session(index, generation),
                    (index, generation, false) => self.on_listener(index, generation),
                }
            }
            if self.timers_due() {
                self.run_timers();
            }
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

    /// Has the loop watch a service's listening socket, its events tagged with the slot.
    fn watch_listener(&self, socket: &Socket, index: usize, generation: u32) -> Result<(), String> {
        let event = EpollEvent::new(EpollFlags::EPOLLIN, token(index, generation, false));
        self.epoll
            .add(socket, event)
            .map_err(|errno| format!("epoll: {errno}"))
    }

    fn add_service(&mut self, spec: ServiceSpec) -> Result<(), String> {
        let prepared = prepare(&spec)?;
        let socket = match spec.tcpmux {
            Some(_) => None,
            None => Some(open_socket(&spec)?),
        };
        let index = vacant(&mut self.services);
        let generation = self.services[index].generation;
        if let Some(socket) = &socket {
            self.watch_listener(socket, index, generation)?;
            info!("service {}: listening on {}", spec.id, spec.describe());
        } else {
            info!("service {}: {}", spec.id, spec.describe());
        }
        let rpc_registered = match (&spec.rpc, &socket) {
            (Some(rpc), Some(socket)) => register_rpc(&spec, rpc, socket, &rpc.all_versions()),
            _ => Vec::new(),
        };
        let log = self.service_log(&spec);
        self.services[index].value = Some(Service {
            cps: spec.limits.cps.map(|(rate, pause)| Cps::new(rate, pause)),
            spec,
            log,
            prepared,
            socket,
            armed: true,
            running: 0,
            idle_exits: 0,
            queue_at_spawn: Queue::Empty,
            per_source: PerSource::new(),
            fork_failing: false,
            datagram_refusal_logged: None,
            rpc_registered,
        });
        Ok(())
    }

    fn service_log(&mut self, spec: &ServiceSpec) -> Rc<ServiceLog> {
        Rc::new(ServiceLog {
            id: Rc::from(spec.id.as_str()),
            logging: spec.logging.clone(),
            sink: self.lines.open(&spec.id, &spec.logging),
        })
    }

    fn remove_service(&mut self, index: usize) {
        let slot = &mut self.services[index];
        let removed = slot.value.take();
        slot.generation = slot.generation.wrapping_add(1) & 0x7fff_ffff;
        if let Some(service) = removed {
            if let Some(socket) = &service.socket {
                let _ = self.epoll.delete(socket);
                withdraw_rpc(&service);
                if let Some(rpc) = service.spec.rpc {
                    let protocol = service.spec.socket.protocol;
                    self.reregister_rpc(rpc.number, protocol, &service.rpc_registered);
                }
            }
            info!(
                "service {}: stopped ({} running to finish)",
                service.spec.id, service.running
            );
        }
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
        let Some(socket) = &service.socket else {
            return;
        };
        let flags = if armed {
            EpollFlags::EPOLLIN
        } else {
            EpollFlags::empty()
        };
        let mut event = EpollEvent::new(flags, token(index, generation, false));
        if let Err(errno) = epoll.modify(socket, &mut event) {
            error!("service {}: epoll: {errno}", service.spec.id);
        }
        service.armed = armed;
    }

    fn handle_signals(&mut self) {
        let mut reap = false;
        let mut reload = false;
        let mut stop = false;
        // Signals merge: take the pending ones, then act once for each kind.
        for signal in read_signals(&self.signals) {
            match signal {
                libc::SIGCHLD => reap = true,
                libc::SIGHUP => reload = true,
                libc::SIGTERM | libc::SIGINT => stop = true,
                _ => {}
            }
        }
        if reap {
            self.reap();
        }
        if stop && self.stopping.is_none() {
            self.begin_shutdown();
        } else if reload && self.stopping.is_none() {
            // Rotated log files are reopened with the reload, as xinetd's users expect.
            self.lines.sinks.reopen();
            self.reload();
        }
    }

    fn reap(&mut self) {
        loop {
            let (pid, outcome) = match nix::sys::wait::waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, Outcome::Status(code)),
                Ok(WaitStatus::Signaled(pid, signal, _)) => (pid, Outcome::Signal(signal as i32)),
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
            self.lines
                .exit(&child.log, outcome, pid.as_raw() as u32, lived);
            self.servers = self.servers.saturating_sub(1);
            let (index, generation) = child.service;
            let Some(service) = self.service(index, generation) else {
                continue;
            };
            service.running = service.running.saturating_sub(1);
            if let Some(peer) = child.peer {
                service.per_source.remove(peer);
            }
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
        let Some(socket) = &service.socket else {
            return;
        };
        let queue = Queue::of(socket, service.spec.socket.socket_type);
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

    fn timers_due(&self) -> bool {
        let now = Instant::now();
        self.timers.iter().any(|(at, _)| *at <= now)
            || self.stopping.is_some_and(|deadline| now >= deadline)
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
                Timer::Session(index, generation) => self.session_deadline(index, generation),
                Timer::Parked(index, generation) => self.parked_deadline(index, generation),
                Timer::Housekeeping => self.housekeeping(now),
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
        for index in 0..self.parked.len() {
            self.unpark(index);
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
        self.max_servers = config.max_servers;
        self.lines
            .sinks
            .set_syslog_socket(config.syslog_socket.clone());
        let running: Vec<&ServiceSpec> = self
            .services
            .iter()
            .filter_map(|slot| slot.value.as_ref().map(|s| &s.spec))
            .collect();
        let changes: Vec<OwnedChange> = reload::plan(&running, &config.services, &config.broken)
            .into_iter()
            .map(OwnedChange::from)
            .collect();
        // Before the changes, so a service added or updated now is not tried twice.
        self.reopen_failed_logs();
        self.register_missing_rpc();
        for change in changes {
            self.apply(change);
        }
        let used: Vec<_> = self
            .services
            .iter()
            .filter_map(|slot| slot.value.as_ref()?.log.sink)
            .collect();
        self.lines.sinks.retain(&used);
        info!("reload: done ({} services)", self.service_count());
    }

    /// A service whose `log_type` could not be opened (logging to stderr meanwhile) is
    /// tried again at every reload, even when its definition did not change: the missing
    /// directory or the syslog socket may be there now.
    fn reopen_failed_logs(&mut self) {
        for index in 0..self.services.len() {
            let Some(service) = self.services[index].value.as_ref() else {
                continue;
            };
            if service.log.sink.is_some() || service.spec.logging.log_type.is_none() {
                continue;
            }
            let log = Rc::clone(&service.log);
            let Some(sink) = self.lines.open(&log.id, &log.logging) else {
                continue;
            };
            info!("service {}: log_type: opened now", log.id);
            if let Some(service) = self.services[index].value.as_mut() {
                service.log = Rc::new(ServiceLog {
                    id: Rc::clone(&log.id),
                    logging: log.logging.clone(),
                    sink: Some(sink),
                });
            }
        }
    }

    /// Portmapper v2 withdraws a version for every protocol at once: after `withdrawn`
    /// versions of program `number` over `protocol` are withdrawn, the services that hold
    /// them over the other protocol (an RPC service defined for both tcp and udp)
    /// register them again.
    fn reregister_rpc(&self, number: u32, protocol: Protocol, withdrawn: &[u32]) {
        for service in self.services.iter().filter_map(|slot| slot.value.as_ref()) {
            let (Some(rpc), Some(socket)) = (&service.spec.rpc, &service.socket) else {
                continue;
            };
            if rpc.number != number || service.spec.socket.protocol == protocol {
                continue;
            }
            let versions: Vec<u32> = service
                .rpc_registered
                .iter()
                .copied()
                .filter(|version| withdrawn.contains(version))
                .collect();
            register_rpc(&service.spec, rpc, socket, &versions);
        }
    }

    /// RPC versions not registered (rpcbind was not running, or refused them) are tried
    /// again at every reload. Not on a timer: each try may hold up the loop for a second
    /// where a firewall drops the call instead of refusing it.
    fn register_missing_rpc(&mut self) {
        for service in self
            .services
            .iter_mut()
            .filter_map(|slot| slot.value.as_mut())
        {
            let (Some(rpc), Some(socket)) = (&service.spec.rpc, &service.socket) else {
                continue;
            };
            let missing: Vec<u32> = rpc
                .all_versions()
                .into_iter()
                .filter(|version| !service.rpc_registered.contains(version))
                .collect();
            if !missing.is_empty() {
                let more = register_rpc(&service.spec, rpc, socket, &missing);
                service.rpc_registered.extend(more);
            }
        }
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
            OwnedChange::Update { spec, socket } => {
                let name = spec.id.clone();
                if let Err(message) = self.update_service(*spec, socket) {
                    error!("service {name}: {message}; keeping the previous definition");
                }
            }
        }
    }

    /// New settings for new connections; the running servers keep theirs.
    fn update_service(
        &mut self,
        spec: ServiceSpec,
        socket_change: SocketChange,
    ) -> Result<(), String> {
        let Some(index) = self.index_of(&spec.id) else {
            return Ok(());
        };
        let prepared = prepare(&spec)?;
        match socket_change {
            SocketChange::Same => {}
            SocketChange::Adjust => self.adjust(index, &spec)?,
            SocketChange::Rebind => self.rebind(index, &spec)?,
        }
        let log = self.service_log(&spec);
        let service = self.services[index]
            .value
            .as_mut()
            .expect("index_of found it");
        info!("service {}: updated: {}", spec.id, spec.describe());
        let hands_over_socket = spec.wait && prepared.is_some();
        if let Some(socket) = &service.socket
            && !hands_over_socket
            && let Err(error) = socket.set_nonblocking(true)
        {
            return Err(format!("cannot make the socket non-blocking: {error}"));
        }
        if service.spec.limits.cps != spec.limits.cps {
            service.cps = spec.limits.cps.map(|(rate, pause)| Cps::new(rate, pause));
        }
        service.spec = spec;
        service.log = log;
        service.prepared = prepared;
        Ok(())
    }

    /// Sets the changed backlog, `NODELAY` or `KEEPALIVE` on the live listener, which
    /// keeps its port and its queued connections. A datagram socket has none of these.
    fn adjust(&self, index: usize, spec: &ServiceSpec) -> Result<(), String> {
        let Some(socket) = self.services[index]
            .value
            .as_ref()
            .and_then(|service| service.socket.as_ref())
            .filter(|_| spec.socket.socket_type == SocketType::Stream)
        else {
            return Ok(());
        };
        listeners::adjust(socket, &spec.socket)
            .map_err(|error| format!("cannot adjust the listening socket: {error}"))?;
        info!(
            "service {}: listening socket adjusted in place (backlog {}, NODELAY {}, KEEPALIVE {})",
            spec.id,
            spec.socket.backlog,
            on_off(spec.socket.nodelay),
            on_off(spec.socket.keepalive)
        );
        Ok(())
    }

    /// A new socket for a service whose address or kind changed. The old one goes on
    /// serving until the new one listens; if the new one cannot, the old socket and the
    /// old definition stay (the caller keeps the definition when this fails).
    fn rebind(&mut self, index: usize, spec: &ServiceSpec) -> Result<(), String> {
        let generation = self.services[index].generation;
        let socket = match spec.tcpmux {
            Some(_) => None,
            None => {
                let (socket, stopped_old) = self.open_replacement(index, spec)?;
                if let Err(message) = self.watch_listener(&socket, index, generation) {
                    drop(socket);
                    if stopped_old {
                        self.listen_again(index);
                    }
                    return Err(message);
                }
                Some(socket)
            }
        };
        // The new socket listens: only now do the old one's registrations go.
        let withdrawn = self.services[index].value.as_mut().map(|old| {
            withdraw_rpc(old);
            let versions = std::mem::take(&mut old.rpc_registered);
            (old.spec.rpc, old.spec.socket.protocol, versions)
        });
        if let Some((Some(rpc), protocol, versions)) = withdrawn {
            self.reregister_rpc(rpc.number, protocol, &versions);
        }
        let slot = &self.services[index];
        if let Some(old) = slot.value.as_ref().and_then(|s| s.socket.as_ref()) {
            let _ = self.epoll.delete(old);
        }
        let mut rpc_registered = Vec::new();
        if let (Some(socket), Some(rpc)) = (&socket, &spec.rpc) {
            rpc_registered = register_rpc(spec, rpc, socket, &rpc.all_versions());
        }
        let service = self.services[index]
            .value
            .as_mut()
            .expect("index_of found it");
        service.rpc_registered = rpc_registered;
        // The old socket closes here; connections it accepted are not its to close.
        service.socket = socket;
        service.armed = true;
        service.idle_exits = 0;
        Ok(())
    }

    /// Opens the listener a rebind moves to, while the old one still listens, and says
    /// whether the old one had to stop listening for it.
    ///
    /// Linux lets no two TCP sockets listen on one port (SO_REUSEADDR allows a second
    /// bind only while the first does not listen; SO_REUSEPORT would also share the
    /// port's connections between both). So when the old listener holds the very port
    /// (only `v6only` or the RPC program changed, say), it stops listening without
    /// closing (`listeners::stop_listening`), which keeps the port bound to it, and the
    /// new socket binds. If that fails, the old one listens again and goes on serving.
    /// Between the two there are a few system calls in which a new connection is
    /// refused, and the connections still in the old accept queue are reset; accepted
    /// connections and running servers are not touched.
    fn open_replacement(
        &mut self,
        index: usize,
        spec: &ServiceSpec,
    ) -> Result<(Socket, bool), String> {
        let (address, error) = match open_listener(spec) {
            Ok(socket) => return Ok((socket, false)),
            Err(failure) => failure,
        };
        let cannot_listen = |address, error| format!("cannot listen on {address}: {error}");
        let generation = self.services[index].generation;
        let Some(old) = self.services[index].value.as_ref() else {
            return Err(cannot_listen(address, error));
        };
        let held_by_old = old
            .socket
            .as_ref()
            .filter(|_| old.spec.socket.socket_type == SocketType::Stream)
            .and_then(|socket| socket.local_addr().ok()?.as_socket())
            .is_some_and(|held| listeners::overlap(held, address));
        if error.raw_os_error() != Some(libc::EADDRINUSE)
            || spec.socket.socket_type != SocketType::Stream
            || !held_by_old
        {
            return Err(cannot_listen(address, error));
        }
        // A `wait` server listens on that very socket: stopping it would stop the server.
        let server_holds_it = self
            .children
            .values()
            .any(|child| child.holds_socket && child.service == (index, generation));
        if server_holds_it {
            return Err(format!(
                "{} (the running wait server holds the old socket; reload again once it exits)",
                cannot_listen(address, error)
            ));
        }
        let old_socket = old.socket.as_ref().expect("held_by_old");
        listeners::stop_listening(old_socket).map_err(|error| {
            format!("cannot stop the old socket listening to bind {address}: {error}")
        })?;
        match open_listener(spec) {
            Ok(socket) => {
                info!(
                    "service {}: the old socket stopped listening so that {address} could be bound anew",
                    spec.id
                );
                Ok((socket, true))
            }
            Err((address, error)) => {
                self.listen_again(index);
                Err(cannot_listen(address, error))
            }
        }
    }

    /// The old listener of a rebind that failed after it stopped listening starts again.
    fn listen_again(&mut self, index: usize) {
        let Some(service) = self.services[index].value.as_ref() else {
            return;
        };
        let Some(socket) = &service.socket else {
            return;
        };
        if let Err(error) = socket.listen(service.spec.socket.backlog as i32) {
            // Only another process taking the port in those few system calls gets here.
            // A socket that does not listen must not stay in the epoll set (it would
            // report a hangup on every turn), and a service that is gone is added again
            // by the next reload.
            error!(
                "service {}: the old socket cannot listen again: {error}; \
                 the next reload starts the service again",
                service.spec.id
            );
            self.remove_service(index);
        }
    }
}

fn on_off(flag: bool) -> &'static str {
    if flag { "on" } else { "off" }
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
        socket: SocketChange,
    },
}

impl From<Change<'_>> for OwnedChange {
    fn from(change: Change<'_>) -> OwnedChange {
        match change {
            Change::Keep(_) => OwnedChange::Keep,
            Change::KeepOld(name) => OwnedChange::KeepOld(name.to_string()),
            Change::Remove(name) => OwnedChange::Remove(name.to_string()),
            Change::Add(spec) => OwnedChange::Add(Box::new(spec.clone())),
            Change::Update { spec, socket } => OwnedChange::Update {
                spec: Box::new(spec.clone()),
                socket,
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
        Program::Internal(_) | Program::Redirect(_) | Program::Sensor(_) => Ok(None),
    }
}

fn open_socket(spec: &ServiceSpec) -> Result<Socket, String> {
    open_listener(spec).map_err(|(address, error)| format!("cannot listen on {address}: {error}"))
}

/// Opens a service's socket; on failure, the address tried last and why.
fn open_listener(spec: &ServiceSpec) -> Result<Socket, (SocketAddr, io::Error)> {
    match listeners::open(&spec.socket) {
        Ok(socket) => Ok(socket),
        Err(error) => match listeners::ipv4_fallback(&spec.socket, &error) {
            Some(fallback) => {
                warn!(
                    "service {}: no IPv6 on this host; listening on {}",
                    spec.name, fallback.address
                );
                listeners::open(&fallback).map_err(|error| (fallback.address, error))
            }
            None => Err((spec.socket.address, error)),
        },
    }
}

/// Registers `versions` of an RPC service with rpcbind and returns the ones registered.
/// A missing rpcbind is logged; the service still listens for clients that know its
/// port.
fn register_rpc(
    spec: &ServiceSpec,
    rpc: &config::spec::RpcSpec,
    socket: &Socket,
    versions: &[u32],
) -> Vec<u32> {
    let mut registered = Vec::new();
    let Some(port) = socket
        .local_addr()
        .ok()
        .and_then(|address| address.as_socket())
        .map(|address| address.port())
    else {
        return registered;
    };
    for &version in versions {
        let mapping = rpc::Mapping {
            program: rpc.number,
            version,
            protocol: spec.socket.protocol,
            port,
        };
        match rpc::set(&mapping) {
            Ok(()) => {
                info!(
                    "service {}: registered RPC program {} version {version} on port {port}",
                    spec.id, rpc.number
                );
                registered.push(version);
            }
            // Another program holds this version: the next one may still be free.
            Err(error @ rpc::RpcError::Refused) => error!(
                "service {}: cannot register version {version} with rpcbind: {error}",
                spec.id
            ),
            // rpcbind is not there or not sane: every version would fail alike.
            Err(error) => {
                error!("service {}: cannot register with rpcbind: {error}", spec.id);
                break;
            }
        }
    }
    registered
}

/// Withdraws the versions `service` registered, and only those: a version rpcbind
/// refused belongs to another program, which keeps it.
fn withdraw_rpc(service: &Service) {
    let (Some(rpc), Some(socket)) = (&service.spec.rpc, &service.socket) else {
        return;
    };
    let port = socket
        .local_addr()
        .ok()
        .and_then(|address| address.as_socket())
        .map_or(0, |address| address.port());
    for &version in &service.rpc_registered {
        let mapping = rpc::Mapping {
            program: rpc.number,
            version,
            protocol: service.spec.socket.protocol,
            port,
        };
        if let Err(error) = rpc::unset(&mapping) {
            debug!("service {}: rpcbind unset: {error}", service.spec.id);
            return;
        }
    }
}

/// The signals pending on `signals`, in one read(2). Standard signals merge, so at most
/// the four the loop takes can be pending; any left would keep the (level-triggered)
/// signalfd readable. Reading on until EAGAIN would cost a system call per wake.
fn read_signals(signals: &SignalFd) -> impl Iterator<Item = i32> {
    let (numbers, count) = sys::signal::read_signalfd::<8>(signals);
    numbers.into_iter().take(count)
}

/// Servers run in their own session, so their own children go with them.
fn signal_group(pid: Pid, signal: Signal) {
    if nix::sys::signal::killpg(pid, signal).is_err() {
        let _ = nix::sys::signal::kill(pid, signal);
    }
}
