//! Reading option values: the JSON-like tree that `new(opts)` (a Lua table
//! converted by mlua), the admin API (a JSON body) and the iprepd options
//! arrive as. Numbers, switches, durations, sizes and address lists are
//! read here, and every error names the option and the offending value.

use std::fmt;

use serde_json::Value;

use crate::net::addr::{parse_list, Net};

/// An invalid option: which one, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    option: String,
    message: String,
}

impl ConfigError {
    /// An error about option `option` (a dotted path such as `detector.enabled`).
    pub fn new(option: &str, message: impl Into<String>) -> Self {
        ConfigError {
            option: option.to_string(),
            message: message.into(),
        }
    }

    /// The option's name.
    pub fn option(&self) -> &str {
        &self.option
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "opts.{} {}", self.option, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// A short, bounded rendering of a value for error messages.
pub fn show(v: &Value) -> String {
    let s = match v {
        Value::String(s) => format!("'{s}'"),
        other => other.to_string(),
    };
    if s.chars().count() > 80 {
        let cut: String = s.chars().take(77).collect();
        format!("{cut}...")
    } else {
        s
    }
}

/// A size in bytes: `"4096"`, `"64k"`, `"1m"`, `"1g"` (as nginx writes them).
pub fn parse_size(s: &str) -> Option<usize> {
    let t = s.trim().to_ascii_lowercase();
    let (num, mul) = match t.as_bytes().last()? {
        b'k' => (&t[..t.len() - 1], 1usize << 10),
        b'm' => (&t[..t.len() - 1], 1 << 20),
        b'g' => (&t[..t.len() - 1], 1 << 30),
        _ => (&t[..], 1),
    };
    num.trim().parse::<usize>().ok()?.checked_mul(mul)
}

/// An integral number (JSON integer or a float without fraction).
pub fn integer(v: &Value) -> Option<i64> {
    if let Some(i) = v.as_i64() {
        return Some(i);
    }
    let f = v.as_f64()?;
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        Some(f as i64)
    } else {
        None
    }
}

/// A 0/1 or boolean switch.
pub fn flag(v: &Value, option: &str) -> Result<bool, ConfigError> {
    match (v, integer(v)) {
        (Value::Bool(b), _) => Ok(*b),
        (_, Some(0)) => Ok(false),
        (_, Some(1)) => Ok(true),
        _ => Err(ConfigError::new(
            option,
            format!("must be 0, 1, true or false, got {}", show(v)),
        )),
    }
}

/// A list of addresses/CIDRs: an array of strings or a comma-separated string.
pub fn net_list(v: Option<&Value>, option: &str) -> Result<Vec<Net>, ConfigError> {
    let strings: Vec<&str> = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => {
            let mut out = Vec::with_capacity(a.len());
            for (i, item) in a.iter().enumerate() {
                match item.as_str() {
                    Some(s) => out.push(s),
                    None => {
                        return Err(ConfigError::new(
                            option,
                            format!(
                                "entry {} must be an IP address or CIDR string, got {}",
                                i + 1,
                                show(item)
                            ),
                        ))
                    }
                }
            }
            out
        }
        Some(Value::Object(m)) if m.is_empty() => return Ok(Vec::new()),
        Some(other) => {
            return Err(ConfigError::new(
                option,
                format!(
                    "must be a list of IP addresses/CIDRs or a comma-separated string, got {}",
                    show(other)
                ),
            ))
        }
    };
    parse_list(strings).map_err(|e| ConfigError::new(option, format!("has an {e}")))
}

/// A list of strings: a Lua array, or one comma-separated string (items
/// trimmed, empty ones dropped).
///
/// ```
/// use warden_core::options::string_list;
/// let v = serde_json::json!("/api/**, /feed.xml");
/// assert_eq!(string_list(&v, "x").unwrap(), vec!["/api/**", "/feed.xml"]);
/// assert!(string_list(&serde_json::json!([1]), "x").is_err());
/// ```
pub fn string_list(v: &Value, option: &str) -> Result<Vec<String>, ConfigError> {
    let bad = || {
        ConfigError::new(
            option,
            format!(
                "must be a list of strings or a comma-separated string, got {}",
                show(v)
            ),
        )
    };
    match v {
        Value::String(s) => Ok(s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()),
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().map(|s| s.trim().to_string()).ok_or_else(bad))
            .collect(),
        Value::Object(m) if m.is_empty() => Ok(Vec::new()),
        _ => Err(bad()),
    }
}

