//! Socket calls the loop makes per connection or per datagram, each in one system call:
//! accept4 with its flags, a send that never blocks, a listener's queue length, the
//! local and peer addresses (a Unix-domain peer's credentials), and the reverse lookup
//! of an address.

use std::ffi::CStr;
use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use socket2::{SockAddr, Socket};

use crate::peer::{self, Credentials};

/// Accepts close-on-exec, and non-blocking when the daemon serves the connection itself:
/// one accept4 call, no fcntl after it.
pub fn accept(listener: &Socket, nonblocking: bool) -> io::Result<(OwnedFd, SocketAddr)> {
    let flags = libc::SOCK_CLOEXEC | if nonblocking { libc::SOCK_NONBLOCK } else { 0 };
    // SAFETY: accept4 writes at most `len` bytes of address into the storage socket2
    // provides, and the fd it returns is new and ours.
    let (fd, address) = unsafe {
        SockAddr::try_init(|storage, len| {
            match libc::accept4(listener.as_raw_fd(), storage.cast(), len, flags) {
                -1 => Err(io::Error::last_os_error()),
                fd => Ok(OwnedFd::from_raw_fd(fd)),
            }
        })?
    };
    let remote = address
        .as_socket()
        .ok_or_else(|| io::Error::other("peer is not an IP address"))?;
    Ok((fd, remote))
}

/// Accepts on a Unix-domain listener, close-on-exec and blocking (for an exec'd server),
/// and asks the kernel who connected (`SO_PEERCRED`: the peer's pid, uid and gid when it
/// called connect).
pub fn accept_local(listener: &Socket) -> io::Result<(OwnedFd, Credentials)> {
    // SAFETY: accept4 with no address storage writes nothing; the fd it returns is new
    // and ours.
    let fd = unsafe {
        match libc::accept4(
            listener.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC,
        ) {
            -1 => return Err(io::Error::last_os_error()),
            fd => OwnedFd::from_raw_fd(fd),
        }
    };
    let peer = nix::sys::socket::getsockopt(&fd, nix::sys::socket::sockopt::PeerCredentials)?;
    let credentials = Credentials {
        pid: peer.pid(),
        uid: peer.uid(),
        gid: peer.gid(),
    };
    Ok((fd, credentials))
}

/// Writes what the socket takes now; a banner never blocks the loop. Banners are at
/// most 64 KiB and a fresh socket's buffer holds more, so in practice all of it goes.
pub fn send_now(fd: &impl AsRawFd, bytes: &[u8]) {
    let mut sent = 0;
    while sent < bytes.len() {
        // SAFETY: the pointer and length describe the live slice `bytes[sent..]`.
        let result = unsafe {
            libc::send(
                fd.as_raw_fd(),
                bytes[sent..].as_ptr().cast(),
                bytes.len() - sent,
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        match result {
            n if n > 0 => sent += n as usize,
            _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
            _ => return,
        }
    }
}

/// Reads and drops what the peer sent and nobody will read, before a connection that
/// was written to is closed. Closing with unread input makes Linux answer with a reset
/// and drop what it still had to send (a `banner_fail` held back by Nagle behind the
/// banner): a refused client would lose the very line that says why. At most 64 KiB, so
/// a peer cannot keep the loop reading.
pub fn discard_unread(fd: &impl AsRawFd) {
    let mut scratch = [0u8; 4096];
    for _ in 0..16 {
        // SAFETY: the pointer and length describe the live buffer `scratch`.
        let result = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                scratch.as_mut_ptr().cast(),
                scratch.len(),
                libc::MSG_DONTWAIT,
            )
        };
        match result {
            n if n > 0 => {}
            _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
            _ => return,
        }
    }
}

/// A listener's accept queue length (TCP_INFO reports it for listening sockets). A
/// Unix-domain listener has no TCP_INFO: 1 if a connection waits, else 0.
pub fn accept_queue(socket: &Socket) -> u32 {
    // SAFETY: tcp_info is plain integers; all-zero is a valid value.
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
    if result == 0 {
        info.tcpi_unacked
    } else {
        u32::from(readable_now(socket))
    }
}

/// Whether a read (or an accept) on `socket` would not block now.
fn readable_now(socket: &Socket) -> bool {
    let mut poll = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, and a zero timeout: nothing is kept after the call.
    unsafe { libc::poll(&mut poll, 1, 0) > 0 }
}

/// A byte buffer as the `MaybeUninit` slice socket2's receive calls take.
pub fn as_uninit(buffer: &mut [u8]) -> &mut [MaybeUninit<u8>] {
    // SAFETY: initialised bytes are valid MaybeUninit<u8>, and the callee only writes
    // bytes, never uninitialised ones, into the slice.
    unsafe { &mut *(buffer as *mut [u8] as *mut [MaybeUninit<u8>]) }
}

/// The address a connection arrived at, as a server's environment shows it.
pub fn local_address(fd: &OwnedFd) -> Option<SocketAddr> {
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
pub fn peek_sender(socket: &Socket) -> Option<SocketAddr> {
    let mut byte = [MaybeUninit::new(0u8); 1];
    socket
        .recv_from_with_flags(&mut byte, libc::MSG_PEEK | libc::MSG_DONTWAIT)
        .ok()
        .and_then(|(_, from)| from.as_socket())
}

/// The name the DNS gives `peer` (its PTR record), or `None`. Blocks: lookup threads
/// only.
pub fn reverse_name(peer: IpAddr) -> Option<String> {
    let address = SockAddr::from(SocketAddr::new(peer, 0));
    let mut host = [0 as libc::c_char; libc::NI_MAXHOST as usize];
    // SAFETY: `address` is a valid sockaddr of the given length; getnameinfo writes a
    // NUL-terminated name of at most `host.len()` bytes into `host`, and no service.
    let status = unsafe {
        libc::getnameinfo(
            address.as_ptr().cast(),
            address.len(),
            host.as_mut_ptr(),
            host.len() as libc::socklen_t,
            std::ptr::null_mut(),
            0,
            libc::NI_NAMEREQD,
        )
    };
    if status != 0 {
        return None;
    }
    // SAFETY: on success `host` holds a NUL-terminated string.
    let name = unsafe { CStr::from_ptr(host.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}
