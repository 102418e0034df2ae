//! Opens a service's socket as the spec says: close-on-exec, non-blocking, SO_REUSEADDR
//! for IP; for a Unix-domain socket, its file too (`SocketFile`): bound safely, given
//! its mode and owners, and removed when the service goes.

use nix::sys::socket::{SetSockOpt, sockopt};
use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::net::{Ipv4Addr, Shutdown, SocketAddr};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::Mode;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::config::spec::{Address, Permissions, SocketSpec, SocketType};
use crate::sys;

/// Opens an IP service's socket at `address` (the spec's, or its IPv4 fallback);
/// `open_unix` opens the others.
pub fn open(spec: &SocketSpec, address: SocketAddr) -> io::Result<Socket> {
    let (kind, protocol) = match spec.socket_type {
        SocketType::Stream | SocketType::Seqpacket => (libc::SOCK_STREAM, Protocol::TCP),
        SocketType::Dgram => (libc::SOCK_DGRAM, Protocol::UDP),
    };
    // socket2 opens sockets close-on-exec. Non-blocking from socket(2) on (no fcntl
    // pair per listener), since the loop accepts and reads on it; `daemon` makes it
    // blocking again before handing it to a server.
    let kind = Type::from(kind | libc::SOCK_NONBLOCK);
    let socket = Socket::new(Domain::for_address(address), kind, Some(protocol))?;
    socket.set_reuse_address(true)?;
    if let Some(v6only) = spec.v6only
        && address.is_ipv6()
    {
        socket.set_only_v6(v6only)?;
    }
    if spec.socket_type == SocketType::Stream {
        set_connection_options(&socket, spec, Fresh::Yes)?;
    }
    socket.bind(&address.into())?;
    if spec.socket_type == SocketType::Stream {
        socket.listen(spec.backlog as i32)?;
    }
    Ok(socket)
}

/// A Unix socket's file, which the service owns: removed when this is dropped (the
/// service removed by a reload, or shutdown), unless the path no longer names the very
/// file bound (another daemon, or this service's own rebind, replaced it since).
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    device: u64,
    inode: u64,
}

impl SocketFile {
    fn still_ours(&self) -> bool {
        fs::symlink_metadata(&self.path)
            .is_ok_and(|status| status.dev() == self.device && status.ino() == self.inode)
    }

