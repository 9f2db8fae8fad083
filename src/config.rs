//! Options of `require("resty.warden").new(opts)`: defaults, validation and
//! durations.
//!
//! Options arrive as a JSON-like tree (the Lua table converted by mlua, or a
//! JSON body), so this module is plain Rust and tested without Lua. Every
//! error names the option and the offending value.

use serde_json::Value;

use crate::net::addr::Net;
use crate::options::{
    duration, flag, integer, net_list, parse_size, read_secret_file, show, ConfigError,
};

/// Validated options.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Name of the `lua_shared_dict` that holds blocks and their journal.
    pub dict: String,
    /// Addresses and networks that are never blocked.
    pub allowlist: Vec<Net>,
    /// Addresses and networks that are always blocked (unless allowlisted).
    pub denylist: Vec<Net>,
    /// Peers whose X-Forwarded-For header is believed.
    pub trusted_proxies: Vec<Net>,
    /// `true`: blocked requests get `block_status`; `false`: monitor only.
    pub blocking_mode: bool,
    /// HTTP status of a blocked request.
    pub block_status: u16,
    /// The behavioural detector (`detector = { ... }`).
    pub detector: crate::detect::DetectorConfig,
    /// Events are kept this long (ms, 0 = until overwritten).
    pub retention_ms: u64,
    /// Events kept at most (a ring in shared memory).
    pub max_events: usize,
    /// Captured requests kept at most (real-time capture has its own ring,
    /// so that it never pushes security events out).
    pub max_captures: usize,
    /// The options' policies: `whitelist`, `protected_routes`, `sites`,
    /// `realtime_capture` (validated; compiled by [`crate::policy`]).
    pub policy: Value,
    /// The admin API's bearer token.
    pub admin_token: Option<String>,
    /// A file holding it (read by the Lua side in `new()`).
    pub admin_token_file: Option<String>,
    /// Largest admin API request body, in bytes.
    pub admin_max_body: usize,
    /// Where warden's metrics go over statsd (without iprepd).
    pub statsd_host: Option<String>,
    /// Its port.
    pub statsd_port: u16,
    /// Seconds between pushes.
    pub statsd_flush_timer: f64,
    /// Where blocks and the admin API's policy are kept across restarts.
    pub state_file: Option<String>,
    /// Shortest time between two writes of the state file, in ms.
    pub state_interval_ms: u64,
    /// The fleet's Redis (`redis = { host = ..., ... }`).
    pub redis: Option<RedisConfig>,
    /// Where the event log goes (`event_log`): a file, `stderr` or
    /// `error_log`; None: no event log.
    pub event_log: Option<crate::events::log::Target>,
    /// Real-time capture switches itself off this long after it was
    /// turned on (ms; 0: never).
    pub capture_max_ms: u64,
    /// Verified crawlers (`challenge.crawlers`, `challenge.resolver`): set
    /// whenever `opts.challenge` is.
    pub crawlers: Option<crate::challenge::crawlers::Options>,
    /// Challenges (`challenge = { secret = ..., ... }`): None without one,
    /// and then nothing may challenge.
    pub challenge: Option<crate::challenge::Options>,
}

/// `redis = { ... }`: the Redis server a fleet of nodes shares blocks
/// through.
#[derive(Clone, Debug, PartialEq)]
pub struct RedisConfig {
    /// Host name or address, or `unix:/path/to/socket`.
    pub host: String,
    /// TCP port (ignored for a unix socket).
    pub port: u16,
    /// `AUTH` password.
    pub password: Option<String>,
    /// Database number (`SELECT`); publish/subscribe ignores it.
    pub db: u32,
    /// Prefix of every key and of the channel.
    pub prefix: String,
    /// Connect, send and read timeout, in ms.
    pub timeout_ms: u64,
    /// This node's name in messages (default: host name and a random tag).
    pub node: Option<String>,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            host: String::new(),
            port: 6379,
            password: None,
            db: 0,
            prefix: "warden:".to_string(),
            timeout_ms: 1_000,
            node: None,
        }
    }
}

/// Options of `redis = { ... }`.
pub const REDIS_OPTIONS: &[&str] = &[
    "host", "port", "password", "db", "prefix", "timeout", "node",
];

