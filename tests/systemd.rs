//! oxinetd under systemd: what systemd hands the daemon stays the daemon's.
mod common;

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
