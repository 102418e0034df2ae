//! `oxinetd --check` and start-up with bad configurations, run as users run it.
//!
//! Every error test asserts the exit code and that one stderr line has the contract's
//! `FILE:LINE: service NAME: key KEY: MESSAGE` shape for the offending key.

use crate::common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Oxinetd, check_file, free_port, tcp_request, v4};

/// A configuration laid out in its own temp dir: the main file plus any included files.
struct Conf {
    dir: tempfile::TempDir,
}

impl Conf {
    fn new(main: &str) -> Conf {
        common::trusted_umask();
        let dir = tempfile::tempdir().expect("temp dir");
        fs::write(dir.path().join("oxinetd.toml"), main).expect("write main file");
        Conf { dir }
    }

    fn main(&self) -> PathBuf {
        self.dir.path().join("oxinetd.toml")
    }

    /// Writes `text` at `rel` (relative to the main file's folder) and returns its path.
    fn add(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(rel);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(&path, text).expect("write included file");
        path
    }

    fn check(&self) -> Output {
        check_file(&self.main())
    }
}

/// The 1-based number of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> u32 {
    let index = text
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in config"));
    u32::try_from(index + 1).expect("small line number")
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn expect_invalid(out: &Output) -> String {
    let stderr = stderr_of(out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected exit 1 for an invalid config; stderr:\n{stderr}"
    );
    stderr
}

fn expect_ok(out: &Output, services: usize) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = stderr_of(out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "expected a valid config; stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let want = format!("configuration OK: {services} service");
    assert!(
        stdout.contains(&want) || stderr.contains(&want),
        "expected {want:?}; stdout:\n{stdout}\nstderr:\n{stderr}"
    );
}

/// Finds the error line for `service`/`key` and checks it names `file` and one of `lines`
/// (`None` standing for "no line number", allowed where the key is absent from the file).
fn error_line<'a>(
    stderr: &'a str,
    file: &Path,
    lines: &[Option<u32>],
    service: &str,
    key: &str,
) -> &'a str {
    let tail = format!(": service {service}: key {key}:");
    let file = file.display().to_string();
    let found = stderr.lines().find(|l| {
        l.find(&tail).is_some_and(|at| {
            let head = &l[..at];
            lines.iter().any(|n| match n {
                Some(n) => head.ends_with(&format!("{file}:{n}")),
                None => head.ends_with(&file),
            })
        })
    });
    found.unwrap_or_else(|| {
        panic!("no error line `{file}:{lines:?}{tail} ...` in stderr:\n{stderr}")
    })
}

/// Like `error_line` where the error may sit on any of `keys`, each on its own line.
fn error_on_any(stderr: &str, file: &Path, service: &str, keys: &[(&str, u32)]) {
    let Some((key, line)) = keys
        .iter()
        .find(|(key, _)| stderr.contains(&format!(": service {service}: key {key}:")))
    else {
        panic!("no error for service {service} on any of {keys:?} in stderr:\n{stderr}");
    };
    error_line(stderr, file, &[Some(*line)], service, key);
}

/// An exec'd stream service that is valid as it stands; tests add or break one key.
const GOOD: &str = r#"[service.svc]
socket_type = "stream"
wait = false
user = "root"
server = "/bin/cat"
port = 40100
"#;

