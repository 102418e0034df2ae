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

/// 2026-11-23 17:20:16: a stamp with every field two digits wide.
fn late_november() -> Civil {
    civil(2026, 11, 23, 17, 20, 16)
}

/// 2027-01-05 03:04:05: single-digit month and day, which xinetd does not pad.
fn early_january() -> Civil {
    civil(2027, 1, 5, 3, 4, 5)
}

/// The last second of a year.
fn new_years_eve() -> Civil {
    civil(2026, 12, 31, 23, 59, 59)
}

/// A leap day.
fn leap_day() -> Civil {
    civil(2028, 2, 29, 0, 0, 0)
}

fn civil(year: i64, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> Civil {
    Civil {
        year,
        month,
        day,
        hour,
        minute,
        second,
    }
}

/// Sinks whose lines are stamped with `clock`'s fixed time.
fn sinks_at(syslog_socket: PathBuf, clock: Clock) -> Sinks {
    let mut sinks = Sinks::new(syslog_socket);
    sinks.clock = clock;
    sinks
}

/// Sinks for FILE lines only, stamped 2027-01-05 03:04:05 (`27/1/5@03:04:05: `).
fn file_sinks(dir: &Path) -> Sinks {
    sinks_at(dir.join("no-syslog"), early_january)
}

const EARLY_JANUARY_STAMP: &str = "27/1/5@03:04:05";

/// `27/1/5@03:04:05: ` followed by `message`.
fn assert_file_line(line: &str, message: &str) {
    assert_eq!(line, format!("{EARLY_JANUARY_STAMP}: {message}"));
}

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
    let mut sinks = file_sinks(dir.path());
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
    let mut sinks = file_sinks(dir.path());
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
    let mut sinks = file_sinks(dir.path());
    let id = sinks.open(&file_type(&path, None, None)).unwrap();
    sinks.write(id, "USERID: svc root\nSTART: forged\r\x1b[2J");
    sinks.flush();
    let written = lines(&path);
    assert_eq!(written.len(), 1);
    assert_file_line(&written[0], "USERID: svc root\\nSTART: forged\\r\\x1b[2J");
}

#[test]
fn equal_log_types_share_one_sink() {
    let dir = tempfile::tempdir().unwrap();
    let server = bind(&dir.path().join("log"));
    let mut sinks = syslog_sinks(dir.path().join("log"));
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
    let mut sinks = file_sinks(dir.path());
    let error = sinks.open(&file_type(&path, None, None)).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("cannot open log file"), "{message}");
    assert!(message.contains("missing-dir/svc.log"), "{message}");
}

#[test]
fn file_stamps_at_fixed_times() {
    let cases: [(Clock, &str); 4] = [
        (late_november, "26/11/23@17:20:16: line"),
        (early_january, "27/1/5@03:04:05: line"),
        (new_years_eve, "26/12/31@23:59:59: line"),
        (leap_day, "28/2/29@00:00:00: line"),
    ];
    for (clock, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("svc.log");
        let mut sinks = sinks_at(dir.path().join("no-syslog"), clock);
        let id = sinks.open(&file_type(&path, None, None)).unwrap();
        sinks.write(id, "line");
        sinks.flush();
        assert_eq!(lines(&path), [expected]);
    }
}

#[test]
fn a_line_stamped_by_the_real_clock_has_xinetds_shape() {
    // Any date, any zone: `YY/M/D@hh:mm:ss`, month and day one or two digits.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("svc.log");
    let mut sinks = Sinks::new(dir.path().join("no-syslog"));
    let id = sinks.open(&file_type(&path, None, None)).unwrap();
    sinks.write(id, "now");
    sinks.flush();
    let written = lines(&path);
    let (stamp, message) = written[0].split_once(": ").unwrap();
    assert_eq!(message, "now");
    let (date, time) = stamp.split_once('@').unwrap();
    let fields = |text: &str, separator| -> Vec<u32> {
        text.split(separator).map(|f| f.parse().unwrap()).collect()
    };
    let [year, month, day] = fields(date, '/')[..] else {
        panic!("{stamp:?}")
    };
    assert_eq!(date, format!("{year:02}/{month}/{day}"), "{stamp:?}");
    assert!(
        (1..=12).contains(&month) && (1..=31).contains(&day),
        "{stamp:?}"
    );
    let [hour, minute, second] = fields(time, ':')[..] else {
        panic!("{stamp:?}")
    };
    assert_eq!(
        time,
        format!("{hour:02}:{minute:02}:{second:02}"),
        "{stamp:?}"
    );
}

#[test]
fn soft_limit_warns_once_and_hard_limit_stops_the_file() {
    // The stamp's width changes the line's: a short one (27/1/5) and a long one (26/11/23).
    for clock in [early_january, late_november] {
        check_limits(clock);
    }
}

