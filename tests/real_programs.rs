//! Real inetd servers behind oxinetd, driven by their real clients: git daemon, rsync
//! daemon (stream nowait) and tftpd-hpa (dgram wait).
mod common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Launch, Oxinetd, free_port, run_ok, tempdir};

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

fn stdout_text(output: std::process::Output) -> String {
    String::from_utf8(output.stdout)
        .expect("utf-8 output")
        .trim()
        .to_owned()
}

#[test]
fn git_daemon_serves_a_clone() {
    let Some(git_bin) = first_existing(&["/usr/bin/git", "/usr/local/bin/git"]) else {
        eprintln!("skipped: git is not installed");
        return;
    };
    let dir = tempdir();
    let base = dir.path().join("repos");
    let src = dir.path().join("src");
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
        git(dir.path()).args(["clone", "-q", "--bare", "src", "repos/repo.git"]),
        CLIENT_TIMEOUT,
    );

    let port = free_port();
    let base_str = base.to_str().unwrap();
    let config = format!(
        "[service.git]\n\
         socket_type = \"stream\"\n\
         wait = false\n\
         user = \"root\"\n\
         port = {port}\n\
         server = \"{git_bin}\"\n\
         server_args = [\"daemon\", \"--inetd\", \"--export-all\", \"--base-path={base_str}\", \"{base_str}\"]\n"
    );
    let work = dir.path().to_owned();
    let daemon = Oxinetd::start_with(
        &config,
        Launch {
            dir: Some(dir),
            ..Launch::default()
        },
    );

    run_ok(
        git(&work).args([
            "clone",
            "-q",
            &format!("git://127.0.0.1:{port}/repo.git"),
            "out",
        ]),
        CLIENT_TIMEOUT,
    );
    let out = work.join("out");
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
        eprintln!("skipped: rsync is not installed");
        return;
    };
    let dir = tempdir();
    let export = dir.path().join("export");
    let dest = dir.path().join("dest");
    fs::create_dir_all(&export).unwrap();
    fs::create_dir_all(&dest).unwrap();
    let data = pattern(300 * 1024 + 17);
    fs::write(export.join("file.bin"), &data).unwrap();
    let rsyncd_conf = dir.path().join("rsyncd.conf");
    fs::write(
        &rsyncd_conf,
        format!(
            "use chroot = no\nuid = root\ngid = root\nlog file = {}\n\n[mod]\n    path = {}\n    read only = yes\n",
            dir.path().join("rsyncd.log").display(),
            export.display()
        ),
    )
    .unwrap();

    let port = free_port();
    let config = format!(
        "[service.rsync]\n\
         socket_type = \"stream\"\n\
         wait = false\n\
         user = \"root\"\n\
         port = {port}\n\
         server = \"{rsync_bin}\"\n\
         server_args = [\"--daemon\", \"--config={}\"]\n",
        rsyncd_conf.display()
    );
    let work = dir.path().to_owned();
    let daemon = Oxinetd::start_with(
        &config,
        Launch {
            dir: Some(dir),
            ..Launch::default()
        },
    );

    run_ok(
        Command::new("rsync")
            .arg(format!("rsync://127.0.0.1:{port}/mod/file.bin"))
            .arg(work.join("dest/file.bin")),
        CLIENT_TIMEOUT,
    );
    let got = fs::read(work.join("dest/file.bin")).unwrap();
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
        eprintln!("skipped: tftpd-hpa or tftp-hpa is not installed");
        return;
    };
    let dir = tempdir();
    let boot = dir.path().join("tftpboot");
    let download = dir.path().join("download");
    fs::create_dir_all(&boot).unwrap();
    fs::create_dir_all(&download).unwrap();
    // Not a multiple of the 512-byte block, so the last block is short.
    let data = pattern(100 * 1024 + 123);
    fs::write(boot.join("file.bin"), &data).unwrap();

    let port = free_port();
    let config = format!(
        "[service.tftp]\n\
         socket_type = \"dgram\"\n\
         wait = true\n\
         user = \"root\"\n\
         bind = \"127.0.0.1\"\n\
         port = {port}\n\
         server = \"{tftpd}\"\n\
         server_args = [\"-s\", \"{}\", \"-u\", \"root\"]\n",
        boot.display()
    );
    let daemon = Oxinetd::start_with(
        &config,
        Launch {
            dir: Some(dir),
            ..Launch::default()
        },
    );

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
