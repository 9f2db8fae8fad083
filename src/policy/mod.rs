//! Policies that apply by path and by site, set in `new()` and through the
//! admin API: the whitelist (addresses, networks and paths), protected
//! routes, site policies and real-time capture.
//!
//! The admin API keeps its part as one JSON document in the shared dict;
//! every worker compiles that document together with the options into a
//! [`Policy`] whenever it changes (a journal entry tells it so). Entries
//! are normalized and validated here, before anything is stored, so a
//! request to the API is applied entirely or not at all.
//!
//! Paths are matched against the normalized path (nginx's `$uri`). A
//! pattern without wildcards covers the path and everything below it, like
//! an nginx prefix location: `/admin` covers `/admin`, `/admin/` and
//! `/admin/users`, but not `/administrator`. Patterns with `*`, `**` or `?`
//! are globs ([`crate::path::glob`]).

pub mod credentials;
pub mod decision;
pub mod doc;
pub mod rate;

use std::collections::HashMap;
use std::fmt;

use serde_json::{json, Map, Value};

use crate::net::addr::{Addr, Net};
use crate::net::lists::NetSet;
use crate::options::show;
use crate::path::glob::Glob;
use crate::policy::credentials::{Credentials, Outcome, Scheme};

/// Longest description kept.
const MAX_DESCRIPTION: usize = 256;
/// Most entries of each kind.
pub const MAX_ENTRIES: usize = 10_000;

/// A bad entry: the field and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyError {
    field: String,
    message: String,
}

impl PolicyError {
    fn new(field: &str, message: impl Into<String>) -> PolicyError {
        PolicyError {
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// The offending field (`path`, `credentials`, `allowed_ips`, ...).
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The message without the field.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Prefixes the field, e.g. with the option it came from.
    pub fn within(mut self, outer: &str) -> PolicyError {
        self.field = format!("{outer}.{}", self.field);
        self
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for PolicyError {}

/// A path pattern: a prefix on segment boundaries, or a glob.
#[derive(Clone, Debug)]
pub struct PathRule {
    pattern: String,
    prefix: Option<Vec<u8>>,
    glob: Option<Glob>,
}

impl PathRule {
    /// Compiles a pattern.
    ///
    /// ```
    /// use warden_core::policy::PathRule;
    /// let r = PathRule::new("/admin").unwrap();
    /// assert!(r.matches(b"/admin/users") && !r.matches(b"/administrator"));
    /// assert!(PathRule::new("admin").is_err());
    /// ```
    pub fn new(pattern: &str) -> Result<PathRule, String> {
        let glob = Glob::new(pattern, false).map_err(|e| e.to_string())?;
        if pattern.contains(['*', '?']) {
            return Ok(PathRule {
                pattern: pattern.to_string(),
                prefix: None,
                glob: Some(glob),
            });
        }
        let trimmed = pattern.trim_end_matches('/');
        Ok(PathRule {
            pattern: pattern.to_string(),
            prefix: Some(trimmed.as_bytes().to_vec()),
            glob: None,
        })
    }

    /// True when `path` is covered.
    #[inline]
    pub fn matches(&self, path: &[u8]) -> bool {
        match (&self.prefix, &self.glob) {
            (Some(p), _) => path.starts_with(p) && (path.len() == p.len() || path[p.len()] == b'/'),
            (None, Some(g)) => g.matches(path),
            (None, None) => false,
        }
    }

    /// The pattern as given.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }
}

fn path_rules(v: &Value, field: &str) -> Result<Vec<PathRule>, PolicyError> {
    strings(v, field)?
        .iter()
        .map(|p| PathRule::new(p).map_err(|e| PolicyError::new(field, e)))
        .collect()
}

/// A list of strings: an array, or one string (comma-separated).
fn strings(v: &Value, field: &str) -> Result<Vec<String>, PolicyError> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => Ok(s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()),
        Value::Array(a) => a
            .iter()
            .map(|x| match x {
                Value::String(s) => Ok(s.trim().to_string()),
                other => Err(PolicyError::new(
                    field,
                    format!("must be a list of strings, got {}", show(other)),
                )),
            })
            .collect(),
        // an empty Lua table
        Value::Object(m) if m.is_empty() => Ok(Vec::new()),
        other => Err(PolicyError::new(
            field,
            format!("must be a list of strings, got {}", show(other)),
        )),
    }
}

fn object<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>, PolicyError> {
    match v {
        Value::Object(m) => Ok(m),
        other => Err(PolicyError::new(
            what,
            format!("must be a JSON object, got {}", show(other)),
        )),
    }
}

/// Rejects fields other than `known` (and the read-only ones a listing
/// returns, so that a listed entry can be sent back).
fn known_fields(m: &Map<String, Value>, known: &[&str]) -> Result<(), PolicyError> {
    const READ_ONLY: &[&str] = &["id", "created", "source"];
    only_fields(m, known, READ_ONLY)
}

/// Refuses a JSON object with a field that is neither in `known` nor in
/// `ignored` (fields a listing shows, sent back as they were): an error
/// naming the field, so that a typo is never silently ignored.
///
/// ```
/// use serde_json::json;
/// let m = json!({"ip": "192.0.2.1", "tll": 60});
/// let e = warden_core::policy::only_fields(m.as_object().unwrap(), &["ip", "ttl"], &[])
///     .unwrap_err();
/// assert_eq!((e.field(), e.message()), ("tll", "is not a known field (known: ip, ttl)"));
/// ```
pub fn only_fields(
    m: &Map<String, Value>,
    known: &[&str],
    ignored: &[&str],
) -> Result<(), PolicyError> {
    for k in m.keys() {
        if !known.contains(&k.as_str()) && !ignored.contains(&k.as_str()) {
            return Err(PolicyError::new(
                k,
                format!("is not a known field (known: {})", known.join(", ")),
            ));
        }
    }
    Ok(())
}

fn text<'a>(
    m: &'a Map<String, Value>,
    field: &str,
    required: bool,
) -> Result<&'a str, PolicyError> {
    match m.get(field) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim()),
        None | Some(Value::Null) if !required => Ok(""),
        Some(Value::String(_)) if !required => Ok(""),
        None | Some(Value::Null) => Err(PolicyError::new(field, "is required")),
        Some(other) => Err(PolicyError::new(
            field,
            format!("must be a string, got {}", show(other)),
        )),
    }
}

