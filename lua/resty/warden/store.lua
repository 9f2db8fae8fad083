-- Blocks in the lua_shared_dict, and every worker's replica of them.
--
-- The shared dict is the source of truth, so blocks survive
-- `nginx -s reload`. Its keys (formats in src/blocks.rs):
--
--   b|<target>   one per block; the dict's own expiry removes it on time
--   v            the journal's newest sequence number
--   j|<seq>      journal entry <seq>: one block added or removed, or
--                "P" (the policy document changed: reload it), or
--                "R" (refresh: every worker re-reads everything)
--   p            the admin API's policy document (JSON, policy.lua)
--
-- A writer sets (or deletes) b|<target>, takes a sequence number with
-- incr("v"), writes j|<seq> and publishes <seq> in Rust-owned shared
-- memory. Every request compares that number with what its worker has
-- applied (one atomic load, in Rust) and a worker that is behind replays
-- the journal before deciding. Because b|<target> is written before the
-- sequence number is taken, a worker that finds an entry missing (expired,
-- never written) can re-read every b| key instead and still miss nothing.
--
-- Only safe_set and safe_add are used, here and in every module that writes
-- to this dict (counters go through _M.incr): set(), add() and incr() with
-- an initial value evict the least recently used keys when the dict is
-- full, and blocks, read only when a worker syncs, would be the first to
-- go. A block that does not fit is refused, logged and counted; nothing is
-- ever dropped silently to make room.

local ngx = ngx
local log = ngx.log
local ERR = ngx.ERR
local WARN = ngx.WARN
local byte = string.byte
local sub = string.sub

local JOURNAL_TTL = 300   -- seconds a journal entry is kept
local MAX_REPLAY = 10000  -- further behind than this: re-read everything
local SMALL_BULK = 1000   -- bulk changes journaled one by one, at most
local B, BAR = byte("b"), byte("|")
local P, R = byte("P"), byte("R")


local _M = {
    JOURNAL_TTL = JOURNAL_TTL,
}


local LOG_EVERY = 10  -- seconds between two lines of one repeated failure


--- store.quiet() -> state; store.log_every(state, level, msg): logs msg
-- the first time, then at most once every 10 s (per worker, per state),
-- with how many were left out: "msg (and 12 more in the last 10s)".
function _M.quiet()
    return { logged = 0, more = 0 }
end

function _M.log_every(q, level, msg)
    local t = ngx.now()
    if t - q.logged < LOG_EVERY then
        q.more = q.more + 1
        return
    end
    if q.more > 0 then
        msg = msg .. " (and " .. q.more .. " more in the last "
              .. math.floor(t - q.logged) .. "s)"
    end
    log(level, "warden: ", msg)
    q.logged, q.more = t, 0
end


local RECLAIM_EVERY = 1  -- seconds between two flushes on demand (per worker)
local reclaimed = 0


--- store.reclaim(dict) -> number of keys freed: frees every expired key.
-- nginx frees expired keys only from the least recently used end of the
-- dict, and stops at the first live key there; safe_set() and safe_add()
-- free nothing else. A permanent block or a 30-day offence counter at that
-- end keeps every expired block and journal entry behind it in memory, so
-- the dict fills up with them and new blocks are refused. Worker 0 flushes
-- them every 10 s (warden.lua); a write that finds no room flushes them at
-- once (at most once a second per worker) and tries again.
function _M.reclaim(dict)
    local now = ngx.now()
    if now - reclaimed < RECLAIM_EVERY then
        return 0
    end
    reclaimed = now
    return dict:flush_expired()
end


-- dict:safe_set, once more after freeing expired keys if there is no room.
local function safe_set(dict, key, value, ttl)
    local ok, err = dict:safe_set(key, value, ttl)
    if not ok and err == "no memory" and _M.reclaim(dict) > 0 then
        ok, err = dict:safe_set(key, value, ttl)
    end
    return ok, err
end
_M.safe_set = safe_set


--- store.incr(dict, key, by, init?, ttl?) -> new value | nil, err: as
-- dict:incr(key, by, init, ttl), but when the dict is full the key is not
-- created ("no memory") instead of other keys being evicted to make room.
function _M.incr(dict, key, by, init, ttl)
    local n, err = dict:incr(key, by)  -- without init: never allocates
    if n or err ~= "not found" then
        return n, err
    end
    local v = (init or 0) + by
    local ok
    ok, err = dict:safe_add(key, v, ttl or 0)
    if not ok and err == "no memory" and _M.reclaim(dict) > 0 then
        ok, err = dict:safe_add(key, v, ttl or 0)
    end
    if ok then
        return v
    end
    if err == "exists" then  -- another worker created it meanwhile
        return dict:incr(key, by)
    end
    return nil, err
