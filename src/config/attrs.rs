//! One typed value per service key, each read on its own: a key's value is checked
//! here, combinations of keys in `validate`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::raw::Value;
use super::spec::{Instances, Limit, Protocol, SocketType};

/// Where a value was written, for error messages.
#[derive(Clone, Debug, PartialEq)]
pub struct Origin {
    pub file: Rc<Path>,
    pub line: usize,
    /// Written in `[defaults]`: a key that does not fit a service is then left out
    /// quietly rather than blamed on that service.
    pub defaults: bool,
}

/// A value and where it came from (the service's own table or `[defaults]`).
#[derive(Clone, Debug, PartialEq)]
pub struct At<T> {
    pub value: T,
    pub origin: Origin,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceType {
    Internal,
    Unlisted,
    Rpc,
    TcpMux,
    TcpMuxPlus,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flag {
    Ipv4,
    Ipv6,
    Reuse,
    NoDelay,
    KeepAlive,
    NameInArgs,
    Sensor,
    IdOnly,
    NoRetry,
    NoLibwrap,
    Intercept,
}

/// What `log_on_success` may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnSuccess {
    Pid,
    Host,
    UserId,
    Exit,
    Duration,
    Traffic,
}

/// What `log_on_failure` may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnFailure {
    Host,
    UserId,
    Attempt,
}

macro_rules! service_keys {
    ($($field:ident: $ty:ty = $key:literal by $parse:expr,)*) => {
        /// Every key a `[service.NAME]` or `[defaults]` table may hold, each unset or typed.
        #[derive(Clone, Debug, Default)]
        pub struct Attrs {
            $(pub $field: Option<At<$ty>>,)*
        }

        pub const KEYS: &[&str] = &[$($key,)*];

        impl Attrs {
            /// Reads one key; an unknown key or a badly typed value is an error message.
            pub fn set(&mut self, key: &str, value: &Value, origin: Origin) -> Result<(), String> {
                match key {
                    $($key => {
                        let parse: fn(&Value) -> Result<$ty, String> = $parse;
                        self.$field = Some(At { value: parse(value)?, origin });
                    })*
                    _ => return Err(unknown_key(key)),
                }
                Ok(())
            }

            /// Unsets `key`: one that failed to read must not be filled from `[defaults]`.
            pub fn clear(&mut self, key: &str) {
                match key {
                    $($key => self.$field = None,)*
                    _ => {}
                }
            }

            /// Whether `key` holds a value.
            pub fn is_set(&self, key: &str) -> bool {
                match key {
                    $($key => self.$field.is_some(),)*
                    _ => false,
                }
            }

            /// Fills every key this table leaves unset from `defaults`.
            pub fn or(self, defaults: &Attrs) -> Attrs {
                Attrs { $($field: self.$field.or_else(|| defaults.$field.clone()),)* }
            }
        }
    };
}

