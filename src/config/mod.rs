//! Reads the main file and `includedir`, and validates every service. Reads files and
//! asks the `Host` about users and ports; never touches the network.

pub mod attrs;
pub mod cache;
pub mod raw;
pub mod spec;
pub mod trust;
pub mod validate;

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use attrs::{Attrs, Origin};
pub use cache::{Cache, Stamp, Stamped};
use raw::{Table, Value};
pub use spec::ServiceSpec;

/// One problem, located as precisely as it can be.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub service: Option<String>,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(service) = &self.service {
            write!(f, ": service {service}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A user as the config layer needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct UserEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

/// What validation asks of the system; a table in tests.
pub trait Host {
    fn user(&self, name: &str) -> Option<UserEntry>;
    fn group(&self, name: &str) -> Option<u32>;
    /// The supplementary groups of `user`, `gid` included (initgroups).
    fn group_list(&self, user: &str, gid: u32) -> Vec<u32>;
    fn service_port(&self, name: &str, protocol: spec::Protocol) -> Option<u16>;
    fn is_executable(&self, path: &Path) -> bool;
    /// What `stat` (following links) says of `path`.
    fn status(&self, path: &Path) -> std::io::Result<FileStatus>;
    fn euid(&self) -> u32;
    fn somaxconn(&self) -> u32;
    fn environment(&self) -> Vec<(Vec<u8>, Vec<u8>)>;
    /// At most the first `limit + 1` bytes of a regular file, so the caller can tell a
    /// file over its limit; opened without blocking (O_NONBLOCK) and refused, naming its
    /// kind (`is a FIFO, not a regular file`), if it is anything but a regular file: a
    /// FIFO, `/dev/zero` or a terminal must never hang a load or fill the memory.
    fn read(&self, path: &Path, limit: usize) -> std::io::Result<Vec<u8>>;
    /// The program number of an RPC service in /etc/rpc.
    fn rpc_number(&self, name: &str) -> Option<u32>;
    /// The `*.toml` files of a folder, in name order, dotfiles left out.
    fn toml_files(&self, dir: &Path) -> std::io::Result<Vec<PathBuf>>;
    /// What `stat` (following links) says of `path`, for the cache of included files;
    /// a host that cannot tell makes every file be read at every load.
    fn stamp(&self, _path: &Path) -> std::io::Result<Stamp> {
        Err(std::io::ErrorKind::Unsupported.into())
    }
    /// `stamp` of the file `name` of the folder `dir`.
    fn stamp_in(&self, dir: &Path, name: &OsStr) -> std::io::Result<Stamp> {
        self.stamp(&dir.join(name))
    }
    /// The names of `toml_files`, and the folder's stamp with the time the listing began
    /// if the listing may be trusted while that stamp stays (no name in it is a link,
    /// whose target may change kind without the folder changing).
    fn toml_names(&self, dir: &Path) -> std::io::Result<(Vec<Box<OsStr>>, Option<Stamped>)> {
        let names = (self.toml_files(dir)?.into_iter())
            .filter_map(|path| Some(path.file_name()?.into()))
            .collect();
        Ok((names, None))
    }
    /// `read`, and the stamp of the file as it was opened with the time the reading
    /// began, if the host can tell.
    fn read_stamped(
        &self,
        path: &Path,
        limit: usize,
    ) -> std::io::Result<(Vec<u8>, Option<Stamped>)> {
        self.read(path, limit).map(|bytes| (bytes, None))
    }
}

/// The kinds of file `stat` tells apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Regular,
    Directory,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
}

impl FileKind {
    /// `a FIFO`, for messages such as `is a FIFO, not a regular file`.
    pub fn described(self) -> &'static str {
        match self {
            FileKind::Regular => "a regular file",
            FileKind::Directory => "a directory",
            FileKind::CharDevice => "a character device",
            FileKind::BlockDevice => "a block device",
            FileKind::Fifo => "a FIFO",
            FileKind::Socket => "a socket",
        }
    }
}

/// What oxinetd checks of a file before trusting it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStatus {
    pub kind: FileKind,
    /// The owner.
    pub uid: u32,
    /// The permission bits (`st_mode & 0o7777`).
    pub mode: u32,
}

/// A configuration file larger than this is refused rather than read (a mistaken
/// `-f /dev/zero`-like file must not fill the memory); real ones are a few KiB.
pub const MAX_CONFIG_FILE: usize = 16 * 1024 * 1024;

