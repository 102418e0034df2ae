//! What an exec'd server gets: argv, fds, environment, identity, signal state, session,
//! limits; exec failures and the `instances` limit. Each server reports from inside.
use crate::common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::net::TcpStream;

use common::{
    Launch, Oxinetd, Setup, have, passwd_entry, read_line, read_to_eof, sh, tcp_connect,
    tcp_request, tempdir, toml_strings, v4, v6,
};

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("server output is UTF-8")
}

/// One connection to the server, with no input; its whole output.
fn output(port: u16) -> String {
    text(tcp_request(v4(port), b""))
}

/// Prints its own argv, NUL-separated in /proc, one per line: argv[0] included.
const CMDLINE_SH: &str = "#!/bin/sh\ntr '\\0' '\\n' < /proc/$$/cmdline\n";

/// Prints each argument after $0 in brackets.
const ARGS_SH: &str = "#!/bin/sh\nfor a in \"$@\"; do printf '[%s]\\n' \"$a\"; done\n";

fn parse_env(output: &str) -> BTreeMap<String, String> {
    output
        .lines()
        .map(|line| {
            let (k, v) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("env line without '=': {line:?}"));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// Connects, and returns the server's `env` output and the client's local port.
fn env_over(mut stream: TcpStream) -> (BTreeMap<String, String>, u16) {
    let local_port = stream.local_addr().unwrap().port();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let out = text(read_to_eof(&mut stream));
    (parse_env(&out), local_port)
}

#[test]
fn server_args_string_is_split_on_whitespace() {
    let setup = Setup::new();
    let server = setup.script("args.sh", ARGS_SH);
    let (_daemon, port) = setup.start_service(&format!(
        "user = \"root\"\nserver = {}\nserver_args = \"  alpha   beta\\tgamma  \"\n",
        common::toml_string(&server)
    ));
    assert_eq!(output(port), "[alpha]\n[beta]\n[gamma]\n");
}

#[test]
fn server_args_array_keeps_spaces_inside_an_argument() {
    let setup = Setup::new();
    let server = setup.script("args.sh", ARGS_SH);
    let (_daemon, port) = setup.start_service(&format!(
        "user = \"root\"\nserver = {}\nserver_args = {}\n",
        common::toml_string(&server),
        toml_strings(&["one two", " three ", ""])
    ));
    assert_eq!(output(port), "[one two]\n[ three ]\n[]\n");
}

#[test]
fn argv0_defaults_to_the_basename_of_server() {
    let setup = Setup::new();
    let cmdline = setup.script("cmdline.sh", CMDLINE_SH);
    let (_daemon, port) = setup.start_service(&format!(
        "user = \"root\"\nserver = \"/bin/sh\"\nserver_args = {}\n",
        toml_strings(&[&cmdline, "x"])
    ));
    assert_eq!(output(port), format!("sh\n{cmdline}\nx\n"));
}

#[test]
fn nameinargs_takes_argv0_from_server_args() {
    let setup = Setup::new();
    let cmdline = setup.script("cmdline.sh", CMDLINE_SH);
    let (_daemon, port) = setup.start_service(&format!(
        "user = \"root\"\nflags = [\"NAMEINARGS\"]\nserver = \"/bin/sh\"\nserver_args = {}\n",
        toml_strings(&["fancy-name", &cmdline, "x y"])
    ));
    assert_eq!(output(port), format!("fancy-name\n{cmdline}\nx y\n"));
}

#[test]
fn nameinargs_with_a_string_of_server_args() {
    let setup = Setup::new();
    let cmdline = setup.script("cmdline.sh", CMDLINE_SH);
    let (_daemon, port) = setup.start_service(&format!(
        "user = \"root\"\nflags = [\"NAMEINARGS\"]\nserver = \"/bin/sh\"\nserver_args = {}\n",
        common::toml_string(&format!("fancy-name {cmdline} extra"))
    ));
    assert_eq!(output(port), format!("fancy-name\n{cmdline}\nextra\n"));
}

#[test]
fn server_has_only_fds_0_1_2_and_they_are_the_connection() {
    // The daemon is started holding two stray fds without close-on-exec (7 and 8): they
    // must not reach the server either, nor any fd of the daemon's own (listeners, epoll,
    // signalfd, log). `sh -c` itself opens no fd (checked by hand).
    let setup = Setup::new();
    let launch = Launch {
        wrapper: vec!["/bin/sh", "-c", "exec 7</dev/null 8>&2; exec \"$0\" \"$@\""],
        ..Launch::default()
    };
    let (_daemon, port) = setup.start_service_with(
        &format!(
            "user = \"root\"\n{}",
            sh("ls /proc/$$/fd; readlink /proc/$$/fd/0 /proc/$$/fd/1 /proc/$$/fd/2")
        ),
        launch,
    );
    let out = output(port);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 6, "server output: {out:?}");
    assert_eq!(lines[..3], ["0", "1", "2"], "server's open fds: {out:?}");
    assert!(lines[3].starts_with("socket:["), "fd 0 is {}", lines[3]);
    assert_eq!(lines[3], lines[4], "fd 1 is not the connection: {out:?}");
    assert_eq!(lines[3], lines[5], "fd 2 is not the connection: {out:?}");
}

#[test]
fn server_stderr_goes_to_the_connection() {
    let (_daemon, port) = Setup::new().start_service(&format!(
        "user = \"root\"\n{}",
        sh("echo to-stdout; echo to-stderr >&2; echo again")
    ));
    assert_eq!(output(port), "to-stdout\nto-stderr\nagain\n");
}

#[test]
fn server_stdin_is_the_connection() {
    let (_daemon, port) = Setup::new().start_service(&format!(
        "user = \"root\"\n{}",
        sh("read line; echo \"got $line\"")
    ));
    assert_eq!(text(tcp_request(v4(port), b"hello\n")), "got hello\n");
}

#[test]
fn environment_has_connection_variables_env_entries_and_the_daemons_own() {
    let setup = Setup::new();
    let launch = Launch {
        env: vec![("OXI_SECRET", "1")],
        ..Launch::default()
    };
    let (_daemon, port) = setup.start_service_with(
        "user = \"root\"\nserver = \"/usr/bin/env\"\nenv = [\"FOO=bar\", \"SPACED=a b\"]\n",
        launch,
    );
    let (env, local_port) = env_over(tcp_connect(v4(port)));
    let get = |k: &str| env.get(k).map(String::as_str);
    assert_eq!(get("REMOTE_ADDR"), Some("127.0.0.1"), "{env:#?}");
    assert_eq!(
        get("REMOTE_PORT"),
        Some(&*local_port.to_string()),
        "{env:#?}"
    );
    assert_eq!(get("PROTO"), Some("TCP"), "{env:#?}");
    assert_eq!(get("TCPREMOTEIP"), Some("127.0.0.1"), "{env:#?}");
    assert_eq!(
        get("TCPREMOTEPORT"),
        Some(&*local_port.to_string()),
        "{env:#?}"
    );
    assert_eq!(get("TCPLOCALIP"), Some("127.0.0.1"), "{env:#?}");
    assert_eq!(get("TCPLOCALPORT"), Some(&*port.to_string()), "{env:#?}");
    assert!(
        get("REMOTE_HOST").is_some_and(|h| !h.is_empty()),
        "REMOTE_HOST missing: {env:#?}"
    );
    assert_eq!(get("FOO"), Some("bar"), "{env:#?}");
    assert_eq!(get("SPACED"), Some("a b"), "{env:#?}");
    // Without passenv the daemon's own environment is passed on.
    assert_eq!(get("OXI_SECRET"), Some("1"), "{env:#?}");
}

#[test]
fn environment_over_ipv6_names_ipv6_addresses() {
    let (_daemon, port) =
        Setup::new().start_service("user = \"root\"\nserver = \"/usr/bin/env\"\n");
    let (env, local_port) = env_over(tcp_connect(v6(port)));
    let get = |k: &str| env.get(k).map(String::as_str);
    assert_eq!(get("REMOTE_ADDR"), Some("::1"), "{env:#?}");
    assert_eq!(
        get("REMOTE_PORT"),
        Some(&*local_port.to_string()),
        "{env:#?}"
    );
    assert_eq!(get("TCPREMOTEIP"), Some("::1"), "{env:#?}");
    assert_eq!(get("TCPLOCALIP"), Some("::1"), "{env:#?}");
    assert_eq!(get("TCPLOCALPORT"), Some(&*port.to_string()), "{env:#?}");
}

#[test]
fn passenv_passes_only_the_named_variables() {
    let setup = Setup::new();
    let path = "/usr/bin:/bin:/oxinetd-test-path";
    let launch = Launch {
        env: vec![("OXI_SECRET", "1"), ("PATH", path)],
        ..Launch::default()
    };
    let (_daemon, port) = setup.start_service_with(
        "user = \"nobody\"\nserver = \"/usr/bin/env\"\npassenv = [\"PATH\"]\nenv = [\"FOO=bar\"]\n",
        launch,
    );
    let (env, _) = env_over(tcp_connect(v4(port)));
    let names: Vec<&str> = env.keys().map(String::as_str).collect();
    let mut want = vec![
        "FOO",
        "HOME",
        "LOGNAME",
        "PATH",
        "PROTO",
        "REMOTE_ADDR",
        "REMOTE_HOST",
        "REMOTE_PORT",
        "SHELL",
        "TCPLOCALIP",
        "TCPLOCALPORT",
        "TCPREMOTEIP",
        "TCPREMOTEPORT",
        "USER",
    ];
    want.sort_unstable();
    assert_eq!(names, want, "server environment: {env:#?}");
    assert_eq!(env["PATH"], path);
    assert_eq!(env["FOO"], "bar");
}

/// Regression: a server running as oxinetd's own user (root here) got root's passwd
/// `HOME`, `USER`, `LOGNAME` and `SHELL` in place of what oxinetd inherited.
#[test]
fn no_login_variables_when_the_user_does_not_change() {
    let setup = Setup::new();
    let launch = Launch {
        env: vec![("HOME", "/oxinetd-test-home"), ("USER", "someone")],
        ..Launch::default()
    };
    let (_daemon, port) =
        setup.start_service_with("user = \"root\"\nserver = \"/usr/bin/env\"\n", launch);
    let (env, _) = env_over(tcp_connect(v4(port)));
    let get = |k: &str| env.get(k).map(String::as_str);
    assert_eq!(get("HOME"), Some("/oxinetd-test-home"), "{env:#?}");
    assert_eq!(get("USER"), Some("someone"), "{env:#?}");
}

/// Regression: `passenv = []` still gave the server the four login variables.
#[test]
fn empty_passenv_passes_nothing_when_the_user_does_not_change() {
    let (_daemon, port) = Setup::new().start_service(
        "user = \"root\"\nserver = \"/usr/bin/env\"\npassenv = []\nenv = [\"FOO=bar\"]\n",
    );
    let (env, _) = env_over(tcp_connect(v4(port)));
    let names: Vec<&str> = env.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "FOO",
            "PROTO",
            "REMOTE_ADDR",
            "REMOTE_HOST",
            "REMOTE_PORT",
            "TCPLOCALIP",
            "TCPLOCALPORT",
            "TCPREMOTEIP",
            "TCPREMOTEPORT",
        ],
        "server environment: {env:#?}"
    );
}

