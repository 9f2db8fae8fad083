//! `warden why <ip>`: is the address refused, by what, since and until
//! when, and what warden has recorded about it.
//!
//! Composed from what the admin API has: the blocks covering the address
//! (`GET /security/blocked-ips`, with the denylist), the whitelist entries
//! covering it (`GET /security/whitelist`), the events of the address and
//! of those blocks (`GET /security/events?ip=`: the trip that made an
//! automatic block, its rule, count, threshold, window and offence number,
//! and when a block was made), and warden's own verdict
//! (`POST /security/check`, answered only to a trusted proxy: the verdict,
//! the threat score and a reputation at or below iprepd's threshold).

use super::{blocks, events, list, num, pretty, text};
use crate::addr::Target;
use crate::client::{with_query, Api};
use crate::clock;
use crate::error::{exit, Error};
use crate::out;
use crate::table::pairs;
use serde::Serialize;
use serde_json::{json, Value};
use std::net::IpAddr;

/// Events asked for per address or block.
const EVENTS_PER_TARGET: u32 = 20;
/// Events shown.
const EVENTS_SHOWN: usize = 10;
/// The prefix warden counts IPv6 clients by, unless configured otherwise
/// (`detector.ipv6_prefix`): their events name that network.
const IPV6_PREFIX: u8 = 64;

/// What the detector did when it made a block.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Trip {
    /// The rule (`not_found`, `scanner_agent`, ...).
    pub rule: String,
    /// The event's type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The count that reached the threshold.
    pub count: f64,
    /// The threshold.
    pub threshold: f64,
    /// The window, in seconds.
    pub window: f64,
    /// The request that tripped it (`GET /x 404`).
    pub request: String,
}

/// A block or denylist entry covering the address.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Cover {
    /// The blocked address or network.
    pub target: String,
    /// `denylist`, `manual` or `auto`.
    pub source: String,
    /// The block's reason.
    pub reason: String,
    /// No end.
    pub permanent: bool,
    /// When it ends (seconds since the epoch).
    pub expires: Option<f64>,
    /// When it was made, from its event (none for the denylist, or when
    /// the event is gone from the ring).
    pub since: Option<f64>,
    /// The event that made it: its action (`blocked for 2d (offence 2)`).
    pub action: Option<String>,
    /// The offence number of an automatic block (1: the first).
    pub offence: Option<u32>,
    /// The rule that made an automatic block.
    pub trip: Option<Trip>,
}

/// Everything `why` found.
#[derive(Clone, Debug, Serialize)]
pub struct Why {
    /// The address asked about.
    pub ip: String,
    /// Its requests are refused now.
    pub refused: bool,
    /// One line for people.
    pub verdict: String,
    /// The blocks and denylist entries covering it.
    pub blocks: Vec<Cover>,
    /// The whitelist entries covering it (blocks do not apply).
    pub whitelist: Vec<Value>,
    /// `/security/check`'s answer: allowed, should_block, threat_score,
    /// reason (none when it would not answer).
    pub check: Option<Value>,
    /// Why there is no check.
    pub check_note: Option<String>,
    /// Its latest events, newest first.
    pub events: Vec<Value>,
}

/// What the API answered.
#[derive(Clone, Debug)]
pub struct Evidence {
    /// `GET /security/blocked-ips`.
    pub blocks: Value,
    /// `GET /security/whitelist`.
    pub whitelist: Value,
    /// `GET /security/events?ip=` for each of the targets asked about.
    pub events: Vec<Value>,
    /// `POST /security/check`, or why it gave no verdict.
    pub check: Result<Value, String>,
}

fn covers(target: &str, ip: IpAddr) -> bool {
    Target::parse(target).is_ok_and(|t| t.contains(ip))
}

/// `(offence N)` in a block's action; 1 when there is none.
pub fn offence(action: &str) -> u32 {
    action
        .split_once("(offence ")
        .and_then(|(_, rest)| rest.split(')').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(1)
}

/// The event that made a block of `target`: the newest whose action is a
/// block.
fn maker<'a>(target: &str, events: &'a [Value]) -> Option<&'a Value> {
    events
        .iter()
        .filter(|e| text(e, "ip") == target && text(e, "action").starts_with("blocked"))
        .max_by(|a, b| num(a, "time").total_cmp(&num(b, "time")))
}

