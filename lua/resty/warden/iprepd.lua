-- resty.warden.iprepd: a drop-in replacement for Mozilla's iprepd-nginx
-- (`require("resty.iprepd")`, version 0.1.14): the same options,
-- defaults, request headers, status codes, log lines (text, level and the
-- function they are logged from) and statsd lines, with its defects fixed
-- (README, "iprepd").
--
--   init_by_lua_block {
--       client = require("resty.warden.iprepd").new({
--           url = "http://127.0.0.1:8080", api_key = "...", threshold = 50,
--       })
--   }
--   access_by_lua_block { client:check(ngx.var.remote_addr) }
--
-- Every decision and every text is made in Rust (src/reputation/iprepd.rs:
-- options, lookups and answers, verdicts, metrics, log lines); this file
-- does what only nginx can: the cosocket, the request headers, 429, the
-- logging, the timers.

local core = require "resty.warden.core"
local http = require "resty.warden.http"
local statsd = require "resty.warden.statsd"
local ffi = require "ffi"

local ngx = ngx
local log = ngx.log
local ERR = ngx.ERR
local ALERT = ngx.ALERT
local set_header = ngx.req.set_header
local sleep = ngx.sleep
local now = ngx.now
local update_time = ngx.update_time
local type = type
local tostring = tostring
local ipairs = ipairs
local pcall = pcall
local setmetatable = setmetatable

local K = core.lua.iprepd_const
local C = core.C
local check_c = C.warden_iprepd_check
local verdict_c = C.warden_iprepd_verdict
local out = ffi.new("warden_iprepd_out_t")

local ACCEPT, REJECT, HIT, ALLOWLISTED = K.ACCEPT, K.REJECT, K.HIT,
                                        K.ALLOWLISTED
local FETCH, WAIT, BAD_ADDRESS = K.FETCH, K.WAIT, K.BAD_ADDRESS
local CHECK = K.ALLOWLIST + K.VERDICT
local REPUTATION = K.headers.reputation
local BELOW = K.headers.below
local BLOCK = K.headers.block
local VERBOSE = K.verbose_prefix
local WAIT_STEP = 0.001  -- seconds between polls of another lookup


local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }


-- iprepd-nginx logs its warnings at error level, "so that nginx log levels
-- do not need to be changed", from a function of this name.
local function warning(message)
    log(ERR, message)
end


--- new(options) -> client. Raises on missing or bad options (the error
-- names the option and the value). `hooks` is for resty.warden: with it,
-- failures are counted (hooks.on_error) and their lines throttled.
function _M.new(options, hooks)
    -- the client and the warnings to log, or nil and the error
    local c, warnings = core.lua.iprepd(options, {
        ngx_lua_version = tostring(ngx.config.ngx_lua_version),
        warden = hooks ~= nil,
    })
    if not c then
        local err = warnings
        error("resty.warden.iprepd: " .. err, 2)
    end
    for _, w in ipairs(warnings) do
        warning(w)
    end
    -- iprepd-nginx's client fields (url, threshold, verbose, ...)
    local self = c:settings()
    self.core = c
    self.ptr = ffi.cast("const warden_iprepd_t *", c:ptr())
    self.on_error = hooks and hooks.on_error
    local m = c:metrics()
    if m then
        -- client.statsd exists only with a host, as in iprepd-nginx
        self.statsd = statsd.new(self.statsd_host, self.statsd_port, nil, m)
    end
    return setmetatable(self, mt)
end


local function flush_if(self, full)
    if full then
        self.statsd.flush_soon()
    end
end


--- client:config_flush_timer(): in init_worker_by_lua*, sends the
-- buffered metrics every statsd_flush_timer seconds.
function _M:config_flush_timer()
    if self.statsd then
        return self.statsd.start_timer(self.statsd_flush_timer)
    end
    return true
end


--- client:flush_stats(): sends the metrics when the buffer is full, from
-- a timer (so in any phase: iprepd-nginx's failed in log_by_lua* and lost
-- them). A full buffer is also sent on its own.
function _M:flush_stats()
    local s = self.statsd
    if s and s.full() then
        s.flush_soon()
    end
    return true
end


