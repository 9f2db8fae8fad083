-- The fleet (`redis = { host = ... }`): nginx nodes sharing their blocks
-- through one Redis.
--
-- On each node, worker 0 runs one agent: a timer that lives as long as the
-- worker and is the only code that talks to Redis, so Redis is never on
-- the request path and a slow or dead Redis costs requests nothing.
--
-- * Local changes. block() and unblock() (Lua, the admin API, the
--   detector; any worker) append their journal entry to an outbox in the
--   shared dict. The agent sends each one (one EVAL: change the hash and
--   publish) and only then drops it from the outbox, so an entry is sent
--   at least once whatever happens to the worker.
-- * Remote changes. The agent subscribes to the channel and applies other
--   nodes' entries as local changes (shared dict and journal: every worker
--   enforces them from its next request), without sending them back.
-- * Connection and reconnection. The agent subscribes, sends its outbox,
--   then reconciles its blocks with the set in Redis (below), then reads
--   messages; what was published meanwhile waits in the socket.
--
-- Redis keys (prefix "warden:" by default):
--   <prefix>blocks   hash: target -> "<expires_ms>|<source>|<reason>"
--   <prefix>expiry   sorted set: timed targets by expiry (for pruning)
--   <prefix>epoch    a random id, written when the set is first written
--   <prefix>events   channel: "<node> +|<target>|<expires_ms>|<source>|
--                    <reason>" or "<node> -|<target>"; <prefix>events:<db>
--                    when db is not 0, since Redis's channels are not
--                    per database: fleets in two databases of one Redis
--                    must not hear each other
--
-- Reconciling. The node remembers the epoch of the set it last reconciled
-- with (shared dict, and the state file). If Redis has that epoch, Redis
-- is the truth: blocks Redis does not have were unblocked (or expired)
-- elsewhere while this node was away, and go. Otherwise (Redis lost its
-- data and was re-seeded, or this node is new, or its outbox overflowed)
-- the node adds the blocks Redis lacks and takes those it lacks: nothing
-- is lost, at the price of reviving an unblock made while the two were
-- apart. Redis is read one HSCAN page at a time and each page compared
-- with the worker's replica in Rust (engine:diff_page), so neither copy is
-- held whole in Lua; a few differences are journaled one by one, so
-- workers need not re-read every block (store.batch).
--
-- Expiry: a block carries its absolute expiry time, so every node expires
-- it at the same moment (given synchronised clocks); each node also prunes
-- expired entries from Redis now and then.
--
-- Shared dict keys: r|o|<n> outbox entries, r|tail (last queued),
-- r|head (last sent), r|lost (entries that could not be queued),
-- r|epoch, r|node, r|up (whether the agent is connected).

local core = require "resty.warden.core"
local store = require "resty.warden.store"

local ngx = ngx
local log = ngx.log
local ERR = ngx.ERR
local WARN = ngx.WARN
local NOTICE = ngx.NOTICE
local INFO = ngx.INFO
local null = ngx.null
local ngx_now = ngx.now
local ngx_sleep = ngx.sleep
local exiting = ngx.worker.exiting
local floor = math.floor
local min = math.min
local max = math.max
local pcall = pcall
local tonumber = tonumber
local tostring = tostring
local type = type
local pairs = pairs
local unpack = unpack

local decode_entry = core.lua.decode_entry

local POLL = 0.1          -- seconds between looks for messages and changes
local BATCH = 200         -- entries sent per round trip
local SCAN = 1000         -- entries read per HSCAN
local PRUNE_EVERY = 10    -- seconds between prunes of expired entries
local RESEND_EVERY = 10   -- seconds between re-sends after lost changes
local MAX_BACKOFF = 5     -- seconds between reconnection attempts, at most


-- KEYS: blocks, expiry. ARGV: channel, message, op, target, value, expiry.
local CHANGE = [[
if ARGV[3] == '+' then
  redis.call('HSET', KEYS[1], ARGV[4], ARGV[5])
  if ARGV[6] ~= '0' then
    redis.call('ZADD', KEYS[2], ARGV[6], ARGV[4])
  else
    redis.call('ZREM', KEYS[2], ARGV[4])
  end
else
  redis.call('HDEL', KEYS[1], ARGV[4])
  redis.call('ZREM', KEYS[2], ARGV[4])
end
return redis.call('PUBLISH', ARGV[1], ARGV[2])
]]

