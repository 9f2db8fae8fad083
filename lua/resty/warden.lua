-- lua-resty-warden: allow/deny lists, instant blocks and behavioural
-- detection for nginx, with its core in Rust.
--
--   init_by_lua_block        { warden = require("resty.warden").new{...} }
--   init_worker_by_lua_block { warden:init_worker() }
--   access_by_lua_block      { warden:check() }
--   log_by_lua_block         { warden:log() }
--
-- The access phase goes through LuaJIT's FFI only (no allocation, JIT
-- compiled); everything else goes through the mlua module.

local core = require "resty.warden.core"
local detector = require "resty.warden.detector"
local access = require "resty.warden.access"
local challenge = require "resty.warden.challenge"
local state = require "resty.warden.state"
local ffi = require "ffi"
local base = require "resty.core.base"
local bit = require "bit"

local ngx = ngx
local ngx_exit = ngx.exit
local ngx_now = ngx.now
local log = ngx.log
local ERR = ngx.ERR
local WARN = ngx.WARN
local INFO = ngx.INFO
local type = type
local error = error
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local tostring = tostring
local setmetatable = setmetatable
local ffi_string = ffi.string
local band, rshift = bit.band, bit.rshift

local C = core.C
local access_c = C.warden_access
local text_c = C.warden_check_text
local log_c = C.warden_log
local refusal_c = C.warden_refusal
local get_request = base.get_request

local PASS, ALLOW = core.PASS, core.ALLOW
local DENY, BLOCK_AUTO = core.DENY, core.BLOCK_AUTO
local CHALLENGE = core.CHALLENGE
local SYNC, TRIP = core.SYNC, core.TRIP
local BAD_ADDRESS = core.BAD_ADDRESS
local NO_SYNC, OBSERVE = core.NO_SYNC, core.OBSERVE
local POLICY_SHIFT, BAD_FORWARDED = core.POLICY_SHIFT, core.BAD_FORWARDED

local SOURCES = { [DENY] = "denylist", [core.BLOCK_MANUAL] = "manual",
                  [BLOCK_AUTO] = "auto" }

-- Scratch space reused by every request of this worker.
local client = ffi.new("warden_client_t")
local textbuf = ffi.new("unsigned char[64]")

local SYNC_INTERVAL = 1  -- seconds between background syncs and sweeps


local _M = { _VERSION = core.lua.version }
local mt = { __index = _M }
-- the last instance new() made: nginx-defender's module-style calls
-- (defender.should_block(ip)) use it
local last_instance


local function client_text()
    local n = C.warden_client_text(client, textbuf, 64)
    if n < 0 then
        return "?"
    end
    return ffi_string(textbuf, n)
end


