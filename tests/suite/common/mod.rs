//! Test harness: runs the real `oxinetd` binary in a temp dir and talks to it over loopback.
//!
//! Every wait here polls a condition against a deadline; nothing sleeps in place of
//! synchronisation. Every process a test starts is stopped by `Drop`, also on panic.
#![allow(dead_code)]

use std::collections::hash_map::RandomState;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs,
    UdpSocket,
};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;

pub const BIN: &str = env!("CARGO_BIN_EXE_oxinetd");

/// A test that cannot run here says why. `.ci/run` installs everything the suite needs,
/// so in CI (`CI` set) a skip is a failure: it would hide a gap.
pub fn skip(reason: &str) {
    if std::env::var_os("CI").is_some_and(|ci| !ci.is_empty() && ci != "false") {
        panic!("skipped in CI, where every test must run: {reason}");
    }
    eprintln!("skipped: {reason}");
}

/// How long the daemon may take to log `ready:` and how long a log line may take to appear.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client waits for a connection to be accepted and for data.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(20);

/// A port in 20000..32000 that is free for TCP and UDP on every local address right now.
///
/// The range lies below Linux's ephemeral range, so clients of other tests do not take it;
/// the random start keeps parallel test processes apart.
fn probe_free_port() -> u16 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let mut state = hasher.finish() | 1;
    for _ in 0..1000 {
        // xorshift64
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let port = 20000 + (state % 12000) as u16;
        if port_is_free(port) {
            return port;
        }
    }
    panic!("no free port found in 20000..32000");
}

fn port_is_free(port: u16) -> bool {
    // Services bind the wildcard by default, which clashes with a socket on any local
    // address (127.0.0.2 included), so probe the wildcards, not only loopback. `[::]` is
    // dual-stack where `bindv6only` is 0; the IPv4 wildcard is probed on its own for hosts
    // where it is 1. Each pair is released before the next is tried.
    let v4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    let v6 = SocketAddr::from((Ipv6Addr::UNSPECIFIED, port));
    [v6, v4].iter().all(|&addr| {
        let tcp = TcpListener::bind(addr);
        let udp = UdpSocket::bind(addr);
        tcp.is_ok() && udp.is_ok()
    })
}

/// A running `oxinetd`, its temp dir and its log. Dropping it stops the daemon.
pub struct Oxinetd {
    child: Child,
    dir: tempfile::TempDir,
    /// The daemon's pid when it runs under a wrapper that does not exec (strace).
    daemon_pid: Option<i32>,
}

/// Options for starting the daemon beyond a config: extra environment, a wrapper command.
#[derive(Default)]
pub struct Launch<'a> {
    /// Extra environment variables for the daemon.
    pub env: Vec<(&'a str, &'a str)>,
    /// A command the daemon runs under, e.g. `["setpriv", "--groups", "4,24", "--"]`.
    pub wrapper: Vec<&'a str>,
    /// Set when the wrapper forks the daemon instead of exec'ing it: the daemon's pid is then
    /// read from the pidfile (which must be among the arguments) and signalled instead.
    pub wrapper_forks: bool,
    /// A dir the caller prepared (scripts the config names); a new one when `None`.
    pub dir: Option<tempfile::TempDir>,
}

impl Oxinetd {
    /// Writes `config` to DIR/oxinetd.toml, starts the daemon on it and waits for `ready:`.
    pub fn start(config: &str) -> Oxinetd {
        Oxinetd::start_with(config, Launch::default())
    }

    /// Like `start`, with extra environment or a wrapper command.
    pub fn start_with(config: &str, mut launch: Launch<'_>) -> Oxinetd {
        let dir = launch.dir.take().unwrap_or_else(tempdir);
        fs::write(dir.path().join("oxinetd.toml"), config).expect("write config");
        let config_path = dir.path().join("oxinetd.toml");
        let pidfile = dir.path().join("oxinetd.pid");
        let args = [
            OsStr::new("-f"),
            config_path.as_os_str(),
            OsStr::new("--pidfile"),
            pidfile.as_os_str(),
        ];
        let mut daemon = Oxinetd::launch(dir, &args, &launch);
        daemon.wait_ready();
        if launch.wrapper_forks {
            let pid = fs::read_to_string(&pidfile)
                .unwrap_or_else(|e| panic!("read pidfile {}: {e}", pidfile.display()));
            daemon.daemon_pid = Some(pid.trim().parse().expect("pidfile holds a pid"));
        }
        daemon
    }

