//! The daemon under resource exhaustion, run against the binary: out of file descriptors
//! (accept fails with EMFILE), unable to start a server (RLIMIT_NPROC), and a server dying
//! of a signal. Each time it logs once, does not spin, and serves again afterwards.
use crate::common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    Launch, Oxinetd, count_lines, cpu_time, free_port, have, ip, read_to_eof, tcp_connect_from,
    tcp_request_from, tempdir, toml_strings, v4,
};

/// How much CPU the daemon may use while an exhaustion episode lasts `EPISODE`: a busy loop
/// would use all of it.
const CPU_BUDGET: Duration = Duration::from_millis(500);
const EPISODE: Duration = Duration::from_secs(1);

/// Runs `during` repeatedly for `EPISODE` and returns the daemon's CPU time over it.
fn cpu_over_episode(daemon: &Oxinetd, mut during: impl FnMut()) -> Duration {
    let before = cpu_time(daemon.pid());
    let start = Instant::now();
    while start.elapsed() < EPISODE {
        during();
        std::thread::sleep(Duration::from_millis(20));
    }
    cpu_time(daemon.pid()) - before
}

/// Reads exactly `n` bytes.
fn read_n(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    stream.read_exact(&mut buf).expect("read echo");
    buf
}

/// Lines where the daemon says accepting is paused (not START/EXIT/FAIL lines).
fn accept_warnings(log: &str) -> usize {
    log.lines()
        .filter(|l| l.to_lowercase().contains("accept"))
        .filter(|l| !l.contains("START:") && !l.contains("EXIT:") && !l.contains("FAIL:"))
        .count()
}

#[test]
fn out_of_fds_pauses_accept_logs_once_does_not_spin_and_recovers() {
    if !have("prlimit") {
        common::skip("prlimit (util-linux) is not installed");
        return;
    }
    const NOFILE: usize = 32;
    let port = free_port();
    // The internal echo keeps every connection in the daemon: each one holds an fd there.
    let config = format!(
        "[service.echo]\ntype = \"INTERNAL\"\nsocket_type = \"stream\"\nport = {port}\n\
         bind = \"127.0.0.1\"\nbacklog = 128\n"
    );
    let nofile = format!("--nofile={NOFILE}:{NOFILE}");
    let daemon = Oxinetd::start_with(
        &config,
        Launch {
            wrapper: vec!["prlimit", &nofile, "--"],
            ..Launch::default()
        },
    );
    let open_fds = fs::read_dir(format!("/proc/{}/fd", daemon.pid()))
        .expect("list the daemon's fds")
        .count();
    assert!(open_fds < NOFILE, "the daemon starts with {open_fds} fds");

    // More connections than the daemon has fds left: the kernel queues the rest.
    let mut held: Vec<TcpStream> = (0..NOFILE + 8)
        .map(|_| tcp_connect_from(ip("127.0.0.1"), v4(port)))
        .collect();
    common::wait_until("a warning about accept", Duration::from_secs(10), || {
        accept_warnings(&daemon.log()) >= 1
    });
    // The accepted ones are served.
    held[0].write_all(b"first\n").unwrap();
    assert_eq!(read_n(&mut held[0], 6), b"first\n");
    let mut late = held.pop().expect("the last connection");
    late.write_all(b"late\n").unwrap();

    let used = cpu_over_episode(&daemon, || {
        assert_eq!(
            accept_warnings(&daemon.log()),
            1,
            "one warning per episode; log:\n{}",
            daemon.log()
        );
    });
    assert!(
        used < CPU_BUDGET,
        "the daemon used {used:?} of CPU in {EPISODE:?} while out of fds"
    );

    // Freed fds let the queued connections in, the last one included.
    drop(held);
    assert_eq!(read_n(&mut late, 5), b"late\n");
    let fresh = tcp_request_from(ip("127.0.0.1"), v4(port), b"fresh\n");
    assert_eq!(fresh, b"fresh\n");
    drop(late);

    // A second episode is a new one: warned again.
    let held: Vec<TcpStream> = (0..NOFILE + 8)
        .map(|_| tcp_connect_from(ip("127.0.0.1"), v4(port)))
        .collect();
    common::wait_until(
        "a second warning about accept",
        Duration::from_secs(10),
        || accept_warnings(&daemon.log()) >= 2,
    );
    drop(held);
    let fresh = tcp_request_from(ip("127.0.0.1"), v4(port), b"again\n");
    assert_eq!(fresh, b"again\n");
}

