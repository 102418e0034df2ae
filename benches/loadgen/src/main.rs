//! Load generator for `benches/compare.sh`: drives one superserver port with N threads.
//!
//! Every worker loops connect -> (write) -> read to EOF and records the latency from
//! the start of connect to EOF. The run is bounded twice: no new connection starts after
//! `--duration` seconds, and no more than `--max-conns` are started in all. Every blocking
//! call has a timeout, so the program always stops by itself.
//!
//! It prints one line of `key=value` pairs on stdout (easy to pick apart with awk):
//! `mode= conns= elapsed_s= cps= p50_us= p99_us= max_us= fail_total= fail_<kind>=...`,
//! for TCP also `first_p50_us= first_p99_us=` (connect to first byte), and for
//! `udp-echo` also `udp_sent= udp_answered= udp_lost=`.
//!
//! Two helper modes used by the harness for readiness:
//! - `wait-connect --addr A --timeout-ms T`: exit 0 once a TCP connect to A succeeds.
//! - `wait-listen [--proto udp] --port-lo L --port-hi H --count N --timeout-ms T`: exit 0
//!   once N TCP sockets in LISTEN state (or N bound UDP sockets) have a local port in
//!   [L, H] (read from /proc/net/{tcp,udp}{,6}); prints `listening=N waited_ms=M`.
//! - `start-ready --log FILE --pattern STR -- COMMAND...`: start COMMAND with stdout and
//!   stderr appended to FILE, poll FILE every 0.5 ms until it contains STR, print
//!   `pid=N ready_ms=M` and exit, leaving COMMAND running (the caller stops it). This
//!   times a daemon's start-to-ready by its own readiness line, without the cost of a
//!   shell in between.
//!
//! Three modes for `stress/run.sh` (faults, not speed):
//! - `tcp-reset`: like `tcp-oneshot`, but each connection is reset (SO_LINGER 0, close)
//!   as soon as it is established, without reading: a connect-and-reset flood. `conns=`
//!   counts the connections reset.
//! - `tcp-hold --concurrency N --duration S`: open N connections at once (non-blocking
//!   connects, each bounded by `--timeout-ms`), send `--payload` once on each (nothing if
//!   empty), then hold them, reading and discarding, until S seconds have passed or every
//!   one was closed by the peer. Prints `settled connected= connect_failed=
//!   connect_timeout=` (flushed) once every connect has an outcome, then
//!   `mode=tcp-hold ... closed_by_peer= open_at_end=` at the end.
//! - `udp-reflect --addr A --src-ports P,Q,... [--src-addr IP]`: one datagram to A from each
//!   source port (0 = an ephemeral one), then count the replies arriving within
//!   `--timeout-ms`: `sent= answered= bind_failed=`. Binding ports below 1024 needs root.
//! - `tcp-bulk --addr A --concurrency S --count MIB`: S connections at once, each
//!   writing MIB MiB, shutting down its sending half and reading to EOF (a sink that
//!   closes when it has read everything; through a relay, the relay's throughput);
//!   prints `mode=tcp-bulk streams= bytes= elapsed_s= mib_per_s= fail_total=`.
//!
//! One mode for a `wait = true` datagram service (`src/tftp.rs`):
//! - `tftp --addr A --rate R --file NAME --expect-bytes N [--burst B --gaps-ms LO-HI]`:
//!   TFTP read requests sent open-loop at R per second, each from a fresh socket; the
//!   one DATA block is ACKed; no DATA within `--udp-timeout-ms` (default 1000) is lost.

mod tftp;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::process::exit;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    TcpOneshot,
    TcpEcho,
    UdpEcho,
    WaitConnect,
    WaitListen,
    StartReady,
    TcpReset,
    TcpHold,
    UdpReflect,
    TcpBulk,
    Tftp,
}

struct Args {
    mode: Mode,
    addr: Option<SocketAddr>,
    concurrency: usize,
    duration: Duration,
    max_conns: u64,
    timeout: Duration,
    udp_timeout: Duration,
    expect_bytes: usize,
    payload: Vec<u8>,
    port_lo: u16,
    port_hi: u16,
    count: usize,
    slow_us: u64,
    /// TCP to an IPv4 loopback address: connect from 127.0.0.1 to 127.0.0.N in turn.
    sources: u8,
    udp: bool,
    log: String,
    pattern: String,
    command: Vec<String>,
    /// udp-reflect: the source ports, and the source address (default 127.0.0.1 or ::1).
    src_ports: Vec<u16>,
    src_addr: Option<std::net::IpAddr>,
    /// tftp: requests per second, per burst (0: no bursts), the gaps between bursts,
    /// the file asked for, and whether `--udp-timeout-ms` was given.
    rate: u64,
    burst: u64,
    gaps: (Duration, Duration),
    file: String,
    udp_timeout_set: bool,
}

