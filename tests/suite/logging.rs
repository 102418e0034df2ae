//! Per-service logging: `log_type` FILE (xinetd's file format, size limits, reopen on
//! SIGHUP) and SYSLOG, `log_on_success` / `log_on_failure` options, exit statuses and
//! signals, exec failures, and ident lookups (USERID, IDONLY). Lines are checked word for word.
use crate::common;

use std::fs;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Instant;

use common::{
    IO_TIMEOUT, Oxinetd, READY_TIMEOUT, Setup, check, free_port, read_to_eof, sh_as_root,
    tcp_connect, tcp_request, tempdir, v4, wait_for, wait_until,
};

/// The message of one line in xinetd's file format, `YY/MM/DD@HH:MM:SS: MESSAGE`; panics
/// unless the stamp has exactly that shape.
fn file_message(line: &str) -> &str {
    let (stamp, message) = line
        .split_once(": ")
        .unwrap_or_else(|| panic!("log file line without \": \": {line:?}"));
    let (date, time) = stamp
        .split_once('@')
        .unwrap_or_else(|| panic!("stamp without '@': {line:?}"));
    // xinetd's "%02d/%d/%d@%02d:%02d:%02d": month and day are not padded.
    let check = |part: &str, sep: char, ranges: [(u32, u32); 3], widths: [&[usize]; 3]| {
        let fields: Vec<&str> = part.split(sep).collect();
        assert_eq!(fields.len(), 3, "bad stamp in {line:?}");
        for ((field, (low, high)), width) in fields.iter().zip(ranges).zip(widths) {
            assert!(
                width.contains(&field.len()) && field.bytes().all(|b| b.is_ascii_digit()),
                "stamp field {field:?} has the wrong width in {line:?}"
            );
            let value: u32 = field.parse().unwrap();
            assert!(
                (low..=high).contains(&value),
                "stamp field {field:?} out of range in {line:?}"
            );
        }
    };
    check(
        date,
        '/',
        [(0, 99), (1, 12), (1, 31)],
        [&[2], &[1, 2], &[1, 2]],
    );
    check(time, ':', [(0, 23), (0, 59), (0, 60)], [&[2], &[2], &[2]]);
    message
}

/// The messages of a log file in xinetd's format so far (none while it does not exist).
fn file_messages(path: &Path) -> Vec<String> {
    let bytes = fs::read(path).unwrap_or_default();
    String::from_utf8_lossy(&bytes)
        .lines()
        .map(|line| file_message(line).to_owned())
        .collect()
}

/// Waits until at least `n` messages of the file start with `prefix`; returns all messages.
fn wait_file(path: &Path, prefix: &str, n: usize) -> Vec<String> {
    let what = format!("{n} x {prefix:?} in {}", path.display());
    wait_for(&what, READY_TIMEOUT, || {
        let messages = file_messages(path);
        if messages.iter().filter(|m| m.starts_with(prefix)).count() >= n {
            Ok(messages)
        } else {
            Err(format!("it holds:\n{}", messages.join("\n")))
        }
    })
}

/// `log_type = "FILE PATH"`, a line of service keys.
fn log_to_file(path: impl std::fmt::Display) -> String {
    format!(
        "log_type = {}\n",
        common::toml_string(&format!("FILE {path}"))
    )
}

/// Serves `svc` running `script` (which prints its pid first) with its lines in the log
/// file DIR/svc.log, and connects once; the daemon, the server's pid, and the file's
/// messages once its EXIT is there.
fn serve_once_logging_to_file(script: &str) -> (Oxinetd, u32, Vec<String>) {
    let setup = Setup::new();
    let log = setup.path("svc.log");
    let config = setup.service(&format!("{}{}", log_to_file(&log), sh_as_root(script)));
    let (daemon, port) = setup.start(&config);
    let pid = printed_pid(&output(port));
    let messages = wait_file(Path::new(&log), "EXIT: svc", 1);
    (daemon, pid, messages)
}

/// The messages starting with `prefix`.
fn with_prefix<'a>(messages: &'a [String], prefix: &str) -> Vec<&'a str> {
    messages
        .iter()
        .filter(|m| m.starts_with(prefix))
        .map(String::as_str)
        .collect()
}

/// The event part (from `START: `, `EXIT: `, ...) of each daemon stderr line holding `kind`.
fn stderr_events(log: &str, kind: &str) -> Vec<String> {
    log.lines()
        .filter_map(|line| line.find(kind).map(|i| line[i..].to_owned()))
        .collect()
}

