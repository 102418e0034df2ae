//! How a connection's peer is shown: in logs and in the server's environment. An IP
//! peer is its address; a Unix-domain peer is its credentials (`SO_PEERCRED`).

use std::io::Write;
use std::net::{IpAddr, SocketAddr};

use crate::config::spec::Protocol;

/// Variables that describe the connection; the spawner sets them per connection, so
/// they are taken out of every service's fixed environment.
pub const CONNECTION_VARIABLES: &[&str] = &[
    "REMOTE_HOST",
    "REMOTE_ADDR",
    "REMOTE_PORT",
    "PROTO",
    "TCPREMOTEIP",
    "TCPREMOTEPORT",
    "TCPLOCALIP",
    "TCPLOCALPORT",
    "UDPREMOTEIP",
    "UDPREMOTEPORT",
    "UDPLOCALIP",
    "UDPLOCALPORT",
    "IPCREMOTEEUID",
    "IPCREMOTEEGID",
    "IPCREMOTEPID",
];

/// Who a connection comes from, as `per_source` counts and log lines show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// Canonical: an IPv4 peer of a dual-stack socket is its IPv4 address.
    Ip(IpAddr),
    /// A Unix-domain peer: its effective uid.
    Uid(u32),
}

impl From<IpAddr> for Source {
    fn from(ip: IpAddr) -> Source {
        Source::Ip(ip.to_canonical())
    }
}

impl std::fmt::Display for Source {
    /// As log lines show it: `from=ADDRESS` or `uid=N`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Ip(ip) => write!(f, "from={ip}"),
            Source::Uid(uid) => write!(f, "uid={uid}"),
        }
    }
}

/// A Unix-domain peer as the kernel saw it when it connected (`SO_PEERCRED`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// Both ends of a connection, for the server's environment.
#[derive(Clone, Copy, Debug)]
pub enum Ends {
    Ip {
        protocol: Protocol,
        remote: Option<SocketAddr>,
        local: Option<SocketAddr>,
    },
    /// A Unix-domain socket: the peer's credentials where there is one peer (not for
    /// a `wait` server, which is handed the listening socket).
    Ipc(Option<Credentials>),
}

/// An IPv4 peer on a dual-stack socket arrives as `::ffff:a.b.c.d`; people and
/// programs expect `a.b.c.d`.
pub fn canonical(address: SocketAddr) -> SocketAddr {
    SocketAddr::new(address.ip().to_canonical(), address.port())
}

/// Appends the connection's variables to `out` as NUL-terminated `NAME=value` strings:
/// UCSPI-tcp's names (and inetd's `REMOTE_*`) for IP, UCSPI-ipc's for a Unix socket.
pub fn write_environment(out: &mut Vec<u8>, ends: Ends) {
    let mut put = |name: &[&str], value: &[u8]| {
        for part in name {
            out.extend_from_slice(part.as_bytes());
        }
        out.push(b'=');
        out.extend_from_slice(value);
        out.push(0);
    };
    let (protocol, remote, local) = match ends {
        Ends::Ip {
            protocol,
            remote,
            local,
        } => (protocol, remote, local),
        Ends::Ipc(credentials) => {
            put(&["PROTO"], b"IPC");
            if let Some(peer) = credentials {
                let mut number = Text::default();
                put(&["IPCREMOTEEUID"], number.show(peer.uid));
                put(&["IPCREMOTEEGID"], number.show(peer.gid));
                put(&["IPCREMOTEPID"], number.show(peer.pid));
            }
            return;
        }
    };
    let (proto, ucspi) = match protocol {
        Protocol::Tcp => ("TCP", "TCP"),
        Protocol::Udp => ("UDP", "UDP"),
    };
    put(&["PROTO"], proto.as_bytes());
    // Each address and port is formatted once, then copied: this runs per connection.
    let mut ip = Text::default();
    let mut port = Text::default();
    if let Some(remote) = remote.map(canonical) {
        let (ip, port) = (ip.show(remote.ip()), port.show(remote.port()));
        put(&["REMOTE_HOST"], ip);
        put(&["REMOTE_ADDR"], ip);
        put(&["REMOTE_PORT"], port);
        put(&[ucspi, "REMOTEIP"], ip);
        put(&[ucspi, "REMOTEPORT"], port);
    }
    if let Some(local) = local.map(canonical) {
        put(&[ucspi, "LOCALIP"], ip.show(local.ip()));
        put(&[ucspi, "LOCALPORT"], port.show(local.port()));
    }
}

