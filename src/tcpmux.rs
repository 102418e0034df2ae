//! TCPMUX (RFC 1078): read the client's service name line, and the protocol's replies.
//!
//! A client connects to the tcpmux service, sends a service name and CRLF, and the
//! multiplexer answers `+` (the named service begins on this connection) or `-reason`
//! followed by CRLF and a close. The name `HELP` asks for the list of names.
//!
//! This module is pure: the daemon peeks (`MSG_PEEK`) at what the client sent, calls
//! [`parse`], and once a whole line is there reads exactly [`Parsed::consumed`] bytes,
//! so the chosen server receives everything after the line untouched (xinetd read a
//! whole buffer and lost what followed the line).
//!
//! # Who may be named
//!
//! Only services whose `type` includes `TCPMUX` or `TCPMUXPLUS` are candidates, for
//! [`find`] as for [`help`]: the daemon passes those names and no others. xinetd once
//! matched the name against every service (CVE-2012-0862), which made any service,
//! even one bound to another address or disabled behind `only_from`, reachable through
//! the multiplexer. A matched service also runs as its own `user`, with its own limits
//! and access checks, exactly as if it had been reached on a port of its own; xinetd
//! once ran it as root (CVE-2013-4342).
//!
//! For `TCPMUXPLUS` the daemon sends [`GO`] before starting the server; a `TCPMUX`
//! server writes its own `+` line. Replies are exact bytes with no trailing NUL
//! (xinetd sent `sizeof("+Go\r\n")` bytes, NUL included).
//!
//! # The line, as accepted here
//!
//! - It ends in CRLF; a bare LF is accepted too, because people type at these ports
//!   with `nc`. A CR not followed by LF is invalid.
//! - The whole line, terminator included, fits in [`MAX_LINE`] bytes.
//! - Every other byte is printable ASCII (0x20-0x7E): a name is a token, never UTF-8,
//!   never a control character.
//! - Spaces around the name are dropped (a client typing `echo ` still means `echo`);
//!   a space inside the name makes the line invalid, since no service name has one.
//! - `HELP`, in any case, asks for the list; other names are compared ignoring ASCII
//!   case, as the RFC says names are never case sensitive.

/// What the client asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// No line terminator yet, and the line may still fit: peek again when more arrives.
    Incomplete,
    /// `HELP`: answer [`help`] and close.
    Help,
    /// A service name, spaces trimmed, case as the client sent it; look it up with [`find`].
    Service(&'a str),
    /// Not a valid line; the reason fits in a [`refusal`].
    Invalid(&'static str),
}

/// The request and how many bytes the line took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parsed<'a> {
    pub request: Request<'a>,
    /// Bytes to read off the socket, terminator included: non-zero only for `Help` and
    /// `Service`. Reading exactly this many leaves the rest for the server.
    pub consumed: usize,
}

/// The longest line, terminator included; the daemon peeks at most this many bytes.
/// Without a line terminator within it the line is invalid.
pub const MAX_LINE: usize = 256;

/// The positive reply the daemon sends for a `TCPMUXPLUS` service.
pub const GO: &[u8] = b"+Go\r\n";

/// Reads the service name line at the start of `peeked`.
pub fn parse(peeked: &[u8]) -> Parsed<'_> {
    let window = &peeked[..peeked.len().min(MAX_LINE)];
    for (at, &byte) in window.iter().enumerate() {
        match byte {
            b'\n' => return line(&window[..at], at + 1),
            b'\r' => match window.get(at + 1) {
                Some(b'\n') => return line(&window[..at], at + 2),
                Some(_) => return invalid("CR not followed by LF"),
                // The LF may still come, unless the window is full (checked below).
                None => {}
            },
            b' '..=b'~' => {}
            _ => return invalid("service name is not printable ASCII"),
        }
    }
    if peeked.len() >= MAX_LINE {
        invalid("line too long")
    } else {
        Parsed {
            request: Request::Incomplete,
            consumed: 0,
        }
    }
}

fn line(content: &[u8], consumed: usize) -> Parsed<'_> {
    let name = content.trim_ascii();
    if name.is_empty() {
        return invalid("empty service name");
    }
    if name.contains(&b' ') {
        return invalid("space in service name");
    }
    // Every byte was checked to be printable ASCII, so this cannot fail.
    let Ok(name) = std::str::from_utf8(name) else {
        return invalid("service name is not printable ASCII");
    };
    let request = if name.eq_ignore_ascii_case("HELP") {
        Request::Help
    } else {
        Request::Service(name)
    };
    Parsed { request, consumed }
}

