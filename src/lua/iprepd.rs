//! `LuaIprepd`: an iprepd client ([`crate::reputation::iprepd::Client`])
//! as `lua/resty/warden/iprepd.lua` sees it. The per-request check goes
//! through the FFI ([`crate::ffi::iprepd`]) with `client:ptr()`; what is
//! here runs at start-up, after a lookup, or to make a line to log.

use std::sync::Arc;

use mlua::{
    Function, LightUserData, Lua, LuaSerdeExt, MultiValue, Result as LuaResult, Table, UserData,
    UserDataMethods, Value,
};

use super::metrics::LuaMetrics;
use super::{lua_text, nil_err};
use crate::engine::now_ms;
use crate::reputation::audit::{audit_line, Body};
use crate::reputation::iprepd::{Client, Response};
use crate::reputation::options::Options;

/// The userdata that owns a client. The client is boxed so that the
/// pointer handed to the FFI functions stays put.
pub struct LuaIprepd(Box<Client>);

/// Lua's `string.find(s, pattern)` as a predicate (false on a bad
/// pattern).
fn lua_find(lua: &Lua) -> LuaResult<impl Fn(&str, &str) -> bool> {
    let find: Function = lua.globals().get::<Table>("string")?.get("find")?;
    Ok(move |s: &str, p: &str| {
        !matches!(
            find.call::<Value>((s, p)),
            Ok(Value::Nil) | Ok(Value::Boolean(false)) | Err(_)
        )
    })
}

/// `warden_core.iprepd(options, env)` -> client, warnings | nil, err.
/// `env.ngx_lua_version` completes the User-Agent; `env.warden` (inside
/// warden) throttles the failure lines.
pub fn new(lua: &Lua, (opts, env): (Value, Option<Table>)) -> LuaResult<MultiValue> {
    let v: serde_json::Value = match lua.from_value(opts) {
        Ok(v) => v,
        Err(e) => return nil_err(lua, format!("options: {e}")),
    };
    let (options, warnings) = match Options::from_value(&v) {
        Ok(o) => o,
        Err(e) => return nil_err(lua, e),
    };
    let (version, quiet) = match &env {
        Some(t) => (
            t.get::<Option<String>>("ngx_lua_version")?
                .unwrap_or_default(),
            t.get::<Option<bool>>("warden")?.unwrap_or(false),
        ),
        None => (String::new(), false),
    };
    match Client::new(options, &version, quiet) {
        Ok(c) => Ok(MultiValue::from_vec(vec![
            Value::UserData(lua.create_userdata(LuaIprepd(Box::new(c)))?),
            Value::Table(lua.create_sequence_from(warnings)?),
        ])),
        Err(e) => nil_err(lua, e),
    }
}

/// A response as Lua hands it over: a status and a body, or nil and the
/// error.
fn response(status: Option<u16>, text: &[u8]) -> Response<'_> {
    match status {
        Some(s) => Response::Status(s, text),
        None => Response::Failed(std::str::from_utf8(text).unwrap_or("error")),
    }
}

