//! Times as the command prints them: UTC dates and "in 59m" / "5m ago".

use crate::duration;
use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in seconds since the epoch.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The civil date of a day number (days since 1970-01-01), proleptic
/// Gregorian: (year, month, day).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `t` (seconds since the epoch) as `2026-12-07 08:00:00Z`.
pub fn date(t: f64) -> String {
    let s = t.floor() as i64;
    let (y, m, d) = civil(s.div_euclid(86_400));
    let r = s.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        r / 3_600,
        r % 3_600 / 60,
        r % 60
    )
}

/// `t` relative to `now`: `in 59m`, `5m ago`, `now`.
pub fn relative(t: f64, now: f64) -> String {
    let d = t - now;
    if d.abs() < 1.0 {
        return "now".to_string();
    }
    let text = duration::format(d.abs().round() as u64);
    if d > 0.0 {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc() {
        assert_eq!(date(0.0), "1970-01-01 00:00:00Z");
        assert_eq!(date(951_782_400.0), "2000-02-29 00:00:00Z");
        assert_eq!(date(1_796_630_400.5), "2026-12-07 08:00:00Z");
        assert_eq!(date(4_102_444_799.0), "2099-12-31 23:59:59Z");
    }

    #[test]
    fn relative_times() {
        assert_eq!(relative(1_000.0, 1_000.4), "now");
        assert_eq!(relative(4_600.0, 1_000.0), "in 1h");
        assert_eq!(relative(700.0, 1_000.0), "5m ago");
    }
}
