//! What each fuzz target checks: one function per target, from libFuzzer's bytes to
//! oxinetd's pure layers, panicking on anything they must never do.
//!
//! Shared by the fuzz targets (fuzz_targets/NAME.rs, one line each) and by
//! tests/fuzz_corpus.rs, which compiles this file on stable and replays corpus/NAME/ and
//! regressions/NAME/ through the same functions: CI guards every input ever kept without
//! nightly. Only std and oxinetd's public API are used here, so both can build it.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use oxinetd::access::{self, AccessTimes, Decision, Rules};
use oxinetd::config::spec::Protocol;
use oxinetd::config::{self, Config, ConfigError, FileKind, FileStatus, Host, UserEntry};
use oxinetd::limits;
use oxinetd::tcpmux::{self, Request};

/// What a target runs on one input; it panics on a finding.
pub type Check = fn(&[u8]);

/// Every target, by the name of its folder under corpus/ and regressions/.
pub const TARGETS: &[(&str, Check)] = &[
    ("config", config),
    ("address", address),
    ("times", times),
    ("tcpmux", tcpmux),
];

// ---------------------------------------------------------------------------------------
// config: TOML text to specs, through `config::load`, the daemon's own entry.

/// Where the main file is, for the loader and in its diagnostics.
pub const MAIN: &str = "/etc/oxinetd/oxinetd.toml";

/// A line starting with this begins another file, named by the rest of the line, that
/// the main file's `includedir` lists: `#%% echo.toml`. Everything before the first such
/// line is the main file. It is a TOML comment, so a whole input is still TOML.
pub const FILE_MARK: &[u8] = b"#%% ";

/// The input: the main file, then the files of `includedir` (see `FILE_MARK`).
///
/// The loader gets `MAIN`, as `oxinetd -f` or `--check` would give it, and reads
/// everything else through `MemoryHost`.
pub fn config(data: &[u8]) {
    let host = MemoryHost::new(data);
    let config = config::load(Path::new(MAIN), &host);
    check_config(&config, &host);
}

/// What a loaded configuration promises, whatever the text was.
fn check_config(config: &Config, host: &MemoryHost) {
    let seen = host.seen.borrow();
    for diagnostic in config.errors.iter().chain(&config.warnings) {
        let shown = diagnostic.to_string();
        // Every diagnostic names a file the loader looked at (the main file, an included
        // file, or the includedir folder), and a line inside that file.
        assert!(
            seen.contains(&diagnostic.file),
            "names a file never read: {shown}"
        );
        assert!(shown.starts_with(&diagnostic.file.display().to_string()));
        if let Some(line) = diagnostic.line {
            let lines = host
                .text_of(&diagnostic.file)
                .map(|text| text.iter().filter(|&&b| b == b'\n').count() + 1);
            assert!(
                lines.is_some_and(|lines| (1..=lines).contains(&line)),
                "line {line} is not in the file ({lines:?} lines): {shown}"
            );
        }
    }
    for error in &config.errors {
        assert_located(error);
    }
    // Ids are unique, a broken service is not also served, and nothing is broken or
    // fatal without an error saying why.
    let ids: BTreeSet<&str> = config.services.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids.len(), config.services.len(), "two services share an id");
    for broken in &config.broken {
        assert!(
            !ids.contains(broken.as_str()),
            "{broken} is broken and served"
        );
    }
    if config.errors.is_empty() {
        assert!(!config.fatal, "fatal without an error");
        assert!(config.broken.is_empty(), "broken without an error");
    }
}

/// docs/configuration.md promises `FILE:LINE` for an error about a key ("an unknown key,
/// a value of the wrong type, an impossible combination...": every error that names a
/// key). What is true today is asserted, no more: the errors below name a key and no line
/// yet. Issue 12's hole 3 ("errors without a place") is being fixed elsewhere; when it
/// lands, delete the exceptions here, and assert a line for errors without a key too
/// (invalid UTF-8, `defaults = "x"`, `[service]\necho = 1`, nesting too deep).
fn assert_located(error: &ConfigError) {
    if error.key.is_none() || error.line.is_some() {
        return;
    }
    let known_unlocated = [
        // Two TCPMUX services whose names differ only in case.
        "another TCPMUX service is also called",
    ];
    assert!(
        known_unlocated
            .iter()
            .any(|known| error.message.starts_with(known)),
        "an error about a key has no line: {error}"
    );
}

