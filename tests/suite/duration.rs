//! `max_duration`: a server, a redirect relay or an internal session that lasts longer
//! is ended (a server with SIGTERM to its process group, then SIGKILL after
//! `shutdown_grace`; a relay or session by closing the connection), and the EXIT line
//! says so after its duration.
use crate::common;

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    IO_TIMEOUT, READY_TIMEOUT, Setup, read_line, read_to_eof, sh, tcp_connect, v4, wait_until,
};

const LOGGED: &str = "log_on_success = [\"PID\", \"EXIT\", \"DURATION\"]";

/// An exec'd service running `script` with `/bin/sh -c`.
fn server(script: &str) -> String {
    format!("user = \"root\"\n{}", sh(script))
}

/// The first log line holding `needle`.
fn line_with(log: &str, needle: &str) -> String {
    log.lines()
        .find(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?}; log:\n{log}"))
        .to_string()
}

/// The seconds of an EXIT line's `duration=N(sec)`.
fn duration_of(line: &str) -> u64 {
    let (_, after) = line
        .split_once("duration=")
        .unwrap_or_else(|| panic!("no duration in {line:?}"));
    let (seconds, _) = after.split_once("(sec)").expect("(sec)");
    seconds.parse().expect("seconds")
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet).
fn gone(pid: &str) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn a_server_past_max_duration_gets_sigterm_with_its_process_group() {
    let setup = Setup::new();
    let sleeper = setup.path("sleeper");
    // The shell waits for a child of its own: SIGTERM must reach the whole group.
    let script = format!("sleep 1000 & echo $! > {sleeper}; wait");
    let (daemon, port) =
        setup.start_service(&format!("{}max_duration = 1\n{LOGGED}", server(&script)));
    let started = Instant::now();
    let mut client = tcp_connect(v4(port));
    let log = daemon.wait_for_log("EXIT: svc signal=15");
    assert_eq!(read_to_eof(&mut client), b"");
    let exit = line_with(&log, "EXIT: svc");
    assert!(exit.ends_with(" max_duration"), "{exit}");
    let lived = duration_of(&exit);
    assert!((1..=3).contains(&lived), "{exit}");
    assert!(started.elapsed() >= Duration::from_millis(900));
    let said = line_with(&log, "its max_duration: SIGTERM");
    assert!(
        said.contains("service svc: pid=") && said.contains("ran 1 s"),
        "{said}"
    );
    let pid = fs::read_to_string(&sleeper).expect("the sleeper's pid");
    wait_until("the server's own child ends with it", READY_TIMEOUT, || {
        gone(pid.trim())
    });
    assert!(!log.contains("SIGKILL"), "{log}");
}

#[test]
fn a_server_ignoring_sigterm_is_killed_after_shutdown_grace() {
    let setup = Setup::new();
    // An ignored signal stays ignored across exec: sleep ignores SIGTERM too.
    let config = format!(
        "shutdown_grace = 1\n{}",
        setup.service(&format!(
            "{}max_duration = 1\n{LOGGED}",
            server("trap '' TERM; sleep 1000")
        ))
    );
    let (daemon, port) = setup.start(&config);
    let _client = tcp_connect(v4(port));
    let log = daemon.wait_for_log("EXIT: svc signal=9");
    let exit = line_with(&log, "EXIT: svc");
    assert!(exit.ends_with(" max_duration"), "{exit}");
    assert!((2..=4).contains(&duration_of(&exit)), "{exit}");
    line_with(&log, "its max_duration: SIGTERM");
    let killed = line_with(&log, "SIGKILL");
    assert!(
        killed.contains("WARN") && killed.contains("still runs 1 s after SIGTERM (max_duration)"),
        "{killed}"
    );
}

