//! `LuaEngine`: one warden instance as Lua sees it (`engine:...`).

use mlua::{
    LightUserData, Lua, LuaSerdeExt, MultiValue, Result as LuaResult, Table, UserData,
    UserDataMethods, Value,
};

use super::dict::{LuaDict, LuaLog};
use super::{error3, net_arg, nil_err, ok, show_lua, str_arg};
use crate::blocks::Source;
use crate::engine::{now_ms, Engine};
use crate::events::{Event, Filter, Kind};
use crate::metrics::Stat;
use crate::net::addr::{Addr, Net};
use crate::ops::{Warden, Worker};
use crate::policy::credentials::Outcome;

/// The userdata that owns an engine, with its shared dict. The engine is
/// boxed so that the pointer handed to the FFI functions stays put.
pub struct LuaEngine(Box<Engine>, Host);

/// What the engine's operations need besides the engine: the dict, the
/// log, this worker's state.
pub struct Host {
    dict: LuaDict,
    log: LuaLog,
    worker: Worker,
}

impl LuaEngine {
    /// Owns `e` (boxed, so that the pointer given to the FFI stays put),
    /// with its shared dict and `ngx.log`.
    pub fn new(e: Engine, dict: LuaDict, log: LuaLog) -> LuaEngine {
        let worker = Worker::new(&e.config().dict);
        LuaEngine(Box::new(e), Host { dict, log, worker })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.0
    }

    /// The engine with its dict: what every operation runs on.
    pub fn warden(&self) -> Warden<'_> {
        Warden {
            engine: &self.0,
            dict: &self.1.dict,
            log: &self.1.log,
            worker: &self.1.worker,
        }
    }
}

