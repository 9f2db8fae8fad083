-- The admin API, served by nginx itself (FlatRun's endpoints and
-- nginx-defender's):
--
--   location /api/ {
--       allow 127.0.0.1; deny all;
--       content_by_lua_block { warden:api() }
--   }
--
-- Everything is decided in Rust (src/admin/): the routes, who may call,
-- the validation of arguments and bodies, the views, the errors and their
-- statuses. This file is HTTP framing: it hands admin:serve() the
-- request's nginx variables (the names come from Rust) and arguments,
-- reads the body, asks iprepd for a reputation or waits a moment when
-- serve() asks for it (each may yield, which a call into Rust cannot),
-- and sends the status, headers and body it gets back.

local core = require "resty.warden.core"
local access = require "resty.warden.access"
local detector = require "resty.warden.detector"

local ngx = ngx
local log = ngx.log
local ERR = ngx.ERR
local pairs = pairs
local pcall = pcall
local band = require("bit").band

local VARIABLES = core.lua.admin_variables
local MAX_ARGS = 20  -- query arguments read
-- calls at most: the request, the body, a reputation, and retries while
-- another worker changes the policy (Rust gives up after 600)
local MAX_CALLS = 1000


local _M = {}


-- Reads the request body: at most max + 1 bytes (Rust refuses more).
local function read_body(max)
    ngx.req.read_body()
    local data = ngx.req.get_body_data()
    if not data then
        local file = ngx.req.get_body_file()
        if file then
            local f = io.open(file, "rb")
            if f then
                data = f:read(max + 1)
                f:close()
            end
        end
    end
    return data or ""
end


-- iprepd's reputation of ip, or false when it has none (fail open).
local function reputation(w, ip)
    local rep = w.iprepd
    local ok, r = pcall(rep.get_reputation, rep, ip)
    return ok and r or false
end


local function send(res)
    ngx.status = res.status
    local header = ngx.header
    for k, v in pairs(res.headers) do
        header[k] = v
    end
    ngx.print(res.body)
    return ngx.exit(ngx.OK)
end


-- Temporary bridge, until the shared dict, blocks and the admin API's
-- policy document have their home in Rust (branch store): the functions
-- the Rust backend (src/lua/admin.rs) calls for what touches the shared
-- dict, and for /security/check's decision and /security/analyze's trips,
-- which are still made here.

local C = core.C
local DENY, BLOCK_AUTO = core.DENY, core.BLOCK_AUTO

-- Policy edits: the bridge's op -> engine:edit_policy's op and list.
local EDITS = {
    add_whitelist = { "add", "whitelist" },
    add_route = { "add", "routes" },
}


local function bridge(w)
    local b = w._api_bridge
    if b then
        return b
    end
    local dict = w.dict
    b = {
        sync = function()
            return w:sync()
        end,
        block = function(target, secs, reason)
            return w:block(target, { duration = secs, reason = reason })
        end,
        unblock = function(target)
            return w:unblock(target)
        end,
        dict_get = function(key)
            return dict:get(key)
        end,
        policy = function()
            return dict:get("p")
        end,
        -- a change -> result | nil, err, field, status; "busy" while
        -- another worker holds the lock
        update = function(last_try, op, x, y)
            local e = EDITS[op]
            if e then
                op, x, y = e[1], e[2], x
            end
            local res, err, field, status = w.engine:edit_policy(last_try,
                                                                 op, x, y)
            if res == false then
                return nil, nil, nil, "busy"
            end
            return res, err, field, status
        end,
        refresh = function()
            return w:refresh()
        end,
        stats = function()
            return w:stats()
        end,
        dict_free = function()
            return dict:free_space()
        end,
        -- check()'s decision on ip for a request to path of site:
        -- rc, outcome, ... (access.decide's)
        decide = function(ip, site, path, method)
            local rc, client = w:_decide(ip)
            local outcome, a, b2, c
            if rc >= DENY and rc <= BLOCK_AUTO then
                outcome, a = "blocked", rc
            end
            if band(C.warden_policy_active(w.handle), 3) > 0 then
                outcome, a, b2, c = access.decide(w, rc, client, function()
                    return ip
                end, {
                    site = site, path = path, path_len = #path,
                    method = method, method_len = #method,
                })
            end
            return rc, outcome, a, b2, c
        end,
        tripped = function(line)
            return detector.tripped(w, line)
        end,
    }
    w._api_bridge = b
    return b
end


--- serve(w): the content handler behind warden:api().
function _M.serve(w)
    local var = ngx.var
    local vars = {}
    for i = 1, #VARIABLES do
        local name = VARIABLES[i]
        vars[name] = var[name]
    end
    local req = {
        vars = vars,
        args = ngx.req.get_uri_args(MAX_ARGS),
        reputation_threshold = w.iprepd and w.iprepd.threshold,
    }
    local admin, b = w.admin, bridge(w)
    for _ = 1, MAX_CALLS do
        local ok, res = pcall(admin.serve, admin, req, b)
        if not ok then
            log(ERR, "warden: api: ", vars.request_method, " ", vars.uri,
                ": ", res)
            return ngx.exit(500)
        end
        local need = res.need
        if need == nil then
            return send(res)
        elseif need == "body" then
            req.body = read_body(res.max)
        elseif need == "reputation" then
            req.reputation = reputation(w, res.ip)
        elseif need == "retry" then
            ngx.sleep(res.after)
            req.retries = (req.retries or 0) + 1
        end
    end
    log(ERR, "warden: api: ", vars.request_method, " ", vars.uri,
        ": no answer after ", MAX_CALLS, " calls")
    return ngx.exit(500)
end


return _M