service_keys! {
    socket_type: SocketType = "socket_type" by |v| enumeration(v, &[("stream", SocketType::Stream), ("dgram", SocketType::Dgram), ("seqpacket", SocketType::Seqpacket)]),
    protocol: Protocol = "protocol" by |v| enumeration(v, &[("tcp", Protocol::Tcp), ("udp", Protocol::Udp)]),
    port: u16 = "port" by port,
    socket_path: PathBuf = "socket_path" by socket_path,
    socket_mode: u32 = "socket_mode" by socket_mode,
    socket_owner: String = "socket_owner" by name,
    socket_group: String = "socket_group" by name,
    wait: bool = "wait" by yes_no,
    user: String = "user" by name,
    group: String = "group" by name,
    groups: bool = "groups" by yes_no,
    server: PathBuf = "server" by |v| string(v).map(PathBuf::from),
    server_args: Vec<String> = "server_args" by server_args,
    types: Vec<ServiceType> = "type" by |v| words(v)?.iter().map(|w| keyword(w, TYPES, &[])).collect(),
    id: String = "id" by name,
    disable: bool = "disable" by yes_no,
    bind: IpAddr = "bind" by address,
    interface: IpAddr = "interface" by address,
    flags: Vec<Flag> = "flags" by |v| words(v)?.iter().map(|w| keyword(w, FLAGS, UNSUPPORTED_FLAGS)).collect(),
    env: Vec<(String, String)> = "env" by env,
    passenv: Vec<String> = "passenv" by passenv,
    instances: Instances = "instances" by instances,
    umask: u32 = "umask" by umask,
    cwd: PathBuf = "cwd" by path,
    no_new_privs: bool = "no_new_privs" by yes_no,
    listen_fds: bool = "listen_fds" by yes_no,
    setsid: bool = "setsid" by yes_no,
    nice: i32 = "nice" by nice,
    rlimit_as: Limit = "rlimit_as" by limit,
    rlimit_cpu: Limit = "rlimit_cpu" by limit,
    rlimit_data: Limit = "rlimit_data" by limit,
    rlimit_rss: Limit = "rlimit_rss" by limit,
    rlimit_stack: Limit = "rlimit_stack" by limit,
    rlimit_files: Limit = "rlimit_files" by limit,
    v6only: bool = "v6only" by yes_no,
    backlog: u32 = "backlog" by backlog,
    only_from: Vec<String> = "only_from" by words,
    no_access: Vec<String> = "no_access" by words,
    access_times: Vec<String> = "access_times" by words,
    max_load: f64 = "max_load" by max_load,
    per_source: Instances = "per_source" by instances,
    cps: Vec<String> = "cps" by words_or_numbers,
    max_servers: u32 = "max_servers" by max_servers,
    deny_time: String = "deny_time" by name,
    log_type: String = "log_type" by string,
    log_on_success: Vec<OnSuccess> = "log_on_success" by |v| words(v)?.iter().map(|w| keyword(w, ON_SUCCESS, &[])).collect(),
    log_on_failure: Vec<OnFailure> = "log_on_failure" by |v| words(v)?.iter().map(|w| keyword(w, ON_FAILURE, &["record"])).collect(),
    banner: PathBuf = "banner" by path,
    banner_success: PathBuf = "banner_success" by path,
    banner_fail: PathBuf = "banner_fail" by path,
    redirect: (String, u16) = "redirect" by redirect,
    connect_timeout: u32 = "connect_timeout" by seconds,
    idle_timeout: u32 = "idle_timeout" by seconds,
    max_duration: u32 = "max_duration" by |v| positive(v, u32::MAX.into(), "seconds"),
    keepalive_idle: u32 = "keepalive_idle" by |v| positive(v, MAX_TCP_KEEPIDLE, "seconds"),
    keepalive_interval: u32 = "keepalive_interval" by |v| positive(v, MAX_TCP_KEEPINTVL, "seconds"),
    keepalive_count: u32 = "keepalive_count" by |v| positive(v, MAX_TCP_KEEPCNT, "probes"),
    tcp_user_timeout: u32 = "tcp_user_timeout" by |v| positive(v, MAX_TCP_USER_TIMEOUT, "seconds"),
    rpc_version: (u32, u32) = "rpc_version" by rpc_version,
    rpc_number: u32 = "rpc_number" by |v| u32::try_from(integer(v)?).map_err(|_| "rpc_number is out of range".to_string()),
    disabled: Vec<String> = "disabled" by words,
    enabled: Vec<String> = "enabled" by words,
}

/// Keys that describe the whole daemon, so only `[defaults]` may hold them.
pub const DEFAULTS_ONLY: &[&str] = &["max_servers", "disabled", "enabled"];

/// Keys that name one service's own resource, so `[defaults]` may not hold them.
pub const SERVICE_ONLY: &[&str] = &["socket_path"];

impl Attrs {
    /// `[defaults]` as a Unix-socket service inherits it: without the keys that only
    /// apply to IP (addresses, ports, address rules, `cps`, IP flags), which a
    /// `[defaults]` written for IP services commonly holds and which are errors in the
    /// service's own table.
    pub fn for_unix(&self) -> Attrs {
        let mut defaults = self.clone();
        for key in [
            "port",
            "protocol",
            "bind",
            "interface",
            "v6only",
            "only_from",
            "no_access",
            "cps",
        ] {
            defaults.clear(key);
        }
        if let Some(flags) = &mut defaults.flags {
            flags.value.retain(|flag| {
                !matches!(
                    flag,
                    Flag::Ipv4
                        | Flag::Ipv6
                        | Flag::NoDelay
                        | Flag::KeepAlive
                        | Flag::IdOnly
                        | Flag::Sensor
                )
            });
        }
        defaults
    }
}

