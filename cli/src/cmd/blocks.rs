//! `warden blocks`, `warden block`, `warden unblock`:
//! `GET`, `POST /security/blocked-ips`, `DELETE /security/blocked-ips/<target>`.

use super::{list, num, pretty, target_arg, text};
use crate::args::Source;
use crate::client::Api;
use crate::clock;
use crate::duration;
use crate::error::{exit, Error};
use crate::table::Table;
use crate::{out, warn};
use serde_json::{json, Value};

/// The API's path of the blocks.
pub const PATH: &str = "/security/blocked-ips";

/// When a block ends, for people: `never`, or the date and how long from now.
pub fn expiry(b: &Value, now: f64) -> (String, String) {
    if b.get("permanent").and_then(Value::as_bool) == Some(true) {
        return ("never".to_string(), "-".to_string());
    }
    let expires = num(b, "expires");
    let left = (expires - now).max(0.0).round() as u64;
    (clock::date(expires), duration::format(left))
}

/// The table of `blocks` (the API's `blocked_ips`).
pub fn render(blocks: &[Value], now: f64) -> String {
    if blocks.is_empty() {
        return "no blocks\n".to_string();
    }
    let mut t =
        Table::new(&["TARGET", "SOURCE", "EXPIRES (UTC)", "LEFT", "REASON"]).max_width(4, 60);
    for b in blocks {
        let (expires, left) = expiry(b, now);
        t.row(vec![
            text(b, "ip"),
            text(b, "source"),
            expires,
            left,
            text(b, "reason"),
        ]);
    }
    let n = blocks.len();
    format!("{}{n} block{}\n", t.render(), if n == 1 { "" } else { "s" })
}

/// The blocks of `source` (all without one).
pub fn filter(blocks: &[Value], source: Option<Source>) -> Vec<Value> {
    blocks
        .iter()
        .filter(|b| {
            source.is_none_or(|s| b.get("source").and_then(Value::as_str) == Some(s.as_str()))
        })
        .cloned()
        .collect()
}

/// `warden blocks [--source S]`.
pub fn list_blocks(api: &Api, source: Option<Source>, json: bool) -> Result<i32, Error> {
    let res = api.get(PATH)?;
    let blocks = filter(list(&res, "blocked_ips"), source);
    if json {
        out(&pretty(
            &json!({ "blocked_ips": blocks, "total": blocks.len() }),
        ))?;
    } else {
        out(&render(&blocks, clock::now()))?;
    }
    Ok(exit::OK)
}

/// The body of a block request (the duration checked and sent in seconds,
/// 0 = permanent, as the API means it).
pub fn request(target: &str, for_: Option<&str>, reason: Option<String>) -> Result<Value, Error> {
    let t = target_arg(target)?;
    let secs = match for_ {
        None => 0,
        Some(d) => {
            let s = duration::parse(d).map_err(|e| Error::usage(format!("--for: {e}")))?;
            if s == 0 {
                return Err(Error::usage(format!(
                    "--for: '{d}' is no time at all; leave --for out for a permanent block"
                )));
            }
            s
        }
    };
    let mut body = json!({ "ip": t.to_string(), "duration": secs });
    if let Some(r) = reason {
        body["reason"] = Value::String(r);
    }
    Ok(body)
}

/// What a block did, for people.
pub fn blocked_line(res: &Value, now: f64) -> String {
    let ip = text(res, "ip");
    let (expires, left) = expiry(res, now);
    // the API's own count, taken when it made the block
    let left = res
        .get("remaining")
        .and_then(Value::as_u64)
        .map_or(left, duration::format);
    let mut s = if expires == "never" {
        format!("blocked {ip} permanently")
    } else {
        format!("blocked {ip} for {left} (until {expires})")
    };
    let reason = text(res, "reason");
    if !reason.is_empty() {
        s.push_str(&format!(": {reason}"));
    }
    s.push('\n');
    s
}