    /// A reload's new mode and owners, on the live file: connections and the listener
    /// are untouched.
    pub fn set_permissions(&self, permissions: Permissions) -> Result<(), String> {
        if !self.still_ours() {
            return Err(format!(
                "{} is no longer the socket oxinetd bound",
                self.path.display()
            ));
        }
        apply_permissions(&self.path, permissions)
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if self.still_ours() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Opens a Unix-domain socket at `path` with its permissions, without a moment in which
/// the path is missing, or is a socket with other permissions, or anyone could connect
/// to a socket not yet given its mode: bound under a name of its own (`PATH.PID`) with
/// umask 0177 (a socket file is 0600 at most, oxinetd's alone), given its owners and
/// mode, listening, and only then renamed onto `path`, atomically.
///
/// `path` may be free, or a stale socket (one nobody listens on: a connect is refused),
/// which the rename replaces. Anything else is an error and left as it is: a file that
/// is not a socket is never deleted, and a live socket belongs to another daemon.
/// `ours` is the service's own file, which a rebind (a new socket type at the same path)
/// replaces. The directory is not created: a missing one is an error naming it.
pub fn open_unix(
    spec: &SocketSpec,
    ours: Option<&SocketFile>,
) -> Result<(Socket, SocketFile), String> {
    let Address::Unix(unix) = &spec.address else {
        return Err("not a Unix socket".to_string());
    };
    let path = unix.path.as_path();
    let shown = path.display();
    let directory = path.parent().unwrap_or(Path::new("/"));
    match fs::metadata(directory) {
        Ok(status) if status.is_dir() => {}
        Ok(_) => return Err(format!("{} is not a directory", directory.display())),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(format!(
                "the directory {} does not exist (oxinetd does not create it)",
                directory.display()
            ));
        }
        Err(error) => return Err(format!("{}: {error}", directory.display())),
    }
    check_free(path, ours)?;
    let mut staging = path.as_os_str().to_owned();
    staging.push(format!(".{}", std::process::id()));
    let staging = PathBuf::from(staging);
    let socket = bind_staged(spec, &staging, unix.permissions).inspect_err(|_| {
        let _ = fs::remove_file(&staging);
    })?;
    // Checked again just before the rename, which is what a file created meanwhile
    // would lose to.
    if let Err(message) = check_free(path, ours)
        .and_then(|()| fs::rename(&staging, path).map_err(|e| format!("rename to {shown}: {e}")))
    {
        let _ = fs::remove_file(&staging);
        return Err(message);
    }
    let status = fs::symlink_metadata(path).map_err(|error| format!("{shown}: {error}"))?;
    let file = SocketFile {
        path: path.to_path_buf(),
        device: status.dev(),
        inode: status.ino(),
    };
    Ok((socket, file))
}

fn bind_staged(
    spec: &SocketSpec,
    staging: &Path,
    permissions: Permissions,
) -> Result<Socket, String> {
    let shown = staging.display();
    let kind = match spec.socket_type {
        SocketType::Stream => libc::SOCK_STREAM,
        SocketType::Dgram => libc::SOCK_DGRAM,
        SocketType::Seqpacket => libc::SOCK_SEQPACKET,
    };
    let kind = Type::from(kind | libc::SOCK_NONBLOCK);
    let socket = Socket::new(Domain::UNIX, kind, None).map_err(|e| format!("socket: {e}"))?;
    let address = SockAddr::unix(staging).map_err(|e| format!("{shown}: {e}"))?;
    // The umask is the process's: nothing else in oxinetd creates files meanwhile (the
    // lookup threads only talk to the network).
    let old = nix::sys::stat::umask(Mode::from_bits_truncate(0o177));
    let bound = socket.bind(&address);
    nix::sys::stat::umask(old);
    bound.map_err(|e| format!("bind {shown}: {e}"))?;
    apply_permissions(staging, permissions)?;
    if spec.socket_type.connected() {
        socket
            .listen(spec.backlog as i32)
            .map_err(|e| format!("listen: {e}"))?;
    }
    Ok(socket)
}

/// Owners first, then the mode: chown may clear mode bits, and the mode is what says
/// who may connect.
fn apply_permissions(path: &Path, permissions: Permissions) -> Result<(), String> {
    let shown = path.display();
    if permissions.owner.is_some() || permissions.group.is_some() {
        std::os::unix::fs::lchown(path, permissions.owner, permissions.group)
            .map_err(|e| format!("chown {shown}: {e}"))?;
    }
    fs::set_permissions(path, fs::Permissions::from_mode(permissions.mode))
        .map_err(|e| format!("chmod {shown}: {e}"))
}

/// Whether `path` may be bound: free, a stale socket, or the service's own.
fn check_free(path: &Path, ours: Option<&SocketFile>) -> Result<(), String> {
    let shown = path.display();
    let status = match fs::symlink_metadata(path) {
        Ok(status) => status,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(format!("{shown}: {error}")),
    };
    if !status.file_type().is_socket() {
        return Err(format!(
            "{shown} exists and is not a socket; it is left as it is"
        ));
    }
    if ours.is_some_and(|file| {
        file.path == path && file.device == status.dev() && file.inode == status.ino()
    }) {
        return Ok(());
    }
    match probe(path) {
        Liveness::Stale => Ok(()),
        Liveness::Live => Err(format!(
            "{shown} is a socket another process listens on (another daemon?)"
        )),
        Liveness::Unknown(error) => Err(format!(
            "{shown} is a socket and whether anyone listens cannot be told: {error}"
        )),
    }
}

enum Liveness {
    Stale,
    Live,
    Unknown(io::Error),
}

/// A connect to a socket file nobody holds is refused; one of another type than the
/// probe's is held by someone (EPROTOTYPE), and so is a full one (EAGAIN).
fn probe(path: &Path) -> Liveness {
    let attempt = || -> io::Result<()> {
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        socket.set_nonblocking(true)?;
        socket.connect(&SockAddr::unix(path)?)
    };
    match attempt() {
        Ok(()) => Liveness::Live,
        Err(error) => match error.raw_os_error() {
            Some(libc::ECONNREFUSED | libc::ENOENT) => Liveness::Stale,
            Some(libc::EPROTOTYPE | libc::EAGAIN | libc::EINPROGRESS) => Liveness::Live,
            _ => Liveness::Unknown(error),
        },
    }
}

/// Whether a socket is new, with every option at the system's default (off).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fresh {
    Yes,
    No,
}

/// Linux copies these to every accepted socket (the listener is cloned, options and
/// all): set once, not per connection. Options a new socket already has (`NODELAY` and
/// `KEEPALIVE` off) and timeouts left unset are not touched, so a service without them
/// costs no system call: 10,000 listeners start 20,000 system calls sooner.
fn set_connection_options(socket: &Socket, spec: &SocketSpec, fresh: Fresh) -> io::Result<()> {
    if spec.nodelay || fresh == Fresh::No {
        socket.set_tcp_nodelay(spec.nodelay)?;
    }
    if spec.keepalive || fresh == Fresh::No {
        socket.set_keepalive(spec.keepalive)?;
    }
    let timeouts = &spec.timeouts;
    if let Some(seconds) = timeouts.idle {
        setsockopt(socket, sockopt::TcpKeepIdle, &seconds)?;
    }
    if let Some(seconds) = timeouts.interval {
        setsockopt(socket, sockopt::TcpKeepInterval, &seconds)?;
    }
    if let Some(probes) = timeouts.count {
        setsockopt(socket, sockopt::TcpKeepCount, &probes)?;
    }
    if let Some(seconds) = timeouts.user_timeout {
        // Milliseconds; validation keeps it within an int.
        setsockopt(socket, sockopt::TcpUserTimeout, &(seconds * 1000))?;
    }
    Ok(())
}

