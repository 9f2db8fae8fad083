//! The admin API's policies in the shared dict: the whitelist, protected
//! routes, site policies and real-time capture, kept as one JSON document
//! under the key [`KEY`] (so that a change is written at once or not at
//! all).
//!
//! ```text
//! { "next_id": 4,
//!   "whitelist": [ { "id": 1, "type": "ip", "value": "10.0.0.0/8",
//!                    "description": "...", "created": 1763700000 } ],
//!   "routes":    [ { "id": 2, "path": "/admin", "method": "ALL",
//!                    "auth_type": "basic", "credentials": "...",
//!                    "deployment": "my-app", "realm": "warden",
//!                    "created": ... } ],
//!   "sites":     { "my-app": { "enabled": true, "rate_limit": 50,
//!                              "allowed_ips": [...],
//!                              "blocked_paths": [...] } },
//!   "capture":   { "enabled": true, "since": 1763700000 } }
//! ```
//!
//! A change ([`Edit`]) is validated, then takes a lock in the dict ([`LOCK`],
//! so that two workers' changes do not overwrite each other), edits the
//! document, has it compiled with the options (which validates
//! everything), stores it and journals [`crate::blocks::journal::POLICY`]:
//! every worker recompiles it before its next request is decided. The
//! whole change is one call that never yields, so the lock is held for
//! microseconds; a caller that finds it taken by another worker
//! ([`Update::Busy`]) waits a little and tries again (in Lua: `ngx.sleep`),
//! and gives up on its last try.

use serde_json::{json, Map, Value};

use crate::blocks::journal::{self, Replica};
use crate::error::{Error, Kind};
use crate::options::number;
use crate::policy::{route_entry, site_entry, site_name, whitelist_entry, PolicyError};
use crate::store::{Dict, DictError, Store, Value as DictValue};

/// The dict key of the document.
pub const KEY: &str = "p";
/// The dict key of the lock a change holds.
pub const LOCK: &str = "p|lock";
/// Seconds a lock outlives a holder that was killed.
pub const LOCK_TTL_S: f64 = 5.0;

/// A list of entries with ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum List {
    /// `whitelist`: addresses, networks and paths.
    Whitelist,
    /// `routes`: protected routes.
    Routes,
}

impl List {
    /// The list's key in the document.
    pub fn key(self) -> &'static str {
        match self {
            List::Whitelist => "whitelist",
            List::Routes => "routes",
        }
    }

    /// What one entry is called in messages.
    pub fn what(self) -> &'static str {
        match self {
            List::Whitelist => "whitelist entry",
            List::Routes => "protected route",
        }
    }
}

/// One change of the document, as the admin API asks for it.
#[derive(Clone, Debug, PartialEq)]
pub enum Edit {
    /// Adds an entry (the request's body) to a list, with a fresh id; a
    /// whitelist entry already there is a conflict.
    Add(List, Value),
    /// Removes the entry with this id from a list.
    Remove(List, u64),
    /// Sets a site's policy (name, body).
    PutSite(String, Value),
    /// Removes a site's policy set through the API.
    DeleteSite(String),
    /// Turns real-time capture on or off.
    Capture(bool),
}

/// The outcome of [`update`].
#[derive(Clone, Debug, PartialEq)]
pub enum Update {
    /// The change is made: what the admin API answers with.
    Done(Value),
    /// Another worker holds the lock: wait a little, then try again.
    Busy,
}

fn invalid(e: PolicyError) -> Error {
    Error::invalid(e.field(), e.to_string())
}

impl Edit {
    /// Validates and normalizes what the edit adds (no lock needed).
    fn entry(&self) -> Result<Option<Value>, Error> {
        match self {
            Edit::Add(List::Whitelist, body) => whitelist_entry(body).map(Some).map_err(invalid),
            Edit::Add(List::Routes, body) => route_entry(body).map(Some).map_err(invalid),
            Edit::PutSite(name, body) => {
                site_name(name, "name").map_err(|e| Error::invalid("deployment", e.to_string()))?;
                site_entry(body).map(Some).map_err(invalid)
            }
            _ => Ok(None),
        }
    }

