//! Log lines: the daemon's own on stderr, and each service's to its `log_type`.
//!
//! Every message is escaped as it is written (`escape`): no text from a config file or a
//! peer can start a line of its own or reach a terminal as an escape sequence.
//!
//! Every line is formatted into a reused buffer and leaves whole: a syslog line in one
//! send(2); the event loop's stderr lines, and a FILE sink's, together in one write(2)
//! per turn of the loop (a START and an EXIT per connection are on the hot path); other
//! threads' stderr lines in one write(2) each. Whole writes also keep concurrent writers to the same pipe or file
//! from interleaving. A line that cannot be written is dropped; logging never panics and
//! never takes the daemon down.

mod escape;
mod log_type;
mod sinks;
mod stamp;

use std::cell::RefCell;
use std::fmt;
use std::io::Write;
use std::os::fd::RawFd;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use log::{Level, LevelFilter, Log, Metadata, Record};

pub use escape::{escape_into, escaped};
pub use log_type::{Facility, LogType, Severity, parse_log_type};
pub use sinks::{SinkId, Sinks};
pub use stamp::Civil;

/// Sends the `log` macros to stderr as `2026-11-23T17:19:58.123Z INFO message`.
pub fn init(level: LevelFilter) {
    if log::set_logger(&STDERR).is_ok() {
        log::set_max_level(level);
    }
    // A panic ends the daemon (panic = "abort"): the lines held before it go out first.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        flush();
        report(info);
    }));
}

/// From now on this thread's lines wait in memory until `flush` (or 64 KiB of them):
/// the event loop holds a turn's lines and writes them in one write(2) before it
/// sleeps. Other threads' lines still leave at once.
pub fn hold_lines() {
    let _ = HELD.try_with(|held| held.borrow_mut().holding = true);
}

/// Writes the lines this thread holds, and holds no more until `hold_lines`.
pub fn release_lines() {
    flush();
    let _ = HELD.try_with(|held| held.borrow_mut().holding = false);
}

/// Writes the lines this thread holds, if any, in one write(2).
pub fn flush() {
    let _ = HELD.try_with(|held| {
        if let Ok(mut held) = held.try_borrow_mut() {
            let _ = held.lines.write_to(libc::STDERR_FILENO);
        }
    });
}

/// Whole lines waiting to leave together in one write(2): the loop's stderr lines and
/// each log file's, for one turn of the loop.
#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
}

impl Pending {
    /// Held lines are written once they reach this, even mid-turn.
    const LIMIT: usize = 64 * 1024;

    /// Adds `line`; true when the lines held have reached `LIMIT` and should go now.
    fn push(&mut self, line: &[u8]) -> bool {
        self.lines.extend_from_slice(line);
        self.lines.len() >= Self::LIMIT
    }

    /// Writes the held lines to `fd`; on failure they are dropped, as a line would be.
    fn write_to(&mut self, fd: RawFd) -> std::io::Result<()> {
        if self.lines.is_empty() {
            return Ok(());
        }
        let result = write_line(fd, &self.lines);
        self.lines.clear();
        // A turn's lines are a few hundred bytes; the buffer a start-up or reload of
        // thousands of services grew is given back rather than kept resident.
        if self.lines.capacity() > KEEP_CAPACITY {
            self.lines = Vec::new();
        }
        result
    }
}

struct Stderr;

static STDERR: Stderr = Stderr;

/// A line buffer that grew beyond this is given back instead of kept.
const KEEP_CAPACITY: usize = 16 * 1024;

/// Lines waiting for `flush` on a thread that `hold_lines` was called on.
#[derive(Default)]
struct Held {
    holding: bool,
    lines: Pending,
}

thread_local! {
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
    static HELD: RefCell<Held> = RefCell::new(Held::default());
}

impl Log for Stderr {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let _ = LINE.try_with(|line| match line.try_borrow_mut() {
            Ok(mut line) => {
                emit(&mut line, record);
                if line.capacity() > KEEP_CAPACITY {
                    *line = Vec::with_capacity(512);
                }
            }
            // A message's Display logged in turn: give it a buffer of its own.
            Err(_) => emit(&mut Vec::new(), record),
        });
    }

    fn flush(&self) {}
}

