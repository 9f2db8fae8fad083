//! The admin API's endpoints: the one table of paths, methods and who may
//! call them.
//!
//! Endpoints are found by the end of the path, so the location's prefix is
//! free: `/api/security/stats` and `/admin/warden/security/stats` both
//! work. The first tail of the path (from a `/`) that a route matches in
//! full wins.

/// An endpoint of the admin API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `security/blocked-ips`
    BlockedIps,
    /// `security/blocked-ips/<target>` (the target may hold a `/`)
    BlockedIp,
    /// `security/whitelist`
    Whitelist,
    /// `security/whitelist/<id>`
    WhitelistEntry,
    /// `security/protected-routes`
    Routes,
    /// `security/protected-routes/<id>`
    Route,
    /// `security/events`
    Events,
    /// `security/cleanup`
    Cleanup,
    /// `security/stats`
    Stats,
    /// `security/realtime-capture`
    Capture,
    /// `security/refresh`
    Refresh,
    /// `security/check` (nginx's `auth_request`; public)
    Check,
    /// `security/analyze`
    Analyze,
    /// `deployments/<name>/security`
    Site,
    /// `metrics`
    Metrics,
    /// `health` (public)
    Health,
    /// `security/timeline`
    Timeline,
    /// `ui` (public: the dashboard's page, which holds no data)
    Ui,
    /// `security/block-ip` (FlatRun's agent: `{ip, ttl}`)
    BlockIp,
    /// `security/unblock-ip` (FlatRun's agent: `{ip}`)
    UnblockIp,
    /// `security/refresh-blocked-ips` (FlatRun's agent; its health check
    /// greps the answer for `success`)
    RefreshBlockedIps,
    /// `block` (nginx-defender: `{ip, duration, reason}`)
    Block,
    /// `blocked-ips` (nginx-defender: a JSON array of addresses)
    BlockedList,
}

/// What a captured path segment may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// Anything, `/` included.
    Rest,
    /// Anything but `/`.
    Segment,
    /// Letters, digits, `.`, `_`, `-` (a site name).
    Name,
}

impl Class {
    fn accepts(self, s: &str) -> bool {
        !s.is_empty()
            && match self {
                Class::Rest => true,
                Class::Segment => !s.contains('/'),
                Class::Name => s
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
            }
    }
}

/// A route: `prefix`, then an optional capture, then `suffix`.
struct Route {
    prefix: &'static str,
    capture: Option<Class>,
    suffix: &'static str,
    endpoint: Endpoint,
    /// The methods it answers, in name order (as `Allow` lists them).
    methods: &'static [&'static str],
    /// Callable without the admin token.
    public: bool,
}

const fn route(
    prefix: &'static str,
    capture: Option<Class>,
    suffix: &'static str,
    endpoint: Endpoint,
    methods: &'static [&'static str],
    public: bool,
) -> Route {
    Route {
        prefix,
        capture,
        suffix,
        endpoint,
        methods,
        public,
    }
}

use Class::*;
use Endpoint::*;

const GET: &[&str] = &["GET"];
const POST: &[&str] = &["POST"];
const GET_POST: &[&str] = &["GET", "POST"];
const DELETE: &[&str] = &["DELETE"];