/// `message` with a `duration=N(sec)` word replaced by `duration=D(sec)`, after checking N
/// is a whole number of seconds no larger than `max`.
fn durations_as_d(message: &str, max: u64) -> String {
    let words: Vec<String> = message
        .split(' ')
        .map(|word| match word.strip_prefix("duration=") {
            Some(rest) => {
                let n = rest
                    .strip_suffix("(sec)")
                    .unwrap_or_else(|| panic!("duration without (sec): {message:?}"));
                let n: u64 = n
                    .parse()
                    .unwrap_or_else(|_| panic!("duration is not whole seconds: {message:?}"));
                assert!(n <= max, "duration {n} > {max} in {message:?}");
                "duration=D(sec)".to_owned()
            }
            None => word.to_owned(),
        })
        .collect();
    words.join(" ")
}

/// `message` with a `pid=N` word (N a number) replaced by `pid=P`.
fn pids_as_p(message: &str) -> String {
    let words: Vec<String> = message
        .split(' ')
        .map(|word| match word.strip_prefix("pid=") {
            Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => "pid=P".to_owned(),
            _ => word.to_owned(),
        })
        .collect();
    words.join(" ")
}

/// One connection with no input; the server's output as text.
fn output(port: u16) -> String {
    String::from_utf8(tcp_request(v4(port), b"")).expect("UTF-8 output")
}

/// The pid a server printed as its first line (its `$$`).
fn printed_pid(output: &str) -> u32 {
    output
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("server did not print its pid: {output:?}"))
}

/// Waits until the process `pid` is gone, i.e. the daemon has reaped it.
fn wait_reaped(pid: u32) {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    wait_until(&format!("server {pid} reaped"), READY_TIMEOUT, || {
        !proc_dir.exists()
    });
}

/// Serves the file log `svc.log` of a service with `log_on_success = LIST` and a second
/// service `marker` (default options) logging to the same file, connects once to `svc`
/// and returns its pid and the file's messages once everything about that connection has
/// been logged: the server was reaped before `marker` was connected, and the daemon
/// handles events in order, so `marker`'s EXIT comes after any line about `svc`.
fn one_connection_with(log_on_success: &str) -> (u32, Vec<String>) {
    let setup = Setup::new();
    let log = setup.path("svc.log");
    let marker_port = free_port();
    let config = format!(
        "{}{}log_on_success = {log_on_success}\n\
         [service.marker]\nsocket_type = \"stream\"\nwait = false\nport = {marker_port}\n\
         {}{}",
        setup.service(&sh_as_root("echo $$")),
        log_to_file(&log),
        log_to_file(&log),
        sh_as_root("echo marker"),
    );
    let (daemon, port) = setup.start(&config);
    let pid = printed_pid(&output(port));
    wait_reaped(pid);
    assert_eq!(output(marker_port), "marker\n");
    let messages = wait_file(Path::new(&log), "EXIT: marker", 1);
    drop(daemon);
    let svc: Vec<String> = messages
        .into_iter()
        .filter(|m| !m.contains(" marker"))
        .collect();
    (pid, svc)
}

#[test]
fn file_log_has_start_and_exit_in_xinetd_format_and_not_on_stderr() {
    let (daemon, pid, messages) = serve_once_logging_to_file("echo $$");
    let messages: Vec<String> = messages.iter().map(|m| durations_as_d(m, 1)).collect();
    assert_eq!(
        messages,
        [
            format!("START: svc pid={pid} from=127.0.0.1"),
            format!("EXIT: svc status=0 pid={pid} duration=D(sec)"),
        ]
    );
    let stderr = daemon.log();
    assert!(
        !stderr.contains("START: svc") && !stderr.contains("EXIT: svc"),
        "service lines also went to stderr:\n{stderr}"
    );
}

#[test]
fn stderr_log_has_start_and_exit_words_without_log_type() {
    let setup = Setup::new();
    let config = setup.service(&sh_as_root("echo $$"));
    let (daemon, port) = setup.start(&config);
    let pid = printed_pid(&output(port));
    let log = daemon.wait_for_log("EXIT: svc");
    assert_eq!(
        stderr_events(&log, "START: svc"),
        [format!("START: svc pid={pid} from=127.0.0.1")]
    );
    let exits: Vec<String> = stderr_events(&log, "EXIT: svc")
        .iter()
        .map(|m| durations_as_d(m, 1))
        .collect();
    assert_eq!(
        exits,
        [format!("EXIT: svc status=0 pid={pid} duration=D(sec)")]
    );
}

#[test]
fn log_on_success_pid_logs_start_with_pid_only_and_no_exit() {
    let (pid, messages) = one_connection_with("[\"PID\"]");
    assert_eq!(messages, [format!("START: svc pid={pid}")]);
}

#[test]
fn log_on_success_host_logs_start_with_from_only_and_no_exit() {
    let (_, messages) = one_connection_with("[\"HOST\"]");
    assert_eq!(messages, ["START: svc from=127.0.0.1"]);
}

#[test]
fn log_on_success_exit_logs_the_status_only() {
    let (_, messages) = one_connection_with("[\"EXIT\"]");
    assert_eq!(messages, ["START: svc", "EXIT: svc status=0"]);
}

