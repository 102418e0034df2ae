//! The control socket (`control_socket`): where `oxinetd status` and `oxinetd reload`
//! reach the running daemon. This room owns the listening socket, its clients, and what
//! the status tells beyond the other rooms' state (start time, last reload, services
//! that failed to start or are switched off).
//!
//! The protocol (docs/status.md): the client sends one line, `status`, `status json`
//! or `reload`; the daemon answers `ok`, `failed` or `error: WHY` on a first line, then
//! the body, and closes. Every client is non-blocking and served by the loop from its
//! own state: a status is built when asked, a reload is the one `SIGHUP` runs. At most
//! `MAX_CLIENTS` are served at once (the others wait in the listen queue, the listener
//! out of the poll set meanwhile), each within `CLIENT_DEADLINE` or dropped, so no
//! number of callers, slow or not, holds up the accept path of the services.
//!
//! Only root and oxinetd's own user may ask (`SO_PEERCRED`), and the socket is made
//! mode 0600 before it listens. A path where another daemon answers is never taken
//! over: that daemon keeps it and this one runs without a control socket. A socket file
//! nobody answers on (a daemon that died) is replaced.

use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use log::{error, info, warn};
use nix::sys::epoll::EpollFlags;
use nix::sys::socket::sockopt::PeerCredentials;
use socket2::{Domain, SockAddr, Socket, Type};

use super::Daemon;
use super::poller::{ControlEvent, Poller, Token};
use super::service_log::Reason;
use super::timers::{Timer, Timers};
use crate::config::ServiceSpec;
use crate::config::spec::Address;
use crate::status::{self, State, Status};

/// Clients served at once; more wait in the listen queue.
pub const MAX_CLIENTS: usize = 16;
/// A client has this long to send its request and read the reply.
pub const CLIENT_DEADLINE: Duration = Duration::from_secs(5);
const MAX_REQUEST: usize = 256;
const BACKLOG: i32 = 128;

/// What a client asks.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    Status { json: bool },
    Reload,
    Unknown(String),
}

impl Request {
    pub fn parse(line: &[u8]) -> Request {
        let line = String::from_utf8_lossy(line);
        match line.split_whitespace().collect::<Vec<_>>()[..] {
            ["status"] => Request::Status { json: false },
            ["status", "json"] => Request::Status { json: true },
            ["reload"] => Request::Reload,
            _ => Request::Unknown(line.trim().chars().take(40).collect()),
        }
    }
}

struct Listening {
    socket: UnixListener,
    path: PathBuf,
    /// The socket file's device and inode: at the end it is removed only if it is
    /// still ours.
    file: (u64, u64),
    armed: bool,
}

struct Client {
    stream: UnixStream,
    request: Vec<u8>,
    /// `Some` once the request is answered: the reply and how much of it was sent.
    reply: Option<(Vec<u8>, usize)>,
    deadline: Instant,
}

/// A service in the configuration that did not start.
pub struct Failed {
    id: String,
    address: String,
    reason: String,
}

impl Failed {
    /// What to remember of a service about to start, should it fail.
    pub fn of(spec: &ServiceSpec) -> Failed {
        Failed {
            id: spec.id.clone(),
            address: address(spec),
            reason: String::new(),
        }
    }
}

/// The last reload's outcome, for `status` and `oxinetd reload`.
pub struct ReloadOutcome {
    pub at: Instant,
    pub ok: bool,
    pub summary: String,
    pub errors: Vec<String>,
}

pub struct Control {
    listening: Option<Listening>,
    clients: Vec<Option<Client>>,
    started: Instant,
    pub last_reload: Option<ReloadOutcome>,
    pub failed: Vec<Failed>,
    pub disabled: Vec<String>,
}

impl Default for Control {
    fn default() -> Control {
        Control {
            listening: None,
            clients: (0..MAX_CLIENTS).map(|_| None).collect(),
            started: Instant::now(),
            last_reload: None,
            failed: Vec::new(),
            disabled: Vec::new(),
        }
    }
}

