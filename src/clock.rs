//! The local calendar time: the one place that asks libc for it (log stamps,
//! `access_times`), so everything else takes a time as a value and is tested at fixed ones.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::logging::Civil;
use crate::sys;

/// Now, in the local time zone (UTC if the zone cannot be applied).
pub fn local_now() -> Civil {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |now| now.as_secs() as i64);
    local(secs)
}

/// The local calendar time of a Unix time.
pub fn local(secs: i64) -> Civil {
    let Some(tm) = sys::time::localtime(secs) else {
        return Civil::from_unix(secs);
    };
    Civil {
        year: i64::from(tm.tm_year) + 1900,
        month: (tm.tm_mon + 1) as u32,
        day: tm.tm_mday as u32,
        hour: tm.tm_hour as u32,
        minute: tm.tm_min as u32,
        second: tm.tm_sec as u32,
    }
}

/// Rereads TZ and /etc/localtime, so a changed zone shows from the next time on.
pub fn reread_zone() {
    sys::time::tzset();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_time_is_a_valid_calendar_time() {
        // Whatever the zone and the date: every field within its range.
        for secs in [0, 951_782_400, 1_798_761_599, 1_799_118_245] {
            let time = local(secs);
            assert!((1..=12).contains(&time.month), "{time:?}");
            assert!((1..=31).contains(&time.day), "{time:?}");
            assert!(
                time.hour < 24 && time.minute < 60 && time.second <= 60,
                "{time:?}"
            );
        }
        let now = local_now();
        assert!(now.year >= 1970, "{now:?}");
    }
}
