//! Connection limits run against the binary: `instances`, `per_source`, `max_servers`,
//! `cps` and `max_load`. A refused connection is closed unserved (EOF) and logged as
//! `FAIL: ID REASON from=ADDR`; a limit frees up when a server exits.
use crate::common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{
    Oxinetd, Setup, assert_check_rejects, count_lines, free_port, ip, read_line, read_to_eof,
    tcp_connect_from, tcp_request_from, toml_strings, v4, wait_for,
};

/// An exec'd stream nowait service `name` on 127.0.0.1:`port` with `keys`; its server prints
/// `hi`, then waits for a line (or EOF) from the client.
fn holding_service(name: &str, port: u16, keys: &str) -> String {
    format!(
        "[service.{name}]\nsocket_type = \"stream\"\nwait = false\nuser = \"root\"\n\
         server = \"/bin/sh\"\nserver_args = {}\nport = {port}\nbind = \"127.0.0.1\"\n{keys}\n\n",
        toml_strings(&["-c", "echo hi; read line"])
    )
}

/// A connection from `from` whose server has started (it said `hi`); it runs until the
/// stream is released.
fn hold(port: u16, from: &str) -> TcpStream {
    let mut stream = tcp_connect_from(ip(from), v4(port));
    assert_eq!(
        read_line(&mut stream),
        "hi\n",
        "connection from {from} was not served"
    );
    stream
}

/// Ends a held connection's server and waits until the daemon has reaped it (the
/// `EXIT: ID` lines reach `exits`).
fn release(daemon: &Oxinetd, mut stream: TcpStream, id: &str, exits: usize) {
    stream.write_all(b"bye\n").unwrap();
    assert_eq!(read_to_eof(&mut stream), b"", "server said more than hi");
    daemon.wait_for_log_count(&format!("EXIT: {id} "), exits);
}

/// A connection from `from` to `port` is closed unserved and the daemon logs
/// `FAIL: ID REASON from=FROM` for it.
fn assert_refused(daemon: &Oxinetd, id: &str, port: u16, from: &str, reason: &str) {
    let line = format!("FAIL: {id} {reason} from={from}");
    let before = count_lines(&daemon.log(), &line);
    let out = tcp_request_from(ip(from), v4(port), b"");
    assert_eq!(
        String::from_utf8_lossy(&out),
        "",
        "connection from {from} to {id} should have been refused ({reason})"
    );
    daemon.wait_for_log_count(&line, before + 1);
}

#[test]
fn instances_limit_refuses_with_service_limit_until_a_server_exits() {
    let port = free_port();
    let daemon = Oxinetd::start(&holding_service("svc", port, "instances = 1"));
    let first = hold(port, "127.0.0.1");
    assert_refused(&daemon, "svc", port, "127.0.0.1", "service_limit");
    // Another peer does not get round the limit either.
    assert_refused(&daemon, "svc", port, "127.0.0.2", "service_limit");
    release(&daemon, first, "svc", 1);
    let again = hold(port, "127.0.0.1");
    drop(again);
}

#[test]
fn per_source_limits_each_peer_separately_until_its_server_exits() {
    let port = free_port();
    let daemon = Oxinetd::start(&holding_service("svc", port, "per_source = 1"));
    let first = hold(port, "127.0.0.1");
    assert_refused(&daemon, "svc", port, "127.0.0.1", "per_source_limit");
    // A different peer has its own count.
    let other = hold(port, "127.0.0.2");
    assert_refused(&daemon, "svc", port, "127.0.0.2", "per_source_limit");

    release(&daemon, first, "svc", 1);
    let again = hold(port, "127.0.0.1");
    // Still one at a time for that peer.
    assert_refused(&daemon, "svc", port, "127.0.0.1", "per_source_limit");
    drop((other, again));
}

#[test]
fn per_source_unlimited_allows_many_from_one_peer() {
    let port = free_port();
    let daemon = Oxinetd::start(&holding_service("svc", port, "per_source = \"UNLIMITED\""));
    let held: Vec<TcpStream> = (0..4).map(|_| hold(port, "127.0.0.1")).collect();
    assert_eq!(count_lines(&daemon.log(), "FAIL: svc"), 0);
    drop(held);
}

