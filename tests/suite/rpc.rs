//! RPC services: registered with the local rpcbind while the daemon runs (checked with
//! `rpcinfo -p`, when an rpcbind answers on 127.0.0.1:111) and withdrawn when it stops;
//! served all the same where no rpcbind answers (a network namespace of their own); and
//! the configuration errors of `rpc_number` / `rpc_version` (always).
use crate::common;

use std::io::ErrorKind;
use std::net::{Ipv4Addr, UdpSocket};
use std::process::{Command, Output};
use std::time::Duration;

use common::{Launch, Oxinetd, check, free_port, have, run_command, tcp_request, v4};

/// A program number no real service registers.
const PROGRAM: u32 = 300_999;

/// A stream RPC service `rpcsvc` for PROGRAM with `extra` keys.
fn rpc_service(extra: &str) -> String {
    format!(
        "[service.rpcsvc]\ntype = [\"RPC\", \"UNLISTED\"]\nsocket_type = \"stream\"\n\
         protocol = \"tcp\"\nwait = false\nuser = \"root\"\nserver = \"/bin/sh\"\n\
         server_args = [\"-c\", \"echo rpc-served\"]\n{extra}\n"
    )
}

/// Whether a portmapper answers a NULL call (program 100000 version 2 procedure 0) on
/// 127.0.0.1:111 over UDP within a second.
fn portmapper_answers() -> bool {
    let Ok(socket) = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)) else {
        return false;
    };
    if socket.connect((Ipv4Addr::LOCALHOST, 111)).is_err() {
        return false;
    }
    let xid: u32 = 0x6f78_6931 ^ std::process::id();
    // xid, CALL, RPC version 2, program, version, procedure, AUTH_NONE cred and verifier.
    let call: Vec<u8> = [xid, 0, 2, 100_000, 2, 0, 0, 0, 0, 0]
        .iter()
        .flat_map(|word| word.to_be_bytes())
        .collect();
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 512];
    for _ in 0..2 {
        if socket.send(&call).is_err() {
            return false;
        }
        match socket.recv(&mut buf) {
            // xid echoed and REPLY (1).
            Ok(n) if n >= 8 && buf[..4] == xid.to_be_bytes() && buf[4..8] == [0, 0, 0, 1] => {
                return true;
            }
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return false,
        }
    }
    false
}

/// `(version, protocol, port)` of every registration of PROGRAM, from `rpcinfo -p`.
fn registrations() -> Vec<(u32, String, u16)> {
    registrations_of(PROGRAM)
}

/// `(version, protocol, port)` of every registration of `program`, from `rpcinfo -p`.
fn registrations_of(program: u32) -> Vec<(u32, String, u16)> {
    let output = run_command(
        Command::new("rpcinfo").args(["-p", "127.0.0.1"]),
        Duration::from_secs(10),
    );
    assert!(
        output.status.success(),
        "rpcinfo -p failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut found: Vec<(u32, String, u16)> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            // `   program vers proto   port  service`
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.len() < 4 || words[0] != program.to_string() {
                return None;
            }
            Some((
                words[1].parse().ok()?,
                words[2].to_owned(),
                words[3].parse().ok()?,
            ))
        })
        .collect();
    found.sort();
    found
}

/// Whether a real rpcbind can be asked and queried here; says why not when not.
fn rpcbind_available() -> bool {
    if !have("rpcbind") || !have("rpcinfo") {
        common::skip("rpcbind or rpcinfo (package rpcbind) is not installed");
        return false;
    }
    if !portmapper_answers() {
        common::skip("no portmapper answers on 127.0.0.1:111/udp (rpcbind not running)");
        return false;
    }
    true
}

/// Withdraws versions 1 and 2 of `program`: a registration left by an earlier run that
/// was killed would hide a missing one.
fn clear_registrations(program: u32) {
    for version in ["1", "2"] {
        let _ = run_command(
            Command::new("rpcinfo").args(["-d", &program.to_string(), version]),
            Duration::from_secs(10),
        );
    }
    assert_eq!(
        registrations_of(program),
        [],
        "precondition: {program} not registered"
    );
}

#[test]
fn rpc_service_is_registered_while_running_and_withdrawn_at_stop() {
    if !rpcbind_available() {
        return;
    }
    clear_registrations(PROGRAM);

    let daemon = Oxinetd::start(&rpc_service(&format!(
        "rpc_number = {PROGRAM}\nrpc_version = \"1-2\""
    )));
    let found = registrations();
    assert_eq!(found.len(), 2, "registrations of {PROGRAM}: {found:?}");
    let port = found[0].2;
    assert_eq!(
        found,
        [(1, "tcp".to_owned(), port), (2, "tcp".to_owned(), port)],
        "registrations of {PROGRAM}"
    );
    // The registered port is the service's.
    assert_eq!(tcp_request(v4(port), b""), b"rpc-served\n");

    assert!(daemon.stop().success());
    assert_eq!(registrations(), [], "{PROGRAM} still registered after stop");
}

