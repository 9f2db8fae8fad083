-- The access phase when a policy applies by path or site: whitelisted
-- paths, disabled sites, a site's allowed_ips, blocked_paths and
-- rate_limit, and protected routes (basic or bearer credentials).
--
-- warden:check() comes here only when such a policy exists (one FFI call
-- tells it); without one the access phase never loads a path.
--
-- The order, for a request from client c to path p of site s:
--   1. p whitelisted, or s disabled: nothing else is checked;
--   2. the lists and blocks (allowlist and whitelist let c through);
--   3. s's allowed_ips and blocked_paths (403), then its rate_limit (429),
--      unless c is allowlisted or whitelisted;
--   4. the protected route covering p: 401 without valid credentials,
--      whoever c is (the whitelist exempts from blocking, not from
--      authentication).

local core = require "resty.warden.core"
local request = require "resty.warden.request"
local detector = require "resty.warden.detector"
local ffi = require "ffi"

local ngx = ngx
local log = ngx.log
local WARN = ngx.WARN
local INFO = ngx.INFO
local type = type
local ffi_string = ffi.string
local band = require("bit").band

local C = core.C
local skip_c = C.warden_policy_skip
local require_c = C.warden_policy_require
local capture_since_c = C.warden_capture_since
local refused_c = C.warden_refused
local get_var = request.get

local ALLOW, DENY, BLOCK_AUTO = core.ALLOW, core.DENY, core.BLOCK_AUTO
local FORBIDDEN_IP = core.POLICY_FORBIDDEN_IP
local BLOCKED_PATH = core.POLICY_BLOCKED_PATH

-- Scratch space reused by every request of this worker.
local p = ffi.new("warden_policy_t")
local current = {}  -- the current request, for decide()


local _M = {}


-- A request field as a Lua string (it is a string or a pointer).
local function text(v, len)
    if type(v) == "string" then
        return v
    end
    return v and ffi_string(v, len) or ""
end


--- decide(w, rc, client, ip_text, req) -> outcome, a, b, c
-- rc, client: warden_check's outcome and client; ip_text() -> the client
-- as text (called only when needed); req: { site, path (ptr or string),
-- path_len, method, method_len }. A protected route is checked against
-- the current request's Authorization header.
-- Outcomes: nil (go on), "skip", "blocked" (rc), "forbidden_ip",
-- "blocked_path", "rate_limited" (limit, retry_after),
-- "unauthorized" (why, scheme, realm).
function _M.decide(w, rc, client, ip_text, req)
    local site = req.site
    p.path, p.path_len = req.path, req.path_len
    p.method, p.method_len = req.method, req.method_len
    p.site, p.site_len = site, site and #site or 0
    if skip_c(w.handle, p, rc) == 1 then
        return "skip"
    end
    if rc >= DENY and rc <= BLOCK_AUTO then
        return "blocked", rc
    end
    local r = require_c(w.handle, client, rc, p)
    if r == FORBIDDEN_IP then
        return "forbidden_ip"
    elseif r == BLOCKED_PATH then
        return "blocked_path"
    end
    local limit = p.rate_limit
    if limit > 0 and rc ~= ALLOW then
        -- counted in the shared dict (src/policy/rate.rs); a counter is
        -- refused, not evicting, when the dict is (nearly) full: the
        -- request passes
        local retry = w.engine:rate_limit(site, ip_text(), limit,
            p.rate_window, text(req.method, req.method_len),
            text(req.path, req.path_len))
        if retry then
            return "rate_limited", limit, retry
        end
    end
    local route = p.route
    if route >= 0 then
        local why, _, scheme, realm = w.engine:verify_route(route,
            ngx.var.http_authorization)
        if why ~= "ok" then
            return "unauthorized", why, scheme, realm
        end
    end
    return nil
end


local function challenge(scheme, realm)
    if scheme == "bearer" then
        return 'Bearer realm="' .. realm .. '"'
    end
    return 'Basic realm="' .. realm .. '", charset="UTF-8"'
end
_M.challenge = challenge


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
        ngx.ctx.warden_counted = true
    end
end


--- enforce(w, rc, client, ip_text, site, refuse, flags) -> true or "skip"
-- (a whitelisted path or a disabled site: check nothing else), or ends
-- the request. The access phase's part of warden:check() when a policy
-- applies; refuse(w, rc) acts on a block as check() does; flags: from
-- warden_policy_active.
function _M.enforce(w, rc, client, ip_text, site, refuse, flags)
    local r = request.get_request()
    -- pointers into nginx's memory: only a refusal makes strings of them
    current.site = site
    current.path, current.path_len = get_var(r, "uri")
    current.method, current.method_len = get_var(r, "request_method")
    if band(flags, 2) ~= 0 then
        -- real-time capture: the log phase records the client as resolved
        local ctx = ngx.ctx
        ctx.warden_ip = ip_text()
        ctx.warden_site = site
    end
    local outcome, a, b, c = _M.decide(w, rc, client, ip_text, current)
    if outcome == nil then
        return true
    elseif outcome == "skip" then
        ngx.ctx.warden_skip = true
        return "skip"
    elseif outcome == "blocked" then
        return refuse(w, a)
    end

    local ip = ip_text()
    local what = text(current.path, current.path_len)
    if outcome == "unauthorized" then
        auth_failed(w, ip, a, what)
        ngx.header["WWW-Authenticate"] = challenge(b, c)
        log(INFO, "warden: ", ip, ": credentials ", a, " for ", what)
        return ngx.exit(401)
    end

    local status, reason
    if outcome == "rate_limited" then
        status = 429
        reason = "over the rate limit of site '" .. site .. "' (" .. a
                 .. " requests)"
        ngx.header["Retry-After"] = math.max(1, math.ceil(b))
    else
        status = w.block_status
        reason = outcome == "forbidden_ip"
                 and "not in allowed_ips of site '" .. site .. "'"
                 or "path " .. what .. " is blocked for site '" .. site .. "'"
    end
    if w.blocking_mode == 0 then
        log(WARN, "warden: ", ip, " would have been refused (", reason,
            "); blocking_mode is 0")
        return true
    end
    log(INFO, "warden: refused ", ip, ": ", reason)
    -- the site's own choice: the detector counts what the request carries,
    -- not this status
    refused_c(w.handle, r)
    return ngx.exit(status)
end


--- log(w, flags): the log phase when a policy applies. Returns true when
-- the detector must not see this request (whitelisted path, disabled
-- site, or counted already).
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
    return ctx.warden_skip or ctx.warden_counted
end


return _M
