//! The behavioural detector: what a finished request says about its client.
//!
//! `warden:log()` hands every finished request (client, status, target,
//! user agent) to [`Detector::observe`]. It classifies the request (a
//! counted 404? an auth failure? a probe path? an attack payload? a
//! scanner? a document the client asked for, or something a page pulled
//! in?), adds it to the client's counters in memory shared by every worker
//! ([`crate::detect::counters`]) and reports the rule that tripped, if any.
//! Blocking, escalation and events are then done by the caller (rarely:
//! once per trip).
//!
//! The rules (name: what counts, default threshold per window):
//! - `scanner_agent`: a known scanner's user agent, 1;
//! - `probe_path`: failed (>= 400) requests for well-known probe paths, 2;
//! - `payload`: distinct requests carrying attack payloads
//!   ([`payload`]), 3;
//! - `auth_failure`: 401/403 responses, 5;
//! - `not_found`: 404 responses, harmless ones excepted, 10;
//! - `unique_paths`: distinct paths that failed (4xx), 20;
//! - `repeated_hits`: hits on one path, 120, monitor mode unless its
//!   threshold is given;
//! - `rate`: documents and API calls, 600, monitor mode unless its
//!   threshold is given;
//! - `events`: security signals of any kind (each counted 404, auth
//!   failure, probe, payload and scanner request), `auto_block_threshold`,
//!   50.
//!
//! Evidence blocks; volume only reports: one address can be a whole
//! office. What a page pulls in (static assets by extension, 304
//! revalidations, subresources and prefetches by their `Sec-Fetch-Dest`
//! and `Sec-Purpose` headers) counts for no volume rule; static assets and
//! what a site refused by its own policy count for no failure rule either;
//! what a request carries (a scanner's name, a probe path, a payload)
//! always counts. Paths are matched percent-decoded, with dot segments
//! resolved. See the README for why
//! FlatRun's defaults were changed.

pub mod agents;
pub mod counters;
pub mod offences;
pub mod payload;

use std::cell::RefCell;

use serde_json::{Map, Value};

use crate::detect::agents::{Agents, DEFAULT_SCANNERS};
use crate::detect::counters::{
    Key, Observation, Outcome, Place, Rule, Table, Thresholds, Trip, MAX_HITS_THRESHOLD,
    MAX_RATE_THRESHOLD, MAX_SMALL_THRESHOLD,
};
use crate::detect::payload::{normalize_into, Class, Payloads};
use crate::net::addr::Addr;
use crate::options::{duration, flag, integer, show, string_list, ConfigError};
use crate::path::glob::GlobSet;
use crate::path::uri::{decode_fully, plain_path, plain_query, resolve_into, split};

/// Paths whose 404 never counts.
pub const DEFAULT_HARMLESS: &[&str] = &[
    "/favicon.ico",
    "/robots.txt",
    "/apple-touch-icon*",
    "/.well-known/**",
    "/sitemap.xml",
    "/ads.txt",
    "/browserconfig.xml",
    "/site.webmanifest",
    "/manifest.json",
];

/// Paths that only scanners ask for (matched case-insensitively, counted
/// only when the response is an error, so a site that serves one of them
/// is not affected).
pub const DEFAULT_PROBES: &[&str] = &[
    "**/.env",
    "**/.env.*",
    "**/.git",
    "**/.git/**",
    "**/.svn/**",
    "**/.hg/**",
    "**/.DS_Store",
    "**/.htaccess",
    "**/.htpasswd",
    "**/.aws/**",
    "**/.ssh/**",
    "**/.vscode/**",
    "**/id_rsa",
    "**/wp-login.php",
    "**/wp-admin/**",
    "**/wp-config.php*",
    "**/xmlrpc.php",
    "**/phpmyadmin/**",
    "**/phpinfo.php",
    "**/pma/**",
    "**/adminer.php",
    "**/server-status",
    "**/etc/passwd",
    "**/cgi-bin/**",
    "**/vendor/phpunit/**",
    "**/boaform/**",
    "**/HNAP1",
    "**/actuator/**",
    "**/*.sql",
    "**/*.bak",
    "**/backup.zip",
    "**/web.config",
];

/// Extensions of static assets: they count for no path rule.
pub const DEFAULT_IGNORE_EXTENSIONS: &[&str] = &[
    "css", "js", "mjs", "map", "png", "jpg", "jpeg", "gif", "webp", "avif", "svg", "ico", "bmp",
    "woff", "woff2", "ttf", "otf", "eot", "mp4", "webm", "mp3", "ogg", "wav",
];

/// What a tripped rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Record an event and block (when `auto_block_enabled`).
    Block,
    /// Record an event and challenge the client (`opts.challenge`): a
    /// block record whose action is `challenge`.
    Challenge,
    /// Record a "would block" event only.
    Monitor,
    /// Nothing: the rule is off.
    Off,
}

impl Mode {
    /// The mode's name.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Block => "block",
            Mode::Challenge => "challenge",
            Mode::Monitor => "monitor",
            Mode::Off => "off",
        }
    }
}

/// Per-rule exceptions.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ignore {
    /// Paths (globs).
    pub paths: Vec<String>,
    /// Extensions, lower case, without the dot.
    pub extensions: Vec<String>,
}