--- new(opts) -> warden. Raises an error naming the option on bad input.
function _M.new(opts)
    if opts ~= nil and type(opts) ~= "table" then
        error("resty.warden: opts must be a table, got " .. type(opts), 2)
    end
    local phase = ngx.get_phase()
    if phase ~= "init" then
        error("resty.warden: new() must be called in init_by_lua*, so that"
              .. " every worker shares its memory (called in " .. phase
              .. ")", 2)
    end

    -- the engine finds its lua_shared_dict itself (an error names it)
    local engine, err = core.lua.new(opts or {})
    if not engine then
        error("resty.warden: " .. err, 2)
    end
    local cfg = engine:config()

    local self = setmetatable({
        engine = engine,
        handle = ffi.cast("const warden_engine_t *", engine:ptr()),
        dict = ngx.shared[cfg.dict],
        dict_name = cfg.dict,
        blocking_mode = cfg.blocking_mode,
        block_status = cfg.block_status,
        forwarded_logged = 0,
        detector = engine:detector(),  -- nil when disabled
        iprepd = false,  -- set below when configured
    }, mt)
    -- The per-request methods live in the instance itself: a method found
    -- through the metatable costs the (interpreted) handler chunk ~200
    -- instructions a request in LuaJIT's metamethod machinery.
    self.check, self.log = _M.check, _M.log
    if cfg.statsd_host then
        self.statsd = require("resty.warden.statsd").new(cfg.statsd_host,
            cfg.statsd_port, 100)
        self.statsd_flush_timer = cfg.statsd_flush_timer
    end
    -- the admin API (reads admin_token_file)
    local admin, warning = core.lua.admin(engine)
    if not admin then
        error("resty.warden: " .. warning, 2)
    end
    self.admin = admin
    if warning then
        log(WARN, "warden: ", warning)
    end
    -- verified crawlers (opts.challenge): resty.warden.crawler's lookups
    local crawlers, cerr = core.lua.crawlers(engine)
    if crawlers == nil then
        error("resty.warden: " .. cerr, 2)
    end
    self.crawlers = crawlers or nil
    if opts and opts.iprepd ~= nil then
        -- reputation from iprepd after the lists and blocks; blocking and
        -- monitoring follow warden's blocking_mode unless set there
        local o = opts.iprepd
        if type(o) ~= "table" then
            error("resty.warden: opts.iprepd must be a table, got "
                  .. type(o), 2)
        end
        local copy = {}
        for k, v in pairs(o) do
            copy[k] = v
        end
        if copy.blocking_mode == nil then
            copy.blocking_mode = cfg.blocking_mode
        end
        -- with hooks: failures are counted in lookup_errors and their
        -- lines throttled
        local ok, rep = pcall(require("resty.warden.iprepd").new, copy, {
            on_error = function()
                engine:count("lookup_errors")
            end,
        })
        if not ok then
            error((tostring(rep):gsub("resty%.warden%.iprepd: opts%.",
                                       "resty.warden: opts.iprepd.")), 2)
        end
        self.iprepd = rep
    end
    if cfg.state_file then
        -- restored into a fresh dict only (not on a reload)
        self.state_path = state.path(cfg.state_file)
        engine:restore_state(self.state_path)
    end
    if cfg.redis then
        self.fleet = require("resty.warden.fleet").new(self)
    end
    self.event_log = cfg.event_log
    -- the workers fork from this process, replica and policy included
    engine:sync(true)
    last_instance = self
    return self
end


-- Brings this worker's replica of the blocks (and the policy) up to date
-- with the journal (src/blocks/journal.rs); never raises.
local function sync(self)
    self.engine:sync()
end


local PRESSURE_INTERVAL = 60  -- seconds between "table full" lines


-- Worker 0 reports detector table pressure, at most once a minute.
local function report_pressure(self)
    local p = self.pressure
    local now = ngx_now()
    local evicted = self.engine:stat("detector_evictions")
    if evicted > p.evicted and now - p.logged >= PRESSURE_INTERVAL then
        log(WARN, "warden: detector table full: evicted ",
            evicted - p.evicted, " clients seen within the window since ",
            p.logged == 0 and "start" or "the last report",
            "; raise detector.max_clients (now ",
            self.detector.max_clients, ")")
        p.evicted = evicted
        p.logged = now
    end
end


local function tick(premature, self)
    if premature then
        return
    end
    sync(self)
    -- expired blocks leave the replica; worker 0 frees the dict's expired
    -- keys, which nginx itself never frees behind a live one
    self.engine:sweep()
    if self.pressure then
        report_pressure(self)
    end
end


--- warden:init_worker(): per-worker set-up (sync timer, counters).
function _M:init_worker()
    local id = ngx.worker.id() or 0
    self.engine:set_worker(id)
    local sd, interval = self.statsd, self.statsd_flush_timer
    local rep = self.iprepd
    if rep and rep.statsd then
        rep:config_flush_timer()
        if not sd then
            sd, interval = rep.statsd, rep.statsd_flush_timer
        end
    end
    if self.statsd then
        self.statsd.start_timer(interval)
    end
    if sd and id == 0 then
        -- warden's own counters (stats()'s counters), summed over every
        -- worker, as deltas since the previous push, and its gauges
        local last = self.engine:counters()
        local ok, err = ngx.timer.every(interval, function(premature)
            if premature then
                return
            end
            local now = self.engine:counters()
            for name, v in pairs(now) do
                local before = last[name]
                if before and v > before then
                    sd.count("warden." .. name, v - before)
                end
            end
            last = now
            local g, names = self.engine:gauges()
            for _, name in ipairs(names) do
                sd.gauge("warden." .. name, g[name])
            end
        end)
        if not ok then
            log(ERR, "warden: cannot start the statsd timer: ", err)
        end
    end
    if id == 0 and self.detector then
        self.pressure = { evicted = self.engine:stat("detector_evictions"),
                          logged = 0 }
    end
    if id == 0 and self.state_path then
        state.start(self.engine, self.state_path)
    end
    if id == 0 and self.fleet then
        self.fleet:start()
    end
    if id == 0 and self.event_log then
        require("resty.warden.eventlog").start(self.engine, self.event_log)
    end
    sync(self)
    local ok, err = ngx.timer.every(SYNC_INTERVAL, tick, self)
    if not ok then
        log(ERR, "warden: cannot start the sync timer: ", err)
    end
    return true