fn description(m: &Map<String, Value>) -> Result<String, PolicyError> {
    let d = text(m, "description", false)?;
    if d.chars().count() > MAX_DESCRIPTION {
        return Err(PolicyError::new(
            "description",
            format!("is longer than {MAX_DESCRIPTION} characters"),
        ));
    }
    Ok(d.to_string())
}

/// Validates and normalizes a whitelist entry `{type, value, description}`.
/// `type` is `ip`, `cidr` or `path`; an `ip` entry may be a range too.
///
/// ```
/// use warden_core::policy::whitelist_entry;
/// let e = whitelist_entry(&serde_json::json!({"type": "ip", "value": "10.0.0.0/8"})).unwrap();
/// assert_eq!(e["value"], "10.0.0.0/8");
/// let err = whitelist_entry(&serde_json::json!({"type": "ip", "value": "10.0.0.300"})).unwrap_err();
/// assert_eq!(err.field(), "value");
/// ```
pub fn whitelist_entry(v: &Value) -> Result<Value, PolicyError> {
    Ok(Listed::compile(v)?.1)
}

/// A compiled whitelist entry.
enum Listed {
    Net(Net),
    Path(PathRule),
}

impl Listed {
    fn compile(v: &Value) -> Result<(Listed, Value), PolicyError> {
        let m = object(v, "entry")?;
        known_fields(m, &["type", "value", "description"])?;
        let kind = text(m, "type", true)?.to_ascii_lowercase();
        let value = text(m, "value", true)?;
        let (item, value) = match kind.as_str() {
            "ip" | "cidr" => {
                let n = Net::parse(value).map_err(|e| PolicyError::new("value", e.to_string()))?;
                (Listed::Net(n), n.to_string())
            }
            "path" => {
                let r = PathRule::new(value).map_err(|e| PolicyError::new("value", e))?;
                let shown = r.as_str().to_string();
                (Listed::Path(r), shown)
            }
            other => {
                return Err(PolicyError::new(
                    "type",
                    format!("must be 'ip', 'cidr' or 'path', got '{other}'"),
                ))
            }
        };
        let normalized = json!({"type": kind, "value": value, "description": description(m)?});
        Ok((item, normalized))
    }
}

