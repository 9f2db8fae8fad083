//! Access-log lines in nginx's `combined` format (`/security/analyze`).
//!
//! ```text
//! log_format combined '$remote_addr - $remote_user [$time_local] '
//!                     '"$request" $status $body_bytes_sent '
//!                     '"$http_referer" "$http_user_agent"';
//! ```
//!
//! [`parse`] reads one line without copying: text fields borrow from it and
//! quoted fields are kept as nginx wrote them, `\xHH` escapes included.
//! Lines in the `common` format (which stops after `$body_bytes_sent`) parse
//! too, and fields appended after the user agent are ignored.

use std::fmt::{self, Write as _};

/// One access-log line; its text fields borrow from the line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line<'a> {
    /// `$remote_addr` as written (IPv4 or IPv6 text, not validated).
    pub addr: &'a str,
    /// `$remote_user`; `-` when absent.
    pub user: &'a str,
    /// `$time_local` in milliseconds since the Unix epoch, offset applied.
    pub time_ms: u64,
    /// The request method; empty when the request is `-` or malformed.
    pub method: &'a str,
    /// The request target (path and query) as written, escapes kept; empty
    /// when the request is `-` or malformed.
    pub target: &'a [u8],
    /// The protocol, e.g. `HTTP/1.1`; empty when absent (HTTP/0.9) or when
    /// the request is `-` or malformed.
    pub protocol: &'a str,
    /// `$status`.
    pub status: u16,
    /// `$body_bytes_sent`.
    pub bytes: u64,
    /// `$http_referer` as written; empty when `-` or absent.
    pub referer: &'a [u8],
    /// `$http_user_agent` as written; empty when `-` or absent.
    pub user_agent: &'a [u8],
}

/// Why a line could not be parsed: the field at fault and its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    field: &'static str,
    /// `expected {what}, got '{value}'`, or `cannot parse '{value}'`.
    expected: Option<&'static str>,
    value: String,
}

/// How many characters of the offending value an error shows.
const SHOWN: usize = 60;

impl ParseError {
    fn new(field: &'static str, expected: Option<&'static str>, shown: &str) -> Self {
        let mut value = String::new();
        for (n, c) in shown.chars().enumerate() {
            if n == SHOWN {
                value.push_str("...");
                break;
            }
            if c.is_ascii_control() {
                let _ = write!(value, "\\x{:02X}", u32::from(c));
            } else if c.is_control() {
                value.extend(c.escape_unicode());
            } else {
                value.push(c);
            }
        }
        Self {
            field,
            expected,
            value,
        }
    }

    /// The field at fault, named as in `log_format` without the `$`
    /// (`remote_addr`, `time_local`, `request`, `status`, `body_bytes_sent`,
    /// `http_referer`, `http_user_agent`), or `line` for the line's shape.
    pub fn field(&self) -> &'static str {
        self.field
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.expected {
            Some(what) => {
                write!(f, "{}: expected {what}, got '{}'", self.field, self.value)
            }
            None => write!(f, "{}: cannot parse '{}'", self.field, self.value),
        }
    }
}

impl std::error::Error for ParseError {}

