//! `redirect`: copy bytes both ways between a client and an upstream, without a process.
//!
//! A `Relay` is two sockets and two one-way pipes. A pipe holds a 16 KiB buffer only
//! while bytes are in flight: it takes one from a small per-thread pool of spares when it
//! reads and gives it back once everything read is written, so an idle relay costs its
//! struct and nothing more (issue 13: 30 KiB each before, with two buffers for life).
//! Kernel pipes and `splice(2)` would avoid the copy but cost 2 fds per direction, 6 per
//! relay with the sockets: a third of the relays the fd limit allows now.
//!
//! The loop watches both sockets level-triggered with the flags `client_interest()` and
//! `upstream_interest()` ask for, and calls `advance()` on any event of either; a socket
//! whose interest is empty must leave the epoll set, because epoll reports EPOLLHUP and
//! EPOLLERR whatever the flags, and a half-closed socket the relay is not reading would
//! wake the loop forever.
//!
//! Half-close is passed through: when one side shuts down its sending half, what is
//! buffered is flushed to the other side, which then gets `shutdown(Write)`; the other
//! direction keeps flowing until it ends the same way. The relay is done when both
//! directions have ended. Any socket error (a refused connect, ECONNRESET, EPIPE) ends
//! it at once: `advance()` returns it as `Err`, and the byte counts stay readable for
//! the TRAFFIC line. Writes cannot raise SIGPIPE: std's `TcpStream` sends with
//! MSG_NOSIGNAL.

use std::cell::RefCell;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

pub use crate::internal::Interest;

const BUFFER: usize = 16 * 1024;
/// Reads per direction per `advance()`: a relay between two fast peers would otherwise
/// keep the loop to itself. Level-triggered epoll brings it back for the rest.
const READS_PER_ADVANCE: usize = 4;
/// Spare buffers kept for the next pipe with bytes to carry (at most 1 MiB); more are
/// freed. Enough for every stream of a busy moment, not for every relay.
const SPARES: usize = 64;