impl RedisConfig {
    /// Whether Redis is reached through a unix socket (`unix:/path`).
    pub fn is_unix(&self) -> bool {
        self.host.starts_with("unix:")
    }

    /// Where Redis is, as log lines and the stats show it: `host:port`,
    /// or the `unix:` socket path.
    ///
    /// ```
    /// use warden_core::config::RedisConfig;
    /// let r = RedisConfig { host: "10.0.0.5".into(), ..RedisConfig::default() };
    /// assert_eq!(r.location(), "10.0.0.5:6379");
    /// let u = RedisConfig { host: "unix:/run/redis.sock".into(), ..RedisConfig::default() };
    /// assert_eq!(u.location(), "unix:/run/redis.sock");
    /// ```
    pub fn location(&self) -> String {
        if self.is_unix() {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Validates `redis = { ... }`.
    ///
    /// ```
    /// use warden_core::config::RedisConfig;
    /// let r = RedisConfig::from_value(&serde_json::json!({"host": "127.0.0.1"})).unwrap();
    /// assert_eq!((r.port, r.prefix.as_str()), (6379, "warden:"));
    /// let e = RedisConfig::from_value(&serde_json::json!({"host": "r", "db": -1})).unwrap_err();
    /// assert_eq!(e.to_string(), "opts.redis.db must be a database number from 0 to 65535, got -1");
    /// ```
    pub fn from_value(v: &Value) -> Result<RedisConfig, ConfigError> {
        let mut r = RedisConfig::default();
        let map = match v {
            Value::Object(m) => m,
            other => {
                return Err(ConfigError::new(
                    "redis",
                    format!(
                        "must be a table like {{ host = \"127.0.0.1\", port = 6379 }}, got {}",
                        show(other)
                    ),
                ))
            }
        };
        for k in map.keys() {
            if !REDIS_OPTIONS.contains(&k.as_str()) {
                return Err(ConfigError::new(
                    &format!("redis.{k}"),
                    format!(
                        "is not a known option (known: {})",
                        REDIS_OPTIONS.join(", ")
                    ),
                ));
            }
        }
        r.host = match map.get("host") {
            Some(Value::String(h)) if !h.trim().is_empty() && !h.contains(char::is_whitespace) => {
                h.clone()
            }
            None => return Err(ConfigError::new("redis.host", "is required")),
            Some(v) => {
                return Err(ConfigError::new(
                    "redis.host",
                    format!(
                        "must be a host name, an address or unix:/path, got {}",
                        show(v)
                    ),
                ))
            }
        };
        if let Some(v) = map.get("port") {
            r.port = match integer(v) {
                Some(n) if (1..=65535).contains(&n) => n as u16,
                _ => {
                    return Err(ConfigError::new(
                        "redis.port",
                        format!("must be a port from 1 to 65535, got {}", show(v)),
                    ))
                }
            };
        }
        match map.get("password") {
            None | Some(Value::Null) => {}
            Some(Value::String(p)) if !p.is_empty() => r.password = Some(p.clone()),
            Some(v) => {
                return Err(ConfigError::new(
                    "redis.password",
                    format!("must be a non-empty string, got {}", show(v)),
                ))
            }
        }
        if let Some(v) = map.get("db") {
            r.db = match integer(v) {
                Some(n) if (0..=65535).contains(&n) => n as u32,
                _ => {
                    return Err(ConfigError::new(
                        "redis.db",
                        format!("must be a database number from 0 to 65535, got {}", show(v)),
                    ))
                }
            };
        }
        if let Some(v) = map.get("prefix") {
            r.prefix = match v {
                Value::String(p) if p.len() <= 64 && p.bytes().all(|b| b.is_ascii_graphic()) => {
                    p.clone()
                }
                _ => {
                    return Err(ConfigError::new(
                        "redis.prefix",
                        format!(
                            "must be up to 64 printable characters without spaces, got {}",
                            show(v)
                        ),
                    ))
                }
            };
        }
        if let Some(v) = map.get("timeout") {
            r.timeout_ms = duration(v, "redis.timeout")?;
            if !(10..=60_000).contains(&r.timeout_ms) {
                return Err(ConfigError::new(
                    "redis.timeout",
                    format!("must be from 10ms to 60s, got {}", show(v)),
                ));
            }
        }
        match map.get("node") {
            None | Some(Value::Null) => {}
            Some(Value::String(n))
                if !n.is_empty() && n.len() <= 64 && n.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                r.node = Some(n.clone())
            }
            Some(v) => {
                return Err(ConfigError::new(
                    "redis.node",
                    format!(
                        "must be a name of up to 64 printable characters without spaces, got {}",
                        show(v)
                    ),
                ))
            }
        }
        Ok(r)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dict: "warden".to_string(),
            allowlist: Vec::new(),
            denylist: Vec::new(),
            trusted_proxies: Vec::new(),
            blocking_mode: true,
            block_status: 403,
            detector: crate::detect::DetectorConfig::default(),
            retention_ms: 30 * 24 * 3_600_000,
            max_events: 10_000,
            max_captures: 1_000,
            policy: Value::Object(serde_json::Map::new()),
            admin_token: None,
            admin_token_file: None,
            admin_max_body: 1 << 20,
            statsd_host: None,
            statsd_port: 8125,
            statsd_flush_timer: 5.0,
            state_file: None,
            state_interval_ms: 1_000,
            redis: None,
            event_log: None,
            capture_max_ms: 3_600_000,
            crawlers: None,
            challenge: None,
        }
    }
}

