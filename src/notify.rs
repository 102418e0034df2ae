//! systemd's readiness protocol (sd_notify(3)) without libsystemd: each state change is
//! one datagram of `KEY=VALUE` lines to the socket named by `NOTIFY_SOCKET`.
//!
//! The variables systemd hands oxinetd for itself (`NOTIFY_SOCKET`, `WATCHDOG_*`,
//! `LISTEN_*`) are never passed on to servers (`SYSTEMD_VARIABLES`): a server that saw
//! `NOTIFY_SOCKET` could tell systemd that oxinetd is ready, reloading or stopping.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Variables meant for oxinetd alone; the environment servers inherit leaves them out.
pub const SYSTEMD_VARIABLES: &[&str] = &[
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
];

/// Whether servers must not inherit the variable `name`.
pub fn is_systemd_variable(name: &[u8]) -> bool {
    SYSTEMD_VARIABLES.iter().any(|v| v.as_bytes() == name)
}

/// Where and how often to tell systemd how oxinetd is; `None` outside systemd.
pub struct Notifier {
    socket: UnixDatagram,
    address: SocketAddr,
    /// Half of `WATCHDOG_USEC`, when the watchdog is ours.
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` as `lookup` gives them
    /// (the process environment in the daemon). `pid` is oxinetd's own.
    pub fn new(lookup: impl Fn(&str) -> Option<Vec<u8>>, pid: u32) -> io::Result<Option<Notifier>> {
        let Some(path) = lookup("NOTIFY_SOCKET").filter(|path| !path.is_empty()) else {
            return Ok(None);
        };
        let address = socket_address(&path)?;
        let watchdog_is_ours =
            lookup("WATCHDOG_PID").is_none_or(|owner| parse_number(&owner) == Some(u64::from(pid)));
        let watchdog = lookup("WATCHDOG_USEC")
            .and_then(|usec| parse_number(&usec))
            .filter(|usec| *usec > 0 && watchdog_is_ours)
            .map(|usec| Duration::from_micros(usec) / 2);
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        Ok(Some(Notifier {
            socket,
            address,
            watchdog,
        }))
    }

    /// How often `WATCHDOG=1` must go: half the interval systemd asked for.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Sends `state` (`READY=1`, `STATUS=...`, several lines joined by `\n`). A full or
    /// vanished socket costs the message, never a stalled loop.
    pub fn send(&self, state: &str) -> io::Result<()> {
        self.socket
            .send_to_addr(state.as_bytes(), &self.address)
            .map(drop)
    }
}

/// `RELOADING=1` with the `MONOTONIC_USEC` systemd's `Type=notify-reload` asks for.
pub fn reloading(monotonic: Duration) -> String {
    format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic.as_micros())
}

/// A `NOTIFY_SOCKET` value as an address: a path, or `@name` for the abstract namespace.
fn socket_address(value: &[u8]) -> io::Result<SocketAddr> {
    match value.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name),
        None if value.starts_with(b"/") => SocketAddr::from_pathname(OsStr::from_bytes(value)),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "NOTIFY_SOCKET {:?} is neither an absolute path nor @abstract",
                String::from_utf8_lossy(value)
            ),
        )),
    }
}

fn parse_number(text: &[u8]) -> Option<u64> {
    std::str::from_utf8(text).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn environment<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<Vec<u8>> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.as_bytes().to_vec())
        }
    }

    fn receive(socket: &UnixDatagram) -> String {
        let mut buffer = [0u8; 512];
        let length = socket.recv(&mut buffer).unwrap();
        String::from_utf8(buffer[..length].to_vec()).unwrap()
    }

    #[test]
    fn no_socket_no_notifier() {
        assert!(Notifier::new(environment(&[]), 1).unwrap().is_none());
        assert!(
            Notifier::new(environment(&[("NOTIFY_SOCKET", "")]), 1)
                .unwrap()
                .is_none()
        );
        assert!(Notifier::new(environment(&[("NOTIFY_SOCKET", "relative")]), 1).is_err());
    }

    #[test]
    fn a_state_is_one_datagram_to_a_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let systemd = UnixDatagram::bind(&path).unwrap();
        let path = path.to_str().unwrap();
        let notifier = Notifier::new(environment(&[("NOTIFY_SOCKET", path)]), 1)
            .unwrap()
            .unwrap();
        notifier.send("READY=1\nSTATUS=2 services").unwrap();
        assert_eq!(receive(&systemd), "READY=1\nSTATUS=2 services");
        assert_eq!(notifier.watchdog_interval(), None);
    }

    #[test]
    fn abstract_socket_names_start_with_at() {
        let name = format!("oxinetd-notify-test-{}", std::process::id());
        let address = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let systemd = UnixDatagram::bind_addr(&address).unwrap();
        let value = format!("@{name}");
        let notifier = Notifier::new(environment(&[("NOTIFY_SOCKET", &value)]), 1)
            .unwrap()
            .unwrap();
        notifier.send("STOPPING=1").unwrap();
        assert_eq!(receive(&systemd), "STOPPING=1");
    }

    #[test]
    fn the_watchdog_is_half_the_interval_when_it_is_ours() {
        let interval = |pairs: &[(&str, &str)]| {
            let mut all = vec![("NOTIFY_SOCKET", "/run/systemd/notify")];
            all.extend_from_slice(pairs);
            Notifier::new(environment(&all), 42)
                .unwrap()
                .unwrap()
                .watchdog_interval()
        };
        assert_eq!(interval(&[]), None);
        assert_eq!(
            interval(&[("WATCHDOG_USEC", "30000000")]),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            interval(&[("WATCHDOG_USEC", "30000000"), ("WATCHDOG_PID", "42")]),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            interval(&[("WATCHDOG_USEC", "30000000"), ("WATCHDOG_PID", "7")]),
            None
        );
        assert_eq!(interval(&[("WATCHDOG_USEC", "0")]), None);
        assert_eq!(interval(&[("WATCHDOG_USEC", "soon")]), None);
    }

    #[test]
    fn reloading_carries_the_monotonic_time() {
        assert_eq!(
            reloading(Duration::from_millis(1500)),
            "RELOADING=1\nMONOTONIC_USEC=1500000"
        );
    }

    #[test]
    fn systemd_variables_are_recognised() {
        assert!(is_systemd_variable(b"NOTIFY_SOCKET"));
        assert!(is_systemd_variable(b"LISTEN_FDNAMES"));
        assert!(!is_systemd_variable(b"PATH"));
        assert!(!is_systemd_variable(b"LISTEN"));
    }
}