/// The system as the config layer sees it, in memory: files from the fuzz input, a fixed
/// user and group table, /etc/services and /etc/rpc excerpts. Deterministic, and touches
/// nothing outside the process.
pub struct MemoryHost {
    main: Vec<u8>,
    /// The included files, by file name, in input order.
    included: Vec<(String, Vec<u8>)>,
    /// Every path the loader read or listed, for the diagnostics to name.
    seen: RefCell<BTreeSet<PathBuf>>,
    /// The folders listed, to find an included file's text again.
    folders: RefCell<Vec<PathBuf>>,
}

const SERVICES: &str = "\
tcpmux 1/tcp\necho 7/tcp\necho 7/udp\ndiscard 9/tcp sink null\ndiscard 9/udp sink null
daytime 13/tcp\ndaytime 13/udp\nchargen 19/tcp ttytst source\nchargen 19/udp ttytst source
ftp 21/tcp\nssh 22/tcp\ntelnet 23/tcp\nsmtp 25/tcp mail\ntime 37/tcp timserver
time 37/udp timserver\nfinger 79/tcp\nhttp 80/tcp www\npop3 110/tcp pop-3\nsunrpc 111/tcp
sunrpc 111/udp\nauth 113/tcp ident\nnntp 119/tcp\nntp 123/udp\nimap2 143/tcp imap
exec 512/tcp\nbiff 512/udp comsat\nlogin 513/tcp\nshell 514/tcp cmd\nprinter 515/tcp spooler
talk 517/udp\nntalk 518/udp\ntftp 69/udp\nrsync 873/tcp\nswat 901/tcp\ncvspserver 2401/tcp
";

const RPC: &str = "rstatd 100001 rstat rup perfmeter\nrusersd 100002 rusers\nwalld 100008 rwall shutdown\nsprayd 100012 spray\n";

impl MemoryHost {
    pub fn new(data: &[u8]) -> MemoryHost {
        let mut main = Vec::new();
        let mut included: Vec<(String, Vec<u8>)> = Vec::new();
        for line in data.split_inclusive(|&b| b == b'\n') {
            if let Some(name) = line.strip_prefix(FILE_MARK) {
                let name = String::from_utf8_lossy(name.trim_ascii()).into_owned();
                included.push((name, Vec::new()));
            } else {
                match included.last_mut() {
                    Some((_, text)) => text.extend_from_slice(line),
                    None => main.extend_from_slice(line),
                }
            }
        }
        MemoryHost {
            main,
            included,
            seen: RefCell::new(BTreeSet::new()),
            folders: RefCell::new(Vec::new()),
        }
    }

    /// The bytes of a config file the loader may have read.
    fn text_of(&self, path: &Path) -> Option<&[u8]> {
        if path == Path::new(MAIN) {
            return Some(&self.main);
        }
        let listed = path
            .parent()
            .is_some_and(|dir| self.folders.borrow().iter().any(|f| f == dir));
        let name = path.file_name()?.to_str()?;
        listed
            .then(|| self.included.iter().find(|(n, _)| n == name))
            .flatten()
            .map(|(_, text)| text.as_slice())
    }
}

impl Host for MemoryHost {
    fn user(&self, name: &str) -> Option<UserEntry> {
        // As getpwnam, then a number as a uid (the daemon's host does the same).
        const USERS: [(&str, u32, &str); 5] = [
            ("root", 0, "/root"),
            ("daemon", 1, "/usr/sbin"),
            ("ftp", 101, "/srv/ftp"),
            ("me", 1000, "/home/me"),
            ("nobody", 65534, "/nonexistent"),
        ];
        let uid = name.parse::<u32>().ok();
        let &(name, uid, home) = USERS
            .iter()
            .find(|(user, id, _)| *user == name || uid == Some(*id))?;
        Some(UserEntry {
            name: name.to_string(),
            uid,
            gid: uid,
            home: home.to_string(),
            shell: "/bin/sh".to_string(),
        })
    }

    fn group(&self, name: &str) -> Option<u32> {
        match name {
            "root" => Some(0),
            "daemon" => Some(1),
            "tty" => Some(5),
            "users" => Some(100),
            "nogroup" => Some(65534),
            _ => name
                .parse()
                .ok()
                .filter(|gid| [0, 1, 5, 100, 65534].contains(gid)),
        }
    }