#[test]
fn log_on_success_duration_logs_the_duration_only() {
    let (_, messages) = one_connection_with("[\"DURATION\"]");
    let messages: Vec<String> = messages.iter().map(|m| durations_as_d(m, 1)).collect();
    assert_eq!(messages, ["START: svc", "EXIT: svc duration=D(sec)"]);
}

#[test]
fn log_on_success_empty_logs_no_start_and_no_exit() {
    let (_, messages) = one_connection_with("[]");
    assert_eq!(messages, Vec::<String>::new());
}

#[test]
fn log_on_success_as_one_string_of_words() {
    let (pid, messages) = one_connection_with("\"PID EXIT\"");
    assert_eq!(
        messages,
        [
            format!("START: svc pid={pid}"),
            format!("EXIT: svc status=0 pid={pid}"),
        ]
    );
}

/// Serves a server running `script` (which prints its pid first), and checks its EXIT
/// line in the log file says `how` it ended (`status=N` or `signal=N`).
fn assert_exit_logged(script: &str, how: &str) {
    let (_daemon, pid, messages) = serve_once_logging_to_file(script);
    let exits: Vec<String> = with_prefix(&messages, "EXIT: svc")
        .iter()
        .map(|m| durations_as_d(m, 1))
        .collect();
    assert_eq!(
        exits,
        [format!("EXIT: svc {how} pid={pid} duration=D(sec)")]
    );
}

#[test]
fn exit_status_of_the_server_is_logged() {
    assert_exit_logged("echo $$; exit 3", "status=3");
}

#[test]
fn killed_server_is_logged_with_its_signal() {
    assert_exit_logged("echo $$; kill -KILL $$", "signal=9");
}

/// Serves `server` (a path that passes the config check) as `user`, connects once and
/// checks the FAIL line names `errno_text` and the EXIT line says status=127.
fn assert_exec_failure(setup: Setup, server: &str, user: &str, errno_text: &str) {
    let log = setup.path("svc.log");
    let config = setup.service(&format!(
        "{}user = {}\nserver = {}\n",
        log_to_file(&log),
        common::toml_string(user),
        common::toml_string(server)
    ));
    let (daemon, port) = setup.start(&config);
    assert_eq!(output(port), "", "client got data from a failed exec");
    let messages = wait_file(Path::new(&log), "EXIT: svc", 1);
    let fails = with_prefix(&messages, "FAIL: svc");
    assert_eq!(fails.len(), 1, "FAIL lines: {messages:#?}");
    let fail = fails[0];
    assert!(
        fail.starts_with("FAIL: svc exec failed: ")
            && fail.contains(errno_text)
            && fail.ends_with(" from=127.0.0.1"),
        "FAIL line {fail:?} is not `FAIL: svc exec failed: {errno_text} from=127.0.0.1`"
    );
    let exits: Vec<String> = with_prefix(&messages, "EXIT: svc")
        .iter()
        .map(|m| pids_as_p(&durations_as_d(m, 1)))
        .collect();
    assert_eq!(exits, ["EXIT: svc status=127 pid=P duration=D(sec)"]);
    // The daemon goes on serving.
    assert_eq!(output(port), "");
    wait_file(Path::new(&log), "EXIT: svc", 2);
    drop(daemon);
}

#[test]
fn exec_failure_eacces_logs_fail_with_errno_text_and_exit_127() {
    // Executable for root (so the config is valid), not for nobody: execve fails EACCES.
    let setup = Setup::new();
    let server = setup.script("private.sh", "#!/bin/sh\necho never\n");
    fs::set_permissions(&server, fs::Permissions::from_mode(0o700)).unwrap();
    assert_exec_failure(setup, &server, "nobody", "Permission denied");
}

#[test]
fn exec_failure_bad_interpreter_logs_fail_with_errno_text_and_exit_127() {
    let setup = Setup::new();
    let server = setup.script("broken.sh", "#!/nonexistent\necho never\n");
    assert_exec_failure(setup, &server, "root", "No such file or directory");
}

/// Serves `svc` with `instances = 1` and `log_on_failure = LIST` into a log file, holds
/// the one slot, has a second connection refused, then lets the first end; returns the
/// file's messages once its EXIT is logged (after any FAIL line of the refusal).
fn refused_by_instances(log_on_failure: &str) -> Vec<String> {
    let setup = Setup::new();
    let log = setup.path("svc.log");
    let config = setup.service(&format!(
        "{}log_on_failure = {log_on_failure}\ninstances = 1\n{}",
        log_to_file(&log),
        sh_as_root("echo hi; read line; echo bye")
    ));
    let (daemon, port) = setup.start(&config);
    let mut held = tcp_connect(v4(port));
    let mut hi = [0u8; 3];
    held.read_exact(&mut hi).unwrap();
    assert_eq!(&hi, b"hi\n");
    let mut refused = tcp_connect(v4(port));
    assert_eq!(
        read_to_eof(&mut refused),
        b"",
        "refused connection got data"
    );
    held.write_all(b"x\n").unwrap();
    assert_eq!(read_to_eof(&mut held), b"bye\n");
    let messages = wait_file(Path::new(&log), "EXIT: svc", 1);
    drop(daemon);
    messages
}

