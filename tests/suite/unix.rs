//! Unix-domain sockets through the binary, with real clients (`socat`, `nc -U`): the
//! peer's credentials in the server's environment, stream, seqpacket and dgram, what
//! may and may not be found at the path, the file's mode and owners across a reload,
//! its removal, and `per_source` by uid.

use crate::common;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// A Unix-socket service `name` at `path` with `body` as further keys.
fn unix_service(name: &str, path: &str, body: &str) -> String {
    format!(
        "[service.{name}]\nsocket_path = {}\n{body}\n",
        toml_string(path)
    )
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Runs a client command with `input` on its stdin; its stdout.
fn client(program: &str, args: &[&str], input: &[u8]) -> String {
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write client stdin");
    let output = wait_for(&format!("{program} {args:?} to exit"), IO_TIMEOUT, || {
        child
            .try_wait()
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "still running".to_string())
    });
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read client stdout");
    assert!(output.success(), "{program} {args:?}: {output}; out: {out}");
    out
}

fn connect(path: &str) -> UnixStream {
    let stream = wait_for(&format!("connect to {path}"), IO_TIMEOUT, || {
        UnixStream::connect(path).map_err(|e| e.to_string())
    });
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream
}

fn read_line(stream: &UnixStream) -> String {
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .expect("read line");
    line
}

fn mode(path: &str) -> u32 {
    fs::symlink_metadata(path)
        .expect("stat")
        .permissions()
        .mode()
        & 0o7777
}

fn uid_of(user: &str) -> u32 {
    let out = Command::new("id").args(["-u", user]).output().expect("id");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a uid")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no arguments and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

const ENV_REPORT: &str = "echo \"$PROTO $IPCREMOTEEUID $IPCREMOTEEGID $IPCREMOTEPID \
                          ${TCPREMOTEIP-notcp} ${REMOTE_ADDR-noremote}\"";

/// `wait = false`: a server per connection, told who connected by SO_PEERCRED, with no
/// TCP or REMOTE variables; the log shows `uid=` rather than `from=`.
#[test]
fn a_stream_server_learns_its_peer_from_so_peercred() {
    if !have("socat") || !have("nc") {
        return skip("socat and nc (netcat-openbsd) are not installed");
    }
    let setup = Setup::new();
    let path = setup.path("svc.sock");
    let config = unix_service(
        "svc",
        &path,
        &format!(
            "socket_type = \"stream\"\nwait = false\n{}",
            sh_as_root(ENV_REPORT)
        ),
    );
    let (daemon, _) = setup.start(&config);
    assert!(
        fs::symlink_metadata(&path)
            .expect("stat")
            .file_type()
            .is_socket(),
        "{path} is a socket"
    );
    assert_eq!(mode(&path), 0o666, "the default mode");

    let out = client("socat", &["-", &format!("UNIX-CONNECT:{path}")], b"");
    let words: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(words.len(), 6, "{out:?}");
    assert_eq!(&words[..3], ["IPC", "0", "0"], "{out:?}");
    let pid: i32 = words[3].parse().expect("IPCREMOTEPID is a pid");
    assert!(pid > 1, "{out:?}");
    assert_eq!(&words[4..], ["notcp", "noremote"], "{out:?}");

    let out = client("nc", &["-U", "-N", &path], b"");
    assert!(out.starts_with("IPC 0 0 "), "nc -U: {out:?}");

    let log = daemon.wait_for_log("START: svc");
    assert!(
        log.lines()
            .any(|line| line.contains("START: svc") && line.contains(" uid=0")),
        "{log}"
    );
    assert!(
        !log.lines()
            .any(|line| line.contains("START: svc") && line.contains("from=")),
        "{log}"
    );
}

/// seqpacket keeps to connections; dgram hands the bound socket to a `wait` server.
#[test]
fn seqpacket_and_dgram_services_serve_real_clients() {
    if !have("socat") {
        return skip("socat is not installed");
    }
    let setup = Setup::new();
    let seq = setup.path("seq.sock");
    let dgram = setup.path("dgram.sock");
    let got = setup.path("got");
    let dgram_server = format!(
        "echo \"$PROTO\" > {got}.proto; dd bs=512 count=1 of={got}.tmp 2>/dev/null; mv {got}.tmp {got}"
    );
    let config = unix_service(
        "seq",
        &seq,
        &format!(
            "socket_type = \"seqpacket\"\nwait = false\n{}",
            sh_as_root("echo \"seq $PROTO\"")
        ),
    ) + &unix_service(
        "dg",
        &dgram,
        &format!(
            "socket_type = \"dgram\"\nwait = true\n{}",
            sh_as_root(&dgram_server)
        ),
    );
    let (_daemon, _) = setup.start(&config);

    // SOCK_SEQPACKET is 5.
    let out = client("socat", &["-", &format!("UNIX-CONNECT:{seq},type=5")], b"");
    assert_eq!(out, "seq IPC\n");

    client(
        "socat",
        &["-u", "-", &format!("UNIX-SENDTO:{dgram}")],
        b"hello",
    );
    let text = wait_for("the dgram server's file", IO_TIMEOUT, || {
        fs::read_to_string(&got).map_err(|e| e.to_string())
    });
    assert_eq!(text, "hello");
    assert_eq!(fs::read_to_string(format!("{got}.proto")).unwrap(), "IPC\n");
}

/// A socket file nobody listens on is replaced; a regular file is an error and left
/// as it is; a socket another process listens on is not taken over.
#[test]
fn what_is_found_at_the_path() {
    let setup = Setup::new();
    let stale = setup.path("stale.sock");
    drop(UnixListener::bind(&stale).expect("bind"));
    assert!(UnixStream::connect(&stale).is_err(), "nobody listens");
    let regular = setup.file("regular.sock", b"precious\n");
    let live = setup.path("live.sock");
    let holder = UnixListener::bind(&live).expect("bind");
    let server = sh_as_root("echo served");
    let kind = "socket_type = \"stream\"\nwait = false\n";
    let config = unix_service("stale", &stale, &format!("{kind}{server}"))
        + &unix_service("regular", &regular, &format!("{kind}{server}"))
        + &unix_service("live", &live, &format!("{kind}{server}"));
    let (daemon, _) = setup.start(&config);

    let mut stream = connect(&stale);
    let mut out = String::new();
    stream.read_to_string(&mut out).expect("read");
    assert_eq!(out, "served\n");

    let log = daemon.log();
    assert!(
        log.contains(&format!(
            "service regular: {regular} exists and is not a socket; it is left as it is"
        )),
        "{log}"
    );
    assert_eq!(fs::read_to_string(&regular).unwrap(), "precious\n");
    assert!(
        log.contains(&format!(
            "service live: {live} is a socket another process listens on"
        )),
        "{log}"
    );
    // The other process's socket still has its name.
    holder.set_nonblocking(true).expect("nonblocking");
    let _client = UnixStream::connect(&live).expect("connect to the holder");
    holder.accept().expect("the holder still owns its path");
    // No staged file is left behind.
    let names: Vec<String> = fs::read_dir(setup_dir(&daemon))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".sock."))
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