-- KEYS: blocks, expiry. ARGV: channel, node, then target, value, expiry
-- for each block. Adds the blocks Redis lacks and announces them.
local SEED = [[
local n = 0
for i = 3, #ARGV, 3 do
  if redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) == 1 then
    if ARGV[i + 2] ~= '0' then
      redis.call('ZADD', KEYS[2], ARGV[i + 2], ARGV[i])
    end
    redis.call('PUBLISH', ARGV[1],
               ARGV[2] .. ' +|' .. ARGV[i] .. '|' .. ARGV[i + 1])
    n = n + 1
  end
end
return n
]]

-- KEYS: blocks, expiry. ARGV: now (ms). Drops expired entries.
local PRUNE = [[
local t = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1],
                     'LIMIT', 0, 1000)
for _, k in ipairs(t) do
  redis.call('HDEL', KEYS[1], k)
  redis.call('ZREM', KEYS[2], k)
end
return #t
]]


local _M = {}
local mt = { __index = _M }


local function redis_lib()
    -- OpenResty ships lua-resty-redis as resty.redis; Debian's package
    -- lua-nginx-redis installs the same module as nginx.redis.
    local ok, lib = pcall(require, "resty.redis")
    if ok then
        return lib
    end
    ok, lib = pcall(require, "nginx.redis")
    if ok then
        return lib
    end
    return nil
end


local function random_hex(n)
    local f = io.open("/dev/urandom", "rb")
    local bytes = f and f:read(n)
    if f then
        f:close()
    end
    if not bytes or #bytes < n then
        math.randomseed(ngx_now() * 1000 + ngx.worker.pid())
        local t = {}
        for i = 1, n do
            t[i] = string.char(math.random(0, 255))
        end
        bytes = table.concat(t)
    end
    return (bytes:gsub(".", function(c)
        return string.format("%02x", c:byte())
    end))
end


local function hostname()
    local f = io.open("/proc/sys/kernel/hostname", "r")
    local name = f and f:read("*l")
    if f then
        f:close()
    end
    name = name and name:gsub("[^%w%.%-_]", "") or ""
    return name ~= "" and name or "node"
end


--- new(w, cfg) -> fleet: in new() (init phase). cfg: the validated
-- `redis` options. Raises when lua-resty-redis is missing.
function _M.new(w, cfg)
    local lib = redis_lib()
    if not lib then
        error("resty.warden: opts.redis needs lua-resty-redis (OpenResty's"
              .. " resty.redis, or Debian's package lua-nginx-redis)", 3)
    end
    local dict = w.dict
    local node = cfg.node
    if not node then
        -- kept in the dict, so that a reload keeps the node's name
        dict:safe_add("r|node", hostname() .. "-" .. random_hex(3))
        node = dict:get("r|node") or hostname()
    end
    dict:safe_add("r|lost", 0)
    local p = cfg.prefix
    return setmetatable({
        w = w, lib = lib, node = node,
        host = cfg.host, port = cfg.port, password = cfg.password,
        db = cfg.db, timeout = cfg.timeout,
        keys = { p .. "blocks", p .. "expiry" },
        epoch_key = p .. "epoch",
        channel = p .. "events" .. (cfg.db ~= 0 and ":" .. cfg.db or ""),
        where = cfg.host:sub(1, 5) == "unix:" and cfg.host
                or cfg.host .. ":" .. cfg.port,
        down = false,
        connected_once = false,
        quiet = store.quiet(),  -- "cannot queue" lines (per worker)
    }, mt)
end


--- fleet:queue(entry): a local change, for the agent to send. In any
-- phase, any worker; never raises.
function _M:queue(entry)
    local dict = self.w.dict
    local n, err = store.incr(dict, "r|tail", 1, 0)
    if n then
        local ok
        ok, err = dict:safe_set("r|o|" .. n, entry)
        if ok then
            return true
        end
    end
    -- the agent will reconcile by union instead (see the top of the file)
    store.incr(dict, "r|lost", 1, 0)
    store.log_every(self.quiet, ERR, "cannot queue a change for the fleet ("
        .. tostring(err) .. "); this node will re-send all its blocks")
    return nil, err
