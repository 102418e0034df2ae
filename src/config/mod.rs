//! Reads the main file and `includedir`, and validates every service. Reads files and
//! asks the `Host` about users and ports; never touches the network.

pub mod attrs;
pub mod raw;
pub mod spec;
pub mod trust;
pub mod validate;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use attrs::{Attrs, Origin};
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
    pub services: Vec<ServiceSpec>,
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

pub fn load(main: &Path, host: &dyn Host) -> Config {
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
    };
    let Some(table) = read_table(main, host, &mut config.errors) else {
        config.fatal = true;
        return config;
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
    let mut definitions = Vec::new();
    collect_services(&table, &file, &mut definitions, &mut config.errors);
    // Errors inside included files spoil their services, not the main file.
    let mut included_errors = Vec::new();
    if let Some(entry) = table.get("includedir") {
        match &entry.value {
            Value::String(dir) => {
                let dir = main.parent().unwrap_or(Path::new(".")).join(dir);
                if let Err(error) = include(&dir, host, &mut definitions, &mut included_errors) {
                    config.errors.push(file_error(
                        main,
                        entry.line,
                        "includedir",
                        format!("cannot read the folder {}: {error}", dir.display()),
                    ));
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

    let mut seen: BTreeMap<String, Rc<Path>> = BTreeMap::new();
    let mut environments = validate::Environments::default();
    let mut shared = Shared::default();
    for definition in definitions {
        if let Some(first) = seen.get(&definition.id) {
            config.errors.push(ConfigError {
                file: definition.file.to_path_buf(),
                line: Some(definition.line),
                service: Some(definition.id.clone()),
                key: None,
                message: format!(
                    "defined again (first in {}); give each definition its own `id`",
                    first.display()
                ),
            });
            continue;
        }
        seen.insert(definition.id.clone(), definition.file.clone());
        let switched_off = disabled.contains(&definition.id)
            || enabled
                .as_ref()
                .is_some_and(|ids| !ids.contains(&definition.id));
        if switched_off {
            config.disabled.push(definition.id);
            continue;
        }
        let (attrs, key_errors) = definition.attrs;
        if key_errors.iter().any(|error| error.key.is_none()) {
            // Not a table: there are no keys to check.
            config.errors.extend(key_errors);
            config.broken.push(definition.id);
            continue;
        }
        // Every key is checked on its own merits even when others were bad, so every
        // error shows at once. A bad key is unset (not filled from [defaults]) and named
        // in `failed`: the checks of combinations that need it are skipped, and errors
        // about that key would only repeat it.
        let mut failed: Vec<String> = key_errors.iter().filter_map(|e| e.key.clone()).collect();
        let mut attrs = match attrs.socket_path {
            Some(_) => attrs.or(&defaults.for_unix()),
            None => attrs.or(&defaults),
        };
        for key in &failed {
            attrs.clear(key);
        }
        failed.extend(
            defaults_failed
                .iter()
                .filter(|key| !attrs.is_set(key))
                .cloned(),
        );
        let outcome = validate::service(
            &definition.name,
            &definition.id,
            &definition.file,
            definition.line,
            &attrs,
            &failed,
            host,
            &mut environments,
        );
        config.warnings.extend(outcome.warnings);
        let mut errors = match outcome.spec {
            Ok(spec) => {
                let distrusted = match &spec {
                    Some(spec) if !trust_insecure_files => {
                        trust::check(spec, &attrs, main, definition.line, host)
                    }
                    _ => Vec::new(),
                };
                if key_errors.is_empty() && distrusted.is_empty() {
                    match spec {
                        Some(spec) => config.services.push(shared.share(spec)),
                        None => config.disabled.push(definition.id),
                    }
                    continue;
                }
                distrusted
            }
            Err(errors) => errors,
        };
        errors.retain(|error| error.key.as_ref().is_none_or(|key| !failed.contains(key)));
        config.errors.extend(key_errors);
        config.errors.extend(errors);
        config.broken.push(definition.id);
    }
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
    config
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
        config.broken.push(spec.id);
    }
}

/// A `[service.NAME]` table, read key by key.
struct Definition {
    name: String,
    /// Unique across the configuration; the name unless `id` is set.
    id: String,
    file: Rc<Path>,
    line: usize,
    /// The keys that read well, and an error for each that did not.
    attrs: (Attrs, Vec<ConfigError>),
}

/// A file that cannot be opened at all is named without a line; every other error has
/// one.
fn read_table(path: &Path, host: &dyn Host, errors: &mut Vec<ConfigError>) -> Option<Table> {
    let unreadable = |message: String| ConfigError {
        file: path.to_path_buf(),
        line: None,
        service: None,
        key: None,
        message,
    };
    let bytes = match host.read(path, MAX_CONFIG_FILE) {
        Ok(bytes) if bytes.len() > MAX_CONFIG_FILE => {
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
        Ok(table) => Some(table),
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

/// Reads every `*.toml` of `dir`; only an unreadable folder is an `Err`.
fn include(
    dir: &Path,
    host: &dyn Host,
    definitions: &mut Vec<Definition>,
    errors: &mut Vec<ConfigError>,
) -> std::io::Result<()> {
    let files = host.toml_files(dir)?;
    for path in files {
        let Some(table) = read_table(&path, host, errors) else {
            continue;
        };
        let file: Rc<Path> = Rc::from(path.as_path());
        for entry in table.entries.iter().filter(|entry| entry.key != "service") {
            let message = "an included file holds only [service.NAME] tables".to_string();
            errors.push(file_error(&path, entry.line, &entry.key, message));
        }
        collect_services(&table, &file, definitions, errors);
    }
    Ok(())
}

fn collect_services(
    table: &Table,
    file: &Rc<Path>,
    definitions: &mut Vec<Definition>,
    errors: &mut Vec<ConfigError>,
) {
    let Some(entry) = table.get("service") else {
        return;
    };
    let Value::Table(services) = &entry.value else {
        errors.push(file_error(
            file,
            entry.line,
            "service",
            "expected [service.NAME] tables".to_string(),
        ));
        return;
    };
    for service in &services.entries {
        // `[[service.NAME]]` gives one name several definitions told apart by `id`, as
        // xinetd's repeated `service NAME` blocks are (echo over stream and dgram).
        let tables: Vec<&Value> = match &service.value {
            Value::Array(items) => items.iter().collect(),
            single => vec![single],
        };
        for value in tables {
            let mut service_errors = Vec::new();
            let attrs = read_attrs(
                value,
                file,
                service.line,
                Some(&service.key),
                &mut service_errors,
            );
            let id = attrs
                .id
                .as_ref()
                .map_or_else(|| service.key.clone(), |at| at.value.clone());
            definitions.push(Definition {
                name: service.key.clone(),
                id,
                file: file.clone(),
                line: service.line,
                attrs: (attrs, service_errors),
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
