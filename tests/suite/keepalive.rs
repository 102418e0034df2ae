//! `keepalive_idle`, `keepalive_interval`, `keepalive_count` and `tcp_user_timeout`: set
//! on the listener, found on every accepted connection, changed in place by a reload,
//! and a peer that vanishes without a FIN or RST is noticed in the time they say.
use crate::common;

use std::fs::{self};
use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    Launch, Oxinetd, Setup, assert_check_rejects, check, free_port, read_line, run_ok, tcp_connect,
    tcp_request, v4, wait_for,
};

const PYTHON: &str = "/usr/bin/python3";

/// Prints the keepalive options of the connection on fd 0.
const REPORT: &str = "import socket\n\
s = socket.socket(fileno=0)\n\
o = lambda level, name: s.getsockopt(level, name)\n\
t = socket.IPPROTO_TCP\n\
print('keepalive=%d idle=%d interval=%d count=%d user_timeout=%d' % (\n\
    o(socket.SOL_SOCKET, socket.SO_KEEPALIVE), o(t, socket.TCP_KEEPIDLE),\n\
    o(t, socket.TCP_KEEPINTVL), o(t, socket.TCP_KEEPCNT), o(t, socket.TCP_USER_TIMEOUT)))\n";

fn reporter(port: u16, keys: &str) -> String {
    format!(
        "[service.svc]\nsocket_type = \"stream\"\nwait = false\nport = {port}\nuser = \"root\"\n\
         server = \"{PYTHON}\"\nserver_args = {}\n{keys}\n",
        common::toml_strings(&["-c", REPORT])
    )
}

fn options(port: u16) -> String {
    String::from_utf8(tcp_request(v4(port), b"")).expect("UTF-8")
}

fn sysctl(name: &str) -> u32 {
    fs::read_to_string(Path::new("/proc/sys/net/ipv4").join(name))
        .expect("read the sysctl")
        .trim()
        .parse()
        .expect("a number")
}

#[test]
fn accepted_connections_carry_the_options_and_a_reload_changes_them() {
    if !Path::new(PYTHON).exists() {
        return common::skip("python3 is not installed");
    }
    let setup = Setup::new();
    let port = setup.port;
    let all =
        "keepalive_idle = 7\nkeepalive_interval = 3\nkeepalive_count = 5\ntcp_user_timeout = 4";
    let (daemon, _) = setup.start(&reporter(port, all));
    assert_eq!(
        options(port),
        "keepalive=1 idle=7 interval=3 count=5 user_timeout=4000\n"
    );

    // Changed and removed in place: the same listener, no new socket.
    daemon.write_config(&reporter(
        port,
        "keepalive_idle = 9\nkeepalive_interval = 3\nkeepalive_count = 5",
    ));
    daemon.reload();
    daemon.wait_for_log("listening socket adjusted in place");
    assert_eq!(
        options(port),
        "keepalive=1 idle=9 interval=3 count=5 user_timeout=0\n"
    );

    // A keepalive timeout removed needs a new socket, with the system's values.
    daemon.write_config(&reporter(port, ""));
    daemon.reload();
    let defaults = format!(
        "keepalive=0 idle={} interval={} count={} user_timeout=0\n",
        sysctl("tcp_keepalive_time"),
        sysctl("tcp_keepalive_intvl"),
        sysctl("tcp_keepalive_probes")
    );
    assert_eq!(options(port), defaults);
}

#[test]
fn without_the_keys_nothing_changes() {
    if !Path::new(PYTHON).exists() {
        return common::skip("python3 is not installed");
    }
    let setup = Setup::new();
    let port = setup.port;
    let (_daemon, _) = setup.start(&reporter(port, "flags = [\"KEEPALIVE\"]"));
    assert_eq!(
        options(port),
        format!(
            "keepalive=1 idle={} interval={} count={} user_timeout=0\n",
            sysctl("tcp_keepalive_time"),
            sysctl("tcp_keepalive_intvl"),
            sysctl("tcp_keepalive_probes")
        )
    );
}

#[test]
fn keepalive_keys_on_a_datagram_service_are_config_errors() {
    for key in [
        "keepalive_idle",
        "keepalive_interval",
        "keepalive_count",
        "tcp_user_timeout",
    ] {
        let output = check(&format!(
            "[service.echo]\ntype = \"INTERNAL\"\nsocket_type = \"dgram\"\nport = {}\n{key} = 5\n",
            free_port()
        ));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!(":5: service echo: key {key}: only stream (tcp)")),
            "{stderr}"
        );
        assert_check_rejects(&format!("{key} = 0"), key);
    }
    assert_check_rejects("max_duration = 0", "max_duration");
}

/// An internal echo service `id` on `port`, with `keys`.
fn echo(id: &str, port: u16, keys: &str) -> String {
    format!(
        "[[service.echo]]\nid = \"{id}\"\ntype = \"INTERNAL\"\nsocket_type = \"stream\"\n\
         wait = false\nport = {port}\nlog_on_success = [\"EXIT\", \"DURATION\"]\n{keys}\n"
    )
}

/// A connection that answered once, so the daemon holds it.
fn echoing(port: u16) -> TcpStream {
    let mut stream = tcp_connect(v4(port));
    stream.write_all(b"here\n").unwrap();
    assert_eq!(read_line(&mut stream), "here\n");
    stream
}

#[test]
fn a_vanished_peer_is_noticed_within_the_keepalive_time() {
    if !common::can_make_network_namespace() {
        return common::skip("cannot make a network namespace (unshare --net, ip)");
    }
    // The daemon and its clients share a network namespace of their own; taking its
    // loopback down then silences both ends: no FIN, no RST, no ICMP ever arrives, as
    // when a peer's machine loses power. Only keepalive probes can tell.
    let (probed, plain) = (free_port(), free_port());
    let config = format!(
        "{}{}",
        echo(
            "probed",
            probed,
            "keepalive_idle = 1\nkeepalive_interval = 1\nkeepalive_count = 2"
        ),
        echo("plain", plain, "")
    );
    let daemon = Oxinetd::start_with(
        &config,
        Launch {
            wrapper: vec![
                "unshare",
                "--net",
                "--",
                "/bin/sh",
                "-c",
                "ip link set lo up && exec \"$0\" \"$@\"",
            ],
            ..Launch::default()
        },
    );
    let clients = common::in_network_namespace_of(daemon.pid(), || {
        let clients = (echoing(probed), echoing(plain));
        run_ok(
            Command::new("ip").args(["link", "set", "lo", "down"]),
            Duration::from_secs(10),
        );
        clients
    });
    let down = Instant::now();
    // 1 s idle, then 2 probes 1 s apart: about 3 s; generous for a loaded machine.
    let log = wait_for(
        "the probed connection to end",
        Duration::from_secs(15),
        || {
            let log = daemon.log();
            if log.contains("EXIT: probed") {
                Ok(log)
            } else {
                Err(format!("log:\n{log}"))
            }
        },
    );
    let noticed = down.elapsed();
    assert!(
        noticed >= Duration::from_millis(1500),
        "ended after {noticed:?}: before any probe could go unanswered; log:\n{log}"
    );
    assert!(
        !log.contains("EXIT: plain"),
        "the connection without keepalive timeouts ended too; log:\n{log}"
    );
    drop(clients);
}
