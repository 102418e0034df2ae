//! TCPMUX (RFC 1078) through the internal `tcpmux` service: TCPMUXPLUS and TCPMUX
//! services, HELP, unknown names, and the xinetd bugs it must not repeat: services that
//! are not TCPMUX reachable through it (CVE-2012-0862), TCPMUX servers run as root
//! (CVE-2013-4342), a trailing NUL after `+Go\r\n`, bytes after the name line lost.
use crate::common;

use std::io::{Read, Write};
use std::path::Path;

use common::{
    Oxinetd, Setup, free_port, passwd_entry, read_to_eof, sh, tcp_connect, tcp_request, v4,
};

/// Starts the daemon with the internal tcpmux service on the setup's port, then
/// `services`; the daemon and the tcpmux port.
fn start_tcpmux(setup: Setup, services: &str) -> (Oxinetd, u16) {
    let config = format!(
        "[service.tcpmux]\ntype = \"INTERNAL\"\nsocket_type = \"stream\"\nwait = false\n\
         port = {}\n\n{services}",
        setup.port
    );
    setup.start(&config)
}

/// A service `name` of `kind` ("TCPMUX", "TCPMUXPLUS" or "" for a normal one, which then
/// gets `port`) running `script` with `sh -c` as `user`, with `extra` keys.
fn service(name: &str, kind: &str, user: &str, script: &str, extra: &str) -> String {
    let kind = if kind.is_empty() {
        String::new()
    } else {
        format!("type = \"{kind}\"\n")
    };
    format!(
        "[service.{name}]\n{kind}socket_type = \"stream\"\nwait = false\nuser = \"{user}\"\n\
         {}{extra}\n\n",
        sh(script)
    )
}

/// Prints the uid, then echoes one line of input.
const UID_THEN_ECHO: &str = "id -u; read line; echo \"$line\"";

/// tcpmux with one TCPMUXPLUS service `plusname`, run as root, that prints its uid and
/// echoes a line.
fn start_plusname() -> (Oxinetd, u16) {
    start_tcpmux(
        Setup::new(),
        &service("plusname", "TCPMUXPLUS", "root", UID_THEN_ECHO, ""),
    )
}

/// Shows bytes readably when an assertion fails.
#[track_caller]
fn assert_bytes(got: &[u8], want: &[u8]) {
    assert!(
        got == want,
        "got {:?}, want {:?}",
        String::from_utf8_lossy(got),
        String::from_utf8_lossy(want)
    );
}

#[test]
fn tcpmuxplus_sends_go_and_leaves_the_bytes_after_the_line_to_the_server() {
    let (daemon, port) = start_plusname();
    // Name and data in one write: the daemon must read no further than the line.
    assert_bytes(
        &tcp_request(v4(port), b"PLUSNAME\r\nhello\n"),
        b"+Go\r\n0\nhello\n",
    );
    daemon.wait_for_log("START: plusname");
    daemon.wait_for_log("EXIT: plusname status=0");
}

#[test]
fn regression_xinetd_tcpmuxplus_reply_had_a_trailing_nul() {
    let (_daemon, port) = start_plusname();
    let mut stream = tcp_connect(v4(port));
    stream.write_all(b"plusname\r\n").unwrap();
    let mut go = [0u8; 5];
    stream.read_exact(&mut go).unwrap();
    assert_bytes(&go, b"+Go\r\n");
    // The next byte is the server's: the first of `id -u`'s "0\n".
    let mut next = [0u8; 1];
    stream.read_exact(&mut next).unwrap();
    assert_bytes(&next, b"0");
    stream.write_all(b"bye\n").unwrap();
    assert_bytes(&read_to_eof(&mut stream), b"\nbye\n");
}

#[test]
fn tcpmux_server_sends_its_own_reply_line() {
    let (_daemon, port) = start_tcpmux(
        Setup::new(),
        &service(
            "plain",
            "TCPMUX",
            "root",
            "printf '+OK\\r\\n'; read line; echo \"got $line\"",
            "",
        ),
    );
    assert_bytes(
        &tcp_request(v4(port), b"plain\r\nabc\n"),
        b"+OK\r\ngot abc\n",
    );
}