/// `GOOD` with the line holding `from` replaced by `to` (an empty `to` drops the line).
fn good_with(from: &str, to: &str) -> String {
    let mut out = String::new();
    for l in GOOD.lines() {
        let l = if l.starts_with(from) { to } else { l };
        if !l.is_empty() {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

fn assert_key_error(text: &str, key_line: &str, key: &str) -> String {
    let conf = Conf::new(text);
    let stderr = expect_invalid(&conf.check());
    let line = line_of(text, key_line);
    error_line(&stderr, &conf.main(), &[Some(line)], "svc", key).to_owned()
}

#[test]
fn unknown_key_is_reported_with_did_you_mean() {
    let text = good_with("socket_type", "sockettype = \"stream\"");
    let line = assert_key_error(&text, "sockettype", "sockettype");
    let hint = &line[line.find("key sockettype:").expect("key") + 15..];
    assert!(hint.contains("socket_type"), "no did-you-mean hint: {line}");
}

#[test]
fn port_that_is_not_a_number_is_rejected() {
    assert_key_error(&good_with("port", "port = \"abc\""), "port", "port");
}

#[test]
fn port_out_of_range_is_rejected() {
    assert_key_error(&good_with("port", "port = 70000"), "port", "port");
}

#[test]
fn dgram_with_tcp_is_rejected() {
    let text = format!(
        "{}protocol = \"tcp\"\n",
        good_with("socket_type", "socket_type = \"dgram\"")
    )
    .replace("wait = false", "wait = true");
    let conf = Conf::new(&text);
    let stderr = expect_invalid(&conf.check());
    let keys = [
        ("protocol", line_of(&text, "protocol")),
        ("socket_type", line_of(&text, "socket_type")),
    ];
    error_on_any(&stderr, &conf.main(), "svc", &keys);
}

#[test]
fn external_dgram_without_wait_is_rejected() {
    let text = good_with("socket_type", "socket_type = \"dgram\"");
    let conf = Conf::new(&text);
    let stderr = expect_invalid(&conf.check());
    let keys = [
        ("wait", line_of(&text, "wait")),
        ("socket_type", line_of(&text, "socket_type")),
    ];
    error_on_any(&stderr, &conf.main(), "svc", &keys);
}

#[test]
fn exec_service_without_server_is_rejected() {
    let text = good_with("server", "");
    let conf = Conf::new(&text);
    let stderr = expect_invalid(&conf.check());
    let header = Some(line_of(&text, "[service.svc]"));
    error_line(&stderr, &conf.main(), &[None, header], "svc", "server");
}

#[test]
fn relative_server_is_rejected() {
    assert_key_error(
        &good_with("server", "server = \"bin/cat\""),
        "server",
        "server",
    );
}

#[test]
fn server_without_execute_bit_is_rejected() {
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("not-executable");
    fs::write(&script, "#!/bin/sh\necho hi\n").expect("write");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o644)).expect("chmod");
    let server = format!("server = \"{}\"", script.display());
    assert_key_error(&good_with("server", &server), "server", "server");
}

#[test]
fn unknown_user_is_rejected() {
    let text = good_with("user", "user = \"no_such_user_oxinetd\"");
    assert_key_error(&text, "user", "user");
}

#[test]
fn exec_service_without_user_is_rejected_as_root() {
    let text = good_with("user", "");
    let conf = Conf::new(&text);
    let stderr = expect_invalid(&conf.check());
    let header = Some(line_of(&text, "[service.svc]"));
    error_line(&stderr, &conf.main(), &[None, header], "svc", "user");
}

#[test]
fn internal_service_without_user_is_accepted() {
    let conf = Conf::new(
        r#"[service.echo]
type = "INTERNAL"
socket_type = "stream"
port = 40101
"#,
    );
    expect_ok(&conf.check(), 1);
}

#[test]
fn enumerations_are_case_insensitive() {
    let conf = Conf::new(
        r#"[service.svc]
socket_type = "STREAM"
protocol = "Tcp"
wait = false
user = "root"
server = "/bin/cat"
port = 40102
flags = ["ipv4", "Reuse"]

[service.echo]
type = "internal"
socket_type = "Dgram"
port = 40103
"#,
    );
    expect_ok(&conf.check(), 2);
}

#[test]
fn wait_yes_string_is_accepted() {
    let conf = Conf::new(&good_with("wait", "wait = \"yes\""));
    expect_ok(&conf.check(), 1);
}

#[test]
fn server_args_array_and_string_are_accepted() {
    let array = good_with(
        "server",
        "server = \"/bin/sh\"\nserver_args = [\"-c\", \"cat\"]",
    );
    let string = good_with("server", "server = \"/bin/sleep\"\nserver_args = \"1 2\"")
        .replace("[service.svc]", "[service.svc2]")
        .replace("40100", "40104");
    let conf = Conf::new(&format!("{array}\n{string}"));
    expect_ok(&conf.check(), 2);
}

#[test]
fn umask_octal_string_and_octal_integer_are_accepted() {
    let a = format!("{}umask = \"022\"\n", GOOD);
    let b = format!("{}umask = 0o022\n", GOOD)
        .replace("[service.svc]", "[service.svc2]")
        .replace("40100", "40105");
    let conf = Conf::new(&format!("{a}\n{b}"));
    expect_ok(&conf.check(), 2);
}

#[test]
fn umask_decimal_integer_is_rejected() {
    assert_key_error(&format!("{GOOD}umask = 22\n"), "umask", "umask");
}

#[test]
fn rlimit_suffixes_and_unlimited_are_accepted() {
    let text = format!(
        "{GOOD}rlimit_data = \"64K\"\nrlimit_stack = \"8M\"\nrlimit_cpu = \"UNLIMITED\"\n\
         rlimit_files = 256\ninstances = \"UNLIMITED\"\n"
    );
    let conf = Conf::new(&text);
    expect_ok(&conf.check(), 1);
}

/// A valid exec'd service `name` on `port` with `server`, plus `extra` lines.
fn exec_service(name: &str, port: &str, server: &str, extra: &str) -> String {
    format!(
        "[service.{name}]\nsocket_type = \"stream\"\nwait = false\nuser = \"root\"\n\
         server = \"{server}\"\nport = {port}\n{extra}\n"
    )
}

#[test]
fn every_error_in_every_file_is_reported_at_once() {
    // One error per bad service, so each must be reported exactly once.
    let main = format!(
        "includedir = \"conf.d\"\n\n{}\n{}\n{}",
        exec_service("bad1", "40110", "/bin/cat", "instancs = 5"),
        exec_service("good", "40111", "/bin/cat", ""),
        exec_service("bad2", "70000", "/bin/cat", ""),
    );
    let a = exec_service("bad3", "40112", "bin/cat", "");
    let b = format!(
        "# comment line first\n{}",
        exec_service("bad4", "40113", "/bin/cat", "nicee = 5")
    );
    let (main, a, b) = (main.as_str(), a.as_str(), b.as_str());
    let conf = Conf::new(main);
    let a_path = conf.add("conf.d/a.toml", a);
    let b_path = conf.add("conf.d/b.toml", b);
    let stderr = expect_invalid(&conf.check());
    let cases = [
        (conf.main(), line_of(main, "instancs"), "bad1", "instancs"),
        (conf.main(), line_of(main, "70000"), "bad2", "port"),
        (a_path, line_of(a, "bin/cat"), "bad3", "server"),
        (b_path, line_of(b, "nicee"), "bad4", "nicee"),
    ];
    for (file, line, service, key) in &cases {
        error_line(&stderr, file, &[Some(*line)], service, key);
        let count = stderr
            .lines()
            .filter(|l| l.contains(&format!(": service {service}:")))
            .count();
        assert_eq!(count, 1, "{service} reported {count} times:\n{stderr}");
    }
    let total = stderr
        .lines()
        .filter(|l| l.contains(": service ") && !l.starts_with("warning:"))
        .count();
    assert_eq!(total, 4, "expected exactly 4 errors:\n{stderr}");
}

/// Runs the binary with `args` in `cwd`, failing the test if it has not exited in 10 s.
fn run_in(cwd: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_oxinetd"))
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn oxinetd");
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            child.kill().ok();
            let out = child.wait_with_output().expect("wait");
            panic!(
                "oxinetd {args:?} still running after 10 s; stderr:\n{}",
                stderr_of(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("wait")
}

#[test]
fn includedir_is_relative_to_the_main_file_not_the_cwd() {
    let main = "includedir = \"conf.d\"\n\n[service.echo]\ntype = \"INTERNAL\"\n\
                socket_type = \"stream\"\nport = 40120\n";
    let conf = Conf::new(main);
    conf.add(
        "conf.d/extra.toml",
        "[service.daytime]\ntype = \"INTERNAL\"\nsocket_type = \"stream\"\nport = 40121\n",
    );
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let main_path = conf.main().display().to_string();
    expect_ok(&run_in(elsewhere.path(), &["--check", "-f", &main_path]), 2);

    // A relative -f path: the includedir must follow the main file, not the cwd.
    let parent = conf.dir.path().parent().expect("parent");
    let name = conf.dir.path().file_name().expect("name").to_string_lossy();
    let rel = format!("{name}/oxinetd.toml");
    expect_ok(&run_in(parent, &["--check", "-f", &rel]), 2);
}

#[test]
fn includedir_skips_backups_hidden_files_and_non_toml() {
    let conf = Conf::new("includedir = \"conf.d\"\n");
    conf.add(
        "conf.d/good.toml",
        "[service.echo]\ntype = \"INTERNAL\"\nsocket_type = \"stream\"\nport = 40130\n",
    );
    let junk = "this is [[ not toml\n";
    conf.add("conf.d/foo.toml~", junk);
    conf.add("conf.d/.hidden.toml", junk);
    conf.add("conf.d/README", junk);
    expect_ok(&conf.check(), 1);
}

#[test]
fn service_duplicated_in_an_included_file_is_rejected() {
    let conf = Conf::new(&format!(
        "includedir = \"conf.d\"\n\n{}",
        exec_service("dup", "40140", "/bin/cat", "")
    ));
    fs::create_dir(conf.dir.path().join("conf.d")).expect("mkdir");
    expect_ok(&conf.check(), 1);

    conf.add(
        "conf.d/a.toml",
        &exec_service("dup", "40141", "/bin/cat", ""),
    );
    let stderr = expect_invalid(&conf.check());
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("service dup") && l.contains(".toml")),
        "no duplicate error naming `service dup` and its file:\n{stderr}"
    );
}

#[test]
fn omitted_port_comes_from_etc_services() {
    let conf = Conf::new("[service.echo]\ntype = \"INTERNAL\"\nsocket_type = \"stream\"\n");
    expect_ok(&conf.check(), 1);
}

#[test]
fn unlisted_service_without_port_is_rejected() {
    let text = good_with("port", "type = \"UNLISTED\"");
    let conf = Conf::new(&text);
    let stderr = expect_invalid(&conf.check());
    let header = Some(line_of(&text, "[service.svc]"));
    error_line(&stderr, &conf.main(), &[None, header], "svc", "port");
}

#[test]
fn good_config_prints_configuration_ok() {
    let conf = Conf::new(&format!(
        "shutdown_grace = 2\n\n[defaults]\nuser = \"root\"\n\n{GOOD}\n\
         [service.echo]\ntype = \"INTERNAL\"\nsocket_type = \"stream\"\nport = 40150\n"
    ));
    expect_ok(&conf.check(), 2);
}

#[test]
fn start_runs_the_good_service_and_logs_the_bad_one() {
    let good = free_port();
    let bad = free_port();
    let daemon = Oxinetd::start(&format!(
        r#"[service.echo]
type = "INTERNAL"
socket_type = "stream"
bind = "127.0.0.1"
port = {good}

[service.bad]
type = "INTERNAL"
socket_type = "stream"
bind = "127.0.0.1"
port = {bad}
sockettyp = "stream"
"#
    ));
    assert_eq!(tcp_request(v4(good), b"ping\n"), b"ping\n");
    let log = daemon.wait_for_log("service bad: key sockettyp");
    let path = daemon.config_path().display().to_string();
    let line = log
        .lines()
        .find(|l| l.contains("service bad: key sockettyp"))
        .expect("error line");
    assert!(line.contains(&path), "error does not name {path}: {line}");
}

#[test]
fn start_with_syntax_error_in_main_file_exits_1() {
    let conf = Conf::new("[service.echo\ntype = \"INTERNAL\"\n");
    let main = conf.main().display().to_string();
    let started = Instant::now();
    let out = run_in(conf.dir.path(), &["-f", &main]);
    let stderr = expect_invalid(&out);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        stderr.contains(&main),
        "stderr does not name {main}:\n{stderr}"
    );
}

