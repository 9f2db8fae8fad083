//! The Lua module `warden_core`, built with mlua: set-up and admin work.
//!
//! Per-request work does not come through here (see [`crate::ffi`]): an
//! mlua call costs ~50 ns and stops LuaJIT's JIT. Everything here runs at
//! start-up, on admin calls, or when a worker syncs its replica of the
//! blocks.
//!
//! One file per Rust object exposed to Lua: [`engine`] (a warden
//! instance, with [`ops`]: its operations on the shared dict), [`iprepd`]
//! (an iprepd client), [`metrics`] (buffered statsd metrics); [`dict`]
//! reaches `ngx.shared.DICT` and `ngx.log` from Rust.
//!
//! Conventions: misuse raises a Lua error naming the option and value;
//! failures at run time return `nil, err`.

mod dict;
mod engine;
mod iprepd;
mod metrics;
mod ops;

use mlua::{Lua, LuaSerdeExt, MultiValue, Result as LuaResult, Table, Value};

use crate::config::Config;
use crate::engine::{now_ms, Engine};
use crate::net::addr::Net;
use crate::options;

use engine::LuaEngine;
use metrics::LuaMetrics;

pub(crate) fn nil_err(lua: &Lua, msg: impl ToString) -> LuaResult<MultiValue> {
    Ok(MultiValue::from_vec(vec![
        Value::Nil,
        Value::String(lua.create_string(msg.to_string())?),
    ]))
}

pub(crate) fn error3(lua: &Lua, msg: &str, field: &str) -> LuaResult<MultiValue> {
    Ok(MultiValue::from_vec(vec![
        Value::Nil,
        Value::String(lua.create_string(msg)?),
        Value::String(lua.create_string(field)?),
    ]))
}

pub(crate) fn ok<T: mlua::IntoLua>(lua: &Lua, v: T) -> LuaResult<MultiValue> {
    Ok(MultiValue::from_vec(vec![v.into_lua(lua)?]))
}

/// Parses a `duration` argument: nil/0 = permanent, seconds, or a string.
pub(crate) fn duration_arg(v: &Value) -> Result<u64, String> {
    match v {
        Value::Nil => Ok(0),
        Value::Integer(i) if *i >= 0 => Ok((*i as u64).saturating_mul(1000)),
        Value::Number(n) if n.is_finite() && *n >= 0.0 && *n <= 1.0e12 => {
            Ok((n * 1000.0).round() as u64)
        }
        Value::String(s) => {
            let s = s
                .to_str()
                .map_err(|_| "duration must be text".to_string())?;
            options::parse_duration(&s).map_err(|m| format!("duration {m}"))
        }
        other => {
            let got = match other {
                Value::Integer(i) => i.to_string(),
                Value::Number(n) => n.to_string(),
                v => v.type_name().to_string(),
            };
            Err(format!(
                "duration must be a number of seconds >= 0 or a string like \
                 '90s', '15m', '24h', '7d', got {got}"
            ))
        }
    }
}

pub(crate) fn show_lua(v: &Value) -> String {
    match v {
        Value::Integer(i) => i.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("'{}'", s.to_string_lossy()),
        Value::Boolean(b) => b.to_string(),
        v => v.type_name().to_string(),
    }
}

/// A value as text in a line or a header: a string as it is, anything
/// else as [`show_lua`] shows it.
pub(crate) fn lua_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.to_string_lossy(),
        other => show_lua(other),
    }
}

pub(crate) fn str_arg(v: &Value, what: &str) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.to_string_lossy()),
        other => Err(format!(
            "{what} must be a string, got {}",
            other.type_name()
        )),
    }
}

/// A `target` argument: an IP address or a CIDR.
pub(crate) fn net_arg(v: &Value) -> Result<Net, String> {
    let t = str_arg(v, "target")?;
    Net::parse(t.trim()).map_err(|e| e.to_string())
}

/// `new(opts)` -> engine | nil, err (the message names the option).
fn new(lua: &Lua, opts: Value) -> LuaResult<MultiValue> {
    let v: serde_json::Value = match lua.from_value(opts) {
        Ok(v) => v,
        Err(e) => return nil_err(lua, format!("opts: {e}")),
    };
    if let Err(e) = crate::ffi::nginx::check() {
        return nil_err(lua, e);
    }
    let cfg = match Config::from_value(&v) {
        Ok(c) => c,
        Err(e) => return nil_err(lua, e),
    };
    let name = cfg.dict.clone();
    let Some(dict) = dict::LuaDict::find(lua, &name)? else {
        return nil_err(
            lua,
            format!(
                "opts.dict: no lua_shared_dict named '{name}' (add 'lua_shared_dict {name} 64m;' \
                 to the http block)"
            ),
        );
    };
    match Engine::new(cfg) {
        Ok(engine) => ok(lua, LuaEngine::new(engine, dict, dict::LuaLog::find(lua)?)),
        Err(e) => nil_err(lua, e),
    }
}

