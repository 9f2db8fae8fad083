//! `LuaMetrics`: a worker's buffered statsd metrics.

use mlua::{UserData, UserDataMethods};

/// A worker's buffered statsd metrics.
#[derive(Default)]
pub struct LuaMetrics(crate::metrics::statsd::Metrics);

impl UserData for LuaMetrics {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method_mut("count", |_, this, (name, n): (String, f64)| {
            this.0.count(&name, n as i64);
            Ok(this.0.len())
        });
        m.add_method_mut("time", |_, this, (name, ms): (String, f64)| {
            this.0.time(&name, ms);
            Ok(this.0.len())
        });
        m.add_method_mut("gauge", |_, this, (name, v): (String, f64)| {
            this.0.gauge(&name, v);
            Ok(this.0.len())
        });
        m.add_method_mut("set", |_, this, (name, v): (String, mlua::LuaString)| {
            this.0.set(&name, &v.to_string_lossy());
            Ok(this.0.len())
        });
        m.add_method("len", |_, this, ()| Ok(this.0.len()));
        m.add_method_mut("drain", |_, this, ()| Ok(this.0.drain()));
    }
}
