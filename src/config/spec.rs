//! The validated service model: everything the daemon needs, resolved at load time.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use crate::access::{AccessTimes, Rules};
use crate::limits::DenyTime;
use crate::logging::LogType;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketType {
    Stream,
    Dgram,
    /// Unix-domain sockets only: connections, as `stream`, that keep message boundaries.
    Seqpacket,
}

impl SocketType {
    pub fn name(self) -> &'static str {
        match self {
            SocketType::Stream => "stream",
            SocketType::Dgram => "dgram",
            SocketType::Seqpacket => "seqpacket",
        }
    }

    /// Whether the socket listens and connections are accepted from it.
    pub fn connected(self) -> bool {
        self != SocketType::Dgram
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Instances {
    Unlimited,
    Limit(u32),
}

impl Instances {
    pub fn admits(self, running: usize) -> bool {
        match self {
            Instances::Unlimited => true,
            Instances::Limit(limit) => running < limit as usize,
        }
    }
}

/// The services xinetd runs inside the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Internal {
    Echo,
    Discard,
    Daytime,
    Time,
    Chargen,
    /// RFC 1078: reads a service name, then runs that `TCPMUX`/`TCPMUXPLUS` service.
    TcpMux,
}

impl Internal {
    pub fn from_name(name: &str) -> Option<Internal> {
        match name {
            "echo" => Some(Internal::Echo),
            "discard" => Some(Internal::Discard),
            "daytime" => Some(Internal::Daytime),
            "time" => Some(Internal::Time),
            "chargen" => Some(Internal::Chargen),
            "tcpmux" => Some(Internal::TcpMux),
            _ => None,
        }
    }
}

/// Where a service listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    Ip(SocketAddr),
    /// `socket_path`: a Unix-domain socket.
    Unix(UnixAddress),
}

impl Address {
    /// The IP address, for what only IP services have (RPC, ident, tcpmux, redirects).
    pub fn ip(&self) -> Option<SocketAddr> {
        match self {
            Address::Ip(address) => Some(*address),
            Address::Unix(_) => None,
        }
    }

    pub fn unix_path(&self) -> Option<&Path> {
        match self {
            Address::Ip(_) => None,
            Address::Unix(unix) => Some(&unix.path),
        }
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Ip(address) => write!(f, "{address}"),
            Address::Unix(unix) => write!(f, "{}", unix.path.display()),
        }
    }
}

/// A Unix-domain socket's file and who may connect to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnixAddress {
    /// Absolute; its directory must exist.
    pub path: PathBuf,
    pub permissions: Permissions,
}

/// The socket file's mode and owners, set after bind and again at a reload that
/// changes them. `None`: left as bind made it (oxinetd's own uid or gid).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Permissions {
    pub mode: u32,
    pub owner: Option<u32>,
    pub group: Option<u32>,
}

/// Where and how the service's socket listens. Two specs with equal sockets can
/// share one listener across a reload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketSpec {
    pub socket_type: SocketType,
    /// The IP protocol; a Unix socket has none, and its value (following
    /// `socket_type`) is never read.
    pub protocol: Protocol,
    pub address: Address,
    /// `Some` only for IPv6 addresses; `false` means dual-stack.
    pub v6only: Option<bool>,
    pub backlog: u32,
    pub nodelay: bool,
    /// `SO_KEEPALIVE`: the `KEEPALIVE` flag, or any of `timeouts` set.
    pub keepalive: bool,
    pub timeouts: TcpTimeouts,
}

/// How soon a connection whose peer vanished is given up: `keepalive_idle`,
/// `keepalive_interval`, `keepalive_count` (TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT)
/// and `tcp_user_timeout` (TCP_USER_TIMEOUT). `None` leaves the system's value. Set on
/// the listener, from which Linux copies them to every accepted connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpTimeouts {
    /// Seconds of silence before the first probe.
    pub idle: Option<u32>,
    /// Seconds between probes.
    pub interval: Option<u32>,
    /// Unanswered probes before the connection is reset.
    pub count: Option<u32>,
    /// Seconds sent data may stay unacknowledged before the connection is reset.
    pub user_timeout: Option<u32>,
}

impl TcpTimeouts {
    pub fn any(&self) -> bool {
        *self != TcpTimeouts::default()
    }
}

/// The identity a server runs as. Resolved at load so the child only makes syscalls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups: the user's (`groups = yes`) or none.
    pub groups: Vec<u32>,
    pub home: String,
    pub shell: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    As,
    Cpu,
    Data,
    Rss,
    Stack,
    Files,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Unlimited,
    Value(u64),
}

/// An exec'd server, ready to be turned into C strings once at load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecSpec {
    pub server: PathBuf,
    pub argv: Vec<String>,
    /// `None` when oxinetd cannot or need not change identity.
    pub identity: Option<Identity>,
    /// `NAME=value` entries, before the connection's own variables are added.
    /// Shared by every service with the same environment (see `config::load`).
    pub environment: Rc<[Vec<u8>]>,
    pub umask: Option<u32>,
    pub nice: Option<i32>,
    pub rlimits: Vec<(Resource, Limit)>,
    /// The server's working directory: `/` unless `cwd` says (xinetd starts every
    /// server in `/`).
    pub cwd: PathBuf,
    /// `no_new_privs = true`: `PR_SET_NO_NEW_PRIVS` before exec, so neither the server
    /// nor anything it runs can gain privileges through setuid bits or file capabilities.
    pub no_new_privs: bool,
    /// `listen_fds = true`: the server starts as systemd starts a socket-activated one,
    /// its socket on fd 3 with `LISTEN_FDS`, `LISTEN_PID` and `LISTEN_FDNAMES` set to
    /// this name (the service id).
    pub listen_fds: Option<String>,
    /// `setsid = true`: the server gets a session of its own, as under xinetd; by
    /// default only a process group of its own (no scheduler autogroup per server).
    pub setsid: bool,
}

