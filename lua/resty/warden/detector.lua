-- The detector's side of the log phase: every finished request goes to
-- the detector in Rust through one FFI call that allocates nothing
-- (warden.lua's log(); Rust reads the request's variables itself). The
-- counters live in memory shared by every worker, so the request that
-- brings a count to its threshold is the one that trips the rule,
-- whichever worker serves it.
--
-- A tripped rule (rare: once per client, rule and window) is handled here,
-- off the fast path: the automatic block with its escalation for repeat
-- offenders, the security event and the log line.

local core = require "resty.warden.core"
local store = require "resty.warden.store"
local base = require "resty.core.base"

local ngx = ngx
local log = ngx.log
local WARN = ngx.WARN
local ERR = ngx.ERR
local tostring = tostring

local log_c = core.C.warden_log
local get_request = base.get_request

local TRIP = core.TRIP
local NO_SYNC, OBSERVE = core.NO_SYNC, core.OBSERVE


local _M = {}


-- "90s", "15m", "24h", "7d" for a number of seconds.
local function human(s)
    if s == 0 then
        return "ever"
    end
    for _, u in ipairs({ { 86400, "d" }, { 3600, "h" }, { 60, "m" } }) do
        if s >= u[1] and s % u[1] == 0 then
            return (s / u[1]) .. u[2]
        end
    end
    return tostring(s) .. "s"
end
_M.human = human


-- Acts on the rule that tripped in this worker's latest observation.
-- `line` describes the request ({ status, method, path, user_agent }) when
-- it is not the current one (log lines given to /security/analyze).
local function tripped(w, line)
    local engine = w.engine
    local t = engine:trip()
    if not t then
        return
    end
    local det = w.detector
    local what = t.matched and ("scanner_agent: '" .. t.matched .. "'")
                 or (t.rule .. ": " .. t.count .. " in " .. human(t.window))
    local target = t.target
    local event = {
        ip = target, type = t.type, rule = t.rule, count = t.count,
        threshold = t.threshold, window = t.window,
    }
    if line then
        event.status, event.method = line.status, line.method
        event.path, event.user_agent = line.path, line.user_agent
    else
        local var = ngx.var
        event.status, event.method = ngx.status, ngx.req.get_method()
        event.path, event.user_agent = var.request_uri, var.http_user_agent
    end

    if t.mode == "monitor" then
        event.action = "monitor: would block"
        log(WARN, "warden: ", target, " would have been auto-blocked (",
            what, "); rule ", t.rule, " is in monitor mode")

    elseif not det.auto_block_enabled then
        event.action = "none: auto_block_enabled is false"
        log(WARN, "warden: ", target, " tripped ", what,
            "; auto_block_enabled is false")

    else
        -- Another worker may have blocked it a moment ago (two rules
        -- tripping at once): one offence, one block. Ask with the
        -- client's address (the target may be its IPv6 /64), after a
        -- sync, so that a block made in another worker is seen.
        local already = w:is_blocked(t.client)
        if already then
            event.action = "already blocked"
        else
            local key = "o|" .. target
            local memory = det.repeat_offender_memory
            local n, err = store.count(w.dict, w.dict_name, engine, key, 1,
                                       memory)
            if not n then
                if err ~= "no memory" then  -- (the store has logged it)
                    log(WARN, "warden: cannot count offences of ", target,
                        " (", err, "); treating this one as the first")
                end
                n = 1
            elseif n > 1 and w.dict.expire then
                w.dict:expire(key, memory)  -- remembered from the latest
            end
            local duration = engine:block_duration(n)
            local ok
            ok, err = w:block(target, { duration = duration,
                                         reason = what }, "auto")
            if ok then
                engine:count("auto_blocks")
                if w.iprepd then
                    w.iprepd:report_violation(t.client, t.rule)
                end
                event.action = (duration == 0 and "blocked permanently"
                                or "blocked for " .. human(duration))
                               .. (n > 1 and " (offence " .. n .. ")" or "")
                log(WARN, "warden: auto-blocked ", target, " for ",
                    human(duration), " (", what, ", offence ", n, ")",
                    w.blocking_mode == 0
                        and "; blocking_mode is 0, so it is only logged"
                        or "")
            else
                -- the store has logged why (a full dict: rate-limited)
                event.action = "block failed: " .. tostring(err)
            end
        end
    end
    engine:record(event)
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