/// Validated `detector` options.
#[derive(Clone, Debug, PartialEq)]
pub struct DetectorConfig {
    /// The detector runs.
    pub enabled: bool,
    /// Sliding window for every counter, ms.
    pub window_ms: u64,
    /// Threshold per rule ([`Rule`] order).
    pub thresholds: Thresholds,
    /// Mode per rule.
    pub modes: [Mode; Rule::COUNT],
    /// Exceptions per rule.
    pub ignore: [Ignore; Rule::COUNT],
    /// Tripped rules in `block` mode block the client.
    pub auto_block_enabled: bool,
    /// First block's duration, ms (0: permanent).
    pub auto_block_duration_ms: u64,
    /// Each repeat offence multiplies the duration by this (1: no growth).
    pub repeat_offender_factor: f64,
    /// Longest automatic block, ms.
    pub max_block_duration_ms: u64,
    /// How long an offence is remembered, ms.
    pub repeat_offender_memory_ms: u64,
    /// IPv6 clients are counted and blocked by this prefix.
    pub ipv6_prefix: u8,
    /// Clients tracked at once.
    pub max_clients: usize,
    /// Scanner user-agent patterns.
    pub scanner_agents: Vec<String>,
    /// Probe path globs.
    pub probe_paths: Vec<String>,
    /// Paths whose 404 never counts.
    pub harmless_paths: Vec<String>,
    /// Paths no rule looks at.
    pub ignore_paths: Vec<String>,
    /// Asset extensions no path rule looks at.
    pub ignore_extensions: Vec<String>,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

impl Default for DetectorConfig {
    fn default() -> Self {
        let mut thresholds = [0; Rule::COUNT];
        for (r, n) in [
            (Rule::ScannerAgent, 1),
            (Rule::ProbePath, 2),
            (Rule::Payload, 3),
            (Rule::AuthFailure, 5),
            (Rule::NotFound, 10),
            (Rule::UniquePaths, 20),
            (Rule::RepeatedHits, 120),
            (Rule::Rate, 600),
            (Rule::Events, 50),
        ] {
            thresholds[r as usize] = n;
        }
        // volume only reports: one address can be a whole office
        let mut modes = [Mode::Block; Rule::COUNT];
        modes[Rule::Rate as usize] = Mode::Monitor;
        modes[Rule::RepeatedHits as usize] = Mode::Monitor;
        DetectorConfig {
            enabled: true,
            window_ms: 120_000,
            thresholds,
            modes,
            ignore: Default::default(),
            auto_block_enabled: true,
            auto_block_duration_ms: 24 * 3_600_000,
            repeat_offender_factor: 2.0,
            max_block_duration_ms: 7 * 24 * 3_600_000,
            repeat_offender_memory_ms: 30 * 24 * 3_600_000,
            ipv6_prefix: 64,
            max_clients: 65_536,
            scanner_agents: strings(DEFAULT_SCANNERS),
            probe_paths: strings(DEFAULT_PROBES),
            harmless_paths: strings(DEFAULT_HARMLESS),
            ignore_paths: Vec::new(),
            ignore_extensions: strings(DEFAULT_IGNORE_EXTENSIONS),
        }
    }
}

/// Options under `detector = { ... }`.
pub const DETECTOR_OPTIONS: &[&str] = &[
    "enabled",
    "detection_window",
    "not_found_threshold",
    "auth_failure_threshold",
    "unique_paths_threshold",
    "repeated_hits_threshold",
    "rate_threshold",
    "probe_path_threshold",
    "payload_threshold",
    "auto_block_enabled",
    "auto_block_threshold",
    "auto_block_duration",
    "repeat_offender_factor",
    "max_block_duration",
    "repeat_offender_memory",
    "ipv6_prefix",
    "max_clients",
    "scanner_agents",
    "extra_scanner_agents",
    "probe_paths",
    "extra_probe_paths",
    "harmless_paths",
    "extra_harmless_paths",
    "ignore_paths",
    "ignore_extensions",
    "extra_ignore_extensions",
    "rules",
];

fn threshold_option(r: Rule) -> &'static str {
    match r {
        Rule::ScannerAgent => "",
        Rule::ProbePath => "probe_path_threshold",
        Rule::Payload => "payload_threshold",
        Rule::AuthFailure => "auth_failure_threshold",
        Rule::NotFound => "not_found_threshold",
        Rule::UniquePaths => "unique_paths_threshold",
        Rule::RepeatedHits => "repeated_hits_threshold",
        Rule::Rate => "rate_threshold",
        Rule::Events => "auto_block_threshold",
    }
}

fn max_threshold(r: Rule) -> u32 {
    match r {
        Rule::Rate => MAX_RATE_THRESHOLD,
        Rule::RepeatedHits => MAX_HITS_THRESHOLD,
        Rule::UniquePaths => crate::detect::counters::MAX_PATHS as u32,
        _ => MAX_SMALL_THRESHOLD,
    }
}

fn globs_ok(list: &[String], option: &str, caseless: bool) -> Result<(), ConfigError> {
    GlobSet::new(list, caseless)
        .map(|_| ())
        .map_err(|e| ConfigError::new(option, format!("is invalid: {e}")))
}

fn extensions(list: Vec<String>, option: &str) -> Result<Vec<String>, ConfigError> {
    list.into_iter()
        .map(|e| {
            let e = e.trim_start_matches('.').to_ascii_lowercase();
            if e.is_empty() || e.len() > 8 || !e.bytes().all(|b| b.is_ascii_alphanumeric()) {
                Err(ConfigError::new(
                    option,
                    format!("has '{e}', which is not a file extension (1-8 letters or digits)"),
                ))
            } else {
                Ok(e)
            }
        })
        .collect()
}

