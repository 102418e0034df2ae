//! Reads inetd.conf lines (`service socket-type protocol wait[.max] user[.group] server
//! args`, OpenBSD's inetd.conf(5) with Debian's `#<off>#` lines) into services.

use std::net::IpAddr;
use std::path::Path;

use super::convert;
use super::model::{Service, Value};

/// Where tcpd finds a daemon named without a path (Debian's REAL_DAEMON_DIR).
const TCPD_DIR: &str = "/usr/sbin";
const INTERNAL: &[&str] = &["echo", "discard", "daytime", "time", "chargen"];

pub fn parse(text: &str, file: &Path) -> Vec<Service> {
    let mut services = Vec::new();
    // OpenBSD: a line `host:` alone sets the address for the lines after it.
    let mut host = "*".to_string();
    for (at, raw) in text.lines().enumerate() {
        let line = at + 1;
        let mut text = raw.trim();
        // update-inetd disables a service by commenting it out this way.
        let off = text.starts_with("#<off>#");
        if off {
            text = text["#<off>#".len()..].trim();
        } else if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = text.split_whitespace().collect();
        if fields.len() == 1
            && let Some(address) = fields[0].strip_suffix(':')
        {
            host = address.to_string();
            continue;
        }
        if fields.len() < 6 {
            if off {
                continue; // An ordinary comment that happens to follow the marker.
            }
            let mut service = Service::new(fields[0], file.to_path_buf(), line);
            service.fail(
                line,
                format!(
                    "`{text}` has {} fields; inetd.conf needs at least 6",
                    fields.len()
                ),
            );
            convert::finish(&mut service, &[]);
            services.push(service);
            continue;
        }
        services.push(entry(&fields, &host, off, file, line));
    }
    // One name over stream and dgram (echo, daytime...): told apart by id the way
    // xinetd's own files name them, `echo-stream` and `echo-dgram`.
    let names: Vec<String> = services.iter().map(|s| s.name.clone()).collect();
    for service in &mut services {
        if names.iter().filter(|n| **n == service.name).count() > 1
            && let Some(Value::Str(kind)) = service.get("socket_type")
        {
            let id = format!("{}-{kind}", service.name);
            service.set("id", Value::Str(id));
            super::write::sort(&mut service.entries);
        }
    }
    services
}

fn entry(fields: &[&str], default_host: &str, off: bool, file: &Path, line: usize) -> Service {
    let (host, name) = match fields[0].rsplit_once(':') {
        Some((host, name)) => (host, name),
        None => (default_host, fields[0]),
    };
    let (name, rpc_version) = match name.split_once('/') {
        Some((name, version)) if fields[2].starts_with("rpc/") => (name, Some(version)),
        _ => (name, None),
    };
    let mut service = Service::new(name, file.to_path_buf(), line);
    if let Ok(port) = name.parse::<i64>() {
        service.set("port", Value::Int(port));
        service.note_service(
            line,
            "a port number as the service name: written as an UNLISTED service with that port",
        );
    }
    match fields[1] {
        "stream" | "dgram" => service.set("socket_type", Value::Str(fields[1].to_string())),
        other => service.fail(
            line,
            format!("socket type `{other}`: oxinetd serves stream and dgram only"),
        ),
    }
    protocol(&mut service, fields[2], rpc_version, line);
    match host {
        "*" | "" => {}
        address if address.parse::<IpAddr>().is_ok() => {
            service.set("bind", Value::Str(address.to_string()))
        }
        other => service.fail(
            line,
            format!(
                "host `{other}`: oxinetd binds one address, not names or lists; write the address"
            ),
        ),
    }
    let (wait, max) = match fields[3].split_once('.') {
        Some((wait, max)) => (wait, Some(max)),
        None => (fields[3], None),
    };
    match wait {
        "wait" => service.set("wait", Value::Bool(true)),
        "nowait" => service.set("wait", Value::Bool(false)),
        other => service.fail(line, format!("`{other}` is neither wait nor nowait")),
    }
    if max.is_some() {
        service.note(
            "wait",
            line,
            format!("`{}` left out: oxinetd has no per-minute start limit; see instances, per_source and cps", fields[3]),
        );
    }
    let (user, group) = match fields[4].split_once([':', '.']) {
        Some((user, group)) => (user, Some(group)),
        None => (fields[4], None),
    };
    service.set("user", Value::Str(user.to_string()));
    if let Some(group) = group {
        service.set("group", Value::Str(group.to_string()));
    }
    program(&mut service, &fields[5..], line);
    if off {
        service.set("disable", Value::Bool(true));
        service.note(
            "disable",
            line,
            "the line is commented out with update-inetd's `#<off>#`: written disabled",
        );
    }
    convert::finish(&mut service, &[]);
    service
}

