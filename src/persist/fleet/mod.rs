//! The fleet (`redis = { host = ... }`): nginx nodes sharing their blocks
//! through one Redis. This module keeps the fleet's records in the shared
//! dict; [`redis`] has the Redis side (keys, channel, scripts, commands)
//! and [`agent`] the session with Redis that worker 0 runs (Lua only
//! drives its cosockets: `lua/resty/warden/fleet.lua`).
//!
//! Keys:
//! - `r|o|<n>`: outbox entry `n`, a journal entry ([`crate::blocks::Change`])
//!   waiting to be sent to Redis ([`outbox_key`]);
//! - `r|tail`: the last entry queued; `r|head`: the last entry sent;
//! - `r|lost`: changes that could not be queued (the agent then
//!   reconciles by union, which sends Redis every block it lacks);
//! - `r|epoch`: the epoch of the Redis set this node last reconciled with
//!   (kept in the state file too);
//! - `r|node`: this node's name, when not configured (kept across
//!   reloads);
//! - `r|up`: whether the agent is connected.
//!
//! Local changes (`block()`, `unblock()`, the detector; any worker) are
//! queued here ([`queue`]); the agent sends them ([`pending`], [`sent`])
//! and only then drops them, so a change is sent at least once whatever
//! happens to the worker. Changes from other nodes arrive as messages
//! `<node> <entry>` ([`message_for`], [`message`]) and are applied as
//! local changes without being queued again.

pub mod agent;
pub mod redis;

use ahash::AHashSet;

use crate::blocks::Change;
use crate::net::addr::Net;
use crate::store::{Dict, DictError, Level, Quiet, Store, Value};

/// This node's name, when not configured.
pub const NODE: &str = "r|node";
/// Whether the agent is connected.
pub const UP: &str = "r|up";
/// The epoch of the Redis set this node last reconciled with.
pub const EPOCH: &str = "r|epoch";
/// Changes that could not be queued.
pub const LOST: &str = "r|lost";
/// The last outbox entry queued.
pub const TAIL: &str = "r|tail";
/// The last outbox entry sent.
pub const HEAD: &str = "r|head";

/// The dict key of outbox entry `n`.
pub fn outbox_key(n: u64) -> String {
    format!("r|o|{n}")
}

fn num(d: &dyn Dict, key: &str) -> u64 {
    d.get_num(key).ok().flatten().unwrap_or(0.0).max(0.0) as u64
}

/// Sets up the fleet's keys in `new()` and names the node: `configured`
/// when given, else the name kept in the dict, else a new one
/// (`generate`, then kept, so that a reload keeps the node's name).
pub fn init(d: &dyn Dict, configured: Option<&str>, generate: impl FnOnce() -> String) -> String {
    let _ = d.safe_add(LOST, &Value::Num(0.0), 0.0);
    if let Some(name) = configured {
        return name.to_string();
    }
    let generated = generate();
    let _ = d.safe_add(NODE, &Value::from(generated.as_str()), 0.0);
    d.get_text(NODE).ok().flatten().unwrap_or(generated)
}

/// A new node name: the host name (letters, digits, `.`, `-`, `_`) and
/// six random hex digits, e.g. `edge-1-3fa29c`.
pub fn generated_name() -> String {
    let host: String = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .collect();
    let host = if host.is_empty() { "node" } else { &host };
    format!("{host}-{:06x}", random_u64() & 0xff_ffff)
}

/// 64 random bits (the OS's randomness; the clock and the process id if
/// it fails).
pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_ok() {
        return u64::from_le_bytes(b);
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ (u64::from(std::process::id()) << 32)
}

/// Queues a local change (a journal entry) for the agent to send. A
/// change that cannot be queued is counted in `r|lost` and logged (once,
/// then at most every 10 s per worker): the agent will reconcile by
/// union instead.
pub fn queue(st: &Store<'_>, quiet: &Quiet, entry: &str) -> bool {
    let err = match st.incr(TAIL, 1.0, 0.0, 0.0) {
        Ok(n) => match st
            .dict
            .safe_set(&outbox_key(n as u64), &Value::from(entry), 0.0)
        {
            Ok(()) => return true,
            Err(e) => e,
        },
        Err(e) => e,
    };
    let _ = st.incr(LOST, 1.0, 0.0, 0.0);
    quiet.log(
        st.log,
        Level::Err,
        &format!(
            "cannot queue a change for the fleet ({err}); this node will re-send all its blocks"
        ),
        st.now_ms,
    );
    false
}

