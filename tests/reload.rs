//! SIGHUP reload: what changes, what is kept, and what survives a bad new configuration.

mod common;

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;

use common::{Oxinetd, free_port, tcp_request, v4, wait_until, write_script};

/// Reads one line, then answers with its first argument and that line.
const ECHO_LINE: &str = "#!/bin/sh\nread -r line\necho \"$1 $line\"\n";

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    stream
}

/// Sends `input`, shuts the write side and reads the reply to EOF.
fn finish(mut stream: TcpStream, input: &[u8]) -> String {
    stream.write_all(input).expect("write");
    stream.shutdown(Shutdown::Write).expect("shutdown");
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).expect("read reply");
    String::from_utf8_lossy(&reply).into_owned()
}

fn request(port: u16, input: &str) -> String {
    String::from_utf8_lossy(&tcp_request(v4(port), input.as_bytes())).into_owned()
}

fn assert_refused(addr: SocketAddr) {
    match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
        Err(e) => panic!("connect {addr}: expected refused, got {e}"),
        Ok(_) => panic!("connect {addr}: expected refused, but it was accepted"),
    }
}

/// Sends SIGHUP, waits for the outcome and returns the newest outcome line.
fn reload(daemon: &Oxinetd) -> String {
    daemon.reload();
    outcome(&daemon.log())
}

/// The newest `reload: done` or `reload: failed` line.
fn outcome(log: &str) -> String {
    let line = log
        .lines()
        .rfind(|l| l.contains("reload: done") || l.contains("reload: failed"));
    line.unwrap_or_else(|| panic!("no reload outcome in log:\n{log}"))
        .to_owned()
}

fn last_line(log: &str, needle: &str) -> String {
    let line = log.lines().rfind(|l| l.contains(needle));
    line.unwrap_or_else(|| panic!("no {needle:?} in log:\n{log}"))
        .to_owned()
}

fn internal_echo(name: &str, port: u16) -> String {
    format!(
        "[[service.echo]]\ntype = \"INTERNAL\"\nid = \"{name}\"\nsocket_type = \"stream\"\n\
         bind = \"127.0.0.1\"\nport = {port}\n\n"
    )
}

/// An echo-line exec'd service named `name` answering with `arg` first.
fn exec_service(name: &str, port: u16, script: &Path, arg: &str) -> String {
    format!(
        "[service.{name}]\nsocket_type = \"stream\"\nwait = false\nuser = \"root\"\n\
         bind = \"127.0.0.1\"\nserver = \"{}\"\nserver_args = [\"{arg}\"]\nport = {port}\n\n",
        script.display()
    )
}

#[test]
fn live_connection_survives_reload_and_new_args_apply() {
    let scripts = tempfile::tempdir().expect("temp dir");
    let script = write_script(scripts.path(), "echo-line", ECHO_LINE);
    let port = free_port();
    let daemon = Oxinetd::start(&exec_service("svc", port, &script, "old"));
    let held = connect(v4(port));
    daemon.wait_for_log("START: svc");

    daemon.write_config(&exec_service("svc", port, &script, "new"));
    let line = reload(&daemon);
    assert!(line.contains("reload: done"), "reload: {line}");

    assert_eq!(finish(held, b"first\n"), "old first\n");
    assert_eq!(request(port, "second\n"), "new second\n");
}

#[test]
fn added_service_starts_serving() {
    let first = free_port();
    let second = free_port();
    let daemon = Oxinetd::start(&internal_echo("echo", first));
    assert_refused(v4(second));

    daemon.write_config(&format!(
        "{}{}",
        internal_echo("echo", first),
        internal_echo("added", second)
    ));
    let line = reload(&daemon);
    assert!(line.contains("reload: done"), "reload: {line}");
    assert_eq!(request(second, "hi\n"), "hi\n");
    assert_eq!(request(first, "still\n"), "still\n");
}

#[test]
fn removed_service_refuses_but_its_running_server_finishes() {
    let scripts = tempfile::tempdir().expect("temp dir");
    let script = write_script(scripts.path(), "echo-line", ECHO_LINE);
    let keep = free_port();
    let gone = free_port();
    let daemon = Oxinetd::start(&format!(
        "{}{}",
        internal_echo("echo", keep),
        exec_service("gone", gone, &script, "late")
    ));
    let held = connect(v4(gone));
    daemon.wait_for_log("START: gone");

    daemon.write_config(&internal_echo("echo", keep));
    let line = reload(&daemon);
    assert!(line.contains("reload: done"), "reload: {line}");

    assert_refused(v4(gone));
    assert_eq!(finish(held, b"reply\n"), "late reply\n");
    daemon.wait_for_log("EXIT: gone");
    assert_eq!(request(keep, "ok\n"), "ok\n");
}

#[test]
fn invalid_new_definition_keeps_the_old_one() {
    let scripts = tempfile::tempdir().expect("temp dir");
    let script = write_script(scripts.path(), "echo-line", ECHO_LINE);
    let port = free_port();
    let daemon = Oxinetd::start(&exec_service("svc", port, &script, "old"));
    assert_eq!(request(port, "a\n"), "old a\n");

    let broken = exec_service("svc", port, &script, "new")
        .replace("wait = false\n", "wait = false\nbogus_key = 1\n");
    daemon.write_config(&broken);
    reload(&daemon);
    let log = daemon.wait_for_log("service svc: key bogus_key");
    let error = last_line(&log, "service svc: key bogus_key");
    let path = daemon.config_path().display().to_string();
    assert!(error.contains(&path), "error does not name {path}: {error}");
    assert_eq!(request(port, "b\n"), "old b\n");
}

