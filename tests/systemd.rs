//! oxinetd under systemd: what systemd hands the daemon stays the daemon's.
mod common;

use common::{Launch, Setup, tcp_request, v4};

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