#[test]
fn a_wait_server_is_subject_to_max_duration_too() {
    let setup = Setup::new();
    let config = format!(
        "[service.svc]\nsocket_type = \"stream\"\nwait = true\nport = {}\n{}max_duration = 1\n{LOGGED}\n",
        setup.port,
        server("exec sleep 1000")
    );
    let (daemon, port) = setup.start(&config);
    // The connection waits in the queue of the socket the server holds and never takes.
    let _client = tcp_connect(v4(port));
    let log = daemon.wait_for_log("EXIT: svc signal=15");
    assert!(
        line_with(&log, "EXIT: svc").ends_with(" max_duration"),
        "{log}"
    );
}

#[test]
fn without_max_duration_a_server_runs_on() {
    let setup = Setup::new();
    let (daemon, port) = setup.start_service(&format!("{}{LOGGED}", server("sleep 1000")));
    let mut client = tcp_connect(v4(port));
    daemon.wait_for_log("START: svc");
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut byte = [0u8; 1];
    let read = client.read(&mut byte);
    assert!(read.is_err(), "the server ended: {read:?}");
    assert!(!daemon.log().contains("EXIT: svc"), "{}", daemon.log());
}

#[test]
fn an_internal_echo_session_is_closed_after_max_duration() {
    let setup = Setup::new();
    let config = format!(
        "[service.echo]\ntype = \"INTERNAL\"\nsocket_type = \"stream\"\nwait = false\n\
         port = {}\nmax_duration = 1\n{LOGGED}\n",
        setup.port
    );
    let (daemon, port) = setup.start(&config);
    let started = Instant::now();
    let mut client = tcp_connect(v4(port));
    client.write_all(b"still here\n").unwrap();
    assert_eq!(read_line(&mut client), "still here\n");
    assert_eq!(read_to_eof(&mut client), b"");
    let closed = started.elapsed();
    assert!(
        closed >= Duration::from_millis(900) && closed < IO_TIMEOUT,
        "closed after {closed:?}, want about 1 s"
    );
    let log = daemon.wait_for_log("EXIT: echo");
    let exit = line_with(&log, "EXIT: echo");
    assert!(
        exit.contains("status=0") && exit.ends_with(" max_duration"),
        "{exit}"
    );
    assert!((1..=3).contains(&duration_of(&exit)), "{exit}");
    let said = line_with(&log, "closing the connection from");
    assert!(
        said.contains("service echo: ") && said.ends_with("after 1 s, its max_duration"),
        "{said}"
    );
}

#[test]
fn a_redirect_relay_is_closed_after_max_duration() {
    let upstream = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind upstream");
    let target = upstream.local_addr().unwrap().port();
    // An echoing upstream that never closes on its own.
    let echo = thread::spawn(move || {
        let (mut stream, _) = upstream.accept().expect("accept the relay");
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut buffer = [0u8; 64];
        loop {
            match stream.read(&mut buffer) {
                Ok(0) | Err(_) => return,
                Ok(n) => stream.write_all(&buffer[..n]).unwrap(),
            }
        }
    });
    let setup = Setup::new();
    let (daemon, port) = setup.start_service(&format!(
        "redirect = \"127.0.0.1 {target}\"\nmax_duration = 1\n\
         log_on_success = [\"EXIT\", \"DURATION\", \"TRAFFIC\"]"
    ));
    let started = Instant::now();
    let mut client: TcpStream = tcp_connect(v4(port));
    client.write_all(b"ping\n").unwrap();
    assert_eq!(read_line(&mut client), "ping\n");
    assert_eq!(read_to_eof(&mut client), b"");
    // Well before the 10 s connect timeout, the relay's other deadline.
    let closed = started.elapsed();
    assert!(
        closed >= Duration::from_millis(900) && closed < Duration::from_secs(5),
        "closed after {closed:?}, want about 1 s"
    );
    // The upstream side is closed too.
    echo.join().unwrap();
    let log = daemon.wait_for_log("EXIT: svc");
    let exit = line_with(&log, "EXIT: svc");
    assert!(exit.ends_with(" max_duration"), "{exit}");
    line_with(&log, "TRAFFIC: svc in=5(bytes) out=5(bytes)");
}
