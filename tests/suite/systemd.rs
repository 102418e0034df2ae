//! oxinetd under systemd: what systemd hands the daemon stays the daemon's.
use crate::common;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::{IO_TIMEOUT, Launch, Setup, tcp_request, v4};
use nix::sys::signal::Signal;

/// The next notification from the daemon that is not a watchdog ping.
fn next_state(systemd: &UnixDatagram) -> String {
    loop {
        let state = receive(systemd);
        if state != "WATCHDOG=1" {
            return state;
        }
    }
}

fn receive(systemd: &UnixDatagram) -> String {
    let mut buffer = [0u8; 4096];
    let length = systemd
        .recv(&mut buffer)
        .expect("a notification within the timeout");
    String::from_utf8(buffer[..length].to_vec()).unwrap()
}

/// CLOCK_MONOTONIC in microseconds, the clock of `MONOTONIC_USEC`.
fn monotonic_usec() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: the pointer is to a live local.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1000
}

/// The whole readiness protocol as systemd's `Type=notify-reload` sees it: READY=1 with
/// a status once the service listens and the pidfile exists, RELOADING=1 with the
/// monotonic time then READY=1 at SIGHUP (also when the reload is refused), watchdog
/// pings every half WATCHDOG_USEC, STOPPING=1 at SIGTERM.
#[test]
fn systemd_hears_ready_reloading_watchdog_and_stopping() {
    let setup = Setup::new();
    let socket_path = setup.path("notify");
    let systemd = UnixDatagram::bind(&socket_path).unwrap();
    systemd.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let pid = std::process::id().to_string();
    let launch = Launch {
        env: vec![
            ("NOTIFY_SOCKET", &socket_path),
            ("WATCHDOG_USEC", "200000"),
            ("WATCHDOG_PID", &pid),
        ],
        ..Launch::default()
    };
    let pidfile = setup.path("oxinetd.pid");
    let (daemon, port) = setup.start_service_with(
        "server = \"/bin/echo\"\nserver_args = [\"hello\"]\nuser = \"root\"\n",
        launch,
    );
    let ready = next_state(&systemd);
    assert_eq!(ready, "READY=1\nSTATUS=1 services, 0 servers running");
    assert!(
        std::path::Path::new(&pidfile).exists(),
        "pidfile before READY=1"
    );
    assert_eq!(tcp_request(v4(port), b""), b"hello\n");

    // WATCHDOG_PID names the test, not the daemon: no pings.
    systemd
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    assert!(
        systemd.recv(&mut [0u8; 64]).is_err(),
        "a ping for another pid's watchdog"
    );
    systemd.set_read_timeout(Some(IO_TIMEOUT)).unwrap();

    let before = monotonic_usec();
    daemon.reload();
    let reloading = next_state(&systemd);
    let usec: u64 = reloading
        .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
        .unwrap_or_else(|| panic!("{reloading:?}"))
        .parse()
        .unwrap();
    assert!(
        before <= usec && usec <= monotonic_usec(),
        "{usec} not between"
    );
    assert_eq!(
        next_state(&systemd),
        "READY=1\nSTATUS=1 services, 0 servers running"
    );

    // A refused reload is a reload too: systemd must not wait for it forever.
    daemon.write_config("this is not toml");
    daemon.reload();
    assert!(next_state(&systemd).starts_with("RELOADING=1\n"));
    assert!(next_state(&systemd).starts_with("READY=1\n"));

    daemon.signal(Signal::SIGTERM);
    assert_eq!(next_state(&systemd), "STOPPING=1");
}

/// With the watchdog its own (WATCHDOG_PID unset), the daemon pings every half
/// WATCHDOG_USEC, to an abstract socket as systemd's own is.
#[test]
fn the_watchdog_is_pinged_every_half_interval_on_an_abstract_socket() {
    use std::os::linux::net::SocketAddrExt;
    let setup = Setup::new();
    let name = format!("oxinetd-test-notify-{}-{}", std::process::id(), setup.port);
    let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let systemd = UnixDatagram::bind_addr(&address).unwrap();
    systemd.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let value = format!("@{name}");
    let launch = Launch {
        env: vec![("NOTIFY_SOCKET", &value), ("WATCHDOG_USEC", "400000")],
        ..Launch::default()
    };
    let (_daemon, _) =
        setup.start_service_with("server = \"/bin/true\"\nuser = \"root\"\n", launch);
    assert!(receive(&systemd).starts_with("READY=1\n"));
    let start = Instant::now();
    for _ in 0..3 {
        assert_eq!(receive(&systemd), "WATCHDOG=1");
    }
    // Three pings 200 ms apart (the first 200 ms after READY=1): not sooner. That it is
    // half the interval and not all of it is `notify`'s unit test.
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(550), "{took:?}");
}

