//! IPv4 and IPv6: dual-stack default, IPv4-only and v6only binds, specific addresses,
//! peer addresses as servers and logs see them.

use crate::common;

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use common::{Oxinetd, free_port, tcp_request, udp_request, write_script};

fn at(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse::<IpAddr>().expect("ip"), port)
}

fn assert_refused(addr: SocketAddr) {
    match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
        Err(e) => panic!("connect {addr}: expected refused, got {e}"),
        Ok(_) => panic!("connect {addr}: expected refused, but it was accepted"),
    }
}

fn echo(port: u16, extra: &str) -> String {
    format!("[service.echo]\ntype = \"INTERNAL\"\nsocket_type = \"stream\"\nport = {port}\n{extra}")
}

#[test]
fn default_bind_serves_ipv4_and_ipv6() {
    let port = free_port();
    let _daemon = Oxinetd::start(&echo(port, ""));
    assert_eq!(tcp_request(at("127.0.0.1", port), b"four\n"), b"four\n");
    assert_eq!(tcp_request(at("::1", port), b"six\n"), b"six\n");
}

#[test]
fn exec_server_sees_plain_ipv4_and_ipv6_peers() {
    let scripts = tempfile::tempdir().expect("temp dir");
    let script = write_script(scripts.path(), "peer", "#!/bin/sh\necho \"$REMOTE_ADDR\"\n");
    let port = free_port();
    let daemon = Oxinetd::start(&format!(
        "[service.peer]\nsocket_type = \"stream\"\nwait = false\nuser = \"root\"\n\
         port = {port}\nserver = \"{}\"\n",
        script.display()
    ));
    assert_eq!(tcp_request(at("127.0.0.1", port), b""), b"127.0.0.1\n");
    assert_eq!(tcp_request(at("::1", port), b""), b"::1\n");

    let log = daemon.wait_for_log_count("START: peer", 2);
    let starts: Vec<&str> = log.lines().filter(|l| l.contains("START: peer")).collect();
    assert!(
        starts[0].contains("from=127.0.0.1") && !starts[0].contains("::ffff:"),
        "IPv4 peer logged as: {}",
        starts[0]
    );
    assert!(
        starts[1].contains("from=::1"),
        "IPv6 peer logged as: {}",
        starts[1]
    );
}

#[test]
fn ipv4_flag_binds_ipv4_only() {
    let port = free_port();
    let _daemon = Oxinetd::start(&echo(port, "flags = [\"IPv4\"]\n"));
    assert_eq!(tcp_request(at("127.0.0.1", port), b"four\n"), b"four\n");
    assert_refused(at("::1", port));
}

#[test]
fn v6only_bind_refuses_ipv4() {
    // On `::` only v6only keeps IPv4 out (net.ipv6.bindv6only is 0 by default); on `::1`
    // IPv4 cannot arrive anyway, but that is the setting people write.
    let any = free_port();
    let loopback = free_port();
    let _daemon = Oxinetd::start(&format!(
        "{}\n[service.daytime]\ntype = \"INTERNAL\"\nsocket_type = \"stream\"\n\
         port = {loopback}\nbind = \"::1\"\nv6only = true\n",
        echo(any, "bind = \"::\"\nv6only = true\n")
    ));
    assert_eq!(tcp_request(at("::1", any), b"six\n"), b"six\n");
    assert_refused(at("127.0.0.1", any));
    assert!(!tcp_request(at("::1", loopback), b"").is_empty());
    assert_refused(at("127.0.0.1", loopback));
}

#[test]
fn specific_ipv4_bind_serves_only_that_address() {
    let port = free_port();
    let _daemon = Oxinetd::start(&echo(port, "bind = \"127.0.0.2\"\n"));
    assert_eq!(tcp_request(at("127.0.0.2", port), b"two\n"), b"two\n");
    assert_refused(at("127.0.0.1", port));
    assert_refused(at("::1", port));
}

#[test]
fn internal_udp_echo_over_ipv6() {
    let port = free_port();
    let _daemon = Oxinetd::start(&format!(
        "[service.echo]\ntype = \"INTERNAL\"\nsocket_type = \"dgram\"\nport = {port}\n"
    ));
    assert_eq!(udp_request(at("::1", port), b"over six"), b"over six");
    assert_eq!(
        udp_request(at("127.0.0.1", port), b"over four"),
        b"over four"
    );
}