end


local function connect(self)
    local red = self.lib:new()
    red:set_timeout(self.timeout)
    local ok, err
    if self.host:sub(1, 5) == "unix:" then
        ok, err = red:connect(self.host)
    else
        ok, err = red:connect(self.host, self.port)
    end
    if not ok then
        return nil, err
    end
    if self.password then
        ok, err = red:auth(self.password)
        if not ok then
            red:close()
            return nil, "AUTH failed: " .. tostring(err)
        end
    end
    if self.db ~= 0 then
        ok, err = red:select(self.db)
        if not ok then
            red:close()
            return nil, "SELECT " .. self.db .. " failed: " .. tostring(err)
        end
    end
    return red
end


-- A reply that is a Redis error (false, err) or a connection failure
-- (nil, err) becomes nil, err.
local function checked(res, err)
    if res == nil or res == false then
        return nil, tostring(err)
    end
    return res
end


local function expiry_of(value)
    return tonumber(value:match("^(%d+)|")) or 0
end


-- Sends queued entries until the outbox is empty. Returns true or nil, err.
local function flush(self, red)
    local dict, engine = self.w.dict, self.w.engine
    local keys, channel, node = self.keys, self.channel, self.node
    while true do
        local head = dict:get("r|head") or 0
        local tail = dict:get("r|tail") or 0
        if head >= tail then
            return true
        end
        local last = min(tail, head + BATCH)
        red:init_pipeline(last - head)
        local sent = 0
        for n = head + 1, last do
            local entry = dict:get("r|o|" .. n)
            local rec = entry and decode_entry(entry)
            if rec then
                local exp = rec.op == "+" and expiry_of(rec.value) or 0
                red:evalsha(self.sha.change, 2, keys[1], keys[2], channel,
                         node .. " " .. entry, rec.op, rec.target,
                         rec.value or "", exp)
                sent = sent + 1
            elseif entry then
                log(ERR, "warden: dropping a malformed fleet entry: ", entry)
            else
                store.incr(dict, "r|lost", 1, 0)  -- evicted: resend everything
            end
        end
        if sent > 0 then
            local res, err = red:commit_pipeline()
            if not res then
                return nil, err
            end
            for i = 1, #res do
                local r = res[i]
                if type(r) == "table" and r[1] == false then
                    return nil, "EVAL: " .. tostring(r[2])
                end
            end
        else
            red:cancel_pipeline()
        end
        for n = head + 1, last do
            dict:delete("r|o|" .. n)
        end
        dict:safe_set("r|head", last)
        engine:count("fleet_sent", sent)
    end
end


-- Targets waiting in the outbox (not yet in Redis).
local function queued_targets(self)
    local dict = self.w.dict
    local out = {}
    for n = (dict:get("r|head") or 0) + 1, dict:get("r|tail") or 0 do
        local entry = dict:get("r|o|" .. n)
        local rec = entry and decode_entry(entry)
        if rec then
            out[rec.target] = true
        end
    end
    return out
end


-- Adds blocks Redis lacks (announcing them). mine: { target, value, ... }.
local function seed(self, red, mine)
    local keys = self.keys
    local args, n, added = {}, 0, 0
    local function send()
        local res, err = checked(red:evalsha(self.sha.seed, 2, keys[1], keys[2],
                                          self.channel, self.node,
                                          unpack(args, 1, n)))
        if not res then
            return nil, err
        end
        added = added + res
        n = 0
        return true
    end
    for i = 1, #mine, 2 do
        local value = mine[i + 1]
        args[n + 1], args[n + 2], args[n + 3] = mine[i], value,
                                                 expiry_of(value)
        n = n + 3
        if n >= 3 * BATCH then
            local ok, err = send()
            if not ok then
                return nil, err
            end
        end
    end
    if n > 0 then
        local ok, err = send()
        if not ok then
            return nil, err
        end
    end
    return added
end


