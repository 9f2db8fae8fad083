//! The state file (`state_file = "/var/lib/warden/state"`): blocks and the
//! admin API's policy document kept across a full restart of nginx.
//!
//! The nginx master reads the file at start-up ([`load`]). A worker saves a
//! snapshot every so often, off the request path: it takes the snapshot in
//! its event loop (a copy of the blocks and of the policy document) and
//! hands it to a [`Writer`], whose background thread serializes it and
//! replaces the file atomically ([`write_atomic`]: a temporary file in the
//! same directory, fsync, rename, fsync of the directory). A crash leaves
//! the old file or the new one, never a mix of both.
//!
//! The file is JSON with one block per line, so that it can be read and
//! diffed:
//!
//! ```text
//! {"format":"lua-resty-warden state","version":1,"saved_ms":1700000000000,"fleet_epoch":null,"policy":null,"blocks":[
//! {"target":"192.0.2.7","expires_ms":0,"source":"manual","reason":"abuse"},
//! {"target":"2001:db8::/32","expires_ms":1700000600000,"source":"auto","reason":"scanner"}
//! ]}
//! ```
//!
//! - `saved_ms`: when the snapshot was taken, in ms since the epoch;
//! - `fleet_epoch`: the Redis fleet epoch this node last synchronised
//!   with, or null;
//! - `policy`: the admin API's policy document (an object), or null;
//! - `blocks`: the manual and automatic blocks, `expires_ms` being 0 for a
//!   permanent block. Denylist blocks come from the configuration and are
//!   not saved.
//! - `events` (only when there are any; a file without it has none): the
//!   security events, oldest first, one per line, as
//!   `{"time_ms":...,"type":"blocked_ip","ip":"192.0.2.7","rule":"manual",
//!   "count":0,"threshold":0,"window":0,"status":0,"method":"","path":"",
//!   "user_agent":"","action":"blocked for 1h","reason":"abuse","detail":""}`
//!   (`time_ms`, `type` and `ip` required, the others default to 0 or
//!   empty). Captured requests are not saved.
//!
//! Reading is strict: anything unexpected (a field too many, a duplicate
//! key, a bad target...) makes the whole file corrupt, so that a damaged
//! file is set aside ([`set_aside`]) rather than half applied. Writing is
//! canonical: blocks sorted by target, one block per target, object keys
//! sorted, so the same state always gives the same bytes.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt::{self, Write as _};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::mem::MaybeUninit;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::Instant;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::blocks::{Action, Block, Source};
use crate::error::panic_message;
use crate::events::{Event, Kind as EventKind};
use crate::net::addr::Net;

/// The file's `format` field.
pub const FORMAT: &str = "lua-resty-warden state";
/// The file's `version` field: the only version this build reads and writes.
pub const VERSION: u64 = 1;

/// How many characters of an offending value an error shows.
const SHOWN: usize = 60;

/// What the state file keeps.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct State {
    /// When the snapshot was taken, in ms since the epoch.
    pub saved_ms: u64,
    /// The manual and automatic blocks (see [`serialize`] for what is
    /// written).
    pub blocks: Vec<Block>,
    /// The admin API's policy document (a JSON object) or None.
    pub policy: Option<Value>,
    /// The Redis fleet epoch this node last synchronised with, if any.
    pub fleet_epoch: Option<String>,
    /// The security events (oldest first), without captured requests.
    pub events: Vec<Event>,
}

/// Why a state file could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateError {
    kind: Kind,
    /// The file, when known ([`parse`] alone does not know it).
    path: Option<PathBuf>,
    /// The cause: an io error, or what is wrong with the content.
    detail: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Missing,
    Unreadable,
    Corrupt,
}

impl StateError {
    fn corrupt(detail: impl Into<String>) -> StateError {
        StateError {
            kind: Kind::Corrupt,
            path: None,
            detail: detail.into(),
        }
    }

    /// `missing` (no such file: a first start), `unreadable` (any other io
    /// error: permissions, a directory...) or `corrupt` (bad content).
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            Kind::Missing => "missing",
            Kind::Unreadable => "unreadable",
            Kind::Corrupt => "corrupt",
        }
    }
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            Kind::Missing => "missing state file",
            Kind::Unreadable => "cannot read state file",
            Kind::Corrupt => "corrupt state file",
        };
        match &self.path {
            Some(p) => write!(f, "{what} {}: {}", p.display(), self.detail),
            None => write!(f, "{what}: {}", self.detail),
        }
    }
}

impl std::error::Error for StateError {}

/// A value as error messages show it: strings quoted, control characters
/// escaped, at most [`SHOWN`] characters.
fn shown_str(s: &str) -> String {
    let mut out = String::from("'");
    for (n, c) in s.chars().enumerate() {
        if n == SHOWN {
            out.push_str("...");
            break;
        }
        if c.is_ascii_control() {
            let _ = write!(out, "\\x{:02X}", u32::from(c));
        } else if c.is_control() {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => shown_str(s),
        other => {
            let s = other.to_string();
            if s.chars().count() > SHOWN {
                let cut: String = s.chars().take(SHOWN).collect();
                format!("{cut}...")
            } else {
                s
            }
        }
    }
}

/// A JSON value read strictly: a key repeated in an object is an error
/// (serde_json's own `Value` keeps the last one). Numbers read back exactly
/// as written (serde_json's `float_roundtrip` feature), so repeated saves
/// never drift.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Strict, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_f64<E: de::Error>(self, x: f64) -> Result<Value, E> {
        Number::from_f64(x)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_string()))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Strict::deserialize(d).map(|s| s.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(Strict(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut m = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if m.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "duplicate key {}",
                    shown_str(&key)
                )));
            }
            let Strict(v) = map.next_value()?;
            m.insert(key, v);
        }
        Ok(Value::Object(m))
    }
}

/// The policy as written: an object, or None (null). A policy that is not
/// an object is written as null.
fn policy_out(p: &Option<Value>) -> Option<&Value> {
    match p {
        Some(v @ Value::Object(_)) => Some(v),
        _ => None,
    }
}

/// Of two blocks on the same target, the one kept comes first: the longest
/// lasting (permanent, then the latest expiry), then manual before
/// automatic, then by reason.
fn precedence(a: &Block, b: &Block) -> Ordering {
    let lasting = |b: &Block| (b.expires_ms != 0, std::cmp::Reverse(b.expires_ms));
    let rank = |b: &Block| match b.source {
        Source::Manual => 0,
        Source::Auto => 1,
        Source::Denylist => 2,
    };
    lasting(a)
        .cmp(&lasting(b))
        .then_with(|| rank(a).cmp(&rank(b)))
        .then_with(|| a.reason.cmp(&b.reason))
}

