//! The JSON shapes the admin API (and the Lua API) show: blocks and
//! events. Keys come out sorted (serde_json's map), as they always have.

use serde_json::{json, Value};

use crate::blocks::Block;
use crate::events::Event;

/// A time or a duration of `ms` milliseconds in seconds: an integer when
/// whole, else a fraction (`1763700000`, `1763700000.25`).
pub fn seconds(ms: u64) -> Value {
    if ms % 1000 == 0 {
        Value::from(ms / 1000)
    } else {
        Value::from(ms as f64 / 1000.0)
    }
}

/// An event.
pub fn event(e: &Event) -> Value {
    let mut v = json!({
        "time": seconds(e.time_ms),
        "ip": e.ip,
        "type": e.kind.map_or("unknown", |k| k.name()),
        "rule": e.rule,
        "count": e.count,
        "threshold": e.threshold,
        "window": e.window_s,
        "status": e.status,
        "method": e.method,
        "path": e.path,
        "user_agent": e.user_agent,
        "action": e.action,
        "reason": e.reason,
    });
    // what the rule saw beyond its count (the scanner pattern, the payload
    // classes), only where there is something
    if !e.detail.is_empty() {
        v["detail"] = Value::from(e.detail.as_str());
    }
    v
}

/// A block at `now_ms`: when it ends and how many whole seconds remain
/// (`null` for a permanent one).
pub fn block(b: &Block, now_ms: u64) -> Value {
    let permanent = b.expires_ms == 0;
    let mut v = json!({
        "ip": b.net.to_string(),
        "reason": b.reason,
        "source": b.source.as_str(),
        "permanent": permanent,
        "expires": if permanent { Value::Null } else { seconds(b.expires_ms) },
        "remaining": if permanent {
            Value::Null
        } else {
            Value::from(b.expires_ms.saturating_sub(now_ms) / 1000)
        },
    });
    // shown for a challenge only: a block's view stays as it was
    if b.action == crate::blocks::Action::Challenge {
        v["action"] = "challenge".into();
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocks::Source;
    use crate::events::Kind;

    #[test]
    fn numbers_and_shapes() {
        assert_eq!(seconds(1_763_700_000_000).to_string(), "1763700000");
        assert_eq!(seconds(1_763_700_000_250).to_string(), "1763700000.25");
        let b = Block {
            net: crate::net::addr::Net::parse("192.0.2.0/24").unwrap(),
            expires_ms: 10_500,
            source: Source::Manual,
            reason: "scan".into(),
            action: crate::blocks::Action::Block,
        };
        assert_eq!(
            block(&b, 1_000).to_string(),
            r#"{"expires":10.5,"ip":"192.0.2.0/24","permanent":false,"reason":"scan","remaining":9,"source":"manual"}"#
        );
        assert_eq!(block(&b, 20_000)["remaining"], 0);
        let p = Block { expires_ms: 0, ..b };
        assert_eq!(
            block(&p, 1_000).to_string(),
            r#"{"expires":null,"ip":"192.0.2.0/24","permanent":true,"reason":"scan","remaining":null,"source":"manual"}"#
        );
        let e = Event {
            time_ms: 2_000,
            ip: "192.0.2.1".into(),
            kind: Some(Kind::Suspicious),
            rule: "not_found".into(),
            ..Event::default()
        };
        assert_eq!(
            event(&e).to_string(),
            r#"{"action":"","count":0,"ip":"192.0.2.1","method":"","path":"","reason":"","rule":"not_found","status":0,"threshold":0,"time":2,"type":"suspicious","user_agent":"","window":0}"#
        );
    }
}