const USAGE: &str = "usage: loadgen --mode tcp-oneshot|tcp-echo|udp-echo --addr HOST:PORT \
[--concurrency N] [--duration SECS] [--max-conns M] [--timeout-ms T] [--udp-timeout-ms T] \
[--expect-bytes N] [--payload STR] [--trace-slow-us N] [--sources N]\n       \
loadgen --mode tcp-reset|tcp-hold --addr HOST:PORT [--concurrency N] [--duration SECS] [--max-conns M] [--timeout-ms T] [--payload STR]\n       \
loadgen --mode udp-reflect --addr HOST:PORT --src-ports P,Q,... [--src-addr IP] [--timeout-ms T]\n       loadgen --mode wait-connect --addr HOST:PORT [--timeout-ms T]\n       \
loadgen --mode wait-listen [--proto tcp|udp] --port-lo L --port-hi H --count N [--timeout-ms T]\n       \
loadgen --mode start-ready --log FILE --pattern STR [--timeout-ms T] -- COMMAND [ARGS...]\n       \
loadgen --mode tcp-bulk --addr HOST:PORT [--concurrency STREAMS] --count MIB [--timeout-ms T]\n       \
loadgen --mode tftp --addr HOST:PORT --rate R --file NAME --expect-bytes N [--duration SECS] [--udp-timeout-ms T] \
[--burst B --gaps-ms LO-HI] [--max-conns M]";

fn usage(msg: &str) -> ! {
    eprintln!("loadgen: {msg}\n{USAGE}");
    exit(2);
}

fn parse_args() -> Args {
    let mut a = Args {
        mode: Mode::TcpOneshot,
        addr: None,
        concurrency: 1,
        duration: Duration::from_secs(5),
        max_conns: 1_000_000,
        timeout: Duration::from_millis(3000),
        udp_timeout: Duration::from_millis(50),
        expect_bytes: 1,
        payload: b"ping\n".to_vec(),
        port_lo: 0,
        port_hi: 0,
        count: 0,
        slow_us: 0,
        sources: 1,
        udp: false,
        log: String::new(),
        pattern: String::new(),
        command: Vec::new(),
        src_ports: Vec::new(),
        src_addr: None,
        rate: 1000,
        burst: 0,
        gaps: (Duration::ZERO, Duration::ZERO),
        file: String::new(),
        udp_timeout_set: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--" {
            a.command = it.by_ref().collect();
            break;
        }
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            exit(0);
        }
        let val = it.next().unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        let num = |v: &str| -> u64 {
            v.parse().unwrap_or_else(|_| usage(&format!("{flag}: not a number: {v}")))
        };
        match flag.as_str() {
            "--mode" => {
                a.mode = match val.as_str() {
                    "tcp-oneshot" => Mode::TcpOneshot,
                    "tcp-echo" => Mode::TcpEcho,
                    "udp-echo" => Mode::UdpEcho,
                    "wait-connect" => Mode::WaitConnect,
                    "wait-listen" => Mode::WaitListen,
                    "start-ready" => Mode::StartReady,
                    "tcp-reset" => Mode::TcpReset,
                    "tcp-hold" => Mode::TcpHold,
                    "udp-reflect" => Mode::UdpReflect,
                    "tcp-bulk" => Mode::TcpBulk,
                    "tftp" => Mode::Tftp,
                    _ => usage(&format!("unknown mode {val}")),
                }
            }
            "--addr" => {
                a.addr = Some(
                    val.to_socket_addrs()
                        .ok()
                        .and_then(|mut i| i.next())
                        .unwrap_or_else(|| usage(&format!("bad address {val}"))),
                )
            }
            "--concurrency" => a.concurrency = num(&val).max(1) as usize,
            "--duration" => {
                let secs: f64 = val.parse().unwrap_or_else(|_| usage("bad --duration"));
                a.duration = Duration::from_secs_f64(secs);
            }
            "--max-conns" => a.max_conns = num(&val),
            "--timeout-ms" => a.timeout = Duration::from_millis(num(&val).max(1)),
            "--udp-timeout-ms" => {
                a.udp_timeout = Duration::from_millis(num(&val).max(1));
                a.udp_timeout_set = true;
            }
            "--rate" => a.rate = num(&val).max(1),
            "--burst" => a.burst = num(&val),
            "--gaps-ms" => {
                let (lo, hi) = val.split_once('-').unwrap_or((&val, &val));
                a.gaps = (Duration::from_millis(num(lo)), Duration::from_millis(num(hi).max(num(lo))));
            }
            "--file" => a.file = val,
            "--expect-bytes" => a.expect_bytes = num(&val) as usize,
            "--payload" => a.payload = val.into_bytes(),
            "--port-lo" => a.port_lo = num(&val) as u16,
            "--port-hi" => a.port_hi = num(&val) as u16,
            "--count" => a.count = num(&val) as usize,
            "--log" => a.log = val,
            "--trace-slow-us" => a.slow_us = num(&val),
            "--sources" => a.sources = (num(&val) as u8).max(1),
            "--pattern" => a.pattern = val,
            "--src-ports" => {
                a.src_ports = val.split(',').map(|p| num(p.trim()) as u16).collect();
            }
            "--src-addr" => {
                a.src_addr = Some(val.parse().unwrap_or_else(|_| usage(&format!("bad address {val}"))))
            }
            "--proto" => {
                a.udp = match val.as_str() {
                    "tcp" => false,
                    "udp" => true,
                    _ => usage("--proto is tcp or udp"),
                }
            }
            _ => usage(&format!("unknown flag {flag}")),
        }
    }
    if a.mode == Mode::StartReady {
        if a.command.is_empty() || a.log.is_empty() || a.pattern.is_empty() {
            usage("start-ready needs --log, --pattern and -- COMMAND");
        }
    } else if a.mode == Mode::Tftp && a.file.is_empty() {
        usage("tftp needs --file");
    } else if a.mode == Mode::UdpReflect && a.src_ports.is_empty() {
        usage("udp-reflect needs --src-ports");
    } else if a.mode != Mode::WaitListen && a.addr.is_none() {
        usage("--addr is required");
    }
    a
}

