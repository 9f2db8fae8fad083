//! Verified crawlers: search and social crawlers are never challenged
//! when they are who their user agent says (issue 19). A crawler cannot
//! run the challenge's JavaScript: a challenged Googlebot would drop the
//! site from search, a challenged previewer would break link previews.
//!
//! A client is a verified crawler when
//! - its address is in the operator's list (`crawlers.allow`), whatever
//!   its user agent, or
//! - its user agent claims a crawler ([`BUILT_IN`], `crawlers.extra`) and
//!   forward-confirmed reverse DNS agrees: a `PTR` name of the address
//!   ends, at a label boundary, in one of that crawler's domains, and a
//!   forward lookup (`A` or `AAAA`) of that name holds the address.
//!
//! The lookups are a state machine that does no I/O ([`Verification`]):
//! `lua/resty/warden/crawler.lua` sends the packets it writes over UDP
//! cosockets and hands back what arrives. Outcomes are cached in the
//! shared dict ([`Record`], key [`key`]): verified for the DNS TTL held
//! between [`POSITIVE_MIN_S`] and [`POSITIVE_MAX_S`], refused for
//! [`NEGATIVE_S`], a failed lookup (timeout, server failure) for
//! [`FAILED_S`]; a failure means "not verified": the request is
//! challenged, never blocked.

use std::collections::HashMap;
use std::sync::Mutex;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use serde_json::Value;

use crate::net::addr::{Addr, Net};
use crate::net::dns::{self, QType, Server};
use crate::net::lists::NetSet;
use crate::options::{duration, flag, net_list, show, ConfigError};

/// A crawler: the user agent tokens that claim it, the domains its
/// reverse DNS names end in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Crawler {
    /// Its name (cache keys, log lines): lower case.
    pub name: String,
    /// Tokens of the user agent (matched anywhere, ignoring case).
    pub agents: Vec<String>,
    /// Domains (lower case, no final dot).
    pub domains: Vec<String>,
}

/// The crawlers verified out of the box: name, user agent tokens, domains
/// of their reverse DNS names, as each vendor publishes them.
///
/// - Google: <https://developers.google.com/search/docs/crawling-indexing/verifying-googlebot>.
///   Common crawlers (Googlebot, GoogleOther, Google-InspectionTool, ...)
///   are `crawl-*.googlebot.com` or `geo-crawl-*.geo.googlebot.com`;
///   special-case crawlers (AdsBot, Mediapartners) `rate-limited-proxy-*.google.com`;
///   user-triggered fetchers `*.gae.googleusercontent.com` or
///   `google-proxy-*.google.com`. Not all of `googleusercontent.com`:
///   Google Cloud customers' machines have names there too
///   (`*.bc.googleusercontent.com`), so accepting it would let anyone with
///   a cloud VM pass as Google. Only `gae.googleusercontent.com`, and only
///   for the user-triggered fetchers.
/// - Bing: <https://www.bing.com/webmaster/help/how-to-verify-bingbot-3905dc26>:
///   names end in `search.msn.com` (bingbot, BingPreview, msnbot, adidxbot).
/// - Apple: <https://support.apple.com/en-us/119829>: `*.applebot.apple.com`.
/// - Yandex: <https://yandex.com/support/webmaster/robot-workings/check-yandex-robots.html>:
///   "all Yandex robot names end in yandex.ru, yandex.net or yandex.com".
/// - Baidu: <https://help.baidu.com/question?prod_id=99&class=0&id=3001>:
///   `*.baidu.com` or `*.baidu.jp`.
/// - Pinterest: <https://help.pinterest.com/en/business/article/pinterest-crawler>:
///   names end in `pinterest.com`.
///
/// Not here, because their vendors publish address lists only (no
/// reverse DNS to verify): DuckDuckBot
/// (<https://duckduckgo.com/duckduckgo-help-pages/results/duckduckbot>),
/// Meta's `facebookexternalhit` (AS32934,
/// <https://developers.facebook.com/docs/sharing/webmasters/web-crawlers>),
/// and the previewers of X (Twitterbot), LinkedIn, Slack and Discord,
/// which publish neither. Put their addresses in `crawlers.allow`, or
/// add an `extra` entry when a vendor's names do forward-confirm.
pub const BUILT_IN: &[(&str, &[&str], &[&str])] = &[
    (
        "google",
        &[
            "Googlebot",
            "GoogleOther",
            "Google-InspectionTool",
            "Storebot-Google",
            "AdsBot-Google",
            "Mediapartners-Google",
            "APIs-Google",
        ],
        &["googlebot.com", "google.com"],
    ),
    (
        "google-fetcher",
        &[
            "FeedFetcher-Google",
            "Google-Read-Aloud",
            "Google-Site-Verification",
            "GoogleProducer",
        ],
        &["google.com", "gae.googleusercontent.com"],
    ),
    (
        "bing",
        &["bingbot", "BingPreview", "msnbot", "adidxbot"],
        &["search.msn.com"],
    ),
    ("apple", &["Applebot"], &["applebot.apple.com"]),
    (
        "yandex",
        &[
            "YandexBot",
            "YandexImages",
            "YandexMobileBot",
            "YandexAccessibilityBot",
        ],
        &["yandex.ru", "yandex.net", "yandex.com"],
    ),
    ("baidu", &["Baiduspider"], &["baidu.com", "baidu.jp"]),
    (
        "pinterest",
        &["Pinterestbot", "Pinterest/"],
        &["pinterest.com"],
    ),
];