/// Parses one line (a trailing `\r` or `\n` is ignored); fails with the first
/// field that cannot be read.
///
/// ```
/// use warden_core::admin::accesslog::parse;
///
/// let line = parse(r#"203.0.113.7 - - [21/Nov/2026:10:15:32 +0000] "GET /wp-login.php?x=1 HTTP/1.1" 404 153 "-" "Mozilla/5.0 (X11) sqlmap/1.7""#).unwrap();
/// assert_eq!((line.addr, line.method, line.target), ("203.0.113.7", "GET", &b"/wp-login.php?x=1"[..]));
/// assert_eq!((line.status, line.bytes, line.time_ms), (404, 153, 1_795_256_132_000));
/// assert_eq!((line.referer, line.user_agent), (&b""[..], &b"Mozilla/5.0 (X11) sqlmap/1.7"[..]));
///
/// let err = parse(r#"203.0.113.7 - - [21/Nov/2026:10:15:32 +0000] "GET / HTTP/1.1" 4o4 153"#).unwrap_err();
/// assert_eq!(err.field(), "status");
/// assert_eq!(err.to_string(), "status: expected a 3-digit number, got '4o4'");
/// ```
pub fn parse(line: &str) -> Result<Line<'_>, ParseError> {
    let err = |field, what, value: &str| ParseError::new(field, Some(what), value);
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return Err(err("line", "a log line", line));
    }
    let (addr, rest) = line.split_once(' ').unwrap_or((line, ""));
    if addr.is_empty() {
        return Err(err("remote_addr", "an address", line));
    }
    let rest = rest
        .strip_prefix("- ")
        .ok_or_else(|| err("line", "'- ' after the address", rest))?;
    let (user, rest) = rest
        .split_once(" [")
        .ok_or_else(|| err("line", "' [' after the user", rest))?;
    let (time, rest) = rest
        .split_once(']')
        .ok_or_else(|| ParseError::new("time_local", None, rest))?;
    let time_ms = parse_time(time).ok_or_else(|| ParseError::new("time_local", None, time))?;
    let rest = rest
        .strip_prefix(" \"")
        .ok_or_else(|| err("line", "' \"' after the time", rest))?;
    let (request, rest) = quoted(rest).ok_or_else(|| err("request", "a closing '\"'", rest))?;
    let (method, target, protocol) = split_request(request);
    let (status, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let status = Some(status)
        .filter(|s| s.len() == 3)
        .and_then(|s| number(s.as_bytes()))
        .filter(|n| *n >= 100)
        .ok_or_else(|| err("status", "a 3-digit number", status))?;
    let (bytes, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let bytes =
        number(bytes.as_bytes()).ok_or_else(|| err("body_bytes_sent", "a number", bytes))?;
    let (referer, rest) = optional(rest, "http_referer")?;
    let (user_agent, _) = optional(rest, "http_user_agent")?;
    Ok(Line {
        addr,
        user,
        time_ms,
        method,
        target,
        protocol,
        status: status as u16,
        bytes,
        referer,
        user_agent,
    })
}

/// Parses every non-blank line of `text`, each with its 1-based line number
/// (a trailing `\r` is ignored).
pub fn lines(text: &str) -> impl Iterator<Item = (usize, Result<Line<'_>, ParseError>)> {
    text.split('\n').enumerate().filter_map(|(i, line)| {
        let line = line.strip_suffix('\r').unwrap_or(line);
        (!line.trim().is_empty()).then(|| (i + 1, parse(line)))
    })
}

/// Splits `s`, which follows an opening quote, at the closing quote: the
/// first `"` followed by a space or the end. The rest starts after the
/// spaces that follow the quote.
fn quoted(s: &str) -> Option<(&str, &str)> {
    let b = s.as_bytes();
    let end = (0..b.len())
        .find(|&i| b.get(i) == Some(&b'"') && matches!(b.get(i + 1), None | Some(b' ')))?;
    Some((s.get(..end)?, s.get(end + 1..)?.trim_start_matches(' ')))
}

/// A quoted field that may be missing (the `common` format); `-` is empty.
fn optional<'a>(rest: &'a str, field: &'static str) -> Result<(&'a [u8], &'a str), ParseError> {
    let rest = rest.trim_start_matches(' ');
    if rest.is_empty() {
        return Ok((b"", rest));
    }
    let (value, rest) = rest
        .strip_prefix('"')
        .and_then(quoted)
        .ok_or_else(|| ParseError::new(field, Some("a quoted field"), rest))?;
    Ok((if value == "-" { b"" } else { value.as_bytes() }, rest))
}

/// `METHOD target [HTTP/x]`, or three empty fields when it is anything else.
fn split_request(request: &str) -> (&str, &[u8], &str) {
    let mut parts = request.split(' ');
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return ("", b"", "");
    };
    let protocol = parts.next().unwrap_or("");
    let method_ok = method
        .bytes()
        .all(|c| matches!(c, b'A'..=b'Z' | b'_' | b'-'));
    let protocol_ok = protocol.is_empty() || protocol.len() > 5 && protocol.starts_with("HTTP/");
    let valid = parts.next().is_none() && !method.is_empty() && method_ok && !target.is_empty();
    if valid && protocol_ok {
        (method, target.as_bytes(), protocol)
    } else {
        ("", b"", "")
    }
}