/// Methods of a route: `None` for all.
fn methods(v: Option<&Value>) -> Result<Option<Vec<String>>, PolicyError> {
    let list = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => strings(v, "method")?,
    };
    let mut out = Vec::new();
    for m in list {
        let m = m.to_ascii_uppercase();
        if m == "ALL" || m == "*" {
            return Ok(None);
        }
        if m.is_empty() || m.len() > 16 || !m.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(PolicyError::new(
                "method",
                format!("must be an HTTP method (GET, POST, ...) or ALL, got '{m}'"),
            ));
        }
        out.push(m);
    }
    Ok(if out.is_empty() { None } else { Some(out) })
}

/// A site (deployment) name: letters, digits, `.`, `_`, `-`.
pub fn site_name(s: &str, field: &str) -> Result<(), PolicyError> {
    if s.is_empty()
        || s.len() > 64
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(PolicyError::new(
            field,
            format!(
                "must be 1 to 64 letters, digits, '.', '_' or '-', got {}",
                show(&Value::String(s.to_string()))
            ),
        ));
    }
    Ok(())
}

/// The site (deployment) of a request in the access phase: the one
/// `check{ site = ... }` names, else the server's `server_name` (its
/// first name, nginx's `$server_name`), so that a route or a site policy
/// naming a deployment applies to the server of that name without a
/// `site` in every location. Never the `Host` header: a client would
/// choose which policy applies to it.
///
/// ```
/// use warden_core::policy::request_site;
/// assert_eq!(request_site(Some(b"shop"), Some(b"example.com")), b"shop");
/// assert_eq!(request_site(None, Some(b"my-app")), b"my-app");
/// assert_eq!(request_site(Some(b""), Some(b"my-app")), b"my-app");
/// assert_eq!(request_site(None, None), b"");
/// ```
pub fn request_site<'a>(site: Option<&'a [u8]>, server_name: Option<&'a [u8]>) -> &'a [u8] {
    site.filter(|s| !s.is_empty())
        .or(server_name)
        .unwrap_or_default()
}

/// Validates and normalizes a protected route `{path, method, auth_type,
/// credentials, deployment, realm}`.
/// Plain secrets are sealed (replaced by their bcrypt hash,
/// [`credentials::seal`]): the entry is what the shared dict and the state
/// file keep.
pub fn route_entry(v: &Value) -> Result<Value, PolicyError> {
    let (route, mut n) = Route::compile(v, None)?;
    let lines = credential_lines(object(v, "route")?)?;
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let sealed = credentials::seal(route.scheme(), &refs)
        .map_err(|e| PolicyError::new(e.field(), e.message()))?;
    n["credentials"] = json!(sealed);
    Ok(n)
}

/// A route's `credentials`: a string (one entry a line) or a list.
fn credential_lines(m: &Map<String, Value>) -> Result<Vec<String>, PolicyError> {
    match m.get("credentials") {
        Some(Value::String(s)) => Ok(s.lines().map(|l| l.trim().to_string()).collect()),
        Some(v @ Value::Array(_)) => strings(v, "credentials"),
        None | Some(Value::Null) => Err(PolicyError::new("credentials", "is required")),
        Some(other) => Err(PolicyError::new(
            "credentials",
            format!(
                "must be a string or a list of strings, got {}",
                other_type(other)
            ),
        )),
    }
}

/// Validates and normalizes a site policy `{enabled, rate_limit,
/// allowed_ips, blocked_paths}`.
pub fn site_entry(v: &Value) -> Result<Value, PolicyError> {
    Ok(Site::compile(v)?.1)
}

/// A protected route.
pub struct Route {
    /// Its id (API entries), or `None` (options).
    pub id: Option<u64>,
    path: PathRule,
    methods: Option<Vec<String>>,
    site: Option<String>,
    /// The realm sent with `WWW-Authenticate`.
    pub realm: String,
    credentials: Credentials,
}