/// Every route, in matching order.
const ROUTES: &[Route] = &[
    route(
        "security/blocked-ips",
        None,
        "",
        BlockedIps,
        GET_POST,
        false,
    ),
    route(
        "security/blocked-ips/",
        Some(Rest),
        "",
        BlockedIp,
        DELETE,
        false,
    ),
    route("security/whitelist", None, "", Whitelist, GET_POST, false),
    route(
        "security/whitelist/",
        Some(Segment),
        "",
        WhitelistEntry,
        DELETE,
        false,
    ),
    route(
        "security/protected-routes",
        None,
        "",
        Routes,
        GET_POST,
        false,
    ),
    route(
        "security/protected-routes/",
        Some(Segment),
        "",
        Route,
        DELETE,
        false,
    ),
    route("security/events", None, "", Events, GET, false),
    route("security/cleanup", None, "", Cleanup, POST, false),
    route("security/stats", None, "", Stats, GET, false),
    route(
        "security/realtime-capture",
        None,
        "",
        Capture,
        &["GET", "PUT"],
        false,
    ),
    route("security/refresh", None, "", Refresh, POST, false),
    route("security/check", None, "", Check, GET_POST, true),
    route("security/analyze", None, "", Analyze, POST, false),
    route(
        "deployments/",
        Some(Name),
        "/security",
        Site,
        &["DELETE", "GET", "PUT"],
        false,
    ),
    route("metrics", None, "", Metrics, GET, false),
    route("health", None, "", Health, GET, true),
    route("security/timeline", None, "", Timeline, GET, false),
    route("ui", None, "", Ui, GET, true),
    // FlatRun's agent (its internal API, `/_internal/security/...`)
    route("security/block-ip", None, "", BlockIp, POST, false),
    route("security/unblock-ip", None, "", UnblockIp, POST, false),
    route(
        "security/refresh-blocked-ips",
        None,
        "",
        RefreshBlockedIps,
        POST,
        false,
    ),
    // nginx-defender's paths (`/api/check`, ...), found after FlatRun's
    // longer ones
    route("check", None, "", Check, GET_POST, true),
    route("analyze", None, "", Analyze, POST, false),
    route("block", None, "", Block, POST, false),
    route("blocked-ips", None, "", BlockedList, GET, false),
];

/// A path matched to an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found<'a> {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// The captured segment (a target, an id, a site name).
    pub capture: Option<&'a str>,
    /// Callable without the admin token.
    pub public: bool,
    methods: &'static [&'static str],
}

impl Found<'_> {
    /// The method that serves `method` here: itself, or GET for HEAD.
    pub fn method(&self, method: &str) -> Option<&'static str> {
        let has = |m: &str| self.methods.iter().copied().find(|x| *x == m);
        has(method).or_else(|| if method == "HEAD" { has("GET") } else { None })
    }

    /// The methods allowed, as `Allow` lists them (`GET, POST`).
    pub fn allowed(&self) -> String {
        self.methods.join(", ")
    }
}

fn matches<'a>(r: &Route, tail: &'a str) -> Option<Option<&'a str>> {
    match r.capture {
        None => (tail == r.prefix).then_some(None),
        Some(c) => {
            let inner = tail.strip_prefix(r.prefix)?.strip_suffix(r.suffix)?;
            c.accepts(inner).then_some(Some(inner))
        }
    }
}