/// With limits of 2 and 4 lines' worth of bytes: the soft one warns at the second line,
/// the hard one stops the fifth, and rotation starts afresh.
fn check_limits(clock: Clock) {
    const MESSAGE: &str = "START: svc pid=12345 from=::1";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("svc.log");
    let mut stamp = Vec::new();
    stamp::push_xinetd(&mut stamp, &clock());
    let line = |message: &str| (stamp.len() + ": ".len() + message.len() + 1) as u64;
    let size = line(MESSAGE);
    let mut sinks = sinks_at(dir.path().join("no-syslog"), clock);
    let id = sinks
        .open(&file_type(&path, Some(2 * size), Some(4 * size)))
        .unwrap();
    let file_state = |sinks: &Sinks| match &sinks.slots[id.0].as_ref().unwrap().dest {
        Dest::File(file) => (file.size, file.soft_warned, file.stopped),
        Dest::Syslog(_) => unreachable!(),
    };
    sinks.write(id, MESSAGE);
    assert_eq!(file_state(&sinks), (size, false, false));
    sinks.write(id, MESSAGE);
    assert_eq!(file_state(&sinks), (2 * size, true, false));
    sinks.write(id, MESSAGE);
    sinks.write(id, MESSAGE);
    assert_eq!(file_state(&sinks), (4 * size, true, false));
    // A fifth line would pass the hard limit: it and every later one are dropped.
    sinks.write(id, MESSAGE);
    sinks.write(id, "short");
    assert_eq!(file_state(&sinks), (4 * size, true, true));
    sinks.flush();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 4 * size);
    assert_eq!(lines(&path).len(), 4);

    // Not rotated: reopening finds it still full.
    sinks.reopen();
    sinks.write(id, "short");
    assert_eq!(file_state(&sinks), (4 * size, true, true));
    sinks.flush();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 4 * size);

    // Rotated: a new file, written again, limits counted afresh.
    let rotated = dir.path().join("svc.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    sinks.reopen();
    sinks.write(id, "after rotation");
    sinks.flush();
    assert_eq!(lines(&rotated).len(), 4);
    let written = lines(&path);
    assert_eq!(written.len(), 1);
    let stamp = String::from_utf8(stamp.clone()).unwrap();
    assert_eq!(written[0], format!("{stamp}: after rotation"));
    assert_eq!(file_state(&sinks), (line("after rotation"), false, false));
}

#[test]
fn reopen_follows_a_renamed_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("svc.log");
    let mut sinks = file_sinks(dir.path());
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
    let mut sinks = file_sinks(dir.path());
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

/// `<PRI>Jan  5 03:04:05 oxinetd[PID]: message`: RFC 3164, the day padded with a space.
fn assert_syslog_line(datagram: &str, priority: &str, message: &str) {
    let pid = std::process::id();
    assert_eq!(
        datagram,
        format!("{priority}Jan  5 03:04:05 oxinetd[{pid}]: {message}")
    );
}

/// Sinks stamped 2027-01-05 03:04:05 that send SYSLOG lines to `socket`.
fn syslog_sinks(socket: PathBuf) -> Sinks {
    sinks_at(socket, early_january)
}

#[test]
fn syslog_line_is_one_rfc3164_datagram() {
    let dir = tempfile::tempdir().unwrap();
    let server = bind(&dir.path().join("log"));
    let mut sinks = syslog_sinks(dir.path().join("log"));
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
    let mut sinks = syslog_sinks(dir.path().join("no-such-log"));
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
    let mut sinks = syslog_sinks(socket_path.clone());
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
    let mut sinks = syslog_sinks(socket_path.clone());
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
    let mut sinks = syslog_sinks(dir.path().join("log"));
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
    let mut sinks = file_sinks(dir.path());
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
    let mut sinks = file_sinks(dir.path());
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
    let mut sinks = file_sinks(dir.path());
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

/// Issue 12: a FIFO log file blocked the open (and so the loop) until a reader came.
/// Now it fails at once, with a reader or without, naming what the file is; a character
/// device such as /dev/null is a log file.
#[test]
fn a_fifo_is_no_log_file_and_never_blocks_the_open() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let mut sinks = file_sinks(dir.path());
    let without_reader = sinks.open(&file_type(&fifo, None, None)).unwrap_err();
    assert!(
        without_reader
            .to_string()
            .ends_with("is a FIFO, not a regular file or a character device"),
        "{without_reader}"
    );
    let _reader = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let with_reader = sinks.open(&file_type(&fifo, None, None)).unwrap_err();
    assert!(
        with_reader.to_string().contains("is a FIFO"),
        "{with_reader}"
    );
    assert!(
        sinks
            .open(&file_type(Path::new("/dev/null"), None, None))
            .is_ok()
    );
    let directory = sinks.open(&file_type(dir.path(), None, None)).unwrap_err();
    assert!(
        directory.to_string().contains("is a directory"),
        "{directory}"
    );
}

/// A log file replaced by a FIFO is not reopened at SIGHUP: lines go on to the file
/// open before.
#[test]
fn reopen_keeps_the_old_file_when_the_path_became_a_fifo() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("svc.log");
    let mut sinks = file_sinks(dir.path());
    let sink = sinks.open(&file_type(&path, None, None)).unwrap();
    let kept = dir.path().join("kept.log");
    std::fs::rename(&path, &kept).unwrap();
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    sinks.reopen();
    sinks.write(sink, "after");
    sinks.flush();
    assert_eq!(lines(&kept).len(), 1);
}

/// Issue 12: a control character in a syslog message is escaped as in a file.
#[test]
fn a_syslog_line_escapes_control_characters() {
    let dir = tempfile::tempdir().unwrap();
    let server = bind(&dir.path().join("log"));
    let mut sinks = syslog_sinks(dir.path().join("log"));
    let sink = sinks
        .open(&parse_log_type("SYSLOG daemon").unwrap())
        .unwrap();
    sinks.write(sink, "START: e\nFAKE: forged\x1b]0;title\x07 pid=1");
    assert_syslog_line(
        &receive(&server),
        "<30>",
        "START: e\\nFAKE: forged\\x1b]0;title\\x07 pid=1",
    );
}