    /// Applies the edit to `doc` (normalized); `entry`: from
    /// [`Edit::entry`], `id`: a fresh id, `now_s`: the time.
    fn apply(
        &self,
        doc: &mut Map<String, Value>,
        entry: Option<Value>,
        id: u64,
        now_s: u64,
    ) -> Result<Value, Error> {
        match self {
            Edit::Add(list, _) => {
                let Some(Value::Object(mut n)) = entry else {
                    return Err(Error::internal("an entry must be an object"));
                };
                let entries = array(doc, list.key());
                if *list == List::Whitelist {
                    if let Some(e) = entries.iter().find(|e| {
                        e.get("type") == n.get("type") && e.get("value") == n.get("value")
                    }) {
                        return Err(Error::new(
                            Kind::Conflict,
                            "value",
                            format!(
                                "{} is already in the {} (id {})",
                                n.get("value").and_then(Value::as_str).unwrap_or(""),
                                list.key(),
                                show_id(e.get("id"))
                            ),
                        ));
                    }
                }
                n.insert("id".into(), json!(id));
                n.insert("created".into(), json!(now_s));
                entries.push(Value::Object(n.clone()));
                doc.insert("next_id".into(), json!(id + 1));
                Ok(Value::Object(n))
            }
            Edit::Remove(list, id) => {
                let entries = array(doc, list.key());
                match entries.iter().position(|e| same_id(e.get("id"), *id)) {
                    Some(i) => {
                        entries.remove(i);
                        Ok(json!({"id": id, "message": format!("{} {id} deleted", list.what())}))
                    }
                    None => Err(Error::new(
                        Kind::NotFound,
                        "id",
                        format!("no {} with id {id}", list.what()),
                    )),
                }
            }
            Edit::PutSite(name, _) => {
                let site = entry.unwrap_or(Value::Null);
                object(doc, "sites").insert(name.clone(), site.clone());
                Ok(site)
            }
            Edit::DeleteSite(name) => match object(doc, "sites").remove(name) {
                Some(_) => Ok(json!({"deployment": name, "message": "deleted"})),
                None => Err(Error::new(
                    Kind::NotFound,
                    "deployment",
                    format!("no security policy for deployment '{name}' set through the API"),
                )),
            },
            Edit::Capture(enabled) => {
                let c = json!({"enabled": enabled, "since": now_s});
                doc.insert("capture".into(), c.clone());
                Ok(c)
            }
        }
    }
}

fn same_id(v: Option<&Value>, id: u64) -> bool {
    v.and_then(Value::as_f64) == Some(id as f64)
}

fn show_id(v: Option<&Value>) -> String {
    match v {
        Some(Value::Number(n)) => n.as_f64().map_or_else(|| n.to_string(), number),
        Some(other) => other.to_string(),
        None => "nil".into(),
    }
}

fn array<'a>(doc: &'a mut Map<String, Value>, key: &str) -> &'a mut Vec<Value> {
    let slot = doc.entry(key).or_insert_with(|| json!([]));
    if !slot.is_array() {
        *slot = json!([]);
    }
    match slot {
        Value::Array(a) => a,
        _ => unreachable!("made an array above"),
    }
}

fn object<'a>(doc: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = doc.entry(key).or_insert_with(|| json!({}));
    if !slot.is_object() {
        *slot = json!({});
    }
    match slot {
        Value::Object(m) => m,
        _ => unreachable!("made an object above"),
    }
}

