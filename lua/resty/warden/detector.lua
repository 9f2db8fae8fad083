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


-- Acts on the rule that tripped in this worker's latest observation (of
-- the current request).
local function tripped(w)
    local var = ngx.var
    local _, client, rule = w.engine:trip(ngx.status, ngx.req.get_method(),
                                          var.request_uri, var.http_user_agent)
    if client and w.iprepd then
        w.iprepd:report_violation(client, rule)
    end
end


--- tripped(w): acts on the rule the current request tripped. Never
-- raises.
function _M.tripped(w)
    local ok, err = pcall(tripped, w)
    if not ok then
        log(ERR, "warden: acting on a tripped rule failed: ", err)
    end
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