--- client.async_flush_stats(premature, client): a timer's handler that
-- sends the metrics (as iprepd-nginx's).
function _M.async_flush_stats(_, self)
    if self.statsd then
        self.statsd.flush()
    end
end


function _M:debug_log(msg)
    if self.verbose == 1 then
        log(ERR, VERBOSE, msg)
    end
end


local function verbose(self, kind, ip, reputation)
    if self.verbose == 1 then
        self:debug_log(self.core:verbose_line(kind, ip, reputation))
    end
end


--- client:audit_log(ip): iprepd-nginx's audit line of a refused request,
-- when its URI matches audit_uri_list.
function _M:audit_log(ip)
    local audited, with_headers = self.core:audited(ngx.var.uri or "")
    if not audited then
        return
    end
    local headers = with_headers and ngx.req.get_headers() or nil
    local data, file
    if pcall(ngx.req.read_body) then
        data = ngx.req.get_body_data()
        if not data then
            file = ngx.req.get_body_file()
        end
    end
    log(ALERT, self.core:audit_line(ip, headers, data, file))
end


-- Asks iprepd (rc: FETCH), waits for another request's lookup (WAIT), or
-- says why not; returns the reputation or nil (fail open). Named as
-- iprepd-nginx's function, which its lines are logged from.
local function get_reputation(self, ip, rc)
    if rc == WAIT then
        -- another request is asking iprepd: wait for its answer within
        -- our own timeout, then fail open
        update_time()
        local deadline = now() + self.timeout / 1000
        repeat
            sleep(WAIT_STEP)
            rc = check_c(self.ptr, ip, #ip, 0, out)
            flush_if(self, out.flush ~= 0)
            if rc == HIT then
                return out.reputation
            end
            update_time()
        until rc ~= WAIT or now() >= deadline
        if rc == WAIT then
            flush_if(self, self.core:gave_up())
            return nil
        end
    end
    if rc == FETCH then
        local res, err = http.request{
            host = self.host, port = self.port, tls = self.tls,
            head = self.core:lookup_head(ip), timeout = self.timeout,
        }
        local reputation, failed, errors, messages, full = self.core:answer(
            ip, res and res.status, res and res.body or err)
        flush_if(self, full)
        for i = 1, #errors do
            log(ERR, errors[i])
        end
        for i = 1, #messages do
            self:debug_log(messages[i])
        end
        if failed and self.on_error then
            self.on_error()
        end
        return reputation
    end
    if rc == BAD_ADDRESS then
        log(ERR, self.core:line("bad_address", ip))
    else
        log(ERR, self.core:line("internal", rc))
    end
    return nil
end


--- client:get_reputation(ip) -> reputation | nil (fail open)
function _M:get_reputation(ip)
    if type(ip) ~= "string" then
        log(ERR, self.core:line("not_string", type(ip)))
        return nil
    end
    local rc = check_c(self.ptr, ip, #ip, 0, out)
    if rc == HIT then
        flush_if(self, out.flush ~= 0)
        return out.reputation
    end
    local reputation = get_reputation(self, ip, rc)
    return reputation
end


--- client:below_threshold(reputation) -> whether check() would refuse
-- (or, in monitor mode, flag) a client with this reputation.
function _M:below_threshold(reputation)
    return verdict_c(self.ptr, 1, reputation, 0, nil) ~= ACCEPT
end


local function put_violation(premature, self, ip, name, head, body)
    if premature then
        return
    end
    local res, err = http.request{
        host = self.host, port = self.port, tls = self.tls, method = "PUT",
        head = head, body = body, timeout = self.violation_timeout,
    }
    local line, full = self.core:reported(ip, name, res and res.status,
                                          res and res.body or err)
    flush_if(self, full)
    if line then
        log(ERR, line)
    end
end


--- client:report_violation(ip, rule): tells iprepd (PUT
-- /violations/type/ip/<ip>) from a timer, off the request path. The
-- violation's name is opts.violations[rule], else "warden:<rule>".
function _M:report_violation(ip, rule)
    local name, head, body = self.core:violation(ip, rule)
    if not name then
        return true  -- this rule is not reported
    end
    local ok, err = ngx.timer.at(0, put_violation, self, ip, name, head,
                                 body)
    if not ok then
        log(ERR, self.core:line("schedule", err))
    end
    return ok, err
end


--- client:check(ip): sets the X-Foxsec-* request headers; with
-- blocking_mode = 1, ends the request with 429 when the reputation is
-- at or below the threshold.
function _M:check(ip)
    if self.verbose == 1 then
        self:debug_log(self.core:verbose_line("checking", ip))
    end
    set_header(BELOW, "false")
    set_header(BLOCK, "false")
    if type(ip) ~= "string" then
        log(ERR, self.core:line("not_string", type(ip)))
        return
    end

    local rc = check_c(self.ptr, ip, #ip, CHECK, out)
    local reputation = out.reputation
    flush_if(self, out.flush ~= 0)
    if rc == ALLOWLISTED then
        verbose(self, "allowlisted", ip)
        return
    elseif rc < 0 then
        reputation = get_reputation(self, ip, rc)
        rc = verdict_c(self.ptr, reputation and 1 or 0, reputation or 0, 1,
                       out)
        flush_if(self, out.flush ~= 0)
    end

    if reputation then
        verbose(self, "got", ip, reputation)
        set_header(REPUTATION, tostring(reputation))
        if rc ~= ACCEPT then
            set_header(BELOW, "true")
            set_header(BLOCK, "true")
            self:audit_log(ip)
            log(ERR, self.core:verdict_line(rc, ip, reputation))
            if rc == REJECT then
                return ngx.exit(ngx.HTTP_TOO_MANY_REQUESTS)
            end
        end
    end
    verbose(self, "accepted", ip)
end


return _M