    /// Starts the daemon with exactly `args` in a dir the caller prepared; waits for `ready:`.
    pub fn start_in(dir: tempfile::TempDir, args: &[&str]) -> Oxinetd {
        let mut daemon = Oxinetd::spawn_in(dir, args);
        daemon.wait_ready();
        daemon
    }

    /// Starts the daemon with exactly `args` in a dir the caller prepared; does not wait.
    pub fn spawn_in(dir: tempfile::TempDir, args: &[&str]) -> Oxinetd {
        let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        Oxinetd::launch(dir, &args, &Launch::default())
    }

    fn launch(dir: tempfile::TempDir, args: &[&OsStr], launch: &Launch<'_>) -> Oxinetd {
        let log_path = dir.path().join("oxinetd.log");
        let log = File::create(&log_path).expect("create log");
        let mut command = match launch.wrapper.split_first() {
            Some((program, wrapper_args)) => {
                let mut c = Command::new(program);
                c.args(wrapper_args).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        command
            .args(args)
            .envs(launch.env.iter().copied())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log fd"))
            .stderr(log);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {BIN} (wrapper {:?}): {e}", launch.wrapper));
        Oxinetd {
            child,
            dir,
            daemon_pid: None,
        }
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if self.log().contains("ready:") {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "oxinetd exited ({status}) before ready; log:\n{}",
                    self.log()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "oxinetd not ready within {READY_TIMEOUT:?}; log:\n{}",
                    self.log()
                );
            }
            thread::sleep(POLL);
        }
    }