impl Control {
    /// Listens on `path` (or on nothing): kept as it is when it does not change, moved
    /// when it does. An error is logged and the daemon runs without a control socket.
    pub fn configure(&mut self, path: Option<&Path>, poller: &Poller) {
        if self.listening.as_ref().map(|l| l.path.as_path()) == path {
            return;
        }
        self.close(poller);
        let Some(path) = path else {
            return;
        };
        match listen(path) {
            Ok((socket, file)) => {
                let token = Token::Control(ControlEvent::Listener);
                if let Err(errno) = poller.add(&socket, token, EpollFlags::EPOLLIN) {
                    error!("control socket {}: epoll: {errno}", path.display());
                    remove_if_ours(path, file);
                    return;
                }
                info!("control socket: listening on {}", path.display());
                self.listening = Some(Listening {
                    socket,
                    path: path.to_path_buf(),
                    file,
                    armed: true,
                });
            }
            Err(message) => error!(
                "control socket {}: {message}; running without a control socket",
                path.display()
            ),
        }
    }

    /// Stops listening, drops every client and removes the socket file if it is ours.
    pub fn close(&mut self, poller: &Poller) {
        for slot in 0..self.clients.len() {
            self.drop_client(slot, poller);
        }
        if let Some(listening) = self.listening.take() {
            let _ = poller.delete(&listening.socket);
            remove_if_ours(&listening.path, listening.file);
        }
    }