#[test]
fn syntax_error_in_main_file_keeps_everything_running() {
    let scripts = tempfile::tempdir().expect("temp dir");
    let script = write_script(scripts.path(), "echo-line", ECHO_LINE);
    let echo = free_port();
    let exec = free_port();
    let daemon = Oxinetd::start(&format!(
        "{}{}",
        internal_echo("echo", echo),
        exec_service("svc", exec, &script, "v")
    ));

    daemon.write_config("[service.echo\nport = = 7\n");
    let line = reload(&daemon);
    assert!(line.contains("reload: failed"), "reload: {line}");
    assert_eq!(request(echo, "still\n"), "still\n");
    assert_eq!(request(exec, "here\n"), "v here\n");
}

#[test]
fn changed_port_moves_the_service() {
    let old = free_port();
    let new = free_port();
    let daemon = Oxinetd::start(&internal_echo("echo", old));
    assert_eq!(request(old, "a\n"), "a\n");

    daemon.write_config(&internal_echo("echo", new));
    let line = reload(&daemon);
    assert!(line.contains("reload: done"), "reload: {line}");
    assert_refused(v4(old));
    assert_eq!(request(new, "b\n"), "b\n");
}

#[test]
fn relative_includedir_resolves_from_the_main_file_on_reload() {
    // The harness runs the daemon in DIR; the configuration lives in DIR/etc and is named
    // by a relative path, so resolving `conf.d` against the cwd would find nothing.
    let dir = common::tempdir();
    let first = free_port();
    let second = free_port();
    let etc = dir.path().join("etc");
    fs::create_dir_all(etc.join("conf.d")).expect("mkdir");
    fs::write(etc.join("oxinetd.toml"), "includedir = \"conf.d\"\n").expect("write main");
    let included = etc.join("conf.d/services.toml");
    fs::write(&included, internal_echo("first", first)).expect("write include");

    let daemon = Oxinetd::start_in(dir, &["-f", "etc/oxinetd.toml"]);
    let cwd = fs::read_link(format!("/proc/{}/cwd", daemon.pid())).expect("daemon cwd");
    assert_ne!(
        cwd, etc,
        "precondition: the daemon must run outside the config dir"
    );
    assert_eq!(request(first, "a\n"), "a\n");

    fs::write(
        &included,
        format!(
            "{}{}",
            internal_echo("first", first),
            internal_echo("second", second)
        ),
    )
    .expect("rewrite include");
    let line = reload(&daemon);
    assert!(line.contains("reload: done"), "reload: {line}");
    assert_eq!(request(second, "b\n"), "b\n");
    assert_eq!(request(first, "c\n"), "c\n");
}

/// Inodes of the listening TCP sockets on `port` (IPv4 and IPv6 tables).
fn listener_inodes(port: u16) -> Vec<String> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for row in text.lines().skip(1) {
            let fields: Vec<&str> = row.split_whitespace().collect();
            let local_port = fields[1].rsplit(':').next().expect("port field");
            let listening = fields[3] == "0A";
            if listening && u16::from_str_radix(local_port, 16) == Ok(port) {
                inodes.push(fields[9].to_owned());
            }
        }
    }
    inodes.sort();
    inodes
}

fn process_state(pid: &str) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

#[test]
fn unchanged_service_keeps_its_listening_socket() {
    let port = free_port();
    let other = free_port();
    let daemon = Oxinetd::start(&internal_echo("echo", port));
    let before = listener_inodes(port);
    assert!(!before.is_empty(), "no listener found on port {port}");

    // A connection accepted before the reload and used after it.
    let mut accepted = connect(v4(port));
    accepted.write_all(b"one\n").expect("write");
    let mut buf = [0u8; 4];
    accepted.read_exact(&mut buf).expect("echo before reload");
    assert_eq!(&buf, b"one\n");

    // A connection the kernel queued while the daemon could not accept it.
    let pid = daemon.pid().to_string();
    daemon.signal(Signal::SIGSTOP);
    wait_until("daemon stopped", Duration::from_secs(5), || {
        process_state(&pid) == Some('T')
    });
    let queued = connect(v4(port));
    daemon.write_config(&format!(
        "{}{}",
        internal_echo("echo", port),
        internal_echo("other", other)
    ));
    daemon.signal(Signal::SIGHUP);
    daemon.signal(Signal::SIGCONT);
    wait_until("reload outcome", Duration::from_secs(10), || {
        let log = daemon.log();
        log.contains("reload: done") || log.contains("reload: failed")
    });
    let line = outcome(&daemon.log());
    assert!(line.contains("reload: done"), "reload: {line}");

    assert_eq!(
        listener_inodes(port),
        before,
        "listening socket was replaced"
    );
    assert_eq!(finish(accepted, b"two\n"), "two\n");
    assert_eq!(finish(queued, b"queued\n"), "queued\n");
    assert_eq!(request(other, "new\n"), "new\n");
}