const TYPES: &[(&str, ServiceType)] = &[
    ("internal", ServiceType::Internal),
    ("unlisted", ServiceType::Unlisted),
    ("rpc", ServiceType::Rpc),
    ("tcpmux", ServiceType::TcpMux),
    ("tcpmuxplus", ServiceType::TcpMuxPlus),
];

const ON_SUCCESS: &[(&str, OnSuccess)] = &[
    ("pid", OnSuccess::Pid),
    ("host", OnSuccess::Host),
    ("userid", OnSuccess::UserId),
    ("exit", OnSuccess::Exit),
    ("duration", OnSuccess::Duration),
    ("traffic", OnSuccess::Traffic),
];

const ON_FAILURE: &[(&str, OnFailure)] = &[
    ("host", OnFailure::Host),
    ("userid", OnFailure::UserId),
    ("attempt", OnFailure::Attempt),
];

const FLAGS: &[(&str, Flag)] = &[
    ("ipv4", Flag::Ipv4),
    ("ipv6", Flag::Ipv6),
    ("reuse", Flag::Reuse),
    ("nodelay", Flag::NoDelay),
    ("keepalive", Flag::KeepAlive),
    ("nameinargs", Flag::NameInArgs),
    ("sensor", Flag::Sensor),
    ("idonly", Flag::IdOnly),
    ("noretry", Flag::NoRetry),
    ("nolibwrap", Flag::NoLibwrap),
    ("intercept", Flag::Intercept),
];

/// xinetd words oxinetd does not implement: said so, never ignored.
const UNSUPPORTED_FLAGS: &[&str] = &["labeled"];

/// xinetd attributes oxinetd does not implement, and why.
const UNSUPPORTED_KEYS: &[(&str, &str)] = &[
    (
        "libwrap",
        "oxinetd has no libwrap (TCP wrappers); use only_from and no_access",
    ),
    ("mdns", "oxinetd does not announce services over mDNS"),
    ("bind_to", "write `bind` (or `interface`)"),
];

fn unknown_key(key: &str) -> String {
    if let Some((_, why)) = UNSUPPORTED_KEYS.iter().find(|(name, _)| *name == key) {
        return format!("xinetd's `{key}` is not supported: {why}");
    }
    match closest(key, KEYS) {
        Some(hint) => format!("unknown key (did you mean `{hint}`?)"),
        None => "unknown key".to_string(),
    }
}

/// The known word nearest to `word`, if it is near enough to be a typo.
pub fn closest<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    let folded = |s: &str| s.to_ascii_lowercase().replace(['_', '-'], "");
    let word = folded(word);
    known
        .iter()
        .map(|candidate| (edit_distance(&word, &folded(candidate)), *candidate))
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

fn expected(what: &str, value: &Value) -> String {
    format!("expected {what}, found {}", value.kind())
}

fn string(value: &Value) -> Result<String, String> {
    match value {
        Value::String(text) => Ok(text.clone()),
        other => Err(expected("a string", other)),
    }
}

/// The `id` a service table sets, as `Attrs::set` reads it; `None` when unset or
/// wrong (the service is then known by its name, and the error reported with its keys).
pub fn id_of(value: &Value) -> Option<String> {
    let Value::Table(table) = value else {
        return None;
    };
    name(&table.get("id")?.value).ok()
}

fn name(value: &Value) -> Result<String, String> {
    match value {
        Value::String(text) if text.trim().is_empty() => Err("must not be empty".to_string()),
        Value::String(text) => Ok(text.trim().to_string()),
        // xinetd accepts numeric ids for user and group.
        Value::Integer { .. } => value
            .as_i64()
            .map(|n| n.to_string())
            .ok_or_else(|| "number out of range".to_string()),
        other => Err(expected("a string", other)),
    }
}

/// xinetd writes booleans as `yes`/`no`; TOML users write `true`/`false`.
fn yes_no(value: &Value) -> Result<bool, String> {
    match value {
        Value::Boolean(flag) => Ok(*flag),
        Value::String(text) => match text.to_ascii_lowercase().as_str() {
            "yes" => Ok(true),
            "no" => Ok(false),
            _ => Err(format!(
                "expected true, false, \"yes\" or \"no\", found \"{text}\""
            )),
        },
        other => Err(expected("a boolean", other)),
    }
}

fn enumeration<T: Copy>(value: &Value, choices: &[(&str, T)]) -> Result<T, String> {
    keyword(&string(value)?, choices, &[])
}

