//! Register RPC services with rpcbind (portmapper v2 over UDP), and withdraw them.
//!
//! A `type = "RPC"` service listens on a port of its own; clients learn that port by
//! asking the portmapper on port 111 for the program and version. [`set`] tells the
//! local portmapper about one (program, version, protocol, port), [`unset`] takes a
//! program and version back.
//!
//! The calls are hand-written XDR over a connected UDP socket to 127.0.0.1:111
//! (RFC 1833 section 3, RFC 5531 for the message framing). Each waits at most
//! `TRIES` × `TRY_TIMEOUT` (one second), because the daemon registers while loading
//! and a machine without rpcbind must not stall it; a refused port answers at once.
//!
//! How rpcbind 1.2.6 (Debian 12) answers, checked against the real daemon:
//! - `PMAPPROC_SET` answers true when the same mapping is already there (so a
//!   retransmission is harmless), false when the program, version and protocol are
//!   registered to another port: unset first to take a mapping over.
//! - `PMAPPROC_UNSET` ignores protocol and port: it withdraws the program and version
//!   for TCP and UDP both. A daemon with a TCP and a UDP service of the same program
//!   and version must set the survivor again after unsetting the other.
//! - `PMAPPROC_UNSET` answers true even when it removed nothing. Registrations made
//!   over UDP are owned by "unknown"; one a local program made through rpcbind's unix
//!   socket (owner "superuser") is left in place, still with a true answer.
//! - Neither call needs a reserved source port, and a port below 1024 is accepted.
//!   Older rpcbind builds want one (they answer AUTH_TOOWEAK, shown as "call denied:
//!   authentication error 5").
//! - A stopped rpcbind reads its queue when it continues: a call reported `NotRunning`
//!   may still take effect later, so the daemon should unset at shutdown every mapping
//!   it tried to set.

use std::fmt;
use std::io::{self, ErrorKind};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::spec::Protocol;

/// One registration: clients asking for `program` `version` over `protocol` are sent
/// to `port`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub program: u32,
    pub version: u32,
    pub protocol: Protocol,
    pub port: u16,
}

impl fmt::Display for Mapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "program {} version {} {} port {}",
            self.program,
            self.version,
            self.protocol.name(),
            self.port
        )
    }
}

#[derive(Debug)]
pub enum RpcError {
    /// Nothing answered on 127.0.0.1:111, or the port was refused.
    NotRunning,
    /// rpcbind answered false: for `set`, the program, version and protocol are
    /// registered to another port. (rpcbind answers `unset` with true.)
    Refused,
    /// rpcbind (or whatever listens there) answered something else than a yes or no,
    /// or the socket failed.
    Protocol(String),
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RpcError::NotRunning => {
                write!(f, "rpcbind is not running (no answer from {PORTMAPPER})")
            }
            RpcError::Refused => write!(
                f,
                "rpcbind refused: the program and version are registered to another port"
            ),
            RpcError::Protocol(message) => write!(f, "rpcbind: {message}"),
        }
    }
}

impl std::error::Error for RpcError {}

/// Registers `mapping` with the local portmapper (`PMAPPROC_SET`).
pub fn set(mapping: &Mapping) -> Result<(), RpcError> {
    call(PORTMAPPER, Procedure::Set, mapping, TRY_TIMEOUT)
}

/// Withdraws `mapping`'s program and version, for every protocol (`PMAPPROC_UNSET`).
pub fn unset(mapping: &Mapping) -> Result<(), RpcError> {
    call(PORTMAPPER, Procedure::Unset, mapping, TRY_TIMEOUT)
}

const PORTMAPPER: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 111));
const TRY_TIMEOUT: Duration = Duration::from_millis(500);
const TRIES: u32 = 2;

const PMAP_PROGRAM: u32 = 100_000;
const PMAP_VERSION: u32 = 2;
const RPC_VERSION: u32 = 2;
const CALL: u32 = 0;
const REPLY: u32 = 1;
const MSG_ACCEPTED: u32 = 0;
const MSG_DENIED: u32 = 1;
const AUTH_NONE: u32 = 0;
const IPPROTO_TCP: u32 = 6;
const IPPROTO_UDP: u32 = 17;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Procedure {
    Set = 1,
    Unset = 2,
}