/// A process running as `nobody` for as long as this lives (then killed and reaped).
struct NobodyProcess(Child);

impl NobodyProcess {
    fn start() -> NobodyProcess {
        let nobody = nix::unistd::User::from_name("nobody")
            .expect("look up nobody")
            .expect("a nobody user");
        let child = Command::new("sleep")
            .arg("60")
            .uid(nobody.uid.as_raw())
            .gid(nobody.gid.as_raw())
            .stdin(Stdio::null())
            .spawn()
            .expect("start sleep as nobody");
        NobodyProcess(child)
    }
}

impl Drop for NobodyProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn spawn_failure_is_logged_and_the_daemon_serves_on_without_spinning() {
    if !have("prlimit") {
        common::skip("prlimit (util-linux) is not installed");
        return;
    }
    let (limited, rooted, echo) = (free_port(), free_port(), free_port());
    // RLIMIT_NPROC = 0: root may still fork, and so may the daemon; a child that becomes
    // `nobody` cannot execve (EAGAIN) when `nobody` already has a process (the kernel
    // counts before the setuid): this test makes sure it has one.
    let _nobody = NobodyProcess::start();
    let config = format!(
        "[service.limited]\nsocket_type = \"stream\"\nwait = false\nuser = \"nobody\"\n\
         server = \"/bin/sh\"\nserver_args = {hold}\nport = {limited}\nbind = \"127.0.0.1\"\n\n\
         [service.rooted]\nsocket_type = \"stream\"\nwait = false\nuser = \"root\"\n\
         server = \"/bin/sh\"\nserver_args = {hold}\nport = {rooted}\nbind = \"127.0.0.1\"\n\n\
         [service.echo]\ntype = \"INTERNAL\"\nsocket_type = \"stream\"\nport = {echo}\n\
         bind = \"127.0.0.1\"\n",
        hold = toml_strings(&["-c", "echo served; read line"])
    );
    let daemon = Oxinetd::start_with(
        &config,
        Launch {
            wrapper: vec!["prlimit", "--nproc=0:0", "--"],
            ..Launch::default()
        },
    );
    let failed = |log: &str| {
        count_lines(log, "FAIL: limited fork") + count_lines(log, "FAIL: limited exec failed")
    };

    let out = tcp_request_from(ip("127.0.0.1"), v4(limited), b"");
    assert_eq!(String::from_utf8_lossy(&out), "", "a nobody server ran");
    common::wait_until(
        "FAIL: limited fork / exec failed",
        Duration::from_secs(10),
        || failed(&daemon.log()) >= 1,
    );

    // Attempts keep coming during the episode; each is closed, none spins the daemon.
    let used = cpu_over_episode(&daemon, || {
        let out = tcp_request_from(ip("127.0.0.1"), v4(limited), b"");
        assert_eq!(String::from_utf8_lossy(&out), "", "a nobody server ran");
    });
    assert!(
        used < CPU_BUDGET,
        "the daemon used {used:?} of CPU in {EPISODE:?} of failing spawns"
    );

    // Other services are served normally.
    assert_eq!(
        tcp_request_from(ip("127.0.0.1"), v4(echo), b"ping\n"),
        b"ping\n"
    );
    assert_eq!(
        tcp_request_from(ip("127.0.0.1"), v4(rooted), b""),
        b"served\n"
    );
    let log = daemon.log();
    assert!(!log.contains("EXIT: limited status=0"), "log:\n{log}");
}

#[test]
fn server_killed_by_a_signal_is_logged_and_the_next_connection_served() {
    let dir = tempdir();
    let flag = dir.path().join("crashed");
    let script = format!(
        "if [ -e {f} ]; then echo ok; else touch {f}; kill -SEGV $$; fi",
        f = flag.display()
    );
    let port = free_port();
    let config = format!(
        "[service.svc]\nsocket_type = \"stream\"\nwait = false\nuser = \"root\"\n\
         server = \"/bin/sh\"\nserver_args = {}\nport = {port}\nbind = \"127.0.0.1\"\n",
        toml_strings(&["-c", &script])
    );
    let daemon = Oxinetd::start_with(
        &config,
        Launch {
            dir: Some(dir),
            ..Launch::default()
        },
    );
    let mut crashed = tcp_connect_from(ip("127.0.0.1"), v4(port));
    assert_eq!(read_to_eof(&mut crashed), b"", "the crashing server wrote");
    let log = daemon.wait_for_log("EXIT: svc signal=11");
    assert!(
        log.lines().any(|l| l.contains("EXIT: svc signal=11 pid=")),
        "EXIT line without pid; log:\n{log}"
    );
    assert_eq!(tcp_request_from(ip("127.0.0.1"), v4(port), b""), b"ok\n");
    daemon.wait_for_log("EXIT: svc status=0");
}