impl Route {
    fn compile(v: &Value, id: Option<u64>) -> Result<(Route, Value), PolicyError> {
        let m = object(v, "route")?;
        known_fields(
            m,
            &[
                "path",
                "method",
                "auth_type",
                "credentials",
                "deployment",
                "realm",
            ],
        )?;
        let path =
            PathRule::new(text(m, "path", true)?).map_err(|e| PolicyError::new("path", e))?;
        let methods = methods(m.get("method"))?;
        let scheme = Scheme::parse(text(m, "auth_type", true)?)
            .map_err(|e| PolicyError::new(e.field(), e.message()))?;
        let creds = credential_lines(m)?;
        let refs: Vec<&str> = creds.iter().map(String::as_str).collect();
        let credentials = Credentials::new(scheme, &refs)
            .map_err(|e| PolicyError::new(e.field(), e.message()))?;
        let site = text(m, "deployment", false)?;
        if !site.is_empty() {
            site_name(site, "deployment")?;
        }
        let realm = text(m, "realm", false)?;
        if realm.contains(['"', '\\']) || realm.chars().any(char::is_control) {
            return Err(PolicyError::new(
                "realm",
                "must not contain quotes, backslashes or control characters",
            ));
        }
        let realm = if realm.is_empty() { "warden" } else { realm }.to_string();
        let method = match &methods {
            None => "ALL".to_string(),
            Some(ms) => ms.join(","),
        };
        let normalized = json!({
            "path": path.as_str(),
            "method": method,
            "auth_type": scheme.as_str(),
            "credentials": m.get("credentials").cloned().unwrap_or(Value::Null),
            "deployment": site,
            "realm": realm,
        });
        Ok((
            Route {
                id,
                path,
                methods,
                site: (!site.is_empty()).then(|| site.to_string()),
                realm,
                credentials,
            },
            normalized,
        ))
    }

    fn applies(&self, path: &[u8], method: &[u8], site: &[u8]) -> bool {
        if let Some(s) = &self.site {
            if s.as_bytes() != site {
                return false;
            }
        }
        if let Some(ms) = &self.methods {
            if !ms.iter().any(|m| m.as_bytes() == method) {
                return false;
            }
        }
        self.path.matches(path)
    }

    /// The authentication scheme.
    pub fn scheme(&self) -> Scheme {
        self.credentials.scheme()
    }

    /// Checks an `Authorization` header.
    pub fn verify(&self, authorization: Option<&[u8]>) -> Outcome {
        self.credentials.verify(authorization)
    }

    /// A listing of the route, secrets redacted.
    pub fn describe(&self) -> Value {
        json!({
            "path": self.path.as_str(),
            "method": self.methods.as_ref().map_or("ALL".to_string(), |m| m.join(",")),
            "auth_type": self.scheme().as_str(),
            "credentials": self.credentials.describe(),
            "deployment": self.site.clone().unwrap_or_default(),
            "realm": self.realm,
        })
    }
}

fn other_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A site's policy.
pub struct Site {
    /// `false`: warden does nothing for the site.
    pub enabled: bool,
    /// Requests per client allowed in `rate_window_s` (0: no limit).
    pub rate_limit: u32,
    /// The window of `rate_limit`: 1 (r/s) or 60 (r/m) seconds.
    pub rate_window_s: u32,
    allowed: NetSet,
    has_allowed: bool,
    blocked: Vec<PathRule>,
    /// `challenge = true`: every client of the site must have solved a
    /// challenge ([`crate::challenge`]; needs `opts.challenge`).
    pub challenge: bool,
}

/// The boolean field `name` of `m`, `default` when absent or null.
fn flag(m: &Map<String, Value>, name: &str, default: bool) -> Result<bool, PolicyError> {
    match m.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(PolicyError::new(
            name,
            format!("must be true or false, got {}", show(other)),
        )),
    }
}

/// Parses `rate_limit`: a number (requests per second, as nginx's
/// `limit_req`), or `"10r/s"` / `"600r/m"`; 0 = none.
fn rate_limit(v: Option<&Value>) -> Result<(u32, u32), PolicyError> {
    let bad = |v: &Value| {
        PolicyError::new(
            "rate_limit",
            format!(
                "must be a number of requests per second or a string like '10r/s' or '600r/m', got {}",
                show(v)
            ),
        )
    };
    match v {
        None | Some(Value::Null) => Ok((0, 1)),
        Some(n @ Value::Number(_)) => match crate::options::integer(n) {
            Some(i) if (0..=1_000_000).contains(&i) => Ok((i as u32, 1)),
            _ => Err(bad(n)),
        },
        Some(s @ Value::String(t)) => {
            let t = t.trim();
            let (num, window) = if let Some(n) = t.strip_suffix("r/s") {
                (n, 1)
            } else if let Some(n) = t.strip_suffix("r/m") {
                (n, 60)
            } else {
                (t, 1)
            };
            match num.trim().parse::<u32>() {
                Ok(n) if n <= 1_000_000 => Ok((n, window)),
                _ => Err(bad(s)),
            }
        }
        Some(other) => Err(bad(other)),
    }
}

