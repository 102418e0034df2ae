//! xinetd's per-service lines (START, EXIT, FAIL, USERID, NOID, TRAFFIC, SENSOR), each
//! formatted into one reused buffer and sent to the service's `log_type` or stderr.

use std::fmt::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use log::{info, warn};

use crate::config::spec::Logging;
use crate::logging::{SinkId, Sinks};
use crate::peer::Source;

/// What a service's lines need, shared by the service and its running children, so a
/// child's EXIT line is right even after a reload changed or removed its service.
#[derive(Debug)]
pub struct ServiceLog {
    pub id: Rc<str>,
    /// The spec's own, shared.
    pub logging: Rc<Logging>,
    pub sink: Option<SinkId>,
}

/// How a server ended.
#[derive(Clone, Copy, Debug)]
pub enum Outcome {
    Status(i32),
    Signal(i32),
}

/// Why a connection was refused: xinetd's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Address,
    Time,
    Load,
    ServiceLimit,
    PerSourceLimit,
    ProcessLimit,
    Cps,
    Fork,
    ServiceNotFound,
    Lookup,
}

impl Reason {
    /// Every reason, in declaration order: `reason as usize` indexes `Stats::refused`.
    pub const ALL: [Reason; 10] = [
        Reason::Address,
        Reason::Time,
        Reason::Load,
        Reason::ServiceLimit,
        Reason::PerSourceLimit,
        Reason::ProcessLimit,
        Reason::Cps,
        Reason::Fork,
        Reason::ServiceNotFound,
        Reason::Lookup,
    ];

    pub fn word(self) -> &'static str {
        match self {
            Reason::Address => "address",
            Reason::Time => "time",
            Reason::Load => "load",
            Reason::ServiceLimit => "service_limit",
            Reason::PerSourceLimit => "per_source_limit",
            Reason::ProcessLimit => "process_limit",
            Reason::Cps => "cps",
            Reason::Fork => "fork",
            Reason::ServiceNotFound => "service_not_found",
            Reason::Lookup => "lookup_overload",
        }
    }
}

/// What `oxinetd status` counts for a service since it started: an integer
/// increment where a connection is admitted or refused, nothing more on that path.
#[derive(Debug, Default)]
pub struct Stats {
    pub accepted: u64,
    /// Made at the first refusal or error: most services never have one, and 1,000
    /// services would hold 100 KB of zeros.
    rare: Option<Box<RareStats>>,
}

#[derive(Debug, Default)]
struct RareStats {
    refused: [u64; Reason::ALL.len()],
    last_error: Option<String>,
}

impl Stats {
    pub fn refuse(&mut self, reason: Reason) {
        self.rare.get_or_insert_default().refused[reason as usize] += 1;
    }

    pub fn refused(&self, reason: Reason) -> u64 {
        self.rare
            .as_ref()
            .map_or(0, |rare| rare.refused[reason as usize])
    }

    pub fn set_last_error(&mut self, error: String) {
        self.rare.get_or_insert_default().last_error = Some(error);
    }

    pub fn last_error(&self) -> Option<&str> {
        self.rare.as_ref()?.last_error.as_deref()
    }
}

pub struct Lines {
    pub sinks: Sinks,
    buffer: String,
}

impl Lines {
    pub fn new(syslog_socket: PathBuf) -> Lines {
        Lines {
            sinks: Sinks::new(syslog_socket),
            buffer: String::with_capacity(256),
        }
    }

    /// Opens the service's destination; on failure its lines go to stderr.
    pub fn open(&mut self, id: &str, logging: &Logging) -> Option<SinkId> {
        let log_type = logging.log_type.as_ref()?;
        match self.sinks.open(log_type) {
            Ok(sink) => Some(sink),
            Err(error) => {
                warn!("service {id}: log_type: {error}; logging to stderr instead");
                None
            }
        }
    }

    pub fn start(&mut self, log: &ServiceLog, pid: u32, peer: Option<impl Into<Source>>) {
        let logging = &log.logging;
        if !logging.any_success() {
            return;
        }
        self.begin("START", log);
        if logging.pid {
            let _ = write!(self.buffer, " pid={pid}");
        }
        if logging.host {
            push_from(&mut self.buffer, peer);
        }
        self.emit(log.sink);
    }

