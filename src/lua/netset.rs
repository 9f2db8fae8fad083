//! `LuaNetSet`: a set of networks (iprepd's allowlist), owned by Lua.

use mlua::{LightUserData, UserData, UserDataMethods};

/// A set of networks (an allowlist), owned by Lua.
pub struct LuaNetSet(Box<crate::net::lists::NetSet>);

impl UserData for LuaNetSet {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method("ptr", |_, this, ()| {
            Ok(LightUserData(
                &*this.0 as *const crate::net::lists::NetSet as *mut _,
            ))
        });
        m.add_method("is_empty", |_, this, ()| Ok(this.0.is_empty()));
    }
}

impl LuaNetSet {
    /// Owns `s` (boxed, so that the pointer given to the FFI stays put).
    pub fn new(s: crate::net::lists::NetSet) -> LuaNetSet {
        LuaNetSet(Box::new(s))
    }
}