/// The blocks as written, with their canonical target text: denylist blocks
/// left out, sorted by target, one per target (see [`precedence`]).
fn blocks_out(blocks: &[Block]) -> Vec<(String, &Block)> {
    let mut out: Vec<(String, &Block)> = blocks
        .iter()
        .filter(|b| b.source != Source::Denylist)
        // Reparsed so that a network built by hand with host bits set is
        // written (and deduplicated) in its normalized form.
        .filter_map(|b| Some((Net::parse(&b.net.to_string()).ok()?.to_string(), b)))
        .collect();
    out.sort_by(|(ta, a), (tb, b)| ta.cmp(tb).then_with(|| precedence(a, b)));
    out.dedup_by(|later, kept| later.0 == kept.0);
    out
}

/// Appends `v` as JSON. Writing a string or a `Value` into a `Vec` cannot
/// fail (keys are strings, numbers finite); should it ever, null is written.
fn put<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    let mark = out.len();
    if serde_json::to_writer(&mut *out, v).is_err() {
        out.truncate(mark);
        out.extend_from_slice(b"null");
    }
}

/// Appends one event as the file keeps it (fields in [`EVENT_FIELDS`]
/// order).
fn event_out(out: &mut Vec<u8>, e: &Event) {
    let _ = write!(out, "{{\"time_ms\":{},\"type\":", e.time_ms);
    put(out, e.kind.map_or("unknown", EventKind::name));
    for (k, v) in [("ip", &e.ip), ("rule", &e.rule)] {
        let _ = write!(out, ",\"{k}\":");
        put(out, v.as_str());
    }
    let _ = write!(
        out,
        ",\"count\":{},\"threshold\":{},\"window\":{},\"status\":{}",
        e.count, e.threshold, e.window_s, e.status
    );
    for (k, v) in [
        ("method", &e.method),
        ("path", &e.path),
        ("user_agent", &e.user_agent),
        ("action", &e.action),
        ("reason", &e.reason),
        ("detail", &e.detail),
    ] {
        let _ = write!(out, ",\"{k}\":");
        put(out, v.as_str());
    }
    out.push(b'}');
}

/// [`serialize`], also returning how many blocks were written.
fn serialize_counted(s: &State) -> (Vec<u8>, usize) {
    let blocks = blocks_out(&s.blocks);
    let reasons: usize = blocks.iter().map(|(_, b)| b.reason.len()).sum();
    let mut out = Vec::with_capacity(256 + blocks.len() * 96 + reasons);
    out.extend_from_slice(b"{\"format\":");
    put(&mut out, FORMAT);
    let _ = write!(out, ",\"version\":{VERSION},\"saved_ms\":{}", s.saved_ms);
    out.extend_from_slice(b",\"fleet_epoch\":");
    match &s.fleet_epoch {
        Some(e) => put(&mut out, e.as_str()),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"policy\":");
    match policy_out(&s.policy) {
        Some(p) => put(&mut out, p),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"blocks\":[\n");
    for (i, (target, b)) in blocks.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b",\n");
        }
        out.extend_from_slice(b"{\"target\":");
        put(&mut out, target.as_str());
        let _ = write!(
            out,
            ",\"expires_ms\":{},\"source\":\"{}\",\"reason\":",
            b.expires_ms,
            b.source.as_str()
        );
        put(&mut out, b.reason.as_str());
        if b.action == Action::Challenge {
            // written only for a challenge: block lines stay as they were
            out.extend_from_slice(b",\"action\":\"challenge\"");
        }
        out.push(b'}');
    }
    if !blocks.is_empty() {
        out.push(b'\n');
    }
    out.push(b']');
    if !s.events.is_empty() {
        out.extend_from_slice(b",\"events\":[\n");
        for (i, e) in s.events.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b",\n");
            }
            event_out(&mut out, e);
        }
        out.extend_from_slice(b"\n]");
    }
    out.extend_from_slice(b"}\n");
    (out, blocks.len())
}

/// Serializes a state canonically: the same state always gives the same
/// bytes, which [`parse`] reads back.
///
/// The blocks are written one per line, sorted by their canonical target
/// text. What [`parse`] would refuse is left out or normalized: denylist
/// blocks (they come from the configuration) are not written; of several
/// blocks on one target only the longest lasting is (permanent, then the
/// latest expiry, then manual before automatic, then by reason); a policy
/// that is not an object is written as null; object keys come out sorted,
/// and a number in the policy that serde_json would not read back exactly
/// is moved to the nearest one that it does (a few units in the last
/// place).
///
/// ```
/// use warden_core::net::addr::Net;
/// use warden_core::blocks::{Action, Block, Source};
/// use warden_core::persist::state::{parse, serialize, State};
///
/// let block = |t: &str, source| Block {
///     net: Net::parse(t).unwrap(),
///     expires_ms: 0,
///     source,
///     reason: "say \"hi\"".to_string(),
///     action: Action::Block,
/// };
/// let s = State {
///     saved_ms: 5,
///     blocks: vec![block("2001:db8::/32", Source::Auto), block("192.0.2.7", Source::Manual)],
///     policy: Some(serde_json::json!({"b": 1, "a": [true]})),
///     fleet_epoch: None,
///     events: vec![],
/// };
/// let text = String::from_utf8(serialize(&s)).unwrap();
/// assert_eq!(text, r#"{"format":"lua-resty-warden state","version":1,"saved_ms":5,"fleet_epoch":null,"policy":{"a":[true],"b":1},"blocks":[
/// {"target":"192.0.2.7","expires_ms":0,"source":"manual","reason":"say \"hi\""},
/// {"target":"2001:db8::/32","expires_ms":0,"source":"auto","reason":"say \"hi\""}
/// ]}
/// "#);
/// assert_eq!(serialize(&parse(text.as_bytes()).unwrap()), text.as_bytes());
/// ```
pub fn serialize(s: &State) -> Vec<u8> {
    serialize_counted(s).0
}

/// The top-level fields, in the order they are written.
const FIELDS: [&str; 7] = [
    "format",
    "version",
    "saved_ms",
    "fleet_epoch",
    "policy",
    "blocks",
    "events",
];
/// An event's fields, in the order they are written.
const EVENT_FIELDS: [&str; 14] = [
    "time_ms",
    "type",
    "ip",
    "rule",
    "count",
    "threshold",
    "window",
    "status",
    "method",
    "path",
    "user_agent",
    "action",
    "reason",
    "detail",
];
/// A block's fields, in the order they are written.
const BLOCK_FIELDS: [&str; 5] = ["target", "expires_ms", "source", "reason", "action"];

fn field<'a>(m: &'a Map<String, Value>, name: &str) -> Result<&'a Value, String> {
    m.get(name).ok_or_else(|| format!("missing field '{name}'"))
}

fn unknown_field(m: &Map<String, Value>, known: &[&str]) -> Result<(), String> {
    match m.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(format!("unknown field {}", shown_str(k))),
        None => Ok(()),
    }
}

