-- resty.warden.iprepd: a drop-in replacement for Mozilla's iprepd-nginx
-- (`require("resty.iprepd")`, version 0.1.14): the same options,
-- defaults, request headers, status codes and log lines, with its known
-- defects fixed: it works without statsd, and one cache in shared memory
-- serves every worker, with at most one lookup in flight per address.
--
--   init_by_lua_block {
--       client = require("resty.warden.iprepd").new({
--           url = "http://127.0.0.1:8080", api_key = "...", threshold = 50,
--       })
--   }
--   access_by_lua_block { client:check(ngx.var.remote_addr) }
--
-- Lookups: GET <url>/type/ip/<ip> with "Authorization: APIKey <key>";
-- 200 -> the JSON "reputation", 404 -> 100; anything else fails open.

local core = require "resty.warden.core"
local http = require "resty.warden.http"
local statsd = require "resty.warden.statsd"
local cjson = require "cjson.safe"
local ffi = require "ffi"

local ngx = ngx
local log = ngx.log
local ERR = ngx.ERR
local WARN = ngx.WARN
local ALERT = ngx.ALERT
local set_header = ngx.req.set_header
local sleep = ngx.sleep
local now = ngx.now
local update_time = ngx.update_time
local type = type
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable
local format = string.format

local C = core.C
local rep_get = C.warden_rep_get
local rep_put = C.warden_rep_put
local netset_contains = C.warden_netset_contains

local HIT_MIN = 0
local FETCH, WAIT, BAD_ADDRESS = -1, -2, -3
local WAIT_STEP = 0.001  -- seconds between polls of another lookup

-- Options with their defaults (iprepd-nginx's).
local DEFAULTS = {
    timeout = 10,
    cache_ttl = 60,
    cache_buffer_count = 5000,
    cache_errors = 0,
    cache_errors_ttl = 10,
    statsd_port = 8125,
    statsd_max_buffer_count = 100,
    statsd_flush_timer = 5,
    blocking_mode = 0,
    verbose = 0,
    audit_blocked_requests = 0,
    audit_include_headers = 0,
    violation_timeout = 1000,
}


local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }


local function fail(msg)
    error("resty.warden.iprepd: " .. msg, 3)
end


local function number(options, name, min, max)
    local v = options[name]
    if v == nil then
        return DEFAULTS[name]
    end
    local n = tonumber(v)
    if not n or n < min or (max and n > max) then
        fail(format("opts.%s must be a number from %s%s, got %s", name, min,
                    max and " to " .. max or "", tostring(v)))
    end
    return n
end