/// Verified: cached at least this long (s), whatever the DNS TTL.
pub const POSITIVE_MIN_S: u32 = 3_600;
/// Verified: cached at most this long (s).
pub const POSITIVE_MAX_S: u32 = 86_400;
/// Refused (no name, a name outside the crawler's domains, a forward
/// lookup without the address): cached this long (s).
pub const NEGATIVE_S: u32 = 3_600;
/// A lookup that failed (timeout, server failure): cached this long (s),
/// so that a dead resolver costs one timeout a minute per crawler and
/// address, not one per request.
pub const FAILED_S: u32 = 60;
/// Longest crawler name (`crawlers.extra[i].name`): the names are in the
/// dict keys.
pub const MAX_NAME: usize = 48;
/// How long a worker remembers a verdict it read from the dict or made
/// (ms): a crawler's requests then skip the dict (a read costs more than
/// the rest of `verified()`), and a verdict is at most this late.
pub const MEMO_MS: u64 = 10_000;
/// Verdicts a worker remembers at most (then it forgets them all).
const MEMO_MAX: usize = 4_096;
/// Most `PTR` names forward-checked.
const MAX_NAMES: usize = 4;

/// `challenge.crawlers` and `challenge.resolver`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Verify the crawlers' claims by DNS (`crawlers.verify`).
    pub verify: bool,
    /// Addresses never challenged (`crawlers.allow`).
    pub allow: Vec<Net>,
    /// The operator's crawlers (`crawlers.extra`), after the built-in ones.
    pub extra: Vec<Crawler>,
    /// Resolvers (`challenge.resolver`); empty: `/etc/resolv.conf`'s.
    pub resolvers: Vec<Server>,
    /// The time a verification may take in all, ms (`crawlers.timeout`).
    pub timeout_ms: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            verify: true,
            allow: Vec::new(),
            extra: Vec::new(),
            resolvers: Vec::new(),
            timeout_ms: 2_000,
        }
    }
}

const FIELDS: &[&str] = &["verify", "allow", "extra", "timeout"];

impl Options {
    /// Reads the keys of `opts.challenge` that are this module's:
    /// `crawlers` (a table, or `false` for `{ verify = false }`) and
    /// `resolver`. Other keys are the challenge's own and left alone.
    ///
    /// ```
    /// use serde_json::json;
    /// use warden_core::challenge::crawlers::Options;
    /// let o = Options::from_challenge(&json!({"difficulty": 16})).unwrap();
    /// assert!(o.verify && o.allow.is_empty() && o.timeout_ms == 2000);
    /// let o = Options::from_challenge(&json!({
    ///     "crawlers": {"allow": ["40.88.21.235"], "timeout": "500ms",
    ///                  "extra": [{"agent": "Twitterbot", "domains": ["twttr.com"]}]},
    ///     "resolver": ["127.0.0.53", "[::1]:5353"]})).unwrap();
    /// assert_eq!((o.allow.len(), o.extra[0].name.as_str(), o.resolvers[1].port), (1, "twitterbot", 5353));
    /// let e = Options::from_challenge(&json!({"resolver": "dns.example"})).unwrap_err();
    /// assert!(e.to_string().starts_with("opts.challenge.resolver has 'dns.example', which is not"));
    /// ```
    pub fn from_challenge(v: &Value) -> Result<Options, ConfigError> {
        let mut o = Options::default();
        let map = match v {
            Value::Object(m) => m,
            Value::Array(a) if a.is_empty() => return Ok(o),
            other => {
                return Err(ConfigError::new(
                    "challenge",
                    format!("must be a table, got {}", show(other)),
                ))
            }
        };
        match map.get("crawlers") {
            None | Some(Value::Null) => {}
            Some(Value::Bool(false)) => o.verify = false,
            Some(Value::Object(c)) => {
                if let Some(k) = c.keys().find(|k| !FIELDS.contains(&k.as_str())) {
                    return Err(ConfigError::new(
                        &format!("challenge.crawlers.{k}"),
                        format!("is not a known option (known: {})", FIELDS.join(", ")),
                    ));
                }
                if let Some(v) = c.get("verify") {
                    o.verify = flag(v, "challenge.crawlers.verify")?;
                }
                o.allow = net_list(c.get("allow"), "challenge.crawlers.allow")?;
                if let Some(v) = c.get("extra") {
                    o.extra = extra(v)?;
                }
                if let Some(v) = c.get("timeout") {
                    o.timeout_ms = duration(v, "challenge.crawlers.timeout")?;
                    if !(10..=30_000).contains(&o.timeout_ms) {
                        return Err(ConfigError::new(
                            "challenge.crawlers.timeout",
                            format!("must be from 10ms to 30s, got {}", show(v)),
                        ));
                    }
                }
            }
            Some(Value::Array(a)) if a.is_empty() => {}
            Some(other) => {
                return Err(ConfigError::new(
                    "challenge.crawlers",
                    format!(
                        "must be a table like {{ verify = true, allow = {{ ... }}, \
                         extra = {{ ... }} }} or false, got {}",
                        show(other)
                    ),
                ))
            }
        }
        if let Some(v) = map.get("resolver") {
            let field = "challenge.resolver";
            let items: Vec<&Value> = match v {
                Value::String(_) => vec![v],
                Value::Array(a) => a.iter().collect(),
                Value::Object(m) if m.is_empty() => Vec::new(),
                other => {
                    return Err(ConfigError::new(
                        field,
                        format!(
                            "must be a list of resolver addresses like {{ \"127.0.0.53\", \
                             \"[::1]:5353\" }}, got {}",
                            show(other)
                        ),
                    ))
                }
            };
            for item in items {
                let s = item.as_str().ok_or_else(|| {
                    ConfigError::new(
                        field,
                        format!(
                            "must list resolver addresses as strings, got {}",
                            show(item)
                        ),
                    )
                })?;
                o.resolvers.push(
                    Server::parse(s).map_err(|e| ConfigError::new(field, format!("has {e}")))?,
                );
            }
        }
        Ok(o)
    }
}