-- Reads the whole set from Redis, one HSCAN page at a time, comparing
-- each page with this worker's replica in Rust: entries that differ are
-- taken into the batch at once, so neither copy is ever held whole in Lua
-- (at 1M blocks that was ~400 MB of Lua heap and seconds of garbage
-- collection). Returns the number of unexpired entries and how many were
-- taken, or nil, err.
local function take_remote(self, red, batch)
    local engine = self.w.engine
    local count, taken = 0, 0
    local cursor = "0"
    repeat
        local res, err = checked(red:hscan(self.keys[1], cursor,
                                           "COUNT", SCAN))
        if not res then
            return nil, err
        end
        cursor = res[1]
        local differ, live, bad = engine:diff_page(res[2])
        count = count + live
        local now = ngx_now() * 1000
        for i = 1, #differ, 2 do
            local value = differ[i + 1]
            local exp = expiry_of(value)
            batch:put("b|" .. differ[i], value,
                      exp == 0 and 0 or max(exp - now, 1) / 1000)
            taken = taken + 1
        end
        for i = 1, #bad do
            log(WARN, "warden: ignoring a malformed entry in redis ",
                self.keys[1], ": ", bad[i])
        end
    until cursor == "0"
    return count, taken
end


local function prune(self, red)
    return checked(red:evalsha(self.sha.prune, 2, self.keys[1], self.keys[2],
                            floor(ngx_now() * 1000)))
end


-- Brings this node and Redis into agreement (see the top of the file).
-- Returns a summary string, or nil, err.
local function reconcile(self, red)
    local w = self.w
    local dict, engine = w.dict, w.engine
    local ok, err = prune(self, red)
    if not ok then
        return nil, err
    end
    local epoch
    epoch, err = checked(red:get(self.epoch_key))
    if not epoch then
        return nil, err
    end
    local known = dict:get("r|epoch")
    local lost = (dict:get("r|lost") or 0) > 0
    local mirror = epoch ~= null and epoch == known and not lost
    if epoch == null then
        ok, err = checked(red:set(self.epoch_key, random_hex(8), "NX"))
        if ok == nil then
            return nil, err
        end
        epoch, err = checked(red:get(self.epoch_key))
        if not epoch or epoch == null then
            return nil, err or "the epoch vanished"
        end
    end

    pcall(store.sync, dict, engine)
    engine:diff_begin()
    local batch = store.batch(dict, w.dict_name, engine,
                              "of the fleet's blocks")
    local count, taken = take_remote(self, red, batch)
    if not count then
        batch:finish()
        return nil, taken
    end
    -- this node's blocks that Redis lacks: unblocked or expired elsewhere
    -- (mirror), or for Redis to take (merge)
    local unseen = engine:diff_end()
    local added, dropped = 0, 0
    if mirror then
        local queued = queued_targets(self)
        for i = 1, #unseen, 2 do
            local target = unseen[i]
            if not queued[target] then
                batch:put("b|" .. target, false)
                dropped = dropped + 1
            end
        end
    elseif #unseen > 0 then
        added, err = seed(self, red, unseen)
        if not added then
            batch:finish()
            return nil, err
        end
    end
    batch:finish()
    dict:safe_set("r|epoch", epoch)
    if lost then
        dict:incr("r|lost", -(dict:get("r|lost") or 0))
    end
    engine:count("fleet_resyncs")
    return (mirror and "mirrored" or "merged") .. " with " .. count
           .. " blocks in Redis: " .. taken .. " taken, " .. dropped
           .. " dropped, " .. added .. " sent"
end


