//! `GET security/timeline?range=hour|day`: how many events and blocks
//! there were in each minute of the last hour, or each quarter of an hour
//! of the last day (the dashboard's chart). Read from the event ring, so
//! it covers what the ring still holds (`max_events`).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::backend::Backend;
use super::exchange::{Request, Response};
use crate::error::Error;
use crate::events::{Event, Filter, Kind};

/// A range: its name, the seconds in a bucket, the number of buckets.
const RANGES: [(&str, u64, usize); 2] = [("hour", 60, 60), ("day", 900, 96)];

/// The first and the last second (excluded) of `n` buckets of `step`
/// seconds, the last one holding `now_ms`.
fn window(now_ms: u64, step: u64, n: usize) -> (u64, u64) {
    let to = (now_ms / 1000 / step + 1) * step;
    (to.saturating_sub(step * n as u64), to)
}

/// The buckets of `range` ending with the one holding `now_ms`: per
/// bucket, the events (real-time captures aside), the blocks made
/// ([`Event::made_block`]) and the events of each type. `from` and `to`
/// are seconds since the epoch, `to` excluded.
pub fn timeline_view(events: &[Event], now_ms: u64, range: &str, step: u64, n: usize) -> Value {
    let (from, to) = window(now_ms, step, n);
    let mut all = vec![0u64; n];
    let mut blocks = vec![0u64; n];
    // challenges' kinds only when there are such events
    let mut by_type: BTreeMap<&str, Vec<u64>> = Kind::ALL
        .iter()
        .filter(|(k, _)| *k != Kind::Capture && !k.is_challenge())
        .map(|(_, name)| (*name, vec![0; n]))
        .collect();
    for e in events {
        let t = e.time_ms / 1000;
        if t < from || t >= to || e.kind == Some(Kind::Capture) {
            continue;
        }
        let i = ((t - from) / step) as usize;
        all[i] += 1;
        if e.made_block() {
            blocks[i] += 1;
        }
        match e.kind {
            Some(k) if k.is_challenge() => {
                by_type.entry(k.name()).or_insert_with(|| vec![0; n])[i] += 1
            }
            k => {
                if let Some(v) = by_type.get_mut(k.map_or("unknown", |k| k.name())) {
                    v[i] += 1;
                }
            }
        }
    }
    json!({
        "range": range,
        "step": step,
        "from": from,
        "to": to,
        "events": all,
        "blocks": blocks,
        "by_type": by_type,
    })
}

