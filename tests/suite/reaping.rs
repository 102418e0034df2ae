//! Reaping servers whose exit asks for nothing (no EXIT line, no limit counting them, no
//! socket to listen on again): the loop stops waking for their exits while such servers
//! run and reaps at the end of each turn, and at the latest 100 ms later. These tests
//! check that none is left a zombie, that exits wake the loop again afterwards, and that
//! the status never counts a server that already exited.

use crate::common;

use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

const DEADLINE: Duration = Duration::from_secs(10);

/// A service that logs nothing per connection and runs `script`: a quiet one.
fn quiet_service(setup: &Setup, script: &str) -> String {
    let server = setup.script("server", &format!("#!/bin/sh\n{script}"));
    setup.service(&format!(
        "server = \"{server}\"\nuser = \"{}\"\ninstances = \"UNLIMITED\"\n\
         log_on_success = []\nlog_on_failure = []\nbind = \"127.0.0.1\"\n",
        whoami()
    ))
}

fn whoami() -> String {
    let output = Command::new("id").arg("-un").output().expect("id");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// The state letter of `pid` in /proc (`Z` for a zombie), or `None` once it is reaped.
fn state(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

fn server_pid(path: &Path) -> i32 {
    wait_for("the server's pid file", DEADLINE, || {
        fs::read_to_string(path)
            .ok()
            .and_then(|text| text.strip_suffix('\n').map(str::to_string))
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| "no pid yet".to_string())
    })
}

/// Whether the daemon's signalfd reads SIGCHLD, from its `sigmask` in /proc's fdinfo.
fn daemon_wakes_on_exits(daemon: &Oxinetd) -> bool {
    let pid = daemon.pid();
    for entry in fs::read_dir(format!("/proc/{pid}/fd")).expect("the daemon's fds") {
        let entry = entry.expect("fd entry");
        let target = fs::read_link(entry.path()).unwrap_or_default();
        if target.to_string_lossy() != "anon_inode:[signalfd]" {
            continue;
        }
        let fd = entry.file_name();
        let info = fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.to_string_lossy()))
            .expect("fdinfo");
        let mask = info
            .lines()
            .find_map(|line| line.strip_prefix("sigmask:"))
            .expect("a sigmask line");
        let mask = u64::from_str_radix(mask.trim(), 16).expect("a hex mask");
        return mask & (1 << (libc::SIGCHLD - 1)) != 0;
    }
    panic!("the daemon has no signalfd");
}

#[test]
fn a_quiet_server_is_reaped_with_no_connection_after_it() {
    let setup = Setup::new();
    let pidfile = setup.path("pid");
    let config = quiet_service(&setup, &format!("echo $$ > {pidfile}\necho hello\n"));
    let (daemon, port) = setup.start(&config);

    assert_eq!(tcp_read_some(("127.0.0.1", port), 6), b"hello\n");
    let pid = server_pid(Path::new(&pidfile));
    wait_until("the quiet server is reaped", DEADLINE, || {
        state(pid).is_none()
    });
    // A turn's end may have reaped it before the 100 ms were over.
    wait_until("exits wake the loop again", DEADLINE, || {
        daemon_wakes_on_exits(&daemon)
    });
    daemon.stop();
}

#[test]
fn exits_wake_the_loop_again_while_a_quiet_server_runs_on() {
    let setup = Setup::new();
    let pidfile = setup.path("pid");
    // Runs until the client sends a line.
    let config = quiet_service(&setup, &format!("echo $$ > {pidfile}\nread line\n"));
    let (daemon, port) = setup.start(&config);

    let mut client = tcp_connect(("127.0.0.1", port));
    let pid = server_pid(Path::new(&pidfile));
    // Past the 100 ms in which the loop reaps only at the end of its turns.
    wait_until("exits wake the loop again", DEADLINE, || {
        daemon_wakes_on_exits(&daemon)
    });
    assert!(
        state(pid).is_some_and(|state| state != 'Z'),
        "still running"
    );
    // No other connection comes: only its own exit can wake the loop to reap it.
    client.write_all(b"bye\n").expect("write");
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).expect("read to EOF");
    wait_until("the server is reaped at its exit", DEADLINE, || {
        state(pid).is_none()
    });
    daemon.stop();
}

/// SIGUSR1's table is written in the turn that reads the signal, before that turn's
/// reaping: the daemon reaps first. (`oxinetd status` is answered a turn after its
/// connection was accepted, and every such turn ends by reaping.)
#[test]
fn the_status_never_counts_a_quiet_server_that_exited() {
    let setup = Setup::new();
    let pidfile = setup.path("pid");
    let config = quiet_service(&setup, &format!("echo $$ > {pidfile}\necho hello\n"));
    let (daemon, port) = setup.start(&config);

    for round in 1..=10 {
        let _ = fs::remove_file(&pidfile);
        assert_eq!(tcp_read_some(("127.0.0.1", port), 6), b"hello\n");
        let pid = server_pid(Path::new(&pidfile));
        // Exited: a zombie until the loop reaps it, or already reaped.
        wait_until("the server exits", DEADLINE, || {
            state(pid).is_none_or(|state| state == 'Z')
        });
        daemon.signal(Signal::SIGUSR1);
        let log = daemon.wait_for_log_count("last reload: none", round);
        let table = &log[log.rfind("oxinetd pid").expect("a table")..];
        let row = table
            .lines()
            .find(|line| line.starts_with("svc "))
            .unwrap_or_else(|| panic!("{table}"));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[3..5], ["listening", "0"], "round {round}: {table}");
    }
    daemon.stop();
}