#[test]
fn max_servers_counts_servers_of_all_services() {
    let (a, b) = (free_port(), free_port());
    let config = format!(
        "[defaults]\nmax_servers = 2\n\n{}{}",
        holding_service("a", a, ""),
        holding_service("b", b, "")
    );
    let daemon = Oxinetd::start(&config);
    let on_a = hold(a, "127.0.0.1");
    let on_b = hold(b, "127.0.0.2");
    assert_refused(&daemon, "a", a, "127.0.0.3", "process_limit");
    assert_refused(&daemon, "b", b, "127.0.0.3", "process_limit");

    // A server of `a` exiting frees a slot for `b`.
    release(&daemon, on_a, "a", 1);
    let second_b = hold(b, "127.0.0.3");
    assert_refused(&daemon, "a", a, "127.0.0.1", "process_limit");
    drop((on_b, second_b));
}

/// Lines of `log` that are exactly the start-of-episode line `FAIL: ID cps from=ADDR`
/// (after any timestamp and level prefix): the end-of-episode summary is not one of them.
fn cps_episodes(log: &str, id: &str, from: &str) -> usize {
    let line = format!("FAIL: {id} cps from={from}");
    log.lines()
        .filter(|l| l.trim_end().ends_with(&line))
        .count()
}

/// An exec'd service `svc` on 127.0.0.1 printing `served`, with `cps = [2, 1]`; the
/// daemon and the port.
fn start_cps_svc() -> (Oxinetd, u16) {
    let port = free_port();
    let daemon = Oxinetd::start(&format!(
        "[service.svc]\nsocket_type = \"stream\"\nwait = false\nuser = \"root\"\n\
         {}port = {port}\nbind = \"127.0.0.1\"\ncps = [2, 1]\n",
        common::sh("echo served")
    ));
    (daemon, port)
}

/// Ten connections from `from` at once against `cps = [2, 1]`: two are served, eight shed.
fn burst_of_ten(port: u16, from: &str) {
    // All ten are queued by the kernel first, so the daemon meets them as one burst.
    let mut burst: Vec<TcpStream> = (0..10)
        .map(|_| tcp_connect_from(ip(from), v4(port)))
        .collect();
    let outputs: Vec<String> = burst
        .iter_mut()
        .map(|s| String::from_utf8_lossy(&read_to_eof(s)).into_owned())
        .collect();
    let mut want = vec![String::new(); 10];
    want[0] = "served\n".into();
    want[1] = "served\n".into();
    assert_eq!(outputs, want, "a burst of 10 against cps = [2, 1]");
}

#[test]
fn cps_sheds_only_the_fast_peer_for_the_pause_and_logs_once() {
    let (daemon, port) = start_cps_svc();
    burst_of_ten(port, "127.0.0.2");
    daemon.wait_for_log("FAIL: svc cps from=127.0.0.2");

    // Another peer is served meanwhile: only the fast one is shed.
    assert_eq!(
        tcp_request_from(ip("127.0.0.3"), v4(port), b""),
        b"served\n",
        "127.0.0.3 was shed with 127.0.0.2"
    );
    let log = daemon.wait_for_log("from=127.0.0.3");
    let started = |log: &str| {
        log.lines()
            .filter(|l| l.contains("START: svc") && l.contains("from=127.0.0.2"))
            .count()
    };
    assert_eq!(
        started(&log),
        2,
        "servers started for the burst; log:\n{log}"
    );

    // After the pause (1 s from the episode's start) the peer is served again. Tries come
    // every 600 ms, slower than the rate, so no new episode starts; one within the pause
    // is shed like the burst, without another FAIL line.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut tries = 0;
    loop {
        tries += 1;
        let out = tcp_request_from(ip("127.0.0.2"), v4(port), b"");
        if out == b"served\n" {
            break;
        }
        assert_eq!(
            String::from_utf8_lossy(&out),
            "",
            "shed connection got data"
        );
        assert!(
            Instant::now() < deadline,
            "127.0.0.2 still shed 5 s after a 1 s pause ({tries} tries); log:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(600));
    }
    let log = daemon.log();
    assert_eq!(
        cps_episodes(&log, "svc", "127.0.0.2"),
        1,
        "one FAIL line per shedding episode, not per connection; log:\n{log}"
    );
    assert_eq!(cps_episodes(&log, "svc", "127.0.0.3"), 0, "log:\n{log}");
}

#[test]
fn cps_episode_ends_with_a_summary_line() {
    let (daemon, port) = start_cps_svc();
    burst_of_ten(port, "127.0.0.2");
    daemon.wait_for_log("FAIL: svc cps from=127.0.0.2");
    // The peer stops. The episode ends a pause (1 s) after it started, and the daemon's
    // housekeeping, due 10 s after the first shed connection, says so.
    let summary = "WARN service svc: cps: shed 8 connections from 127.0.0.2 over 1 s";
    let log = wait_for(
        "the cps end-of-episode summary",
        Duration::from_secs(20),
        || {
            let log = daemon.log();
            if count_lines(&log, "cps: shed") > 0 {
                Ok(log)
            } else {
                Err(format!("log:\n{log}"))
            }
        },
    );
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("cps: shed")).collect();
    assert!(
        lines.len() == 1 && lines[0].ends_with(&format!(" {summary}")),
        "want one line ending in {summary:?}; log:\n{log}"
    );
    // The summary is not a second start-of-episode line.
    assert_eq!(cps_episodes(&log, "svc", "127.0.0.2"), 1, "log:\n{log}");
}

