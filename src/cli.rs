//! The command line, start-up order and exit codes.
//!
//! Exit codes: 0 success; 1 the configuration is invalid (`--check` found an error, or
//! the main file is unreadable or invalid at start); 2 the command line is wrong;
//! 111 the system failed us (epoll, signalfd, pidfile, the loop itself).

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::ExitCode;

use log::{LevelFilter, error, info};

use crate::config;
use crate::daemon::{self, Daemon};
use crate::logging::escaped;
use crate::system::System;

pub const EXIT_CONFIG: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_SYSTEM: u8 = 111;

const USAGE: &str =
    "usage: oxinetd [-f FILE] [--check] [--pidfile FILE] [-d|--debug] [--version] [-h|--help]

  -f FILE          main configuration file (default /etc/oxinetd.toml)
  --check          report every configuration error and exit: 0 if none, 1 if any
  --pidfile FILE   write the daemon's pid to FILE once every service listens
  -d, --debug      log debug lines (the loaded configuration, every datagram error)
  --version        print the version
  -h, --help       print this help

Runs in the foreground and logs to stderr. SIGHUP reloads; SIGTERM or SIGINT stop.
Exit codes: 0 ok, 1 invalid configuration, 2 usage, 111 system failure.";

#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    pub config: PathBuf,
    pub check: bool,
    pub pidfile: Option<PathBuf>,
    pub debug: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Run(Options),
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
    let mut args = args.into_iter();
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

pub fn main() -> ExitCode {
    let options = match parse(std::env::args_os().skip(1)) {
        Ok(Command::Run(options)) => options,
        Ok(Command::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("oxinetd {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("oxinetd: {}\n{USAGE}", escaped(&message));
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
        eprintln!("warning: {}", escaped(&warning.to_string()));
    }
    for error in &config.errors {
        eprintln!("{}", escaped(&error.to_string()));
    }
    if config.errors.is_empty() {
        println!(
            "configuration OK: {}",
            counted(config.services.len(), "service")
        );
        ExitCode::SUCCESS
    } else {
        eprintln!("{}", counted(config.errors.len(), "error"));
        ExitCode::from(EXIT_CONFIG)
    }
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
    let config = config::load(&config_path, &System::new());
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
    let listening = daemon.start(config);
    if let Some(pidfile) = &options.pidfile
        && let Err(error) = std::fs::write(pidfile, format!("{}\n", std::process::id()))
    {
        error!("cannot write {}: {error}", pidfile.display());
        return EXIT_SYSTEM;
    }
    info!("ready: {listening} services");
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
    fn summaries_count_in_the_singular_and_plural() {
        assert_eq!(counted(0, "service"), "0 services");
        assert_eq!(counted(1, "error"), "1 error");
        assert_eq!(counted(2, "error"), "2 errors");
    }
}