#[test]
fn log_on_failure_host_logs_the_refusal_with_the_peer() {
    let messages = refused_by_instances("[\"HOST\"]");
    assert_eq!(
        with_prefix(&messages, "FAIL:"),
        ["FAIL: svc service_limit from=127.0.0.1"]
    );
}

#[test]
fn log_on_failure_empty_logs_no_fail_line() {
    let messages = refused_by_instances("[]");
    assert_eq!(with_prefix(&messages, "FAIL:"), Vec::<&str>::new());
    // The refusal did happen: only one server ever started.
    assert_eq!(
        with_prefix(&messages, "START: svc").len(),
        1,
        "{messages:#?}"
    );
}

/// Receives datagrams on `socket` until one contains `needle`; panics after 10 s.
fn recv_containing(socket: &UnixDatagram, needle: &str, seen: &mut Vec<String>) -> String {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut buf = vec![0u8; 65536];
    loop {
        if let Some(found) = seen.iter().find(|d| d.contains(needle)) {
            return found.clone();
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            panic!("no datagram with {needle:?} within {READY_TIMEOUT:?}; got {seen:#?}");
        }
        socket.set_read_timeout(Some(left)).unwrap();
        match socket.recv(&mut buf) {
            Ok(n) => seen.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("recv on the syslog socket: {e}"),
        }
    }
}

/// The message after `oxinetd[PID]: ` in a syslog datagram `<PRI>... oxinetd[PID]: MSG`,
/// after checking the PRI.
fn syslog_message(datagram: &str, pri: u32, daemon_pid: i32) -> String {
    assert!(
        datagram.starts_with(&format!("<{pri}>")),
        "datagram {datagram:?} does not start with <{pri}>"
    );
    let tag = format!("oxinetd[{daemon_pid}]: ");
    let at = datagram
        .find(&tag)
        .unwrap_or_else(|| panic!("datagram {datagram:?} lacks {tag:?}"));
    datagram[at + tag.len()..]
        .trim_end_matches(['\n', '\0'])
        .to_owned()
}

/// Serves `svc` with `log_type` (a SYSLOG one) sending to a unix datagram socket bound in
/// the test's dir, connects once, and checks the START and EXIT datagrams carry `pri`.
fn assert_syslog(log_type: &str, pri: u32) {
    let setup = Setup::new();
    let socket_path = setup.path("log.sock");
    // Bound before the daemon starts, as /dev/log is.
    let syslog = UnixDatagram::bind(&socket_path).expect("bind syslog socket");
    let config = format!(
        "syslog_socket = {}\n{}",
        common::toml_string(&socket_path),
        setup.service(&format!(
            "log_type = {}\n{}",
            common::toml_string(log_type),
            sh_as_root("echo $$")
        ))
    );
    let (daemon, port) = setup.start(&config);
    let pid = printed_pid(&output(port));
    let mut seen = Vec::new();
    let start = recv_containing(&syslog, "START: svc", &mut seen);
    assert_eq!(
        syslog_message(&start, pri, daemon.pid()),
        format!("START: svc pid={pid} from=127.0.0.1")
    );
    let exit = recv_containing(&syslog, "EXIT: svc", &mut seen);
    assert_eq!(
        durations_as_d(&syslog_message(&exit, pri, daemon.pid()), 1),
        format!("EXIT: svc status=0 pid={pid} duration=D(sec)")
    );
    let stderr = daemon.log();
    assert!(
        !stderr.contains("START: svc") && !stderr.contains("EXIT: svc"),
        "service lines also went to stderr:\n{stderr}"
    );
}

#[test]
fn syslog_lines_go_to_syslog_socket_with_facility_and_level() {
    // local3 = 19, warning = 4: PRI 19 * 8 + 4.
    assert_syslog("SYSLOG local3 warning", 156);
}

#[test]
fn syslog_level_defaults_to_info() {
    // daemon = 3, info = 6: PRI 3 * 8 + 6.
    assert_syslog("SYSLOG daemon", 30);
}

