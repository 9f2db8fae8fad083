//! Module functions of the state file and the fleet: `load_state(path)`
//! and `decode_entry(entry)`.

use mlua::{IntoLuaMulti, Lua, MultiValue, Result as LuaResult, Value};

use std::path::PathBuf;

use super::{nil_err, ok};
use crate::blocks::Block;
use crate::engine::now_ms;
use crate::persist::state;

/// Seconds left of a block expiring at `expires_ms` (0: permanent), or
/// `None` when it has expired.
pub(super) fn ttl_left(expires_ms: u64, now_ms: u64) -> Option<f64> {
    match expires_ms {
        0 => Some(0.0),
        e if e > now_ms => Some((e - now_ms) as f64 / 1000.0),
        _ => None,
    }
}

/// `load_state(path)` -> { saved, epoch, policy, keys, values, ttls,
/// expired } | nil, err, kind ("missing", "unreadable", "corrupt"), aside.
pub(super) fn load_state(lua: &Lua, path: String) -> LuaResult<MultiValue> {
    let path = PathBuf::from(path);
    let st = match state::load(&path) {
        Ok(st) => st,
        Err(e) => {
            let kind = e.kind_name();
            let aside = match kind {
                "missing" => None,
                _ => state::set_aside(&path, now_ms())
                    .ok()
                    .map(|p| p.display().to_string()),
            };
            return (Value::Nil, e.to_string(), kind, aside).into_lua_multi(lua);
        }
    };
    let now = now_ms();
    let (keys, values, ttls) = (
        lua.create_table()?,
        lua.create_table()?,
        lua.create_table()?,
    );
    let mut n = 0;
    let mut expired = 0;
    for b in &st.blocks {
        match ttl_left(b.expires_ms, now) {
            Some(ttl) => {
                n += 1;
                keys.raw_set(n, Block::key(&b.net))?;
                values.raw_set(n, lua.create_string(b.value())?)?;
                ttls.raw_set(n, ttl)?;
            }
            None => expired += 1,
        }
    }
    let t = lua.create_table()?;
    t.set("saved", st.saved_ms as f64 / 1000.0)?;
    t.set("epoch", st.fleet_epoch)?;
    if let Some(p) = &st.policy {
        t.set("policy", p.to_string())?;
    }
    t.set("keys", keys)?;
    t.set("values", values)?;
    t.set("ttls", ttls)?;
    t.set("expired", expired)?;
    ok(lua, t)
}

/// `decode_entry(entry)` -> { op = "+"|"-", target, key, value?, ttl?,
/// expired? } | nil, err: a journal entry as the fleet sends it.
pub(super) fn decode_entry(lua: &Lua, entry: mlua::LuaString) -> LuaResult<MultiValue> {
    let text = entry.to_string_lossy();
    let t = lua.create_table()?;
    match crate::blocks::Change::decode(&text) {
        Ok(crate::blocks::Change::Add(b)) => {
            t.set("op", "+")?;
            t.set("target", b.net.to_string())?;
            t.set("key", Block::key(&b.net))?;
            t.set("value", lua.create_string(b.value())?)?;
            t.set("entry", entry)?;
            match ttl_left(b.expires_ms, now_ms()) {
                Some(ttl) => t.set("ttl", ttl)?,
                None => t.set("expired", true)?,
            }
        }
        Ok(crate::blocks::Change::Remove(net)) => {
            t.set("op", "-")?;
            t.set("target", net.to_string())?;
            t.set("key", Block::key(&net))?;
            t.set("entry", entry)?;
        }
        Err(e) => return nil_err(lua, e),
    }
    ok(lua, t)
}
