//! SENSOR services run against the binary: touching one runs nothing, logs `SENSOR:` and
//! (unless `deny_time = "NEVER"`) puts the peer on the global deny list every service
//! checks, so it is refused everywhere with `FAIL: ID address`; other peers are unaffected.
use crate::common;

use common::{
    Oxinetd, count_lines, free_port, ip, tcp_request_from, toml_strings, udp_socket_from, v4,
};

/// A stream SENSOR `trap` on `trap_port` with `deny_time`, a normal exec'd service `svc`
/// printing `served` on `svc_port`, and an internal stream `echo` on `echo_port`.
fn config(trap_port: u16, svc_port: u16, echo_port: u16, deny_time: &str) -> String {
    format!(
        "[service.trap]\nflags = [\"SENSOR\"]\nsocket_type = \"stream\"\nwait = false\n\
         port = {trap_port}\nbind = \"127.0.0.1\"\ndeny_time = {deny_time}\n\n\
         [service.svc]\nsocket_type = \"stream\"\nwait = false\nuser = \"root\"\n\
         server = \"/bin/sh\"\nserver_args = {}\nport = {svc_port}\nbind = \"127.0.0.1\"\n\n\
         [service.echo]\ntype = \"INTERNAL\"\nsocket_type = \"stream\"\nport = {echo_port}\n\
         bind = \"127.0.0.1\"\n",
        toml_strings(&["-c", "echo served"])
    )
}

struct Ports {
    trap: u16,
    svc: u16,
    echo: u16,
}

fn start(deny_time: &str) -> (Oxinetd, Ports) {
    let ports = Ports {
        trap: free_port(),
        svc: free_port(),
        echo: free_port(),
    };
    let daemon = Oxinetd::start(&config(ports.trap, ports.svc, ports.echo, deny_time));
    (daemon, ports)
}

/// Connects from `from` to the sensor: the connection is closed at once, with no data.
fn touch(daemon: &Oxinetd, port: u16, from: &str) -> String {
    let before = count_lines(&daemon.log(), "SENSOR: trap");
    let out = tcp_request_from(ip(from), v4(port), b"hello\n");
    assert_eq!(String::from_utf8_lossy(&out), "", "the sensor sent data");
    let log = daemon.wait_for_log_count("SENSOR: trap", before + 1);
    log.lines()
        .filter(|l| l.contains("SENSOR: trap"))
        .nth(before)
        .expect("the new SENSOR line")
        .to_owned()
}

fn assert_served(port: u16, from: &str, input: &[u8], want: &[u8]) {
    let out = tcp_request_from(ip(from), v4(port), input);
    assert_eq!(
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(want),
        "connection from {from} to port {port} was not served"
    );
}

fn assert_refused(daemon: &Oxinetd, id: &str, port: u16, from: &str) {
    let line = format!("FAIL: {id} address from={from}");
    let before = count_lines(&daemon.log(), &line);
    let out = tcp_request_from(ip(from), v4(port), b"ping\n");
    assert_eq!(
        String::from_utf8_lossy(&out),
        "",
        "{from} should be refused by {id} after touching the sensor"
    );
    daemon.wait_for_log_count(&line, before + 1);
}

#[test]
fn sensor_puts_the_peer_on_the_deny_list_of_every_service() {
    let (daemon, ports) = start("2");
    // Served before the trip.
    assert_served(ports.svc, "127.0.0.2", b"", b"served\n");

    let line = touch(&daemon, ports.trap, "127.0.0.2");
    assert!(
        line.contains("SENSOR: trap 127.0.0.2 denied for 2 minutes"),
        "sensor line: {line}"
    );
    assert_refused(&daemon, "svc", ports.svc, "127.0.0.2");
    assert_refused(&daemon, "echo", ports.echo, "127.0.0.2");
    // Other peers are not affected.
    assert_served(ports.svc, "127.0.0.3", b"", b"served\n");
    assert_served(ports.echo, "127.0.0.3", b"ping\n", b"ping\n");
}

#[test]
fn sensor_runs_no_server() {
    let (daemon, ports) = start("2");
    touch(&daemon, ports.trap, "127.0.0.4");
    touch(&daemon, ports.trap, "127.0.0.5");
    // A served connection after the trips: any START for the sensor would be logged first.
    assert_served(ports.svc, "127.0.0.1", b"", b"served\n");
    let log = daemon.wait_for_log("EXIT: svc");
    assert!(
        !log.contains("START: trap") && !log.contains("EXIT: trap"),
        "the sensor ran something; log:\n{log}"
    );
}

#[test]
fn deny_time_forever() {
    let (daemon, ports) = start("\"FOREVER\"");
    let line = touch(&daemon, ports.trap, "127.0.0.2");
    assert!(
        line.contains("SENSOR: trap 127.0.0.2 denied forever"),
        "sensor line: {line}"
    );
    assert_refused(&daemon, "svc", ports.svc, "127.0.0.2");
    assert_served(ports.svc, "127.0.0.3", b"", b"served\n");
}