    fn group_list(&self, _user: &str, gid: u32) -> Vec<u32> {
        vec![gid, 100]
    }

    fn service_port(&self, name: &str, protocol: Protocol) -> Option<u16> {
        config::parse_services_port(SERVICES, name, protocol)
    }

    fn is_executable(&self, path: &Path) -> bool {
        [
            "/bin/",
            "/sbin/",
            "/usr/bin/",
            "/usr/sbin/",
            "/usr/libexec/",
        ]
        .iter()
        .any(|dir| path.starts_with(dir))
    }

    fn euid(&self) -> u32 {
        0
    }

    fn somaxconn(&self) -> u32 {
        4096
    }

    fn environment(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        vec![
            (b"PATH".to_vec(), b"/usr/bin:/bin".to_vec()),
            (b"LANG".to_vec(), b"C.UTF-8".to_vec()),
            (b"TZ".to_vec(), b"UTC".to_vec()),
        ]
    }

    fn read(&self, path: &Path, limit: usize) -> io::Result<Vec<u8>> {
        self.seen.borrow_mut().insert(path.to_path_buf());
        // Banners: any absolute file under /etc holds one, besides the input's files.
        let text = match self.text_of(path) {
            Some(text) => text,
            None if path.starts_with("/etc/") => b"Welcome.\r\n",
            None => return Err(io::Error::from(io::ErrorKind::NotFound)),
        };
        // As the daemon's host: at most `limit + 1` bytes, so the caller sees "too large".
        Ok(text[..text.len().min(limit.saturating_add(1))].to_vec())
    }

    /// Every file and folder here is root's and written by root alone (0644, 0755), so
    /// the trust rule passes and the fuzzer explores what lies behind it.
    fn status(&self, path: &Path) -> io::Result<FileStatus> {
        let folder = path == Path::new("/") || self.folders.borrow().iter().any(|f| f == path);
        let (kind, mode) = if folder || path == Path::new("/etc") {
            (FileKind::Directory, 0o755)
        } else if self.is_executable(path) {
            (FileKind::Regular, 0o755)
        } else if self.text_of(path).is_some() || path.starts_with("/etc/") {
            (FileKind::Regular, 0o644)
        } else {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        };
        Ok(FileStatus { kind, uid: 0, mode })
    }

    fn rpc_number(&self, name: &str) -> Option<u32> {
        config::parse_rpc_number(RPC, name)
    }

    fn toml_files(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        self.seen.borrow_mut().insert(dir.to_path_buf());
        // An input without included files has no such folder.
        if self.included.is_empty() {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        self.folders.borrow_mut().push(dir.to_path_buf());
        let names: BTreeSet<&str> = self
            .included
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| !name.starts_with('.') && name.ends_with(".toml") && !name.contains('/'))
            .collect();
        Ok(names.into_iter().map(|name| dir.join(name)).collect())
    }
}

// ---------------------------------------------------------------------------------------
// address: only_from / no_access words, and the decisions made with them.

/// The input, as text: line 1 is `only_from` (`-` alone: unset), line 2 `no_access`, each
/// as space-separated words, xinetd's form; each further line is a peer address followed
/// by its host names, if any. Every line is also parsed as a list on its own.
pub fn address(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return; // TOML strings are UTF-8: the loader never hands the parser anything else.
    };
    let lines: Vec<&str> = text.lines().collect();
    for line in &lines {
        let _ = patterns(line);
    }
    let only_from = match lines.first() {
        Some(line) if line.trim() == "-" => None,
        Some(line) => match patterns(line) {
            Ok(list) => Some(list),
            Err(()) => return,
        },
        None => return,
    };
    let Ok(no_access) = patterns(lines.get(1).copied().unwrap_or("")) else {
        return;
    };
    let rules = Rules {
        only_from,
        no_access,
    };
    for line in lines.iter().skip(2) {
        let mut words = line.split_whitespace();
        let Some(Ok(peer)) = words.next().map(str::parse::<IpAddr>) else {
            continue;
        };
        let names: Vec<String> = words.map(str::to_string).collect();
        check_decision(&rules, peer, &names);
    }
}

