//! The control socket through the binary: `oxinetd status` (table and JSON) and
//! `oxinetd reload`, who may ask, one path per live daemon, SIGUSR1, and many callers
//! at once while the services go on being served.

use crate::common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;
use serde_json::Value;

const RUN: Duration = Duration::from_secs(30);

/// An internal echo service on `port`, for 127.0.0.1 only.
fn echo(port: u16) -> String {
    format!(
        "[service.echo]\ntype = \"INTERNAL\"\nsocket_type = \"stream\"\nport = {port}\n\
         bind = \"127.0.0.1\"\nonly_from = [\"127.0.0.1\"]\n"
    )
}

fn oxinetd(args: &[&str], config: &Path) -> Output {
    let mut command = Command::new(BIN);
    command.args(args).arg("-f").arg(config);
    run_command(&mut command, RUN)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn status_json(config: &Path) -> Value {
    let output = oxinetd(&["status", "--json"], config);
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {output:?}"))
}

fn service<'a>(status: &'a Value, id: &str) -> &'a Value {
    status["services"]
        .as_array()
        .expect("services")
        .iter()
        .find(|service| service["id"] == id)
        .unwrap_or_else(|| panic!("no service {id} in {status}"))
}

#[test]
fn status_shows_states_and_counts_accepted_and_refused_connections() {
    let setup = Setup::new();
    // Held by the test: the service `taken` cannot listen.
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_port = taken.local_addr().unwrap().port();
    let config = format!(
        "control_socket = \"run/control\"\n{}\
         [service.discard]\ntype = \"INTERNAL\"\nid = \"taken\"\n\
         socket_type = \"stream\"\nport = {taken_port}\nbind = \"127.0.0.1\"\n\
         [service.off]\ndisable = true\n",
        echo(setup.port)
    );
    let (daemon, port) = setup.start(&config);
    let socket = daemon.dir().join("run/control");
    let metadata = fs::symlink_metadata(&socket).expect("the control socket");
    assert!(metadata.file_type().is_socket());
    assert_eq!(metadata.permissions().mode() & 0o777, 0o600);

    for _ in 0..3 {
        assert_eq!(tcp_request(("127.0.0.1", port), b"hi"), b"hi");
    }
    for _ in 0..2 {
        assert_eq!(
            tcp_request_from(ip("127.0.0.2"), ("127.0.0.1", port), b"hi"),
            b""
        );
    }

    let status = status_json(&daemon.config_path());
    assert_eq!(status["format"], 1);
    assert_eq!(status["pid"], daemon.pid());
    assert_eq!(
        status["config_file"],
        daemon.config_path().to_str().unwrap()
    );
    assert!(status["last_reload"].is_null());
    let echo = service(&status, "echo");
    assert_eq!(echo["state"], "listening");
    assert_eq!(echo["address"], format!("127.0.0.1:{port} stream/tcp"));
    assert_eq!(echo["accepted"], 3);
    assert_eq!(echo["refused"]["address"], 2);
    assert_eq!(echo["refused"]["cps"], 0);
    assert_eq!(echo["running"], 0);
    let failed = service(&status, "taken");
    assert_eq!(failed["state"], "failed");
    let reason = failed["reason"].as_str().expect("a reason");
    assert!(reason.contains("cannot listen"), "{reason}");
    assert_eq!(service(&status, "off")["state"], "disabled");

    let output = oxinetd(&["status"], &daemon.config_path());
    assert!(output.status.success(), "{output:?}");
    let table = text(&output.stdout);
    for line in table.lines() {
        assert!(line.chars().count() <= 100, "{line}");
    }
    let row = table
        .lines()
        .find(|line| line.starts_with("echo "))
        .unwrap_or_else(|| panic!("{table}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[3..], ["listening", "0", "3", "2"], "{table}");
    assert!(table.contains("\n  refused: address 2\n"), "{table}");
    assert!(table.contains("  failed: cannot listen"), "{table}");
    drop(taken);
    daemon.stop();
    assert!(!socket.exists(), "the socket is removed at shutdown");
}

#[test]
fn reload_says_what_applied_and_every_error() {
    let setup = Setup::new();
    let port = setup.port;
    let (daemon, _) = setup.start(&format!("control_socket = \"control\"\n{}", echo(port)));
    let config = daemon.config_path();

    let output = oxinetd(&["reload"], &config);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(text(&output.stdout), "reload: done (1 service)\n");

    // A broken service: the rest applies, the broken one keeps its old definition.
    let other = free_port();
    daemon.write_config(&format!(
        "control_socket = \"control\"\n{}[service.bad]\nsocket_type = \"stream\"\n\
         wait = false\nport = {other}\nserver = \"/nonexistent/server\"\nuser = \"root\"\n",
        echo(port)
    ));
    let output = oxinetd(&["reload"], &config);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let errors = text(&output.stderr);
    let file = config.display().to_string();
    assert!(
        errors
            .lines()
            .any(|line| line.starts_with(&format!("{file}:12: service bad: key server:"))),
        "{errors}"
    );
    assert!(
        errors.ends_with("reload: 1 error; 1 service running\n"),
        "{errors}"
    );
    let status = status_json(&config);
    assert_eq!(status["last_reload"]["ok"], false);
    assert_eq!(status["last_reload"]["errors"].as_array().unwrap().len(), 1);

    // The whole file refused: the client still finds the daemon.
    daemon.write_config(&format!(
        "control_socket = \"control\"\n{}[[[\n",
        echo(port)
    ));
    let output = oxinetd(&["reload"], &config);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let errors = text(&output.stderr);
    assert!(errors.starts_with(&format!("{file}:8: ")), "{errors}");
    assert!(errors.contains("keeping the old configuration"), "{errors}");
    // The service still answers, and SIGHUP works as before.
    assert_eq!(tcp_request(("127.0.0.1", port), b"hi"), b"hi");
    daemon.write_config(&format!("control_socket = \"control\"\n{}", echo(port)));
    daemon.reload();
    assert_eq!(status_json(&config)["last_reload"]["ok"], true);
}

#[test]
fn a_second_daemon_never_takes_over_a_live_control_socket() {
    let first_setup = Setup::new();
    let socket = first_setup.path("control");
    let (first, _) = first_setup.start(&format!(
        "control_socket = {}\n{}",
        toml_string(&socket),
        echo(free_port())
    ));
    let second = Oxinetd::start(&format!(
        "control_socket = {}\n{}",
        toml_string(&socket),
        echo(free_port())
    ));
    second.wait_for_log(
        "another daemon answers there; it keeps it; running without a control socket",
    );
    // Both configurations lead to the first daemon.
    assert_eq!(status_json(&second.config_path())["pid"], first.pid());
    second.stop();
    assert!(
        Path::new(&socket).exists(),
        "the second daemon left the file alone"
    );
    assert_eq!(status_json(&first.config_path())["pid"], first.pid());
}

#[test]
fn a_stale_control_socket_is_replaced_and_anything_else_left_alone() {
    let setup = Setup::new();
    // A socket file nobody listens on any more, as a killed daemon leaves.
    drop(UnixListener::bind(setup.path("stale")).expect("bind"));
    setup.file("plain", b"not a socket");
    let port = setup.port;
    let (daemon, _) = setup.start(&format!("control_socket = \"stale\"\n{}", echo(port)));
    daemon.wait_for_log("control socket: replaced");
    assert_eq!(status_json(&daemon.config_path())["pid"], daemon.pid());

    daemon.write_config(&format!("control_socket = \"plain\"\n{}", echo(port)));
    daemon.reload();
    daemon.wait_for_log("plain: exists and is not a socket; left alone");
    assert_eq!(
        fs::read(daemon.dir().join("plain")).unwrap(),
        b"not a socket"
    );
    assert!(!daemon.dir().join("stale").exists(), "the old socket went");
}

#[test]
fn only_root_and_the_daemons_user_may_ask() {
    if !have("setpriv") {
        return skip("setpriv (util-linux) is not installed");
    }
    let setup = Setup::new();
    let port = setup.port;
    let (daemon, _) = setup.start(&format!("control_socket = \"control\"\n{}", echo(port)));
    // nobody may read the configuration and reach the socket's folder.
    fs::set_permissions(daemon.dir(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(daemon.config_path(), fs::Permissions::from_mode(0o644)).unwrap();
    let as_nobody = || {
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", BIN])
            .args(["status", "-f"])
            .arg(daemon.config_path());
        run_command(&mut command, RUN)
    };
    // Mode 0600: the file system already says no.
    let output = as_nobody();
    assert_eq!(output.status.code(), Some(111), "{output:?}");
    assert!(
        text(&output.stderr).contains("Permission denied"),
        "{output:?}"
    );
    // Even with the mode opened up, SO_PEERCRED says no.
    let socket = daemon.dir().join("control");
    fs::set_permissions(&socket, fs::Permissions::from_mode(0o666)).unwrap();
    let output = as_nobody();
    assert_eq!(output.status.code(), Some(111), "{output:?}");
    assert!(text(&output.stderr).contains("not permitted"), "{output:?}");
    assert!(output.stdout.is_empty(), "{output:?}");
    daemon.wait_for_log("control socket: uid=65534 is not permitted");
    // Root still may.
    assert_eq!(status_json(&daemon.config_path())["pid"], daemon.pid());
}

#[test]
fn sigusr1_writes_the_status_to_stderr() {
    let setup = Setup::new();
    let port = setup.port;
    let (daemon, _) = setup.start(&echo(port));
    assert_eq!(tcp_request(("127.0.0.1", port), b"hi"), b"hi");
    daemon.signal(Signal::SIGUSR1);
    let log = daemon.wait_for_log("last reload: none");
    assert!(
        log.contains(&format!("oxinetd pid {}, up ", daemon.pid())),
        "{log}"
    );
    let row = log
        .lines()
        .find(|line| line.starts_with("echo "))
        .unwrap_or_else(|| panic!("{log}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[3..], ["listening", "0", "1", "0"], "{log}");
    // SIGUSR1 neither stops nor reloads it.
    assert_eq!(tcp_request(("127.0.0.1", port), b"hi"), b"hi");
    assert!(!daemon.log().contains("reloading"), "{}", daemon.log());
}

/// 50 `oxinetd status` callers at once, and idle clients holding every slot until
/// their deadline: the services are served all along, each probe well within 2 s.
#[test]
fn many_status_callers_never_stall_the_accept_path() {
    let setup = Setup::new();
    let port = setup.port;
    let (daemon, _) = setup.start(&format!("control_socket = \"control\"\n{}", echo(port)));
    let socket = daemon.dir().join("control");
    // Idle clients: connected, half of them with a request never finished, none
    // reading.
    let idle: Vec<UnixStream> = (0..20)
        .map(|n| {
            let mut client = UnixStream::connect(&socket).expect("connect");
            if n % 2 == 0 {
                client.write_all(b"stat").expect("a partial request");
            }
            client
        })
        .collect();
    let callers: Vec<_> = (0..50)
        .map(|_| {
            let config = daemon.config_path();
            thread::spawn(move || oxinetd(&["status", "--json"], &config))
        })
        .collect();
    let mut probes = 0;
    while callers.iter().any(|caller| !caller.is_finished()) || probes < 5 {
        let started = Instant::now();
        assert_eq!(tcp_request(("127.0.0.1", port), b"probe"), b"probe");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(2), "a probe took {took:?}");
        probes += 1;
    }
    for caller in callers {
        let output = caller.join().expect("caller");
        assert!(output.status.success(), "{output:?}");
        let status: Value = serde_json::from_slice(&output.stdout).expect("JSON");
        assert_eq!(status["pid"], daemon.pid());
    }
    // The idle clients were dropped at their deadline, unanswered.
    for mut client in idle {
        let mut reply = Vec::new();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let _ = client.read_to_end(&mut reply);
        assert!(reply.is_empty(), "{}", text(&reply));
        let _ = client.write_all(b"status\n");
    }
    daemon.wait_for_log("control socket: a client took more than 5 s; dropped");
    assert!(status_json(&daemon.config_path())["services"][0]["accepted"].as_u64() >= Some(probes));
}