/// The addresses and networks whose events tell about `ip`: itself, the
/// blocks covering it, and (IPv6) the network the detector counts it by.
pub fn targets(ip: &Target, blocks: &Value) -> Vec<String> {
    let mut out = vec![ip.to_string()];
    for b in list(blocks, "blocked_ips") {
        let t = text(b, "ip");
        if text(b, "source") != "denylist" && covers(&t, ip.addr) && !out.contains(&t) {
            out.push(t);
        }
    }
    if ip.addr.is_ipv6() {
        let net = ip.network(IPV6_PREFIX).to_string();
        if !out.contains(&net) {
            out.push(net);
        }
    }
    out
}

/// Puts the evidence together.
pub fn assess(ip: &Target, ev: &Evidence) -> Why {
    let mut all: Vec<Value> = Vec::new();
    for answer in &ev.events {
        for e in list(answer, "events") {
            if !all.contains(e) {
                all.push(e.clone());
            }
        }
    }
    all.sort_by(|a, b| num(b, "time").total_cmp(&num(a, "time")));

    let covering: Vec<Cover> = list(&ev.blocks, "blocked_ips")
        .iter()
        .filter(|b| covers(&text(b, "ip"), ip.addr))
        .map(|b| {
            let target = text(b, "ip");
            let source = text(b, "source");
            let made = (source != "denylist")
                .then(|| maker(&target, &all))
                .flatten();
            let action = made.map(|e| text(e, "action"));
            let trip = made
                .filter(|e| text(e, "type") != "blocked_ip")
                .map(|e| Trip {
                    rule: text(e, "rule"),
                    kind: text(e, "type"),
                    count: num(e, "count"),
                    threshold: num(e, "threshold"),
                    window: num(e, "window"),
                    request: events::request(e),
                });
            Cover {
                permanent: b.get("permanent").and_then(Value::as_bool) == Some(true),
                expires: b.get("expires").and_then(Value::as_f64),
                since: made.map(|e| num(e, "time")),
                offence: (source == "auto").then(|| action.as_deref().map_or(1, offence)),
                action,
                trip,
                reason: text(b, "reason"),
                target,
                source,
            }
        })
        .collect();

    let whitelist: Vec<Value> = list(&ev.whitelist, "whitelist")
        .iter()
        .filter(|w| {
            matches!(text(w, "type").as_str(), "ip" | "cidr") && covers(&text(w, "value"), ip.addr)
        })
        .cloned()
        .collect();

    let (check, check_note) = match &ev.check {
        Ok(v) => (Some(v.clone()), None),
        Err(note) => (None, Some(note.clone())),
    };
    let reason = check
        .as_ref()
        .map(|c| text(c, "reason"))
        .unwrap_or_default();
    let refused = match &check {
        Some(c) => c.get("should_block").and_then(Value::as_bool) == Some(true),
        None => !covering.is_empty() && whitelist.is_empty(),
    };
    let first = covering.first().map(|c| {
        if c.source == "denylist" {
            format!("the denylist entry {}", c.target)
        } else {
            format!("the {} block {}", c.source, c.target)
        }
    });
    let verdict = match (refused, first) {
        (true, Some(by)) => format!("blocked by {by}"),
        (true, None) => format!("refused: {reason}"),
        (false, Some(by)) if !whitelist.is_empty() => {
            format!("not refused: {by} covers it, but it is whitelisted")
        }
        (false, Some(by)) if reason.contains("blocking_mode 0") => format!(
            "not refused: {by} covers it, but blocking_mode is 0 (refusals are only logged)"
        ),
        (false, Some(by)) if check.is_some() => {
            format!("not refused: {by} covers it, but it is allowlisted (configuration)")
        }
        (false, Some(by)) => format!("not refused: {by} covers it"),
        (false, None) if reason.starts_with("credentials") => {
            "not blocked (a protected route covers /: its requests need credentials)".to_string()
        }
        (false, None) => "not blocked".to_string(),
    };
    Why {
        ip: ip.to_string(),
        refused,
        verdict,
        blocks: covering,
        whitelist,
        check,
        check_note,
        events: all.into_iter().take(EVENTS_SHOWN).collect(),
    }
}

fn when(t: Option<f64>, now: f64) -> String {
    t.map_or("-".to_string(), |t| {
        format!("{} ({})", clock::date(t), clock::relative(t, now))
    })
}

