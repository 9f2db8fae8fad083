//! `LuaEngine`: one warden instance as Lua sees it (`engine:...`).

use mlua::{
    LightUserData, Lua, LuaSerdeExt, MultiValue, Result as LuaResult, Table, UserData,
    UserDataMethods, Value,
};

use super::dict::{LuaDict, LuaLog};
use super::{net_arg, nil_err, ok, str_arg, with_scalar};
use crate::blocks::Source;
use crate::engine::{now_ms, Engine};
use crate::events::{Event, Filter, Kind};
use crate::metrics::Stat;
use crate::net::addr::{Addr, Net};
use crate::ops::{Warden, Worker};

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

/// An event as Lua sees it (`engine:events()`, `engine:trip()`): the
/// admin API's view of it.
pub(super) fn event_table(lua: &Lua, e: &Event) -> LuaResult<Value> {
    lua.to_value(&crate::admin::views::event(e))
}

/// `{ target, source, reason, expires }`, and `action = "challenge"` for
/// a challenge (a block's table is as it always was).
fn block_table(
    lua: &Lua,
    target: &Net,
    source: Source,
    reason: &str,
    expires_ms: u64,
    action: crate::blocks::Action,
) -> LuaResult<Table> {
    let t = lua.create_table_with_capacity(0, 5)?;
    t.set("target", target.to_string())?;
    t.set("source", source.as_str())?;
    t.set("reason", reason)?;
    t.set("expires", expires_ms as f64 / 1000.0)?;
    if action == crate::blocks::Action::Challenge {
        t.set("action", action.as_str())?;
    }
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
                    let t =
                        block_table(lua, &i.target, i.source, &i.reason, i.expires_ms, i.action)?;
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
                    block_table(lua, &b.net, b.source, &b.reason, b.expires_ms, b.action)?,
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
            if let Some(target) = &c.event_log {
                use crate::events::log::Target;
                let text = match target {
                    Target::File(p) => p.to_string_lossy().into_owned(),
                    Target::Stderr => "stderr".to_string(),
                    Target::ErrorLog => "error_log".to_string(),
                };
                t.set("event_log", text)?;
            }
            t.set("capture_max_duration", c.capture_max_ms as f64 / 1000.0)?;
            // redis: true when set; its options are the fleet agent's
            // (src/persist/fleet/)
            if c.redis.is_some() {
                t.set("redis", true)?;
            }
            t.set("policy", lua.to_value(&c.policy)?)?;
            Ok(t)
        });
        // stats() -> { name = value }: every counter, summed over every
        // worker, and the gauges (after a sync); see metrics::Snapshot
        m.add_method("stats", |lua, this, ()| {
            lua.to_value(&this.warden().snapshot().to_json())
        });
        // prometheus() -> the Prometheus text of stats()
        m.add_method("prometheus", |_, this, ()| {
            Ok(crate::metrics::prometheus::render(
                &this.warden().snapshot(),
            ))
        });
        // gauges() -> { name = value }, { name, ... }: what statsd gets next
        // to the counters, names in order
        m.add_method("gauges", |lua, this, ()| {
            let g = this.warden().snapshot().gauges();
            let values = lua.create_table()?;
            for (k, v) in &g {
                values.set(*k, *v)?;
            }
            let names = lua.create_sequence_from(g.iter().map(|(k, _)| *k))?;
            Ok((values, names))
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
        //         path, user_agent, action, reason,
        //         detail }
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
                reason: text("reason")?,
                detail: text("detail")?,
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
                out.raw_set(i + 1, event_table(lua, ev)?)?;
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
    }
}

#[cfg(all(test, feature = "vendored"))]
mod tests {
    use crate::lua::testing::{lua, run};

    const OPTS: &str = r#"{ dict = "t-lua-engine", trusted_proxies = { "10.0.0.0/8" },
                            allowlist = { "198.51.100.1" }, denylist = { "203.0.113.0/24" } }"#;

    #[test]
    fn new_needs_nginx_and_engine_reads_the_options() {
        let lua = lua("t-lua-engine", OPTS);
        let err: String = run(
            &lua,
            r#"return select(2, core.new{ dict = "t-lua-engine" })"#,
        );
        assert!(
            err.starts_with("cannot find nginx's ngx_http_get_variable"),
            "{err}"
        );
        let err: String = run(
            &lua,
            r#"return select(2, core.engine{ dict = "t-lua-engine", blocking_mode = 7 })"#,
        );
        assert!(err.contains("blocking_mode"), "{err}");
        let got: String = run(
            &lua,
            r#"local c = engine:config()
               return c.dict .. " " .. tostring(engine:trusted("10.1.2.3")) .. " "
                      .. tostring(engine:trusted("192.0.2.1")) .. " "
                      .. tostring(engine:allowlisted("198.51.100.1"))"#,
        );
        assert_eq!(got, "t-lua-engine true false true");
    }

    #[test]
    fn stats_and_events_from_rust() {
        let lua = lua("t-lua-engine", OPTS);
        let got: String = run(
            &lua,
            r#"assert(engine:block("192.0.2.9", 60))
               local before = engine:stat("lookup_errors")  -- the process's
               engine:count("lookup_errors", 2)
               local s = engine:stats()
               return s.dict .. " " .. s.blocks .. " " .. s.denylist .. " "
                      .. s.lookup_errors - before .. " " .. s.dict_free_bytes .. " "
                      .. tostring(engine:prometheus():find("warden_blocked_addresses 2\n", 1, true) ~= nil)"#,
        );
        assert_eq!(got, "t-lua-engine 1 1 2 40000 true");
        let got: String = run(
            &lua,
            r#"assert(engine:record{ ip = "192.0.2.9", type = "auth_failed", rule = "protected_route",
                                     status = 401, path = "/admin", action = "401: credentials missing" })
               local _, err = engine:record{ type = "nonsense" }
               local ev = engine:events{ type = "auth_failed" }
               local _, bad = engine:events{ limit = "many" }
               return #ev .. " " .. ev[1].ip .. " " .. ev[1].status .. " " .. err .. " | " .. bad"#,
        );
        assert!(
            got.starts_with("1 192.0.2.9 401 unknown event type 'nonsense' | "),
            "{got}"
        );
    }
}
