-- The access phase of a challenged client (warden_access said CHALLENGE:
-- its record's action is "challenge" and it has no valid cookie). What it
-- gets is decided in Rust (src/ops/challenge.rs): the page, a 429, or its
-- answer verified; here the body is read when Rust asks for it, and the
-- status, headers and body Rust returns are sent.

local ngx = ngx
local pairs = pairs
local require = require


local _M = {}


--- serve(w, ip) -> ends the request, or returns "block" (refuse it as a
-- block: the client was just blocked for never solving, or challenges
-- are not configured), or true (let it through).
function _M.serve(w, ip)
    local var = ngx.var
    local ua = var.http_user_agent
    -- verified crawlers are never challenged (resty.warden.crawler: Rust
    -- tells whether the user agent claims a crawler and keeps verdicts,
    -- Lua asks DNS); w.crawlers is set whenever opts.challenge is
    -- (src/challenge/crawlers.rs)
    if w.crawlers and require("resty.warden.crawler").verified(w, ip, ua)
    then
        return true
    end
    local engine = w.engine
    local method = ngx.req.get_method()
    local uri, accept = var.request_uri, var.http_accept
    local https = var.https == "on"
    -- (check() verified the cookie already; check(ip) did not)
    local cookie = var.cookie_warden_pass
    local status, body, headers = engine:challenge(ip, method, uri, accept,
                                                   ua, https, cookie)
    if status == "pass" then
        return true
    end
    if status == "body" then
        ngx.req.read_body()
        status, body, headers = engine:challenge(ip, method, uri, accept, ua,
                                                 https, cookie,
                                                 ngx.req.get_body_data()
                                                 or "")
    end
    if status == "block" or status == "body" then
        return "block"
    end
    local header = ngx.header
    for k, v in pairs(headers) do
        header[k] = v
    end
    ngx.status = status
    if body ~= "" then
        ngx.print(body)
    end
    return ngx.exit(status)
end


return _M