/// A whole configuration. `fatal` is set when the main file itself is unreadable or
/// invalid: a start fails and a reload keeps the old configuration.
#[derive(Debug)]
pub struct Config {
    /// Shared with the cache of the load (`cache`) and the daemon's running services.
    pub services: Vec<Rc<ServiceSpec>>,
    /// Ids of services defined with errors; a reload keeps their old definitions.
    pub broken: Vec<String>,
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<ConfigError>,
    pub fatal: bool,
    pub shutdown_grace: Duration,
    /// `[defaults] max_servers`: all services' servers together (xinetd's `-limit`).
    pub max_servers: Option<u32>,
    /// Where `log_type = "SYSLOG ..."` lines are sent.
    pub syslog_socket: PathBuf,
    /// Where `oxinetd status` and `oxinetd reload` reach the daemon; absolute (a
    /// relative path in the file is taken from the main file's folder).
    pub control_socket: Option<PathBuf>,
    /// Ids of services switched off (`disable`, `[defaults] disabled` or `enabled`),
    /// for `oxinetd status`.
    pub disabled: Vec<String>,
    /// Included files read (and parsed and validated) by this load, and files taken
    /// unchanged from the cache of the last one.
    pub files_read: usize,
    pub files_unchanged: usize,
}

pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
pub const DEFAULT_SYSLOG_SOCKET: &str = "/dev/log";
const TOP_LEVEL_KEYS: &[&str] = &[
    "includedir",
    "shutdown_grace",
    "syslog_socket",
    "control_socket",
    "trust_insecure_files",
    "defaults",
    "service",
];

/// Loads the configuration with nothing cached (`--check`, tests).
pub fn load(main: &Path, host: &dyn Host) -> Config {
    load_cached(main, host, None).0
}