/// The iprepd client's constants: `cdef` (the FFI declarations), the
/// codes and flags of `warden_iprepd_check`, the request `headers` it
/// sets, the `verbose_prefix` of `debug_log()`.
fn iprepd_const(lua: &Lua) -> LuaResult<Table> {
    use crate::reputation::iprepd as ip;
    let t = lua.create_table()?;
    for (name, c) in ip::code::ALL {
        t.set(name, c)?;
    }
    t.set("ALLOWLIST", ip::ALLOWLIST)?;
    t.set("VERDICT", ip::VERDICT)?;
    let h = lua.create_table()?;
    for (k, v) in ip::HEADERS {
        h.set(k, v)?;
    }
    t.set("headers", h)?;
    t.set("verbose_prefix", ip::VERBOSE_PREFIX)?;
    Ok(t)
}

/// Entry point of `require("warden_core")`.
#[mlua::lua_module(name = "warden_core")]
fn warden_core(lua: &Lua) -> LuaResult<Table> {
    let t = lua.create_table()?;
    t.set("new", lua.create_function(new)?)?;
    t.set(
        "parse_duration",
        lua.create_function(|lua, v: Value| match duration_arg(&v) {
            Ok(ms) => ok(lua, ms as f64 / 1000.0),
            Err(e) => nil_err(lua, e),
        })?,
    )?;
    t.set(
        "now",
        lua.create_function(|_, ()| Ok(now_ms() as f64 / 1000.0))?,
    )?;
    // iprepd(options, env) -> client, warnings | nil, err
    t.set("iprepd", lua.create_function(iprepd::new)?)?;
    t.set("iprepd_const", iprepd_const(lua)?)?;
    // metrics(max) -> a statsd buffer sent at max metrics
    t.set(
        "metrics",
        lua.create_function(|_, max: usize| Ok(LuaMetrics::new(max)))?,
    )?;
    // parse_url(url) -> { tls, host, port, prefix, host_header } | nil, err
    t.set(
        "parse_url",
        lua.create_function(
            |lua, url: String| match crate::net::http::Url::parse(&url) {
                Ok(u) => {
                    let r = lua.create_table_with_capacity(0, 5)?;
                    r.set("tls", u.tls)?;
                    r.set("host", u.host.as_str())?;
                    r.set("port", u.port)?;
                    r.set("prefix", u.prefix.as_str())?;
                    r.set("host_header", u.host_header())?;
                    ok(lua, r)
                }
                Err(e) => nil_err(lua, e),
            },
        )?,
    )?;
    // http_request_head(method, target, host, port, tls, headers | nil,
    // body_len | nil) -> the head (headers sorted by name)
    t.set(
        "http_request_head",
        lua.create_function(
            |_,
             (method, target, host, port, tls, headers, body_len): (
                String,
                String,
                String,
                u16,
                bool,
                Option<Table>,
                Option<usize>,
            )| {
                let mut hs: Vec<(String, String)> = Vec::new();
                if let Some(h) = headers {
                    for pair in h.pairs::<Value, Value>() {
                        let (k, v) = pair?;
                        hs.push((lua_text(&k), lua_text(&v)));
                    }
                }
                hs.sort();
                let refs: Vec<(&str, &str)> =
                    hs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let host = crate::net::http::host_header(&host, port, tls);
                Ok(crate::net::http::request_head(
                    &method, &target, &host, &refs, body_len,
                ))
            },
        )?,
    )?;
    // http_head(buf, head_request) -> head | false (need more) | nil, err
    t.set(
        "http_head",
        lua.create_function(|lua, (buf, head): (mlua::LuaString, Option<bool>)| {
            match crate::net::http::parse_head(&buf.as_bytes(), head.unwrap_or(false)) {
                Ok(None) => ok(lua, false),
                Ok(Some(h)) => {
                    let t = lua.create_table_with_capacity(0, 6)?;
                    t.set("status", h.status)?;
                    t.set("len", h.len)?;
                    match h.body {
                        crate::net::http::Framing::Length(n) => t.set("length", n)?,
                        crate::net::http::Framing::Chunked => t.set("chunked", true)?,
                        crate::net::http::Framing::Close => t.set("until_close", true)?,
                    }
                    t.set("keep_alive", h.keep_alive)?;
                    let hs = lua.create_table_with_capacity(0, h.headers.len())?;
                    for (k, v) in h.headers {
                        hs.set(k, v)?;
                    }
                    t.set("headers", hs)?;
                    ok(lua, t)
                }
                Err(e) => nil_err(lua, e),
            }
        })?,
    )?;
    // http_chunked(buf, max) -> body, used | false (need more) | nil, err
    t.set(
        "http_chunked",
        lua.create_function(|lua, (buf, max): (mlua::LuaString, usize)| {
            match crate::net::http::decode_chunked(&buf.as_bytes(), max) {
                Ok(None) => ok(lua, false),
                Ok(Some((body, used))) => Ok(MultiValue::from_vec(vec![
                    Value::String(lua.create_string(&body)?),
                    Value::Integer(used as i64),
                ])),
                Err(e) => nil_err(lua, e),
            }
        })?,
    )?;
    // policy_entry(kind, value[, name]) -> normalized | nil, err, field
    // kind: "whitelist", "route", "site" (name: the site's)
    t.set(
        "policy_entry",
        lua.create_function(|lua, (kind, v, name): (String, Value, Option<String>)| {
            let v: serde_json::Value = match lua.from_value(v) {
                Ok(v) => v,
                Err(e) => return error3(lua, &format!("body: {e}"), "body"),
            };
            let r = match kind.as_str() {
                "whitelist" => crate::policy::whitelist_entry(&v),
                "route" => crate::policy::route_entry(&v),
                "site" => match crate::policy::site_name(name.as_deref().unwrap_or(""), "name") {
                    Ok(()) => crate::policy::site_entry(&v),
                    Err(e) => Err(e),
                },
                other => return error3(lua, &format!("unknown policy kind '{other}'"), "kind"),
            };
            match r {
                Ok(n) => ok(lua, lua.to_value(&n)?),
                Err(e) => error3(lua, &e.to_string(), e.field()),
            }
        })?,
    )?;
    // json_encode(value) -> text | nil, err. Tables with array_mt (and
    // non-empty sequences) become arrays; other empty tables objects.
    t.set(
        "json_encode",
        lua.create_function(|lua, v: Value| {
            let opts = mlua::serde::DeserializeOptions::new().deny_unsupported_types(false);
            match lua.from_value_with::<serde_json::Value>(v, opts) {
                Ok(j) => ok(lua, j.to_string()),
                Err(e) => nil_err(lua, format!("cannot encode as JSON: {e}")),
            }
        })?,
    )?;
    // json_decode(text) -> value | nil, err (JSON null is json_null)
    t.set(
        "json_decode",
        lua.create_function(|lua, s: mlua::LuaString| {
            match serde_json::from_slice::<serde_json::Value>(&s.as_bytes()) {
                Ok(j) => ok(lua, lua.to_value(&j)?),
                Err(e) => nil_err(lua, format!("invalid JSON: {e}")),
            }
        })?,
    )?;
    t.set("array_mt", lua.array_metatable())?;
    t.set("json_null", Value::NULL)?;
    // ct_eq(a, b) -> true when equal, in time that depends on the length
    // only (for the admin token)
    t.set(
        "ct_eq",
        lua.create_function(|_, (a, b): (mlua::LuaString, mlua::LuaString)| {
            let (a, b) = (a.as_bytes(), b.as_bytes());
            if a.len() != b.len() {
                return Ok(false);
            }
            let diff = a.iter().zip(b.iter()).fold(0u8, |d, (x, y)| d | (x ^ y));
            Ok(std::hint::black_box(diff) == 0)
        })?,
    )?;
    // normalize_path(target) -> path as nginx's $uri would be
    t.set(
        "normalize_path",
        lua.create_function(|lua, s: mlua::LuaString| {
            lua.create_string(crate::policy::normalize_path(&s.as_bytes()))
        })?,
    )?;
    t.set("version", env!("CARGO_PKG_VERSION"))?;
    // the FFI's declarations, outcome codes and flag bits, and struct
    // layouts: the one copy, in src/ffi/cdef.rs
    t.set("cdef", crate::ffi::cdef::CDEF)?;
    let codes = lua.create_table()?;
    for (name, v) in crate::ffi::cdef::codes() {
        codes.set(name, v)?;
    }
    t.set("codes", codes)?;
    let layout = lua.create_table()?;
    for (ty, field, v) in crate::ffi::cdef::layout() {
        let entry = match layout.get::<Option<Table>>(ty)? {
            Some(e) => e,
            None => {
                let e = lua.create_table()?;
                layout.set(ty, &e)?;
                e
            }
        };
        entry.set(if field.is_empty() { "size" } else { field }, v)?;
    }
    t.set("layout", layout)?;
    Ok(t)
}