/// `crawlers.extra = { { agent = "Twitterbot", domains = { "twttr.com" } } }`
/// (`agent` may be a list of tokens, `domains` one string; `name`
/// defaults to the first token).
fn extra(v: &Value) -> Result<Vec<Crawler>, ConfigError> {
    let list = match v {
        Value::Array(a) => a,
        Value::Object(m) if m.is_empty() => return Ok(Vec::new()),
        other => {
            return Err(ConfigError::new(
                "challenge.crawlers.extra",
                format!(
                    "must be a list like {{ {{ agent = \"Twitterbot\", domains = {{ \"twttr.com\" }} }} }}, got {}",
                    show(other)
                ),
            ))
        }
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let at = format!("challenge.crawlers.extra[{}]", i + 1);
        let Value::Object(m) = item else {
            return Err(ConfigError::new(
                &at,
                format!("must be a table with agent and domains, got {}", show(item)),
            ));
        };
        if let Some(k) = m
            .keys()
            .find(|k| !["agent", "domains", "name"].contains(&k.as_str()))
        {
            return Err(ConfigError::new(
                &format!("{at}.{k}"),
                "is not a known option (known: agent, domains, name)",
            ));
        }
        let strings = |key: &str, what: &str| -> Result<Vec<String>, ConfigError> {
            let field = format!("{at}.{key}");
            let bad =
                |v: &Value| ConfigError::new(&field, format!("must be {what}, got {}", show(v)));
            let v = m.get(key).unwrap_or(&Value::Null);
            let items: Vec<String> = match v {
                Value::String(s) => vec![s.trim().to_string()],
                Value::Array(a) => a
                    .iter()
                    .map(|x| {
                        x.as_str()
                            .map(|s| s.trim().to_string())
                            .ok_or_else(|| bad(x))
                    })
                    .collect::<Result<_, _>>()?,
                other => return Err(bad(other)),
            };
            if items.is_empty() || items.iter().any(String::is_empty) {
                return Err(bad(v));
            }
            Ok(items)
        };
        let agents = strings("agent", "a user agent token like 'Twitterbot' (or a list)")?;
        let mut domains = strings("domains", "the domains of the crawler's reverse DNS names")?;
        for d in &mut domains {
            let t = d.trim_end_matches('.').to_ascii_lowercase();
            if dns::query(0, &t, QType::A).is_err() || !t.contains('.') {
                return Err(ConfigError::new(
                    &format!("{at}.domains"),
                    format!("has '{d}', which is not a domain like 'twttr.com'"),
                ));
            }
            *d = t;
        }
        let name = match m.get("name") {
            None => Some(agents[0].to_ascii_lowercase()),
            Some(Value::String(s)) => Some(s.trim().to_ascii_lowercase()),
            Some(_) => None,
        }
        .filter(|n| !n.is_empty() && n.len() <= MAX_NAME && !n.contains('|'))
        .ok_or_else(|| {
            ConfigError::new(
                &format!("{at}.name"),
                format!(
                    "must be a name of 1 to {MAX_NAME} bytes without '|' (by default the \
                     first agent, lower case), got {}",
                    show(m.get("name").unwrap_or(&Value::String(agents[0].clone())))
                ),
            )
        })?;
        out.push(Crawler {
            name,
            agents,
            domains,
        });
    }
    Ok(out)
}

/// True when `host` is `domain` or ends in `.domain` (ignoring case and a
/// final dot): `crawl-1.googlebot.com` is in `googlebot.com`,
/// `evilgooglebot.com` is not.
///
/// ```
/// use warden_core::challenge::crawlers::in_domain;
/// assert!(in_domain("crawl-66-249-66-1.GoogleBot.com.", "googlebot.com"));
/// assert!(!in_domain("evilgooglebot.com", "googlebot.com"));
/// assert!(!in_domain("googlebot.com.evil.example", "googlebot.com"));
/// ```
pub fn in_domain(host: &str, domain: &str) -> bool {
    let h = host.strip_suffix('.').unwrap_or(host).as_bytes();
    let d = domain.strip_suffix('.').unwrap_or(domain).as_bytes();
    if d.is_empty() || h.len() < d.len() {
        return false;
    }
    let cut = h.len() - d.len();
    h[cut..].eq_ignore_ascii_case(d) && (cut == 0 || h[cut - 1] == b'.')
}

/// The crawlers and resolvers of one warden instance, compiled.
pub struct Verifier {
    crawlers: Vec<Crawler>,
    /// Pattern `i` claims crawler `owner[i]`.
    owner: Vec<usize>,
    agents: Option<AhoCorasick>,
    allow: NetSet,
    resolvers: Vec<Server>,
    timeout_ms: u64,
    memo: Mutex<Memo>,
}

/// This worker's recent verdicts, and the claim last asked about.
#[derive(Default)]
struct Memo {
    last: Option<(usize, Addr)>,
    verdicts: HashMap<(usize, Addr), (bool, u64)>,
}

impl Verifier {
    /// Compiles `o`; without resolvers, reads `/etc/resolv.conf`'s.
    pub fn new(o: &Options) -> Result<Verifier, ConfigError> {
        let mut resolvers = o.resolvers.clone();
        if resolvers.is_empty() && o.verify {
            let path = "/etc/resolv.conf";
            let text = std::fs::read_to_string(path).unwrap_or_default();
            resolvers = dns::nameservers(&text);
            if resolvers.is_empty() {
                return Err(ConfigError::new(
                    "challenge.resolver",
                    format!(
                        "is not set and {path} lists no nameserver: set it, e.g. \
                         resolver = {{ \"127.0.0.53\" }}, or crawlers = {{ verify = false }}"
                    ),
                ));
            }
        }
        Ok(Verifier::with_resolvers(o, resolvers))
    }