/// Loads the configuration, taking what `previous` (the cache of the configuration that
/// runs) says of every included file that did not change (`cache`), and returns the
/// cache of this load: the daemon keeps it only if it applies this load.
pub fn load_cached(main: &Path, host: &dyn Host, previous: Option<&mut Cache>) -> (Config, Cache) {
    let mut config = Config {
        services: Vec::new(),
        broken: Vec::new(),
        errors: Vec::new(),
        warnings: Vec::new(),
        fatal: false,
        shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        max_servers: None,
        syslog_socket: PathBuf::from(DEFAULT_SYSLOG_SOCKET),
        control_socket: None,
        disabled: Vec::new(),
        files_read: 0,
        files_unchanged: 0,
    };
    let Some((mut table, _)) = read_table(main, host, &mut config.errors) else {
        config.fatal = true;
        return (config, Cache::default());
    };
    let errors_before = config.errors.len();
    let file: Rc<Path> = Rc::from(main);
    for entry in &table.entries {
        if !TOP_LEVEL_KEYS.contains(&entry.key.as_str()) {
            let hint = attrs::closest(&entry.key, TOP_LEVEL_KEYS)
                .map(|hint| format!(" (did you mean `{hint}`?)"))
                .unwrap_or_default();
            let message = if attrs::KEYS.contains(&entry.key.as_str()) {
                "a service key outside any table: put it under [defaults] or [service.NAME]"
                    .to_string()
            } else {
                format!("unknown top-level key{hint}")
            };
            config
                .errors
                .push(file_error(main, entry.line, &entry.key, message));
        }
    }
    if let Some(entry) = table.get("shutdown_grace") {
        match entry.value.as_i64() {
            Some(seconds @ 0..=3600) => config.shutdown_grace = Duration::from_secs(seconds as u64),
            _ => config.errors.push(file_error(
                main,
                entry.line,
                "shutdown_grace",
                "expected a number of seconds from 0 to 3600".to_string(),
            )),
        }
    }
    if let Some(entry) = table.get("syslog_socket") {
        match &entry.value {
            Value::String(path) if Path::new(path).is_absolute() => {
                config.syslog_socket = PathBuf::from(path)
            }
            _ => config.errors.push(file_error(
                main,
                entry.line,
                "syslog_socket",
                "expected the absolute path of a unix datagram socket".to_string(),
            )),
        }
    }
    if let Some(entry) = table.get("control_socket") {
        match &entry.value {
            Value::String(path) if !path.is_empty() && !path.contains('\0') => {
                config.control_socket = Some(control_socket_path(main, path))
            }
            _ => config.errors.push(file_error(
                main,
                entry.line,
                "control_socket",
                "expected the path of a unix socket (relative to this file's folder)".to_string(),
            )),
        }
    }
    let mut trust_insecure_files = false;
    if let Some(entry) = table.get("trust_insecure_files") {
        match entry.value {
            Value::Boolean(flag) => trust_insecure_files = flag,
            _ => config.errors.push(file_error(
                main,
                entry.line,
                "trust_insecure_files",
                format!("expected true or false, found {}", entry.value.kind()),
            )),
        }
    }
    let errors_before_defaults = config.errors.len();
    let mut defaults = match table.get("defaults") {
        Some(entry) => read_attrs(&entry.value, &file, entry.line, None, &mut config.errors),
        None => Attrs::default(),
    };
    // Reported once, in [defaults]; a service that leaves such a key unset is not
    // blamed for lacking it.
    let defaults_failed: Vec<String> = config.errors[errors_before_defaults..]
        .iter()
        .filter_map(|error| error.key.clone())
        .collect();
    config.max_servers = defaults.max_servers.take().map(|at| at.value);
    let disabled = defaults
        .disabled
        .take()
        .map(|at| at.value)
        .unwrap_or_default();
    let enabled = defaults.enabled.take().map(|at| at.value);
    // Every setting of the main file but its services: when one changes, no cached file
    // is trusted (their services were validated with the old ones).
    let settings: Vec<raw::Entry> = (table.entries.iter())
        .filter(|entry| entry.key != "service")
        .cloned()
        .collect();
    // A main file with errors keeps the old configuration and so its cache, whole; the
    // entries of any other are moved into the new cache or dropped.
    let fatal = config.errors.len() > errors_before;
    let previous = previous
        .filter(|_| !fatal)
        .and_then(|cache| cache.for_main(main, &settings));
    let facts = RefCell::new(cache::Facts::default());
    let old = previous.map(std::mem::take).unwrap_or_default();
    let mut verifier = cache::Verifier::new(&old.facts);
    // One vector of every definition read, the groups counting theirs: a small vector
    // per file, freed amid the services made, would keep the heap from shrinking.
    let mut definitions = Vec::new();
    let mut groups = Vec::with_capacity(old.files.len() + 1);
    collect_services(&mut table, &file, &mut definitions, &mut config.errors);
    groups.push(Group::Fresh {
        file: file.clone(),
        name: None,
        count: definitions.len(),
        stamped: None,
        clean: false,
    });
    let mut folder = None;
    let mut folder_path = PathBuf::new();
    // Errors inside included files spoil their services, not the main file.
    let mut included_errors = Vec::new();
    if let Some(entry) = table.get("includedir") {
        match &entry.value {
            Value::String(dir) => {
                let dir = main.parent().unwrap_or(Path::new(".")).join(dir);
                folder_path.clone_from(&dir);
                let mut read = Read {
                    host,
                    dir: &dir,
                    facts: &facts,
                    verifier: &mut verifier,
                    definitions: &mut definitions,
                    groups: &mut groups,
                    errors: &mut included_errors,
                };
                match read.folder(old.folder, old.files) {
                    Ok(listed) => folder = listed,
                    Err(error) => config.errors.push(file_error(
                        main,
                        entry.line,
                        "includedir",
                        format!("cannot read the folder {}: {error}", dir.display()),
                    )),
                }
            }
            other => config.errors.push(file_error(
                main,
                entry.line,
                "includedir",
                format!("expected a string, found {}", other.kind()),
            )),
        }
    }
    config.fatal = config.errors.len() > errors_before;
    config.errors.extend(included_errors);

    let mut new_cache = Cache {
        main: Some((main.to_path_buf(), settings)),
        folder,
        files: Vec::with_capacity(groups.len()),
        facts: cache::Facts::default(),
    };
    let duplicates = duplicates(&groups, &definitions, &folder_path);
    let mut duplicates = duplicates.into_iter().peekable();
    let mut at = 0;
    let mut duplicate = |error: &mut Option<ConfigError>| {
        let found = duplicates
            .next_if(|(place, _)| *place == at)
            .map(|(_, error)| error);
        at += 1;
        *error = found;
        error.is_some()
    };
    let mut settle = Settle {
        main,
        defaults,
        defaults_failed,
        disabled,
        enabled,
        trust_insecure_files,
        environments: validate::Environments::default(),
        shared: Shared::default(),
    };
    config.services.reserve(new_cache.files.capacity());
    // Settled in place and freed together: each freed amid the services made would
    // leave the heap in pieces no trim gives back.
    let mut unsettled = definitions.iter();
    let mut error = None;
    for group in groups {
        match group {
            Group::Fresh {
                file,
                name,
                count,
                stamped,
                mut clean,
            } => {
                config.files_read += usize::from(name.is_some());
                let recorder = cache::Recorder {
                    host,
                    facts: &facts,
                    used: RefCell::default(),
                    own: stamped.is_some().then_some(&*file),
                };
                let warnings_before = config.warnings.len();
                let mut outcomes = Vec::new();
                for definition in unsettled.by_ref().take(count) {
                    if duplicate(&mut error) {
                        config.errors.extend(error.take());
                        clean = false;
                        continue;
                    }
                    // Answers are noted only for a file the cache may keep.
                    let host: &dyn Host = match stamped {
                        Some(_) => &recorder,
                        None => host,
                    };
                    match settle.definition(definition, host, &mut config) {
                        Some(outcome) => outcomes.push(outcome),
                        None => clean = false,
                    }
                }
                let Some(name) = name else {
                    continue;
                };
                let entry = stamped
                    .filter(|stamped| clean && !stamped.racy())
                    .map(|stamped| cache::FileEntry {
                        stamp: stamped.stamp,
                        outcomes: outcomes.into(),
                        warnings: config.warnings[warnings_before..].into(),
                        facts: recorder.take_used(),
                    });
                new_cache.files.push((name, entry));
            }
            Group::Cached {
                name,
                mut entry,
                facts,
                ..
            } => {
                config.files_unchanged += 1;
                let mut clean = true;
                for (_, outcome) in entry.outcomes.iter() {
                    if duplicate(&mut error) {
                        config.errors.extend(error.take());
                        clean = false;
                        continue;
                    }
                    match outcome {
                        cache::Outcome::Service(spec) => config.services.push(Rc::clone(spec)),
                        cache::Outcome::Off(id) => config.disabled.push(id.clone()),
                    }
                }
                config.warnings.extend(entry.warnings.iter().cloned());
                entry.facts = facts;
                new_cache.files.push((name, clean.then_some(entry)));
            }
        }
    }
    drop(verifier);
    drop(definitions);
    new_cache.facts = facts.into_inner();
    reject_tcpmux_clashes(&mut config);
    let muxed = config.services.iter().find(|spec| spec.tcpmux.is_some());
    let muxer = config.services.iter().any(|spec| {
        matches!(
            spec.program,
            spec::Program::Internal(spec::Internal::TcpMux)
        )
    });
    if let (Some(spec), false) = (muxed, muxer) {
        config.warnings.push(ConfigError {
            file: spec.file.clone(),
            line: None,
            service: Some(spec.id.clone()),
            key: Some("type".to_string()),
            message: "no tcpmux service is defined, so TCPMUX services cannot be reached"
                .to_string(),
        });
    }
    sort_by_place(&mut config.errors);
    sort_by_place(&mut config.warnings);
    (config, new_cache)
}

