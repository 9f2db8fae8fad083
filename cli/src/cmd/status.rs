//! `warden status`: `GET /security/stats` (counters, events by type,
//! memory) and `GET /security/blocked-ips` (blocks by source).

use super::{blocks, bytes, list, num, pretty, text};
use crate::client::Api;
use crate::error::{exit, Error};
use crate::out;
use crate::table::{pairs, Table};
use serde_json::{json, Map, Value};

/// Blocks by source: the denylist, manual, auto, then any other.
pub fn by_source(blocks: &[Value]) -> Vec<(String, usize)> {
    let mut out: Vec<(String, usize)> = Vec::new();
    for b in blocks {
        let s = text(b, "source");
        match out.iter_mut().find(|(name, _)| *name == s) {
            Some((_, n)) => *n += 1,
            None => out.push((s, 1)),
        }
    }
    let rank = |s: &str| {
        ["denylist", "manual", "auto"]
            .iter()
            .position(|x| *x == s)
            .unwrap_or(3)
    };
    out.sort_by_key(|(s, _)| rank(s));
    out
}

fn share(used: f64, of: f64) -> String {
    if of > 0.0 {
        format!("{:.0}%", 100.0 * used / of)
    } else {
        "-".to_string()
    }
}

/// The status for people, from the stats and the blocks.
pub fn render(url: &str, stats: &Value, blocks: &[Value]) -> String {
    let c = stats.get("counters").unwrap_or(&Value::Null);
    let mut items: Vec<(&str, String)> = Vec::new();
    items.push(("warden", format!("{} at {url}", text(c, "version"))));
    let sources: Vec<String> = by_source(blocks)
        .iter()
        .map(|(s, n)| format!("{s} {n}"))
        .collect();
    items.push((
        "blocks",
        if sources.is_empty() {
            "0".to_string()
        } else {
            format!("{} ({})", blocks.len(), sources.join(", "))
        },
    ));
    items.push((
        "requests",
        format!(
            "{} passed, {} allowlisted, refused: {} denylist, {} manual, {} auto",
            num(c, "passed"),
            num(c, "allowlisted"),
            num(c, "denylisted"),
            num(c, "blocked_manual"),
            num(c, "blocked_auto"),
        ),
    ));
    let (free, cap) = (num(c, "dict_free_bytes"), num(c, "dict_capacity_bytes"));
    items.push((
        "shared dict",
        format!(
            "{}: {} free of {} ({} used){}",
            text(c, "dict"),
            bytes(free),
            bytes(cap),
            share(cap - free, cap),
            match num(c, "dict_full") {
                n if n > 0.0 => format!("; {n} writes refused (full)"),
                _ => String::new(),
            }
        ),
    ));
    items.push((
        "shared memory",
        format!(
            "{} (detector, events, counters)",
            bytes(num(c, "shm_bytes"))
        ),
    ));
    if c.get("detector_capacity").is_some() {
        let (tracked, capacity) = (num(c, "detector_tracked"), num(c, "detector_capacity"));
        items.push((
            "detector",
            format!(
                "{tracked} of {capacity} clients tracked ({} used, {}); {} trips, {} auto-blocks, {} evictions",
                share(tracked, capacity),
                bytes(num(c, "detector_memory_bytes")),
                num(c, "detector_trips"),
                num(c, "auto_blocks"),
                num(c, "detector_evictions"),
            ),
        ));
    } else {
        items.push(("detector", "off".to_string()));
    }
    items.push((
        "events",
        format!(
            "{} recorded, the last {} kept ({})",
            num(c, "events_recorded"),
            num(c, "events_capacity"),
            bytes(num(c, "events_memory_bytes")),
        ),
    ));
    if let Some(f) = c.get("state_file").and_then(Value::as_str) {
        items.push((
            "state file",
            format!(
                "{f} ({} saves, {} errors)",
                num(c, "state_saves"),
                num(c, "state_save_errors")
            ),
        ));
    }
    if c.get("fleet_node").is_some() {
        items.push((
            "fleet",
            format!(
                "node {} on {}, {}, {} queued",
                text(c, "fleet_node"),
                text(c, "fleet_redis"),
                if c.get("fleet_connected").and_then(Value::as_bool) == Some(true) {
                    "connected"
                } else {
                    "not connected"
                },
                num(c, "fleet_queued"),
            ),
        ));
    }
    let mut s = pairs(&items);

    let in_ring = stats.get("events_by_type").and_then(Value::as_object);
    let total = stats.get("events_total").and_then(Value::as_object);
    let empty = Map::new();
    let mut types: Vec<&String> = total.unwrap_or(&empty).keys().collect();
    for k in in_ring.unwrap_or(&empty).keys() {
        if !types.contains(&k) {
            types.push(k);
        }
    }
    if !types.is_empty() {
        let mut t = Table::new(&["EVENT TYPE", "RECENT", "SINCE START"])
            .right(1)
            .right(2);
        for k in types {
            let get = |m: Option<&Map<String, Value>>| {
                m.and_then(|m| m.get(k.as_str()))
                    .and_then(Value::as_f64)
                    .map_or("-".to_string(), |n| format!("{n}"))
            };
            t.row(vec![k.clone(), get(in_ring), get(total)]);
        }
        s.push('\n');
        s.push_str(&t.render());
    }
    let top = list(stats, "top_offenders");
    if !top.is_empty() {
        let mut t = Table::new(&["TOP OFFENDER", "EVENTS"]).right(1);
        for o in top {
            t.row(vec![text(o, "ip"), text(o, "events")]);
        }
        s.push('\n');
        s.push_str(&t.render());
    }
    s
}

