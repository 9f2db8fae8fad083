//! A backend in memory, for the admin API's unit tests.

use std::cell::{Cell, RefCell};

use serde_json::{json, Value};

use super::accesslog::Line;
use super::backend::Backend;
use crate::blocks::{Block, Source};
use crate::config::Config;
use crate::error::{Error, Kind};
use crate::events::{Event, Filter};
use crate::metrics::{Snapshot, Stat};
use crate::net::addr::{Addr, Net};
use crate::net::client::{Client, Resolver};
use crate::net::lists::NetSet;
use crate::ops::Trip;
use crate::policy::decision::{Asked, Decision};
use crate::policy::doc::{Edit, List, Update};
use crate::store::Level;

pub struct Fake {
    pub cfg: Config,
    pub now: u64,
    pub blocks: RefCell<Vec<Block>>,
    pub doc: RefCell<Value>,
    pub events: Vec<Event>,
    pub logs: RefCell<Vec<String>>,
    pub decision: RefCell<Decision>,
    pub decided: Cell<usize>,
    pub score: u8,
    /// Refuse blocks and policy changes as a full dict would.
    pub full: Cell<bool>,
    pub trusted: Vec<Net>,
    pub allowlist: Vec<Net>,
    /// Lines whose path starts with /trip trip a rule.
    pub observed: RefCell<Vec<String>>,
    pub counters: [u64; Stat::COUNT],
    /// `blocks()` panics.
    pub panic: Cell<bool>,
    /// Policy changes find the lock taken this many times.
    pub busy: Cell<u32>,
}

impl Fake {
    pub fn new(opts: Value) -> Fake {
        let cfg = Config::from_value(&opts).unwrap();
        let denylist = cfg
            .denylist
            .iter()
            .map(|n| Block {
                net: *n,
                expires_ms: 0,
                source: Source::Denylist,
                reason: "denylist".into(),
                action: crate::blocks::Action::Block,
            })
            .collect();
        Fake {
            trusted: cfg.trusted_proxies.clone(),
            allowlist: cfg.allowlist.clone(),
            cfg,
            now: 1_763_700_000_000,
            blocks: RefCell::new(denylist),
            doc: RefCell::new(json!({})),
            events: Vec::new(),
            logs: RefCell::new(Vec::new()),
            decision: RefCell::new(Decision::Pass),
            decided: Cell::new(0),
            score: 0,
            full: Cell::new(false),
            observed: RefCell::new(Vec::new()),
            counters: [0; Stat::COUNT],
            panic: Cell::new(false),
            busy: Cell::new(0),
        }
    }

    fn no_room(&self) -> Result<(), Error> {
        if self.full.get() {
            return Err(Error::new(
                Kind::Full,
                "",
                "shared dict 'warden' is full (no memory)",
            ));
        }
        Ok(())
    }

    fn edit(&self, f: impl FnOnce(&mut Value) -> Result<(), Error>) -> Result<(), Error> {
        self.no_room()?;
        let mut doc = self.doc.borrow_mut();
        for k in ["whitelist", "routes"] {
            if !doc[k].is_array() {
                doc[k] = json!([]);
            }
        }
        if !doc["sites"].is_object() {
            doc["sites"] = json!({});
        }
        f(&mut doc)
    }

    fn add(&self, key: &str, mut entry: Value, dup: bool) -> Result<Value, Error> {
        let mut out = Value::Null;
        self.edit(|doc| {
            let id = doc["next_id"].as_u64().unwrap_or(1);
            let list = doc[key].as_array_mut().unwrap();
            if dup {
                if let Some(e) = list
                    .iter()
                    .find(|e| e["type"] == entry["type"] && e["value"] == entry["value"])
                {
                    return Err(Error::new(
                        Kind::Conflict,
                        "value",
                        format!(
                            "{} is already in the whitelist (id {})",
                            entry["value"].as_str().unwrap(),
                            e["id"]
                        ),
                    ));
                }
            }
            entry["id"] = id.into();
            entry["created"] = (self.now / 1000).into();
            list.push(entry.clone());
            doc["next_id"] = (id + 1).into();
            out = entry.clone();
            Ok(())
        })?;
        Ok(out)
    }