impl Site {
    fn compile(v: &Value) -> Result<(Site, Value), PolicyError> {
        let m = object(v, "site")?;
        known_fields(
            m,
            &[
                "enabled",
                "rate_limit",
                "allowed_ips",
                "blocked_paths",
                "challenge",
            ],
        )?;
        let challenge = flag(m, "challenge", false)?;
        let enabled = flag(m, "enabled", true)?;
        let (limit, window) = rate_limit(m.get("rate_limit"))?;
        let ips = strings(m.get("allowed_ips").unwrap_or(&Value::Null), "allowed_ips")?;
        let nets = ips
            .iter()
            .map(|s| Net::parse(s).map_err(|e| PolicyError::new("allowed_ips", e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let blocked = path_rules(
            m.get("blocked_paths").unwrap_or(&Value::Null),
            "blocked_paths",
        )?;
        let rate = match (limit, window) {
            (0, _) => json!(0),
            (n, 1) => json!(n),
            (n, _) => json!(format!("{n}r/m")),
        };
        let mut normalized = json!({
            "enabled": enabled,
            "rate_limit": rate,
            "allowed_ips": nets.iter().map(Net::to_string).collect::<Vec<_>>(),
            "blocked_paths": blocked.iter().map(PathRule::as_str).collect::<Vec<_>>(),
        });
        // written only when set: a site's document stays as it was
        if challenge {
            normalized["challenge"] = Value::Bool(true);
        }
        Ok((
            Site {
                enabled,
                rate_limit: limit,
                rate_window_s: window,
                has_allowed: !nets.is_empty(),
                allowed: NetSet::new(&nets),
                blocked,
                challenge,
            },
            normalized,
        ))
    }
}

/// What a site or route requires of a request (after the lists).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Requirement {
    /// The client is not in the site's `allowed_ips`.
    pub forbidden_ip: bool,
    /// The path is one of the site's `blocked_paths`.
    pub blocked_path: bool,
    /// The index of the protected route covering the request.
    pub route: Option<usize>,
    /// The site's rate limit (0: none) and its window in seconds.
    pub rate_limit: (u32, u32),
    /// The site challenges every client (`challenge = true`).
    pub challenge: bool,
}

/// The compiled policies of one worker.
#[derive(Default)]
pub struct Policy {
    whitelist: NetSet,
    has_whitelist: bool,
    whitelist_paths: Vec<PathRule>,
    routes: Vec<Route>,
    sites: HashMap<String, Site, ahash::RandomState>,
    /// Real-time capture is on.
    pub capture: bool,
}

fn entries<'a>(doc: &'a Value, key: &str) -> Result<&'a [Value], PolicyError> {
    match doc.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) if a.len() <= MAX_ENTRIES => Ok(a),
        Some(Value::Array(_)) => Err(PolicyError::new(
            key,
            format!("has more than {MAX_ENTRIES} entries"),
        )),
        Some(Value::Object(m)) if m.is_empty() => Ok(&[]),
        Some(other) => Err(PolicyError::new(
            key,
            format!("must be a list, got {}", other_type(other)),
        )),
    }
}

fn id_of(e: &Value) -> Option<u64> {
    e.get("id").and_then(Value::as_u64)
}

