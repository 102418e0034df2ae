//! Opens a service's socket as the spec says: close-on-exec, non-blocking, SO_REUSEADDR.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::spec::{SocketSpec, SocketType};

pub fn open(spec: &SocketSpec) -> io::Result<Socket> {
    let (kind, protocol) = match spec.socket_type {
        SocketType::Stream => (Type::STREAM, Protocol::TCP),
        SocketType::Dgram => (Type::DGRAM, Protocol::UDP),
    };
    // socket2 opens sockets close-on-exec.
    let socket = Socket::new(Domain::for_address(spec.address), kind, Some(protocol))?;
    socket.set_nonblocking(true)?;
    socket.set_reuse_address(true)?;
    if let Some(v6only) = spec.v6only {
        socket.set_only_v6(v6only)?;
    }
    if spec.socket_type == SocketType::Stream {
        // Linux copies these to every accepted socket: set once, not per connection.
        socket.set_tcp_nodelay(spec.nodelay)?;
        socket.set_keepalive(spec.keepalive)?;
    }
    socket.bind(&spec.address.into())?;
    if spec.socket_type == SocketType::Stream {
        socket.listen(spec.backlog as i32)?;
    }
    Ok(socket)
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

/// How many connections or bytes wait on a socket: a `wait` server that exits with
/// this unchanged served nobody. Listeners report their accept queue (TCP_INFO), UDP
/// sockets the memory their queued datagrams hold.
pub fn queue_depth(socket: &Socket, socket_type: SocketType) -> u64 {
    match socket_type {
        SocketType::Stream => socket2_tcp_unacked(socket),
        SocketType::Dgram => udp_queued_bytes(socket),
    }
}

fn socket2_tcp_unacked(socket: &Socket) -> u64 {
    use std::os::fd::AsRawFd;
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut length = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `length` bytes into `info`.
    let result = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut length,
        )
    };
    // For a listening socket the kernel reports its accept queue length here.
    if result == 0 {
        info.tcpi_unacked as u64
    } else {
        0
    }
}

/// The length of the SO_MEMINFO array (the kernel's SK_MEMINFO_VARS).
const SK_MEMINFO_VARS: usize = 9;

fn udp_queued_bytes(socket: &Socket) -> u64 {
    use std::os::fd::AsRawFd;
    let mut meminfo = [0u32; SK_MEMINFO_VARS];
    let mut length = std::mem::size_of_val(&meminfo) as libc::socklen_t;
    // SAFETY: getsockopt writes at most `length` bytes into `meminfo`.
    let result = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            meminfo.as_mut_ptr().cast(),
            &mut length,
        )
    };
    if result == 0 {
        meminfo[libc::SK_MEMINFO_RMEM_ALLOC as usize] as u64
    } else {
        0
    }
}
