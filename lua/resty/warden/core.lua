-- Loads the Rust core twice over: as the Lua module `warden_core` (mlua,
-- for set-up and admin work) and, from the same file, through LuaJIT's FFI
-- (the per-request entry points, compiled into traces).
--
-- `require` opens C modules RTLD_LOCAL, so ffi.C cannot see their symbols:
-- the FFI side walks package.cpath and ffi.loads the file `require` found.
-- Both resolve to one copy of the library (same file, same statics).

local ffi = require "ffi"

local ffi_load = ffi.load
local io_open = io.open
local concat = table.concat

local NAME = "warden_core"

local lua_core = require(NAME)

ffi.cdef [[
typedef struct warden_engine warden_engine_t;

typedef struct {
    unsigned char addr[16];
    unsigned char family;
    unsigned char bad_forwarded;
    unsigned char pad[6];
} warden_client_t;

int warden_check(const warden_engine_t *w,
                 const unsigned char *peer, size_t peer_len,
                 const unsigned char *fwd, size_t fwd_len,
                 unsigned int flags, warden_client_t *out);

int warden_client_text(const warden_client_t *c, unsigned char *buf,
                       size_t len);

typedef struct {
    const unsigned char *peer;
    size_t peer_len;
    const unsigned char *fwd;
    size_t fwd_len;
    const unsigned char *uri;
    size_t uri_len;
    const unsigned char *ua;
    size_t ua_len;
    unsigned int status;
    unsigned int flags;
} warden_log_t;

int warden_log(const warden_engine_t *w, const warden_log_t *req);

typedef struct {
    const unsigned char *path;
    size_t path_len;
    const unsigned char *method;
    size_t method_len;
    const unsigned char *site;
    size_t site_len;
    int route;
    unsigned int rate_limit;
    unsigned int rate_window;
} warden_policy_t;

int warden_policy_active(const warden_engine_t *w);
double warden_capture_since(const warden_engine_t *w);
int warden_policy_skip(const warden_engine_t *w, const warden_policy_t *p,
                       int verdict);
int warden_policy_require(const warden_engine_t *w,
                          const warden_client_t *c, int verdict,
                          warden_policy_t *p);

typedef struct warden_cache warden_cache_t;
typedef struct warden_netset warden_netset_t;
int warden_rep_get(const warden_cache_t *c, const char *ip, size_t len);
int warden_rep_put(const warden_cache_t *c, const char *ip, size_t len,
                   int reputation, uint64_t ttl_ms);
int warden_netset_contains(const warden_netset_t *s, const char *ip,
                           size_t len);
]]


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
    C = ffi_load(find_library()),

    -- Outcome codes of warden_check (src/engine.rs, mod code).
    PASS = 0,
    ALLOW = 1,
    DENY = 2,
    BLOCK_MANUAL = 3,
    BLOCK_AUTO = 4,
    NEED_FORWARDED = 8,
    SYNC = 9,
    TRIP = 10,
    BAD_ADDRESS = -1,
    INTERNAL = -2,

    -- warden_policy_require outcomes (src/ffi.rs).
    POLICY_FORBIDDEN_IP = 2,
    POLICY_BLOCKED_PATH = 3,

    -- warden_check flags (src/ffi.rs).
    PEER_TEXT = 1,
    HAVE_FORWARDED = 2,
    NO_SYNC = 4,
}


return _M