/// Failure kinds, in the order they are printed.
const KINDS: [&str; 10] = [
    "connect_refused",
    "connect_reset",
    "connect_timeout",
    "connect_other",
    "write_error",
    "read_reset",
    "read_timeout",
    "read_other",
    "short_read",
    "mismatch",
];

#[derive(Clone, Copy)]
enum Fail {
    ConnectRefused = 0,
    ConnectReset,
    ConnectTimeout,
    ConnectOther,
    WriteError,
    ReadReset,
    ReadTimeout,
    ReadOther,
    ShortRead,
    Mismatch,
}

#[derive(Default)]
struct WorkerResult {
    latencies_us: Vec<u32>,
    /// Connect to first byte (TCP only): apart from `latencies_us` when a server's
    /// output arrives well before its EOF (someone else still holds the connection).
    first_us: Vec<u32>,
    fails: [u64; KINDS.len()],
    /// Time since start at which this worker's last successful exchange ended.
    last_ok: Duration,
    udp_sent: u64,
    udp_answered: u64,
}

fn connect_fail(e: &std::io::Error) -> Fail {
    // A connect cut short by SO_SNDTIMEO fails with EINPROGRESS on Linux.
    const EINPROGRESS: i32 = 115;
    if e.raw_os_error() == Some(EINPROGRESS) {
        return Fail::ConnectTimeout;
    }
    match e.kind() {
        ErrorKind::ConnectionRefused => Fail::ConnectRefused,
        ErrorKind::ConnectionReset => Fail::ConnectReset,
        ErrorKind::TimedOut | ErrorKind::WouldBlock => Fail::ConnectTimeout,
        _ => Fail::ConnectOther,
    }
}

fn read_fail(e: &std::io::Error) -> Fail {
    match e.kind() {
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => Fail::ReadReset,
        ErrorKind::TimedOut | ErrorKind::WouldBlock => Fail::ReadTimeout,
        _ => Fail::ReadOther,
    }
}

