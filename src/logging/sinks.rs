//! Open log destinations (FILE and SYSLOG), one per distinct `LogType`, shared by services.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use log::warn;
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};

use super::Pending;
use super::log_type::LogType;
use super::stamp::{self, Civil};
use crate::clock;

/// While syslog is unreachable, a line tries to reconnect at most this often.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

/// Where a line's stamp comes from.
type Clock = fn() -> Civil;

/// A handle from `Sinks::open`. Ids are never reused, so a stale one writes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SinkId(usize);

/// Every open log destination, indexed by `SinkId`.
pub struct Sinks {
    syslog_socket: PathBuf,
    slots: Vec<Option<Sink>>,
    line: Vec<u8>,
    /// ` oxinetd[PID]: `, between a syslog line's stamp and its message.
    tag: String,
    /// The local time that stamps each line: `clock::local_now`, or a fixed time in tests.
    clock: Clock,
}

struct Sink {
    log_type: LogType,
    dest: Dest,
    /// A write failed and was reported; cleared by the next success, so each episode
    /// of trouble is reported once.
    troubled: bool,
}

enum Dest {
    File(FileSink),
    Syslog(SyslogSink),
}

struct FileSink {
    path: PathBuf,
    file: File,
    /// Bytes in the file as far as we know: its length at open plus what we wrote.
    size: u64,
    soft: Option<u64>,
    hard: Option<u64>,
    soft_warned: bool,
    /// The hard limit was reached: nothing more until `reopen` finds the file smaller.
    stopped: bool,
    /// Lines not yet written: the loop flushes them before it sleeps, so a busy turn
    /// that logs many lines costs one write(2).
    pending: Pending,
}

struct SyslogSink {
    socket: Option<UnixDatagram>,
    /// `<PRI>`: facility * 8 + severity.
    priority: String,
    /// While disconnected: the earliest time a line may try to reconnect.
    retry_at: Instant,
}

impl Sinks {
    /// Sinks sending SYSLOG lines to the datagram socket at `syslog_socket`
    /// (normally /dev/log).
    pub fn new(syslog_socket: PathBuf) -> Sinks {
        Sinks {
            syslog_socket,
            slots: Vec::new(),
            line: Vec::with_capacity(512),
            tag: format!(" oxinetd[{}]: ", std::process::id()),
            clock: clock::local_now,
        }
    }

    /// The sink for `log_type`: the open one if an equal `LogType` has one, else a new
    /// one. Fails if the file cannot be opened or the syslog socket does not answer;
    /// the caller then logs to stderr and may try again at the next reload.
    pub fn open(&mut self, log_type: &LogType) -> io::Result<SinkId> {
        let existing = self
            .slots
            .iter()
            .position(|slot| slot.as_ref().is_some_and(|sink| sink.log_type == *log_type));
        if let Some(index) = existing {
            return Ok(SinkId(index));
        }
        let dest = match log_type {
            LogType::File { path, soft, hard } => Dest::File(FileSink::open(path, *soft, *hard)?),
            LogType::Syslog { .. } => Dest::Syslog(SyslogSink {
                socket: Some(connect(&self.syslog_socket)?),
                priority: format!("<{}>", log_type.priority().unwrap_or_default()),
                retry_at: Instant::now(),
            }),
        };
        self.slots.push(Some(Sink {
            log_type: log_type.clone(),
            dest,
            troubled: false,
        }));
        Ok(SinkId(self.slots.len() - 1))
    }

    /// Writes `message` as one line to `sink`: a SYSLOG line is sent at once, one
    /// datagram; a FILE line waits in the sink until `flush`. A line that cannot go
    /// (full socket, full disk, hard limit) is dropped.
    pub fn write(&mut self, sink: SinkId, message: &str) {
        let Some(Some(sink)) = self.slots.get_mut(sink.0) else {
            return;
        };
        let line = &mut self.line;
        line.clear();
        let now = (self.clock)();
        let result = match &mut sink.dest {
            Dest::File(file) => {
                stamp::push_xinetd(line, &now);
                line.extend_from_slice(b": ");
                super::escape::escape_into(line, message);
                line.push(b'\n');
                file.write(line)
            }
            Dest::Syslog(syslog) => {
                line.extend_from_slice(syslog.priority.as_bytes());
                stamp::push_rfc3164(line, &now);
                line.extend_from_slice(self.tag.as_bytes());
                super::escape::escape_into(line, message);
                syslog.send(line, &self.syslog_socket)
            }
        };
        sink.report(result);
        if line.capacity() > 16 * 1024 {
            *line = Vec::with_capacity(512);
        }
    }