/// `NOTIFY_SOCKET`, `WATCHDOG_*` and `LISTEN_*` are meant for oxinetd: a server that
/// inherited `NOTIFY_SOCKET` could report oxinetd ready or stopping in its name.
#[test]
fn servers_never_see_the_variables_systemd_gave_the_daemon() {
    let setup = Setup::new();
    let launch = Launch {
        env: vec![
            ("NOTIFY_SOCKET", "@oxinetd-test-nobody-listens"),
            ("WATCHDOG_USEC", "60000000"),
            ("WATCHDOG_PID", "1"),
            ("LISTEN_PID", "1"),
            ("LISTEN_FDS", "1"),
            ("LISTEN_FDNAMES", "svc"),
            ("OXI_KEPT", "1"),
        ],
        ..Launch::default()
    };
    let (_daemon, port) = setup.start_service_with(
        "user = \"root\"\nserver = \"/usr/bin/env\"\npassenv = [\"NOTIFY_SOCKET\", \"LISTEN_FDS\", \"OXI_KEPT\"]\n",
        launch,
    );
    let out = String::from_utf8(tcp_request(v4(port), b"")).unwrap();
    let names: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, _)| k)
        .collect();
    assert!(names.contains(&"OXI_KEPT"), "{out}");
    for variable in [
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
        "LISTEN_PID",
        "LISTEN_FDS",
        "LISTEN_FDNAMES",
    ] {
        assert!(
            !names.contains(&variable),
            "{variable} reached the server:\n{out}"
        );
    }
}

const ECHO_HI: &str = "user = \"root\"\nserver = \"/bin/echo\"\nserver_args = [\"hi\"]\n";

/// Starts `service(body)` under `systemd-socket-activate ACTIVATE...`, which binds the
/// sockets and execs oxinetd (same pid, so `LISTEN_PID` is oxinetd's) only at the first
/// connection: a client connects to `first` meanwhile. The daemon and that client's
/// answer; `None` when systemd-socket-activate is missing (skipped).
fn start_activated(
    setup: Setup,
    body: &str,
    activate: &[&str],
    first: std::net::SocketAddr,
) -> Option<(common::Oxinetd, Vec<u8>)> {
    if !common::have("systemd-socket-activate") {
        common::skip("systemd-socket-activate (package systemd) is not installed");
        return None;
    }
    let client = std::thread::spawn(move || tcp_request(first, b""));
    let mut wrapper = vec!["systemd-socket-activate"];
    wrapper.extend_from_slice(activate);
    let (daemon, _) = setup.start_service_with(
        body,
        Launch {
            wrapper,
            ..Launch::default()
        },
    );
    Some((daemon, client.join().unwrap()))
}

fn refused(port: u16) -> bool {
    std::net::TcpStream::connect(v4(port))
        .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
}

/// A socket named after a service is that service's, wherever it listens: the configured
/// port is never bound, a reload that changes it keeps the socket (and says so), and a
/// reload that removes the service keeps it open for the reload that brings it back.
#[test]
fn a_socket_from_systemd_named_after_a_service_is_its_listener() {
    let setup = Setup::new();
    let configured = setup.port;
    let handed = common::free_port();
    let listen = format!("--listen=127.0.0.1:{handed}");
    let Some((daemon, first)) =
        start_activated(setup, ECHO_HI, &[&listen, "--fdname=svc"], v4(handed))
    else {
        return;
    };
    assert_eq!(first, b"hi\n");
    daemon.wait_for_log(&format!(
        "service svc: listening on the socket systemd handed over (fd 3 \"svc\" stream 127.0.0.1:{handed})"
    ));
    assert!(refused(configured), "the configured port was bound too");

    let moved = common::free_port();
    let config = |port: u16| {
        format!("[service.svc]\nsocket_type = \"stream\"\nwait = false\nport = {port}\n{ECHO_HI}")
    };
    daemon.write_config(&config(moved));
    daemon.reload();
    daemon.wait_for_log(
        "service svc: listens on the socket systemd handed over, whose address cannot change",
    );
    assert_eq!(tcp_request(v4(handed), b""), b"hi\n");
    assert!(refused(moved), "a reload re-bound the handed-over service");

    // Removed: the socket stays open (a client's connection waits in its queue) ...
    daemon.write_config("");
    daemon.reload();
    let mut waiting = common::tcp_connect(v4(handed));
    // ... and the service that comes back serves it.
    daemon.write_config(&config(configured));
    daemon.reload();
    assert_eq!(common::read_to_eof(&mut waiting), b"hi\n");
    assert!(refused(configured));
}

