//! `warden events`: `GET /security/events?limit=&type=&ip=&since=`, oldest
//! first, and `--follow`, which asks again every interval for what is new.

use super::{num, target_arg, text};
use crate::client::{with_query, Api};
use crate::clock;
use crate::duration;
use crate::error::{exit, Error, Kind};
use crate::table::Table;
use crate::{out, warn};
use serde_json::Value;
use std::collections::HashSet;
use std::time::Duration;

/// The API's path of the events.
pub const PATH: &str = "/security/events";

/// Events asked for by a follower at most per poll.
const FOLLOW_LIMIT: u32 = 1000;

/// What to ask for.
#[derive(Clone, Debug, Default)]
pub struct Query {
    /// `--type` (the API checks it: it owns the list of types).
    pub kind: Option<String>,
    /// `--ip`: an address or a blocked network.
    pub ip: Option<String>,
    /// `--since`: a duration back from now.
    pub since: Option<String>,
    /// `--limit`.
    pub limit: u32,
}

/// `--since` as a time: `now` less the duration.
pub fn since(q: &Query, now: f64) -> Result<Option<u64>, Error> {
    match &q.since {
        Some(s) => {
            let secs = duration::parse(s).map_err(|e| Error::usage(format!("--since: {e}")))?;
            Ok(Some((now - secs as f64).floor().max(0.0) as u64))
        }
        None => Ok(None),
    }
}

/// The request's path for `q`, from time `since`, at most `limit`.
pub fn path(q: &Query, since: Option<u64>, limit: u32) -> Result<String, Error> {
    let ip = match &q.ip {
        Some(s) => Some(target_arg(s)?.to_string()),
        None => None,
    };
    Ok(with_query(
        PATH,
        &[
            ("limit", Some(limit.to_string())),
            ("type", q.kind.clone()),
            ("ip", ip),
            ("since", since.map(|s| s.to_string())),
        ],
    ))
}

/// `count/threshold in window`, as far as the event has them.
pub fn count(e: &Value) -> String {
    let (c, t, w) = (num(e, "count"), num(e, "threshold"), num(e, "window"));
    match (c > 0.0, t > 0.0) {
        (false, _) => String::new(),
        (true, false) => format!("{c}"),
        (true, true) if w > 0.0 => format!("{c}/{t} in {}", duration::format(w as u64)),
        (true, true) => format!("{c}/{t}"),
    }
}