fn setup_dir(daemon: &Oxinetd) -> &Path {
    daemon.dir()
}

/// A reload that changes only the mode sets it on the live file: same inode, and a
/// connection made before goes on being served.
#[test]
fn a_reload_changes_the_mode_in_place() {
    let setup = Setup::new();
    let path = setup.path("svc.sock");
    let service = |mode: &str| {
        unix_service(
            "svc",
            &path,
            &format!(
                "socket_type = \"stream\"\nwait = false\nsocket_mode = \"{mode}\"\n\
                 user = \"root\"\nserver = \"/bin/cat\"\n"
            ),
        )
    };
    let (daemon, _) = setup.start(&service("0666"));
    assert_eq!(mode(&path), 0o666);
    let inode = fs::symlink_metadata(&path).unwrap().ino();
    let mut live = connect(&path);
    live.write_all(b"before\n").unwrap();
    assert_eq!(read_line(&live), "before\n");

    daemon.write_config(&service("0600"));
    daemon.reload();
    assert_eq!(mode(&path), 0o600, "{}", daemon.log());
    assert_eq!(fs::symlink_metadata(&path).unwrap().ino(), inode);
    assert!(
        daemon
            .log()
            .contains("socket file adjusted in place (mode 0600")
    );
    live.write_all(b"after\n").unwrap();
    assert_eq!(read_line(&live), "after\n");
    let mut again = connect(&path);
    again.write_all(b"new\n").unwrap();
    assert_eq!(read_line(&again), "new\n");
}

/// The server runs as `nobody`, and the socket file belongs to `nobody`.
#[test]
fn a_server_runs_as_another_user() {
    if !is_root() {
        return skip("switching users needs root");
    }
    let setup = Setup::new();
    let path = setup.path("svc.sock");
    let nobody = uid_of("nobody");
    let config = unix_service(
        "svc",
        &path,
        &format!(
            "socket_type = \"stream\"\nwait = false\nsocket_owner = \"nobody\"\n\
             socket_mode = \"0600\"\nuser = \"nobody\"\n{}",
            sh("echo \"$(id -u) $IPCREMOTEEUID\"")
        ),
    );
    let (_daemon, _) = setup.start(&config);
    let status = fs::symlink_metadata(&path).unwrap();
    assert_eq!(status.uid(), nobody);
    assert_eq!(status.mode() & 0o777, 0o600);
    let mut stream = connect(&path);
    let mut out = String::new();
    stream.read_to_string(&mut out).expect("read");
    assert_eq!(out, format!("{nobody} 0\n"));
}