    /// The temp dir holding the config, pidfile and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// DIR/oxinetd.toml.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("oxinetd.toml")
    }

    /// The daemon's pid.
    pub fn pid(&self) -> i32 {
        self.daemon_pid.unwrap_or(self.child.id() as i32)
    }

    /// The log so far.
    pub fn log(&self) -> String {
        let bytes = fs::read(self.dir.path().join("oxinetd.log")).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Waits until the log contains `needle`; returns the log.
    pub fn wait_for_log(&self, needle: &str) -> String {
        self.wait_for_log_count(needle, 1)
    }

    /// Waits until `needle` occurs on at least `n` lines of the log; returns the log.
    pub fn wait_for_log_count(&self, needle: &str, n: usize) -> String {
        wait_for(
            &format!("{n} x {needle:?} in the log"),
            READY_TIMEOUT,
            || {
                let log = self.log();
                if count_lines(&log, needle) >= n {
                    Ok(log)
                } else {
                    Err(format!("log:\n{log}"))
                }
            },
        )
    }

    /// Sends `sig` to the daemon.
    pub fn signal(&self, sig: Signal) {
        send_signal(self.pid(), sig as i32);
    }

    /// Sends SIGHUP and waits until the daemon logs `reload: done` or `reload: failed`.
    pub fn reload(&self) {
        let count = |log: &str| {
            log.lines()
                .filter(|l| l.contains("reload: done") || l.contains("reload: failed"))
                .count()
        };
        let before = count(&self.log());
        self.signal(Signal::SIGHUP);
        wait_until("reload: done/failed after SIGHUP", READY_TIMEOUT, || {
            count(&self.log()) > before
        });
    }

    /// Rewrites DIR/oxinetd.toml.
    pub fn write_config(&self, config: &str) {
        fs::write(self.config_path(), config).expect("write config");
    }

    /// Sends SIGTERM and waits for the exit (10 s, then SIGKILL and panic).
    pub fn stop(mut self) -> ExitStatus {
        self.signal(Signal::SIGTERM);
        match self.wait_exit(Duration::from_secs(10)) {
            Some(status) => status,
            None => {
                self.kill_all();
                panic!(
                    "oxinetd did not exit within 10 s of SIGTERM; log:\n{}",
                    self.log()
                );
            }
        }
    }

    /// Waits up to `timeout` for the daemon (or its wrapper) to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) => {}
                Err(e) => panic!("wait for oxinetd: {e}"),
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(POLL);
        }
    }

    fn kill_all(&mut self) {
        if let Some(pid) = self.daemon_pid {
            send_signal(pid, libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Oxinetd {
    fn drop(&mut self) {
        // A failing test shows what the daemon said.
        if std::thread::panicking() {
            eprintln!("--- oxinetd log ---\n{}", self.log());
        }
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        self.signal(Signal::SIGTERM);
        if self.wait_exit(Duration::from_secs(5)).is_none() {
            self.kill_all();
        }
    }
}

/// A test's temp dir and port before the daemon starts: the files its config names
/// (scripts, banners, log files, markers) go into the dir, which becomes the daemon's.
pub struct Setup {
    pub dir: tempfile::TempDir,
    /// A free port for the test's main service.
    pub port: u16,
}

impl Setup {
    pub fn new() -> Setup {
        Setup {
            dir: tempdir(),
            port: free_port(),
        }
    }

    /// DIR/name as a string for the config.
    pub fn path(&self, name: &str) -> String {
        self.dir
            .path()
            .join(name)
            .to_str()
            .expect("utf-8 temp path")
            .to_owned()
    }

    /// Writes DIR/name holding `bytes`; returns its path.
    pub fn file(&self, name: &str, bytes: &[u8]) -> String {
        let path = self.path(name);
        fs::write(&path, bytes).unwrap_or_else(|e| panic!("write {path}: {e}"));
        path
    }

    /// Writes the executable script DIR/name holding `body`; returns its path.
    pub fn script(&self, name: &str, body: &str) -> String {
        write_script(self.dir.path(), name, body);
        self.path(name)
    }

    /// A stream nowait service `svc` on the port, with `body` as further keys.
    pub fn service(&self, body: &str) -> String {
        format!(
            "[service.svc]\nsocket_type = \"stream\"\nwait = false\nport = {}\n{body}\n",
            self.port
        )
    }

    /// Starts the daemon on `service(body)` alone; the daemon and the port.
    pub fn start_service(self, body: &str) -> (Oxinetd, u16) {
        self.start_service_with(body, Launch::default())
    }

    /// Like `start_service`, with `launch`'s environment or wrapper.
    pub fn start_service_with(self, body: &str, launch: Launch<'_>) -> (Oxinetd, u16) {
        let config = self.service(body);
        self.start_with(&config, launch)
    }

    /// Starts the daemon on `config` in the dir and waits until ready; the daemon and
    /// the port.
    pub fn start(self, config: &str) -> (Oxinetd, u16) {
        self.start_with(config, Launch::default())
    }

    /// Starts `config` with each `(target, text)` of `files` bind-mounted over `target`
    /// (for example `/etc/hosts` or `/proc/loadavg`) in a mount namespace of the daemon's
    /// own, so the machine's files are untouched and the test sees the same on every host.
    pub fn start_with_files(self, config: &str, files: &[(&str, &str)]) -> (Oxinetd, u16) {
        let mut mounts = Vec::new();
        for (n, (target, text)) in files.iter().enumerate() {
            let source = self.file(&format!("mounted-{n}"), text.as_bytes());
            mounts.push(format!("mount --bind {source} {target}"));
        }
        mounts.push("exec \"$0\" \"$@\"".to_string());
        let script = mounts.join(" && ");
        let launch = Launch {
            wrapper: vec!["unshare", "--mount", "--", "/bin/sh", "-c", &script],
            ..Launch::default()
        };
        self.start_with(config, launch)
    }

    /// Like `start`, with `launch`'s environment or wrapper.
    pub fn start_with(self, config: &str, launch: Launch<'_>) -> (Oxinetd, u16) {
        let port = self.port;
        let launch = Launch {
            dir: Some(self.dir),
            ..launch
        };
        (Oxinetd::start_with(config, launch), port)
    }
}

/// `server = "/bin/sh"` running `script` with `-c`.
pub fn sh(script: &str) -> String {
    format!(
        "server = \"/bin/sh\"\nserver_args = {}\n",
        toml_strings(&["-c", script])
    )
}

/// `sh(script)` as root.
pub fn sh_as_root(script: &str) -> String {
    format!("user = \"root\"\n{}", sh(script))
}

fn send_signal(pid: i32, sig: i32) {
    // SAFETY: kill has no memory effects; pid is a process this harness started.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// A new temp dir (under the system temp dir).
pub fn tempdir() -> tempfile::TempDir {
    trusted_umask();
    tempfile::Builder::new()
        .prefix("oxinetd-test-")
        .tempdir()
        .expect("create temp dir")
}

/// Makes every file a test writes from now on writable by its owner alone, whatever the
/// umask the tests were started with: oxinetd refuses to run a server as root from a
/// config file or a script that the group or others could write.
pub fn trusted_umask() {
    // SAFETY: umask has no memory arguments; it only changes the process's mask.
    unsafe {
        libc::umask(0o022);
    }
}

/// Runs `oxinetd --check -f FILE` on `config` written to a new temp dir.
pub fn check(config: &str) -> Output {
    let dir = tempdir();
    let path = dir.path().join("oxinetd.toml");
    fs::write(&path, config).expect("write config");
    check_file(&path)
}

/// Runs `oxinetd --check -f path`.
pub fn check_file(path: &Path) -> Output {
    Command::new(BIN)
        .arg("--check")
        .arg("-f")
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("run oxinetd --check")
}

/// `--check` on a stream service `svc` with `line` added as line 7 of the file: exit 1,
/// and an error naming the file, that line, the service and `key`.
pub fn assert_check_rejects(line: &str, key: &str) {
    let dir = tempdir();
    let path = dir.path().join("oxinetd.toml");
    let config = format!(
        "[service.svc]\nsocket_type = \"stream\"\nwait = false\nuser = \"root\"\n\
         server = \"/bin/cat\"\nport = {}\n{line}\n",
        free_port()
    );
    fs::write(&path, &config).expect("write config");
    let out = check_file(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{line} accepted; stderr:\n{stderr}"
    );
    let want = format!("{}:7: service svc: key {key}: ", path.display());
    assert!(
        stderr.lines().any(|l| l.contains(&want)),
        "no error line {want:?} for {line}; stderr:\n{stderr}"
    );
}

/// Connects, retrying while the connection is refused, for up to 10 s.
pub fn tcp_connect(addr: impl ToSocketAddrs) -> TcpStream {
    let addr = resolve(addr);
    connect_retrying(&format!("connect to {addr}"), || {
        TcpStream::connect_timeout(&addr, IO_TIMEOUT)
    })
}

/// Runs `connect` until it succeeds, retrying while the connection is refused (the
/// daemon may not be listening yet) for up to 10 s; sets 10 s I/O timeouts on the stream.
fn connect_retrying(what: &str, mut connect: impl FnMut() -> io::Result<TcpStream>) -> TcpStream {
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        match connect() {
            Ok(stream) => {
                stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
                return stream;
            }
            Err(e) if e.kind() == ErrorKind::ConnectionRefused && Instant::now() < deadline => {
                thread::sleep(POLL);
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

/// Reads until EOF (10 s read timeout, panics on timeout). A reset counts as EOF.
pub fn read_to_eof(stream: &mut TcpStream) -> Vec<u8> {
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return out,
            Err(e) => panic!(
                "read to EOF: {e} after {} bytes: {:?}",
                out.len(),
                String::from_utf8_lossy(&out)
            ),
        }
    }
}

/// Reads one line (up to and including '\n'); panics on EOF or timeout.
pub fn read_line(stream: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\n") {
        match stream.read(&mut byte) {
            Ok(0) => panic!("EOF after {:?}", String::from_utf8_lossy(&line)),
            Ok(_) => line.push(byte[0]),
            Err(e) => panic!("read line: {e} after {:?}", String::from_utf8_lossy(&line)),
        }
    }
    String::from_utf8(line).expect("UTF-8 line")
}

/// Connects, writes `input` (from a second thread, so large inputs cannot deadlock),
/// shuts down the write side and reads to EOF.
pub fn tcp_request(addr: impl ToSocketAddrs, input: &[u8]) -> Vec<u8> {
    exchange(tcp_connect(addr), input)
}

/// Writes `input` on `stream` from a second thread (so large inputs cannot deadlock),
/// shuts down the write side and reads to EOF.
fn exchange(mut stream: TcpStream, input: &[u8]) -> Vec<u8> {
    let mut writer = stream.try_clone().expect("clone stream");
    thread::scope(|s| {
        let written = s.spawn(move || {
            let result = writer.write_all(input);
            let _ = writer.shutdown(Shutdown::Write);
            result
        });
        let out = read_to_eof(&mut stream);
        match written.join().expect("writer thread") {
            Ok(()) => {}
            // A server may close without reading everything, and a refused connection
            // is closed at once: the reply is what matters.
            Err(e) if matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset) => {}
            Err(e) => panic!("write request: {e}"),
        }
        out
    })
}

/// Connects, reads at least `n` bytes (10 s timeout), then drops the connection.
pub fn tcp_read_some(addr: impl ToSocketAddrs, n: usize) -> Vec<u8> {
    let mut stream = tcp_connect(addr);
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    while out.len() < n {
        match stream.read(&mut buf) {
            Ok(0) => panic!("EOF after {} of {n} bytes", out.len()),
            Ok(k) => out.extend_from_slice(&buf[..k]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("read {n} bytes: {e} after {}", out.len()),
        }
    }
    out
}

/// A UDP socket on the loopback address of `addr`'s family, port chosen by the kernel.
pub fn udp_client_for(addr: &SocketAddr) -> UdpSocket {
    let local: SocketAddr = if addr.is_ipv4() {
        (Ipv4Addr::LOCALHOST, 0).into()
    } else {
        (Ipv6Addr::LOCALHOST, 0).into()
    };
    UdpSocket::bind(local).expect("bind UDP client")
}

/// Sends `data` and returns the first reply; waits 5 s per try, sends up to 3 times.
pub fn udp_request(addr: impl ToSocketAddrs, data: &[u8]) -> Vec<u8> {
    let addr = resolve(addr);
    let socket = udp_client_for(&addr);
    socket.connect(addr).expect("connect UDP client");
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = vec![0u8; 65536];
    for _ in 0..3 {
        socket.send(data).expect("send datagram");
        match socket.recv(&mut buf) {
            Ok(n) => return buf[..n].to_vec(),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("UDP request to {addr}: {e}"),
        }
    }
    panic!("no UDP reply from {addr} after 3 tries");
}

/// Polls `f` until it returns true; panics with `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    wait_for(what, timeout, || f().then_some(()).ok_or_else(String::new));
}

/// Polls `f` until it returns `Ok`, and returns that value; after `timeout` panics with
/// `what` and the last `Err`, which says what was seen instead (empty: nothing to say).
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(value) => return value,
            Err(seen) if Instant::now() >= deadline => {
                let seen = if seen.is_empty() {
                    seen
                } else {
                    format!("; {seen}")
                };
                panic!("timed out after {timeout:?} waiting for: {what}{seen}");
            }
            Err(_) => thread::sleep(POLL),
        }
    }
}