#[test]
fn help_lists_exactly_the_tcpmux_names() {
    let hello_port = free_port();
    let services = [
        service("plusname", "TCPMUXPLUS", "root", UID_THEN_ECHO, ""),
        service("plain", "TCPMUX", "root", "printf '+OK\\r\\n'", ""),
        service(
            "hello",
            "",
            "root",
            "echo hello",
            &format!("port = {hello_port}"),
        ),
    ]
    .concat();
    let (_daemon, port) = start_tcpmux(Setup::new(), &services);
    let reply = tcp_request(v4(port), b"HELP\r\n");
    let text = String::from_utf8(reply).expect("HELP reply is text");
    assert!(text.ends_with("\r\n"), "HELP reply {text:?}");
    let mut names: Vec<&str> = text.trim_end_matches("\r\n").split("\r\n").collect();
    names.sort_unstable();
    assert_eq!(names, ["plain", "plusname"], "HELP reply {text:?}");
}

#[test]
fn unknown_name_gets_service_not_available_then_eof() {
    let (daemon, port) = start_plusname();
    assert_bytes(
        &tcp_request(v4(port), b"nosuch\r\n"),
        b"-Service not available\r\n",
    );
    let log = daemon.wait_for_log("FAIL: tcpmux");
    let fails: Vec<&str> = log
        .lines()
        .filter_map(|l| l.find("FAIL: tcpmux").map(|i| &l[i..]))
        .collect();
    assert_eq!(fails, ["FAIL: tcpmux service_not_found from=127.0.0.1"]);
}

#[test]
fn regression_cve_2012_0862_a_service_that_is_not_tcpmux_is_not_reachable_through_tcpmux() {
    let setup = Setup::new();
    let ran = setup.path("hello-ran");
    let hello_port = free_port();
    let services = [
        service("plusname", "TCPMUXPLUS", "root", UID_THEN_ECHO, ""),
        service(
            "hello",
            "",
            "root",
            &format!("touch {ran}; echo hello"),
            &format!("port = {hello_port}"),
        ),
    ]
    .concat();
    let (_daemon, port) = start_tcpmux(setup, &services);
    for name in ["hello", "HELLO"] {
        let reply = tcp_request(v4(port), format!("{name}\r\n").as_bytes());
        let text = String::from_utf8_lossy(&reply);
        assert!(
            text.starts_with('-') && text.ends_with("\r\n") && text.matches("\r\n").count() == 1,
            "{name} through tcpmux got {text:?}, want one `-` line"
        );
    }
    assert!(!Path::new(&ran).exists(), "hello ran through tcpmux");
    // It is served on its own port all the same.
    assert_bytes(&tcp_request(v4(hello_port), b""), b"hello\n");
    assert!(Path::new(&ran).exists());
}

#[test]
fn regression_cve_2013_4342_tcpmux_services_run_as_their_own_user() {
    let services = [
        service("plusname", "TCPMUXPLUS", "nobody", UID_THEN_ECHO, ""),
        service("plain", "TCPMUX", "nobody", "printf '+OK\\r\\n'; id -u", ""),
    ]
    .concat();
    let (_daemon, port) = start_tcpmux(Setup::new(), &services);
    let uid = &passwd_entry("nobody")[2];
    assert_bytes(
        &tcp_request(v4(port), b"plusname\r\nx\n"),
        format!("+Go\r\n{uid}\nx\n").as_bytes(),
    );
    assert_bytes(
        &tcp_request(v4(port), b"plain\r\n"),
        format!("+OK\r\n{uid}\n").as_bytes(),
    );
}

#[test]
fn access_rules_of_a_tcpmux_service_apply() {
    let setup = Setup::new();
    let ran = setup.path("ran");
    let services = [
        service(
            "plusname",
            "TCPMUXPLUS",
            "root",
            &format!("touch {ran}; echo served"),
            "only_from = [\"127.0.0.9\"]",
        ),
        service("open", "TCPMUXPLUS", "root", "echo open", ""),
    ]
    .concat();
    let (daemon, port) = start_tcpmux(setup, &services);
    let reply = tcp_request(v4(port), b"plusname\r\n");
    assert!(
        !reply.starts_with(b"+"),
        "refused peer got {:?}",
        String::from_utf8_lossy(&reply)
    );
    daemon.wait_for_log("FAIL: plusname address from=127.0.0.1");
    assert!(
        !Path::new(&ran).exists(),
        "the server ran for a refused peer"
    );
    // The other service, without the rule, is served.
    assert_bytes(&tcp_request(v4(port), b"open\r\n"), b"+Go\r\nopen\n");
}