#[test]
fn deny_time_never_only_logs() {
    let (daemon, ports) = start("\"NEVER\"");
    let line = touch(&daemon, ports.trap, "127.0.0.2");
    assert!(
        line.contains("SENSOR: trap 127.0.0.2 logged only"),
        "sensor line: {line}"
    );
    assert_served(ports.svc, "127.0.0.2", b"", b"served\n");
    assert_served(ports.echo, "127.0.0.2", b"ping\n", b"ping\n");
    let log = daemon.log();
    assert_eq!(count_lines(&log, "FAIL:"), 0, "log:\n{log}");
}

#[test]
fn dgram_sensor_trips_on_a_datagram() {
    let (trap, svc, echo) = (free_port(), free_port(), free_port());
    let config = config(trap, svc, echo, "2").replacen(
        "socket_type = \"stream\"\nwait = false\n",
        "socket_type = \"dgram\"\nwait = true\n",
        1,
    );
    let daemon = Oxinetd::start(&config);
    let client = udp_socket_from(ip("127.0.0.4"));
    client.send_to(b"knock", v4(trap)).unwrap();
    let log = daemon.wait_for_log("SENSOR: trap 127.0.0.4 denied for 2 minutes");
    assert!(
        !log.contains("START: trap"),
        "the sensor ran something; log:\n{log}"
    );
    assert_refused(&daemon, "svc", svc, "127.0.0.4");
    assert_served(svc, "127.0.0.3", b"", b"served\n");
}

#[test]
fn sensor_deny_list_applies_to_internal_datagrams() {
    let (trap, svc, echo) = (free_port(), free_port(), free_port());
    // The stream echo of `config` becomes a dgram one.
    let config = config(trap, svc, echo, "2").replace(
        "[service.echo]\ntype = \"INTERNAL\"\nsocket_type = \"stream\"\n",
        "[service.echo]\ntype = \"INTERNAL\"\nsocket_type = \"dgram\"\nwait = true\n",
    );
    assert!(config.contains("\"dgram\""), "test bug: no dgram echo");
    let daemon = Oxinetd::start(&config);
    touch(&daemon, trap, "127.0.0.2");

    let denied = udp_socket_from(ip("127.0.0.2"));
    denied.send_to(b"from two", v4(echo)).unwrap();
    daemon.wait_for_log("FAIL: echo address from=127.0.0.2");
    let other = udp_socket_from(ip("127.0.0.3"));
    other.send_to(b"from three", v4(echo)).unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = other.recv_from(&mut buf).expect("echo reply to 127.0.0.3");
    assert_eq!(&buf[..n], b"from three");
    // Datagrams are handled in order: a reply to the denied peer would be queued by now.
    denied.set_nonblocking(true).unwrap();
    assert!(
        denied.recv_from(&mut buf).is_err(),
        "the denied peer got a reply"
    );
}

#[test]
fn ipv6_peer_trips_a_dual_stack_sensor() {
    let (trap, svc) = (free_port(), free_port());
    let config = config(trap, svc, free_port(), "\"FOREVER\"")
        .replace("bind = \"127.0.0.1\"\n", "bind = \"::\"\n");
    let daemon = Oxinetd::start(&config);
    let out = tcp_request_from(ip("::1"), common::v6(trap), b"");
    assert_eq!(String::from_utf8_lossy(&out), "", "the sensor sent data");
    daemon.wait_for_log("SENSOR: trap ::1 denied forever");

    let line = "FAIL: svc address from=::1";
    let refused = tcp_request_from(ip("::1"), common::v6(svc), b"");
    assert_eq!(String::from_utf8_lossy(&refused), "", "::1 was served");
    daemon.wait_for_log(line);
    // The same host over IPv4 is another peer.
    assert_served(svc, "127.0.0.1", b"", b"served\n");
}

#[test]
fn ipv4_peer_of_a_dual_stack_sensor_is_denied_on_ipv4_services() {
    let (trap, svc, echo) = (free_port(), free_port(), free_port());
    // Only the sensor is dual-stack: 127.0.0.2 reaches it as ::ffff:127.0.0.2.
    let config = config(trap, svc, echo, "2").replacen(
        "bind = \"127.0.0.1\"\ndeny_time",
        "bind = \"::\"\ndeny_time",
        1,
    );
    assert!(
        config.contains("bind = \"::\""),
        "test bug: sensor not dual-stack"
    );
    let daemon = Oxinetd::start(&config);
    let line = touch(&daemon, trap, "127.0.0.2");
    assert!(
        line.contains("SENSOR: trap 127.0.0.2 denied for 2 minutes"),
        "sensor line: {line}"
    );
    assert_refused(&daemon, "svc", svc, "127.0.0.2");
    assert_refused(&daemon, "echo", echo, "127.0.0.2");
}

