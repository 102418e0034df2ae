//! SIGTERM/SIGINT shutdown: servers are terminated (then killed after the grace), listeners
//! close, the daemon exits 0; and the pidfile names the daemon.

use crate::common;

use std::fs;
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use common::{Oxinetd, free_port, v4, wait_until, write_script};

/// Writes its pid to the file named by $1, then waits for a line that never comes.
const HOLD: &str = "#!/bin/sh\necho $$ > \"$1.tmp\"\nmv \"$1.tmp\" \"$1\"\nread -r line\n";

/// Like HOLD, after starting a child of its own whose pid it writes to "$1.child" first.
const PARENT: &str = "#!/bin/sh\nsleep 60 &\necho $! > \"$1.child\"\necho $$ > \"$1.tmp\"\nmv \"$1.tmp\" \"$1\"\nread -r line\n";

/// Same as HOLD, but ignores SIGTERM (inherited across exec) so only SIGKILL ends it.
const STUBBORN: &str =
    "#!/bin/sh\ntrap '' TERM\necho $$ > \"$1.tmp\"\nmv \"$1.tmp\" \"$1\"\nexec sleep 60\n";

/// The `hold` service, with `extra` keys.
fn config(grace: Option<u32>, port: u16, script: &Path, pidfile: &Path, extra: &str) -> String {
    let grace = grace.map_or(String::new(), |g| format!("shutdown_grace = {g}\n\n"));
    format!(
        "{grace}[service.hold]\nsocket_type = \"stream\"\nwait = false\nuser = \"root\"\n\
         bind = \"127.0.0.1\"\nport = {port}\nserver = \"{}\"\nserver_args = [\"{}\"]\n{extra}",
        script.display(),
        pidfile.display()
    )
}

/// SIGKILLs the server on drop if it is still alive, so a failing test leaves nothing.
struct Reap(i32);

impl Drop for Reap {
    fn drop(&mut self) {
        if is_alive(self.0) {
            // SAFETY: kill has no memory effects; the pid is the test's own server.
            unsafe {
                libc::kill(self.0, libc::SIGKILL);
            }
        }
    }
}

/// Starts a daemon whose `hold` service is running `body`; returns it, the held client
/// connection, the service port and the server's pid.
fn start_with_server(
    scripts: &Path,
    body: &str,
    grace: Option<u32>,
) -> (Oxinetd, TcpStream, u16, Reap) {
    start_with_server_and(scripts, body, grace, "")
}

/// `start_with_server`, with `extra` keys in the service.
fn start_with_server_and(
    scripts: &Path,
    body: &str,
    grace: Option<u32>,
    extra: &str,
) -> (Oxinetd, TcpStream, u16, Reap) {
    let script = write_script(scripts, "server", body);
    let server_pidfile = scripts.join("server.pid");
    let port = free_port();
    let daemon = Oxinetd::start(&config(grace, port, &script, &server_pidfile, extra));
    let client = TcpStream::connect_timeout(&v4(port), Duration::from_secs(5)).expect("connect");
    wait_until("server wrote its pid", Duration::from_secs(10), || {
        server_pidfile.exists()
    });
    let pid = fs::read_to_string(&server_pidfile)
        .expect("server pid")
        .trim()
        .parse()
        .expect("numeric pid");
    assert!(is_alive(pid), "server {pid} is not running");
    (daemon, client, port, Reap(pid))
}

/// Whether `pid` is a live process (a zombie is dead, just not yet reaped).
fn is_alive(pid: i32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat[stat.rfind(')').expect("comm") + 1..].trim_start();
    !state.starts_with('Z') && !state.starts_with('X')
}

fn assert_refused(addr: SocketAddr) {
    match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
        Err(e) => panic!("connect {addr}: expected refused, got {e}"),
        Ok(_) => panic!("connect {addr}: expected refused, but it was accepted"),
    }
}

/// Sends `signal` and returns how long the daemon took to exit 0.
fn shut_down(daemon: &mut Oxinetd, signal: Signal, limit: Duration) -> Duration {
    let started = Instant::now();
    daemon.signal(signal);
    let status = daemon
        .wait_exit(limit)
        .unwrap_or_else(|| panic!("still running {limit:?} after {signal}:\n{}", daemon.log()));
    let took = started.elapsed();
    assert_eq!(
        status.code(),
        Some(0),
        "exit after {signal}:\n{}",
        daemon.log()
    );
    assert!(
        daemon.log().contains("shutdown: done"),
        "no `shutdown: done`:\n{}",
        daemon.log()
    );
    took
}

fn assert_gone(pid: i32) {
    wait_until("server process gone", Duration::from_secs(3), || {
        !is_alive(pid)
    });
}

#[test]
fn sigterm_stops_servers_and_closes_listeners() {
    let scripts = tempfile::tempdir().expect("temp dir");
    let (mut daemon, _client, port, server) = start_with_server(scripts.path(), HOLD, None);
    // The default grace is 5 s: exiting well before it means the server got SIGTERM.
    let took = shut_down(&mut daemon, Signal::SIGTERM, Duration::from_secs(10));
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
    assert_gone(server.0);
    assert_refused(v4(port));
}

#[test]
fn server_ignoring_sigterm_is_killed_after_the_grace() {
    let scripts = tempfile::tempdir().expect("temp dir");
    let (mut daemon, _client, port, server) = start_with_server(scripts.path(), STUBBORN, Some(1));
    let took = shut_down(&mut daemon, Signal::SIGTERM, Duration::from_secs(10));
    assert!(
        took >= Duration::from_millis(900),
        "killed before the 1 s grace: {took:?}"
    );
    assert!(took < Duration::from_secs(4), "shutdown took {took:?}");
    assert_gone(server.0);
    assert_refused(v4(port));
}

#[test]
fn sigint_behaves_like_sigterm() {
    let scripts = tempfile::tempdir().expect("temp dir");
    let (mut daemon, _client, port, server) = start_with_server(scripts.path(), HOLD, None);
    let took = shut_down(&mut daemon, Signal::SIGINT, Duration::from_secs(10));
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
    assert_gone(server.0);
    assert_refused(v4(port));
}

/// Shutdown signals a server's process group, not only the server: what the server
/// started goes too, whether the server leads a process group (the default) or a
/// session (`setsid = true`).
#[test]
fn shutdown_stops_what_a_server_started() {
    for extra in ["", "setsid = true\n"] {
        let scripts = tempfile::tempdir().expect("temp dir");
        let (mut daemon, _client, _port, server) =
            start_with_server_and(scripts.path(), PARENT, None, extra);
        let child = Reap(
            fs::read_to_string(scripts.path().join("server.pid.child"))
                .expect("child pid")
                .trim()
                .parse()
                .expect("numeric pid"),
        );
        assert!(
            is_alive(child.0),
            "the server's child {} is not running",
            child.0
        );
        let took = shut_down(&mut daemon, Signal::SIGTERM, Duration::from_secs(10));
        assert!(
            took < Duration::from_secs(3),
            "shutdown took {took:?} ({extra:?})"
        );
        assert_gone(server.0);
        assert_gone(child.0);
    }
}

#[test]
fn pidfile_holds_the_daemon_pid() {
    let port = free_port();
    let daemon = Oxinetd::start(&format!(
        "[service.echo]\ntype = \"INTERNAL\"\nsocket_type = \"stream\"\n\
         bind = \"127.0.0.1\"\nport = {port}\n"
    ));
    let written = fs::read_to_string(daemon.dir().join("oxinetd.pid")).expect("pidfile");
    assert_eq!(written.trim(), daemon.pid().to_string());
}
