//! Timestamps for log lines, from a calendar time to bytes; pure, so tested by table.

/// A broken-down time: UTC from `Civil::from_unix`, or local time from `localtime_r`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    /// 1-12.
    pub month: u32,
    /// 1-31.
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl Civil {
    /// UTC calendar time of a Unix time (seconds since 1970-01-01T00:00:00Z).
    pub fn from_unix(secs: i64) -> Civil {
        let days = secs.div_euclid(86_400);
        let of_day = secs.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        Civil {
            year,
            month,
            day,
            hour: of_day / 3600,
            minute: of_day / 60 % 60,
            second: of_day % 60,
        }
    }

    /// Minutes since midnight, as `access_times` counts them.
    pub fn minute_of_day(&self) -> u16 {
        (self.hour * 60 + self.minute) as u16
    }
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to (year, month, day) in
/// the proleptic Gregorian calendar. Eras of 400 years make every leap rule arithmetic.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097); // [0, 146096]
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153; // March = 0
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `2026-11-23T17:19:58.123Z`: the daemon's own stderr lines (RFC 3339, UTC).
pub fn push_rfc3339(out: &mut Vec<u8>, time: &Civil, millis: u32) {
    push_year(out, time.year);
    out.push(b'-');
    push2(out, time.month);
    out.push(b'-');
    push2(out, time.day);
    out.push(b'T');
    push_clock(out, time);
    out.push(b'.');
    push2(out, millis / 10);
    push_digit(out, millis % 10);
    out.push(b'Z');
}

/// 1 to 99 without a leading zero.
fn push_unpadded(out: &mut Vec<u8>, n: u32) {
    if n >= 10 {
        push2(out, n);
    } else {
        push_digit(out, n);
    }
}

/// `26/11/23@17:20:16`, `26/1/5@09:03:07`: xinetd's FILE log stamp.
pub fn push_xinetd(out: &mut Vec<u8>, time: &Civil) {
    // xinetd's own format: "%02d/%d/%d@": month and day are not padded.
    push2(out, time.year.rem_euclid(100) as u32);
    out.push(b'/');
    push_unpadded(out, time.month);
    out.push(b'/');
    push_unpadded(out, time.day);
    out.push(b'@');
    push_clock(out, time);
}

/// `Nov  3 17:20:16`: the RFC 3164 syslog stamp (day padded with a space).
pub fn push_rfc3164(out: &mut Vec<u8>, time: &Civil) {
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let month = time.month.clamp(1, 12) as usize - 1;
    out.extend_from_slice(MONTHS[month]);
    out.push(b' ');
    if time.day < 10 {
        out.push(b' ');
        push_digit(out, time.day);
    } else {
        push2(out, time.day);
    }
    out.push(b' ');
    push_clock(out, time);
}

fn push_clock(out: &mut Vec<u8>, time: &Civil) {
    push2(out, time.hour);
    out.push(b':');
    push2(out, time.minute);
    out.push(b':');
    push2(out, time.second);
}

fn push_year(out: &mut Vec<u8>, year: i64) {
    if (0..10_000).contains(&year) {
        let year = year as u32;
        push2(out, year / 100);
        push2(out, year % 100);
    } else {
        // Outside RFC 3339's range; still readable rather than wrong.
        out.extend_from_slice(year.to_string().as_bytes());
    }
}

fn push2(out: &mut Vec<u8>, value: u32) {
    push_digit(out, value / 10 % 10);
    push_digit(out, value % 10);
}

fn push_digit(out: &mut Vec<u8>, value: u32) {
    out.push(b'0' + (value % 10) as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfc3339(secs: i64, millis: u32) -> String {
        let mut out = Vec::new();
        push_rfc3339(&mut out, &Civil::from_unix(secs), millis);
        String::from_utf8(out).unwrap()
    }

    fn xinetd(secs: i64) -> String {
        let mut out = Vec::new();
        push_xinetd(&mut out, &Civil::from_unix(secs));
        String::from_utf8(out).unwrap()
    }

    fn rfc3164(secs: i64) -> String {
        let mut out = Vec::new();
        push_rfc3164(&mut out, &Civil::from_unix(secs));
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn rfc3339_utc() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(86_399, 999), "1970-01-01T23:59:59.999Z");
        assert_eq!(rfc3339(1_795_454_398, 123), "2026-11-23T17:19:58.123Z");
        assert_eq!(rfc3339(951_782_400, 7), "2000-02-29T00:00:00.007Z");
        assert_eq!(rfc3339(951_868_800, 0), "2000-03-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_709_164_800, 50), "2024-02-29T00:00:00.050Z");
        assert_eq!(rfc3339(1_709_251_199, 0), "2024-02-29T23:59:59.000Z");
        assert_eq!(rfc3339(1_704_067_199, 0), "2023-12-31T23:59:59.000Z");
        assert_eq!(rfc3339(1_704_067_200, 0), "2024-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(4_107_542_399, 0), "2100-02-28T23:59:59.000Z"); // 2100 is not leap
        assert_eq!(rfc3339(4_107_542_400, 0), "2100-03-01T00:00:00.000Z");
        assert_eq!(rfc3339(2_147_483_647, 0), "2038-01-19T03:14:07.000Z");
        assert_eq!(rfc3339(-1, 0), "1969-12-31T23:59:59.000Z");
        assert_eq!(rfc3339(253_402_300_799, 0), "9999-12-31T23:59:59.000Z");
    }

    #[test]
    fn xinetd_file_stamp() {
        assert_eq!(xinetd(1_795_454_416), "26/11/23@17:20:16");
        assert_eq!(xinetd(0), "70/1/1@00:00:00");
        assert_eq!(xinetd(951_782_400), "00/2/29@00:00:00");
        assert_eq!(xinetd(1_704_067_199), "23/12/31@23:59:59");
    }

    #[test]
    fn rfc3164_stamp() {
        assert_eq!(rfc3164(1_795_454_416), "Nov 23 17:20:16");
        assert_eq!(rfc3164(0), "Jan  1 00:00:00");
        assert_eq!(rfc3164(951_782_400), "Feb 29 00:00:00");
        assert_eq!(rfc3164(1_704_067_199), "Dec 31 23:59:59");
    }
}