#[test]
fn user_nobody_drops_every_group_of_the_daemon() {
    if !have("setpriv") {
        common::skip("setpriv (util-linux) is not installed");
        return;
    }
    let setup = Setup::new();
    let launch = Launch {
        wrapper: vec!["setpriv", "--groups", "4,24", "--"],
        ..Launch::default()
    };
    let (daemon, port) = setup.start_service_with(
        &format!(
            "user = \"nobody\"\n{}",
            sh("id -u; id -g; id -G; echo \"$HOME|$USER|$LOGNAME|$SHELL\"")
        ),
        launch,
    );
    let status = fs::read_to_string(format!("/proc/{}/status", daemon.pid())).unwrap();
    let groups = status
        .lines()
        .find(|l| l.starts_with("Groups:"))
        .expect("Groups line");
    assert_eq!(
        groups.split_whitespace().collect::<Vec<_>>(),
        ["Groups:", "4", "24"],
        "precondition: the daemon runs with extra groups"
    );

    let nobody = passwd_entry("nobody");
    let (uid, gid, home, shell) = (&nobody[2], &nobody[3], &nobody[5], &nobody[6]);
    assert_eq!(
        output(port),
        format!("{uid}\n{gid}\n{gid}\n{home}|nobody|nobody|{shell}\n")
    );
}

