//! `banner`, `banner_success` and `banner_fail`: files sent byte for byte, `banner` first
//! on every connection, then `banner_success` before the server's output or `banner_fail`
//! before the close of a refused connection; read again on reload; at most 64 KiB.
use crate::common;

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

/// `--check -f path`, killed (and the test failed) if it does not finish in 10 s.
fn check_within_deadline(path: &Path) -> std::process::Output {
    common::run_command(
        std::process::Command::new(common::BIN)
            .arg("--check")
            .arg("-f")
            .arg(path),
        std::time::Duration::from_secs(10),
    )
}

fn mkfifo(path: &str) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o644)).expect("mkfifo");
}

/// Issue 12: a FIFO banner hung `--check` until a writer came, and `/dev/zero` grew
/// until memory ran out. Only a regular file is a banner, read no further than its limit.
#[test]
fn a_banner_that_is_not_a_regular_file_is_refused_at_once() {
    let setup = Setup::new();
    let fifo = setup.path("fifo");
    mkfifo(&fifo);
    for (key, path, why) in [
        ("banner", fifo.as_str(), "is a FIFO, not a regular file"),
        (
            "banner_success",
            "/dev/zero",
            "is a character device, not a regular file",
        ),
        (
            "banner_fail",
            "/dev/urandom",
            "is a character device, not a regular file",
        ),
        ("banner", "/tmp", "is a directory, not a regular file"),
    ] {
        let config = setup.service(&format!(
            "{key} = {}\n{}",
            common::toml_string(path),
            sh_as_root("echo server-out")
        ));
        let file = setup.file("oxinetd.toml", config.as_bytes());
        let out = check_within_deadline(Path::new(&file));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{key} = {path} accepted:\n{stderr}"
        );
        let want = format!("{file}:5: service svc: key {key}: cannot read {path}: {why}");
        assert!(
            stderr.lines().any(|line| line == want),
            "no {want:?} in:\n{stderr}"
        );
    }
}

/// A reload into such a config kept the loop waiting on the FIFO: now the service keeps
/// its old definition and everyone is served throughout.
#[test]
fn reload_into_a_fifo_or_dev_zero_banner_keeps_the_old_definition() {
    let setup = Setup::new();
    let banner = setup.file("banner", b"old banner\r\n");
    let fifo = setup.path("fifo");
    mkfifo(&fifo);
    let service = |banner: &str| {
        setup.service(&format!(
            "banner = {}\n{}",
            common::toml_string(banner),
            sh_as_root("echo server-out")
        ))
    };
    let (old, first, second) = (service(&banner), service(&fifo), service("/dev/zero"));
    let (daemon, port) = setup.start(&old);
    for (n, config) in [first, second].iter().enumerate() {
        daemon.write_config(config);
        daemon.reload();
        daemon.wait_for_log_count(", not a regular file", n + 1);
        assert_bytes(&tcp_request(v4(port), b""), b"old banner\r\nserver-out\n");
    }
    let log = daemon.log();
    assert!(
        log.contains(&format!("cannot read {fifo}: is a FIFO")),
        "{log}"
    );
    assert!(
        log.contains("cannot read /dev/zero: is a character device"),
        "{log}"
    );
}