/// Outbox entries waiting to be sent.
#[derive(Debug, Default, PartialEq)]
pub struct Pending {
    /// The last entry of this batch ([`sent`] takes it).
    pub last: u64,
    /// The entries, decoded.
    pub changes: Vec<(String, Change)>,
}

/// Up to `max` entries waiting in the outbox, oldest first, or None when
/// it is empty. Malformed entries are logged and skipped; missing ones
/// (evicted, never written) are counted as lost.
pub fn pending(st: &Store<'_>, max: u64) -> Result<Option<Pending>, DictError> {
    let head = num(st.dict, HEAD);
    let tail = num(st.dict, TAIL);
    if head >= tail {
        return Ok(None);
    }
    let last = tail.min(head + max.max(1));
    let mut out = Pending {
        last,
        changes: Vec::new(),
    };
    for n in head + 1..=last {
        match st.dict.get_text(&outbox_key(n))? {
            Some(entry) => match Change::decode(&entry) {
                Ok(c) => out.changes.push((entry, c)),
                Err(_) => st.log(
                    Level::Err,
                    &format!("dropping a malformed fleet entry: {entry}"),
                ),
            },
            None => {
                let _ = st.incr(LOST, 1.0, 0.0, 0.0);
            }
        }
    }
    Ok(Some(out))
}

/// Drops the entries up to `last` from the outbox: they are in Redis.
pub fn sent(d: &dyn Dict, last: u64) {
    for n in num(d, HEAD) + 1..=last {
        let _ = d.delete(&outbox_key(n));
    }
    let _ = d.safe_set(HEAD, &Value::Num(last as f64), 0.0);
}

/// Entries queued and not sent yet.
pub fn queued(d: &dyn Dict) -> f64 {
    num(d, TAIL) as f64 - num(d, HEAD) as f64
}

/// Targets waiting in the outbox (not in Redis yet).
pub fn queued_targets(d: &dyn Dict) -> AHashSet<Net> {
    let mut out = AHashSet::new();
    for n in num(d, HEAD) + 1..=num(d, TAIL) {
        if let Some(c) = d
            .get_text(&outbox_key(n))
            .ok()
            .flatten()
            .and_then(|e| Change::decode(&e).ok())
        {
            out.insert(*c.net());
        }
    }
    out
}

/// Changes that could not be queued since the last reconciliation.
pub fn lost(d: &dyn Dict) -> u64 {
    num(d, LOST)
}

/// The epoch this node last reconciled with.
pub fn epoch(d: &dyn Dict) -> Option<String> {
    d.get_text(EPOCH).ok().flatten()
}

/// Records a reconciliation with the Redis set of epoch `epoch`.
pub fn reconciled(d: &dyn Dict, epoch: &str) -> Result<(), DictError> {
    d.safe_set(EPOCH, &Value::from(epoch), 0.0)
}

/// Forgets the lost changes (a reconciliation by union sent them).
pub fn clear_lost(d: &dyn Dict) {
    let n = d.get_num(LOST).ok().flatten().unwrap_or(0.0);
    let _ = d.incr(LOST, -n);
}

/// Records whether the agent is connected.
pub fn set_up(d: &dyn Dict, up: bool) {
    let _ = d.safe_set(UP, &Value::Bool(up), 0.0);
}

/// Whether the agent is connected.
pub fn up(d: &dyn Dict) -> bool {
    matches!(d.get(UP), Ok(Some(Value::Bool(true))))
}

/// The message announcing `node`'s change `entry` (a journal entry) on
/// the channel: `<node> <entry>`.
pub fn message_for(node: &str, entry: &str) -> String {
    format!("{node} {entry}")
}