#[test]
fn group_sets_the_primary_group() {
    let (_daemon, port) = Setup::new().start_service(&format!(
        "user = \"nobody\"\ngroup = \"daemon\"\n{}",
        sh("id -u; id -g; id -G")
    ));
    let uid = &passwd_entry("nobody")[2];
    assert_eq!(output(port), format!("{uid}\n1\n1\n"));
}

#[test]
fn server_starts_with_default_signal_dispositions_and_an_empty_mask() {
    // grep reads its own status: it neither blocks nor ignores signals itself. The daemon
    // is spawned through glibc's posix_spawn, which leaves glibc's internal signals 32 and
    // 33 ignored in it (glibc's sigaction cannot reset those): the server gets them
    // default all the same.
    let (_daemon, port) = Setup::new().start_service(&format!(
        "user = \"root\"\nserver = \"/bin/grep\"\nserver_args = {}\n",
        toml_strings(&["-E", "^Sig(Blk|Ign):", "/proc/self/status"])
    ));
    assert_eq!(
        output(port),
        "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n"
    );
}

#[test]
fn server_gets_default_dispositions_for_signals_the_daemon_inherited_ignored() {
    // As when started from a shell script in the background or under nohup. (Whether the
    // daemon resets them for itself at start or only in the child is its own business.)
    let launch = Launch {
        wrapper: vec![
            "/bin/sh",
            "-c",
            "trap '' QUIT USR1 USR2; exec \"$0\" \"$@\"",
        ],
        ..Launch::default()
    };
    let (_daemon, port) = Setup::new().start_service_with(
        &format!(
            "user = \"root\"\nserver = \"/bin/grep\"\nserver_args = {}\n",
            toml_strings(&["-E", "^SigIgn:", "/proc/self/status"])
        ),
        launch,
    );
    assert_eq!(output(port), "SigIgn:\t0000000000000000\n");
}