--- new(options) -> client. Raises on missing or bad options.
function _M.new(options)
    if type(options) ~= "table" then
        fail("options must be a table, got " .. type(options))
    end
    local url = options.url or "http://localhost:8080"
    if url:sub(-1) == "/" then
        url = url:sub(1, -2)
    end
    local host, port_or_err = http.parse_url(url)
    if not host then
        fail("opts.url: " .. port_or_err)
    end
    if options.threshold == nil then
        fail("Need to pass in a threshold (opts.threshold)")
    end
    if options.api_key == nil then
        fail("Need to pass in an api_key (opts.api_key)")
    end

    local allowlist = options.allowlist
    if options.whitelist ~= nil then
        log(WARN, "whitelist option is deprecated. please switch to allowlist.")
        if allowlist ~= nil then
            log(WARN,
                "both whitelist and allowlist specified - using allowlist")
        else
            allowlist = options.whitelist
        end
    end
    local set
    if allowlist ~= nil then
        local err
        set, err = core.lua.netset(allowlist, "allowlist")
        if not set then
            fail(err)  -- names opts.allowlist and the value
        end
    end

    local self = {
        url = url,
        api_key = tostring(options.api_key),
        threshold = number(options, "threshold", 0, 100),
        timeout = number(options, "timeout", 1),
        cache_ttl = number(options, "cache_ttl", 0),
        cache_buffer_count = number(options, "cache_buffer_count", 1),
        cache_errors = number(options, "cache_errors", 0, 1),
        cache_errors_ttl = number(options, "cache_errors_ttl", 0),
        statsd_host = options.statsd_host,
        statsd_port = number(options, "statsd_port", 1, 65535),
        statsd_max_buffer_count = number(options, "statsd_max_buffer_count",
                                         1),
        statsd_flush_timer = number(options, "statsd_flush_timer", 1),
        blocking_mode = number(options, "blocking_mode", 0, 1),
        verbose = number(options, "verbose", 0, 1),
        audit_blocked_requests = number(options, "audit_blocked_requests",
                                        0, 1),
        audit_include_headers = number(options, "audit_include_headers", 0,
                                       1),
        allowlist = set,
    }
    self.headers = { Authorization = "APIKey " .. self.api_key }
    if self.audit_blocked_requests == 1 and not options.audit_uri_list then
        fail("audit_blocked_requests needs opts.audit_uri_list (a"
             .. " comma-separated list of Lua patterns)")
    end
    local uris = options.audit_uri_list
    if type(uris) == "string" then
        local list = {}
        for p in uris:gmatch("[^,]+") do
            list[#list + 1] = p:match("^%s*(.-)%s*$")
        end
        uris = list
    end
    if uris ~= nil then
        if type(uris) ~= "table" then
            fail("opts.audit_uri_list must be a comma-separated string or a"
                 .. " list of Lua patterns, got " .. type(uris))
        end
        for _, p in ipairs(uris) do
            local ok, err = pcall(string.find, "", p)
            if not ok then
                fail("opts.audit_uri_list has an invalid Lua pattern '"
                     .. tostring(p) .. "': " .. tostring(err))
            end
        end
    end
    self.audit_uri_list = uris
    -- warden's additions: violations reported for detector rules
    local violations = options.violations or {}
    if type(violations) ~= "table" then
        fail("opts.violations must be a table of rule = violation name,"
             .. " got " .. type(violations))
    end
    self.violations = violations
    self.violation_timeout = number(options, "violation_timeout", 1)
    if self.statsd_host then
        -- client.statsd exists only with a host, as in iprepd-nginx
        self.statsd = statsd.new(tostring(self.statsd_host),
                                 self.statsd_port,
                                 self.statsd_max_buffer_count)
    end

    -- One cache for every worker; a lookup mark older than twice the
    -- timeout is taken over by the next request.
    local cache, err = core.lua.reputation_cache("iprepd:" .. url,
        self.cache_buffer_count, 2 * self.timeout + 10)
    if not cache then
        fail(err)
    end
    self.cache_ud = cache  -- keeps the memory alive
    self.cache = ffi.cast("const warden_cache_t *", cache:ptr())
    if set then
        self.allowlist_ud = set
        self.allowlist = ffi.cast("const warden_netset_t *", set:ptr())
    end
    return setmetatable(self, mt)
end


--- client:config_flush_timer(): in init_worker_by_lua*, sends the
-- buffered metrics every statsd_flush_timer seconds.
function _M:config_flush_timer()
    if self.statsd then
        return self.statsd.start_timer(self.statsd_flush_timer)
    end
    return true
end


--- client:flush_stats(): sends the metrics when the buffer is full
-- (a full buffer is also sent on its own, from a timer).
function _M:flush_stats()
    local s = self.statsd
    if s and s.buffer_count() >= self.statsd_max_buffer_count then
        return s.flush()
    end
    return true
end


-- iprepd-nginx's audit line for a request below the threshold, when its
-- URI matches audit_uri_list.
function _M:audit_log(ip)
    if self.audit_blocked_requests ~= 1 then
        return
    end
    local uri = ngx.var.uri or ""
    local matched = false
    for _, p in ipairs(self.audit_uri_list) do
        if uri:find(p) then
            matched = true
            break
        end
    end
    if not matched then
        return
    end
    local headers
    if self.audit_include_headers == 1 then
        headers = ngx.req.get_headers(100, true)
    end
    local ok = pcall(ngx.req.read_body)
    local data, file
    if ok then
        data = ngx.req.get_body_data()
        if not data then
            file = ngx.req.get_body_file()
        end
    end
    log(ALERT, core.lua.audit_line(ip, headers, data, file))
end


function _M:debug_log(msg)
    if self.verbose == 1 then
        log(ERR, "[verbose] ", msg)
    end
end


local function stat(self, name)
    local s = self.statsd
    if s then
        s.incr(name)
    end
end


local function store(self, ip, reputation, ttl)
    rep_put(self.cache, ip, #ip, reputation, ttl * 1000)
end


local LOG_EVERY = 10  -- seconds between two lines of one kind of failure
local quiet = {}     -- kind -> { logged = time, more = count } (per worker)


-- A failed lookup: counted every time, logged (iprepd-nginx's line) the
-- first time and then at most once every LOG_EVERY seconds per kind and
-- worker, with how many were not logged, so that an iprepd that is down
-- does not write one line per request.
local function lookup_failed(self, kind, ...)
    local f = self.on_error  -- set by resty.warden (counts lookup_errors)
    if f then
        f()
    end
    local q = quiet[kind]
    if not q then
        q = { logged = 0, more = 0 }
        quiet[kind] = q
    end
    local t = now()
    if t - q.logged < LOG_EVERY then
        q.more = q.more + 1
        return
    end
    if q.more > 0 then
        log(ERR, format("%s (and %d more in the last %ds)",
                        table.concat({ ... }), q.more,
                        math.floor(t - q.logged + 0.5)))
    else
        log(ERR, ...)
    end
    q.logged, q.more = t, 0
end


-- Asks iprepd; returns the reputation or nil (fail open).
local function fetch(self, ip)
    local res, err = http.request{
        url = self.url, path = "/type/ip/" .. ip, headers = self.headers,
        timeout = self.timeout,
    }
    stat(self, "iprepd.get_reputation")
    if not res then
        local kind = err:gsub("%W+", "_")
        stat(self, "iprepd.err." .. kind)
        lookup_failed(self, kind, "Error with request to iprepd: ", err)
        store(self, ip, -1, 0)
        return nil
    end
    local status = res.status
    if status == 200 then
        local body = cjson.decode(res.body)
        local reputation = type(body) == "table" and tonumber(body.reputation)
        if not reputation or reputation < 0 or reputation > 100 then
            lookup_failed(self, "parse", "Unable to parse `reputation` value"
                          .. " from response body")
            store(self, ip, -1, 0)
            return nil
        end
        store(self, ip, reputation, self.cache_ttl)
        return reputation
    elseif status == 404 then
        store(self, ip, 100, self.cache_ttl)
        return 100
    end
    stat(self, "iprepd.err." .. status)
    lookup_failed(self, status, "iprepd responded with a ", status,
                  " http status code")
    if self.cache_errors == 1 then
        self:debug_log("cache_errors is enabled, setting reputation of " .. ip
                       .. " to 100 within the cache")
        store(self, ip, 100, self.cache_errors_ttl)
        return 100
    end
    store(self, ip, -1, 0)
    return nil
end


--- client:get_reputation(ip) -> reputation | nil (fail open)
function _M:get_reputation(ip)
    local rc = rep_get(self.cache, ip, #ip)
    if rc >= HIT_MIN then
        stat(self, "iprepd.cache_hit")
        return rc
    elseif rc == FETCH then
        return fetch(self, ip)
    elseif rc == WAIT then
        -- another request is asking iprepd: wait for its answer within
        -- our own timeout, then fail open
        update_time()
        local deadline = now() + self.timeout / 1000
        repeat
            sleep(WAIT_STEP)
            rc = rep_get(self.cache, ip, #ip)
            if rc >= HIT_MIN then
                stat(self, "iprepd.cache_hit")
                return rc
            elseif rc == FETCH then
                return fetch(self, ip)
            end
            update_time()
        until now() >= deadline
        stat(self, "iprepd.err.timeout")
        return nil
    elseif rc == BAD_ADDRESS then
        log(ERR, "invalid IP address '", ip, "'")
        return nil
    end
    log(ERR, "reputation cache failed with code ", rc)
    return nil
end


local function put_violation(premature, self, ip, violation)
    if premature then
        return
    end
    local body = cjson.encode({ object = ip, type = "ip",
                                violation = violation })
    local res, err = http.request{
        url = self.url, path = "/violations/type/ip/" .. ip, method = "PUT",
        headers = { Authorization = self.headers.Authorization,
                    ["Content-Type"] = "application/json" },
        body = body, timeout = self.violation_timeout,
    }
    if not res then
        stat(self, "iprepd.violation.err")
        log(ERR, "cannot report violation ", violation, " of ", ip,
            " to iprepd: ", err)
    elseif res.status >= 300 then
        stat(self, "iprepd.violation.err")
        log(ERR, "iprepd answered ", res.status, " to violation ", violation,
            " of ", ip)
    else
        stat(self, "iprepd.violation.sent")
    end
end


--- client:report_violation(ip, rule): tells iprepd (PUT
-- /violations/type/ip/<ip>) from a timer, off the request path. The
-- violation's name is opts.violations[rule], else "warden:<rule>".
function _M:report_violation(ip, rule)
    local v = self.violations[rule]
    if v == false then
        return true  -- this rule is not reported
    end
    local ok, err = ngx.timer.at(0, put_violation, self, ip,
                                 v or ("warden:" .. rule))
    if not ok then
        log(ERR, "cannot schedule a violation report: ", err)
    end
    return ok, err
end


--- client:check(ip): sets the X-Foxsec-* request headers; with
-- blocking_mode = 1, ends the request with 429 when the reputation is
-- at or below the threshold.
function _M:check(ip)
    self:debug_log("Checking " .. tostring(ip))
    set_header("X-Foxsec-IP-Reputation-Below-Threshold", "false")
    set_header("X-Foxsec-Block", "false")
    if type(ip) ~= "string" then
        log(ERR, "check(): ip must be a string, got ", type(ip))
        return
    end
    if self.allowlist and netset_contains(self.allowlist, ip, #ip) == 1 then
        self:debug_log(ip .. " in allowlist")
        return
    end

    local reputation = self:get_reputation(ip)
    if reputation then
        self:debug_log(format("Got reputation of %d for %s", reputation, ip))
        set_header("X-Foxsec-IP-Reputation", tostring(reputation))
        if reputation <= self.threshold then
            set_header("X-Foxsec-IP-Reputation-Below-Threshold", "true")
            set_header("X-Foxsec-Block", "true")
            self:audit_log(ip)
            stat(self, "iprepd.status.below_threshold")
            if self.blocking_mode == 0 then
                log(ERR, format("%s is below threshold with a reputation of %d",
                                ip, reputation))
            else
                log(ERR, format("%s rejected with a reputation of %d", ip,
                                reputation))
                stat(self, "iprepd.status.rejected")
                return ngx.exit(ngx.HTTP_TOO_MANY_REQUESTS)
            end
        end
    end
    self:debug_log(ip .. " accepted")
    stat(self, "iprepd.status.accepted")
end


return _M
