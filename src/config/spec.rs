//! The validated service model: everything the daemon needs, resolved at load time.

use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketType {
    Stream,
    Dgram,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
}

impl Internal {
    pub fn from_name(name: &str) -> Option<Internal> {
        match name {
            "echo" => Some(Internal::Echo),
            "discard" => Some(Internal::Discard),
            "daytime" => Some(Internal::Daytime),
            "time" => Some(Internal::Time),
            "chargen" => Some(Internal::Chargen),
            _ => None,
        }
    }
}

/// Where and how the service's socket listens. Two specs with equal sockets can
/// share one listener across a reload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketSpec {
    pub socket_type: SocketType,
    pub protocol: Protocol,
    pub address: SocketAddr,
    /// `Some` only for IPv6 addresses; `false` means dual-stack.
    pub v6only: Option<bool>,
    pub backlog: u32,
    pub nodelay: bool,
    pub keepalive: bool,
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
    pub environment: Vec<Vec<u8>>,
    pub umask: Option<u32>,
    pub nice: Option<i32>,
    pub rlimits: Vec<(Resource, Limit)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Program {
    Internal(Internal),
    Exec(Box<ExecSpec>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
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
}

impl ServiceSpec {
    pub fn describe(&self) -> String {
        let kind = match self.socket.socket_type {
            SocketType::Stream => "stream",
            SocketType::Dgram => "dgram",
        };
        let program = match &self.program {
            Program::Internal(_) => "internal".to_string(),
            Program::Exec(exec) => exec.server.display().to_string(),
        };
        format!(
            "{} {}/{} wait={} {}",
            self.socket.address,
            kind,
            self.socket.protocol.name(),
            if self.wait { "yes" } else { "no" },
            program
        )
    }
}