/// `control_socket` as given, or taken from the main file's folder when relative.
fn control_socket_path(main: &Path, path: &str) -> PathBuf {
    main.parent().unwrap_or(Path::new(".")).join(path)
}

/// The `control_socket` of a main file, for `oxinetd status` and `oxinetd reload`.
/// Read leniently: a file the daemon would refuse (the reload asked for is the very
/// one to report) must still lead to the daemon, so when the whole file does not
/// parse, its `control_socket = "..."` line before any table is read on its own.
pub fn control_socket_of(main: &Path, text: &str) -> Option<PathBuf> {
    let from = |value: &toml::Value| match value {
        toml::Value::String(path) if !path.is_empty() => Some(control_socket_path(main, path)),
        _ => None,
    };
    if let Ok(table) = text.parse::<toml::Table>() {
        return table.get("control_socket").and_then(from);
    }
    text.lines()
        .map(str::trim_start)
        .take_while(|line| !line.starts_with('['))
        .filter(|line| line.starts_with("control_socket"))
        .find_map(|line| {
            line.parse::<toml::Table>()
                .ok()?
                .get("control_socket")
                .and_then(from)
        })
}

/// In file and line order (a file's unlined diagnostics first), and otherwise in the
/// order found: the sort is stable.
fn sort_by_place(diagnostics: &mut [ConfigError]) {
    diagnostics.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
}

/// The exec'd programs of one load, by server and arguments: services that run the same
/// program the same way (identity, environment, limits...) keep one shared copy, and
/// the daemon prepares it once (`daemon::services`). Most environments are shared too
/// (`validate::Environments`), so 1,000 services never hold 1,000 copies of either.
type Programs = HashMap<(PathBuf, Vec<String>), Vec<Rc<spec::ExecSpec>>>;

