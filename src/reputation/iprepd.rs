//! iprepd-nginx's client (`require("resty.iprepd")` 0.1.14), its protocol
//! and its decisions: the lookup request, how iprepd's answers are read,
//! which statsd metrics each outcome records, the log lines (texts as
//! iprepd-nginx writes them) and the verdict on a reputation. The Lua side
//! (`lua/resty/warden/iprepd.lua`) keeps what only nginx can do: the
//! cosocket, the request headers, `ngx.exit(429)` and `ngx.log` of the
//! lines made here.
//!
//! A check is one FFI call when the reputation is cached
//! ([`Client::check`]: the allowlist, the cache, the verdict and the
//! metrics); a lookup ([`Client::answer`]) and every log line go through
//! mlua, on paths that wait for the network or write a log anyway.
//!
//! iprepd's answers, as iprepd-nginx reads them: 200 with a JSON
//! `reputation` (cached for `cache_ttl` when within 0-100, used uncached
//! when outside), 404 is 100 (unknown addresses are fine), any other
//! status is an error (cached as 100 for `cache_errors_ttl` with
//! `cache_errors`), and a failed request fails open. Where the original
//! raised a Lua error (a body that is not JSON, a fractional reputation:
//! the request got a 500) the answer fails open with its "Unable to parse"
//! line instead.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::Error;
use crate::metrics::statsd::Buffer;
use crate::net::addr::Addr;
use crate::net::http::request_head;
use crate::net::lists::NetSet;

use super::options::Options;
use super::{Cache, Lookup};

/// What [`Client::check`] and [`Client::verdict`] return (as C ints).
pub mod code {
    /// The reputation is above the threshold, or unknown (fail open).
    pub const ACCEPT: i32 = 0;
    /// At or below the threshold, `blocking_mode = 0`: let through.
    pub const BELOW: i32 = 1;
    /// At or below the threshold, `blocking_mode = 1`: answer 429.
    pub const REJECT: i32 = 2;
    /// A cached reputation (no verdict asked).
    pub const HIT: i32 = 3;
    /// In the allowlist: no lookup, no headers beyond the defaults.
    pub const ALLOWLISTED: i32 = 4;
    /// Not cached: the caller asks iprepd, then calls [`super::Client::answer`].
    pub const FETCH: i32 = -1;
    /// Another request is asking iprepd: poll, then give up.
    pub const WAIT: i32 = -2;
    /// Not an IP address.
    pub const BAD_ADDRESS: i32 = -3;
    /// A NULL client or a caught panic.
    pub const INTERNAL: i32 = -4;

    /// Every code with its name (as Lua sees them).
    pub const ALL: [(&str, i32); 9] = [
        ("ACCEPT", ACCEPT),
        ("BELOW", BELOW),
        ("REJECT", REJECT),
        ("HIT", HIT),
        ("ALLOWLISTED", ALLOWLISTED),
        ("FETCH", FETCH),
        ("WAIT", WAIT),
        ("BAD_ADDRESS", BAD_ADDRESS),
        ("INTERNAL", INTERNAL),
    ];
}

/// [`Client::check`] flag: consult the allowlist first.
pub const ALLOWLIST: u32 = 1;
/// [`Client::check`] flag: decide on a cached reputation (and record the
/// `iprepd.status.*` metrics).
pub const VERDICT: u32 = 2;

/// The statsd metrics iprepd-nginx records, by outcome.
pub mod metric {
    /// A request to iprepd was made (whatever its outcome).
    pub const GET_REPUTATION: &str = "iprepd.get_reputation";
    /// A reputation came from the cache.
    pub const CACHE_HIT: &str = "iprepd.cache_hit";
    /// At or below the threshold.
    pub const BELOW_THRESHOLD: &str = "iprepd.status.below_threshold";
    /// Refused with 429.
    pub const REJECTED: &str = "iprepd.status.rejected";
    /// Let through (below the threshold too, in monitor mode).
    pub const ACCEPTED: &str = "iprepd.status.accepted";
    /// The name of iprepd's host did not resolve in time.
    pub const DNS_TIMEOUT: &str = "iprepd.err.dns_timeout";
    /// Waiting for another request's lookup took the whole timeout.
    pub const TIMEOUT: &str = "iprepd.err.timeout";
    /// Before a one-word error (`timeout`) or a status (`500`).
    pub const ERR: &str = "iprepd.err.";
    /// A violation was reported (warden).
    pub const VIOLATION_SENT: &str = "iprepd.violation.sent";
    /// A violation could not be reported (warden).
    pub const VIOLATION_ERR: &str = "iprepd.violation.err";
}

