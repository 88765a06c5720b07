//! Times as the people of the entity read them: Japan Standard Time (UTC+9, no daylight saving),
//! e.g. `2026-11-29 12:00 JST`, and durations as `3 h 12 min`.
//!
//! Invariant: nothing here reads the clock; the caller passes the time in (seconds since the
//! UNIX epoch, UTC). Dates before 1970 or far in the future are still formatted (proleptic
//! Gregorian calendar), never refused.

/// JST is UTC+9.
const JST_OFFSET_SECS: i64 = 9 * 3600;

/// The civil date (year, month 1–12, day 1–31) of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (date, hours, minutes) in JST of `unix_secs`.
fn parts(unix_secs: i64) -> ((i64, u32, u32), i64, i64) {
    let local = unix_secs.saturating_add(JST_OFFSET_SECS);
    let days = local.div_euclid(86_400);
    let secs = local.rem_euclid(86_400);
    (civil_from_days(days), secs / 3600, secs % 3600 / 60)
}

/// `2026-11-29 12:00 JST` (seconds are dropped, not rounded).
pub fn datetime(unix_secs: i64) -> String {
    let ((y, m, d), h, min) = parts(unix_secs);
    format!("{y:04}-{m:02}-{d:02} {h:02}:{min:02} JST")
}

/// `00:00 JST`: the clock time of `unix_secs` rounded to the nearest minute.
pub fn clock(unix_secs: i64) -> String {
    let (_, h, min) = parts(unix_secs.saturating_add(30));
    format!("{h:02}:{min:02} JST")
}

/// `3 h 12 min`, `12 min`, `45 s` (under a minute): a wait as a person reads it, rounded to the
/// nearest minute above a minute.
pub fn duration(secs: u64) -> String {
    if secs < 60 {
        return format!("{secs} s");
    }
    let mins = (secs + 30) / 60;
    match (mins / 60, mins % 60) {
        (0, m) => format!("{m} min"),
        (h, 0) => format!("{h} h"),
        (h, m) => format!("{h} h {m} min"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_clock_times_are_in_jst() {
        // 2026-11-29T03:00:00Z = 12:00 JST.
        assert_eq!(datetime(1_795_921_200), "2026-11-29 12:00 JST");
        assert_eq!(datetime(0), "1970-01-01 09:00 JST");
        // 2024-02-28T15:00:00Z = 2024-02-29 00:00 JST (a leap day).
        assert_eq!(datetime(1_709_132_400), "2024-02-29 00:00 JST");
        // 23:59:40 JST rounds to midnight.
        assert_eq!(clock(1_709_132_400 - 20), "00:00 JST");
        assert_eq!(clock(1_709_132_400 + 3 * 3600 + 12 * 60), "03:12 JST");
    }

    #[test]
    fn durations_read_as_hours_and_minutes() {
        assert_eq!(duration(45), "45 s");
        assert_eq!(duration(60), "1 min");
        assert_eq!(duration(3 * 3600 + 12 * 60 + 10), "3 h 12 min");
        assert_eq!(duration(2 * 3600), "2 h");
        assert_eq!(duration(56_946), "15 h 49 min");
    }
}