/// Writes an executable (0755) file `dir/name` holding `body`.
pub fn write_script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, body).expect("write script");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod script");
    path
}

/// Where a service bound to `port` on 127.0.0.1 is reached.
pub fn v4(port: u16) -> SocketAddr {
    (Ipv4Addr::LOCALHOST, port).into()
}

/// Where a service bound to `port` on ::1 is reached.
pub fn v6(port: u16) -> SocketAddr {
    (Ipv6Addr::LOCALHOST, port).into()
}

fn resolve(addr: impl ToSocketAddrs) -> SocketAddr {
    addr.to_socket_addrs()
        .expect("resolve address")
        .next()
        .expect("an address")
}

/// Runs `command` to completion with stdout and stderr captured; kills it and panics
/// after `timeout`. stdin is /dev/null.
pub fn run_command(command: &mut Command, timeout: Duration) -> Output {
    let mut stdout = tempfile::tempfile().expect("temp file for stdout");
    let mut stderr = tempfile::tempfile().expect("temp file for stderr");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(stdout.try_clone().unwrap())
        .stderr(stderr.try_clone().unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for command") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} did not finish within {timeout:?}");
        }
        thread::sleep(POLL);
    };
    let read = |file: &mut File| {
        use std::io::Seek;
        let mut out = Vec::new();
        file.seek(std::io::SeekFrom::Start(0)).unwrap();
        file.read_to_end(&mut out).unwrap();
        out
    };
    Output {
        status,
        stdout: read(&mut stdout),
        stderr: read(&mut stderr),
    }
}

