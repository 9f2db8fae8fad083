//! The bindings' tests: the module in a vendored LuaJIT (`core`), with an
//! `ngx` whose log lines are recorded (`logged`) and whose shared dict is a
//! Lua table (`dict`, its `safe_add` calls recorded in `calls`), and an
//! engine on it (`engine`).

use mlua::Lua;

/// A Lua state with `core`, `ngx`, `dict` and `engine = core.engine(opts)`
/// (`opts`: a Lua table constructor naming the dict `dict`).
pub(crate) fn lua(dict: &str, opts: &str) -> Lua {
    let lua = Lua::new();
    let m = super::warden_core(&lua).unwrap();
    lua.globals().set("core", m).unwrap();
    lua.load(format!(
        r#"
        logged = {{}}
        calls = {{}}
        local data = {{}}
        dict = {{
            get = function(_, k) return data[k] end,
            safe_set = function(_, k, v) data[k] = v return true end,
            safe_add = function(_, k, v)
                calls[#calls + 1] = "safe_add " .. k
                if data[k] ~= nil then return false, "exists" end
                data[k] = v return true
            end,
            incr = function(_, k, by)
                if data[k] == nil then return nil, "not found" end
                data[k] = data[k] + by return data[k]
            end,
            delete = function(_, k) data[k] = nil end,
            get_keys = function()
                local t = {{}} for k in pairs(data) do t[#t + 1] = k end return t
            end,
            flush_expired = function() return 0 end,
            free_space = function() return 40000 end,
            capacity = function() return 65536 end,
        }}
        ngx = {{ WARN = 5, ERR = 4, NOTICE = 6, INFO = 7,
                 shared = {{ [{dict:?}] = dict }},
                 log = function(level, msg) logged[#logged + 1] = level .. " " .. msg end }}
        engine = assert(core.engine({opts}))
        "#
    ))
    .exec()
    .unwrap();
    lua
}

/// Runs `code` in `lua` and returns what it returns.
pub(crate) fn run<T: mlua::FromLuaMulti>(lua: &Lua, code: &str) -> T {
    lua.load(code).eval().unwrap()
}