/// One TCP exchange. On success returns when the first byte arrived; the caller times
/// the whole exchange (connect to EOF). With `--trace-slow-us N`, an exchange slower
/// than N µs is printed on stderr with its local port and phases, to find it in a trace.
fn tcp_once(a: &Args, addr: &SocketAddr, buf: &mut Vec<u8>) -> Result<Instant, Fail> {
    let t0 = Instant::now();
    let mut s = connect(addr, a.timeout, source(a, addr)).map_err(|e| connect_fail(&e))?;
    let connected = Instant::now();
    if a.mode == Mode::TcpReset {
        // close() with a zero linger sends RST instead of FIN, and skips TIME_WAIT.
        socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO)).map_err(|_| Fail::WriteError)?;
        return Ok(connected);
    }
    if a.mode == Mode::TcpEcho {
        s.write_all(&a.payload).map_err(|_| Fail::WriteError)?;
        s.shutdown(Shutdown::Write).map_err(|_| Fail::WriteError)?;
    }
    buf.clear();
    buf.resize(256, 0);
    let n = s.read(buf).map_err(|e| read_fail(&e))?;
    let first = Instant::now();
    buf.truncate(n);
    if n > 0 {
        s.read_to_end(buf).map_err(|e| read_fail(&e))?;
    }
    if a.slow_us > 0 && t0.elapsed().as_micros() as u64 > a.slow_us {
        let since = |t: Instant| (t - t0).as_micros();
        let port = s.local_addr().map(|l| l.port()).unwrap_or(0);
        let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        eprintln!(
            "slow: local_port={port} connect_us={} first_byte_us={} eof_us={} ended_unix={:.6}",
            since(connected),
            since(first),
            t0.elapsed().as_micros(),
            wall.as_secs_f64()
        );
    }
    if a.mode == Mode::TcpEcho {
        if buf.len() < a.payload.len() {
            return Err(Fail::ShortRead);
        }
        if buf[..] != a.payload[..] {
            return Err(Fail::Mismatch);
        }
    } else if buf.len() < a.expect_bytes {
        return Err(Fail::ShortRead);
    }
    Ok(first)
}

/// The local address for the next connection with `--sources N` (N > 1) to an IPv4
/// loopback address: 127.0.0.1 to 127.0.0.N in turn.
///
/// Why: a run leaves tens of thousands of connections in TIME_WAIT, about as many as
/// there are ephemeral ports, and with one source address every connect then searches
/// the port range for a 4-tuple not in use: measured at a third of the client core's time
/// in the echo workload, which made the client, not the daemon, the limit. Spreading
/// connections over N source addresses keeps the search short.
fn source(a: &Args, addr: &SocketAddr) -> Option<std::net::IpAddr> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    match addr.ip() {
        std::net::IpAddr::V4(ip) if a.sources > 1 && ip.is_loopback() => {
            let n = NEXT.fetch_add(1, Ordering::Relaxed) % u64::from(a.sources);
            Some(std::net::Ipv4Addr::new(127, 0, 0, 1 + n as u8).into())
        }
        _ => None,
    }
}