    /// Compiles `o` with these resolvers.
    pub fn with_resolvers(o: &Options, resolvers: Vec<Server>) -> Verifier {
        let mut crawlers: Vec<Crawler> = Vec::new();
        if o.verify {
            crawlers.extend(BUILT_IN.iter().map(|(name, agents, domains)| Crawler {
                name: name.to_string(),
                agents: agents.iter().map(|s| s.to_string()).collect(),
                domains: domains.iter().map(|s| s.to_string()).collect(),
            }));
            crawlers.extend(o.extra.iter().cloned());
        }
        let mut patterns = Vec::new();
        let mut owner = Vec::new();
        for (i, c) in crawlers.iter().enumerate() {
            for a in &c.agents {
                patterns.push(a.clone());
                owner.push(i);
            }
        }
        let agents = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostFirst)
            .build(&patterns)
            .ok()
            .filter(|_| !patterns.is_empty());
        Verifier {
            crawlers,
            owner,
            agents,
            allow: NetSet::new(&o.allow),
            resolvers,
            timeout_ms: o.timeout_ms,
            memo: Mutex::new(Memo::default()),
        }
    }

    /// The verdict this worker remembers on `client` claiming crawler `c`
    /// (see [`MEMO_MS`]); otherwise notes the claim as the last one asked
    /// about, for [`Verifier::remember_last`].
    pub fn remembered(&self, c: usize, client: Addr, now_ms: u64) -> Option<bool> {
        let mut m = self.memo.lock().ok()?;
        match m.verdicts.get(&(c, client)) {
            Some(&(verified, until)) if until > now_ms => Some(verified),
            _ => {
                m.last = Some((c, client));
                None
            }
        }
    }

    /// Remembers a verdict on `client` claiming crawler `c`.
    pub fn remember(&self, c: usize, client: Addr, verified: bool, now_ms: u64) {
        if let Ok(mut m) = self.memo.lock() {
            if m.verdicts.len() >= MEMO_MAX {
                m.verdicts.clear();
            }
            m.verdicts.insert((c, client), (verified, now_ms + MEMO_MS));
        }
    }

    /// Remembers a verdict (read from the dict) on the claim
    /// [`Verifier::remembered`] last noted.
    pub fn remember_last(&self, verified: bool, now_ms: u64) {
        let last = self.memo.lock().ok().and_then(|mut m| m.last.take());
        if let Some((c, client)) = last {
            self.remember(c, client, verified, now_ms);
        }
    }

    /// The crawlers verified by DNS, built-in ones first.
    pub fn crawlers(&self) -> &[Crawler] {
        &self.crawlers
    }

    /// The resolvers asked, in order.
    pub fn resolvers(&self) -> &[Server] {
        &self.resolvers
    }

    /// True when `a` is in `crawlers.allow`.
    pub fn allowed(&self, a: Addr) -> bool {
        self.allow.contains(a)
    }

    /// The crawler `user_agent` claims to be (the first token found).
    ///
    /// ```
    /// use warden_core::challenge::crawlers::{Options, Verifier};
    /// let v = Verifier::with_resolvers(&Options::default(), vec![]);
    /// let ua = b"Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)";
    /// assert_eq!(v.claim(ua).map(|c| v.crawlers()[c].name.as_str()), Some("bing"));
    /// assert_eq!(v.claim(b"Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"), None);
    /// ```
    pub fn claim(&self, user_agent: &[u8]) -> Option<usize> {
        let m = self.agents.as_ref()?.find(user_agent)?;
        self.owner.get(m.pattern().as_usize()).copied()
    }

    /// Starts verifying that `client` is crawler `crawler` (an index of
    /// [`Verifier::crawlers`]); `id` seeds the queries' ids.
    pub fn start(&self, crawler: usize, client: Addr, id: u16, now_ms: u64) -> Verification {
        Verification {
            crawler,
            client,
            deadline_ms: now_ms + self.timeout_ms,
            id,
            qname: dns::reverse_name(client),
            qtype: QType::Ptr,
            names: Vec::new(),
            next_name: 0,
            tried: 0,
            ttl: u32::MAX,
            done: None,
        }
    }

    /// Feeds `v` what came back for its last query: `Some(datagram)`, or
    /// `None` for a timeout or socket error (`None` also starts it); says
    /// what to do next.
    pub fn step(&self, v: &mut Verification, reply: Option<&[u8]>, now_ms: u64) -> Step {
        if let Some(o) = &v.done {
            return Step::Done(o.clone());
        }
        let step = self.advance(v, reply, now_ms);
        if let Step::Done(o) = &step {
            v.done = Some(o.clone());
        }
        step
    }

    fn advance(&self, v: &mut Verification, reply: Option<&[u8]>, now_ms: u64) -> Step {
        let left = v.deadline_ms.saturating_sub(now_ms);
        let Some(m) = reply else {
            // the start, or this resolver did not answer: the next one
            return if v.tried == 0 {
                self.send(v, now_ms)
            } else {
                self.retry(v, now_ms, "no answer (timeout)")
            };
        };
        let ans = match dns::parse(m, v.id, &v.qname, v.qtype) {
            Ok(a) => a,
            // not the answer to this query (a stray or spoofed datagram, or
            // garbage): keep waiting for it
            Err(_) if left > 0 => return Step::Wait { timeout_ms: left },
            Err(_) => return Step::Done(Outcome::failed("no answer (timeout)")),
        };
        let usable = !ans.names.is_empty() || !ans.addrs.is_empty();
        if !usable
            && (ans.truncated || !matches!(ans.rcode, dns::rcode::NOERROR | dns::rcode::NXDOMAIN))
        {
            let why = if ans.truncated {
                "truncated answer".to_string()
            } else {
                format!("DNS error {}", ans.rcode)
            };
            return self.retry(v, now_ms, &why);
        }
        v.ttl = v.ttl.min(ans.ttl);
        let crawler = &self.crawlers[v.crawler];
        match v.qtype {
            QType::Ptr => {
                if ans.names.is_empty() {
                    return Step::Done(Outcome::refused("", "no reverse DNS name"));
                }
                v.names = ans
                    .names
                    .iter()
                    .filter(|n| crawler.domains.iter().any(|d| in_domain(n, d)))
                    .take(MAX_NAMES)
                    .cloned()
                    .collect();
                if v.names.is_empty() {
                    let host = ans.names[0].clone();
                    return Step::Done(Outcome::refused(
                        &host,
                        &format!("not in {}'s domains", crawler.name),
                    ));
                }
                self.forward(v, now_ms)
            }
            QType::A | QType::Aaaa => {
                if ans.addrs.contains(&v.client) {
                    let host = v.qname.clone();
                    return Step::Done(Outcome::verified(v, &host));
                }
                self.forward(v, now_ms)
            }
        }
    }

    /// Asks for the next `PTR` name's addresses, or refuses when none is
    /// left.
    fn forward(&self, v: &mut Verification, now_ms: u64) -> Step {
        loop {
            let Some(name) = v.names.get(v.next_name).cloned() else {
                let host = v.names.first().cloned().unwrap_or_default();
                return Step::Done(Outcome::refused(
                    &host,
                    "forward lookup does not hold the address",
                ));
            };
            v.next_name += 1;
            if dns::query(0, &name, QType::of(v.client)).is_ok() {
                v.qname = name;
                v.qtype = QType::of(v.client);
                v.tried = 0;
                return self.send(v, now_ms);
            }
        }
    }

    /// The same query to the next resolver, or a failure.
    fn retry(&self, v: &mut Verification, now_ms: u64, why: &str) -> Step {
        if (v.tried as usize) >= self.resolvers.len() || v.deadline_ms <= now_ms {
            return Step::Done(Outcome::failed(why));
        }
        self.send(v, now_ms)
    }

    /// The query to resolver `tried`, with a share of the time left.
    fn send(&self, v: &mut Verification, now_ms: u64) -> Step {
        let left = v.deadline_ms.saturating_sub(now_ms);
        let server = v.tried as usize;
        if server >= self.resolvers.len() || left == 0 {
            return Step::Done(Outcome::failed("no resolver left"));
        }
        v.id = v.id.wrapping_add(0x9e37);
        v.tried += 1;
        let packet = match dns::query(v.id, &v.qname, v.qtype) {
            Ok(p) => p,
            Err(e) => return Step::Done(Outcome::failed(&e.to_string())),
        };
        // the resolvers not yet tried share the time left
        let share = (self.resolvers.len() - server) as u64;
        Step::Send {
            packet,
            server: self.resolvers[server],
            timeout_ms: (left / share).max(1),
        }
    }
}

