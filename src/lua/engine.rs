//! `LuaEngine`: one warden instance as Lua sees it (`engine:...`).

use mlua::{
    IntoLuaMulti, LightUserData, Lua, LuaSerdeExt, MultiValue, Result as LuaResult, Table,
    UserData, UserDataMethods, Value,
};

use std::path::PathBuf;

use super::{duration_arg, error3, net_arg, nil_err, ok, str_arg, with_scalar};
use crate::blocks::{Block, Source};
use crate::engine::{now_ms, Engine};
use crate::events::{Event, Filter, Kind};
use crate::metrics::Stat;
use crate::net::addr::{Addr, Net};
use crate::persist::state;
use crate::policy::credentials::Outcome;

/// The userdata that owns an engine. The engine is boxed so that the
/// pointer handed to the FFI functions stays put.
pub struct LuaEngine(Box<Engine>);

impl LuaEngine {
    /// Owns `e` (boxed, so that the pointer given to the FFI stays put).
    pub fn new(e: Engine) -> LuaEngine {
        LuaEngine(Box::new(e))
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.0
    }
}

fn block_table(
    lua: &Lua,
    target: &Net,
    source: Source,
    reason: &str,
    expires_ms: u64,
) -> LuaResult<Table> {
    let t = lua.create_table_with_capacity(0, 4)?;
    t.set("target", target.to_string())?;
    t.set("source", source.as_str())?;
    t.set("reason", reason)?;
    t.set("expires", expires_ms as f64 / 1000.0)?;
    Ok(t)
}

