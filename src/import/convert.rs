//! xinetd attributes to oxinetd keys: `defaults` and `+=`/`-=` resolved as xinetd
//! resolves them, each value converted or noted, a service that cannot run marked so.

use std::net::IpAddr;
use std::path::Path;

use super::model::{Entry, Note, Service, Value};
use super::xinetd::{Attr, Op};

/// Attributes whose value is a set: xinetd lets them take `+=` and `-=`, and in
/// `defaults` every assignment adds (xinetd.conf(5), "cumulative effect").
const LISTS: &[&str] = &[
    "only_from",
    "no_access",
    "log_on_success",
    "log_on_failure",
    "passenv",
    "env",
    "disabled",
    "enabled",
];

/// The services oxinetd serves itself under `type = INTERNAL`.
const INTERNAL: &[&str] = &["echo", "discard", "daytime", "time", "chargen", "tcpmux"];

/// One attribute after xinetd's operators are applied: its final words, where it was
/// first written, and what the resolution did (said in a note).
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved {
    pub key: String,
    pub values: Vec<String>,
    pub line: usize,
    pub notes: Vec<(usize, String)>,
}

/// `defaults { }`: list attributes accumulate (`=` adds, as `+=` does); any other
/// attribute given twice keeps its last value.
pub fn resolve_defaults(attrs: &[Attr]) -> Vec<Resolved> {
    let mut out: Vec<Resolved> = Vec::new();
    for attr in attrs {
        let list = LISTS.contains(&attr.key.as_str());
        match out.iter_mut().find(|r| r.key == attr.key) {
            Some(known) if list => {
                if attr.op == Op::Remove {
                    known.values.retain(|v| !attr.values.contains(v));
                } else {
                    add(&mut known.values, &attr.values);
                }
                known.notes.push((
                    attr.line,
                    format!(
                        "`{} {} {}` in defaults adds up with line {}, as in xinetd",
                        attr.key,
                        attr.op.text(),
                        attr.values.join(" "),
                        known.line
                    ),
                ));
            }
            Some(known) => {
                known.notes.push((
                    attr.line,
                    format!(
                        "`{}` given again in defaults: the last value, `{}`, is kept",
                        attr.key,
                        attr.values.join(" ")
                    ),
                ));
                known.values = attr.values.clone();
            }
            None => {
                let mut values = Vec::new();
                if attr.op != Op::Remove {
                    add(&mut values, &attr.values);
                }
                out.push(Resolved {
                    key: attr.key.clone(),
                    values,
                    line: attr.line,
                    notes: Vec::new(),
                });
            }
        }
    }
    out
}

/// A service's attributes. For a list attribute, `=` starts afresh, while `+=` and
/// `-=` first written (without a `=` before them) start from the defaults' value:
/// xinetd copies the defaults into the service before applying the modifier. oxinetd
/// has no such operators, so the result is written as the whole list.
pub fn resolve_service(attrs: &[Attr], defaults: &[Resolved]) -> Vec<Resolved> {
    let mut out: Vec<Resolved> = Vec::new();
    for attr in attrs {
        let list = LISTS.contains(&attr.key.as_str());
        let known = out.iter().position(|r| r.key == attr.key);
        let index = match known {
            Some(index) => index,
            None => {
                out.push(Resolved {
                    key: attr.key.clone(),
                    values: Vec::new(),
                    line: attr.line,
                    notes: Vec::new(),
                });
                out.len() - 1
            }
        };
        let resolved = &mut out[index];
        if !list {
            if attr.op != Op::Set {
                resolved.notes.push((
                    attr.line,
                    format!(
                        "xinetd takes only `=` for `{}`: `{}` read as `=`",
                        attr.key,
                        attr.op.text()
                    ),
                ));
            }
            if known.is_some() {
                resolved.notes.push((
                    attr.line,
                    format!(
                        "`{}` given twice: the last value, `{}`, is kept",
                        attr.key,
                        attr.values.join(" ")
                    ),
                ));
            }
            resolved.values = attr.values.clone();
            continue;
        }
        match attr.op {
            Op::Set => resolved.values = dedup(&attr.values),
            Op::Add | Op::Remove => {
                if known.is_none() {
                    let inherited = defaults
                        .iter()
                        .find(|d| d.key == attr.key)
                        .map(|d| d.values.clone())
                        .unwrap_or_default();
                    resolved.notes.push((
                        attr.line,
                        format!(
                            "`{} {} {}` resolved against defaults ({}) as xinetd does; oxinetd writes the whole list",
                            attr.key,
                            attr.op.text(),
                            attr.values.join(" "),
                            if inherited.is_empty() {
                                "none".to_string()
                            } else {
                                format!("`{}`", inherited.join(" "))
                            }
                        ),
                    ));
                    resolved.values = inherited;
                } else {
                    resolved.notes.push((
                        attr.line,
                        format!(
                            "`{} {} {}` applied to the value above",
                            attr.key,
                            attr.op.text(),
                            attr.values.join(" ")
                        ),
                    ));
                }
                if attr.op == Op::Add {
                    add(&mut resolved.values, &attr.values);
                } else {
                    resolved.values.retain(|v| !attr.values.contains(v));
                }
            }
        }
    }
    out
}