/// The file goes when a reload removes the service, and at shutdown.
#[test]
fn the_file_is_removed_with_its_service() {
    let setup = Setup::new();
    let a = setup.path("a.sock");
    let b = setup.path("b.sock");
    let service = |name: &str, path: &str| {
        unix_service(
            name,
            path,
            &format!(
                "socket_type = \"stream\"\nwait = false\n{}",
                sh_as_root("echo hi")
            ),
        )
    };
    let (daemon, _) = setup.start(&(service("a", &a) + &service("b", &b)));
    assert!(Path::new(&a).exists() && Path::new(&b).exists());

    daemon.write_config(&service("a", &a));
    daemon.reload();
    assert!(!Path::new(&b).exists(), "{}", daemon.log());
    assert!(Path::new(&a).exists());

    daemon.stop();
    assert!(!Path::new(&a).exists());
}

/// `per_source = 1` counts by the peer's uid: a second connection from uid 0 while the
/// first is served is refused.
#[test]
fn per_source_counts_by_uid() {
    let setup = Setup::new();
    let path = setup.path("svc.sock");
    let config = unix_service(
        "svc",
        &path,
        &format!(
            "socket_type = \"stream\"\nwait = false\nper_source = 1\n{}",
            sh_as_root("echo up; exec cat")
        ),
    );
    let (daemon, _) = setup.start(&config);
    let first = connect(&path);
    assert_eq!(read_line(&first), "up\n");

    let mut second = connect(&path);
    let mut out = String::new();
    second.read_to_string(&mut out).expect("read");
    assert_eq!(out, "", "refused: closed without a server");
    let log = daemon.wait_for_log("FAIL: svc per_source_limit");
    assert!(log.contains("FAIL: svc per_source_limit uid=0"), "{log}");

    // The first is still served; once it ends, a new one is admitted.
    (&first).write_all(b"still\n").unwrap();
    assert_eq!(read_line(&first), "still\n");
    drop(first);
    wait_for("a new connection admitted", Duration::from_secs(10), || {
        let third = connect(&path);
        match read_line(&third).as_str() {
            "up\n" => Ok(()),
            other => Err(format!("read {other:?}")),
        }
    });
}

/// Keys that only apply to IP are errors with `socket_path`, each named; `[defaults]`
/// written for IP services does not make a Unix one fail.
#[test]
fn ip_keys_are_errors_with_socket_path() {
    for (line, key) in [
        ("port = 7000", "port"),
        ("protocol = \"tcp\"", "protocol"),
        ("bind = \"127.0.0.1\"", "bind"),
        ("flags = [\"IPv4\"]", "flags"),
        ("only_from = [\"127.0.0.1\"]", "only_from"),
        ("no_access = [\"10.0.0.0/8\"]", "no_access"),
        ("socket_mode = \"0999\"", "socket_mode"),
    ] {
        let config = format!(
            "[defaults]\nonly_from = [\"127.0.0.1\"]\nflags = [\"IPv4\"]\n\n[service.svc]\n\
             socket_type = \"stream\"\nsocket_path = \"/run/oxinetd-test.sock\"\n{line}\n\
             wait = false\nuser = \"root\"\nserver = \"/bin/cat\"\n"
        );
        let out = check(&config);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{line} accepted: {stderr}");
        assert!(
            stderr.contains(&format!(":8: service svc: key {key}: ")),
            "{line}: {stderr}"
        );
        assert_eq!(
            stderr
                .lines()
                .filter(|l| l.contains("service svc:"))
                .count(),
            1,
            "only {key}: {stderr}"
        );
    }
    let fine = "[defaults]\nonly_from = [\"127.0.0.1\"]\nflags = [\"IPv4\"]\n\n[service.svc]\n\
                socket_type = \"seqpacket\"\nsocket_path = \"/run/oxinetd-test.sock\"\n\
                wait = false\nuser = \"root\"\nserver = \"/bin/cat\"\n";
    let out = check(fine);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let relative = fine.replace("/run/oxinetd-test.sock", "relative.sock");
    let out = check(&relative);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(":7: service svc: key socket_path: relative.sock is not an absolute path"),
        "{stderr}"
    );
    assert_check_rejects("socket_mode = \"0600\"", "socket_mode");
}

/// A reload that changes the socket type binds a new socket at the same path: the
/// service's own file is replaced, not taken for another daemon's.
#[test]
fn a_reload_to_another_socket_type_keeps_the_path() {
    if !have("socat") {
        return skip("socat is not installed");
    }
    let setup = Setup::new();
    let path = setup.path("svc.sock");
    let service = |kind: &str| {
        unix_service(
            "svc",
            &path,
            &format!(
                "socket_type = \"{kind}\"\nwait = false\n{}",
                sh_as_root("echo \"$PROTO\"")
            ),
        )
    };
    let (daemon, _) = setup.start(&service("stream"));
    assert_eq!(
        client("socat", &["-", &format!("UNIX-CONNECT:{path}")], b""),
        "IPC\n"
    );
    daemon.write_config(&service("seqpacket"));
    daemon.reload();
    assert!(
        !daemon.log().contains("keeping the previous definition"),
        "{}",
        daemon.log()
    );
    let out = client("socat", &["-", &format!("UNIX-CONNECT:{path},type=5")], b"");
    assert_eq!(out, "IPC\n");
    daemon.stop();
    assert!(!Path::new(&path).exists());
}