    /// Accepts clients while slots are free; when none is, the listener leaves the poll
    /// set until one is (the others wait in its queue).
    fn accept(&mut self, poller: &Poller, timers: &mut Timers) {
        let Some(listening) = &mut self.listening else {
            return;
        };
        loop {
            let Some(slot) = self.clients.iter().position(Option::is_none) else {
                set_armed(listening, false, poller);
                return;
            };
            let stream = match listening.socket.accept() {
                Ok((stream, _)) => stream,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    // Out of fds, say: the next readiness tries again.
                    warn!("control socket: accept: {error}");
                    return;
                }
            };
            if !permitted(&stream) {
                continue;
            }
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let token = Token::Control(ControlEvent::Client(slot as u8));
            if poller.add(&stream, token, EpollFlags::EPOLLIN).is_err() {
                continue;
            }
            let deadline = Instant::now() + CLIENT_DEADLINE;
            timers.push(deadline, Timer::Control(slot as u8));
            self.clients[slot] = Some(Client {
                stream,
                request: Vec::new(),
                reply: None,
                deadline,
            });
        }
    }

    /// Reads what a client sent; the request once its line is complete.
    fn read_request(&mut self, slot: usize, poller: &Poller) -> Option<Request> {
        let client = self.clients.get_mut(slot)?.as_mut()?;
        if client.reply.is_some() {
            self.send(slot, poller);
            return None;
        }
        let mut buffer = [0u8; MAX_REQUEST];
        loop {
            match client.stream.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => {
                    client.request.extend_from_slice(&buffer[..n]);
                    if client.request.contains(&b'\n') {
                        break;
                    }
                    if client.request.len() > MAX_REQUEST {
                        return Some(Request::Unknown("(too long)".to_string()));
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return None,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.drop_client(slot, poller);
                    return None;
                }
            }
        }
        let line = client.request.split(|byte| *byte == b'\n').next()?;
        Some(Request::parse(line))
    }

    /// Sends `reply` to the client in `slot`, now or as it reads.
    fn answer(&mut self, slot: usize, reply: Vec<u8>, poller: &Poller) {
        let Some(Some(client)) = self.clients.get_mut(slot) else {
            return;
        };
        client.reply = Some((reply, 0));
        let token = Token::Control(ControlEvent::Client(slot as u8));
        let _ = poller.modify(&client.stream, token, EpollFlags::EPOLLOUT);
        self.send(slot, poller);
    }

    fn send(&mut self, slot: usize, poller: &Poller) {
        let Some(Some(client)) = self.clients.get_mut(slot) else {
            return;
        };
        let Some((reply, sent)) = &mut client.reply else {
            return;
        };
        while *sent < reply.len() {
            match client.stream.write(&reply[*sent..]) {
                Ok(n) => *sent += n,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        self.drop_client(slot, poller);
    }

    fn drop_client(&mut self, slot: usize, poller: &Poller) {
        let Some(client) = self.clients.get_mut(slot).and_then(Option::take) else {
            return;
        };
        let _ = poller.delete(&client.stream);
        if let Some(listening) = &mut self.listening {
            set_armed(listening, true, poller);
        }
    }

    /// A client still there at its deadline is dropped.
    fn expire(&mut self, slot: usize, now: Instant, poller: &Poller) {
        let late = self
            .clients
            .get(slot)
            .and_then(Option::as_ref)
            .is_some_and(|client| client.deadline <= now);
        if late {
            warn!(
                "control socket: a client took more than {} s; dropped",
                CLIENT_DEADLINE.as_secs()
            );
            self.drop_client(slot, poller);
        }
    }

    /// At a start or reload: services that did not start, and the switched off ones.
    pub fn forget_failures(&mut self, disabled: Vec<String>) {
        self.failed.clear();
        self.disabled = disabled;
    }

    pub fn failed_to_start(&mut self, mut failed: Failed, reason: String) {
        let prefix = format!("service {}: ", failed.id);
        failed.reason = reason.strip_prefix(&prefix).unwrap_or(&reason).to_string();
        self.failed.push(failed);
    }

    pub fn reloaded(&mut self, ok: bool, summary: String, errors: Vec<String>) {
        self.last_reload = Some(ReloadOutcome {
            at: Instant::now(),
            ok,
            summary,
            errors,
        });
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        if let Some(listening) = &self.listening {
            remove_if_ours(&listening.path, listening.file);
        }
    }
}

impl Daemon {
    pub(super) fn on_control(&mut self, event: ControlEvent) {
        let slot = match event {
            ControlEvent::Listener => {
                return self.control.accept(&self.poller, &mut self.timers);
            }
            ControlEvent::Client(slot) => usize::from(slot),
        };
        let Some(request) = self.control.read_request(slot, &self.poller) else {
            return;
        };
        // No need to reap first for the counts (`reap_later`): a request is read a turn
        // after its connection was accepted, and every turn ends by reaping.
        let reply = match request {
            Request::Status { json: false } => format!("ok\n{}", status::table(&self.status())),
            Request::Status { json: true } => match serde_json::to_string(&self.status()) {
                Ok(json) => format!("ok\n{json}\n"),
                Err(error) => format!("error: {error}\n"),
            },
            Request::Reload if self.stopping.is_some() => "error: shutting down\n".to_string(),
            Request::Reload => {
                info!("reload asked on the control socket");
                self.lines.sinks.reopen();
                self.reload();
                reload_reply(self.control.last_reload.as_ref())
            }
            Request::Unknown(what) => format!(
                "error: unknown request `{}` (status, status json or reload)\n",
                crate::logging::escaped(&what)
            ),
        };
        self.control.answer(slot, reply.into_bytes(), &self.poller);
    }

    pub(super) fn control_deadline(&mut self, slot: u8) {
        self.control
            .expire(usize::from(slot), Instant::now(), &self.poller);
    }

    /// SIGUSR1: the status table to stderr, after the lines logged so far.
    pub(super) fn status_to_stderr(&mut self) {
        self.reap_on_exit();
        crate::logging::flush();
        let _ = io::stderr().write_all(status::table(&self.status()).as_bytes());
    }

    /// The daemon and its services now, from the rooms' own state.
    pub(super) fn status(&self) -> Status {
        let now = Instant::now();
        let mut services: Vec<status::Service> = self
            .services
            .iter()
            .map(|(key, service)| {
                let armed = self.services.is_armed(key);
                let state = if !armed && service.spec.wait && service.running > 0 {
                    State::Held
                } else if !armed {
                    State::Paused
                } else if service.cps.as_ref().is_some_and(|cps| cps.shedding()) {
                    State::Cps
                } else {
                    State::Listening
                };
                status::Service {
                    id: service.spec.id.clone(),
                    address: Some(address(&service.spec)),
                    state,
                    reason: None,
                    running: service.running,
                    accepted: service.stats.accepted,
                    refused: Reason::ALL
                        .iter()
                        .map(|reason| {
                            let count = service.stats.refused(*reason);
                            (reason.word().to_string(), count)
                        })
                        .collect(),
                    last_error: service.stats.last_error().map(str::to_string),
                }
            })
            .collect();
        let unstarted = |id: &str, address: Option<String>, state, reason| status::Service {
            id: id.to_string(),
            address,
            state,
            reason,
            running: 0,
            accepted: 0,
            refused: Reason::ALL
                .iter()
                .map(|reason| (reason.word().to_string(), 0))
                .collect(),
            last_error: None,
        };
        for failed in &self.control.failed {
            services.push(unstarted(
                &failed.id,
                Some(failed.address.clone()),
                State::Failed,
                Some(failed.reason.clone()),
            ));
        }
        for id in &self.control.disabled {
            services.push(unstarted(id, None, State::Disabled, None));
        }
        services.sort_by(|a, b| a.id.cmp(&b.id));
        Status {
            format: status::FORMAT,
            pid: std::process::id(),
            uptime_seconds: now.duration_since(self.control.started).as_secs(),
            config_file: self.config_path.display().to_string(),
            servers: self.children.len(),
            last_reload: self
                .control
                .last_reload
                .as_ref()
                .map(|reload| status::Reload {
                    ok: reload.ok,
                    seconds_ago: now.duration_since(reload.at).as_secs(),
                    summary: reload.summary.clone(),
                    errors: reload.errors.clone(),
                }),
            services,
        }
    }
}

/// `ok` and the summary, or `failed`, every error and the summary.
fn reload_reply(outcome: Option<&ReloadOutcome>) -> String {
    let Some(outcome) = outcome else {
        return "error: no reload ran\n".to_string();
    };
    let mut reply = String::from(if outcome.ok { "ok\n" } else { "failed\n" });
    for error in &outcome.errors {
        reply.push_str(&crate::logging::escaped(error));
        reply.push('\n');
    }
    reply.push_str(&format!("reload: {}\n", outcome.summary));
    reply
}

/// `127.0.0.1:7 stream/tcp`, `/run/x.sock stream/unix`, or `tcpmux NAME` for a service
/// reached through tcpmux.
fn address(spec: &ServiceSpec) -> String {
    if spec.tcpmux.is_some() {
        return format!("tcpmux {}", spec.name);
    }
    let protocol = match spec.socket.address {
        Address::Ip(_) => spec.socket.protocol.name(),
        Address::Unix(_) => "unix",
    };
    let kind = spec.socket.socket_type.name();
    format!("{} {kind}/{protocol}", spec.socket.address)
}

fn set_armed(listening: &mut Listening, armed: bool, poller: &Poller) {
    if listening.armed == armed {
        return;
    }
    let flags = if armed {
        EpollFlags::EPOLLIN
    } else {
        EpollFlags::empty()
    };
    let token = Token::Control(ControlEvent::Listener);
    if poller.modify(&listening.socket, token, flags).is_ok() {
        listening.armed = armed;
    }
}

/// Root and oxinetd's own user only; anyone else is told so, logged and dropped.
fn permitted(stream: &UnixStream) -> bool {
    let uid = match nix::sys::socket::getsockopt(stream, PeerCredentials) {
        Ok(credentials) => credentials.uid(),
        Err(errno) => {
            warn!("control socket: SO_PEERCRED: {errno}; client dropped");
            return false;
        }
    };
    let own = nix::unistd::geteuid().as_raw();
    if uid == 0 || uid == own {
        return true;
    }
    warn!("control socket: uid={uid} is not permitted (only root and uid={own}); refused");
    let _ = stream.set_nonblocking(true);
    let _ = (&*stream).write_all(b"error: not permitted: only root and the daemon's user\n");
    false
}

/// Binds the socket at `path`, mode 0600 before it listens. A socket file another
/// process answers on is an error; one nobody answers on is replaced; anything else
/// at the path is an error and left alone. The socket's folder is created if missing
/// (one level, mode 0755: `/run/oxinetd` when no service manager made it).
fn listen(path: &Path) -> Result<(UnixListener, (u64, u64)), String> {
    if let Some(folder) = path
        .parent()
        .filter(|folder| !folder.as_os_str().is_empty())
        && !folder.exists()
    {
        fs::DirBuilder::new()
            .mode(0o755)
            .create(folder)
            .map_err(|error| format!("cannot create the folder {}: {error}", folder.display()))?;
        info!("control socket: created the folder {}", folder.display());
    }
    match fs::symlink_metadata(path) {
        Ok(metadata) if !metadata.file_type().is_socket() => {
            return Err("exists and is not a socket; left alone".to_string());
        }
        Ok(_) => match answers(path) {
            Ok(true) => {
                return Err("another daemon answers there; it keeps it".to_string());
            }
            Ok(false) => {
                fs::remove_file(path)
                    .map_err(|error| format!("cannot remove the stale socket: {error}"))?;
                info!(
                    "control socket: replaced {}, where nobody answered",
                    path.display()
                );
            }
            Err(error) => return Err(format!("cannot tell whether it is in use: {error}")),
        },
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error.to_string()),
    }
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(|e| e.to_string())?;
    let address = SockAddr::unix(path).map_err(|e| e.to_string())?;
    // Bind fails if a daemon took the path since the check: it is never taken over.
    socket
        .bind(&address)
        .map_err(|error| format!("cannot bind: {error}"))?;
    let metadata = fs::metadata(path).map_err(|e| e.to_string())?;
    let file = (metadata.dev(), metadata.ino());
    let finish = || -> io::Result<()> {
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
        socket.listen(BACKLOG)?;
        socket.set_nonblocking(true)
    };
    if let Err(error) = finish() {
        remove_if_ours(path, file);
        return Err(error.to_string());
    }
    Ok((UnixListener::from(OwnedFd::from(socket)), file))
}

