//! The event log's line: one security event as one line of JSON with
//! Elastic Common Schema (ECS) field names, for Loki, Elasticsearch,
//! Vector or anything that reads JSON lines.
//!
//! ```text
//! {"@timestamp":"2026-12-07T07:30:00.123Z","ecs":{"version":"8.11.0"},
//!  "event":{"action":"blocked_ip","category":["network"],"kind":"event",
//!           "dataset":"warden.security","reason":"abuse","sequence":42,
//!           "type":["denied"]},
//!  "source":{"address":"192.0.2.7","ip":"192.0.2.7"},"rule":{"name":"manual"},
//!  "url":{"original":"/x?a=1","path":"/x","query":"a=1"},
//!  "http":{"request":{"method":"GET"},"response":{"status_code":403}},
//!  "user_agent":{"original":"curl/8.0"},
//!  "warden":{"action":"refused","count":17,"window":60},
//!  "message":"blocked_ip 192.0.2.7: refused (manual: abuse)"}
//! ```
//! (one line; shown folded). Fields without a value are left out: no
//! `http` for a block made through the API, no `source.ip` for a network
//! (`source.address` holds it), no `event.reason` without a reason.
//!
//! - `event.action`: warden's event type (`blocked_ip`, `rate_limited`,
//!   `auth_failed`, `suspicious`, `scan_detected`, `capture`);
//! - `event.kind`: `alert` when a detector rule or rate limit tripped,
//!   `event` otherwise; `event.category` and `event.type` per ECS's
//!   allowed values (see [`categories`]);
//! - `event.sequence`: the event's number in the ring (the drain's order);
//! - `warden.action`: what was done (`blocked for 1h`, `refused`,
//!   `unblocked`, `monitor: would block`...), `warden.detail` (what the
//!   rule saw: the scanner pattern, the payload classes), `warden.count`,
//!   `warden.threshold`, `warden.window` (seconds) when not zero.

use serde_json::{json, Map, Value};

use super::{Event, Kind};

/// The ECS version the field names follow.
pub const ECS_VERSION: &str = "8.11.0";

