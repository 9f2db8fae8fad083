-- The access phase when a policy applies by path or site: whitelisted
-- paths, disabled sites, a site's allowed_ips, blocked_paths and
-- rate_limit, and protected routes (basic or bearer credentials).
--
-- warden:check() comes here only when such a policy exists (one FFI call
-- tells it); without one the access phase never loads a path. What
-- applies is decided in Rust, in one call (src/policy/decision.rs, the
-- decision /security/check asks for too); here the request is ended as
-- it says.

local core = require "resty.warden.core"
local detector = require "resty.warden.detector"
local ffi = require "ffi"

local ngx = ngx
local log = ngx.log
local WARN = ngx.WARN
local INFO = ngx.INFO
local ERR = ngx.ERR
local band = require("bit").band
local ffi_string = ffi.string

local capture_since_c = core.C.warden_capture_since
local decide_c = core.C.warden_decide
local mark_c = core.C.warden_mark
local SEEN_REFUSED = core.SEEN_REFUSED
local SEEN_UNOBSERVED = core.SEEN_UNOBSERVED
local DECIDE_PASS, DECIDE_SKIP = core.DECIDE_PASS, core.DECIDE_SKIP
local DECIDE_BLOCKED = core.DECIDE_BLOCKED
local DECIDE_RATE = core.DECIDE_RATE
local DECIDE_UNAUTHORIZED = core.DECIDE_UNAUTHORIZED
local DECIDE_CHALLENGE = core.DECIDE_CHALLENGE
local DECIDE_FORBIDDEN_IP = core.DECIDE_FORBIDDEN_IP
local DECIDE_BLOCKED_PATH = core.DECIDE_BLOCKED_PATH
local CHALLENGE = core.CHALLENGE
local get_request = require("resty.core.base").get_request

local decision = ffi.new("warden_decision_t")


local _M = {}


-- Counts a failed authentication for the detector now (the log phase may
-- not run for this location), and tells the log phase not to count it
-- again.
local function auth_failed(w, ip, why, path)
    w.engine:record{ ip = ip, type = "auth_failed", rule = "protected_route",
                     status = 401, method = ngx.req.get_method(), path = path,
                     user_agent = ngx.var.http_user_agent,
                     action = "401: credentials " .. why }
    if w.detector then
        detector.observe(w, 401)
        mark_c(w.handle, get_request(), SEEN_UNOBSERVED)
    end
end


-- The decision when the site has a rate limit, which is counted in the
-- shared dict: engine:decide() (mlua), the same decision.
local function decide_counted(w, rc, ip, site)
    local var = ngx.var
    local engine = w.engine
    local path, method, auth, server = var.uri, var.request_method,
                                       var.http_authorization, var.server_name
    -- without a site, Rust takes the server's server_name as the site
    local outcome, a, b = engine:decide(rc, ip, site, path, method, auth,
                                        server)
    if outcome == "cookie" then
        -- the site challenges every client: its cookie, read only then
        outcome, a, b = engine:decide(rc, ip, site, path, method, auth,
                                      server, var.cookie_warden_pass or "")
    end
    return outcome, a, b
end


--- enforce(w, rc, ip_text, site, refuse, flags, client) -> true or "skip"
-- (a whitelisted path or a disabled site: check nothing else), or ends
-- the request. The access phase's part of warden:check() when a policy
-- applies; rc: warden_access's outcome; ip_text() -> the client as text;
-- refuse(w, rc) acts on a block as check() does; flags: from
-- warden_policy_active; client: the warden_client_t check() filled.
function _M.enforce(w, rc, ip_text, site, refuse, flags, client)
    if band(flags, 2) ~= 0 then
        -- real-time capture: the log phase records the client as resolved
        local ctx = ngx.ctx
        ctx.warden_ip = ip_text()
        ctx.warden_site = site
    end
    -- one call: Rust reads the path, method and credentials itself
    local d = decide_c(w.handle, get_request(), client, rc, site,
                       site and #site or 0, decision)
    if d == DECIDE_PASS then
        return true
    elseif d == DECIDE_SKIP then
        return "skip"  -- left out of the detector by Rust too
    elseif d == DECIDE_BLOCKED then
        return refuse(w, rc)
    elseif d == DECIDE_CHALLENGE then
        -- the site challenges every client (challenge = true)
        return refuse(w, CHALLENGE)
    end
    local ip = ip_text()
    local outcome, a, b
    if d == DECIDE_UNAUTHORIZED then
        outcome = "unauthorized"
        a = ffi_string(decision.why, decision.why_len)
        b = ffi_string(decision.text, decision.text_len)
    elseif d == DECIDE_RATE then
        outcome, a, b = decide_counted(w, rc, ip, site)
        if outcome == nil then
            return true
        elseif outcome == "challenge" then
            return refuse(w, CHALLENGE)
        elseif outcome == "skip" or outcome == "blocked" then
            -- the policy changed between the two calls
            return outcome == "skip" and "skip" or refuse(w, rc)
        end
    elseif d == DECIDE_FORBIDDEN_IP or d == DECIDE_BLOCKED_PATH then
        -- the site's allowed_ips or blocked_paths: refused with
        -- block_status, the reason in the decision's text
        a = ffi_string(decision.text, decision.text_len)
    else
        log(ERR, "warden: the policy decision failed with code ", d,
            "; letting the request through")
        return true
    end

    if outcome == "unauthorized" then
        local path = ngx.var.uri
        auth_failed(w, ip, a, path)
        ngx.header["WWW-Authenticate"] = b
        log(INFO, "warden: ", ip, ": credentials ", a, " for ", path)
        return ngx.exit(401)
    end

    local status = w.block_status
    if outcome == "rate_limited" then
        status = 429
        ngx.header["Retry-After"] = b
    end
    if w.blocking_mode == 0 then
        log(WARN, "warden: ", ip, " would have been refused (", a,
            "); blocking_mode is 0")
        return true
    end
    log(INFO, "warden: refused ", ip, ": ", a)
    -- the site's own choice: the detector counts what the request carries,
    -- not this status
    mark_c(w.handle, get_request(), SEEN_REFUSED)
    return ngx.exit(status)
end


--- log(w, flags): the log phase when real-time capture applies (the
-- request is recorded). What the policies left out of the detector, Rust
-- knows (the access phase marked it).
function _M.log(w, flags)
    local ctx = ngx.ctx
    -- Real-time capture records the requests that arrived while it was on:
    -- those check() saw with it on (it set warden_ip), and, when check()
    -- did not run, those that began after this worker learnt it was on. A
    -- request that ends just after it went off (bit 8) is still recorded.
    local capture
    if band(flags, 2) ~= 0 then
        capture = ctx.warden_ip
                  or ngx.req.start_time() > capture_since_c(w.handle)
    else
        capture = band(flags, 8) ~= 0 and ctx.warden_ip
    end
    if capture then
        local var = ngx.var
        w.engine:record{
            type = "capture", ip = ctx.warden_ip or var.remote_addr,
            method = var.request_method, path = var.request_uri,
            status = ngx.status, user_agent = var.http_user_agent,
            rule = ctx.warden_site or "", action = "captured",
        }
    end
end


return _M