/// A blocking connect whose wait, and every later read and write, is bounded by
/// `timeout` (SO_SNDTIMEO bounds connect on Linux): seven system calls for a one-shot
/// exchange where `TcpStream::connect_timeout` and per-call timeouts take eleven (two
/// more with a source address).
fn connect(
    addr: &SocketAddr,
    timeout: Duration,
    source: Option<std::net::IpAddr>,
) -> std::io::Result<TcpStream> {
    use std::os::fd::AsRawFd;
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(*addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_write_timeout(Some(timeout))?;
    socket.set_read_timeout(Some(timeout))?;
    if let Some(source) = source {
        // The port is chosen at connect, for the whole 4-tuple, not at bind.
        let yes: libc::c_int = 1;
        // SAFETY: a valid socket, an int option and its size.
        let set = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&yes as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if set != 0 {
            return Err(std::io::Error::last_os_error());
        }
        socket.bind(&SocketAddr::new(source, 0).into())?;
    }
    socket.connect(&(*addr).into())?;
    Ok(socket.into())
}

fn tcp_worker(a: Arc<Args>, start: Instant, started: Arc<AtomicU64>) -> WorkerResult {
    let addr = a.addr.unwrap();
    let deadline = start + a.duration;
    let mut r = WorkerResult::default();
    let mut buf = Vec::with_capacity(256);
    while Instant::now() < deadline && started.fetch_add(1, Ordering::Relaxed) < a.max_conns {
        let t0 = Instant::now();
        match tcp_once(&a, &addr, &mut buf) {
            Ok(first) => {
                let t1 = Instant::now();
                r.latencies_us.push((t1 - t0).as_micros().min(u32::MAX as u128) as u32);
                r.first_us.push((first - t0).as_micros().min(u32::MAX as u128) as u32);
                r.last_ok = t1 - start;
            }
            Err(f) => {
                r.fails[f as usize] += 1;
                if matches!(f, Fail::ConnectRefused | Fail::ConnectOther) {
                    // Do not spin on a port that is gone; the failure is counted.
                    thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
    r
}

/// `--concurrency` requests in flight from one thread and one socket: each numbered
/// datagram is answered by the same bytes, and each answer sends the next request in its
/// place. One thread, so the client core spends its time on datagrams, not on switching
/// between blocked threads: the daemon, not the client, should be what is measured. A
/// request unanswered after `--udp-timeout-ms` counts as lost and is replaced; a late
/// answer to it is ignored.
fn udp_window(a: Arc<Args>, start: Instant, started: Arc<AtomicU64>) -> WorkerResult {
    let addr = a.addr.unwrap();
    let deadline = start + a.duration;
    let mut r = WorkerResult::default();
    let bind: SocketAddr = if addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().unwrap();
    let sock = match UdpSocket::bind(bind).and_then(|s| s.connect(addr).map(|_| s)) {
        Ok(s) => s,
        Err(_) => {
            r.fails[Fail::ConnectOther as usize] += 1;
            return r;
        }
    };
    // Set once: a recv wakes at least this often to retire lost requests.
    let tick = (a.udp_timeout / 4).max(Duration::from_millis(1));
    let _ = sock.set_read_timeout(Some(tick));
    let window = a.concurrency.max(1);
    // Slot i holds the request whose number is congruent to i: (number, sent at).
    let mut slots: Vec<Option<(u64, Instant)>> = vec![None; window];
    let mut next: u64 = 0;
    let mut out = Vec::with_capacity(64);
    let mut inb = [0u8; 2048];
    let request = |out: &mut Vec<u8>, number: u64| {
        out.clear();
        write!(out, "{number}:").unwrap();
        out.extend_from_slice(&a.payload);
    };
    // Sends a new request into `slot` unless the run is over.
    let mut send = |slots: &mut Vec<Option<(u64, Instant)>>, slot: usize, r: &mut WorkerResult| {
        slots[slot] = None;
        if Instant::now() >= deadline || started.fetch_add(1, Ordering::Relaxed) >= a.max_conns {
            return;
        }
        // The next number that lands in this slot.
        let number = next + ((slot as u64 + window as u64 - next % window as u64) % window as u64);
        next = number + 1;
        request(&mut out, number);
        if sock.send(&out).is_err() {
            r.fails[Fail::WriteError as usize] += 1;
            return;
        }
        r.udp_sent += 1;
        slots[slot] = Some((number, Instant::now()));
    };
    for slot in 0..window {
        send(&mut slots, slot, &mut r);
    }
    let mut expected = Vec::with_capacity(64);
    let mut last_sweep = Instant::now();
    while slots.iter().any(Option::is_some) {
        match sock.recv(&mut inb) {
            Ok(n) => {
                let reply = &inb[..n];
                let number = reply
                    .iter()
                    .position(|&b| b == b':')
                    .and_then(|colon| std::str::from_utf8(&reply[..colon]).ok())
                    .and_then(|digits| digits.parse::<u64>().ok());
                let Some(number) = number else {
                    r.fails[Fail::Mismatch as usize] += 1;
                    continue;
                };
                let slot = (number % window as u64) as usize;
                match slots[slot] {
                    Some((waiting, sent_at)) if waiting == number => {
                        request(&mut expected, number);
                        if reply != &expected[..] {
                            r.fails[Fail::Mismatch as usize] += 1;
                        } else {
                            let t1 = Instant::now();
                            r.udp_answered += 1;
                            r.latencies_us.push((t1 - sent_at).as_micros().min(u32::MAX as u128) as u32);
                            r.last_ok = t1 - start;
                        }
                        send(&mut slots, slot, &mut r);
                    }
                    _ => {} // late: its request was already counted lost
                }
            }
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                // ICMP port unreachable: nobody listens. Count it and back off.
                r.fails[Fail::ConnectRefused as usize] += 1;
                thread::sleep(Duration::from_millis(1));
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => r.fails[Fail::ReadOther as usize] += 1,
        }
        let now = Instant::now();
        if now - last_sweep >= tick {
            last_sweep = now;
            for slot in 0..window {
                if let Some((_, sent_at)) = slots[slot] {
                    if now - sent_at >= a.udp_timeout {
                        send(&mut slots, slot, &mut r); // the old one is lost
                    }
                }
            }
        }
    }
    r
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn run_load(a: Args) {
    let a = Arc::new(a);
    let started = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    // TCP: one thread per connection in flight; UDP: one thread keeps them all in flight.
    let threads = if a.mode == Mode::UdpEcho { 1 } else { a.concurrency };
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (a, started) = (a.clone(), started.clone());
            thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || match a.mode {
                    Mode::UdpEcho => udp_window(a, start, started),
                    _ => tcp_worker(a, start, started),
                })
                .expect("spawn worker thread")
        })
        .collect();
    let mut lat: Vec<u32> = Vec::new();
    let mut first: Vec<u32> = Vec::new();
    let mut fails = [0u64; KINDS.len()];
    let mut last_ok = Duration::ZERO;
    let (mut sent, mut answered) = (0u64, 0u64);
    for h in handles {
        let r = h.join().expect("worker panicked");
        lat.extend_from_slice(&r.latencies_us);
        first.extend_from_slice(&r.first_us);
        for (f, n) in fails.iter_mut().zip(r.fails) {
            *f += n;
        }
        last_ok = last_ok.max(r.last_ok);
        sent += r.udp_sent;
        answered += r.udp_answered;
    }
    lat.sort_unstable();
    first.sort_unstable();
    let ok = lat.len() as u64;
    let elapsed = if ok > 0 { last_ok } else { start.elapsed() };
    let cps = if elapsed.as_secs_f64() > 0.0 { ok as f64 / elapsed.as_secs_f64() } else { 0.0 };
    let mode = match a.mode {
        Mode::TcpOneshot => "tcp-oneshot",
        Mode::TcpEcho => "tcp-echo",
        Mode::TcpReset => "tcp-reset",
        _ => "udp-echo",
    };
    let mut line = format!(
        "mode={mode} concurrency={} conns={ok} elapsed_s={:.3} cps={:.1} p50_us={} p99_us={} max_us={} fail_total={}",
        a.concurrency,
        elapsed.as_secs_f64(),
        cps,
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(0),
        fails.iter().sum::<u64>(),
    );
    for (k, n) in KINDS.iter().zip(fails) {
        line.push_str(&format!(" fail_{k}={n}"));
    }
    if a.mode != Mode::UdpEcho {
        line.push_str(&format!(
            " first_p50_us={} first_p99_us={}",
            percentile(&first, 0.50),
            percentile(&first, 0.99)
        ));
    }
    if a.mode == Mode::UdpEcho {
        line.push_str(&format!(" udp_sent={sent} udp_answered={answered} udp_lost={}", sent - answered));
    }
    println!("{line}");
}

fn wait_connect(a: &Args) -> ! {
    let deadline = Instant::now() + a.timeout;
    let addr = a.addr.unwrap();
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            exit(0);
        }
        thread::sleep(Duration::from_millis(5));
    }
    eprintln!("loadgen: {addr} not accepting after {:?}", a.timeout);
    exit(1);
}

/// Counts TCP sockets in LISTEN state (0A), or bound UDP sockets (07), whose local port
/// is in [lo, hi].
fn count_listeners(lo: u16, hi: u16, udp: bool) -> usize {
    let mut n = 0;
    let (files, listen) = if udp {
        (["/proc/net/udp", "/proc/net/udp6"], "07")
    } else {
        (["/proc/net/tcp", "/proc/net/tcp6"], "0A")
    };
    for file in files {
        let Ok(text) = std::fs::read_to_string(file) else { continue };
        for line in text.lines().skip(1) {
            let mut f = line.split_whitespace();
            let (Some(local), Some(state)) = (f.nth(1), f.nth(1)) else { continue };
            if state != listen {
                continue;
            }
            let Some(port) = local.rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok())
            else {
                continue;
            };
            if (lo..=hi).contains(&port) {
                n += 1;
            }
        }
    }
    n
}

