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
-- statuses, and the work itself (src/ops/). This file is HTTP framing: it
-- hands admin:serve() the request's nginx variables (the names come from
-- Rust) and arguments, reads the body, asks iprepd for a reputation or
-- waits a moment when serve() asks for it (each may yield, which a call
-- into Rust cannot), and sends the status, headers and body it gets back,
-- after the iprepd reports it names.

local core = require "resty.warden.core"
local base = require "resty.core.base"

local ngx = ngx
local log = ngx.log
local ERR = ngx.ERR
local pairs = pairs
local pcall = pcall
local tostring = tostring

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


local function send(w, res)
    local rep = w.iprepd
    if rep and res.reports then
        for _, r in pairs(res.reports) do
            rep:report_violation(r[1], r[2])
        end
    end
    if res.unobserved then
        -- a verdict on another request: the detector must not count this
        -- request's status as its client's
        core.C.warden_mark(w.handle, base.get_request(),
                           core.SEEN_UNOBSERVED)
    end
    ngx.status = res.status
    local header = ngx.header
    for k, v in pairs(res.headers) do
        header[k] = v
    end
    ngx.print(res.body)
    return ngx.exit(ngx.OK)
end


--- serve(w, opts): the content handler behind warden:api(opts); opts is
-- handed to Rust as it is (`{ token = false }`: no token).
function _M.serve(w, opts)
    local var = ngx.var
    local vars = {}
    for i = 1, #VARIABLES do
        local name = VARIABLES[i]
        vars[name] = var[name]
    end
    local req = {
        vars = vars,
        args = ngx.req.get_uri_args(MAX_ARGS),
        reputation_threshold = w.iprepd and w.iprepd.threshold or nil,
        started = ngx.req.start_time(),
        options = opts,
    }
    local admin = w.admin
    for _ = 1, MAX_CALLS do
        local ok, res = pcall(admin.serve, admin, req)
        if not ok then
            log(ERR, "warden: api: ", vars.request_method, " ", vars.uri,
                ": ", tostring(res))
            return ngx.exit(500)
        end
        local need = res.need
        if need == nil then
            return send(w, res)
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