/// Whether a process listens on the socket file at `path`: a connect without
/// blocking succeeds, or finds the queue full.
fn answers(path: &Path) -> io::Result<bool> {
    let probe = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    probe.set_nonblocking(true)?;
    match probe.connect(&SockAddr::unix(path)?) {
        Ok(()) => Ok(true),
        Err(error) => match error.raw_os_error() {
            Some(libc::EAGAIN | libc::EINPROGRESS) => Ok(true),
            Some(libc::ECONNREFUSED | libc::ENOENT) => Ok(false),
            _ => Err(error),
        },
    }
}

fn remove_if_ours(path: &Path, file: (u64, u64)) {
    if fs::symlink_metadata(path).is_ok_and(|m| (m.dev(), m.ino()) == file) {
        let _ = fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        assert_eq!(Request::parse(b"status"), Request::Status { json: false });
        assert_eq!(
            Request::parse(b" status  json\r"),
            Request::Status { json: true }
        );
        assert_eq!(Request::parse(b"reload"), Request::Reload);
        assert_eq!(
            Request::parse(b"stop now"),
            Request::Unknown("stop now".to_string())
        );
    }

    #[test]
    fn reload_replies() {
        let outcome = |ok, errors: &[&str]| ReloadOutcome {
            at: Instant::now(),
            ok,
            summary: "2 services".to_string(),
            errors: errors.iter().map(|e| e.to_string()).collect(),
        };
        assert_eq!(
            reload_reply(Some(&outcome(true, &[]))),
            "ok\nreload: 2 services\n"
        );
        assert_eq!(
            reload_reply(Some(&outcome(false, &["a.toml:3: bad\nforged"]))),
            "failed\na.toml:3: bad\\nforged\nreload: 2 services\n"
        );
    }

    #[test]
    fn reason_indexes_follow_the_declaration() {
        for (at, reason) in Reason::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, at, "{reason:?}");
        }
    }
}