impl DetectorConfig {
    /// Validates the `detector` table.
    ///
    /// ```
    /// use warden_core::detect::DetectorConfig;
    /// let c = DetectorConfig::from_value(&serde_json::json!({"detection_window": "1m"})).unwrap();
    /// assert_eq!(c.window_ms, 60_000);
    /// let e = DetectorConfig::from_value(&serde_json::json!({"detection_window": "abc"})).unwrap_err();
    /// assert_eq!(e.to_string(), "opts.detector.detection_window must be a duration like '90s', '15m', '24h' or '7d', got 'abc'");
    /// ```
    pub fn from_value(v: &Value) -> Result<DetectorConfig, ConfigError> {
        let mut c = DetectorConfig::default();
        let empty = Map::new();
        let map = match v {
            Value::Null => &empty,
            Value::Object(m) => m,
            Value::Array(a) if a.is_empty() => &empty,
            Value::Bool(b) => {
                c.enabled = *b;
                return Ok(c);
            }
            other => {
                return Err(ConfigError::new(
                    "detector",
                    format!("must be a table (or true/false), got {}", show(other)),
                ))
            }
        };
        let opt = |name: &str| format!("detector.{name}");
        for k in map.keys() {
            if !DETECTOR_OPTIONS.contains(&k.as_str()) {
                return Err(ConfigError::new(
                    &opt(k),
                    format!(
                        "is not a known option (known: {})",
                        DETECTOR_OPTIONS.join(", ")
                    ),
                ));
            }
        }
        if let Some(v) = map.get("enabled") {
            c.enabled = flag(v, &opt("enabled"))?;
        }
        if let Some(v) = map.get("auto_block_enabled") {
            c.auto_block_enabled = flag(v, &opt("auto_block_enabled"))?;
        }
        if let Some(v) = map.get("detection_window") {
            c.window_ms = duration(v, &opt("detection_window"))?;
            if c.window_ms < 1_000 || c.window_ms > 24 * 3_600_000 {
                return Err(ConfigError::new(
                    &opt("detection_window"),
                    format!("must be from 1s to 24h, got {}", show(v)),
                ));
            }
        }
        for r in Rule::ALL {
            let name = threshold_option(r);
            let Some(v) = map.get(name).filter(|_| !name.is_empty()) else {
                continue;
            };
            let max = max_threshold(r);
            c.thresholds[r as usize] = match integer(v) {
                Some(n) if (0..=i64::from(max)).contains(&n) => n as u32,
                _ => {
                    return Err(ConfigError::new(
                        &opt(name),
                        format!("must be an integer from 0 (off) to {max}, got {}", show(v)),
                    ))
                }
            };
            // The volume rules only report by default (one address can be
            // a whole office); a threshold the operator chose is a choice
            // to block at it (`rules` may still say otherwise).
            if matches!(r, Rule::Rate | Rule::RepeatedHits) {
                c.modes[r as usize] = Mode::Block;
            }
        }
        for (name, field) in [
            ("auto_block_duration", &mut c.auto_block_duration_ms),
            ("max_block_duration", &mut c.max_block_duration_ms),
            ("repeat_offender_memory", &mut c.repeat_offender_memory_ms),
        ] {
            if let Some(v) = map.get(name) {
                *field = duration(v, &opt(name))?;
            }
        }
        if let Some(v) = map.get("repeat_offender_factor") {
            c.repeat_offender_factor = match v.as_f64() {
                Some(f) if (1.0..=100.0).contains(&f) => f,
                _ => {
                    return Err(ConfigError::new(
                        &opt("repeat_offender_factor"),
                        format!(
                            "must be a number from 1 (no growth) to 100, got {}",
                            show(v)
                        ),
                    ))
                }
            };
        }
        if let Some(v) = map.get("ipv6_prefix") {
            c.ipv6_prefix = match integer(v) {
                Some(n) if (1..=128).contains(&n) => n as u8,
                _ => {
                    return Err(ConfigError::new(
                        &opt("ipv6_prefix"),
                        format!("must be a prefix length from 1 to 128, got {}", show(v)),
                    ))
                }
            };
        }
        if let Some(v) = map.get("max_clients") {
            c.max_clients = match integer(v) {
                Some(n) if (16..=16_777_216).contains(&n) => n as usize,
                _ => {
                    return Err(ConfigError::new(
                        &opt("max_clients"),
                        format!("must be an integer from 16 to 16777216, got {}", show(v)),
                    ))
                }
            };
        }
        // Lists: `x` replaces the default, `extra_x` extends it.
        let list = |name: &str, field: &mut Vec<String>| -> Result<(), ConfigError> {
            if let Some(v) = map.get(name) {
                *field = string_list(v, &opt(name))?;
            }
            let extra = format!("extra_{name}");
            if let Some(v) = map.get(&extra) {
                field.extend(string_list(v, &opt(&extra))?);
            }
            Ok(())
        };
        list("scanner_agents", &mut c.scanner_agents)?;
        list("probe_paths", &mut c.probe_paths)?;
        list("harmless_paths", &mut c.harmless_paths)?;
        list("ignore_extensions", &mut c.ignore_extensions)?;
        if let Some(v) = map.get("ignore_paths") {
            c.ignore_paths = string_list(v, &opt("ignore_paths"))?;
        }
        Agents::new(&c.scanner_agents)
            .map_err(|e| ConfigError::new(&opt("scanner_agents"), format!("is invalid: {e}")))?;
        globs_ok(&c.probe_paths, &opt("probe_paths"), true)?;
        globs_ok(&c.harmless_paths, &opt("harmless_paths"), false)?;
        globs_ok(&c.ignore_paths, &opt("ignore_paths"), false)?;
        c.ignore_extensions = extensions(
            std::mem::take(&mut c.ignore_extensions),
            &opt("ignore_extensions"),
        )?;
        if let Some(v) = map.get("rules") {
            c.rules(v)?;
        }
        Ok(c)
    }

    /// `rules = { <rule> = "block" | "monitor" | "off" | { mode =,
    /// ignore_paths =, ignore_extensions = } }`.
    fn rules(&mut self, v: &Value) -> Result<(), ConfigError> {
        let map = match v {
            Value::Object(m) => m,
            Value::Array(a) if a.is_empty() => return Ok(()),
            other => {
                return Err(ConfigError::new(
                    "detector.rules",
                    format!("must be a table of rule = mode, got {}", show(other)),
                ))
            }
        };
        let names: Vec<&str> = Rule::ALL.iter().map(|r| r.name()).collect();
        for (name, spec) in map {
            let opt = format!("detector.rules.{name}");
            let Some(r) = Rule::from_name(name) else {
                return Err(ConfigError::new(
                    &opt,
                    format!("is not a rule (rules: {})", names.join(", ")),
                ));
            };
            let mode_of = |v: &Value, opt: &str| match v.as_str() {
                Some("block") => Ok(Mode::Block),
                // refused by Config::from_value without opts.challenge
                Some("challenge") => Ok(Mode::Challenge),
                Some("monitor") => Ok(Mode::Monitor),
                Some("off") => Ok(Mode::Off),
                _ => Err(ConfigError::new(
                    opt,
                    format!(
                        "must be \"block\", \"challenge\", \"monitor\" or \"off\", got {}",
                        show(v)
                    ),
                )),
            };
            match spec {
                Value::Object(m) => {
                    for k in m.keys() {
                        if !["mode", "ignore_paths", "ignore_extensions"].contains(&k.as_str()) {
                            return Err(ConfigError::new(
                                &format!("{opt}.{k}"),
                                "is not a known option (known: mode, ignore_paths, ignore_extensions)",
                            ));
                        }
                    }
                    if let Some(m) = m.get("mode") {
                        self.modes[r as usize] = mode_of(m, &format!("{opt}.mode"))?;
                    }
                    let ig = &mut self.ignore[r as usize];
                    if let Some(v) = m.get("ignore_paths") {
                        let o = format!("{opt}.ignore_paths");
                        ig.paths = string_list(v, &o)?;
                        globs_ok(&ig.paths, &o, false)?;
                    }
                    if let Some(v) = m.get("ignore_extensions") {
                        let o = format!("{opt}.ignore_extensions");
                        ig.extensions = extensions(string_list(v, &o)?, &o)?;
                    }
                }
                other => self.modes[r as usize] = mode_of(other, &opt)?,
            }
        }
        Ok(())
    }

    /// The first rule whose mode is `challenge`, if any.
    pub fn challenging(&self) -> Option<Rule> {
        Rule::ALL
            .into_iter()
            .find(|r| self.modes[*r as usize] == Mode::Challenge)
    }

    /// With `opts.challenge`: the statistical rules (`rate`,
    /// `repeated_hits`, `unique_paths`: one address may be a whole office)
    /// challenge unless `detector.rules` says otherwise (`v`: the
    /// `detector` options as given); the certain ones (scanner agents,
    /// probe paths, payloads, auth failures, 404s) keep blocking.
    pub fn challenge_by_default(&mut self, v: Option<&Value>) {
        let rules = v.and_then(|d| d.get("rules"));
        for r in [Rule::Rate, Rule::RepeatedHits, Rule::UniquePaths] {
            let given = rules.is_some_and(|m| m.get(r.name()).is_some());
            if !given && self.modes[r as usize] != Mode::Off {
                self.modes[r as usize] = Mode::Challenge;
            }
        }
    }

