//! The internal services (echo, discard, daytime, time, chargen), over stream and dgram.
use crate::common;

use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{
    Oxinetd, free_port, read_to_eof, tcp_connect, tcp_read_some, tcp_request, udp_client_for,
    udp_request, v4, v6, wait_until,
};

/// Seconds from 1900-01-01 (RFC 868) to 1970-01-01.
const RFC868_OFFSET: u64 = 2_208_988_800;

/// One internal service `name` on `port`, on the default (dual-stack) address.
fn internal(name: &str, socket_type: &str, port: u16) -> String {
    let wait = socket_type == "dgram";
    format!(
        "[service.{name}]\n\
         type = \"INTERNAL\"\n\
         socket_type = \"{socket_type}\"\n\
         wait = {wait}\n\
         port = {port}\n\n"
    )
}

/// Starts a daemon running the internal service `name` alone; returns it and the port.
fn start_one(name: &str, socket_type: &str) -> (Oxinetd, u16) {
    let port = free_port();
    (Oxinetd::start(&internal(name, socket_type, port)), port)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Deterministic, non-repeating-looking test bytes.
fn pattern(len: usize) -> Vec<u8> {
    let mut state: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 24) as u8
        })
        .collect()
}

/// Checks an RFC 864 stream: 72 consecutive characters of the 95 printable ASCII
/// characters per line, then CRLF, each line starting one character further along the ring.
fn assert_chargen_stream(data: &[u8]) {
    let next = |c: u8, k: usize| 32 + ((c as usize - 32 + k) % 95) as u8;
    let mut previous_start = None;
    for (i, line) in data.chunks(74).enumerate() {
        let start = line[0];
        assert!(
            (32..=126).contains(&start),
            "line {i} starts with non-printable byte {start}"
        );
        if let Some(previous) = previous_start {
            assert_eq!(start, next(previous, 1), "line {i} does not rotate by one");
        }
        for (j, &byte) in line.iter().take(72).enumerate() {
            assert_eq!(
                byte,
                next(start, j),
                "line {i} column {j}: {:?}",
                String::from_utf8_lossy(line)
            );
        }
        if line.len() > 72 {
            assert_eq!(&line[72..], &b"\r\n"[..line.len() - 72], "line {i} end");
        }
        previous_start = Some(start);
    }
}

/// The proleptic Gregorian year of a Unix time (days-to-civil, H. Hinnant).
fn year_of(unix: u64) -> i64 {
    let z = (unix / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    yoe + era * 400 + i64::from(month <= 2)
}

fn assert_daytime(reply: &[u8]) {
    let text = String::from_utf8(reply.to_vec()).expect("daytime is text");
    assert!(
        text.ends_with("\r\n"),
        "daytime {text:?} does not end in CRLF"
    );
    let line = &text[..text.len() - 2];
    assert!(!line.trim().is_empty(), "daytime line is empty");
    assert!(
        line.bytes().all(|b| (32..=126).contains(&b)),
        "daytime {text:?} holds more than one printable line"
    );
    // Any timezone is within a day of UTC.
    let now = unix_now();
    let years = [year_of(now - 86_400), year_of(now + 86_400)];
    assert!(
        years.iter().any(|y| line.contains(&y.to_string())),
        "daytime {line:?} does not name the current year {years:?}"
    );
}

fn assert_time(reply: &[u8]) {
    let bytes: [u8; 4] = reply
        .try_into()
        .unwrap_or_else(|_| panic!("time reply is {} bytes, not 4", reply.len()));
    let got = u32::from_be_bytes(bytes);
    // The 32-bit count wraps in 2036; compare modulo 2^32.
    let want = ((unix_now() + RFC868_OFFSET) % (1 << 32)) as u32;
    let skew = got.wrapping_sub(want) as i32;
    assert!(
        skew.abs() <= 5,
        "time says {got}, now is {want} (off by {skew} s)"
    );
}

/// Bytes waiting in a socket's receive queue.
fn queued(fd: &impl AsRawFd) -> i32 {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which points at `n`.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) };
    assert_eq!(rc, 0, "FIONREAD: {}", std::io::Error::last_os_error());
    n
}

fn set_rcvbuf(socket: &UdpSocket, bytes: libc::c_int) {
    // SAFETY: SO_RCVBUF reads one c_int from the pointer, which points at `bytes`.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUF: {}", std::io::Error::last_os_error());
}