/// Prints `$$ pid pgrp session` from the shell's own /proc/PID/stat.
const IDS: &str = "#!/bin/sh\nread pid comm state ppid pgrp session rest < /proc/$$/stat\necho \"$$ $pid $pgrp $session\"\n";

/// The server's pid, process group and session, read by the server itself.
fn server_ids(setup: Setup, extra: &str) -> (i32, i32, i32, Oxinetd) {
    let server = setup.script("ids.sh", IDS);
    let (daemon, port) = setup.start_service(&format!(
        "user = \"root\"\nserver = {}\n{extra}",
        common::toml_string(&server)
    ));
    let out = output(port);
    let ids: Vec<i32> = out
        .split_whitespace()
        .map(|id| id.parse().expect("numeric id"))
        .collect();
    assert_eq!(ids.len(), 4, "server output {out:?}");
    assert_eq!(ids[0], ids[1], "/proc/$$/stat is not the shell's: {out:?}");
    assert_ne!(ids[0], daemon.pid());
    (ids[0], ids[2], ids[3], daemon)
}

/// Issue 13: by default a server leads a process group of its own (shutdown signals the
/// group) but stays in the daemon's session: a new session per server is a new
/// scheduler autogroup, and hundreds of them starve the daemon.
#[test]
fn server_leads_its_own_process_group_in_the_daemons_session() {
    let (pid, group, session, daemon) = server_ids(Setup::new(), "");
    assert_eq!(group, pid, "server is not its process group's leader");
    let daemon_session = nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(daemon.pid())))
        .expect("daemon's session")
        .as_raw();
    assert_eq!(
        session, daemon_session,
        "server is not in the daemon's session"
    );
    assert_ne!(session, pid, "server leads a session of its own");
}

