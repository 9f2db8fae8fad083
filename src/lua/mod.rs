//! The Lua module `warden_core`, built with mlua: set-up and admin work.
//!
//! Per-request work does not come through here (see [`crate::ffi`]): an
//! mlua call costs ~50 ns and stops LuaJIT's JIT. Everything here runs at
//! start-up, on admin calls, or when a worker syncs its replica of the
//! blocks.
//!
//! One file per Rust object exposed to Lua: [`engine`] (a warden
//! instance, with [`ops`]: its operations on the shared dict), [`crawlers`]
//! (verified crawlers, `w.crawlers`), [`iprepd`]
//! (an iprepd client), [`metrics`] (buffered statsd metrics), `admin` (the
//! admin API, `admin:serve(req)`); [`dict`] reaches `ngx.shared.DICT` and
//! `ngx.log` from Rust.
//!
//! Conventions: misuse raises a Lua error naming the option and value;
//! failures at run time return `nil, err`.

mod admin;
mod crawlers;
mod dict;
mod engine;
mod iprepd;
mod metrics;
mod ops;
#[cfg(all(test, feature = "vendored"))]
mod testing;

use mlua::{IntoLuaMulti, Lua, LuaSerdeExt, MultiValue, Result as LuaResult, Table, Value};

use crate::config::Config;
use crate::engine::{now_ms, Engine};
use crate::net::addr::Net;
use crate::options::{self, Scalar};

use admin::LuaAdmin;
use engine::LuaEngine;
use metrics::LuaMetrics;

pub(crate) fn nil_err(lua: &Lua, msg: impl ToString) -> LuaResult<MultiValue> {
    Ok(MultiValue::from_vec(vec![
        Value::Nil,
        Value::String(lua.create_string(msg.to_string())?),
    ]))
}

pub(crate) fn ok<T: mlua::IntoLua>(lua: &Lua, v: T) -> LuaResult<MultiValue> {
    Ok(MultiValue::from_vec(vec![v.into_lua(lua)?]))
}

/// Calls `f` with `v` as a [`Scalar`] (strings read lossily).
pub(crate) fn with_scalar<R>(v: &Value, f: impl FnOnce(Scalar<'_>) -> R) -> R {
    let text;
    let s = match v {
        Value::Nil => Scalar::Nil,
        Value::Integer(i) => Scalar::Int(*i),
        Value::Number(n) => Scalar::number(*n),
        Value::Boolean(b) => Scalar::Bool(*b),
        Value::String(s) => {
            text = s.to_string_lossy();
            Scalar::Text(&text)
        }
        v => Scalar::Other(v.type_name()),
    };
    f(s)
}

/// Parses a `duration` argument: nil/0 = permanent, seconds, or a string.
pub(crate) fn duration_arg(v: &Value) -> Result<u64, String> {
    with_scalar(v, options::duration_arg)
}

pub(crate) fn show_lua(v: &Value) -> String {
    with_scalar(v, |s| s.show())
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
    if let Err(e) = crate::ffi::nginx::check() {
        return nil_err(lua, e);
    }
    engine(lua, opts)
}

/// [`new`] without nginx's functions (which only the per-request FFI
/// calls use): for the bindings' tests in a plain LuaJIT.
fn engine(lua: &Lua, opts: Value) -> LuaResult<MultiValue> {
    let v: serde_json::Value = match lua.from_value(opts) {
        Ok(v) => v,
        Err(e) => return nil_err(lua, format!("opts: {e}")),
    };
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
#[cfg_attr(feature = "module", mlua::lua_module(name = "warden_core"))]
#[cfg_attr(not(feature = "module"), allow(dead_code))]
fn warden_core(lua: &Lua) -> LuaResult<Table> {
    let t = lua.create_table()?;
    t.set("new", lua.create_function(new)?)?;
    #[cfg(all(test, feature = "vendored"))]
    t.set("engine", lua.create_function(engine)?)?;
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
    // admin(engine) -> admin, warning | nil, err: the admin API
    // (admin:serve(req, bridge), see lua/admin.rs); reads admin_token_file
    t.set(
        "admin",
        lua.create_function(
            |lua, engine: mlua::AnyUserData| match LuaAdmin::new(engine)? {
                Ok((admin, warning)) => (admin, warning).into_lua_multi(lua),
                Err(e) => nil_err(lua, e),
            },
        )?,
    )?;
    // crawlers(engine) -> crawlers | false | nil, err: verified crawlers
    // (opts.challenge.crawlers, lua/crawlers.rs); reads /etc/resolv.conf
    t.set(
        "crawlers",
        lua.create_function(|lua, engine: mlua::AnyUserData| {
            crawlers::LuaCrawlers::open(lua, engine)
        })?,
    )?;
    // the nginx variables api.lua hands over with each request
    t.set(
        "admin_variables",
        lua.create_sequence_from(crate::admin::exchange::VARIABLES)?,
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
