//! `redirect`: copy bytes both ways between a client and an upstream, without a process.
//!
//! A `Relay` is two sockets and two one-way `Direction`s. A direction holds something
//! to carry bytes in only while bytes are in flight, and gives it back once everything
//! read is written, so an idle relay costs its struct and nothing more (issue 13: 30 KiB
//! each before, with two buffers for life). What it holds is, first choice, a kernel pipe
//! from a small per-thread pool: `splice(2)` moves the bytes socket → pipe → socket with
//! no copy through user space (issue 13: a quarter to a half of the CPU per GiB). A pipe
//! costs 2 fds, so the pool lends at most `PIPE_LIMIT` at once and keeps a few spares;
//! when it has none to lend (the limit, pipe2 failing for want of fds) or the kernel
//! refuses to splice, the direction copies through a 16 KiB buffer from a pool of spare
//! buffers instead, as before. Bytes that wait for a slow destination stay in that
//! direction's pipe or buffer until it is writable.
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
//! MSG_NOSIGNAL, and oxinetd ignores SIGPIPE (a splice to a closed socket gets EPIPE).

use std::cell::RefCell;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

pub use crate::internal::Interest;
use crate::sys::pipe::{PipePair, pipe_pair, splice_move};

const BUFFER: usize = 16 * 1024;
/// Reads per direction per `advance()`: a relay between two fast peers would otherwise
/// keep the loop to itself. Level-triggered epoll brings it back for the rest.
const READS_PER_ADVANCE: usize = 4;
/// Spare buffers kept for the next direction with bytes to carry (at most 1 MiB); more
/// are freed. Enough for every stream of a busy moment, not for every relay.
const SPARES: usize = 64;
/// Pipes lent at once, spares included: 128 fds at most, beside the 2 per relay that
/// bound how many relays the fd limit allows. Past it, directions copy.
const PIPE_LIMIT: usize = 64;
/// Spare pipes kept open for the next direction with bytes to carry; more are closed.
const PIPE_SPARES: usize = 8;
/// What a pipe is asked to hold (F_SETPIPE_SZ): more bytes per splice than the default
/// 64 KiB. Pages are only taken while bytes sit in it.
const PIPE_SIZE: usize = 256 * 1024;
/// After pipe2 fails (no fds left), this many takes copy before it is tried again.
const PIPE_BACKOFF: u32 = 64;