#[test]
fn sighup_reopens_the_log_file_so_it_can_be_rotated() {
    let setup = Setup::new();
    let log = PathBuf::from(setup.path("svc.log"));
    let rotated = PathBuf::from(setup.path("svc.log.1"));
    let config = setup.service(&format!(
        "{}{}",
        log_to_file(log.display()),
        sh_as_root("echo $$")
    ));
    let (daemon, port) = setup.start(&config);
    let first = printed_pid(&output(port));
    wait_file(&log, "EXIT: svc", 1);

    fs::rename(&log, &rotated).unwrap();
    daemon.reload();
    let second = printed_pid(&output(port));
    let messages: Vec<String> = wait_file(&log, "EXIT: svc", 1)
        .iter()
        .map(|m| durations_as_d(m, 1))
        .collect();
    assert_eq!(
        messages,
        [
            format!("START: svc pid={second} from=127.0.0.1"),
            format!("EXIT: svc status=0 pid={second} duration=D(sec)"),
        ]
    );
    let old: Vec<String> = file_messages(&rotated)
        .iter()
        .map(|m| durations_as_d(m, 1))
        .collect();
    assert_eq!(
        old,
        [
            format!("START: svc pid={first} from=127.0.0.1"),
            format!("EXIT: svc status=0 pid={first} duration=D(sec)"),
        ]
    );
}

#[test]
fn reload_moves_a_services_lines_to_a_new_log_type() {
    let setup = Setup::new();
    let log = PathBuf::from(setup.path("svc.log"));
    let plain = setup.service(&sh_as_root("echo $$"));
    let with_file = setup.service(&format!(
        "{}{}",
        log_to_file(log.display()),
        sh_as_root("echo $$")
    ));
    let (daemon, port) = setup.start(&plain);
    let first = printed_pid(&output(port));
    daemon.wait_for_log(&format!("EXIT: svc status=0 pid={first}"));

    daemon.write_config(&with_file);
    daemon.reload();
    assert_next_server_logs_only_to(&daemon, port, &log);
}

/// Connects once more: the new server's START and EXIT go to the file `log` and not to
/// stderr.
fn assert_next_server_logs_only_to(daemon: &Oxinetd, port: u16, log: &Path) {
    let pid = printed_pid(&output(port));
    let messages = wait_file(log, "EXIT: svc", 1);
    assert_eq!(
        with_prefix(&messages, "START:"),
        [format!("START: svc pid={pid} from=127.0.0.1")]
    );
    assert!(
        !daemon.log().contains(&format!("pid={pid}")),
        "the server's lines also went to stderr:\n{}",
        daemon.log()
    );
}

#[test]
fn file_hard_limit_stops_the_log_growing_and_the_service_goes_on() {
    let setup = Setup::new();
    // Outside the daemon's dir, which `stop` removes.
    let log_dir = tempdir();
    let log = log_dir.path().join("svc.log");
    let config = setup.service(&format!(
        "log_type = {}\n{}",
        common::toml_string(&format!("FILE {} 1K 2K", log.display())),
        sh_as_root("echo ok")
    ));
    let (daemon, port) = setup.start(&config);
    // Each connection logs two lines of about 70 bytes: 40 connections would write
    // about 5.6K without the limit.
    for _ in 0..40 {
        assert_eq!(output(port), "ok\n");
    }
    // Stopping the daemon ends every write it could still make to the file.
    assert!(daemon.stop().success());
    let size = fs::metadata(&log).unwrap().len();
    assert!(
        size > 1024 && size <= 2048 + 100,
        "log file is {size} bytes, want past 1K and at most about 2K"
    );
    // Every line written is whole.
    let text = fs::read_to_string(&log).unwrap();
    assert!(text.ends_with('\n'), "last line is cut: {text:?}");
    for line in text.lines() {
        file_message(line);
    }
}

#[test]
fn defaults_log_type_applies_to_services_without_their_own() {
    let setup = Setup::new();
    let shared = PathBuf::from(setup.path("shared.log"));
    let own = PathBuf::from(setup.path("own.log"));
    let other_port = free_port();
    let config = format!(
        "[defaults]\n{}\n{}\n\
         [service.other]\nsocket_type = \"stream\"\nwait = false\nport = {other_port}\n\
         {}{}",
        log_to_file(shared.display()),
        setup.service(&sh_as_root("echo $$")),
        log_to_file(own.display()),
        sh_as_root("echo $$"),
    );
    let (daemon, port) = setup.start(&config);
    let pid = printed_pid(&output(port));
    let other_pid = printed_pid(&output(other_port));
    let shared_messages = wait_file(&shared, "EXIT: svc", 1);
    let own_messages = wait_file(&own, "EXIT: other", 1);
    assert_eq!(
        with_prefix(&shared_messages, "START:"),
        [format!("START: svc pid={pid} from=127.0.0.1")]
    );
    assert_eq!(
        with_prefix(&own_messages, "START:"),
        [format!("START: other pid={other_pid} from=127.0.0.1")]
    );
    assert!(!daemon.log().contains("START:"), "{}", daemon.log());
}