/// An event as Lua sees it (`engine:events()`, `engine:trip()`).
pub(super) fn event_table(lua: &Lua, e: &Event) -> LuaResult<Table> {
    let t = lua.create_table_with_capacity(0, 12)?;
    t.set("time", e.time_ms as f64 / 1000.0)?;
    t.set("ip", e.ip.as_str())?;
    t.set("type", e.kind.map_or("unknown", |k| k.name()))?;
    t.set("rule", e.rule.as_str())?;
    t.set("count", e.count)?;
    t.set("threshold", e.threshold)?;
    t.set("window", e.window_s)?;
    t.set("status", e.status)?;
    t.set("method", e.method.as_str())?;
    t.set("path", e.path.as_str())?;
    t.set("user_agent", e.user_agent.as_str())?;
    t.set("action", e.action.as_str())?;
    Ok(t)
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
        super::ops::add_methods(m);
        m.add_method("ptr", |_, this, ()| {
            Ok(LightUserData(&*this.0 as *const Engine as *mut _))
        });
        m.add_method("set_worker", |_, this, id: usize| {
            this.0.set_worker(id);
            this.1.worker.set_worker(id);
            Ok(())
        });
        m.add_method("version", |_, this, ()| Ok(this.0.version() as f64));
        m.add_method("stale", |_, this, ()| Ok(this.0.stale()));
        // sweep(): drops expired blocks; worker 0 frees expired keys
        m.add_method("sweep", |_, this, ()| Ok(this.warden().sweep()));
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
            let (free, capacity) = this.warden().dict_space();
            t.set("dict_free_bytes", free)?;
            t.set("dict_capacity_bytes", capacity)?;
            if let Some(f) = this.warden().fleet_status() {
                t.set("fleet_node", f.node)?;
                t.set("fleet_redis", f.redis)?;
                t.set("fleet_connected", f.connected)?;
                t.set("fleet_queued", f.queued)?;
            }
            let ev = this.0.events();
            t.set("events_recorded", ev.written() as f64)?;
            t.set("events_capacity", ev.capacity())?;
            t.set("events_memory_bytes", ev.bytes())?;
            Ok(t)
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
            let mut filter = Filter {
                limit: 100,
                ..Filter::default()
            };
            if let Some(f) = f {
                match f.get::<Value>("limit")? {
                    Value::Nil => {}
                    Value::Integer(n) if n > 0 => filter.limit = n as usize,
                    Value::Number(n) if n >= 1.0 && n.fract() == 0.0 => filter.limit = n as usize,
                    v => {
                        return nil_err(
                            lua,
                            format!("limit must be a positive integer, got {}", show_lua(&v)),
                        )
                    }
                }
                match f.get::<Value>("type")? {
                    Value::Nil => {}
                    Value::String(s) => match Kind::from_name(&s.to_string_lossy()) {
                        Some(k) => filter.kind = Some(k),
                        None => {
                            let names: Vec<&str> = Kind::ALL.iter().map(|(_, n)| *n).collect();
                            return nil_err(
                                lua,
                                format!(
                                    "type must be one of {}, got '{}'",
                                    names.join(", "),
                                    s.to_string_lossy()
                                ),
                            );
                        }
                    },
                    v => {
                        return nil_err(lua, format!("type must be a string, got {}", show_lua(&v)))
                    }
                }
                match f.get::<Value>("ip")? {
                    Value::Nil => {}
                    v => match net_arg(&v) {
                        Ok(n) => filter.ip = Some(n.to_string()),
                        Err(e) => return nil_err(lua, format!("ip: {e}")),
                    },
                }
                match f.get::<Value>("since")? {
                    Value::Nil => {}
                    Value::Integer(n) if n >= 0 => filter.since_ms = n as u64 * 1000,
                    Value::Number(n) if n >= 0.0 => filter.since_ms = (n * 1000.0) as u64,
                    v => {
                        return nil_err(
                            lua,
                            format!(
                                "since must be a time in seconds since the epoch, got {}",
                                show_lua(&v)
                            ),
                        )
                    }
                }
            }
            let now = now_ms();
            let list = match filter.kind {
                Some(Kind::Capture) => this.0.captures().query(&filter, now),
                Some(_) => this.0.events().query(&filter, now),
                None => {
                    let mut l = this.0.events().query(&filter, now);
                    l.extend(this.0.captures().query(&filter, now));
                    l.sort_by_key(|e| std::cmp::Reverse(e.time_ms));
                    l.truncate(filter.limit);
                    l
                }
            };
            let out = lua.create_table_with_capacity(list.len(), 0)?;
            for (i, e) in list.iter().enumerate() {
                out.raw_set(i + 1, event_table(lua, e)?)?;
            }
            ok(lua, out)
        });
        // cleanup(older_than) -> events hidden (older_than: seconds ago)
        m.add_method("cleanup", |_, this, older: f64| {
            let before = now_ms().saturating_sub((older.max(0.0) * 1000.0) as u64);
            Ok(this.0.events().cleanup(before + 1) + this.0.captures().cleanup(before + 1))
        });
        // trusted(ip) -> true when ip is a trusted proxy (false if invalid)
        m.add_method("trusted", |_, this, ip: String| {
            Ok(Addr::parse(ip.trim()).is_ok_and(|a| this.0.trusted(a)))
        });
        // allowlisted(ip) -> true when the allowlist or whitelist covers ip
        m.add_method("allowlisted", |_, this, ip: String| {
            Ok(Net::parse(ip.trim()).is_ok_and(|n| this.0.allowlisted(n.first())))
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
        // threat_score(ip) -> score (0-100), rule | nil, err
        m.add_method("threat_score", |lua, this, ip: Value| {
            let a = match str_arg(&ip, "ip")
                .and_then(|s| Addr::parse(s.trim()).map_err(|e| e.to_string()))
            {
                Ok(a) => a,
                Err(e) => return nil_err(lua, e),
            };
            let (score, rule) = this.0.threat_score(a);
            Ok(MultiValue::from_vec(vec![
                Value::Integer(i64::from(score)),
                match rule {
                    Some(r) => Value::String(lua.create_string(r)?),
                    None => Value::Nil,
                },
            ]))
        });
        // analyze_line(line) -> { rc, ip, method, path, status, user_agent,
        //                         time } | nil, err, field
        m.add_method("analyze_line", |lua, this, line: mlua::LuaString| {
            let text = line.to_string_lossy();
            let l = match crate::admin::accesslog::parse(&text) {
                Ok(l) => l,
                Err(e) => return error3(lua, &e.to_string(), e.field()),
            };
            let a = match Addr::parse(l.addr) {
                Ok(a) => a,
                Err(e) => return error3(lua, &format!("remote_addr: {e}"), "remote_addr"),
            };
            let req = crate::detect::Request {
                uri: l.target,
                status: l.status.min(999),
                user_agent: l.user_agent,
            };
            let rc = this.0.observe(a, &req);
            let t = lua.create_table_with_capacity(0, 7)?;
            t.set("rc", rc)?;
            t.set("ip", a.to_string())?;
            t.set("method", l.method)?;
            t.set("path", lua.create_string(l.target)?)?;
            t.set("status", l.status)?;
            t.set("user_agent", lua.create_string(l.user_agent)?)?;
            t.set("time", l.time_ms as f64 / 1000.0)?;
            ok(lua, t)
        });
    }
}