/// Parses a list as the loader does, checking the error's promised form.
fn patterns(line: &str) -> Result<Vec<access::Pattern>, ()> {
    let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
    match access::parse_patterns(&words) {
        Ok(patterns) => {
            assert!(patterns.len() >= words.len(), "a word parsed to nothing");
            Ok(patterns)
        }
        Err(message) => {
            // The error names the first bad word, quoted.
            let named = words
                .iter()
                .any(|word| message.starts_with(&format!("{word:?}: ")));
            assert!(named, "the error names no word of the list: {message}");
            Err(())
        }
    }
}

/// What a decision promises: an answer from the address alone is final, whatever
/// names the lookup would have found; with names, there is always an answer.
fn check_decision(rules: &Rules, peer: IpAddr, names: &[String]) {
    let early = rules.decide(peer, None);
    for names in [names, &[][..]] {
        let late = rules.decide(peer, Some(names));
        assert_ne!(late, Decision::NeedNames, "names given and still needed");
        if early != Decision::NeedNames {
            assert_eq!(early, late, "{peer} with names {names:?}: {rules:?}");
        }
    }
    if rules.is_open() {
        assert_eq!(early, Decision::Allow);
    }
    if !rules.uses_names() {
        assert_ne!(
            early,
            Decision::NeedNames,
            "asks for names without name rules"
        );
    }
    // A peer on a dual-stack socket is decided as its IPv4 self.
    if let IpAddr::V4(v4) = peer {
        let mapped = IpAddr::V6(v4.to_ipv6_mapped());
        assert_eq!(rules.decide(mapped, None), early, "{mapped} vs {peer}");
    }
}

// ---------------------------------------------------------------------------------------
// times: access_times, and the other time words (deny_time, cps).

/// The input, as text: every line is tried as `access_times` words, as a `deny_time`
/// value and as `cps` words.
pub fn times(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for line in text.lines() {
        let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        match AccessTimes::parse(&words) {
            Ok(times) => {
                // Every minute of the day can be asked about; a range admits at least its start.
                let admitted = (0..24 * 60).filter(|&minute| times.admits(minute)).count();
                assert!(admitted > 0, "{line:?} admits no minute");
            }
            Err(message) => assert!(
                words.is_empty()
                    || words
                        .iter()
                        .any(|w| message.starts_with(&format!("{w:?}: "))),
                "the error names no word: {message}"
            ),
        }
        let _ = limits::parse_deny_time(line.trim());
        if let Ok((rate, pause)) = limits::parse_cps(&words) {
            assert!(rate >= 1 && pause.as_secs() >= 1);
        }
    }
}

// ---------------------------------------------------------------------------------------
// tcpmux: the request line a client sends, as the daemon peeks at it.

/// The input is what the client sent, as far as the daemon has peeked.
pub fn tcpmux(data: &[u8]) {
    let parsed = tcpmux::parse(data);
    let window = &data[..data.len().min(tcpmux::MAX_LINE)];
    match parsed.request {
        Request::Incomplete => {
            assert_eq!(parsed.consumed, 0);
            assert!(data.len() < tcpmux::MAX_LINE, "incomplete past the limit");
            assert!(!data.contains(&b'\n'), "a whole line read as incomplete");
        }
        Request::Invalid(reason) => {
            assert_eq!(parsed.consumed, 0);
            let reply = tcpmux::refusal(reason);
            assert!(reply.starts_with(b"-") && reply.ends_with(b"\r\n"));
            assert!(!reply[..reply.len() - 2].iter().any(u8::is_ascii_control));
        }
        Request::Help | Request::Service(_) => {
            let consumed = parsed.consumed;
            assert!(
                (1..=window.len()).contains(&consumed),
                "consumed {consumed}"
            );
            let line = &data[..consumed];
            assert!(line.ends_with(b"\n"), "the line ends at its LF");
            assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
            // The line alone, and the line with anything after it, read the same.
            assert_eq!(tcpmux::parse(line), parsed);
            if let Request::Service(name) = parsed.request {
                assert!(!name.is_empty() && !name.eq_ignore_ascii_case("HELP"));
                assert!(name.bytes().all(|b| b.is_ascii_graphic()), "{name:?}");
                let shouted = name.to_ascii_uppercase();
                assert_eq!(tcpmux::find(&shouted, ["", name].into_iter()), Some(name));
            }
        }
    }
    // Less of the same bytes is never a line: a prefix of an incomplete line is
    // incomplete too.
    if parsed.request == Request::Incomplete {
        assert_eq!(
            tcpmux::parse(&data[..data.len() / 2]).request,
            Request::Incomplete
        );
    }
}
