//! The engine's operations on its shared dict as Lua calls them
//! (`engine:sync()`, `engine:block()`, ...): conversions to and from
//! [`crate::ops::Warden`], nothing more.
//!
//! Errors come back as `nil, message, field, status`: the field the
//! message is about (or nil) and the HTTP status of the error's kind, so
//! that the admin API never reads the message to choose a status.

use mlua::{LuaSerdeExt, MultiValue, Result as LuaResult, UserDataMethods, Value};

use std::path::Path;

use super::engine::{event_table, LuaEngine};
use super::{duration_arg, net_arg, nil_err, ok, str_arg};
use crate::blocks::{Action as BlockAction, Source};
use crate::detect::offences::Seen;
use crate::error::Error;
use crate::net::addr::Addr;
use crate::persist::fleet::agent::{Action, Outcome};
use crate::policy::decision::{Asked, Decision};
use crate::policy::doc::{Edit, List, Update};

/// An optional string argument.
type Text = Option<mlua::LuaString>;

/// `nil, message, field, status`.
fn fail(lua: &mlua::Lua, e: &Error) -> LuaResult<MultiValue> {
    Ok(MultiValue::from_vec(vec![
        Value::Nil,
        Value::String(lua.create_string(e.message())?),
        match e.field() {
            Some(f) => Value::String(lua.create_string(f)?),
            None => Value::Nil,
        },
        Value::Integer(i64::from(e.kind().status())),
    ]))
}

fn text(v: &Option<mlua::LuaString>) -> String {
    v.as_ref().map(|s| s.to_string_lossy()).unwrap_or_default()
}

fn target(v: &Value) -> Result<crate::net::addr::Net, Error> {
    net_arg(v).map_err(|e| Error::invalid("ip", e))
}

fn list(v: &Value) -> Result<List, Error> {
    match v {
        Value::String(s) if s.as_bytes().as_ref() == b"whitelist" => Ok(List::Whitelist),
        Value::String(s) if s.as_bytes().as_ref() == b"routes" => Ok(List::Routes),
        other => Err(Error::invalid(
            "list",
            format!(
                "list must be 'whitelist' or 'routes', got {}",
                super::show_lua(other)
            ),
        )),
    }
}

/// The arguments of `engine:block()` (and `engine:prepare()`): target,
/// duration, reason (cut to [`crate::ops::MAX_REASON`]), source.
fn block_args(
    t: &Value,
    duration: &Value,
    reason: &Value,
    source: Option<&str>,
) -> Result<(crate::net::addr::Net, u64, String, Source), Error> {
    let net = target(t)?;
    let duration_ms = duration_arg(duration).map_err(|e| Error::invalid("duration", e))?;
    let reason = match reason {
        Value::Nil => String::new(),
        v => str_arg(v, "reason")
            .map_err(|e| Error::invalid("reason", e))?
            .chars()
            .take(crate::ops::MAX_REASON)
            .collect(),
    };
    let source = source.unwrap_or("manual");
    let source = Source::parse(source)
        .ok_or_else(|| Error::invalid("source", format!("unknown block source '{source}'")))?;
    Ok((net, duration_ms, reason, source))
}

/// The edit `op` of `engine:edit_policy()` with its arguments.
fn edit(lua: &mlua::Lua, op: &str, a: Value, b: Value) -> Result<Edit, Error> {
    let body = |v: Value| -> Result<serde_json::Value, Error> {
        lua.from_value(v)
            .map_err(|e| Error::invalid("body", format!("body: {e}")))
    };
    let name = |v: &Value| str_arg(v, "name").map_err(|e| Error::invalid("deployment", e));
    Ok(match op {
        "add" => Edit::Add(list(&a)?, body(b)?),
        "remove" => {
            let id = match b {
                Value::Integer(i) if i > 0 => i as u64,
                Value::Number(n) if n >= 1.0 && n.fract() == 0.0 => n as u64,
                other => {
                    return Err(Error::invalid(
                        "id",
                        format!(
                            "id must be a positive integer, got {}",
                            super::show_lua(&other)
                        ),
                    ))
                }
            };
            Edit::Remove(list(&a)?, id)
        }
        "put_site" => Edit::PutSite(name(&a)?, body(b)?),
        "delete_site" => Edit::DeleteSite(name(&a)?),
        "capture" => Edit::Capture(matches!(a, Value::Boolean(true))),
        other => {
            return Err(Error::invalid(
                "op",
                format!("unknown policy edit '{other}'"),
            ))
        }
    })
}