fn protocol(service: &mut Service, field: &str, rpc_version: Option<&str>, line: usize) {
    let mut parts = field.split(',');
    let mut protocol = parts.next().unwrap_or_default();
    let buffers: Vec<&str> = parts.collect();
    if !buffers.is_empty() {
        service.note(
            "protocol",
            line,
            format!(
                "`{}` left out: oxinetd does not set socket buffer sizes",
                buffers.join(",")
            ),
        );
    }
    let rpc = match protocol.strip_prefix("rpc/") {
        Some(rest) => {
            protocol = rest;
            true
        }
        None => false,
    };
    let (base, family) = protocol.split_at(protocol.len().min(3));
    match (base, family) {
        ("tcp" | "udp", "") | ("tcp" | "udp", "46") => {}
        ("tcp" | "udp", "4") => service.set("flags", Value::Strs(vec!["IPv4".into()])),
        ("tcp" | "udp", "6") => {
            service.set("flags", Value::Strs(vec!["IPv6".into()]));
            service.set("v6only", Value::Bool(true));
        }
        _ => {
            service.fail(
                line,
                format!("protocol `{protocol}`: oxinetd serves tcp and udp only"),
            );
            return;
        }
    }
    service.set("protocol", Value::Str(base.to_string()));
    let mut types = Vec::new();
    if rpc {
        types.push("RPC".to_string());
        match rpc_version {
            Some(version) => service.set(
                "rpc_version",
                match version.parse::<i64>() {
                    Ok(n) => Value::Int(n),
                    Err(_) => Value::Str(version.to_string()),
                },
            ),
            None => service.fail(line, "an RPC service needs NAME/VERSION"),
        }
    } else if service.get("port").is_some() {
        types.push("UNLISTED".to_string());
    }
    if !types.is_empty() {
        service.set("type", Value::Strs(types));
    }
}

/// The server and its arguments, which in inetd.conf start with argv[0].
fn program(service: &mut Service, fields: &[&str], line: usize) {
    let mut server = fields[0].to_string();
    let mut args: Vec<String> = fields[1..].iter().map(|s| s.to_string()).collect();
    if server == "internal" {
        if INTERNAL.contains(&service.name.as_str()) {
            let mut types = match service.get("type") {
                Some(Value::Strs(types)) => types.clone(),
                _ => Vec::new(),
            };
            types.insert(0, "INTERNAL".to_string());
            service.set("type", Value::Strs(types));
            service.remove("user");
        } else {
            service.fail(
                line,
                format!(
                    "inetd's internal `{}` service has no oxinetd equivalent",
                    service.name
                ),
            );
        }
        return;
    }
    if Path::new(&server).file_name().is_some_and(|n| n == "tcpd") {
        match args.first() {
            Some(real) => {
                let real = if real.starts_with('/') {
                    real.clone()
                } else {
                    format!("{TCPD_DIR}/{real}")
                };
                service.note(
                    "server",
                    line,
                    format!("tcpd left out, {real} run directly: oxinetd has no TCP wrappers, so hosts.allow and hosts.deny are not consulted; write only_from and no_access"),
                );
                args[0] = basename(&real);
                server = real;
            }
            None => {
                service.fail(line, "tcpd without the server it wraps");
                return;
            }
        }
    }
    service.set("server", Value::Str(server.clone()));
    match args.split_first() {
        Some((argv0, rest)) if *argv0 == basename(&server) && !rest.is_empty() => {
            service.set("server_args", Value::Str(rest.join(" ")));
        }
        Some((argv0, _)) if *argv0 == basename(&server) => {}
        Some(_) => {
            // argv[0] is not the program's name: NAMEINARGS passes it as written.
            let mut flags = match service.get("flags") {
                Some(Value::Strs(flags)) => flags.clone(),
                _ => Vec::new(),
            };
            flags.push("NAMEINARGS".to_string());
            service.set("flags", Value::Strs(flags));
            service.set("server_args", Value::Str(args.join(" ")));
        }
        None => {}
    }
}