end


-- Ends a batch: rebuilds the range index and records the sequence number.
local function applied_up_to(core, v)
    core:commit()
    core:set_applied(v)
    return true
end


-- Compiles the admin API's policy document into this worker.
local function load_policy(dict, core)
    local ok, err = core:load_policy(dict:get("p"))
    if not ok then
        log(ERR, "warden: keeping the previous policy: ", err)
    end
end
_M.load_policy = load_policy


-- Re-reads every block and the policy from the dict.
local function full_sync(dict, core)
    -- Everything published before this point has its b| key written, so
    -- after reading every key this worker is current up to `published`
    -- (even if "v" itself was lost, e.g. by a flush_all).
    local published = core:version()
    local v = dict:get("v") or 0
    if published > v then
        v = published
    end
    local keys = dict:get_keys(0)
    core:reset_blocks()
    for i = 1, #keys do
        local k = keys[i]
        if byte(k, 1) == B and byte(k, 2) == BAR then
            local value = dict:get(k)
            if value then
                local ok, err = core:load_record(k, value)
                if not ok then
                    log(ERR, "warden: ignoring shared dict record: ", err)
                end
            end
        end
    end
    load_policy(dict, core)
    return applied_up_to(core, v)
end
_M.full_sync = full_sync


-- Brings this worker's replica up to date with the journal.
function _M.sync(dict, core)
    local applied = core:applied()
    local v = dict:get("v") or 0
    if v == applied then
        return true
    end
    if v < applied or v - applied > MAX_REPLAY then
        return full_sync(dict, core)
    end
    local policy = false
    for seq = applied + 1, v do
        local entry = dict:get("j|" .. seq)
        if not entry then
            return full_sync(dict, core)
        end
        local kind = byte(entry, 1)
        if kind == P then
            policy = true
        elseif kind == R then
            return full_sync(dict, core)
        else
            local ok, err = core:apply_entry(entry)
            if not ok then
                log(ERR, "warden: ignoring journal entry ", seq, ": ", err)
            end
        end
    end
    if policy then
        load_policy(dict, core)
    end
    return applied_up_to(core, v)
end


-- Takes a sequence number, writes the journal entry and publishes it.
local function journal(dict, core, entry)
    -- Start from the published version if "v" is missing, so that the
    -- number never goes backwards.
    local seq, err = _M.incr(dict, "v", 1, core:version())
    if not seq then
        return nil, err
    end
    local ok, jerr = safe_set(dict, "j|" .. seq, entry, JOURNAL_TTL)
    if not ok then
        -- Workers will find the entry missing and re-read every block.
        log(WARN, "warden: cannot write journal entry ", seq, " (", jerr,
            "); workers will re-read all blocks")
    end
    core:publish(seq)
    return seq
end
_M.journal = journal


local counters_quiet = _M.quiet()


--- store.count(dict, dict_name, core, key, by, ttl) -> new value | nil, err:
-- an expendable counter (an offence, a site rate-limit window), as
-- _M.incr, but a new one is not created when less than an eighth of the
-- dict's memory (at least 8 KiB) is left in free pages: that room stays
-- for blocks and the journal. Without it a long attack from many addresses
-- fills the dict with offence counters, kept for repeat_offender_memory
-- (30 days), and then no new block fits. A refused counter is counted
-- (counters_refused) and logged once, then at most every 10 s per worker.
function _M.count(dict, dict_name, core, key, by, ttl)
    local n, err = dict:incr(key, by)  -- an existing key: no memory needed
    if n or err ~= "not found" then
        return n, err
    end
    if dict.free_space then  -- resty.core's dict API (lua-nginx-module)
        local reserve = dict:capacity() / 8
        if reserve < 8192 then
            reserve = 8192
        end
        local free = dict:free_space()
        if free < reserve and _M.reclaim(dict) > 0 then
            free = dict:free_space()
        end
        if free < reserve then
            core:count("counters_refused")
            _M.log_every(counters_quiet, WARN, "shared dict '" .. dict_name
                .. "' has " .. free .. " bytes in free pages, less than the "
                .. reserve .. " kept for blocks: offence and rate-limit "
                .. "counters are not created")
            return nil, "no memory"
        end
    end
    n, err = _M.incr(dict, key, by, 0, ttl)
    if not n and err == "no memory" then
        core:count("counters_refused")
    end
    return n, err