/// Parses a duration into milliseconds: a number of seconds (`90`, `0.5`)
/// or a string of `<number><unit>` groups with units `ms`, `s`, `m`, `h`,
/// `d`, `w` (`"90s"`, `"15m"`, `"1h30m"`, `"7d"`); a bare numeric string is
/// seconds. Zero is allowed (callers decide what it means).
///
/// ```
/// use warden_core::options::parse_duration;
/// assert_eq!(parse_duration("1h30m"), Ok(5_400_000));
/// assert_eq!(parse_duration("90"), Ok(90_000));
/// assert!(parse_duration("abc").is_err());
/// ```
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let err = || format!("must be a duration like '90s', '15m', '24h' or '7d', got '{s}'");
    let t = s.trim();
    if t.is_empty() {
        return Err(err());
    }
    if let Ok(secs) = t.parse::<f64>() {
        return seconds_to_ms(secs).ok_or_else(err);
    }
    let mut total: u64 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        if num_end == 0 {
            return Err(err());
        }
        let n: f64 = rest[..num_end].parse().map_err(|_| err())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult: f64 = match &rest[..unit_end] {
            "ms" => 1.0,
            "s" => 1_000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            "d" => 86_400_000.0,
            "w" => 604_800_000.0,
            _ => return Err(err()),
        };
        rest = &rest[unit_end..];
        let ms = n * mult;
        if !ms.is_finite() || ms > MAX_DURATION_MS as f64 {
            return Err(err());
        }
        total += ms.round() as u64;
        // bounded as a whole, like a number of seconds (found by fuzzing:
        // "3664331d51d..." summed past any expiry time)
        if total > MAX_DURATION_MS {
            return Err(err());
        }
    }
    Ok(total)
}

/// The longest duration accepted, in ms (1e12 s, some 31,700 years): what
/// a number of seconds allows, and what the sum of a compound duration
/// ("1d12h") may reach. Far from overflowing an expiry time.
pub const MAX_DURATION_MS: u64 = 1_000_000_000_000_000;

fn seconds_to_ms(secs: f64) -> Option<u64> {
    if secs.is_finite() && (0.0..=1.0e12).contains(&secs) {
        Some((secs * 1000.0).round() as u64)
    } else {
        None
    }
}

/// A duration option: number of seconds or a duration string, in ms.
pub fn duration(v: &Value, option: &str) -> Result<u64, ConfigError> {
    match v {
        Value::String(s) => parse_duration(s).map_err(|m| ConfigError::new(option, m)),
        Value::Number(n) => n.as_f64().and_then(seconds_to_ms).ok_or_else(|| {
            ConfigError::new(
                option,
                format!("must be a duration like '90s', '15m', '24h' or '7d', got {n}"),
            )
        }),
        other => Err(ConfigError::new(
            option,
            format!(
                "must be a duration like '90s', '15m', '24h' or '7d', got {}",
                show(other)
            ),
        )),
    }
}

/// A number as Lua's `tostring` prints it (`%.14g`): `3`, `0.5`, `1e+20`.
/// Log lines and messages print numbers this way, as they did when Lua
/// wrote them.
///
/// ```
/// use warden_core::options::number;
/// assert_eq!((number(3.0), number(0.5), number(1.0 / 3.0)), ("3".into(), "0.5".into(), "0.33333333333333".into()));
/// ```
pub fn number(x: f64) -> String {
    if x.is_nan() {
        return if x.is_sign_negative() { "-nan" } else { "nan" }.to_string();
    }
    if x.is_infinite() {
        return if x < 0.0 { "-inf" } else { "inf" }.to_string();
    }
    if x == x.trunc() && x.abs() < 1e15 {
        return format!("{}", x as i64);
    }
    let e = format!("{x:.13e}");
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if !(-4..14).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa), exp.abs())
    } else {
        trim(&format!("{:.*}", (13 - exp) as usize, x))
    }
}

/// A number of seconds as a duration: `"90s"`, `"15m"`, `"24h"`, `"7d"`,
/// and `"ever"` for 0 (a permanent block: "blocked for ever").
///
/// ```
/// use warden_core::options::human;
/// assert_eq!((human(0.0), human(90.0), human(7200.0), human(0.5)), ("ever".into(), "90s".into(), "2h".into(), "0.5s".into()));
/// ```
pub fn human(seconds: f64) -> String {
    if seconds == 0.0 {
        return "ever".to_string();
    }
    for (unit, name) in [(86_400.0, 'd'), (3_600.0, 'h'), (60.0, 'm')] {
        if seconds >= unit && seconds % unit == 0.0 {
            return format!("{}{name}", number(seconds / unit));
        }
    }
    format!("{}s", number(seconds))
}

