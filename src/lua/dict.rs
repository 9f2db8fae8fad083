//! The shared dict and the error log as Rust reaches them from nginx:
//! [`LuaDict`] implements [`Dict`] by calling the methods of the real
//! `ngx.shared.DICT` object (lua-resty-core's, which never yield), and
//! [`LuaLog`] implements [`Log`] with `ngx.log`.

use mlua::{BString, Function, Lua, Result as LuaResult, Table, Value as LuaValue};

use crate::store::{Dict, DictError, Level, Log, Value};

/// `ngx.shared[name]`, with its methods looked up once.
pub struct LuaDict {
    dict: Table,
    get: Function,
    safe_set: Function,
    safe_add: Function,
    incr: Function,
    delete: Function,
    get_keys: Function,
    flush_expired: Function,
    free_space: Option<Function>,
    capacity: Option<Function>,
    expire: Option<Function>,
}

fn to_lua(v: &Value) -> LuaValue {
    match v {
        Value::Num(n) => LuaValue::Number(*n),
        Value::Bool(b) => LuaValue::Boolean(*b),
        // strings are made by the caller (they need the Lua state)
        Value::Str(_) => LuaValue::Nil,
    }
}

fn from_lua(v: LuaValue) -> Option<Value> {
    match v {
        LuaValue::String(s) => Some(Value::Str(s.as_bytes().to_vec())),
        LuaValue::Integer(i) => Some(Value::Num(i as f64)),
        LuaValue::Number(n) => Some(Value::Num(n)),
        LuaValue::Boolean(b) => Some(Value::Bool(b)),
        _ => None,
    }
}

fn lua_err(e: mlua::Error) -> DictError {
    DictError::Other(e.to_string())
}

fn err_of(v: LuaValue) -> DictError {
    match v {
        LuaValue::String(s) => DictError::from_message(&s.to_string_lossy()),
        other => DictError::Other(format!("unexpected reply {}", other.type_name())),
    }
}

impl LuaDict {
    /// `ngx.shared[name]`, or None when there is no such dict.
    pub fn find(lua: &Lua, name: &str) -> LuaResult<Option<LuaDict>> {
        let Some(ngx) = lua.globals().get::<Option<Table>>("ngx")? else {
            return Ok(None);
        };
        let Some(shared) = ngx.get::<Option<Table>>("shared")? else {
            return Ok(None);
        };
        let Some(dict) = shared.get::<Option<Table>>(name)? else {
            return Ok(None);
        };
        let f = |m: &str| dict.get::<Function>(m);
        let opt = |m: &str| dict.get::<Option<Function>>(m);
        Ok(Some(LuaDict {
            get: f("get")?,
            safe_set: f("safe_set")?,
            safe_add: f("safe_add")?,
            incr: f("incr")?,
            delete: f("delete")?,
            get_keys: f("get_keys")?,
            flush_expired: f("flush_expired")?,
            free_space: opt("free_space")?,
            capacity: opt("capacity")?,
            expire: opt("expire")?,
            dict,
        }))
    }

    fn write(&self, f: &Function, key: &str, value: &Value, ttl: f64) -> Result<(), DictError> {
        let (ok, err): (LuaValue, LuaValue) = match value {
            Value::Str(b) => f.call((&self.dict, key, BString::from(b.clone()), ttl)),
            other => f.call((&self.dict, key, to_lua(other), ttl)),
        }
        .map_err(lua_err)?;
        match ok {
            LuaValue::Boolean(true) => Ok(()),
            _ => Err(err_of(err)),
        }
    }
}

impl Dict for LuaDict {
    fn get(&self, key: &str) -> Result<Option<Value>, DictError> {
        let (v, flags): (LuaValue, LuaValue) = self.get.call((&self.dict, key)).map_err(lua_err)?;
        match (v, flags) {
            (LuaValue::Nil, e @ LuaValue::String(_)) => Err(err_of(e)),
            (v, _) => Ok(from_lua(v)),
        }
    }

    fn safe_set(&self, key: &str, value: &Value, ttl: f64) -> Result<(), DictError> {
        self.write(&self.safe_set, key, value, ttl)
    }

