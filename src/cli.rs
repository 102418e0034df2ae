//! The command line, start-up order and exit codes.
//!
//! Exit codes: 0 success; 1 the configuration is invalid (`--check` found an error, or
//! the main file is unreadable or invalid at start); 2 the command line is wrong;
//! 111 the system failed us (epoll, signalfd, pidfile, the loop itself).
//! `oxinetd import`: 0 every service converted (notes allowed), 1 at least one could
//! not be (or nothing could be read or written), 2 the command line is wrong.
//! `oxinetd status` and `oxinetd reload` (clients of the control socket): 0 done, 1 the
//! reload refused something, 2 the command line is wrong, 111 the daemon could not be
//! asked (no `control_socket` in the file, nobody answers, not permitted).

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use log::{LevelFilter, error, info};

use crate::config;
use crate::daemon::{self, Daemon};
use crate::logging::escaped;
use crate::system::System;

/// `println!` to stdout or stderr, without its panic when the reader has gone away
/// (`oxinetd --help | head`): what cannot be written is dropped.
macro_rules! say {
    ($stream:ident, $($arg:tt)*) => {{
        let _ = writeln!(io::$stream(), $($arg)*);
    }};
}

pub const EXIT_CONFIG: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_SYSTEM: u8 = 111;

const USAGE: &str =
    "usage: oxinetd [-f FILE] [--check] [--pidfile FILE] [-d|--debug] [--version] [-h|--help]
       oxinetd import [--inetd] FILE [--to DIR]
       oxinetd status [-f FILE] [--json]
       oxinetd reload [-f FILE]

  -f FILE          main configuration file (default /etc/oxinetd.toml)
  --check          report every configuration error and exit: 0 if none, 1 if any
  --pidfile FILE   write the daemon's pid to FILE once every service listens
  -d, --debug      log debug lines (the loaded configuration, every datagram error)
  --version        print the version
  -h, --help       print this help

Runs in the foreground and logs to stderr. SIGHUP reloads; SIGTERM or SIGINT stop;
SIGUSR1 writes the status table to stderr.
Exit codes: 0 ok, 1 invalid configuration, 2 usage, 111 system failure.

status and reload ask the running daemon through the control_socket that FILE sets
(default /etc/oxinetd.toml). status prints every service's state and counters, as a
table or, with --json, in the format of docs/status.md. reload applies the
configuration and waits: exit 0 and one line when it applied without any error, exit
1 and every error (FILE:LINE: ...) when anything was refused. Exit 111: the daemon
could not be asked.

import converts an xinetd configuration (FILE: xinetd.conf with its include and
includedir, or one service file; with --inetd, an inetd.conf) to oxinetd's TOML. Each
value that changes meaning or has no equivalent gets a `# import:` comment and a
FILE:LINE line on stderr. --to DIR writes DIR/oxinetd.toml and DIR/oxinetd.d/NAME.toml
(never over an existing file); without it, one document goes to stdout.
Exit codes: 0 all converted, 1 some service could not be, 2 usage.";

const IMPORT_USAGE: &str = "usage: oxinetd import [--inetd] FILE [--to DIR]";
const CONTROL_USAGE: &str = "usage: oxinetd status [-f FILE] [--json]
       oxinetd reload [-f FILE]";

/// How long `oxinetd status` or `reload` waits for the daemon's answer: a reload may
/// register RPC services (up to a second each).
const CONTROL_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    pub config: PathBuf,
    pub check: bool,
    pub pidfile: Option<PathBuf>,
    pub debug: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub struct ImportOptions {
    pub inetd: bool,
    pub file: PathBuf,
    pub to: Option<PathBuf>,
}

/// `status` or `reload`: a request to the running daemon.
#[derive(Debug, PartialEq, Eq)]
pub struct ControlOptions {
    pub config: PathBuf,
    pub reload: bool,
    pub json: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Run(Options),
    Import(ImportOptions),
    Control(ControlOptions),
    Help,
    Version,
}