/// The parts of a service that are usually the same for many, shared like programs.
#[derive(Default)]
struct Shared {
    programs: Programs,
    access: Recent<spec::Access>,
    limits: Recent<spec::Limits>,
    logging: Recent<spec::Logging>,
    banners: Recent<spec::Banners>,
}

impl Shared {
    fn share(&mut self, mut spec: ServiceSpec) -> ServiceSpec {
        self.access.share(&mut spec.access);
        self.limits.share(&mut spec.limits);
        self.logging.share(&mut spec.logging);
        self.banners.share(&mut spec.banners);
        share_program(spec, &mut self.programs)
    }
}

/// The last few distinct values seen, for values without a hash: a value equal to one
/// of them is replaced by that one. Bounded, so a load stays linear however many
/// distinct values it has (they are then simply not shared).
struct Recent<T> {
    values: std::collections::VecDeque<Rc<T>>,
}

impl<T> Default for Recent<T> {
    fn default() -> Self {
        Recent {
            values: std::collections::VecDeque::new(),
        }
    }
}

impl<T: PartialEq> Recent<T> {
    const KEPT: usize = 16;

    fn share(&mut self, value: &mut Rc<T>) {
        match self.values.iter().find(|seen| ***seen == **value) {
            Some(seen) => *value = Rc::clone(seen),
            None => {
                if self.values.len() == Self::KEPT {
                    self.values.pop_back();
                }
                self.values.push_front(Rc::clone(value));
            }
        }
    }
}

fn share_program(mut spec: ServiceSpec, programs: &mut Programs) -> ServiceSpec {
    if let spec::Program::Exec(exec) = &mut spec.program {
        let alike = programs
            .entry((exec.server.clone(), exec.argv.clone()))
            .or_default();
        match alike.iter().find(|shared| **shared == *exec) {
            Some(shared) => *exec = Rc::clone(shared),
            None => alike.push(Rc::clone(exec)),
        }
    }
    spec
}

/// tcpmux finds services by name, ignoring case: two that differ only in case could
/// not both be reached, so the later ones are errors.
fn reject_tcpmux_clashes(config: &mut Config) {
    let mut seen: Vec<String> = Vec::new();
    let mut clashing = Vec::new();
    for (at, spec) in config.services.iter().enumerate() {
        if spec.tcpmux.is_none() {
            continue;
        }
        let folded = spec.name.to_ascii_lowercase();
        if seen.contains(&folded) {
            clashing.push(at);
        } else {
            seen.push(folded);
        }
    }
    for at in clashing.into_iter().rev() {
        let spec = config.services.remove(at);
        config.errors.push(ConfigError {
            file: spec.file.clone(),
            line: None,
            service: Some(spec.id.clone()),
            key: Some("type".to_string()),
            message: format!(
                "another TCPMUX service is also called {} (tcpmux names ignore case)",
                spec.name
            ),
        });
        config.broken.push(spec.id.clone());
    }
}

/// What a load needs to settle each definition: the main file's settings and the
/// ids seen so far.
struct Settle<'a> {
    main: &'a Path,
    defaults: Attrs,
    /// `[defaults]` keys that could not be read.
    defaults_failed: Vec<String>,
    disabled: Vec<String>,
    enabled: Option<Vec<String>>,
    trust_insecure_files: bool,
    environments: validate::Environments,
    shared: Shared,
}

