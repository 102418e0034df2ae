//! The internal services (echo, discard, daytime, time, chargen), served inside the
//! daemon without a fork: non-blocking stream sessions and dgram replies.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::spec::Internal;

/// What a stream session waits for next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interest {
    pub read: bool,
    pub write: bool,
}

/// Echo keeps at most this much unsent; then it stops reading until the peer reads.
const ECHO_BUFFER: usize = 64 * 1024;

/// One client of an internal stream service.
pub struct Session {
    pub stream: TcpStream,
    kind: Internal,
    /// Bytes waiting to be written: echoed input, or the one-shot daytime/time reply.
    pending: Vec<u8>,
    written: usize,
    /// Where chargen is in its 95-line cycle.
    chargen_at: usize,
    peer_closed: bool,
}

impl Session {
    /// `stream` must be non-blocking.
    pub fn new(kind: Internal, stream: TcpStream) -> Session {
        let pending = match kind {
            Internal::Daytime => daytime().into_bytes(),
            Internal::Time => time().to_vec(),
            _ => Vec::new(),
        };
        Session {
            stream,
            kind,
            pending,
            written: 0,
            chargen_at: 0,
            peer_closed: false,
        }
    }

    pub fn interest(&self) -> Interest {
        match self.kind {
            Internal::Echo => Interest {
                read: !self.peer_closed && self.pending.len() < ECHO_BUFFER,
                write: self.written < self.pending.len(),
            },
            Internal::Discard => Interest {
                read: true,
                write: false,
            },
            Internal::Daytime | Internal::Time => Interest {
                read: false,
                write: true,
            },
            Internal::Chargen => Interest {
                read: !self.peer_closed,
                write: true,
            },
            // tcpmux is a request the daemon reads, not a session.
            Internal::TcpMux => Interest {
                read: false,
                write: false,
            },
        }
    }

    /// Does all the I/O the socket allows now. `Ok(false)` means the session is over.
    pub fn advance(&mut self) -> io::Result<bool> {
        match self.kind {
            Internal::TcpMux => Ok(false),
            Internal::Echo => {
                self.read_input(true)?;
                self.flush()?;
                Ok(!(self.peer_closed && self.written == self.pending.len()))
            }
            Internal::Discard => {
                self.read_input(false)?;
                Ok(!self.peer_closed)
            }
            Internal::Daytime | Internal::Time => {
                self.flush()?;
                Ok(self.written < self.pending.len())
            }
            Internal::Chargen => {
                self.read_input(false)?;
                let cycle = chargen_cycle();
                loop {
                    match self.stream.write(&cycle[self.chargen_at..]) {
                        Ok(0) => return Ok(false),
                        Ok(n) => self.chargen_at = (self.chargen_at + n) % cycle.len(),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(true),
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }

    /// Reads what is available, keeping it for echo or dropping it.
    fn read_input(&mut self, keep: bool) -> io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        while !self.peer_closed && (!keep || self.pending.len() < ECHO_BUFFER) {
            let room = if keep {
                (ECHO_BUFFER - self.pending.len()).min(chunk.len())
            } else {
                chunk.len()
            };
            match self.stream.read(&mut chunk[..room]) {
                Ok(0) => self.peer_closed = true,
                Ok(n) if keep => self.pending.extend_from_slice(&chunk[..n]),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        while self.written < self.pending.len() {
            match self.stream.write(&self.pending[self.written..]) {
                Ok(n) => self.written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.kind == Internal::Echo {
            self.pending.clear();
            self.written = 0;
        }
        Ok(())
    }
}

/// The reply to one datagram, or `None` when no reply is due. Replies are never sent
/// to privileged source ports or to broadcast or multicast addresses, which is how
/// UDP echo and chargen get used to reflect floods.
pub fn dgram_reply<'a>(
    kind: Internal,
    from: SocketAddr,
    request: &'a [u8],
    scratch: &'a mut Vec<u8>,
) -> Option<&'a [u8]> {
    if !may_reply_to(from) {
        return None;
    }
    match kind {
        Internal::Echo => Some(request),
        Internal::Discard | Internal::TcpMux => None,
        Internal::Daytime => {
            scratch.clear();
            scratch.extend_from_slice(daytime().as_bytes());
            Some(scratch)
        }
        Internal::Time => {
            scratch.clear();
            scratch.extend_from_slice(&time());
            Some(scratch)
        }
        // RFC 864 caps a chargen datagram at 512 bytes: six whole 74-byte lines.
        Internal::Chargen => Some(&chargen_cycle()[..6 * LINE]),
    }
}

pub fn may_reply_to(from: SocketAddr) -> bool {
    let ip = from.ip().to_canonical();
    let unsafe_address = match ip {
        IpAddr::V4(v4) => v4.is_broadcast() || v4.is_multicast() || v4.is_unspecified(),
        IpAddr::V6(v6) => v6.is_multicast() || v6.is_unspecified(),
    };
    from.port() >= 1024 && !unsafe_address
}

/// RFC 868: seconds since 1900-01-01, 32 bits, network order.
pub fn time() -> [u8; 4] {
    const SECONDS_1900_TO_1970: u64 = 2_208_988_800;
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    ((unix + SECONDS_1900_TO_1970) as u32).to_be_bytes()
}

/// RFC 867 leaves the format free; this is its suggested one, in local time.
pub fn daytime() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let mut buffer = [0u8; 96];
    let tm = crate::sys::time::localtime(now).unwrap_or_else(crate::sys::time::zero_tm);
    let written = crate::sys::time::strftime(&tm, c"%A, %B %d, %Y %H:%M:%S-%Z\r\n", &mut buffer);
    String::from_utf8_lossy(&buffer[..written]).into_owned()
}

const LINE: usize = 74;

/// RFC 864's pattern: 95 lines of 72 printable characters, each starting one character
/// further along, each ended by CR LF.
pub fn chargen_cycle() -> &'static [u8] {
    static CYCLE: OnceLock<Vec<u8>> = OnceLock::new();
    CYCLE.get_or_init(|| {
        let printable: Vec<u8> = (b' '..=b'~').collect();
        let mut cycle = Vec::with_capacity(printable.len() * LINE);
        for start in 0..printable.len() {
            cycle.extend((0..72).map(|i| printable[(start + i) % printable.len()]));
            cycle.extend_from_slice(b"\r\n");
        }
        cycle
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chargen_lines_rotate() {
        let cycle = chargen_cycle();
        assert_eq!(cycle.len(), 95 * LINE);
        assert_eq!(&cycle[..3], b" !\"");
        assert_eq!(&cycle[72..74], b"\r\n");
        assert_eq!(cycle[LINE], b'!');
    }

    #[test]
    fn no_reply_to_privileged_ports_or_broadcast() {
        assert!(may_reply_to("127.0.0.1:40000".parse().unwrap()));
        assert!(!may_reply_to("127.0.0.1:53".parse().unwrap()));
        assert!(!may_reply_to("255.255.255.255:40000".parse().unwrap()));
        assert!(!may_reply_to(
            "[::ffff:255.255.255.255]:40000".parse().unwrap()
        ));
        assert!(!may_reply_to("224.0.0.1:40000".parse().unwrap()));
        assert!(!may_reply_to("[ff02::1]:40000".parse().unwrap()));
    }

    #[test]
    fn time_is_after_2020() {
        // 2020-01-01 is 3_786_825_600 seconds after 1900; the 32-bit count wraps in 2036.
        assert!(u32::from_be_bytes(time()) > 3_786_825_600);
    }

    #[test]
    fn daytime_ends_with_crlf() {
        assert!(daytime().ends_with("\r\n"));
    }
}