fn wait_listen(a: &Args) -> ! {
    let t0 = Instant::now();
    let deadline = t0 + a.timeout;
    loop {
        let n = count_listeners(a.port_lo, a.port_hi, a.udp);
        if n >= a.count {
            println!("listening={n} waited_ms={}", t0.elapsed().as_millis());
            exit(0);
        }
        if Instant::now() >= deadline {
            eprintln!("loadgen: only {n} of {} listeners after {:?}", a.count, a.timeout);
            exit(1);
        }
        thread::sleep(Duration::from_millis(1));
    }
}

fn start_ready(a: &Args) -> ! {
    let open = || {
        std::fs::OpenOptions::new().create(true).append(true).open(&a.log).unwrap_or_else(|e| {
            eprintln!("loadgen: {}: {e}", a.log);
            exit(1)
        })
    };
    let (out, err) = (open(), open());
    let t0 = Instant::now();
    let mut child = std::process::Command::new(&a.command[0])
        .args(&a.command[1..])
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| {
            eprintln!("loadgen: {}: {e}", a.command[0]);
            exit(1)
        });
    let deadline = t0 + a.timeout;
    let pattern = a.pattern.as_bytes();
    loop {
        let text = std::fs::read(&a.log).unwrap_or_default();
        if text.windows(pattern.len()).any(|w| w == pattern) {
            let ms = t0.elapsed().as_secs_f64() * 1000.0;
            println!("pid={} ready_ms={ms:.2}", child.id());
            exit(0);
        }
        if let Ok(Some(status)) = child.try_wait() {
            eprintln!("loadgen: {} exited ({status}) before `{}`", a.command[0], a.pattern);
            exit(1);
        }
        if Instant::now() >= deadline {
            eprintln!("loadgen: no `{}` in {} after {:?}", a.pattern, a.log, a.timeout);
            println!("pid={} ready_ms=timeout", child.id());
            exit(1);
        }
        thread::sleep(Duration::from_micros(500));
    }
}