pub(super) fn add_methods<M: UserDataMethods<LuaEngine>>(m: &mut M) {
    // sync(load?) -> true: brings this worker up to date with the journal
    // (load: and compiles the policy document again, as new() does). A
    // failure is logged, never raised.
    m.add_method("sync", |_, this, load: Option<bool>| {
        let w = this.warden();
        let r = if load == Some(true) {
            w.load()
        } else {
            w.sync()
        };
        if let Err(e) = r {
            w.store()
                .log(crate::store::Level::Err, &format!("sync failed: {e}"));
        }
        Ok(true)
    });
    // refresh() -> true | nil, err, field, status: every worker re-reads
    // every block and the policy before its next request
    m.add_method("refresh", |lua, this, ()| match this.warden().refresh() {
        Ok(()) => ok(lua, true),
        Err(e) => fail(lua, &e),
    });
    // block(target, duration?, reason?, source?, action?) -> true, target |
    // nil, err, field, status. duration: seconds or "90s"/"15m"/"24h"/"7d"
    // (0 or nil: permanent); source: "manual" (default) or "auto";
    // action: "block" (default) or "challenge".
    m.add_method(
        "block",
        |lua,
         this,
         (t, duration, reason, source, action): (
            Value,
            Value,
            Value,
            Option<String>,
            Option<String>,
        )| {
            let action = match action.as_deref() {
                None => Ok(BlockAction::Block),
                Some(a) => BlockAction::parse(a).ok_or_else(|| {
                    Error::invalid(
                        "action",
                        format!("action must be 'block' or 'challenge', got '{a}'"),
                    )
                }),
            };
            let args = block_args(&t, &duration, &reason, source.as_deref());
            let r = args.and_then(|(net, d, reason, source)| {
                this.warden()
                    .block_as(&net, d, &reason, source, action?)
                    .map(|()| net)
            });
            match r {
                Ok(net) => Ok(MultiValue::from_vec(vec![
                    Value::Boolean(true),
                    Value::String(lua.create_string(net.to_string())?),
                ])),
                Err(e) => fail(lua, &e),
            }
        },
    );
    // prepare(target, duration, reason, source, now) -> { target, key,
    // value, entry, ttl, expires, allowlisted } | nil, err: the records a
    // block would write, written by nobody (for tools and tests)
    m.add_method(
        "prepare",
        |lua, this, (t, duration, reason, source, now): (Value, Value, Value, String, f64)| {
            let (net, duration_ms, reason, source) =
                match block_args(&t, &duration, &reason, Some(&source)) {
                    Ok(a) => a,
                    Err(e) => return fail(lua, &e),
                };
            let p = this.engine().prepare(
                &net,
                duration_ms,
                source,
                &reason,
                BlockAction::Block,
                (now * 1000.0) as u64,
            );
            let out = lua.create_table_with_capacity(0, 7)?;
            out.set("target", net.to_string())?;
            out.set("key", p.key)?;
            out.set("value", p.value)?;
            out.set("entry", p.entry)?;
            out.set("ttl", p.ttl)?;
            out.set("expires", p.block.expires_ms as f64 / 1000.0)?;
            out.set("allowlisted", this.engine().allowlisted(net.first()))?;
            ok(lua, out)
        },
    );
    // unblock(target) -> true | nil, err, field, status (404: not blocked,
    // 409: a denylist entry)
    m.add_method("unblock", |lua, this, t: Value| {
        match target(&t).and_then(|net| this.warden().unblock(&net)) {
            Ok(()) => ok(lua, true),
            Err(e) => fail(lua, &e),
        }
    });
    // challenge(ip, method, request_uri, accept, user_agent, https, cookie,
    // body?) -> "pass" (a valid cookie) | "body" (read the body, call again
    // with it) | "block" (refuse as a block) | status, body, { name = value,
    // ... }: a challenged client's request (src/ops/challenge.rs)
    m.add_method(
        "challenge",
        |lua,
         this,
         (ip, method, uri, accept, ua, https, cookie, body): (
            mlua::LuaString,
            Text,
            Text,
            Text,
            Text,
            Option<bool>,
            Text,
            Text,
        )| {
            use crate::ops::challenge::{Request, Served};
            let Ok(client) = Addr::parse_bytes(&ip.as_bytes()) else {
                return Ok(MultiValue::from_vec(vec![Value::String(
                    lua.create_string("block")?,
                )]));
            };
            let (method, uri, accept, ua) = (text(&method), text(&uri), text(&accept), text(&ua));
            let body = body.as_ref().map(|b| b.as_bytes().to_vec());
            let cookie = cookie.as_ref().map(|c| c.as_bytes().to_vec());
            let r = Request {
                method: &method,
                uri: &uri,
                accept: &accept,
                user_agent: &ua,
                https: https.unwrap_or(false),
                cookie: cookie.as_deref(),
                body: body.as_deref(),
            };
            let word = |w: &str| -> LuaResult<MultiValue> {
                Ok(MultiValue::from_vec(vec![Value::String(
                    lua.create_string(w)?,
                )]))
            };
            match this.warden().challenge(client, &r) {
                Served::Pass => word("pass"),
                Served::NeedBody => word("body"),
                Served::Block => word("block"),
                Served::Reply {
                    status,
                    headers,
                    body,
                } => {
                    let h = lua.create_table_with_capacity(0, headers.len())?;
                    for (k, v) in headers {
                        h.set(k, v)?;
                    }
                    Ok(MultiValue::from_vec(vec![
                        Value::Integer(i64::from(status)),
                        Value::String(lua.create_string(body)?),
                        Value::Table(h),
                    ]))
                }
            }
        },
    );
    // trip(status, method, path, user_agent) -> nil | event, client, rule:
    // acts on the rule that tripped in this worker's latest observation;
    // client and rule: to report to iprepd (nil when not blocked)
    m.add_method(
        "trip",
        |lua,
         this,
         (status, method, path, ua): (
            Option<f64>,
            Option<mlua::LuaString>,
            Option<mlua::LuaString>,
            Option<mlua::LuaString>,
        )| {
            let (method, path, ua) = (text(&method), text(&path), text(&ua));
            let seen = Seen {
                status: status.unwrap_or(0.0).clamp(0.0, 65_535.0) as u16,
                method: &method,
                path: &path,
                user_agent: &ua,
            };
            let Some(t) = this.warden().trip(&seen) else {
                return Ok(MultiValue::new());
            };
            let mut out = vec![event_table(lua, &t.event)?];
            if let Some((client, rule)) = t.report {
                out.push(Value::String(lua.create_string(client.to_string())?));
                out.push(Value::String(lua.create_string(rule)?));
            }
            Ok(MultiValue::from_vec(out))
        },
    );
    // decide(verdict, ip, site, path, method, authorization, server_name)
    // -> nil (go
    // on) | "skip" | "blocked" | "forbidden_ip", reason | "blocked_path",
    // reason | "rate_limited", reason, retry_after | "unauthorized", why,
    // challenge: the path and site policies' decision on a request of ip
    // whose lists and blocks gave `verdict` (check()'s outcome code);
    // counted (see ops::Warden::policy_decision). reason: what the access
    // phase logs; retry_after: whole seconds; challenge: WWW-Authenticate.
    // The request's site is `site` (check{ site = ... }) when given, else
    // the server's `server_name` (policy::request_site).
    m.add_method(
        "decide",
        |lua,
         this,
         (verdict, ip, site, path, method, auth, server_name, cookie): (
            i32,
            mlua::LuaString,
            Text,
            mlua::LuaString,
            mlua::LuaString,
            Text,
            Text,
            Text,
        )| {
            let Ok(client) = Addr::parse_bytes(&ip.as_bytes()) else {
                return Ok(MultiValue::new());
            };
            let (site, server_name) = (
                site.as_ref().map(|s| s.as_bytes()),
                server_name.as_ref().map(|s| s.as_bytes()),
            );
            let (site, path, method) = (
                crate::policy::request_site(site.as_deref(), server_name.as_deref()),
                path.as_bytes(),
                method.as_bytes(),
            );
            let auth = auth.as_ref().map(|a| a.as_bytes());
            let cookie = cookie.as_ref().map(|c| c.as_bytes());
            let asked = Asked {
                site,
                path: &path,
                method: &method,
                authorization: auth.as_deref(),
                cookie: cookie.as_deref(),
            };
            let d = this.warden().policy_decision(client, verdict, &asked);
            let s = |v: &str| lua.create_string(v).map(Value::String);
            let reason = |d: &Decision| {
                d.site_reason(
                    &String::from_utf8_lossy(site),
                    &String::from_utf8_lossy(&path),
                )
            };
            let out = match &d {
                Decision::Pass | Decision::Allow => vec![],
                Decision::Skip => vec![s("skip")?],
                Decision::Blocked(_) => vec![s("blocked")?],
                Decision::ForbiddenIp => vec![s("forbidden_ip")?, s(&reason(&d))?],
                Decision::Challenge => vec![s("challenge")?],
                Decision::NeedCookie => vec![s("cookie")?],
                Decision::BlockedPath => vec![s("blocked_path")?, s(&reason(&d))?],
                Decision::RateLimited { retry_after_s, .. } => vec![
                    s("rate_limited")?,
                    s(&reason(&d))?,
                    Value::Number(Decision::retry_after(*retry_after_s) as f64),
                ],
                Decision::Unauthorized { why, scheme, realm } => {
                    vec![s("unauthorized")?, s(why)?, s(&scheme.challenge(realm))?]
                }
            };
            Ok(MultiValue::from_vec(out))
        },
    );
    // counter(key, by, ttl?) -> n | nil, err: an expendable counter (the
    // store's rule: refused when the dict's last eighth is reached)
    m.add_method(
        "counter",
        |lua, this, (key, by, ttl): (String, f64, Option<f64>)| match this.warden().counter(
            &key,
            by,
            ttl.unwrap_or(0.0),
        ) {
            Ok(n) => ok(lua, n),
            Err(e) => fail(lua, &e),
        },
    );
    // policy_document() -> the admin API's document | nil, err, field,
    // status
    m.add_method("policy_document", |lua, this, ()| {
        match this.warden().policy_document() {
            Ok(d) => ok(lua, lua.to_value(&d)?),
            Err(e) => fail(lua, &e),
        }
    });
    // edit_policy(last_try, op, a, b) -> result | false (busy: another
    // worker holds the lock; sleep a little and try again) |
    // nil, err, field, status. op: "add" (a: "whitelist" | "routes", b:
    // the entry), "remove" (a: the list, b: the id), "put_site" (a: name,
    // b: the policy), "delete_site" (a: name), "capture" (a: on?).
    m.add_method(
        "edit_policy",
        |lua, this, (last_try, op, a, b): (bool, String, Value, Value)| {
            let r = edit(lua, &op, a, b).and_then(|e| this.warden().edit_policy(&e, last_try));
            match r {
                Ok(Update::Done(v)) => ok(lua, lua.to_value(&v)?),
                Ok(Update::Busy) => ok(lua, false),
                Err(e) => fail(lua, &e),
            }
        },
    );
    // restore_state(path): in new(), in the master (a fresh dict only)
    m.add_method("restore_state", |_, this, path: String| {
        this.warden().restore_state(Path::new(&path));
        Ok(())
    });
    // start_saving(path): worker 0 keeps the state file from now on
    m.add_method("start_saving", |_, this, path: String| {
        this.warden().start_saving(Path::new(&path));
        Ok(())
    });
    // save_tick(exiting): the state file timer (exiting: write now)
    m.add_method("save_tick", |_, this, exiting: bool| {
        this.warden().save_tick(exiting);
        Ok(())
    });
    // start_event_log(target): worker 0 writes the event log from now on
    // (target: a path, made absolute by the caller, "stderr" or
    // "error_log")
    m.add_method("start_event_log", |lua, this, target: String| {
        match crate::events::log::Target::parse(&target) {
            Ok(t) => {
                this.warden().start_event_log(t);
                ok(lua, true)
            }
            Err(e) => nil_err(lua, format!("event_log {e}")),
        }
    });
    // event_log(exiting) -> { line, ... }: the event log timer's run; the
    // lines are for nginx's error log (event_log = "error_log")
    m.add_method("event_log", |lua, this, exiting: bool| {
        let lines = this.warden().event_log_run(exiting);
        let t = lua.create_table_with_capacity(lines.len(), 0)?;
        for (i, l) in lines.iter().enumerate() {
            t.raw_set(i + 1, l.as_str())?;
        }
        Ok(t)
    });
    // fleet_init() -> this node's name (in new(): a generated name is kept
    // in the dict, so that a reload keeps it)
    m.add_method("fleet_init", |_, this, ()| Ok(this.warden().fleet_init()));
    // fleet_step(exiting, res, err) -> what the fleet agent's driver does
    // next (src/persist/fleet/agent.rs), given what came of the last step:
    // res: the bytes read, or true (connected, closed, slept; nil at the
    // first call); nil, err: the cosocket failed; false, err: the driver
    // raised err. Returns one of
    //   "connect", conn, host, port (nil: a unix: path), timeout (ms)
    //   "io", conn, bytes (nil: nothing to send): send, then read once
    //   "close" (both connections)
    //   "sleep", nil, seconds
    //   "done"
    m.add_method(
        "fleet_step",
        |lua, this, (exiting, res, err): (bool, Value, Option<mlua::LuaString>)| {
            let err = text(&err);
            let data;
            let outcome = match &res {
                Value::String(s) => {
                    data = s.as_bytes();
                    Outcome::Data(&data)
                }
                Value::Nil if !err.is_empty() => Outcome::Failed(&err),
                Value::Boolean(false) => Outcome::Crashed(&err),
                _ => Outcome::Ok,
            };
            let out = match this.warden().fleet_step(exiting, outcome) {
                Action::Connect {
                    conn,
                    host,
                    port,
                    timeout_ms,
                } => vec![
                    Value::String(lua.create_string("connect")?),
                    Value::Integer(conn as i64),
                    Value::String(lua.create_string(&host)?),
                    port.map_or(Value::Nil, |p| Value::Integer(i64::from(p))),
                    Value::Integer(timeout_ms as i64),
                ],
                Action::Io { conn, send } => vec![
                    Value::String(lua.create_string("io")?),
                    Value::Integer(conn as i64),
                    if send.is_empty() {
                        Value::Nil
                    } else {
                        Value::String(lua.create_string(&send)?)
                    },
                ],
                Action::Close => vec![Value::String(lua.create_string("close")?)],
                Action::Sleep { ms } => vec![
                    Value::String(lua.create_string("sleep")?),
                    Value::Nil,
                    Value::Number(ms as f64 / 1000.0),
                ],
                Action::Done => vec![Value::String(lua.create_string("done")?)],
            };
            Ok(MultiValue::from_vec(out))
        },
    );
}

