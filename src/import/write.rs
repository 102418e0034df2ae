//! Writes a `Document` as TOML, each note as a `# import: ...` line above its key.
//!
//! Hand-written rather than serde: a serialiser has no place for a comment above one
//! key, and the notes are the point of the output. Strings are quoted by the `toml`
//! crate, so escaping is TOML's own.

use std::fmt::Write;

use super::model::{Document, Entry, Value};

/// Keys in the order of docs/configuration.md ("All service keys"), `id` first as in
/// its `[[service.NAME]]` examples, so a reader finds a key where the reference has it.
pub const ORDER: &[&str] = &[
    "id",
    "socket_type",
    "protocol",
    "port",
    "bind",
    "interface",
    "flags",
    "v6only",
    "backlog",
    "wait",
    "server",
    "server_args",
    "type",
    "disable",
    "redirect",
    "connect_timeout",
    "idle_timeout",
    "deny_time",
    "rpc_version",
    "rpc_number",
    "user",
    "group",
    "groups",
    "umask",
    "nice",
    "rlimit_as",
    "rlimit_cpu",
    "rlimit_data",
    "rlimit_rss",
    "rlimit_stack",
    "rlimit_files",
    "env",
    "passenv",
    "only_from",
    "no_access",
    "access_times",
    "max_load",
    "instances",
    "per_source",
    "cps",
    "max_servers",
    "disabled",
    "enabled",
    "log_type",
    "log_on_success",
    "log_on_failure",
    "banner",
    "banner_success",
    "banner_fail",
];

/// Where `key` goes; keys oxinetd does not know (kept only for their notes) go last.
pub fn rank(key: &str) -> usize {
    ORDER
        .iter()
        .position(|known| *known == key)
        .unwrap_or(ORDER.len())
}

/// Puts entries in reference order; a stable sort keeps unknown keys as they came.
pub fn sort(entries: &mut [Entry]) {
    entries.sort_by_key(|entry| rank(&entry.key));
}

pub fn document(doc: &Document) -> String {
    let mut out = String::new();
    for line in &doc.header {
        let _ = writeln!(out, "# {line}");
    }
    if let Some(dir) = &doc.includedir {
        separate(&mut out);
        let _ = writeln!(out, "includedir = {}", string(dir));
    }
    if let Some(defaults) = &doc.defaults {
        separate(&mut out);
        out.push_str("[defaults]\n");
        for note in &doc.defaults_notes {
            let _ = writeln!(out, "# import: {}", note.text);
        }
        entries(&mut out, defaults);
    }
    for service in &doc.services {
        separate(&mut out);
        let several = doc
            .services
            .iter()
            .filter(|other| other.name == service.name)
            .count()
            > 1;
        let name = key(&service.name);
        if several {
            let _ = writeln!(out, "[[service.{name}]]");
        } else {
            let _ = writeln!(out, "[service.{name}]");
        }
        for note in &service.notes {
            let _ = writeln!(out, "# import: {}", note.text);
        }
        entries(&mut out, &service.entries);
    }
    out
}

fn separate(out: &mut String) {
    if !out.is_empty() {
        out.push('\n');
    }
}

fn entries(out: &mut String, entries: &[Entry]) {
    for entry in entries {
        for note in &entry.notes {
            let _ = writeln!(out, "# import: {}", note.text);
        }
        if let Some(value) = &entry.value {
            let _ = writeln!(out, "{} = {}", key(&entry.key), self::value(value));
        }
    }
}

pub fn value(value: &Value) -> String {
    match value {
        Value::Str(text) => string(text),
        Value::Int(n) => n.to_string(),
        Value::Float(x) => toml::Value::Float(*x).to_string(),
        Value::Bool(flag) => flag.to_string(),
        Value::Strs(items) => {
            let items: Vec<String> = items.iter().map(|item| string(item)).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Ints(items) => {
            let items: Vec<String> = items.iter().map(i64::to_string).collect();
            format!("[{}]", items.join(", "))
        }
    }
}

fn string(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// A bare key when TOML allows one, else a quoted key.
fn key(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare { name.to_string() } else { string(name) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_written_as_a_person_would() {
        let cases: &[(Value, &str)] = &[
            (Value::Str("-l -w".into()), r#""-l -w""#),
            (Value::Str("say \"hi\"".into()), r#"'say "hi"'"#),
            (Value::Int(2401), "2401"),
            (Value::Float(2.5), "2.5"),
            (Value::Float(2.0), "2.0"),
            (Value::Bool(false), "false"),
            (
                Value::Strs(vec!["IPv4".into(), "NODELAY".into()]),
                r#"["IPv4", "NODELAY"]"#,
            ),
            (Value::Strs(vec![]), "[]"),
            (Value::Ints(vec![25, 30]), "[25, 30]"),
        ];
        for (input, want) in cases {
            assert_eq!(value(input), *want, "{input:?}");
        }
    }

    #[test]
    fn keys_are_quoted_only_when_needed() {
        assert_eq!(key("sane-port"), "sane-port");
        assert_eq!(key("echo_2"), "echo_2");
        assert_eq!(key("a.b"), r#""a.b""#);
        assert_eq!(key("2401"), "2401");
    }

    #[test]
    fn keys_follow_the_reference_order() {
        assert!(rank("id") < rank("socket_type"));
        assert!(rank("wait") < rank("server"));
        assert!(rank("user") < rank("only_from"));
        assert!(rank("log_type") < rank("banner_fail"));
        assert_eq!(rank("mdns"), ORDER.len());
    }
}
