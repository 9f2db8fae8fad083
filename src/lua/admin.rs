//! `LuaAdmin`: the admin API as Lua sees it (`admin:serve(req, bridge)`),
//! and the [`Backend`] it serves with.
//!
//! `lua/resty/warden/api.lua` hands over the request (nginx variables,
//! query arguments, the body once asked for, the reputation once asked
//! for) and sends the response it gets back. The backend works on the
//! engine directly; what touches the shared dict still goes through Lua
//! functions in `bridge` (the table `api.lua` builds), until the shared
//! dict, blocks and the policy document have their Rust home (`store`).

use mlua::{
    AnyUserData, Function, Lua, LuaSerdeExt, MultiValue, Result as LuaResult, Table, UserData,
    UserDataMethods, Value,
};
use serde_json::Value as Json;

use super::engine::LuaEngine;
use crate::admin::accesslog::Line;
use crate::admin::backend::{Backend, CheckRequest, Decision, Edit, Edited, Level, Trip};
use crate::admin::exchange::{Arg, Reply, Request};
use crate::admin::Admin;
use crate::blocks::{Block, Source};
use crate::config::Config;
use crate::engine::{code, now_ms, Engine};
use crate::error::{Error, Kind};
use crate::events::{self, Event, Filter};
use crate::metrics::{Snapshot, Stat};
use crate::net::addr::{Addr, Net};
use crate::net::client::Client;
use crate::policy::credentials::Scheme;

/// The admin API of one warden instance.
pub struct LuaAdmin {
    admin: Admin,
    engine: AnyUserData,
}

impl LuaAdmin {
    /// The admin API of `engine` (a `LuaEngine`), and a warning to log.
    pub fn new(engine: AnyUserData) -> LuaResult<Result<(LuaAdmin, Option<&'static str>), Error>> {
        let cfg_result = {
            let e = engine.borrow::<LuaEngine>()?;
            Admin::new(e.engine().config())
        };
        Ok(cfg_result.map(|(admin, warning)| (LuaAdmin { admin, engine }, warning)))
    }
}

/// A Lua value as JSON (numbers, strings, booleans; tables as arrays or
/// objects; `json_null` as null).
fn to_json(lua: &Lua, v: Value) -> LuaResult<Json> {
    let opts = mlua::serde::DeserializeOptions::new().deny_unsupported_types(false);
    lua.from_value_with(v, opts)
}

/// A Lua number (integral or not), if `v` is one.
fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Integer(i) => Some(*i as f64),
        Value::Number(n) => Some(*n),
        _ => None,
    }
}

/// A Lua string field, if it is one.
fn text(t: &Table, k: &str) -> LuaResult<Option<String>> {
    Ok(t.get::<Option<mlua::LuaString>>(k)?
        .map(|s| s.to_string_lossy()))
}

/// The request table `api.lua` builds: `{ vars = {...}, args = {...},
/// body = "..." | nil, reputation_threshold = n | nil, reputation = n |
/// false | nil, retries = n | nil }`.
fn request(t: &Table) -> LuaResult<Request> {
    let mut r = Request::default();
    if let Some(vars) = t.get::<Option<Table>>("vars")? {
        for name in crate::admin::exchange::VARIABLES {
            if let Some(v) = text(&vars, name)? {
                r.set_var(name, v);
            }
        }
    }
    if let Some(args) = t.get::<Option<Table>>("args")? {
        for pair in args.pairs::<mlua::LuaString, Value>() {
            let (k, v) = pair?;
            let arg = match v {
                Value::String(s) => Arg::Text(s.to_string_lossy()),
                Value::Boolean(true) => Arg::Flag,
                _ => Arg::Many,
            };
            r.args.push((k.to_string_lossy(), arg));
        }
        r.args.sort_by(|a, b| a.0.cmp(&b.0));
    }
    r.body = t
        .get::<Option<mlua::LuaString>>("body")?
        .map(|b| b.as_bytes().to_vec());
    r.reputation_threshold = t.get::<Option<f64>>("reputation_threshold")?;
    r.retries = t.get::<Option<u32>>("retries")?.unwrap_or(0);
    r.reputation = match t.get::<Value>("reputation")? {
        Value::Nil => None,
        v => Some(num(&v)),
    };
    Ok(r)
}