/// Options this module knows. Other areas (detector, iprepd, ...) add theirs.
pub const KNOWN_OPTIONS: &[&str] = &[
    "dict",
    "allowlist",
    "denylist",
    "trusted_proxies",
    "blocking_mode",
    "block_status",
    "detector",
    "retention_days",
    "max_events",
    "iprepd",
    "whitelist",
    "protected_routes",
    "sites",
    "realtime_capture",
    "max_captures",
    "admin_token",
    "admin_token_file",
    "admin_max_body",
    "statsd_host",
    "statsd_port",
    "statsd_flush_timer",
    "state_file",
    "state_interval",
    "redis",
    "event_log",
    "capture_max_duration",
    "challenge",
];

/// FlatRun's option names its documentation uses, read (or refused with
/// what to use instead) by [`Config::from_value`].
pub const FLATRUN_OPTIONS: &[&str] = &["event_retention", "enabled"];

impl Config {
    /// Validates an options table.
    ///
    /// ```
    /// use warden_core::config::Config;
    /// let c = Config::from_value(&serde_json::json!({"denylist": "203.0.113.0/24,198.51.100.7"})).unwrap();
    /// assert_eq!(c.denylist.len(), 2);
    /// let e = Config::from_value(&serde_json::json!({"block_status": 99})).unwrap_err();
    /// assert_eq!(e.to_string(), "opts.block_status must be an HTTP status from 100 to 599, got 99");
    /// ```
    pub fn from_value(v: &Value) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        let map = match v {
            Value::Null => return Ok(c),
            Value::Object(m) => m,
            // An empty Lua table may arrive as an empty array.
            Value::Array(a) if a.is_empty() => return Ok(c),
            other => {
                return Err(ConfigError::new(
                    "",
                    format!("must be a table, got {}", show(other)),
                ))
            }
        };
        for (k, _) in map.iter() {
            if !KNOWN_OPTIONS.contains(&k.as_str()) && !FLATRUN_OPTIONS.contains(&k.as_str()) {
                return Err(ConfigError::new(
                    k,
                    format!(
                        "is not a known option (known: {})",
                        KNOWN_OPTIONS.join(", ")
                    ),
                ));
            }
        }
        if let Some(v) = map.get("dict") {
            c.dict = match v.as_str() {
                Some(s) if !s.is_empty() => s.to_string(),
                _ => {
                    return Err(ConfigError::new(
                        "dict",
                        format!("must be a lua_shared_dict name, got {}", show(v)),
                    ))
                }
            };
        }
        c.allowlist = net_list(map.get("allowlist"), "allowlist")?;
        c.denylist = net_list(map.get("denylist"), "denylist")?;
        c.trusted_proxies = net_list(map.get("trusted_proxies"), "trusted_proxies")?;
        if let Some(v) = map.get("blocking_mode") {
            c.blocking_mode = flag(v, "blocking_mode")?;
        }
        if let Some(v) = map.get("block_status") {
            c.block_status = match integer(v) {
                Some(n) if (100..=599).contains(&n) => n as u16,
                _ => {
                    return Err(ConfigError::new(
                        "block_status",
                        format!("must be an HTTP status from 100 to 599, got {}", show(v)),
                    ))
                }
            };
        }
        if let Some(v) = map.get("detector") {
            c.detector = crate::detect::DetectorConfig::from_value(v)?;
        }
        match map.get("challenge") {
            None | Some(Value::Null) | Some(Value::Bool(false)) => {
                if let Some(r) = c.detector.challenging() {
                    return Err(ConfigError::new(
                        &format!("detector.rules.{}", r.name()),
                        "is \"challenge\", which needs opts.challenge = { secret = \"...\" }",
                    ));
                }
            }
            Some(v) => {
                c.challenge = Some(crate::challenge::Options::from_value(v)?);
                c.detector.challenge_by_default(map.get("detector"));
            }
        }
        // FlatRun's docs call retention_days "event_retention": the same
        // option, in days (a number) or as a duration ("30d")
        if let Some(v) = map.get("event_retention") {
            if map.contains_key("retention_days") {
                return Err(ConfigError::new(
                    "event_retention",
                    "is FlatRun's name for opts.retention_days: set only retention_days",
                ));
            }
            c.retention_ms = match v {
                Value::String(_) => duration(v, "event_retention")?,
                _ => match v.as_f64() {
                    Some(d) if (0.0..=3650.0).contains(&d) => (d * 86_400_000.0) as u64,
                    _ => {
                        return Err(ConfigError::new(
                            "event_retention",
                            format!(
                                "(FlatRun's name for retention_days) must be a number of days \
                                 from 0 to 3650 or a duration like '30d', got {}",
                                show(v)
                            ),
                        ))
                    }
                },
            };
            if c.retention_ms > 3650 * 86_400_000 {
                return Err(ConfigError::new(
                    "event_retention",
                    format!("must be at most 3650 days, got {}", show(v)),
                ));
            }
        }
        // FlatRun's switch of its whole security module: warden is on
        // where check() is called, so `true` changes nothing and `false`
        // is refused with what to use instead
        match map.get("enabled") {
            None | Some(Value::Bool(true)) => {}
            Some(v) if integer(v) == Some(1) => {}
            Some(v) => {
                return Err(ConfigError::new(
                    "enabled",
                    format!(
                        "is FlatRun's switch of its whole security module, which warden does \
                         not have (got {}): to let every request through and only log, set \
                         blocking_mode = false; to stop detection, detector = false; to stop \
                         warden, remove warden:check() from the configuration",
                        show(v)
                    ),
                ))
            }
        }
        if let Some(v) = map.get("retention_days") {
            c.retention_ms = match v.as_f64() {
                Some(d) if (0.0..=3650.0).contains(&d) => (d * 86_400_000.0) as u64,
                _ => {
                    return Err(ConfigError::new(
                        "retention_days",
                        format!(
                        "must be a number of days from 0 (keep until overwritten) to 3650, got {}",
                        show(v)
                    ),
                    ))
                }
            };
        }
        if let Some(v) = map.get("max_events") {
            c.max_events = match integer(v) {
                Some(n) if (1..=10_000_000).contains(&n) => n as usize,
                _ => {
                    return Err(ConfigError::new(
                        "max_events",
                        format!("must be an integer from 1 to 10000000, got {}", show(v)),
                    ))
                }
            };
        }
        if let Some(v) = map.get("max_captures") {
            c.max_captures = match integer(v) {
                Some(n) if (1..=1_000_000).contains(&n) => n as usize,
                _ => {
                    return Err(ConfigError::new(
                        "max_captures",
                        format!("must be an integer from 1 to 1000000, got {}", show(v)),
                    ))
                }
            };
        }
        let mut policy = serde_json::Map::new();
        for k in ["whitelist", "protected_routes", "sites"] {
            if let Some(v) = map.get(k) {
                policy.insert(k.to_string(), v.clone());
            }
        }
        if let Some(v) = map.get("realtime_capture") {
            policy.insert(
                "realtime_capture".into(),
                Value::Bool(flag(v, "realtime_capture")?),
            );
        }
        c.policy = Value::Object(policy);
        crate::policy::Policy::compile(&c.policy, &Value::Null)
            .map_err(|e| ConfigError::new(e.field(), e.message()))?;
        for k in ["admin_token", "admin_token_file"] {
            let slot = match map.get(k) {
                None | Some(Value::Null) => continue,
                Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
                Some(v) => {
                    return Err(ConfigError::new(
                        k,
                        format!("must be a non-empty string, got {}", show(v)),
                    ))
                }
            };
            if k == "admin_token" {
                c.admin_token = slot;
            } else {
                c.admin_token_file = slot;
            }
        }
        if c.admin_token.is_some() && c.admin_token_file.is_some() {
            return Err(ConfigError::new(
                "admin_token_file",
                "cannot be set together with opts.admin_token (choose one)",
            ));
        }
        if let Some(path) = &c.admin_token_file {
            c.admin_token = Some(read_secret_file(path, "admin_token_file")?);
        }
        if let Some(v) = map.get("admin_max_body") {
            c.admin_max_body = match v {
                Value::String(s) => parse_size(s),
                v => integer(v).and_then(|n| usize::try_from(n).ok()),
            }
            .filter(|n| (1024..=1 << 30).contains(n))
            .ok_or_else(|| {
                ConfigError::new(
                    "admin_max_body",
                    format!(
                        "must be a size from 1k to 1g (bytes, or '64k', '1m'), got {}",
                        show(v)
                    ),
                )
            })?;
        }
        match map.get("statsd_host") {
            None | Some(Value::Null) => {}
            Some(Value::String(h)) if !h.trim().is_empty() => {
                c.statsd_host = Some(h.trim().to_string())
            }
            Some(v) => {
                return Err(ConfigError::new(
                    "statsd_host",
                    format!("must be a host name or address, got {}", show(v)),
                ))
            }
        }
        if let Some(v) = map.get("statsd_port") {
            c.statsd_port = match integer(v) {
                Some(n) if (1..=65535).contains(&n) => n as u16,
                _ => {
                    return Err(ConfigError::new(
                        "statsd_port",
                        format!("must be a port from 1 to 65535, got {}", show(v)),
                    ))
                }
            };
        }
        if let Some(v) = map.get("statsd_flush_timer") {
            c.statsd_flush_timer = match v.as_f64() {
                Some(n) if (0.1..=3600.0).contains(&n) => n,
                _ => {
                    return Err(ConfigError::new(
                        "statsd_flush_timer",
                        format!(
                            "must be a number of seconds from 0.1 to 3600, got {}",
                            show(v)
                        ),
                    ))
                }
            };
        }
        match map.get("state_file") {
            None | Some(Value::Null) => {}
            Some(Value::String(p)) if !p.trim().is_empty() && !p.contains('\0') => {
                c.state_file = Some(p.clone())
            }
            Some(v) => {
                return Err(ConfigError::new(
                    "state_file",
                    format!(
                        "must be a file path like '/var/lib/warden/state', got {}",
                        show(v)
                    ),
                ))
            }
        }
        if let Some(v) = map.get("state_interval") {
            c.state_interval_ms = duration(v, "state_interval")?;
            if !(100..=3_600_000).contains(&c.state_interval_ms) {
                return Err(ConfigError::new(
                    "state_interval",
                    format!("must be from 100ms to 1h, got {}", show(v)),
                ));
            }
        }
        match map.get("redis") {
            None | Some(Value::Null) => {}
            Some(v) => c.redis = Some(RedisConfig::from_value(v)?),
        }
        match map.get("event_log") {
            None | Some(Value::Null) | Some(Value::Bool(false)) => {}
            Some(Value::String(s)) => {
                c.event_log = Some(
                    crate::events::log::Target::parse(s)
                        .map_err(|e| ConfigError::new("event_log", e))?,
                )
            }
            Some(v) => {
                return Err(ConfigError::new(
                    "event_log",
                    format!(
                        "must be a file path like '/var/log/nginx/warden-events.json', \
                         'error_log' or 'stderr', got {}",
                        show(v)
                    ),
                ))
            }
        }
        if let Some(v) = map.get("capture_max_duration") {
            c.capture_max_ms = duration(v, "capture_max_duration")?;
            if c.capture_max_ms > 30 * 86_400_000 {
                return Err(ConfigError::new(
                    "capture_max_duration",
                    format!("must be at most 30d (0: no limit), got {}", show(v)),
                ));
            }
        }
        if let Some(v) = map.get("challenge").filter(|v| !v.is_null()) {
            c.crawlers = Some(crate::challenge::crawlers::Options::from_challenge(v)?);
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn challenge_defaults_for_the_statistical_rules() {
        use crate::detect::{counters::Rule, Mode};
        let mode = |c: &Config, r: Rule| c.detector.modes[r as usize];
        let plain = Config::from_value(&json!({})).unwrap();
        assert_eq!(mode(&plain, Rule::Rate), Mode::Monitor);
        assert_eq!(mode(&plain, Rule::UniquePaths), Mode::Block);
        let c = Config::from_value(&json!({
            "challenge": {"secret": "0123456789abcdef"},
            "detector": {"rules": {"repeated_hits": "monitor"}},
        }))
        .unwrap();
        assert_eq!(mode(&c, Rule::Rate), Mode::Challenge);
        assert_eq!(mode(&c, Rule::UniquePaths), Mode::Challenge);
        assert_eq!(mode(&c, Rule::RepeatedHits), Mode::Monitor);
        for r in [
            Rule::ScannerAgent,
            Rule::ProbePath,
            Rule::Payload,
            Rule::AuthFailure,
        ] {
            assert_eq!(mode(&c, r), Mode::Block, "{}", r.name());
        }
    }

    #[test]
    fn events_options_and_flatrun_names() {
        let c = Config::from_value(&json!({
            "event_retention": 7, "enabled": true, "event_log": "stderr",
            "capture_max_duration": "15m",
        }))
        .unwrap();
        assert_eq!(c.retention_ms, 7 * 86_400_000);
        assert_eq!(c.event_log, Some(crate::events::log::Target::Stderr));
        assert_eq!(c.capture_max_ms, 900_000);
        let c = Config::from_value(&json!({"event_retention": "12h"})).unwrap();
        assert_eq!(c.retention_ms, 43_200_000);
        assert_eq!(Config::default().capture_max_ms, 3_600_000);
        let e = |v: Value| Config::from_value(&v).unwrap_err().to_string();
        assert_eq!(
            e(json!({"event_retention": 7, "retention_days": 7})),
            "opts.event_retention is FlatRun's name for opts.retention_days: set only \
             retention_days"
        );
        assert!(e(json!({"enabled": false})).starts_with(
            "opts.enabled is FlatRun's switch of its whole security module, which warden \
             does not have (got false): to let every request through and only log, set \
             blocking_mode = false"
        ));
        assert!(e(json!({"event_retention": -1}))
            .starts_with("opts.event_retention (FlatRun's name for retention_days) must be"));
        assert_eq!(
            e(json!({"capture_max_duration": "60d"})),
            "opts.capture_max_duration must be at most 30d (0: no limit), got '60d'"
        );
    }

    #[test]
    fn defaults() {
        let c = Config::from_value(&json!({})).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(Config::from_value(&Value::Null).unwrap(), Config::default());
        assert_eq!(Config::from_value(&json!([])).unwrap(), Config::default());
    }

    #[test]
    fn admin_token_file_is_read_and_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("warden-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, " 0123456789abcdef0123\n").unwrap();
        let p = path.to_str().unwrap();
        let opts = json!({ "admin_token_file": p });
        for mode in [0o600, 0o640] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let c = Config::from_value(&opts).unwrap();
            assert_eq!(c.admin_token.as_deref(), Some("0123456789abcdef0123"));
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Config::from_value(&opts).unwrap_err().to_string();
        assert!(
            e.contains("admin_token_file") && e.contains("mode 0644"),
            "{e}"
        );
        assert!(e.contains(&format!("chmod 600 '{p}'")), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "two tokens\n").unwrap();
        let e = Config::from_value(&opts).unwrap_err().to_string();
        assert!(e.contains("must hold one token"), "{e}");
        let missing = json!({ "admin_token_file": dir.join("nope").to_str().unwrap() });
        let e = Config::from_value(&missing).unwrap_err().to_string();
        assert!(e.contains("cannot be read"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn lists_as_strings_or_arrays() {
        let c = Config::from_value(&json!({
            "allowlist": ["127.0.0.1", "10.0.0.0/8", "2001:db8::/32"],
            "denylist": "203.0.113.0/24, 198.51.100.7",
            "trusted_proxies": {},
            "blocking_mode": 0,
            "block_status": 444,
        }))
        .unwrap();
        assert_eq!(c.allowlist.len(), 3);
        assert_eq!(c.denylist.len(), 2);
        assert!(c.trusted_proxies.is_empty());
        assert!(!c.blocking_mode);
        assert_eq!(c.block_status, 444);
    }

    #[test]
    fn errors_name_option_and_value() {
        let e = |v: Value| Config::from_value(&v).unwrap_err().to_string();
        assert_eq!(
            e(json!({"allowlist": ["10.0.0.1", "10.0.0.300"]})),
            "opts.allowlist has an invalid IP address or CIDR '10.0.0.300'"
        );
        assert_eq!(
            e(json!({"denylist": [1]})),
            "opts.denylist entry 1 must be an IP address or CIDR string, got 1"
        );
        assert_eq!(
            e(json!({"blocking_mode": 2})),
            "opts.blocking_mode must be 0, 1, true or false, got 2"
        );
        assert!(
            e(json!({"blokcing_mode": 1})).starts_with("opts.blokcing_mode is not a known option")
        );
        assert_eq!(
            e(json!({"dict": ""})),
            "opts.dict must be a lua_shared_dict name, got ''"
        );
        assert_eq!(e(json!(5)), "opts. must be a table, got 5");
    }

    #[test]
    fn state_and_redis() {
        let c = Config::from_value(&json!({
            "state_file": "/var/lib/warden/state", "state_interval": "2s",
            "redis": {"host": "10.0.0.5", "port": 6380, "password": "pw", "db": 2,
                      "prefix": "edge:", "timeout": "250ms", "node": "edge-1"},
        }))
        .unwrap();
        assert_eq!(c.state_file.as_deref(), Some("/var/lib/warden/state"));
        assert_eq!(c.state_interval_ms, 2_000);
        let r = c.redis.unwrap();
        assert_eq!(
            (r.host.as_str(), r.port, r.password.as_deref(), r.db),
            ("10.0.0.5", 6380, Some("pw"), 2)
        );
        assert_eq!((r.prefix.as_str(), r.timeout_ms), ("edge:", 250));
        assert_eq!(r.node.as_deref(), Some("edge-1"));
        let e = |v: Value| Config::from_value(&v).unwrap_err().to_string();
        assert_eq!(
            e(json!({"state_file": 5})),
            "opts.state_file must be a file path like '/var/lib/warden/state', got 5"
        );
        assert_eq!(
            e(json!({"state_interval": "10ms"})),
            "opts.state_interval must be from 100ms to 1h, got '10ms'"
        );
        assert_eq!(e(json!({"redis": {}})), "opts.redis.host is required");
        assert_eq!(
            e(json!({"event_log": 5})),
            "opts.event_log must be a file path like '/var/log/nginx/warden-events.json', \
             'error_log' or 'stderr', got 5"
        );
        assert_eq!(
            e(json!({"redis": {"host": "r", "port": 0}})),
            "opts.redis.port must be a port from 1 to 65535, got 0"
        );
        assert!(e(json!({"redis": {"host": "r", "hots": 1}}))
            .starts_with("opts.redis.hots is not a known option (known: host, port"));
        assert_eq!(
            e(json!({"redis": {"host": "r", "node": "a b"}})),
            "opts.redis.node must be a name of up to 64 printable characters without spaces, got 'a b'"
        );
        assert_eq!(
            e(json!({"redis": "127.0.0.1"})),
            "opts.redis must be a table like { host = \"127.0.0.1\", port = 6379 }, got '127.0.0.1'"
        );
    }
}