end


local Batch = {}
Batch.__index = Batch


--- store.batch(dict, dict_name, core, what) -> batch: many blocks at once
-- (a restore, a fleet reconciliation). batch:put(key, value, ttl) sets a
-- b| key (value false: deletes it); batch:finish() -> written ends it.
-- Up to SMALL_BULK changes get one journal entry each, which workers
-- replay; more get one "R" entry, which makes every worker re-read every
-- block (at 1M blocks that is ~0.3 s, on the first request a worker
-- serves after it), instead of flooding the journal. Blocks that do not
-- fit are counted and logged once, as "<n> <what> were not stored".
function _M.batch(dict, dict_name, core, what)
    return setmetatable({ dict = dict, dict_name = dict_name, core = core,
                          what = what, written = 0, refused = 0,
                          entries = {} }, Batch)
end


function Batch:put(key, value, ttl)
    if value == false then
        self.dict:delete(key)
    elseif not safe_set(self.dict, key, value, ttl) then
        self.refused = self.refused + 1
        return
    end
    local n = self.written + 1
    self.written = n
    local entries = self.entries
    if n > SMALL_BULK then
        self.entries = nil
    elseif entries then
        local target = sub(key, 3)  -- after "b|"
        entries[n] = value and "+|" .. target .. "|" .. value
                     or "-|" .. target
    end
end


function Batch:finish()
    local dict, core = self.dict, self.core
    if self.refused > 0 then
        core:count("dict_full", self.refused)
        log(ERR, "warden: shared dict '", self.dict_name, "' is full: ",
            self.refused, " ", self.what, " were not stored")
    end
    local entries = self.entries
    if not entries then
        journal(dict, core, "R")
    else
        for i = 1, #entries do
            journal(dict, core, entries[i])
        end
    end
    if self.written > 0 then
        _M.sync(dict, core)
    end
    return self.written
end


--- bulk(dict, dict_name, core, keys, values, ttls, what) -> written: a
-- batch of keys[i] = values[i] for ttls[i] seconds (see store.batch).
function _M.bulk(dict, dict_name, core, keys, values, ttls, what)
    local b = _M.batch(dict, dict_name, core, what)
    for i = 1, #keys do
        b:put(keys[i], values[i], ttls[i])
    end
    return b:finish()
end


-- A write that failed for another reason than space: logged, returned.
local function fail(dict_name, err, verb, target)
    err = "shared dict '" .. dict_name .. "': " .. tostring(err)
          .. ": cannot " .. verb .. " " .. target
    log(ERR, "warden: ", err)
    return nil, err
end


local full_quiet = _M.quiet()


-- A block refused because the dict is full. A full dict refuses every
-- block until something expires: each refusal is counted (dict_full) and
-- returned to the caller, the first is logged, then at most one line
-- every 10 s per worker with how many were not.
local function refused(dict_name, core, err, target)
    core:count("dict_full")
    err = "shared dict '" .. dict_name .. "' is full (" .. tostring(err)
          .. "): cannot block " .. target
    _M.log_every(full_quiet, ERR, err)
    return nil, err
end


-- Stores a block prepared by core:prepare(). Returns true or nil, err.
function _M.add(dict, dict_name, core, rec)
    local ok, err = safe_set(dict, rec.key, rec.value, rec.ttl)
    if not ok then
        return refused(dict_name, core, err, rec.target)
    end
    local seq
    seq, err = journal(dict, core, rec.entry)
    if not seq then
        dict:delete(rec.key)  -- nothing half-applied
        return fail(dict_name, err, "block", rec.target)
    end
    return _M.sync(dict, core)
end


-- Removes a block described by core:unblock_record().
function _M.remove(dict, dict_name, core, rec)
    local old = dict:get(rec.key)
    dict:delete(rec.key)
    local seq, err = journal(dict, core, rec.entry)
    if not seq then
        if old then
            -- Put it back with its remaining time: nothing half-applied.
            local exp = tonumber(old:match("^(%d+)|")) or 0
            local ttl = exp == 0 and 0 or exp / 1000 - ngx.now()
            if ttl >= 0 then
                dict:safe_set(rec.key, old, ttl == 0 and 0 or ttl + 0.001)
            end
        end
        return fail(dict_name, err, "unblock", rec.target)
    end
    return _M.sync(dict, core)
end


return _M