/// `setsid = true`: the server leads a session of its own, as under xinetd.
#[test]
fn setsid_gives_the_server_its_own_session() {
    let (pid, group, session, _daemon) = server_ids(Setup::new(), "setsid = true\n");
    assert_eq!(group, pid, "server is not its process group's leader");
    assert_eq!(session, pid, "server is not its session's leader");
}

#[test]
fn umask_is_applied() {
    let (_daemon, port) = Setup::new().start_service(&format!(
        "user = \"root\"\numask = \"027\"\n{}",
        sh("umask")
    ));
    assert_eq!(output(port), "0027\n");
}

#[test]
fn rlimit_files_is_applied() {
    let (_daemon, port) = Setup::new().start_service(&format!(
        "user = \"root\"\nrlimit_files = 64\n{}",
        sh("ulimit -n")
    ));
    assert_eq!(output(port), "64\n");
}

#[test]
fn nice_is_applied() {
    // SAFETY: getpriority only reads the calling process's priority.
    let own = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    // xinetd's `nice` adds to the daemon's own niceness, which it has from this test.
    let (_daemon, port) =
        Setup::new().start_service(&format!("user = \"root\"\nnice = 5\n{}", sh("nice")));
    assert_eq!(output(port), format!("{}\n", (own + 5).clamp(-20, 19)));
}

#[test]
fn exec_failure_closes_the_connection_and_is_logged() {
    let setup = Setup::new();
    // Executable, so the config is valid, but execve fails with ENOENT on the interpreter.
    let server = setup.script("broken.sh", "#!/nonexistent/interp\necho never\n");
    let (daemon, port) = setup.start_service(&format!(
        "user = \"root\"\nserver = {}\n",
        common::toml_string(&server)
    ));
    assert_eq!(output(port), "", "client got data from a failed exec");
    let log = daemon.wait_for_log("exec failed");
    let line = log
        .lines()
        .find(|l| l.contains("exec failed"))
        .expect("exec failed line");
    assert!(line.contains("FAIL: svc exec failed"), "log line: {line}");
    assert!(
        line.contains("No such file or directory") || line.contains("ENOENT"),
        "log line lacks the errno text: {line}"
    );
    // The daemon goes on serving.
    assert_eq!(output(port), "");
    daemon.wait_for_log_count("exec failed", 2);
}

#[test]
fn instances_limit_closes_extra_connections_until_one_ends() {
    let (daemon, port) = Setup::new().start_service(&format!(
        "user = \"root\"\ninstances = 2\n{}",
        sh("echo hi; read line; echo \"bye $line\"")
    ));
    let mut first = tcp_connect(v4(port));
    let mut second = tcp_connect(v4(port));
    assert_eq!(read_line(&mut first), "hi\n");
    assert_eq!(read_line(&mut second), "hi\n");

    let mut third = tcp_connect(v4(port));
    assert_eq!(
        text(read_to_eof(&mut third)),
        "",
        "third connection got data"
    );
    daemon.wait_for_log("FAIL: svc service_limit");

    // The held connections are intact.
    second.write_all(b"two\n").unwrap();
    assert_eq!(read_line(&mut second), "bye two\n");
    daemon.wait_for_log_count("EXIT: svc", 1);

    // With one slot free again, a new connection is served.
    let mut fourth = tcp_connect(v4(port));
    assert_eq!(read_line(&mut fourth), "hi\n");
    // And the limit still holds with two running again.
    let mut fifth = tcp_connect(v4(port));
    assert_eq!(
        text(read_to_eof(&mut fifth)),
        "",
        "fifth connection got data"
    );
    daemon.wait_for_log_count("FAIL: svc service_limit", 2);

    drop(first);
    daemon.wait_for_log_count("EXIT: svc", 2);
}