/// What `serve` returns to Lua: `{ status, headers, body }`, or `{ need =
/// "body", max }`, `{ need = "reputation", ip }`, `{ need = "retry", after
/// (seconds) }`.
fn reply(lua: &Lua, r: Reply) -> LuaResult<Table> {
    let t = lua.create_table()?;
    match r {
        Reply::Done(res) => {
            t.set("status", res.status)?;
            let h = lua.create_table()?;
            for (k, v) in res.headers {
                h.set(k, v)?;
            }
            t.set("headers", h)?;
            t.set("body", res.body)?;
        }
        Reply::NeedBody { max } => {
            t.set("need", "body")?;
            t.set("max", max)?;
        }
        Reply::NeedReputation { ip } => {
            t.set("need", "reputation")?;
            t.set("ip", ip)?;
        }
        Reply::Retry { after_ms } => {
            t.set("need", "retry")?;
            t.set("after", after_ms as f64 / 1000.0)?;
        }
    }
    Ok(t)
}

/// A snapshot from `warden:stats()`'s table.
pub(crate) fn snapshot(lua: &Lua, t: &Table) -> LuaResult<Snapshot> {
    let mut s = Snapshot::default();
    for pair in t.pairs::<mlua::LuaString, Value>() {
        let (k, v) = pair?;
        s.set(&k.to_string_lossy(), &to_json(lua, v)?);
    }
    Ok(s)
}

impl UserData for LuaAdmin {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        // serve(req, bridge) -> reply (see `reply`)
        m.add_method("serve", |lua, this, (req, bridge): (Table, Table)| {
            let req = request(&req)?;
            let e = this.engine.borrow::<LuaEngine>()?;
            let b = LuaBackend {
                lua,
                engine: e.engine(),
                bridge,
            };
            reply(lua, this.admin.serve(&b, &req))
        });
    }
}

/// The backend of the admin API in nginx: the engine, and the shared dict
/// through `bridge`'s Lua functions.
struct LuaBackend<'a> {
    lua: &'a Lua,
    engine: &'a Engine,
    bridge: Table,
}

/// The error kind of a status that `policy.lua` returns (temporary: the
/// policy document's edits will return kinds).
fn kind_of_status(status: Option<f64>) -> Kind {
    match status.unwrap_or(400.0) as u16 {
        404 => Kind::NotFound,
        409 => Kind::Conflict,
        503 => Kind::Unavailable,
        507 => Kind::Full,
        400 => Kind::Invalid,
        _ => Kind::Internal,
    }
}

impl LuaBackend<'_> {
    fn function(&self, name: &str) -> Result<Function, Error> {
        self.bridge
            .get::<Function>(name)
            .map_err(|e| self.failed(name, e))
    }

    /// A Lua error, logged; the client gets a 500 without the details.
    fn failed(&self, what: &str, e: mlua::Error) -> Error {
        self.log(Level::Err, &format!("warden: api: {what}: {e}"));
        Error::internal("internal error (see the error log)")
    }

    /// Calls bridge function `name`.
    fn call(&self, name: &str, args: impl mlua::IntoLuaMulti) -> Result<MultiValue, Error> {
        self.function(name)?
            .call::<MultiValue>(args)
            .map_err(|e| self.failed(name, e))
    }

    /// Brings this worker up to date with the shared dict.
    fn sync(&self) -> Result<(), Error> {
        self.call("sync", ()).map(|_| ())
    }

    /// A policy edit: `update(last_try, op, ...)` -> result | nil, err,
    /// field, status; status "busy" (`None` here): another worker holds
    /// the lock.
    fn update(&self, args: impl mlua::IntoLuaMulti) -> Result<Option<Value>, Error> {
        let r = self.call("update", args)?.into_vec();
        let mut it = r.into_iter();
        match it.next() {
            Some(Value::Nil) | None => {
                let text = |v: Option<Value>| match v {
                    Some(Value::String(s)) => s.to_string_lossy(),
                    _ => String::new(),
                };
                let msg = text(it.next());
                let field = text(it.next());
                let status = it.next();
                if matches!(&status, Some(Value::String(s)) if s.as_bytes().as_ref() == b"busy") {
                    return Ok(None);
                }
                let status = status.as_ref().and_then(num);
                Err(Error::new(kind_of_status(status), &field, msg))
            }
            Some(v) => Ok(Some(v)),
        }
    }

    fn json(&self, v: Value, what: &str) -> Result<Json, Error> {
        to_json(self.lua, v).map_err(|e| self.failed(what, e))
    }

    fn lua_value(&self, v: &Json) -> Result<Value, Error> {
        self.lua.to_value(v).map_err(|e| self.failed("to_value", e))
    }

    fn number(&self, name: &str) -> Result<u64, Error> {
        let v = self.call(name, ())?.into_vec();
        Ok(v.first().and_then(num).unwrap_or(0.0).max(0.0) as u64)
    }
}