fn basename(path: &str) -> String {
    path.rsplit('/').next().unwrap_or(path).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::write;

    /// One inetd.conf line to its keys, as `key = value` lines, and its notes.
    fn one(line: &str) -> (String, Vec<String>) {
        let services = parse(line, Path::new("inetd.conf"));
        assert_eq!(services.len(), 1, "{line}");
        let service = &services[0];
        let mut keys = Vec::new();
        let mut notes: Vec<String> = service.notes.iter().map(|n| n.text.clone()).collect();
        for entry in &service.entries {
            notes.extend(entry.notes.iter().map(|n| n.text.clone()));
            if let Some(value) = &entry.value {
                keys.push(format!("{} = {}", entry.key, write::value(value)));
            }
        }
        (format!("[{}] {}", service.name, keys.join("; ")), notes)
    }

    #[test]
    fn lines() {
        let cases: &[(&str, &str, &[&str])] = &[
            (
                "finger stream tcp nowait nobody /usr/sbin/tcpd /usr/sbin/in.fingerd",
                r#"[finger] socket_type = "stream"; protocol = "tcp"; wait = false; server = "/usr/sbin/in.fingerd"; user = "nobody""#,
                &["tcpd left out, /usr/sbin/in.fingerd run directly"],
            ),
            (
                "talk dgram udp wait nobody.tty /usr/sbin/in.talkd in.talkd",
                r#"[talk] socket_type = "dgram"; protocol = "udp"; wait = true; server = "/usr/sbin/in.talkd"; user = "nobody"; group = "tty""#,
                &[],
            ),
            (
                "ftp stream tcp6 nowait.400 root /usr/sbin/ftpd ftpd -l",
                r#"[ftp] socket_type = "stream"; protocol = "tcp"; flags = ["IPv6"]; v6only = true; wait = false; server = "/usr/sbin/ftpd"; server_args = "-l"; user = "root""#,
                &["`nowait.400` left out"],
            ),
            (
                "echo dgram udp wait root internal",
                r#"[echo] socket_type = "dgram"; protocol = "udp"; wait = true; type = ["INTERNAL"]"#,
                &[],
            ),
            (
                "127.0.0.1:ident stream tcp4 nowait identd:nogroup /usr/sbin/identd identd -i",
                r#"[ident] socket_type = "stream"; protocol = "tcp"; bind = "127.0.0.1"; flags = ["IPv4"]; wait = false; server = "/usr/sbin/identd"; server_args = "-i"; user = "identd"; group = "nogroup""#,
                &[],
            ),
            (
                "rusers/1-3 dgram rpc/udp wait root /usr/libexec/rpc.rusersd rpc.rusersd",
                r#"[rusers] socket_type = "dgram"; protocol = "udp"; wait = true; server = "/usr/libexec/rpc.rusersd"; type = ["RPC"]; rpc_version = "1-3"; user = "root""#,
                &[],
            ),
            (
                "#<off># sane-port\tstream\ttcp\tnowait\tsaned:saned\t/usr/sbin/saned saned",
                r#"[sane-port] socket_type = "stream"; protocol = "tcp"; wait = false; server = "/usr/sbin/saned"; disable = true; user = "saned"; group = "saned""#,
                &["`#<off>#`"],
            ),
            (
                "tftp dgram udp nowait nobody /usr/sbin/tcpd in.tftpd -s /srv",
                r#"[tftp] socket_type = "dgram"; protocol = "udp"; wait = true; server = "/usr/sbin/in.tftpd"; server_args = "-s /srv"; user = "nobody""#,
                &["`wait = no` for a dgram server", "tcpd left out"],
            ),
            (
                "shell stream tcp,rcvbuf=64k nowait root /usr/sbin/rshd in.rshd -L",
                r#"[shell] socket_type = "stream"; protocol = "tcp"; flags = ["NAMEINARGS"]; wait = false; server = "/usr/sbin/rshd"; server_args = "in.rshd -L"; user = "root""#,
                &["`rcvbuf=64k` left out"],
            ),
            (
                "2401 stream tcp nowait root /usr/bin/cvs cvs pserver",
                r#"[2401] socket_type = "stream"; protocol = "tcp"; port = 2401; wait = false; server = "/usr/bin/cvs"; server_args = "pserver"; type = ["UNLISTED"]; user = "root""#,
                &["a port number as the service name"],
            ),
            (
                "/var/run/x.sock stream unix nowait root /bin/cat cat",
                r#"[/var/run/x.sock] socket_type = "stream"; wait = false; server = "/bin/cat"; disable = true; user = "root""#,
                &["not converted: protocol `unix`"],
            ),
            (
                "login stream tcp nowait root",
                r#"[login] disable = true"#,
                &["not converted: `login stream tcp nowait root` has 5 fields"],
            ),
            (
                "time stream tcp nowait root internal",
                r#"[time] socket_type = "stream"; protocol = "tcp"; wait = false; type = ["INTERNAL"]"#,
                &[],
            ),
            (
                "gopher stream tcp nowait root internal",
                r#"[gopher] socket_type = "stream"; protocol = "tcp"; wait = false; disable = true; user = "root""#,
                &["not converted: inetd's internal `gopher`"],
            ),
        ];
        for (line, want, notes) in cases {
            let (got, got_notes) = one(line);
            assert_eq!(&got, want, "{line}");
            assert_eq!(got_notes.len(), notes.len(), "{line}: {got_notes:?}");
            for (got, want) in got_notes.iter().zip(notes.iter()) {
                assert!(got.contains(want), "{line}: {got}");
            }
        }
    }

    #[test]
    fn one_name_over_stream_and_dgram_gets_two_ids() {
        let text = "echo stream tcp nowait root internal\necho dgram udp wait root internal\n";
        let services = parse(text, Path::new("inetd.conf"));
        let ids: Vec<&str> = services.iter().map(|s| s.id()).collect();
        assert_eq!(ids, ["echo-stream", "echo-dgram"]);
    }

    #[test]
    fn a_host_line_sets_the_address_for_the_lines_after_it() {
        let text = "10.0.0.1:\nfinger stream tcp nowait nobody /usr/sbin/in.fingerd in.fingerd\n*:\necho stream tcp nowait root internal\n";
        let services = parse(text, Path::new("inetd.conf"));
        assert_eq!(
            services[0].get("bind"),
            Some(&Value::Str("10.0.0.1".into()))
        );
        assert_eq!(services[1].get("bind"), None);
    }
}