    /// The duration (ms, 0 = permanent) of the `offence`-th automatic block
    /// (1 = first) of one client: `auto_block_duration` times
    /// `repeat_offender_factor` per earlier offence, at most
    /// `max_block_duration`.
    ///
    /// ```
    /// use warden_core::detect::DetectorConfig;
    /// let c = DetectorConfig::default(); // 24h, x2, at most 7d
    /// let h = 3_600_000;
    /// assert_eq!(c.block_duration_ms(1), 24 * h);
    /// assert_eq!(c.block_duration_ms(2), 48 * h);
    /// assert_eq!(c.block_duration_ms(4), 168 * h);
    /// assert_eq!(c.block_duration_ms(40), 168 * h);
    /// ```
    pub fn block_duration_ms(&self, offence: u32) -> u64 {
        let base = self.auto_block_duration_ms;
        if base == 0 {
            return 0;
        }
        let n = offence.max(1) - 1;
        let grown = base as f64 * self.repeat_offender_factor.powi(n.min(1000) as i32);
        let cap = if self.max_block_duration_ms == 0 {
            u64::MAX
        } else {
            self.max_block_duration_ms.max(base)
        };
        if grown >= cap as f64 {
            cap
        } else {
            grown as u64
        }
    }

    /// The effective thresholds: 0 for rules that are off.
    pub fn limits(&self) -> Thresholds {
        let mut t = self.thresholds;
        for r in Rule::ALL {
            if self.modes[r as usize] == Mode::Off {
                t[r as usize] = 0;
            }
        }
        t
    }
}

/// Request headers the detector reads only when its decision needs them
/// (nginx finds them by walking the request's header list).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Header {
    /// `Sec-Fetch-Dest`: what the browser fetches (`document`, `image`,
    /// `empty` for `fetch()`...).
    SecFetchDest,
    /// `Sec-Purpose`: `prefetch` (or `prefetch;prerender`) for speculative
    /// loads.
    SecPurpose,
    /// `Purpose`: `prefetch`, from browsers older than `Sec-Purpose`.
    Purpose,
}

/// Reads a request header (None: absent).
pub type Headers<'a> = &'a dyn Fn(Header) -> Option<&'a [u8]>;

/// A finished request, as the log phase sees it.
#[derive(Clone, Copy, Default)]
pub struct Request<'a> {
    /// `$request_uri`: the path and query as the client sent them.
    pub uri: &'a [u8],
    /// The response status.
    pub status: u16,
    /// The user agent (empty: none).
    pub user_agent: &'a [u8],
    /// A site's own policy refused it (`allowed_ips`, `blocked_paths`,
    /// `rate_limit`): the refusal is the site's choice, not the client's
    /// failure, so only what the request carries counts.
    pub refused: bool,
    /// The request's headers, when they can be read (None: from a log
    /// line, where only what is above is known).
    pub headers: Option<Headers<'a>>,
}

impl std::fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("uri", &String::from_utf8_lossy(self.uri))
            .field("status", &self.status)
            .field("user_agent", &String::from_utf8_lossy(self.user_agent))
            .field("refused", &self.refused)
            .field("headers", &self.headers.is_some())
            .finish()
    }
}

impl Request<'_> {
    /// The path: the URI up to `?` or `#`, as sent (not decoded).
    pub fn path(&self) -> &[u8] {
        split(self.uri).0
    }
}

/// True when a user agent is a browser's: every browser's begins with
/// `Mozilla/`. Only browsers send `Sec-Fetch-*` and `Purpose`, so the
/// detector reads those headers (nginx walks the header list for each)
/// only for them.
#[inline]
pub fn browser(user_agent: &[u8]) -> bool {
    user_agent.starts_with(b"Mozilla/")
}

/// True when the browser says a page pulled this request in (an image, a
/// script, a style, a font, a frame... by `Sec-Fetch-Dest`) or fetched it
/// speculatively (`Sec-Purpose`/`Purpose: prefetch`), rather than the
/// client asking for it (`document`, or `empty` for a page's API calls).
/// Browsers without `Sec-Fetch-Dest` said prefetch with `Purpose`.
pub fn pulled_in(headers: Headers<'_>) -> bool {
    let starts = |v: &[u8], w: &[u8]| v.len() >= w.len() && v[..w.len()].eq_ignore_ascii_case(w);
    let prefetch = |v: &[u8]| {
        let v = v.trim_ascii_start();
        starts(v, b"prefetch") || starts(v, b"prerender")
    };
    match headers(Header::SecFetchDest) {
        Some(d) if !d.is_empty() => {
            let own = d.eq_ignore_ascii_case(b"document") || d.eq_ignore_ascii_case(b"empty");
            !own || headers(Header::SecPurpose).is_some_and(prefetch)
        }
        _ => headers(Header::Purpose).is_some_and(prefetch),
    }
}

/// Whether a status is a failure the client caused: a 4xx, except a
/// request timeout (408), a rate limit (429) and a request the client
/// itself gave up on (nginx's 499). Server errors (5xx) are the server's.
pub fn client_failure(status: u16) -> bool {
    (400..500).contains(&status) && !matches!(status, 408 | 429 | 499)
}

/// Per-worker scratch space for decoding request targets.
#[derive(Default)]
struct Scratch {
    decoded: Vec<u8>,
    tmp: Vec<u8>,
    path: Vec<u8>,
    text: Vec<u8>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// A compiled extension set (up to 8 bytes each, packed).
#[derive(Clone, Debug, Default)]
struct Exts(Vec<u64>);

impl Exts {
    fn new(list: &[String]) -> Exts {
        let mut v: Vec<u64> = list.iter().filter_map(|e| pack(e.as_bytes())).collect();
        v.sort_unstable();
        v.dedup();
        Exts(v)
    }

    fn contains(&self, packed: Option<u64>) -> bool {
        packed.is_some_and(|p| self.0.binary_search(&p).is_ok())
    }
}

/// Packs a lower-cased extension of 1-8 bytes.
fn pack(ext: &[u8]) -> Option<u64> {
    if ext.is_empty() || ext.len() > 8 {
        return None;
    }
    let mut v = 0u64;
    for &b in ext {
        v = v << 8 | u64::from(b.to_ascii_lowercase());
    }
    Some(v)
}

/// The packed extension of a path's last segment.
fn extension(path: &[u8]) -> Option<u64> {
    let tail = path.len().saturating_sub(9);
    let seg = &path[tail..];
    let dot = seg.iter().rposition(|&b| b == b'.' || b == b'/')?;
    if seg[dot] != b'.' {
        return None;
    }
    pack(&seg[dot + 1..])
}

struct RuleIgnore {
    paths: GlobSet,
    exts: Exts,
}

/// What one observation did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    /// The request was counted (not ignored, not dropped).
    pub counted: bool,
    /// The observation was dropped: the client's slot stayed locked.
    pub dropped: bool,
    /// A live client was evicted to make room for this one.
    pub evicted: bool,
    /// The rule that tripped.
    pub trip: Option<Tripped>,
}

/// The compiled detector.
pub struct Detector {
    cfg: DetectorConfig,
    limits: Thresholds,
    table: Table,
    agents: Agents,
    probes: GlobSet,
    harmless: GlobSet,
    ignore_paths: GlobSet,
    assets: Exts,
    per_rule: Vec<(Rule, RuleIgnore)>,
    hasher: ahash::RandomState,
    payloads: Payloads,
    /// A volume rule (`rate`, `repeated_hits`) is on.
    volume: bool,
}