/// `2026-12-07T07:30:00.123Z` (RFC 3339, UTC, milliseconds).
///
/// ```
/// use warden_core::events::ecs::timestamp;
/// assert_eq!(timestamp(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
/// ```
pub fn timestamp(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let (y, m, d) = crate::options::civil(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// `event.kind`, `event.category` and `event.type` of an event.
pub fn categories(e: &Event) -> (&'static str, &'static [&'static str], &'static str) {
    match e.kind {
        Some(Kind::BlockedIp) => {
            let t = if e.action == "unblocked" {
                "deletion"
            } else if e.action.starts_with("blocked") {
                "creation"
            } else {
                "denied"
            };
            ("event", &["network"], t)
        }
        Some(Kind::AuthFailed) => ("alert", &["authentication", "web"], "denied"),
        Some(Kind::RateLimited | Kind::Suspicious | Kind::ScanDetected) => {
            ("alert", &["intrusion_detection", "web"], "indicator")
        }
        Some(Kind::ChallengeIssued) => ("event", &["web"], "denied"),
        Some(Kind::ChallengeSolved) => ("event", &["web"], "allowed"),
        Some(Kind::ChallengeFailed) => ("alert", &["intrusion_detection", "web"], "denied"),
        Some(Kind::Capture) | None => ("event", &["web"], "access"),
    }
}

fn text(m: &mut Map<String, Value>, k: &str, v: &str) {
    if !v.is_empty() {
        m.insert(k.into(), Value::from(v));
    }
}

fn number(m: &mut Map<String, Value>, k: &str, v: u32) {
    if v != 0 {
        m.insert(k.into(), Value::from(v));
    }
}

/// The line of event number `seq` (without its newline).
pub fn line(e: &Event, seq: u64) -> String {
    let name = e.kind.map_or("unknown", Kind::name);
    let (kind, category, ty) = categories(e);
    let mut event = Map::new();
    event.insert("action".into(), name.into());
    event.insert("kind".into(), kind.into());
    event.insert("category".into(), json!(category));
    event.insert("type".into(), json!([ty]));
    event.insert("dataset".into(), "warden.security".into());
    event.insert("sequence".into(), seq.into());
    text(&mut event, "reason", &e.reason);
    let mut source = Map::new();
    text(&mut source, "address", &e.ip);
    if !e.ip.is_empty() && !e.ip.contains('/') {
        source.insert("ip".into(), e.ip.as_str().into());
    }
    let mut out = Map::new();
    out.insert("@timestamp".into(), timestamp(e.time_ms).into());
    out.insert("ecs".into(), json!({ "version": ECS_VERSION }));
    out.insert("event".into(), event.into());
    out.insert("source".into(), source.into());
    if !e.rule.is_empty() {
        out.insert("rule".into(), json!({ "name": e.rule }));
    }
    if !e.path.is_empty() {
        let mut url = Map::new();
        url.insert("original".into(), e.path.as_str().into());
        let (path, query) = match e.path.split_once('?') {
            Some((p, q)) => (p, q),
            None => (e.path.as_str(), ""),
        };
        text(&mut url, "path", path);
        text(&mut url, "query", query);
        out.insert("url".into(), url.into());
    }
    let mut http = Map::new();
    if !e.method.is_empty() {
        http.insert("request".into(), json!({ "method": e.method }));
    }
    if e.status != 0 {
        http.insert("response".into(), json!({ "status_code": e.status }));
    }
    if !http.is_empty() {
        out.insert("http".into(), http.into());
    }
    if !e.user_agent.is_empty() {
        out.insert("user_agent".into(), json!({ "original": e.user_agent }));
    }
    let mut warden = Map::new();
    text(&mut warden, "action", &e.action);
    text(&mut warden, "detail", &e.detail);
    number(&mut warden, "count", e.count);
    number(&mut warden, "threshold", e.threshold);
    number(&mut warden, "window", e.window_s);
    out.insert("warden".into(), warden.into());
    let mut message = format!("{name} {}", e.ip);
    if !e.action.is_empty() {
        message.push_str(": ");
        message.push_str(&e.action);
    }
    match (e.rule.is_empty(), e.reason.is_empty()) {
        (false, false) => message.push_str(&format!(" ({}: {})", e.rule, e.reason)),
        (false, true) => message.push_str(&format!(" ({})", e.rule)),
        (true, false) => message.push_str(&format!(" ({})", e.reason)),
        (true, true) => {}
    }
    out.insert("message".into(), message.into());
    Value::Object(out).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(timestamp(951_782_400_007), "2000-02-29T00:00:00.007Z");
        assert_eq!(timestamp(1_796_628_599_999), "2026-12-07T07:29:59.999Z");
    }

    #[test]
    fn a_refusal_as_ecs() {
        let e = Event {
            time_ms: 1_700_000_000_123,
            ip: "192.0.2.7".into(),
            kind: Some(Kind::BlockedIp),
            rule: "manual".into(),
            count: 17,
            window_s: 60,
            status: 403,
            method: "GET".into(),
            path: "/x?a=\"1\"".into(),
            user_agent: "curl/8.0 \u{1}".into(),
            action: "refused".into(),
            reason: "abuse \"quoted\"\nnewline".into(),
            ..Event::default()
        };
        let l = line(&e, 42);
        assert!(!l.contains('\n'));
        let v: Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["@timestamp"], "2023-11-14T22:13:20.123Z");
        assert_eq!(v["event"]["action"], "blocked_ip");
        assert_eq!(v["event"]["kind"], "event");
        assert_eq!(v["event"]["category"], json!(["network"]));
        assert_eq!(v["event"]["type"], json!(["denied"]));
        assert_eq!(v["event"]["sequence"], 42);
        assert_eq!(v["event"]["reason"], "abuse \"quoted\"\nnewline");
        assert_eq!(v["source"]["ip"], "192.0.2.7");
        assert_eq!(v["rule"]["name"], "manual");
        assert_eq!(v["url"]["path"], "/x");
        assert_eq!(v["url"]["query"], "a=\"1\"");
        assert_eq!(v["http"]["request"]["method"], "GET");
        assert_eq!(v["http"]["response"]["status_code"], 403);
        assert_eq!(v["user_agent"]["original"], "curl/8.0 \u{1}");
        assert_eq!(
            v["warden"],
            json!({"action": "refused", "count": 17, "window": 60})
        );
        assert_eq!(
            v["message"],
            "blocked_ip 192.0.2.7: refused (manual: abuse \"quoted\"\nnewline)"
        );
    }

    #[test]
    fn a_network_block_and_a_trip() {
        let block = Event {
            ip: "198.51.100.0/24".into(),
            kind: Some(Kind::BlockedIp),
            rule: "api".into(),
            action: "blocked for 1h".into(),
            ..Event::default()
        };
        let v: Value = serde_json::from_str(&line(&block, 0)).unwrap();
        assert_eq!(v["source"], json!({"address": "198.51.100.0/24"}));
        assert_eq!(v["event"]["type"], json!(["creation"]));
        assert!(v.get("http").is_none() && v.get("url").is_none());
        assert!(v["event"].get("reason").is_none());
        let trip = Event {
            ip: "2001:db8::1".into(),
            kind: Some(Kind::ScanDetected),
            rule: "scanner_agent".into(),
            count: 1,
            threshold: 1,
            status: 404,
            action: "blocked for 24h".into(),
            ..Event::default()
        };
        let v: Value = serde_json::from_str(&line(&trip, 7)).unwrap();
        assert_eq!(v["event"]["kind"], "alert");
        assert_eq!(
            v["event"]["category"],
            json!(["intrusion_detection", "web"])
        );
        assert_eq!(v["source"]["ip"], "2001:db8::1");
        assert_eq!(v["http"], json!({"response": {"status_code": 404}}));
    }
}