/// Gives a live listener the settings it takes without a new socket: `TCP_NODELAY`,
/// `SO_KEEPALIVE` and the keepalive and user timeouts for the connections accepted from
/// now on, and the backlog, since listen() on a listening socket only sets its queue
/// length again (queued connections stay). A datagram socket has none of these.
///
/// A `tcp_user_timeout` a reload removed goes back to 0, the system's default; a
/// removed keepalive timeout cannot (Linux refuses 0), so `reload::socket_change`
/// asks for a new socket then.
pub fn adjust(socket: &Socket, spec: &SocketSpec) -> io::Result<()> {
    if spec.socket_type == SocketType::Stream && matches!(spec.address, Address::Ip(_)) {
        set_connection_options(socket, spec, Fresh::No)?;
        if spec.timeouts.user_timeout.is_none() {
            setsockopt(socket, sockopt::TcpUserTimeout, &0)?;
        }
        socket.listen(spec.backlog as i32)?;
    }
    Ok(())
}

fn setsockopt<O: SetSockOpt>(socket: &Socket, option: O, value: &O::Val) -> io::Result<()> {
    nix::sys::socket::setsockopt(socket, option, value).map_err(io::Error::from)
}

/// Makes a socket systemd handed over serve as one of ours: non-blocking (the loop
/// accepts on it) and, for a stream, the service's backlog and connection options. It
/// is close-on-exec since it was taken (`sys::fd::take_inherited`). Its address, and a
/// listen systemd already made, stay.
pub fn take_over(socket: &Socket, spec: &SocketSpec) -> io::Result<()> {
    socket.set_nonblocking(true)?;
    adjust(socket, spec)
}

/// Stops a TCP listener without closing it. shutdown(SHUT_RD) on a listener resets the
/// connections still in its accept queue (accepted ones are not touched) and leaves the
/// socket bound to its port but not listening: Linux then lets another SO_REUSEADDR
/// socket bind and listen on that port, which it refuses while a listener holds it.
/// listen() on this socket makes it listen again, on the same port (bound explicitly,
/// so the port is kept), as long as no other socket listens there meanwhile.
pub fn stop_listening(socket: &Socket) -> io::Result<()> {
    socket.shutdown(Shutdown::Read)
}

/// Whether a listener on `a` keeps a TCP socket from listening on `b`.
pub fn overlap(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// A host without IPv6 cannot open the default `::` socket: fall back to `0.0.0.0`.
pub fn ipv4_fallback(address: SocketAddr, error: &io::Error) -> Option<SocketAddr> {
    let unsupported = error.raw_os_error() == Some(libc::EAFNOSUPPORT);
    let default_any = address.ip().is_unspecified() && address.is_ipv6();
    (unsupported && default_any)
        .then(|| SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), address.port()))
}

/// What waits on a socket, to tell whether a `wait` server that exited quickly
/// served anybody.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Queue {
    Empty,
    /// A listener's accept queue length (TCP_INFO reports it for listening sockets).
    Connections(u32),
    /// A fingerprint of the first queued datagram: UDP's memory accounting is released
    /// lazily, so the head datagram is the reliable sign that nothing was read.
    Head(u64),
}

impl Queue {
    pub fn of(socket: &Socket, socket_type: SocketType) -> Queue {
        match socket_type {
            SocketType::Stream | SocketType::Seqpacket => match sys::socket::accept_queue(socket) {
                0 => Queue::Empty,
                queued => Queue::Connections(queued),
            },
            SocketType::Dgram => head_datagram(socket).map_or(Queue::Empty, Queue::Head),
        }
    }

    /// Whether a server that found `self` and left `after` took anything.
    pub fn drained_to(self, after: Queue) -> bool {
        match (self, after) {
            (_, Queue::Empty) => true,
            (Queue::Connections(before), Queue::Connections(after)) => after < before,
            (before, after) => before != after,
        }
    }
}

fn head_datagram(socket: &Socket) -> Option<u64> {
    let mut head = [0u8; 64];
    let (length, from) = socket
        .recv_from_with_flags(
            sys::socket::as_uninit(&mut head),
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
        .ok()?;
    let mut hasher = DefaultHasher::new();
    from.as_socket().hash(&mut hasher);
    head[..length.min(head.len())].hash(&mut hasher);
    Some(hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::Queue;

    #[test]
    fn a_server_served_if_its_queue_moved() {
        assert!(Queue::Connections(3).drained_to(Queue::Empty));
        assert!(Queue::Connections(3).drained_to(Queue::Connections(2)));
        assert!(!Queue::Connections(3).drained_to(Queue::Connections(3)));
        assert!(Queue::Head(1).drained_to(Queue::Head(2)));
        assert!(!Queue::Head(1).drained_to(Queue::Head(1)));
        // New arrivals after an empty start say nothing against the server.
        assert!(Queue::Empty.drained_to(Queue::Head(1)));
    }
}