/// A tripped rule, with what the caller needs to act on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tripped {
    /// The client's key (address, or IPv6 prefix).
    pub key: Key,
    /// The client's own address.
    pub addr: Addr,
    /// The rule.
    pub rule: Rule,
    /// Its count.
    pub count: u32,
    /// Its threshold.
    pub threshold: u32,
    /// What to do.
    pub mode: Mode,
    /// What the rule saw beyond its count: the scanner pattern that
    /// matched, for `scanner_agent`; the payload classes in the window
    /// (`sqli+xss`), for `payload`.
    pub matched: Option<String>,
}

impl Detector {
    /// Compiles the detector and maps its table. `name` keeps the table
    /// across reloads (see [`Table::named`]).
    pub fn new(cfg: DetectorConfig, name: &str) -> Result<Detector, String> {
        let table = Table::named(name, cfg.max_clients, cfg.window_ms)?;
        let agents = Agents::new(&cfg.scanner_agents).map_err(|e| e.to_string())?;
        let probes = GlobSet::new(&cfg.probe_paths, true).map_err(|e| e.to_string())?;
        let harmless = GlobSet::new(&cfg.harmless_paths, false).map_err(|e| e.to_string())?;
        let ignore_paths = GlobSet::new(&cfg.ignore_paths, false).map_err(|e| e.to_string())?;
        let mut per_rule = Vec::new();
        for r in Rule::ALL {
            let ig = &cfg.ignore[r as usize];
            if ig.paths.is_empty() && ig.extensions.is_empty() {
                continue;
            }
            per_rule.push((
                r,
                RuleIgnore {
                    paths: GlobSet::new(&ig.paths, false).map_err(|e| e.to_string())?,
                    exts: Exts::new(&ig.extensions),
                },
            ));
        }
        let limits = cfg.limits();
        Ok(Detector {
            volume: limits[Rule::Rate as usize] != 0 || limits[Rule::RepeatedHits as usize] != 0,
            payloads: Payloads::new(),
            limits,
            assets: Exts::new(&cfg.ignore_extensions),
            table,
            agents,
            probes,
            harmless,
            ignore_paths,
            per_rule,
            hasher: ahash::RandomState::with_seeds(1, 2, 3, 4),
            cfg,
        })
    }

    /// The options.
    pub fn config(&self) -> &DetectorConfig {
        &self.cfg
    }

    /// The counter table.
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// The key `a` is counted (and blocked) under.
    pub fn key(&self, a: Addr) -> Key {
        Key::of(a, self.cfg.ipv6_prefix)
    }

    /// Classifies a finished request of client `a`, counts it and returns
    /// the rule that tripped, if any.
    pub fn observe(&self, a: Addr, req: &Request<'_>, now_ms: u64) -> Option<Tripped> {
        self.see_at(a, Place::default(), req, now_ms).trip
    }

    /// Where client `a` is counted, its slot fetched into the cache ahead
    /// of [`Detector::see_at`] ([`Table::place`]).
    #[inline]
    pub fn place(&self, a: Addr) -> Place {
        self.table.place(&self.key(a))
    }

    /// [`Detector::observe`], with what happened to the counters, for a
    /// client placed by [`Detector::place`] (`at`; a default [`Place`]:
    /// not placed).
    pub fn see_at(&self, a: Addr, at: Place, req: &Request<'_>, now_ms: u64) -> Seen {
        let (path, query) = split(req.uri);
        // the usual request: nothing to decode, no payload possible
        if plain_path(path) && query.is_none_or(plain_query) {
            return self.see_path(a, at, req, path, 0, now_ms);
        }
        self.see_decoded(a, at, req, path, query, now_ms)
    }

    /// [`Detector::see_at`] for a target to decode first, out of line.
    #[inline(never)]
    fn see_decoded(
        &self,
        a: Addr,
        at: Place,
        req: &Request<'_>,
        path: &[u8],
        query: Option<&[u8]>,
        now_ms: u64,
    ) -> Seen {
        SCRATCH.with(|s| match s.try_borrow_mut() {
            Ok(mut s) => {
                let s = &mut *s;
                let classes = self.decode(path, query, s);
                self.see_path(a, at, req, &s.path, classes, now_ms)
            }
            // never: nothing below comes back here
            Err(_) => self.see_path(a, at, req, path, 0, now_ms),
        })
    }

    /// Decodes a target into `s.path` (the path as nginx sees it: decoded,
    /// dot segments resolved) and returns the classes of the payloads the
    /// path and query carry (when the `payload` rule is on).
    fn decode(&self, path: &[u8], query: Option<&[u8]>, s: &mut Scratch) -> u8 {
        decode_fully(path, &mut s.decoded, &mut s.tmp, false, 3);
        let dotdot = resolve_into(&s.decoded, &mut s.path);
        if self.limits[Rule::Payload as usize] == 0 {
            return 0;
        }
        // browsers resolve `..` before they send: only tools send it
        let mut classes = if dotdot { Class::Traversal as u8 } else { 0 };
        s.text.clear();
        if !plain_path(path) {
            normalize_into(&s.decoded, &mut s.text);
        }
        let at = s.text.len();
        if let Some(q) = query.filter(|q| !plain_query(q)) {
            s.text.push(b'?');
            decode_fully(q, &mut s.decoded, &mut s.tmp, true, 3);
            normalize_into(&s.decoded, &mut s.text);
        }
        if !s.text.is_empty() {
            classes |= self.payloads.scan(&s.text, at);
        }
        classes
    }