/// What the driver does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Send `packet` to `server` over UDP, wait up to `timeout_ms` for a
    /// datagram.
    Send {
        /// The query.
        packet: Vec<u8>,
        /// The resolver.
        server: Server,
        /// How long to wait.
        timeout_ms: u64,
    },
    /// What arrived was not the answer: wait for another datagram on the
    /// same socket.
    Wait {
        /// How long to wait.
        timeout_ms: u64,
    },
    /// Finished: store the outcome.
    Done(Outcome),
}

/// One verification under way (see [`Verifier::step`]).
#[derive(Clone, Debug)]
pub struct Verification {
    crawler: usize,
    client: Addr,
    deadline_ms: u64,
    id: u16,
    qname: String,
    qtype: QType,
    names: Vec<String>,
    next_name: usize,
    tried: u8,
    ttl: u32,
    done: Option<Outcome>,
}

impl Verification {
    /// The crawler claimed (an index of [`Verifier::crawlers`]).
    pub fn crawler(&self) -> usize {
        self.crawler
    }

    /// The client.
    pub fn client(&self) -> Addr {
        self.client
    }
}

/// A verdict on a claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Forward-confirmed.
    Verified,
    /// DNS says no.
    Refused,
    /// DNS did not answer (timeout, server failure): not verified, for a
    /// short while.
    Failed,
}

impl Verdict {
    fn code(self) -> char {
        match self {
            Verdict::Verified => 'y',
            Verdict::Refused => 'n',
            Verdict::Failed => 'e',
        }
    }

    fn from_code(c: &str) -> Option<Verdict> {
        Some(match c {
            "y" => Verdict::Verified,
            "n" => Verdict::Refused,
            "e" => Verdict::Failed,
            _ => return None,
        })
    }
}

/// The end of a verification: what is cached, and for how long.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The record to store under [`key`].
    pub record: Record,
    /// Its time to live, s.
    pub ttl_s: u32,
}

impl Outcome {
    fn verified(v: &Verification, host: &str) -> Outcome {
        Outcome {
            record: Record::new(Verdict::Verified, host, ""),
            ttl_s: v.ttl.clamp(POSITIVE_MIN_S, POSITIVE_MAX_S),
        }
    }

    fn refused(host: &str, why: &str) -> Outcome {
        Outcome {
            record: Record::new(Verdict::Refused, host, why),
            ttl_s: NEGATIVE_S,
        }
    }

    fn failed(why: &str) -> Outcome {
        Outcome {
            record: Record::new(Verdict::Failed, "", why),
            ttl_s: FAILED_S,
        }
    }
}

