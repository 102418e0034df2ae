//! `oxinetd import` as users run it: real xinetd files that Debian packages ship or
//! document (tests/data/xinetd, each with its origin in its first line) and inetd.conf
//! lines from Debian and OpenBSD (tests/data/inetd), imported through the binary; the
//! result is checked by `oxinetd --check`, and one is started and serves a real client.
use crate::common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{BIN, Setup, check_file, run_command, run_ok};

const TIMEOUT: Duration = Duration::from_secs(30);

fn data(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(path)
}

fn import(args: &[&std::ffi::OsStr]) -> Output {
    run_command(Command::new(BIN).arg("import").args(args), TIMEOUT)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `--check` errors that are facts of this machine, not of the translation: the
/// programs, users, groups, banner files and /etc/services entries of the machine the
/// file was written for. Everything else is a defect of the import.
const MACHINE_FACTS: &[&str] = &[
    "is not an executable file",
    "no such user",
    "no such group",
    "is not in /etc/services",
    "cannot read /etc/",
];

/// Imports `file` into a fresh folder with `--to`; returns the exit code, stderr and
/// every file written (path, text).
fn import_to(file: &Path, inetd: bool) -> (i32, String, Vec<(PathBuf, String)>, tempfile::TempDir) {
    let dir = common::tempdir();
    let out = dir.path().join("out");
    let mut args = vec![file.as_os_str(), "--to".as_ref(), out.as_os_str()];
    if inetd {
        args.insert(0, "--inetd".as_ref());
    }
    let output = import(&args);
    let mut written = Vec::new();
    for path in [out.join("oxinetd.toml")].into_iter().chain(
        fs::read_dir(out.join("oxinetd.d"))
            .into_iter()
            .flatten()
            .map(|e| e.unwrap().path()),
    ) {
        if let Ok(text) = fs::read_to_string(&path) {
            written.push((path, text));
        }
    }
    (
        output.status.code().unwrap_or(-1),
        text(&output.stderr),
        written,
        dir,
    )
}

/// Every stderr line is a note `FILE:LINE: service NAME: ...` (or `defaults:`) naming a
/// real line of a real file, or the importer's own `oxinetd import:` line; there are as
/// many notes as `# import:` comments in the output.
fn assert_notes_match(stderr: &str, written: &[(PathBuf, String)]) -> usize {
    let mut notes = 0;
    for line in stderr.lines() {
        if line.starts_with("oxinetd import: ") {
            continue;
        }
        let mut parts = line.splitn(4, ':');
        let (file, number, about) = (
            parts.next().unwrap(),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        let number: usize = number
            .parse()
            .unwrap_or_else(|_| panic!("not FILE:LINE: {line}"));
        let source = fs::read_to_string(file).unwrap_or_else(|e| panic!("{line}: {file}: {e}"));
        assert!(
            number >= 1 && number <= source.lines().count(),
            "{line}: no line {number} in {file}"
        );
        assert!(
            about.starts_with(" service ") || about == " defaults",
            "not about a service or the defaults: {line}"
        );
        notes += 1;
    }
    let comments: usize = written
        .iter()
        .map(|(_, text)| text.matches("# import: ").count())
        .sum();
    assert_eq!(notes, comments, "notes on stderr vs comments:\n{stderr}");
    notes
}

/// `--check` on the result: exit 0, or every error a fact of this machine.
fn assert_check_passes(main: &Path) -> bool {
    let output = check_file(main);
    let stderr = text(&output.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| {
            !l.starts_with("warning: ") && !l.ends_with(" error") && !l.ends_with(" errors")
        })
        .collect();
    for error in &errors {
        assert!(
            MACHINE_FACTS.iter().any(|fact| error.contains(fact)),
            "--check on {}: {error}\n{stderr}",
            main.display()
        );
    }
    assert_eq!(output.status.success(), errors.is_empty(), "{stderr}");
    errors.is_empty()
}

/// The real xinetd files and what the import of each must say: (file, exit code, a
/// word each of these notes holds).
const XINETD: &[(&str, i32, &[&str])] = &[
    ("xinetd/services/amanda", 0, &[]),
    ("xinetd/services/amandaclient", 0, &[]),
    ("xinetd/services/cfingerd", 0, &[]),
    ("xinetd/services/cvspserver", 0, &[]),
    ("xinetd/services/finger", 0, &[]),
    (
        "xinetd/services/git",
        0,
        &["`log_on_failure += USERID` resolved against defaults"],
    ),
    (
        "xinetd/services/nrpe",
        1,
        &[
            "not converted: port `@NRPE_PORT@`",
            "resolved against defaults",
        ],
    ),
    ("xinetd/services/sane-port", 0, &[]),
    (
        "xinetd/services/tftp",
        0,
        &["`wait = no` for a dgram server"],
    ),
    (
        "xinetd/services/vsftpd",
        0,
        &[
            "`log_on_success += PID HOST DURATION`",
            "`log_on_failure += HOST`",
        ],
    ),
    ("xinetd/debian-xinetd/chargen", 0, &[]),
    ("xinetd/debian-xinetd/chargen-udp", 0, &[]),
    ("xinetd/debian-xinetd/daytime", 0, &[]),
    ("xinetd/debian-xinetd/daytime-udp", 0, &[]),
    ("xinetd/debian-xinetd/discard", 0, &[]),
    ("xinetd/debian-xinetd/discard-udp", 0, &[]),
    ("xinetd/debian-xinetd/echo", 0, &[]),
    ("xinetd/debian-xinetd/echo-udp", 0, &[]),
    ("xinetd/debian-xinetd/time", 0, &[]),
    ("xinetd/debian-xinetd/time-udp", 0, &[]),
    (
        "xinetd/debian-xinetd/servers",
        1,
        &["internal `servers` service has no oxinetd equivalent"],
    ),
    (
        "xinetd/debian-xinetd/services",
        1,
        &["internal `services` service has no oxinetd equivalent"],
    ),
    (
        "xinetd/sample.conf",
        0,
        &[
            "`only_from = localhost 192.231.139.0/24` in defaults adds up",
            "`log_on_success += USERID` resolved against defaults (`HOST PID`)",
            "`log_on_failure += USERID` resolved against defaults (`HOST`)",
            "id `telnet` is already defined",
            "`log_on_failure += USERID` resolved against defaults (`HOST`)",
            "`log_on_success += DURATION USERID` resolved against defaults (`HOST PID`)",
            "`log_on_failure += USERID` resolved against defaults (`HOST`)",
            "INTERNAL left out: a SENSOR",
        ],
    ),
];

/// Imports `file`, checks its notes and runs `--check` on the result; the folder is
/// returned with the files, which live as long as it does.
fn assert_import(
    file: &Path,
    inetd: bool,
    code: i32,
    want: &[&str],
) -> (Vec<(PathBuf, String)>, tempfile::TempDir) {
    let (got, stderr, written, dir) = import_to(file, inetd);
    assert_eq!(
        got,
        code,
        "{}: exit code; stderr:\n{stderr}",
        file.display()
    );
    let notes = assert_notes_match(&stderr, &written);
    assert_eq!(notes, want.len(), "{}: notes:\n{stderr}", file.display());
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("oxinetd import"))
        .collect();
    for (line, word) in lines.iter().zip(want) {
        assert!(
            line.contains(word),
            "{}: `{word}` not in {line}",
            file.display()
        );
    }
    let main = written[0].0.clone();
    assert!(main.ends_with("oxinetd.toml"));
    assert_check_passes(&main);
    (written, dir)
}

#[test]
fn every_real_xinetd_file_imports_and_passes_check() {
    let mut clean = 0;
    for (file, code, notes) in XINETD {
        let (written, _dir) = assert_import(&data(file), false, *code, notes);
        if check_file(&written[0].0).status.success() {
            clean += 1;
        }
    }
    assert!(XINETD.len() >= 15, "at least 15 distinct real files");
    // Debian's internal services need nothing from the machine: they pass outright.
    assert!(clean >= 12, "only {clean} passed --check outright");
}

/// Debian's /etc/xinetd.conf with its `includedir`, pointed at the copy of
/// /etc/xinetd.d in tests/data (the one line changed).
#[test]
fn debians_xinetd_conf_with_its_includedir() {
    let dir = common::tempdir();
    let main = dir.path().join("xinetd.conf");
    let original = fs::read_to_string(data("xinetd/debian-xinetd/xinetd.conf")).unwrap();
    let pointed = original.replace(
        "includedir /etc/xinetd.d",
        &format!("includedir {}", data("xinetd/debian-xinetd").display()),
    );
    assert_ne!(pointed, original);
    fs::write(&main, pointed).unwrap();
    // The main file is skipped by the includedir rule only because it has a dot.
    let (written, _out) = assert_import(
        &main,
        false,
        1,
        &[
            "id `chargen-dgram` is already defined",
            "id `daytime-dgram` is already defined",
            "id `discard-dgram` is already defined",
            "id `echo-dgram` is already defined",
            "not converted: xinetd's internal `servers`",
            "not converted: xinetd's internal `services`",
            "id `time-dgram` is already defined",
        ],
    );
    let names: Vec<String> = written
        .iter()
        .map(|(path, _)| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 13, "{names:?}");
    assert!(names.contains(&"echo-udp.toml".to_string()), "{names:?}");
    assert!(
        written[0].1.contains("includedir = \"oxinetd.d\""),
        "{}",
        written[0].1
    );
    let echo = &written
        .iter()
        .find(|(p, _)| p.ends_with("echo.toml"))
        .unwrap()
        .1;
    assert_eq!(echo.matches("[[service.echo]]").count(), 2, "{echo}");
    assert!(
        echo.contains("id = \"echo-stream\"") && echo.contains("disable = true"),
        "{echo}"
    );
    assert!(check_file(&written[0].0).status.success());
}

#[test]
fn inetd_conf_lines_from_debian_and_openbsd() {
    let tcpd = "tcpd left out";
    assert_import(
        &data("inetd/debian.conf"),
        true,
        0,
        &[tcpd, tcpd, tcpd, tcpd, tcpd, tcpd, "`#<off>#`", tcpd],
    );
    assert_import(
        &data("inetd/openbsd.conf"),
        true,
        1,
        &[
            "`rcvbuf=64k,sndbuf=1m` left out",
            "`nowait.400` left out",
            "not converted: host `gateway.example.com`",
            "not converted: protocol `unix`",
        ],
    );
}

#[test]
fn without_to_one_document_goes_to_stdout() {
    let output = import(&[data("xinetd/sample.conf").as_os_str()]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let toml = text(&output.stdout);
    assert!(
        toml.contains("[defaults]") && toml.contains("[[service.telnet]]"),
        "{toml}"
    );
    assert!(!toml.contains("includedir"), "{toml}");
    let dir = common::tempdir();
    let main = dir.path().join("oxinetd.toml");
    fs::write(&main, &toml).unwrap();
    assert_check_passes(&main);
}

#[test]
fn an_existing_file_is_never_overwritten() {
    let dir = common::tempdir();
    let out = dir.path().join("out");
    fs::create_dir_all(out.join("oxinetd.d")).unwrap();
    fs::write(out.join("oxinetd.d/finger.toml"), "mine\n").unwrap();
    let finger = data("xinetd/services/finger");
    let output = import(&[finger.as_os_str(), "--to".as_ref(), out.as_os_str()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("oxinetd.d/finger.toml exists: not overwritten"),
        "{stderr}"
    );
    assert_eq!(
        fs::read_to_string(out.join("oxinetd.d/finger.toml")).unwrap(),
        "mine\n"
    );
    assert!(!out.join("oxinetd.toml").exists(), "nothing written");
}

#[test]
fn usage_errors_exit_2() {
    for args in [&[][..], &["a", "b"], &["--bogus", "a"], &["a", "--to"]] {
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
        let output = import(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(
            text(&output.stderr).contains("usage: oxinetd import"),
            "{args:?}"
        );
    }
    let output = import(&["/nonexistent/xinetd.conf".as_ref()]);
    assert_eq!(output.status.code(), Some(1));
}

/// atftpd's FAQ's xinetd file for in.tftpd, imported and started, serves tftp-hpa's
/// client. Edits to a copy of the input, nothing to the output: `port = N` added (a free
/// port instead of 69); the FAQ's placeholder `<insert atftpd options>` filled with
/// `-s DIR` (the installed in.tftpd is tftpd-hpa's); `user = nobody` made `root`, since
/// tftpd-hpa must start as root to chroot and then drops to nobody itself.
#[test]
fn an_imported_tftp_service_serves_a_real_client() {
    if !Path::new("/usr/sbin/in.tftpd").exists() || !Path::new("/usr/bin/tftp").exists() {
        common::skip("tftpd-hpa or tftp-hpa is not installed");
        return;
    }
    let setup = Setup::new();
    let dir = setup.dir.path().to_owned();
    let boot = dir.join("boot");
    let download = dir.join("download");
    fs::create_dir_all(&boot).unwrap();
    fs::create_dir_all(&download).unwrap();
    let data_bytes: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(boot.join("file.bin"), &data_bytes).unwrap();

    let original = fs::read_to_string(data("xinetd/services/tftp")).unwrap();
    let copy = original
        .replacen("{\n", &format!("{{\n        port = {}\n", setup.port), 1)
        .replace("<insert atftpd options>", &format!("-s {}", boot.display()))
        .replace("user = nobody", "user = root");
    assert_eq!(copy.lines().count(), original.lines().count() + 1);
    let input = dir.join("tftp");
    fs::write(&input, copy).unwrap();
    let out = dir.join("out");
    let output = import(&[input.as_os_str(), "--to".as_ref(), out.as_os_str()]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let converted = fs::read_to_string(out.join("oxinetd.d/tftp.toml")).unwrap();
    assert!(converted.contains("wait = true"), "{converted}");

    let daemon = common::Oxinetd::start_in(
        common::tempdir(),
        &["-f", out.join("oxinetd.toml").to_str().unwrap()],
    );
    run_ok(
        Command::new("tftp")
            .current_dir(&download)
            .args(["-m", "binary", "127.0.0.1", &setup.port.to_string()])
            .args(["-c", "get", "file.bin"]),
        TIMEOUT,
    );
    let got = fs::read(download.join("file.bin")).unwrap_or_default();
    assert!(
        got == data_bytes,
        "tftp'ed file differs; log:\n{}",
        daemon.log()
    );
    daemon.wait_for_log("START: tftp");
}