fn call(
    server: SocketAddr,
    procedure: Procedure,
    mapping: &Mapping,
    try_timeout: Duration,
) -> Result<(), RpcError> {
    let xid = next_xid();
    let request = encode_call(xid, procedure, mapping);
    let socket = connect(server).map_err(|error| socket_error("socket", error))?;
    let mut buffer = [0u8; 512];
    for _ in 0..TRIES {
        // The same xid on every try: a late answer to the first try is still the answer.
        match socket.send(&request) {
            Ok(_) => {}
            Err(error) if error.kind() == ErrorKind::ConnectionRefused => {
                return Err(RpcError::NotRunning);
            }
            Err(error) => return Err(socket_error("send", error)),
        }
        let deadline = Instant::now() + try_timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            socket
                .set_read_timeout(Some(left))
                .map_err(|error| socket_error("socket", error))?;
            match socket.recv(&mut buffer) {
                Ok(length) => match decode_reply(xid, &buffer[..length]) {
                    Some(answer) => return answer,
                    None => continue,
                },
                Err(error)
                    if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    break;
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                // The ICMP port unreachable of a loopback send, reported on the next call.
                Err(error) if error.kind() == ErrorKind::ConnectionRefused => {
                    return Err(RpcError::NotRunning);
                }
                Err(error) => return Err(socket_error("recv", error)),
            }
        }
    }
    Err(RpcError::NotRunning)
}

fn connect(server: SocketAddr) -> io::Result<UdpSocket> {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::LOCALHOST, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::LOCALHOST, 0).into(),
    };
    // std opens sockets close-on-exec, so no server inherits this one.
    let socket = UdpSocket::bind(local)?;
    socket.connect(server)?;
    Ok(socket)
}

fn socket_error(operation: &str, error: io::Error) -> RpcError {
    RpcError::Protocol(format!("{operation}: {error}"))
}

/// Transaction ids differ between calls and between daemon runs, so an old answer
/// still in flight from a previous call is never taken for this one's.
fn next_xid() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let counter = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.subsec_nanos());
    (std::process::id() << 16) ^ nanos ^ counter.wrapping_mul(0x9E37_79B9)
}

fn encode_call(xid: u32, procedure: Procedure, mapping: &Mapping) -> Vec<u8> {
    let protocol = match mapping.protocol {
        Protocol::Tcp => IPPROTO_TCP,
        Protocol::Udp => IPPROTO_UDP,
    };
    let words = [
        xid,
        CALL,
        RPC_VERSION,
        PMAP_PROGRAM,
        PMAP_VERSION,
        procedure as u32,
        AUTH_NONE, // credential flavor
        0,         // credential length
        AUTH_NONE, // verifier flavor
        0,         // verifier length
        mapping.program,
        mapping.version,
        protocol,
        u32::from(mapping.port),
    ];
    words.iter().flat_map(|word| word.to_be_bytes()).collect()
}

/// The answer carried by `reply`, or `None` when it is not a reply to `xid` (a stray
/// or late datagram, to be ignored).
fn decode_reply(xid: u32, reply: &[u8]) -> Option<Result<(), RpcError>> {
    let mut words = Words(reply);
    if words.next() != Some(xid) || words.next() != Some(REPLY) {
        return None;
    }
    Some(decode_reply_body(&mut words))
}

fn decode_reply_body(words: &mut Words<'_>) -> Result<(), RpcError> {
    let short = || RpcError::Protocol("truncated reply".to_string());
    match words.next().ok_or_else(short)? {
        MSG_ACCEPTED => {}
        MSG_DENIED => {
            return Err(RpcError::Protocol(
                match words.next().ok_or_else(short)? {
                    0 => "call denied: RPC version mismatch".to_string(),
                    // rpcbind answers AUTH_TOOWEAK (5) when it takes the caller for a
                    // remote host (some builds want a reserved source port on loopback).
                    1 => format!(
                        "call denied: authentication error {}",
                        words.next().ok_or_else(short)?
                    ),
                    other => format!("call denied: reject status {other}"),
                },
            ));
        }
        other => return Err(RpcError::Protocol(format!("unknown reply status {other}"))),
    }
    let _verifier_flavor = words.next().ok_or_else(short)?;
    let verifier_length = words.next().ok_or_else(short)?;
    words.skip_opaque(verifier_length).ok_or_else(short)?;
    match words.next().ok_or_else(short)? {
        0 => {}
        status => {
            let what = match status {
                1 => "program unavailable",
                2 => "program version mismatch",
                3 => "procedure unavailable",
                4 => "garbage arguments",
                5 => "system error",
                _ => "unknown accept status",
            };
            return Err(RpcError::Protocol(format!(
                "call not executed: {what} ({status})"
            )));
        }
    }
    match words.next().ok_or_else(short)? {
        1 => Ok(()),
        0 => Err(RpcError::Refused),
        other => Err(RpcError::Protocol(format!("result {other} is not a bool"))),
    }
}