/// A cgroup (v1 `pids` controller) of its own, removed on drop: a way to make `fork` fail
/// for the daemon even as root.
struct PidsCgroup(std::path::PathBuf);

impl PidsCgroup {
    /// `None` where the pids controller is not mounted at /sys/fs/cgroup/pids or not ours.
    fn create() -> Option<PidsCgroup> {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::path::PathBuf::from(format!(
            "/sys/fs/cgroup/pids/oxinetd-test-{}-{n}",
            std::process::id()
        ));
        fs::create_dir(&path).ok()?;
        let cgroup = PidsCgroup(path);
        cgroup.0.join("pids.max").exists().then_some(cgroup)
    }

    fn procs(&self) -> String {
        self.0.join("cgroup.procs").display().to_string()
    }

    fn set_max(&self, max: &str) {
        fs::write(self.0.join("pids.max"), max).expect("write pids.max");
    }
}

impl Drop for PidsCgroup {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
    }
}

/// A connection to `port` is closed unserved: no process could be started for it.
#[track_caller]
fn assert_unserved(port: u16) {
    let out = tcp_request_from(ip("127.0.0.1"), v4(port), b"");
    assert_eq!(
        String::from_utf8_lossy(&out),
        "",
        "served without a process"
    );
}

#[test]
fn fork_failure_is_logged_once_per_episode_and_the_daemon_recovers() {
    let Some(cgroup) = PidsCgroup::create() else {
        common::skip("no cgroup v1 pids controller to limit the daemon's processes");
        return;
    };
    let (svc, echo) = (free_port(), free_port());
    let config = format!(
        "[service.svc]\nsocket_type = \"stream\"\nwait = false\nuser = \"root\"\n\
         server = \"/bin/sh\"\nserver_args = {}\nport = {svc}\nbind = \"127.0.0.1\"\n\n\
         [service.echo]\ntype = \"INTERNAL\"\nsocket_type = \"stream\"\nport = {echo}\n\
         bind = \"127.0.0.1\"\n",
        toml_strings(&["-c", "echo served"])
    );
    let join = format!("echo $$ > {} && exec \"$0\" \"$@\"", cgroup.procs());
    let daemon = Oxinetd::start_with(
        &config,
        Launch {
            wrapper: vec!["/bin/sh", "-c", &join],
            ..Launch::default()
        },
    );
    let served = || tcp_request_from(ip("127.0.0.1"), v4(svc), b"") == b"served\n";
    assert!(served(), "served before the limit");
    let fork_fails = |log: &str| count_lines(log, "FAIL: svc fork from=127.0.0.1");

    // No room for one more process: every clone fails with EAGAIN.
    let tasks = fs::read_dir(format!("/proc/{}/task", daemon.pid()))
        .expect("list the daemon's threads")
        .count();
    cgroup.set_max(&tasks.to_string());
    assert_unserved(svc);
    common::wait_until("FAIL: svc fork", Duration::from_secs(10), || {
        fork_fails(&daemon.log()) >= 1
    });
    let used = cpu_over_episode(&daemon, || {
        assert_unserved(svc);
    });
    assert!(
        used < CPU_BUDGET,
        "the daemon used {used:?} of CPU in {EPISODE:?} of failing forks"
    );
    assert_eq!(
        tcp_request_from(ip("127.0.0.1"), v4(echo), b"ping\n"),
        b"ping\n",
        "the internal echo needs no process"
    );
    let log = daemon.log();
    assert_eq!(
        fork_fails(&log),
        1,
        "one FAIL line per episode; log:\n{log}"
    );

    // Room again: served again (after the back-off).
    cgroup.set_max("max");
    common::wait_until(
        "svc served after the limit went",
        Duration::from_secs(10),
        served,
    );

    // A new episode is logged again.
    cgroup.set_max(&tasks.to_string());
    assert_unserved(svc);
    common::wait_until("a second FAIL: svc fork", Duration::from_secs(10), || {
        fork_fails(&daemon.log()) >= 2
    });
    cgroup.set_max("max");
}
