//! `tftp`: read requests sent open-loop at a fixed rate, each from a fresh socket, to a
//! TFTP server run by the superserver as a `wait = true` datagram service.
//!
//! Why open-loop from fresh sockets: a real TFTP client sends its RRQ from an ephemeral
//! port of its own and the server answers from a new port (its per-transfer child), so
//! every request is a new datagram on the superserver's socket, whatever happened to the
//! one before; a closed loop would slow down when the server does and hide the losses.
//!
//! Each request: a new UDP socket bound to an ephemeral port, `RRQ FILE octet` to
//! `--addr`; the first DATA block (which must hold `--expect-bytes` bytes: the file fits
//! in one block) is ACKed to the port it came from, which ends the transfer, and the
//! latency is RRQ sent to DATA received. No DATA within `--udp-timeout-ms` (default
//! 1000) counts as lost; the client never retransmits, so a lost datagram is not hidden.
//!
//! Pacing: a timerfd ticks at `--rate`; each tick sends what the schedule says is due
//! since the start of the burst (so a late wake-up catches up rather than lowering the
//! rate). With `--burst B --gaps-ms LO-HI`, B requests are sent at the rate, then nothing
//! for a gap, then the next burst: gaps are spread over [LO, HI] (a golden-ratio
//! sequence), so that, around a server's idle timeout, some bursts arrive while it is
//! still there, some after it left, and some just as it leaves. No new burst (or, without
//! `--burst`, no new request) starts after `--duration`.
//!
//! Prints `mode=tftp rate= bursts= conns= elapsed_s= cps= sent_per_s= p50_us= p99_us= max_us=
//! fail_total= fail_<kind>=... udp_sent= udp_answered= udp_lost=`.

use std::collections::{HashMap, VecDeque};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// What `tftp` needs from the command line.
pub struct Tftp {
    pub addr: SocketAddr,
    pub rate: u64,
    pub duration: Duration,
    pub timeout: Duration,
    pub file: String,
    pub expect_bytes: usize,
    /// Requests per burst; 0: one continuous stream.
    pub burst: u64,
    pub gap_lo: Duration,
    pub gap_hi: Duration,
    pub max: u64,
}

/// Counted apart, all printed.
#[derive(Default)]
struct Counts {
    sent: u64,
    answered: u64,
    lost: u64,
    /// ERROR packet, or a DATA block that is not block 1 of the expected size.
    bad: u64,
    /// socket() or sendto() failed (fd limit, no buffer): the request was not sent.
    send_failed: u64,
}

fn rrq(file: &str) -> Vec<u8> {
    let mut p = vec![0, 1];
    p.extend_from_slice(file.as_bytes());
    p.push(0);
    p.extend_from_slice(b"octet");
    p.push(0);
    p
}

/// Raises the soft fd limit to the hard one: up to `rate × timeout` sockets are open.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid rlimit out-pointer; then the same struct, read back.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn check(rc: libc::c_int, what: &str) -> libc::c_int {
    if rc < 0 {
        eprintln!("loadgen: tftp: {what}: {}", std::io::Error::last_os_error());
        std::process::exit(1);
    }
    rc
}

/// Token for the timerfd in the epoll set; sockets use their request number.
const TIMER: u64 = u64::MAX;