impl UserData for LuaIprepd {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method("ptr", |_, this, ()| {
            Ok(LightUserData(&*this.0 as *const Client as *mut _))
        });
        // The options as iprepd-nginx's client fields (0/1 switches,
        // seconds, ms for timeouts), and where to connect.
        m.add_method("settings", |lua, this, ()| {
            let o = this.0.options();
            let t = lua.create_table()?;
            let flag = |b: bool| i32::from(b);
            t.set("url", o.url_text.as_str())?;
            t.set("host", o.url.host.as_str())?;
            t.set("port", o.url.port)?;
            t.set("tls", o.url.tls)?;
            t.set("timeout", o.timeout_ms)?;
            t.set("threshold", o.threshold)?;
            t.set("cache_ttl", o.cache_ttl)?;
            t.set("cache_buffer_count", o.cache_buffer_count)?;
            t.set("cache_errors", flag(o.cache_errors))?;
            t.set("cache_errors_ttl", o.cache_errors_ttl)?;
            if let Some(s) = &o.statsd {
                t.set("statsd_host", s.host.as_str())?;
                t.set("statsd_port", s.port)?;
                t.set("statsd_max_buffer_count", s.max_buffer_count)?;
                t.set("statsd_flush_timer", s.flush_timer)?;
            }
            t.set("blocking_mode", flag(o.blocking_mode))?;
            t.set("verbose", flag(o.verbose))?;
            t.set("audit_blocked_requests", flag(o.audit_blocked_requests))?;
            t.set("audit_include_headers", flag(o.audit_include_headers))?;
            t.set(
                "audit_uri_list",
                lua.create_sequence_from(o.audit_uri_list.iter().map(String::as_str))?,
            )?;
            t.set("violation_timeout", o.violation_timeout_ms)?;
            Ok(t)
        });
        m.add_method("metrics", |_, this, ()| {
            Ok(this.0.statsd().map(|b| LuaMetrics::shared(Arc::clone(b))))
        });
        m.add_method("lookup_head", |_, this, ip: String| {
            Ok(this.0.lookup_head(&ip))
        });
        // answer(ip, status | nil, body | err) -> reputation | nil, failed,
        // error lines, verbose messages, full
        m.add_method(
            "answer",
            |lua, this, (ip, status, text): (String, Option<u16>, mlua::LuaString)| {
                let bytes = text.as_bytes();
                let (a, full) = this.0.answer(&ip, response(status, &bytes), now_ms());
                Ok((
                    a.reputation,
                    a.failed,
                    lua.create_sequence_from(a.errors)?,
                    lua.create_sequence_from(a.verbose)?,
                    full,
                ))
            },
        );
        m.add_method("gave_up", |_, this, ()| Ok(this.0.gave_up()));
        m.add_method(
            "verdict_line",
            |_, this, (rc, ip, rep): (i32, String, i64)| Ok(this.0.verdict_line(rc, &ip, rep)),
        );
        m.add_method(
            "verbose_line",
            |_, _, (kind, ip, rep): (String, Value, Option<i64>)| {
                Ok(Client::verbose_line(
                    &kind,
                    &lua_text(&ip),
                    rep.unwrap_or(0),
                ))
            },
        );
        m.add_method("line", |_, _, (kind, what): (String, Value)| {
            Ok(Client::line(&kind, &lua_text(&what)))
        });
        // audited(uri) -> whether to audit, whether with the headers
        m.add_method("audited", |lua, this, uri: mlua::LuaString| {
            let uri = uri.to_string_lossy();
            let audited = this.0.audited(&uri, lua_find(lua)?);
            Ok((audited, audited && this.0.audit_headers()))
        });
        // audit_line(ip, headers | nil, body data | nil, body file | nil)
        m.add_method(
            "audit_line",
            |_,
             _,
             (ip, headers, data, file): (
                String,
                Option<Table>,
                Option<mlua::LuaString>,
                Option<String>,
            )| {
                let hs = match headers {
                    None => None,
                    Some(t) => {
                        let mut v = Vec::new();
                        for pair in t.pairs::<String, Value>() {
                            let (k, val) = pair?;
                            match val {
                                Value::Table(list) => {
                                    for x in list.sequence_values::<mlua::LuaString>() {
                                        v.push((k.clone(), x?.to_string_lossy()));
                                    }
                                }
                                other => v.push((k, lua_text(&other))),
                            }
                        }
                        // a stable order (a Lua table has none); the values
                        // of a repeated header keep theirs
                        v.sort_by(|a, b| a.0.cmp(&b.0));
                        Some(v)
                    }
                };
                let bytes = data.as_ref().map(|d| d.as_bytes().to_vec());
                let body = match (&bytes, &file) {
                    (Some(d), _) => Body::Data(d),
                    (None, Some(f)) => Body::File(f),
                    _ => Body::Unreadable,
                };
                Ok(audit_line(&ip, hs.as_deref(), body))
            },
        );
        // violation(ip, rule) -> name, head, body | nil
        m.add_method("violation", |_, this, (ip, rule): (String, String)| {
            Ok(match this.0.violation(&ip, &rule) {
                Some((name, head, body)) => (Some(name), Some(head), Some(body)),
                None => (None, None, None),
            })
        });
        // reported(ip, name, status | nil, body | err) -> line | nil, full
        m.add_method(
            "reported",
            |_, this, (ip, name, status, text): (String, String, Option<u16>, mlua::LuaString)| {
                let bytes = text.as_bytes();
                Ok(this.0.reported(&ip, &name, response(status, &bytes)))
            },
        );
    }
}
