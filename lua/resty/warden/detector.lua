-- The detector's side of the log phase: every finished request goes to
-- the detector in Rust through one FFI call that allocates nothing
-- (warden.lua's log(); Rust reads the request's variables itself). The
-- counters live in memory shared by every worker, so the request that
-- brings a count to its threshold is the one that trips the rule,
-- whichever worker serves it.
--
-- A tripped rule (rare: once per client, rule and window) is acted on in
-- Rust, off the fast path (src/detect/offences.rs): the automatic block
-- with its escalation for repeat offenders, the security event and the
-- log line. Lua passes the request and fires the iprepd report (a
-- cosocket).

local core = require "resty.warden.core"
local base = require "resty.core.base"

local ngx = ngx
local log = ngx.log
local ERR = ngx.ERR

local log_c = core.C.warden_log
local get_request = base.get_request

local TRIP = core.TRIP
local NO_SYNC, OBSERVE = core.NO_SYNC, core.OBSERVE


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


-- Feeds the current request to the detector with `status` (a refusal in
-- the access phase, whose log phase may not run). Never raises.
function _M.observe(w, status)
    local r = get_request()
    if r and log_c(w.handle, r, NO_SYNC + OBSERVE, status) == TRIP then
        _M.tripped(w)
    end
end


return _M