#[test]
fn unknown_option_exits_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = run_in(dir.path(), &["--bogus"]);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{}", stderr_of(&out));
}

#[test]
fn version_exits_0() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = run_in(dir.path(), &["--version"]);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr_of(&out));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr_of(&out)
    );
    assert!(
        text.contains(env!("CARGO_PKG_VERSION")),
        "--version does not print the version:\n{text}"
    );
}

/// `dir/name` for a file name of raw bytes, which need not be UTF-8.
fn byte_path(dir: &Path, name: &[u8]) -> PathBuf {
    dir.join(OsStr::from_bytes(name))
}

/// `FILE`'s lines as `--check` prints them: not UTF-8, so shown lossily (U+FFFD).
fn lossy(path: &Path) -> String {
    let shown = path.to_string_lossy().into_owned();
    assert!(shown.contains('\u{fffd}'), "{shown} has no U+FFFD");
    shown
}

fn expect_no_panic(out: &Output) {
    let stderr = stderr_of(out);
    assert!(
        !stderr.contains("panicked"),
        "oxinetd panicked; stderr:\n{stderr}"
    );
}

#[test]
fn check_takes_a_main_file_whose_name_is_not_utf8() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = byte_path(dir.path(), b"caf\xe9.toml");
    fs::write(&path, GOOD).expect("write main file");
    let out = check_file(&path);
    expect_no_panic(&out);
    expect_ok(&out, 1);

    let text = good_with("port", "port = 70000");
    fs::write(&path, &text).expect("write main file");
    let out = check_file(&path);
    expect_no_panic(&out);
    let stderr = expect_invalid(&out);
    let want = format!(
        "{}:{}: service svc: key port: port 70000 is out of range",
        lossy(&path),
        line_of(&text, "port")
    );
    assert!(
        stderr.lines().any(|l| l.starts_with(&want)),
        "no line starting {want:?} in stderr:\n{stderr}"
    );
    assert!(stderr.contains("caf\u{fffd}.toml:"), "{stderr}");
}

