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
use super::{duration_arg, net_arg, ok, str_arg};
use crate::blocks::Source;
use crate::detect::offences::Seen;
use crate::error::Error;
use crate::persist::fleet::agent::{Action, Outcome};
use crate::policy::doc::{Edit, List, Update};

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
    // block(target, duration?, reason?, source?) -> true, target |
    // nil, err, field, status. duration: seconds or "90s"/"15m"/"24h"/"7d"
    // (0 or nil: permanent); source: "manual" (default) or "auto".
    m.add_method(
        "block",
        |lua, this, (t, duration, reason, source): (Value, Value, Value, Option<String>)| {
            let args = block_args(&t, &duration, &reason, source.as_deref());
            let r = args.and_then(|(net, d, reason, source)| {
                this.warden().block(&net, d, &reason, source).map(|()| net)
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
            let p =
                this.engine()
                    .prepare(&net, duration_ms, source, &reason, (now * 1000.0) as u64);
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
            let mut out = vec![Value::Table(event_table(lua, &t.event)?)];
            if let Some((client, rule)) = t.report {
                out.push(Value::String(lua.create_string(client.to_string())?));
                out.push(Value::String(lua.create_string(rule)?));
            }
            Ok(MultiValue::from_vec(out))
        },
    );
    // rate_limit(site, ip, limit, window, method, path) -> retry_after |
    // nil: counts a request to a site with a rate limit
    m.add_method(
        "rate_limit",
        |_,
         this,
         (site, ip, limit, window, method, path): (
            String,
            String,
            u32,
            u32,
            Option<mlua::LuaString>,
            Option<mlua::LuaString>,
        )| {
            Ok(this
                .warden()
                .rate_limited(&site, &ip, limit, window, &text(&method), &text(&path)))
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
