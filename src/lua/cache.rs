//! `LuaCache`: the shared iprepd reputation cache, owned by Lua.

use mlua::{LightUserData, UserData, UserDataMethods};

/// The shared iprepd cache, owned by Lua.
pub struct LuaCache(Box<crate::reputation::Cache>);

impl UserData for LuaCache {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method("ptr", |_, this, ()| {
            Ok(LightUserData(
                &*this.0 as *const crate::reputation::Cache as *mut _,
            ))
        });
        m.add_method("capacity", |_, this, ()| Ok(this.0.capacity()));
    }
}

impl LuaCache {
    /// Owns `c` (boxed, so that the pointer given to the FFI stays put).
    pub fn new(c: crate::reputation::Cache) -> LuaCache {
        LuaCache(Box::new(c))
    }
}