#[test]
fn bad_log_type_is_a_config_error_naming_the_key() {
    let good = check(
        "[service.svc]\nsocket_type = \"stream\"\nwait = false\nport = 20001\n\
         user = \"root\"\nserver = \"/bin/true\"\nlog_type = \"SYSLOG daemon info\"\n",
    );
    assert!(
        good.status.success(),
        "valid log_type rejected: {}",
        String::from_utf8_lossy(&good.stderr)
    );
    for bad in [
        "BOGUS /tmp/x",
        "FILE",
        "SYSLOG",
        "SYSLOG nosuchfacility",
        "SYSLOG daemon loud",
        "FILE /tmp/oxinetd-x.log 1Q",
        "",
    ] {
        let output = check(&format!(
            "[service.svc]\nsocket_type = \"stream\"\nwait = false\nport = 20001\n\
             user = \"root\"\nserver = \"/bin/true\"\nlog_type = {}\n",
            common::toml_string(bad)
        ));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{bad:?}: {stderr}");
        assert!(
            stderr.contains("service svc: key log_type: "),
            "{bad:?}: error does not name the key: {stderr}"
        );
    }
}

/// A fake identd on `ip`:113 answering each query with `user` for the ports asked;
/// records every query line. Runs until the test process ends.
fn fake_identd(ip: Ipv4Addr, user: &'static str) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    let listener = TcpListener::bind((ip, 113)).expect("bind the fake identd on port 113");
    let queries = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = queries.clone();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut query = String::new();
            if reader.read_line(&mut query).is_err() {
                continue;
            }
            let query = query.trim_end().to_owned();
            record.lock().unwrap().push(query.clone());
            let ports: Vec<String> = query.split(',').map(|p| p.trim().to_owned()).collect();
            let reply = match ports.as_slice() {
                [ours, theirs] => format!("{ours} , {theirs} : USERID : UNIX : {user}\r\n"),
                _ => format!("{query} : ERROR : UNKNOWN-ERROR\r\n"),
            };
            let _ = (&stream).write_all(reply.as_bytes());
        }
    });
    queries
}