#[test]
fn check_reads_an_included_file_whose_name_is_not_utf8() {
    let conf = Conf::new("includedir = \"conf.d\"\n");
    let included = byte_path(&conf.dir.path().join("conf.d"), b"\xff-echo.toml");
    fs::create_dir(included.parent().expect("parent")).expect("mkdir");
    let echo = "[service.echo]\ntype = \"INTERNAL\"\nsocket_type = \"stream\"\nport = 40160\n";
    fs::write(&included, echo).expect("write included file");
    // Ends in .toml as bytes, so it is read like any other.
    expect_ok(&conf.check(), 1);

    let bad = echo.replace("40160", "\"x\"");
    fs::write(&included, &bad).expect("write included file");
    let out = conf.check();
    expect_no_panic(&out);
    let stderr = expect_invalid(&out);
    let want = format!(
        "{}:{}: service echo: key port: expected a number",
        lossy(&included),
        line_of(&bad, "port")
    );
    assert!(
        stderr.lines().any(|l| l.starts_with(&want)),
        "no line starting {want:?} in stderr:\n{stderr}"
    );
}

#[test]
fn an_unknown_argument_that_is_not_utf8_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_oxinetd"))
        .arg(OsStr::from_bytes(b"--caf\xe9"))
        .stdin(Stdio::null())
        .output()
        .expect("run oxinetd");
    expect_no_panic(&out);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("unknown argument `--caf\u{fffd}`"),
        "stderr:\n{}",
        stderr_of(&out)
    );
}