/// The civil date `(year, month 1-12, day 1-31)` of `days` since
/// 1970-01-01 (H. Hinnant's `civil_from_days`): the one calendar of the
/// crate's dates (HTTP dates, the event log's timestamps).
///
/// ```
/// use warden_core::options::civil;
/// assert_eq!(civil(0), (1970, 1, 1));
/// assert_eq!(civil(11_016), (2000, 2, 29));
/// assert_eq!(civil(-1), (1969, 12, 31));
/// ```
pub fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month as u32, day as u32)
}

/// A scalar argument as Lua or JSON carries it (a query argument, a body
/// field, a Lua call's argument), for errors that show the value the way
/// Lua would: `'text'`, `5`, `1.5`, `true`, or the type for a table.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scalar<'a> {
    /// Absent (`nil`, or JSON `null`).
    Nil,
    /// An integral number.
    Int(i64),
    /// Another number.
    Float(f64),
    /// A string.
    Text(&'a str),
    /// A boolean.
    Bool(bool),
    /// Anything else (a table, a function, ...), by its Lua type name.
    Other(&'static str),
}

impl<'a> Scalar<'a> {
    /// The scalar of a JSON value (arrays and objects are Lua tables).
    pub fn of_json(v: &'a Value) -> Scalar<'a> {
        match v {
            Value::Null => Scalar::Nil,
            Value::Bool(b) => Scalar::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Scalar::Int(i),
                None => Scalar::number(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => Scalar::Text(s),
            Value::Array(_) | Value::Object(_) => Scalar::Other("table"),
        }
    }

    /// A query argument read as Lua's `tonumber(v) or v` would: decimal
    /// numbers become numbers, anything else stays text.
    pub fn of_query(s: &'a str) -> Scalar<'a> {
        let t = s.trim();
        let numeric = t.bytes().any(|b| b.is_ascii_digit())
            && t.bytes()
                .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b));
        match t.parse::<f64>() {
            Ok(f) if numeric => Scalar::number(f),
            _ => Scalar::Text(s),
        }
    }

    /// A number, integral ones as [`Scalar::Int`] (as mlua reads LuaJIT's).
    pub fn number(f: f64) -> Scalar<'a> {
        if f.fract() == 0.0 && f.abs() < 9.0e15 {
            Scalar::Int(f as i64)
        } else {
            Scalar::Float(f)
        }
    }

    /// Lua's type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Scalar::Nil => "nil",
            Scalar::Int(_) | Scalar::Float(_) => "number",
            Scalar::Text(_) => "string",
            Scalar::Bool(_) => "boolean",
            Scalar::Other(t) => t,
        }
    }

    /// The value as an error message shows it.
    pub fn show(&self) -> String {
        match self {
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Text(s) => format!("'{s}'"),
            Scalar::Bool(b) => b.to_string(),
            other => other.type_name().to_string(),
        }
    }
}

/// A duration argument in ms: absent means 0 (permanent, for a block), a
/// number of seconds (at most 1e12), or a string like `"15m"`. Errors
/// begin with `duration`.
///
/// ```
/// use warden_core::options::{duration_arg, Scalar};
/// assert_eq!(duration_arg(Scalar::Text("15m")), Ok(900_000));
/// assert_eq!(duration_arg(Scalar::Nil), Ok(0));
/// assert!(duration_arg(Scalar::Int(-5)).unwrap_err().ends_with("got -5"));
/// ```
pub fn duration_arg(v: Scalar<'_>) -> Result<u64, String> {
    let ms = match v {
        Scalar::Nil => Some(0),
        Scalar::Int(i) if i >= 0 => seconds_to_ms(i as f64),
        Scalar::Float(f) => seconds_to_ms(f),
        Scalar::Text(s) => return parse_duration(s).map_err(|m| format!("duration {m}")),
        _ => None,
    };
    ms.ok_or_else(|| {
        let got = match v {
            Scalar::Int(_) | Scalar::Float(_) => v.show(),
            other => other.type_name().to_string(),
        };
        format!(
            "duration must be a number of seconds >= 0 or a string like \
             '90s', '15m', '24h', '7d', got {got}"
        )
    })
}

