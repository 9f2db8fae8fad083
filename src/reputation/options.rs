//! iprepd-nginx's options (version 0.1.14: its names, defaults and
//! required options) and warden's two additions, read from the table given
//! to `require("resty.warden.iprepd").new(options)`.
//!
//! What iprepd-nginx accepts is accepted alike: numbers as numbers or
//! numeric strings (its example configuration passes `cache_ttl =
//! os.getenv(...)`), `nil` and `false` as "not given" (it reads options
//! with `options.x or default`), `allowlist`, `whitelist` and
//! `audit_uri_list` as comma-separated strings (or, beyond the original,
//! lists). What it silently misread is an error naming the option and the
//! value: an unknown option (a typo such as `ulr` fell back to localhost),
//! a bad address in the allowlist (the original dropped the whole list), a
//! URL nobody can connect to, an out-of-range number.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::error::Error;
use crate::metrics::statsd::lua_number;
use crate::net::addr::Net;
use crate::net::http::Url;
use crate::options::{flag, integer, net_list, show};

/// iprepd-nginx's default `url`.
pub const DEFAULT_URL: &str = "http://localhost:8080";

/// The warning logged when `whitelist` is given (iprepd-nginx's text).
pub const WHITELIST_DEPRECATED: &str =
    "whitelist option is deprecated. please switch to allowlist.";

/// The warning logged when both lists are given (iprepd-nginx's text).
pub const BOTH_LISTS: &str = "both whitelist and allowlist specified - using allowlist";

/// Every option, iprepd-nginx's first, then warden's (`violations`,
/// `violation_timeout`).
pub const KNOWN: [&str; 21] = [
    "url",
    "api_key",
    "threshold",
    "timeout",
    "cache_ttl",
    "cache_buffer_count",
    "cache_errors",
    "cache_errors_ttl",
    "statsd_host",
    "statsd_port",
    "statsd_max_buffer_count",
    "statsd_flush_timer",
    "blocking_mode",
    "verbose",
    "allowlist",
    "whitelist",
    "audit_blocked_requests",
    "audit_include_headers",
    "audit_uri_list",
    "violations",
    "violation_timeout",
];

/// Where metrics go.
#[derive(Clone, Debug, PartialEq)]
pub struct Statsd {
    /// `statsd_host`.
    pub host: String,
    /// `statsd_port` (8125).
    pub port: u16,
    /// `statsd_max_buffer_count` (100): metrics buffered before a send.
    pub max_buffer_count: usize,
    /// `statsd_flush_timer` (5 s): seconds between two sends.
    pub flush_timer: f64,
}

/// The options, validated, with their defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// `url` (`http://localhost:8080`).
    pub url: Url,
    /// `url` as given, without one trailing `/` (iprepd-nginx's
    /// `client.url`).
    pub url_text: String,
    /// `api_key` (required).
    pub api_key: String,
    /// `threshold` (required): reputations at or below it are refused.
    pub threshold: f64,
    /// `timeout` (10 ms): the budget of one lookup.
    pub timeout_ms: f64,
    /// `cache_ttl` (60 s).
    pub cache_ttl: f64,
    /// `cache_buffer_count` (5000).
    pub cache_buffer_count: usize,
    /// `cache_errors` (0): an error answer is cached as 100.
    pub cache_errors: bool,
    /// `cache_errors_ttl` (10 s).
    pub cache_errors_ttl: f64,
    /// `statsd_host` and its companions; `None` without a host.
    pub statsd: Option<Statsd>,
    /// `blocking_mode` (0): answer 429 below the threshold.
    pub blocking_mode: bool,
    /// `verbose` (0): the `[verbose]` lines.
    pub verbose: bool,
    /// `allowlist`, else the deprecated `whitelist`.
    pub allowlist: Vec<Net>,
    /// `audit_blocked_requests` (0).
    pub audit_blocked_requests: bool,
    /// `audit_include_headers` (0).
    pub audit_include_headers: bool,
    /// `audit_uri_list`: Lua patterns.
    pub audit_uri_list: Vec<String>,
    /// `violations` (warden): rule -> violation name, `None` for a rule
    /// that is not reported.
    pub violations: HashMap<String, Option<String>>,
    /// `violation_timeout` (warden; 1000 ms).
    pub violation_timeout_ms: f64,
}

/// `nil` and `false` mean "not given", as `options.x or default` reads them.
fn given<'a>(map: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    match map.get(name) {
        None | Some(Value::Null) | Some(Value::Bool(false)) => None,
        Some(v) => Some(v),
    }
}