    /// Writes every FILE sink's pending lines, one write(2) each. The loop calls this
    /// before it sleeps; lines wait at most one turn of it.
    pub fn flush(&mut self) {
        for sink in self.slots.iter_mut().flatten() {
            if let Dest::File(file) = &mut sink.dest {
                let result = file.flush();
                sink.report(result);
            }
        }
    }

    /// After SIGHUP: reopens every FILE by path (so a rotated file is replaced by a new
    /// one, and a file under its hard limit again is written again) and reconnects
    /// every SYSLOG. A sink that cannot be reopened keeps what it had.
    pub fn reopen(&mut self) {
        clock::reread_zone();
        // Lines logged before the signal belong in the file being rotated away.
        self.flush();
        for sink in self.slots.iter_mut().flatten() {
            sink.troubled = false;
            match &mut sink.dest {
                Dest::File(file) => file.reopen(),
                Dest::Syslog(syslog) => {
                    if let Err(error) = syslog.reconnect(&self.syslog_socket) {
                        warn!("log {}: {error}; dropping lines", describe(&sink.log_type));
                        sink.troubled = true;
                    }
                }
            }
        }
    }

    /// After a reload that names another `syslog_socket`: every SYSLOG sink connects to
    /// it (a sink that cannot keeps dropping lines, and tries again with each line at
    /// most once a second, as after any error).
    pub fn set_syslog_socket(&mut self, path: PathBuf) {
        if path == self.syslog_socket {
            return;
        }
        self.syslog_socket = path;
        for sink in self.slots.iter_mut().flatten() {
            if let Dest::Syslog(syslog) = &mut sink.dest {
                let result = syslog.reconnect(&self.syslog_socket);
                sink.report(result);
            }
        }
    }

    /// Closes every sink not in `used` (after a reload, `used` is every sink a
    /// service still names); their ids write nothing from now on.
    pub fn retain(&mut self, used: &[SinkId]) {
        self.flush();
        for (index, slot) in self.slots.iter_mut().enumerate() {
            if !used.contains(&SinkId(index)) {
                *slot = None;
            }
        }
    }
}

impl Sink {
    /// Reports the first failure of an episode; a success ends the episode.
    fn report(&mut self, result: io::Result<()>) {
        match result {
            Ok(()) => self.troubled = false,
            Err(error) if !self.troubled => {
                self.troubled = true;
                warn!("log {}: {error}; dropping lines", describe(&self.log_type));
            }
            Err(_) => {}
        }
    }
}

impl FileSink {
    fn open(path: &Path, soft: Option<u64>, hard: Option<u64>) -> io::Result<FileSink> {
        let file = open_append(path)?;
        let mut sink = FileSink {
            path: path.to_path_buf(),
            size: 0,
            file,
            soft,
            hard,
            soft_warned: false,
            stopped: false,
            pending: Pending::default(),
        };
        sink.measure();
        Ok(sink)
    }

    fn reopen(&mut self) {
        match open_append(&self.path) {
            Ok(file) => {
                self.file = file;
                self.measure();
            }
            Err(error) => warn!("log {error}; still writing to the file open before"),
        }
    }

    /// Takes the file's size and whether its limits are already reached, warning when
    /// one becomes reached (so a SIGHUP does not repeat a warning already given).
    fn measure(&mut self) {
        self.size = self.file.metadata().map(|meta| meta.len()).unwrap_or(0);
        let (was_warned, was_stopped) = (self.soft_warned, self.stopped);
        self.soft_warned = self.soft.is_some_and(|soft| self.size >= soft);
        self.stopped = self.hard.is_some_and(|hard| self.size >= hard);
        if self.soft_warned && !was_warned {
            warn!(
                "log file {}: {} bytes, at or above its soft limit",
                self.path.display(),
                self.size
            );
        }
        if self.stopped && !was_stopped {
            warn!(
                "log file {}: at or above its hard limit; not written until it is rotated",
                self.path.display()
            );
        }
    }

