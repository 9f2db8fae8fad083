//! `security/events`, `security/cleanup` and `security/stats`.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::backend::Backend;
use super::exchange::{Request, Response};
use super::views;
use crate::error::Error;
use crate::events::{Event, Filter, Kind};
use crate::metrics::{Snapshot, Stat};
use crate::options::{duration_arg, Scalar};

/// Events `/security/stats` looks at.
pub const STATS_SAMPLE: usize = 10_000;
/// Offenders and recent threats it shows.
pub const TOP: usize = 10;

/// `GET security/events?limit=&type=&ip=&since=`
pub(super) fn list(b: &dyn Backend, req: &Request) -> Result<Response, Error> {
    let number = |name| -> Result<Scalar<'_>, Error> {
        Ok(req.arg(name)?.map_or(Scalar::Nil, Scalar::of_query))
    };
    let text = |name| -> Result<Scalar<'_>, Error> {
        Ok(req.arg(name)?.map_or(Scalar::Nil, Scalar::Text))
    };
    let f = Filter::read(
        number("limit")?,
        text("type")?,
        text("ip")?,
        number("since")?,
    )?;
    let list: Vec<Value> = b.events(&f)?.iter().map(views::event).collect();
    Ok(Response::json(
        200,
        &json!({ "events": list, "total": list.len() }),
    ))
}

/// `POST security/cleanup {older_than}`
pub(super) fn cleanup(b: &dyn Backend, body: &Map<String, Value>) -> Result<Response, Error> {
    super::only_fields(body, &["older_than"])?;
    let older = match body.get("older_than") {
        None | Some(Value::Null) => {
            return Err(Error::invalid(
                "older_than",
                "older_than is required: seconds, or a duration like '7d'",
            ))
        }
        Some(v) => v,
    };
    let ms = duration_arg(Scalar::of_json(older))
        .map_err(|m| Error::invalid("older_than", format!("older_than: {m}")))?;
    let removed = b.cleanup(ms)?;
    Ok(Response::json(
        200,
        &json!({ "removed": removed, "older_than": views::seconds(ms) }),
    ))
}

/// `/security/stats` from a sample of events (newest first), the
/// counters and the number of blocks.
pub fn stats_view(sample: &[Event], s: &Snapshot, blocked: usize) -> Value {
    let mut by_type: BTreeMap<&str, u64> = Kind::ALL
        .iter()
        .filter(|(k, _)| *k != Kind::Capture && (s.challenge || !k.is_challenge()))
        .map(|(_, n)| (*n, 0))
        .collect();
    let mut by_ip: BTreeMap<&str, u64> = BTreeMap::new();
    let mut recent = Vec::new();
    for e in sample.iter().filter(|e| e.kind != Some(Kind::Capture)) {
        *by_type
            .entry(e.kind.map_or("unknown", |k| k.name()))
            .or_default() += 1;
        *by_ip.entry(&e.ip).or_default() += 1;
        if recent.len() < TOP && e.kind != Some(Kind::BlockedIp) {
            recent.push(views::event(e));
        }
    }
    let mut top: Vec<(&str, u64)> = by_ip.into_iter().collect();
    // most events first, then by address
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    top.truncate(TOP);
    let top: Vec<Value> = top
        .into_iter()
        .map(|(ip, n)| json!({ "ip": ip, "events": n }))
        .collect();
    let totals: Map<String, Value> = Stat::events()
        .filter(|(st, _)| s.challenge || !st.is_challenge())
        .map(|(st, name)| (name.to_string(), s.get(st).into()))
        .collect();
    json!({
        "events_by_type": by_type,
        "events_total": totals,
        "blocked_ips": blocked,
        "recent_threats": recent,
        "top_offenders": top,
        "counters": s.to_json(),
    })
}

/// `GET security/stats`
pub(super) fn stats(b: &dyn Backend) -> Result<Response, Error> {
    let s = b.stats()?;
    let sample = b.events(&Filter {
        limit: STATS_SAMPLE,
        ..Filter::default()
    })?;
    let blocked = b.blocks()?.len();
    Ok(Response::json(200, &stats_view(&sample, &s, blocked)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(ip: &str, kind: Kind) -> Event {
        Event {
            ip: ip.into(),
            kind: Some(kind),
            ..Event::default()
        }
    }

    #[test]
    fn aggregation() {
        let mut sample = vec![
            ev("192.0.2.9", Kind::Capture),
            ev("192.0.2.2", Kind::Suspicious),
            ev("192.0.2.1", Kind::BlockedIp),
            ev("192.0.2.2", Kind::ScanDetected),
            ev("192.0.2.3", Kind::AuthFailed),
            ev("192.0.2.1", Kind::Suspicious),
        ];
        for i in 0..20 {
            sample.push(ev(&format!("198.51.100.{i}"), Kind::RateLimited));
        }
        let mut s = Snapshot::default();
        s.counters[Stat::EventsCapture as usize] = 7;
        let v = stats_view(&sample, &s, 4);
        assert_eq!(
            v["events_by_type"].to_string(),
            r#"{"auth_failed":1,"blocked_ip":1,"rate_limited":20,"scan_detected":1,"suspicious":2}"#
        );
        assert_eq!(v["events_total"]["capture"], 7);
        assert_eq!(v["events_total"].as_object().unwrap().len(), 6);
        assert_eq!(v["blocked_ips"], 4);
        let top = v["top_offenders"].as_array().unwrap();
        assert_eq!(top.len(), TOP);
        assert_eq!(top[0].to_string(), r#"{"events":2,"ip":"192.0.2.1"}"#);
        assert_eq!(top[1].to_string(), r#"{"events":2,"ip":"192.0.2.2"}"#);
        assert_eq!(top[2]["ip"], "192.0.2.3");
        assert_eq!(top[3]["ip"], "198.51.100.0");
        let recent = v["recent_threats"].as_array().unwrap();
        assert_eq!(recent.len(), TOP);
        assert_eq!(recent[0]["type"], "suspicious");
        assert!(recent
            .iter()
            .all(|e| e["type"] != "blocked_ip" && e["type"] != "capture"));
        assert_eq!(v["counters"]["events_capture"], 7);
        let empty = stats_view(&[], &s, 0);
        assert_eq!(empty["top_offenders"], json!([]));
        assert_eq!(empty["recent_threats"], json!([]));
    }
}