#[test]
fn sensor_deny_list_applies_to_the_first_datagram_of_a_wait_service() {
    let dir = common::tempdir();
    let (trap, svc, echo, udp) = (free_port(), free_port(), free_port(), free_port());
    // The server reads one datagram into a file named after its pid.
    let script = format!(
        "dd bs=65536 count=1 of={}/got-$$ 2>/dev/null",
        dir.path().display()
    );
    let config = format!(
        "{}\n[service.udp]\nsocket_type = \"dgram\"\nwait = true\nuser = \"root\"\n\
         server = \"/bin/sh\"\nserver_args = {}\nport = {udp}\nbind = \"127.0.0.1\"\n",
        config(trap, svc, echo, "2"),
        toml_strings(&["-c", &script])
    );
    let daemon = Oxinetd::start_with(
        &config,
        common::Launch {
            dir: Some(dir),
            ..common::Launch::default()
        },
    );
    touch(&daemon, trap, "127.0.0.2");
    let denied = udp_socket_from(ip("127.0.0.2"));
    denied.send_to(b"from two", v4(udp)).unwrap();
    daemon.wait_for_log("FAIL: udp address from=127.0.0.2");
    let other = udp_socket_from(ip("127.0.0.3"));
    other.send_to(b"from three", v4(udp)).unwrap();
    daemon.wait_for_log("EXIT: udp");
    let got: Vec<String> = std::fs::read_dir(daemon.dir())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with("got-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert_eq!(got, ["from three"], "datagrams the servers read");
}

#[test]
fn a_listed_peer_is_not_logged_again() {
    let (daemon, ports) = start("2");
    touch(&daemon, ports.trap, "127.0.0.2");
    // A second touch is closed the same way, without a second SENSOR line.
    let out = tcp_request_from(ip("127.0.0.2"), v4(ports.trap), b"again\n");
    assert_eq!(String::from_utf8_lossy(&out), "", "the sensor sent data");
    // A touch by another peer is a sync point: the daemon handled the second one before.
    touch(&daemon, ports.trap, "127.0.0.3");
    let log = daemon.log();
    assert_eq!(
        count_lines(&log, "SENSOR: trap 127.0.0.2 "),
        1,
        "log:\n{log}"
    );
}

#[test]
fn deny_time_never_logs_every_touch() {
    let (daemon, ports) = start("\"NEVER\"");
    touch(&daemon, ports.trap, "127.0.0.2");
    touch(&daemon, ports.trap, "127.0.0.2");
    let log = daemon.log();
    assert_eq!(
        count_lines(&log, "SENSOR: trap 127.0.0.2 logged only"),
        2,
        "log:\n{log}"
    );
}

#[test]
fn forever_deny_list_survives_a_reload() {
    let (daemon, ports) = start("\"FOREVER\"");
    touch(&daemon, ports.trap, "127.0.0.2");
    daemon.reload();
    daemon.wait_for_log("reload: done");
    assert_refused(&daemon, "svc", ports.svc, "127.0.0.2");
    assert_served(ports.svc, "127.0.0.3", b"", b"served\n");
}

#[test]
fn sensor_ignores_its_own_access_rules_and_sends_its_banner() {
    let dir = common::tempdir();
    let banner = dir.path().join("banner");
    std::fs::write(&banner, b"caught\r\n").unwrap();
    let (trap, svc, echo) = (free_port(), free_port(), free_port());
    let config = config(trap, svc, echo, "2").replacen(
        "deny_time = 2\n",
        &format!(
            "deny_time = 2\nonly_from = [\"127.0.0.1\"]\nbanner = {}\n",
            common::toml_string(banner.to_str().unwrap())
        ),
        1,
    );
    let daemon = Oxinetd::start_with(
        &config,
        common::Launch {
            dir: Some(dir),
            ..common::Launch::default()
        },
    );
    let out = tcp_request_from(ip("127.0.0.2"), v4(trap), b"");
    assert_eq!(String::from_utf8_lossy(&out), "caught\r\n");
    daemon.wait_for_log("SENSOR: trap 127.0.0.2 denied for 2 minutes");
    assert_refused(&daemon, "svc", svc, "127.0.0.2");
    let log = daemon.log();
    assert!(!log.contains("FAIL: trap"), "log:\n{log}");
}

#[test]
fn sensor_with_a_server_is_a_config_error() {
    let dir = common::tempdir();
    let path = dir.path().join("oxinetd.toml");
    let config = format!(
        "[service.trap]\nflags = [\"SENSOR\"]\nsocket_type = \"stream\"\nport = {}\n\
         user = \"root\"\nserver = \"/bin/cat\"\n",
        free_port()
    );
    std::fs::write(&path, &config).unwrap();
    let out = common::check_file(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("service trap: key server: ")),
        "stderr:\n{stderr}"
    );
}