pub fn run(t: &Tftp) {
    raise_fd_limit();
    let request = rrq(&t.file);
    let local: SocketAddr = if t.addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .unwrap();
    // SAFETY: plain system calls whose results are checked; each fd is owned below.
    let epoll = unsafe {
        OwnedFd::from_raw_fd(check(
            libc::epoll_create1(libc::EPOLL_CLOEXEC),
            "epoll_create1",
        ))
    };
    // SAFETY: as above.
    let timer = unsafe {
        OwnedFd::from_raw_fd(check(
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            ),
            "timerfd_create",
        ))
    };
    let interval_ns = (1_000_000_000 / t.rate.max(1)).max(1_000) as i64;
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: interval_ns / 1_000_000_000,
            tv_nsec: interval_ns % 1_000_000_000,
        },
        it_value: libc::timespec {
            tv_sec: 0,
            tv_nsec: 1,
        },
    };
    // SAFETY: a valid timerfd and itimerspec; the old value is not wanted.
    check(
        unsafe { libc::timerfd_settime(timer.as_raw_fd(), 0, &spec, std::ptr::null_mut()) },
        "timerfd_settime",
    );
    let add = |fd: i32, token: u64| {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: valid epoll and fd; the event is copied by the kernel.
        unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) }
    };
    check(add(timer.as_raw_fd(), TIMER), "epoll_ctl timerfd");

    let start = Instant::now();
    let end = start + t.duration;
    let mut counts = Counts::default();
    let mut lat: Vec<u32> = Vec::new();
    // Requests waiting for DATA, by number; and their numbers in the order sent (= the
    // order they expire in, the timeout being the same for all).
    let mut pending: HashMap<u64, (UdpSocket, Instant)> = HashMap::new();
    let mut order: VecDeque<(u64, Instant)> = VecDeque::new();
    let mut next: u64 = 0;
    let (mut burst_start, mut burst_sent, mut bursts) = (start, 0u64, 1u64);
    let mut gap_until: Option<Instant> = None;
    let mut last_send = start;
    let mut sending = true;
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut buf = [0u8; 1024];
    let ack = [0u8, 4, 0, 1];

    while sending || !pending.is_empty() {
        // SAFETY: `events` is a valid buffer of its length.
        let n = unsafe {
            libc::epoll_wait(
                epoll.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as i32,
                10,
            )
        };
        let now = Instant::now();
        for ev in events.iter().take(n.max(0) as usize) {
            let token = ev.u64;
            if token == TIMER {
                let mut ticks = [0u8; 8];
                // SAFETY: reading 8 bytes into an 8-byte buffer (EAGAIN is fine).
                unsafe { libc::read(timer.as_raw_fd(), ticks.as_mut_ptr().cast(), 8) };
                continue;
            }
            let Some((sock, sent_at)) = pending.get(&token) else {
                continue;
            };
            let sent_at = *sent_at;
            match sock.recv_from(&mut buf) {
                Ok((len, from)) => {
                    let p = &buf[..len];
                    if len >= 4 && p[..4] == [0, 3, 0, 1] && len - 4 == t.expect_bytes {
                        let _ = sock.send_to(&ack, from);
                        counts.answered += 1;
                        lat.push((now - sent_at).as_micros().min(u32::MAX as u128) as u32);
                    } else {
                        counts.bad += 1;
                    }
                    pending.remove(&token);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    counts.bad += 1;
                    pending.remove(&token);
                }
            }
        }
        // Expired: no DATA within the timeout.
        while let Some(&(id, sent_at)) = order.front() {
            if now - sent_at < t.timeout {
                break;
            }
            order.pop_front();
            if pending.remove(&id).is_some() {
                counts.lost += 1;
            }
        }
        if !sending {
            continue;
        }
        if let Some(until) = gap_until {
            if now < until {
                continue;
            }
            gap_until = None;
            if now >= end {
                sending = false;
                continue;
            }
            burst_start = now;
            burst_sent = 0;
            bursts += 1;
        }
        // Due since the burst started, at the rate.
        let due = ((now - burst_start).as_nanos() * t.rate as u128 / 1_000_000_000) as u64 + 1;
        let mut due = due.saturating_sub(burst_sent);
        if t.burst > 0 {
            due = due.min(t.burst - burst_sent);
        }
        for _ in 0..due {
            if (t.burst == 0 && now >= end) || next >= t.max {
                sending = false;
                break;
            }
            let sock = match UdpSocket::bind(local).and_then(|s| s.set_nonblocking(true).map(|_| s))
            {
                Ok(s) => s,
                Err(_) => {
                    counts.send_failed += 1;
                    burst_sent += 1;
                    continue;
                }
            };
            burst_sent += 1;
            if sock.send_to(&request, t.addr).is_err() || add(sock.as_raw_fd(), next) < 0 {
                counts.send_failed += 1;
                continue;
            }
            let at = Instant::now();
            counts.sent += 1;
            last_send = at;
            pending.insert(next, (sock, at));
            order.push_back((next, at));
            next += 1;
        }
        if t.burst > 0 && burst_sent >= t.burst && sending {
            // The golden-ratio sequence spreads the gaps evenly over [lo, hi].
            let frac = (bursts as f64 * 0.618_033_988_75).fract();
            let span = t.gap_hi.saturating_sub(t.gap_lo).as_secs_f64();
            gap_until = Some(now + t.gap_lo + Duration::from_secs_f64(span * frac));
        }
    }
    lat.sort_unstable();
    let pct = |p: f64| crate::percentile(&lat, p);
    let elapsed = (last_send - start).as_secs_f64();
    let fails = counts.lost + counts.bad + counts.send_failed;
    let per_s = |n: u64| {
        if elapsed > 0.0 {
            n as f64 / elapsed
        } else {
            0.0
        }
    };
    println!(
        "mode=tftp rate={} bursts={bursts} conns={} elapsed_s={elapsed:.3} cps={:.1} sent_per_s={:.1} p50_us={} p99_us={} max_us={} \
fail_total={fails} fail_lost={} fail_bad_reply={} fail_send={} udp_sent={} udp_answered={} udp_lost={}",
        t.rate,
        counts.answered,
        per_s(counts.answered),
        per_s(counts.sent),
        pct(0.50),
        pct(0.99),
        lat.last().copied().unwrap_or(0),
        counts.lost,
        counts.bad,
        counts.send_failed,
        counts.sent,
        counts.answered,
        counts.lost,
    );
}