fn add(values: &mut Vec<String>, more: &[String]) {
    for value in more {
        if !values.contains(value) {
            values.push(value.clone());
        }
    }
}

fn dedup(values: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    add(&mut out, values);
    out
}

/// Converts resolved attributes into `service`'s entries.
pub fn service(service: &mut Service, attrs: &[Resolved]) {
    for attr in attrs {
        for (line, text) in &attr.notes {
            service.note(&attr.key, *line, text.clone());
        }
        put(service, attr);
    }
    finish(service, attrs);
}

/// Converts `defaults` into entries (notes at each key) and notes for the header.
pub fn defaults(attrs: &[Resolved], file: &Path) -> (Vec<Entry>, Vec<Note>) {
    let mut holder = Service::new("defaults", file.to_path_buf(), 0);
    for attr in attrs {
        for (line, text) in &attr.notes {
            holder.note(&attr.key, *line, text.clone());
        }
        put(&mut holder, attr);
    }
    let about = |mut note: Note| {
        note.about = Some("defaults".to_string());
        note
    };
    let mut entries = holder.entries;
    for entry in &mut entries {
        entry.notes = std::mem::take(&mut entry.notes)
            .into_iter()
            .map(about)
            .collect();
    }
    super::write::sort(&mut entries);
    (entries, holder.notes.into_iter().map(about).collect())
}

fn put(service: &mut Service, attr: &Resolved) {
    let key = attr.key.as_str();
    let line = attr.line;
    let words = &attr.values;
    let joined = words.join(" ");
    if words.is_empty() && !LISTS.contains(&key) {
        service.note(key, line, format!("`{key} =` has no value: left out"));
        return;
    }
    let value = match key {
        "id" | "user" | "group" | "server" | "umask" | "banner" | "banner_success"
        | "banner_fail" => Value::Str(joined),
        "server_args" | "log_type" | "redirect" => Value::Str(joined),
        "socket_type" => match joined.to_ascii_lowercase().as_str() {
            "stream" | "dgram" => Value::Str(joined),
            _ => {
                service.fail(
                    line,
                    format!("socket_type `{joined}`: oxinetd serves stream and dgram only"),
                );
                return;
            }
        },
        "protocol" => match joined.to_ascii_lowercase().as_str() {
            "tcp" | "udp" => Value::Str(joined),
            _ => {
                service.fail(
                    line,
                    format!("protocol `{joined}`: oxinetd serves tcp and udp only"),
                );
                return;
            }
        },
        "port" | "rpc_number" | "nice" => match joined.parse::<i64>() {
            Ok(n) => Value::Int(n),
            Err(_) => {
                service.fail(line, format!("{key} `{joined}` is not a number"));
                return;
            }
        },
        "wait" | "disable" | "groups" | "v6only" => match joined.to_ascii_lowercase().as_str() {
            "yes" | "true" => Value::Bool(true),
            "no" | "false" => Value::Bool(false),
            _ => {
                service.fail(line, format!("{key} `{joined}` is not yes or no"));
                return;
            }
        },
        "instances" | "per_source" => match joined.parse::<i64>() {
            Ok(n) => Value::Int(n),
            Err(_) => Value::Str(joined),
        },
        "deny_time" | "rpc_version" | "rlimit_as" | "rlimit_cpu" | "rlimit_data" | "rlimit_rss"
        | "rlimit_stack" | "rlimit_files" => match joined.parse::<i64>() {
            Ok(n) => Value::Int(n),
            Err(_) => Value::Str(joined),
        },
        "max_load" => match joined.parse::<f64>() {
            Ok(load) => Value::Float(load),
            Err(_) => {
                service.fail(line, format!("max_load `{joined}` is not a number"));
                return;
            }
        },
        "cps" => match words
            .iter()
            .map(|w| w.parse::<i64>())
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(numbers) => {
                service.note(
                    key,
                    line,
                    "cps now sheds each source for the pause instead of turning the whole service off",
                );
                Value::Ints(numbers)
            }
            Err(_) => {
                service.fail(line, format!("cps `{joined}` is not two numbers"));
                return;
            }
        },
        "bind" | "interface" => match joined.parse::<IpAddr>() {
            Ok(_) => Value::Str(joined),
            Err(_) => {
                service.fail(
                    line,
                    format!("{key} `{joined}` is a name: oxinetd binds addresses, not names; write the address"),
                );
                return;
            }
        },
        "type" => Value::Strs(words.clone()),
        "flags" => Value::Strs(flags(service, words, line)),
        "log_on_failure" => {
            let mut kept = words.clone();
            if kept.iter().any(|w| w.eq_ignore_ascii_case("record")) {
                kept.retain(|w| !w.eq_ignore_ascii_case("record"));
                service.note(
                    key,
                    line,
                    "RECORD left out: oxinetd does not record the peer's details on failure",
                );
            }
            Value::Strs(kept)
        }
        "only_from" | "no_access" | "access_times" | "log_on_success" | "passenv" | "env"
        | "disabled" | "enabled" => Value::Strs(words.clone()),
        "libwrap" => {
            service.note(
                key,
                line,
                format!("libwrap `{joined}` left out: oxinetd has no TCP wrappers, so hosts.allow and hosts.deny are not consulted; write only_from and no_access"),
            );
            return;
        }
        "mdns" => {
            service.note(
                key,
                line,
                format!("mdns `{joined}` left out: oxinetd does not announce services over mDNS"),
            );
            return;
        }
        "include" | "includedir" => {
            service.note(
                key,
                line,
                format!("`{key}` inside a block is not allowed by xinetd: left out"),
            );
            return;
        }
        _ => {
            service.note(
                key,
                line,
                format!("`{key} = {joined}` left out: not an attribute oxinetd knows"),
            );
            return;
        }
    };
    service.set(key, value);
}

