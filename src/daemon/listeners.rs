//! Opens a service's socket as the spec says: close-on-exec, non-blocking, SO_REUSEADDR.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::net::{Ipv4Addr, Shutdown, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::spec::{SocketSpec, SocketType};
use crate::sys;

pub fn open(spec: &SocketSpec) -> io::Result<Socket> {
    let (kind, protocol) = match spec.socket_type {
        SocketType::Stream => (Type::STREAM, Protocol::TCP),
        SocketType::Dgram => (Type::DGRAM, Protocol::UDP),
    };
    // socket2 opens sockets close-on-exec. Non-blocking, since the loop accepts and
    // reads on it; `daemon` makes it blocking again before handing it to a server.
    let socket = Socket::new(Domain::for_address(spec.address), kind, Some(protocol))?;
    socket.set_nonblocking(true)?;
    socket.set_reuse_address(true)?;
    if let Some(v6only) = spec.v6only {
        socket.set_only_v6(v6only)?;
    }
    if spec.socket_type == SocketType::Stream {
        set_connection_options(&socket, spec)?;
    }
    socket.bind(&spec.address.into())?;
    if spec.socket_type == SocketType::Stream {
        socket.listen(spec.backlog as i32)?;
    }
    Ok(socket)
}

/// Linux copies these to every accepted socket: set once, not per connection.
fn set_connection_options(socket: &Socket, spec: &SocketSpec) -> io::Result<()> {
    socket.set_tcp_nodelay(spec.nodelay)?;
    socket.set_keepalive(spec.keepalive)
}

/// Gives a live listener the settings it takes without a new socket: `TCP_NODELAY` and
/// `SO_KEEPALIVE` for the connections accepted from now on, and the backlog, since
/// listen() on a listening socket only sets its queue length again (queued connections
/// stay). A datagram socket has none of these.
pub fn adjust(socket: &Socket, spec: &SocketSpec) -> io::Result<()> {
    if spec.socket_type == SocketType::Stream {
        set_connection_options(socket, spec)?;
        socket.listen(spec.backlog as i32)?;
    }
    Ok(())
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
pub fn ipv4_fallback(spec: &SocketSpec, error: &io::Error) -> Option<SocketSpec> {
    let unsupported = error.raw_os_error() == Some(libc::EAFNOSUPPORT);
    let default_any = spec.address.ip().is_unspecified() && spec.address.is_ipv6();
    (unsupported && default_any).then(|| SocketSpec {
        address: SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), spec.address.port()),
        v6only: None,
        ..spec.clone()
    })
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
            SocketType::Stream => match sys::socket::accept_queue(socket) {
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