fn keyword<T: Copy>(word: &str, choices: &[(&str, T)], not_yet: &[&str]) -> Result<T, String> {
    let folded = word.to_ascii_lowercase();
    if let Some((_, choice)) = choices.iter().find(|(name, _)| *name == folded) {
        return Ok(*choice);
    }
    if not_yet.contains(&folded.as_str()) {
        return Err(format!("xinetd's `{word}` is not supported by oxinetd"));
    }
    let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
    Err(format!("`{word}` is not one of: {}", names.join(", ")))
}

/// A list written as a TOML array of strings or as one space-separated string.
fn words(value: &Value) -> Result<Vec<String>, String> {
    match value {
        Value::String(text) => Ok(text.split_whitespace().map(str::to_string).collect()),
        Value::Array(items) => items.iter().map(string).collect(),
        other => Err(expected("a string or an array of strings", other)),
    }
}

fn strings(value: &Value) -> Result<Vec<String>, String> {
    match value {
        Value::Array(items) => items.iter().map(string).collect(),
        other => Err(expected("an array of strings", other)),
    }
}

fn server_args(value: &Value) -> Result<Vec<String>, String> {
    match value {
        Value::Array(_) => strings(value),
        _ => words(value),
    }
}

fn integer(value: &Value) -> Result<i64, String> {
    match value {
        Value::Integer { .. } => value
            .as_i64()
            .ok_or_else(|| "number out of range".to_string()),
        Value::String(text) => text
            .trim()
            .parse()
            .map_err(|_| format!("expected a number, found \"{text}\"")),
        other => Err(expected("an integer", other)),
    }
}

fn port(value: &Value) -> Result<u16, String> {
    match integer(value)? {
        n @ 1..=65535 => Ok(n as u16),
        n => Err(format!("port {n} is out of range 1-65535")),
    }
}

fn seconds(value: &Value) -> Result<u32, String> {
    match integer(value)? {
        n @ 0..=86400 => Ok(n as u32),
        n => Err(format!("{n} is out of range 0-86400 seconds")),
    }
}

/// Linux's limits (include/net/tcp.h): a larger value is refused by setsockopt.
const MAX_TCP_KEEPIDLE: i64 = 32767;
const MAX_TCP_KEEPINTVL: i64 = 32767;
const MAX_TCP_KEEPCNT: i64 = 127;
/// TCP_USER_TIMEOUT takes an int of milliseconds.
const MAX_TCP_USER_TIMEOUT: i64 = i32::MAX as i64 / 1000;

fn positive(value: &Value, max: i64, unit: &str) -> Result<u32, String> {
    match integer(value)? {
        n if (1..=max).contains(&n) => Ok(n as u32),
        n => Err(format!("{n} is out of range 1-{max} {unit}")),
    }
}

fn max_servers(value: &Value) -> Result<u32, String> {
    match integer(value)? {
        n @ 1..=0xffff_ffff => Ok(n as u32),
        n => Err(format!("max_servers must be at least 1, found {n}")),
    }
}

fn max_load(value: &Value) -> Result<f64, String> {
    let load = match value {
        Value::Float(load) => *load,
        Value::Integer { .. } => integer(value)? as f64,
        Value::String(text) => text
            .trim()
            .parse()
            .map_err(|_| format!("expected a number, found \"{text}\""))?,
        other => return Err(expected("a number", other)),
    };
    if load.is_finite() && load > 0.0 {
        Ok(load)
    } else {
        Err(format!("max_load must be a positive number, found {load}"))
    }
}

fn path(value: &Value) -> Result<PathBuf, String> {
    let path = PathBuf::from(string(value)?);
    if path.is_absolute() {
        Ok(path)
    } else {
        Err(format!("{} is not an absolute path", path.display()))
    }
}