/// Parses the arguments after the program name. They are `OsString`s: a path is bytes
/// and need not be UTF-8, so `-f` and `--pidfile` keep theirs as given; flags are
/// compared as bytes, and an unknown argument is shown lossily.
pub fn parse<I: IntoIterator<Item = OsString>>(args: I) -> Result<Command, String> {
    let mut options = Options {
        config: PathBuf::from("/etc/oxinetd.toml"),
        check: false,
        pidfile: None,
        debug: false,
    };
    let mut args = args.into_iter().peekable();
    if args.peek().is_some_and(|arg| arg.as_bytes() == b"import") {
        args.next();
        return parse_import(args);
    }
    if let Some(reload) = args.peek().and_then(|arg| match arg.as_bytes() {
        b"status" => Some(false),
        b"reload" => Some(true),
        _ => None,
    }) {
        args.next();
        return parse_control(args, reload);
    }
    while let Some(arg) = args.next() {
        match arg.as_bytes() {
            b"-f" | b"--config" => {
                options.config = args.next().ok_or("-f needs a file")?.into();
            }
            b"--pidfile" => {
                options.pidfile = Some(args.next().ok_or("--pidfile needs a file")?.into());
            }
            b"--check" => options.check = true,
            b"-d" | b"--debug" => options.debug = true,
            b"-h" | b"--help" => return Ok(Command::Help),
            b"--version" => return Ok(Command::Version),
            _ => return Err(format!("unknown argument `{}`", arg.to_string_lossy())),
        }
    }
    Ok(Command::Run(options))
}

/// `import [--inetd] FILE [--to DIR]`, in any order.
fn parse_import<I: Iterator<Item = OsString>>(mut args: I) -> Result<Command, String> {
    let mut inetd = false;
    let mut file = None;
    let mut to = None;
    while let Some(arg) = args.next() {
        match arg.as_bytes() {
            b"--inetd" => inetd = true,
            b"--to" => to = Some(args.next().ok_or("import: --to needs a folder")?.into()),
            b"-h" | b"--help" => return Ok(Command::Help),
            [b'-', _, ..] => {
                return Err(format!(
                    "import: unknown argument `{}`",
                    arg.to_string_lossy()
                ));
            }
            _ if file.is_some() => {
                return Err(format!(
                    "import: one FILE only (`{}` is a second)",
                    arg.to_string_lossy()
                ));
            }
            _ => file = Some(PathBuf::from(arg)),
        }
    }
    let file = file.ok_or("import needs a FILE")?;
    Ok(Command::Import(ImportOptions { inetd, file, to }))
}

/// `status [-f FILE] [--json]` or `reload [-f FILE]`.
fn parse_control<I: Iterator<Item = OsString>>(
    mut args: I,
    reload: bool,
) -> Result<Command, String> {
    let command = if reload { "reload" } else { "status" };
    let mut options = ControlOptions {
        config: PathBuf::from("/etc/oxinetd.toml"),
        reload,
        json: false,
    };
    while let Some(arg) = args.next() {
        match arg.as_bytes() {
            b"-f" | b"--config" => {
                options.config = args
                    .next()
                    .ok_or(format!("{command}: -f needs a file"))?
                    .into();
            }
            b"--json" if !reload => options.json = true,
            b"-h" | b"--help" => return Ok(Command::Help),
            _ => {
                return Err(format!(
                    "{command}: unknown argument `{}`",
                    arg.to_string_lossy()
                ));
            }
        }
    }
    Ok(Command::Control(options))
}