/// `warden block <target> [--for D] [--reason R]`.
pub fn block(
    api: &Api,
    target: &str,
    for_: Option<&str>,
    reason: Option<String>,
    json: bool,
) -> Result<i32, Error> {
    let body = request(target, for_, reason)?;
    let res = api.post(PATH, &body)?;
    if let Some(w) = res.get("warning").and_then(Value::as_str) {
        warn(w);
    }
    if json {
        out(&pretty(&res))?;
    } else {
        out(&blocked_line(&res, clock::now()))?;
    }
    Ok(exit::OK)
}

/// `warden unblock <target>`.
pub fn unblock(api: &Api, target: &str, json: bool) -> Result<i32, Error> {
    let t = target_arg(target)?;
    let res = api.delete(&format!("{PATH}/{t}"))?;
    if json {
        out(&pretty(&res))?;
    } else {
        out(&format!("unblocked {}\n", text(&res, "ip")))?;
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: f64 = 1_796_630_400.0;

    fn sample() -> Vec<Value> {
        // the API's view (t/11-api.t)
        vec![
            json!({"expires": null, "ip": "203.0.113.0/24", "permanent": true,
                   "reason": "denylist", "remaining": null, "source": "denylist"}),
            json!({"expires": NOW + 3600.0, "ip": "198.51.100.0/24", "permanent": false,
                   "reason": "scan", "remaining": 3600, "source": "manual"}),
            json!({"expires": NOW + 86_399.0, "ip": "2001:db8:1:2::/64", "permanent": false,
                   "reason": "not_found: 10 in 2m", "remaining": 86_399, "source": "auto"}),
        ]
    }

    #[test]
    fn the_table() {
        assert_eq!(
            render(&sample(), NOW),
            "\
TARGET             SOURCE    EXPIRES (UTC)         LEFT    REASON
203.0.113.0/24     denylist  never                 -       denylist
198.51.100.0/24    manual    2026-12-07 09:00:00Z  1h      scan
2001:db8:1:2::/64  auto      2026-12-08 07:59:59Z  23h59m  not_found: 10 in 2m
3 blocks
"
        );
        assert_eq!(render(&[], NOW), "no blocks\n");
    }

    #[test]
    fn filtered_by_source() {
        let s = sample();
        let auto = filter(&s, Some(Source::Auto));
        assert_eq!(auto.len(), 1);
        assert_eq!(auto[0]["ip"], "2001:db8:1:2::/64");
        assert_eq!(filter(&s, Some(Source::Manual))[0]["ip"], "198.51.100.0/24");
        assert_eq!(filter(&s, None).len(), 3);
    }

    #[test]
    fn block_requests() {
        assert_eq!(
            request("198.51.100.7", Some("1h"), Some("scan".into())).unwrap(),
            json!({"ip": "198.51.100.7", "duration": 3600, "reason": "scan"})
        );
        assert_eq!(
            request("10.1.2.3/8", None, None).unwrap(),
            json!({"ip": "10.0.0.0/8", "duration": 0})
        );
        let e = request("10.0.0.300", Some("1h"), None).unwrap_err();
        assert_eq!(e.message, "invalid IP address or CIDR '10.0.0.300'");
        let e = request("10.0.0.1", Some("1 hour"), None).unwrap_err();
        assert!(e.message.starts_with("--for: invalid duration '1 hour'"));
        let e = request("10.0.0.1", Some("0s"), None).unwrap_err();
        assert!(e.message.contains("leave --for out"));
    }

    #[test]
    fn what_a_block_did() {
        let res = json!({"expires": NOW + 3600.0, "ip": "192.0.2.7", "message": "blocked",
                         "permanent": false, "reason": "scan", "remaining": 3600,
                         "source": "manual"});
        assert_eq!(
            blocked_line(&res, NOW),
            "blocked 192.0.2.7 for 1h (until 2026-12-07 09:00:00Z): scan\n"
        );
        // a second later, the API's count still says what was asked for
        assert_eq!(
            blocked_line(&res, NOW + 1.0),
            "blocked 192.0.2.7 for 1h (until 2026-12-07 09:00:00Z): scan\n"
        );
        let res = json!({"expires": null, "ip": "192.0.2.7", "permanent": true, "reason": ""});
        assert_eq!(blocked_line(&res, NOW), "blocked 192.0.2.7 permanently\n");
    }
}