impl Settle<'_> {
    /// Validates one definition with `host` (the load's, noting its answers), adding
    /// its service, or its errors, to `config`; its outcome if it had no error.
    fn definition(
        &mut self,
        definition: &Definition,
        host: &dyn Host,
        config: &mut Config,
    ) -> Option<(usize, cache::Outcome)> {
        let line = definition.line;
        let switched_off = self.disabled.contains(&definition.id)
            || (self.enabled.as_ref()).is_some_and(|ids| !ids.contains(&definition.id));
        if switched_off {
            config.disabled.push(definition.id.clone());
            return Some((line, cache::Outcome::Off(definition.id.clone())));
        }
        let mut key_errors = Vec::new();
        let attrs = read_attrs(
            &definition.value,
            &definition.file,
            line,
            Some(&definition.name),
            &mut key_errors,
        );
        if key_errors.iter().any(|error| error.key.is_none()) {
            // Not a table: there are no keys to check.
            config.errors.extend(key_errors);
            config.broken.push(definition.id.clone());
            return None;
        }
        // Every key is checked on its own merits even when others were bad, so every
        // error shows at once. A bad key is unset (not filled from [defaults]) and named
        // in `failed`: the checks of combinations that need it are skipped, and errors
        // about that key would only repeat it.
        let mut failed: Vec<String> = key_errors.iter().filter_map(|e| e.key.clone()).collect();
        let mut attrs = match attrs.socket_path {
            Some(_) => attrs.or(&self.defaults.for_unix()),
            None => attrs.or(&self.defaults),
        };
        for key in &failed {
            attrs.clear(key);
        }
        failed.extend(
            (self.defaults_failed.iter())
                .filter(|key| !attrs.is_set(key))
                .cloned(),
        );
        let outcome = validate::service(
            &definition.name,
            &definition.id,
            &definition.file,
            line,
            &attrs,
            &failed,
            host,
            &mut self.environments,
        );
        config.warnings.extend(outcome.warnings);
        let mut errors = match outcome.spec {
            Ok(spec) => {
                let distrusted = match &spec {
                    Some(spec) if !self.trust_insecure_files => {
                        trust::check(spec, &attrs, self.main, line, host)
                    }
                    _ => Vec::new(),
                };
                if key_errors.is_empty() && distrusted.is_empty() {
                    let outcome = match spec {
                        Some(spec) => {
                            let spec = Rc::new(self.shared.share(spec));
                            config.services.push(Rc::clone(&spec));
                            cache::Outcome::Service(spec)
                        }
                        None => {
                            config.disabled.push(definition.id.clone());
                            cache::Outcome::Off(definition.id.clone())
                        }
                    };
                    return Some((line, outcome));
                }
                distrusted
            }
            Err(errors) => errors,
        };
        errors.retain(|error| error.key.as_ref().is_none_or(|key| !failed.contains(key)));
        config.errors.extend(key_errors);
        config.errors.extend(errors);
        config.broken.push(definition.id.clone());
        None
    }
}

/// A `[service.NAME]` table, read key by key.
struct Definition {
    name: String,
    /// Unique across the configuration; the name unless `id` is set.
    id: String,
    file: Rc<Path>,
    line: usize,
    /// Its table as written, read key by key when it is settled.
    value: Value,
}

/// A file that cannot be opened at all is named without a line; every other error has
/// one.
fn read_table(
    path: &Path,
    host: &dyn Host,
    errors: &mut Vec<ConfigError>,
) -> Option<(Table, Option<Stamped>)> {
    let unreadable = |message: String| ConfigError {
        file: path.to_path_buf(),
        line: None,
        service: None,
        key: None,
        message,
    };
    let (bytes, stamped) = match host.read_stamped(path, MAX_CONFIG_FILE) {
        Ok((bytes, _)) if bytes.len() > MAX_CONFIG_FILE => {
            errors.push(unreadable(
                "larger than 16 MiB: not a configuration file".to_string(),
            ));
            return None;
        }
        Ok(bytes) => bytes,
        Err(error) => {
            errors.push(unreadable(format!("cannot read: {error}")));
            return None;
        }
    };
    let text = match std::str::from_utf8(&bytes) {
        Ok(text) => text,
        Err(error) => {
            let (line, column) = place_of(&bytes, error.valid_up_to());
            errors.push(ConfigError {
                line: Some(line),
                ..unreadable(format!(
                    "not UTF-8: byte 0x{:02x} at column {column}",
                    bytes[error.valid_up_to()]
                ))
            });
            return None;
        }
    };
    match raw::parse(text) {
        Ok(table) => Some((table, stamped)),
        Err(error) => {
            errors.push(ConfigError {
                file: path.to_path_buf(),
                line: Some(error.line),
                service: None,
                key: None,
                message: format!("TOML syntax error: {}", error.message),
            });
            None
        }
    }
}

/// The 1-based line and column (in bytes) of byte `offset` of `bytes`.
fn place_of(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset];
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |at| at + 1);
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    (line, offset - line_start + 1)
}

/// The definitions of one file, in order: read now, or as the cache kept them.
enum Group {
    Fresh {
        file: Rc<Path>,
        /// The name of an included file (in its folder).
        name: Option<Box<OsStr>>,
        /// How many definitions it has, the next ones of the load's.
        count: usize,
        /// Set for an included file the cache may keep.
        stamped: Option<Stamped>,
        /// No error outside its definitions (an included file holding other keys).
        clean: bool,
    },
    Cached {
        name: Box<OsStr>,
        entry: cache::FileEntry,
        /// Its facts' numbers in this load.
        facts: Rc<[u32]>,
    },
}