/// `"host port"`, as xinetd writes it; `"host:port"` is accepted too.
fn redirect(value: &Value) -> Result<(String, u16), String> {
    let text = string(value)?;
    let words: Vec<&str> = text.split_whitespace().collect();
    let (host, port) = match words.as_slice() {
        [host, port] => (*host, *port),
        [one] => match one.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') || host.starts_with('[') => (host, port),
            _ => return Err(format!("\"{text}\" is not \"host port\"")),
        },
        _ => return Err(format!("\"{text}\" is not \"host port\"")),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match port.parse::<u16>() {
        Ok(port) if port > 0 => Ok((host.to_string(), port)),
        _ => Err(format!("\"{port}\" is not a port number 1-65535")),
    }
}

/// `"2"` or a range `"2-4"`.
fn rpc_version(value: &Value) -> Result<(u32, u32), String> {
    if let Value::Integer { .. } = value {
        let version = u32::try_from(integer(value)?).map_err(|_| "out of range".to_string())?;
        return Ok((version, version));
    }
    let text = string(value)?;
    let number = |word: &str| {
        word.trim()
            .parse::<u32>()
            .map_err(|_| format!("\"{text}\" is not a version or a range like \"2-4\""))
    };
    let (low, high) = match text.split_once('-') {
        Some((low, high)) => (number(low)?, number(high)?),
        None => {
            let version = number(&text)?;
            (version, version)
        }
    };
    if low > high {
        return Err(format!("\"{text}\": the range is backwards"));
    }
    Ok((low, high))
}

/// A list of numbers or words, as an array or one space-separated string (`cps`).
fn words_or_numbers(value: &Value) -> Result<Vec<String>, String> {
    match value {
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::Integer { .. } => integer(item).map(|n| n.to_string()),
                other => string(other),
            })
            .collect(),
        other => words(other),
    }
}

fn backlog(value: &Value) -> Result<u32, String> {
    match integer(value)? {
        n @ 1..=65535 => Ok(n as u32),
        n => Err(format!("backlog {n} is out of range 1-65535")),
    }
}

fn nice(value: &Value) -> Result<i32, String> {
    match integer(value)? {
        n @ -20..=19 => Ok(n as i32),
        n => Err(format!("nice {n} is out of range -20..19")),
    }
}

fn address(value: &Value) -> Result<IpAddr, String> {
    let text = string(value)?;
    text.trim().parse().map_err(|_| {
        format!("\"{text}\" is not an IP address (oxinetd binds addresses, not names)")
    })
}

fn instances(value: &Value) -> Result<Instances, String> {
    if let Value::String(text) = value
        && text.eq_ignore_ascii_case("unlimited")
    {
        return Ok(Instances::Unlimited);
    }
    match integer(value)? {
        n @ 1..=0xffff_ffff => Ok(Instances::Limit(n as u32)),
        n => Err(format!(
            "instances must be at least 1 or \"UNLIMITED\", found {n}"
        )),
    }
}

/// xinetd writes umask in octal: `"022"`, or a TOML octal integer `0o022`.
/// A decimal integer is refused, since `22` would silently mean 0o026.
/// The longest path bind() takes is 107 bytes; the socket is bound under the path plus
/// `.PID` (up to 8 bytes) and renamed into place, so the path itself gets 99.
pub const MAX_SOCKET_PATH: usize = 99;

fn socket_path(value: &Value) -> Result<PathBuf, String> {
    let path = path(value)?;
    let length = path.as_os_str().len();
    if length > MAX_SOCKET_PATH {
        return Err(format!(
            "{} is {length} bytes long; a Unix socket path may have at most {MAX_SOCKET_PATH}",
            path.display()
        ));
    }
    if path.file_name().is_none() {
        return Err(format!("{} names no file", path.display()));
    }
    Ok(path)
}

/// A file mode, in octal as chmod writes it: `"0660"` or `0o660`.
fn socket_mode(value: &Value) -> Result<u32, String> {
    let parsed = match value {
        Value::String(text) => u32::from_str_radix(text.trim(), 8).ok(),
        Value::Integer { radix: 8, .. } => value.as_i64().and_then(|n| u32::try_from(n).ok()),
        Value::Integer { .. } => {
            return Err("write socket_mode in octal: \"0660\" or 0o660".to_string());
        }
        other => return Err(expected("an octal string such as \"0660\"", other)),
    };
    match parsed {
        Some(mode) if mode <= 0o777 => Ok(mode),
        _ => Err("socket_mode is an octal mode from \"0000\" to \"0777\"".to_string()),
    }
}

fn umask(value: &Value) -> Result<u32, String> {
    let parsed = match value {
        Value::String(text) => u32::from_str_radix(text.trim(), 8).ok(),
        Value::Integer { radix: 8, .. } => value.as_i64().and_then(|n| u32::try_from(n).ok()),
        Value::Integer { .. } => {
            return Err("write umask in octal: \"022\" or 0o022".to_string());
        }
        other => return Err(expected("an octal string such as \"022\"", other)),
    };
    match parsed {
        Some(mask) if mask <= 0o777 => Ok(mask),
        _ => Err("umask must be an octal number from 000 to 777".to_string()),
    }
}

