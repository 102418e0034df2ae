//! xinetd's `log_type` attribute, from text to a `LogType`; pure.

use std::path::PathBuf;

/// Where a service's START/EXIT/FAIL lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogType {
    /// `SYSLOG facility [level]`.
    Syslog { facility: Facility, level: Severity },
    /// `FILE path [soft [hard]]`: `hard` is always set when `soft` is.
    File {
        path: PathBuf,
        soft: Option<u64>,
        hard: Option<u64>,
    },
}

/// The syslog facilities xinetd accepts, numbered as in `<syslog.h>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Facility {
    User = 1,
    Mail = 2,
    Daemon = 3,
    Auth = 4,
    Lpr = 6,
    News = 7,
    Uucp = 8,
    Authpriv = 10,
    Ftp = 11,
    Local0 = 16,
    Local1 = 17,
    Local2 = 18,
    Local3 = 19,
    Local4 = 20,
    Local5 = 21,
    Local6 = 22,
    Local7 = 23,
}

/// Syslog severities, numbered as in `<syslog.h>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Emerg = 0,
    Alert = 1,
    Crit = 2,
    Err = 3,
    Warning = 4,
    Notice = 5,
    Info = 6,
    Debug = 7,
}

impl LogType {
    /// RFC 3164's PRI: facility * 8 + severity; `None` for FILE.
    pub fn priority(&self) -> Option<u8> {
        match self {
            LogType::Syslog { facility, level } => Some(*facility as u8 * 8 + *level as u8),
            LogType::File { .. } => None,
        }
    }
}

const FACILITIES: [(&str, Facility); 17] = [
    ("daemon", Facility::Daemon),
    ("auth", Facility::Auth),
    ("authpriv", Facility::Authpriv),
    ("user", Facility::User),
    ("mail", Facility::Mail),
    ("lpr", Facility::Lpr),
    ("news", Facility::News),
    ("uucp", Facility::Uucp),
    ("ftp", Facility::Ftp),
    ("local0", Facility::Local0),
    ("local1", Facility::Local1),
    ("local2", Facility::Local2),
    ("local3", Facility::Local3),
    ("local4", Facility::Local4),
    ("local5", Facility::Local5),
    ("local6", Facility::Local6),
    ("local7", Facility::Local7),
];

const SEVERITIES: [(&str, Severity); 8] = [
    ("emerg", Severity::Emerg),
    ("alert", Severity::Alert),
    ("crit", Severity::Crit),
    ("err", Severity::Err),
    ("warning", Severity::Warning),
    ("notice", Severity::Notice),
    ("info", Severity::Info),
    ("debug", Severity::Debug),
];

/// xinetd's LOG_EXTRA_MIN and LOG_EXTRA_MAX: bounds of the margin a default hard limit
/// adds to the soft limit (1% of it).
const EXTRA_MIN: u64 = 5 * 1024;
const EXTRA_MAX: u64 = 20 * 1024;

/// Parses `SYSLOG facility [level]` or `FILE /path [soft [hard]]`; keywords, facilities
/// and levels are case-insensitive, sizes take K, M or G (powers of 1024).
pub fn parse_log_type(text: &str) -> Result<LogType, String> {
    let mut words = text.split_whitespace();
    let kind = words.next().ok_or_else(|| {
        "empty: expected \"SYSLOG facility [level]\" or \"FILE path [soft [hard]]\"".to_string()
    })?;
    let log_type = if kind.eq_ignore_ascii_case("syslog") {
        parse_syslog(&mut words)?
    } else if kind.eq_ignore_ascii_case("file") {
        parse_file(&mut words)?
    } else {
        return Err(format!("unknown kind \"{kind}\": expected SYSLOG or FILE"));
    };
    match words.next() {
        Some(extra) => Err(format!(
            "unexpected word \"{extra}\" after {kind}'s arguments"
        )),
        None => Ok(log_type),
    }
}