    /// Classifies and counts a request whose (decoded) path is `path` and
    /// whose target carries payloads of `classes`.
    fn see_path(
        &self,
        a: Addr,
        at: Place,
        req: &Request<'_>,
        path: &[u8],
        classes: u8,
        now_ms: u64,
    ) -> Seen {
        if !self.ignore_paths.is_empty() && self.ignore_paths.matches(path) {
            return Seen::default();
        }
        let status = req.status;
        let ext = extension(path);
        let asset = self.assets.contains(ext);
        let failed = client_failure(status);
        // A failure counts unless a site's own policy refused the request
        // (its status is the site's choice) or it is a static asset.
        let counted = !asset && !req.refused;
        // What the client asked for itself, rather than what a page pulled
        // in (assets, revalidations, subresources and prefetches by their
        // `Sec-Fetch-*` headers): only that counts for the volume rules.
        // The headers are read only when a volume rule is on, and only for
        // browsers; they are the client's own claim, so they never hide a
        // failure, a probe or a payload.
        let own = counted
            && status != 304
            && !(self.volume && browser(req.user_agent) && req.headers.is_some_and(pulled_in));
        let mut o = Observation {
            not_found: status == 404 && counted,
            auth_failure: (status == 401 || status == 403) && counted,
            probe: false,
            path_hash: 0,
            path_failed: failed && counted,
            ua_fp: 0,
            uncounted: !own,
            payload: classes,
            payload_hash: 0,
        };
        if status >= 400 {
            self.failure(&mut o, path);
        }
        if !req.user_agent.is_empty() {
            o.ua_fp = fingerprint(req.user_agent);
        }
        // a rule that ignores this request cannot trip on it
        let mut ignored;
        let mut limits = &self.limits;
        if !self.per_rule.is_empty() {
            ignored = self.limits;
            self.ignore(ext, path, &mut o, &mut ignored);
            limits = &ignored;
        }
        if own || o.path_failed || o.probe {
            o.path_hash = (self.hasher.hash_one(path) as u32) | 1;
        } else {
            o.path_failed = false;
        }
        if o.payload != 0 {
            o.payload_hash = self.hasher.hash_one(req.uri) as u32;
        }
        let key = self.key(a);
        let Some(Outcome { trip, evicted, .. }) =
            self.table.observe_at(&key, at, now_ms, &o, limits, || {
                self.agents.find_bytes(req.user_agent).is_some()
            })
        else {
            return Seen {
                dropped: true,
                ..Seen::default()
            };
        };
        Seen {
            counted: true,
            dropped: false,
            evicted,
            trip: trip.map(|t| self.tripped(key, a, t, limits, req)),
        }
    }

    // The parts of `see_path` that most requests skip, out of its line:
    // a request's code is fetched into the instruction cache afresh for
    // each request (bench/README.md), so the usual path is kept short and
    // contiguous.

    /// A failed request (`status >= 400`): a harmless 404 does not count
    /// as a failure, and a probe path is noticed.
    #[cold]
    #[inline(never)]
    fn failure(&self, o: &mut Observation, path: &[u8]) {
        if o.not_found && self.harmless.matches(path) {
            o.not_found = false;
            o.path_failed = false;
        }
        if self.limits[Rule::ProbePath as usize] != 0 {
            o.probe = self.probes.matches(path);
        }
    }

    /// The rules configured to ignore this request (`ignore.<rule>`, by
    /// extension or path): their signals are taken off `o` and their
    /// thresholds off `limits`.
    #[cold]
    #[inline(never)]
    fn ignore(&self, ext: Option<u64>, path: &[u8], o: &mut Observation, limits: &mut Thresholds) {
        for (r, ig) in &self.per_rule {
            if ig.exts.contains(ext) || (!ig.paths.is_empty() && ig.paths.matches(path)) {
                limits[*r as usize] = 0;
                match r {
                    Rule::NotFound => o.not_found = false,
                    Rule::AuthFailure => o.auth_failure = false,
                    Rule::ProbePath => o.probe = false,
                    Rule::Payload => o.payload = 0,
                    Rule::UniquePaths => o.path_failed = false,
                    Rule::Rate => o.uncounted = true,
                    _ => {}
                }
            }
        }
    }

    /// What the caller needs to act on rule trip `t` of client `a`.
    #[cold]
    #[inline(never)]
    fn tripped(
        &self,
        key: Key,
        a: Addr,
        t: Trip,
        limits: &Thresholds,
        req: &Request<'_>,
    ) -> Tripped {
        Tripped {
            key,
            addr: a,
            rule: t.rule,
            count: t.count,
            threshold: limits[t.rule as usize],
            mode: self.cfg.modes[t.rule as usize],
            matched: match t.rule {
                Rule::ScannerAgent => self.agents.find_bytes(req.user_agent).map(str::to_string),
                Rule::Payload => Some(payload::names(t.classes)),
                _ => None,
            },
        }
    }
}