/// The request headers `check()` sets for the upstream: the reputation,
/// whether it is at or below the threshold, whether to block.
pub const HEADERS: [(&str, &str); 3] = [
    ("reputation", "X-Foxsec-IP-Reputation"),
    ("below", "X-Foxsec-IP-Reputation-Below-Threshold"),
    ("block", "X-Foxsec-Block"),
];

/// What `debug_log()` puts before a message.
pub const VERBOSE_PREFIX: &str = "[verbose] ";

/// The User-Agent of iprepd-nginx's requests (lua-resty-http 0.12's),
/// completed with nginx's `ngx.config.ngx_lua_version`.
pub const USER_AGENT: &str = "lua-resty-http/0.12 (Lua) ngx_lua/";

/// Seconds between two lines of one kind of failure, inside warden.
pub const QUIET_EVERY_MS: u64 = 10_000;

/// A response from iprepd, or why there is none.
#[derive(Clone, Copy, Debug)]
pub enum Response<'a> {
    /// A status and a body.
    Status(u16, &'a [u8]),
    /// The request failed: the cosocket's error (`timeout`, `connection
    /// refused`, `iprepd could not be resolved (110: Operation timed
    /// out)`, `handshake failed`, ...).
    Failed(&'a str),
}

/// What a lookup came to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Answer {
    /// The reputation, `None` to fail open.
    pub reputation: Option<i64>,
    /// The lookup failed (iprepd-nginx's errors; warden counts them).
    pub failed: bool,
    /// Lines to log at `error` level, in order.
    pub errors: Vec<String>,
    /// `[verbose]` messages to log after them (with `verbose`).
    pub verbose: Vec<String>,
}

/// One reputation client: the options, the shared cache, the allowlist,
/// this worker's statsd buffer.
pub struct Client {
    opts: Options,
    cache: Cache,
    allowlist: NetSet,
    statsd: Option<Arc<Buffer>>,
    /// Inside warden: when each kind of failure was last logged, and how
    /// many were not logged since.
    quiet: Option<Mutex<HashMap<String, (u64, u64)>>>,
    user_agent: String,
    authorization: String,
}

/// The reputation in an iprepd body: `{"reputation": <integer>}`.
fn parse_reputation(body: &[u8]) -> Option<i64> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let r = v.get("reputation")?;
    let n = r.as_i64().or_else(|| {
        let f = r.as_f64()?;
        (f.fract() == 0.0).then_some(f as i64)
    })?;
    (i64::from(i32::MIN)..=i64::from(i32::MAX))
        .contains(&n)
        .then_some(n)
}