impl UserData for LuaEngine {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method("ptr", |_, this, ()| {
            Ok(LightUserData(&*this.0 as *const Engine as *mut _))
        });
        m.add_method("set_worker", |_, this, id: usize| {
            this.0.set_worker(id);
            Ok(())
        });
        m.add_method("applied", |_, this, ()| Ok(this.0.applied() as f64));
        m.add_method("set_applied", |_, this, seq: f64| {
            this.0.set_applied(seq.max(0.0) as u64);
            Ok(())
        });
        m.add_method("version", |_, this, ()| Ok(this.0.version() as f64));
        m.add_method("publish", |_, this, seq: f64| {
            this.0.publish(seq.max(0.0) as u64);
            Ok(())
        });
        m.add_method("stale", |_, this, ()| Ok(this.0.stale()));
        m.add_method(
            "apply_entry",
            |lua, this, entry: mlua::LuaString| match this.0.apply_entry(&entry.to_string_lossy()) {
                Ok(()) => ok(lua, true),
                Err(e) => nil_err(lua, e),
            },
        );
        m.add_method(
            "load_record",
            |lua, this, (k, v): (mlua::LuaString, mlua::LuaString)| match this
                .0
                .load_record(&k.to_string_lossy(), &v.to_string_lossy())
            {
                Ok(()) => ok(lua, true),
                Err(e) => nil_err(lua, e),
            },
        );
        // diff_begin(); diff_page({ target1, value1, ... }) -> { target,
        // value, ... that differ }, live, { malformed, ... }; diff_end() ->
        // { target, value, ... of the replica that no page had }: the fleet
        // agent compares the replica with Redis one HSCAN page at a time.
        m.add_method("diff_begin", |_, this, ()| {
            this.0.diff_begin();
            Ok(())
        });
        m.add_method("diff_page", |lua, this, kv: Table| {
            let mut flat: Vec<String> = Vec::with_capacity(kv.raw_len());
            for v in kv.sequence_values::<mlua::LuaString>() {
                flat.push(v?.to_string_lossy());
            }
            let page = this.0.diff_page(
                flat.chunks_exact(2).map(|p| (p[0].as_str(), p[1].as_str())),
                now_ms(),
            );
            let bad = lua.create_sequence_from(page.malformed)?;
            Ok((flat_records(lua, &page.differ)?, page.live, bad))
        });
        m.add_method("diff_end", |lua, this, ()| {
            flat_records(lua, &this.0.diff_end(now_ms()))
        });
        m.add_method("reset_blocks", |_, this, ()| {
            this.0.reset_blocks();
            Ok(())
        });
        m.add_method("commit", |_, this, ()| {
            this.0.commit();
            Ok(())
        });
        m.add_method("sweep", |_, this, ()| Ok(this.0.sweep(now_ms())));
        // counters() -> every counter summed over every worker (cheap: no
        // table walks, unlike stats())
        m.add_method("counters", |lua, this, ()| {
            let r = this.0.region();
            let t = lua.create_table_with_capacity(0, Stat::ALL.len())?;
            for (s, name) in Stat::ALL {
                t.set(name, r.total(s) as f64)?;
            }
            Ok(t)
        });
        // stat(name) -> a counter summed over every worker
        m.add_method("stat", |_, this, name: String| {
            Ok(Stat::ALL
                .iter()
                .find(|(_, n)| *n == name)
                .map_or(0.0, |(s, _)| this.0.region().total(*s) as f64))
        });
        // count(name, n?): adds n (1) to the counter `name`
        m.add_method("count", |_, this, (name, n): (String, Option<f64>)| {
            if let Some((s, _)) = Stat::ALL.iter().find(|(_, m)| *m == name) {
                this.0.count_n(*s, n.unwrap_or(1.0).max(0.0) as u64);
            }
            Ok(())
        });
        // prepare(target, duration, reason, source, now) -> record | nil, err
        m.add_method(
            "prepare",
            |lua, this, (target, duration, reason, source, now): (Value, Value, Value, String, f64)| {
                let net = match net_arg(&target) {
                    Ok(n) => n,
                    Err(e) => return nil_err(lua, e),
                };
                let duration_ms = match duration_arg(&duration) {
                    Ok(d) => d,
                    Err(e) => return nil_err(lua, e),
                };
                let reason = match &reason {
                    Value::Nil => String::new(),
                    v => match str_arg(v, "reason") {
                        Ok(r) => r.chars().take(256).collect(),
                        Err(e) => return nil_err(lua, e),
                    },
                };
                let Some(source) = Source::parse(&source) else {
                    return nil_err(lua, format!("unknown block source '{source}'"));
                };
                let p = this.0.prepare(&net, duration_ms, source, &reason, (now * 1000.0) as u64);
                let t = lua.create_table_with_capacity(0, 6)?;
                t.set("target", net.to_string())?;
                t.set("key", p.key)?;
                t.set("value", p.value)?;
                t.set("entry", p.entry)?;
                t.set("ttl", p.ttl)?;
                t.set("expires", p.block.expires_ms as f64 / 1000.0)?;
                t.set("allowlisted", this.0.allowlisted(net.first()))?;
                ok(lua, t)
            },
        );
        // unblock_record(target) -> { target, key, entry, blocked, denylisted } | nil, err
        m.add_method("unblock_record", |lua, this, target: Value| {
            let net = match net_arg(&target) {
                Ok(n) => n,
                Err(e) => return nil_err(lua, e),
            };
            let t = lua.create_table_with_capacity(0, 5)?;
            t.set("target", net.to_string())?;
            t.set("key", Block::key(&net))?;
            t.set("entry", crate::blocks::Change::Remove(net).encode())?;
            t.set("denylisted", this.0.denylisted(&net))?;
            t.set(
                "blocked",
                this.0.block_of(&net).is_some_and(|b| !b.expired(now_ms())),
            )?;
            ok(lua, t)
        });
        // is_blocked(ip) -> false | info | nil, err
        m.add_method("is_blocked", |lua, this, ip: Value| {
            let ip = match str_arg(&ip, "ip") {
                Ok(t) => t,
                Err(e) => return nil_err(lua, e),
            };
            let a = match Addr::parse(ip.trim()) {
                Ok(a) => a,
                Err(e) => return nil_err(lua, e),
            };
            match this.0.is_blocked(a) {
                None => ok(lua, false),
                Some(i) => {
                    let t = block_table(lua, &i.target, i.source, &i.reason, i.expires_ms)?;
                    Ok(MultiValue::from_vec(vec![
                        Value::Boolean(true),
                        Value::Table(t),
                    ]))
                }
            }
        });
        m.add_method("list", |lua, this, ()| {
            let list = this.0.list(now_ms());
            let out = lua.create_table_with_capacity(list.len(), 0)?;
            for (i, b) in list.iter().enumerate() {
                out.raw_set(
                    i + 1,
                    block_table(lua, &b.net, b.source, &b.reason, b.expires_ms)?,
                )?;
            }
            Ok(out)
        });
        m.add_method("config", |lua, this, ()| {
            let c = this.0.config();
            let t = lua.create_table()?;
            t.set("dict", c.dict.clone())?;
            t.set("blocking_mode", if c.blocking_mode { 1 } else { 0 })?;
            t.set("block_status", c.block_status)?;
            t.set("trusted_proxies", c.trusted_proxies.len())?;
            t.set("admin_token", c.admin_token.clone())?;
            t.set("admin_token_file", c.admin_token_file.clone())?;
            t.set("admin_max_body", c.admin_max_body)?;
            t.set("max_captures", c.max_captures)?;
            t.set("statsd_host", c.statsd_host.clone())?;
            t.set("statsd_port", c.statsd_port)?;
            t.set("statsd_flush_timer", c.statsd_flush_timer)?;
            t.set("state_file", c.state_file.clone())?;
            t.set("state_interval", c.state_interval_ms as f64 / 1000.0)?;
            if let Some(r) = &c.redis {
                let x = lua.create_table()?;
                x.set("host", r.host.clone())?;
                x.set("port", r.port)?;
                x.set("password", r.password.clone())?;
                x.set("db", r.db)?;
                x.set("prefix", r.prefix.clone())?;
                x.set("timeout", r.timeout_ms)?;
                x.set("node", r.node.clone())?;
                t.set("redis", x)?;
            }
            t.set("policy", lua.to_value(&c.policy)?)?;
            Ok(t)
        });
        m.add_method("stats", |lua, this, ()| {
            let r = this.0.region();
            let t = lua.create_table()?;
            for (s, name) in Stat::ALL {
                t.set(name, r.total(s) as f64)?;
            }
            t.set("blocks", this.0.block_count())?;
            t.set("lists_memory", this.0.lists_memory())?;
            t.set("shm_bytes", r.size())?;
            t.set("denylist", this.0.config().denylist.len())?;
            if let Some(d) = this.0.detector() {
                t.set("detector_tracked", d.table().tracked(now_ms()))?;
                t.set("detector_capacity", d.table().capacity())?;
                t.set("detector_memory_bytes", d.table().bytes())?;
                t.set(
                    "detector_bytes_per_client",
                    crate::detect::counters::SLOT_BYTES,
                )?;
            }
            let ev = this.0.events();
            t.set("events_recorded", ev.written() as f64)?;
            t.set("events_capacity", ev.capacity())?;
            t.set("events_memory_bytes", ev.bytes())?;
            Ok(t)
        });
        // trip() -> the latest tripped rule of this worker, once, or nil
        m.add_method("trip", |lua, this, ()| {
            let Some(t) = this.0.take_trip() else {
                return Ok(Value::Nil);
            };
            let d = this.0.detector();
            let (prefix, window) =
                d.map_or((64, 0), |d| (d.config().ipv6_prefix, d.config().window_ms));
            let out = lua.create_table_with_capacity(0, 9)?;
            out.set("target", t.key.net(prefix).to_string())?;
            out.set("client", t.addr.to_string())?;
            out.set("rule", t.rule.name())?;
            out.set("type", crate::detect::event_kind(t.rule).name())?;
            out.set("count", t.count)?;
            out.set("threshold", t.threshold)?;
            out.set("window", window as f64 / 1000.0)?;
            out.set("mode", t.mode.name())?;
            if let Some(m) = t.matched {
                out.set("matched", m)?;
            }
            Ok(Value::Table(out))
        });
        // block_duration(offence) -> seconds (0 = permanent)
        m.add_method("block_duration", |_, this, n: f64| {
            let n = n.clamp(1.0, 1.0e6) as u32;
            Ok(this
                .0
                .detector()
                .map_or(0.0, |d| d.config().block_duration_ms(n) as f64 / 1000.0))
        });
        // detector() -> its options as Lua sees them, or nil when off
        m.add_method("detector", |lua, this, ()| {
            let Some(d) = this.0.detector() else {
                return Ok(Value::Nil);
            };
            let c = d.config();
            let t = lua.create_table()?;
            t.set("auto_block_enabled", c.auto_block_enabled)?;
            t.set("window", c.window_ms as f64 / 1000.0)?;
            t.set(
                "repeat_offender_memory",
                c.repeat_offender_memory_ms as f64 / 1000.0,
            )?;
            t.set("ipv6_prefix", c.ipv6_prefix)?;
            t.set("max_clients", d.table().capacity())?;
            let rules = lua.create_table()?;
            for r in crate::detect::counters::Rule::ALL {
                let x = lua.create_table()?;
                x.set("threshold", c.thresholds[r as usize])?;
                x.set("mode", c.modes[r as usize].name())?;
                rules.set(r.name(), x)?;
            }
            t.set("rules", rules)?;
            Ok(Value::Table(t))
        });
        // forget(target) -> number of clients whose counters were cleared
        m.add_method("forget", |lua, this, target: Value| {
            match net_arg(&target) {
                Ok(n) => ok(lua, this.0.forget(&n)),
                Err(e) => nil_err(lua, e),
            }
        });
        // record{ ip, type, rule, count, threshold, window, status, method,
        //         path, user_agent, action }
        m.add_method("record", |lua, this, t: Table| {
            let kind: String = t.get("type")?;
            let Some(kind) = Kind::from_name(&kind) else {
                return nil_err(lua, format!("unknown event type '{kind}'"));
            };
            let text = |k: &str| -> LuaResult<String> {
                Ok(t.get::<Option<mlua::LuaString>>(k)?
                    .map(|s| s.to_string_lossy())
                    .unwrap_or_default())
            };
            let num = |k: &str| -> LuaResult<f64> { Ok(t.get::<Option<f64>>(k)?.unwrap_or(0.0)) };
            let e = Event {
                time_ms: now_ms(),
                ip: text("ip")?,
                kind: Some(kind),
                rule: text("rule")?,
                count: num("count")? as u32,
                threshold: num("threshold")? as u32,
                window_s: num("window")? as u32,
                status: num("status")? as u16,
                method: text("method")?,
                path: text("path")?,
                user_agent: text("user_agent")?,
                action: text("action")?,
            };
            this.0.record(&e);
            ok(lua, true)
        });
        // events{ limit, type, ip, since } -> { event, ... } | nil, err
        m.add_method("events", |lua, this, f: Option<Table>| {
            let get = |k: &str| -> LuaResult<Value> {
                f.as_ref().map_or(Ok(Value::Nil), |t| t.get::<Value>(k))
            };
            let (limit, kind, ip, since) = (get("limit")?, get("type")?, get("ip")?, get("since")?);
            let filter = with_scalar(&limit, |l| {
                with_scalar(&kind, |k| {
                    with_scalar(&ip, |i| with_scalar(&since, |s| Filter::read(l, k, i, s)))
                })
            });
            let filter = match filter {
                Ok(f) => f,
                Err(e) => return nil_err(lua, e),
            };
            let e = &this.0;
            let list = crate::events::query_both(e.events(), e.captures(), &filter, now_ms());
            let out = lua.create_table_with_capacity(list.len(), 0)?;
            for (i, ev) in list.iter().enumerate() {
                out.raw_set(i + 1, lua.to_value(&crate::admin::views::event(ev))?)?;
            }
            ok(lua, out)
        });
        // cleanup(older_than) -> events hidden (older_than: seconds ago)
        m.add_method("cleanup", |_, this, older: f64| {
            let e = &this.0;
            let ms = (older.max(0.0) * 1000.0) as u64;
            Ok(crate::events::cleanup_both(
                e.events(),
                e.captures(),
                ms,
                now_ms(),
            ))
        });
        // trusted(ip) -> true when ip is a trusted proxy (false if invalid)
        m.add_method("trusted", |_, this, ip: String| {
            Ok(Addr::parse(ip.trim()).is_ok_and(|a| this.0.trusted(a)))
        });
        // allowlisted(ip) -> true when the allowlist or whitelist covers ip
        m.add_method("allowlisted", |_, this, ip: String| {
            Ok(Net::parse(ip.trim()).is_ok_and(|n| this.0.allowlisted(n.first())))
        });
        // load_policy(json | nil) -> true | nil, err: compiles the admin
        // API's document with the options and installs it in this worker
        m.add_method("load_policy", |lua, this, doc: Option<mlua::LuaString>| {
            let v = match doc {
                None => serde_json::Value::Null,
                Some(s) => match serde_json::from_slice(&s.as_bytes()) {
                    Ok(v) => v,
                    Err(e) => return nil_err(lua, format!("policy document: {e}")),
                },
            };
            match this.0.compile_policy(&v) {
                Ok(p) => {
                    this.0.install_policy(p);
                    ok(lua, true)
                }
                Err(e) => nil_err(lua, e),
            }
        });
        // check_policy(doc) -> true | nil, err, field (validation only)
        m.add_method("check_policy", |lua, this, doc: Value| {
            let v: serde_json::Value = match lua.from_value(doc) {
                Ok(v) => v,
                Err(e) => return nil_err(lua, format!("policy document: {e}")),
            };
            match this.0.compile_policy(&v) {
                Ok(_) => ok(lua, true),
                Err(e) => error3(lua, &e.to_string(), e.field()),
            }
        });
        // routes() -> { { id, path, method, auth_type, credentials (redacted),
        //                 deployment, realm }, ... } in matching order
        m.add_method("routes", |lua, this, ()| {
            let p = this.0.policy();
            let out = lua.create_table_with_capacity(p.route_count(), 0)?;
            for i in 0..p.route_count() {
                if let Some(r) = p.route(i) {
                    let t = lua.to_value(&r.describe())?;
                    if let (Value::Table(t), Some(id)) = (&t, r.id) {
                        t.set("id", id)?;
                    }
                    out.raw_set(i + 1, t)?;
                }
            }
            Ok(out)
        });
        // verify_route(index (0-based), authorization | nil)
        //   -> "ok" | "missing" | "malformed" | "denied", user, scheme, realm
        m.add_method(
            "verify_route",
            |lua, this, (i, auth): (usize, Option<mlua::LuaString>)| {
                let p = this.0.policy();
                let Some(r) = p.route(i) else {
                    return nil_err(lua, format!("no protected route {i}"));
                };
                let auth = auth.as_ref().map(|a| a.as_bytes());
                let (word, user) = match r.verify(auth.as_deref()) {
                    Outcome::Ok { user } => {
                        this.0.count(Stat::AuthPassed);
                        ("ok", user)
                    }
                    other => {
                        this.0.count(Stat::AuthFailed);
                        let w = match other {
                            Outcome::Missing => "missing",
                            Outcome::Malformed => "malformed",
                            _ => "denied",
                        };
                        (w, String::new())
                    }
                };
                Ok(MultiValue::from_vec(vec![
                    Value::String(lua.create_string(word)?),
                    Value::String(lua.create_string(&user)?),
                    Value::String(lua.create_string(r.scheme().as_str())?),
                    Value::String(lua.create_string(&r.realm)?),
                ]))
            },
        );
        // threat_score(ip, reputation?) -> score (0-100), rule | nil, err;
        // with iprepd's reputation of ip, raised by it (rule "reputation")
        m.add_method(
            "threat_score",
            |lua, this, (ip, rep): (Value, Option<f64>)| {
                let a = match str_arg(&ip, "ip")
                    .and_then(|s| Addr::parse(s.trim()).map_err(|e| e.to_string()))
                {
                    Ok(a) => a,
                    Err(e) => return nil_err(lua, e),
                };
                let (score, mut rule) = this.0.threat_score(a);
                let (score, raised) = crate::reputation::threat_score(score, rep);
                if raised {
                    rule = Some("reputation");
                }
                Ok(MultiValue::from_vec(vec![
                    Value::Integer(i64::from(score)),
                    match rule {
                        Some(r) => Value::String(lua.create_string(r)?),
                        None => Value::Nil,
                    },
                ]))
            },
        );
        // save_state(path, policy_json?, epoch?) -> true, or false while
        // the previous save is still being written (state file)
        m.add_method(
            "save_state",
            |lua,
             this,
             (path, policy, epoch): (String, Option<mlua::LuaString>, Option<String>)| {
                match snapshot(&this.0, policy, epoch) {
                    Ok(st) => ok(lua, STATE_WRITER.submit(PathBuf::from(path), st)),
                    Err(e) => nil_err(lua, e),
                }
            },
        );
        // save_state_now(...) -> true | nil, err: the same, written before
        // returning (a worker that exits), after any save in flight
        m.add_method(
            "save_state_now",
            |lua,
             this,
             (path, policy, epoch): (String, Option<mlua::LuaString>, Option<String>)| {
                STATE_WRITER.wait();
                let st = match snapshot(&this.0, policy, epoch) {
                    Ok(st) => st,
                    Err(e) => return nil_err(lua, e),
                };
                let path = PathBuf::from(path);
                match state::write_atomic(&path, &state::serialize(&st)) {
                    Ok(()) => {
                        this.0.count(Stat::StateSaves);
                        ok(lua, true)
                    }
                    Err(e) => {
                        this.0.count(Stat::StateSaveErrors);
                        nil_err(lua, e)
                    }
                }
            },
        );
        // state_saved() -> nil (nothing finished since the last call) |
        // true, { bytes, blocks, ms } | false, err
        m.add_method("state_saved", |lua, this, ()| match STATE_WRITER.poll() {
            None => Ok(MultiValue::new()),
            Some(Ok(s)) => {
                this.0.count(Stat::StateSaves);
                let t = lua.create_table()?;
                t.set("bytes", s.bytes)?;
                t.set("blocks", s.blocks)?;
                t.set("ms", s.elapsed_ms)?;
                (true, t).into_lua_multi(lua)
            }
            Some(Err(e)) => {
                this.0.count(Stat::StateSaveErrors);
                (false, e).into_lua_multi(lua)
            }
        });
    }
}

