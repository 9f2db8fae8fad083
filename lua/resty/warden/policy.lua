-- The admin API's policies in the shared dict: the whitelist, protected
-- routes, site policies and real-time capture, kept as one JSON document
-- under the key "p" (so that a change is written at once or not at all).
--
--   { "next_id": 4,
--     "whitelist": [ { "id": 1, "type": "ip", "value": "10.0.0.0/8",
--                      "description": "...", "created": 1763700000 } ],
--     "routes":    [ { "id": 2, "path": "/admin", "method": "ALL",
--                      "auth_type": "basic", "credentials": "...",
--                      "deployment": "my-app", "realm": "warden",
--                      "created": ... } ],
--     "sites":     { "my-app": { "enabled": true, "rate_limit": 50,
--                                "allowed_ips": [...],
--                                "blocked_paths": [...] } },
--     "capture":   { "enabled": true, "since": 1763700000 } }
--
-- A change takes a lock in the dict (so that two workers' changes do not
-- overwrite each other), edits a copy of the document, has the Rust core
-- compile it with the options (which validates everything), stores it and
-- publishes a "P" journal entry: every worker recompiles it before its
-- next request is decided (store.lua).

local core = require "resty.warden.core"
local store = require "resty.warden.store"

local ngx = ngx
local ngx_sleep = ngx.sleep
local ngx_now = ngx.now
local log = ngx.log
local ERR = ngx.ERR
local type = type
local pcall = pcall
local floor = math.floor

local json_encode = core.lua.json_encode
local json_decode = core.lua.json_decode
local array_mt = core.lua.array_mt

local LOCK_KEY = "p|lock"
local LOCK_TTL = 5      -- seconds a lock outlives a crashed holder
local LOCK_WAIT = 3     -- seconds a change waits for the lock


local _M = {}


-- Marks `t` as a JSON array (tables decoded from JSON arrays already are).
local function array(t)
    t = t or {}
    if getmetatable(t) == nil then
        setmetatable(t, array_mt)
    end
    return t
end
_M.array = array


local function normalize(doc)
    if type(doc) ~= "table" then
        doc = {}
    end
    doc.whitelist = array(type(doc.whitelist) == "table" and doc.whitelist
                          or nil)
    doc.routes = array(type(doc.routes) == "table" and doc.routes or nil)
    if type(doc.sites) ~= "table" then
        doc.sites = {}
    end
    doc.next_id = tonumber(doc.next_id) or 1
    return doc
end


--- read(dict) -> the document (a fresh copy), or nil, err.
function _M.read(dict)
    local text = dict:get("p")
    if not text then
        return normalize(nil)
    end
    local doc, err = json_decode(text)
    if not doc then
        return nil, "stored policy document: " .. err
    end
    return normalize(doc)
end


local function lock(dict)
    local deadline = ngx_now() + LOCK_WAIT
    while true do
        local ok, err = dict:safe_add(LOCK_KEY, ngx.worker.pid(), LOCK_TTL)
        if ok then
            return true
        end
        if err ~= "exists" then
            return nil, err
        end
        if ngx_now() >= deadline then
            return nil, "another change holds the lock"
        end
        ngx_sleep(0.005)
    end
end


--- update(w, edit) -> result | nil, err, field, status
-- edit(doc, id) changes `doc` in place (id: a fresh id for a new entry)
-- and returns a result, or nil, err, field, status to change nothing.
function _M.update(w, edit)
    local dict = w.dict
    local ok, err = lock(dict)
    if not ok then
        return nil, "cannot change the policy: " .. err, nil, 503
    end
    local res, e1, field, status
    ok, err = pcall(function()
        local doc, rerr = _M.read(dict)
        if not doc then
            e1, status = rerr, 500
            return
        end
        local id = floor(doc.next_id)
        res, e1, field, status = edit(doc, id)
        if res == nil then
            return
        end
        if res.id == id then
            doc.next_id = id + 1  -- the edit took the fresh id
        end
        local valid, verr, vfield = w.engine:check_policy(doc)
        if not valid then
            res, e1, field, status = nil, verr, vfield, 400
            return
        end
        local text, jerr = json_encode(doc)
        if not text then
            res, e1, status = nil, jerr, 500
            return
        end
        local set, serr = dict:safe_set("p", text)
        if not set then
            res, e1, status = nil, "shared dict '" .. w.dict_name
                                   .. "' cannot hold the policy: " .. serr,
                              507
            return
        end
        store.journal(dict, w.engine, "P")
    end)
    dict:delete(LOCK_KEY)
    if not ok then
        log(ERR, "warden: policy change failed: ", err)
        return nil, "policy change failed", nil, 500
    end
    if res == nil then
        return nil, e1, field, status or 400
    end
    store.sync(dict, w.engine)
    return res
end


--- refresh(w): every worker re-reads the blocks and the policy.
function _M.refresh(w)
    local seq, err = store.journal(w.dict, w.engine, "R")
    if not seq then
        return nil, err
    end
    return store.sync(w.dict, w.engine)
end


return _M