/// `tcp-hold`: N connections opened at once and held (see the top of the file).
fn tcp_hold(a: &Args) -> ! {
    use std::os::fd::AsRawFd;
    #[derive(PartialEq)]
    enum State {
        Connecting,
        Open,
        Done,
    }
    let addr = a.addr.unwrap();
    let t0 = Instant::now();
    let mut socks = Vec::with_capacity(a.concurrency);
    let (mut failed, mut timed_out, mut connected, mut closed) = (0u64, 0u64, 0u64, 0u64);
    for _ in 0..a.concurrency {
        let open = || -> std::io::Result<socket2::Socket> {
            let s = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
            s.set_nonblocking(true)?;
            match s.connect(&addr.into()) {
                Ok(()) => Ok(s),
                Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(s),
                Err(e) => Err(e),
            }
        };
        match open() {
            Ok(s) => socks.push((s, State::Connecting)),
            Err(_) => failed += 1,
        }
    }
    let hold_until = t0 + a.duration;
    let connect_deadline = t0 + a.timeout;
    let mut settled = false;
    let mut buf = [0u8; 4096];
    let mut fds: Vec<libc::pollfd> = Vec::with_capacity(socks.len());
    loop {
        let now = Instant::now();
        if !settled {
            if now >= connect_deadline {
                for (_, st) in socks.iter_mut().filter(|(_, st)| *st == State::Connecting) {
                    *st = State::Done;
                    timed_out += 1;
                }
            }
            if socks.iter().all(|(_, st)| *st != State::Connecting) {
                settled = true;
                println!("settled connected={connected} connect_failed={failed} connect_timeout={timed_out}");
                let _ = std::io::stdout().flush();
            }
        }
        let live = socks.iter().any(|(_, st)| *st != State::Done);
        if (settled && now >= hold_until) || !live {
            break;
        }
        fds.clear();
        for (s, st) in &socks {
            let events = match st {
                State::Connecting => libc::POLLOUT,
                State::Open => libc::POLLIN,
                State::Done => 0,
            };
            // A negative fd is skipped by poll(2).
            let fd = if *st == State::Done { -1 } else { s.as_raw_fd() };
            fds.push(libc::pollfd { fd, events, revents: 0 });
        }
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structures.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 50) };
        if n <= 0 {
            continue;
        }
        for (pfd, (s, st)) in fds.iter().zip(socks.iter_mut()) {
            if pfd.revents == 0 {
                continue;
            }
            match st {
                State::Connecting => match s.take_error() {
                    Ok(None) => {
                        *st = State::Open;
                        connected += 1;
                        if !a.payload.is_empty() {
                            let _ = s.send(&a.payload);
                        }
                    }
                    _ => {
                        *st = State::Done;
                        failed += 1;
                    }
                },
                State::Open => {
                    let mut s: &socket2::Socket = s;
                    match s.read(&mut buf) {
                        Ok(0) => {
                            *st = State::Done;
                            closed += 1;
                        }
                        Ok(_) => {}
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                        Err(_) => {
                            *st = State::Done;
                            closed += 1;
                        }
                    }
                }
                State::Done => {}
            }
        }
    }
    if !settled {
        println!("settled connected={connected} connect_failed={failed} connect_timeout={timed_out}");
    }
    let open_at_end = socks.iter().filter(|(_, st)| *st == State::Open).count();
    println!(
        "mode=tcp-hold concurrency={} connected={connected} connect_failed={failed} connect_timeout={timed_out} \
closed_by_peer={closed} open_at_end={open_at_end} elapsed_s={:.3}",
        a.concurrency,
        t0.elapsed().as_secs_f64()
    );
    exit(0);
}