#[test]
fn cps_serves_a_peer_that_stays_above_the_rate_again_after_each_pause() {
    // The client: it keeps retrying above the rate. Against `cps = [2, 1]` a try
    // every 250 ms is twice the rate, so it stays above it even if the tries slow down on
    // a busy machine. Each episode lasts 1 s from its start, shed tries taking no tokens,
    // so the peer is served again after every one: it is never shut out for good.
    let (daemon, port) = start_cps_svc();
    let start = Instant::now();
    let (least, most) = (Duration::from_secs(6), Duration::from_secs(30));
    let mut tries = 0u32;
    let mut first_refusal: Option<Duration> = None;
    let mut served_after_pause = 0;
    let mut last_other = None::<Instant>;
    loop {
        // Tries on a fixed schedule: one that took long is followed by the next at once.
        let due = start + Duration::from_millis(250) * tries;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        tries += 1;
        let at = start.elapsed();
        let out = tcp_request_from(ip("127.0.0.2"), v4(port), b"");
        match (out.as_slice(), first_refusal) {
            (b"served\n", Some(refused)) if at >= refused + Duration::from_secs(1) => {
                served_after_pause += 1;
            }
            (b"served\n", _) => {}
            (b"", None) => first_refusal = Some(at),
            (b"", Some(_)) => {}
            (other, _) => panic!("try {tries}: got {:?}", String::from_utf8_lossy(other)),
        }
        // Another peer, at most once a second (below the rate), is served throughout.
        if last_other.is_none_or(|then| then.elapsed() >= Duration::from_millis(1500)) {
            last_other = Some(Instant::now());
            assert_eq!(
                tcp_request_from(ip("127.0.0.1"), v4(port), b""),
                b"served\n",
                "127.0.0.1 was shed with 127.0.0.2 at {:?}; log:\n{}",
                start.elapsed(),
                daemon.log()
            );
        }
        let episodes = cps_episodes(&daemon.log(), "svc", "127.0.0.2");
        if start.elapsed() >= least && served_after_pause > 0 && episodes > 1 {
            break;
        }
        assert!(
            start.elapsed() < most,
            "after {tries} tries in {:?}: first refused at {first_refusal:?}, served \
             {served_after_pause} times after that and the pause, {episodes} episodes; log:\n{}",
            start.elapsed(),
            daemon.log()
        );
    }
    // Each episode has its summary, and each lasted the pause, not longer.
    let log = wait_for(
        "a cps end-of-episode summary for 127.0.0.2",
        Duration::from_secs(30),
        || {
            let log = daemon.log();
            if count_lines(&log, "cps: shed") > 0 {
                Ok(log)
            } else {
                Err(format!("log:\n{log}"))
            }
        },
    );
    let summaries: Vec<&str> = log.lines().filter(|l| l.contains("cps: shed")).collect();
    assert!(
        summaries
            .iter()
            .all(|l| l.contains("connections from 127.0.0.2 over 1 s")),
        "log:\n{log}"
    );
    assert_eq!(
        count_lines(&log, "FAIL: svc cps from=127.0.0.1"),
        0,
        "log:\n{log}"
    );
}