impl Policy {
    /// Compiles the options' part (`whitelist`, `protected_routes`, `sites`,
    /// `realtime_capture`) and the admin API's document (`whitelist`,
    /// `routes`, `sites`, `capture`). A site set through the API replaces
    /// the options' site of the same name.
    pub fn compile(options: &Value, api: &Value) -> Result<Policy, PolicyError> {
        let mut p = Policy::default();
        let mut nets = Vec::new();
        for (doc, wl, routes, sites) in [
            (options, "whitelist", "protected_routes", "sites"),
            (api, "whitelist", "routes", "sites"),
        ] {
            for (i, e) in entries(doc, wl)?.iter().enumerate() {
                let (item, _) =
                    Listed::compile(e).map_err(|err| err.within(&format!("{wl}[{}]", i + 1)))?;
                match item {
                    Listed::Path(r) => p.whitelist_paths.push(r),
                    Listed::Net(n) => nets.push(n),
                }
            }
            for (i, e) in entries(doc, routes)?.iter().enumerate() {
                let (r, _) = Route::compile(e, id_of(e))
                    .map_err(|err| err.within(&format!("{routes}[{}]", i + 1)))?;
                p.routes.push(r);
            }
            match doc.get(sites) {
                None | Some(Value::Null) => {}
                Some(Value::Object(m)) => {
                    for (name, s) in m {
                        site_name(name, sites)?;
                        let (site, _) =
                            Site::compile(s).map_err(|e| e.within(&format!("{sites}.{name}")))?;
                        p.sites.insert(name.clone(), site);
                    }
                }
                Some(Value::Array(a)) if a.is_empty() => {}
                Some(other) => {
                    return Err(PolicyError::new(
                        sites,
                        format!(
                            "must be a table of site name = policy, got {}",
                            other_type(other)
                        ),
                    ))
                }
            }
        }
        p.capture = match api.get("capture").and_then(|c| c.get("enabled")) {
            Some(Value::Bool(b)) => *b,
            _ => matches!(options.get("realtime_capture"), Some(Value::Bool(true))),
        };
        p.has_whitelist = !nets.is_empty();
        p.whitelist = NetSet::new(&nets);
        Ok(p)
    }

    /// True when nothing applies by path or site (the per-request fast
    /// path skips every other method).
    pub fn is_empty(&self) -> bool {
        self.whitelist_paths.is_empty()
            && self.routes.is_empty()
            && self.sites.is_empty()
            && !self.capture
    }

    /// True when the whitelist has addresses or networks.
    #[inline]
    pub fn has_whitelist(&self) -> bool {
        self.has_whitelist
    }

    /// True when a whitelisted address or network covers `a`.
    #[inline]
    pub fn whitelisted(&self, a: Addr) -> bool {
        self.has_whitelist && self.whitelist.contains(a)
    }

    /// True when warden must leave the request alone: a whitelisted path,
    /// or a site whose policy is disabled.
    pub fn skips(&self, path: &[u8], site: &[u8]) -> bool {
        if !site.is_empty() && !self.sites.is_empty() {
            if let Some(s) = std::str::from_utf8(site)
                .ok()
                .and_then(|s| self.sites.get(s))
            {
                if !s.enabled {
                    return true;
                }
            }
        }
        self.whitelist_paths.iter().any(|r| r.matches(path))
    }

    /// What the site and the protected routes require of a request from
    /// `client` (`allowlisted`: the lists let it through).
    pub fn require(
        &self,
        client: Addr,
        allowlisted: bool,
        path: &[u8],
        method: &[u8],
        site: &[u8],
    ) -> Requirement {
        let mut r = Requirement::default();
        if !site.is_empty() && !allowlisted {
            if let Some(s) = std::str::from_utf8(site)
                .ok()
                .and_then(|s| self.sites.get(s))
            {
                r.forbidden_ip = s.has_allowed && !s.allowed.contains(client);
                r.blocked_path = s.blocked.iter().any(|b| b.matches(path));
                r.rate_limit = (s.rate_limit, s.rate_window_s);
                r.challenge = s.challenge;
            }
        }
        r.route = self
            .routes
            .iter()
            .position(|rt| rt.applies(path, method, site));
        r
    }

    /// The protected route at `i`.
    pub fn route(&self, i: usize) -> Option<&Route> {
        self.routes.get(i)
    }

    /// The number of protected routes.
    pub fn route_count(&self) -> usize {
        self.routes.len()
    }
}

