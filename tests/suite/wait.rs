//! `wait = true` services: the server gets the listening (stream) or bound (dgram) socket
//! on fd 0, one server at a time, a new one when it exits, and a bounded respawn rate.

use crate::common;

use std::collections::{HashMap, HashSet};
use std::net::{TcpStream, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Oxinetd, free_port, tcp_request, udp_request, v4, write_script};

const PYTHON: &str = "/usr/bin/python3";

/// Accepts three connections on the listening socket it got on fd 0, answering each with
/// `PID COUNT NONBLOCK`, then exits. Errors go to the file named by argv[1] (fd 2 is the
/// socket). NONBLOCK is fd 0's O_NONBLOCK flag: a server blocking in accept() fails on a
/// non-blocking socket, but only when it wins the race against the next client, so the
/// flag is checked directly.
const ACCEPTER: &str = r#"import fcntl, os, socket, sys, traceback
try:
    s = socket.socket(fileno=0)
    for n in range(1, 4):
        c, _ = s.accept()
        nonblock = int(bool(fcntl.fcntl(0, fcntl.F_GETFL) & os.O_NONBLOCK))
        c.sendall(f"{os.getpid()} {n} {nonblock}\n".encode())
        c.close()
except Exception:
    with open(sys.argv[1], "a") as f:
        traceback.print_exc(file=f)
    raise
"#;

/// Answers one datagram from the socket on fd 0 with `PID DATA`, then exits.
const ONE_SHOT_UDP: &str = r#"import os, socket, sys, traceback
try:
    s = socket.socket(fileno=0)
    data, peer = s.recvfrom(65536)
    s.sendto(str(os.getpid()).encode() + b" " + data, peer)
except Exception:
    with open(sys.argv[1], "a") as f:
        traceback.print_exc(file=f)
    raise
"#;

/// Answers one datagram with its PROTO environment variable.
const PROTO_UDP: &str = r#"import os, socket
s = socket.socket(fileno=0)
data, peer = s.recvfrom(65536)
s.sendto(os.environ.get("PROTO", "unset").encode(), peer)
"#;

fn python_service(
    name: &str,
    socket_type: &str,
    port: u16,
    script: &Path,
    errors: &Path,
) -> String {
    format!(
        "[service.{name}]\nsocket_type = \"{socket_type}\"\nwait = true\nuser = \"root\"\n\
         bind = \"127.0.0.1\"\nport = {port}\nserver = \"{PYTHON}\"\n\
         server_args = [\"{}\", \"{}\"]\n",
        script.display(),
        errors.display()
    )
}

/// The server's `(pid, count)` answer to a fresh connection; checks it got a blocking socket.
fn ask(port: u16, errors: &Path) -> (String, u32) {
    let reply = String::from_utf8_lossy(&tcp_request(v4(port), b"")).into_owned();
    let mut words = reply.split_whitespace();
    let (Some(pid), Some(count), Some(nonblock)) = (words.next(), words.next(), words.next())
    else {
        let errors = std::fs::read_to_string(errors).unwrap_or_default();
        panic!("bad reply {reply:?}; server errors:\n{errors}");
    };
    assert_eq!(
        nonblock, "0",
        "the server got a non-blocking listening socket"
    );
    (pid.to_owned(), count.parse().expect("count"))
}

#[test]
fn stream_wait_server_accepts_itself_and_is_replaced_after_exit() {
    let scripts = tempfile::tempdir().expect("temp dir");
    let script = write_script(scripts.path(), "accepter.py", ACCEPTER);
    let errors = scripts.path().join("errors");
    let port = free_port();
    let _daemon = Oxinetd::start(&python_service("acc", "stream", port, &script, &errors));

    let (first, n1) = ask(port, &errors);
    let (second, n2) = ask(port, &errors);
    assert_eq!((n1, n2), (1, 2), "one server should count the connections");
    assert_eq!(
        first, second,
        "sequential connections served by different servers"
    );
    let (third, n3) = ask(port, &errors);
    assert_eq!((third.as_str(), n3), (first.as_str(), 3));

    // That server has exited after its third connection: a new one takes over.
    let (fourth, n4) = ask(port, &errors);
    assert_ne!(fourth, first, "no new server after the first one exited");
    assert_eq!(n4, 1);
}

fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn stream_wait_server_exiting_at_once_is_backed_off() {
    let spin = free_port();
    let echo = free_port();
    let daemon = Oxinetd::start(&format!(
        "[service.spin]\nsocket_type = \"stream\"\nwait = true\nuser = \"root\"\n\
         bind = \"127.0.0.1\"\nport = {spin}\nserver = \"/bin/true\"\n\n\
         [service.echo]\ntype = \"INTERNAL\"\nsocket_type = \"stream\"\n\
         bind = \"127.0.0.1\"\nport = {echo}\n"
    ));
    // Never accepted by /bin/true, so it stays queued on the listener.
    let _queued = TcpStream::connect_timeout(&v4(spin), Duration::from_secs(5)).expect("connect");

    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(3) {
        let asked = Instant::now();
        assert_eq!(tcp_request(v4(echo), b"ping\n"), b"ping\n");
        let took = asked.elapsed();
        assert!(took < Duration::from_secs(1), "internal echo took {took:?}");
        let log = daemon.log();
        let spawns = count(&log, "START: spin").max(count(&log, "EXIT: spin"));
        assert!(spawns < 15, "{spawns} spawns of spin:\n{log}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = daemon.log();
    assert!(
        count(&log, "START: spin") + count(&log, "EXIT: spin") > 0,
        "spin was never started:\n{log}"
    );
}

#[test]
fn dgram_wait_burst_is_fully_answered_by_successive_servers() {
    let scripts = tempfile::tempdir().expect("temp dir");
    let script = write_script(scripts.path(), "one-shot.py", ONE_SHOT_UDP);
    let errors = scripts.path().join("errors");
    let port = free_port();
    let _daemon = Oxinetd::start(&python_service("burst", "dgram", port, &script, &errors));

    let client = UdpSocket::bind("127.0.0.1:0").expect("bind client");
    for i in 0..50 {
        client
            .send_to(format!("msg-{i}").as_bytes(), v4(port))
            .expect("send");
    }

    let deadline = Instant::now() + Duration::from_secs(10);
    let mut answered: HashMap<u32, String> = HashMap::new();
    let mut buf = [0u8; 1024];
    while answered.len() < 50 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let errors = std::fs::read_to_string(&errors).unwrap_or_default();
            panic!(
                "{} of 50 datagrams answered in 10 s; server errors:\n{errors}",
                answered.len()
            );
        }
        client.set_read_timeout(Some(left)).expect("timeout");
        let Ok(n) = client.recv(&mut buf) else {
            continue;
        };
        let reply = String::from_utf8_lossy(&buf[..n]).into_owned();
        let (pid, msg) = reply.split_once(' ').expect("`PID DATA` reply");
        let i = msg
            .strip_prefix("msg-")
            .expect("echoed data")
            .parse()
            .expect("index");
        answered.insert(i, pid.to_owned());
    }
    let servers: HashSet<&String> = answered.values().collect();
    assert!(
        servers.len() > 1,
        "one server answered everything: {servers:?}"
    );
}

#[test]
fn dgram_wait_server_gets_udp_environment() {
    let scripts = tempfile::tempdir().expect("temp dir");
    let script = write_script(scripts.path(), "proto.py", PROTO_UDP);
    let errors = scripts.path().join("errors");
    let port = free_port();
    let _daemon = Oxinetd::start(&python_service("proto", "dgram", port, &script, &errors));
    assert_eq!(udp_request(v4(port), b"x"), b"UDP");
}