/// A number or a numeric string (as Lua's `tonumber` reads it).
fn numeric(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

fn number(
    map: &Map<String, Value>,
    name: &str,
    default: f64,
    min: f64,
    max: Option<f64>,
) -> Result<f64, Error> {
    let Some(v) = given(map, name) else {
        return Ok(default);
    };
    match numeric(v) {
        Some(n) if n >= min && max.is_none_or(|m| n <= m) => Ok(n),
        _ => Err(Error::invalid(
            name,
            format!(
                "opts.{name} must be a number from {}{}, got {}",
                lua_number(min),
                max.map(|m| format!(" to {}", lua_number(m)))
                    .unwrap_or_default(),
                show(v)
            ),
        )),
    }
}

fn whole(
    map: &Map<String, Value>,
    name: &str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, Error> {
    let Some(v) = given(map, name) else {
        return Ok(default);
    };
    let n = match v {
        Value::String(s) => s.trim().parse::<i64>().ok(),
        v => integer(v),
    };
    match n {
        Some(n) if n >= min as i64 && n as u64 <= max => Ok(n as u64),
        _ => Err(Error::invalid(
            name,
            format!(
                "opts.{name} must be an integer from {min} to {max}, got {}",
                show(v)
            ),
        )),
    }
}

fn switch(map: &Map<String, Value>, name: &str) -> Result<bool, Error> {
    match given(map, name) {
        None => Ok(false),
        Some(v) => Ok(flag(v, name)?),
    }
}

/// Levenshtein distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for j in 0..b.len() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != b[j]))
                .min(row[j] + 1)
                .min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

fn unknown(name: &str) -> Error {
    let near = KNOWN
        .iter()
        .map(|k| (distance(name, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min();
    let hint = near
        .map(|(_, k)| format!("; did you mean '{k}'?"))
        .unwrap_or_default();
    Error::invalid(
        name,
        format!(
            "opts.{name} is not an iprepd option{hint} (known: {})",
            KNOWN.join(", ")
        ),
    )
}

/// Checks the syntax of a Lua pattern as LuaJIT's `string.find` would when
/// it reaches each part, with LuaJIT's messages: a pattern that matching
/// would reject is refused at start-up, not on a refused request.
///
/// ```
/// use warden_core::reputation::options::lua_pattern;
/// assert!(lua_pattern("/test/%d+/x$").is_ok());
/// assert_eq!(lua_pattern("/a[").unwrap_err(), "malformed pattern (missing ']')");
/// ```
pub fn lua_pattern(p: &str) -> Result<(), String> {
    let b = p.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'^'));
    let mut captures: Vec<bool> = Vec::new(); // closed?
                                              // the end of the single-character class at `i`
    let class_end = |mut i: usize| -> Result<usize, String> {
        match b[i] {
            b'%' => {
                if i + 1 >= b.len() {
                    return Err("malformed pattern (ends with '%')".into());
                }
                Ok(i + 2)
            }
            b'[' => {
                i += 1;
                if b.get(i) == Some(&b'^') {
                    i += 1;
                }
                loop {
                    if i >= b.len() {
                        return Err("malformed pattern (missing ']')".into());
                    }
                    let c = b[i];
                    i += 1;
                    if c == b'%' && i < b.len() {
                        i += 1;
                    }
                    if b.get(i) == Some(&b']') {
                        return Ok(i + 1);
                    }
                }
            }
            _ => Ok(i + 1),
        }
    };
    while i < b.len() {
        match b[i] {
            b'(' => {
                if captures.len() >= 32 {
                    return Err("too many captures".into());
                }
                if b.get(i + 1) == Some(&b')') {
                    captures.push(true); // a position
                    i += 2;
                } else {
                    captures.push(false);
                    i += 1;
                }
            }
            b')' => {
                match captures.iter().rposition(|closed| !closed) {
                    Some(l) => captures[l] = true,
                    None => return Err("invalid pattern capture".into()),
                }
                i += 1;
            }
            b'%' if b.get(i + 1) == Some(&b'b') => {
                if i + 3 >= b.len() {
                    return Err("unbalanced pattern".into());
                }
                i += 4;
            }
            b'%' if b.get(i + 1) == Some(&b'f') => {
                if b.get(i + 2) != Some(&b'[') {
                    return Err("missing '[' after '%f' in pattern".into());
                }
                i = class_end(i + 2)?;
            }
            b'%' if b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                let l = usize::from(b[i + 1] - b'0');
                if l == 0 || l > captures.len() || !captures[l - 1] {
                    return Err("invalid capture index".into());
                }
                i += 2;
            }
            _ => {
                i = class_end(i)?;
                if matches!(b.get(i), Some(b'*' | b'+' | b'-' | b'?')) {
                    i += 1;
                }
            }
        }
    }
    if captures.iter().any(|closed| !closed) {
        return Err("unfinished capture".into());
    }
    Ok(())
}

fn patterns(v: Option<&Value>) -> Result<Vec<String>, Error> {
    let bad = |v: &Value| {
        Error::invalid(
            "audit_uri_list",
            format!(
                "opts.audit_uri_list must be a comma-separated string or a list of Lua \
                 patterns, got {}",
                show(v)
            ),
        )
    };
    match v {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(String::from)
            .collect()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|p| p.as_str().map(String::from).ok_or_else(|| bad(p)))
            .collect(),
        Some(Value::Object(m)) if m.is_empty() => Ok(Vec::new()),
        Some(other) => Err(bad(other)),
    }
}

fn violations(v: Option<&Value>) -> Result<HashMap<String, Option<String>>, Error> {
    let mut out = HashMap::new();
    match v {
        None => {}
        Some(Value::Array(a)) if a.is_empty() => {}
        Some(Value::Object(m)) => {
            for (rule, name) in m {
                let name = match name {
                    Value::String(s) if !s.is_empty() => Some(s.clone()),
                    Value::Bool(false) => None,
                    other => {
                        return Err(Error::invalid(
                            "violations",
                            format!(
                                "opts.violations.{rule} must be a violation name or false, \
                                 got {}",
                                show(other)
                            ),
                        ))
                    }
                };
                out.insert(rule.clone(), name);
            }
        }
        Some(other) => {
            return Err(Error::invalid(
                "violations",
                format!(
                    "opts.violations must be a table of rule = violation name, got {}",
                    show(other)
                ),
            ))
        }
    }
    Ok(out)
}

impl Options {
    /// Reads an options table; returns the options and the warnings to
    /// log (iprepd-nginx's, about `whitelist`).
    ///
    /// ```
    /// use serde_json::json;
    /// use warden_core::reputation::options::Options;
    /// let (o, warnings) = Options::from_value(&json!({
    ///     "api_key": "k", "threshold": 50, "cache_ttl": "3", "whitelist": "10.0.0.0/8"})).unwrap();
    /// assert_eq!((o.url.port, o.timeout_ms, o.cache_ttl, o.allowlist.len()), (8080, 10.0, 3.0, 1));
    /// assert_eq!(warnings, ["whitelist option is deprecated. please switch to allowlist."]);
    /// let e = Options::from_value(&json!({"api_key": "k", "threshold": 50, "ulr": "x"})).unwrap_err();
    /// assert!(e.to_string().starts_with("opts.ulr is not an iprepd option; did you mean 'url'?"));
    /// ```
    pub fn from_value(v: &Value) -> Result<(Options, Vec<String>), Error> {
        let empty = Map::new();
        let map = match v {
            Value::Object(m) => m,
            Value::Null => &empty,
            Value::Array(a) if a.is_empty() => &empty,
            other => {
                return Err(Error::invalid(
                    "",
                    format!(
                        "options must be a table of option = value, got {}",
                        show(other)
                    ),
                ))
            }
        };
        if let Some(k) = map.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(unknown(k));
        }
        if given(map, "threshold").is_none() {
            return Err(Error::invalid(
                "threshold",
                "Need to pass in a threshold (opts.threshold)",
            ));
        }
        let api_key = match given(map, "api_key") {
            None => {
                return Err(Error::invalid(
                    "api_key",
                    "Need to pass in an api_key (opts.api_key)",
                ))
            }
            Some(Value::String(s)) => s.clone(),
            Some(v @ Value::Number(_)) => numeric(v).map(lua_number).unwrap_or_default(),
            Some(v) => {
                return Err(Error::invalid(
                    "api_key",
                    format!("opts.api_key must be a string, got {}", show(v)),
                ))
            }
        };
        let url_text = match given(map, "url") {
            None => DEFAULT_URL,
            Some(Value::String(s)) => s.as_str(),
            Some(v) => {
                return Err(Error::invalid(
                    "url",
                    format!("opts.url must be a string, got {}", show(v)),
                ))
            }
        };
        let url =
            Url::parse(url_text).map_err(|m| Error::invalid("url", format!("opts.url {m}")))?;
        let url_text = url_text.strip_suffix('/').unwrap_or(url_text).to_string();

        let mut warnings = Vec::new();
        let whitelist = match given(map, "whitelist") {
            None => Vec::new(),
            Some(v) => {
                warnings.push(WHITELIST_DEPRECATED.to_string());
                net_list(Some(v), "whitelist")?
            }
        };
        let allowlist = match given(map, "allowlist") {
            None => whitelist,
            Some(v) => {
                if !whitelist.is_empty() {
                    warnings.push(BOTH_LISTS.to_string());
                }
                net_list(Some(v), "allowlist")?
            }
        };

        let statsd = match given(map, "statsd_host") {
            Some(Value::String(h)) if !h.trim().is_empty() => Some(Statsd {
                host: h.trim().to_string(),
                port: whole(map, "statsd_port", 8125, 1, 65_535)? as u16,
                max_buffer_count: whole(map, "statsd_max_buffer_count", 100, 1, 1 << 20)? as usize,
                flush_timer: number(map, "statsd_flush_timer", 5.0, 0.001, None)?,
            }),
            None | Some(Value::String(_)) => None,
            Some(v) => {
                return Err(Error::invalid(
                    "statsd_host",
                    format!(
                        "opts.statsd_host must be a host name or address, got {}",
                        show(v)
                    ),
                ))
            }
        };
        // the companions are checked even without a host
        whole(map, "statsd_port", 8125, 1, 65_535)?;
        whole(map, "statsd_max_buffer_count", 100, 1, 1 << 20)?;
        number(map, "statsd_flush_timer", 5.0, 0.001, None)?;

        let audit_blocked_requests = switch(map, "audit_blocked_requests")?;
        let audit_uri_list = patterns(given(map, "audit_uri_list"))?;
        for p in &audit_uri_list {
            lua_pattern(p).map_err(|why| {
                Error::invalid(
                    "audit_uri_list",
                    format!("opts.audit_uri_list has an invalid Lua pattern '{p}': {why}"),
                )
            })?;
        }
        if audit_blocked_requests && audit_uri_list.is_empty() {
            return Err(Error::invalid(
                "audit_uri_list",
                "audit blocked requests is enabled but no uris are specified \
                 (opts.audit_uri_list)",
            ));
        }

        Ok((
            Options {
                url,
                url_text,
                api_key,
                threshold: number(map, "threshold", 0.0, 0.0, Some(100.0))?,
                timeout_ms: number(map, "timeout", 10.0, 1.0, None)?,
                cache_ttl: number(map, "cache_ttl", 60.0, 0.0, None)?,
                cache_buffer_count: whole(map, "cache_buffer_count", 5000, 1, 1 << 26)? as usize,
                cache_errors: switch(map, "cache_errors")?,
                cache_errors_ttl: number(map, "cache_errors_ttl", 10.0, 0.0, None)?,
                statsd,
                blocking_mode: switch(map, "blocking_mode")?,
                verbose: switch(map, "verbose")?,
                allowlist,
                audit_blocked_requests,
                audit_include_headers: switch(map, "audit_include_headers")?,
                audit_uri_list,
                violations: violations(given(map, "violations"))?,
                violation_timeout_ms: number(map, "violation_timeout", 1000.0, 1.0, None)?,
            },
            warnings,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(v: Value) -> String {
        Options::from_value(&v).unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_iprepd_nginx_ones() {
        let (o, w) = Options::from_value(&json!({"api_key": 7, "threshold": 50})).unwrap();
        assert!(w.is_empty());
        assert_eq!(o.url, Url::parse("http://localhost:8080").unwrap());
        assert_eq!(o.api_key, "7");
        assert_eq!(
            (
                o.timeout_ms,
                o.cache_ttl,
                o.cache_buffer_count,
                o.cache_errors_ttl
            ),
            (10.0, 60.0, 5000, 10.0)
        );
        assert!(!(o.cache_errors || o.blocking_mode || o.verbose || o.audit_blocked_requests));
        assert_eq!((o.statsd, o.violation_timeout_ms), (None, 1000.0));
        let (o, _) = Options::from_value(&json!({"api_key": "k", "threshold": 50,
            "statsd_host": "127.0.0.1", "url": "https://iprepd:8443/", "blocking_mode": false,
            "cache_errors": 1, "statsd_port": "9125"}))
        .unwrap();
        let s = o.statsd.unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.max_buffer_count, s.flush_timer),
            ("127.0.0.1", 9125, 100, 5.0)
        );
        assert!(o.url.tls && o.cache_errors && !o.blocking_mode);
    }

    #[test]
    fn lists_and_their_warnings() {
        let (o, w) = Options::from_value(&json!({"api_key": "k", "threshold": 5,
            "whitelist": "10.0.0.1", "allowlist": "10.0.0.2,2001:db8::/32"}))
        .unwrap();
        assert_eq!(w, [WHITELIST_DEPRECATED, BOTH_LISTS]);
        assert_eq!(o.allowlist.len(), 2);
        // an empty whitelist is deprecated but not "both"
        let (_, w) = Options::from_value(&json!({"api_key": "k", "threshold": 5,
            "whitelist": "", "allowlist": "10.0.0.2"}))
        .unwrap();
        assert_eq!(w, [WHITELIST_DEPRECATED]);
        let (o, _) = Options::from_value(&json!({"api_key": "k", "threshold": 5,
            "audit_blocked_requests": 1, "audit_uri_list": "/a, /b/%d+,,"}))
        .unwrap();
        assert_eq!(o.audit_uri_list, ["/a", "/b/%d+"]);
    }

    #[test]
    fn lua_patterns_as_luajit_reads_them() {
        for ok in [
            "/uri1",
            "^/x/%d+/y$",
            "/iprepd_%l%l%l%l",
            "[]]",
            "[^%]]",
            "%bxy",
            "%f[%w]a",
            "(a)%1",
            "()",
            "a-b?c*d+",
            "[%a-z]",
            "$x",
            "%%",
        ] {
            assert_eq!(lua_pattern(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("/a[", "malformed pattern (missing ']')"),
            ("[]", "malformed pattern (missing ']')"),
            ("[a%", "malformed pattern (missing ']')"),
            ("x%", "malformed pattern (ends with '%')"),
            ("%bx", "unbalanced pattern"),
            ("%fx", "missing '[' after '%f' in pattern"),
            ("(a", "unfinished capture"),
            ("a)", "invalid pattern capture"),
            ("%1", "invalid capture index"),
            ("(a%1)", "invalid capture index"),
        ] {
            assert_eq!(lua_pattern(bad), Err(why.to_string()), "{bad}");
        }
    }

    #[test]
    fn errors_name_the_option_and_value() {
        assert_eq!(
            err(json!({"api_key": "k"})),
            "Need to pass in a threshold (opts.threshold)"
        );
        assert_eq!(
            err(json!({"threshold": 5})),
            "Need to pass in an api_key (opts.api_key)"
        );
        assert_eq!(
            err(json!({"api_key": "k", "threshold": 500})),
            "opts.threshold must be a number from 0 to 100, got 500"
        );
        assert_eq!(
            err(json!({"api_key": "k", "threshold": 5, "url": "ftp://x"})),
            "opts.url must look like http://host[:port][/path] or https://host[:port][/path], \
             got 'ftp://x'"
        );
        assert_eq!(
            err(json!({"api_key": "k", "threshold": 5, "audit_blocked_requests": 1})),
            "audit blocked requests is enabled but no uris are specified (opts.audit_uri_list)"
        );
        assert_eq!(
            err(json!({"api_key": "k", "threshold": 5, "allowlist": "10.0.0.300"})),
            "opts.allowlist has an invalid IP address or CIDR '10.0.0.300'"
        );
        assert_eq!(
            err(json!({"api_key": "k", "threshold": 5, "verbose": "yes"})),
            "opts.verbose must be 0, 1, true or false, got 'yes'"
        );
        assert_eq!(
            err(json!({"api_key": "k", "threshold": 5, "statsd_port": 8125.5})),
            "opts.statsd_port must be an integer from 1 to 65535, got 8125.5"
        );
        assert!(err(json!({"api_key": "k", "threshold": 5, "cache_tll": 3}))
            .starts_with("opts.cache_tll is not an iprepd option; did you mean 'cache_ttl'?"));
        assert!(err(json!({"api_key": "k", "threshold": 5, "colour": 3}))
            .starts_with("opts.colour is not an iprepd option (known: url, api_key,"));
        assert_eq!(
            err(json!({"api_key": "k", "threshold": 5, "violations": {"x": 1}})),
            "opts.violations.x must be a violation name or false, got 1"
        );
        assert_eq!(
            err(json!("x")),
            "options must be a table of option = value, got 'x'"
        );
    }
}