#[test]
fn privileges_are_dropped_setgroups_then_setgid_then_setuid() {
    if !have("strace") {
        common::skip("strace is not installed");
        return;
    }
    let setup = Setup::new();
    // Outside the daemon's dir, which `stop` removes.
    let trace_dir = tempdir();
    let trace = trace_dir.path().join("strace.out");
    let trace_arg = trace.to_str().unwrap().to_owned();
    let launch = Launch {
        wrapper: vec![
            "strace",
            "-f",
            "-o",
            &trace_arg,
            "-e",
            "trace=setgroups,setgid,setuid,setresgid,setresuid,setregid,setreuid",
        ],
        wrapper_forks: true,
        ..Launch::default()
    };
    let (daemon, port) =
        setup.start_service_with(&format!("user = \"nobody\"\n{}", sh("id -u")), launch);
    let uid = passwd_entry("nobody")[2].clone();
    assert_eq!(output(port), format!("{uid}\n"));
    daemon.wait_for_log("EXIT: svc");
    let status = daemon.stop();
    assert!(status.success(), "strace/oxinetd exited with {status}");

    let trace = fs::read_to_string(&trace).expect("read strace output");
    // Lines look like `1234  setgid(65534) = 0`.
    let calls: Vec<(&str, &str, &str)> = trace
        .lines()
        .filter_map(|line| {
            let (pid, rest) = line.split_once(char::is_whitespace)?;
            let rest = rest.trim_start();
            let (name, args) = rest.split_once('(')?;
            Some((pid, name, args))
        })
        .collect();
    let is_uid = |name: &str| matches!(name, "setuid" | "setresuid" | "setreuid");
    let is_gid = |name: &str| matches!(name, "setgid" | "setresgid" | "setregid");
    let child = calls
        .iter()
        .find(|(_, name, args)| is_uid(name) && args.contains(&*uid))
        .map(|(pid, _, _)| *pid)
        .unwrap_or_else(|| panic!("no process switched to uid {uid}; trace:\n{trace}"));
    let names: Vec<&str> = calls
        .iter()
        .filter(|(pid, _, _)| *pid == child)
        .map(|(_, name, _)| *name)
        .collect();
    let last_groups = names.iter().rposition(|n| *n == "setgroups");
    let first_gid = names.iter().position(|n| is_gid(n));
    let last_gid = names.iter().rposition(|n| is_gid(n));
    let first_uid = names.iter().position(|n| is_uid(n));
    let (Some(last_groups), Some(first_gid), Some(last_gid), Some(first_uid)) =
        (last_groups, first_gid, last_gid, first_uid)
    else {
        panic!("child {child} lacks setgroups/setgid/setuid: {names:?}\n{trace}");
    };
    assert!(
        last_groups < first_gid && last_gid < first_uid,
        "child {child} order is {names:?}, want setgroups, setgid, setuid"
    );
}

#[test]
fn dgram_wait_server_gets_the_socket_and_udp_variables() {
    let setup = Setup::new();
    let out_dir = setup.dir.path().to_str().unwrap().to_owned();
    // Takes one datagram off fd 0 (dd reads a whole datagram), then records it and the
    // environment under the datagram's name; `mv` makes each record appear complete.
    let server = setup.script(
        "udp.sh",
        &format!(
            "#!/bin/sh\n\
             dd bs=65536 count=1 of={out_dir}/payload.$$ 2>/dev/null\n\
             name=$(cat {out_dir}/payload.$$)\n\
             env > {out_dir}/env.$$\n\
             mv {out_dir}/env.$$ {out_dir}/env.$name\n"
        ),
    );
    let port = setup.port;
    let config = format!(
        "[service.udp]\nsocket_type = \"dgram\"\nwait = true\nport = {port}\n\
         user = \"root\"\nserver = {}\n",
        common::toml_string(&server)
    );
    let (daemon, _) = setup.start(&config);
    let client = common::udp_client_for(&v4(port));
    client.connect(v4(port)).unwrap();
    let client_port = client.local_addr().unwrap().port();

    for name in ["first", "second"] {
        client.send(name.as_bytes()).unwrap();
        let record = daemon.dir().join(format!("env.{name}"));
        common::wait_until(
            &format!("the server records datagram {name:?}"),
            common::IO_TIMEOUT,
            || record.exists(),
        );
        let env = parse_env(&fs::read_to_string(&record).unwrap());
        let get = |k: &str| env.get(k).map(String::as_str);
        assert_eq!(get("PROTO"), Some("UDP"), "{env:#?}");
        assert_eq!(get("REMOTE_ADDR"), Some("127.0.0.1"), "{env:#?}");
        assert_eq!(
            get("REMOTE_PORT"),
            Some(&*client_port.to_string()),
            "{env:#?}"
        );
        assert_eq!(get("UDPREMOTEIP"), Some("127.0.0.1"), "{env:#?}");
        assert_eq!(
            get("UDPREMOTEPORT"),
            Some(&*client_port.to_string()),
            "{env:#?}"
        );
        assert_eq!(get("UDPLOCALPORT"), Some(&*port.to_string()), "{env:#?}");
        // The server exits after one datagram; the next one starts a new server.
        daemon.wait_for_log_count("EXIT: udp", if name == "first" { 1 } else { 2 });
    }
    daemon.wait_for_log_count("START: udp", 2);
}

