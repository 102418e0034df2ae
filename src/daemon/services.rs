//! The services and their listeners: add, update (adjust or rebind the socket), remove,
//! and whether the loop watches a listener. Every change of a service goes through here.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use log::{error, info, warn};
use nix::sys::epoll::EpollFlags;
use socket2::Socket;

use super::children::Children;
use super::inherited::Inherited;
use super::listeners::{self, Queue, SocketFile};
use super::poller::{Poller, Token};
use super::reload::{Change, SocketChange};
use super::rpcbind;
use super::service_log::{Lines, ServiceLog, Stats};
use super::slab::{ServiceKey, Slab};
use crate::config::ServiceSpec;
use crate::config::spec::{Address, ExecSpec, Permissions, Program, SocketType};
use crate::limits::{Cps, PerSource};
use crate::spawn::Prepared;
use crate::tcpmux;

pub struct Service {
    /// Shared with the cache of the load it came from (`config::cache`).
    pub spec: Rc<ServiceSpec>,
    pub log: Rc<ServiceLog>,
    /// Shared by the services of a load that run one shared `ExecSpec`.
    pub prepared: Option<Rc<Prepared>>,
    /// `None` for TCPMUX services, which are reached through the tcpmux service.
    pub socket: Option<Socket>,
    /// A Unix socket's file: removed with the service. Boxed (as `Cps` is inside): most
    /// services have neither, and 10,000 services are 10,000 of these structs.
    unix_file: Option<Box<SocketFile>>,
    armed: bool,
    /// Servers, sessions and relays of this service.
    pub running: usize,
    /// `wait` services: quick exits in a row that served nobody.
    pub idle_exits: u32,
    pub queue_at_spawn: Queue,
    pub per_source: PerSource,
    pub cps: Option<Cps>,
    /// Spawning failed for want of processes; logged once per episode.
    pub fork_failing: bool,
    /// Refused datagrams are logged at most once a second, so a flood is no log flood.
    pub datagram_refusal_logged: Option<Instant>,
    /// RPC versions this service registered with rpcbind: the ones to withdraw.
    rpc_registered: Vec<u32>,
    pub stats: Stats,
    /// The socket came from systemd (`inherited`): never re-bound, and given back to
    /// the pool, not closed, when the service goes.
    inherited: bool,
}

#[derive(Default)]
pub struct Services {
    slab: Slab<ServiceKey, Service>,
    inherited: Inherited,
    /// The programs prepared during one start or reload, by the address of their shared
    /// `ExecSpec` (held here, so no other can take its address meanwhile): services
    /// sharing a program share its C strings. Emptied by `forget_prepared`.
    prepared: HashMap<*const ExecSpec, (Rc<ExecSpec>, Rc<Prepared>)>,
}

/// A reload change that owns its spec, so the plan's borrow of the running services
/// ends before they are changed.
pub enum OwnedChange {
    Keep,
    KeepOld(String),
    Remove(String),
    Add(Rc<ServiceSpec>),
    Update {
        spec: Rc<ServiceSpec>,
        socket: SocketChange,
    },
}

impl From<Change<'_, Rc<ServiceSpec>>> for OwnedChange {
    fn from(change: Change<'_, Rc<ServiceSpec>>) -> OwnedChange {
        match change {
            Change::Keep(_) => OwnedChange::Keep,
            Change::KeepOld(name) => OwnedChange::KeepOld(name.to_string()),
            Change::Remove(name) => OwnedChange::Remove(name.to_string()),
            Change::Add(spec) => OwnedChange::Add(Rc::clone(spec)),
            Change::Update { spec, socket } => OwnedChange::Update {
                spec: Rc::clone(spec),
                socket,
            },
        }
    }
}

impl Services {
    pub fn get(&self, key: ServiceKey) -> Option<&Service> {
        self.slab.get(key)
    }