    fn safe_add(&self, key: &str, value: &Value, ttl: f64) -> Result<(), DictError> {
        self.write(&self.safe_add, key, value, ttl)
    }

    fn incr(&self, key: &str, by: f64) -> Result<f64, DictError> {
        let (n, err): (LuaValue, LuaValue) =
            self.incr.call((&self.dict, key, by)).map_err(lua_err)?;
        match from_lua(n) {
            Some(Value::Num(n)) => Ok(n),
            _ => Err(err_of(err)),
        }
    }

    fn delete(&self, key: &str) -> Result<(), DictError> {
        self.delete
            .call::<LuaValue>((&self.dict, key))
            .map(drop)
            .map_err(lua_err)
    }

    fn keys(&self) -> Result<Vec<String>, DictError> {
        let t: Table = self.get_keys.call((&self.dict, 0)).map_err(lua_err)?;
        let mut out = Vec::with_capacity(t.raw_len());
        for k in t.sequence_values::<mlua::LuaString>() {
            out.push(k.map_err(lua_err)?.to_string_lossy());
        }
        Ok(out)
    }

    fn flush_expired(&self) -> Result<usize, DictError> {
        let n: Option<f64> = self.flush_expired.call(&self.dict).map_err(lua_err)?;
        Ok(n.unwrap_or(0.0).max(0.0) as usize)
    }

    fn free_space(&self) -> Option<usize> {
        let f = self.free_space.as_ref()?;
        f.call::<Option<f64>>(&self.dict)
            .ok()
            .flatten()
            .map(|n| n as usize)
    }

    fn capacity(&self) -> Option<usize> {
        let f = self.capacity.as_ref()?;
        f.call::<Option<f64>>(&self.dict)
            .ok()
            .flatten()
            .map(|n| n as usize)
    }

    fn expire(&self, key: &str, ttl: f64) -> Result<bool, DictError> {
        let Some(f) = &self.expire else {
            return Ok(false);
        };
        let (ok, err): (LuaValue, LuaValue) = f.call((&self.dict, key, ttl)).map_err(lua_err)?;
        match (ok, err_of(err)) {
            (LuaValue::Boolean(true), _) => Ok(true),
            (_, DictError::NotFound) => Ok(false),
            (_, e) => Err(e),
        }
    }
}

/// `ngx.log` with nginx's levels. Lines are written through a one-line
/// Lua function named `warden_core` (not a tail call), so that nginx's
/// prefix names the library (`[lua] warden_core:1: warden: ...`) rather
/// than `[C]:-1`.
pub struct LuaLog {
    log: Option<Function>,
    levels: [i64; 4],
}

impl LuaLog {
    /// `ngx.log` (lines go nowhere where there is no `ngx`).
    pub fn find(lua: &Lua) -> LuaResult<LuaLog> {
        let Some(ngx) = lua.globals().get::<Option<Table>>("ngx")? else {
            return Ok(LuaLog {
                log: None,
                levels: [4, 5, 6, 7],
            });
        };
        let level = |name: &str, default: i64| -> LuaResult<i64> {
            Ok(ngx.get::<Option<i64>>(name)?.unwrap_or(default))
        };
        let log = ngx.get::<Option<Function>>("log")?.map(|raw| {
            lua.load("local log = ...; return function(l, m) log(l, m) end")
                .set_name("=warden_core")
                .call::<Function>(raw.clone())
                .unwrap_or(raw)
        });
        Ok(LuaLog {
            log,
            levels: [
                level("ERR", 4)?,
                level("WARN", 5)?,
                level("NOTICE", 6)?,
                level("INFO", 7)?,
            ],
        })
    }
}

impl Log for LuaLog {
    fn write(&self, level: Level, line: &str) {
        let Some(log) = &self.log else { return };
        let n = self.levels[match level {
            Level::Err => 0,
            Level::Warn => 1,
            Level::Notice => 2,
            Level::Info => 3,
        }];
        let _ = log.call::<()>((n, line));
    }
}
