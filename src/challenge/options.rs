//! `challenge = { ... }`: the options, their defaults and validation.
//! Every error names the option and the value. `secret_file` is read (and
//! its mode checked) by the one reader of secret files,
//! [`crate::options::read_secret_file`], in `new()`.

use std::fmt;

use serde_json::Value;

use crate::options::{duration, integer, read_secret_file, show, string_list, ConfigError};
use crate::path::glob::GlobSet;

/// Fewest bytes in a secret.
pub const MIN_SECRET: usize = 16;
/// Largest difficulty (leading zero bits): 2^24 hashes take a browser
/// minutes.
pub const MAX_DIFFICULTY: u8 = 24;

/// The key of the tokens and cookies (never printed).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Validated options of `challenge = { ... }`.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// The key (`secret`, or read from `secret_file`).
    pub secret: Secret,
    /// Leading zero bits the page must find (0: no work, only JavaScript
    /// and a cookie).
    pub difficulty: u8,
    /// How long a solved challenge is honoured (the cookie's life), ms.
    pub ttl_ms: u64,
    /// How long an issued challenge may be answered, ms.
    pub page_ttl_ms: u64,
    /// Paths where the page is never served (429 instead).
    pub exempt_paths: Vec<String>,
    /// Where the page sends its answer.
    pub path: String,
    /// `Retry-After` of a 429, seconds.
    pub retry_after_s: u32,
    /// Pages, 429s and wrong answers a client may collect without solving
    /// before it is blocked through the offence schedule (0: never).
    pub max_unsolved: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            secret: Secret(String::new()),
            difficulty: 16,
            ttl_ms: 24 * 3_600_000,
            page_ttl_ms: 5 * 60_000,
            exempt_paths: Vec::new(),
            path: "/.warden/challenge".to_string(),
            retry_after_s: 60,
            max_unsolved: 30,
        }
    }
}

/// Options under `challenge = { ... }`. `crawlers` and `resolver` are the
/// verified crawlers' ([`crate::challenge::crawlers::Options`]), read
/// there.
pub const CHALLENGE_OPTIONS: &[&str] = &[
    "secret",
    "secret_file",
    "difficulty",
    "ttl",
    "page_ttl",
    "exempt_paths",
    "path",
    "retry_after",
    "max_unsolved",
    "crawlers",
    "resolver",
];

fn opt(name: &str) -> String {
    format!("challenge.{name}")
}

fn bad(name: &str, what: &str, v: &Value) -> ConfigError {
    ConfigError::new(&opt(name), format!("must be {what}, got {}", show(v)))
}

/// A bounded duration option, in ms.
fn bounded(
    map: &serde_json::Map<String, Value>,
    name: &str,
    range: (u64, u64),
    words: &str,
) -> Result<Option<u64>, ConfigError> {
    let Some(v) = map.get(name) else {
        return Ok(None);
    };
    let ms = duration(v, &opt(name))?;
    if !(range.0..=range.1).contains(&ms) {
        return Err(bad(name, words, v));
    }
    Ok(Some(ms))
}

/// A path the page may send its answer to: absolute, printable, nothing
/// to escape in HTML, no query.
fn answer_path_ok(s: &str) -> bool {
    s.starts_with('/')
        && !s.starts_with("//")
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"\"'<>&?#\\%".contains(&b))
}