/// `GET security/timeline[?range=hour|day]`
pub(super) fn timeline(b: &dyn Backend, req: &Request) -> Result<Response, Error> {
    let name = req.arg("range")?.unwrap_or("hour");
    let Some(&(range, step, n)) = RANGES.iter().find(|(r, _, _)| *r == name) else {
        return Err(Error::invalid(
            "range",
            format!("range must be 'hour' or 'day', got '{name}'"),
        ));
    };
    let now = b.now_ms();
    let list = b.events(&Filter {
        limit: 0,
        since_ms: window(now, step, n).0 * 1000,
        ..Filter::default()
    })?;
    Ok(Response::json(
        200,
        &timeline_view(&list, now, range, step, n),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::exchange::{Arg, Reply};
    use crate::admin::fake::Fake;
    use crate::admin::Admin;

    /// The events of every bucket of a timeline answer, summed.
    fn events_in(v: &Value) -> u64 {
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_u64)
            .sum()
    }

    fn ev(time_ms: u64, kind: Kind, action: &str) -> Event {
        Event {
            time_ms,
            ip: "192.0.2.1".into(),
            kind: Some(kind),
            action: action.into(),
            ..Event::default()
        }
    }

    #[test]
    fn buckets() {
        // now: 04:40:15 UTC; the hour's buckets are 03:41 .. 04:40
        let now = 1_763_700_000_000 + 15_000;
        let minute = 60_000;
        let events = [
            ev(now, Kind::BlockedIp, "blocked for 1h"),
            ev(now - 5_000, Kind::BlockedIp, "unblocked"),
            ev(
                now - minute,
                Kind::Suspicious,
                "blocked permanently (offence 2)",
            ),
            ev(now - minute, Kind::Suspicious, "already blocked"),
            ev(now - minute, Kind::Capture, ""),
            ev(
                now - 59 * minute,
                Kind::ScanDetected,
                "monitor: would block",
            ),
            ev(now - 60 * minute, Kind::ScanDetected, "blocked for 1d"),
        ];
        let v = timeline_view(&events, now, "hour", 60, 60);
        assert_eq!(v["step"], 60);
        assert_eq!(v["to"].as_u64().unwrap(), 1_763_700_060);
        assert_eq!(v["from"].as_u64().unwrap(), 1_763_700_060 - 3600);
        let at = |key: &str, i: usize| v[key][i].as_u64().unwrap();
        assert_eq!(v["events"].as_array().unwrap().len(), 60);
        assert_eq!((at("events", 59), at("blocks", 59)), (2, 1));
        assert_eq!((at("events", 58), at("blocks", 58)), (2, 1));
        assert_eq!((at("events", 0), at("blocks", 0)), (1, 0));
        assert_eq!(events_in(&v), 5);
        assert_eq!(v["by_type"]["blocked_ip"][59], 2);
        assert_eq!(v["by_type"]["suspicious"][58], 2);
        assert_eq!(v["by_type"]["scan_detected"][0], 1);
        assert!(v["by_type"].get("capture").is_none());
        assert_eq!(v["by_type"].as_object().unwrap().len(), 5);

        let v = timeline_view(&events, now, "day", 900, 96);
        assert_eq!(v["events"].as_array().unwrap().len(), 96);
        // 04:40:15 is in the quarter from 04:30, 03:40:15 and 03:39:15 in
        // 03:30's
        assert_eq!(v["from"].as_u64().unwrap(), 1_763_700_300 - 86_400);
        assert_eq!((at2(&v, "events", 95), at2(&v, "blocks", 95)), (4, 2));
        assert_eq!((at2(&v, "events", 91), at2(&v, "blocks", 91)), (2, 1));
    }

    fn at2(v: &Value, key: &str, i: usize) -> u64 {
        v[key][i].as_u64().unwrap()
    }

    #[test]
    fn endpoint() {
        let mut b = Fake::new(json!({ "admin_token": "t0ken-0123456789abcdef" }));
        b.events = vec![
            ev(b.now - 1_000, Kind::RateLimited, ""),
            ev(b.now - 7_200_000, Kind::RateLimited, ""),
        ];
        let a = Admin::new(&b.cfg).unwrap().0;
        let get = |query: &str, auth: bool| {
            let mut req = Request {
                method: "GET".into(),
                path: "/api/security/timeline".into(),
                ..Request::default()
            };
            if auth {
                req.authorization = Some("Bearer t0ken-0123456789abcdef".into());
            }
            if let Some((k, v)) = query.split_once('=') {
                req.args.push((k.into(), Arg::Text(v.into())));
            }
            match a.serve(&b, &req) {
                Reply::Done(r) => (r.status, serde_json::from_str::<Value>(&r.body).unwrap()),
                other => panic!("{other:?}"),
            }
        };
        let (status, v) = get("", true);
        assert_eq!((status, v["range"].as_str()), (200, Some("hour")));
        // a second before a whole minute: the last bucket but one
        assert_eq!(v["by_type"]["rate_limited"][58], 1);
        assert_eq!(events_in(&v), 1);
        let (_, v) = get("range=day", true);
        assert_eq!(events_in(&v), 2);
        let (status, v) = get("range=week", true);
        assert_eq!(
            (status, v.to_string()),
            (
                400,
                r#"{"error":"range must be 'hour' or 'day', got 'week'","field":"range"}"#
                    .to_string()
            )
        );
        assert_eq!(get("", false).0, 401);
    }
}