fn emit(line: &mut Vec<u8>, record: &Record) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format_line(line, now, record.level(), record.args());
    let held = HELD.try_with(|held| match held.try_borrow_mut() {
        Ok(mut held) if held.holding => held.lines.push(line),
        _ => {
            let _ = write_line(libc::STDERR_FILENO, line);
            false
        }
    });
    if held == Ok(true) {
        flush();
    }
}

/// `TIMESTAMP LEVEL message\n` into `line`, `now` being the time since the Unix epoch.
fn format_line(line: &mut Vec<u8>, now: Duration, level: Level, message: &fmt::Arguments) {
    line.clear();
    let secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    stamp::push_rfc3339(line, &stamp::Civil::from_unix(secs), now.subsec_millis());
    line.push(b' ');
    line.extend_from_slice(level_name(level));
    line.push(b' ');
    // Writing into a Vec fails only if a Display impl does; the line still goes out.
    let start = line.len();
    let _ = line.write_fmt(*message);
    escape::escape_tail(line, start);
    line.push(b'\n');
}

fn level_name(level: Level) -> &'static [u8] {
    match level {
        Level::Error => b"ERROR",
        Level::Warn => b"WARN",
        Level::Info => b"INFO",
        Level::Debug => b"DEBUG",
        Level::Trace => b"TRACE",
    }
}

/// Writes `bytes` with one write(2), retrying on EINTR. A short write (disk full, a
/// pipe's capacity) continues with the rest; EAGAIN and every other error give up.
fn write_line(fd: RawFd, bytes: &[u8]) -> std::io::Result<()> {
    crate::sys::fd::write_all(fd, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(secs: u64, millis: u32, level: Level, message: fmt::Arguments) -> String {
        let mut line = b"left over".to_vec();
        let now = Duration::from_secs(secs) + Duration::from_millis(millis.into());
        format_line(&mut line, now, level, &message);
        String::from_utf8(line).unwrap()
    }

    #[test]
    fn stderr_line_format() {
        let id = "echo";
        assert_eq!(
            line(
                1_795_454_398,
                123,
                Level::Info,
                format_args!("START: {id} pid=0")
            ),
            "2026-11-23T17:19:58.123Z INFO START: echo pid=0\n"
        );
        assert_eq!(
            line(
                1,
                0,
                Level::Info,
                format_args!("START: {} pid=1", "e\nFAKE: forged\x1b[2J")
            ),
            "1970-01-01T00:00:01.000Z INFO START: e\\nFAKE: forged\\x1b[2J pid=1\n"
        );
        assert_eq!(
            line(0, 0, Level::Error, format_args!("epoll: EBADF")),
            "1970-01-01T00:00:00.000Z ERROR epoll: EBADF\n"
        );
        assert_eq!(
            line(951_782_400, 999, Level::Warn, format_args!("w")),
            "2000-02-29T00:00:00.999Z WARN w\n"
        );
        assert_eq!(
            line(59, 1, Level::Debug, format_args!("")),
            "1970-01-01T00:00:59.001Z DEBUG \n"
        );
        assert_eq!(
            line(60, 10, Level::Trace, format_args!("t")),
            "1970-01-01T00:01:00.010Z TRACE t\n"
        );
    }

    #[test]
    fn pending_lines_leave_together_and_say_when_full() {
        use std::os::fd::AsRawFd;
        let (read, write) = nix::unistd::pipe().unwrap();
        let mut pending = Pending::default();
        assert!(!pending.push(b"one\n"));
        assert!(!pending.push(b"two\n"));
        pending.write_to(write.as_raw_fd()).unwrap();
        // Nothing is held after a write, so a second one writes nothing.
        pending.write_to(write.as_raw_fd()).unwrap();
        drop(write);
        let mut written = Vec::new();
        std::io::Read::read_to_end(&mut std::fs::File::from(read), &mut written).unwrap();
        assert_eq!(written, b"one\ntwo\n");

        let line = [b'x'; 1000];
        let pushes = (0..100).take_while(|_| !pending.push(&line)).count();
        assert_eq!(pushes + 1, Pending::LIMIT.div_ceil(line.len()));
    }

    #[test]
    fn write_line_reports_a_bad_fd() {
        assert!(write_line(-1, b"x\n").is_err());
        assert!(write_line(-1, b"").is_ok());
    }
}