fn integer(m: &Map<String, Value>, name: &str) -> Result<u64, String> {
    let v = field(m, name)?;
    v.as_u64()
        .ok_or_else(|| format!("{name}: expected a non-negative integer, got {}", shown(v)))
}

fn string<'a>(m: &'a Map<String, Value>, name: &str) -> Result<&'a str, String> {
    let v = field(m, name)?;
    v.as_str()
        .ok_or_else(|| format!("{name}: expected a string, got {}", shown(v)))
}

fn block(v: &Value) -> Result<Block, String> {
    let Value::Object(m) = v else {
        return Err(format!("expected an object, got {}", shown(v)));
    };
    unknown_field(m, &BLOCK_FIELDS)?;
    let target = string(m, "target")?;
    let net = Net::parse(target).map_err(|e| format!("target {}: {e}", shown_str(target)))?;
    let expires_ms = integer(m, "expires_ms")?;
    let source = match string(m, "source")? {
        "manual" => Source::Manual,
        "auto" => Source::Auto,
        other => {
            return Err(format!(
                "source {}: expected 'manual' or 'auto'",
                shown_str(other)
            ))
        }
    };
    let reason = string(m, "reason")?.to_string();
    let action = match m.get("action") {
        None => Action::Block,
        Some(_) => {
            let a = string(m, "action")?;
            Action::parse(a).ok_or_else(|| {
                format!("action {}: expected 'block' or 'challenge'", shown_str(a))
            })?
        }
    };
    Ok(Block {
        net,
        expires_ms,
        source,
        reason,
        action,
    })
}

fn event(v: &Value) -> Result<Event, String> {
    let Value::Object(m) = v else {
        return Err(format!("expected an object, got {}", shown(v)));
    };
    unknown_field(m, &EVENT_FIELDS)?;
    let kind = string(m, "type")?;
    let kind = match EventKind::from_name(kind) {
        Some(k) if k != EventKind::Capture => k,
        _ => return Err(format!("type {}: not an event type", shown_str(kind))),
    };
    let text = |k: &str| -> Result<String, String> {
        match m.get(k) {
            None => Ok(String::new()),
            Some(_) => string(m, k).map(str::to_string),
        }
    };
    let num = |k: &str, max: u64| -> Result<u64, String> {
        match m.get(k) {
            None => Ok(0),
            Some(v) => match v.as_u64() {
                Some(n) if n <= max => Ok(n),
                _ => Err(format!(
                    "{k}: expected an integer from 0 to {max}, got {}",
                    shown(v)
                )),
            },
        }
    };
    let u32max = u64::from(u32::MAX);
    Ok(Event {
        time_ms: integer(m, "time_ms")?,
        ip: string(m, "ip")?.to_string(),
        kind: Some(kind),
        rule: text("rule")?,
        count: num("count", u32max)? as u32,
        threshold: num("threshold", u32max)? as u32,
        window_s: num("window", u32max)? as u32,
        status: num("status", 999)? as u16,
        method: text("method")?,
        path: text("path")?,
        user_agent: text("user_agent")?,
        action: text("action")?,
        reason: text("reason")?,
        detail: text("detail")?,
    })
}

fn parse_value(v: &Value) -> Result<State, String> {
    let Value::Object(m) = v else {
        return Err(format!("expected a JSON object, got {}", shown(v)));
    };
    // The format and version first: a file of another kind or version is
    // reported as such, whatever else it holds.
    let format = string(m, "format")?;
    if format != FORMAT {
        return Err(format!(
            "format: expected '{FORMAT}', got {}",
            shown_str(format)
        ));
    }
    let version = field(m, "version")?;
    match version.as_u64() {
        Some(VERSION) => {}
        _ => {
            return Err(format!(
                "version: unsupported version {} (expected {VERSION})",
                shown(version)
            ))
        }
    }
    unknown_field(m, &FIELDS)?;
    let saved_ms = integer(m, "saved_ms")?;
    let fleet_epoch = match field(m, "fleet_epoch")? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => {
            return Err(format!(
                "fleet_epoch: expected null or a string, got {}",
                shown(other)
            ))
        }
    };
    let policy = match field(m, "policy")? {
        Value::Null => None,
        p @ Value::Object(_) => Some(p.clone()),
        other => {
            return Err(format!(
                "policy: expected null or an object, got {}",
                shown(other)
            ))
        }
    };
    let list = match field(m, "blocks")? {
        Value::Array(a) => a,
        other => return Err(format!("blocks: expected an array, got {}", shown(other))),
    };
    let mut seen: HashMap<Net, usize> = HashMap::with_capacity(list.len());
    let mut blocks = Vec::with_capacity(list.len());
    for (i, v) in list.iter().enumerate() {
        let b = block(v).map_err(|e| format!("block {i}: {e}"))?;
        if let Some(first) = seen.insert(b.net, i) {
            return Err(format!(
                "block {i}: target '{}': duplicates block {first}",
                b.net
            ));
        }
        blocks.push(b);
    }
    blocks.sort_by_cached_key(|b| b.net.to_string());
    let events = match m.get("events") {
        None => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, v)| event(v).map_err(|e| format!("event {i}: {e}")))
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => return Err(format!("events: expected an array, got {}", shown(other))),
    };
    Ok(State {
        saved_ms,
        blocks,
        policy,
        fleet_epoch,
        events,
    })
}

/// Parses a state file's bytes. Anything unexpected is an error of kind
/// `corrupt`: bytes that are not UTF-8 or not JSON (a truncated file, a key
/// repeated in an object), another `format`, a `version` other than
/// [`VERSION`], a missing, mistyped or unknown field, a block with a bad
/// target, a source other than `manual` or `auto` or an expiry that is not
/// a non-negative integer, a policy neither null nor an object, two blocks
/// on the same target (`10.0.0.1` and `::ffff:10.0.0.1` included).
///
/// Messages name the offending value (at most 60 characters) and, for a
/// block, its index in the array (from 0). The blocks come back in
/// canonical order (see [`serialize`]).
///
/// ```
/// use warden_core::persist::state::parse;
///
/// let s = parse(br#"{"format":"lua-resty-warden state","version":1,"saved_ms":1700000000000,"fleet_epoch":"e7","policy":null,"blocks":[
/// {"target":"2001:db8::/32","expires_ms":1700000600000,"source":"auto","reason":"scanner"},
/// {"target":"192.0.2.7","expires_ms":0,"source":"manual","reason":"abuse"}
/// ]}"#).unwrap();
/// assert_eq!(s.blocks.len(), 2);
/// assert_eq!(s.blocks[0].net.to_string(), "192.0.2.7");
/// assert_eq!(s.fleet_epoch.as_deref(), Some("e7"));
///
/// let e = parse(br#"{"format":"lua-resty-warden state","version":1,"saved_ms":0,"fleet_epoch":null,"policy":null,"blocks":[
/// {"target":"10.0.0.300","expires_ms":0,"source":"manual","reason":""}
/// ]}"#).unwrap_err();
/// assert_eq!(e.kind_name(), "corrupt");
/// assert_eq!(
///     e.to_string(),
///     "corrupt state file: block 0: target '10.0.0.300': invalid IP address or CIDR '10.0.0.300'"
/// );
/// ```
pub fn parse(bytes: &[u8]) -> Result<State, StateError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(StateError::corrupt("empty file"));
    }
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(StateError::corrupt(format!("not UTF-8 ({e})")));
    }
    let Strict(v) = serde_json::from_slice(bytes).map_err(|e| {
        StateError::corrupt(match e.classify() {
            serde_json::error::Category::Eof => format!("truncated ({e})"),
            serde_json::error::Category::Data => e.to_string(),
            _ => format!("not JSON ({e})"),
        })
    })?;
    parse_value(&v).map_err(StateError::corrupt)
}