/// Big-endian 32-bit XDR words.
struct Words<'a>(&'a [u8]);

impl Words<'_> {
    fn next(&mut self) -> Option<u32> {
        let (word, rest) = self.0.split_first_chunk::<4>()?;
        self.0 = rest;
        Some(u32::from_be_bytes(*word))
    }

    /// Skips opaque data of `length` bytes, padded to a multiple of four.
    fn skip_opaque(&mut self, length: u32) -> Option<()> {
        let padded = usize::try_from(length).ok()?.checked_next_multiple_of(4)?;
        self.0 = self.0.get(padded..)?;
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    const MAPPING: Mapping = Mapping {
        program: 100_099,
        version: 3,
        protocol: Protocol::Udp,
        port: 20_111,
    };

    fn be(words: &[u32]) -> Vec<u8> {
        words.iter().flat_map(|word| word.to_be_bytes()).collect()
    }

    fn accepted(xid: u32, result: u32) -> Vec<u8> {
        be(&[xid, REPLY, MSG_ACCEPTED, AUTH_NONE, 0, 0, result])
    }

    /// A portmapper on a loopback port that answers each request with `answer(xid)`
    /// (`None`: no answer) and returns the datagrams it received.
    fn fake_portmapper(
        requests: usize,
        answer: impl Fn(u32) -> Vec<Vec<u8>> + Send + 'static,
    ) -> (SocketAddr, thread::JoinHandle<Vec<Vec<u8>>>) {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let address = socket.local_addr().unwrap();
        let handle = thread::spawn(move || {
            let mut received = Vec::new();
            let mut buffer = [0u8; 1024];
            for _ in 0..requests {
                let (length, from) = socket.recv_from(&mut buffer).unwrap();
                let request = buffer[..length].to_vec();
                let xid = u32::from_be_bytes(request[..4].try_into().unwrap());
                for reply in answer(xid) {
                    socket.send_to(&reply, from).unwrap();
                }
                received.push(request);
            }
            received
        });
        (address, handle)
    }

    fn expected_call(xid: u32, procedure: u32, mapping: &Mapping, protocol: u32) -> Vec<u8> {
        let port = u32::from(mapping.port);
        be(&[
            xid,
            0,
            2,
            100_000,
            2,
            procedure,
            0,
            0,
            0,
            0,
            mapping.program,
            mapping.version,
            protocol,
            port,
        ])
    }

    fn xid_of(request: &[u8]) -> u32 {
        u32::from_be_bytes(request[..4].try_into().unwrap())
    }

    #[test]
    fn set_sends_pmapproc_set_and_takes_true() {
        let (address, fake) = fake_portmapper(1, |xid| vec![accepted(xid, 1)]);
        let result = call(address, Procedure::Set, &MAPPING, TRY_TIMEOUT);
        let received = fake.join().unwrap();
        assert!(result.is_ok(), "{result:?}");
        let xid = xid_of(&received[0]);
        assert_eq!(received[0], expected_call(xid, 1, &MAPPING, 17));
    }

    #[test]
    fn unset_sends_pmapproc_unset() {
        let tcp = Mapping {
            protocol: Protocol::Tcp,
            port: 65_535,
            ..MAPPING
        };
        let (address, fake) = fake_portmapper(1, |xid| vec![accepted(xid, 1)]);
        let result = call(address, Procedure::Unset, &tcp, TRY_TIMEOUT);
        let received = fake.join().unwrap();
        assert!(result.is_ok(), "{result:?}");
        let xid = xid_of(&received[0]);
        assert_eq!(received[0], expected_call(xid, 2, &tcp, 6));
    }

    #[test]
    fn false_is_refused() {
        let (address, fake) = fake_portmapper(1, |xid| vec![accepted(xid, 0)]);
        let result = call(address, Procedure::Set, &MAPPING, TRY_TIMEOUT);
        fake.join().unwrap();
        assert!(matches!(result, Err(RpcError::Refused)), "{result:?}");
    }

    #[test]
    fn stray_datagrams_before_the_answer_are_ignored() {
        let (address, fake) = fake_portmapper(1, |xid| {
            vec![
                accepted(xid.wrapping_add(1), 0),
                be(&[xid]),
                be(&[xid, CALL, 0]),
                accepted(xid, 1),
            ]
        });
        let result = call(address, Procedure::Set, &MAPPING, TRY_TIMEOUT);
        fake.join().unwrap();
        assert!(result.is_ok(), "{result:?}");
    }

    #[test]
    fn a_silent_portmapper_is_asked_twice_then_not_running() {
        let (address, fake) = fake_portmapper(2, |_| Vec::new());
        let started = Instant::now();
        let result = call(address, Procedure::Set, &MAPPING, Duration::from_millis(50));
        let received = fake.join().unwrap();
        assert!(matches!(result, Err(RpcError::NotRunning)), "{result:?}");
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert_eq!(
            received[0], received[1],
            "a retransmission repeats the call"
        );
    }

    #[test]
    fn nobody_on_the_port_is_not_running_at_once() {
        // A port that was just free: the kernel answers port unreachable.
        let address = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let started = Instant::now();
        let result = call(address, Procedure::Set, &MAPPING, TRY_TIMEOUT);
        assert!(matches!(result, Err(RpcError::NotRunning)), "{result:?}");
        assert!(started.elapsed() < TRY_TIMEOUT, "{:?}", started.elapsed());
        assert_eq!(
            result.unwrap_err().to_string(),
            "rpcbind is not running (no answer from 127.0.0.1:111)"
        );
    }

    #[test]
    fn decoding_replies() {
        let x = 0xdead_beef;
        let decode =
            |reply: &[u32]| decode_reply(x, &be(reply)).map(|r| r.map_err(|e| e.to_string()));
        let refused = Err(RpcError::Refused.to_string());
        let protocol = |m: &str| Some(Err(format!("rpcbind: {m}")));
        assert_eq!(decode(&[x, 1, 0, 0, 0, 0, 1]), Some(Ok(())));
        assert_eq!(decode(&[x, 1, 0, 0, 0, 0, 0]), Some(refused));
        // A verifier with a body, padded to four bytes.
        assert_eq!(decode(&[x, 1, 0, 1, 5, 0, 0, 0, 1]), Some(Ok(())));
        assert_eq!(
            decode(&[x, 1, 0, 0, 0, 0, 2]),
            protocol("result 2 is not a bool")
        );
        assert_eq!(
            decode(&[x, 1, 0, 0, 0, 1]),
            protocol("call not executed: program unavailable (1)")
        );
        assert_eq!(
            decode(&[x, 1, 0, 0, 0, 2, 2, 2]),
            protocol("call not executed: program version mismatch (2)")
        );
        assert_eq!(
            decode(&[x, 1, 1, 1, 5]),
            protocol("call denied: authentication error 5")
        );
        assert_eq!(
            decode(&[x, 1, 1, 0, 2, 2]),
            protocol("call denied: RPC version mismatch")
        );
        assert_eq!(decode(&[x, 1, 2]), protocol("unknown reply status 2"));
        assert_eq!(decode(&[x, 1, 0, 0, 0, 0]), protocol("truncated reply"));
        assert_eq!(decode(&[x, 1, 0, 0, 8, 0]), protocol("truncated reply"));
        assert_eq!(decode(&[x, 1]), protocol("truncated reply"));
        // Not an answer to this call: ignored.
        assert_eq!(decode(&[x + 1, 1, 0, 0, 0, 0, 1]), None);
        assert_eq!(decode(&[x, 0, 0, 0, 0, 0, 1]), None);
        assert_eq!(decode(&[x]), None);
        assert_eq!(decode(&[]), None);
    }

    #[test]
    fn mapping_display() {
        assert_eq!(
            MAPPING.to_string(),
            "program 100099 version 3 udp port 20111"
        );
    }
}