end


local function report_forwarded(self)
    local now = ngx_now()
    if now - self.forwarded_logged < 1 then
        return  -- at most one line a second per worker
    end
    self.forwarded_logged = now
    local var = ngx.var
    local xff = var.http_x_forwarded_for
    local name = "X-Forwarded-For"
    if not xff or xff == "" then
        xff, name = var.http_x_real_ip or "", "X-Real-IP"
    end
    log(WARN, "warden: malformed ", name, " from a trusted proxy: \"",
        xff, "\"; using ", client_text(), " as the client")
end


local blocked

-- A challenged client without a valid cookie (src/ops/challenge.rs).
local function challenged(self)
    if self.blocking_mode == 0 then
        log(WARN, "warden: ", client_text(), " would have been challenged;",
            " blocking_mode is 0")
        return true
    end
    if challenge.serve(self, client_text()) == "block" then
        return blocked(self, BLOCK_AUTO)
    end
    return true
end


blocked = function(self, rc)
    if rc == CHALLENGE then
        return challenged(self)
    end
    local source = SOURCES[rc]
    -- a blocked_ip event, one per client and minute (src/events/)
    refusal_c(self.handle, get_request(), client, rc)
    if self.blocking_mode == 0 then
        local addr = client_text()
        local _, info = self.engine:is_blocked(addr)
        log(WARN, "warden: ", addr, " would have been blocked (", source,
            info and info.reason ~= "" and ": " .. info.reason or "",
            "); blocking_mode is 0")
        return true
    end
    log(INFO, "warden: blocked ", client_text(), " (", source, ")")
    return ngx_exit(self.block_status)
end