pub fn main() -> ExitCode {
    let options = match parse(std::env::args_os().skip(1)) {
        Ok(Command::Run(options)) => options,
        Ok(Command::Import(options)) => return import(&options),
        Ok(Command::Control(options)) => return control(&options),
        Ok(Command::Help) => {
            say!(stdout, "{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            say!(stdout, "oxinetd {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(message) if message.starts_with("import") => {
            say!(stderr, "oxinetd: {message}\n{IMPORT_USAGE}");
            return ExitCode::from(EXIT_USAGE);
        }
        Err(message) if message.starts_with("status") || message.starts_with("reload") => {
            say!(stderr, "oxinetd: {}\n{CONTROL_USAGE}", escaped(&message));
            return ExitCode::from(EXIT_USAGE);
        }
        Err(message) => {
            say!(stderr, "oxinetd: {}\n{USAGE}", escaped(&message));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if options.check {
        return check(&options);
    }
    crate::logging::init(if options.debug {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    });
    ExitCode::from(run(&options))
}

fn check(options: &Options) -> ExitCode {
    let config = config::load(&options.config, &System::new());
    // Names and values from the files are escaped as every log line is: a newline in a
    // service name must not forge a line of the report.
    for warning in &config.warnings {
        say!(stderr, "warning: {}", escaped(&warning.to_string()));
    }
    for error in &config.errors {
        say!(stderr, "{}", escaped(&error.to_string()));
    }
    if config.errors.is_empty() {
        say!(
            stdout,
            "configuration OK: {}",
            counted(config.services.len(), "service")
        );
        ExitCode::SUCCESS
    } else {
        say!(stderr, "{}", counted(config.errors.len(), "error"));
        ExitCode::from(EXIT_CONFIG)
    }
}

/// Asks the running daemon through its control socket (the protocol is in
/// `daemon::control`): the reply's first line says how it went, the rest is shown.
fn control(options: &ControlOptions) -> ExitCode {
    let file = &options.config;
    let asked = std::fs::read_to_string(file)
        .map_err(|error| format!("cannot read {}: {error}", file.display()))
        .and_then(|text| {
            config::control_socket_of(file, &text).ok_or(format!(
                "{} sets no control_socket: the daemon cannot be asked",
                file.display()
            ))
        })
        .and_then(|socket| {
            let request = match (options.reload, options.json) {
                (true, _) => "reload\n",
                (false, false) => "status\n",
                (false, true) => "status json\n",
            };
            ask(&socket, request).map_err(|error| format!("{}: {error}", socket.display()))
        });
    let reply = match asked {
        Ok(reply) => reply,
        Err(message) => {
            say!(stderr, "oxinetd: {}", escaped(&message));
            return ExitCode::from(EXIT_SYSTEM);
        }
    };
    let (first, body) = reply.split_once('\n').unwrap_or((&reply, ""));
    match first {
        "ok" => {
            let _ = io::stdout().write_all(body.as_bytes());
            ExitCode::SUCCESS
        }
        "failed" => {
            let _ = io::stderr().write_all(body.as_bytes());
            ExitCode::from(EXIT_CONFIG)
        }
        _ => {
            let what = first.strip_prefix("error: ").unwrap_or(first);
            say!(stderr, "oxinetd: the daemon says: {}", escaped(what));
            ExitCode::from(EXIT_SYSTEM)
        }
    }
}

fn ask(socket: &std::path::Path, request: &str) -> io::Result<String> {
    use std::io::Read;
    let mut stream = std::os::unix::net::UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(CONTROL_TIMEOUT))?;
    stream.set_write_timeout(Some(CONTROL_TIMEOUT))?;
    // A daemon that refuses the caller answers and closes at once: the request may
    // then meet a closed socket, and the answer is still there to read.
    let written = stream.write_all(request.as_bytes());
    let mut reply = Vec::new();
    let read = stream.read_to_end(&mut reply);
    if reply.is_empty() {
        written?;
        read?;
        return Err(io::Error::other("the daemon closed without answering"));
    }
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

/// Notes to stderr, the result to stdout or to `--to DIR`.
fn import(options: &ImportOptions) -> ExitCode {
    let result = if options.inetd {
        std::fs::read_to_string(&options.file)
            .map(|text| crate::import::inetd(&options.file, &text))
            .map_err(|error| format!("{}: {error}", options.file.display()))
    } else {
        crate::import::xinetd(&options.file, &crate::import::Disk)
    };
    let imported = match result {
        Ok(imported) => imported,
        Err(message) => {
            say!(stderr, "oxinetd import: {message}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    for note in imported.notes() {
        say!(stderr, "{note}");
    }
    match &options.to {
        Some(dir) => {
            if let Err(message) = write_files(dir, &imported.files()) {
                say!(stderr, "oxinetd import: {message}");
                return ExitCode::from(EXIT_CONFIG);
            }
        }
        None => {
            let _ = io::stdout().write_all(imported.single().as_bytes());
        }
    }
    let failed = imported.failed();
    if failed > 0 {
        say!(
            stderr,
            "oxinetd import: {} not converted (written with `disable = true`)",
            counted(failed, "service")
        );
        return ExitCode::from(EXIT_CONFIG);
    }
    ExitCode::SUCCESS
}

/// Writes every file or none: an existing one is named and nothing is written.
fn write_files(dir: &std::path::Path, files: &[(PathBuf, String)]) -> Result<(), String> {
    if let Some((path, _)) = files.iter().find(|(path, _)| dir.join(path).exists()) {
        return Err(format!(
            "{} exists: not overwritten, nothing written",
            dir.join(path).display()
        ));
    }
    for (path, text) in files {
        let path = dir.join(path);
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| {
                use std::io::Write;
                // create_new: a file that appeared since the check is still not replaced.
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)?
                    .write_all(text.as_bytes())
            });
        written.map_err(|error| format!("{}: {error}", path.display()))?;
        say!(stderr, "oxinetd import: wrote {}", path.display());
    }
    Ok(())
}

/// `1 error`, `2 errors`.
fn counted(n: usize, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        n => format!("{n} {noun}s"),
    }
}

fn run(options: &Options) -> u8 {
    crate::process::sanitize_fds();
    // Before anything can spawn: signals go to the signalfd.
    if let Err(error) = daemon::block_signals() {
        error!("cannot block signals: {error}");
        return EXIT_SYSTEM;
    }
    // Absolute, so a reload resolves includedir the same way whatever the cwd.
    let config_path =
        std::path::absolute(&options.config).unwrap_or_else(|_| options.config.clone());
    let (config, cache) = config::load_cached(&config_path, &System::new(), None);
    daemon::log_diagnostics(&config);
    if config.fatal {
        error!(
            "{}: invalid main configuration file, not starting",
            options.config.display()
        );
        return EXIT_CONFIG;
    }
    for spec in &config.services {
        log::debug!("loaded: {spec:?}");
    }
    let mut daemon = match Daemon::new(&config_path, config.syslog_socket.clone()) {
        Ok(daemon) => daemon,
        Err(error) => {
            error!("cannot set up the event loop: {error}");
            return EXIT_SYSTEM;
        }
    };
    let listening = daemon.start(config, cache);
    if let Some(pidfile) = &options.pidfile
        && let Err(error) = std::fs::write(pidfile, format!("{}\n", std::process::id()))
    {
        error!("cannot write {}: {error}", pidfile.display());
        return EXIT_SYSTEM;
    }
    info!("ready: {listening} services");
    daemon.ready();
    let result = daemon.run();
    if let Some(pidfile) = &options.pidfile {
        let _ = std::fs::remove_file(pidfile);
    }
    match result {
        Ok(()) => 0,
        Err(error) => {
            error!("event loop failed: {error}");
            EXIT_SYSTEM
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    fn args(line: &str) -> Result<Command, String> {
        parse(line.split_whitespace().map(OsString::from))
    }

    fn raw(words: &[&[u8]]) -> Result<Command, String> {
        parse(
            words
                .iter()
                .map(|word| OsStr::from_bytes(word).to_os_string()),
        )
    }

    #[test]
    fn command_lines() {
        let Command::Run(options) = args("-f x.toml --check --pidfile p -d").unwrap() else {
            panic!("a run")
        };
        assert_eq!(options.config, PathBuf::from("x.toml"));
        assert!(options.check && options.debug);
        assert_eq!(options.pidfile, Some(PathBuf::from("p")));
        assert_eq!(args("--version"), Ok(Command::Version));
        assert_eq!(args("-d --help --bogus"), Ok(Command::Help));
        assert!(args("--bogus").is_err());
        assert!(args("-f").is_err());
        assert!(args("--check --pidfile").is_err());
    }

    /// Paths are bytes: `-f` and `--pidfile` keep them as given, even when not UTF-8.
    #[test]
    fn paths_that_are_not_utf8_are_kept_as_bytes() {
        let Command::Run(options) = raw(&[
            b"--check",
            b"-f",
            b"/etc/caf\xe9.toml",
            b"--pidfile",
            b"/run/\xff\xfe.pid",
        ])
        .unwrap() else {
            panic!("a run")
        };
        assert!(options.check);
        assert_eq!(options.config.as_os_str().as_bytes(), b"/etc/caf\xe9.toml");
        assert_eq!(
            options.pidfile.unwrap().as_os_str().as_bytes(),
            b"/run/\xff\xfe.pid"
        );
        let Command::Run(options) = raw(&[b"--config", b"\x80"]).unwrap() else {
            panic!("a run")
        };
        assert_eq!(options.config.as_os_str().as_bytes(), b"\x80");
    }

    /// An unknown argument that is not UTF-8 is a usage error showing it lossily.
    #[test]
    fn unknown_arguments_that_are_not_utf8_are_shown_lossily() {
        assert_eq!(
            raw(&[b"--check", b"--caf\xe9"]),
            Err("unknown argument `--caf\u{fffd}`".to_string())
        );
        // A flag's bytes followed by more bytes are not the flag.
        assert!(raw(&[b"--check\xff"]).is_err());
    }

    #[test]
    fn import_command_lines() {
        let want = |inetd: bool, file: &str, to: Option<&str>| {
            Ok(Command::Import(ImportOptions {
                inetd,
                file: PathBuf::from(file),
                to: to.map(PathBuf::from),
            }))
        };
        assert_eq!(
            args("import /etc/xinetd.conf"),
            want(false, "/etc/xinetd.conf", None)
        );
        assert_eq!(
            args("import --inetd i.conf --to out"),
            want(true, "i.conf", Some("out"))
        );
        assert_eq!(
            args("import --to out --inetd i.conf"),
            want(true, "i.conf", Some("out"))
        );
        assert_eq!(args("import --help"), Ok(Command::Help));
        let errors = [
            ("import", "needs a FILE"),
            ("import a b", "one FILE only"),
            ("import a --to", "--to needs a folder"),
            ("import a --check", "unknown argument `--check`"),
        ];
        for (line, needle) in errors {
            let message = args(line).unwrap_err();
            assert!(message.starts_with("import"), "{line}: {message}");
            assert!(message.contains(needle), "{line}: {message}");
        }
        // `import` is a subcommand only as the first word; the daemon's line is unchanged.
        assert!(args("-f import").is_ok());
        assert!(args("--check import").is_err());
    }

    #[test]
    fn control_command_lines() {
        let want = |config: &str, reload, json| {
            Ok(Command::Control(ControlOptions {
                config: PathBuf::from(config),
                reload,
                json,
            }))
        };
        assert_eq!(args("status"), want("/etc/oxinetd.toml", false, false));
        assert_eq!(args("status --json -f a.toml"), want("a.toml", false, true));
        assert_eq!(args("reload -f a.toml"), want("a.toml", true, false));
        for (line, needle) in [
            ("reload --json", "reload: unknown argument `--json`"),
            ("status -f", "status: -f needs a file"),
            ("status --check", "status: unknown argument"),
        ] {
            let message = args(line).unwrap_err();
            assert!(message.starts_with(needle), "{line}: {message}");
        }
        // Subcommands only as the first word.
        assert!(args("--check status").is_err());
    }

    #[test]
    fn summaries_count_in_the_singular_and_plural() {
        assert_eq!(counted(0, "service"), "0 services");
        assert_eq!(counted(1, "error"), "1 error");
        assert_eq!(counted(2, "error"), "2 errors");
    }
}
