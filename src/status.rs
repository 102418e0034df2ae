//! What `oxinetd status` (and `SIGUSR1`) shows: the daemon and its services as data,
//! in the stable JSON format of docs/status.md, and as a table that fits 100 columns.
//! Pure: the daemon fills a `Status` from its rooms (`daemon::control`).

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::logging::escaped;

/// Bumped only when a field changes meaning or goes away; new fields may be added.
pub const FORMAT: u32 = 1;

/// The widest a line of the table gets.
pub const COLUMNS: usize = 100;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub format: u32,
    pub pid: u32,
    pub uptime_seconds: u64,
    pub config_file: String,
    /// Exec'd servers running, all services together.
    pub servers: usize,
    /// `None` until the first reload (by `SIGHUP` or `oxinetd reload`).
    pub last_reload: Option<Reload>,
    pub services: Vec<Service>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reload {
    /// The new configuration applied without any error.
    pub ok: bool,
    pub seconds_ago: u64,
    /// One line: `4 services` or `2 errors; 3 services`.
    pub summary: String,
    /// Every error, `FILE:LINE: ...` where the configuration says where.
    pub errors: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// The loop watches the listener (or tcpmux reaches the service).
    Listening,
    /// A `wait` server holds the socket.
    Held,
    /// The listener is out of the poll set for a moment: a back-off after a `wait`
    /// server exited at once, or after a failed start, or fds ran out.
    Paused,
    /// Some peer is over `cps` and being shed.
    Cps,
    Disabled,
    /// Not started: see `reason`.
    Failed,
}