/// What the daemon reads as /proc/loadavg in the max_load tests: a 1-minute load of 2.50.
const LOAD_2_50: &str = "2.50 1.00 0.50 1/100 4242\n";

#[test]
fn max_load_refuses_at_or_above_the_load() {
    // The daemon sees a load of 2.50 (a /proc/loadavg of its own), whatever the machine's.
    let setup = Setup::new();
    let (at, above) = (setup.port, free_port());
    let config = format!(
        "{}{}",
        holding_service("at", at, "max_load = 2.5"),
        holding_service("above", above, "max_load = 2.51")
    );
    let (daemon, _) = setup.start_with_files(&config, &[("/proc/loadavg", LOAD_2_50)]);
    assert_refused(&daemon, "at", at, "127.0.0.1", "load");
    let served = hold(above, "127.0.0.1");
    drop(served);
}

#[test]
fn limit_refusals_get_the_banners_too() {
    // "A refused connection is accepted and closed in the parent, after banner_fail."
    let setup = Setup::new();
    let (instances, per_source) = (setup.port, free_port());
    let banners = format!(
        "banner = {}\nbanner_fail = {}",
        common::toml_string(&setup.file("banner", b"hello\r\n")),
        common::toml_string(&setup.file("fail", b"busy\r\n"))
    );
    let config = format!(
        "{}{}",
        holding_service("one", instances, &format!("instances = 1\n{banners}")),
        holding_service("each", per_source, &format!("per_source = 1\n{banners}"))
    );
    let (daemon, _) = setup.start(&config);
    for (id, port, reason) in [
        ("one", instances, "service_limit"),
        ("each", per_source, "per_source_limit"),
    ] {
        let mut held = tcp_connect_from(ip("127.0.0.1"), v4(port));
        assert_eq!(read_line(&mut held), "hello\r\n");
        assert_eq!(read_line(&mut held), "hi\n");
        let out = tcp_request_from(ip("127.0.0.1"), v4(port), b"");
        assert_eq!(
            String::from_utf8_lossy(&out),
            "hello\r\nbusy\r\n",
            "refused by {reason}"
        );
        daemon.wait_for_log(&format!("FAIL: {id} {reason} from=127.0.0.1"));
    }
}

#[test]
fn per_source_on_a_dual_stack_service_counts_ipv4_peers_as_ipv4() {
    let port = free_port();
    let config = holding_service("svc", port, "per_source = 1")
        .replace("bind = \"127.0.0.1\"", "bind = \"::\"");
    let daemon = Oxinetd::start(&config);
    let first = hold(port, "127.0.0.1");
    assert_refused(&daemon, "svc", port, "127.0.0.1", "per_source_limit");
    // ::1 is another peer.
    let mut six = tcp_connect_from(ip("::1"), common::v6(port));
    assert_eq!(read_line(&mut six), "hi\n", "::1 was not served");
    drop((first, six));
}

#[test]
fn servers_started_before_a_reload_still_count() {
    let (a, b) = (free_port(), free_port());
    let config = format!(
        "[defaults]\nmax_servers = 4\n\n{}{}",
        holding_service("one", a, "instances = 1"),
        holding_service("each", b, "per_source = 1")
    );
    let daemon = Oxinetd::start(&config);
    let held_one = hold(a, "127.0.0.1");
    let held_each = hold(b, "127.0.0.1");
    let held_each2 = hold(b, "127.0.0.2");

    daemon.reload();
    daemon.wait_for_log("reload: done");
    // Three run: each check below meets one limit only.
    assert_refused(&daemon, "one", a, "127.0.0.2", "service_limit");
    assert_refused(&daemon, "each", b, "127.0.0.1", "per_source_limit");
    let held_each3 = hold(b, "127.0.0.3");
    assert_refused(&daemon, "each", b, "127.0.0.4", "process_limit");

    // And they are released when those servers exit.
    release(&daemon, held_one, "one", 1);
    release(&daemon, held_each, "each", 1);
    let again_one = hold(a, "127.0.0.2");
    let again_each = hold(b, "127.0.0.1");
    drop((held_each2, held_each3, again_one, again_each));
}

#[test]
fn max_servers_in_a_service_is_a_config_error() {
    assert_check_rejects("max_servers = 2", "max_servers");
}