/// `why` for people.
pub fn render(w: &Why, now: f64) -> String {
    let mut s = format!("{}: {}\n", w.ip, w.verdict);
    let mut items: Vec<(&str, String)> = Vec::new();
    for c in &w.blocks {
        items.push(("block", format!("{} (source {})", c.target, c.source)));
        if !c.reason.is_empty() {
            items.push(("reason", c.reason.clone()));
        }
        if let Some(t) = &c.trip {
            let mut rule = format!("{} ({})", t.rule, t.kind);
            if t.threshold > 0.0 {
                rule.push_str(&format!(
                    ": {} of {} in a {} window",
                    t.count,
                    t.threshold,
                    crate::duration::format(t.window as u64)
                ));
            }
            items.push(("rule", rule));
            if !t.request.is_empty() {
                items.push(("request", t.request.clone()));
            }
        }
        if let Some(n) = c.offence {
            items.push(("offence", n.to_string()));
        }
        if let Some(a) = &c.action {
            items.push(("action", a.clone()));
        }
        let since = match (c.source.as_str(), c.since) {
            ("denylist", _) => "the configuration (denylist)".to_string(),
            (_, None) => "- (its event is no longer kept)".to_string(),
            (_, t) => when(t, now),
        };
        items.push(("since", since));
        let until = if c.permanent {
            "never (permanent)".to_string()
        } else {
            when(c.expires, now)
        };
        items.push(("until", until));
        if c.source != "denylist" {
            items.push(("to lift it", format!("warden unblock {}", c.target)));
        }
    }
    for e in &w.whitelist {
        items.push((
            "whitelisted",
            format!(
                "{} (entry {}, {}){}",
                text(e, "value"),
                match text(e, "id") {
                    id if id.is_empty() => "-".to_string(),
                    id => id,
                },
                text(e, "source"),
                match text(e, "description") {
                    d if d.is_empty() => String::new(),
                    d => format!(": {d}"),
                }
            ),
        ));
    }
    match (&w.check, &w.check_note) {
        (Some(c), _) => {
            items.push(("threat score", format!("{}/100", num(c, "threat_score"))));
            let allowed = c.get("allowed") == Some(&Value::Bool(true));
            let verdict = if allowed { "allowed" } else { "refused" };
            let reason = text(c, "reason");
            items.push((
                "check",
                if reason == verdict {
                    reason
                } else {
                    format!("{verdict} ({reason})")
                },
            ));
        }
        (None, Some(note)) => items.push(("check", note.clone())),
        (None, None) => {}
    }
    if !items.is_empty() {
        s.push_str(&indent(&pairs(&items)));
    }
    if w.events.is_empty() {
        s.push_str("\nno events recorded for it\n");
    } else {
        let mut oldest_first = w.events.clone();
        oldest_first.reverse();
        s.push_str(&format!("\nlatest events ({}):\n", w.events.len()));
        s.push_str(&events::render(&oldest_first, false));
    }
    s
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

/// Asks the API for what it knows about `ip`.
pub fn gather(api: &Api, ip: &Target) -> Result<Evidence, Error> {
    let blocks = api.get(blocks::PATH)?;
    let whitelist = api.get("/security/whitelist")?;
    let mut evs = Vec::new();
    for t in targets(ip, &blocks) {
        evs.push(api.get(&with_query(
            events::PATH,
            &[
                ("limit", Some(EVENTS_PER_TARGET.to_string())),
                ("ip", Some(t)),
            ],
        ))?);
    }
    let check = match api.post_answer("/security/check", &json!({ "ip": ip.to_string() })) {
        Ok(a) if a.body.get("allowed").is_some() => Ok(a.body),
        Ok(a) => Err(format!(
            "no verdict: /security/check answered {}{} (it names a client only for \
             a trusted proxy: list this host in trusted_proxies)",
            a.status,
            match text(&a.body, "error") {
                e if e.is_empty() => String::new(),
                e => format!(" \"{e}\""),
            }
        )),
        Err(e) => return Err(e),
    };
    Ok(Evidence {
        blocks,
        whitelist,
        events: evs,
        check,
    })
}

/// `warden why <ip>`: exits [`exit::BLOCKED`] when the address is refused.
pub fn run(api: &Api, ip: &str, json: bool) -> Result<i32, Error> {
    let target = Target::parse_address(ip).map_err(Error::usage)?;
    let w = assess(&target, &gather(api, &target)?);
    if json {
        out(&pretty(&serde_json::to_value(&w).unwrap_or(Value::Null)))?;
    } else {
        out(&render(&w, clock::now()))?;
    }
    Ok(if w.refused { exit::BLOCKED } else { exit::OK })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: f64 = 1_796_630_400.0;

    fn ip(s: &str) -> Target {
        Target::parse_address(s).unwrap()
    }

    fn evidence() -> Evidence {
        Evidence {
            blocks: json!({"blocked_ips": [
                {"expires": null, "ip": "203.0.113.0/24", "permanent": true,
                 "reason": "denylist", "remaining": null, "source": "denylist"},
                {"expires": NOW + 172_500.0, "ip": "192.0.2.9", "permanent": false,
                 "reason": "not_found: 10 in 2m", "remaining": 172_500, "source": "auto"},
                {"expires": NOW + 3_600.0, "ip": "198.51.100.0/24", "permanent": false,
                 "reason": "scan", "remaining": 3_600, "source": "manual"}
            ], "total": 3}),
            whitelist: json!({"whitelist": [
                {"id": 1, "type": "ip", "value": "198.51.100.7", "description": "ops",
                 "source": "api"},
                {"id": 2, "type": "path", "value": "/health", "source": "api"}
            ], "total": 2}),
            events: vec![json!({"events": [
                {"action": "blocked for 2d (offence 2)", "count": 10, "ip": "192.0.2.9",
                 "method": "GET", "path": "/nope", "rule": "not_found", "status": 404,
                 "threshold": 10, "time": NOW - 300.0, "type": "suspicious",
                 "user_agent": "curl", "window": 120},
                {"action": "unblocked", "count": 0, "ip": "192.0.2.9", "method": "",
                 "path": "", "rule": "manual", "status": 0, "threshold": 0,
                 "time": NOW - 3_000.0, "type": "blocked_ip", "user_agent": "",
                 "window": 0},
                {"action": "blocked for 1d", "count": 10, "ip": "192.0.2.9",
                 "method": "GET", "path": "/x", "rule": "not_found", "status": 404,
                 "threshold": 10, "time": NOW - 4_000.0, "type": "suspicious",
                 "user_agent": "curl", "window": 120}
            ], "total": 3})],
            check: Ok(
                json!({"allowed": false, "ip": "192.0.2.9", "reason": "blocked: auto",
                             "should_block": true, "threat_score": 100}),
            ),
        }
    }

    #[test]
    fn offences() {
        assert_eq!(offence("blocked for 2d (offence 2)"), 2);
        assert_eq!(offence("blocked permanently (offence 12)"), 12);
        assert_eq!(offence("blocked for 1d"), 1);
    }

    #[test]
    fn targets_asked_about() {
        let ev = evidence();
        assert_eq!(targets(&ip("192.0.2.9"), &ev.blocks), ["192.0.2.9"]);
        assert_eq!(
            targets(&ip("198.51.100.7"), &ev.blocks),
            ["198.51.100.7", "198.51.100.0/24"]
        );
        // the denylist makes no events
        assert_eq!(targets(&ip("203.0.113.5"), &ev.blocks), ["203.0.113.5"]);
        assert_eq!(
            targets(&ip("2001:db8:1:2::7"), &json!({})),
            ["2001:db8:1:2::7", "2001:db8:1:2::/64"]
        );
    }

    #[test]
    fn an_automatic_block() {
        let w = assess(&ip("192.0.2.9"), &evidence());
        assert!(w.refused);
        assert_eq!(w.verdict, "blocked by the auto block 192.0.2.9");
        assert_eq!(w.blocks.len(), 1);
        let c = &w.blocks[0];
        assert_eq!(c.since, Some(NOW - 300.0));
        assert_eq!(c.offence, Some(2));
        assert_eq!(c.trip.as_ref().unwrap().rule, "not_found");
        assert_eq!(
            render(&w, NOW),
            "\
192.0.2.9: blocked by the auto block 192.0.2.9
  block         192.0.2.9 (source auto)
  reason        not_found: 10 in 2m
  rule          not_found (suspicious): 10 of 10 in a 2m window
  request       GET /nope 404
  offence       2
  action        blocked for 2d (offence 2)
  since         2026-12-07 07:55:00Z (5m ago)
  until         2026-12-09 07:55:00Z (in 1d23h)
  to lift it    warden unblock 192.0.2.9
  threat score  100/100
  check         refused (blocked: auto)

latest events (3):
TIME (UTC)            TYPE        IP         RULE       COUNT        ACTION                      REQUEST
2026-12-07 06:53:20Z  suspicious  192.0.2.9  not_found  10/10 in 2m  blocked for 1d              GET /x 404
2026-12-07 07:10:00Z  blocked_ip  192.0.2.9  manual                  unblocked
2026-12-07 07:55:00Z  suspicious  192.0.2.9  not_found  10/10 in 2m  blocked for 2d (offence 2)  GET /nope 404
"
        );
    }

    #[test]
    fn a_whitelisted_address_in_a_blocked_network() {
        let mut ev = evidence();
        ev.check = Ok(
            json!({"allowed": true, "reason": "allowed", "should_block": false,
                             "threat_score": 0}),
        );
        ev.events = vec![json!({"events": [
            {"action": "blocked for 1h", "count": 0, "ip": "198.51.100.0/24", "rule": "manual",
             "threshold": 0, "time": NOW - 60.0, "type": "blocked_ip", "window": 0}
        ]})];
        let w = assess(&ip("198.51.100.7"), &ev);
        assert!(!w.refused);
        assert_eq!(
            w.verdict,
            "not refused: the manual block 198.51.100.0/24 covers it, but it is whitelisted"
        );
        assert_eq!(w.blocks[0].since, Some(NOW - 60.0));
        assert_eq!(
            (w.blocks[0].offence, w.blocks[0].trip.is_none()),
            (None, true)
        );
        let text = render(&w, NOW);
        assert!(
            text.contains("  whitelisted   198.51.100.7 (entry 1, api): ops\n"),
            "{text}"
        );
        assert!(
            text.contains("  since         2026-12-07 07:59:00Z (1m ago)\n"),
            "{text}"
        );
    }

    #[test]
    fn the_denylist_and_no_check() {
        let mut ev = evidence();
        ev.check = Err("no verdict: /security/check answered 403".into());
        ev.events = vec![];
        let w = assess(&ip("203.0.113.5"), &ev);
        assert!(w.refused);
        assert_eq!(w.verdict, "blocked by the denylist entry 203.0.113.0/24");
        assert_eq!((w.blocks[0].since, w.blocks[0].offence), (None, None));
        let text = render(&w, NOW);
        assert!(
            text.contains("  since   the configuration (denylist)\n"),
            "{text}"
        );
        assert!(text.contains("  until   never (permanent)\n"));
        assert!(!text.contains("to lift it"));
        assert!(text.contains("  check   no verdict: /security/check answered 403\n"));
        assert!(text.ends_with("\nno events recorded for it\n"));
    }

    #[test]
    fn not_blocked_and_refused_without_a_block() {
        let mut ev = evidence();
        ev.events = vec![];
        ev.check = Ok(
            json!({"allowed": true, "reason": "allowed", "should_block": false,
                             "threat_score": 40}),
        );
        let w = assess(&ip("192.0.2.200"), &ev);
        assert_eq!((w.refused, w.verdict.as_str()), (false, "not blocked"));
        assert!(render(&w, NOW).contains("  threat score  40/100\n"));
        ev.check = Ok(
            json!({"allowed": false, "reason": "reputation 20", "should_block": true,
                             "threat_score": 80}),
        );
        let w = assess(&ip("192.0.2.200"), &ev);
        assert_eq!(
            (w.refused, w.verdict.as_str()),
            (true, "refused: reputation 20")
        );
        ev.check = Ok(
            json!({"allowed": true, "reason": "allowed (blocking_mode 0)",
                             "should_block": false, "threat_score": 100}),
        );
        let w = assess(&ip("192.0.2.9"), &ev);
        assert!(!w.refused);
        assert!(w
            .verdict
            .ends_with("but blocking_mode is 0 (refusals are only logged)"));
        ev.check = Ok(
            json!({"allowed": true, "reason": "allowed", "should_block": false,
                             "threat_score": 0}),
        );
        let w = assess(&ip("192.0.2.9"), &ev);
        assert!(w.verdict.ends_with("but it is allowlisted (configuration)"));
    }

    #[test]
    fn json_for_scripts() {
        let w = assess(&ip("192.0.2.9"), &evidence());
        let v = serde_json::to_value(&w).unwrap();
        assert_eq!(v["refused"], true);
        assert_eq!(v["blocks"][0]["offence"], 2);
        assert_eq!(v["blocks"][0]["trip"]["type"], "suspicious");
        assert_eq!(v["blocks"][0]["since"], NOW - 300.0);
        assert_eq!(v["check"]["threat_score"], 100);
    }
}