fn invalid(reason: &'static str) -> Parsed<'static> {
    Parsed {
        request: Request::Invalid(reason),
        consumed: 0,
    }
}

/// The negative reply: `-`, the reason, CRLF. Control characters in the reason become
/// spaces, so a reply is always exactly one line.
pub fn refusal(reason: &str) -> Vec<u8> {
    let mut reply = Vec::with_capacity(reason.len() + 3);
    reply.push(b'-');
    reply.extend(
        reason
            .bytes()
            .map(|byte| if byte.is_ascii_control() { b' ' } else { byte }),
    );
    reply.extend_from_slice(b"\r\n");
    reply
}

/// The reply to `HELP`: each name on its own CRLF-terminated line, in the order given.
/// `names` are the TCPMUX/TCPMUXPLUS services only.
pub fn help(names: &[&str]) -> Vec<u8> {
    let mut reply = Vec::with_capacity(names.iter().map(|name| name.len() + 2).sum());
    for name in names {
        reply.extend_from_slice(name.as_bytes());
        reply.extend_from_slice(b"\r\n");
    }
    reply
}

/// The first of `services` (the TCPMUX/TCPMUXPLUS service names only) equal to `name`
/// ignoring ASCII case.
pub fn find<'a>(name: &str, mut services: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    services.find(|service| service.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(request: Request<'_>, consumed: usize) -> Parsed<'_> {
        Parsed { request, consumed }
    }

    macro_rules! parses {
        ($input:expr, $request:expr, $consumed:expr) => {
            assert_eq!(
                parse($input),
                parsed($request, $consumed),
                "input {:?}",
                String::from_utf8_lossy($input)
            )
        };
    }

    use Request::{Help, Incomplete, Invalid, Service};

    #[test]
    fn complete_lines() {
        parses!(b"echo\r\n", Service("echo"), 6);
        parses!(b"echo\n", Service("echo"), 5);
        parses!(b"Echo\r\n", Service("Echo"), 6);
        parses!(b"  echo \r\n", Service("echo"), 9);
        parses!(b"my-svc_2.0\r\n", Service("my-svc_2.0"), 12);
        parses!(b"x\r\n", Service("x"), 3);
    }

    #[test]
    fn what_follows_the_line_is_left_for_the_server() {
        parses!(b"echo\r\nhello", Service("echo"), 6);
        parses!(b"echo\nhello\r\n", Service("echo"), 5);
        parses!(b"echo\r\n\x00\xff", Service("echo"), 6);
        parses!(b"HELP\r\nmore", Help, 6);
    }

    #[test]
    fn help_in_any_case() {
        parses!(b"HELP\r\n", Help, 6);
        parses!(b"help\r\n", Help, 6);
        parses!(b"hElP\n", Help, 5);
        parses!(b" HELP \r\n", Help, 8);
        parses!(b"HELPER\r\n", Service("HELPER"), 8);
    }

    #[test]
    fn incomplete_lines() {
        parses!(b"", Incomplete, 0);
        parses!(b"ech", Incomplete, 0);
        parses!(b"echo\r", Incomplete, 0);
        parses!(b"  ", Incomplete, 0);
        parses!(&[b'a'; MAX_LINE - 1], Incomplete, 0);
    }

    #[test]
    fn invalid_lines() {
        parses!(b"\r\n", Invalid("empty service name"), 0);
        parses!(b"\n", Invalid("empty service name"), 0);
        parses!(b"   \r\n", Invalid("empty service name"), 0);
        parses!(b"my svc\r\n", Invalid("space in service name"), 0);
        parses!(b"echo\rx\n", Invalid("CR not followed by LF"), 0);
        parses!(b"\recho\r\n", Invalid("CR not followed by LF"), 0);
        parses!(b"echo\r\r\n", Invalid("CR not followed by LF"), 0);
        parses!(
            b"ec\x00ho\r\n",
            Invalid("service name is not printable ASCII"),
            0
        );
        parses!(
            b"\tl\r\n",
            Invalid("service name is not printable ASCII"),
            0
        );
        parses!(
            b"\x7f\r\n",
            Invalid("service name is not printable ASCII"),
            0
        );
        parses!(
            "écho\r\n".as_bytes(),
            Invalid("service name is not printable ASCII"),
            0
        );
        // Decided before the line is complete: no need to wait for the rest.
        parses!(b"ec\x00", Invalid("service name is not printable ASCII"), 0);
    }

    #[test]
    fn line_length_limit() {
        let longest = [&[b'a'; MAX_LINE - 2][..], b"\r\n"].concat();
        parses!(&longest, Service(&"a".repeat(MAX_LINE - 2)), MAX_LINE);
        let longest_lf = [&[b'a'; MAX_LINE - 1][..], b"\n"].concat();
        parses!(&longest_lf, Service(&"a".repeat(MAX_LINE - 1)), MAX_LINE);
        let one_over = [&[b'a'; MAX_LINE - 1][..], b"\r\n"].concat();
        parses!(&one_over, Invalid("line too long"), 0);
        parses!(&[b'a'; MAX_LINE], Invalid("line too long"), 0);
        parses!(&[b'a'; MAX_LINE + 10], Invalid("line too long"), 0);
    }

    #[test]
    fn replies() {
        assert_eq!(GO, b"+Go\r\n");
        assert_eq!(refusal("unknown service"), b"-unknown service\r\n");
        assert_eq!(refusal(""), b"-\r\n");
        assert_eq!(refusal("a\r\n+Go"), b"-a  +Go\r\n");
        assert_eq!(refusal("tab\there"), b"-tab here\r\n");
        assert_eq!(help(&[]), b"");
        assert_eq!(help(&["one"]), b"one\r\n");
        assert_eq!(help(&["one", "Two"]), b"one\r\nTwo\r\n");
    }

    #[test]
    fn find_ignores_case() {
        let services = ["echo", "MyService", "other"];
        let find_in = |name| find(name, services.iter().copied());
        assert_eq!(find_in("echo"), Some("echo"));
        assert_eq!(find_in("ECHO"), Some("echo"));
        assert_eq!(find_in("myservice"), Some("MyService"));
        assert_eq!(find_in("MYSERVICE"), Some("MyService"));
        assert_eq!(find_in("ech"), None);
        assert_eq!(find_in("echo2"), None);
        assert_eq!(find_in(""), None);
        assert_eq!(find("echo", std::iter::empty()), None);
    }
}