thread_local! {
    /// The loop runs every relay on its one thread; tests run relays on several.
    static SPARE_BUFFERS: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
    static PIPES: RefCell<PipePool> = const {
        RefCell::new(PipePool {
            spares: Vec::new(),
            lent: 0,
            limit: PIPE_LIMIT,
            backoff: 0,
        })
    };
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

/// The thread's pipes: spares ready to lend, and how many exist (spares and those held
/// by directions), so the fds they take stay bounded.
struct PipePool {
    spares: Vec<Pipe>,
    /// Pipes alive: every `Pipe` counts itself here until dropped.
    lent: usize,
    limit: usize,
    backoff: u32,
}

/// A kernel pipe from the pool; dropping it closes it and frees its place.
struct Pipe(PipePair);

impl Drop for Pipe {
    fn drop(&mut self) {
        // try_with: nothing to count once the thread's pool itself is being destroyed.
        let _ = PIPES.try_with(|pool| pool.borrow_mut().lent -= 1);
    }
}

/// A spare pipe, or a new one if the limit allows; `None` means copy instead.
fn take_pipe() -> Option<Pipe> {
    PIPES.with_borrow_mut(|pool| {
        if let Some(pipe) = pool.spares.pop() {
            return Some(pipe);
        }
        if pool.lent >= pool.limit {
            return None;
        }
        if pool.backoff > 0 {
            pool.backoff -= 1;
            return None;
        }
        match pipe_pair(PIPE_SIZE) {
            Ok(pair) if pair.capacity > 0 => {
                pool.lent += 1;
                Some(Pipe(pair))
            }
            Ok(_) => None,
            Err(_) => {
                pool.backoff = PIPE_BACKOFF;
                None
            }
        }
    })
}

/// Gives back an empty pipe; one the pool has no room for is closed.
fn give_back_pipe(pipe: Pipe) {
    let extra = PIPES.with_borrow_mut(|pool| {
        if pool.spares.len() < PIPE_SPARES {
            pool.spares.push(pipe);
            None
        } else {
            Some(pipe)
        }
    });
    // Dropped outside the borrow: its Drop borrows the pool again.
    drop(extra);
}

/// Tests: how many pipes this thread may have at once (0: every direction copies).
#[cfg(test)]
fn set_pipe_limit(limit: usize) {
    let spares = PIPES.with_borrow_mut(|pool| {
        pool.limit = limit;
        std::mem::take(&mut pool.spares)
    });
    drop(spares);
}

#[cfg(test)]
fn pipes_alive() -> usize {
    PIPES.with_borrow(|pool| pool.lent)
}

/// The errors that say splice(2) cannot serve these fds at all, not that a socket broke.
fn splice_unsupported(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    Open,
    Done,
}

/// What a direction's bytes wait in while in flight.
enum Carrier {
    Kernel(Pipe),
    Buffer(Box<[u8]>),
}

/// One direction: bytes read from one socket, waiting to be written to the other.
struct Direction {
    /// Only while bytes wait for the destination (`wants_write`).
    held: Option<Carrier>,
    /// The bytes waiting in the buffer, when it is a buffer.
    start: usize,
    end: usize,
    /// The bytes waiting in the pipe, when it is a pipe.
    in_pipe: usize,
    /// A splice into the pipe would block while the destination did too: the pipe may
    /// be full with fewer bytes than its size (each socket fragment takes a slot), so
    /// reading waits until some bytes have gone out.
    pipe_full: bool,
    /// The kernel refused to splice these sockets: copy from now on.
    copy_only: bool,
    /// The source sent EOF.
    eof: bool,
    /// EOF was passed on: everything flushed, then `shutdown(Write)` on the destination.
    ended: bool,
}

impl Direction {
    fn new() -> Direction {
        Direction {
            held: None,
            start: 0,
            end: 0,
            in_pipe: 0,
            pipe_full: false,
            copy_only: false,
            eof: false,
            ended: false,
        }
    }

    fn wants_read(&self) -> bool {
        !self.eof
            && match &self.held {
                None => true,
                Some(Carrier::Buffer(_)) => self.end < BUFFER,
                Some(Carrier::Kernel(pipe)) => !self.pipe_full && self.in_pipe < pipe.0.capacity,
            }
    }

    fn wants_write(&self) -> bool {
        self.start < self.end || self.in_pipe > 0
    }

    /// Moves what it can from `from` to `to`; returns whether anything happened.
    /// `written` counts the bytes `to` accepted.
    fn pump(&mut self, from: &TcpStream, to: &TcpStream, written: &mut u64) -> io::Result<bool> {
        let mut moved = false;
        if self.wants_read() || self.wants_write() {
            let pipe = match self.held.take() {
                Some(Carrier::Buffer(buffer)) => Err(buffer),
                Some(Carrier::Kernel(pipe)) => Ok(pipe),
                None if self.copy_only => Err(take_buffer()),
                None => take_pipe().ok_or_else(take_buffer),
            };
            let buffer = match pipe {
                Ok(pipe) => match self.pump_splice(&pipe, from, to, written) {
                    Ok(spliced) => {
                        moved = spliced;
                        self.keep_pipe(pipe);
                        None
                    }
                    Err(e) if self.in_pipe == 0 && splice_unsupported(&e) => {
                        self.copy_only = true;
                        give_back_pipe(pipe);
                        Some(take_buffer())
                    }
                    Err(e) => return Err(e),
                },
                Err(buffer) => Some(buffer),
            };
            if let Some(mut buffer) = buffer {
                moved |= self.pump_copy(&mut buffer, from, to, written)?;
                if self.wants_write() {
                    self.held = Some(Carrier::Buffer(buffer));
                } else {
                    (self.start, self.end) = (0, 0);
                    give_back(buffer);
                }
            }
        }
        if self.eof && !self.ended && !self.wants_write() {
            to.shutdown(Shutdown::Write)?;
            self.ended = true;
            moved = true;
        }
        Ok(moved)
    }

    /// Holds on to a pipe with bytes in it; gives an empty one back.
    fn keep_pipe(&mut self, pipe: Pipe) {
        if self.in_pipe > 0 {
            self.held = Some(Carrier::Kernel(pipe));
        } else {
            self.pipe_full = false;
            give_back_pipe(pipe);
        }
    }

    fn pump_splice(
        &mut self,
        pipe: &Pipe,
        from: &TcpStream,
        to: &TcpStream,
        written: &mut u64,
    ) -> io::Result<bool> {
        let PipePair {
            read: out,
            write: into,
            capacity,
        } = &pipe.0;
        let mut moved = false;
        let mut reads = 0;
        let mut to_blocked = false;
        loop {
            if self.in_pipe > 0 && !to_blocked {
                match splice_move(out, to, self.in_pipe) {
                    Ok(0) => return Err(ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        self.in_pipe -= n;
                        *written += n as u64;
                        self.pipe_full = false;
                        moved = true;
                        continue;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => to_blocked = true,
                    Err(e) => return Err(e),
                }
            }
            if self.eof || self.pipe_full || self.in_pipe >= *capacity {
                break;
            }
            if reads == READS_PER_ADVANCE {
                break;
            }
            match splice_move(from, into, capacity - self.in_pipe) {
                Ok(0) => self.eof = true,
                Ok(n) => self.in_pipe += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    // Bytes still in the pipe mean the destination blocked: the pipe
                    // may be what is full, so wait for the destination before reading.
                    self.pipe_full = self.in_pipe > 0;
                    break;
                }
                Err(e) => return Err(e),
            }
            reads += 1;
            moved = true;
        }
        Ok(moved)
    }

    fn pump_copy(
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
            if self.start < self.end && !to_blocked {
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
            if self.eof || self.end == BUFFER || reads == READS_PER_ADVANCE {
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
    to_upstream: Direction,
    to_client: Direction,
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
            to_upstream: Direction::new(),
            to_client: Direction::new(),
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
            assert!(
                !left.is_zero(),
                "relay still open at the deadline: {:?} {:?} in_pipe {} {} eof {} {} ended {} {} full {} {}",
                relay.client_interest(),
                relay.upstream_interest(),
                relay.to_upstream.in_pipe,
                relay.to_client.in_pipe,
                relay.to_upstream.eof,
                relay.to_client.eof,
                relay.to_upstream.ended,
                relay.to_client.ended,
                relay.to_upstream.pipe_full,
                relay.to_client.pipe_full,
            );
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
        assert!(relay.to_upstream.held.is_none() && relay.to_client.held.is_none());
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

    /// Sends `len` bytes through the relay to an echoing upstream and back, both ways at
    /// once, and checks every byte.
    fn echo_through(len: usize, seed: u8) -> Relay {
        let Setup {
            client,
            accepted,
            upstream,
        } = setup();
        let mut relay = Relay::connect(accepted, upstream.local_addr().unwrap()).unwrap();
        let echo = thread::spawn(move || {
            let mut stream = accept_upstream(&upstream);
            let mut chunk = [0u8; 65536];
            loop {
                match stream.read(&mut chunk).unwrap() {
                    0 => break,
                    n => stream.write_all(&chunk[..n]).unwrap(),
                }
            }
        });
        let sent = pattern(len, seed);
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
        assert_eq!((relay.bytes_in, relay.bytes_out), (len as u64, len as u64));
        relay
    }

    /// Issue 13: bulk bytes go through kernel pipes, lent while they flow.
    #[test]
    fn a_large_transfer_goes_through_pipes() {
        let relay = echo_through(16 << 20, 13);
        assert!(!relay.to_upstream.copy_only && !relay.to_client.copy_only);
        assert!(relay.to_upstream.held.is_none() && relay.to_client.held.is_none());
        // Given back as spares, still open, none held by the relay.
        let alive = pipes_alive();
        assert!((1..=PIPE_SPARES).contains(&alive), "{alive} pipes");
        drop(relay);
        assert_eq!(pipes_alive(), alive);
    }

    /// With no pipe to lend (the fd limit, or here a pool allowed none), the relay
    /// copies through a buffer and loses nothing.
    #[test]
    fn no_pipe_to_lend_falls_back_to_copying() {
        set_pipe_limit(0);
        let relay = echo_through(4 << 20, 17);
        assert_eq!(pipes_alive(), 0);
        assert!(relay.to_upstream.held.is_none() && relay.to_client.held.is_none());
        assert!(
            !SPARE_BUFFERS.with_borrow(Vec::is_empty),
            "no buffer was used"
        );
    }

    /// A client that does not read yet: the bytes wait in the relay's own pipe (held only
    /// while they wait), the relay stops reading the upstream, and nothing is lost when
    /// the client reads at last.
    #[test]
    fn bytes_wait_in_the_pipe_for_a_slow_client() {
        let Setup {
            client,
            accepted,
            upstream,
        } = setup();
        // Small, so the pipe fills soon; the client's receive buffer stays as it is
        // (a tiny window slows TCP on loopback to a trickle once it reads).
        Socket::from(accepted.try_clone().unwrap())
            .set_send_buffer_size(4096)
            .unwrap();
        let mut relay = Relay::connect(accepted, upstream.local_addr().unwrap()).unwrap();
        let reply = pattern(4 << 20, 19);
        let server = {
            let reply = reply.clone();
            thread::spawn(move || {
                let stream = accept_upstream(&upstream);
                (&stream).write_all(&reply).unwrap();
                stream.shutdown(Shutdown::Write).unwrap();
                read_all(&stream)
            })
        };
        client.shutdown(Shutdown::Write).unwrap();
        let deadline = Instant::now() + TIMEOUT;
        // Until the client's socket is full and the pipe holds what it could not take.
        while relay.to_client.in_pipe == 0 || relay.upstream_interest().read {
            assert!(Instant::now() < deadline, "the pipe never filled");
            relay.advance().unwrap();
        }
        assert!(matches!(relay.to_client.held, Some(Carrier::Kernel(_))));
        assert!(relay.client_interest().write);
        let waiting = relay.to_client.in_pipe;
        relay.advance().unwrap();
        assert_eq!(relay.to_client.in_pipe, waiting, "moved with no reader");
        let peer = thread::spawn(move || read_all(&client));
        assert_eq!(drive(&mut relay).unwrap(), Progress::Done);
        assert_eq!(server.join().unwrap(), b"");
        assert!(peer.join().unwrap() == reply, "reply differs");
        assert!(relay.to_client.held.is_none());
        assert_eq!(relay.bytes_out, reply.len() as u64);
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