/// Room for the text of an address or a port: the longest is an IPv6 address with an
/// embedded IPv4 one, 45 bytes.
struct Text {
    bytes: [u8; 48],
}

impl Default for Text {
    fn default() -> Text {
        Text { bytes: [0; 48] }
    }
}

impl Text {
    fn show(&mut self, value: impl std::fmt::Display) -> &[u8] {
        let mut cursor = std::io::Cursor::new(&mut self.bytes[..]);
        // Every IP address and port fits; a failure would leave the text cut short.
        let _ = write!(cursor, "{value}");
        let length = cursor.position() as usize;
        &self.bytes[..length]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_ipv4_is_shown_as_ipv4() {
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:5000".parse().unwrap();
        assert_eq!(canonical(mapped).to_string(), "127.0.0.1:5000");
        let v6: SocketAddr = "[::1]:5000".parse().unwrap();
        assert_eq!(canonical(v6), v6);
    }

    #[test]
    fn environment_names_both_ends() {
        let mut out = Vec::new();
        write_environment(
            &mut out,
            Ends::Ip {
                protocol: Protocol::Tcp,
                remote: Some("[::ffff:10.0.0.1]:4000".parse().unwrap()),
                local: Some("[::ffff:10.0.0.2]:79".parse().unwrap()),
            },
        );
        let text = String::from_utf8(out).unwrap();
        let variables: Vec<&str> = text.split_terminator('\0').collect();
        assert_eq!(
            variables,
            [
                "PROTO=TCP",
                "REMOTE_HOST=10.0.0.1",
                "REMOTE_ADDR=10.0.0.1",
                "REMOTE_PORT=4000",
                "TCPREMOTEIP=10.0.0.1",
                "TCPREMOTEPORT=4000",
                "TCPLOCALIP=10.0.0.2",
                "TCPLOCALPORT=79"
            ]
        );
        assert!(
            variables
                .iter()
                .all(|v| CONNECTION_VARIABLES.contains(&v.split('=').next().unwrap()))
        );
    }

    #[test]
    fn the_longest_addresses_are_written_whole() {
        let mut out = Vec::new();
        let longest = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535";
        write_environment(
            &mut out,
            Ends::Ip {
                protocol: Protocol::Udp,
                remote: Some(longest.parse().unwrap()),
                local: Some("[::1]:7".parse().unwrap()),
            },
        );
        let text = String::from_utf8(out).unwrap();
        let variables: Vec<&str> = text.split_terminator('\0').collect();
        let ip = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        assert_eq!(
            variables,
            [
                "PROTO=UDP".to_string(),
                format!("REMOTE_HOST={ip}"),
                format!("REMOTE_ADDR={ip}"),
                "REMOTE_PORT=65535".to_string(),
                format!("UDPREMOTEIP={ip}"),
                "UDPREMOTEPORT=65535".to_string(),
                "UDPLOCALIP=::1".to_string(),
                "UDPLOCALPORT=7".to_string(),
            ]
        );
    }

    #[test]
    fn a_unix_peer_is_its_credentials() {
        let mut out = Vec::new();
        let peer = Credentials {
            pid: 4242,
            uid: 65534,
            gid: 0,
        };
        write_environment(&mut out, Ends::Ipc(Some(peer)));
        let text = String::from_utf8(out).unwrap();
        let variables: Vec<&str> = text.split_terminator('\0').collect();
        assert_eq!(
            variables,
            [
                "PROTO=IPC",
                "IPCREMOTEEUID=65534",
                "IPCREMOTEEGID=0",
                "IPCREMOTEPID=4242"
            ]
        );
        assert!(
            variables
                .iter()
                .all(|v| CONNECTION_VARIABLES.contains(&v.split('=').next().unwrap()))
        );
        let mut out = Vec::new();
        write_environment(&mut out, Ends::Ipc(None));
        assert_eq!(out, b"PROTO=IPC\0");
    }

    #[test]
    fn sources_show_as_log_lines_do() {
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(Source::from(mapped).to_string(), "from=10.0.0.1");
        assert_eq!(Source::Uid(0).to_string(), "uid=0");
    }
}