/// `udp-reflect`: does a service answer datagrams from these source ports?
fn udp_reflect(a: &Args) -> ! {
    let addr = a.addr.unwrap();
    let src = a.src_addr.unwrap_or(if addr.is_ipv4() {
        std::net::Ipv4Addr::LOCALHOST.into()
    } else {
        std::net::Ipv6Addr::LOCALHOST.into()
    });
    let (mut sent, mut bind_failed) = (0u64, 0u64);
    let mut socks = Vec::new();
    for &port in &a.src_ports {
        let open = || -> std::io::Result<UdpSocket> {
            let s = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::DGRAM, None)?;
            // A port the machine already uses elsewhere (a listening service) can be shared.
            s.set_reuse_address(true)?;
            s.bind(&SocketAddr::new(src, port).into())?;
            let s: UdpSocket = s.into();
            s.set_nonblocking(true)?;
            Ok(s)
        };
        match open() {
            Ok(s) => {
                if s.send_to(b"reflect?\n", addr).is_ok() {
                    sent += 1;
                    socks.push(s);
                }
            }
            Err(_) => bind_failed += 1,
        }
    }
    let deadline = Instant::now() + a.timeout;
    let mut answered = vec![false; socks.len()];
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline && answered.iter().any(|&x| !x) {
        for (s, done) in socks.iter().zip(answered.iter_mut()) {
            if !*done && matches!(s.recv_from(&mut buf), Ok((_, from)) if from == addr) {
                *done = true;
            }
        }
        thread::sleep(Duration::from_millis(2));
    }
    let n = answered.iter().filter(|&&x| x).count();
    println!("mode=udp-reflect src={src} sent={sent} answered={n} bind_failed={bind_failed}");
    exit(0);
}

fn main() {
    let a = parse_args();
    match a.mode {
        Mode::WaitConnect => wait_connect(&a),
        Mode::WaitListen => wait_listen(&a),
        Mode::StartReady => start_ready(&a),
        Mode::TcpHold => tcp_hold(&a),
        Mode::UdpReflect => udp_reflect(&a),
        Mode::TcpBulk => tcp_bulk(&a),
        Mode::Tftp => tftp::run(&tftp::Tftp {
            addr: a.addr.unwrap(),
            rate: a.rate,
            duration: a.duration,
            timeout: if a.udp_timeout_set { a.udp_timeout } else { Duration::from_secs(1) },
            file: a.file.clone(),
            expect_bytes: a.expect_bytes,
            burst: a.burst,
            gap_lo: a.gaps.0,
            gap_hi: a.gaps.1,
            max: a.max_conns,
        }),
        _ => run_load(a),
    }
}

/// `tcp-bulk`: S streams of MIB MiB each, all at once, to a sink; throughput of the lot.
fn tcp_bulk(a: &Args) {
    let addr = a.addr.unwrap_or_else(|| usage("tcp-bulk needs --addr"));
    let bytes_each = a.count as u64 * 1024 * 1024;
    let timeout = a.timeout.max(Duration::from_secs(60));
    let start = Instant::now();
    let handles: Vec<_> = (0..a.concurrency)
        .map(|_| {
            thread::spawn(move || -> Result<u64, String> {
                let mut stream = TcpStream::connect_timeout(&addr, timeout)
                    .map_err(|e| format!("connect: {e}"))?;
                stream.set_write_timeout(Some(timeout)).ok();
                stream.set_read_timeout(Some(timeout)).ok();
                let chunk = vec![0x5au8; 64 * 1024];
                let mut left = bytes_each;
                while left > 0 {
                    let n = left.min(chunk.len() as u64) as usize;
                    stream
                        .write_all(&chunk[..n])
                        .map_err(|e| format!("write: {e}"))?;
                    left -= n as u64;
                }
                stream
                    .shutdown(Shutdown::Write)
                    .map_err(|e| format!("shutdown: {e}"))?;
                let mut sink = [0u8; 4096];
                loop {
                    match stream.read(&mut sink) {
                        Ok(0) => return Ok(bytes_each),
                        Ok(_) => {}
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => return Err(format!("read: {e}")),
                    }
                }
            })
        })
        .collect();
    let (mut bytes, mut fails) = (0u64, 0u64);
    for handle in handles {
        match handle.join().expect("stream thread panicked") {
            Ok(n) => bytes += n,
            Err(e) => {
                eprintln!("loadgen: tcp-bulk: {e}");
                fails += 1;
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "mode=tcp-bulk streams={} bytes={bytes} elapsed_s={elapsed:.3} mib_per_s={:.1} fail_total={fails}",
        a.concurrency,
        bytes as f64 / 1048576.0 / elapsed.max(1e-9)
    );
}