/// A socket without a name goes to the service of its type, address and port, which
/// would otherwise fail to bind it (systemd holds it).
#[test]
fn a_socket_from_systemd_without_a_name_goes_to_the_service_on_its_address() {
    let setup = Setup::new();
    let port = setup.port;
    let listen = format!("--listen=127.0.0.1:{port}");
    let body = format!("bind = \"127.0.0.1\"\n{ECHO_HI}");
    let Some((daemon, first)) = start_activated(setup, &body, &[&listen], v4(port)) else {
        return;
    };
    assert_eq!(first, b"hi\n");
    let log = daemon
        .wait_for_log("service svc: listening on the socket systemd handed over (fd 3 stream");
    assert!(!log.contains("cannot listen"), "{log}");
    assert_eq!(tcp_request(v4(port), b""), b"hi\n");
}

/// A socket no service claims is logged and closed; the one a service claims serves.
#[test]
fn a_socket_from_systemd_that_no_service_claims_is_closed() {
    let setup = Setup::new();
    let port = setup.port;
    let stray = common::free_port();
    let (listen_stray, listen) = (
        format!("--listen=127.0.0.1:{stray}"),
        format!("--listen=127.0.0.1:{port}"),
    );
    let body = format!("bind = \"127.0.0.1\"\n{ECHO_HI}");
    let Some((daemon, first)) = start_activated(
        setup,
        &body,
        &[&listen_stray, &listen, "--fdname=stray:svc"],
        v4(port),
    ) else {
        return;
    };
    assert_eq!(first, b"hi\n");
    daemon.wait_for_log(&format!(
        "systemd socket fd 3 \"stray\" stream 127.0.0.1:{stray}: no service claims it; closed"
    ));
    daemon.wait_for_log("(fd 4 \"svc\" stream");
    assert!(refused(stray), "the unclaimed socket still listens");
}

const PROXYD: &str = "/usr/lib/systemd/systemd-socket-proxyd";

/// `listen_fds = true` with a real socket-activated program: systemd-socket-proxyd as a
/// `wait` server accepts on fd 3 (it checks LISTEN_PID and LISTEN_FDS) and relays to a
/// backend: client -> oxinetd's port -> proxyd -> the test's echo backend.
#[test]
fn systemd_socket_proxyd_serves_as_a_socket_activated_wait_server() {
    if !std::path::Path::new(PROXYD).exists() {
        common::skip("systemd-socket-proxyd (package systemd) is not installed");
        return;
    }
    let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let backend_port = backend.local_addr().unwrap().port();
    let echo = std::thread::spawn(move || {
        for _ in 0..2 {
            let (mut stream, _) = backend.accept().unwrap();
            std::thread::spawn(move || {
                let mut reader = stream.try_clone().unwrap();
                let _ = std::io::copy(&mut reader, &mut stream);
            });
        }
    });
    let setup = Setup::new();
    let body = format!(
        "wait = true\nlisten_fds = true\nuser = \"root\"\nserver = \"{PROXYD}\"\n\
         server_args = [\"127.0.0.1:{backend_port}\"]\n"
    );
    let config = setup.service(&body).replace("wait = false\n", "");
    let (daemon, port) = setup.start(&config);
    for word in ["ping", "pong"] {
        let mut client = common::tcp_connect(v4(port));
        std::io::Write::write_all(&mut client, format!("{word}\n").as_bytes()).unwrap();
        assert_eq!(common::read_line(&mut client), format!("{word}\n"));
    }
    // One proxyd served both connections on the listener it was handed.
    assert_eq!(
        common::count_lines(&daemon.log(), "START: svc"),
        1,
        "{}",
        daemon.log()
    );
    echo.join().unwrap();
}