/// The metrics of a verdict (after `iprepd.cache_hit` for a cached
/// reputation), in iprepd-nginx's order; no allocation.
fn names(rc: i32, hit: bool) -> ([&'static str; 3], usize) {
    let status: &[&'static str] = match rc {
        code::REJECT => &[metric::BELOW_THRESHOLD, metric::REJECTED],
        code::BELOW => &[metric::BELOW_THRESHOLD, metric::ACCEPTED],
        _ => &[metric::ACCEPTED],
    };
    let mut out = [metric::CACHE_HIT; 3];
    let start = usize::from(hit);
    out[start..start + status.len()].copy_from_slice(status);
    (out, start + status.len())
}

fn ms(seconds: f64) -> u64 {
    (seconds * 1000.0).round().max(0.0) as u64
}

impl Client {
    /// A client for `opts`. `ngx_lua_version` completes the User-Agent;
    /// `quiet` (inside warden) logs each kind of failure once every
    /// [`QUIET_EVERY_MS`] with a count, instead of once per request.
    pub fn new(opts: Options, ngx_lua_version: &str, quiet: bool) -> Result<Client, Error> {
        let cache = Cache::new(
            &format!("iprepd:{}", opts.url),
            opts.cache_buffer_count,
            2 * opts.timeout_ms as u64 + 10,
        )
        .map_err(|e| Error::new(crate::error::Kind::Full, "cache_buffer_count", e))?;
        Ok(Client {
            allowlist: NetSet::new(&opts.allowlist),
            statsd: opts
                .statsd
                .as_ref()
                .map(|s| Arc::new(Buffer::new(s.max_buffer_count))),
            quiet: quiet.then(|| Mutex::new(HashMap::new())),
            user_agent: format!("{USER_AGENT}{ngx_lua_version}"),
            authorization: format!("APIKey {}", opts.api_key),
            cache,
            opts,
        })
    }

    /// The options.
    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// This worker's statsd buffer (with `statsd_host`).
    pub fn statsd(&self) -> Option<&Arc<Buffer>> {
        self.statsd.as_ref()
    }

    /// Records `names` in order; true when the buffer is now full.
    fn record(&self, names: &[&'static str]) -> bool {
        match &self.statsd {
            None => false,
            Some(b) => {
                let mut m = b.lock();
                for n in names {
                    m.count(*n, 1.0);
                }
                m.len() >= b.max()
            }
        }
    }

    fn record_owned(&self, name: String) -> bool {
        match &self.statsd {
            None => false,
            Some(b) => {
                let mut m = b.lock();
                m.count(name, 1.0);
                m.len() >= b.max()
            }
        }
    }

    /// The per-request step, without allocation: `ip` against the
    /// allowlist (with [`ALLOWLIST`]) and the cache. A cached reputation
    /// records `iprepd.cache_hit`, and with [`VERDICT`] is decided on
    /// ([`Client::verdict`]); otherwise [`code::HIT`]. Returns the code,
    /// the reputation (when there is one) and whether the statsd buffer
    /// is full.
    pub fn check(&self, ip: &[u8], flags: u32, now_ms: u64) -> (i32, i64, bool) {
        let Ok(a) = Addr::parse_bytes(ip) else {
            return (code::BAD_ADDRESS, 0, false);
        };
        if flags & ALLOWLIST != 0 && self.allowlist.contains(a) {
            return (code::ALLOWLISTED, 0, false);
        }
        match self.cache.get(a, now_ms) {
            Lookup::Fetch => (code::FETCH, 0, false),
            Lookup::Wait => (code::WAIT, 0, false),
            Lookup::Hit(r) => {
                let r = i64::from(r);
                if flags & VERDICT == 0 {
                    return (code::HIT, r, self.record(&[metric::CACHE_HIT]));
                }
                let rc = self.decide(Some(r));
                let (names, n) = names(rc, true);
                (rc, r, self.record(&names[..n]))
            }
        }
    }

    fn decide(&self, reputation: Option<i64>) -> i32 {
        match reputation {
            Some(r) if r as f64 <= self.opts.threshold => {
                if self.opts.blocking_mode {
                    code::REJECT
                } else {
                    code::BELOW
                }
            }
            _ => code::ACCEPT,
        }
    }

    /// The verdict on a reputation (`None`: unknown, fail open):
    /// [`code::ACCEPT`], [`code::BELOW`] or [`code::REJECT`]; with
    /// `record`, the `iprepd.status.*` metrics. Also returns whether the
    /// statsd buffer is full.
    pub fn verdict(&self, reputation: Option<i64>, record: bool) -> (i32, bool) {
        let rc = self.decide(reputation);
        let (names, n) = names(rc, false);
        let full = record && self.record(&names[..n]);
        (rc, full)
    }

    /// Waiting for another request's lookup took the whole timeout:
    /// records `iprepd.err.timeout`; true when the buffer is full.
    pub fn gave_up(&self) -> bool {
        self.record(&[metric::TIMEOUT])
    }

    /// The head of the lookup of `ip`: `GET <url>/type/ip/<ip>` with
    /// iprepd-nginx's headers.
    pub fn lookup_head(&self, ip: &str) -> String {
        let target = format!("{}/type/ip/{ip}", self.opts.url.prefix);
        request_head(
            "GET",
            &target,
            &self.opts.url.host_header(),
            &[
                ("User-Agent", &self.user_agent),
                ("Authorization", &self.authorization),
            ],
            None,
        )
    }

    /// Reads iprepd's response to the lookup of `ip`: stores what is to
    /// be cached (or clears the in-flight mark), records the metrics and
    /// returns the reputation with the lines to log.
    pub fn answer(&self, ip: &str, response: Response<'_>, now_ms: u64) -> (Answer, bool) {
        let addr = Addr::parse(ip).ok();
        let store = |r: Option<(u8, f64)>| {
            if let Some(a) = addr {
                match r {
                    Some((rep, ttl)) => self.cache.put(a, rep, ms(ttl), now_ms),
                    None => self.cache.abandon(a, now_ms),
                }
            }
        };
        let mut out = Answer::default();
        let mut full = self.record(&[metric::GET_REPUTATION]);
        let kind;
        match response {
            Response::Failed(err) => {
                if self.statsd.is_some() {
                    if !err.contains(' ') {
                        full = self.record_owned(format!("{}{err}", metric::ERR));
                    } else if err.contains("could not be resolved")
                        && err.contains("Operation timed out")
                    {
                        full = self.record(&[metric::DNS_TIMEOUT]);
                    } else {
                        out.errors
                            .push(format!("Could not send metric with error: {err}"));
                    }
                }
                out.errors
                    .push(format!("Error with request to iprepd: {err}"));
                out.failed = true;
                store(None);
                kind = err.to_string();
            }
            Response::Status(200, body) => match parse_reputation(body) {
                Some(r) => {
                    out.reputation = Some(r);
                    // iprepd-nginx caches only reputations within 0-100
                    store(
                        u8::try_from(r)
                            .ok()
                            .filter(|r| *r <= 100)
                            .map(|r| (r, self.opts.cache_ttl)),
                    );
                    return (out, full);
                }
                None => {
                    out.errors
                        .push("Unable to parse `reputation` value from response body".into());
                    out.failed = true;
                    store(None);
                    kind = "parse".into();
                }
            },
            Response::Status(404, _) => {
                if self.opts.verbose {
                    out.verbose.push(format!("no reputation for {ip}"));
                }
                out.reputation = Some(100);
                store(Some((100, self.opts.cache_ttl)));
                return (out, full);
            }
            Response::Status(status, _) => {
                out.errors
                    .push(format!("iprepd responded with a {status} http status code"));
                full = self.record_owned(format!("{}{status}", metric::ERR));
                out.failed = true;
                if self.opts.cache_errors {
                    if self.opts.verbose {
                        out.verbose.push(format!(
                            "cache_errors is enabled, setting reputation of {ip} to 100 \
                             within the cache"
                        ));
                    }
                    out.reputation = Some(100);
                    store(Some((100, self.opts.cache_errors_ttl)));
                } else {
                    store(None);
                }
                kind = status.to_string();
            }
        }
        self.throttle(&kind, &mut out.errors, now_ms);
        (out, full)
    }

    /// Inside warden, the lines of a failure of `kind` are logged the
    /// first time, then at most once every [`QUIET_EVERY_MS`] with how
    /// many were not.
    fn throttle(&self, kind: &str, lines: &mut Vec<String>, now_ms: u64) {
        let Some(q) = &self.quiet else {
            return;
        };
        let mut q = q.lock().unwrap_or_else(|e| e.into_inner());
        let (logged, more) = q.entry(kind.to_string()).or_insert((0, 0));
        if *logged != 0 && now_ms.saturating_sub(*logged) < QUIET_EVERY_MS {
            *more += 1;
            lines.clear();
            return;
        }
        if *more > 0 {
            if let Some(last) = lines.last_mut() {
                let secs = (now_ms.saturating_sub(*logged) + 500) / 1000;
                last.push_str(&format!(" (and {more} more in the last {secs}s)"));
            }
        }
        *logged = now_ms.max(1);
        *more = 0;
    }

    /// The line of a verdict: `<ip> is below threshold with a reputation
    /// of <n>`, or `<ip> rejected with a reputation of <n>`.
    pub fn verdict_line(&self, rc: i32, ip: &str, reputation: i64) -> Option<String> {
        match rc {
            code::BELOW => Some(format!(
                "{ip} is below threshold with a reputation of {reputation}"
            )),
            code::REJECT => Some(format!("{ip} rejected with a reputation of {reputation}")),
            _ => None,
        }
    }

    /// A `[verbose]` message (without its prefix) of `check()`: `checking`,
    /// `allowlisted`, `got` (a reputation), `accepted`.
    pub fn verbose_line(kind: &str, ip: &str, reputation: i64) -> Option<String> {
        Some(match kind {
            "checking" => format!("Checking {ip}"),
            "allowlisted" => format!("{ip} in allowlist"),
            "got" => format!("Got reputation of {reputation} for {ip}"),
            "accepted" => format!("{ip} accepted"),
            _ => return None,
        })
    }

    /// The other lines: `bad_address` (`ip` is not one), `not_string`
    /// (`what` is the type given), `internal` (`what` is the code),
    /// `schedule` (a violation report could not be scheduled: `what` is
    /// why).
    pub fn line(kind: &str, what: &str) -> Option<String> {
        Some(match kind {
            "bad_address" => format!("invalid IP address '{what}'"),
            "not_string" => format!("ip must be a string, got {what}"),
            "internal" => format!("reputation cache failed with code {what}"),
            "schedule" => format!("cannot schedule a violation report: {what}"),
            _ => return None,
        })
    }

    /// Whether a refused request to `uri` is audited: auditing is on and
    /// one of the patterns matches (`matches` is Lua's `string.find`,
    /// which only the caller has).
    pub fn audited(&self, uri: &str, matches: impl Fn(&str, &str) -> bool) -> bool {
        self.opts.audit_blocked_requests && self.opts.audit_uri_list.iter().any(|p| matches(uri, p))
    }

    /// Whether the audit line includes the request headers.
    pub fn audit_headers(&self) -> bool {
        self.opts.audit_include_headers
    }

    /// The report of `ip` tripping detector rule `rule`: the name of the
    /// violation, the request's head and body (`PUT
    /// <url>/violations/type/ip/<ip>`); `None` for a rule mapped to
    /// `false`.
    pub fn violation(&self, ip: &str, rule: &str) -> Option<(String, String, String)> {
        let name = match self.opts.violations.get(rule) {
            Some(None) => return None,
            Some(Some(n)) => n.clone(),
            None => format!("warden:{rule}"),
        };
        let body = serde_json::json!({ "object": ip, "type": "ip", "violation": name }).to_string();
        let head = request_head(
            "PUT",
            &format!("{}/violations/type/ip/{ip}", self.opts.url.prefix),
            &self.opts.url.host_header(),
            &[
                ("User-Agent", &self.user_agent),
                ("Authorization", &self.authorization),
                ("Content-Type", "application/json"),
            ],
            Some(body.len()),
        );
        Some((name, head, body))
    }

    /// The outcome of a violation report: records
    /// `iprepd.violation.sent` or `.err`; returns the line to log on
    /// failure, and whether the statsd buffer is full.
    pub fn reported(&self, ip: &str, name: &str, response: Response<'_>) -> (Option<String>, bool) {
        let line = match response {
            Response::Failed(err) => Some(format!(
                "cannot report violation {name} of {ip} to iprepd: {err}"
            )),
            Response::Status(s, _) if s >= 300 => {
                Some(format!("iprepd answered {s} to violation {name} of {ip}"))
            }
            Response::Status(..) => None,
        };
        let full = self.record(&[if line.is_some() {
            metric::VIOLATION_ERR
        } else {
            metric::VIOLATION_SENT
        }]);
        (line, full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn client(extra: serde_json::Value, quiet: bool) -> Client {
        let mut o = json!({"api_key": "k", "threshold": 50, "statsd_host": "127.0.0.1",
                           "url": "http://127.0.0.1:1/p/"});
        for (k, v) in extra.as_object().unwrap() {
            o[k] = v.clone();
        }
        let (opts, _) = Options::from_value(&o).unwrap();
        Client::new(opts, "10023", quiet).unwrap()
    }

    fn drained(c: &Client) -> String {
        c.statsd().unwrap().lock().drain().concat()
    }

    #[test]
    fn hits_decide_and_count_like_iprepd_nginx() {
        let c = client(json!({"allowlist": "10.0.0.0/8"}), false);
        let ip = b"192.0.2.1";
        assert_eq!(
            c.check(b"10.1.2.3", ALLOWLIST | VERDICT, 0).0,
            code::ALLOWLISTED
        );
        assert_eq!(
            c.check(b"nope", ALLOWLIST | VERDICT, 0).0,
            code::BAD_ADDRESS
        );
        assert_eq!(c.check(ip, ALLOWLIST | VERDICT, 0).0, code::FETCH);
        assert_eq!(c.check(ip, ALLOWLIST | VERDICT, 1).0, code::WAIT);
        let (a, _) = c.answer(
            "192.0.2.1",
            Response::Status(200, br#"{"reputation": 20}"#),
            2,
        );
        assert_eq!(a.reputation, Some(20));
        assert_eq!(
            c.check(ip, ALLOWLIST | VERDICT, 3),
            (code::BELOW, 20, false)
        );
        assert_eq!(c.check(ip, 0, 3), (code::HIT, 20, false));
        assert_eq!(
            drained(&c),
            "iprepd.get_reputation:1|c\niprepd.cache_hit:1|c\niprepd.status.below_threshold:1|c\n\
             iprepd.status.accepted:1|c\niprepd.cache_hit:1|c\n"
        );
        let b = client(json!({"blocking_mode": 1}), false);
        assert_eq!(b.verdict(Some(50), true), (code::REJECT, false));
        assert_eq!(b.verdict(Some(51), true), (code::ACCEPT, false));
        assert_eq!(b.verdict(None, true), (code::ACCEPT, false));
        assert_eq!(b.verdict(Some(-5), false), (code::REJECT, false));
        assert_eq!(
            drained(&b),
            "iprepd.status.below_threshold:1|c\niprepd.status.rejected:1|c\n\
             iprepd.status.accepted:1|c\niprepd.status.accepted:1|c\n"
        );
        assert_eq!(
            b.verdict_line(code::REJECT, "192.0.2.1", 20).unwrap(),
            "192.0.2.1 rejected with a reputation of 20"
        );
    }

    #[test]
    fn answers_as_iprepd_nginx_reads_them() {
        let c = client(json!({"verbose": 1}), false);
        let ans = |ip: &str, r| c.answer(ip, r, 10).0;
        let a = ans("192.0.2.2", Response::Status(404, b""));
        assert_eq!((a.reputation, a.failed), (Some(100), false));
        assert_eq!(a.verbose, ["no reputation for 192.0.2.2"]);
        let a = ans("192.0.2.3", Response::Status(500, b""));
        assert_eq!((a.reputation, a.failed), (None, true));
        assert_eq!(a.errors, ["iprepd responded with a 500 http status code"]);
        for body in [
            &b"garbage"[..],
            br#"{"reputation": null}"#,
            br#"{"reputation": 20.5}"#,
            b"[]",
            b"5",
        ] {
            let a = ans("192.0.2.4", Response::Status(200, body));
            assert_eq!(
                a.errors,
                ["Unable to parse `reputation` value from response body"]
            );
            assert_eq!(a.reputation, None);
        }
        // outside 0-100: used, not cached (as iprepd-nginx does)
        assert_eq!(
            ans(
                "192.0.2.5",
                Response::Status(200, br#"{"reputation": 150}"#)
            )
            .reputation,
            Some(150)
        );
        assert_eq!(c.check(b"192.0.2.5", 0, 11).0, code::FETCH);
        assert_eq!(
            ans(
                "192.0.2.6",
                Response::Status(200, br#"{"reputation": 20.0}"#)
            )
            .reputation,
            Some(20)
        );
        let a = ans("192.0.2.7", Response::Failed("timeout"));
        assert_eq!(a.errors, ["Error with request to iprepd: timeout"]);
        let a = ans("192.0.2.7", Response::Failed("connection refused"));
        assert_eq!(
            a.errors,
            [
                "Could not send metric with error: connection refused",
                "Error with request to iprepd: connection refused"
            ]
        );
        let a = ans(
            "192.0.2.7",
            Response::Failed("iprepd could not be resolved (110: Operation timed out)"),
        );
        assert_eq!(a.errors.len(), 1);
        let sent = drained(&c);
        assert!(sent.contains("iprepd.err.500:1|c\n"));
        assert!(sent.contains("iprepd.get_reputation:1|c\niprepd.err.timeout:1|c\n"));
        assert!(
            sent.ends_with("iprepd.get_reputation:1|c\niprepd.err.dns_timeout:1|c\n"),
            "{sent}"
        );
        assert!(!sent.contains("connection"));

        let e = client(json!({"cache_errors": 1, "verbose": 1}), false);
        let (a, _) = e.answer("192.0.2.8", Response::Status(502, b""), 10);
        assert_eq!(a.reputation, Some(100));
        assert_eq!(
            a.verbose,
            ["cache_errors is enabled, setting reputation of 192.0.2.8 to 100 within the cache"]
        );
        assert_eq!(e.check(b"192.0.2.8", 0, 20), (code::HIT, 100, false));
        assert_eq!(e.check(b"192.0.2.8", 0, 10_011).0, code::FETCH);
    }

    #[test]
    fn without_statsd_nothing_is_counted_nor_said_about_metrics() {
        let (opts, _) = Options::from_value(&json!({"api_key": "k", "threshold": 50})).unwrap();
        let c = Client::new(opts, "1", false).unwrap();
        let (a, full) = c.answer("192.0.2.9", Response::Failed("connection refused"), 0);
        assert_eq!(
            a.errors,
            ["Error with request to iprepd: connection refused"]
        );
        assert!(!full && c.statsd().is_none());
    }

    #[test]
    fn inside_warden_failures_are_throttled() {
        let c = client(json!({}), true);
        let errs = |t| {
            c.answer("192.0.2.10", Response::Failed("timeout"), t)
                .0
                .errors
        };
        assert_eq!(errs(1_000), ["Error with request to iprepd: timeout"]);
        assert!(errs(2_000).is_empty());
        assert!(errs(3_000).is_empty());
        assert_eq!(
            errs(11_000),
            ["Error with request to iprepd: timeout (and 2 more in the last 10s)"]
        );
    }

    #[test]
    fn requests_carry_iprepd_nginx_headers() {
        let c = client(
            json!({"violations": {"not_found": "fxa:x", "scanner": false}}),
            false,
        );
        assert_eq!(
            c.lookup_head("192.0.2.1"),
            "GET /p/type/ip/192.0.2.1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\nConnection: keep-alive\r\n\
             User-Agent: lua-resty-http/0.12 (Lua) ngx_lua/10023\r\nAuthorization: APIKey k\r\n\r\n"
        );
        let (name, head, body) = c.violation("192.0.2.1", "not_found").unwrap();
        assert_eq!(name, "fxa:x");
        assert!(head.starts_with("PUT /p/violations/type/ip/192.0.2.1 HTTP/1.1\r\n"));
        assert_eq!(
            body,
            r#"{"object":"192.0.2.1","type":"ip","violation":"fxa:x"}"#
        );
        assert!(c.violation("192.0.2.1", "scanner").is_none());
        assert_eq!(c.violation("192.0.2.1", "rate").unwrap().0, "warden:rate");
        assert_eq!(
            c.reported("192.0.2.1", "fxa:x", Response::Status(403, b""))
                .0
                .unwrap(),
            "iprepd answered 403 to violation fxa:x of 192.0.2.1"
        );
        assert_eq!(
            c.reported("192.0.2.1", "fxa:x", Response::Status(204, b""))
                .0,
            None
        );
    }
}
