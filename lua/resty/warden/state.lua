-- The state file (`state_file`): blocks and the admin API's policy kept
-- across a full stop and start of nginx.
--
-- Restoring happens once, in new() in the master, when the shared dict is
-- fresh (a restart; after `nginx -s reload` the dict already holds
-- everything and the file is left alone). Blocks come back with the time
-- they had left; blocks that expired while nginx was stopped are dropped.
--
-- Saving happens in worker 0, off the request path: a timer notices that
-- the journal moved (a block, an unblock, a policy change, a change from
-- the fleet), takes a snapshot of the worker's replica of the blocks and
-- the policy document, and hands it to a thread in the Rust library that
-- writes it atomically (temporary file, fsync, rename, fsync of the
-- directory). A change reaches the file within `state_interval` (1 s by
-- default) plus the time to write it; that is what a crash can lose. A
-- graceful stop (`nginx -s quit`, systemd's stop) writes what is left
-- before the worker exits.
--
-- A missing file starts clean. A corrupt or unreadable one is logged,
-- renamed to <file>.corrupt-<ms> and never stops nginx from starting.

local core = require "resty.warden.core"
local store = require "resty.warden.store"

local ngx = ngx
local log = ngx.log
local ERR = ngx.ERR
local NOTICE = ngx.NOTICE
local INFO = ngx.INFO
local ngx_now = ngx.now
local pcall = pcall

local CHECK_INTERVAL = 0.2  -- seconds between looks at the journal


local _M = {}


-- A relative path is relative to nginx's prefix (as nginx's own paths).
function _M.path(p)
    if p:sub(1, 1) == "/" then
        return p
    end
    return ngx.config.prefix() .. p
end


--- restore(w, path): in new(), before the workers start. Never raises.
function _M.restore(w, path)
    local dict, engine = w.dict, w.engine
    local fresh = dict:safe_add("s|loaded", true)
    if not fresh then
        return  -- a reload: the shared dict is current
    end
    -- a million blocks make three million strings and table slots: do not
    -- let the collector walk them while they are being made
    collectgarbage("stop")
    local st, err, kind, aside = core.lua.load_state(path)
    if not st then
        collectgarbage("restart")
        if kind == "missing" then
            log(NOTICE, "warden: no state file at ", path,
                " yet; starting with no blocks")
        else
            log(ERR, "warden: ", err, "; ",
                aside and "moved it to " .. aside
                      or "could not move it aside",
                "; starting without it")
        end
        return
    end
    local policy = ""
    if st.policy then
        local ok, perr = engine:load_policy(st.policy)
        if ok then
            dict:safe_set("p", st.policy)
            policy = " and the admin API's policy"
        else
            log(ERR, "warden: the state file's policy was not restored: ",
                perr)
        end
    end
    if st.epoch then
        dict:safe_set("r|epoch", st.epoch)
    end
    -- the workers fork from this process, replica and policy included
    local restored = store.bulk(dict, w.dict_name, engine, st.keys,
                                st.values, st.ttls,
                                "blocks of the state file")
    collectgarbage("restart")
    engine:count("state_restored", restored)
    log(NOTICE, "warden: restored ", restored, " blocks", policy, " from ",
        path, " (saved ", ngx.http_time(st.saved), "; ", st.expired,
        " expired while nginx was stopped)")
end


local function save(self, now)
    local w = self.w
    local dict, engine = w.dict, w.engine
    local ok, err = pcall(store.sync, dict, engine)
    if not ok then
        log(ERR, "warden: sync before saving the state failed: ", err)
    end
    local v = engine:applied()
    if engine:save_state(self.path, dict:get("p"), dict:get("r|epoch")) then
        self.pending = v
        self.last = now
    end
end


local function outcome(self, ok, res)
    if ok then
        self.saved = self.pending
        if self.failing then
            self.failing = false
            log(NOTICE, "warden: state file ", self.path, " written again (",
                res.blocks, " blocks)")
        else
            log(INFO, "warden: state file ", self.path, " written (",
                res.blocks, " blocks, ", res.bytes, " bytes, ",
                res.ms, " ms)")
        end
    elseif not self.failing then
        self.failing = true
        log(ERR, "warden: ", res, "; changes will not survive a restart",
            " until it can be written (retrying every ",
            self.interval, " s)")
    end
end


local function tick(premature, self)
    local w = self.w
    local engine = w.engine
    local ok, res = engine:state_saved()
    if ok ~= nil then
        outcome(self, ok, res)
    end
    local now = ngx_now()
    if premature then
        -- the worker exits: write what is left, now
        if engine:applied() ~= self.saved or self.failing then
            pcall(store.sync, w.dict, engine)
            local done, err = engine:save_state_now(self.path,
                w.dict:get("p"), w.dict:get("r|epoch"))
            if not done then
                log(ERR, "warden: ", err, " (at exit)")
            end
        end
        return
    end
    if now - self.last < self.interval then
        return
    end
    local v = w.dict:get("v") or 0
    if v ~= self.saved or self.failing then
        save(self, now)
    end
end


--- start(w, path, interval): in worker 0's init_worker.
function _M.start(w, path, interval)
    local self = {
        w = w, path = path, interval = interval,
        saved = -1,     -- the journal version in the file (-1: write one
                        -- now, which also tells at once if it can be)
        pending = -1,   -- the version being written
        last = 0,       -- when the latest write started
        failing = false,
    }
    local ok, err = ngx.timer.every(CHECK_INTERVAL, tick, self)
    if not ok then
        log(ERR, "warden: cannot start the state file timer: ", err)
        return nil, err
    end
    log(INFO, "warden: state file ", path, ", written at most every ",
        interval, " s")
    return self
end


return _M
