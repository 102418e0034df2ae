//! Internal datagram services in batches: one `recvmmsg` takes every queued request (up
//! to `BATCH`), each reply is written over its request in place, and one `sendmmsg`
//! answers them all. Against a `recvfrom` and a `sendto` per datagram this saves nearly
//! two system calls per request when requests queue up, and when fewer than `BATCH`
//! arrive the queue is known to be empty without a further call that fails with EAGAIN.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Requests taken per `recvmmsg`.
pub const BATCH: usize = 16;

/// Room for the largest UDP payload over IPv4 (65,507 bytes), rounded up. Pages of a
/// slot that no datagram reached are never touched, so they cost no memory.
const SLOT: usize = 64 * 1024;

/// Buffers and headers for one batch. Headers point into the buffers, so they are
/// filled in just before each call rather than kept: the struct may move.
pub struct DatagramBatch {
    buffers: Vec<u8>,
    addresses: [libc::sockaddr_storage; BATCH],
    address_lengths: [libc::socklen_t; BATCH],
    lengths: [usize; BATCH],
    /// The reply's length for each received datagram; `None` sends nothing.
    replies: [Option<usize>; BATCH],
    iovecs: [libc::iovec; BATCH],
    headers: [libc::mmsghdr; BATCH],
}

impl DatagramBatch {
    pub fn new() -> Box<DatagramBatch> {
        Box::new(DatagramBatch {
            // Zeroed by calloc, which for an allocation this size maps fresh pages
            // without writing them.
            buffers: vec![0; BATCH * SLOT],
            // SAFETY: all-zero bytes are a valid value of these plain C structs
            // (null pointers, zero lengths).
            addresses: unsafe { zeroed() },
            address_lengths: [0; BATCH],
            lengths: [0; BATCH],
            replies: [None; BATCH],
            iovecs: unsafe { zeroed() },
            headers: unsafe { zeroed() },
        })
    }

