//! `Sinks` against real files and a syslog socket bound in a temp dir.

use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::logging::parse_log_type;

fn file_type(path: &Path, soft: Option<u64>, hard: Option<u64>) -> LogType {
    LogType::File {
        path: path.to_path_buf(),
        soft,
        hard,
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// `YY/MM/DD@HH:MM:SS: ` followed by `message`.
fn assert_file_line(line: &str, message: &str) {
    let (stamp, rest) = line.split_at(19);
    let shape: String = stamp
        .chars()
        .map(|c| if c.is_ascii_digit() { '9' } else { c })
        .collect();
    assert_eq!(shape, "99/99/99@99:99:99: ", "{line:?}");
    assert_eq!(rest, message, "{line:?}");
}

/// A message whose file line is exactly 50 bytes: 19 of stamp, 30 of text, a newline.
const MESSAGE_30: &str = "START: svc pid=12345 from=::1 ";

fn bind(path: &Path) -> UnixDatagram {
    let server = UnixDatagram::bind(path).unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    server
}

fn receive(server: &UnixDatagram) -> String {
    let mut buffer = [0u8; 2048];
    let length = server.recv(&mut buffer).unwrap();
    String::from_utf8(buffer[..length].to_vec()).unwrap()
}

fn nothing_queued(server: &UnixDatagram) -> bool {
    server.set_nonblocking(true).unwrap();
    let empty =
        matches!(server.recv(&mut [0u8; 64]), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
    server.set_nonblocking(false).unwrap();
    empty
}

#[test]
fn file_lines_carry_xinetd_stamps_and_mode_0640() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("svc.log");
    let mut sinks = Sinks::new(dir.path().join("no-syslog"));
    let id = sinks.open(&file_type(&path, None, None)).unwrap();
    sinks.write(id, "START: hello pid=13055 from=127.0.0.1");
    sinks.write(id, "EXIT: hello status=0 pid=13055 duration=0(sec)");
    sinks.flush();
    let written = lines(&path);
    assert_eq!(written.len(), 2);
    assert_file_line(&written[0], "START: hello pid=13055 from=127.0.0.1");
    assert_file_line(
        &written[1],
        "EXIT: hello status=0 pid=13055 duration=0(sec)",
    );
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o640 & !current_umask());
}

fn current_umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("Umask:"))
        .unwrap();
    u32::from_str_radix(line["Umask:".len()..].trim(), 8).unwrap()
}

#[test]
fn file_appends_to_what_is_there() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("svc.log");
    std::fs::write(&path, "old line\n").unwrap();
    let mut sinks = Sinks::new(dir.path().join("no-syslog"));
    let id = sinks.open(&file_type(&path, None, None)).unwrap();
    sinks.write(id, "new line");
    sinks.flush();
    let written = lines(&path);
    assert_eq!(written[0], "old line");
    assert_file_line(&written[1], "new line");
}

#[test]
fn a_line_break_in_a_message_cannot_forge_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("svc.log");
    let mut sinks = Sinks::new(dir.path().join("no-syslog"));
    let id = sinks.open(&file_type(&path, None, None)).unwrap();
    sinks.write(id, "USERID: svc root\nSTART: forged\r");
    sinks.flush();
    let written = lines(&path);
    assert_eq!(written.len(), 1);
    assert_file_line(&written[0], "USERID: svc root START: forged ");
}

#[test]
fn equal_log_types_share_one_sink() {
    let dir = tempfile::tempdir().unwrap();
    let server = bind(&dir.path().join("log"));
    let mut sinks = Sinks::new(dir.path().join("log"));
    let a = dir.path().join("a.log");
    let file_a = sinks.open(&file_type(&a, None, None)).unwrap();
    assert_eq!(sinks.open(&file_type(&a, None, None)).unwrap(), file_a);
    let limited = sinks.open(&file_type(&a, Some(10), Some(20))).unwrap();
    assert_ne!(limited, file_a);
    let file_b = sinks
        .open(&file_type(&dir.path().join("b.log"), None, None))
        .unwrap();
    assert_ne!(file_b, file_a);
    let daemon = sinks
        .open(&parse_log_type("SYSLOG daemon").unwrap())
        .unwrap();
    assert_eq!(
        sinks
            .open(&parse_log_type("syslog DAEMON info").unwrap())
            .unwrap(),
        daemon
    );
    assert_ne!(
        sinks
            .open(&parse_log_type("SYSLOG daemon err").unwrap())
            .unwrap(),
        daemon
    );
    drop(server);
}

#[test]
fn open_names_the_file_it_cannot_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing-dir/svc.log");
    let mut sinks = Sinks::new(dir.path().join("no-syslog"));
    let error = sinks.open(&file_type(&path, None, None)).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("cannot open log file"), "{message}");
    assert!(message.contains("missing-dir/svc.log"), "{message}");
}