/// Decimal digits only (no sign, no spaces), without overflow.
fn number(digits: &[u8]) -> Option<u64> {
    digits.first()?; // at least one
    digits.iter().try_fold(0u64, |n, &c| {
        let digit = c.is_ascii_digit().then(|| u64::from(c - b'0'))?;
        n.checked_mul(10)?.checked_add(digit)
    })
}

pub(crate) const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `dd/Mon/yyyy:hh:mm:ss +hhmm` to milliseconds since the epoch.
fn parse_time(time: &str) -> Option<u64> {
    let b = time.as_bytes();
    let shape = b"00/Mon/0000:00:00:00 +0000";
    let fixed = |(&s, c): (&u8, &u8)| !matches!(s, b'/' | b':' | b' ') || s == *c;
    if b.len() != shape.len() || !shape.iter().zip(b).all(fixed) {
        return None;
    }
    let num = |i: usize, len: usize| b.get(i..i + len).and_then(number);
    let (day, year, hour) = (num(0, 2)?, num(7, 4)?, num(12, 2)?);
    let (min, sec) = (num(15, 2)?, num(18, 2)?);
    let mon = b.get(3..6)?;
    let month = 1 + MONTHS.iter().position(|m| m.as_bytes() == mon)? as u64;
    let sign = match b.get(21) {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return None,
    };
    let (off_hour, off_min) = (num(22, 2)?, num(24, 2)?);
    let clock = hour < 24 && min < 60 && sec < 60 && off_hour < 24 && off_min < 60;
    if !clock || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    // Every value has at most 4 digits: no overflow below.
    let local = days_from_civil(year as i64, month as i64, day as i64) * 86_400
        + (hour * 3600 + min * 60 + sec) as i64;
    let utc = local - sign * (off_hour * 3600 + off_min * 60) as i64;
    u64::try_from(utc).ok()?.checked_mul(1000)
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian date (year, month 1-12, day) of a number of
/// days since 1970-01-01 (Howard Hinnant's `civil_from_days`).
pub(crate) fn civil_from_days(days: i64) -> (i64, usize, i64) {
    let (year, month, day) = crate::options::civil(days);
    (year, month as usize, i64::from(day))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const GOOD: &str = r#"203.0.113.7 - - [21/Nov/2026:10:15:32 +0000] "GET /wp-login.php?x=1 HTTP/1.1" 404 153 "-" "Mozilla/5.0 (X11) sqlmap/1.7""#;
    const TIME: &str = "21/Nov/2026:10:15:32 +0000";

    /// Every field joined with `|`, or the error message (which starts with
    /// the error's field).
    fn show(line: &str) -> String {
        let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        match parse(line) {
            Ok(l) => format!(
                "{}|{}|{}|{}|{}|{}|{}|{}|{}|{}",
                l.addr,
                l.user,
                l.time_ms,
                l.method,
                s(l.target),
                l.protocol,
                l.status,
                l.bytes,
                s(l.referer),
                s(l.user_agent)
            ),
            Err(e) => {
                let (message, field) = (e.to_string(), format!("{}: ", e.field()));
                assert!(message.starts_with(&field), "{message}");
                message
            }
        }
    }

    #[test]
    fn good_lines() {
        let cases = [
            (GOOD, "203.0.113.7|-|1795256132000|GET|/wp-login.php?x=1|HTTP/1.1|404|153||Mozilla/5.0 (X11) sqlmap/1.7"),
            // IPv6, a user, a referer, an escaped target and an appended field.
            (r#"2001:db8::1 - alice [21/Nov/2026:10:15:32 +0000] "POST /a\x22b HTTP/2.0" 200 0 "https://x.test/?q=1" "curl/8" "10.0.0.1, 10.0.0.2""#,
             r"2001:db8::1|alice|1795256132000|POST|/a\x22b|HTTP/2.0|200|0|https://x.test/?q=1|curl/8"),
            // A stray \" inside a quoted field does not end it.
            (r#"::1 - - [21/Nov/2026:10:15:32 +0000] "GET / HTTP/1.1" 200 1 "-" "a \"b\"c""#,
             r#"::1|-|1795256132000|GET|/|HTTP/1.1|200|1||a \"b\"c"#),
            // The common format; HTTP/0.9.
            (r#"10.0.0.1 - bob [21/Nov/2026:10:15:32 +0000] "GET /" 200 5"#, "10.0.0.1|bob|1795256132000|GET|/||200|5||"),
            (concat!(r#"10.0.0.1 - - [21/Nov/2026:10:15:32 +0000] "-" 400 0 "-" "-""#, "\r"), "10.0.0.1|-|1795256132000||||400|0||"),
        ];
        for (line, want) in cases {
            assert_eq!(show(line), want, "{line}");
        }
        let garbage = r"\x16\x03\x01\x00\xA5\x01||GET|get / HTTP/1.1|GET / FTP/1|GET / HTTP/1.1 x";
        for request in garbage.split('|') {
            let line = format!(r#"::1 - - [{TIME}] "{request}" 400 157 "-" "-""#);
            assert_eq!(show(&line), "::1|-|1795256132000||||400|157||", "{request}");
        }
    }

    #[test]
    fn times() {
        let at = |t: &str| parse(&GOOD.replace(TIME, t)).ok().map(|l| l.time_ms);
        assert_eq!(at("21/Nov/2026:05:15:32 -0500"), Some(1_795_256_132_000));
        assert_eq!(at("21/Nov/2026:15:45:32 +0530"), Some(1_795_256_132_000));
        assert_eq!(at("01/Jan/1970:00:00:00 +0000"), Some(0));
        assert_eq!(at("31/Dec/1969:23:00:00 -0100"), Some(0));
        assert_eq!(at("29/Feb/2024:23:59:59 +0000"), Some(1_709_251_199_000));
        let bad = "29/Feb/2023:00:00:00 +0000,31/Apr/2026:00:00:00 +0000,21/Nov/2026:24:00:00 +0000,21/Nov/2026:10:60:00 +0000,21/Nov/2026:10:15:60 +0000,21/Foo/2026:10:15:32 +0000,21/Nov/2026:10:15:32 *0000,21/Nov/2026:10:15:32 +0060,00/Nov/2026:10:15:32 +0000,01/Jan/1970:00:00:00 +0100,21/Nov/2026:10:15:32,21/Nov/2026:10:15:+2 +0000,21-Nov/2026:10:15:32 +0000";
        for t in bad.split(',') {
            let line = GOOD.replace(TIME, t);
            assert!(show(&line).starts_with("time_local: "), "{t}");
        }
    }

    #[test]
    fn errors() {
        let with = |from: &str, to: &str| show(&GOOD.replace(from, to));
        #[rustfmt::skip]
        let cases = [
            (show(" \r\n"), "line: expected a log line, got ' '"),
            (show(" - - [x]"), "remote_addr: expected an address, got ' - - [x]'"),
            (show("203.0.113.7"), "line: expected '- ' after the address, got ''"),
            (with("- - [", "- - "), "line: expected ' [' after the user, got '- 21/Nov"),
            (with("] \"", "]\""), "line: expected ' \"' after the time, got '\"GET"),
            (with("+0000]", "+0000"), "time_local: cannot parse '21/Nov/2026:10:15:32 +0000 \"GET"),
            (with("21/Nov", "32/Nov"), "time_local: cannot parse '32/Nov/2026:10:15:32 +0000'"),
            (show(&format!("::1 - - [{TIME}] \"GET /")), "request: expected a closing '\"', got 'GET /'"),
            (with(" 404 ", " 4o4 "), "status: expected a 3-digit number, got '4o4'"),
            (with(" 404 ", " 40 "), "status: expected a 3-digit number, got '40'"),
            // found by fuzz/fuzz_targets/accesslog.rs: not an HTTP status
            (with(" 404 ", " 004 "), "status: expected a 3-digit number, got '004'"),
            (with(" 153 ", " +153 "), "body_bytes_sent: expected a number, got '+153'"),
            (with("\"-\"", "-"), "http_referer: expected a quoted field, got '- \"Mozilla"),
            (with("1.7\"", "1.7"), "http_user_agent: expected a quoted field, got '\"Mozilla"),
        ];
        for (got, want) in cases {
            assert!(got.starts_with(want), "{got}");
        }
        let long = show(&format!("::1 - - [{TIME}] \"{}", "\x01".repeat(100)));
        let start = r#"request: expected a closing '"', got '\x01\x01"#;
        assert!(long.starts_with(start) && long.ends_with("...'"), "{long}");
    }

    #[test]
    fn numbered_lines() {
        let text = format!("{GOOD}\r\n\n  \r\nnonsense\n{GOOD}\n");
        let got: Vec<_> = lines(&text).map(|(n, r)| (n, r.is_ok())).collect();
        assert_eq!(got, [(1, true), (4, false), (5, true)]);
    }

    /// nginx's `escape=default`.
    fn escape(bytes: &[u8]) -> String {
        let mut s = String::new();
        for &c in bytes {
            if c == b'"' || c == b'\\' || !(0x20..0x7f).contains(&c) {
                let _ = write!(s, "\\x{c:02X}");
            } else {
                s.push(char::from(c));
            }
        }
        s
    }

    /// `dd/Mon/yyyy:hh:mm:ss` of seconds since the epoch (`civil_from_days`).
    fn local_time(secs: i64) -> String {
        let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let (year, month, day) = civil_from_days(days);
        let mon = MONTHS[month - 1];
        let (h, m, s) = (sod / 3600, sod / 60 % 60, sod % 60);
        format!("{day:02}/{mon}/{year:04}:{h:02}:{m:02}:{s:02}")
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..40).prop_map(|b| escape(&b)),
            "[A-Za-z0-9 ()/.;,_-]{0,60}",
            Just("-".to_string()),
        ]
    }

    proptest! {
        #[test]
        fn formatted_records_parse_back(
            addr in prop_oneof![
                any::<[u8; 4]>().prop_map(|o| Ipv4Addr::from(o).to_string()),
                any::<[u16; 8]>().prop_map(|s| Ipv6Addr::from(s).to_string()),
            ],
            user in prop_oneof![Just("-".to_string()), "[a-z][a-z0-9._]{0,10}"],
            (secs, offset) in (86_400i64..253_402_214_400, -1439i64..=1439),
            method in "[A-Z]{1,8}",
            path in prop::collection::vec(any::<u8>().prop_filter("no space", |&c| c != b' '), 0..40),
            protocol in prop_oneof![Just(""), Just("HTTP/1.0"), Just("HTTP/1.1"), Just("HTTP/2.0")],
            (status, bytes) in (100u16..=599, any::<u64>()),
            (referer, agent) in (text(), text()),
            extra in proptest::option::of("[a-z0-9., ]{0,20}"),
        ) {
            let target = format!("/{}", escape(&path));
            let request = format!("{method} {target} {protocol}");
            let (sign, off) = (if offset < 0 { '-' } else { '+' }, offset.abs());
            let time = format!("{} {sign}{:02}{:02}", local_time(secs + offset * 60), off / 60, off % 60);
            let mut line = format!(r#"{addr} - {user} [{time}] "{}" {status} {bytes} "{referer}" "{agent}""#, request.trim_end());
            if let Some(extra) = extra {
                let _ = write!(line, r#" "{extra}""#);
            }
            let dash = |s: String| if s == "-" { String::new() } else { s };
            let want = format!("{addr}|{user}|{}|{method}|{target}|{protocol}|{status}|{bytes}|{}|{}", secs * 1000, dash(referer), dash(agent));
            prop_assert_eq!(show(&line), want);
        }

        #[test]
        fn never_panics(s in ".*", parts in prop::collection::vec(prop_oneof![
            prop::sample::select("\"| |- | [|]|21/Nov/2026:10:15:32 +0000|GET / HTTP/1.1|200|\r\n|é".split('|').collect::<Vec<_>>()).prop_map(str::to_string),
            ".{0,3}",
        ], 0..24)) {
            for s in [s, parts.concat()] {
                let _ = show(&s);
                for (n, r) in lines(&s) {
                    prop_assert!(n >= 1);
                    let _ = r.map_err(|e| e.to_string());
                }
            }
        }
    }
}