/// `warden status`.
pub fn run(api: &Api, json: bool) -> Result<i32, Error> {
    let stats = api.get("/security/stats")?;
    let listed = api.get(blocks::PATH)?;
    let blocks = list(&listed, "blocked_ips");
    if json {
        let sources: Map<String, Value> = by_source(blocks)
            .into_iter()
            .map(|(s, n)| (s, json!(n)))
            .collect();
        out(&pretty(&json!({
            "url": api.url(),
            "version": stats.get("counters").and_then(|c| c.get("version")),
            "blocks_by_source": sources,
            "stats": stats,
        })))?;
    } else {
        out(&render(api.url(), &stats, blocks))?;
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status() {
        let stats = json!({
            "blocked_ips": 3,
            "counters": {
                "version": "0.1.0", "dict": "warden", "passed": 120, "allowlisted": 3,
                "denylisted": 2, "blocked_manual": 5, "blocked_auto": 7,
                "dict_free_bytes": 3_145_728, "dict_capacity_bytes": 4_194_304,
                "dict_full": 0, "shm_bytes": 6_000_000,
                "detector_tracked": 12, "detector_capacity": 65536,
                "detector_memory_bytes": 21_233_664, "detector_trips": 4,
                "auto_blocks": 2, "detector_evictions": 0,
                "events_recorded": 40, "events_capacity": 10000,
                "events_memory_bytes": 5_760_000
            },
            "events_by_type": {"auth_failed": 1, "blocked_ip": 2},
            "events_total": {"auth_failed": 1, "blocked_ip": 2, "capture": 0},
            "recent_threats": [],
            "top_offenders": [{"events": 3, "ip": "192.0.2.9"}]
        });
        let blocks = vec![
            json!({"ip": "203.0.113.0/24", "source": "denylist"}),
            json!({"ip": "192.0.2.10", "source": "auto"}),
            json!({"ip": "192.0.2.11", "source": "manual"}),
            json!({"ip": "192.0.2.9", "source": "auto"}),
        ];
        assert_eq!(
            render("http://127.0.0.1:8080/api", &stats, &blocks),
            "\
warden         0.1.0 at http://127.0.0.1:8080/api
blocks         4 (denylist 1, manual 1, auto 2)
requests       120 passed, 3 allowlisted, refused: 2 denylist, 5 manual, 7 auto
shared dict    warden: 3.0 MiB free of 4.0 MiB (25% used)
shared memory  5.7 MiB (detector, events, counters)
detector       12 of 65536 clients tracked (0% used, 20.2 MiB); 4 trips, 2 auto-blocks, 0 evictions
events         40 recorded, the last 10000 kept (5.5 MiB)

EVENT TYPE   RECENT  SINCE START
auth_failed       1            1
blocked_ip        2            2
capture           -            0

TOP OFFENDER  EVENTS
192.0.2.9          3
"
        );
    }

    #[test]
    fn optional_parts() {
        let stats = json!({"counters": {"version": "0.1.0", "state_file": "/var/lib/w",
                                         "state_saves": 2, "fleet_node": "n1",
                                         "fleet_redis": "127.0.0.1:6379",
                                         "fleet_connected": true}});
        let s = render("u", &stats, &[]);
        assert!(s.contains("\nblocks         0\n"), "{s}");
        assert!(s.contains("\ndetector       off\n"));
        assert!(s.contains("\nstate file     /var/lib/w (2 saves, 0 errors)\n"));
        assert!(s.contains("\nfleet          node n1 on 127.0.0.1:6379, connected, 0 queued\n"));
        assert!(!s.contains("EVENT TYPE"));
    }
}