/// The path of a request target as nginx's `$uri` would be (its home is
/// [`crate::path::uri`]).
pub use crate::path::uri::normalize_path;

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;

    fn compile(options: Value, api: Value) -> Policy {
        Policy::compile(&options, &api).unwrap()
    }

    #[test]
    fn path_rules() {
        let r = PathRule::new("/admin/").unwrap();
        for p in ["/admin", "/admin/", "/admin/x/y"] {
            assert!(r.matches(p.as_bytes()), "{p}");
        }
        for p in ["/administrator", "/", "/x/admin"] {
            assert!(!r.matches(p.as_bytes()), "{p}");
        }
        let g = PathRule::new("/admin/*").unwrap();
        assert!(g.matches(b"/admin/users") && !g.matches(b"/admin/users/1"));
        let all = PathRule::new("/").unwrap();
        assert!(all.matches(b"/") && all.matches(b"/anything"));
    }

    #[test]
    fn whitelist_entries() {
        let e = whitelist_entry(&json!({"type": "CIDR", "value": " 10.1.2.3/8 "})).unwrap();
        assert_eq!(
            e,
            json!({"type": "cidr", "value": "10.0.0.0/8", "description": ""})
        );
        let err = whitelist_entry(&json!({"type": "host", "value": "x"})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "type: must be 'ip', 'cidr' or 'path', got 'host'"
        );
        let err = whitelist_entry(&json!({"type": "path", "value": "health"})).unwrap_err();
        assert_eq!(err.field(), "value");
        let err =
            whitelist_entry(&json!({"type": "ip", "value": "1.2.3.4", "color": 1})).unwrap_err();
        assert_eq!(err.field(), "color");
        assert!(whitelist_entry(&json!({"type": "ip"}))
            .unwrap_err()
            .to_string()
            .contains("value: is required"));
        assert!(whitelist_entry(&json!("x")).is_err());
    }

    #[test]
    fn sites_and_routes() {
        let p = compile(
            json!({"protected_routes": [{"path": "/admin", "auth_type": "basic", "credentials": "admin:secret"}]}),
            json!({
                "whitelist": [{"type": "path", "value": "/health"}, {"type": "ip", "value": "192.0.2.0/24"}],
                "routes": [{"id": 3, "path": "/api/**", "method": "POST", "auth_type": "bearer",
                            "credentials": ["tok-1"], "deployment": "shop"}],
                "sites": {"shop": {"rate_limit": "600r/m", "allowed_ips": ["10.0.0.0/8"],
                                    "blocked_paths": ["/wp-admin"]},
                          "off": {"enabled": false}},
            }),
        );
        let a = |s: &str| Addr::parse(s).unwrap();
        assert!(p.whitelisted(a("192.0.2.9")) && !p.whitelisted(a("192.0.3.9")));
        assert!(p.skips(b"/health", b"") && p.skips(b"/x", b"off") && !p.skips(b"/x", b"shop"));
        let r = p.require(a("203.0.113.1"), false, b"/wp-admin/x", b"GET", b"shop");
        assert!(r.forbidden_ip && r.blocked_path);
        assert_eq!(r.rate_limit, (600, 60));
        assert_eq!(r.route, None);
        let r = p.require(a("10.1.1.1"), false, b"/api/orders", b"POST", b"shop");
        assert!(!r.forbidden_ip && !r.blocked_path);
        assert_eq!(r.route, Some(1));
        assert_eq!(p.route(1).unwrap().id, Some(3));
        // the route is for the site "shop" and POST only
        assert_eq!(
            p.require(a("10.1.1.1"), false, b"/api/orders", b"GET", b"shop")
                .route,
            None
        );
        assert_eq!(
            p.require(a("10.1.1.1"), false, b"/api/orders", b"POST", b"")
                .route,
            None
        );
        // the options' route applies everywhere
        assert_eq!(
            p.require(a("10.1.1.1"), true, b"/admin/x", b"GET", b"")
                .route,
            Some(0)
        );
        // allowlisted clients skip the site's rules, not the routes
        let r = p.require(a("203.0.113.1"), true, b"/wp-admin", b"GET", b"shop");
        assert_eq!(r, Requirement::default());
    }

    #[test]
    fn errors_name_the_field() {
        let err = |v: Value| route_entry(&v).unwrap_err().to_string();
        assert!(
            err(json!({"path": "/a", "auth_type": "digest", "credentials": "a:b"}))
                .starts_with("auth_type:")
        );
        assert!(
            route_entry(&json!({"path": "/a", "auth_type": "basic", "credentials": "a:b"})).is_ok()
        );
        assert!(
            err(json!({"path": "a", "auth_type": "basic", "credentials": "a:b"}))
                .starts_with("path:")
        );
        assert!(
            err(json!({"path": "/a", "auth_type": "basic", "credentials": "ab"}))
                .starts_with("credentials:")
        );
        assert!(err(
            json!({"path": "/a", "method": "G3T", "auth_type": "basic", "credentials": "a:b"})
        )
        .starts_with("method:"));
        assert!(err(
            json!({"path": "/a", "auth_type": "basic", "credentials": "a:b", "deployment": "a b"})
        )
        .starts_with("deployment:"));
        let err = |v: Value| site_entry(&v).unwrap_err().to_string();
        assert!(err(json!({"challenge": "yes"})).starts_with("challenge:"));
        assert!(err(json!({"rate_limit": "fast"})).starts_with("rate_limit:"));
        assert!(err(json!({"rate_limit": -1})).starts_with("rate_limit:"));
        assert!(err(json!({"allowed_ips": ["10.0.0.0/33"]})).starts_with("allowed_ips:"));
        assert!(err(json!({"enabled": "yes"})).starts_with("enabled:"));
        let e = Policy::compile(&json!({"sites": {"a": {"rate_limit": "x"}}}), &json!({}))
            .err()
            .unwrap();
        assert_eq!(e.field(), "sites.a.rate_limit");
        let e = Policy::compile(&json!({"protected_routes": [{"path": "/a"}]}), &json!({}))
            .err()
            .unwrap();
        assert_eq!(e.field(), "protected_routes[1].auth_type");
    }

    #[test]
    fn normalize_decodes_once_like_nginx() {
        // found by fuzz/fuzz_targets/glob.rs: "%%33" decodes to "%3", which
        // a second pass would decode again; $uri is decoded once, and so
        // is X-Original-URI here
        assert_eq!(normalize_path(b"/a/%2541"), b"/a/%41".to_vec());
        assert_eq!(normalize_path(b"//ap/%%333/./"), b"/ap/%33/".to_vec());
    }

    #[test]
    fn flatrun_examples_normalize() {
        assert_eq!(
            site_entry(
                &json!({"enabled": true, "rate_limit": 50, "allowed_ips": ["10.0.0.0/8"],
                               "blocked_paths": ["/wp-admin"]})
            )
            .unwrap(),
            json!({"enabled": true, "rate_limit": 50, "allowed_ips": ["10.0.0.0/8"],
                   "blocked_paths": ["/wp-admin"]})
        );
        let r = route_entry(
            &json!({"path": "/admin", "method": "ALL", "auth_type": "basic",
                                    "credentials": "admin:secret", "deployment": "my-app"}),
        )
        .unwrap();
        assert_eq!(r["method"], "ALL");
        assert_eq!(r["deployment"], "my-app");
    }

    #[test]
    fn route_entries_keep_no_plain_secret() {
        let r = route_entry(&json!({"path": "/admin", "auth_type": "basic",
            "credentials": "# ops\nadmin:s3cret:x\nbob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="}))
        .unwrap();
        let c = r["credentials"].as_array().unwrap();
        assert_eq!(c.len(), 2);
        let admin = c[0].as_str().unwrap();
        assert!(
            admin.starts_with("admin:$2b$") && !admin.contains("s3cret"),
            "{admin}"
        );
        assert_eq!(c[1], "bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=");
        // the sealed entry is accepted again, and still checks the secret
        let route = Route::compile(&r, Some(1)).unwrap().0;
        let header = format!("Basic {}", STANDARD.encode("admin:s3cret:x"));
        assert!(matches!(
            route.verify(Some(header.as_bytes())),
            Outcome::Ok { .. }
        ));
        let header = format!("Basic {}", STANDARD.encode("admin:s3cret"));
        assert_eq!(route.verify(Some(header.as_bytes())), Outcome::Denied);
        let r = route_entry(&json!({"path": "/api", "auth_type": "bearer",
            "credentials": ["t0k-123"]}))
        .unwrap();
        let t = r["credentials"][0].as_str().unwrap();
        assert!(t.starts_with("$2b$08$") && !t.contains("t0k-123"), "{t}");
    }
}