#[cfg(all(test, feature = "vendored"))]
mod tests {
    use crate::lua::testing::{lua, run};

    const OPTS: &str = r#"{ dict = "t-lua-ops", trusted_proxies = { "127.0.0.1" },
        whitelist = { { type = "path", value = "/health" } },
        sites = { shop = { allowed_ips = { "192.0.2.0/24" }, rate_limit = 1 },
                  off = { enabled = false } },
        protected_routes = { { path = "/admin", auth_type = "basic",
                               credentials = { "u:p" } } } }"#;

    #[test]
    fn blocks_through_the_dict_with_errors_that_name_a_status() {
        let lua = lua("t-lua-ops", OPTS);
        let got: String = run(
            &lua,
            r#"local ok, t = engine:block("192.0.2.7", "1h", "abuse")
               local b, info = engine:is_blocked("192.0.2.7")
               return tostring(ok) .. " " .. t .. " " .. tostring(b) .. " "
                      .. info.source .. " " .. info.reason .. " "
                      .. tostring(dict:get("b|192.0.2.7") ~= nil)"#,
        );
        assert_eq!(got, "true 192.0.2.7 true manual abuse true");
        let got: String = run(
            &lua,
            r#"local _, err, field, status = engine:unblock("192.0.2.8")
               local ok = engine:unblock("192.0.2.7")
               local _, err2, field2, status2 = engine:block("300.1.1.1")
               return err .. "|" .. field .. "|" .. status .. "|" .. tostring(ok)
                      .. "|" .. err2 .. "|" .. field2 .. "|" .. status2
                      .. "|" .. tostring((engine:is_blocked("192.0.2.7")))"#,
        );
        assert_eq!(
            got,
            "192.0.2.8 is not blocked|ip|404|true|invalid IP address or CIDR '300.1.1.1'|ip|400|false"
        );
    }

    #[test]
    fn policy_edits_wait_for_the_lock() {
        let lua = lua("t-lua-ops", OPTS);
        let got: String = run(
            &lua,
            r#"local e = engine:edit_policy(false, "add", "whitelist",
                                          { type = "ip", value = "198.51.100.4" })
               dict:safe_set("p|lock", 1)
               local busy = engine:edit_policy(false, "remove", "whitelist", e.id)
               local _, err, _, status = engine:edit_policy(true, "remove", "whitelist", e.id)
               dict:delete("p|lock")
               local _, err2, field2, status2 = engine:edit_policy(true, "remove", "whitelist", 99)
               return e.id .. " " .. tostring(busy) .. " " .. status .. " "
                      .. tostring(err ~= nil) .. " | " .. err2 .. " " .. field2 .. " " .. status2"#,
        );
        assert_eq!(
            got,
            "1 false 503 true | no whitelist entry with id 99 id 404"
        );
    }

    #[test]
    fn decide_is_the_one_policy_decision() {
        let lua = lua("t-lua-ops", OPTS);
        // the counters are the process's (shared by every test): what a
        // skip uncounts is counted first, and the counts are differences
        let counts = r#"return engine:stat("site_denied") .. " " .. engine:stat("auth_failed")
                        .. " " .. engine:stat("auth_passed") .. " " .. engine:stat("policy_skipped")"#;
        run::<()>(
            &lua,
            r#"engine:count("passed") engine:count("blocked_manual")"#,
        );
        let before: String = run(&lua, counts);
        let d = |code: &str| -> String {
            run(
                &lua,
                &format!(
                    r#"local r = {{ engine:decide({code}) }}
                       for i = 1, #r do r[i] = tostring(r[i]) end
                       return table.concat(r, "|")"#
                ),
            )
        };
        let pass = "core.codes.PASS";
        assert_eq!(
            d(&format!(r#"{pass}, "198.51.100.1", "shop", "/", "GET""#)),
            "forbidden_ip|not in allowed_ips of site 'shop'"
        );
        assert_eq!(
            d(&format!(r#"{pass}, "192.0.2.1", "shop", "/", "GET""#)),
            ""
        );
        let limited = d(&format!(r#"{pass}, "192.0.2.1", "shop", "/", "GET""#));
        let (head, retry) = limited.rsplit_once('|').unwrap();
        assert_eq!(
            head,
            "rate_limited|over the rate limit of site 'shop' (1 requests)"
        );
        assert!((1..=60).contains(&retry.parse::<u32>().unwrap()), "{retry}");
        // whitelisted paths and disabled sites: nothing else is checked
        assert_eq!(
            d(&format!(
                r#"{pass}, "198.51.100.1", "shop", "/health", "GET""#
            )),
            "skip"
        );
        assert_eq!(
            d(r#"core.codes.BLOCK_MANUAL, "198.51.100.1", "off", "/", "GET""#),
            "skip"
        );
        assert_eq!(
            d(r#"core.codes.BLOCK_MANUAL, "198.51.100.1", nil, "/", "GET""#),
            "blocked"
        );
        // a protected route: whoever the client is
        assert_eq!(
            d(r#"core.codes.ALLOW, "198.51.100.1", nil, "/admin/x", "GET""#),
            "unauthorized|missing|Basic realm=\"warden\", charset=\"UTF-8\""
        );
        assert_eq!(
            d(r#"core.codes.ALLOW, "198.51.100.1", nil, "/admin/x", "GET", "Basic dTpw""#),
            ""
        );
        assert_eq!(d(r#"0, "not an address", nil, "/", "GET""#), "");
        let after: String = run(&lua, counts);
        let delta: Vec<f64> = after
            .split(' ')
            .zip(before.split(' '))
            .map(|(a, b)| a.parse::<f64>().unwrap() - b.parse::<f64>().unwrap())
            .collect();
        assert_eq!(delta, [1.0, 1.0, 1.0, 2.0]);
        // without a site, the server's server_name is the site; a site
        // named in check{} wins
        assert_eq!(
            d(&format!(
                r#"{pass}, "198.51.100.1", nil, "/", "GET", nil, "shop""#
            )),
            "forbidden_ip|not in allowed_ips of site 'shop'"
        );
        assert_eq!(
            d(&format!(
                r#"{pass}, "198.51.100.1", nil, "/", "GET", nil, "other""#
            )),
            ""
        );
        assert_eq!(
            d(r#"core.codes.BLOCK_MANUAL, "198.51.100.1", "off", "/", "GET", nil, "shop""#),
            "skip"
        );
    }

    #[test]
    fn the_fleet_agent_is_driven_step_by_step() {
        let lua = lua(
            "t-lua-fleet",
            r#"{ dict = "t-lua-fleet",
                 redis = { host = "127.0.0.1", port = 1979, node = "a" } }"#,
        );
        let step = |args: &str| -> String {
            run(
                &lua,
                &format!(
                    r#"local r = {{ engine:fleet_step({args}) }}
                       for i = 1, 5 do r[i] = tostring(r[i]) end
                       return table.concat(r, "|")"#
                ),
            )
        };
        assert_eq!(run::<String>(&lua, "return engine:fleet_init()"), "a");
        assert_eq!(step("false"), "connect|1|127.0.0.1|1979|1000");
        assert_eq!(step("false, 1"), "connect|2|127.0.0.1|1979|1000");
        let io = step("false, 1");
        assert!(
            io.starts_with("io|1|*3\r\n$6\r\nSCRIPT\r\n$4\r\nLOAD\r\n"),
            "{io}"
        );
        // a reply in pieces: read on, nothing to send
        assert_eq!(step(r#"false, "$2\r\n""#), "io|1|nil|nil|nil");
        // the cosocket failed: both closed, the outage logged, a backoff
        assert_eq!(step(r#"false, nil, "timeout""#), "close|nil|nil|nil|nil");
        let sleep = step("false, true");
        let secs: f64 = sleep
            .strip_prefix("sleep|nil|")
            .unwrap()
            .split('|')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!((0.25..=0.75).contains(&secs), "{sleep}");
        // the driver raised: logged, then as a failure
        assert_eq!(
            step(r#"false, false, "boom""#).split('|').next(),
            Some("sleep")
        );
        assert_eq!(step("true, true"), "done|nil|nil|nil|nil");
        let logged: String = run(&lua, r#"return table.concat(logged, "\n")"#);
        assert!(
            logged.contains("4 warden: redis 127.0.0.1:1979 is unreachable (timeout)"),
            "{logged}"
        );
        assert!(
            logged.contains("4 warden: the fleet agent failed: boom"),
            "{logged}"
        );
        // without redis: nothing to do
        let plain = crate::lua::testing::lua("t-lua-fleet2", r#"{ dict = "t-lua-fleet2" }"#);
        assert_eq!(
            run::<String>(&plain, "return engine:fleet_step(false)"),
            "done"
        );
        assert_eq!(
            run::<String>(&plain, "return tostring(engine:config().redis)"),
            "nil"
        );
    }
}
