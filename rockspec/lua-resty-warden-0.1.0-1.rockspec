-- For the LuaRocks registry: builds the Rust core with the conventional
-- mlua build backend (luarocks-build-rust-mlua), which LuaRocks installs
-- from the registry. Needs cargo and LuaJIT (OpenResty:
-- --lua-dir=/usr/local/openresty/luajit).
-- Offline, or with a distribution's LuaRocks, use rockspec/make/ instead.
rockspec_format = "3.0"
package = "lua-resty-warden"
version = "0.1.0-1"

source = {
    url = "git+https://github.com/lua-resty-warden/lua-resty-warden",
    tag = "v0.1.0",
}

description = {
    summary = "Allow/deny lists, instant blocks and behavioural detection"
              .. " for nginx, with a Rust core",
    detailed = [[
        lua-resty-warden protects every site behind nginx/OpenResty:
        allow/deny lists of IPs and CIDRs, trusted proxies and
        X-Forwarded-For, and instant blocks with TTLs enforced by every
        worker. Per-request work goes through LuaJIT's FFI into Rust.
    ]],
    homepage = "https://github.com/lua-resty-warden/lua-resty-warden",
    license = "BSD-2-Clause",
}

dependencies = {
    "lua == 5.1",  -- LuaJIT
    "luarocks-build-rust-mlua",
}

build = {
    type = "rust-mlua",
    modules = {
        "warden_core",
    },
    include = {
        ["lua/resty/warden.lua"] = "resty/warden.lua",
        ["lua/resty/warden/access.lua"] = "resty/warden/access.lua",
        ["lua/resty/warden/challenge.lua"] = "resty/warden/challenge.lua",
        ["lua/resty/warden/api.lua"] = "resty/warden/api.lua",
        ["lua/resty/warden/core.lua"] = "resty/warden/core.lua",
        ["lua/resty/warden/crawler.lua"] = "resty/warden/crawler.lua",
        ["lua/resty/warden/detector.lua"] = "resty/warden/detector.lua",
        ["lua/resty/warden/fleet.lua"] = "resty/warden/fleet.lua",
        ["lua/resty/warden/http.lua"] = "resty/warden/http.lua",
        ["lua/resty/warden/iprepd.lua"] = "resty/warden/iprepd.lua",
        ["lua/resty/warden/state.lua"] = "resty/warden/state.lua",
        ["lua/resty/warden/eventlog.lua"] = "resty/warden/eventlog.lua",
        ["lua/resty/warden/statsd.lua"] = "resty/warden/statsd.lua",
    },
}