/// Blocks SIGUSR2 and SIGALRM, then execs the daemon: as when an init script or a
/// supervisor starts oxinetd with a mask of its own.
const BLOCKING_WRAPPER: &str = "import os, signal, sys\n\
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2, signal.SIGALRM})\n\
    os.execv(sys.argv[1], sys.argv[1:])\n";

/// Issue 12: servers inherited the mask oxinetd was started with, and its working
/// directory (the harness starts the daemon in its temp dir). xinetd's servers start
/// with no signal blocked and in `/`.
#[test]
fn server_starts_in_root_with_an_empty_mask_whatever_the_daemon_inherited() {
    if !have("python3") {
        return common::skip("python3 is not installed");
    }
    let launch = Launch {
        wrapper: vec!["python3", "-c", BLOCKING_WRAPPER],
        ..Launch::default()
    };
    let (daemon, port) = Setup::new().start_service_with(
        &common::sh_as_root(
            "grep -E '^SigBlk:' /proc/self/status; grep -E '^SigBlk:' /proc/$PPID/status; pwd",
        ),
        launch,
    );
    let out = output(port);
    let lines: Vec<&str> = out.lines().collect();
    // The second line is the daemon's own mask (the server's parent), proving the
    // wrapper did block them: SIGUSR2 (12) and SIGALRM (14) bits, with oxinetd's own.
    let daemon_mask = u64::from_str_radix(lines[1].trim_start_matches("SigBlk:\t"), 16)
        .unwrap_or_else(|_| panic!("no daemon mask in {out:?}"));
    assert_eq!(
        daemon_mask & (1 << 11 | 1 << 13),
        1 << 11 | 1 << 13,
        "{out:?}"
    );
    assert_eq!(lines[0], "SigBlk:\t0000000000000000", "{out:?}");
    assert_eq!(lines[2], "/", "{out:?}");
    assert_ne!(daemon.dir(), std::path::Path::new("/"));
}

/// `cwd` starts the server elsewhere; the directory is checked as the server's user.
#[test]
fn server_starts_in_its_cwd() {
    let setup = Setup::new();
    let place = setup.path("place");
    fs::create_dir(&place).expect("mkdir place");
    let (_daemon, port) = setup.start_service(&format!(
        "user = \"root\"\ncwd = {}\n{}",
        common::toml_string(&place),
        sh("pwd")
    ));
    assert_eq!(output(port), format!("{place}\n"));
}

/// `no_new_privs = true`: the server, and whatever it runs, can never gain privileges.
#[test]
fn no_new_privs_reaches_the_server() {
    let status = "grep -E '^NoNewPrivs:' /proc/self/status";
    let (_daemon, port) = Setup::new().start_service(&format!(
        "user = \"nobody\"\nno_new_privs = true\n{}",
        sh(status)
    ));
    assert_eq!(output(port), "NoNewPrivs:\t1\n");
    let (_daemon, port) = Setup::new().start_service(&format!("user = \"nobody\"\n{}", sh(status)));
    assert_eq!(output(port), "NoNewPrivs:\t0\n");
}