#[test]
fn a_version_another_port_holds_is_left_to_it_and_the_others_register() {
    if !rpcbind_available() {
        return;
    }
    // Its own program number: the other test clears and checks PROGRAM meanwhile.
    const SHARED: u32 = 300_998;
    clear_registrations(SHARED);
    let holder = Oxinetd::start(&rpc_service(&format!(
        "rpc_number = {SHARED}\nrpc_version = \"1\""
    )));
    let held = registrations_of(SHARED);
    assert_eq!(held.len(), 1, "registrations of {SHARED}: {held:?}");
    let holder_port = held[0].2;

    let second = Oxinetd::start(&rpc_service(&format!(
        "rpc_number = {SHARED}\nrpc_version = \"1-2\""
    )));
    let log = second.wait_for_log("cannot register version 1 with rpcbind");
    assert!(
        log.contains(
            "ERROR service rpcsvc: cannot register version 1 with rpcbind: rpcbind refused: \
             the program and version are registered to another port"
        ),
        "log:\n{log}"
    );
    let found = registrations_of(SHARED);
    assert_eq!(found.len(), 2, "registrations of {SHARED}: {found:?}");
    assert_eq!(found[0], (1, "tcp".to_owned(), holder_port));
    let second_port = found[1].2;
    assert_ne!(second_port, holder_port);
    assert_eq!(found[1], (2, "tcp".to_owned(), second_port));

    // Stopping withdraws what the second registered, not the holder's version.
    assert!(second.stop().success());
    assert_eq!(
        registrations_of(SHARED),
        [(1, "tcp".to_owned(), holder_port)],
        "the holder's registration after the second daemon stopped"
    );
    assert!(holder.stop().success());
    assert_eq!(registrations_of(SHARED), [], "{SHARED} still registered");
}

#[test]
fn withdrawing_the_tcp_half_of_an_rpc_program_keeps_the_udp_half() {
    if !rpcbind_available() {
        return;
    }
    // Its own program number: the other tests clear and check theirs meanwhile.
    const BOTH: u32 = 300_996;
    clear_registrations(BOTH);
    let udp_half = format!(
        "[service.rpcudp]\ntype = [\"RPC\", \"UNLISTED\"]\nsocket_type = \"dgram\"\n\
         protocol = \"udp\"\nwait = true\nuser = \"root\"\nserver = \"/bin/true\"\n\
         rpc_number = {BOTH}\nrpc_version = \"1\"\n"
    );
    let tcp_half = rpc_service(&format!("rpc_number = {BOTH}\nrpc_version = \"1\""));
    let daemon = Oxinetd::start(&format!("{tcp_half}\n{udp_half}"));
    let protocols = |found: Vec<(u32, String, u16)>| -> Vec<String> {
        found.into_iter().map(|(_, protocol, _)| protocol).collect()
    };
    assert_eq!(protocols(registrations_of(BOTH)), ["tcp", "udp"]);

    // Portmapper v2 withdraws version 1 for both protocols at once: the udp half, still
    // configured, must be registered again.
    daemon.write_config(&udp_half);
    daemon.reload();
    daemon.wait_for_log("reload: done");
    assert_eq!(protocols(registrations_of(BOTH)), ["udp"]);

    assert!(daemon.stop().success());
    assert_eq!(
        registrations_of(BOTH),
        [],
        "{BOTH} still registered after stop"
    );
}

#[test]
fn rpc_service_without_rpcbind_logs_the_error_and_still_serves() {
    if !common::can_make_network_namespace() {
        common::skip("cannot make a network namespace (unshare --net, ip)");
        return;
    }
    // A network namespace of its own has only a loopback and nothing on port 111, so
    // this machine's rpcbind cannot answer. A fixed port: nobody can look it up.
    let port = free_port();
    let daemon = Oxinetd::start_with(
        &rpc_service(&format!(
            "rpc_number = {PROGRAM}\nrpc_version = \"1-2\"\nport = {port}"
        )),
        Launch {
            wrapper: vec![
                "unshare",
                "--net",
                "--",
                "/bin/sh",
                "-c",
                "ip link set lo up && exec \"$0\" \"$@\"",
            ],
            ..Launch::default()
        },
    );
    let log = daemon.wait_for_log("cannot register with rpcbind");
    let errors: Vec<&str> = log
        .lines()
        .filter_map(|l| l.find(" ERROR service rpcsvc: ").map(|at| &l[at + 1..]))
        .collect();
    assert_eq!(
        errors,
        [
            "ERROR service rpcsvc: cannot register with rpcbind: rpcbind is not running \
          (no answer from 127.0.0.1:111)"
        ],
        "log:\n{log}"
    );
    let reply = common::in_network_namespace_of(daemon.pid(), || tcp_request(v4(port), b""));
    assert_eq!(String::from_utf8_lossy(&reply), "rpc-served\n");
    daemon.wait_for_log("EXIT: rpcsvc status=0");
}