#[test]
fn soft_limit_warns_once_and_hard_limit_stops_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("svc.log");
    let mut sinks = Sinks::new(dir.path().join("no-syslog"));
    let id = sinks.open(&file_type(&path, Some(100), Some(200))).unwrap();
    let file_state = |sinks: &Sinks| match &sinks.slots[id.0].as_ref().unwrap().dest {
        Dest::File(file) => (file.size, file.soft_warned, file.stopped),
        Dest::Syslog(_) => unreachable!(),
    };
    sinks.write(id, MESSAGE_30);
    assert_eq!(file_state(&sinks), (50, false, false));
    sinks.write(id, MESSAGE_30);
    assert_eq!(file_state(&sinks), (100, true, false));
    sinks.write(id, MESSAGE_30);
    sinks.write(id, MESSAGE_30);
    assert_eq!(file_state(&sinks), (200, true, false));
    // A fifth line would pass the hard limit: it and every later one are dropped.
    sinks.write(id, MESSAGE_30);
    sinks.write(id, "short");
    assert_eq!(file_state(&sinks), (200, true, true));
    sinks.flush();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 200);
    assert_eq!(lines(&path).len(), 4);

    // Not rotated: reopening finds it still full.
    sinks.reopen();
    sinks.write(id, "short");
    assert_eq!(file_state(&sinks), (200, true, true));
    sinks.flush();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 200);

    // Rotated: a new file, written again, limits counted afresh.
    let rotated = dir.path().join("svc.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    sinks.reopen();
    sinks.write(id, "after rotation");
    sinks.flush();
    assert_eq!(lines(&rotated).len(), 4);
    let written = lines(&path);
    assert_eq!(written.len(), 1);
    assert_file_line(&written[0], "after rotation");
    let size = 19 + "after rotation".len() as u64 + 1;
    assert_eq!(file_state(&sinks), (size, false, false));
}

#[test]
fn reopen_follows_a_renamed_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("svc.log");
    let mut sinks = Sinks::new(dir.path().join("no-syslog"));
    let id = sinks.open(&file_type(&path, None, None)).unwrap();
    sinks.write(id, "before");
    let rotated = dir.path().join("svc.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    sinks.write(id, "still the open file");
    sinks.reopen();
    sinks.write(id, "after");
    sinks.flush();
    let old = lines(&rotated);
    assert_eq!(old.len(), 2);
    assert_file_line(&old[1], "still the open file");
    let new = lines(&path);
    assert_eq!(new.len(), 1);
    assert_file_line(&new[0], "after");
}

#[test]
fn retain_closes_sinks_no_service_uses() {
    let dir = tempfile::tempdir().unwrap();
    let kept_path = dir.path().join("kept.log");
    let dropped_path = dir.path().join("dropped.log");
    let mut sinks = Sinks::new(dir.path().join("no-syslog"));
    let kept = sinks.open(&file_type(&kept_path, None, None)).unwrap();
    let dropped = sinks.open(&file_type(&dropped_path, None, None)).unwrap();
    sinks.retain(&[kept]);
    sinks.write(kept, "kept");
    sinks.write(dropped, "dropped");
    sinks.flush();
    assert_eq!(lines(&kept_path).len(), 1);
    assert_eq!(lines(&dropped_path).len(), 0);
    // Opening it again makes a new sink; the stale id stays silent.
    let reopened = sinks.open(&file_type(&dropped_path, None, None)).unwrap();
    assert_ne!(reopened, dropped);
    sinks.write(dropped, "stale");
    sinks.write(reopened, "fresh");
    sinks.flush();
    let written = lines(&dropped_path);
    assert_eq!(written.len(), 1);
    assert_file_line(&written[0], "fresh");
}

/// `<PRI>Mmm dd HH:MM:SS oxinetd[PID]: message`, PRI given.
fn assert_syslog_line(datagram: &str, priority: &str, message: &str) {
    let rest = datagram
        .strip_prefix(priority)
        .unwrap_or_else(|| panic!("{datagram:?} lacks {priority}"));
    let (stamp, rest) = rest.split_at(15);
    let months = "JanFebMarAprMayJunJulAugSepOctNovDec";
    assert!(months.contains(&stamp[..3]), "{datagram:?}");
    let shape: String = stamp[3..]
        .chars()
        .map(|c| if c.is_ascii_digit() { '9' } else { c })
        .collect();
    assert!(
        shape == " 99 99:99:99" || shape == "  9 99:99:99",
        "{datagram:?}"
    );
    let tail = format!(" oxinetd[{}]: {message}", std::process::id());
    assert_eq!(rest, tail, "{datagram:?}");
}