impl State {
    pub fn word(self) -> &'static str {
        match self {
            State::Listening => "listening",
            State::Held => "held",
            State::Paused => "paused",
            State::Cps => "cps",
            State::Disabled => "disabled",
            State::Failed => "failed",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Service {
    pub id: String,
    /// `127.0.0.1:7 stream/tcp`, `tcpmux NAME`; `None` for a disabled service.
    pub address: Option<String>,
    pub state: State,
    /// Why a `failed` service did not start.
    pub reason: Option<String>,
    /// Servers, sessions and relays of this service.
    pub running: usize,
    /// Connections admitted (for a `wait` service: servers started; for an internal
    /// datagram service: datagrams answered) since the service started.
    pub accepted: u64,
    /// Refusals since the service started, by xinetd's reason word; every word is
    /// present, 0 included.
    pub refused: BTreeMap<String, u64>,
    pub last_error: Option<String>,
}

impl Service {
    pub fn refused_total(&self) -> u64 {
        self.refused.values().sum()
    }
}

/// The status as a table: a header, one line per service, and indented lines for what
/// does not fit a column (refusals by reason, why it failed, the last error).
pub fn table(status: &Status) -> String {
    let mut out = String::new();
    let mut line = format!(
        "oxinetd pid {}, up {}, {} servers running, config {}",
        status.pid,
        duration(status.uptime_seconds),
        status.servers,
        escaped(&status.config_file)
    );
    push_line(&mut out, &mut line);
    line = match &status.last_reload {
        None => "last reload: none".to_string(),
        Some(reload) => format!(
            "last reload: {} {} ago: {}",
            if reload.ok { "ok" } else { "failed" },
            duration(reload.seconds_ago),
            escaped(&reload.summary)
        ),
    };
    push_line(&mut out, &mut line);
    if let Some(reload) = &status.last_reload {
        for error in &reload.errors {
            line = format!("  {}", escaped(error));
            push_line(&mut out, &mut line);
        }
    }
    line = row(["ID", "ADDRESS", "STATE", "RUNNING", "ACCEPTED", "REFUSED"]);
    push_line(&mut out, &mut line);
    for service in &status.services {
        let running = service.running.to_string();
        let accepted = service.accepted.to_string();
        let refused = service.refused_total().to_string();
        line = row([
            &escaped(&service.id),
            &escaped(service.address.as_deref().unwrap_or("-")),
            service.state.word(),
            &running,
            &accepted,
            &refused,
        ]);
        push_line(&mut out, &mut line);
        let reasons: Vec<String> = service
            .refused
            .iter()
            .filter(|(_, count)| **count > 0)
            .map(|(word, count)| format!("{word} {count}"))
            .collect();
        if !reasons.is_empty() {
            line = format!("  refused: {}", reasons.join(", "));
            push_line(&mut out, &mut line);
        }
        if let Some(reason) = &service.reason {
            line = format!("  failed: {}", escaped(reason));
            push_line(&mut out, &mut line);
        }
        if let Some(error) = &service.last_error {
            line = format!("  last error: {}", escaped(error));
            push_line(&mut out, &mut line);
        }
    }
    out
}

const WIDTHS: [usize; 6] = [20, 30, 9, 8, 10, 10];

/// Text columns left-aligned, numbers right-aligned; a cell too wide is cut with `~`.
fn row(cells: [&str; 6]) -> String {
    let mut line = String::new();
    for (at, (cell, width)) in cells.iter().zip(WIDTHS).enumerate() {
        let cell = fit(cell, width);
        let _ = match at {
            0..=2 => write!(line, "{cell:<width$}"),
            _ => write!(line, "{cell:>width$}"),
        };
        if at < 5 {
            line.push(' ');
        }
    }
    line.trim_end().to_string()
}

fn fit(cell: &str, width: usize) -> String {
    if cell.chars().count() <= width {
        return cell.to_string();
    }
    let mut cut: String = cell.chars().take(width - 1).collect();
    cut.push('~');
    cut
}

/// Appends the line, cut to `COLUMNS`, and empties it.
fn push_line(out: &mut String, line: &mut String) {
    out.push_str(&fit(line, COLUMNS));
    out.push('\n');
    line.clear();
}

/// `45 s`, `12 min 05 s`, `3 h 04 min`, `2 d 03 h`.
pub fn duration(seconds: u64) -> String {
    let (days, hours, minutes, secs) = (
        seconds / 86_400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    match seconds {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{minutes} min {secs:02} s"),
        3600..86_400 => format!("{hours} h {minutes:02} min"),
        _ => format!("{days} d {hours:02} h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(id: &str, state: State) -> Service {
        Service {
            id: id.to_string(),
            address: Some("127.0.0.1:7 stream/tcp".to_string()),
            state,
            reason: None,
            running: 1,
            accepted: 12,
            refused: [("address".to_string(), 2), ("cps".to_string(), 0)].into(),
            last_error: None,
        }
    }

    fn status() -> Status {
        let mut failed = service("web", State::Failed);
        failed.reason = Some("cannot listen on 0.0.0.0:80: Permission denied".to_string());
        failed.last_error = Some("x".repeat(200));
        Status {
            format: FORMAT,
            pid: 42,
            uptime_seconds: 3725,
            config_file: "/etc/oxinetd.toml".to_string(),
            servers: 1,
            last_reload: Some(Reload {
                ok: false,
                seconds_ago: 5,
                summary: "1 error; 2 services".to_string(),
                errors: vec!["/etc/oxinetd.toml:3: service web: key port: bad".to_string()],
            }),
            services: vec![service(&"e".repeat(40), State::Listening), failed],
        }
    }

    #[test]
    fn the_table_fits_100_columns_and_says_everything() {
        let table = table(&status());
        for line in table.lines() {
            assert!(line.chars().count() <= COLUMNS, "{line}");
        }
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "oxinetd pid 42, up 1 h 02 min, 1 servers running, config /etc/oxinetd.toml"
        );
        assert_eq!(lines[1], "last reload: failed 5 s ago: 1 error; 2 services");
        assert_eq!(
            lines[2],
            "  /etc/oxinetd.toml:3: service web: key port: bad"
        );
        assert!(lines[3].starts_with("ID  ") && lines[3].ends_with("REFUSED"));
        assert!(lines[4].starts_with("eeeeeeeeeeeeeeeeeee~ 127.0.0.1:7 stream/tcp"));
        assert!(lines[4].contains(" listening "), "{}", lines[4]);
        assert!(lines[4].ends_with("  12          2"), "{}", lines[4]);
        assert_eq!(lines[5], "  refused: address 2");
        assert!(lines[6].starts_with("web ") && lines[6].contains(" failed "));
        assert_eq!(
            lines[8],
            "  failed: cannot listen on 0.0.0.0:80: Permission denied"
        );
        assert!(lines[9].starts_with("  last error: xxx") && lines[9].ends_with('~'));
    }

    #[test]
    fn names_cannot_forge_lines() {
        let mut status = status();
        status.services[0].id = "evil\nID forged".to_string();
        assert_eq!(
            table(&status).lines().count(),
            table(&self::status()).lines().count()
        );
    }

    #[test]
    fn the_json_round_trips_with_its_documented_names() {
        let status = status();
        let json = serde_json::to_string(&status).unwrap();
        assert!(json.contains("\"state\":\"failed\""), "{json}");
        assert!(json.contains("\"uptime_seconds\":3725"), "{json}");
        assert_eq!(serde_json::from_str::<Status>(&json).unwrap(), status);
    }

    #[test]
    fn durations() {
        for (seconds, text) in [
            (0, "0 s"),
            (59, "59 s"),
            (61, "1 min 01 s"),
            (3600, "1 h 00 min"),
            (90_061, "1 d 01 h"),
        ] {
            assert_eq!(duration(seconds), text);
        }
    }
}
