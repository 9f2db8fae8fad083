-- The admin API, served by nginx itself (FlatRun's endpoints):
--
--   location /api/ {
--       allow 127.0.0.1; deny all;
--       content_by_lua_block { warden:api() }
--   }
--
-- Endpoints are found by the end of the path, so the location's prefix is
-- free: /api/security/stats and /admin/warden/security/stats both work.
-- Every endpoint but /health and /security/check needs
-- `Authorization: Bearer <admin_token>`. JSON in and out; errors are
-- { "error": "...", "field": "..." | null }.

local core = require "resty.warden.core"
local policy = require "resty.warden.policy"
local access = require "resty.warden.access"
local detector = require "resty.warden.detector"

local ngx = ngx
local log = ngx.log
local ERR = ngx.ERR
local ngx_now = ngx.now
local type = type
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local tonumber = tonumber
local concat = table.concat
local sort = table.sort
local floor = math.floor
local find = string.find
local sub = string.sub
local lower = string.lower

local lua_core = core.lua
local json_encode = lua_core.json_encode
local json_decode = lua_core.json_decode
local null = lua_core.json_null
local array_mt = lua_core.array_mt
local ct_eq = lua_core.ct_eq

local BAD_ADDRESS = core.BAD_ADDRESS
local band = require("bit").band
local DENY, BLOCK_AUTO, TRIP = core.DENY, core.BLOCK_AUTO, core.TRIP

local SOURCES = { [core.DENY] = "denylist", [core.BLOCK_MANUAL] = "manual",
                  [core.BLOCK_AUTO] = "auto" }

local STATS_SAMPLE = 10000  -- events looked at for /security/stats
local MAX_LINES = 100000    -- log lines per /security/analyze request


local _M = {}


-- An error for the client: status, message, field.
local function fail(status, msg, field)
    return { status = status, error = msg, field = field }
end


local function is_fail(v)
    return type(v) == "table" and v.status ~= nil and v.error ~= nil
end


local function send(status, body, content_type, headers)
    ngx.status = status
    ngx.header["Content-Type"] = content_type or "application/json"
    ngx.header["Cache-Control"] = "no-store"
    if headers then
        for k, v in pairs(headers) do
            ngx.header[k] = v
        end
    end
    if type(body) ~= "string" then
        local text, err = json_encode(body)
        if not text then
            log(ERR, "warden: api: ", err)
            ngx.status = 500
            text = '{"error":"cannot encode the response","field":null}'
        end
        body = text .. "\n"
    end
    ngx.print(body)
    return ngx.exit(ngx.OK)
end


local function send_fail(f, headers)
    return send(f.status, { error = f.error, field = f.field or null }, nil,
                headers)
end


-- The first word of an engine error names the field ("limit must ...").
local function field_of(err, default)
    return tostring(err):match("^([%w_]+)[%s:]") or default
end


-- Reads the request body, at most max bytes. -> text | fail
local function read_body(max)
    local declared = tonumber(ngx.var.http_content_length)
    if declared and declared > max then
        return fail(413, "request body of " .. declared .. " bytes is over"
                    .. " the limit of " .. max .. " (opts.admin_max_body)",
                    "body")
    end
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
    data = data or ""
    if #data > max then
        return fail(413, "request body is over the limit of " .. max
                    .. " bytes (opts.admin_max_body)", "body")
    end
    return data
end


-- The body as a JSON object. -> table | fail
local function json_body(max, optional)
    local text = read_body(max)
    if is_fail(text) then
        return text
    end
    if text:match("^%s*$") then
        if optional then
            return {}
        end
        return fail(400, "a JSON object is required", "body")
    end
    local v, err = json_decode(text)
    if v == nil then
        return fail(400, err, "body")
    end
    if type(v) ~= "table" or v[1] ~= nil then
        return fail(400, "the body must be a JSON object", "body")
    end
    return v
end


local function nullable(v)
    if v == nil then
        return null
    end
    return v
end


-- Marks `t` as a JSON array (tables decoded from JSON arrays already are).
local function array(t)
    t = t or {}
    if getmetatable(t) == nil then
        setmetatable(t, array_mt)
    end
    return t
end


-- security/blocked-ips ----------------------------------------------------

local function block_view(b, now)
    return {
        ip = b.target, reason = b.reason, source = b.source,
        permanent = b.expires == 0,
        expires = b.expires ~= 0 and b.expires or null,
        remaining = b.expires ~= 0 and math.max(0, floor(b.expires - now))
                    or null,
    }
end


local function list_blocks(w, q)
    local fmt = q.args.format
    local list = w:blocked()
    if fmt == "nginx" then
        local out = { "# lua-resty-warden: " .. #list .. " blocked at "
                      .. ngx.http_time(ngx.time()) }
        for _, b in ipairs(list) do
            out[#out + 1] = "deny " .. b.target .. ";"
        end
        out[#out + 1] = ""
        return 200, concat(out, "\n"), "text/plain"
    elseif fmt ~= nil and fmt ~= "json" then
        return fail(400, "format must be 'json' or 'nginx', got '"
                    .. tostring(fmt) .. "'", "format")
    end
    local now = ngx_now()
    local out = array()
    for i, b in ipairs(list) do
        out[i] = block_view(b, now)
    end
    return 200, { blocked_ips = out, total = #out }
end


local function add_block(w, q)
    local body = q.body
    local ip = body.ip
    if type(ip) ~= "string" or ip == "" then
        return fail(400, "ip is required: an IP address or a CIDR", "ip")
    end
    local reason = body.reason
    if reason ~= nil and reason ~= null and type(reason) ~= "string" then
        return fail(400, "reason must be a string", "reason")
    end
    if reason == null then
        reason = nil
    end
    local duration = body.duration
    if duration == null then
        duration = nil
    end
    local secs, derr = lua_core.parse_duration(duration)
    if not secs then
        return fail(400, derr, "duration")
    end
    -- an error's field and status come from its kind (src/error.rs)
    local ok, err, field, status = w.engine:block(ip, secs, reason)
    if not ok then
        return fail(status, err, field or null)
    end
    local target = err or ip
    local now = ngx_now()
    local view = block_view({ target = target, reason = reason or "",
                              source = "manual",
                              expires = secs == 0 and 0 or now + secs }, now)
    view.message = "blocked"
    if w.engine:allowlisted(target) then
        view.warning = target .. " is allowlisted: the block has no"
                       .. " effect while it is"
    end
    return 201, view
end


local function delete_block(w, q)
    local target = q.capture
    local ok, err, field, status = w.engine:unblock(target)
    if ok then
        return 200, { ip = target, message = "unblocked" }
    end
    return fail(status, err, field or "ip")
end


-- security/whitelist ------------------------------------------------------

local function config_entries(w, key)
    local p = w.options_policy
    local list = p and p[key]
    return type(list) == "table" and list or {}
end


local function list_whitelist(w)
    local out = array()
    for _, e in ipairs(config_entries(w, "whitelist")) do
        local n = lua_core.policy_entry("whitelist", e)
        if n then
            n.id, n.source = null, "config"
            out[#out + 1] = n
        end
    end
    local doc, err, _, status = w.engine:policy_document()
    if not doc then
        return fail(status, err)
    end
    for _, e in ipairs(doc.whitelist) do
        e.source = "api"
        out[#out + 1] = e
    end
    return 200, { whitelist = out, total = #out }
end


-- Adds the entry `body` to the list `key` ("whitelist", "routes") of the
-- policy document (validated, with a fresh id; a whitelist entry already
-- there is a 409). -> the stored entry | fail
local function add_entry(w, key, body)
    local res, err, field, status = policy.update(w, "add", key, body)
    if not res then
        return fail(status, err, field)
    end
    return res
end


local function add_whitelist(w, q)
    local res = add_entry(w, "whitelist", q.body)
    if is_fail(res) then
        return res
    end
    return 201, res
end


local function remove_by_id(w, key, id_text)
    local id = tonumber(id_text)
    if not id or id < 1 or id ~= floor(id) then
        return fail(400, "id must be a positive integer, got '"
                    .. tostring(id_text) .. "'", "id")
    end
    local res, err, field, status = policy.update(w, "remove", key, id)
    if not res then
        return fail(status, err, field)
    end
    return 200, res
end


-- security/protected-routes -----------------------------------------------

local function list_routes(w)
    local doc, err, _, status = w.engine:policy_document()
    if not doc then
        return fail(status, err)
    end
    local created = {}
    for _, e in ipairs(doc.routes) do
        created[e.id] = e.created
    end
    local out = array()
    for _, r in ipairs(w.engine:routes()) do
        r.source = r.id and "api" or "config"
        r.id = nullable(r.id)
        r.created = nullable(created[r.id])
        r.credentials = array(r.credentials)
        out[#out + 1] = r
    end
    return 200, { protected_routes = out, total = #out }
end


local function add_route(w, q)
    local res = add_entry(w, "routes", q.body)
    if is_fail(res) then
        return res
    end
    for _, r in ipairs(w.engine:routes()) do
        if r.id == res.id then
            r.created, r.source = res.created, "api"
            r.credentials = array(r.credentials)
            return 201, r
        end
    end
    return 201, { id = res.id }
end


-- deployments/<name>/security ---------------------------------------------

local function get_site(w, q)
    local name = q.capture
    local doc, err, _, status = w.engine:policy_document()
    if not doc then
        return fail(status, err)
    end
    local s = doc.sites[name]
    local source = "api"
    if not s then
        local opt = w.options_policy and w.options_policy.sites
        s = type(opt) == "table" and opt[name]
        if s then
            s = lua_core.policy_entry("site", s, name)
            source = "config"
        end
    end
    if not s then
        return fail(404, "no security policy for deployment '" .. name
                    .. "'", "deployment")
    end
    s.deployment, s.source = name, source
    s.allowed_ips = array(s.allowed_ips)
    s.blocked_paths = array(s.blocked_paths)
    return 200, s
end


local function put_site(w, q)
    local res, err, field, status = policy.update(w, "put_site", q.capture,
                                                  q.body)
    if not res then
        return fail(status, err, field)
    end
    return get_site(w, q)
end


local function delete_site(w, q)
    local res, err, field, status = policy.update(w, "delete_site",
                                                  q.capture)
    if not res then
        return fail(status, err, field)
    end
    return 200, res
end


-- security/events, cleanup, stats, realtime-capture, refresh --------------

local function list_events(w, q)
    local args = q.args
    local filter = {}
    for _, k in ipairs({ "limit", "since" }) do
        local v = args[k]
        if v ~= nil then
            filter[k] = tonumber(v) or v
        end
    end
    filter.type = args.type
    filter.ip = args.ip
    for k, v in pairs(filter) do
        if type(v) == "table" or v == true then
            return fail(400, k .. " must be given once, with a value", k)
        end
    end
    local list, err = w:events(filter)
    if not list then
        return fail(400, err, field_of(err, null))
    end
    return 200, { events = array(list), total = #list }
end


local function cleanup(w, q)
    local older = q.body.older_than
    if older == nil or older == null then
        return fail(400, "older_than is required: seconds, or a duration"
                    .. " like '7d'", "older_than")
    end
    local n, err = w:cleanup(older)
    if not n then
        return fail(400, err, "older_than")
    end
    return 200, { removed = n, older_than = lua_core.parse_duration(older) }
end


local function stats(w)
    local s = w:stats()
    local sample = w:events{ limit = STATS_SAMPLE }
    local by_type = { blocked_ip = 0, rate_limited = 0, auth_failed = 0,
                      suspicious = 0, scan_detected = 0 }
    local by_ip, recent = {}, array()
    for _, e in ipairs(sample) do
        if e.type ~= "capture" then
            by_type[e.type] = (by_type[e.type] or 0) + 1
            by_ip[e.ip] = (by_ip[e.ip] or 0) + 1
            if #recent < 10 and e.type ~= "blocked_ip" then
                recent[#recent + 1] = e
            end
        end
    end
    local top = array()
    for ip, n in pairs(by_ip) do
        top[#top + 1] = { ip = ip, events = n }
    end
    sort(top, function(a, b)
        if a.events ~= b.events then
            return a.events > b.events
        end
        return a.ip < b.ip
    end)
    for i = #top, 11, -1 do
        top[i] = nil
    end
    return 200, {
        events_by_type = by_type,
        events_total = { -- since the start, from the counters
            blocked_ip = s.events_blocked_ip,
            rate_limited = s.events_rate_limited,
            auth_failed = s.events_auth_failed,
            suspicious = s.events_suspicious,
            scan_detected = s.events_scan_detected,
            capture = s.events_capture,
        },
        blocked_ips = #w:blocked(),
        recent_threats = recent,
        top_offenders = top,
        counters = s,
    }
end


local function capture_state(w)
    local doc = w.engine:policy_document() or {}
    local c = type(doc.capture) == "table" and doc.capture or {}
    local enabled = c.enabled
    if enabled == nil then
        local p = w.options_policy
        enabled = p and p.realtime_capture == true or false
    end
    return { enabled = enabled, since = nullable(c.since),
             captured = w:stats().events_capture,
             max_captures = w.max_captures }
end


local function put_capture(w, q)
    local enabled = q.body.enabled
    if type(enabled) ~= "boolean" then
        return fail(400, "enabled must be true or false, got "
                    .. (enabled == nil and "nothing" or tostring(enabled)),
                    "enabled")
    end
    local res, err, field, status = policy.update(w, "capture", enabled)
    if not res then
        return fail(status, err, field)
    end
    log(ngx.WARN, "warden: real-time capture ", enabled and "on" or "off",
        " (admin API)")
    return 200, capture_state(w)
end


local function refresh(w)
    local ok, err = w:refresh()
    if not ok then
        return fail(500, err)
    end
    return 200, { message = "refreshed", blocks = #w:blocked(),
                  protected_routes = #w.engine:routes() }
end


-- security/check (auth_request) -------------------------------------------

local caller = require("ffi").new("warden_client_t")
local caller_text = require("ffi").new("unsigned char[64]")


-- The client a check is about: the `ip` named by a trusted caller (a peer
-- in trusted_proxies), else the client of this request, resolved as
-- check() resolves it (X-Forwarded-For, then X-Real-IP, from a trusted
-- proxy). -> ip | nil, fail
local function check_client(w, body)
    local r = require("resty.core.base").get_request()
    local trusted = core.C.warden_resolve(w.handle, r, caller)
    if body and body.ip ~= nil then
        if trusted ~= 1 then
            return nil, fail(403, "only a trusted caller may name the ip",
                             "ip")
        end
        return body.ip
    end
    local n = trusted >= 0
              and core.C.warden_client_text(caller, caller_text, 64) or -1
    if n < 0 then
        return nil, fail(400, "the request has no client address", "ip")
    end
    return require("ffi").string(caller_text, n)
end


local function check(w, q)
    -- this request's status is a verdict on another request: the detector
    -- must not count it as this request's own
    core.C.warden_unobserved(w.handle,
                             require("resty.core.base").get_request())
    local args, body = q.args, q.body
    local ip, f = check_client(w, body)
    if not ip then
        return f
    end
    if type(ip) ~= "string" then
        return fail(400, "ip must be a string", "ip")
    end
    local var = ngx.var
    local rc, client = w:_decide(ip)
    if rc == BAD_ADDRESS then
        return fail(400, "invalid IP address '" .. ip .. "'", "ip")
    end
    local target = (body and body.uri) or var.http_x_original_uri
    local method = (body and body.method) or var.http_x_original_method
                   or "GET"
    local site = (body and body.site) or args.site or var.http_x_warden_site
    if type(site) ~= "string" or site == "" then
        site = nil
    end
    local path = lua_core.normalize_path(type(target) == "string"
                                         and target or "/")
    local outcome, a, b, c = nil, nil, nil, nil
    if rc >= DENY and rc <= BLOCK_AUTO then
        outcome, a = "blocked", rc
    end
    if band(core.C.warden_policy_active(w.handle), 3) > 0 then
        outcome, a, b, c = access.decide(w, rc, client, function()
            return ip
        end, {
            site = site, path = path, path_len = #path,
            method = method, method_len = #method,
        })
    end
    local status, reason, headers = 200, "allowed", {}
    if outcome == "blocked" then
        status, reason = 403, "blocked: " .. SOURCES[a]
    elseif outcome == "forbidden_ip" then
        status, reason = 403, "site: not in allowed_ips"
    elseif outcome == "blocked_path" then
        status, reason = 403, "site: blocked path"
    elseif outcome == "rate_limited" then
        -- auth_request knows only 2xx, 401 and 403
        status, reason = 403, "site: rate limited"
        headers["Retry-After"] = math.max(1, math.ceil(b))
    elseif outcome == "unauthorized" then
        status, reason = 401, "credentials " .. a
        headers["WWW-Authenticate"] = access.challenge(b, c)
    elseif outcome == nil and rc == core.PASS and w.iprepd then
        local rep = w.iprepd:get_reputation(ip)
        if rep and rep <= w.iprepd.threshold then
            status, reason = 403, "reputation " .. rep
        end
    end
    if status == 403 and w.blocking_mode == 0 then
        headers["X-Warden-Would-Block"] = reason
        status, reason = 200, "allowed (blocking_mode 0)"
    end
    local score = w:threat_score(ip) or 0
    headers["X-Threat-Score"] = tostring(score)
    headers["X-Warden-Reason"] = reason
    return status, { ip = ip, allowed = status == 200,
                     should_block = status == 403, threat_score = score,
                     reason = reason }, nil, headers
end


-- security/analyze ----------------------------------------------------------

local function analyze(w, q)
    local text = q.raw
    local first = text:match("^%s*(.)")
    if first == "{" or first == "[" then
        local v, err = json_decode(text)
        if v == nil then
            return fail(400, err, "body")
        end
        local lines = {}
        local items = type(v) == "table" and (v[1] ~= nil and v or v.lines
                      or v.log_entries or { v.log_entry or v.line }) or {}
        for _, l in ipairs(items) do
            if type(l) ~= "string" then
                return fail(400, "log lines must be strings", "log_entry")
            end
            lines[#lines + 1] = l
        end
        if #lines == 0 then
            return fail(400, "no log line: send text lines, or JSON"
                        .. ' {"log_entry": "..."} or {"lines": [...]}',
                        "log_entry")
        end
        text = concat(lines, "\n")
    end
    local n, errors, blocked = 0, array(), array()
    local i = 0
    for line in text:gmatch("[^\n]+") do
        i = i + 1
        if i > MAX_LINES then
            return fail(413, "more than " .. MAX_LINES .. " lines", "body")
        end
        line = line:gsub("\r$", "")
        if line:find("%S") then
            local r, err, field = w.engine:analyze_line(line)
            if not r then
                if #errors < 100 then
                    errors[#errors + 1] = { line = i, error = err,
                                            field = field }
                end
            else
                n = n + 1
                if r.rc == TRIP then
                    local e = detector.tripped(w, r)
                    if e then
                        blocked[#blocked + 1] = { ip = e.ip, rule = e.rule,
                                                  action = e.action }
                    end
                end
            end
        end
    end
    if n == 0 and #errors > 0 then
        local e = errors[1]
        return fail(400, "line " .. e.line .. ": " .. e.error, e.field)
    end
    return 200, { analyzed = n, rejected = #errors, errors = errors,
                  tripped = blocked }
end


-- routing -----------------------------------------------------------------

local PUBLIC = true

-- pattern (anchored, after the location's prefix), handlers, public?
local ROUTES = {
    { "security/blocked%-ips", { GET = list_blocks, POST = add_block } },
    { "security/blocked%-ips/(.+)", { DELETE = delete_block } },
    { "security/whitelist", { GET = list_whitelist, POST = add_whitelist } },
    { "security/whitelist/([^/]+)", { DELETE = function(w, q)
        return remove_by_id(w, "whitelist", q.capture)
    end } },
    { "security/protected%-routes", { GET = list_routes, POST = add_route } },
    { "security/protected%-routes/([^/]+)", { DELETE = function(w, q)
        return remove_by_id(w, "routes", q.capture)
    end } },
    { "security/events", { GET = list_events } },
    { "security/cleanup", { POST = cleanup } },
    { "security/stats", { GET = stats } },
    { "security/realtime%-capture", { GET = function(w)
        return 200, capture_state(w)
    end, PUT = put_capture } },
    { "security/refresh", { POST = refresh } },
    { "security/check", { GET = check, POST = check }, PUBLIC },
    { "security/analyze", { POST = analyze } },
    { "deployments/([%w%._%-]+)/security", { GET = get_site, PUT = put_site,
                                             DELETE = delete_site } },
    { "metrics", { GET = function(w)
        return 200, w:metrics_text(), "text/plain; version=0.0.4"
    end } },
    { "health", { GET = function(w)
        return 200, { status = "ok", version = w._VERSION,
                      blocks = #w:blocked(),
                      dict_free_bytes = w.dict:free_space() }
    end }, PUBLIC },
}

-- body kinds: handlers given a JSON body, a raw body, or none
local JSON_BODY = { [add_block] = true, [add_whitelist] = true,
                    [add_route] = true, [cleanup] = true,
                    [put_capture] = true, [put_site] = true }
local RAW_BODY = { [analyze] = true }


-- Finds the endpoint: the first tail of the path (from a '/') that a
-- route matches in full.
local function route(path)
    local from = 1
    while true do
        local slash = find(path, "/", from, true)
        if not slash then
            return nil
        end
        local tail = sub(path, slash + 1)
        for _, r in ipairs(ROUTES) do
            local cap = { tail:match("^" .. r[1] .. "$") }
            if cap[1] ~= nil then
                return r, cap[1] ~= tail and cap[1] or nil
            end
        end
        from = slash + 1
    end
end


local function authorized(w)
    local token = w.admin_token
    if not token then
        return false, "the admin API is off: set admin_token or"
                      .. " admin_token_file in warden.new()"
    end
    local h = ngx.var.http_authorization
    if not h then
        return false, "missing Authorization: Bearer <token>"
    end
    local scheme, given = h:match("^%s*(%S+)%s+(%S+)%s*$")
    if not scheme or lower(scheme) ~= "bearer" then
        return false, "Authorization must be Bearer <token>"
    end
    if not ct_eq(given, token) then
        return false, "invalid token"
    end
    return true
end


--- serve(w): the content handler behind warden:api().
function _M.serve(w)
    local path = ngx.var.uri or "/"
    path = path:gsub("/+$", "")
    local r, capture = route(path)
    if not r then
        return send_fail(fail(404, "no such endpoint: " .. path, null))
    end
    local method = ngx.req.get_method()
    local handler = r[2][method]
    if not handler and method == "HEAD" then
        handler = r[2].GET
    end
    if not handler then
        local allowed = {}
        for m in pairs(r[2]) do
            allowed[#allowed + 1] = m
        end
        sort(allowed)
        return send_fail(fail(405, method .. " is not allowed here (allowed: "
                              .. concat(allowed, ", ") .. ")", null),
                         { Allow = concat(allowed, ", ") })
    end
    if not r[3] then
        local ok, why = authorized(w)
        if not ok then
            return send_fail(fail(401, why, "Authorization"),
                             { ["WWW-Authenticate"] = 'Bearer realm="warden"' })
        end
    end
    local args = ngx.req.get_uri_args(20)
    local body, raw
    if JSON_BODY[handler] then
        body = json_body(w.admin_max_body)
        if is_fail(body) then
            return send_fail(body)
        end
    elseif RAW_BODY[handler] then
        raw = read_body(w.admin_max_body)
        if is_fail(raw) then
            return send_fail(raw)
        end
    elseif handler == check and method == "POST" then
        body = json_body(w.admin_max_body, true)
        if is_fail(body) then
            return send_fail(body)
        end
    end
    local ok, status, res, content_type, headers = pcall(handler, w, {
        capture = capture, args = args, body = body, raw = raw })
    if not ok then
        log(ERR, "warden: api: ", method, " ", path, ": ", status)
        return send_fail(fail(500, "internal error (see the error log)"))
    end
    if is_fail(status) then
        return send_fail(status)
    end
    return send(status, res, content_type, headers)
end


return _M
