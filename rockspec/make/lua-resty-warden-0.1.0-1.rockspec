-- Builds with LuaRocks' built-in make backend: needs cargo and make, and
-- nothing from the LuaRocks registry. Use it offline or with a
-- distribution's LuaRocks (tested with Debian's luarocks 3.8):
--   luarocks make rockspec/make/lua-resty-warden-0.1.0-1.rockspec
-- With the registry, the conventional mlua backend is in
-- rockspec/lua-resty-warden-0.1.0-1.rockspec.
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
    homepage = "https://github.com/lua-resty-warden/lua-resty-warden",
    license = "BSD-2-Clause",
}

dependencies = {
    "lua == 5.1",  -- LuaJIT
}

build = {
    type = "make",
    build_target = "build",
    install_target = "install-lib",  -- not the command line
    install_variables = {
        LUA_LIB_DIR = "$(LIBDIR)",
        LUA_SHARE_DIR = "$(LUADIR)",
    },
}
