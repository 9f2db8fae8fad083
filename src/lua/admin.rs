//! `LuaAdmin`: the admin API as Lua sees it (`admin:serve(req)`).
//!
//! `lua/resty/warden/api.lua` hands over the request (nginx variables,
//! query arguments, the body once asked for, the reputation once asked
//! for) and sends the response it gets back, after firing the iprepd
//! reports it names. The backend is the engine's [`crate::ops::Warden`]:
//! the engine and its shared dict.

use mlua::{AnyUserData, Lua, Result as LuaResult, Table, UserData, UserDataMethods, Value};

use super::engine::LuaEngine;
use crate::admin::exchange::{Arg, Reply, Request};
use crate::admin::Admin;
use crate::error::Error;

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

/// A Lua string field, if it is one.
fn text(t: &Table, k: &str) -> LuaResult<Option<String>> {
    Ok(t.get::<Option<mlua::LuaString>>(k)?
        .map(|s| s.to_string_lossy()))
}

/// `warden:api(opts)`'s options: `{ token = false }` mounts the API
/// without a token (an internal listener the location restricts); `nil`
/// or `{}` keeps the token required. Anything else is an error naming
/// the option.
fn token_required(opts: Value) -> LuaResult<bool> {
    let bad = |m: String| Err(mlua::Error::runtime(format!("warden:api(): {m}")));
    let t = match opts {
        Value::Nil => return Ok(true),
        Value::Table(t) => t,
        other => return bad(format!("opts must be a table, got {}", other.type_name())),
    };
    let mut required = true;
    for pair in t.pairs::<Value, Value>() {
        let (k, v) = pair?;
        match (k.to_string()?.as_str(), v) {
            ("token", Value::Boolean(false)) => required = false,
            ("token", Value::Nil | Value::Boolean(true)) => {}
            ("token", other) => {
                return bad(format!(
                    "opts.token must be false (no token: an internal location) or true, got {}",
                    other.type_name()
                ))
            }
            (name, _) => return bad(format!("unknown option opts.{name} (known: token)")),
        }
    }
    Ok(required)
}

/// The request table `api.lua` builds: `{ vars = {...}, args = {...},
/// body = "..." | nil, reputation_threshold = n | nil, reputation = n |
/// false | nil, retries = n | nil, started = the request's start (s) |
/// nil, options = api()'s opts | nil }`.
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
    r.started_ms = t
        .get::<Option<f64>>("started")?
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(0, |s| (s * 1000.0) as u64);
    r.token_required = token_required(t.get::<Value>("options")?)?;
    r.reputation = match t.get::<Value>("reputation")? {
        Value::Nil => None,
        Value::Integer(i) => Some(Some(i as f64)),
        Value::Number(n) => Some(Some(n)),
        _ => Some(None),
    };
    Ok(r)
}

/// What `serve` returns to Lua: `{ status, headers, body, reports = {
/// { ip, rule }, ... } | nil, unobserved = true | nil }`, or `{ need =
/// "body", max }`, `{ need = "reputation", ip }`, `{ need = "retry",
/// after (seconds) }`.
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
            if !res.reports.is_empty() {
                let list = lua.create_table_with_capacity(res.reports.len(), 0)?;
                for (i, (ip, rule)) in res.reports.into_iter().enumerate() {
                    list.raw_set(i + 1, lua.create_sequence_from([ip, rule.to_string()])?)?;
                }
                t.set("reports", list)?;
            }
            if res.unobserved {
                t.set("unobserved", true)?;
            }
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

impl UserData for LuaAdmin {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        // serve(req) -> reply (see `reply`)
        m.add_method("serve", |lua, this, req: Table| {
            let req = request(&req)?;
            let e = this.engine.borrow::<LuaEngine>()?;
            reply(lua, this.admin.serve(&e.warden(), &req))
        });
    }
}

#[cfg(all(test, feature = "vendored"))]
mod tests {
    use mlua::{Lua, Table};