/// A cheap fingerprint of a user agent: its length and three 8-byte
/// windows. Only used to notice that a client's user agent changed.
fn fingerprint(ua: &[u8]) -> u32 {
    let w = |at: usize| -> u64 {
        let mut b = [0u8; 8];
        let s = &ua[at.min(ua.len())..(at + 8).min(ua.len())];
        b[..s.len()].copy_from_slice(s);
        u64::from_le_bytes(b)
    };
    let n = ua.len();
    let x = w(0) ^ w(n / 2).rotate_left(21) ^ w(n.saturating_sub(8)).rotate_left(42) ^ n as u64;
    let x = (x ^ (x >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    ((x >> 32) as u32) | 4
}

/// The event type a rule's trip is recorded as.
pub fn event_kind(r: Rule) -> crate::events::Kind {
    use crate::events::Kind;
    match r {
        Rule::ScannerAgent | Rule::UniquePaths | Rule::Payload => Kind::ScanDetected,
        Rule::AuthFailure => Kind::AuthFailed,
        Rule::Rate | Rule::RepeatedHits => Kind::RateLimited,
        Rule::NotFound | Rule::ProbePath | Rule::Events => Kind::Suspicious,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn det(opts: Value) -> Detector {
        Detector::new(DetectorConfig::from_value(&opts).unwrap(), "").unwrap()
    }

    fn req<'a>(uri: &'a str, status: u16, ua: &'a str) -> Request<'a> {
        Request {
            uri: uri.as_bytes(),
            status,
            user_agent: ua.as_bytes(),
            ..Request::default()
        }
    }

    const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0";

    fn run(d: &Detector, ip: &str, reqs: &[Request<'_>]) -> Vec<Option<(Rule, u32)>> {
        let a = Addr::parse(ip).unwrap();
        reqs.iter()
            .enumerate()
            .map(|(i, r)| {
                d.observe(a, r, 1_000_000 + i as u64)
                    .map(|t| (t.rule, t.count))
            })
            .collect()
    }

    #[test]
    fn defaults_and_errors() {
        let c = DetectorConfig::default();
        assert_eq!(c.thresholds[Rule::NotFound as usize], 10);
        assert_eq!(c.window_ms, 120_000);
        let err = |v: Value| DetectorConfig::from_value(&v).unwrap_err().to_string();
        assert_eq!(
            err(json!({"not_found_threshold": 300})),
            "opts.detector.not_found_threshold must be an integer from 0 (off) to 255, got 300"
        );
        assert!(err(json!({"bogus": 1})).starts_with("opts.detector.bogus is not a known option"));
        assert_eq!(
            err(json!({"rules": {"rate": "loud"}})),
            "opts.detector.rules.rate must be \"block\", \"challenge\", \"monitor\" or \"off\", got 'loud'"
        );
        assert!(err(json!({"rules": {"nope": "off"}}))
            .starts_with("opts.detector.rules.nope is not a rule"));
        assert!(err(json!({"probe_paths": ["x"]})).contains("must start with '/'"));
        assert!(err(json!({"ignore_extensions": ["a.b"]})).contains("not a file extension"));
        assert!(err(json!({"ipv6_prefix": 0})).contains("ipv6_prefix must be a prefix length"));
        assert!(err(json!({"scanner_agents": ["--"]})).contains("scanner_agents is invalid"));
        let c = DetectorConfig::from_value(&json!({
            "extra_scanner_agents": "evilbot", "rules": {"rate": {"mode": "monitor", "ignore_paths": ["/poll"]}},
        }))
        .unwrap();
        assert!(c.scanner_agents.contains(&"evilbot".to_string()));
        assert!(c.scanner_agents.contains(&"sqlmap".to_string()));
        assert_eq!(c.modes[Rule::Rate as usize], Mode::Monitor);
        assert!(!DetectorConfig::from_value(&json!(false)).unwrap().enabled);
    }

    #[test]
    fn not_found_trips_at_threshold_and_harmless_404s_never_count() {
        let d = det(json!({"not_found_threshold": 3}));
        let mut reqs = vec![req("/favicon.ico", 404, BROWSER); 20];
        reqs.extend([req("/.well-known/security.txt", 404, BROWSER); 5]);
        reqs.extend([req("/img/missing.png", 404, BROWSER); 5]);
        reqs.push(req("/a", 404, BROWSER));
        reqs.push(req("/b?x=1", 404, BROWSER));
        reqs.push(req("/c", 404, BROWSER));
        let r = run(&d, "192.0.2.1", &reqs);
        assert!(r[..32].iter().all(Option::is_none));
        assert_eq!(r[32], Some((Rule::NotFound, 3)));
    }

    #[test]
    fn scanner_agents_match_tokens() {
        let d = det(json!({}));
        assert_eq!(
            run(&d, "192.0.2.2", &[req("/", 200, "sqlmap/1.7.2#stable")]),
            vec![Some((Rule::ScannerAgent, 1))]
        );
        assert_eq!(
            run(
                &d,
                "192.0.2.3",
                &[req("/", 200, "Titanium/1.0"), req("/", 200, BROWSER)]
            ),
            vec![None, None]
        );
        let d = det(json!({"extra_scanner_agents": ["titan"]}));
        assert_eq!(
            run(&d, "192.0.2.4", &[req("/", 200, "Titanium/1.0")]),
            vec![None]
        );
        assert_eq!(
            run(&d, "192.0.2.5", &[req("/", 200, "Titan/2")]),
            vec![Some((Rule::ScannerAgent, 1))]
        );
    }

    #[test]
    fn probes_count_only_when_they_fail() {
        let d = det(json!({}));
        let served = vec![req("/wp-login.php", 200, BROWSER); 5];
        assert!(run(&d, "192.0.2.6", &served).iter().all(Option::is_none));
        let r = run(
            &d,
            "192.0.2.7",
            &[req("/app/.ENV", 404, "x"), req("/.git/config", 403, "x")],
        );
        assert_eq!(r[1], Some((Rule::ProbePath, 2)));
    }

    #[test]
    fn a_browser_session_is_never_blocked_by_default() {
        // a page with 60 assets and 3 API calls, loaded 6 times in a
        // minute, with a missing image and a favicon 404 each time
        let d = det(json!({}));
        let mut reqs = Vec::new();
        let assets: Vec<String> = (0..60).map(|i| format!("/static/a{i}.js")).collect();
        for _ in 0..6 {
            reqs.push(req("/dashboard", 200, BROWSER));
            reqs.extend(assets.iter().map(|a| req(a, 200, BROWSER)));
            reqs.push(req("/img/logo-old.png", 404, BROWSER));
            reqs.push(req("/favicon.ico", 404, BROWSER));
            for api in ["/api/user", "/api/notifications", "/api/feed?page=1"] {
                reqs.push(req(api, 200, BROWSER));
            }
        }
        assert_eq!(reqs.len(), 6 * 66);
        assert!(run(&d, "192.0.2.8", &reqs).iter().all(Option::is_none));
        // FlatRun's defaults block the same session
        let flatrun = det(json!({"rate_threshold": 100, "repeated_hits_threshold": 30,
                                  "ignore_extensions": []}));
        assert!(run(&flatrun, "192.0.2.9", &reqs)
            .iter()
            .any(Option::is_some));
    }

    #[test]
    fn per_rule_ignores_and_modes() {
        let d = det(json!({"repeated_hits_threshold": 3,
                           "rules": {"repeated_hits": {"ignore_paths": ["/api/poll"]},
                                     "not_found": "off"}}));
        let r = run(&d, "192.0.2.10", &vec![req("/api/poll", 200, BROWSER); 10]);
        assert!(r.iter().all(Option::is_none));
        let r = run(&d, "192.0.2.10", &vec![req("/nope", 404, BROWSER); 12]);
        assert_eq!(r.iter().flatten().next(), Some(&(Rule::RepeatedHits, 3)));
        let m = det(json!({"rate_threshold": 2, "rules": {"rate": "monitor"}}));
        let t = m.observe(Addr::parse("192.0.2.11").unwrap(), &req("/", 200, ""), 1);
        assert!(t.is_none());
        let t = m
            .observe(Addr::parse("192.0.2.11").unwrap(), &req("/", 200, ""), 2)
            .unwrap();
        assert_eq!((t.rule, t.mode), (Rule::Rate, Mode::Monitor));
    }

    #[test]
    fn ipv6_counts_by_prefix() {
        let d = det(json!({"rate_threshold": 4}));
        let ips = [
            "2001:db8:1:2::1",
            "2001:db8:1:2::2",
            "2001:db8:1:2:abcd::3",
            "2001:db8:1:2::4",
        ];
        let mut got = None;
        for (i, ip) in ips.iter().enumerate() {
            got = d.observe(Addr::parse(ip).unwrap(), &req("/", 200, ""), i as u64);
        }
        let t = got.unwrap();
        assert_eq!(t.key.net(64).to_string(), "2001:db8:1:2::/64");
        let d = det(json!({"rate_threshold": 2, "ipv6_prefix": 128}));
        assert!(d
            .observe(Addr::parse("2001:db8::1").unwrap(), &req("/", 200, ""), 0)
            .is_none());
        assert!(d
            .observe(Addr::parse("2001:db8::2").unwrap(), &req("/", 200, ""), 0)
            .is_none());
    }

    /// `req` with a `Sec-Fetch-Dest` and a `Sec-Purpose` header.
    fn with<'a>(r: Request<'a>, h: Headers<'a>) -> Request<'a> {
        Request {
            headers: Some(h),
            ..r
        }
    }

    #[test]
    fn pulled_in_requests_count_for_no_volume_rule() {
        let image = |h: Header| (h == Header::SecFetchDest).then_some(&b"image"[..]);
        let prefetch = |h: Header| match h {
            Header::SecFetchDest => Some(&b"document"[..]),
            Header::SecPurpose => Some(&b"prefetch;prerender"[..]),
            Header::Purpose => None,
        };
        let old_prefetch = |h: Header| (h == Header::Purpose).then_some(&b"prefetch"[..]);
        let page = |h: Header| (h == Header::SecFetchDest).then_some(&b"document"[..]);
        let api = |h: Header| (h == Header::SecFetchDest).then_some(&b"empty"[..]);
        let d = det(json!({"rate_threshold": 5}));
        assert_eq!(d.cfg.modes[Rule::Rate as usize], Mode::Block);
        let mut reqs = Vec::new();
        for i in 0..40 {
            let r = req(["/avatar?u=1", "/img/thumb", "/next"][i % 3], 200, BROWSER);
            reqs.push(with(
                r,
                [&image as Headers, &prefetch, &old_prefetch][i % 3],
            ));
            reqs.push(req("/page", 304, BROWSER));
        }
        reqs.push(with(req("/page", 200, BROWSER), &page));
        reqs.push(with(req("/api/feed", 200, BROWSER), &api));
        reqs.extend([req("/x", 200, BROWSER), req("/y", 200, BROWSER)]);
        assert!(run(&d, "192.0.2.20", &reqs).iter().all(Option::is_none));
        let r = run(&d, "192.0.2.20", &[req("/z", 200, BROWSER)]);
        assert_eq!(r, vec![Some((Rule::Rate, 5))]);
        // the headers are the client's claim: they never hide a failure
        let d = det(json!({"not_found_threshold": 3}));
        let r = run(
            &d,
            "192.0.2.21",
            &[with(req("/gone", 404, BROWSER), &image); 3],
        );
        assert_eq!(r[2], Some((Rule::NotFound, 3)));
    }

    #[test]
    fn offices_are_never_blocked_by_default() {
        // twenty browsers behind one address, each reading 40 pages of a
        // site with a cold cache: the page, 12 assets by extension, 2 by
        // Sec-Fetch-Dest, a prefetch of the next page and an API call
        let d = det(json!({}));
        let a = Addr::parse("192.0.2.22").unwrap();
        let sub = |h: Header| (h == Header::SecFetchDest).then_some(&b"font"[..]);
        let next = |h: Header| match h {
            Header::SecFetchDest => Some(&b"document"[..]),
            Header::SecPurpose => Some(&b"prefetch"[..]),
            Header::Purpose => None,
        };
        let assets: Vec<String> = (0..12).map(|i| format!("/_static/f{i}.css")).collect();
        let pages: Vec<String> = (0..40).map(|i| format!("/docs/p{i}.html")).collect();
        let mut n = 0u64;
        for browser in 0..20 {
            for (page, p) in pages.iter().enumerate() {
                let mut reqs = vec![req(p, 200, BROWSER)];
                reqs.extend(assets.iter().map(|a| req(a, 200, BROWSER)));
                reqs.push(with(req("/_fonts/inter", 200, BROWSER), &sub));
                reqs.push(with(req("/_fonts/mono", 200, BROWSER), &sub));
                reqs.push(with(req("/docs/next", 200, BROWSER), &next));
                reqs.push(req("/favicon.ico", 404, BROWSER));
                for r in &reqs {
                    // about one minute for all of it
                    let t = d.observe(a, r, 1_000_000 + n * 60_000 / 13_600);
                    n += 1;
                    if let Some(t) = t {
                        assert_eq!(t.mode, Mode::Monitor, "browser {browser}, page {page}");
                    }
                }
            }
        }
        assert_eq!(n, 20 * 40 * 17);
    }

    #[test]
    fn refusals_are_not_auth_failures() {
        let d = det(json!({}));
        let refused = Request {
            refused: true,
            ..req("/admin", 403, BROWSER)
        };
        assert!(run(&d, "192.0.2.23", &vec![refused; 30])
            .iter()
            .all(Option::is_none));
        let r = run(&d, "192.0.2.24", &vec![req("/admin", 403, BROWSER); 5]);
        assert_eq!(r[4], Some((Rule::AuthFailure, 5)));
        // what a refused request carries still counts
        let probe = Request {
            refused: true,
            ..req("/.git/config", 403, BROWSER)
        };
        let r = run(&d, "192.0.2.25", &[probe, probe]);
        assert_eq!(r[1], Some((Rule::ProbePath, 2)));
    }

    #[test]
    fn payloads_trip_at_threshold_and_repeats_count_once() {
        let d = det(json!({}));
        let a = Addr::parse("192.0.2.26").unwrap();
        let send = |uri: &str, t: u64| d.observe(a, &req(uri, 200, BROWSER), t);
        assert!(send("/item?id=1%27%20OR%201%3D1--%20-", 1).is_none());
        for t in 2..10 {
            // one odd link followed again and again
            assert!(send("/item?id=1%27%20OR%201%3D1--%20-", t).is_none());
        }
        assert!(send("/p?file=..%252f..%252fetc%252fpasswd", 10).is_none());
        let t = send("/item?id=1+UNION+ALL+SELECT+NULL,NULL--+-", 11).unwrap();
        assert_eq!((t.rule, t.count, t.threshold), (Rule::Payload, 3, 3));
        assert_eq!(t.matched.as_deref(), Some("traversal+sqli"));
        assert_eq!(t.mode, Mode::Block);
        // ordinary queries never count
        let b = Addr::parse("192.0.2.27").unwrap();
        for (i, q) in [
            "/s?q=rock+and+roll",
            "/s?q=O%27Brien",
            "/s?q=a%3Bb",
            "/s?q=1%2B1",
        ]
        .iter()
        .cycle()
        .take(40)
        .enumerate()
        {
            assert!(
                d.observe(b, &req(q, 200, BROWSER), i as u64).is_none(),
                "{q}"
            );
        }
        // off: nothing is decoded for it
        let off = det(json!({"payload_threshold": 0}));
        let r = run(
            &off,
            "192.0.2.28",
            &vec![req("/x?a=<script>alert(1)</script>", 200, ""); 5],
        );
        assert!(r.iter().all(Option::is_none));
    }

    #[test]
    fn probe_paths_are_matched_decoded() {
        let d = det(json!({}));
        let r = run(
            &d,
            "192.0.2.29",
            &[
                req("/%2eenv", 404, "x"),
                req("/a/..%252f.git/config", 404, "x"),
            ],
        );
        assert_eq!(r[1], Some((Rule::ProbePath, 2)));
        let r = run(
            &d,
            "192.0.2.30",
            &[req("/static/%2e%2e/%2egit/HEAD", 404, "x")],
        );
        assert_eq!(r, vec![None]);
        // the `..` segment is also a traversal payload
        let t = d.observe(
            Addr::parse("192.0.2.30").unwrap(),
            &req("/x/%2e%2e/%2e%2e/y", 200, "x"),
            5,
        );
        assert!(t.is_none());
    }

    #[test]
    fn extensions_and_paths() {
        assert_eq!(extension(b"/a/b.CSS"), pack(b"css"));
        assert_eq!(extension(b"/a.b/c"), None);
        assert_eq!(extension(b"/x.verylongext"), None);
        assert_eq!(req("/a?b.css", 200, "").path(), b"/a");
    }
}