/// Sends one datagram from `socket` (connected to a service) and asserts that nothing comes
/// back within 1 s. The bounded wait is the assertion itself. A refused port (nothing
/// bound there) fails too.
fn assert_no_udp_reply(socket: &UdpSocket, what: &str) {
    socket.send(b"anyone there?\n").expect("send datagram");
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut buf = [0u8; 2048];
    match socket.recv(&mut buf) {
        Ok(n) => panic!(
            "{what}: unexpected reply {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        Err(e) => panic!("{what}: {e} (is the service listening?)"),
    }
}

#[test]
fn echo_stream_returns_input_byte_for_byte() {
    let (daemon, port) = start_one("echo", "stream");
    let input = b"hello\r\nworld\n\0\xff binary too";
    assert_eq!(tcp_request(v4(port), input), input);
    assert_eq!(tcp_request(v6(port), b"over IPv6\n"), b"over IPv6\n");
    assert!(tcp_request(v4(port), b"").is_empty());
    drop(daemon);
}

#[test]
fn echo_stream_one_mebibyte_while_reading_concurrently() {
    let (_daemon, port) = start_one("echo", "stream");
    let input = pattern(1 << 20);
    // tcp_request writes from a second thread while this one reads: a daemon that stops
    // reading while its writes are blocked would stall here until the read timeout.
    let output = tcp_request(v4(port), &input);
    assert_eq!(output.len(), input.len(), "echoed length");
    assert!(output == input, "echoed bytes differ from the input");
}

#[test]
fn echo_dgram_returns_datagram() {
    let (_daemon, port) = start_one("echo", "dgram");
    let input = b"datagram \0\xff payload";
    assert_eq!(udp_request(v4(port), input), input);
    assert_eq!(udp_request(v6(port), b"over IPv6"), b"over IPv6");
}

#[test]
fn echo_dgram_answers_every_one_of_200_quick_datagrams() {
    let (_daemon, port) = start_one("echo", "dgram");
    let socket = udp_client_for(&v4(port));
    set_rcvbuf(&socket, 1 << 20);
    socket.connect(v4(port)).unwrap();
    let receiver = socket.try_clone().unwrap();
    receiver
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let collect = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seen = BTreeSet::new();
        let mut buf = [0u8; 2048];
        while seen.len() < 200 && Instant::now() < deadline {
            match receiver.recv(&mut buf) {
                Ok(n) => {
                    seen.insert(buf[..n].to_vec());
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("recv echo: {e}"),
            }
        }
        seen
    });
    let sent: BTreeSet<Vec<u8>> = (0..200)
        .map(|i| format!("datagram {i:03}").into_bytes())
        .collect();
    for datagram in &sent {
        socket.send(datagram).expect("send datagram");
    }
    let seen = collect.join().expect("receiver thread");
    let missing: Vec<_> = sent
        .difference(&seen)
        .map(|d| String::from_utf8_lossy(d).into_owned())
        .collect();
    assert!(missing.is_empty(), "no echo within 5 s for {missing:?}");
    assert_eq!(seen, sent, "echoes that were never sent");
}

#[test]
fn discard_stream_returns_nothing_and_closes_when_client_closes() {
    let (_daemon, port) = start_one("discard", "stream");
    // tcp_request shuts down its write side and waits for EOF from the daemon.
    assert!(tcp_request(v4(port), &pattern(100_000)).is_empty());
    assert!(tcp_request(v4(port), b"").is_empty());
}

#[test]
fn discard_dgram_sends_nothing() {
    let (daemon, port) = start_one("discard", "dgram");
    let socket = udp_client_for(&v4(port));
    socket.connect(v4(port)).unwrap();
    assert_no_udp_reply(&socket, "discard dgram");
    assert!(
        daemon.log().contains("ready:"),
        "log lost its ready line: {}",
        daemon.log()
    );
    // Still serving: a second datagram is silently taken too.
    assert_no_udp_reply(&socket, "discard dgram, second datagram");
}

#[test]
fn daytime_stream_is_one_crlf_line() {
    let (_daemon, port) = start_one("daytime", "stream");
    assert_daytime(&tcp_request(v4(port), b""));
}

#[test]
fn daytime_dgram_is_one_crlf_line() {
    let (_daemon, port) = start_one("daytime", "dgram");
    assert_daytime(&udp_request(v4(port), b"\n"));
}

