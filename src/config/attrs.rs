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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flag {
    Ipv4,
    Ipv6,
    Reuse,
    NoDelay,
    KeepAlive,
    NameInArgs,
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

            /// Fills every key this table leaves unset from `defaults`.
            pub fn or(self, defaults: &Attrs) -> Attrs {
                Attrs { $($field: self.$field.or_else(|| defaults.$field.clone()),)* }
            }
        }
    };
}

service_keys! {
    socket_type: SocketType = "socket_type" by |v| enumeration(v, &[("stream", SocketType::Stream), ("dgram", SocketType::Dgram)]),
    protocol: Protocol = "protocol" by |v| enumeration(v, &[("tcp", Protocol::Tcp), ("udp", Protocol::Udp)]),
    port: u16 = "port" by port,
    wait: bool = "wait" by yes_no,
    user: String = "user" by name,
    group: String = "group" by name,
    groups: bool = "groups" by yes_no,
    server: PathBuf = "server" by |v| string(v).map(PathBuf::from),
    server_args: Vec<String> = "server_args" by server_args,
    types: Vec<ServiceType> = "type" by |v| words(v)?.iter().map(|w| keyword(w, &[("internal", ServiceType::Internal), ("unlisted", ServiceType::Unlisted)], NOT_YET_TYPES)).collect(),
    id: String = "id" by name,
    disable: bool = "disable" by yes_no,
    bind: IpAddr = "bind" by address,
    flags: Vec<Flag> = "flags" by |v| words(v)?.iter().map(|w| keyword(w, FLAGS, NOT_YET_FLAGS)).collect(),
    env: Vec<(String, String)> = "env" by env,
    passenv: Vec<String> = "passenv" by passenv,
    instances: Instances = "instances" by instances,
    umask: u32 = "umask" by umask,
    nice: i32 = "nice" by nice,
    rlimit_as: Limit = "rlimit_as" by limit,
    rlimit_cpu: Limit = "rlimit_cpu" by limit,
    rlimit_data: Limit = "rlimit_data" by limit,
    rlimit_rss: Limit = "rlimit_rss" by limit,
    rlimit_stack: Limit = "rlimit_stack" by limit,
    rlimit_files: Limit = "rlimit_files" by limit,
    v6only: bool = "v6only" by yes_no,
    backlog: u32 = "backlog" by backlog,
}

const FLAGS: &[(&str, Flag)] = &[
    ("ipv4", Flag::Ipv4),
    ("ipv6", Flag::Ipv6),
    ("reuse", Flag::Reuse),
    ("nodelay", Flag::NoDelay),
    ("keepalive", Flag::KeepAlive),
    ("nameinargs", Flag::NameInArgs),
];

/// xinetd words this version knows but does not implement yet: said so, never ignored.
const NOT_YET_FLAGS: &[&str] = &[
    "intercept",
    "noretry",
    "idonly",
    "nolibwrap",
    "sensor",
    "labeled",
    "deny_time",
];
const NOT_YET_TYPES: &[&str] = &["rpc", "tcpmux", "tcpmuxplus"];

/// xinetd attributes this version does not implement yet.
const NOT_YET_KEYS: &[&str] = &[
    "only_from",
    "no_access",
    "access_times",
    "log_type",
    "log_on_success",
    "log_on_failure",
    "per_source",
    "cps",
    "max_load",
    "deny_time",
    "banner",
    "banner_success",
    "banner_fail",
    "redirect",
    "rpc_version",
    "rpc_number",
    "interface",
    "mdns",
    "libwrap",
];

fn unknown_key(key: &str) -> String {
    if NOT_YET_KEYS.contains(&key) {
        return format!("xinetd's `{key}` is not supported by this version of oxinetd");
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
        return Err(format!(
            "xinetd's `{word}` is not supported by this version of oxinetd"
        ));
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
    }

    #[test]
    fn errors() {
        err!("sockettype" = "1" => "did you mean `socket_type`");
        err!("Port" = "1" => "did you mean `port`");
        err!("only_from" = "\"x\"" => "not supported by this version");
        err!("socket_type" = "\"raw\"" => "not one of: stream, dgram");
        err!("port" = "70000" => "out of range");
        err!("port" = "\"abc\"" => "expected a number");
        err!("port" = "1.5" => "found a float");
        err!("wait" = "\"maybe\"" => "expected true");
        err!("umask" = "22" => "write umask in octal");
        err!("umask" = "\"1777\"" => "from 000 to 777");
        err!("instances" = "0" => "at least 1");
        err!("rlimit_as" = "\"12Q\"" => "optional K, M or G");
        err!("flags" = "[\"SENSOR\"]" => "not supported by this version");
        err!("flags" = "[\"IPv5\"]" => "not one of");
        err!("env" = "[\"NOVALUE\"]" => "NAME=value");
        err!("bind" = "\"localhost\"" => "not an IP address");
        err!("nice" = "40" => "out of range");
        err!("server_args" = "[1]" => "expected a string");
    }
}
