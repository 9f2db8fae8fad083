-- The log phase: every finished request goes to the detector in Rust
-- through one FFI call that allocates nothing (the request's variables are
-- passed as pointers into nginx's memory). The counters live in memory
-- shared by every worker, so the request that brings a count to its
-- threshold is the one that trips the rule, whichever worker serves it.
--
-- A tripped rule (rare: once per client, rule and window) is acted on in
-- Rust, off the fast path (src/detect/offences.rs): the automatic block
-- with its escalation for repeat offenders, the security event and the
-- log line. Lua passes the request and fires the iprepd report (a
-- cosocket).

local core = require "resty.warden.core"
local request = require "resty.warden.request"
local ffi = require "ffi"
require "resty.core.misc"  -- declares ngx_http_lua_ffi_get_resp_status

local ngx = ngx
local log = ngx.log
local ERR = ngx.ERR

local log_c = core.C.warden_log
local get_status = ffi.C.ngx_http_lua_ffi_get_resp_status
local get_request = request.get_request
local fetch = request.fetch
local get_var = request.get
local value_ptr = request.value_ptr
local value_len = request.value_len

local TRIP = core.TRIP
local NEED_FORWARDED = core.NEED_FORWARDED
local HAVE_FORWARDED = core.HAVE_FORWARDED

-- Scratch space reused by every request of this worker.
local req = ffi.new("warden_log_t")


local _M = {}


-- Acts on the rule that tripped in this worker's latest observation.
-- `line` describes the request ({ status, method, path, user_agent }) when
-- it is not the current one (log lines given to /security/analyze).
local function tripped(w, line)
    local status, method, path, ua
    if line then
        status, method = line.status, line.method
        path, ua = line.path, line.user_agent
    else
        local var = ngx.var
        status, method = ngx.status, ngx.req.get_method()
        path, ua = var.request_uri, var.http_user_agent
    end
    local event, client, rule = w.engine:trip(status, method, path, ua)
    if client and w.iprepd then
        w.iprepd:report_violation(client, rule)
    end
    return event
end


--- tripped(w, line?) -> the event recorded, or nil. Never raises.
function _M.tripped(w, line)
    local ok, res = pcall(tripped, w, line)
    if not ok then
        log(ERR, "warden: acting on a tripped rule failed: ", res)
        return nil
    end
    return res
end


-- Feeds the current request to the detector, with its response status or
-- `status` (the access phase's refusals). Never raises.
function _M.observe(w, status)
    local r = get_request()
    if not r or not fetch(r, "binary_remote_addr") then
        return
    end
    req.peer = value_ptr[0]
    req.peer_len = value_len[0]
    req.fwd = nil
    req.fwd_len = 0
    req.uri, req.uri_len = get_var(r, "request_uri")
    req.ua, req.ua_len = get_var(r, "http_user_agent")
    req.status = status or get_status(r)
    req.flags = 0
    local rc = log_c(w.handle, req)
    if rc == NEED_FORWARDED then
        req.fwd, req.fwd_len = get_var(r, "http_x_forwarded_for")
        req.flags = HAVE_FORWARDED
        rc = log_c(w.handle, req)
    end
    if rc == TRIP then
        _M.tripped(w)
    end
end


return _M