impl Backend for LuaBackend<'_> {
    fn config(&self) -> &Config {
        self.engine.config()
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn now_ms(&self) -> u64 {
        let now = || -> LuaResult<f64> {
            let ngx: Table = self.lua.globals().get("ngx")?;
            ngx.get::<Function>("now")?.call(())
        };
        now().map_or_else(|_| now_ms(), |s| (s * 1000.0).round() as u64)
    }

    fn log(&self, level: Level, msg: &str) {
        let log = || -> LuaResult<()> {
            let ngx: Table = self.lua.globals().get("ngx")?;
            let lvl: Value = ngx.get(match level {
                Level::Warn => "WARN",
                Level::Err => "ERR",
            })?;
            ngx.get::<Function>("log")?.call::<()>((lvl, msg))
        };
        if log().is_err() {
            eprintln!("{msg}");
        }
    }

    fn blocks(&self) -> Result<Vec<Block>, Error> {
        self.sync()?;
        Ok(self.engine.list(now_ms()))
    }

    fn block(&self, target: &Net, duration_ms: u64, reason: &str) -> Result<(), Error> {
        let secs = duration_ms as f64 / 1000.0;
        let r = self
            .call("block", (target.to_string(), secs, reason))?
            .into_vec();
        match r.first() {
            Some(Value::Boolean(true)) => Ok(()),
            _ => {
                // validated already: what remains is the dict's refusal
                let msg = match r.get(1) {
                    Some(Value::String(s)) => s.to_string_lossy(),
                    _ => format!("cannot block {target}"),
                };
                Err(Error::new(Kind::Full, "", msg))
            }
        }
    }

    fn unblock(&self, target: &Net) -> Result<(), Error> {
        self.sync()?;
        let blocked = self
            .engine
            .block_of(target)
            .is_some_and(|b| !b.expired(now_ms()));
        let stored = !matches!(
            self.call("dict_get", Block::key(target))?
                .into_vec()
                .first(),
            None | Some(Value::Nil)
        );
        if !blocked && !stored {
            return Err(if self.engine.denylisted(target) {
                Error::new(
                    Kind::Conflict,
                    "ip",
                    format!("{target} is in the denylist (configuration), not a block"),
                )
            } else {
                Error::new(Kind::NotFound, "ip", format!("{target} is not blocked"))
            });
        }
        let r = self.call("unblock", target.to_string())?.into_vec();
        match r.first() {
            Some(Value::Boolean(true)) => Ok(()),
            _ => Err(Error::new(
                Kind::Full,
                "ip",
                match r.get(1) {
                    Some(Value::String(s)) => s.to_string_lossy(),
                    _ => format!("cannot unblock {target}"),
                },
            )),
        }
    }

    fn allowlisted(&self, a: Addr) -> bool {
        self.engine.allowlisted(a)
    }

    fn trusted(&self, a: Addr) -> bool {
        self.engine.trusted(a)
    }

    fn policy_document(&self) -> Result<Json, Error> {
        let v = self.call("policy", ())?.into_vec();
        match v.first() {
            Some(Value::String(s)) => serde_json::from_slice(&s.as_bytes())
                .map_err(|e| Error::internal(format!("stored policy document: invalid JSON: {e}"))),
            _ => Ok(Json::Object(serde_json::Map::new())),
        }
    }

    fn routes(&self) -> Result<Vec<Json>, Error> {
        self.sync()?;
        let p = self.engine.policy();
        Ok((0..p.route_count())
            .filter_map(|i| p.route(i))
            .map(|r| {
                let mut v = r.describe();
                if let Some(id) = r.id {
                    v["id"] = id.into();
                }
                v
            })
            .collect())
    }

    fn edit_policy(&self, edit: Edit, last_try: bool) -> Result<Edited, Error> {
        let lua = |v: &Json| self.lua_value(v);
        let r = match &edit {
            Edit::AddWhitelist(e) => self.update((last_try, "add_whitelist", lua(e)?)),
            Edit::AddRoute(e) => self.update((last_try, "add_route", lua(e)?)),
            Edit::RemoveWhitelist(id) => {
                self.update((last_try, "remove", "whitelist", *id, "whitelist entry"))
            }
            Edit::RemoveRoute(id) => {
                self.update((last_try, "remove", "routes", *id, "protected route"))
            }
            Edit::PutSite(name, site) => {
                self.update((last_try, "put_site", name.as_str(), lua(site)?))
            }
            Edit::DeleteSite(name) => self.update((last_try, "delete_site", name.as_str())),
            Edit::Capture(on) => self.update((last_try, "capture", *on)),
        }?;
        match r {
            None => Ok(Edited::Busy),
            Some(v) => Ok(Edited::Done(self.json(v, "update")?)),
        }
    }

    fn refresh(&self) -> Result<(), Error> {
        let r = self.call("refresh", ())?.into_vec();
        match r.first() {
            Some(Value::Nil) | None => Err(Error::internal(match r.get(1) {
                Some(Value::String(s)) => s.to_string_lossy(),
                _ => "refresh failed".to_string(),
            })),
            _ => Ok(()),
        }
    }

    fn events(&self, f: &Filter) -> Result<Vec<Event>, Error> {
        let e = self.engine;
        Ok(events::query_both(e.events(), e.captures(), f, now_ms()))
    }

    fn cleanup(&self, older_than_ms: u64) -> Result<usize, Error> {
        let e = self.engine;
        Ok(events::cleanup_both(
            e.events(),
            e.captures(),
            older_than_ms,
            now_ms(),
        ))
    }

    fn stats(&self) -> Result<Snapshot, Error> {
        let v = self.call("stats", ())?.into_vec();
        match v.into_iter().next() {
            Some(Value::Table(t)) => snapshot(self.lua, &t).map_err(|e| self.failed("stats", e)),
            _ => Err(Error::internal("stats() returned no table")),
        }
    }

    fn counter(&self, s: Stat) -> Result<u64, Error> {
        Ok(self.engine.region().total(s))
    }

    fn dict_free_bytes(&self) -> Result<u64, Error> {
        self.number("dict_free")
    }

    fn resolve_client(
        &self,
        peer: Addr,
        x_forwarded_for: Option<&str>,
        x_real_ip: Option<&str>,
    ) -> Client {
        self.engine.resolve(
            peer,
            || x_forwarded_for.map(str::as_bytes),
            || x_real_ip.map(str::as_bytes),
        )
    }

    fn threat_score(&self, a: Addr) -> Result<u8, Error> {
        self.sync()?;
        Ok(self.engine.threat_score(a).0)
    }

    fn decide(&self, client: Addr, req: &CheckRequest<'_>) -> Result<Decision, Error> {
        let path = self
            .lua
            .create_string(req.path)
            .map_err(|e| self.failed("decide", e))?;
        let r = self
            .call(
                "decide",
                (client.to_string(), req.site, path, req.method.to_string()),
            )?
            .into_vec();
        let get = |i: usize| r.get(i).cloned().unwrap_or(Value::Nil);
        let word = |v: Value| match v {
            Value::String(s) => s.to_string_lossy(),
            _ => String::new(),
        };
        let rc = num(&get(0)).unwrap_or(0.0) as i32;
        let source = |rc: i32| match rc {
            code::DENY => Source::Denylist,
            code::BLOCK_AUTO => Source::Auto,
            _ => Source::Manual,
        };
        Ok(match word(get(1)).as_str() {
            "skip" => Decision::Skip,
            "blocked" => Decision::Blocked(source(num(&get(2)).unwrap_or(0.0) as i32)),
            "forbidden_ip" => Decision::ForbiddenIp,
            "blocked_path" => Decision::BlockedPath,
            "rate_limited" => Decision::RateLimited {
                retry_after_s: num(&get(3)).unwrap_or(1.0),
            },
            "unauthorized" => Decision::Unauthorized {
                why: word(get(2)),
                scheme: Scheme::parse(&word(get(3))).unwrap_or(Scheme::Basic),
                realm: word(get(4)),
            },
            _ => match rc {
                code::ALLOW => Decision::Allow,
                code::DENY | code::BLOCK_MANUAL | code::BLOCK_AUTO => Decision::Blocked(source(rc)),
                _ => Decision::Pass,
            },
        })
    }

    fn observe_line(&self, client: Addr, line: &Line<'_>) -> Result<Option<Trip>, Error> {
        let req = crate::detect::Request {
            uri: line.target,
            status: line.status.min(999),
            user_agent: line.user_agent,
        };
        if self.engine.observe(client, &req) != code::TRIP {
            return Ok(None);
        }
        let lua = self.lua;
        let t = (|| -> LuaResult<Table> {
            let t = lua.create_table()?;
            t.set("status", line.status)?;
            t.set("method", line.method)?;
            t.set("path", lua.create_string(line.target)?)?;
            t.set("user_agent", lua.create_string(line.user_agent)?)?;
            Ok(t)
        })()
        .map_err(|e| self.failed("tripped", e))?;
        let r = self.call("tripped", t)?.into_vec();
        let Some(Value::Table(ev)) = r.into_iter().next() else {
            return Ok(None);
        };
        let field = |k: &str| text(&ev, k).map(Option::unwrap_or_default);
        Ok(Some(Trip {
            ip: field("ip").map_err(|e| self.failed("tripped", e))?,
            rule: field("rule").map_err(|e| self.failed("tripped", e))?,
            action: field("action").map_err(|e| self.failed("tripped", e))?,
        }))
    }
}