    fn write(&mut self, line: &[u8]) -> io::Result<()> {
        if self.stopped {
            return Ok(());
        }
        let length = line.len() as u64;
        if let Some(hard) = self.hard
            && self.size + length > hard
        {
            self.stopped = true;
            warn!(
                "log file {}: hard limit of {hard} bytes reached; not written until it is rotated",
                self.path.display()
            );
            return Ok(());
        }
        let full = self.pending.push(line);
        self.size += length;
        if let Some(soft) = self.soft
            && self.size >= soft
            && !self.soft_warned
        {
            self.soft_warned = true;
            warn!(
                "log file {}: soft limit of {soft} bytes exceeded",
                self.path.display()
            );
        }
        if full {
            return self.flush();
        }
        Ok(())
    }

    /// Writes the pending lines; on failure they are dropped, as a line would be.
    fn flush(&mut self) -> io::Result<()> {
        self.pending.write_to(self.file.as_raw_fd())
    }
}

impl Drop for FileSink {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

impl SyslogSink {
    fn send(&mut self, line: &[u8], path: &Path) -> io::Result<()> {
        if self.socket.is_none() {
            if Instant::now() < self.retry_at {
                // Reported when the connection was lost; drop quietly until the retry.
                return Err(io::ErrorKind::NotConnected.into());
            }
            self.reconnect(path)?;
        }
        match send(self.socket.as_ref(), line) {
            Err(error)
                if matches!(
                    error.raw_os_error(),
                    Some(libc::ECONNREFUSED | libc::ENOTCONN | libc::ENOENT)
                ) =>
            {
                // syslogd restarted: its new socket is a new peer. Once, then drop.
                self.reconnect(path)?;
                send(self.socket.as_ref(), line)
            }
            result => result,
        }
    }

    fn reconnect(&mut self, path: &Path) -> io::Result<()> {
        self.socket = None;
        self.retry_at = Instant::now() + RECONNECT_PAUSE;
        self.socket = Some(connect(path)?);
        Ok(())
    }
}

fn send(socket: Option<&UnixDatagram>, line: &[u8]) -> io::Result<()> {
    let socket = socket.ok_or(io::ErrorKind::NotConnected)?;
    loop {
        match socket.send(line) {
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            result => return result.map(drop),
        }
    }
}

/// Opens a log file for appending without ever waiting: only a regular file or a
/// character device (`/dev/null`, a console) is a log file. A FIFO would block the open
/// until a reader came (O_NONBLOCK makes that an error instead) and then the writes
/// whenever it stopped reading; a socket or a directory is no file to append to.
fn open_append(path: &Path) -> io::Result<File> {
    let refused = |error: io::Error| {
        io::Error::new(
            error.kind(),
            format!("cannot open log file {}: {error}", path.display()),
        )
    };
    // Looked at before the open, so a FIFO is named as one (not as ENXIO), and again
    // after it, in case the path changed in between.
    match std::fs::metadata(path) {
        Ok(meta) => loggable(&meta).map_err(refused)?,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(refused(error)),
    }
    // std adds O_CLOEXEC; O_APPEND keeps lines whole when several writers share it.
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(refused)?;
    loggable(&file.metadata().map_err(refused)?).map_err(refused)?;
    Ok(file)
}

/// Whether a file of this kind may be a log file.
fn loggable(meta: &std::fs::Metadata) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let kind = meta.file_type();
    if kind.is_file() || kind.is_char_device() {
        return Ok(());
    }
    let what = if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "a block device"
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("is {what}, not a regular file or a character device"),
    ))
}

/// A non-blocking datagram socket connected to syslog: a full syslogd queue must cost
/// us a dropped line, never a stalled event loop.
fn connect(path: &Path) -> io::Result<UnixDatagram> {
    let flags = SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK;
    let connected = socket(AddressFamily::Unix, SockType::Datagram, flags, None)
        .map_err(io::Error::from)
        .map(UnixDatagram::from)
        .and_then(|socket| socket.connect(path).map(|()| socket));
    connected.map_err(|error| {
        io::Error::new(
            error.kind(),
            format!(
                "cannot connect to syslog socket {}: {error}",
                path.display()
            ),
        )
    })
}

fn describe(log_type: &LogType) -> String {
    match log_type {
        LogType::File { path, .. } => format!("file {}", path.display()),
        LogType::Syslog { .. } => "syslog".to_string(),
    }
}

#[cfg(test)]
mod tests;