thread_local! {
    /// The loop runs every relay on its one thread; tests run relays on several.
    static SPARE_BUFFERS: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

fn take_buffer() -> Box<[u8]> {
    SPARE_BUFFERS
        .with_borrow_mut(Vec::pop)
        .unwrap_or_else(|| vec![0; BUFFER].into_boxed_slice())
}

fn give_back(buffer: Box<[u8]>) {
    SPARE_BUFFERS.with_borrow_mut(|spares| {
        if spares.len() < SPARES {
            spares.push(buffer);
        }
    });
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    Open,
    Done,
}

/// One direction: bytes read from one socket, waiting to be written to the other.
struct Pipe {
    /// Only while `start < end`: bytes are waiting for the destination.
    buffer: Option<Box<[u8]>>,
    start: usize,
    end: usize,
    /// The source sent EOF.
    eof: bool,
    /// EOF was passed on: everything flushed, then `shutdown(Write)` on the destination.
    ended: bool,
}

impl Pipe {
    fn new() -> Pipe {
        Pipe {
            buffer: None,
            start: 0,
            end: 0,
            eof: false,
            ended: false,
        }
    }

    fn wants_read(&self) -> bool {
        !self.eof && self.end < BUFFER
    }

    fn wants_write(&self) -> bool {
        self.start < self.end
    }

    /// Moves what it can from `from` to `to`; returns whether anything happened.
    /// `written` counts the bytes `to` accepted.
    fn pump(&mut self, from: &TcpStream, to: &TcpStream, written: &mut u64) -> io::Result<bool> {
        let mut moved = false;
        if self.wants_read() || self.wants_write() {
            let mut buffer = self.buffer.take().unwrap_or_else(take_buffer);
            moved = self.pump_through(&mut buffer, from, to, written)?;
            if self.wants_write() {
                self.buffer = Some(buffer);
            } else {
                (self.start, self.end) = (0, 0);
                give_back(buffer);
            }
        }
        if self.eof && !self.ended && !self.wants_write() {
            to.shutdown(Shutdown::Write)?;
            self.ended = true;
            moved = true;
        }
        Ok(moved)
    }

    fn pump_through(
        &mut self,
        buffer: &mut [u8],
        mut from: &TcpStream,
        mut to: &TcpStream,
        written: &mut u64,
    ) -> io::Result<bool> {
        let mut moved = false;
        let mut reads = 0;
        let mut to_blocked = false;
        loop {
            if self.wants_write() && !to_blocked {
                match to.write(&buffer[self.start..self.end]) {
                    Ok(0) => return Err(ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        self.start += n;
                        *written += n as u64;
                        moved = true;
                        if self.start == self.end {
                            self.start = 0;
                            self.end = 0;
                        }
                        continue;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => to_blocked = true,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            }
            if !self.wants_read() || reads == READS_PER_ADVANCE {
                break;
            }
            match from.read(&mut buffer[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            reads += 1;
            moved = true;
        }
        Ok(moved)
    }
}

pub struct Relay {
    client: TcpStream,
    upstream: TcpStream,
    connected: bool,
    to_upstream: Pipe,
    to_client: Pipe,
    /// Bytes written to the upstream (client → upstream).
    pub bytes_in: u64,
    /// Bytes written to the client (upstream → client).
    pub bytes_out: u64,
    last_activity: Instant,
}

impl Relay {
    /// Starts a non-blocking connect to `target`; `client` must already be
    /// non-blocking. An immediate failure (no route, a refusal the kernel knows at
    /// once) is returned here; a later one comes out of `advance()`.
    pub fn connect(client: TcpStream, target: SocketAddr) -> io::Result<Relay> {
        // socket2 opens it close-on-exec.
        let socket = Socket::new(Domain::for_address(target), Type::STREAM, None)?;
        socket.set_nonblocking(true)?;
        match socket.connect(&target.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        Ok(Relay {
            client,
            upstream: socket.into(),
            connected: false,
            to_upstream: Pipe::new(),
            to_client: Pipe::new(),
            bytes_in: 0,
            bytes_out: 0,
            last_activity: Instant::now(),
        })
    }

    pub fn client(&self) -> &TcpStream {
        &self.client
    }

    pub fn upstream(&self) -> &TcpStream {
        &self.upstream
    }

    /// Nothing while the upstream connects: the client waits in its socket buffer.
    pub fn client_interest(&self) -> Interest {
        Interest {
            read: self.connected && self.to_upstream.wants_read(),
            write: self.connected && self.to_client.wants_write(),
        }
    }

    /// Writable while connecting: that is how the connect's completion shows.
    pub fn upstream_interest(&self) -> Interest {
        if !self.connected {
            return Interest {
                read: false,
                write: true,
            };
        }
        Interest {
            read: self.to_client.wants_read(),
            write: self.to_upstream.wants_write(),
        }
    }

    pub fn connected(&self) -> bool {
        self.connected
    }

    /// When a byte last moved or an EOF arrived; until connected, when the connect
    /// started.
    pub fn last_activity(&self) -> Instant {
        self.last_activity
    }

    /// When the relay should be given up if nothing happens before: the connect
    /// timeout until connected, then the idle timeout if there is one.
    pub fn deadline(
        &self,
        connect_timeout: Duration,
        idle_timeout: Option<Duration>,
    ) -> Option<Instant> {
        if self.connected {
            idle_timeout.map(|idle| self.last_activity + idle)
        } else {
            Some(self.last_activity + connect_timeout)
        }
    }

    /// Call on any readiness event of either socket: finishes the connect, then moves
    /// as many bytes as it can both ways. `Err` ends the relay (the connect failed or
    /// a socket broke); so does `Done`.
    pub fn advance(&mut self) -> io::Result<Progress> {
        if !self.connected {
            if let Some(error) = self.upstream.take_error()? {
                return Err(error);
            }
            match self.upstream.peer_addr() {
                Ok(_) => {
                    self.connected = true;
                    self.last_activity = Instant::now();
                }
                Err(e) if e.kind() == ErrorKind::NotConnected => return Ok(Progress::Open),
                Err(e) => return Err(e),
            }
        }
        let sent = self
            .to_upstream
            .pump(&self.client, &self.upstream, &mut self.bytes_in)?;
        let received = self
            .to_client
            .pump(&self.upstream, &self.client, &mut self.bytes_out)?;
        if sent || received {
            self.last_activity = Instant::now();
        }
        if self.to_upstream.ended && self.to_client.ended {
            Ok(Progress::Done)
        } else {
            Ok(Progress::Open)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::os::fd::AsRawFd;
    use std::thread;

    const TIMEOUT: Duration = Duration::from_secs(20);

    /// What the daemon does: poll each socket for its interest, leaving out a socket
    /// with none, and advance on any event, until the relay ends.
    fn drive(relay: &mut Relay) -> io::Result<Progress> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let mut fds = [
                poll_fd(relay.client(), relay.client_interest()),
                poll_fd(relay.upstream(), relay.upstream_interest()),
            ];
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "relay still open at the deadline");
            let ready = crate::sys::fd::poll(&mut fds, left).expect("poll");
            if ready > 0 && relay.advance()? == Progress::Done {
                return Ok(Progress::Done);
            }
        }
    }

    fn poll_fd(stream: &TcpStream, interest: Interest) -> libc::pollfd {
        let mut events = 0;
        if interest.read {
            events |= libc::POLLIN;
        }
        if interest.write {
            events |= libc::POLLOUT;
        }
        libc::pollfd {
            fd: if events == 0 { -1 } else { stream.as_raw_fd() },
            events,
            revents: 0,
        }
    }

    /// A client connection accepted by the "daemon", and the upstream's listener.
    struct Setup {
        client: TcpStream,
        accepted: TcpStream,
        upstream: TcpListener,
    }

    fn setup() -> Setup {
        let front = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(front.local_addr().unwrap()).unwrap();
        let (accepted, _) = front.accept().unwrap();
        accepted.set_nonblocking(true).unwrap();
        client.set_read_timeout(Some(TIMEOUT)).unwrap();
        client.set_write_timeout(Some(TIMEOUT)).unwrap();
        Setup {
            client,
            accepted,
            upstream: TcpListener::bind("127.0.0.1:0").unwrap(),
        }
    }

    fn accept_upstream(listener: &TcpListener) -> TcpStream {
        let (stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
        stream
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i % 251) as u8 ^ seed.wrapping_mul(i as u8))
            .collect()
    }

    fn read_all(mut stream: &TcpStream) -> Vec<u8> {
        let mut out = Vec::new();
        stream.read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn echoes_both_ways_at_once() {
        let Setup {
            client,
            accepted,
            upstream,
        } = setup();
        let mut relay = Relay::connect(accepted, upstream.local_addr().unwrap()).unwrap();
        let echo = thread::spawn(move || {
            let mut stream = accept_upstream(&upstream);
            let mut chunk = [0u8; 8192];
            loop {
                match stream.read(&mut chunk).unwrap() {
                    0 => break,
                    n => stream.write_all(&chunk[..n]).unwrap(),
                }
            }
        });
        let sent = pattern(1 << 20, 3);
        let writer = {
            let (client, sent) = (client.try_clone().unwrap(), sent.clone());
            thread::spawn(move || {
                (&client).write_all(&sent).unwrap();
                client.shutdown(Shutdown::Write).unwrap();
            })
        };
        let reader = thread::spawn(move || read_all(&client));
        assert_eq!(drive(&mut relay).unwrap(), Progress::Done);
        writer.join().unwrap();
        echo.join().unwrap();
        assert!(reader.join().unwrap() == sent, "echo differs");
        assert_eq!((relay.bytes_in, relay.bytes_out), (1 << 20, 1 << 20));
    }

    #[test]
    fn reply_after_the_client_half_closes() {
        let Setup {
            client,
            accepted,
            upstream,
        } = setup();
        let mut relay = Relay::connect(accepted, upstream.local_addr().unwrap()).unwrap();
        let request = pattern(1 << 20, 5);
        let reply = pattern(1 << 20, 7);
        let server = {
            let reply = reply.clone();
            thread::spawn(move || {
                let stream = accept_upstream(&upstream);
                let got = read_all(&stream);
                (&stream).write_all(&reply).unwrap();
                got
            })
        };
        let peer = {
            let request = request.clone();
            thread::spawn(move || {
                (&client).write_all(&request).unwrap();
                client.shutdown(Shutdown::Write).unwrap();
                read_all(&client)
            })
        };
        assert_eq!(drive(&mut relay).unwrap(), Progress::Done);
        assert!(server.join().unwrap() == request, "request differs");
        assert!(peer.join().unwrap() == reply, "reply differs");
        assert_eq!((relay.bytes_in, relay.bytes_out), (1 << 20, 1 << 20));
    }

    #[test]
    fn upstream_closes_first() {
        let Setup {
            client,
            accepted,
            upstream,
        } = setup();
        let mut relay = Relay::connect(accepted, upstream.local_addr().unwrap()).unwrap();
        let server = thread::spawn(move || {
            let stream = accept_upstream(&upstream);
            (&stream).write_all(b"bye\r\n").unwrap();
            // Dropped: closed both ways.
        });
        let peer = thread::spawn(move || {
            let got = read_all(&client);
            drop(client);
            got
        });
        assert_eq!(drive(&mut relay).unwrap(), Progress::Done);
        server.join().unwrap();
        assert_eq!(peer.join().unwrap(), b"bye\r\n");
        assert_eq!((relay.bytes_in, relay.bytes_out), (0, 5));
    }

    #[test]
    fn upstream_half_closes_and_still_reads() {
        let Setup {
            client,
            accepted,
            upstream,
        } = setup();
        let mut relay = Relay::connect(accepted, upstream.local_addr().unwrap()).unwrap();
        let server = thread::spawn(move || {
            let stream = accept_upstream(&upstream);
            (&stream).write_all(b"greeting\n").unwrap();
            stream.shutdown(Shutdown::Write).unwrap();
            read_all(&stream)
        });
        let peer = thread::spawn(move || {
            let got = read_all(&client);
            (&client).write_all(b"after EOF").unwrap();
            client.shutdown(Shutdown::Write).unwrap();
            got
        });
        assert_eq!(drive(&mut relay).unwrap(), Progress::Done);
        assert_eq!(peer.join().unwrap(), b"greeting\n");
        assert_eq!(server.join().unwrap(), b"after EOF");
        assert_eq!((relay.bytes_in, relay.bytes_out), (9, 9));
    }

    /// Issue 13: a relay holds a buffer only while bytes wait for their destination.
    #[test]
    fn an_idle_relay_holds_no_buffer() {
        let Setup {
            client,
            accepted,
            upstream,
        } = setup();
        let mut relay = Relay::connect(accepted, upstream.local_addr().unwrap()).unwrap();
        while !relay.connected() {
            relay.advance().unwrap();
        }
        let server = accept_upstream(&upstream);
        (&client).write_all(b"ping\n").unwrap();
        let mut got = [0u8; 5];
        let deadline = Instant::now() + TIMEOUT;
        let mut read = 0;
        server.set_nonblocking(true).unwrap();
        while read < got.len() {
            assert!(Instant::now() < deadline, "ping never arrived");
            relay.advance().unwrap();
            match (&server).read(&mut got[read..]) {
                Ok(n) => read += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(&got, b"ping\n");
        assert_eq!(relay.advance().unwrap(), Progress::Open);
        assert!(relay.to_upstream.buffer.is_none() && relay.to_client.buffer.is_none());
        assert_eq!((relay.bytes_in, relay.bytes_out), (5, 0));
    }

    /// The client's side takes a few KiB at a time, so the relay keeps bytes waiting in
    /// its buffer, between advances, all the way.
    #[test]
    fn a_slow_client_gets_every_byte() {
        let Setup {
            client,
            accepted,
            upstream,
        } = setup();
        Socket::from(accepted.try_clone().unwrap())
            .set_send_buffer_size(4096)
            .unwrap();
        Socket::from(client.try_clone().unwrap())
            .set_recv_buffer_size(4096)
            .unwrap();
        let mut relay = Relay::connect(accepted, upstream.local_addr().unwrap()).unwrap();
        let reply = pattern(64 << 10, 11);
        let server = {
            let reply = reply.clone();
            thread::spawn(move || {
                let stream = accept_upstream(&upstream);
                (&stream).write_all(&reply).unwrap();
                stream.shutdown(Shutdown::Write).unwrap();
                read_all(&stream)
            })
        };
        let peer = thread::spawn(move || {
            client.shutdown(Shutdown::Write).unwrap();
            read_all(&client)
        });
        assert_eq!(drive(&mut relay).unwrap(), Progress::Done);
        assert_eq!(server.join().unwrap(), b"");
        assert!(peer.join().unwrap() == reply, "reply differs");
    }

    #[test]
    fn refused_connect_is_an_error() {
        let Setup {
            client: _client,
            accepted,
            upstream,
        } = setup();
        let target = upstream.local_addr().unwrap();
        drop(upstream);
        let error = match Relay::connect(accepted, target) {
            Err(error) => error,
            Ok(mut relay) => {
                let error = drive(&mut relay).unwrap_err();
                assert!(!relay.connected());
                error
            }
        };
        assert_eq!(error.kind(), ErrorKind::ConnectionRefused);
    }

    #[test]
    fn client_reset_is_an_error() {
        let Setup {
            client,
            accepted,
            upstream,
        } = setup();
        let mut relay = Relay::connect(accepted, upstream.local_addr().unwrap()).unwrap();
        let server = thread::spawn(move || read_all(&accept_upstream(&upstream)));
        // Linger 0 turns the close into a RST.
        Socket::from(client)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        let error = drive(&mut relay).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ConnectionReset);
        drop(relay);
        server.join().unwrap();
    }

    #[test]
    fn deadline_is_the_connect_timeout_until_connected() {
        let Setup {
            client: _client,
            accepted,
            upstream,
        } = setup();
        let relay = Relay::connect(accepted, upstream.local_addr().unwrap()).unwrap();
        let second = Duration::from_secs(1);
        assert_eq!(
            relay.deadline(second, None),
            Some(relay.last_activity() + second)
        );
    }
}
