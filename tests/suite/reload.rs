//! SIGHUP reload: what changes, what is kept, and what survives a bad new configuration.

use crate::common;

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;

use common::{Oxinetd, free_port, tcp_request, v4, v6, wait_until, write_script};

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

/// An internal echo service on `bind` and `port`, with `extra` lines (socket options).
fn echo_with(bind: &str, port: u16, extra: &str) -> String {
    format!(
        "[service.echo]\ntype = \"INTERNAL\"\nsocket_type = \"stream\"\n\
         bind = \"{bind}\"\nport = {port}\n{extra}"
    )
}

/// One echo round trip on a connection that stays open.
fn echo_round_trip(stream: &mut TcpStream, line: &str) {
    stream.write_all(line.as_bytes()).expect("write");
    let mut reply = vec![0u8; line.len()];
    stream.read_exact(&mut reply).expect("echo reply");
    assert_eq!(String::from_utf8_lossy(&reply), line);
}

/// The `(local port, remote port, state, inode)` of every TCP socket (IPv4 and IPv6).
fn tcp_sockets() -> Vec<(u16, u16, String, String)> {
    let port = |field: &str| {
        let hex = field.rsplit(':').next().expect("port field");
        u16::from_str_radix(hex, 16).expect("hex port")
    };
    let mut sockets = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for row in text.lines().skip(1) {
            let fields: Vec<&str> = row.split_whitespace().collect();
            sockets.push((
                port(fields[1]),
                port(fields[2]),
                fields[3].to_owned(),
                fields[9].to_owned(),
            ));
        }
    }
    sockets
}

/// A copy of the daemon's own fd for the socket with `inode` (pidfd_getfd: the test
/// runs as the daemon's user and is its parent).
fn daemon_socket(daemon: &Oxinetd, inode: &str) -> OwnedFd {
    let target = format!("socket:[{inode}]");
    let fd_dir = format!("/proc/{}/fd", daemon.pid());
    let number: i32 = fs::read_dir(&fd_dir)
        .expect("daemon fds")
        .filter_map(Result::ok)
        .find(|entry| {
            fs::read_link(entry.path()).is_ok_and(|link| link.as_os_str() == target.as_str())
        })
        .and_then(|entry| entry.file_name().to_str()?.parse().ok())
        .unwrap_or_else(|| panic!("the daemon holds no {target}"));
    // SAFETY: plain system calls on integers; the fd returned is new and ours.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, daemon.pid(), 0) as i32;
        assert!(
            pidfd >= 0,
            "pidfd_open: {}",
            std::io::Error::last_os_error()
        );
        let fd = libc::syscall(libc::SYS_pidfd_getfd, pidfd, number, 0) as i32;
        let error = std::io::Error::last_os_error();
        libc::close(pidfd);
        assert!(fd >= 0, "pidfd_getfd: {error}");
        OwnedFd::from_raw_fd(fd)
    }
}

/// The daemon's listening socket on `port`.
fn daemon_listener(daemon: &Oxinetd, port: u16) -> OwnedFd {
    let inodes = listener_inodes(port);
    assert_eq!(inodes.len(), 1, "listeners on port {port}: {inodes:?}");
    daemon_socket(daemon, &inodes[0])
}

/// The daemon's end of `client`, a connection to its service on `port`.
fn daemon_end(daemon: &Oxinetd, port: u16, client: &TcpStream) -> OwnedFd {
    let client_port = client.local_addr().expect("client address").port();
    let (_, _, _, inode) = tcp_sockets()
        .into_iter()
        .find(|(local, remote, _, _)| *local == port && *remote == client_port)
        .unwrap_or_else(|| panic!("no daemon socket for the client port {client_port}"));
    daemon_socket(daemon, &inode)
}

fn int_option(socket: &OwnedFd, level: i32, name: i32) -> i32 {
    let mut value: libc::c_int = 0;
    let mut length = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `length` bytes into `value`.
    let result = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut length,
        )
    };
    assert_eq!(result, 0, "getsockopt: {}", std::io::Error::last_os_error());
    value
}

/// A listener's backlog: TCP_INFO reports it as `tcpi_sacked` for listening sockets.
fn backlog(listener: &OwnedFd) -> u32 {
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut length = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `length` bytes into `info`.
    let result = unsafe {
        libc::getsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut length,
        )
    };
    assert_eq!(result, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
    info.tcpi_sacked
}

