//! Real inetd servers behind oxinetd, driven by their real clients: git daemon, rsync
//! daemon (stream nowait) and tftpd-hpa (dgram wait).
use crate::common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Setup, run_ok, toml_string, toml_strings};

const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

fn first_existing(paths: &[&str]) -> Option<String> {
    paths
        .iter()
        .find(|p| Path::new(p).exists())
        .map(|p| (*p).to_owned())
}

/// Deterministic test bytes of `len`.
fn pattern(len: usize) -> Vec<u8> {
    let mut state: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}

fn git(dir: &Path) -> Command {
    let mut command = Command::new("git");
    command
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0");
    command
}

/// A service `name` on `port` running `server` with `args` as root: stream nowait, or
/// dgram wait.
fn root_service(name: &str, socket_type: &str, port: u16, server: &str, args: &[&str]) -> String {
    let wait = socket_type == "dgram";
    format!(
        "[service.{name}]\nsocket_type = \"{socket_type}\"\nwait = {wait}\nuser = \"root\"\n\
         port = {port}\nserver = {}\nserver_args = {}\n",
        toml_string(server),
        toml_strings(args)
    )
}

fn stdout_text(output: std::process::Output) -> String {
    String::from_utf8(output.stdout)
        .expect("utf-8 output")
        .trim()
        .to_owned()
}

#[test]
fn git_daemon_serves_a_clone() {
    let Some(git_bin) = first_existing(&["/usr/bin/git", "/usr/local/bin/git"]) else {
        common::skip("git is not installed");
        return;
    };
    let setup = Setup::new();
    let dir = setup.dir.path().to_owned();
    let base = dir.join("repos");
    let src = dir.join("src");
    fs::create_dir_all(&base).unwrap();
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("hello.txt"), "hello through oxinetd\n").unwrap();
    run_ok(git(&src).args(["init", "-q"]), CLIENT_TIMEOUT);
    run_ok(git(&src).args(["add", "hello.txt"]), CLIENT_TIMEOUT);
    run_ok(
        git(&src).args([
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.invalid",
            "commit",
            "-q",
            "-m",
            "first commit",
        ]),
        CLIENT_TIMEOUT,
    );
    let commit = stdout_text(run_ok(
        git(&src).args(["rev-parse", "HEAD"]),
        CLIENT_TIMEOUT,
    ));
    run_ok(
        git(&dir).args(["clone", "-q", "--bare", "src", "repos/repo.git"]),
        CLIENT_TIMEOUT,
    );

    let base_str = base.to_str().unwrap();
    let config = root_service(
        "git",
        "stream",
        setup.port,
        &git_bin,
        &[
            "daemon",
            "--inetd",
            "--export-all",
            &format!("--base-path={base_str}"),
            base_str,
        ],
    );
    let (daemon, port) = setup.start(&config);

    run_ok(
        git(&dir).args([
            "clone",
            "-q",
            &format!("git://127.0.0.1:{port}/repo.git"),
            "out",
        ]),
        CLIENT_TIMEOUT,
    );
    let out = dir.join("out");
    let cloned = stdout_text(run_ok(
        git(&out).args(["rev-parse", "HEAD"]),
        CLIENT_TIMEOUT,
    ));
    assert_eq!(cloned, commit, "cloned HEAD");
    assert_eq!(
        fs::read_to_string(out.join("hello.txt")).unwrap(),
        "hello through oxinetd\n"
    );
    daemon.wait_for_log("START: git");
}

#[test]
fn rsync_daemon_serves_a_file() {
    let Some(rsync_bin) = first_existing(&["/usr/bin/rsync"]) else {
        common::skip("rsync is not installed");
        return;
    };
    let setup = Setup::new();
    let dir = setup.dir.path().to_owned();
    let export = dir.join("export");
    let dest = dir.join("dest");
    fs::create_dir_all(&export).unwrap();
    fs::create_dir_all(&dest).unwrap();
    let data = pattern(300 * 1024 + 17);
    fs::write(export.join("file.bin"), &data).unwrap();
    let rsyncd_conf = dir.join("rsyncd.conf");
    fs::write(
        &rsyncd_conf,
        format!(
            "use chroot = no\nuid = root\ngid = root\nlog file = {}\n\n[mod]\n    path = {}\n    read only = yes\n",
            dir.join("rsyncd.log").display(),
            export.display()
        ),
    )
    .unwrap();

    let config = root_service(
        "rsync",
        "stream",
        setup.port,
        &rsync_bin,
        &["--daemon", &format!("--config={}", rsyncd_conf.display())],
    );
    let (daemon, port) = setup.start(&config);

    run_ok(
        Command::new("rsync")
            .arg(format!("rsync://127.0.0.1:{port}/mod/file.bin"))
            .arg(dir.join("dest/file.bin")),
        CLIENT_TIMEOUT,
    );
    let got = fs::read(dir.join("dest/file.bin")).unwrap();
    assert_eq!(got.len(), data.len(), "rsync'ed file length");
    assert!(got == data, "rsync'ed file differs");
    daemon.wait_for_log("START: rsync");
}

#[test]
fn tftpd_serves_a_file_over_dgram_wait() {
    let (Some(tftpd), Some(_)) = (
        first_existing(&["/usr/sbin/in.tftpd"]),
        first_existing(&["/usr/bin/tftp"]),
    ) else {
        common::skip("tftpd-hpa or tftp-hpa is not installed");
        return;
    };
    let setup = Setup::new();
    let dir = setup.dir.path().to_owned();
    let boot = dir.join("tftpboot");
    let download = dir.join("download");
    fs::create_dir_all(&boot).unwrap();
    fs::create_dir_all(&download).unwrap();
    // Not a multiple of the 512-byte block, so the last block is short.
    let data = pattern(100 * 1024 + 123);
    fs::write(boot.join("file.bin"), &data).unwrap();

    let boot_str = boot.to_str().unwrap();
    let config = root_service(
        "tftp",
        "dgram",
        setup.port,
        &tftpd,
        &["-s", boot_str, "-u", "root"],
    ) + "bind = \"127.0.0.1\"\n";
    let (daemon, port) = setup.start(&config);

    // tftp-hpa: options, then host and port, then `-c` last; it saves into the current dir.
    let output = run_ok(
        Command::new("tftp")
            .current_dir(&download)
            .args(["-m", "binary", "127.0.0.1", &port.to_string()])
            .args(["-c", "get", "file.bin"]),
        CLIENT_TIMEOUT,
    );
    let got = fs::read(download.join("file.bin")).unwrap_or_else(|e| {
        panic!(
            "no downloaded file ({e}); tftp said {:?} {:?}; log:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            daemon.log()
        )
    });
    assert_eq!(got.len(), data.len(), "tftp'ed file length");
    assert!(got == data, "tftp'ed file differs");
    daemon.wait_for_log("START: tftp");
}