-- The access phase's outcome for the current request (ip == nil) or the
-- textual address `ip` (counted; `client` filled), after a sync when this
-- worker is behind: an outcome code with bits above it (src/ffi/), or
-- nil, err.
local function decide(self, ip)
    local handle = self.handle
    if ip == nil then
        local r = get_request()
        if not r then
            return nil, "no request found"
        end
        local rc = access_c(handle, r, 0, client)
        if rc == SYNC then
            sync(self)
            rc = access_c(handle, r, NO_SYNC, client)
        end
        return rc
    end
    local rc = text_c(handle, ip, #ip, 0, client)
    if rc == SYNC then
        sync(self)
        rc = text_c(handle, ip, #ip, NO_SYNC, client)
    end
    return rc
end


-- Acts on an outcome of decide() other than a plain PASS.
local function act(self, rc, ip, site)
    if rc < 0 then
        if rc == BAD_ADDRESS then
            if ip == nil then
                return true  -- e.g. a unix socket peer; counted in stats
            end
            log(ERR, "warden: check(): invalid IP address '", ip, "'")
            return nil, "invalid IP address '" .. ip .. "'"
        end
        log(ERR, "warden: check() failed with code ", rc, "; letting the",
            " request through")
        return true
    end
    if band(rc, BAD_FORWARDED) ~= 0 then
        report_forwarded(self)
    end
    local flags = band(rshift(rc, POLICY_SHIFT), 3)
    rc = band(rc, 0xff)
    if flags > 0 then
        -- whitelisted paths, sites, protected routes; may end the request
        local res = access.enforce(self, rc, client_text, site, blocked,
                                   flags, client)
        if rc ~= PASS or res == "skip" then
            return true  -- allowlisted, or let through in monitor mode
        end
    end
    if rc == PASS then
        local rep = self.iprepd
        if rep then
            -- may end the request with 429 (iprepd-nginx's behaviour)
            rep:check(ip or client_text())
        end
        return true
    end
    if rc == ALLOW then
        return true
    end
    if rc >= DENY and rc <= CHALLENGE then
        return blocked(self, rc)
    end
    log(ERR, "warden: check() failed with code ", rc, "; letting the",
        " request through")
    return true
end


--- warden:check(ip?) -> true, or ends the request with block_status.
-- warden:check{ site = "name", ip = ip? }: the same, with the policy of
-- site `name` (set with PUT /deployments/<name>/security or opts.sites).
-- Without `ip`, the client is the peer address, or, when the peer is a
-- trusted proxy, resolved from X-Forwarded-For (or X-Real-IP).
function _M:check(ip)
    local site
    if ip ~= nil then
        if type(ip) == "table" then
            site = ip.site
            ip = ip.ip
            if site ~= nil and type(site) ~= "string" then
                log(ERR, "warden: check(): site must be a string, got ",
                    type(site))
                return nil, "site must be a string"
            end
        end
        if ip ~= nil and type(ip) ~= "string" then
            log(ERR, "warden: check(): ip must be a string, got ", type(ip))
            return nil, "ip must be a string"
        end
    end
    local rc, err = decide(self, ip)
    if rc == PASS and not self.iprepd then
        return true  -- the common case: one FFI call
    end
    if not rc then
        return nil, err
    end
    return act(self, rc, ip, site)
end


--- warden:log(): log phase. Feeds the detector (when enabled) and
-- real-time capture (when on).
function _M:log()
    local r = get_request()
    if not r then
        return true
    end
    local handle = self.handle
    local rc = log_c(handle, r, 0, 0)
    if rc == PASS then
        return true  -- the common case: one FFI call
    end
    if rc == SYNC then
        -- behind the journal (e.g. a location without check()): the
        -- policy, and with it real-time capture, may have changed
        sync(self)
        rc = log_c(handle, r, NO_SYNC, 0)
    end
    if rc >= 256 then
        -- real-time capture applies: the request is recorded
        access.log(self, rshift(rc, POLICY_SHIFT))
        rc = log_c(handle, r, NO_SYNC + OBSERVE, 0)
    end
    if rc == TRIP then
        detector.tripped(self)
    end
    return true
end


--- warden:events(filter?) -> { event, ... } | nil, err
-- filter: { limit = 100, type = "scan_detected", ip = "192.0.2.7",
--           since = <epoch seconds> }; newest first.
function _M:events(filter)
    if filter ~= nil and type(filter) ~= "table" then
        return nil, "filter must be a table, got " .. type(filter)
    end
    return self.engine:events(filter)
end


--- warden:cleanup(older_than) -> number of events dropped
-- older_than: seconds or "7d"; events older than that are forgotten.
function _M:cleanup(older_than)
    local s, err = core.lua.parse_duration(older_than)
    if not s then
        return nil, "older_than: " .. err
    end
    return self.engine:cleanup(s)
end


--- warden:block(target, opts?) -> true, target | nil, err
-- opts.duration: seconds or "90s"/"15m"/"24h"/"7d"; 0 or absent = permanent.
-- opts.reason: free text. opts.action: "block" (default) or "challenge"
-- (needs opts.challenge in new()).
function _M:block(target, opts, source)
    if opts ~= nil and type(opts) ~= "table" then
        return nil, "opts must be a table, got " .. type(opts)
    end
    local ok, res = self.engine:block(target, opts and opts.duration,
                                      opts and opts.reason, source,
                                      opts and opts.action)
    return ok, res
end


--- warden:unblock(target) -> true | nil, err
function _M:unblock(target)
    local ok, err = self.engine:unblock(target)
    if not ok then
        return nil, err
    end
    return true
end


--- warden:is_blocked(ip) -> blocked, info | nil, err
-- info: { target, reason, expires (epoch s, 0 = permanent), source,
--         action = "challenge" for a challenge }
function _M:is_blocked(ip)
    sync(self)
    return self.engine:is_blocked(ip)
end


--- warden:blocked() -> { { target, reason, expires, source }, ... }
function _M:blocked()
    sync(self)
    return self.engine:list()
end


--- warden:stats() -> counters summed over every worker, and memory use
-- (src/metrics/snapshot.rs).
function _M:stats()
    return self.engine:stats()
end


--- warden:sync(): brings this worker up to date (blocks and policy) now.
function _M:sync()
    return sync(self)
end


--- warden:refresh() -> true | nil, err: every worker re-reads the blocks
-- and the policy from the shared dict before its next request.
function _M:refresh()
    local ok, err = self.engine:refresh()
    if not ok then
        return nil, err
    end
    return true
end


--- warden:api(opts?): the admin API, in content_by_lua*.
-- opts.token = false: no token on this location (an internal listener
-- restricted with allow/deny, as FlatRun's agent expects); never the
-- default.
function _M:api(opts)
    return require("resty.warden.api").serve(self, opts)
end


--- warden:metrics_text() -> the Prometheus text format.
function _M:metrics_text()
    return self.engine:prometheus()
end


--- warden:metrics(): serves the Prometheus text format, in
-- content_by_lua* (a location of its own, e.g. for a scraper without the
-- admin token).
function _M:metrics()
    ngx.header["Content-Type"] = "text/plain; version=0.0.4"
    ngx.print(self:metrics_text())
    return true
end


-- iprepd's reputation of `ip` (nil without iprepd, for an allowlisted
-- address, or when the lookup fails: fail open).
local function reputation(self, ip)
    local rep = self.iprepd
    if not rep or self.engine:allowlisted(ip) then
        return nil
    end
    local ok, r = pcall(rep.get_reputation, rep, ip)
    return ok and r or nil
end


-- nginx-defender calls its module's functions with a dot
-- (defender.should_block(ip)): then `self` is the address, and the
-- instance is the last one new() made.
local function instance(self, ip)
    if type(self) == "table" then
        return self, ip
    end
    if not last_instance then
        return nil, "no warden instance: call require(\"resty.warden\").new()"
                    .. " in init_by_lua first"
    end
    return last_instance, self
end


--- warden:threat_score(ip) -> 0-100 | nil, err
-- 100 when blocked or denylisted, 0 when allowlisted; otherwise the
-- highest share of a detector threshold the client has reached, or, with
-- iprepd, 100 - its reputation, whichever is higher.
-- warden.threat_score(ip) (a dot) works too, as nginx-defender's does.
function _M.threat_score(self, ip)
    self, ip = instance(self, ip)
    if not self then
        return nil, ip
    end
    if type(ip) ~= "string" then
        return nil, "ip must be a string, got " .. type(ip)
    end
    sync(self)
    local score, rule = self.engine:threat_score(ip)
    if not score then
        return nil, rule
    end
    if score < 100 then
        local r = reputation(self, ip)
        if r then
            return self.engine:threat_score(ip, r)
        end
    end
    return score, rule
end


--- warden:should_block(ip) -> true, reason | false | nil, err
-- Whether check() would refuse `ip` by its address (lists, blocks,
-- reputation below the threshold), whatever the blocking mode.
-- warden.should_block(ip) (a dot) works too, as nginx-defender's does.
function _M.should_block(self, ip)
    self, ip = instance(self, ip)
    if not self then
        return nil, ip
    end
    if type(ip) ~= "string" then
        return nil, "ip must be a string, got " .. type(ip)
    end
    local blocked_now, info = self:is_blocked(ip)
    if blocked_now == nil then
        return nil, info
    end
    if blocked_now then
        return true, info.source
    end
    local r = reputation(self, ip)
    if r and self.iprepd:below_threshold(r) then
        return true, "reputation"
    end
    return false
end


--- warden:get_threat_score(ip): nginx-defender's name of threat_score().
_M.get_threat_score = _M.threat_score


return _M
