//! `LuaMetrics`: a worker's buffered statsd metrics
//! ([`crate::metrics::statsd::Buffer`]), shared with the iprepd client
//! that records into them too.

use std::sync::Arc;

use mlua::{Result as LuaResult, UserData, UserDataMethods, Value};

use crate::engine::now_ms;
use crate::metrics::statsd::{lua_number, Buffer};

/// A worker's buffered statsd metrics.
pub struct LuaMetrics(Arc<Buffer>);

impl LuaMetrics {
    /// A buffer of its own, sent at `max` metrics.
    pub fn new(max: usize) -> LuaMetrics {
        LuaMetrics(Arc::new(Buffer::new(max)))
    }

    /// A buffer shared with its other owner.
    pub fn shared(b: Arc<Buffer>) -> LuaMetrics {
        LuaMetrics(b)
    }
}

/// A name or a set member as Lua's `..` would write it.
fn text(v: &Value, what: &str) -> LuaResult<String> {
    match v {
        Value::String(s) => Ok(s.to_string_lossy()),
        Value::Integer(i) => Ok(i.to_string()),
        Value::Number(n) => Ok(lua_number(*n)),
        other => Err(mlua::Error::runtime(format!(
            "statsd: the {what} must be a string or a number, got {}",
            other.type_name()
        ))),
    }
}

/// A metric's value: a number or a numeric string.
fn number(v: &Value) -> LuaResult<f64> {
    match v {
        Value::Integer(i) => Ok(*i as f64),
        Value::Number(n) => Ok(*n),
        Value::String(s) => s.to_string_lossy().trim().parse().map_err(|_| {
            mlua::Error::runtime(format!(
                "statsd: the value must be a number, got '{}'",
                s.to_string_lossy()
            ))
        }),
        other => Err(mlua::Error::runtime(format!(
            "statsd: the value must be a number, got {}",
            other.type_name()
        ))),
    }
}

impl UserData for LuaMetrics {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        // each recording method returns true when the buffer is full
        m.add_method("count", |_, this, (name, n): (Value, Value)| {
            let (name, n) = (text(&name, "name")?, number(&n)?);
            this.0.lock().count(name, n);
            Ok(this.0.full())
        });
        m.add_method("time", |_, this, (name, ms): (Value, Value)| {
            let (name, ms) = (text(&name, "name")?, number(&ms)?);
            this.0.lock().time(name, ms);
            Ok(this.0.full())
        });
        m.add_method("gauge", |_, this, (name, v): (Value, Value)| {
            let (name, v) = (text(&name, "name")?, number(&v)?);
            this.0.lock().gauge(name, v);
            Ok(this.0.full())
        });
        m.add_method("set", |_, this, (name, v): (Value, Value)| {
            let (name, v) = (text(&name, "name")?, text(&v, "value")?);
            this.0.lock().set(name, &v);
            Ok(this.0.full())
        });
        m.add_method("len", |_, this, ()| Ok(this.0.lock().len()));
        m.add_method("full", |_, this, ()| Ok(this.0.full()));
        m.add_method("drain", |_, this, ()| Ok(this.0.lock().drain()));
        // send_failed(host, port, err) -> the line to log | nil (once a minute)
        m.add_method(
            "send_failed",
            |_, this, (host, port, err): (String, u16, String)| {
                Ok(this.0.lock().send_failed(&host, port, &err, now_ms()))
            },
        );
    }
}