#[test]
fn valid_rpc_service_passes_the_check() {
    let output = check(&rpc_service(&format!(
        "rpc_number = {PROGRAM}\nrpc_version = \"1-2\""
    )));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{said}");
    assert!(said.contains("configuration OK: 1 service"), "{said}");
}

#[test]
fn unlisted_rpc_service_without_rpc_number_is_a_config_error() {
    let output = check(&rpc_service("rpc_version = \"1-2\""));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("service rpcsvc: ") && stderr.contains("rpc_number"),
        "error does not name the service and rpc_number: {stderr}"
    );
}

#[test]
fn bad_rpc_version_is_a_config_error_naming_the_key() {
    // The same service with a good version is valid: the version alone is wrong below.
    let good = check(&rpc_service(&format!(
        "rpc_number = {PROGRAM}\nrpc_version = \"3\""
    )));
    assert!(
        good.status.success(),
        "rpc_version = \"3\" rejected: {}",
        String::from_utf8_lossy(&good.stderr)
    );
    for bad in ["3-1", "x", "1-", "-2", "1-2-3"] {
        let output = check(&rpc_service(&format!(
            "rpc_number = {PROGRAM}\nrpc_version = \"{bad}\""
        )));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{bad:?}: {stderr}");
        assert!(
            stderr.contains("service rpcsvc: key rpc_version: "),
            "{bad:?}: error does not name the key: {stderr}"
        );
    }
}

/// An rpcbind running in the network and mount namespaces of process `pid`; killed on
/// drop.
struct RpcbindIn(std::process::Child);

impl RpcbindIn {
    fn start(pid: i32) -> RpcbindIn {
        let child = Command::new("nsenter")
            .args([
                &format!("--net=/proc/{pid}/ns/net"),
                &format!("--mount=/proc/{pid}/ns/mnt"),
                "--",
                "rpcbind",
                "-f",
            ])
            .spawn()
            .expect("start rpcbind in the daemon's namespaces");
        RpcbindIn(child)
    }
}

impl Drop for RpcbindIn {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `rpcinfo -p` run in the network and mount namespaces of process `pid`.
fn rpcinfo_in(pid: i32) -> Output {
    run_command(
        Command::new("nsenter").args([
            &format!("--net=/proc/{pid}/ns/net"),
            &format!("--mount=/proc/{pid}/ns/mnt"),
            "--",
            "rpcinfo",
            "-p",
            "127.0.0.1",
        ]),
        Duration::from_secs(10),
    )
}

#[test]
fn rpc_versions_not_registered_are_registered_at_the_next_reload() {
    if !have("rpcbind")
        || !have("rpcinfo")
        || !have("nsenter")
        || !common::can_make_network_namespace()
    {
        common::skip("needs rpcbind, rpcinfo, nsenter and a network namespace");
        return;
    }
    // Its own network namespace (no rpcbind answers there) and mount namespace with an
    // empty /run, so the rpcbind started there later does not meet this machine's.
    let daemon = Oxinetd::start_with(
        &rpc_service(&format!("rpc_number = {PROGRAM}\nrpc_version = \"1\"")),
        Launch {
            wrapper: vec![
                "unshare",
                "--net",
                "--mount",
                "--",
                "/bin/sh",
                "-c",
                "mount -t tmpfs tmpfs /run && ip link set lo up && exec \"$0\" \"$@\"",
            ],
            ..Launch::default()
        },
    );
    daemon.wait_for_log("cannot register with rpcbind: rpcbind is not running");

    let _rpcbind = RpcbindIn::start(daemon.pid());
    common::wait_for(
        "rpcbind answering in the namespace",
        Duration::from_secs(10),
        || {
            let output = rpcinfo_in(daemon.pid());
            if output.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&output.stderr).into_owned())
            }
        },
    );
    daemon.reload();
    daemon.wait_for_log(&format!(
        "registered RPC program {PROGRAM} version 1 on port"
    ));
    let listed = String::from_utf8_lossy(&rpcinfo_in(daemon.pid()).stdout).into_owned();
    assert!(
        listed
            .lines()
            .any(|line| line.split_whitespace().take(3).eq([
                PROGRAM.to_string().as_str(),
                "1",
                "tcp"
            ])),
        "rpcinfo -p in the namespace:\n{listed}"
    );
}