impl Group {
    /// Its file; an included one's folder is `dir`.
    fn file(&self, dir: &Path) -> PathBuf {
        match self {
            Group::Fresh { file, .. } => file.to_path_buf(),
            Group::Cached { name, .. } => dir.join(&**name),
        }
    }
}

/// The error of each definition whose id was defined before, by its place among all
/// the definitions of the load (fresh and cached, in order). A first pass that borrows
/// every id: no copy of 10,000 of them.
fn duplicates(
    groups: &[Group],
    definitions: &[Definition],
    dir: &Path,
) -> Vec<(usize, ConfigError)> {
    let mut seen: HashMap<&str, &Group> = HashMap::with_capacity(definitions.len() + groups.len());
    let mut found = Vec::new();
    let mut at = 0;
    let mut fresh = definitions.iter();
    for group in groups {
        let ids: Box<dyn Iterator<Item = (&str, usize)>> = match group {
            Group::Fresh { count, .. } => Box::new(
                fresh
                    .by_ref()
                    .take(*count)
                    .map(|definition| (definition.id.as_str(), definition.line)),
            ),
            Group::Cached { entry, .. } => {
                Box::new((entry.outcomes.iter()).map(|(line, outcome)| (outcome.id(), *line)))
            }
        };
        for (id, line) in ids {
            match seen.get(id) {
                Some(first) => found.push((
                    at,
                    ConfigError {
                        file: group.file(dir),
                        line: Some(line),
                        service: Some(id.to_string()),
                        key: None,
                        message: format!(
                            "defined again (first in {}); give each definition its own `id`",
                            first.file(dir).display()
                        ),
                    },
                )),
                None => {
                    seen.insert(id, group);
                }
            }
            at += 1;
        }
    }
    found
}

/// Reads the included files, taking what the cache says of those unchanged.
struct Read<'r, 'f> {
    host: &'r dyn Host,
    dir: &'r Path,
    facts: &'r RefCell<cache::Facts>,
    verifier: &'r mut cache::Verifier<'f>,
    definitions: &'r mut Vec<Definition>,
    groups: &'r mut Vec<Group>,
    errors: &'r mut Vec<ConfigError>,
}

impl Read<'_, '_> {
    /// Every `*.toml` of the folder, in name order: as the last load listed them when
    /// the folder did not change since (its stamp, and not racy), else listed anew.
    /// Returns the folder's stamp if the next load may trust this listing; only an
    /// unreadable folder is an `Err`.
    fn folder(
        &mut self,
        folder: Option<Stamped>,
        old: Vec<(Box<OsStr>, Option<cache::FileEntry>)>,
    ) -> std::io::Result<Option<Stamped>> {
        if let Some(folder) = folder
            && self
                .host
                .stamp(self.dir)
                .is_ok_and(|stamp| stamp == folder.stamp)
        {
            for (name, entry) in old {
                self.file(name, entry);
            }
            return Ok(Some(folder));
        }
        let (names, stamped) = self.host.toml_names(self.dir)?;
        // Both in name order: the old entries before a name are of files gone.
        let mut old = old.into_iter().peekable();
        for name in names {
            let name = name.as_encoded_bytes();
            while old
                .next_if(|(old, _)| old.as_encoded_bytes() < name)
                .is_some()
            {}
            match old.next_if(|(old, _)| old.as_encoded_bytes() == name) {
                Some((name, entry)) => self.file(name, entry),
                None => {
                    let name = OsStr::from_bytes(name);
                    self.file(name.into(), None)
                }
            }
        }
        Ok(stamped.filter(|stamped| !stamped.racy()))
    }

    /// One included file: from its entry if its stamp and every fact its services
    /// depended on are unchanged, else read and parsed.
    fn file(&mut self, name: Box<OsStr>, entry: Option<cache::FileEntry>) {
        if let Some(entry) = entry
            && (self.host.stamp_in(self.dir, &name)).is_ok_and(|stamp| stamp == entry.stamp)
            && let Some(facts) =
                (self.verifier).carry(&entry.facts, self.host, &mut self.facts.borrow_mut())
        {
            (self.groups).push(Group::Cached { name, entry, facts });
            return;
        }
        let path = self.dir.join(&*name);
        let file: Rc<Path> = Rc::from(path.as_path());
        let errors_before = self.errors.len();
        let definitions_before = self.definitions.len();
        let stamped = match read_table(&path, self.host, self.errors) {
            Some((mut table, stamped)) => {
                for entry in table.entries.iter().filter(|entry| entry.key != "service") {
                    let message = "an included file holds only [service.NAME] tables".to_string();
                    (self.errors).push(file_error(&path, entry.line, &entry.key, message));
                }
                collect_services(&mut table, &file, self.definitions, self.errors);
                stamped
            }
            None => None,
        };
        self.groups.push(Group::Fresh {
            file,
            name: Some(name),
            count: self.definitions.len() - definitions_before,
            stamped,
            clean: self.errors.len() == errors_before,
        });
    }
}