/// Connects from `source` (a loopback address) to `port` on 127.0.0.1.
fn connect_from(source: Ipv4Addr, port: u16) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .expect("client socket");
    socket
        .bind(&SocketAddr::from((source, 0)).into())
        .expect("bind client source address");
    socket
        .connect_timeout(&v4(port).into(), IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect from {source} to port {port}: {e}"));
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

#[test]
fn userid_from_the_peers_identd_is_logged() {
    // The only test that uses 127.0.0.113: ident queries go to the peer's port 113.
    let client_ip = Ipv4Addr::new(127, 0, 0, 113);
    let queries = fake_identd(client_ip, "alice");
    let setup = Setup::new();
    let log = setup.path("svc.log");
    let idonly_port = free_port();
    let config = format!(
        "{}\n[service.idsvc]\nsocket_type = \"stream\"\nwait = false\nport = {idonly_port}\n\
         flags = [\"IDONLY\"]\nlog_on_success = [\"HOST\", \"USERID\"]\n{}",
        setup.service(&format!(
            "{}log_on_success = [\"PID\", \"HOST\", \"USERID\", \"EXIT\", \"DURATION\"]\n{}",
            log_to_file(&log),
            sh_as_root("echo served")
        )),
        sh_as_root("echo identified"),
    );
    let (daemon, port) = setup.start(&config);
    let mut stream = connect_from(client_ip, port);
    let client_port = stream.local_addr().unwrap().port();
    assert_eq!(read_to_eof(&mut stream), b"served\n");
    let messages = wait_file(Path::new(&log), "USERID: svc", 1);
    assert_eq!(with_prefix(&messages, "USERID:"), ["USERID: svc alice"]);
    // RFC 1413: the port on the identd's side (the client's) first, then ours.
    let queries = queries.lock().unwrap().clone();
    let asked: Vec<Vec<String>> = queries
        .iter()
        .map(|q| q.split(',').map(|p| p.trim().to_owned()).collect())
        .collect();
    assert_eq!(
        asked,
        [vec![client_port.to_string(), port.to_string()]],
        "ident queries: {queries:?}"
    );
    let starts = with_prefix(&messages, "START: svc");
    assert_eq!(starts.len(), 1, "{messages:#?}");
    assert!(
        starts[0].ends_with(" from=127.0.0.113"),
        "START line {:?}",
        starts[0]
    );

    // IDONLY admits a peer whose identd answers.
    let mut stream = connect_from(client_ip, idonly_port);
    assert_eq!(read_to_eof(&mut stream), b"identified\n");
    let stderr = daemon.wait_for_log("USERID: idsvc");
    assert_eq!(
        stderr_events(&stderr, "USERID: idsvc"),
        ["USERID: idsvc alice"]
    );
}

#[test]
fn idonly_refuses_a_peer_without_an_ident_answer() {
    // Nothing listens on 127.0.0.114:113, so the ident query is refused at once.
    let client_ip = Ipv4Addr::new(127, 0, 0, 114);
    let setup = Setup::new();
    let ran = setup.path("ran");
    let config = setup.service(&format!(
        "flags = [\"IDONLY\"]\nlog_on_success = [\"PID\", \"HOST\", \"USERID\"]\n\
         log_on_failure = [\"HOST\", \"USERID\"]\n{}",
        sh_as_root(&format!("touch {ran}; echo served"))
    ));
    let (daemon, port) = setup.start(&config);
    let mut stream = connect_from(client_ip, port);
    assert_eq!(read_to_eof(&mut stream), b"", "refused peer got data");
    let log = daemon.wait_for_log("NOID: svc");
    assert_eq!(
        stderr_events(&log, "NOID: svc"),
        ["NOID: svc 127.0.0.114 no ident answer"]
    );
    assert!(!Path::new(&ran).exists(), "the server ran for {client_ip}");
    assert!(!log.contains("START: svc"), "{log}");
}

#[test]
fn a_log_file_that_could_not_be_opened_is_tried_again_at_reload() {
    let setup = Setup::new();
    let dir = PathBuf::from(setup.path("logs"));
    let log = dir.join("svc.log");
    let config = setup.service(&format!(
        "{}{}",
        log_to_file(log.display()),
        sh_as_root("echo $$")
    ));
    // The directory does not exist yet: the lines go to stderr meanwhile.
    let (daemon, port) = setup.start(&config);
    daemon.wait_for_log("service svc: log_type: cannot open log file");
    let first = printed_pid(&output(port));
    daemon.wait_for_log(&format!("EXIT: svc status=0 pid={first}"));

    // The same configuration, reloaded once the directory is there.
    fs::create_dir(&dir).unwrap();
    daemon.reload();
    daemon.wait_for_log("service svc: log_type: opened now");
    assert_next_server_logs_only_to(&daemon, port, &log);
}

#[test]
fn reload_moves_syslog_lines_to_a_new_syslog_socket() {
    let setup = Setup::new();
    let (first_path, second_path) = (setup.path("first.sock"), setup.path("second.sock"));
    let first = UnixDatagram::bind(&first_path).expect("bind the first syslog socket");
    let second = UnixDatagram::bind(&second_path).expect("bind the second syslog socket");
    let service = setup.service(&format!(
        "log_type = \"SYSLOG daemon\"\n{}",
        sh_as_root("echo $$")
    ));
    let config_with =
        |socket: &str| format!("syslog_socket = {}\n{service}", common::toml_string(socket));
    let (daemon, port) = setup.start(&config_with(&first_path));
    let pid = printed_pid(&output(port));
    recv_containing(&first, &format!("START: svc pid={pid}"), &mut Vec::new());

    daemon.write_config(&config_with(&second_path));
    daemon.reload();
    daemon.wait_for_log("reload: done");
    let pid = printed_pid(&output(port));
    let start = recv_containing(&second, &format!("START: svc pid={pid}"), &mut Vec::new());
    assert_eq!(
        syslog_message(&start, 3 * 8 + 6, daemon.pid()),
        format!("START: svc pid={pid} from=127.0.0.1")
    );
    // Unix datagrams are queued at send: had the old socket got the line, it is there.
    first.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 4096];
    while let Ok(n) = first.recv(&mut buf) {
        let datagram = String::from_utf8_lossy(&buf[..n]);
        assert!(
            !datagram.contains(&format!("pid={pid}")),
            "the old syslog socket got {datagram:?}"
        );
    }
}

fn mkfifo(path: &str) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
}