fn parse_syslog<'a>(words: &mut impl Iterator<Item = &'a str>) -> Result<LogType, String> {
    let facility = words
        .next()
        .ok_or("SYSLOG needs a facility (daemon, auth, authpriv, user, mail, lpr, news, uucp, ftp, local0-local7)")?;
    let facility = lookup(&FACILITIES, facility).ok_or_else(|| {
        format!(
            "unknown syslog facility \"{facility}\": expected one of {}",
            names(&FACILITIES)
        )
    })?;
    let level = match words.next() {
        None => Severity::Info,
        Some(level) => lookup(&SEVERITIES, level).ok_or_else(|| {
            format!(
                "unknown syslog level \"{level}\": expected one of {}",
                names(&SEVERITIES)
            )
        })?,
    };
    Ok(LogType::Syslog { facility, level })
}

fn parse_file<'a>(words: &mut impl Iterator<Item = &'a str>) -> Result<LogType, String> {
    let path = words.next().ok_or("FILE needs an absolute path")?;
    if !path.starts_with('/') {
        return Err(format!("log file \"{path}\" is not an absolute path"));
    }
    let soft = words
        .next()
        .map(|word| parse_size(word, "soft"))
        .transpose()?;
    let hard = words
        .next()
        .map(|word| parse_size(word, "hard"))
        .transpose()?;
    let hard = match (soft, hard) {
        (Some(soft), Some(hard)) if hard < soft => {
            return Err(format!("hard limit {hard} is below the soft limit {soft}"));
        }
        (Some(soft), None) => Some(soft + (soft / 100).clamp(EXTRA_MIN, EXTRA_MAX)),
        (_, hard) => hard,
    };
    Ok(LogType::File {
        path: PathBuf::from(path),
        soft,
        hard,
    })
}

/// `4096`, `64K`, `5M`, `1G` (case-insensitive suffix) to bytes; zero is refused, since
/// a zero limit would silence the file before its first line.
fn parse_size(word: &str, which: &str) -> Result<u64, String> {
    let (digits, unit) = match word.char_indices().last() {
        Some((at, 'k' | 'K')) => (&word[..at], 1u64 << 10),
        Some((at, 'm' | 'M')) => (&word[..at], 1 << 20),
        Some((at, 'g' | 'G')) => (&word[..at], 1 << 30),
        _ => (word, 1),
    };
    let bad = || format!("bad {which} limit \"{word}\": expected bytes or a number with K, M or G");
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(bad());
    }
    let bytes = digits
        .parse::<u64>()
        .ok()
        .and_then(|count| count.checked_mul(unit))
        .ok_or_else(|| format!("{which} limit \"{word}\" is too large"))?;
    if bytes == 0 {
        return Err(format!("{which} limit \"{word}\" must be above zero"));
    }
    Ok(bytes)
}

fn lookup<T: Copy>(table: &[(&str, T)], word: &str) -> Option<T> {
    table
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(word))
        .map(|(_, value)| *value)
}