/// Moves the definitions of `table`'s `[service.NAME]` tables out of it. Their keys are
/// read when each is settled: a service's `Attrs` is kilobytes, and 10,000 of them read
/// at once were most of the memory (and of the time) of a load.
fn collect_services(
    table: &mut Table,
    file: &Rc<Path>,
    definitions: &mut Vec<Definition>,
    errors: &mut Vec<ConfigError>,
) {
    let Some(at) = table
        .entries
        .iter()
        .position(|entry| entry.key == "service")
    else {
        return;
    };
    let entry = table.entries.remove(at);
    let Value::Table(services) = entry.value else {
        errors.push(file_error(
            file,
            entry.line,
            "service",
            "expected [service.NAME] tables".to_string(),
        ));
        return;
    };
    definitions.reserve(services.entries.len());
    for service in services.entries {
        // `[[service.NAME]]` gives one name several definitions told apart by `id`, as
        // xinetd's repeated `service NAME` blocks are (echo over stream and dgram).
        let tables = match service.value {
            Value::Array(items) => items,
            single => vec![single],
        };
        for value in tables {
            let id = attrs::id_of(&value).unwrap_or_else(|| service.key.clone());
            definitions.push(Definition {
                name: service.key.clone(),
                id,
                file: file.clone(),
                line: service.line,
                value,
            });
        }
    }
}

/// Reads every key of a service or `[defaults]` table (its name written on `line`),
/// reporting each bad one.
fn read_attrs(
    value: &Value,
    file: &Rc<Path>,
    line: usize,
    service: Option<&str>,
    errors: &mut Vec<ConfigError>,
) -> Attrs {
    let mut attrs = Attrs::default();
    let Value::Table(table) = value else {
        errors.push(ConfigError {
            file: file.to_path_buf(),
            line: Some(line),
            service: Some(service.unwrap_or("[defaults]").to_string()),
            key: None,
            message: format!("expected a table, found {}", value.kind()),
        });
        return attrs;
    };
    for entry in &table.entries {
        let origin = Origin {
            file: file.clone(),
            line: entry.line,
            defaults: service.is_none(),
        };
        let result = if service.is_some() && attrs::DEFAULTS_ONLY.contains(&entry.key.as_str()) {
            Err("this key is about the whole daemon: put it under [defaults]".to_string())
        } else if service.is_none() && attrs::SERVICE_ONLY.contains(&entry.key.as_str()) {
            Err("this key belongs to one service: put it under [service.NAME]".to_string())
        } else {
            attrs.set(&entry.key, &entry.value, origin)
        };
        if let Err(message) = result {
            errors.push(ConfigError {
                file: file.to_path_buf(),
                line: Some(entry.line),
                service: Some(service.unwrap_or("[defaults]").to_string()),
                key: Some(entry.key.clone()),
                message,
            });
        }
    }
    attrs
}

fn file_error(file: &Path, line: usize, key: &str, message: String) -> ConfigError {
    ConfigError {
        file: file.to_path_buf(),
        line: Some(line),
        service: None,
        key: Some(key.to_string()),
        message,
    }
}

/// Finds `name`'s program number in the text of /etc/rpc (`name number aliases...`).
pub fn parse_rpc_number(text: &str, name: &str) -> Option<u32> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or(""))
        .find_map(|line| {
            let mut words = line.split_whitespace();
            let service = words.next()?;
            let number = words.next()?;
            let named = service == name || words.any(|alias| alias == name);
            named.then(|| number.parse().ok())?
        })
}

/// Finds `name/protocol` in the text of /etc/services.
pub fn parse_services_port(text: &str, name: &str, protocol: spec::Protocol) -> Option<u16> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or(""))
        .find_map(|line| {
            let mut words = line.split_whitespace();
            let service = words.next()?;
            let (port, proto) = words.next()?.split_once('/')?;
            let named = service == name || words.any(|alias| alias == name);
            (named && proto == protocol.name()).then(|| port.parse().ok())?
        })
}

#[cfg(test)]
mod tests;