/// The lines of `--check`'s stderr that are errors (not warnings, not the summary).
fn error_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains(": service ") && !l.starts_with("warning:"))
        .collect()
}

#[test]
fn a_bad_socket_type_hides_no_other_error_and_errors_come_in_line_order() {
    // server (line 2) is written before socket_type (line 3).
    let text = "[service.svc]\nserver = \"bin/cat\"\nsocket_type = \"strem\"\nwait = false\n\
                user = \"root\"\nport = 40170\n";
    let conf = Conf::new(text);
    let stderr = expect_invalid(&conf.check());
    let main = conf.main().display().to_string();
    assert_eq!(
        error_lines(&stderr),
        [
            format!("{main}:2: service svc: key server: bin/cat is not an absolute path"),
            format!(
                "{main}:3: service svc: key socket_type: `strem` is not one of: stream, dgram, seqpacket"
            ),
        ],
        "stderr:\n{stderr}"
    );
    assert_eq!(stderr.lines().last(), Some("2 errors"), "stderr:\n{stderr}");
}

#[test]
fn one_error_is_counted_in_the_singular() {
    let conf = Conf::new(&good_with("socket_type", "socket_type = \"strem\""));
    let stderr = expect_invalid(&conf.check());
    assert_eq!(error_lines(&stderr).len(), 1, "stderr:\n{stderr}");
    assert_eq!(stderr.lines().last(), Some("1 error"), "stderr:\n{stderr}");
}