/// Reads and parses a state file. A missing file is an error of kind
/// `missing` (nothing saved yet), any other io error (permissions, a
/// directory...) of kind `unreadable`, bad content of kind `corrupt`.
pub fn load(path: &Path) -> Result<State, StateError> {
    let with_path = |mut e: StateError| {
        e.path = Some(path.to_path_buf());
        e
    };
    let bytes = fs::read(path).map_err(|e| {
        with_path(StateError {
            kind: if e.kind() == io::ErrorKind::NotFound {
                Kind::Missing
            } else {
                Kind::Unreadable
            },
            path: None,
            detail: e.to_string(),
        })
    })?;
    parse(&bytes).map_err(with_path)
}

/// `path` with `suffix` appended to its last component.
fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = OsString::from(path.as_os_str());
    s.push(suffix);
    PathBuf::from(s)
}

/// An io error with the same kind, saying what failed.
fn context(e: io::Error, what: String) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Moves a bad state file out of the way, renaming it to
/// `<path>.corrupt-<now_ms>`; returns the new path.
pub fn set_aside(path: &Path, now_ms: u64) -> io::Result<PathBuf> {
    let to = suffixed(path, &format!(".corrupt-{now_ms}"));
    fs::rename(path, &to).map_err(|e| {
        context(
            e,
            format!("cannot rename {} to {}", path.display(), to.display()),
        )
    })?;
    Ok(to)
}

/// Serializes [`write_atomic`] within the process: the temporary file's
/// name is per process.
static WRITING: Mutex<()> = Mutex::new(());

/// Replaces `path` atomically with `bytes`: writes `<path>.tmp-<pid>` in the
/// same directory (created or truncated, mode 0644 before the umask),
/// fsyncs it, renames it over `path`, then fsyncs the directory. On error
/// the temporary file is removed and the error says which step failed and
/// names the file, e.g. `cannot create /x/state.tmp-12: Permission denied
/// (os error 13)`. Calls within one process run one at a time.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let _one_at_a_time = WRITING.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = suffixed(path, &format!(".tmp-{}", std::process::id()));
    if let Err(e) = write_and_rename(&tmp, path, bytes) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| context(e, format!("cannot fsync directory {}", dir.display())))
}

/// The steps of [`write_atomic`] up to the rename.
fn write_and_rename(tmp: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        // only nginx's workers (its owner) and root read it: it holds the
        // admin API's policy
        .mode(0o600)
        .open(tmp)
        .map_err(|e| context(e, format!("cannot create {}", tmp.display())))?;
    // (a temporary file left over by a crash keeps its mode when opened)
    f.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(|e| context(e, format!("cannot chmod {}", tmp.display())))?;
    f.write_all(bytes)
        .map_err(|e| context(e, format!("cannot write {}", tmp.display())))?;
    f.sync_all()
        .map_err(|e| context(e, format!("cannot fsync {}", tmp.display())))?;
    drop(f);
    fs::rename(tmp, path).map_err(|e| {
        context(
            e,
            format!("cannot rename {} to {}", tmp.display(), path.display()),
        )
    })
}

/// Outcome of one background save.
#[derive(Clone, Debug)]
pub struct Saved {
    /// Size of the file written.
    pub bytes: usize,
    /// Blocks written.
    pub blocks: usize,
    /// Time taken by the background thread (serialize and write), in ms.
    pub elapsed_ms: f64,
}

#[derive(Default)]
struct Slot {
    busy: bool,
    outcome: Option<Result<Saved, String>>,
}

#[derive(Default)]
struct Shared {
    slot: Mutex<Slot>,
    idle: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn finish(&self, outcome: Result<Saved, String>) {
        let mut slot = self.lock();
        slot.busy = false;
        slot.outcome = Some(outcome);
        drop(slot);
        self.idle.notify_all();
    }
}

/// A background writer: at most one save in flight.
///
/// The worker calls [`Writer::submit`] with a snapshot, then
/// [`Writer::poll`] from time to time to log the outcome; the thread does
/// the serialization and the disk work.
#[derive(Default)]
pub struct Writer {
    shared: Arc<Shared>,
}

impl fmt::Debug for Writer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer")
            .field("busy", &self.busy())
            .finish()
    }
}

/// One save, in the background thread.
fn save(path: &Path, state: &State) -> Result<Saved, String> {
    let start = Instant::now();
    let (bytes, blocks) = serialize_counted(state);
    write_atomic(path, &bytes).map_err(|e| e.to_string())?;
    Ok(Saved {
        bytes: bytes.len(),
        blocks,
        elapsed_ms: start.elapsed().as_secs_f64() * 1000.0,
    })
}

/// Spawns a thread with every signal blocked, so that nginx's process
/// signals (SIGHUP, SIGQUIT, SIGCHLD, SIGIO...) keep going to the event
/// loop's thread; the caller's own mask is restored before returning.
fn spawn_without_signals(name: &str, f: impl FnOnce() + Send + 'static) -> io::Result<()> {
    let mut all = MaybeUninit::<libc::sigset_t>::uninit();
    let mut old = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: `all` is valid for writes of a sigset_t; sigfillset
    // initializes it (it cannot fail for a valid pointer).
    let filled = unsafe { libc::sigfillset(all.as_mut_ptr()) };
    if filled != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `all` was initialized by sigfillset above and `old` is valid
    // for writes of a sigset_t; on success pthread_sigmask fills `old`.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, all.as_ptr(), old.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    // The new thread inherits the mask in force now: everything blocked.
    let spawned = thread::Builder::new().name(name.to_string()).spawn(f);
    // SAFETY: `old` was filled by the successful pthread_sigmask above;
    // a null old-set pointer is allowed.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, old.as_ptr(), std::ptr::null_mut()) };
    spawned.map(drop)
}

impl Writer {
    /// A writer with nothing in flight.
    pub fn new() -> Writer {
        Writer::default()
    }