/// Flags oxinetd has are kept; DISABLE becomes `disable`, LABELED is left out.
fn flags(service: &mut Service, words: &[String], line: usize) -> Vec<String> {
    let mut kept = Vec::new();
    for word in words {
        match word.to_ascii_uppercase().as_str() {
            "LABELED" => service.note(
                "flags",
                line,
                "LABELED left out: oxinetd does not switch SELinux contexts",
            ),
            "DISABLE" => {
                service.note("flags", line, "flag DISABLE written as `disable = true`");
                service.set("disable", Value::Bool(true));
            }
            _ => kept.push(word.clone()),
        }
    }
    let has = |kept: &[String], flag: &str| kept.iter().any(|w| w.eq_ignore_ascii_case(flag));
    if has(&kept, "IPv4") && has(&kept, "IPv6") {
        kept.retain(|w| !w.eq_ignore_ascii_case("IPv4"));
        service.note(
            "flags",
            line,
            "IPv4 with IPv6 is an error in oxinetd: IPv6 kept (xinetd takes the pair as IPv6)",
        );
    }
    kept
}

/// What depends on several keys at once, after all are read. A note goes on the line
/// of `type`, else of the block.
pub fn finish(service: &mut Service, attrs: &[Resolved]) {
    let words = |service: &Service, key: &str| match service.get(key) {
        Some(Value::Strs(words)) => words.clone(),
        _ => Vec::new(),
    };
    let types = words(service, "type");
    let flags = words(service, "flags");
    let internal = types.iter().any(|t| t.eq_ignore_ascii_case("INTERNAL"));
    let sensor = flags.iter().any(|f| f.eq_ignore_ascii_case("SENSOR"));
    let line_of = |key: &str, otherwise: usize| {
        attrs
            .iter()
            .find(|a| a.key == key)
            .map_or(otherwise, |a| a.line)
    };
    let line = line_of("type", service.line);
    if sensor {
        if internal {
            let kept: Vec<String> = types
                .iter()
                .filter(|t| !t.eq_ignore_ascii_case("INTERNAL"))
                .cloned()
                .collect();
            service.note(
                "type",
                line,
                "INTERNAL left out: a SENSOR is served by oxinetd itself without it",
            );
            if kept.is_empty() {
                service.remove("type");
            } else {
                service.set("type", Value::Strs(kept));
            }
        }
        if service.remove("server").is_some() {
            service.note(
                "server",
                line_of("server", line),
                "server left out: a SENSOR runs nothing (xinetd ignores it)",
            );
        }
    } else if internal && !INTERNAL.contains(&service.name.as_str()) {
        service.fail(
            line,
            format!(
                "xinetd's internal `{}` service has no oxinetd equivalent (oxinetd has {})",
                service.name,
                INTERNAL.join(", ")
            ),
        );
    }
    let dgram = matches!(service.get("socket_type"), Some(Value::Str(t)) if t.eq_ignore_ascii_case("dgram"))
        || matches!(service.get("protocol"), Some(Value::Str(p)) if p.eq_ignore_ascii_case("udp"));
    let exec = !internal && !sensor && service.get("redirect").is_none();
    if dgram && exec && service.get("wait") == Some(&Value::Bool(false)) {
        service.set("wait", Value::Bool(true));
        service.note(
            "wait",
            line_of("wait", line),
            "`wait = no` for a dgram server written as `wait = true`: oxinetd hands a dgram server its socket and waits; the server still reads the datagram that started it",
        );
    }
    if service.failed.is_some() {
        service.set("disable", Value::Bool(true));
    }
    super::write::sort(&mut service.entries);
}