/// Reads a secret from the file at `path` (option `field`: `admin_token_file`,
/// `challenge.secret_file`): refused when other users may open it; one
/// token, trimmed, without spaces.
pub fn read_secret_file(path: &str, field: &str) -> Result<String, ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| ConfigError::new(field, format!("'{path}' cannot be read: {e}")))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o007 != 0 {
        return Err(ConfigError::new(
            field,
            format!(
                "'{path}' is open to other users (mode {mode:04o}); \
                 make it readable by its owner only: chmod 600 '{path}'"
            ),
        ));
    }
    let text = std::fs::read(path)
        .map_err(|e| ConfigError::new(field, format!("'{path}' cannot be read: {e}")))?;
    let token = String::from_utf8_lossy(&text).trim().to_string();
    if token.is_empty() || token.chars().any(char::is_whitespace) {
        return Err(ConfigError::new(
            field,
            format!("'{path}' must hold one token (no spaces)"),
        ));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_print_as_lua_does() {
        for (x, want) in [
            (0.0, "0"),
            (-2.0, "-2"),
            (1.5, "1.5"),
            (0.1, "0.1"),
            (123.456, "123.456"),
            (1e15, "1e+15"),
            (1e20, "1e+20"),
            (0.00001, "1e-05"),
            (0.0001, "0.0001"),
            (2.0 / 3.0, "0.66666666666667"),
            (12.345678901234567, "12.345678901235"),
        ] {
            assert_eq!(number(x), want, "{x}");
        }
        assert_eq!(human(86_400.0 * 7.0), "7d");
        assert_eq!(human(90.0), "90s");
        assert_eq!(human(120.0), "2m");
        assert_eq!(human(3_600.0 * 36.0), "36h");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(90_000));
        assert_eq!(parse_duration("15m"), Ok(900_000));
        assert_eq!(parse_duration("24h"), Ok(86_400_000));
        assert_eq!(parse_duration("7d"), Ok(604_800_000));
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration("250ms"), Ok(250));
        assert_eq!(parse_duration("0"), Ok(0));
        assert_eq!(parse_duration("1.5s"), Ok(1_500));
        for bad in [
            "", "abc", "5x", "h", "-5", "5 m", "1e400", "inf", "NaN", "1..5s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        // The whole is bounded, not only each part (found by fuzzing).
        let big = "1d1d1d1d1d1d1d1d3664331d51d3664331d5d1d6643332w1d1d2d5d1d1d1d2d5d1d2w";
        assert!(parse_duration(big).is_err());
        assert_eq!(parse_duration("11574074d"), Ok(999_999_993_600_000));
        assert_eq!(
            parse_duration("11574074d8000s"),
            Err("must be a duration like '90s', '15m', '24h' or '7d', got '11574074d8000s'".into())
        );
        assert_eq!(parse_duration("1000000000000000ms"), Ok(MAX_DURATION_MS));
        assert_eq!(parse_duration("1000000000000"), Ok(MAX_DURATION_MS));
        assert_eq!(duration(&json!(90), "d"), Ok(90_000));
        assert!(duration(&json!(-1), "d").is_err());
        assert_eq!(
            duration(&json!(true), "auto_block_duration").unwrap_err().to_string(),
            "opts.auto_block_duration must be a duration like '90s', '15m', '24h' or '7d', got true"
        );
    }

    #[test]
    fn duration_args() {
        assert_eq!(duration_arg(Scalar::Float(1.5)), Ok(1_500));
        assert_eq!(duration_arg(Scalar::Int(86_400)), Ok(86_400_000));
        assert_eq!(duration_arg(Scalar::Nil), Ok(0));
        assert_eq!(
            duration_arg(Scalar::Text("soon")).unwrap_err(),
            "duration must be a duration like '90s', '15m', '24h' or '7d', got 'soon'"
        );
        for (bad, got) in [
            (Scalar::Int(-5), "-5"),
            (Scalar::Float(-0.5), "-0.5"),
            (Scalar::Int(2_000_000_000_000), "2000000000000"),
            (Scalar::Bool(true), "boolean"),
            (Scalar::Other("table"), "table"),
        ] {
            assert_eq!(
                duration_arg(bad).unwrap_err(),
                format!(
                    "duration must be a number of seconds >= 0 or a string like \
                     '90s', '15m', '24h', '7d', got {got}"
                )
            );
        }
    }

    #[test]
    fn scalars_show_as_lua_would() {
        assert_eq!(Scalar::of_query("5"), Scalar::Int(5));
        assert_eq!(Scalar::of_query(" -1 "), Scalar::Int(-1));
        assert_eq!(Scalar::of_query("1.5"), Scalar::Float(1.5));
        assert_eq!(Scalar::of_query("abc"), Scalar::Text("abc"));
        assert_eq!(Scalar::of_query("inf"), Scalar::Text("inf"));
        assert_eq!(Scalar::of_query("-"), Scalar::Text("-"));
        assert_eq!(Scalar::of_query(""), Scalar::Text(""));
        assert_eq!(Scalar::of_json(&json!([1])).show(), "table");
        assert_eq!(Scalar::of_json(&json!(null)), Scalar::Nil);
        assert_eq!(Scalar::of_json(&json!("x")).show(), "'x'");
        assert_eq!(Scalar::of_json(&json!(2.0)), Scalar::Int(2));
        assert_eq!(Scalar::of_json(&json!(2.5)).show(), "2.5");
    }
}