#[test]
fn cps_needs_a_rate_and_a_pause() {
    assert_check_rejects("cps = [2]", "cps");
    assert_check_rejects("cps = \"2 1 3\"", "cps");
    assert_check_rejects("cps = [0, 1]", "cps");
}

#[test]
fn cps_as_one_string_works_like_the_array() {
    let port = free_port();
    let daemon = Oxinetd::start(&holding_service("svc", port, "cps = \"1 5\""));
    let first = hold(port, "127.0.0.1");
    assert_refused(&daemon, "svc", port, "127.0.0.1", "cps");
    drop(first);
}

/// An internal stream `echo` on 127.0.0.1:`port` with `keys`.
fn echo_service(port: u16, keys: &str) -> String {
    format!(
        "[service.echo]\ntype = \"INTERNAL\"\nsocket_type = \"stream\"\nport = {port}\n\
         bind = \"127.0.0.1\"\n{keys}\n\n"
    )
}

/// An echo session from `from` that has echoed once, so the daemon has admitted it.
fn echo_session(port: u16, from: &str) -> TcpStream {
    let mut stream = tcp_connect_from(ip(from), v4(port));
    stream.write_all(b"up\n").unwrap();
    assert_eq!(
        read_line(&mut stream),
        "up\n",
        "echo from {from} not served"
    );
    stream
}

#[test]
fn instances_count_internal_stream_sessions() {
    let port = free_port();
    let daemon = Oxinetd::start(&echo_service(port, "instances = 1"));
    let session = echo_session(port, "127.0.0.1");
    assert_refused(&daemon, "echo", port, "127.0.0.2", "service_limit");
    drop(session);
    // The session ends when its client goes: the slot is free again. (No log line marks
    // the moment, so this polls.)
    common::wait_until(
        "a new echo session after the first ended",
        Duration::from_secs(10),
        || tcp_request_from(ip("127.0.0.2"), v4(port), b"x\n") == b"x\n",
    );
}

#[test]
fn per_source_counts_internal_stream_sessions() {
    let port = free_port();
    let daemon = Oxinetd::start(&format!(
        "[service.discard]\ntype = \"INTERNAL\"\nsocket_type = \"stream\"\nport = {port}\n\
         bind = \"127.0.0.1\"\nper_source = 1\n"
    ));
    // discard says nothing: its START lines show the sessions admitted.
    let first = tcp_connect_from(ip("127.0.0.1"), v4(port));
    daemon.wait_for_log("START: discard pid=0 from=127.0.0.1");
    assert_refused(&daemon, "discard", port, "127.0.0.1", "per_source_limit");
    let other = tcp_connect_from(ip("127.0.0.2"), v4(port));
    daemon.wait_for_log("START: discard pid=0 from=127.0.0.2");
    drop((first, other));
}

#[test]
fn max_servers_does_not_count_internal_sessions() {
    let (svc, echo) = (free_port(), free_port());
    let config = format!(
        "[defaults]\nmax_servers = 1\n\n{}{}",
        holding_service("svc", svc, ""),
        echo_service(echo, "")
    );
    let daemon = Oxinetd::start(&config);
    let session = echo_session(echo, "127.0.0.1");
    // The echo session does not use up the one server slot...
    let server = hold(svc, "127.0.0.1");
    // ...and the full slot does not stop more echo sessions.
    let second = echo_session(echo, "127.0.0.2");
    assert_refused(&daemon, "svc", svc, "127.0.0.3", "process_limit");
    drop((session, server, second));
}

#[test]
fn cps_shed_connections_get_banner_fail() {
    let setup = Setup::new();
    let config = holding_service(
        "svc",
        setup.port,
        &format!(
            "cps = [1, 5]\nbanner_fail = {}",
            common::toml_string(&setup.file("fail", b"slow down\r\n"))
        ),
    );
    let (daemon, port) = setup.start(&config);
    let first = hold(port, "127.0.0.2");
    for _ in 0..2 {
        let out = tcp_request_from(ip("127.0.0.2"), v4(port), b"");
        assert_eq!(String::from_utf8_lossy(&out), "slow down\r\n");
    }
    daemon.wait_for_log("FAIL: svc cps from=127.0.0.2");
    drop(first);
}