/// One writer of state files per process (each worker has its own).
static STATE_WRITER: once_cell::sync::Lazy<state::Writer> =
    once_cell::sync::Lazy::new(state::Writer::new);

/// What a state file would hold now: this worker's replica of the blocks,
/// the policy document (JSON text, as in the shared dict) and the epoch.
fn snapshot(
    e: &Engine,
    policy: Option<mlua::LuaString>,
    epoch: Option<String>,
) -> Result<state::State, String> {
    let policy = match policy {
        Some(text) if !text.as_bytes().is_empty() => Some(
            serde_json::from_slice::<serde_json::Value>(&text.as_bytes())
                .map_err(|err| format!("the stored policy document is not JSON: {err}"))?,
        ),
        _ => None,
    };
    let now = now_ms();
    Ok(state::State {
        saved_ms: now,
        blocks: e.blocks_snapshot(now),
        policy,
        fleet_epoch: epoch,
    })
}

/// `{ target, value, target, value, ... }`: blocks as the fleet's Redis
/// records them (the dict's formats without the `b|`).
fn flat_records(lua: &Lua, blocks: &[Block]) -> LuaResult<Table> {
    let out = lua.create_table_with_capacity(blocks.len() * 2, 0)?;
    for (i, b) in blocks.iter().enumerate() {
        out.raw_set(2 * i + 1, b.net.to_string())?;
        out.raw_set(2 * i + 2, b.value())?;
    }
    Ok(out)
}