#[test]
fn errors_of_several_services_and_files_come_sorted_by_file_and_line() {
    // In `later`, the bad `nice` is read before `server` is checked, yet comes after it.
    let main = format!(
        "includedir = \"conf.d\"\n\n{}{}",
        exec_service("late", "70000", "/bin/cat", ""),
        exec_service("later", "40171", "bin/cat", "nice = 40"),
    );
    let inc = exec_service("inc", "\"x\"", "/bin/cat", "");
    let conf = Conf::new(&main);
    let included = conf.add("conf.d/a.toml", &inc);
    let stderr = expect_invalid(&conf.check());
    let (main_path, inc_path) = (conf.main(), included);
    let places: Vec<&str> = error_lines(&stderr)
        .into_iter()
        .map(|l| &l[..l.find(": service ").expect("service")])
        .collect();
    // By path: `conf.d/a.toml` sorts before `oxinetd.toml`.
    let want = [
        format!("{}:{}", inc_path.display(), line_of(&inc, "port")),
        format!("{}:{}", main_path.display(), line_of(&main, "70000")),
        format!("{}:{}", main_path.display(), line_of(&main, "\"bin/cat\"")),
        format!("{}:{}", main_path.display(), line_of(&main, "nice")),
    ];
    assert_eq!(places, want, "stderr:\n{stderr}");
    assert_eq!(stderr.lines().last(), Some("4 errors"), "stderr:\n{stderr}");
}

/// Issue 12, hole 3: errors that named no place. Each now names its file and line; an
/// unreadable `includedir` names the main file's `includedir` line.
#[test]
fn errors_name_a_file_and_a_line_even_without_a_key() {
    let conf = Conf::new("# the services\nincludedir = \"conf.d\"\n\n[defaults]\ninstances = 4\n");
    fs::create_dir(conf.dir.path().join("conf.d")).expect("mkdir conf.d");
    let bad_utf8 = conf.dir.path().join("conf.d/latin1.toml");
    fs::write(&bad_utf8, b"[service.caf\xe9]\n").expect("write latin1.toml");
    let not_a_table = conf.add("conf.d/echo.toml", "\n[service]\necho = 1\n");
    let deep = conf.add(
        "conf.d/deep.toml",
        &format!("# deep\n{}x = 1\n", "a.".repeat(100)),
    );
    let err = expect_invalid(&conf.check());
    for want in [
        format!(
            "{}:1: not UTF-8: byte 0xe9 at column 13",
            bad_utf8.display()
        ),
        format!(
            "{}:3: service echo: expected a table, found an integer",
            not_a_table.display()
        ),
        format!("{}:2: TOML syntax error: recursion limit", deep.display()),
    ] {
        assert!(
            err.lines().any(|line| line == want),
            "no line {want:?} in:\n{err}"
        );
    }

    // A folder that cannot be read (a file where the folder should be).
    let conf = Conf::new("# the services\nincludedir = \"conf.d\"\n");
    conf.add("conf.d", "");
    let err = expect_invalid(&conf.check());
    let want = format!(
        "{}:2: key includedir: cannot read the folder ",
        conf.main().display()
    );
    assert!(
        err.lines().any(|line| line.starts_with(&want)),
        "no line {want:?}... in:\n{err}"
    );
}

