-- Loads the Rust core twice over: as the Lua module `warden_core` (mlua,
-- for set-up and admin work) and, from the same file, through LuaJIT's FFI
-- (the per-request entry points, compiled into traces).
--
-- `require` opens C modules RTLD_LOCAL, so ffi.C cannot see their symbols:
-- the FFI side walks package.cpath and ffi.loads the file `require` found.
-- Both resolve to one copy of the library (same file, same statics). The
-- C declarations, outcome codes and flag bits come from the library
-- itself (src/ffi/cdef.rs): nothing here repeats them.

local ffi = require "ffi"

local io_open = io.open
local concat = table.concat

local NAME = "warden_core"

local lua_core = require(NAME)

ffi.cdef(lua_core.cdef)


local function find_library()
    local tried = {}
    for template in package.cpath:gmatch("[^;]+") do
        local path = template:gsub("%?", NAME)
        local f = io_open(path, "rb")
        if f then
            f:close()
            return path
        end
        tried[#tried + 1] = path
    end
    error("resty.warden: cannot find " .. NAME .. ".so in package.cpath;"
          .. " tried:\n    " .. concat(tried, "\n    "), 3)
end


local _M = {
    lua = lua_core,
    C = ffi.load(find_library()),
}

-- PASS, ALLOW, DENY, ..., NO_SYNC, POLICY, ...: src/ffi/cdef.rs codes()
for name, v in pairs(lua_core.codes) do
    _M[name] = v
end


return _M