    /// Starts saving `state` to `path` in a background thread (serialize
    /// and [`write_atomic`]). Returns false, doing nothing, when a save is
    /// still in flight. A thread that cannot be started is that save's
    /// error (see [`Writer::poll`]).
    pub fn submit(&self, path: PathBuf, state: State) -> bool {
        {
            let mut slot = self.shared.lock();
            if slot.busy {
                return false;
            }
            slot.busy = true;
        }
        let shared = Arc::clone(&self.shared);
        let body = move || {
            let outcome = catch_unwind(AssertUnwindSafe(|| save(&path, &state)))
                .unwrap_or_else(|p| Err(format!("state writer failed: {}", panic_message(&*p))));
            shared.finish(outcome);
        };
        if let Err(e) = spawn_without_signals("warden-state", body) {
            self.shared
                .finish(Err(format!("cannot start the state writer thread: {e}")));
        }
        true
    }

    /// True while a save is in flight.
    pub fn busy(&self) -> bool {
        self.shared.lock().busy
    }

    /// Takes the outcome of the latest finished save: once, None when no
    /// save finished since the last call.
    pub fn poll(&self) -> Option<Result<Saved, String>> {
        self.shared.lock().outcome.take()
    }

    /// Waits for the save in flight, if any, to finish (before a final
    /// synchronous save when a worker exits). Its outcome stays for
    /// [`Writer::poll`].
    pub fn wait(&self) {
        let mut slot = self.shared.lock();
        while slot.busy {
            slot = self
                .shared
                .idle
                .wait(slot)
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;
    use std::collections::BTreeMap;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Duration;

    fn blk(t: &str, expires_ms: u64, source: Source, reason: &str) -> Block {
        Block {
            net: Net::parse(t).unwrap(),
            expires_ms,
            source,
            reason: reason.to_string(),
            action: crate::blocks::Action::Block,
        }
    }

    #[test]
    fn a_challenge_keeps_its_action() {
        let mut c = blk("192.0.2.9", 0, Source::Auto, "rate");
        c.action = Action::Challenge;
        let st = State {
            saved_ms: 1,
            blocks: vec![c.clone(), blk("192.0.2.8", 0, Source::Manual, "x")],
            policy: None,
            fleet_epoch: None,
            events: vec![],
        };
        let text = String::from_utf8(serialize(&st)).unwrap();
        assert!(text.contains(r#""reason":"rate","action":"challenge"}"#));
        assert!(text.contains(r#""reason":"x"}"#));
        let back = parse(text.as_bytes()).unwrap();
        assert!(back.blocks.contains(&c));
        let bad = text.replace(r#""action":"challenge""#, r#""action":"captcha""#);
        assert!(parse(bad.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("captcha"));
    }

    /// A fresh, empty directory for one test.
    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("warden-state-test-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn sample() -> State {
        State {
            saved_ms: 1_700_000_000_123,
            blocks: vec![
                blk("2001:db8::/32", 0, Source::Auto, "scanner: \"sqlmap\""),
                blk("192.0.2.7", 1_700_000_600_000, Source::Manual, "a|b\\c\nd"),
                blk("10.0.0.0/8", 0, Source::Manual, "réseau — 網絡 🚫"),
                blk("2001:db8::1", 42, Source::Auto, "\u{0}\t\u{7f}\u{2028}"),
                blk("::ffff:198.51.100.9", 0, Source::Manual, ""),
            ],
            policy: Some(
                json!({"whitelist": [{"type": "ip", "value": "192.0.2.1"}], "n": -3, "f": 0.5, "z": null}),
            ),
            fleet_epoch: Some("epoch-7|\"x\"".to_string()),
            events: Vec::new(),
        }
    }

    /// The state [`parse`] gives back for `s`, computed independently of
    /// [`serialize`]: no denylist blocks, one per target (the longest
    /// lasting, then manual, then the smallest reason), sorted by target.
    fn expected(s: &State) -> State {
        let mut by_target: BTreeMap<String, Block> = BTreeMap::new();
        for b in s.blocks.iter().filter(|b| b.source != Source::Denylist) {
            let key = b.net.to_string();
            let better = match by_target.get(&key) {
                None => true,
                Some(k) => {
                    let life = |x: &Block| {
                        if x.expires_ms == 0 {
                            u128::MAX
                        } else {
                            x.expires_ms.into()
                        }
                    };
                    let manual = |x: &Block| x.source == Source::Manual;
                    (life(b), manual(b), std::cmp::Reverse(&b.reason))
                        > (life(k), manual(k), std::cmp::Reverse(&k.reason))
                }
            };
            if better {
                by_target.insert(key, b.clone());
            }
        }
        let policy = match &s.policy {
            Some(v @ Value::Object(_)) => Some(v.clone()),
            _ => None,
        };
        State {
            saved_ms: s.saved_ms,
            blocks: by_target.into_values().collect(),
            policy,
            fleet_epoch: s.fleet_epoch.clone(),
            events: s.events.clone(),
        }
    }

    fn corrupt(bytes: &[u8]) -> String {
        let e = parse(bytes).unwrap_err();
        assert_eq!(e.kind_name(), "corrupt", "{e}");
        e.to_string()
    }

    const HEAD: &str = r#"{"format":"lua-resty-warden state","version":1,"saved_ms":0,"fleet_epoch":null,"policy":null,"blocks":["#;

    fn with_blocks(lines: &[&str]) -> String {
        format!("{HEAD}\n{}\n]}}\n", lines.join(",\n"))
    }

    #[test]
    fn events_round_trip_and_are_optional() {
        let e = Event {
            time_ms: 1_700_000_000_000,
            ip: "192.0.2.7".into(),
            kind: Some(EventKind::BlockedIp),
            rule: "manual".into(),
            count: 3,
            window_s: 60,
            status: 403,
            method: "GET".into(),
            path: "/a\"b".into(),
            user_agent: "ua\n".into(),
            action: "refused".into(),
            reason: "abuse é".into(),
            ..Event::default()
        };
        let s = State {
            events: vec![
                e.clone(),
                Event {
                    kind: Some(EventKind::ScanDetected),
                    ..e.clone()
                },
            ],
            ..State::default()
        };
        let text = serialize(&s);
        let t = String::from_utf8(text.clone()).unwrap();
        assert!(
            t.ends_with("\"reason\":\"abuse é\",\"detail\":\"\"}\n]}\n"),
            "{t}"
        );
        let back = parse(&text).unwrap();
        assert_eq!(back.events, s.events);
        assert_eq!(serialize(&back), text);
        // no events: the field is left out, as files written before it
        assert!(!String::from_utf8(serialize(&State::default()))
            .unwrap()
            .contains("events"));
        let head = r#"{"format":"lua-resty-warden state","version":1,"saved_ms":0,"fleet_epoch":null,"policy":null,"blocks":[],"events":["#;
        let ok = parse(
            format!("{head}{{\"time_ms\":5,\"type\":\"suspicious\",\"ip\":\"x\"}}]}}").as_bytes(),
        )
        .unwrap();
        assert_eq!(ok.events[0].kind, Some(EventKind::Suspicious));
        for (body, msg) in [
            (
                r#"{"time_ms":5,"type":"capture","ip":"x"}"#,
                "event 0: type 'capture': not an event type",
            ),
            (
                r#"{"time_ms":5,"type":"suspicious","ip":"x","extra":1}"#,
                "event 0: unknown field 'extra'",
            ),
            (
                r#"{"time_ms":5,"type":"suspicious","ip":"x","status":1000}"#,
                "event 0: status: expected an integer from 0 to 999, got 1000",
            ),
            (
                r#"{"type":"suspicious","ip":"x"}"#,
                "event 0: missing field 'time_ms'",
            ),
        ] {
            let err = parse(format!("{head}{body}]}}").as_bytes()).unwrap_err();
            assert_eq!(err.to_string(), format!("corrupt state file: {msg}"));
        }
    }

    #[test]
    fn round_trip_hosts_ranges_and_reasons() {
        let s = sample();
        let bytes = serialize(&s);
        let back = parse(&bytes).unwrap();
        assert_eq!(back, expected(&s));
        let targets: Vec<String> = back.blocks.iter().map(|b| b.net.to_string()).collect();
        assert_eq!(
            targets,
            [
                "10.0.0.0/8",
                "192.0.2.7",
                "198.51.100.9",
                "2001:db8::/32",
                "2001:db8::1"
            ]
        );
        assert_eq!(back.blocks[1].reason, "a|b\\c\nd");
        assert_eq!(serialize(&back), bytes);
        // The mapped address is written as IPv4.
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.contains(r#"{"target":"198.51.100.9","expires_ms":0"#),
            "{text}"
        );
        // Object keys sorted, one block per line, final newline.
        assert!(
            text.contains(r#""policy":{"f":0.5,"n":-3,"whitelist":"#),
            "{text}"
        );
        assert_eq!(text.lines().count(), 7);
        assert!(text.ends_with("\n]}\n"));

        for (policy, epoch) in [(None, None), (Some(json!({})), Some(String::new()))] {
            let s = State {
                policy,
                fleet_epoch: epoch,
                events: Vec::new(),
                ..State::default()
            };
            let bytes = serialize(&s);
            assert_eq!(parse(&bytes).unwrap(), s);
        }
        assert_eq!(
            serialize(&State::default()),
            br#"{"format":"lua-resty-warden state","version":1,"saved_ms":0,"fleet_epoch":null,"policy":null,"blocks":[
]}
"#
        );
    }

    #[test]
    fn serialize_leaves_out_what_parse_refuses() {
        let s = State {
            blocks: vec![
                blk("10.0.0.1", 5, Source::Auto, "short"),
                blk("::ffff:10.0.0.1", 0, Source::Auto, "permanent"),
                blk("10.0.0.1", 9, Source::Manual, "longer"),
                blk("203.0.113.0/24", 0, Source::Denylist, "configured"),
                blk("198.51.100.0/24", 7, Source::Auto, "b"),
                blk("198.51.100.0/24", 7, Source::Manual, "b"),
                blk("198.51.100.0/24", 7, Source::Manual, "a"),
            ],
            policy: Some(json!([1, 2])),
            ..State::default()
        };
        let back = parse(&serialize(&s)).unwrap();
        assert_eq!(back.policy, None);
        let got: Vec<(String, u64, &str)> = back
            .blocks
            .iter()
            .map(|b| (b.net.to_string(), b.expires_ms, b.reason.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("10.0.0.1".to_string(), 0, "permanent"),
                ("198.51.100.0/24".to_string(), 7, "a"),
            ]
        );
        assert_eq!(back, expected(&s));
        let (_, n) = serialize_counted(&s);
        assert_eq!(n, 2);
    }

    #[test]
    fn policy_numbers_survive_round_trips() {
        // Without serde_json's float_roundtrip this one read back a unit in
        // the last place off, and repeated saves drifted.
        let x = 0.9714285714285715_f64;
        let s = State {
            policy: Some(json!({"rate": x, "big": 1e300, "neg": -x, "int": u64::MAX})),
            ..State::default()
        };
        let once = serialize(&s);
        let back = parse(&once).unwrap();
        assert_eq!(back, expected(&s));
        assert_eq!(back.policy.as_ref().unwrap()["rate"].as_f64(), Some(x));
        assert_eq!(
            back.policy.as_ref().unwrap()["int"].as_u64(),
            Some(u64::MAX)
        );
        assert_eq!(serialize(&back), once);
    }

    #[test]
    fn corrupt_files_name_the_problem() {
        let good = String::from_utf8(serialize(&sample())).unwrap();
        let half = (0..=good.len() / 2)
            .rev()
            .find(|&i| good.is_char_boundary(i))
            .unwrap();
        let block =
            |t: &str| format!(r#"{{"target":"{t}","expires_ms":0,"source":"manual","reason":""}}"#);
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "corrupt state file: empty file"),
            (" \n".to_string(), "empty file"),
            (good[..half].to_string(), "truncated (EOF while parsing"),
            ("[1,2]".to_string(), "expected a JSON object, got [1,2]"),
            ("{\"format\":".to_string(), "truncated"),
            ("{,}".to_string(), "not JSON (key must be a string"),
            (
                good.replace("lua-resty-warden state", "other"),
                "format: expected 'lua-resty-warden state', got 'other'",
            ),
            (
                good.replace("\"version\":1", "\"version\":2"),
                "version: unsupported version 2 (expected 1)",
            ),
            (
                good.replace("\"version\":1,", ""),
                "missing field 'version'",
            ),
            (
                good.replace("\"saved_ms\":1700000000123", "\"saved_ms\":-1"),
                "saved_ms: expected a non-negative integer, got -1",
            ),
            (
                good.replace("\"saved_ms\"", "\"saved\""),
                "unknown field 'saved'",
            ),
            (
                good.replace("\"policy\":{", "\"extra\":1,\"policy\":{"),
                "unknown field 'extra'",
            ),
            (
                good.replace(
                    "\"saved_ms\":1700000000123,",
                    "\"saved_ms\":1,\"saved_ms\":2,",
                ),
                "duplicate key 'saved_ms' at line 1",
            ),
            (
                good.replacen("\"whitelist\"", "\"n\"", 1),
                "duplicate key 'n'",
            ),
            (
                good.replace("\"fleet_epoch\":\"epoch-7|\\\"x\\\"\"", "\"fleet_epoch\":7"),
                "fleet_epoch: expected null or a string, got 7",
            ),
            (
                HEAD.replace("\"policy\":null", "\"policy\":[1]") + "]}",
                "policy: expected null or an object, got [1]",
            ),
            (
                HEAD.replace("\"policy\":null", "\"policy\":\"x\"") + "]}",
                "policy: expected null or an object, got 'x'",
            ),
            (
                HEAD.replace("\"blocks\":[", "\"blocks\":{}}"),
                "blocks: expected an array, got {}",
            ),
            (HEAD.replace(",\"blocks\":[", "}"), "missing field 'blocks'"),
            (
                with_blocks(&[&block("192.0.2.1"), &block("10.0.0.300")]),
                "block 1: target '10.0.0.300': invalid IP address or CIDR '10.0.0.300'",
            ),
            (
                with_blocks(&[&block("10.0.0.0/33")]),
                "block 0: target '10.0.0.0/33': invalid CIDR",
            ),
            (
                with_blocks(&[&block("192.0.2.1").replace("manual", "denylist")]),
                "block 0: source 'denylist': expected 'manual' or 'auto'",
            ),
            (
                with_blocks(&[
                    &block("192.0.2.1").replace("\"expires_ms\":0", "\"expires_ms\":1.5")
                ]),
                "block 0: expires_ms: expected a non-negative integer, got 1.5",
            ),
            (
                with_blocks(&[
                    &block("192.0.2.1").replace("\"expires_ms\":0", "\"expires_ms\":\"0\"")
                ]),
                "block 0: expires_ms: expected a non-negative integer, got '0'",
            ),
            (
                with_blocks(&[&block("192.0.2.1").replace(",\"reason\":\"\"", "")]),
                "block 0: missing field 'reason'",
            ),
            (
                with_blocks(&[&block("192.0.2.1").replace("\"reason\":\"\"", "\"reason\":null")]),
                "block 0: reason: expected a string, got null",
            ),
            (
                with_blocks(&[&block("192.0.2.1").replace("}", ",\"why\":1}")]),
                "block 0: unknown field 'why'",
            ),
            (with_blocks(&["7"]), "block 0: expected an object, got 7"),
            (
                with_blocks(&[
                    &block("10.0.0.0/8"),
                    &block("192.0.2.1"),
                    &block("10.1.2.3/8"),
                ]),
                "block 2: target '10.0.0.0/8': duplicates block 0",
            ),
            (
                with_blocks(&[&block("192.0.2.1"), &block("::ffff:192.0.2.1")]),
                "block 1: target '192.0.2.1': duplicates block 0",
            ),
            (
                with_blocks(&[&block(&"9".repeat(200))]),
                "block 0: target '99999999",
            ),
            (good.clone() + "x", "not JSON (trailing characters"),
        ];
        for (text, want) in cases {
            let msg = corrupt(text.as_bytes());
            assert!(msg.contains(want), "{msg:?} lacks {want:?} for {text:?}");
            assert!(msg.len() < 250, "{msg}");
        }
        let msg = corrupt(b"{\"format\":\"lua-resty-warden state\xff\"}");
        assert!(msg.starts_with("corrupt state file: not UTF-8"), "{msg}");
        let long = corrupt(with_blocks(&[&block(&"9".repeat(200))]).as_bytes());
        assert!(long.contains("...'"), "{long}");
        let deep = "[".repeat(10_000);
        assert!(corrupt(deep.as_bytes()).contains("recursion limit"));
    }

    #[test]
    fn load_missing_unreadable_corrupt_and_set_aside() {
        let dir = scratch("load");
        let path = dir.join("state");
        let e = load(&path).unwrap_err();
        assert_eq!(e.kind_name(), "missing");
        assert!(e
            .to_string()
            .starts_with(&format!("missing state file {}: ", path.display())));

        let e = load(&dir).unwrap_err();
        assert_eq!(e.kind_name(), "unreadable");
        assert!(
            e.to_string()
                .starts_with(&format!("cannot read state file {}: ", dir.display())),
            "{e}"
        );

        fs::write(&path, b"{\"format\":").unwrap();
        let e = load(&path).unwrap_err();
        assert_eq!(e.kind_name(), "corrupt");
        assert!(
            e.to_string()
                .starts_with(&format!("corrupt state file {}: truncated", path.display())),
            "{e}"
        );

        let moved = set_aside(&path, 1_700_000_000_000).unwrap();
        assert_eq!(moved, dir.join("state.corrupt-1700000000000"));
        assert_eq!(names(&dir), ["state.corrupt-1700000000000"]);
        assert_eq!(fs::read(&moved).unwrap(), b"{\"format\":");
        let e = set_aside(&path, 1).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");

        fs::write(&path, serialize(&sample())).unwrap();
        assert_eq!(load(&path).unwrap(), expected(&sample()));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn write_atomic_writes_replaces_and_cleans_up() {
        let dir = scratch("atomic");
        let path = dir.join("state");
        write_atomic(&path, b"one").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"one");
        write_atomic(&path, b"two, longer").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two, longer");
        write_atomic(&path, b"").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"");
        assert_eq!(names(&dir), ["state"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn write_atomic_into_missing_directory_fails_cleanly() {
        let dir = scratch("missing");
        let path = dir.join("absent").join("state");
        let e = write_atomic(&path, b"x").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let msg = e.to_string();
        let tmp = format!("{}.tmp-{}", path.display(), std::process::id());
        assert!(msg.starts_with(&format!("cannot create {tmp}: ")), "{msg}");
        assert!(names(&dir).is_empty());
        // A directory where the file should be: the rename fails, the
        // temporary file is removed.
        let path = dir.join("state");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("keep"), b"").unwrap();
        let e = write_atomic(&path, b"x").unwrap_err();
        assert!(e.to_string().starts_with("cannot rename "), "{e}");
        assert_eq!(names(&dir), ["state"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    fn outcome(w: &Writer) -> Result<Saved, String> {
        let start = Instant::now();
        loop {
            if let Some(o) = w.poll() {
                return o;
            }
            assert!(start.elapsed() < Duration::from_secs(120), "no outcome");
            thread::sleep(Duration::from_millis(2));
        }
    }

    fn big(n: u32) -> State {
        State {
            saved_ms: 1,
            blocks: (0..n)
                .map(|i| Block {
                    net: Net::parse(&Ipv4Addr::from(0x0a00_0000 + i).to_string()).unwrap(),
                    expires_ms: u64::from(i),
                    source: if i % 2 == 0 {
                        Source::Auto
                    } else {
                        Source::Manual
                    },
                    reason: format!("reason {i}"),
                    action: crate::blocks::Action::Block,
                })
                .collect(),
            ..State::default()
        }
    }

    #[test]
    fn writer_saves_in_background() {
        let dir = scratch("writer");
        let path = dir.join("state");
        let w = Writer::new();
        assert!(!w.busy() && w.poll().is_none());
        w.wait(); // nothing in flight: returns at once

        assert!(w.submit(path.clone(), sample()));
        let saved = outcome(&w).unwrap();
        assert!(!w.busy() && w.poll().is_none());
        assert_eq!(saved.blocks, 5);
        assert_eq!(saved.bytes, fs::read(&path).unwrap().len());
        assert!(saved.elapsed_ms >= 0.0);
        assert_eq!(load(&path).unwrap(), expected(&sample()));

        // A large state: a second submit while the first is in flight is
        // refused (when the machine is not faster than a thread start).
        let large = big(200_000);
        assert!(w.submit(path.clone(), large.clone()));
        let was_busy = w.busy();
        let again = w.submit(path.clone(), sample());
        assert!(!(was_busy && again), "accepted a second save while busy");
        w.wait();
        assert!(!w.busy());
        let saved = w.poll().unwrap().unwrap();
        let on_disk = load(&path).unwrap();
        if again {
            assert_eq!(on_disk, expected(&sample()));
        } else {
            assert_eq!(saved.blocks, 200_000);
            assert_eq!(on_disk, expected(&large));
        }
        assert_eq!(names(&dir), ["state"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn writer_refuses_a_second_save_while_busy() {
        let dir = scratch("busy");
        let w = Writer::default();
        w.shared.lock().busy = true; // a save in flight
        assert!(w.busy());
        assert!(!w.submit(dir.join("state"), sample()));
        assert!(w.poll().is_none());
        w.shared.finish(Ok(Saved {
            bytes: 1,
            blocks: 0,
            elapsed_ms: 0.0,
        }));
        w.wait();
        assert_eq!(w.poll().unwrap().unwrap().bytes, 1);
        assert!(names(&dir).is_empty(), "the refused save wrote something");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn writer_reports_errors() {
        let dir = scratch("writer-error");
        let path = dir.join("absent").join("state");
        let w = Writer::new();
        assert!(w.submit(path.clone(), sample()));
        w.wait();
        let e = w.poll().unwrap().unwrap_err();
        assert!(
            e.starts_with("cannot create ") && e.contains(&path.display().to_string()),
            "{e}"
        );
        assert!(names(&dir).is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }

    /// The signals blocked in the calling thread, from /proc.
    fn blocked() -> u64 {
        let status = fs::read_to_string("/proc/thread-self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("SigBlk:")).unwrap();
        u64::from_str_radix(line["SigBlk:".len()..].trim(), 16).unwrap()
    }

    #[test]
    fn writer_thread_blocks_signals() {
        let before = blocked();
        let (tx, rx) = std::sync::mpsc::channel();
        spawn_without_signals("warden-test", move || {
            let _ = tx.send(blocked());
        })
        .unwrap();
        let inside = rx.recv_timeout(Duration::from_secs(60)).unwrap();
        for sig in [
            libc::SIGHUP,
            libc::SIGINT,
            libc::SIGQUIT,
            libc::SIGTERM,
            libc::SIGUSR1,
            libc::SIGUSR2,
            libc::SIGCHLD,
            libc::SIGIO,
            libc::SIGALRM,
            libc::SIGWINCH,
        ] {
            assert!(
                inside & (1 << (sig - 1)) != 0,
                "signal {sig} not blocked: {inside:x}"
            );
        }
        assert_eq!(blocked(), before, "the caller's mask was not restored");
    }

    fn net_text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(|o| Ipv4Addr::from(o).to_string()),
            (any::<[u8; 4]>(), 0u8..=32).prop_map(|(o, l)| format!("{}/{l}", Ipv4Addr::from(o))),
            any::<u128>().prop_map(|a| Ipv6Addr::from(a).to_string()),
            (any::<u128>(), 0u8..=128).prop_map(|(a, l)| format!("{}/{l}", Ipv6Addr::from(a))),
            (any::<[u8; 4]>(), prop::option::of(96u8..=128)).prop_map(|(o, l)| {
                let a = Ipv4Addr::from(o).to_ipv6_mapped();
                l.map_or(a.to_string(), |l| format!("{a}/{l}"))
            }),
            (0u8..4, 0u8..=32).prop_map(|(o, l)| format!("10.0.0.{o}/{l}")),
        ]
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::collection::vec(any::<char>(), 0..12).prop_map(|c| c.into_iter().collect()),
            "[a-z|\"\\\\ ]{0,12}",
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(|x| Number::from_f64(x).map_or(Value::Null, Value::Number)),
            (-1000i32..1000).prop_map(|n| Value::from(f64::from(n) / 8.0)),
            text().prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(text(), inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn states() -> impl Strategy<Value = State> {
        let block = (
            0usize..64,
            prop_oneof![Just(0u64), 1u64..1_000, any::<u64>()],
            prop_oneof![4 => Just(Source::Manual), 4 => Just(Source::Auto), 1 => Just(Source::Denylist)],
            text(),
        );
        (
            any::<u64>(),
            prop::collection::vec(net_text(), 1..12),
            prop::collection::vec(block, 0..24),
            prop::option::of(prop_oneof![
                prop::collection::btree_map(text(), json_value(), 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
                json_value(),
            ]),
            prop::option::of(text()),
        )
            .prop_map(|(saved_ms, pool, blocks, policy, fleet_epoch)| State {
                saved_ms,
                blocks: blocks
                    .into_iter()
                    .map(|(i, expires_ms, source, reason)| Block {
                        // Picked from a small pool: targets repeat.
                        net: Net::parse(&pool[i % pool.len()]).unwrap(),
                        expires_ms,
                        source,
                        reason,
                        action: crate::blocks::Action::Block,
                    })
                    .collect(),
                policy,
                fleet_epoch,
                events: Vec::new(),
            })
    }

    /// What must hold whenever `parse` accepts something.
    fn accepted(s: &State) -> Result<(), TestCaseError> {
        let bytes = serialize(s);
        let back = parse(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&back, s);
        prop_assert_eq!(serialize(&back), bytes);
        Ok(())
    }

    proptest! {
        #[test]
        fn random_states_round_trip(s in states()) {
            let bytes = serialize(&s);
            let back = parse(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&back, &expected(&s));
            prop_assert_eq!(serialize(&back), bytes);
            accepted(&back)?;
        }

        #[test]
        fn parse_never_panics(
            bytes in prop::collection::vec(any::<u8>(), 0..200),
            s in states(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, any::<u8>()), 1..4),
        ) {
            if let Ok(s) = parse(&bytes) {
                accepted(&s)?;
            }
            // A valid file, damaged by a few edits: often corrupt,
            // sometimes still valid (an edit in a reason...).
            let mut file = serialize(&s);
            for (at, op, byte) in edits {
                let i = at.index(file.len() + 1);
                match op {
                    0 if i < file.len() => file[i] = byte,
                    1 if i < file.len() => {
                        file.remove(i);
                    }
                    _ => file.insert(i, byte),
                }
            }
            match parse(&file) {
                Ok(s) => accepted(&s)?,
                Err(e) => {
                    prop_assert_eq!(e.kind_name(), "corrupt");
                    prop_assert!(e.to_string().len() < 400, "{}", e);
                }
            }
        }
    }
}