/// Issue 12, hole 5: a server run as root from a file anyone could have written. The
/// `server` binary, a config file and the include directory each must be writable by
/// root (or oxinetd's own user) alone, unless `trust_insecure_files = true` says otherwise.
#[test]
fn a_root_server_from_a_writable_file_is_refused() {
    let conf = Conf::new("");
    let server = conf.add("server.sh", "#!/bin/sh\necho hi\n");
    let service = |user: &str| {
        format!(
            "[service.svc]\nsocket_type = \"stream\"\nwait = false\nport = {}\nuser = \"{user}\"\n\
             server = {}\n",
            free_port(),
            common::toml_string(server.to_str().expect("utf-8 path"))
        )
    };
    fs::set_permissions(&server, fs::Permissions::from_mode(0o777)).expect("chmod server");
    fs::write(conf.main(), service("root")).expect("write main");
    let err = expect_invalid(&conf.check());
    let want = format!(
        "{}:6: service svc: key server: runs as root, but its server {} is writable by group and others (mode 0777)",
        conf.main().display(),
        server.display()
    );
    assert!(
        err.lines().any(|line| line.starts_with(&want)),
        "no {want:?} in:\n{err}"
    );
    // The override, or a server that does not run as root.
    fs::write(
        conf.main(),
        format!("trust_insecure_files = true\n{}", service("root")),
    )
    .unwrap();
    expect_ok(&conf.check(), 1);
    fs::write(conf.main(), service("nobody")).unwrap();
    expect_ok(&conf.check(), 1);

    // A group-writable include directory.
    fs::set_permissions(&server, fs::Permissions::from_mode(0o755)).expect("chmod server");
    fs::write(conf.main(), "includedir = \"conf.d\"\n").unwrap();
    let included = conf.add("conf.d/svc.toml", &service("root"));
    let dir = included.parent().expect("conf.d");
    expect_ok(&conf.check(), 1);
    fs::set_permissions(dir, fs::Permissions::from_mode(0o775)).expect("chmod conf.d");
    let err = expect_invalid(&conf.check());
    let want = format!(
        "{}:1: service svc: runs as root, but the include directory {} is writable by its group (mode 0775)",
        included.display(),
        dir.display()
    );
    assert!(
        err.lines().any(|line| line.starts_with(&want)),
        "no {want:?} in:\n{err}"
    );
    // A world-writable main file.
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).expect("chmod conf.d");
    fs::set_permissions(conf.main(), fs::Permissions::from_mode(0o666)).expect("chmod main");
    let err = expect_invalid(&conf.check());
    assert!(
        err.contains(&format!(
            "the configuration file {} is writable by group and others (mode 0666)",
            conf.main().display()
        )),
        "{err}"
    );
}

/// The shipped configuration, from a git checkout (files 0644, folders 0755), passes
/// `--check` with its root services.
#[test]
fn the_shipped_configuration_passes_check() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let services = fs::read_dir(root.join("services")).expect("services/");
    let mut files: Vec<PathBuf> = services.map(|entry| entry.expect("entry").path()).collect();
    files.push(root.join("etc/oxinetd.toml"));
    for path in files {
        let out = check_file(&path);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}:\n{}",
            path.display(),
            stderr_of(&out)
        );
    }
}

/// Regression: `oxinetd --help | head -1` panicked ("failed printing to stdout") when the
/// reader had gone: output nobody reads is dropped, and the exit code stays the command's.
#[test]
fn output_to_a_closed_pipe_is_no_panic() {
    for args in [
        &["--help"][..],
        &["--version"],
        &["--check", "-f", "etc/oxinetd.toml"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_oxinetd"))
            .args(args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?}\n{stderr}", out.status);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