/// Like `run_command`, and panics with the output unless the command succeeded.
pub fn run_ok(command: &mut Command, timeout: Duration) -> Output {
    let output = run_command(command, timeout);
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

// ---- Helpers for access control, limits, sensors and resource tests (issue 3) ----

/// A TCP stream to `addr` from the local address `from` (port chosen by the kernel), so a
/// test can be a different peer (127.0.0.2, ::1); retries while refused, for up to 10 s.
pub fn tcp_connect_from(from: std::net::IpAddr, addr: impl ToSocketAddrs) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let addr = resolve(addr);
    connect_retrying(&format!("connect from {from} to {addr}"), || {
        let socket =
            Socket::new(Domain::for_address(addr), Type::STREAM, None).expect("client socket");
        socket
            .bind(&SocketAddr::new(from, 0).into())
            .unwrap_or_else(|e| panic!("bind client socket to {from}: {e}"));
        socket.connect_timeout(&addr.into(), IO_TIMEOUT)?;
        Ok(socket.into())
    })
}

/// Like `tcp_request`, from the local address `from`: connects, writes `input`, shuts down
/// the write side and reads to EOF.
pub fn tcp_request_from(from: std::net::IpAddr, addr: impl ToSocketAddrs, input: &[u8]) -> Vec<u8> {
    exchange(tcp_connect_from(from, addr), input)
}

