//! Durations as people type them (`30s`, `10m`, `1h`, `7d`, `1h30m`, or a
//! number of seconds) and as the command prints them.
//!
//! The admin API parses the durations it is sent itself; the command
//! parses them too because it needs the number (`--since 10m` is a time)
//! and must refuse a bad one before anything is sent.

/// The longest duration accepted: 100 years.
const MAX_SECS: u64 = 100 * 365 * 86_400;

const UNITS: [(&str, u64); 5] = [
    ("w", 604_800),
    ("d", 86_400),
    ("h", 3_600),
    ("m", 60),
    ("s", 1),
];

/// Parses `s` into seconds; the error names the value.
pub fn parse(s: &str) -> Result<u64, String> {
    let err = || {
        format!(
            "invalid duration '{s}': use a number of seconds or a duration like \
             30s, 10m, 1h, 7d (or 1h30m)"
        )
    };
    let t = s.trim();
    if t.is_empty() {
        return Err(err());
    }
    if let Ok(n) = t.parse::<u64>() {
        return if n <= MAX_SECS { Ok(n) } else { Err(err()) };
    }
    let mut total: u64 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
        if digits == 0 {
            return Err(err());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| err())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let per = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, per)| *per)
            .ok_or_else(err)?;
        rest = &rest[unit_len..];
        total = n
            .checked_mul(per)
            .and_then(|v| total.checked_add(v))
            .filter(|v| *v <= MAX_SECS)
            .ok_or_else(err)?;
    }
    Ok(total)
}

/// `secs` in at most two units, largest first: `45s`, `10m`, `1h30m`,
/// `6d23h`.
pub fn format(secs: u64) -> String {
    if secs == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    let mut rest = secs;
    let mut parts = 0;
    // weeks read badly ("1w6d"): days are the largest unit printed
    for (name, per) in UNITS.iter().skip(1) {
        if rest >= *per {
            out.push_str(&format!("{}{name}", rest / per));
            rest %= per;
            parts += 1;
            if parts == 2 {
                break;
            }
        } else if parts == 1 {
            // "1d" then "0h": stop rather than skip to a smaller unit
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_people_type() {
        for (s, want) in [
            ("0", 0),
            ("90", 90),
            ("30s", 30),
            ("10m", 600),
            ("1h", 3_600),
            ("7d", 604_800),
            ("2w", 1_209_600),
            ("1h30m", 5_400),
            ("1d12h", 129_600),
            (" 5m ", 300),
        ] {
            assert_eq!(parse(s), Ok(want), "{s}");
        }
    }

    #[test]
    fn refuses_with_the_value_named() {
        for s in [
            "",
            "x",
            "1x",
            "h",
            "-5",
            "1.5h",
            "10 m",
            "1h-",
            "m10",
            "5000000000w",
        ] {
            let e = parse(s).unwrap_err();
            assert!(e.contains(&format!("'{s}'")), "{s}: {e}");
        }
        assert!(parse("99999999999999999999").is_err());
        assert!(parse("36500d").is_ok());
        assert!(parse("36501d").is_err());
    }

    #[test]
    fn prints_in_two_units_at_most() {
        for (secs, want) in [
            (0, "0s"),
            (45, "45s"),
            (60, "1m"),
            (90, "1m30s"),
            (3_600, "1h"),
            (5_400, "1h30m"),
            (3_661, "1h1m"),
            (86_400, "1d"),
            (86_400 + 60, "1d"),
            (7 * 86_400 - 1, "6d23h"),
            (30 * 86_400, "30d"),
        ] {
            assert_eq!(format(secs), want, "{secs}");
        }
    }

    #[test]
    fn what_it_prints_it_parses() {
        for secs in [1, 59, 61, 3_599, 3_600, 86_399, 86_400, 604_800] {
            let s = format(secs);
            let back = parse(&s).unwrap();
            assert!(
                back <= secs && secs - back < 3_600,
                "{secs} -> {s} -> {back}"
            );
        }
    }
}
