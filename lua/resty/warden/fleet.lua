-- The fleet (`redis = { host = ... }`): nginx nodes sharing their blocks
-- through one Redis.
--
-- On each node, worker 0 runs one agent: a timer that lives as long as the
-- worker and is the only code that talks to Redis, so Redis is never on
-- the request path and a slow or dead Redis costs requests nothing.
--
-- * Local changes. block() and unblock() (Lua, the admin API, the
--   detector; any worker) append their journal entry to an outbox in the
--   shared dict (src/persist/fleet.rs). The agent sends each one (one
--   EVAL: change the hash and publish) and only then drops it from the
--   outbox, so an entry is sent at least once whatever happens to the
--   worker.
-- * Remote changes. The agent subscribes to the channel and applies other
--   nodes' entries as local changes (shared dict and journal: every worker
--   enforces them from its next request), without sending them back
--   (engine:fleet_message).
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
-- with the worker's replica in Rust (engine:reconcile_page), so neither
-- copy is held whole in Lua; a few differences are journaled one by one,
-- so workers need not re-read every block.
--
-- Expiry: a block carries its absolute expiry time, so every node expires
-- it at the same moment (given synchronised clocks); each node also prunes
-- expired entries from Redis now and then.
--
-- The fleet's keys in the shared dict (the outbox, the epoch, the node's
-- name, whether the agent is connected) are Rust's: src/persist/fleet.rs.

local ngx = ngx
local log = ngx.log
local ERR = ngx.ERR
local WARN = ngx.WARN
local NOTICE = ngx.NOTICE
local null = ngx.null
local ngx_now = ngx.now
local ngx_sleep = ngx.sleep
local exiting = ngx.worker.exiting
local floor = math.floor
local min = math.min
local pcall = pcall
local tostring = tostring
local type = type
local pairs = pairs
local unpack = unpack

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
    -- a generated name is kept in the dict, so that a reload keeps it
    local node = w.engine:fleet_init(cfg.node, not cfg.node
                                     and hostname() .. "-" .. random_hex(3)
                                     or nil)
    local p = cfg.prefix
    return setmetatable({
        w = w, lib = lib, node = node,
        host = cfg.host, port = cfg.port, password = cfg.password,
        db = cfg.db, timeout = cfg.timeout,
        keys = { p .. "blocks", p .. "expiry" },
        epoch_key = p .. "epoch",
        channel = p .. "events" .. (cfg.db ~= 0 and ":" .. cfg.db or ""),
        where = cfg.where,
        down = false,
        connected_once = false,
    }, mt)
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


-- Sends queued entries until the outbox is empty. Returns true or nil, err.
local function flush(self, red)
    local engine = self.w.engine
    local keys, channel, node = self.keys, self.channel, self.node
    while true do
        -- decoded in Rust; malformed ones logged, missing ones counted lost
        local list, last = engine:fleet_pending(BATCH)
        if not list then
            return true
        end
        local sent = #list
        if sent > 0 then
            red:init_pipeline(sent)
            for i = 1, sent do
                local e = list[i]
                red:evalsha(self.sha.change, 2, keys[1], keys[2], channel,
                            node .. " " .. e.entry, e.op, e.target, e.value,
                            e.expiry)
            end
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
        end
        engine:fleet_sent(last, sent)
    end
end


-- Adds blocks Redis lacks (announcing them). mine: { target, value,
-- expiry, ... } (engine:reconcile_unseen).
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
    for i = 1, #mine, 3 do
        args[n + 1], args[n + 2], args[n + 3] = mine[i], mine[i + 1],
                                                 mine[i + 2]
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
-- taken at once (into the reconciliation's batch), so neither copy is ever
-- held whole in Lua (at 1M blocks that was ~400 MB of Lua heap and seconds
-- of garbage collection). Returns the number of unexpired entries and how
-- many were taken, or nil, err.
local function take_remote(self, red)
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
        local live, took, bad = engine:reconcile_page(res[2])
        count = count + live
        taken = taken + took
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
    local engine = self.w.engine
    local ok, err = prune(self, red)
    if not ok then
        return nil, err
    end
    local epoch
    epoch, err = checked(red:get(self.epoch_key))
    if not epoch then
        return nil, err
    end
    local known, lost_n = engine:fleet_epoch()
    local lost = lost_n > 0
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

    engine:reconcile_begin()
    local count, taken = take_remote(self, red)
    if not count then
        engine:reconcile_finish()
        return nil, taken
    end
    -- this node's blocks that Redis lacks: unblocked or expired elsewhere
    -- (mirror: dropped, unless queued), or for Redis to take (merge)
    local added, dropped = 0, 0
    if mirror then
        dropped = engine:reconcile_unseen(true)
    else
        local unseen = engine:reconcile_unseen(false)
        if #unseen > 0 then
            added, err = seed(self, red, unseen)
            if not added then
                engine:reconcile_finish()
                return nil, err
            end
        end
    end
    engine:reconcile_finish()
    engine:reconciled(epoch, lost)
    return (mirror and "mirrored" or "merged") .. " with " .. count
           .. " blocks in Redis: " .. taken .. " taken, " .. dropped
           .. " dropped, " .. added .. " sent"
end


-- Applies one message from the channel (another node's change, decoded
-- and applied in Rust; ours, back from Redis, ignored). Never raises.
local function on_message(self, payload)
    self.w.engine:fleet_message(payload, self.node)
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
    self.w.engine:fleet_up(true)
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
        local _, lost = self.w.engine:fleet_epoch()
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
        self.w.engine:fleet_up(false)
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