/// A resource limit: a number with an optional K or M suffix (xinetd's), or UNLIMITED.
fn limit(value: &Value) -> Result<Limit, String> {
    let text = match value {
        Value::Integer { .. } => {
            return u64::try_from(integer(value)?)
                .map(Limit::Value)
                .map_err(|_| "must not be negative".to_string());
        }
        Value::String(text) => text.trim(),
        other => return Err(expected("a number or \"UNLIMITED\"", other)),
    };
    if text.eq_ignore_ascii_case("unlimited") {
        return Ok(Limit::Unlimited);
    }
    let (digits, scale) = match text.char_indices().last() {
        Some((at, 'k' | 'K')) => (&text[..at], 1024),
        Some((at, 'm' | 'M')) => (&text[..at], 1024 * 1024),
        Some((at, 'g' | 'G')) => (&text[..at], 1024 * 1024 * 1024),
        _ => (text, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .map(Limit::Value)
        .ok_or_else(|| {
            format!("\"{text}\" is not a number with an optional K, M or G suffix, nor UNLIMITED")
        })
}

fn env(value: &Value) -> Result<Vec<(String, String)>, String> {
    strings(value)?
        .into_iter()
        .map(|entry| match entry.split_once('=') {
            Some((name, value)) if valid_env_name(name) => {
                Ok((name.to_string(), value.to_string()))
            }
            _ => Err(format!("\"{entry}\" is not of the form NAME=value")),
        })
        .collect()
}

fn passenv(value: &Value) -> Result<Vec<String>, String> {
    let names = strings(value)?;
    match names.iter().find(|name| !valid_env_name(name)) {
        Some(bad) => Err(format!("\"{bad}\" is not a variable name")),
        None => Ok(names),
    }
}

fn valid_env_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['=', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(key: &str, toml: &str) -> Result<Attrs, String> {
        let table = super::super::raw::parse(&format!("{key} = {toml}")).unwrap();
        let entry = &table.entries[0];
        let origin = Origin {
            file: Rc::from(Path::new("t.toml")),
            line: 1,
            defaults: false,
        };
        let mut attrs = Attrs::default();
        attrs.set(&entry.key, &entry.value, origin).map(|_| attrs)
    }

    macro_rules! ok {
        ($key:literal = $toml:literal => $field:ident == $want:expr) => {
            assert_eq!(
                read($key, $toml).unwrap().$field.unwrap().value,
                $want,
                "{} = {}",
                $key,
                $toml
            )
        };
    }
    macro_rules! err {
        ($key:literal = $toml:literal => $needle:literal) => {
            let message = read($key, $toml).unwrap_err();
            assert!(message.contains($needle), "{} = {}: {message}", $key, $toml)
        };
    }

    #[test]
    fn values() {
        ok!("socket_type" = "\"STREAM\"" => socket_type == SocketType::Stream);
        ok!("protocol" = "\"udp\"" => protocol == Protocol::Udp);
        ok!("wait" = "\"Yes\"" => wait == true);
        ok!("wait" = "false" => wait == false);
        ok!("port" = "\"8080\"" => port == 8080);
        ok!("user" = "0" => user == "0");
        ok!("server_args" = "\"-a  -b\"" => server_args == vec!["-a", "-b"]);
        ok!("server_args" = "[\"-c\", \"echo a b\"]" => server_args == vec!["-c", "echo a b"]);
        ok!("type" = "\"INTERNAL UNLISTED\"" => types == vec![ServiceType::Internal, ServiceType::Unlisted]);
        ok!("flags" = "[\"IPv4\", \"nodelay\"]" => flags == vec![Flag::Ipv4, Flag::NoDelay]);
        ok!("instances" = "\"UNLIMITED\"" => instances == Instances::Unlimited);
        ok!("instances" = "30" => instances == Instances::Limit(30));
        ok!("umask" = "\"022\"" => umask == 0o22);
        ok!("umask" = "0o027" => umask == 0o27);
        ok!("rlimit_as" = "\"64K\"" => rlimit_as == Limit::Value(65536));
        ok!("rlimit_data" = "\"8m\"" => rlimit_data == Limit::Value(8 << 20));
        ok!("rlimit_cpu" = "\"unlimited\"" => rlimit_cpu == Limit::Unlimited);
        ok!("rlimit_files" = "64" => rlimit_files == Limit::Value(64));
        ok!("env" = "[\"A=b=c\"]" => env == vec![("A".to_string(), "b=c".to_string())]);
        ok!("bind" = "\"::1\"" => bind == "::1".parse::<IpAddr>().unwrap());
        ok!("max_load" = "2.5" => max_load == 2.5);
        ok!("max_load" = "2" => max_load == 2.0);
        ok!("cps" = "[50, 10]" => cps == vec!["50", "10"]);
        ok!("cps" = "\"50 10\"" => cps == vec!["50", "10"]);
        ok!("only_from" = "[]" => only_from == Vec::<String>::new());
        ok!("only_from" = "\"10.0.0.0 ::1\"" => only_from == vec!["10.0.0.0", "::1"]);
        ok!("redirect" = "\"10.0.0.1 23\"" => redirect == ("10.0.0.1".to_string(), 23));
        ok!("redirect" = "\"[::1]:8080\"" => redirect == ("::1".to_string(), 8080));
        ok!("rpc_version" = "\"2-4\"" => rpc_version == (2, 4));
        ok!("rpc_version" = "3" => rpc_version == (3, 3));
        ok!("log_on_success" = "\"PID HOST\"" => log_on_success == vec![OnSuccess::Pid, OnSuccess::Host]);
        ok!("log_on_failure" = "[]" => log_on_failure == vec![]);
        ok!("flags" = "[\"SENSOR\", \"idonly\"]" => flags == vec![Flag::Sensor, Flag::IdOnly]);
        ok!("type" = "\"TCPMUXPLUS\"" => types == vec![ServiceType::TcpMuxPlus]);
        ok!("max_duration" = "3600" => max_duration == 3600);
        ok!("max_duration" = "4294967295" => max_duration == u32::MAX);
        ok!("keepalive_idle" = "32767" => keepalive_idle == 32767);
        ok!("keepalive_interval" = "\"5\"" => keepalive_interval == 5);
        ok!("keepalive_count" = "127" => keepalive_count == 127);
        ok!("tcp_user_timeout" = "2147483" => tcp_user_timeout == 2147483);
    }

    #[test]
    fn errors() {
        err!("sockettype" = "1" => "did you mean `socket_type`");
        err!("Port" = "1" => "did you mean `port`");
        err!("libwrap" = "\"x\"" => "no libwrap");
        err!("socket_type" = "\"raw\"" => "not one of: stream, dgram");
        err!("port" = "70000" => "out of range");
        err!("port" = "\"abc\"" => "expected a number");
        err!("port" = "1.5" => "found a float");
        err!("wait" = "\"maybe\"" => "expected true");
        err!("umask" = "22" => "write umask in octal");
        err!("umask" = "\"1777\"" => "from 000 to 777");
        err!("instances" = "0" => "at least 1");
        err!("rlimit_as" = "\"12Q\"" => "optional K, M or G");
        err!("flags" = "[\"LABELED\"]" => "not supported by oxinetd");
        err!("flags" = "[\"IPv5\"]" => "not one of");
        err!("env" = "[\"NOVALUE\"]" => "NAME=value");
        err!("bind" = "\"localhost\"" => "not an IP address");
        err!("nice" = "40" => "out of range");
        err!("server_args" = "[1]" => "expected a string");
        err!("max_load" = "0" => "positive");
        err!("max_load" = "true" => "expected a number");
        err!("redirect" = "\"host\"" => "not \"host port\"");
        err!("redirect" = "\"host 0\"" => "not a port number");
        err!("rpc_version" = "\"3-1\"" => "backwards");
        err!("banner" = "\"motd\"" => "not an absolute path");
        err!("log_on_success" = "\"PID FOO\"" => "not one of");
        err!("max_duration" = "0" => "out of range 1-4294967295 seconds");
        err!("max_duration" = "-1" => "out of range");
        err!("max_duration" = "4294967296" => "out of range");
        err!("keepalive_idle" = "32768" => "out of range 1-32767 seconds");
        err!("keepalive_interval" = "0" => "out of range 1-32767 seconds");
        err!("keepalive_count" = "128" => "out of range 1-127 probes");
        err!("tcp_user_timeout" = "2147484" => "out of range 1-2147483 seconds");
        err!("keepalive_idle" = "1.5" => "found a float");
    }
}