    /// Receives what is queued on `fd`, up to `BATCH` datagrams, without blocking.
    /// Returns how many; 0 when none was waiting.
    pub fn receive(&mut self, fd: RawFd) -> io::Result<usize> {
        for slot in 0..BATCH {
            self.iovecs[slot] = libc::iovec {
                iov_base: self.buffers[slot * SLOT..].as_mut_ptr().cast(),
                iov_len: SLOT,
            };
            let header = &mut self.headers[slot].msg_hdr;
            header.msg_name = (&raw mut self.addresses[slot]).cast();
            header.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_iov = &raw mut self.iovecs[slot];
            header.msg_iovlen = 1;
            header.msg_control = std::ptr::null_mut();
            header.msg_controllen = 0;
            header.msg_flags = 0;
            self.replies[slot] = None;
        }
        loop {
            // SAFETY: every header points at a live iovec of this struct, which points at
            // SLOT bytes of `buffers`, and at a sockaddr_storage of this struct, with
            // lengths that say so; nothing else uses them during the call.
            let received = unsafe {
                libc::recvmmsg(
                    fd,
                    self.headers.as_mut_ptr(),
                    BATCH as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if received >= 0 {
                let received = received as usize;
                for slot in 0..received {
                    // A datagram larger than its slot is cut to it (MSG_TRUNC).
                    self.lengths[slot] = (self.headers[slot].msg_len as usize).min(SLOT);
                    self.address_lengths[slot] = self.headers[slot].msg_hdr.msg_namelen;
                }
                return Ok(received);
            }
            let error = io::Error::last_os_error();
            match error.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(0),
                _ => return Err(error),
            }
        }
    }

    /// The sender of received datagram `slot`, if it is an IP address.
    pub fn sender(&self, slot: usize) -> Option<SocketAddr> {
        socket_addr(&self.addresses[slot], self.address_lengths[slot])
    }

    /// Lets `reply` turn received datagram `slot` into its reply, in place: it gets the
    /// slot's whole buffer and the request's length, and returns the reply's length, or
    /// `None` to send nothing.
    pub fn reply_with(
        &mut self,
        slot: usize,
        reply: impl FnOnce(&mut [u8], usize) -> Option<usize>,
    ) {
        let buffer = &mut self.buffers[slot * SLOT..(slot + 1) * SLOT];
        self.replies[slot] = reply(buffer, self.lengths[slot]).map(|length| length.min(SLOT));
    }

    /// Sends every reply set by `reply_with` since the last `receive`. A reply the kernel
    /// refuses (a full send buffer, an unreachable address) is dropped, as UDP may drop
    /// it; the others still go. Returns the errors met, for the caller to log.
    pub fn send_replies(&mut self, fd: RawFd, mut on_error: impl FnMut(io::Error)) {
        let mut count = 0;
        for slot in 0..BATCH {
            let Some(length) = self.replies[slot] else {
                continue;
            };
            self.iovecs[count] = libc::iovec {
                iov_base: self.buffers[slot * SLOT..].as_mut_ptr().cast(),
                iov_len: length,
            };
            let header = &mut self.headers[count].msg_hdr;
            header.msg_name = (&raw mut self.addresses[slot]).cast();
            header.msg_namelen = self.address_lengths[slot];
            header.msg_iov = &raw mut self.iovecs[count];
            header.msg_iovlen = 1;
            header.msg_control = std::ptr::null_mut();
            header.msg_controllen = 0;
            header.msg_flags = 0;
            count += 1;
        }
        let mut start = 0;
        // Each turn sends at least one reply or drops one, so this ends.
        while start < count {
            // SAFETY: headers start..count point at live iovecs and addresses of this
            // struct, set just above, with their lengths.
            let sent = unsafe {
                libc::sendmmsg(
                    fd,
                    self.headers[start..].as_mut_ptr(),
                    (count - start) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if sent > 0 {
                start += sent as usize;
                continue;
            }
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                on_error(error);
                start += 1;
            }
        }
    }
}

fn socket_addr(storage: &libc::sockaddr_storage, length: libc::socklen_t) -> Option<SocketAddr> {
    let length = length as usize;
    match storage.ss_family as libc::c_int {
        libc::AF_INET if length >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the kernel wrote a sockaddr_in here (family and length say so), and
            // sockaddr_storage is large and aligned enough for it.
            let v4 =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr)),
                u16::from_be(v4.sin_port),
            )))
        }
        libc::AF_INET6 if length >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for a sockaddr_in6.
            let v6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(v6.sin6_addr.s6_addr),
                u16::from_be(v6.sin6_port),
                v6.sin6_flowinfo,
                v6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    /// A client socket whose reads give up after 5 s instead of hanging a failing test.
    fn client(address: &str) -> UdpSocket {
        let socket = UdpSocket::bind(address).unwrap();
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        socket
    }

    /// Receives until `want` datagrams have come (loopback queues them almost at once;
    /// the deadline only bounds a failure), handing each slot to `each`.
    fn receive_all(
        batch: &mut DatagramBatch,
        server: &UdpSocket,
        want: usize,
        mut each: impl FnMut(&mut DatagramBatch, usize),
    ) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut received = 0;
        while received < want {
            assert!(
                std::time::Instant::now() < deadline,
                "only {received} of {want} came"
            );
            let n = batch.receive(server.as_raw_fd()).unwrap();
            for slot in 0..n {
                each(batch, slot);
            }
            batch.send_replies(server.as_raw_fd(), |e| panic!("{e}"));
            received += n;
        }
    }

    #[test]
    fn a_batch_answers_each_sender_in_place() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let clients: Vec<UdpSocket> = (0..3).map(|_| client("127.0.0.1:0")).collect();
        for (i, client) in clients.iter().enumerate() {
            let request = format!("request {i}");
            client
                .send_to(request.as_bytes(), server.local_addr().unwrap())
                .unwrap();
        }
        let mut batch = DatagramBatch::new();
        receive_all(&mut batch, &server, 3, |batch, slot| {
            let sender = batch.sender(slot).unwrap();
            assert!(clients.iter().any(|c| c.local_addr().unwrap() == sender));
            // Upper-case the request: the reply is written over it.
            batch.reply_with(slot, |buffer, length| {
                buffer[..length].make_ascii_uppercase();
                Some(length)
            });
        });
        assert_eq!(batch.receive(server.as_raw_fd()).unwrap(), 0);
        for (i, client) in clients.iter().enumerate() {
            let mut reply = [0u8; 64];
            let n = client.recv(&mut reply).unwrap();
            assert_eq!(&reply[..n], format!("REQUEST {i}").as_bytes());
        }
    }

    #[test]
    fn a_datagram_without_a_reply_is_not_answered() {
        let server = UdpSocket::bind("[::1]:0").unwrap();
        let client = client("[::1]:0");
        client
            .send_to(b"one", server.local_addr().unwrap())
            .unwrap();
        client
            .send_to(b"two", server.local_addr().unwrap())
            .unwrap();
        let mut batch = DatagramBatch::new();
        receive_all(&mut batch, &server, 2, |batch, slot| {
            assert_eq!(batch.sender(slot), Some(client.local_addr().unwrap()));
            batch.reply_with(slot, |buffer, length| {
                (&buffer[..length] == b"two").then_some(length)
            });
        });
        // Replies leave in order, so had "one" been answered it would come first.
        let mut reply = [0u8; 8];
        let n = client.recv(&mut reply).unwrap();
        assert_eq!(&reply[..n], b"two");
    }
}