/// The document as stored, normalized: `whitelist` and `routes` lists,
/// `sites` an object, `next_id` a number.
fn normalize(doc: Value) -> Map<String, Value> {
    let mut m = match doc {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    array(&mut m, "whitelist");
    array(&mut m, "routes");
    object(&mut m, "sites");
    let next = match m.get("next_id") {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    m.insert(
        "next_id".into(),
        match next {
            Some(n) if n.fract() == 0.0 && n >= 0.0 => json!(n as u64),
            Some(n) => json!(n),
            None => json!(1),
        },
    );
    m
}

/// The document in `dict`, normalized (an empty one when there is none).
/// `Kind::Internal` when what is stored is not JSON.
pub fn read(dict: &dyn Dict) -> Result<Value, Error> {
    Ok(Value::Object(read_map(dict)?))
}

fn read_map(dict: &dyn Dict) -> Result<Map<String, Value>, Error> {
    let text = dict
        .get(KEY)
        .map_err(|e| Error::internal(format!("stored policy document: {e}")))?;
    let Some(DictValue::Str(bytes)) = text else {
        return Ok(normalize(Value::Null));
    };
    let doc: Value = serde_json::from_slice(&bytes)
        .map_err(|e| Error::internal(format!("stored policy document: invalid JSON: {e}")))?;
    Ok(normalize(doc))
}

/// Makes the change `edit`: validates it, takes the lock, edits the
/// document, checks it with `check` (the options compiled with it), stores
/// and journals it, then brings this worker up to date.
///
/// `last_try`: the caller will not try again, so a lock held by another
/// worker is an error (`Kind::Unavailable`) instead of [`Update::Busy`].
/// Errors: `Invalid` (a bad entry, or a document that does not compile:
/// the message names the field), `Conflict` (a duplicate whitelist
/// entry), `NotFound` (no such id or site), `Full` (the dict cannot hold
/// the document), `Unavailable` (the lock), `Internal` (a stored document
/// that is not JSON).
pub fn update(
    st: &Store<'_>,
    r: &dyn Replica,
    edit: &Edit,
    check: &dyn Fn(&Value) -> Result<(), PolicyError>,
    last_try: bool,
) -> Result<Update, Error> {
    let entry = edit.entry()?;
    let pid = DictValue::Num(f64::from(std::process::id()));
    match st.dict.safe_add(LOCK, &pid, LOCK_TTL_S) {
        Ok(()) => {}
        Err(DictError::Exists) if !last_try => return Ok(Update::Busy),
        Err(DictError::Exists) => {
            return Err(Error::new(
                Kind::Unavailable,
                "",
                "cannot change the policy: another change holds the lock",
            ))
        }
        Err(e) => {
            return Err(Error::new(
                Kind::Unavailable,
                "",
                format!("cannot change the policy: {e}"),
            ))
        }
    }
    let res = locked(st, r, edit, entry, check);
    let _ = st.dict.delete(LOCK);
    let res = res?;
    journal::sync_logged(st, r);
    Ok(Update::Done(res))
}

fn locked(
    st: &Store<'_>,
    r: &dyn Replica,
    edit: &Edit,
    entry: Option<Value>,
    check: &dyn Fn(&Value) -> Result<(), PolicyError>,
) -> Result<Value, Error> {
    let mut doc = read_map(st.dict)?;
    let id = doc
        .get("next_id")
        .and_then(Value::as_f64)
        .map_or(1, |n| n.max(0.0).floor() as u64);
    let res = edit.apply(&mut doc, entry, id, st.now_ms / 1000)?;
    let doc = Value::Object(doc);
    check(&doc).map_err(invalid)?;
    let text = doc.to_string();
    st.dict
        .safe_set(KEY, &DictValue::from(text), 0.0)
        .map_err(|e| {
            Error::new(
                Kind::Full,
                "",
                format!("shared dict '{}' cannot hold the policy: {e}", st.name()),
            )
        })?;
    journal::write(st, r, journal::POLICY);
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocks::{Block, Change, RecordError};
    use crate::store::mem::{Fixture, Mem};
    use std::cell::Cell;

    #[derive(Default)]
    struct Seq {
        n: Cell<u64>,
        policies: Cell<u32>,
    }

    impl Replica for Seq {
        fn version(&self) -> u64 {
            self.n.get()
        }
        fn take(&self) -> u64 {
            self.n.get() + 1
        }
        fn publish(&self, seq: u64) {
            self.n.set(seq);
        }
        fn applied(&self) -> u64 {
            self.n.get()
        }
        fn set_applied(&self, _: u64) {}
        fn reset(&self) {}
        fn load(&self, k: &str, v: &str) -> Result<(), RecordError> {
            Block::decode(k, v).map(drop)
        }
        fn apply(&self, e: &str) -> Result<(), RecordError> {
            Change::decode(e).map(drop)
        }
        fn commit(&self) {}
        fn reload_policy(&self, _: &Store<'_>) -> Result<(), String> {
            self.policies.set(self.policies.get() + 1);
            Ok(())
        }
    }

    struct Env {
        f: Fixture,
        seq: Seq,
    }

    fn env_of(capacity: usize) -> Env {
        Env {
            f: Fixture::new(capacity),
            seq: Seq::default(),
        }
    }

    fn env() -> Env {
        env_of(100_000)
    }

    impl Env {
        fn edit(&self, e: Edit, last_try: bool) -> Result<Update, Error> {
            let st = self.f.store(1_763_700_000_500);
            let check = |doc: &Value| crate::policy::Policy::compile(&Value::Null, doc).map(drop);
            update(&st, &self.seq, &e, &check, last_try)
        }

        fn done(&self, e: Edit) -> Result<Value, Error> {
            match self.edit(e, true)? {
                Update::Done(v) => Ok(v),
                Update::Busy => panic!("busy on the last try"),
            }
        }
    }

    fn wl(v: &str) -> Edit {
        Edit::Add(List::Whitelist, json!({"type": "ip", "value": v}))
    }

    #[test]
    fn whitelist_entries_get_ids_and_duplicates_conflict() {
        let e = env();
        let a = e.done(wl("192.0.2.9")).unwrap();
        assert_eq!(
            a,
            json!({"id": 1, "type": "ip", "value": "192.0.2.9", "description": "",
                   "created": 1_763_700_000u64})
        );
        let err = e.done(wl(" 192.0.2.9 ")).unwrap_err();
        assert_eq!(
            (err.kind(), err.field(), err.message()),
            (
                Kind::Conflict,
                Some("value"),
                "192.0.2.9 is already in the whitelist (id 1)"
            )
        );
        e.done(wl("10.0.0.0/8")).unwrap();
        assert_eq!(
            e.done(Edit::Remove(List::Whitelist, 1)).unwrap(),
            json!({"id": 1, "message": "whitelist entry 1 deleted"})
        );
        let err = e.done(Edit::Remove(List::Whitelist, 1)).unwrap_err();
        assert_eq!(
            (err.kind().status(), err.field(), err.message()),
            (404, Some("id"), "no whitelist entry with id 1")
        );
        let doc = read(&e.f.dict).unwrap();
        assert_eq!(doc["next_id"], 3);
        assert_eq!(doc["whitelist"][0]["id"], 2);
        // every change is journaled: each worker reloads the policy
        assert_eq!(e.seq.n.get(), 3);
        assert_eq!(e.f.dict.get_text("j|3").unwrap().as_deref(), Some("P"));
        assert_eq!(e.f.dict.get(LOCK).unwrap(), None, "the lock is released");
    }

    #[test]
    fn bad_entries_name_the_field_and_change_nothing() {
        let e = env();
        let err = e
            .done(Edit::Add(
                List::Whitelist,
                json!({"type": "host", "value": "x"}),
            ))
            .unwrap_err();
        assert_eq!(
            (err.kind(), err.field(), err.message()),
            (
                Kind::Invalid,
                Some("type"),
                "type: must be 'ip', 'cidr' or 'path', got 'host'"
            )
        );
        let err = e.done(Edit::PutSite("a b".into(), json!({}))).unwrap_err();
        assert_eq!(err.field(), Some("deployment"));
        assert!(err.message().starts_with("name: must be 1 to 64 letters"));
        let err = e
            .done(Edit::PutSite("shop".into(), json!({"rate_limit": "fast"})))
            .unwrap_err();
        assert_eq!(err.field(), Some("rate_limit"));
        let err = e.done(Edit::DeleteSite("nope".into())).unwrap_err();
        assert_eq!(
            (err.kind(), err.message()),
            (
                Kind::NotFound,
                "no security policy for deployment 'nope' set through the API"
            )
        );
        assert_eq!(e.f.dict.get(KEY).unwrap(), None);
        assert_eq!(e.seq.n.get(), 0);
    }

    #[test]
    fn sites_routes_and_capture() {
        let e = env();
        let s = e
            .done(Edit::PutSite(
                "shop".into(),
                json!({"rate_limit": "600r/m"}),
            ))
            .unwrap();
        assert_eq!(s["rate_limit"], "600r/m");
        let r = e
            .done(Edit::Add(
                List::Routes,
                json!({"path": "/admin", "auth_type": "bearer", "credentials": ["t0k"]}),
            ))
            .unwrap();
        assert_eq!(
            (r["id"].as_u64(), r["realm"].as_str()),
            (Some(1), Some("warden"))
        );
        let c = e.done(Edit::Capture(true)).unwrap();
        assert_eq!(c, json!({"enabled": true, "since": 1_763_700_000u64}));
        assert_eq!(
            e.done(Edit::DeleteSite("shop".into())).unwrap(),
            json!({"deployment": "shop", "message": "deleted"})
        );
        assert_eq!(
            e.done(Edit::Remove(List::Routes, 1)).unwrap()["message"],
            "protected route 1 deleted"
        );
        let doc = read(&e.f.dict).unwrap();
        assert_eq!(doc["capture"]["enabled"], true);
        assert_eq!(doc["sites"], json!({}));
    }

    #[test]
    fn a_held_lock_is_busy_then_unavailable() {
        let e = env();
        e.f.dict.safe_add(LOCK, &DictValue::Num(1.0), 5.0).unwrap();
        assert_eq!(e.edit(wl("192.0.2.1"), false), Ok(Update::Busy));
        let err = e.edit(wl("192.0.2.1"), true).unwrap_err();
        assert_eq!(
            (err.kind().status(), err.message()),
            (
                503,
                "cannot change the policy: another change holds the lock"
            )
        );
        // a killed holder's lock expires
        e.f.dict.set_now(6_100);
        assert!(matches!(
            e.edit(wl("192.0.2.1"), false),
            Ok(Update::Done(_))
        ));
    }

    #[test]
    fn a_document_too_big_for_the_dict_is_refused_whole() {
        let e = env_of(600);
        e.done(wl("192.0.2.1")).unwrap();
        let err = loop {
            match e.done(wl(&format!("10.0.0.{}", e.seq.n.get()))) {
                Ok(_) => {}
                Err(err) => break err,
            }
        };
        assert_eq!(
            (err.kind().status(), err.message()),
            (
                507,
                "shared dict 'warden' cannot hold the policy: no memory"
            )
        );
        assert_eq!(e.f.dict.get(LOCK).unwrap(), None);
    }

    #[test]
    fn stored_documents_are_normalized() {
        let d = Mem::new(10_000);
        assert_eq!(
            read(&d).unwrap(),
            json!({"whitelist": [], "routes": [], "sites": {}, "next_id": 1})
        );
        d.safe_set(
            KEY,
            &DictValue::from(r#"{"whitelist":{},"next_id":"7","capture":{"enabled":true}}"#),
            0.0,
        )
        .unwrap();
        let doc = read(&d).unwrap();
        assert_eq!(
            (doc["next_id"].as_u64(), doc["whitelist"].is_array()),
            (Some(7), true)
        );
        assert_eq!(doc["capture"]["enabled"], true);
        d.safe_set(KEY, &DictValue::from("{"), 0.0).unwrap();
        let err = read(&d).unwrap_err();
        assert_eq!(err.kind(), Kind::Internal);
        assert!(err
            .message()
            .starts_with("stored policy document: invalid JSON"));
    }
}