/// A message from the channel, `<node> <entry>`: the node and the change,
/// or why it is ignored (logged by the caller).
pub fn message(payload: &str) -> Result<(&str, Result<Change, String>), String> {
    let Some((node, entry)) = payload
        .split_once(' ')
        .filter(|(n, _)| !n.is_empty() && !n.contains(char::is_whitespace))
    else {
        return Err(format!("ignoring a malformed fleet message: {payload}"));
    };
    Ok((
        node,
        Change::decode(entry).map_err(|e| format!("ignoring a fleet message from {node}: {e}")),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::mem::Fixture;

    #[test]
    fn the_outbox_keeps_changes_until_they_are_sent() {
        let f = Fixture::new(10_000);
        let (d, lines) = (&f.dict, &f.lines);
        let st = f.store(1_000);
        let quiet = Quiet::default();
        assert_eq!(init(d, None, || "host-abc".into()), "host-abc");
        assert_eq!(
            init(d, None, || "host-def".into()),
            "host-abc",
            "kept across reloads"
        );
        assert_eq!(init(d, Some("a"), || "host-def".into()), "a");
        let g = generated_name();
        let (host, tag) = g.rsplit_once('-').unwrap();
        assert!(
            !host.is_empty() && tag.len() == 6 && u32::from_str_radix(tag, 16).is_ok(),
            "{g}"
        );
        assert!(queue(&st, &quiet, "+|192.0.2.1|0|manual|x"));
        assert!(queue(&st, &quiet, "garbage"));
        assert!(queue(&st, &quiet, "-|192.0.2.2"));
        assert_eq!(queued(d), 3.0);
        let p = pending(&st, 2).unwrap().unwrap();
        assert_eq!(p.last, 2);
        assert_eq!(p.changes.len(), 1);
        assert_eq!(
            lines.take()[0].1,
            "warden: dropping a malformed fleet entry: garbage"
        );
        assert_eq!(queued_targets(d).len(), 2, "192.0.2.1 and 192.0.2.2 wait");
        sent(d, p.last);
        assert_eq!(d.get("r|o|1").unwrap(), None);
        let p = pending(&st, 200).unwrap().unwrap();
        assert_eq!(p.changes[0].1.wire().0, "-");
        sent(d, p.last);
        assert_eq!(pending(&st, 200).unwrap(), None);
        assert_eq!(queued(d), 0.0);
        // a missing entry is lost: the agent will reconcile by union
        d.safe_set(TAIL, &Value::Num(4.0), 0.0).unwrap();
        let p = pending(&st, 200).unwrap().unwrap();
        assert!(p.changes.is_empty());
        assert_eq!(lost(d), 1);
        clear_lost(d);
        assert_eq!(lost(d), 0);
    }

    #[test]
    fn a_change_that_cannot_be_queued_is_lost_and_logged_once() {
        let f = Fixture::new(300);
        let (d, lines) = (&f.dict, &f.lines);
        let st = f.store(1_000);
        let quiet = Quiet::default();
        init(d, Some("a"), String::new);
        let mut queued = 0;
        for i in 0..5 {
            if queue(&st, &quiet, &format!("-|192.0.2.{i}")) {
                queued += 1;
            }
        }
        assert!(queued < 5);
        assert!(lost(d) > 0);
        let lines = lines.take();
        assert_eq!(lines.len(), 1);
        assert_eq!(
            lines[0].1,
            "warden: cannot queue a change for the fleet (no memory); this node will \
             re-send all its blocks"
        );
    }

    #[test]
    fn messages() {
        let m = message_for("b", "+|192.0.2.1|0|manual|x y");
        assert_eq!(m, "b +|192.0.2.1|0|manual|x y");
        let (node, c) = message(&m).unwrap();
        assert_eq!(
            (node, c.unwrap().net().to_string()),
            ("b", "192.0.2.1".into())
        );
        assert_eq!(
            message("nospace").unwrap_err(),
            "ignoring a malformed fleet message: nospace"
        );
        assert_eq!(
            message("b nope").unwrap().1.unwrap_err(),
            "ignoring a fleet message from b: malformed block record 'nope'"
        );
    }
}