    pub fn exit(&mut self, log: &ServiceLog, outcome: Outcome, pid: u32, lived: Duration) {
        self.exit_ended(log, outcome, pid, lived, None);
    }

    /// An EXIT line; `ended` names what ended the server or session when the daemon
    /// did (`max_duration`), after the fields xinetd writes, so they parse as ever.
    pub fn exit_ended(
        &mut self,
        log: &ServiceLog,
        outcome: Outcome,
        pid: u32,
        lived: Duration,
        ended: Option<&str>,
    ) {
        let logging = &log.logging;
        if !logging.exit && !logging.duration {
            return;
        }
        self.begin("EXIT", log);
        if logging.exit {
            let _ = match outcome {
                Outcome::Status(code) => write!(self.buffer, " status={code}"),
                Outcome::Signal(signal) => write!(self.buffer, " signal={signal}"),
            };
        }
        if logging.pid {
            let _ = write!(self.buffer, " pid={pid}");
        }
        if logging.duration {
            let _ = write!(self.buffer, " duration={}(sec)", lived.as_secs());
        }
        if let Some(ended) = ended {
            self.buffer.push(' ');
            self.buffer.push_str(ended);
        }
        self.emit(log.sink);
    }

    pub fn fail(&mut self, log: &ServiceLog, reason: Reason, peer: Option<impl Into<Source>>) {
        self.fail_with(log, reason.word(), peer);
    }

    /// A FAIL line with words of its own: a server that could not be started, for a
    /// reason only the OS can word.
    pub fn fail_with(&mut self, log: &ServiceLog, what: &str, peer: Option<impl Into<Source>>) {
        if !log.logging.failures {
            return;
        }
        self.begin("FAIL", log);
        let _ = write!(self.buffer, " {what}");
        if log.logging.failure_host {
            push_from(&mut self.buffer, peer);
        }
        self.emit(log.sink);
    }

    pub fn userid(&mut self, log: &ServiceLog, user: &str) {
        self.begin("USERID", log);
        let _ = write!(self.buffer, " {user}");
        self.emit(log.sink);
    }

    pub fn noid(&mut self, log: &ServiceLog, peer: IpAddr) {
        self.begin("NOID", log);
        let _ = write!(self.buffer, " {peer} no ident answer");
        self.emit(log.sink);
    }

    pub fn traffic(&mut self, log: &ServiceLog, bytes_in: u64, bytes_out: u64) {
        if !log.logging.traffic {
            return;
        }
        self.begin("TRAFFIC", log);
        let _ = write!(self.buffer, " in={bytes_in}(bytes) out={bytes_out}(bytes)");
        self.emit(log.sink);
    }

    /// `minutes`: `None` forever, `Some(0)` logged only.
    pub fn sensor(&mut self, log: &ServiceLog, peer: IpAddr, minutes: Option<u32>) {
        self.begin("SENSOR", log);
        let _ = match minutes {
            None => write!(self.buffer, " {peer} denied forever"),
            Some(0) => write!(self.buffer, " {peer} logged only"),
            Some(minutes) => write!(self.buffer, " {peer} denied for {minutes} minutes"),
        };
        self.emit(log.sink);
    }

    fn begin(&mut self, kind: &str, log: &ServiceLog) {
        self.buffer.clear();
        self.buffer.push_str(kind);
        self.buffer.push_str(": ");
        self.buffer.push_str(&log.id);
    }

    fn emit(&mut self, sink: Option<SinkId>) {
        match sink {
            Some(sink) => self.sinks.write(sink, &self.buffer),
            None => info!("{}", self.buffer),
        }
    }
}

/// ` from=ADDRESS` for an IP peer, ` uid=N` for a Unix-domain one.
fn push_from(buffer: &mut String, peer: Option<impl Into<Source>>) {
    match peer {
        Some(peer) => {
            let _ = write!(buffer, " {}", peer.into());
        }
        None => buffer.push_str(" from=-"),
    }
}