fn names<T>(table: &[(&str, T)]) -> String {
    table
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syslog(facility: Facility, level: Severity) -> Result<LogType, String> {
        Ok(LogType::Syslog { facility, level })
    }

    fn file(path: &str, soft: Option<u64>, hard: Option<u64>) -> Result<LogType, String> {
        Ok(LogType::File {
            path: PathBuf::from(path),
            soft,
            hard,
        })
    }

    macro_rules! ok {
        ($text:expr, $expected:expr) => {
            assert_eq!(parse_log_type($text), $expected, "{:?}", $text)
        };
    }

    macro_rules! err {
        ($text:expr, $needle:expr) => {
            match parse_log_type($text) {
                Err(message) => assert!(
                    message.contains($needle),
                    "{:?}: {message:?} lacks {:?}",
                    $text,
                    $needle
                ),
                Ok(parsed) => panic!("{:?} parsed as {parsed:?}", $text),
            }
        };
    }

    const K: u64 = 1024;
    const M: u64 = 1024 * 1024;

    #[test]
    fn syslog_forms() {
        ok!("SYSLOG daemon", syslog(Facility::Daemon, Severity::Info));
        ok!(
            "SYSLOG authpriv info",
            syslog(Facility::Authpriv, Severity::Info)
        );
        ok!(
            "SYSLOG local3 warning",
            syslog(Facility::Local3, Severity::Warning)
        );
        ok!(
            "syslog LOCAL7 Debug",
            syslog(Facility::Local7, Severity::Debug)
        );
        ok!(
            "  SYSLOG   auth   emerg  ",
            syslog(Facility::Auth, Severity::Emerg)
        );
        ok!("SYSLOG ftp notice", syslog(Facility::Ftp, Severity::Notice));
        ok!("SYSLOG uucp crit", syslog(Facility::Uucp, Severity::Crit));
        ok!("SYSLOG user alert", syslog(Facility::User, Severity::Alert));
        ok!("SYSLOG mail err", syslog(Facility::Mail, Severity::Err));
        ok!("SYSLOG lpr info", syslog(Facility::Lpr, Severity::Info));
        ok!("SYSLOG news info", syslog(Facility::News, Severity::Info));
        ok!("SYSLOG local0", syslog(Facility::Local0, Severity::Info));
    }

    #[test]
    fn file_forms() {
        ok!("FILE /var/log/x.log", file("/var/log/x.log", None, None));
        ok!("file /var/log/X.log", file("/var/log/X.log", None, None));
        ok!(
            "FILE /var/log/x.log 5M",
            file("/var/log/x.log", Some(5 * M), Some(5 * M + 20 * K))
        );
        ok!(
            "FILE /var/log/x.log 5M 6M",
            file("/var/log/x.log", Some(5 * M), Some(6 * M))
        );
        ok!("FILE /x 5m 5m", file("/x", Some(5 * M), Some(5 * M)));
        ok!("FILE /x 1000", file("/x", Some(1000), Some(1000 + 5 * K)));
        ok!(
            "FILE /x 1000K",
            file("/x", Some(1000 * K), Some(1000 * K + 10_240))
        );
        ok!(
            "FILE /x 1G",
            file("/x", Some(1 << 30), Some((1 << 30) + 20 * K))
        );
        ok!("FILE /x 64k 1g", file("/x", Some(64 * K), Some(1 << 30)));
    }

    #[test]
    fn errors_name_the_bad_word() {
        err!("", "empty");
        err!("   ", "empty");
        err!("STDERR", "unknown kind \"STDERR\"");
        err!("SYSLOG", "needs a facility");
        err!("SYSLOG kern", "unknown syslog facility \"kern\"");
        err!("SYSLOG local8", "unknown syslog facility \"local8\"");
        err!("SYSLOG daemon loud", "unknown syslog level \"loud\"");
        err!("SYSLOG daemon info extra", "unexpected word \"extra\"");
        err!("FILE", "needs an absolute path");
        err!("FILE log/x.log", "\"log/x.log\" is not an absolute path");
        err!("FILE /x 5X", "bad soft limit \"5X\"");
        err!("FILE /x M", "bad soft limit \"M\"");
        err!("FILE /x -5", "bad soft limit \"-5\"");
        err!("FILE /x 5M six", "bad hard limit \"six\"");
        err!("FILE /x 0", "soft limit \"0\" must be above zero");
        err!(
            "FILE /x 6M 5M",
            "hard limit 5242880 is below the soft limit 6291456"
        );
        err!(
            "FILE /x 99999999999999999999",
            "soft limit \"99999999999999999999\" is too large"
        );
        err!("FILE /x 99999999999G", "too large");
        err!("FILE /x 1M 2M 3M", "unexpected word \"3M\"");
    }

    #[test]
    fn priority_is_facility_times_eight_plus_severity() {
        let local3_warning = parse_log_type("SYSLOG local3 warning").unwrap();
        assert_eq!(local3_warning.priority(), Some(156));
        assert_eq!(
            parse_log_type("SYSLOG daemon").unwrap().priority(),
            Some(30)
        );
        assert_eq!(
            parse_log_type("SYSLOG authpriv emerg").unwrap().priority(),
            Some(80)
        );
        assert_eq!(parse_log_type("FILE /x").unwrap().priority(), None);
    }
}