    fn remove(&self, list: List, id: u64) -> Result<Value, Error> {
        let what = list.what();
        self.edit(|doc| {
            let entries = doc[list.key()].as_array_mut().unwrap();
            match entries.iter().position(|e| e["id"] == id) {
                Some(i) => {
                    entries.remove(i);
                    Ok(())
                }
                None => Err(Error::new(
                    Kind::NotFound,
                    "id",
                    format!("no {what} with id {id}"),
                )),
            }
        })?;
        Ok(json!({ "id": id, "message": format!("{what} {id} deleted") }))
    }
}

impl Backend for Fake {
    fn config(&self) -> &Config {
        &self.cfg
    }

    fn version(&self) -> &str {
        "9.9.9"
    }

    fn now_ms(&self) -> u64 {
        self.now
    }

    fn log(&self, level: Level, msg: &str) {
        self.logs.borrow_mut().push(format!("{level:?} {msg}"));
    }

    fn blocks(&self) -> Result<Vec<Block>, Error> {
        assert!(!self.panic.get(), "the fake panics");
        Ok(self.blocks.borrow().clone())
    }

    fn block(
        &self,
        target: &Net,
        duration_ms: u64,
        reason: &str,
        action: crate::blocks::Action,
    ) -> Result<(), Error> {
        self.no_room()?;
        let mut blocks = self.blocks.borrow_mut();
        blocks.retain(|b| b.net != *target || b.source == Source::Denylist);
        blocks.push(Block {
            net: *target,
            expires_ms: if duration_ms == 0 {
                0
            } else {
                self.now + duration_ms
            },
            source: Source::Manual,
            reason: reason.into(),
            action,
        });
        Ok(())
    }

    fn unblock(&self, target: &Net) -> Result<(), Error> {
        let mut blocks = self.blocks.borrow_mut();
        match blocks.iter().position(|b| b.net == *target) {
            Some(i) if blocks[i].source == Source::Denylist => Err(Error::new(
                Kind::Conflict,
                "ip",
                format!("{target} is in the denylist (configuration), not a block"),
            )),
            Some(i) => {
                blocks.remove(i);
                Ok(())
            }
            None => Err(Error::new(
                Kind::NotFound,
                "ip",
                format!("{target} is not blocked"),
            )),
        }
    }

    fn allowlisted(&self, a: Addr) -> bool {
        self.allowlist.iter().any(|n| n.contains(a))
    }

    fn trusted(&self, a: Addr) -> bool {
        self.trusted.iter().any(|n| n.contains(a))
    }

    fn policy_document(&self) -> Result<Value, Error> {
        let doc = self.doc.borrow();
        if doc.is_string() {
            return Err(Error::internal("stored policy document: invalid JSON"));
        }
        Ok(doc.clone())
    }

    fn routes(&self) -> Result<Vec<Value>, Error> {
        let configured = self
            .cfg
            .policy
            .get("protected_routes")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let api = self.doc.borrow()["routes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok(configured
            .into_iter()
            .chain(api)
            .map(|r| {
                let mut v = json!({
                    "path": r["path"],
                    "method": "ALL",
                    "auth_type": r["auth_type"],
                    "credentials": ["<redacted>"],
                    "deployment": "",
                    "realm": "warden",
                });
                if let Some(id) = r.get("id") {
                    v["id"] = id.clone();
                }
                v
            })
            .collect())
    }

