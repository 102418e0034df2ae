//! `banner`, `banner_success` and `banner_fail`: files sent byte for byte, `banner` first
//! on every connection, then `banner_success` before the server's output or `banner_fail`
//! before the close of a refused connection; read again on reload; at most 64 KiB.
mod common;

use std::fs;
use std::path::Path;

use common::{Setup, check, sh_as_root, tcp_request, tempdir, v4};

/// Bytes a text banner could not carry: CRLF, NUL, a byte that is not UTF-8.
const BANNER: &[u8] = b"Welcome\r\n\0to the\0 test\r\n\xff\n";
const SUCCESS: &[u8] = b"+ admitted\r\n";
const FAIL: &[u8] = b"- refused\r\n\0";

/// `banner = ...` etc. for the three standard banner files, written into the setup's dir now.
fn banner_keys(setup: &Setup) -> String {
    format!(
        "banner = {}\nbanner_success = {}\nbanner_fail = {}\n",
        common::toml_string(&setup.file("banner", BANNER)),
        common::toml_string(&setup.file("success", SUCCESS)),
        common::toml_string(&setup.file("fail", FAIL)),
    )
}

fn concat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Shows bytes readably when an assertion fails.
#[track_caller]
fn assert_bytes(got: &[u8], want: &[u8]) {
    assert!(
        got == want,
        "got {} bytes {:?}\nwant {} bytes {:?}",
        got.len(),
        String::from_utf8_lossy(&got[..got.len().min(300)]),
        want.len(),
        String::from_utf8_lossy(&want[..want.len().min(300)])
    );
}

#[test]
fn admitted_connection_gets_banner_then_banner_success_then_the_server() {
    let setup = Setup::new();
    let config = setup.service(&format!(
        "{}{}",
        banner_keys(&setup),
        sh_as_root("echo server-out")
    ));
    let (daemon, port) = setup.start(&config);
    assert_bytes(
        &tcp_request(v4(port), b""),
        &concat(&[BANNER, SUCCESS, b"server-out\n"]),
    );
    daemon.wait_for_log("EXIT: svc");
}

#[test]
fn refused_connection_gets_banner_then_banner_fail_then_eof() {
    let setup = Setup::new();
    let ran = setup.path("ran");
    let config = setup.service(&format!(
        "only_from = [\"127.0.0.9\"]\n{}{}",
        banner_keys(&setup),
        sh_as_root(&format!("touch {ran}; echo server-out"))
    ));
    let (daemon, port) = setup.start(&config);
    assert_bytes(&tcp_request(v4(port), b""), &concat(&[BANNER, FAIL]));
    daemon.wait_for_log("FAIL: svc address from=127.0.0.1");
    assert!(
        !Path::new(&ran).exists(),
        "the server ran for a refused peer"
    );
}

#[test]
fn refused_connection_without_banner_fail_gets_only_the_banner() {
    let setup = Setup::new();
    let config = setup.service(&format!(
        "only_from = [\"127.0.0.9\"]\nbanner = {}\nbanner_success = {}\n{}",
        common::toml_string(&setup.file("banner", BANNER)),
        common::toml_string(&setup.file("success", SUCCESS)),
        sh_as_root("echo server-out")
    ));
    let (daemon, port) = setup.start(&config);
    assert_bytes(&tcp_request(v4(port), b""), BANNER);
    daemon.wait_for_log("FAIL: svc address from=127.0.0.1");
}

#[test]
fn admitted_connection_without_banner_gets_banner_success_first() {
    let setup = Setup::new();
    let config = setup.service(&format!(
        "banner_success = {}\n{}",
        common::toml_string(&setup.file("success", SUCCESS)),
        sh_as_root("echo server-out")
    ));
    let (_daemon, port) = setup.start(&config);
    assert_bytes(
        &tcp_request(v4(port), b""),
        &concat(&[SUCCESS, b"server-out\n"]),
    );
}

#[test]
fn internal_service_sends_its_banners_before_serving() {
    let setup = Setup::new();
    let config = format!(
        "[service.echo]\ntype = \"INTERNAL\"\nsocket_type = \"stream\"\nwait = false\n\
         port = {}\n{}",
        setup.port,
        banner_keys(&setup)
    );
    let (_daemon, port) = setup.start(&config);
    assert_bytes(
        &tcp_request(v4(port), b"ping\n"),
        &concat(&[BANNER, SUCCESS, b"ping\n"]),
    );
}

#[test]
fn reload_reads_a_changed_banner_file() {
    let setup = Setup::new();
    let banner = setup.file("banner", b"first banner\r\n");
    let config = setup.service(&format!(
        "banner = {}\n{}",
        common::toml_string(&banner),
        sh_as_root("echo server-out")
    ));
    let (daemon, port) = setup.start(&config);
    assert_bytes(&tcp_request(v4(port), b""), b"first banner\r\nserver-out\n");

    // Only the file changes, not the config.
    fs::write(&banner, b"second\0banner\r\n").unwrap();
    daemon.reload();
    assert!(
        daemon.log().contains("reload: done"),
        "reload failed:\n{}",
        daemon.log()
    );
    assert_bytes(
        &tcp_request(v4(port), b""),
        b"second\0banner\r\nserver-out\n",
    );
}

#[test]
fn a_64_kib_banner_arrives_whole_before_the_server_output() {
    // Larger than a loopback socket's first send buffer: the daemon must finish writing
    // it before the server starts writing to the same connection.
    let setup = Setup::new();
    let big: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    let config = setup.service(&format!(
        "banner = {}\n{}",
        common::toml_string(&setup.file("banner", &big)),
        sh_as_root("echo server-out")
    ));
    let (_daemon, port) = setup.start(&config);
    assert_bytes(
        &tcp_request(v4(port), b""),
        &concat(&[&big, b"server-out\n"]),
    );
}

#[test]
fn a_banner_file_over_64_kib_is_a_config_error_naming_the_key() {
    let dir = tempdir();
    let at_limit = dir.path().join("at-limit");
    let over = dir.path().join("over");
    fs::write(&at_limit, vec![b'x'; 64 * 1024]).unwrap();
    fs::write(&over, vec![b'x'; 64 * 1024 + 1]).unwrap();
    let config = |key: &str, path: &Path| {
        format!(
            "[service.svc]\nsocket_type = \"stream\"\nwait = false\nport = 20001\n\
             user = \"root\"\nserver = \"/bin/true\"\n{key} = {}\n",
            common::toml_string(path.to_str().unwrap())
        )
    };
    for key in ["banner", "banner_success", "banner_fail"] {
        let ok = check(&config(key, &at_limit));
        assert!(
            ok.status.success(),
            "{key} of 64 KiB rejected: {}",
            String::from_utf8_lossy(&ok.stderr)
        );
        let bad = check(&config(key, &over));
        let stderr = String::from_utf8_lossy(&bad.stderr);
        assert_eq!(bad.status.code(), Some(1), "{key} over 64 KiB: {stderr}");
        assert!(
            stderr.contains(&format!("service svc: key {key}: ")),
            "{key} over 64 KiB: error does not name the key: {stderr}"
        );
    }
}