/// A cached verdict: the dict value `<y|n|e>|<host>|<why>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The verdict.
    pub verdict: Verdict,
    /// The `PTR` name it is about ("" when none).
    pub host: String,
    /// Why it was refused or failed ("" when verified).
    pub why: String,
}

impl Record {
    fn new(verdict: Verdict, host: &str, why: &str) -> Record {
        Record {
            verdict,
            host: host.replace('|', "?"),
            why: why.replace('|', "?"),
        }
    }

    /// The dict value.
    ///
    /// ```
    /// use warden_core::challenge::crawlers::{Record, Verdict};
    /// let r = Record::decode("y|crawl-66-249-66-1.googlebot.com|").unwrap();
    /// assert_eq!((r.verdict, r.encode()), (Verdict::Verified, "y|crawl-66-249-66-1.googlebot.com|".to_string()));
    /// assert!(Record::decode("maybe").is_none());
    /// ```
    pub fn encode(&self) -> String {
        format!("{}|{}|{}", self.verdict.code(), self.host, self.why)
    }

    /// Reads a dict value (None for anything else).
    pub fn decode(s: &str) -> Option<Record> {
        let mut it = s.splitn(3, '|');
        let verdict = Verdict::from_code(it.next()?)?;
        let host = it.next()?.to_string();
        let why = it.next()?.to_string();
        Some(Record { verdict, host, why })
    }

    /// True when verified.
    pub fn verified(&self) -> bool {
        self.verdict == Verdict::Verified
    }
}