    /// An engine on a Lua table for a dict (see `lua::testing`), its
    /// admin API (`admin`) and `serve(method, uri, body?, extra?)`.
    fn setup(opts: &str) -> (Lua, Table) {
        let lua = crate::lua::testing::lua("t-lua-admin", opts);
        lua.load(
            r#"
            admin, warning = core.admin(engine)
            function serve(method, uri, body, extra)
                local req = { vars = { request_method = method, uri = uri,
                                      remote_addr = "127.0.0.1",
                                      http_authorization = "Bearer t0ken-0123456789abcdef" },
                              args = {}, body = body }
                for k, v in pairs(extra or {}) do req[k] = v end
                return admin:serve(req)
            end
            "#,
        )
        .exec()
        .unwrap();
        let g = lua.globals();
        (lua, g)
    }

    const OPTS: &str = r#"{ dict = "t-lua-admin", admin_token = "t0ken-0123456789abcdef",
                            trusted_proxies = { "127.0.0.1" },
                            detector = { not_found_threshold = 2 } }"#;

    #[test]
    fn variables_and_construction() {
        let (lua, g) = setup(OPTS);
        let vars: Vec<String> = lua.load("core.admin_variables").eval().unwrap();
        assert_eq!(vars, crate::admin::exchange::VARIABLES);
        assert!(g.get::<mlua::Value>("warning").unwrap().is_nil());
        // the token file is read with the options (src/admin/auth.rs): an
        // unreadable one is an error naming it
        let (ok, err): (mlua::Value, String) = lua
            .load(
                r#"return core.engine{ dict = "t-lua-admin",
                     admin_token_file = "/nonexistent/token" }"#,
            )
            .eval()
            .unwrap();
        assert!(ok.is_nil());
        assert!(
            err.starts_with("opts.admin_token_file '/nonexistent/token' cannot be read: "),
            "{err}"
        );
        let warning: String = lua
            .load(
                r#"return select(2, core.admin(assert(core.engine{ dict = "t-lua-admin",
                     admin_token = "short" })))"#,
            )
            .eval()
            .unwrap();
        assert!(warning.starts_with("the admin token is shorter than 16 characters"));
    }

    #[test]
    fn serving_from_the_shared_dict() {
        let (lua, _) = setup(OPTS);
        let run = |code: &str| -> String { lua.load(code).eval().unwrap() };
        assert_eq!(
            run(r#"local r = serve("GET", "/api/health")
                   return r.status .. " " .. r.headers["Content-Type"] .. " " .. r.headers["Cache-Control"] .. " " .. r.body"#),
            "200 application/json no-store {\"blocks\":0,\"dict_free_bytes\":40000,\"status\":\"ok\",\"version\":\"0.1.0\"}\n"
        );
        // a body is asked for, then the block is made in the dict
        assert_eq!(
            run(r#"local r = serve("POST", "/api/security/blocked-ips")
                   return r.need .. " " .. r.max"#),
            "body 1048576"
        );
        assert_eq!(
            run(
                r#"local r = serve("POST", "/api/security/blocked-ips", '{"ip": "192.0.2.1", "duration": "1h", "reason": "x"}')
                   return r.status .. " " .. tostring(dict:get("b|192.0.2.1") ~= nil)"#
            ),
            "201 true"
        );
        assert_eq!(
            run(r#"return serve("DELETE", "/api/security/blocked-ips/192.0.2.9").status"#),
            "404"
        );
        // policy edits: statuses from the kinds of policy::doc's errors
        assert_eq!(
            run(
                r#"local r = serve("DELETE", "/api/security/whitelist/9") return r.status .. " " .. r.body"#
            ),
            "404 {\"error\":\"no whitelist entry with id 9\",\"field\":\"id\"}\n"
        );
        assert!(run(r#"local r = serve("POST", "/api/security/whitelist", '{"type": "ip", "value": "192.0.2.4"}')
                       return r.status .. " " .. r.body"#)
        .starts_with("201 {\"created\":"));
        // another worker holds the lock: Lua is told to wait and retry
        assert_eq!(
            run(r#"dict:safe_set("p|lock", 1)
                   local r = serve("DELETE", "/api/security/whitelist/1")
                   local again = serve("DELETE", "/api/security/whitelist/1", nil, { retries = 600 })
                   dict:delete("p|lock")
                   return r.need .. " " .. r.after .. " " .. again.status"#),
            "retry 0.005 503"
        );
        assert!(run(r#"local r = serve("GET", "/api/metrics")
                       return r.headers["Content-Type"] .. "\n" .. r.body"#)
        .starts_with("text/plain; version=0.0.4\n# HELP warden_info "));
    }

    #[test]
    fn api_options_waive_the_token_or_are_refused() {
        let (lua, _) = setup(OPTS);
        let run = |code: &str| -> String { lua.load(code).eval().unwrap() };
        let anonymous = r#"local req = { vars = { request_method = "POST",
                                 uri = "/_internal/security/refresh-blocked-ips",
                                 remote_addr = "127.0.0.1" }, args = {} }"#;
        assert_eq!(
            run(&format!(
                r#"{anonymous}
                   local denied = admin:serve(req).status
                   req.options = {{ token = false }}
                   local r = admin:serve(req)
                   req.options = {{ token = true }}
                   return denied .. " " .. r.status .. " " .. tostring(r.body:find('"success":true', 1, true) ~= nil)
                          .. " " .. admin:serve(req).status"#
            )),
            "401 200 true 401"
        );
        for (opts, msg) in [
            (
                r#"{ token = "t" }"#,
                "warden:api(): opts.token must be false (no token: an internal location) or true, got string",
            ),
            (
                r#"{ tokn = false }"#,
                "warden:api(): unknown option opts.tokn (known: token)",
            ),
            ("false", "warden:api(): opts must be a table, got boolean"),
        ] {
            let err = run(&format!(
                r#"{anonymous}
                   req.options = {opts}
                   local ok, err = pcall(admin.serve, admin, req)
                   return tostring(ok) .. " " .. tostring(err)"#
            ));
            assert!(err.starts_with("false ") && err.contains(msg), "{err}");
        }
    }

    #[test]
    fn check_asks_for_reputation_and_is_unobserved() {
        let (lua, _) = setup(OPTS);
        let run = |code: &str| -> String { lua.load(code).eval().unwrap() };
        assert_eq!(
            run(r#"local extra = { reputation_threshold = 20 }
                   local r = serve("GET", "/api/security/check", nil, extra)
                   local asked = r.need .. " " .. r.ip
                   extra.reputation = 10
                   r = serve("GET", "/api/security/check", nil, extra)
                   return asked .. "; " .. r.status .. " " .. r.headers["X-Warden-Reason"]
                          .. " " .. r.headers["X-Threat-Score"] .. " " .. tostring(r.unobserved)"#),
            "reputation 127.0.0.1; 403 reputation 10 90 true"
        );
        assert_eq!(
            run(
                r#"local r = serve("GET", "/api/security/check", nil, { reputation_threshold = 20, reputation = false })
                   return r.status .. " " .. r.headers["X-Threat-Score"]"#
            ),
            "200 0"
        );
        assert_eq!(
            run(r#"return tostring(serve("GET", "/api/health").unobserved)"#),
            "nil"
        );
    }

    #[test]
    fn analyze_returns_the_reports_to_send() {
        let (lua, _) = setup(OPTS);
        let run = |code: &str| -> String { lua.load(code).eval().unwrap() };
        assert_eq!(
            run(
                r#"local line = '198.51.100.9 - - [21/Nov/2026:10:15:31 +0000] "GET /x HTTP/1.1" 404 153 "-" "curl"'
                   local r = serve("POST", "/api/security/analyze", line .. "\n" .. line)
                   local rep = r.reports and r.reports[1]
                   return r.status .. " " .. (rep and rep[1] .. " " .. rep[2] or "none")"#
            ),
            "200 198.51.100.9 not_found"
        );
    }

    #[test]
    fn stats_prometheus_and_gauges_from_rust() {
        let (lua, _) = setup(OPTS);
        let (dict, free, text): (String, u64, String) = lua
            .load(
                r#"local s = engine:stats()
                   return s.dict, s.dict_free_bytes, engine:prometheus()"#,
            )
            .eval()
            .unwrap();
        assert_eq!((dict.as_str(), free), ("t-lua-admin", 40000));
        assert!(text.contains("warden_shm_free_bytes{dict=\"t-lua-admin\"} 40000\n"));
        let (names, free): (Vec<String>, u64) = lua
            .load(r#"local g, names = engine:gauges() return names, g.shm_free_bytes"#)
            .eval()
            .unwrap();
        assert_eq!(
            (names[..2].to_vec(), free),
            (
                vec![
                    "blocked_addresses".to_string(),
                    "detector_tracked_clients".into()
                ],
                40000
            )
        );
    }
}