/// `redirect = "host port"`: the daemon relays bytes to `host`, resolved when a
/// connection arrives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedirectSpec {
    pub host: String,
    pub port: u16,
    pub connect_timeout: Duration,
    pub idle_timeout: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Program {
    Internal(Internal),
    /// Shared by every service of a load with an equal one (see `config::load`).
    Exec(Rc<ExecSpec>),
    Redirect(Box<RedirectSpec>),
    /// `flags = ["SENSOR"]`: runs nothing; its peers go on the global deny list.
    Sensor(DenyTime),
}

/// How a `TCPMUX`/`TCPMUXPLUS` service is reached: through the `tcpmux` service, never
/// on a port of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpMux {
    /// The server answers `+`/`-` itself.
    Plain,
    /// The daemon answers `+Go` before starting the server.
    Plus,
}

/// Who may connect, and when.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Access {
    pub rules: Rules,
    pub times: Option<AccessTimes>,
    pub max_load: Option<f64>,
    /// `IDONLY`: refuse peers whose ident server does not answer.
    pub ident_required: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Limits {
    /// Concurrent servers per peer address.
    pub per_source: Option<u32>,
    /// `cps = [rate, pause]`.
    pub cps: Option<(u32, Duration)>,
    /// How long a server, relay or internal session may last before it is ended.
    pub max_duration: Option<Duration>,
}

/// What `log_on_success` and `log_on_failure` ask for, and where lines go.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Logging {
    /// `None`: the daemon's own log (stderr).
    pub log_type: Option<LogType>,
    pub pid: bool,
    pub host: bool,
    pub userid: bool,
    pub exit: bool,
    pub duration: bool,
    pub traffic: bool,
    /// Any `log_on_failure` at all: FAIL lines are written.
    pub failures: bool,
    pub failure_host: bool,
    pub failure_userid: bool,
}

impl Logging {
    /// xinetd writes START for any `log_on_success` word, and nothing for none.
    pub fn any_success(&self) -> bool {
        self.pid || self.host || self.userid || self.exit || self.duration || self.traffic
    }

    /// Whether an ident query is needed for every admitted connection. USERID in
    /// `log_on_failure` asks nothing: refusals are decided without talking to the peer.
    pub fn wants_ident(&self) -> bool {
        self.userid
    }
}

/// Banner files, read at load: written byte for byte.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Banners {
    pub always: Option<Vec<u8>>,
    pub success: Option<Vec<u8>>,
    pub fail: Option<Vec<u8>>,
}

/// `type = "RPC"`: registered with rpcbind for every version in the range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RpcSpec {
    pub number: u32,
    pub versions: (u32, u32),
}

impl RpcSpec {
    /// Every version of the range, lowest first.
    pub fn all_versions(&self) -> Vec<u32> {
        (self.versions.0..=self.versions.1).collect()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ServiceSpec {
    /// What /etc/services and the internal services know it by.
    pub name: String,
    /// Unique in the configuration, used in log lines (xinetd's `id`).
    pub id: String,
    pub file: PathBuf,
    pub socket: SocketSpec,
    pub wait: bool,
    pub program: Program,
    pub instances: Instances,
    /// `Some` for services reached only through tcpmux: no listener of their own.
    pub tcpmux: Option<TcpMux>,
    /// These four are usually the same for many services (the defaults): each is
    /// shared by the services of a load with an equal one (see `config::load`).
    pub access: Rc<Access>,
    pub limits: Rc<Limits>,
    pub logging: Rc<Logging>,
    pub banners: Rc<Banners>,
    pub rpc: Option<RpcSpec>,
    /// `NORETRY`: a failed spawn is not retried after a pause.
    pub no_retry: bool,
}

impl ServiceSpec {
    pub fn describe(&self) -> String {
        let kind = self.socket.socket_type.name();
        let program = match &self.program {
            Program::Internal(_) => "internal".to_string(),
            Program::Exec(exec) => exec.server.display().to_string(),
            Program::Redirect(to) => format!("redirect to {} {}", to.host, to.port),
            Program::Sensor(_) => "sensor".to_string(),
        };
        if let Some(kind) = self.tcpmux {
            let kind = match kind {
                TcpMux::Plain => "TCPMUX",
                TcpMux::Plus => "TCPMUXPLUS",
            };
            return format!("{kind} {} via tcpmux, {program}", self.name);
        }
        let protocol = match self.socket.address {
            Address::Ip(_) => self.socket.protocol.name(),
            Address::Unix(_) => "unix",
        };
        format!(
            "{} {}/{} wait={} {}",
            self.socket.address,
            kind,
            protocol,
            if self.wait { "yes" } else { "no" },
            program
        )
    }
}