/// Issue 12: `log_type = "FILE fifo"` passed `--check`, then the start blocked in
/// open(2): the port bound, nothing served, `ready` never came. Now `--check` names the
/// file and why, and the daemon starts and serves the other services.
#[test]
fn a_fifo_log_file_is_refused_and_the_daemon_still_starts() {
    let setup = Setup::new();
    let fifo = setup.path("svc.fifo");
    mkfifo(&fifo);
    let other = common::free_port();
    let config = format!(
        "{}\n[service.other]\nsocket_type = \"stream\"\nwait = false\nport = {other}\n{}",
        setup.service(&format!("{}{}", log_to_file(&fifo), sh_as_root("echo svc"))),
        sh_as_root("echo other")
    );
    let file = setup.file("oxinetd.toml", config.as_bytes());
    let out = common::run_command(
        std::process::Command::new(common::BIN).args(["--check", "-f", &file]),
        READY_TIMEOUT,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let want = format!(
        "{file}:5: service svc: key log_type: {fifo} is a FIFO, not a regular file or a character device"
    );
    assert!(
        stderr.lines().any(|line| line == want),
        "no {want:?} in:\n{stderr}"
    );

    let (daemon, _) = setup.start(&config);
    assert_eq!(output(other), "other\n");
    daemon.wait_for_log(&want);
}

/// A log file replaced by a FIFO (no reader) before a SIGHUP: reopening it blocked the
/// loop for good. Now the daemon keeps writing to the file it had, and serves on.
#[test]
fn a_log_file_replaced_by_a_fifo_does_not_freeze_a_reload() {
    let setup = Setup::new();
    let log = setup.path("svc.log");
    let config = setup.service(&format!("{}{}", log_to_file(&log), sh_as_root("echo svc")));
    let (daemon, port) = setup.start(&config);
    assert_eq!(output(port), "svc\n");
    wait_file(Path::new(&log), "EXIT: svc", 1);
    let kept = daemon.dir().join("kept.log");
    fs::rename(&log, &kept).expect("rotate the log away");
    mkfifo(&log);
    daemon.reload();
    daemon.wait_for_log("is a FIFO, not a regular file or a character device");
    assert_eq!(output(port), "svc\n");
    wait_file(&kept, "EXIT: svc", 2);
}

/// The service name of the issue: a newline, then a forged line; and an escape sequence
/// that would clear a terminal.
const FORGING_NAME: &str = "e\\nFAKE: forged\\u001b[2J";
/// The same name as every log shows it.
const FORGING_NAME_ESCAPED: &str = "e\\nFAKE: forged\\x1b[2J";

/// No line of `log` begins with the forged text, and no escape byte is in it.
#[track_caller]
fn assert_not_forged(log: &str) {
    assert!(
        !log.lines().any(|line| line.starts_with("FAKE")) && !log.contains('\x1b'),
        "a forged line or a raw escape:\n{log}"
    );
}

/// Issue 12: `[service."e\nFAKE: forged"]` made every START line end and a forged one
/// begin, on stderr and in log files, and in `--check`'s report.
#[test]
fn a_service_name_cannot_forge_a_log_line() {
    let setup = Setup::new();
    let log = setup.path("svc.log");
    let service = |port: u16, extra: &str| {
        format!(
            "[[service.\"{FORGING_NAME}\"]]\nsocket_type = \"stream\"\nwait = false\n\
             port = {port}\n{extra}{}",
            sh_as_root("echo hi")
        )
    };
    let other = free_port();
    let config = format!(
        "{}\n[[service.\"{FORGING_NAME}\"]]\nid = \"f\\nFAKE: filed\"\nsocket_type = \"stream\"\n\
         wait = false\nport = {other}\n{}{}",
        service(setup.port, ""),
        log_to_file(&log),
        sh_as_root("echo hi")
    );

    // --check: one error in the service, reported with its name escaped.
    let out = check(&service(setup.port, "bogus_key = 1\n"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_not_forged(&stderr);
    assert!(
        stderr.contains(&format!("service {FORGING_NAME_ESCAPED}: key bogus_key")),
        "{stderr}"
    );

    let (daemon, port) = setup.start(&config);
    assert_eq!(output(port), "hi\n");
    assert_eq!(output(other), "hi\n");
    let stderr_log = daemon.wait_for_log(&format!("EXIT: {FORGING_NAME_ESCAPED} "));
    assert_not_forged(&stderr_log);
    assert!(
        stderr_log.contains(&format!("START: {FORGING_NAME_ESCAPED} pid=")),
        "{stderr_log}"
    );
    // Each line of the file has its stamp: file_messages panics otherwise.
    let file = wait_file(Path::new(&log), "EXIT: f\\nFAKE: filed ", 1);
    assert!(
        file.iter()
            .any(|m| m.starts_with("START: f\\nFAKE: filed pid=")),
        "{file:?}"
    );
}

/// A peer's tcpmux line with an escape character is refused, and nothing of it reaches
/// the log raw, even with debug lines on.
#[test]
fn a_tcpmux_name_with_an_escape_character_reaches_no_log() {
    let setup = Setup::new();
    let port = setup.port;
    let config = format!(
        "[service.tcpmux]\ntype = \"INTERNAL\"\nsocket_type = \"stream\"\nwait = false\n\
         port = {port}\n\n[service.plain]\ntype = \"TCPMUX\"\nsocket_type = \"stream\"\n\
         wait = false\n{}",
        sh_as_root("echo plain")
    );
    let file = setup.file("oxinetd.toml", config.as_bytes());
    let daemon = Oxinetd::start_in(setup.dir, &["-d", "-f", &file]);
    let reply = tcp_request(v4(port), b"pl\x1b[2Jain\r\n");
    assert_eq!(reply, b"-service name is not printable ASCII\r\n");
    assert_eq!(tcp_request(v4(port), b"plain\r\n"), b"plain\n");
    assert_not_forged(&daemon.wait_for_log("EXIT: plain"));
}