-- Applies one message from the channel. Never raises.
local function on_message(self, payload)
    local node, entry = payload:match("^(%S+) (.*)$")
    if not node then
        log(WARN, "warden: ignoring a malformed fleet message: ", payload)
        return
    end
    if node == self.node then
        return  -- our own change, back from Redis
    end
    local rec, err = decode_entry(entry)
    if not rec then
        log(WARN, "warden: ignoring a fleet message from ", node, ": ", err)
        return
    end
    local w = self.w
    local dict, engine = w.dict, w.engine
    local add = rec.op == "+"
    local current = dict:get(rec.key)
    if add and (rec.expired or current == rec.value)
       or not add and not current then
        return  -- nothing to do (e.g. the node's own change, seen again)
    end
    local what = add and "block" or "unblock"
    local ok
    ok, err = (add and store.add or store.remove)(dict, w.dict_name, engine,
                                                   rec)
    if not ok then
        log(ERR, "warden: cannot apply ", node, "'s ", what, " of ",
            rec.target, ": ", err)
        return
    end
    if not add then
        engine:forget(rec.target)
    end
    log(INFO, "warden: ", what, "ed ", rec.target, " (from ", node, ")")
    engine:count("fleet_received")
end


-- Reads what the channel holds: sends PING and handles every message up
-- to the answer, so that the read never waits for a timeout while Redis
-- is alive. Returns true or nil, err.
local function drain(self, sub)
    local res, err = sub:ping()
    while true do
        if not res then
            return nil, err or "no reply"
        end
        if type(res) == "table" then
            if res[1] == "pong" then
                return true
            elseif res[1] == "message" then
                on_message(self, res[3])
            end
        end
        res, err = sub:read_reply()
    end
end


-- One connection's life: returns (with an error) when Redis goes away or
-- the worker exits.
local function session(self)
    local red, err = connect(self)
    if not red then
        return nil, err
    end
    local sub
    sub, err = connect(self)
    if not sub then
        red:close()
        return nil, err
    end
    local closing = function(e)
        red:close()
        sub:close()
        return nil, e
    end
    -- the scripts are sent once per connection, then called by hash
    local sha = {}
    for name, script in pairs({ change = CHANGE, seed = SEED,
                                prune = PRUNE }) do
        sha[name], err = checked(red:script("LOAD", script))
        if not sha[name] then
            return closing("SCRIPT LOAD: " .. tostring(err))
        end
    end
    self.sha = sha
    local ok
    ok, err = checked(sub:subscribe(self.channel))
    if not ok then
        return closing("SUBSCRIBE: " .. tostring(err))
    end
    ok, err = flush(self, red)
    if not ok then
        return closing(err)
    end
    local summary
    summary, err = reconcile(self, red)
    if not summary then
        return closing(err)
    end
    self.w.dict:safe_set("r|up", true)
    if self.down then
        self.down = false
        log(NOTICE, "warden: redis ", self.where, " is back; ", summary)
    else
        log(NOTICE, "warden: joined the fleet as ", self.node, " (redis ",
            self.where, "); ", summary)
    end
    self.connected_once = true
    local pruned, resent = ngx_now(), ngx_now()
    while not exiting() do
        ok, err = flush(self, red)
        if not ok then
            return closing(err)
        end
        -- changes that could not be queued (a full dict): reconcile by
        -- union, which sends Redis every block it lacks
        local lost = self.w.dict:get("r|lost") or 0
        if lost > 0 and ngx_now() - resent >= RESEND_EVERY then
            resent = ngx_now()
            summary, err = reconcile(self, red)
            if not summary then
                return closing(err)
            end
            log(NOTICE, "warden: ", lost, " changes could not be queued ",
                "for redis ", self.where, "; ", summary)
        end
        ok, err = drain(self, sub)
        if not ok then
            return closing(err)
        end
        if ngx_now() - pruned >= PRUNE_EVERY then
            pruned = ngx_now()
            ok, err = prune(self, red)
            if not ok then
                return closing(err)
            end
        end
        ngx_sleep(POLL)
    end
    flush(self, red)  -- the worker exits: send what is left
    return closing("exiting")
end


local function run(premature, self)
    if premature then
        return
    end
    local backoff = 0.5
    while not exiting() do
        local ok, res, err = pcall(session, self)
        if not ok then
            err = res
            log(ERR, "warden: the fleet agent failed: ", err)
        end
        if exiting() then
            break
        end
        self.w.dict:safe_set("r|up", false)
        if not self.down then
            self.down = true
            self.w.engine:count("fleet_outages")
            log(ERR, "warden: redis ", self.where, " is unreachable (",
                tostring(err), "); every worker keeps enforcing the blocks",
                " it has; changes are queued and sent when it is back")
            backoff = 0.5
        end
        -- with jitter, so that a fleet does not reconnect all at once
        ngx_sleep(backoff * (0.5 + math.random()))
        backoff = min(backoff * 2, MAX_BACKOFF)
    end
end


--- fleet:start(): in worker 0's init_worker.
function _M:start()
    math.randomseed(floor(ngx_now() * 1000) + ngx.worker.pid())
    local ok, err = ngx.timer.at(0, run, self)
    if not ok then
        log(ERR, "warden: cannot start the fleet agent: ", err)
        return nil, err
    end
    return true
end


return _M
