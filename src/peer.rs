//! How a connection's addresses are shown: in logs and in the server's environment.

use std::io::Write;
use std::net::SocketAddr;

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
];

/// An IPv4 peer on a dual-stack socket arrives as `::ffff:a.b.c.d`; people and
/// programs expect `a.b.c.d`.
pub fn canonical(address: SocketAddr) -> SocketAddr {
    SocketAddr::new(address.ip().to_canonical(), address.port())
}

/// Appends the connection's variables to `out` as NUL-terminated `NAME=value` strings.
pub fn write_environment(
    out: &mut Vec<u8>,
    protocol: Protocol,
    remote: Option<SocketAddr>,
    local: Option<SocketAddr>,
) {
    let (proto, ucspi) = match protocol {
        Protocol::Tcp => ("TCP", "TCP"),
        Protocol::Udp => ("UDP", "UDP"),
    };
    // Writing to a Vec cannot fail.
    let _ = write!(out, "PROTO={proto}\0");
    if let Some(remote) = remote.map(canonical) {
        let (ip, port) = (remote.ip(), remote.port());
        let _ = write!(
            out,
            "REMOTE_HOST={ip}\0REMOTE_ADDR={ip}\0REMOTE_PORT={port}\0{ucspi}REMOTEIP={ip}\0{ucspi}REMOTEPORT={port}\0"
        );
    }
    if let Some(local) = local.map(canonical) {
        let _ = write!(
            out,
            "{ucspi}LOCALIP={}\0{ucspi}LOCALPORT={}\0",
            local.ip(),
            local.port()
        );
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
            Protocol::Tcp,
            Some("[::ffff:10.0.0.1]:4000".parse().unwrap()),
            Some("[::ffff:10.0.0.2]:79".parse().unwrap()),
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
}