/// The dict key of a verdict on `client` claiming `crawler`: `cv|<name>|<address>`.
///
/// ```
/// use warden_core::challenge::crawlers::key;
/// use warden_core::net::addr::Addr;
/// assert_eq!(key("google", Addr::parse("66.249.66.1").unwrap()), "cv|google|66.249.66.1");
/// ```
pub fn key(crawler: &str, client: Addr) -> String {
    format!("cv|{crawler}|{client}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::dns::testing::{reply, reply_ttl, Rr};
    use proptest::prelude::*;
    use serde_json::json;

    fn a(s: &str) -> Addr {
        Addr::parse(s).unwrap()
    }

    fn verifier(servers: usize) -> Verifier {
        let o = Options::from_challenge(&json!({"crawlers": {
            "extra": [{"agent": ["Twitterbot"], "domains": "twttr.com"}]}}))
        .unwrap();
        let s = (0..servers)
            .map(|i| Server::parse(&format!("127.0.0.{}", i + 1)).unwrap())
            .collect();
        Verifier::with_resolvers(&o, s)
    }

    /// Drives `v` with `answer(query) -> Some(reply) | None (timeout)`;
    /// returns the outcome and the queries sent.
    fn drive(
        vf: &Verifier,
        ua: &str,
        client: &str,
        mut answer: impl FnMut(&[u8], &Server) -> Option<Vec<u8>>,
    ) -> (Outcome, usize) {
        let c = vf.claim(ua.as_bytes()).expect("claims a crawler");
        let mut v = vf.start(c, a(client), 77, 1_000);
        let mut now = 1_000;
        let mut sent = 0;
        let mut step = vf.step(&mut v, None, now);
        loop {
            match step {
                Step::Done(o) => return (o, sent),
                Step::Send {
                    packet,
                    server,
                    timeout_ms,
                } => {
                    sent += 1;
                    assert!(sent < 20);
                    let r = answer(&packet, &server);
                    if r.is_none() {
                        now += timeout_ms;
                    }
                    step = vf.step(&mut v, r.as_deref(), now);
                }
                Step::Wait { .. } => panic!("no stray datagrams here"),
            }
        }
    }

    fn qname(q: &[u8]) -> String {
        let mut s = String::new();
        let mut at = 12;
        while q[at] != 0 {
            let n = q[at] as usize;
            if !s.is_empty() {
                s.push('.');
            }
            s.push_str(std::str::from_utf8(&q[at + 1..at + 1 + n]).unwrap());
            at += 1 + n;
        }
        s
    }

    /// A zone: PTR and A records by name.
    fn zone(q: &[u8]) -> Option<Vec<u8>> {
        let name = qname(q);
        let rr: Vec<Rr> = match name.as_str() {
            "1.66.249.66.in-addr.arpa" => vec![Rr::Ptr(&name, "crawl-66-249-66-1.googlebot.com")],
            "crawl-66-249-66-1.googlebot.com" => vec![Rr::Addr(&name, a("66.249.66.1"))],
            "2.66.249.66.in-addr.arpa" => vec![Rr::Ptr(&name, "evil.example")],
            "3.66.249.66.in-addr.arpa" => vec![Rr::Ptr(&name, "crawl-3.googlebot.com")],
            "crawl-3.googlebot.com" => vec![Rr::Addr(&name, a("192.0.2.99"))],
            "5.66.249.66.in-addr.arpa" => vec![Rr::Ptr(&name, "crawl-5.evilgooglebot.com")],
            "crawl-5.evilgooglebot.com" => vec![Rr::Addr(&name, a("66.249.66.5"))],
            "6.66.249.66.in-addr.arpa" => vec![
                Rr::Ptr(&name, "other.example"),
                Rr::Ptr(&name, "crawl-6.googlebot.com"),
            ],
            "crawl-6.googlebot.com" => vec![
                Rr::Cname(&name, "edge.googlebot.com"),
                Rr::Addr("edge.googlebot.com", a("66.249.66.6")),
            ],
            "7.66.249.66.in-addr.arpa" => return None,
            _ => return Some(reply(q, 3, &[])),
        };
        Some(reply(q, 0, &rr))
    }

    const GOOGLEBOT: &str =
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

    #[test]
    fn forward_confirmed_reverse_dns() {
        let vf = verifier(1);
        let (o, n) = drive(&vf, GOOGLEBOT, "66.249.66.1", |q, _| zone(q));
        assert_eq!((o.record.verdict, n), (Verdict::Verified, 2));
        assert_eq!(o.record.host, "crawl-66-249-66-1.googlebot.com");
        assert_eq!(o.ttl_s, POSITIVE_MIN_S); // the zone's 300 s, floored
                                             // a PTR outside the domains: one query, refused
        let (o, n) = drive(&vf, GOOGLEBOT, "66.249.66.2", |q, _| zone(q));
        assert_eq!(
            (o.record.verdict, n, o.ttl_s),
            (Verdict::Refused, 1, NEGATIVE_S)
        );
        assert_eq!(o.record.host, "evil.example");
        // the forward lookup does not hold the address
        let (o, _) = drive(&vf, GOOGLEBOT, "66.249.66.3", |q, _| zone(q));
        assert_eq!(o.record.verdict, Verdict::Refused);
        // a label boundary: evilgooglebot.com is not googlebot.com
        let (o, n) = drive(&vf, GOOGLEBOT, "66.249.66.5", |q, _| zone(q));
        assert_eq!((o.record.verdict, n), (Verdict::Refused, 1));
        // two names, one in the domains, its address behind a CNAME
        let (o, n) = drive(&vf, GOOGLEBOT, "66.249.66.6", |q, _| zone(q));
        assert_eq!((o.record.verdict, n), (Verdict::Verified, 2));
        // no PTR at all
        let (o, _) = drive(&vf, GOOGLEBOT, "66.249.66.9", |q, _| zone(q));
        assert_eq!(o.record.verdict, Verdict::Refused);
        // a Google address claiming to be Bing
        let (o, _) = drive(&vf, "msnbot/2.0b", "66.249.66.1", |q, _| zone(q));
        assert_eq!(o.record.verdict, Verdict::Refused);
    }

    #[test]
    fn ipv6_clients_are_confirmed_by_aaaa() {
        let vf = verifier(1);
        let host = "crawl-2001-4860-4801-1.googlebot.com";
        let (o, n) = drive(&vf, GOOGLEBOT, "2001:4860:4801::1", |q, _| {
            let name = qname(q);
            let qtype = u16::from_be_bytes([q[q.len() - 4], q[q.len() - 3]]);
            Some(match (name.ends_with("ip6.arpa"), qtype) {
                (true, 12) => reply(q, 0, &[Rr::Ptr(&name, host)]),
                (false, 28) => reply(q, 0, &[Rr::Addr(&name, a("2001:4860:4801::1"))]),
                _ => reply(q, 3, &[]),
            })
        });
        assert_eq!(
            (o.record.verdict, n, o.record.host.as_str()),
            (Verdict::Verified, 2, host)
        );
    }

    #[test]
    fn timeouts_and_failures_try_the_next_resolver() {
        let vf = verifier(2);
        // both resolvers silent: failed, once per resolver
        let (o, n) = drive(&vf, GOOGLEBOT, "66.249.66.7", |q, _| zone(q));
        assert_eq!(
            (o.record.verdict, n, o.ttl_s),
            (Verdict::Failed, 2, FAILED_S)
        );
        // the first fails (SERVFAIL), the second answers
        let (o, n) = drive(&vf, GOOGLEBOT, "66.249.66.1", |q, s| {
            if s.addr == a("127.0.0.1") {
                Some(reply(q, 2, &[]))
            } else {
                zone(q)
            }
        });
        assert_eq!((o.record.verdict, n), (Verdict::Verified, 4));
        // a truncated answer with nothing in it counts as a failure
        let (o, _) = drive(&vf, GOOGLEBOT, "66.249.66.1", |q, _| {
            let mut r = reply(q, 0, &[]);
            r[2] |= 0x02;
            Some(r)
        });
        assert_eq!(o.record.verdict, Verdict::Failed);
    }

    #[test]
    fn stray_datagrams_are_waited_past() {
        let vf = verifier(1);
        let c = vf.claim(GOOGLEBOT.as_bytes()).unwrap();
        let mut v = vf.start(c, a("66.249.66.1"), 1, 0);
        let Step::Send { packet, .. } = vf.step(&mut v, None, 0) else {
            panic!()
        };
        let mut spoofed = zone(&packet).unwrap();
        spoofed[0] ^= 0xff; // another id
        assert_eq!(
            vf.step(&mut v, Some(&spoofed), 10),
            Step::Wait { timeout_ms: 1_990 }
        );
        assert!(matches!(
            vf.step(&mut v, Some(b"junk"), 20),
            Step::Wait { .. }
        ));
        let good = zone(&packet).unwrap();
        assert!(matches!(
            vf.step(&mut v, Some(&good), 30),
            Step::Send { .. }
        ));
        // past the deadline a stray datagram ends it
        assert!(matches!(
            vf.step(&mut v, Some(&spoofed), 5_000),
            Step::Done(Outcome {
                record: Record {
                    verdict: Verdict::Failed,
                    ..
                },
                ..
            })
        ));
    }

    #[test]
    fn ttls_are_held_between_the_bounds() {
        let vf = verifier(1);
        for (dns_ttl, want) in [
            (60, POSITIVE_MIN_S),
            (7_200, 7_200),
            (604_800, POSITIVE_MAX_S),
        ] {
            let (o, _) = drive(&vf, GOOGLEBOT, "66.249.66.1", |q, _| {
                let name = qname(q);
                let rr = if name.ends_with("arpa") {
                    vec![Rr::Ptr(&name, "crawl-66-249-66-1.googlebot.com")]
                } else {
                    vec![Rr::Addr(&name, a("66.249.66.1"))]
                };
                Some(reply_ttl(q, 0, &rr, dns_ttl))
            });
            assert_eq!(o.ttl_s, want);
        }
    }

    #[test]
    fn verdicts_are_remembered_for_a_while() {
        let vf = verifier(1);
        let g = a("66.249.66.1");
        assert_eq!(vf.remembered(0, g, 0), None);
        vf.remember_last(true, 0);
        vf.remember_last(false, 0); // nothing noted since: no change
        assert_eq!(vf.remembered(0, g, MEMO_MS - 1), Some(true));
        assert_eq!(vf.remembered(1, g, 0), None); // another crawler
        assert_eq!(vf.remembered(0, g, MEMO_MS), None); // forgotten
        vf.remember(0, g, false, MEMO_MS);
        assert_eq!(vf.remembered(0, g, MEMO_MS + 1), Some(false));
    }

    #[test]
    fn claims_and_the_allowlist() {
        let vf = verifier(1);
        let name = |ua: &str| {
            vf.claim(ua.as_bytes())
                .map(|c| vf.crawlers()[c].name.clone())
        };
        assert_eq!(name(GOOGLEBOT).as_deref(), Some("google"));
        assert_eq!(name("Twitterbot/1.0").as_deref(), Some("twitterbot"));
        assert_eq!(
            name("Mozilla/5.0 (compatible; YandexBot/3.0)").as_deref(),
            Some("yandex")
        );
        assert_eq!(name("curl/8.5.0"), None);
        let o = Options::from_challenge(
            &json!({"crawlers": {"verify": false, "allow": "20.191.45.0/24"}}),
        )
        .unwrap();
        let vf = Verifier::with_resolvers(&o, vec![]);
        assert_eq!(vf.claim(GOOGLEBOT.as_bytes()), None);
        assert!(vf.allowed(a("20.191.45.212")) && !vf.allowed(a("20.191.46.1")));
    }

    #[test]
    fn option_errors_name_the_field_and_value() {
        let e = |v: Value| Options::from_challenge(&v).unwrap_err().to_string();
        assert_eq!(
            e(json!({"crawlers": {"verfy": true}})),
            "opts.challenge.crawlers.verfy is not a known option (known: verify, allow, extra, timeout)"
        );
        assert_eq!(
            e(json!({"crawlers": {"verify": "yes"}})),
            "opts.challenge.crawlers.verify must be 0, 1, true or false, got 'yes'"
        );
        assert!(
            e(json!({"crawlers": {"allow": ["10.0.0.300"]}})).starts_with(
                "opts.challenge.crawlers.allow has an invalid IP address or CIDR '10.0.0.300'"
            )
        );
        assert_eq!(
            e(json!({"crawlers": {"timeout": "1h"}})),
            "opts.challenge.crawlers.timeout must be from 10ms to 30s, got '1h'"
        );
        assert_eq!(
            e(json!({"crawlers": {"extra": [{"agent": "X"}]}})),
            "opts.challenge.crawlers.extra[1].domains must be the domains of the crawler's reverse DNS names, got null"
        );
        assert_eq!(
            e(json!({"crawlers": {"extra": [{"agent": "X", "domains": "a..b"}]}})),
            "opts.challenge.crawlers.extra[1].domains has 'a..b', which is not a domain like 'twttr.com'"
        );
        assert_eq!(
            e(json!({"resolver": ["127.0.0.1:99999"]})),
            "opts.challenge.resolver has '127.0.0.1:99999', which is not a resolver address like \
             '127.0.0.53', '192.0.2.1:5353' or '[::1]:53'"
        );
        assert!(e(json!({"crawlers": 5})).starts_with("opts.challenge.crawlers must be a table"));
        assert!(
            !Options::from_challenge(&json!({"crawlers": false}))
                .unwrap()
                .verify
        );
    }

    /// The naive reference: the labels of `domain` are the last labels of
    /// `host`.
    fn naive_in_domain(host: &str, domain: &str) -> bool {
        let h: Vec<String> = host
            .trim_end_matches('.')
            .split('.')
            .map(str::to_ascii_lowercase)
            .collect();
        let d: Vec<String> = domain
            .trim_end_matches('.')
            .split('.')
            .map(str::to_ascii_lowercase)
            .collect();
        !domain.trim_end_matches('.').is_empty()
            && h.len() >= d.len()
            && h[h.len() - d.len()..] == d[..]
    }

    proptest! {
        #[test]
        fn in_domain_is_a_label_suffix(
            host in "[a-zA-Z.]{0,12}(googlebot\\.com|GOOGLEBOT\\.com|bot\\.com)?\\.?",
            domain in "(googlebot\\.com|google\\.com|bot\\.com|com|[a-z]{1,3}\\.com)",
        ) {
            if !host.contains("..") && !host.starts_with('.') {
                prop_assert_eq!(in_domain(&host, &domain), naive_in_domain(&host, &domain));
            }
        }

        #[test]
        fn any_reply_ends_the_machine(replies in proptest::collection::vec(
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..80)), 0..12))
        {
            let vf = verifier(2);
            let c = vf.claim(GOOGLEBOT.as_bytes()).unwrap();
            let mut v = vf.start(c, a("66.249.66.1"), 3, 0);
            let mut now = 0;
            let _ = vf.step(&mut v, None, now);
            for r in &replies {
                now += 100;
                let _ = vf.step(&mut v, r.as_deref(), now);
            }
            // past the deadline, silence ends it
            now += 10_000;
            let mut last = vf.step(&mut v, None, now);
            for _ in 0..4 {
                last = vf.step(&mut v, None, now);
            }
            prop_assert!(matches!(last, Step::Done(_)));
        }
    }
}