#[cfg(all(test, feature = "vendored"))]
mod tests {
    use mlua::{Lua, Table};

    /// The module, an engine and its admin API in a vendored LuaJIT, with
    /// an `ngx` that records log lines, and a bridge whose calls are
    /// recorded in `calls`.
    fn setup(opts: &str) -> (Lua, Table) {
        let lua = Lua::new();
        let m = super::super::warden_core(&lua).unwrap();
        lua.globals().set("core", m).unwrap();
        lua.load(format!(
            r#"
            logged = {{}}
            ngx = {{ WARN = 5, ERR = 4,
                     now = function() return 1763700000.5 end,
                     log = function(level, msg) logged[#logged + 1] = level .. " " .. msg end }}
            engine = assert(core.new({opts}))
            admin, warning = core.admin(engine)
            calls = {{}}
            local function rec(name, ...)
                calls[#calls + 1] = name .. "(" .. table.concat({{ ... }}, ",") .. ")"
            end
            bridge = {{
                sync = function() rec("sync") end,
                block = function(t, secs, reason) rec("block", t, secs, reason) return true, t end,
                unblock = function(t) rec("unblock", t) return true end,
                dict_get = function(k) rec("dict_get", k) return nil end,
                policy = function() return '{{"whitelist":[{{"id":3,"type":"ip","value":"192.0.2.3"}}]}}' end,
                update = function(last_try, op, a) rec("update", op)
                    if op == "remove" then return nil, "no whitelist entry with id 9", "id", 404 end
                    a.id, a.created = 4, 1763700000
                    return a
                end,
                refresh = function() return nil, "journal is full" end,
                stats = function() return engine:stats() end,
                dict_free = function() return 1234 end,
                decide = function(ip, site, path, method) rec("decide", ip, site or "-", path, method)
                    return 0 end,
                tripped = function(line) return nil end,
            }}
            function serve(method, uri, body, extra)
                local req = {{ vars = {{ request_method = method, uri = uri,
                                        remote_addr = "127.0.0.1",
                                        http_authorization = "Bearer t0ken-0123456789abcdef" }},
                              args = {{}}, body = body }}
                for k, v in pairs(extra or {{}}) do req[k] = v end
                return admin:serve(req, bridge)
            end
            "#
        ))
        .exec()
        .unwrap();
        let g = lua.globals();
        (lua, g)
    }

    const OPTS: &str = r#"{ dict = "t-lua-admin", admin_token = "t0ken-0123456789abcdef",
                            trusted_proxies = { "127.0.0.1" } }"#;

    #[test]
    fn variables_and_construction() {
        let (lua, g) = setup(OPTS);
        let vars: Vec<String> = lua.load("core.admin_variables").eval().unwrap();
        assert_eq!(vars, crate::admin::exchange::VARIABLES);
        assert!(g.get::<mlua::Value>("warning").unwrap().is_nil());
        let (ok, err): (mlua::Value, String) = lua
            .load(
                r#"return core.admin(assert(core.new{ dict = "t-lua-admin2",
                     admin_token_file = "/nonexistent/token" }))"#,
            )
            .eval()
            .unwrap();
        assert!(ok.is_nil());
        assert!(err.starts_with("opts.admin_token_file: cannot read '/nonexistent/token': "));
        let warning: String = lua
            .load(
                r#"return select(2, core.admin(assert(core.new{ dict = "t-lua-admin3",
                     admin_token = "short" })))"#,
            )
            .eval()
            .unwrap();
        assert!(warning.starts_with("the admin token is shorter than 16 characters"));
    }

    #[test]
    fn serving_through_the_bridge() {
        let (lua, _) = setup(OPTS);
        let run = |code: &str| -> String { lua.load(code).eval().unwrap() };
        // health: the bridge's dict, the engine's blocks
        assert_eq!(
            run(r#"local r = serve("GET", "/api/health")
                   return r.status .. " " .. r.headers["Content-Type"] .. " " .. r.headers["Cache-Control"] .. " " .. r.body"#),
            "200 application/json no-store {\"blocks\":0,\"dict_free_bytes\":1234,\"status\":\"ok\",\"version\":\"0.1.0\"}\n"
        );
        // a body is asked for, then the block goes through the bridge
        assert_eq!(
            run(r#"local r = serve("POST", "/api/security/blocked-ips")
                   return r.need .. " " .. r.max"#),
            "body 1048576"
        );
        assert_eq!(
            run(r#"calls = {}
                   local r = serve("POST", "/api/security/blocked-ips", '{"ip": "192.0.2.1", "duration": "1h", "reason": "x"}')
                   return r.status .. " " .. table.concat(calls, " ") .. " " .. r.body"#),
            "201 block(192.0.2.1,3600,x) {\"expires\":1763703600.5,\"ip\":\"192.0.2.1\",\"message\":\"blocked\",\"permanent\":false,\"reason\":\"x\",\"remaining\":3600,\"source\":\"manual\"}\n"
        );
        // not blocked anywhere: 404, the dict asked, nothing removed
        assert_eq!(
            run(r#"calls = {}
                   local r = serve("DELETE", "/api/security/blocked-ips/192.0.2.9")
                   return r.status .. " " .. table.concat(calls, " ")"#),
            "404 sync() dict_get(b|192.0.2.9)"
        );
        // policy edits: statuses from the bridge's kinds
        assert_eq!(
            run(
                r#"local r = serve("DELETE", "/api/security/whitelist/9") return r.status .. " " .. r.body"#
            ),
            "404 {\"error\":\"no whitelist entry with id 9\",\"field\":\"id\"}\n"
        );
        assert_eq!(
            run(r#"local r = serve("POST", "/api/security/whitelist", '{"type": "ip", "value": "192.0.2.4"}')
                   return r.status .. " " .. r.body"#),
            "201 {\"created\":1763700000,\"description\":\"\",\"id\":4,\"type\":\"ip\",\"value\":\"192.0.2.4\"}\n"
        );
        assert!(
            run(r#"return serve("GET", "/api/security/whitelist").body"#)
                .contains("\"value\":\"192.0.2.3\"")
        );
        assert_eq!(
            run(
                r#"local r = serve("POST", "/api/security/refresh") return r.status .. " " .. r.body"#
            ),
            "500 {\"error\":\"journal is full\",\"field\":null}\n"
        );
        // the Prometheus text from the bridge's stats
        assert!(run(r#"local r = serve("GET", "/api/metrics")
                       return r.headers["Content-Type"] .. "\n" .. r.body"#)
        .starts_with("text/plain; version=0.0.4\n# HELP warden_info "));
    }

    #[test]
    fn check_asks_for_reputation() {
        let (lua, _) = setup(OPTS);
        let run = |code: &str| -> String { lua.load(code).eval().unwrap() };
        assert_eq!(
            run(r#"local extra = { reputation_threshold = 20 }
                   local r = serve("GET", "/api/security/check", nil, extra)
                   local asked = r.need .. " " .. r.ip
                   calls = {}
                   extra.reputation = 10
                   r = serve("GET", "/api/security/check", nil, extra)
                   return asked .. "; " .. r.status .. " " .. r.headers["X-Warden-Reason"]
                          .. " " .. r.headers["X-Threat-Score"] .. " " .. table.concat(calls, " ")"#),
            "reputation 127.0.0.1; 403 reputation 10 90 sync() decide(127.0.0.1,-,/,GET)"
        );
        assert_eq!(
            run(
                r#"local r = serve("GET", "/api/security/check", nil, { reputation_threshold = 20, reputation = false })
                   return r.status .. " " .. r.headers["X-Threat-Score"]"#
            ),
            "200 0"
        );
    }

    #[test]
    fn a_lua_error_in_the_bridge_is_a_500_logged() {
        let (lua, _) = setup(OPTS);
        let (res, line): (String, String) = lua
            .load(
                r#"bridge.dict_free = function() error("boom") end
                   local r = serve("GET", "/api/health")
                   return r.status .. " " .. r.body, logged[#logged]"#,
            )
            .eval()
            .unwrap();
        assert_eq!(
            res,
            "500 {\"error\":\"internal error (see the error log)\",\"field\":null}\n"
        );
        assert!(line.starts_with("4 warden: api: dict_free: "), "{line}");
        assert!(line.contains("boom"), "{line}");
    }

    #[test]
    fn prometheus_and_gauges_of_a_stats_table() {
        let (lua, _) = setup(OPTS);
        let text: String = lua
            .load(
                r#"local s = engine:stats(); s.dict = "warden"; s.version = "0.1.0"
                     s.dict_free_bytes = 100; s.passed = 3; s.allowlisted = 0
                     s.denylisted = 0; s.blocked_manual = 0; s.blocked_auto = 0
                     return core.prometheus(s)"#,
            )
            .eval()
            .unwrap();
        assert!(text.contains("warden_requests_checked_total 3\n"));
        assert!(text.contains("warden_shm_free_bytes{dict=\"warden\"} 100\n"));
        let (names, free): (Vec<String>, u64) = lua
            .load(
                r#"local g, names = core.gauges({ blocks = 2, denylist = 1, dict_free_bytes = 7 })
                     return names, g.shm_free_bytes"#,
            )
            .eval()
            .unwrap();
        assert_eq!(
            (names, free),
            (vec!["blocked_addresses".into(), "shm_free_bytes".into()], 7)
        );
    }
}