/// A UDP socket bound to `from` (port chosen by the kernel), 5 s read timeout.
pub fn udp_socket_from(from: std::net::IpAddr) -> UdpSocket {
    let socket = UdpSocket::bind(SocketAddr::new(from, 0))
        .unwrap_or_else(|e| panic!("bind UDP client to {from}: {e}"));
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    socket
}

/// How many lines of `log` contain `needle`.
pub fn count_lines(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

/// The CPU time (user + system) process `pid` has used so far, from /proc/PID/stat.
pub fn cpu_time(pid: i32) -> Duration {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/stat: {e}"));
    // The command name (field 2) may hold spaces: count fields after its closing paren.
    let after = &stat[stat.rfind(')').expect("comm in stat") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// A TOML basic string holding `s`.
pub fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML array of basic strings.
pub fn toml_strings(items: &[&str]) -> String {
    let items: Vec<String> = items.iter().map(|s| toml_string(s)).collect();
    format!("[{}]", items.join(", "))
}

/// A free port (see `probe_free_port`) never handed out before in this test process, so
/// parallel tests of one binary do not race for the same port before either binds it.
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut guard = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let handed_out = guard.get_or_insert_with(HashSet::new);
    loop {
        let port = probe_free_port();
        if handed_out.insert(port) {
            return port;
        }
    }
}

/// A test address, parsed.
pub fn ip(s: &str) -> IpAddr {
    s.parse()
        .unwrap_or_else(|e| panic!("bad test address {s}: {e}"))
}

/// Whether `program` is on PATH, where the tests run it from.
pub fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(program).is_file()))
}

/// The fields of `user`'s line in /etc/passwd (name, password, uid, gid, gecos, home, shell).
pub fn passwd_entry(user: &str) -> Vec<String> {
    let passwd = fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    passwd
        .lines()
        .map(|l| l.split(':').map(str::to_owned).collect::<Vec<_>>())
        .find(|fields| fields[0] == user)
        .unwrap_or_else(|| panic!("no {user} in /etc/passwd"))
}

/// Whether this process may run a program in a network namespace of its own with its
/// loopback up (root, unshare, ip).
pub fn can_make_network_namespace() -> bool {
    run_command(
        Command::new("unshare").args(["--net", "--", "ip", "link", "set", "lo", "up"]),
        Duration::from_secs(10),
    )
    .status
    .success()
}

/// Runs `f` on a thread that has joined the network namespace of process `pid`: its
/// sockets, and the processes it starts, live there.
pub fn in_network_namespace_of<T: Send>(pid: i32, f: impl FnOnce() -> T + Send) -> T {
    let namespace = File::open(format!("/proc/{pid}/ns/net"))
        .unwrap_or_else(|e| panic!("open the network namespace of {pid}: {e}"));
    thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns only changes this thread's namespace; the fd is valid and open.
            let joined = unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(joined, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("thread in the daemon's network namespace")
    })
}