    fn edit_policy(&self, edit: &Edit, last_try: bool) -> Result<Update, Error> {
        if self.busy.get() > 0 {
            if last_try {
                return Err(Error::new(
                    Kind::Unavailable,
                    "",
                    "cannot change the policy: another change holds the lock",
                ));
            }
            self.busy.set(self.busy.get() - 1);
            return Ok(Update::Busy);
        }
        let done = |r: Result<(), Error>| r.map(|()| Update::Done(Value::Null));
        match edit {
            Edit::Add(list, e) => self
                .add(list.key(), e.clone(), *list == List::Whitelist)
                .map(Update::Done),
            Edit::Remove(list, id) => self.remove(*list, *id).map(Update::Done),
            Edit::PutSite(name, site) => done(self.edit(|doc| {
                doc["sites"][name.as_str()] = site.clone();
                Ok(())
            })),
            Edit::DeleteSite(name) => {
                let deleted =
                    self.edit(
                        |doc| match doc["sites"].as_object_mut().unwrap().remove(name) {
                            Some(_) => Ok(()),
                            None => Err(Error::new(
                                Kind::NotFound,
                                "deployment",
                                format!(
                                "no security policy for deployment '{name}' set through the API"
                            ),
                            )),
                        },
                    );
                deleted.map(|()| Update::Done(json!({ "deployment": name, "message": "deleted" })))
            }
            Edit::Capture(enabled) => {
                let since = self.now / 1000;
                done(self.edit(|doc| {
                    doc["capture"] = json!({ "enabled": enabled, "since": since });
                    Ok(())
                }))
            }
        }
    }

    fn refresh(&self) -> Result<(), Error> {
        Ok(())
    }

    fn events(&self, f: &Filter) -> Result<Vec<Event>, Error> {
        Ok(self
            .events
            .iter()
            .filter(|e| f.kind.is_none() || e.kind == f.kind)
            .filter(|e| f.ip.as_deref().is_none_or(|ip| e.ip == ip))
            .filter(|e| e.time_ms >= f.since_ms)
            .take(if f.limit == 0 { usize::MAX } else { f.limit })
            .cloned()
            .collect())
    }

    fn cleanup(&self, older_than_ms: u64) -> Result<usize, Error> {
        let before = self.now.saturating_sub(older_than_ms);
        Ok(self.events.iter().filter(|e| e.time_ms < before).count())
    }

    fn stats(&self) -> Result<Snapshot, Error> {
        Ok(Snapshot {
            version: self.version().into(),
            dict: self.cfg.dict.clone(),
            counters: self.counters,
            blocks: self.blocks.borrow().len() as u64,
            dict_free_bytes: 4096,
            dict_capacity_bytes: 8192,
            ..Snapshot::default()
        })
    }

    fn counter(&self, s: Stat) -> Result<u64, Error> {
        Ok(self.counters[s as usize])
    }

    fn dict_free_bytes(&self) -> Result<u64, Error> {
        Ok(4096)
    }

    fn resolve_client(
        &self,
        peer: Addr,
        x_forwarded_for: Option<&str>,
        x_real_ip: Option<&str>,
    ) -> Client {
        Resolver::new(NetSet::new(&self.trusted)).resolve(
            peer,
            || x_forwarded_for.map(str::as_bytes),
            || x_real_ip.map(str::as_bytes),
        )
    }

    fn threat_score(&self, a: Addr) -> Result<u8, Error> {
        if self.allowlisted(a) {
            return Ok(0);
        }
        if self.blocks.borrow().iter().any(|b| b.net.contains(a)) {
            return Ok(100);
        }
        Ok(self.score)
    }

    fn decide(&self, _client: Addr, _req: &Asked<'_>) -> Result<Decision, Error> {
        self.decided.set(self.decided.get() + 1);
        Ok(self.decision.borrow().clone())
    }

    fn observe_line(&self, client: Addr, line: &Line<'_>) -> Result<Option<Trip>, Error> {
        let path = String::from_utf8_lossy(line.target).into_owned();
        self.observed.borrow_mut().push(format!("{client} {path}"));
        Ok(path.starts_with("/trip").then(|| Trip {
            event: Event {
                ip: client.to_string(),
                rule: "not_found".into(),
                action: "blocked for 1d".into(),
                ..Event::default()
            },
            report: Some((client, "not_found")),
        }))
    }
}