/// A `listen_fds` server of a `wait = false` service sees what systemd's socket
/// activation gives: its own pid in LISTEN_PID, LISTEN_FDS=1, LISTEN_FDNAMES the id, the
/// connection on fd 3 and nothing else above 2, stdin /dev/null, and stdout and stderr
/// the daemon's own (here the log file, which the server's lines go to unescaped).
#[test]
fn a_listen_fds_server_gets_the_connection_on_fd_3_and_its_own_pid() {
    let setup = Setup::new();
    let script = setup.script(
        "activated.sh",
        "#!/bin/sh\n\
         echo \"lfd: pid=$LISTEN_PID self=$$ fds=$LISTEN_FDS names=$LISTEN_FDNAMES\"\n\
         fds=; for fd in 0 1 2 3 4 5 6 7 8 9; do [ -e /proc/$$/fd/$fd ] && fds=\"$fds $fd\"; done\n\
         echo \"lfd: open:$fds\"\n\
         echo \"lfd: stdin=$(readlink /proc/$$/fd/0) out=$(readlink /proc/$$/fd/1)\"\n\
         echo \"lfd: 3=$(readlink /proc/$$/fd/3)\" >&2\n\
         echo served >&3\n",
    );
    let log_path = setup.path("oxinetd.log");
    let body =
        format!("user = \"root\"\nid = \"activated\"\nlisten_fds = true\nserver = \"{script}\"\n");
    let (daemon, port) = setup.start_service(&body);
    assert_eq!(tcp_request(v4(port), b""), b"served\n");
    let log = daemon.wait_for_log("lfd: 3=");
    let line = |prefix: &str| {
        log.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in\n{log}"))
            .to_string()
    };
    let ids = line("lfd: pid=");
    let (pid, rest) = ids.split_once(" self=").unwrap();
    let (own, rest) = rest.split_once(' ').unwrap();
    assert_eq!(pid, own, "{ids}");
    assert_eq!(rest, "fds=1 names=activated");
    // 0-9: dash holds its script on fd 10.
    assert_eq!(line("lfd: open:"), " 0 1 2 3");
    assert_eq!(line("lfd: stdin="), format!("/dev/null out={log_path}"));
    assert!(line("lfd: 3=").starts_with("socket:["), "{log}");
}

/// Both ways at once: systemd's listener, inherited on fd 3, handed on to a `listen_fds`
/// wait server on fd 3 (where it already is: the child must clear its close-on-exec).
#[test]
fn a_socket_from_systemd_on_fd_3_is_handed_on_to_a_listen_fds_server() {
    if !std::path::Path::new(PROXYD).exists() {
        common::skip("systemd-socket-proxyd (package systemd) is not installed");
        return;
    }
    if !common::have("systemd-socket-activate") {
        common::skip("systemd-socket-activate (package systemd) is not installed");
        return;
    }
    let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let backend_port = backend.local_addr().unwrap().port();
    let echo = std::thread::spawn(move || {
        let (mut stream, _) = backend.accept().unwrap();
        let mut reader = stream.try_clone().unwrap();
        let _ = std::io::copy(&mut reader, &mut stream);
    });
    let setup = Setup::new();
    let port = setup.port;
    let body = format!(
        "wait = true\nlisten_fds = true\nuser = \"root\"\nserver = \"{PROXYD}\"\n\
         server_args = [\"127.0.0.1:{backend_port}\"]\n"
    );
    let listen = format!("--listen=127.0.0.1:{port}");
    // The first client's connection starts oxinetd and waits in the queue for proxyd.
    let client = std::thread::spawn(move || {
        let mut client = common::tcp_connect(v4(port));
        std::io::Write::write_all(&mut client, b"through\n").unwrap();
        common::read_line(&mut client)
    });
    let config = setup.service(&body).replace("wait = false\n", "");
    let (daemon, _) = setup.start_with(
        &config,
        Launch {
            wrapper: vec!["systemd-socket-activate", &listen, "--fdname=svc"],
            ..Launch::default()
        },
    );
    assert_eq!(client.join().unwrap(), "through\n");
    daemon.wait_for_log("(fd 3 \"svc\" stream");
    echo.join().unwrap();
}