#[test]
fn time_stream_is_four_bytes_of_seconds_since_1900() {
    let (_daemon, port) = start_one("time", "stream");
    assert_time(&tcp_request(v4(port), b""));
}

#[test]
fn time_dgram_is_four_bytes_of_seconds_since_1900() {
    let (_daemon, port) = start_one("time", "dgram");
    assert_time(&udp_request(v4(port), b""));
}

#[test]
fn chargen_stream_follows_rfc864_pattern() {
    let (_daemon, port) = start_one("chargen", "stream");
    let data = tcp_read_some(v4(port), 10_000);
    assert_chargen_stream(&data);
}

#[test]
fn chargen_client_that_never_reads_does_not_stall_the_daemon() {
    let chargen_port = free_port();
    let echo_port = free_port();
    let config =
        internal("chargen", "stream", chargen_port) + &internal("echo", "stream", echo_port);
    let _daemon = Oxinetd::start(&config);

    let mut idle = tcp_connect(v4(chargen_port));
    // Wait until the daemon can write no more: our receive queue has data and stops growing.
    let mut last = -1;
    let mut stable_since = Instant::now();
    wait_until(
        "chargen fills the unread connection",
        Duration::from_secs(10),
        || {
            let now = queued(&idle);
            if now != last {
                last = now;
                stable_since = Instant::now();
            }
            now > 0 && stable_since.elapsed() >= Duration::from_millis(300)
        },
    );

    // A daemon blocked writing chargen would not answer this before the read timeout.
    for round in 0..3 {
        let input = format!("still alive {round}\n");
        assert_eq!(
            tcp_request(v4(echo_port), input.as_bytes()),
            input.as_bytes()
        );
    }

    // The chargen connection is still served once its client reads.
    let mut data = vec![0u8; 100_000];
    idle.read_exact(&mut data)
        .expect("read chargen after the stall");
    assert_chargen_stream(&data);
}

#[test]
fn chargen_dgram_reply_is_at_most_512_printable_bytes() {
    let (_daemon, port) = start_one("chargen", "dgram");
    for _ in 0..3 {
        let reply = udp_request(v4(port), b"\n");
        assert!(
            reply.len() <= 512,
            "chargen datagram of {} bytes",
            reply.len()
        );
        assert!(
            reply
                .iter()
                .all(|&b| (32..=126).contains(&b) || b == b'\r' || b == b'\n'),
            "chargen datagram holds unprintable bytes: {reply:?}"
        );
    }
}

#[test]
fn dgram_services_do_not_reply_to_source_ports_below_1024() {
    let names = ["echo", "chargen", "daytime", "time"];
    let ports: Vec<u16> = names.iter().map(|_| free_port()).collect();
    let config: String = names
        .iter()
        .zip(&ports)
        .map(|(name, &port)| internal(name, "dgram", port))
        .collect();
    let _daemon = Oxinetd::start(&config);

    // As root we may bind a privileged port; take a free one in 600..1000.
    let start = 600 + (std::process::id() % 400) as u16;
    let low = (0..400)
        .map(|k| 600 + (start - 600 + k) % 400)
        .find_map(|p| UdpSocket::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, p))).ok())
        .expect("no free UDP port in 600..1000 (tests run as root)");
    for (name, &port) in names.iter().zip(&ports) {
        low.connect(v4(port)).unwrap();
        assert_no_udp_reply(&low, &format!("{name} to a source port below 1024"));
    }

    // Normal clients are still served.
    assert_eq!(udp_request(v4(ports[0]), b"ping"), b"ping");
    assert!(!udp_request(v4(ports[1]), b"\n").is_empty());
    assert_daytime(&udp_request(v4(ports[2]), b"\n"));
    assert_time(&udp_request(v4(ports[3]), b""));
}

#[test]
fn stream_services_close_the_connection_after_time_and_daytime() {
    // daytime and time close at once without waiting for the client to close first.
    let day = free_port();
    let time = free_port();
    let _daemon =
        Oxinetd::start(&(internal("daytime", "stream", day) + &internal("time", "stream", time)));
    for port in [day, time] {
        let mut stream = tcp_connect(v4(port));
        // The write side stays open: EOF must come from the daemon.
        let reply = read_to_eof(&mut stream);
        assert!(!reply.is_empty(), "port {port}: nothing before EOF");
        let _ = stream.write_all(b"late");
    }
}