    pub fn get_mut(&mut self, key: ServiceKey) -> Option<&mut Service> {
        self.slab.get_mut(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = (ServiceKey, &Service)> {
        self.slab.iter()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (ServiceKey, &mut Service)> {
        self.slab.iter_mut()
    }

    pub fn specs(&self) -> impl Iterator<Item = &Rc<ServiceSpec>> {
        self.slab.values().map(|service| &service.spec)
    }

    pub fn logs(&self) -> impl Iterator<Item = &ServiceLog> {
        self.slab.values().map(|service| &*service.log)
    }

    pub fn len(&self) -> usize {
        self.slab.len()
    }

    fn key_of(&self, id: &str) -> Option<ServiceKey> {
        self.slab
            .iter()
            .find(|(_, service)| service.spec.id == id)
            .map(|(key, _)| key)
    }

    /// The TCPMUX service a tcpmux client named, and only a TCPMUX or TCPMUXPLUS one
    /// (CVE-2012-0862), through `tcpmux::find`.
    pub fn tcpmux_target(&self, name: &str) -> Option<ServiceKey> {
        let found = tcpmux::find(name, self.tcpmux_names())?;
        self.slab
            .iter()
            .find(|(_, service)| service.spec.tcpmux.is_some() && service.spec.name == found)
            .map(|(key, _)| key)
    }

    pub fn tcpmux_names(&self) -> impl Iterator<Item = &str> {
        self.specs()
            .filter(|spec| spec.tcpmux.is_some())
            .map(|spec| spec.name.as_str())
    }

    /// The sockets systemd handed over, for the services to take as they are added.
    pub fn inherit(&mut self, inherited: Inherited) {
        self.inherited = inherited;
    }

    pub fn add(
        &mut self,
        spec: Rc<ServiceSpec>,
        poller: &Poller,
        lines: &mut Lines,
    ) -> Result<(), String> {
        let prepared = self.prepare(&spec)?;
        let handed = match spec.tcpmux {
            Some(_) => None,
            None => self.inherited.take(&spec),
        };
        let inherited = handed.is_some();
        let (socket, unix_file) = match (spec.tcpmux, handed) {
            (Some(_), _) => (None, None),
            (None, Some(socket)) => (Some(socket), None),
            (None, None) => {
                let (socket, file) = open_socket(&spec, None)?;
                (Some(socket), file)
            }
        };
        let key = self.slab.vacant_key();
        let watched = match &socket {
            Some(socket) if inherited => listeners::take_over(socket, &spec.socket)
                .map_err(|error| format!("cannot use the socket systemd handed over: {error}"))
                .and_then(|()| watch(poller, socket, key)),
            Some(socket) => watch(poller, socket, key),
            None => Ok(()),
        };
        if let Err(message) = watched {
            if inherited && let Some(socket) = socket {
                self.inherited.give_back(&spec.id, socket);
            }
            return Err(message);
        }
        if inherited {
            // `Inherited::take` said where it listens; the spec's address is not it.
        } else if socket.is_some() {
            info!("service {}: listening on {}", spec.id, spec.describe());
        } else {
            info!("service {}: {}", spec.id, spec.describe());
        }
        let rpc_registered = match (&spec.rpc, &socket) {
            (Some(rpc), Some(socket)) => rpcbind::register(&spec, rpc, socket, &rpc.all_versions()),
            _ => Vec::new(),
        };
        let log = service_log(lines, &spec);
        self.slab.insert(Service {
            cps: new_cps(&spec),
            spec,
            log,
            prepared,
            socket,
            unix_file: unix_file.map(Box::new),
            armed: true,
            running: 0,
            idle_exits: 0,
            queue_at_spawn: Queue::Empty,
            inherited,
            per_source: PerSource::new(),
            fork_failing: false,
            datagram_refusal_logged: None,
            rpc_registered,
            stats: Stats::default(),
        });
        Ok(())
    }

    /// Closes the listener and withdraws the RPC registrations; running servers and
    /// sessions finish on their own.
    pub fn remove(&mut self, key: ServiceKey, poller: &Poller) {
        let Some(service) = self.slab.remove(key) else {
            return;
        };
        if let Some(socket) = &service.socket {
            let _ = poller.delete(socket);
            rpcbind::withdraw(&service.spec, Some(socket), &service.rpc_registered);
            if let Some(rpc) = service.spec.rpc {
                let protocol = service.spec.socket.protocol;
                self.reregister_rpc(rpc.number, protocol, &service.rpc_registered);
            }
        }
        info!(
            "service {}: stopped ({} running to finish)",
            service.spec.id, service.running
        );
        if service.inherited
            && let Some(socket) = service.socket
        {
            self.inherited.give_back(&service.spec.id, socket);
        }
    }

    pub fn remove_all(&mut self, poller: &Poller) {
        for key in self.slab.keys() {
            self.remove(key, poller);
        }
    }

    /// Puts a listener in the poll set or takes it out (a `wait` server holds it, a
    /// back-off runs).
    pub fn is_armed(&self, key: ServiceKey) -> bool {
        self.slab.get(key).is_some_and(|service| service.armed)
    }

    pub fn set_armed(&mut self, key: ServiceKey, armed: bool, poller: &Poller) {
        let Some(service) = self.slab.get_mut(key) else {
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
        if let Err(errno) = poller.modify(socket, Token::Listener(key), flags) {
            error!("service {}: epoll: {errno}", service.spec.id);
        }
        service.armed = armed;
    }

    /// Applies one change of a reload; an error (logged here) is returned as logged,
    /// for `oxinetd reload` to report.
    pub fn apply(
        &mut self,
        change: OwnedChange,
        poller: &Poller,
        lines: &mut Lines,
        children: &Children,
    ) -> Result<(), String> {
        match change {
            OwnedChange::Keep => {}
            OwnedChange::KeepOld(name) => {
                warn!("service {name}: the new definition has errors; keeping the previous one")
            }
            OwnedChange::Remove(name) => {
                if let Some(key) = self.key_of(&name) {
                    self.remove(key, poller);
                }
            }
            OwnedChange::Add(spec) => {
                let name = spec.id.clone();
                if let Err(message) = self.add(spec, poller, lines) {
                    let message = format!("service {name}: {message}");
                    error!("{message}");
                    return Err(message);
                }
            }
            OwnedChange::Update { spec, socket } => {
                let name = spec.id.clone();
                if let Err(message) = self.update(spec, socket, poller, lines, children) {
                    let message =
                        format!("service {name}: {message}; keeping the previous definition");
                    error!("{message}");
                    if let Some(service) = self.key_of(&name).and_then(|key| self.slab.get_mut(key))
                    {
                        service.stats.set_last_error(message.clone());
                    }
                    return Err(message);
                }
            }
        }
        Ok(())
    }

    /// New settings for new connections; the running servers keep theirs.
    fn update(
        &mut self,
        spec: Rc<ServiceSpec>,
        socket_change: SocketChange,
        poller: &Poller,
        lines: &mut Lines,
        children: &Children,
    ) -> Result<(), String> {
        let Some(key) = self.key_of(&spec.id) else {
            return Ok(());
        };
        let prepared = self.prepare(&spec)?;
        let socket_change = self.keep_inherited(key, &spec, socket_change)?;
        match socket_change {
            SocketChange::Same => {}
            SocketChange::Adjust => self.adjust(key, &spec)?,
            SocketChange::Rebind => self.rebind(key, &spec, poller, children)?,
        }
        let log = service_log(lines, &spec);
        let service = self.slab.get_mut(key).expect("key_of found it");
        info!("service {}: updated: {}", spec.id, spec.describe());
        let hands_over_socket = spec.wait && prepared.is_some();
        if let Some(socket) = &service.socket
            && !hands_over_socket
            && let Err(error) = socket.set_nonblocking(true)
        {
            return Err(format!("cannot make the socket non-blocking: {error}"));
        }
        if service.spec.limits.cps != spec.limits.cps {
            service.cps = new_cps(&spec);
        }
        service.spec = spec;
        service.log = log;
        service.prepared = prepared;
        Ok(())
    }

    /// A socket systemd handed over is never re-bound: systemd's socket unit says where
    /// it listens. A new address is logged and the socket kept; a new socket type cannot
    /// be served on it, so that definition is refused.
    fn keep_inherited(
        &self,
        key: ServiceKey,
        spec: &ServiceSpec,
        change: SocketChange,
    ) -> Result<SocketChange, String> {
        let Some(old) = self.slab.get(key).filter(|old| old.inherited) else {
            return Ok(change);
        };
        if change != SocketChange::Rebind {
            return Ok(change);
        }
        if old.spec.socket.socket_type != spec.socket.socket_type {
            return Err("the socket systemd handed over cannot change its socket_type".into());
        }
        let held = old
            .socket
            .as_ref()
            .and_then(|socket| socket.local_addr().ok()?.as_socket());
        warn!(
            "service {}: listens on the socket systemd handed over, whose address cannot \
             change ({} stays; change the socket unit)",
            spec.id,
            held.map_or("its address".to_string(), |address| address.to_string())
        );
        Ok(SocketChange::Adjust)
    }

    /// Sets the changed backlog, `NODELAY` or `KEEPALIVE` on the live listener, which
    /// keeps its port and its queued connections. A datagram socket has none of these.
    fn adjust(&self, key: ServiceKey, spec: &ServiceSpec) -> Result<(), String> {
        if let Address::Unix(unix) = &spec.socket.address {
            return self.adjust_unix(key, spec, unix.permissions);
        }
        let Some(socket) = self
            .slab
            .get(key)
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

    /// A Unix socket's new mode or owners, set on its live file; its backlog on its
    /// live listener.
    fn adjust_unix(
        &self,
        key: ServiceKey,
        spec: &ServiceSpec,
        permissions: Permissions,
    ) -> Result<(), String> {
        let Some(service) = self.slab.get(key) else {
            return Ok(());
        };
        if let Some(file) = &service.unix_file {
            file.set_permissions(permissions)?;
        }
        if let Some(socket) = &service.socket
            && spec.socket.socket_type.connected()
        {
            socket
                .listen(spec.socket.backlog as i32)
                .map_err(|error| format!("cannot adjust the listening socket: {error}"))?;
        }
        info!(
            "service {}: socket file adjusted in place (mode {:04o}, backlog {})",
            spec.id, permissions.mode, spec.socket.backlog
        );
        Ok(())
    }

    /// A new socket for a service whose address or kind changed. The old one goes on
    /// serving until the new one listens; if the new one cannot, the old socket and the
    /// old definition stay (the caller keeps the definition when this fails).
    fn rebind(
        &mut self,
        key: ServiceKey,
        spec: &ServiceSpec,
        poller: &Poller,
        children: &Children,
    ) -> Result<(), String> {
        let (socket, unix_file) = match spec.tcpmux {
            Some(_) => (None, None),
            None => {
                let (socket, unix_file, stopped_old) =
                    self.open_replacement(key, spec, poller, children)?;
                if let Err(message) = watch(poller, &socket, key) {
                    drop(socket);
                    if stopped_old {
                        self.listen_again(key, poller);
                    }
                    return Err(message);
                }
                (Some(socket), unix_file)
            }
        };
        // The new socket listens: only now do the old one's registrations go.
        let withdrawn = self.slab.get_mut(key).map(|old| {
            rpcbind::withdraw(&old.spec, old.socket.as_ref(), &old.rpc_registered);
            let versions = std::mem::take(&mut old.rpc_registered);
            (old.spec.rpc, old.spec.socket.protocol, versions)
        });
        if let Some((Some(rpc), protocol, versions)) = withdrawn {
            self.reregister_rpc(rpc.number, protocol, &versions);
        }
        if let Some(old) = self.slab.get(key).and_then(|s| s.socket.as_ref()) {
            let _ = poller.delete(old);
        }
        let mut rpc_registered = Vec::new();
        if let (Some(socket), Some(rpc)) = (&socket, &spec.rpc) {
            rpc_registered = rpcbind::register(spec, rpc, socket, &rpc.all_versions());
        }
        let service = self.slab.get_mut(key).expect("key_of found it");
        service.rpc_registered = rpc_registered;
        // The old socket closes here; connections it accepted are not its to close. Its
        // file goes too, unless the new socket took its path.
        service.socket = socket;
        service.unix_file = unix_file.map(Box::new);
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
        key: ServiceKey,
        spec: &ServiceSpec,
        poller: &Poller,
        children: &Children,
    ) -> Result<(Socket, Option<SocketFile>, bool), String> {
        if let Address::Unix(_) = spec.socket.address {
            // The new socket is renamed onto the path, the old one's included.
            let ours = self.slab.get(key).and_then(|old| old.unix_file.as_deref());
            let (socket, file) = listeners::open_unix(&spec.socket, ours)?;
            return Ok((socket, Some(file), false));
        }
        let (address, error) = match open_listener(spec) {
            Ok(socket) => return Ok((socket, None, false)),
            Err(failure) => failure,
        };
        let cannot_listen = |address, error| format!("cannot listen on {address}: {error}");
        let Some(old) = self.slab.get(key) else {
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
        if children.holds_socket(key) {
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
                Ok((socket, None, true))
            }
            Err((address, error)) => {
                self.listen_again(key, poller);
                Err(cannot_listen(address, error))
            }
        }
    }

    /// The old listener of a rebind that failed after it stopped listening starts again.
    fn listen_again(&mut self, key: ServiceKey, poller: &Poller) {
        let Some(service) = self.slab.get(key) else {
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
            self.remove(key, poller);
        }
    }

    /// A service whose `log_type` could not be opened (logging to stderr meanwhile) is
    /// tried again at every reload, even when its definition did not change: the missing
    /// directory or the syslog socket may be there now.
    pub fn reopen_failed_logs(&mut self, lines: &mut Lines) {
        for (_, service) in self.slab.iter_mut() {
            if service.log.sink.is_some() || service.spec.logging.log_type.is_none() {
                continue;
            }
            let log = Rc::clone(&service.log);
            let Some(sink) = lines.open(&log.id, &log.logging) else {
                continue;
            };
            info!("service {}: log_type: opened now", log.id);
            service.log = Rc::new(ServiceLog {
                id: Rc::clone(&log.id),
                logging: log.logging.clone(),
                sink: Some(sink),
            });
        }
    }

    fn reregister_rpc(
        &self,
        number: u32,
        protocol: crate::config::spec::Protocol,
        withdrawn: &[u32],
    ) {
        let registered = self.slab.values().filter_map(|service| {
            Some(rpcbind::Registered {
                spec: &service.spec,
                socket: service.socket.as_ref()?,
                versions: &service.rpc_registered,
            })
        });
        rpcbind::reregister(registered, number, protocol, withdrawn);
    }

    /// RPC versions not registered (rpcbind was not running, or refused them) are tried
    /// again at every reload. Not on a timer: each try may hold up the loop for a second
    /// where a firewall drops the call instead of refusing it.
    pub fn register_missing_rpc(&mut self) {
        for (_, service) in self.slab.iter_mut() {
            let (Some(rpc), Some(socket)) = (&service.spec.rpc, &service.socket) else {
                continue;
            };
            let missing: Vec<u32> = rpc
                .all_versions()
                .into_iter()
                .filter(|version| !service.rpc_registered.contains(version))
                .collect();
            if !missing.is_empty() {
                let more = rpcbind::register(&service.spec, rpc, socket, &missing);
                service.rpc_registered.extend(more);
            }
        }
    }
}

impl Services {
    /// The C strings of an exec'd service's program, made once per shared `ExecSpec`.
    fn prepare(&mut self, spec: &ServiceSpec) -> Result<Option<Rc<Prepared>>, String> {
        let Program::Exec(exec) = &spec.program else {
            return Ok(None);
        };
        if let Some((_, prepared)) = self.prepared.get(&Rc::as_ptr(exec)) {
            return Ok(Some(Rc::clone(prepared)));
        }
        let prepared = Rc::new(Prepared::new(exec)?);
        self.prepared
            .insert(Rc::as_ptr(exec), (Rc::clone(exec), Rc::clone(&prepared)));
        Ok(Some(prepared))
    }

    /// Ends the sharing of prepared programs, once a start or a reload is done: the
    /// next reload's programs are new ones.
    pub fn forget_prepared(&mut self) {
        self.prepared = HashMap::new();
    }
}

/// Has the loop watch a service's listening socket, its events tagged with its key.
fn watch(poller: &Poller, socket: &Socket, key: ServiceKey) -> Result<(), String> {
    poller
        .add(socket, Token::Listener(key), EpollFlags::EPOLLIN)
        .map_err(|errno| format!("epoll: {errno}"))
}

fn service_log(lines: &mut Lines, spec: &ServiceSpec) -> Rc<ServiceLog> {
    Rc::new(ServiceLog {
        id: Rc::from(spec.id.as_str()),
        logging: spec.logging.clone(),
        sink: lines.open(&spec.id, &spec.logging),
    })
}

fn on_off(flag: bool) -> &'static str {
    if flag { "on" } else { "off" }
}

fn new_cps(spec: &ServiceSpec) -> Option<Cps> {
    spec.limits.cps.map(|(rate, pause)| Cps::new(rate, pause))
}

fn open_socket(
    spec: &ServiceSpec,
    ours: Option<&SocketFile>,
) -> Result<(Socket, Option<SocketFile>), String> {
    if let Address::Unix(_) = spec.socket.address {
        let (socket, file) = listeners::open_unix(&spec.socket, ours)?;
        return Ok((socket, Some(file)));
    }
    open_listener(spec)
        .map(|socket| (socket, None))
        .map_err(|(address, error)| format!("cannot listen on {address}: {error}"))
}

/// Opens an IP service's socket; on failure, the address tried last and why.
fn open_listener(spec: &ServiceSpec) -> Result<Socket, (SocketAddr, io::Error)> {
    let Address::Ip(address) = spec.socket.address else {
        unreachable!("Unix sockets are opened by listeners::open_unix")
    };
    match listeners::open(&spec.socket, address) {
        Ok(socket) => Ok(socket),
        Err(error) => match listeners::ipv4_fallback(address, &error) {
            Some(fallback) => {
                warn!(
                    "service {}: no IPv6 on this host; listening on {fallback}",
                    spec.name
                );
                listeners::open(&spec.socket, fallback).map_err(|error| (fallback, error))
            }
            None => Err((address, error)),
        },
    }
}