#[test]
fn syslog_line_is_one_rfc3164_datagram() {
    let dir = tempfile::tempdir().unwrap();
    let server = bind(&dir.path().join("log"));
    let mut sinks = Sinks::new(dir.path().join("log"));
    let local3 = sinks
        .open(&parse_log_type("SYSLOG local3 warning").unwrap())
        .unwrap();
    let daemon = sinks
        .open(&parse_log_type("SYSLOG daemon").unwrap())
        .unwrap();
    sinks.write(local3, "START: echo pid=0 from=127.0.0.1");
    sinks.write(daemon, "EXIT: hello status=0 pid=7 duration=1(sec)");
    assert_syslog_line(
        &receive(&server),
        "<156>",
        "START: echo pid=0 from=127.0.0.1",
    );
    assert_syslog_line(
        &receive(&server),
        "<30>",
        "EXIT: hello status=0 pid=7 duration=1(sec)",
    );
    assert!(nothing_queued(&server));
}

#[test]
fn syslog_open_fails_clearly_without_a_socket() {
    let dir = tempfile::tempdir().unwrap();
    let mut sinks = Sinks::new(dir.path().join("no-such-log"));
    let error = sinks
        .open(&parse_log_type("SYSLOG daemon").unwrap())
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("cannot connect to syslog socket"),
        "{message}"
    );
    assert!(message.contains("no-such-log"), "{message}");
    assert_eq!(error.kind(), io::ErrorKind::NotFound);
}

#[test]
fn syslog_reconnects_when_syslogd_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("log");
    let first = bind(&socket_path);
    let mut sinks = Sinks::new(socket_path.clone());
    let id = sinks
        .open(&parse_log_type("SYSLOG daemon").unwrap())
        .unwrap();
    sinks.write(id, "one");
    assert_syslog_line(&receive(&first), "<30>", "one");
    drop(first);
    std::fs::remove_file(&socket_path).unwrap();
    let second = bind(&socket_path);
    sinks.write(id, "two");
    assert_syslog_line(&receive(&second), "<30>", "two");
}

#[test]
fn syslog_gone_drops_lines_until_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("log");
    let first = bind(&socket_path);
    let mut sinks = Sinks::new(socket_path.clone());
    let id = sinks
        .open(&parse_log_type("SYSLOG daemon").unwrap())
        .unwrap();
    drop(first);
    std::fs::remove_file(&socket_path).unwrap();
    sinks.write(id, "lost");
    sinks.write(id, "lost too");
    let second = bind(&socket_path);
    sinks.reopen();
    sinks.write(id, "back");
    assert_syslog_line(&receive(&second), "<30>", "back");
    assert!(nothing_queued(&second));
}

#[test]
fn syslog_full_queue_drops_lines_instead_of_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let server = bind(&dir.path().join("log"));
    let mut sinks = Sinks::new(dir.path().join("log"));
    let id = sinks
        .open(&parse_log_type("SYSLOG daemon").unwrap())
        .unwrap();
    // Nobody reads: the queue fills within a few lines, and a blocking send would hang.
    for n in 0..10_000 {
        sinks.write(id, &format!("line {n}"));
    }
    assert_syslog_line(&receive(&server), "<30>", "line 0");
}

#[test]
fn file_lines_wait_for_flush_and_leave_in_one_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("svc.log");
    let mut sinks = Sinks::new(dir.path().join("no-syslog"));
    let id = sinks.open(&file_type(&path, None, None)).unwrap();
    sinks.write(id, "START: hello pid=1 from=127.0.0.1");
    sinks.write(id, "EXIT: hello status=0 pid=1 duration=0(sec)");
    assert_eq!(lines(&path).len(), 0, "a line was written before the flush");
    sinks.flush();
    assert_eq!(lines(&path).len(), 2);
    sinks.flush();
    assert_eq!(lines(&path).len(), 2, "a flush wrote lines twice");
}

#[test]
fn dropping_the_sinks_writes_what_is_pending() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("svc.log");
    let mut sinks = Sinks::new(dir.path().join("no-syslog"));
    let id = sinks.open(&file_type(&path, None, None)).unwrap();
    sinks.write(id, "last words");
    drop(sinks);
    let written = lines(&path);
    assert_eq!(written.len(), 1);
    assert_file_line(&written[0], "last words");
}

#[test]
fn a_long_turn_writes_before_its_lines_pile_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("svc.log");
    let mut sinks = Sinks::new(dir.path().join("no-syslog"));
    let id = sinks.open(&file_type(&path, None, None)).unwrap();
    let message = "x".repeat(100);
    let count = Pending::LIMIT / 100 + 10;
    for _ in 0..count {
        sinks.write(id, &message);
    }
    let before_flush = lines(&path).len();
    assert!(
        before_flush > 0 && before_flush < count,
        "{before_flush} of {count} written"
    );
    sinks.flush();
    assert_eq!(lines(&path).len(), count);
}