/// The endpoint of `path` (trailing slashes ignored), if any.
///
/// ```
/// use warden_core::admin::route::{find, Endpoint};
/// let f = find("/api/security/blocked-ips/192.0.2.0/24").unwrap();
/// assert_eq!((f.endpoint, f.capture), (Endpoint::BlockedIp, Some("192.0.2.0/24")));
/// assert_eq!(find("/admin/warden/security/stats/").unwrap().endpoint, Endpoint::Stats);
/// assert!(find("/api/nothing").is_none());
/// ```
pub fn find(path: &str) -> Option<Found<'_>> {
    let path = path.trim_end_matches('/');
    let mut from = 0;
    while let Some(i) = path[from..].find('/') {
        let tail = &path[from + i + 1..];
        for r in ROUTES {
            if let Some(capture) = matches(r, tail) {
                return Some(Found {
                    endpoint: r.endpoint,
                    capture,
                    public: r.public,
                    methods: r.methods,
                });
            }
        }
        from += i + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_under_any_prefix() {
        let cases: &[(&str, Endpoint, Option<&str>)] = &[
            ("security/blocked-ips", BlockedIps, None),
            (
                "security/blocked-ips/2001:db8::/32",
                BlockedIp,
                Some("2001:db8::/32"),
            ),
            ("security/whitelist", Whitelist, None),
            ("security/whitelist/3", WhitelistEntry, Some("3")),
            ("security/protected-routes", Routes, None),
            ("security/protected-routes/x", Route, Some("x")),
            ("security/events", Events, None),
            ("security/cleanup", Cleanup, None),
            ("security/stats", Stats, None),
            ("security/realtime-capture", Capture, None),
            ("security/refresh", Refresh, None),
            ("security/check", Check, None),
            ("security/analyze", Analyze, None),
            (
                "deployments/my-app.v2_x/security",
                Site,
                Some("my-app.v2_x"),
            ),
            ("metrics", Metrics, None),
            ("health", Health, None),
            ("security/timeline", Timeline, None),
            ("ui", Ui, None),
            ("security/block-ip", BlockIp, None),
            ("security/unblock-ip", UnblockIp, None),
            ("security/refresh-blocked-ips", RefreshBlockedIps, None),
            ("check", Check, None),
            ("analyze", Analyze, None),
            ("block", Block, None),
            ("blocked-ips", BlockedList, None),
        ];
        for prefix in ["/", "/api/", "/admin/warden/", "//api//", "/_internal/"] {
            for (tail, endpoint, capture) in cases {
                let path = format!("{prefix}{tail}");
                let f = find(&path).unwrap_or_else(|| panic!("{path}"));
                assert_eq!((f.endpoint, f.capture), (*endpoint, *capture), "{path}");
                let slash = format!("{path}//");
                assert_eq!(find(&slash).unwrap().endpoint, *endpoint, "{slash}");
            }
        }
    }

    #[test]
    fn no_endpoint() {
        for path in [
            "",
            "/",
            "/api",
            "/api/security",
            "/api/security/nothing",
            "/api/nothing/at/all",
            "/api/security/blocked-ips-x",
            "/api/security/whitelist/1/2",
            "/api/deployments/sh op/security",
            "/api/deployments//security",
            "/api/security/stats/x",
            "/api/xmetrics",
            "/api/blocks",
            "/api/security/block-ips",
            "/_internal/security/blockip",
        ] {
            assert_eq!(find(path), None, "{path}");
        }
        // a tail that matches nothing falls back to a shorter one
        assert_eq!(
            find("/api/security/whitelist/1/metrics").unwrap().endpoint,
            Metrics
        );
    }

    #[test]
    fn methods_and_allow() {
        let f = find("/api/security/blocked-ips").unwrap();
        assert_eq!(f.method("GET"), Some("GET"));
        assert_eq!(f.method("HEAD"), Some("GET"));
        assert_eq!(f.method("PATCH"), None);
        assert_eq!(f.allowed(), "GET, POST");
        let f = find("/api/deployments/a/security").unwrap();
        assert_eq!(f.allowed(), "DELETE, GET, PUT");
        let f = find("/api/security/blocked-ips/1.2.3.4").unwrap();
        assert_eq!((f.method("HEAD"), f.allowed().as_str()), (None, "DELETE"));
        assert!(find("/health").unwrap().public);
        assert!(find("/security/check").unwrap().public);
        assert!(!find("/metrics").unwrap().public);
        assert!(find("/api/ui/").unwrap().public);
        assert!(!find("/api/security/timeline").unwrap().public);
        assert!(find("/api/check").unwrap().public);
        // FlatRun's longer paths win over nginx-defender's short ones
        assert_eq!(
            find("/api/security/blocked-ips").unwrap().endpoint,
            BlockedIps
        );
        assert_eq!(find("/api/blocked-ips").unwrap().endpoint, BlockedList);
        assert_eq!(
            find("/_internal/security/block-ip").unwrap().endpoint,
            BlockIp
        );
        // the table lists methods in name order, as Allow shows them
        for r in ROUTES {
            assert!(
                r.methods.windows(2).all(|w| w[0] < w[1]),
                "{:?}",
                r.endpoint
            );
        }
    }
}