impl Options {
    /// Validates `challenge = { ... }`; a secret (`secret` or
    /// `secret_file`, at least [`MIN_SECRET`] bytes) is required.
    ///
    /// ```
    /// use warden_core::challenge::options::Options;
    /// let o = Options::from_value(&serde_json::json!({
    ///     "secret": "0123456789abcdef", "difficulty": 18, "ttl": "12h"})).unwrap();
    /// assert_eq!((o.difficulty, o.ttl_ms), (18, 12 * 3_600_000));
    /// let e = Options::from_value(&serde_json::json!({
    ///     "secret": "0123456789abcdef", "difficulty": 40})).unwrap_err();
    /// assert_eq!(e.to_string(), "opts.challenge.difficulty must be an integer from 0 to 24 \
    ///     (leading zero bits; each one doubles the work), got 40");
    /// ```
    pub fn from_value(v: &Value) -> Result<Options, ConfigError> {
        let mut o = Options::default();
        let map = match v {
            Value::Object(m) => m,
            other => {
                return Err(ConfigError::new(
                    "challenge",
                    format!(
                        "must be a table like {{ secret = \"...\", difficulty = 16 }}, got {}",
                        show(other)
                    ),
                ))
            }
        };
        for k in map.keys() {
            if !CHALLENGE_OPTIONS.contains(&k.as_str()) {
                return Err(ConfigError::new(
                    &opt(k),
                    format!(
                        "is not a known option (known: {})",
                        CHALLENGE_OPTIONS.join(", ")
                    ),
                ));
            }
        }
        let text = |name: &str| -> Result<Option<String>, ConfigError> {
            match map.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_string())),
                Some(v) => Err(bad(name, "a non-empty string", v)),
            }
        };
        let (secret, field) = match (text("secret")?, text("secret_file")?) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    &opt("secret_file"),
                    "cannot be set together with opts.challenge.secret (choose one)",
                ))
            }
            (Some(s), None) => (s, "secret"),
            (None, Some(p)) => (read_secret_file(&p, &opt("secret_file"))?, "secret_file"),
            (None, None) => {
                return Err(ConfigError::new(
                    &opt("secret"),
                    "is required to challenge clients: set secret or secret_file \
                     (the same on every node; e.g. openssl rand -hex 32)",
                ))
            }
        };
        if secret.len() < MIN_SECRET {
            return Err(ConfigError::new(
                &opt(field),
                format!(
                    "must hold at least {MIN_SECRET} bytes (e.g. openssl rand -hex 32), got {}",
                    secret.len()
                ),
            ));
        }
        o.secret = Secret(secret);
        if let Some(v) = map.get("difficulty") {
            o.difficulty = match integer(v) {
                Some(n) if (0..=i64::from(MAX_DIFFICULTY)).contains(&n) => n as u8,
                _ => {
                    return Err(bad(
                        "difficulty",
                        &format!(
                            "an integer from 0 to {MAX_DIFFICULTY} (leading zero bits; each \
                             one doubles the work)"
                        ),
                        v,
                    ))
                }
            };
        }
        if let Some(ms) = bounded(map, "ttl", (60_000, 30 * 86_400_000), "from 1m to 30d")? {
            o.ttl_ms = ms;
        }
        if let Some(ms) = bounded(map, "page_ttl", (10_000, 3_600_000), "from 10s to 1h")? {
            o.page_ttl_ms = ms;
        }
        if let Some(ms) = bounded(map, "retry_after", (1_000, 86_400_000), "from 1s to 1d")? {
            o.retry_after_s = (ms / 1000) as u32;
        }
        if let Some(v) = map.get("exempt_paths") {
            o.exempt_paths = string_list(v, &opt("exempt_paths"))?;
            GlobSet::new(&o.exempt_paths, false)
                .map_err(|e| ConfigError::new(&opt("exempt_paths"), format!("is invalid: {e}")))?;
        }
        if let Some(v) = map.get("path") {
            o.path = match v.as_str() {
                Some(s) if answer_path_ok(s) => s.to_string(),
                _ => {
                    return Err(bad(
                        "path",
                        "a path like '/.warden/challenge' (printable, no query, \
                         no quotes, < > & \\ %)",
                        v,
                    ))
                }
            };
        }
        if let Some(v) = map.get("max_unsolved") {
            o.max_unsolved = match integer(v) {
                Some(n) if (0..=100_000).contains(&n) => n as u32,
                _ => {
                    return Err(bad(
                        "max_unsolved",
                        "an integer from 0 (never) to 100000",
                        v,
                    ))
                }
            };
        }
        Ok(o)
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
    fn errors_name_the_option_and_value() {
        assert_eq!(
            err(json!({})),
            "opts.challenge.secret is required to challenge clients: set secret or \
             secret_file (the same on every node; e.g. openssl rand -hex 32)"
        );
        assert_eq!(
            err(json!({"secret": "short"})),
            "opts.challenge.secret must hold at least 16 bytes (e.g. openssl rand -hex 32), got 5"
        );
        assert_eq!(
            err(json!({"secret": "0123456789abcdef", "ttl": "1s"})),
            "opts.challenge.ttl must be from 1m to 30d, got '1s'"
        );
        assert_eq!(
            err(json!({"secret": "0123456789abcdef", "path": "/a?b"})),
            "opts.challenge.path must be a path like '/.warden/challenge' (printable, no \
             query, no quotes, < > & \\ %), got '/a?b'"
        );
        assert!(err(json!({"secret": "0123456789abcdef", "bogus": 1}))
            .starts_with("opts.challenge.bogus is not a known option"));
        assert!(err(json!(true)).starts_with("opts.challenge must be a table"));
        // reserved for crawler verification: accepted
        let o = Options::from_value(&json!({"secret": "0123456789abcdef",
            "crawlers": [], "resolver": "127.0.0.53", "exempt_paths": "/api/**, /feed.xml"}))
        .unwrap();
        assert_eq!(o.exempt_paths, vec!["/api/**", "/feed.xml"]);
        assert_eq!(format!("{:?}", o.secret), "Secret(<redacted>)");
    }

    #[test]
    fn secret_file_is_read_and_its_mode_checked() {
        use std::os::unix::fs::PermissionsExt;
        let p = std::env::temp_dir().join(format!("warden-chal-{}", std::process::id()));
        std::fs::write(&p, "0123456789abcdef0123\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let path = p.to_str().unwrap();
        assert!(err(json!({"secret_file": path})).contains("is open to other users"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let o = Options::from_value(&json!({"secret_file": path})).unwrap();
        assert_eq!(o.secret.0, "0123456789abcdef0123");
        std::fs::remove_file(&p).unwrap();
    }
}