/// The request an event was about: `GET /wp-login.php 404`.
pub fn request(e: &Value) -> String {
    let status = match num(e, "status") {
        s if s > 0.0 => format!("{s}"),
        _ => String::new(),
    };
    [text(e, "method"), text(e, "path"), status]
        .iter()
        .filter(|s| !s.is_empty())
        .cloned()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Column widths kept by `--follow`, whose rows come in parts: an IPv6
/// network, a rule, an action as the detector writes them.
const FOLLOW_WIDTHS: [usize; 6] = [20, 13, 18, 13, 12, 26];

/// The table of `events`, given oldest first (`follow`: with the widths
/// every part of a followed table keeps).
pub fn render(events: &[Value], follow: bool) -> String {
    let mut t = Table::new(&[
        "TIME (UTC)",
        "TYPE",
        "IP",
        "RULE",
        "COUNT",
        "ACTION",
        "REQUEST",
    ])
    .max_width(5, 40)
    .max_width(6, 60);
    if follow {
        t = t.min_widths(&FOLLOW_WIDTHS);
    }
    for e in events {
        t.row(vec![
            clock::date(num(e, "time")),
            text(e, "type"),
            text(e, "ip"),
            text(e, "rule"),
            count(e),
            text(e, "action"),
            request(e),
        ]);
    }
    t.render()
}

/// What `--follow` has printed: the newest time seen, and the events of
/// that second already printed (the API's `since` is in whole seconds).
#[derive(Debug, Default)]
pub struct Follower {
    cursor: f64,
    seen: HashSet<String>,
}

impl Follower {
    /// The `since` to ask for next.
    pub fn since(&self) -> u64 {
        self.cursor.floor() as u64
    }

    /// The events of `newest_first` not printed yet, oldest first.
    pub fn take(&mut self, newest_first: Vec<Value>) -> Vec<Value> {
        let mut fresh = Vec::new();
        for e in newest_first.into_iter().rev() {
            let t = num(&e, "time");
            if t < self.cursor.floor() {
                continue;
            }
            if self.seen.insert(e.to_string()) {
                fresh.push(e);
            }
            self.cursor = self.cursor.max(t);
        }
        let floor = self.cursor.floor();
        self.seen
            .retain(|k| serde_json::from_str::<Value>(k).is_ok_and(|e| num(&e, "time") >= floor));
        fresh
    }
}

/// Prints `events` (oldest first); `follow`: `Some(header)`, whether the
/// table's header is still to print.
fn show(events: &[Value], json: bool, follow: Option<bool>) -> Result<(), Error> {
    if json {
        let mut s = String::new();
        for e in events {
            s.push_str(&e.to_string());
            s.push('\n');
        }
        return out(&s);
    }
    if events.is_empty() {
        return Ok(());
    }
    let table = render(events, follow.is_some());
    if follow != Some(false) {
        out(&table)
    } else {
        // the header was printed with the first events
        out(table.split_once('\n').map_or("", |(_, rows)| rows))
    }
}

/// `warden events [...] [--follow]` (`follow`: the interval).
pub fn run(api: &Api, q: &Query, follow: Option<&str>, json: bool) -> Result<i32, Error> {
    let interval = match follow {
        Some(i) => match duration::parse(i) {
            Ok(s) if s > 0 => Some(Duration::from_secs(s)),
            _ => {
                return Err(Error::usage(format!(
                    "--interval: invalid duration '{i}': use e.g. 2s or 1m, more than 0"
                )))
            }
        },
        None => None,
    };
    let from = since(q, clock::now())?;
    let res = api.get(&path(q, from, q.limit)?)?;
    let events = super::list(&res, "events").to_vec();
    let Some(interval) = interval else {
        let mut oldest_first = events;
        oldest_first.reverse();
        if oldest_first.is_empty() && !json {
            out("no events\n")?;
        } else {
            show(&oldest_first, json, None)?;
        }
        return Ok(exit::OK);
    };
    let mut f = Follower::default();
    let mut header = true;
    let shown = f.take(events);
    show(&shown, json, Some(header))?;
    header &= shown.is_empty();
    let mut lost = false;
    loop {
        std::thread::sleep(interval);
        // from the newest event seen (or what was first asked for)
        let next = Some(f.since()).filter(|s| *s > 0).or(from);
        let p = path(q, next, FOLLOW_LIMIT)?;
        match api.get(&p) {
            Ok(res) => {
                if lost {
                    warn("the admin API answers again");
                    lost = false;
                }
                let shown = f.take(super::list(&res, "events").to_vec());
                show(&shown, json, Some(header))?;
                header &= shown.is_empty();
            }
            Err(e) if e.kind == Kind::Unreachable => {
                if !lost {
                    warn(&format!(
                        "{e}; trying again every {}",
                        duration::format(interval.as_secs())
                    ));
                    lost = true;
                }
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(time: f64, ip: &str, action: &str) -> Value {
        json!({"action": action, "count": 0, "ip": ip, "method": "", "path": "",
               "rule": "manual", "status": 0, "threshold": 0, "time": time,
               "type": "blocked_ip", "user_agent": "", "window": 0})
    }

    #[test]
    fn paths() {
        let q = Query {
            kind: Some("auth_failed".into()),
            ip: Some("2001:db8:1:2:3::1/64".into()),
            since: Some("10m".into()),
            limit: 50,
        };
        let from = since(&q, 1_000_000.5).unwrap();
        assert_eq!(from, Some(999_400));
        assert_eq!(
            path(&q, from, q.limit).unwrap(),
            "/security/events?limit=50&type=auth_failed&ip=2001:db8:1:2::%2F64&since=999400"
        );
        assert_eq!(
            path(&Query::default(), None, 100).unwrap(),
            "/security/events?limit=100"
        );
        assert_eq!(since(&Query::default(), 5.0).unwrap(), None);
        let bad_ip = Query {
            ip: Some("192.0.2.x".into()),
            ..Query::default()
        };
        assert_eq!(
            path(&bad_ip, None, 1).unwrap_err().message,
            "invalid IP address or CIDR '192.0.2.x'"
        );
        let bad_since = Query {
            since: Some("yesterday".into()),
            ..Query::default()
        };
        let e = since(&bad_since, 0.0).unwrap_err();
        assert_eq!(e.kind, Kind::Usage);
        assert!(e
            .message
            .starts_with("--since: invalid duration 'yesterday'"));
    }

    #[test]
    fn the_table() {
        let trip = json!({"action": "blocked for 2d (offence 2)", "count": 10, "ip": "192.0.2.9",
                          "method": "GET", "path": "/wp-login.php", "rule": "not_found",
                          "status": 404, "threshold": 10, "time": 1_796_630_400.25,
                          "type": "suspicious", "user_agent": "curl", "window": 120});
        assert_eq!(
            render(&[ev(1_796_630_399.0, "192.0.2.7", "blocked for 1h"), trip], false),
            "\
TIME (UTC)            TYPE        IP         RULE       COUNT        ACTION                      REQUEST
2026-12-07 07:59:59Z  blocked_ip  192.0.2.7  manual                  blocked for 1h
2026-12-07 08:00:00Z  suspicious  192.0.2.9  not_found  10/10 in 2m  blocked for 2d (offence 2)  GET /wp-login.php 404
"
        );
    }

    #[test]
    fn a_followed_table_keeps_its_columns() {
        let a = render(&[ev(1_796_630_399.0, "192.0.2.7", "unblocked")], true);
        let b = render(
            &[ev(1_796_630_399.0, "2001:db8:1:2::/64", "blocked for 1h")],
            true,
        );
        let col = |t: &str| t.lines().nth(1).unwrap().find("manual").unwrap();
        assert_eq!(col(&a), col(&b));
        assert_eq!(a.lines().next(), b.lines().next());
    }

    #[test]
    fn follow_prints_each_event_once() {
        let mut f = Follower::default();
        // newest first, as the API answers
        let first = f.take(vec![ev(101.5, "b", "x"), ev(100.0, "a", "x")]);
        assert_eq!(
            first.iter().map(|e| text(e, "ip")).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(f.since(), 101);
        // the next poll, since 101: b again, and two new ones (one of them in
        // the same second as b)
        let next = f.take(vec![
            ev(103.0, "d", "x"),
            ev(101.7, "c", "x"),
            ev(101.5, "b", "x"),
        ]);
        assert_eq!(
            next.iter().map(|e| text(e, "ip")).collect::<Vec<_>>(),
            ["c", "d"]
        );
        assert_eq!(f.since(), 103);
        assert!(f.take(vec![ev(103.0, "d", "x")]).is_empty());
        assert!(f.take(vec![]).is_empty());
        // two events alike in the same second are one
        let mut g = Follower::default();
        assert_eq!(g.take(vec![ev(5.0, "a", "x"), ev(5.0, "a", "x")]).len(), 1);
    }

    #[test]
    fn counts_and_requests() {
        assert_eq!(
            count(&json!({"count": 3, "threshold": 5, "window": 120})),
            "3/5 in 2m"
        );
        assert_eq!(count(&json!({"count": 3, "threshold": 0})), "3");
        assert_eq!(count(&json!({"count": 0})), "");
        assert_eq!(
            request(&json!({"method": "POST", "path": "/login", "status": 401})),
            "POST /login 401"
        );
        assert_eq!(request(&json!({"method": "", "path": "", "status": 0})), "");
    }
}