/// Starts an echo service with `before`, holds a connection, reloads with `after` (one
/// option changed) and checks the change was made on the live listener: same socket,
/// the held connection still echoes, a new one is served, no bind was tried. Returns
/// the daemon, the held connection and a connection accepted after the reload.
fn adjust_in_place(before: &str, after: &str) -> (Oxinetd, u16, TcpStream, TcpStream) {
    let port = free_port();
    let daemon = Oxinetd::start(&echo_with("127.0.0.1", port, before));
    let mut held = connect(v4(port));
    echo_round_trip(&mut held, "before\n");
    let listener = listener_inodes(port);
    assert_eq!(listener.len(), 1, "listeners on {port}: {listener:?}");

    daemon.write_config(&echo_with("127.0.0.1", port, after));
    let line = reload(&daemon);
    assert!(line.contains("reload: done (1 services)"), "reload: {line}");
    let log = daemon.log();
    assert!(
        log.contains("service echo: listening socket adjusted in place"),
        "log:\n{log}"
    );
    assert!(!log.contains("Address already in use"), "log:\n{log}");
    assert!(!log.contains("cannot listen"), "log:\n{log}");
    assert_eq!(listener_inodes(port), listener, "the listener was replaced");

    echo_round_trip(&mut held, "after\n");
    let mut fresh = connect(v4(port));
    echo_round_trip(&mut fresh, "fresh\n");
    (daemon, port, held, fresh)
}

#[test]
fn changed_backlog_is_set_on_the_live_listener() {
    let (daemon, port, held, fresh) = adjust_in_place("backlog = 16\n", "backlog = 5\n");
    assert_eq!(backlog(&daemon_listener(&daemon, port)), 5);
    assert_eq!(finish(held, b"held\n"), "held\n");
    assert_eq!(finish(fresh, b"fresh again\n"), "fresh again\n");
}

#[test]
fn added_nodelay_applies_to_connections_accepted_after_the_reload() {
    let (daemon, port, held, fresh) = adjust_in_place("", "flags = [\"NODELAY\"]\n");
    let nodelay = |stream| {
        let socket = daemon_end(&daemon, port, stream);
        int_option(&socket, libc::IPPROTO_TCP, libc::TCP_NODELAY)
    };
    assert_eq!(nodelay(&held), 0, "the held connection keeps its options");
    assert_ne!(nodelay(&fresh), 0, "a new connection has TCP_NODELAY");
    assert_eq!(finish(held, b"held\n"), "held\n");
}

#[test]
fn removed_keepalive_applies_to_connections_accepted_after_the_reload() {
    let (daemon, port, held, fresh) = adjust_in_place("flags = [\"KEEPALIVE\"]\n", "");
    let keepalive = |stream| {
        let socket = daemon_end(&daemon, port, stream);
        int_option(&socket, libc::SOL_SOCKET, libc::SO_KEEPALIVE)
    };
    assert_ne!(keepalive(&held), 0, "the held connection keeps its options");
    assert_eq!(keepalive(&fresh), 0, "a new connection has no SO_KEEPALIVE");
    assert_eq!(finish(held, b"held\n"), "held\n");
}

#[test]
fn changed_v6only_rebinds_the_same_port_and_keeps_live_connections() {
    let port = free_port();
    let daemon = Oxinetd::start(&echo_with("::", port, "v6only = false\n"));
    // IPv4 reaches the dual-stack socket.
    let mut held = connect(v4(port));
    echo_round_trip(&mut held, "before\n");
    let listener = listener_inodes(port);

    daemon.write_config(&echo_with("::", port, "v6only = true\n"));
    let line = reload(&daemon);
    assert!(line.contains("reload: done (1 services)"), "reload: {line}");
    let log = daemon.log();
    assert!(!log.contains("Address already in use"), "log:\n{log}");
    assert!(log.contains("could be bound anew"), "log:\n{log}");
    assert_ne!(listener_inodes(port), listener, "v6only needs a new socket");

    echo_round_trip(&mut held, "after\n");
    assert_eq!(tcp_request(v6(port), b"six\n"), b"six\n");
    assert_refused(v4(port));
    assert_eq!(finish(held, b"held\n"), "held\n");
}

#[test]
fn rebind_that_cannot_listen_keeps_the_old_socket_and_definition() {
    let port = free_port();
    let daemon = Oxinetd::start(&echo_with("::", port, "v6only = true\n"));
    let mut held = connect(v6(port));
    echo_round_trip(&mut held, "before\n");
    // Another program on the IPv4 side of the port: the dual-stack socket cannot listen.
    let blocker = TcpListener::bind(v4(port)).expect("bind the IPv4 side");

    daemon.write_config(&echo_with("::", port, "v6only = false\n"));
    let line = reload(&daemon);
    assert!(line.contains("reload: done (1 services)"), "reload: {line}");
    let log = daemon.log();
    let failure = last_line(&log, "keeping the previous definition");
    assert!(
        failure.contains(&format!(
            "cannot listen on [::]:{port}: Address already in use"
        )),
        "{failure}"
    );

    echo_round_trip(&mut held, "after\n");
    assert_eq!(tcp_request(v6(port), b"old socket\n"), b"old socket\n");
    drop(blocker);
    assert_refused(v4(port));

    // The old definition stayed, so the same configuration is a change to apply again.
    let line = reload(&daemon);
    assert!(line.contains("reload: done (1 services)"), "reload: {line}");
    assert_eq!(tcp_request(v4(port), b"four\n"), b"four\n");
    assert_eq!(tcp_request(v6(port), b"six\n"), b"six\n");
    assert_eq!(finish(held, b"held\n"), "held\n");
}
