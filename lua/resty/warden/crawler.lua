-- Verified crawlers: the DNS lookups of src/challenge/crawlers.rs over
-- UDP cosockets. Rust decides everything (which user agents claim which
-- crawler, the packets, the answers, the forward confirmation, the cache
-- records and their TTLs); this file only moves datagrams.
--
--   local crawler = require "resty.warden.crawler"
--   if w.crawlers and crawler.verified(w, ip, ngx.var.http_user_agent) then
--       -- let a verified crawler through instead of challenging it
--   end
--
-- Cosockets: call it where they are allowed (rewrite, access, content,
-- timers). A timeout or an error means "not verified" (the request is
-- challenged, never blocked) and is cached for a minute.

local udp = ngx.socket.udp
local log = ngx.log
local ERR = ngx.ERR
local WARN = ngx.WARN
local type = type
local pcall = pcall

local _M = {}


-- Sends one query and reads the datagrams that come back until Rust has
-- what it waits for; returns Rust's last step.
local function exchange(c, job, sock, op, a, b, d, e)
    while true do
        if op == "send" then
            -- a: packet, b: host, d: port, e: timeout (ms)
            if sock then
                sock:close()
            end
            sock = udp()
            local reply
            local ok, err = sock:setpeername(b, d)
            if ok then
                sock:settimeout(e)
                ok, err = sock:send(a)
            end
            if ok then
                reply, err = sock:receive()
            end
            if not reply and err ~= "timeout" then
                log(WARN, "warden: crawler lookup via ", b, ":", d, ": ", err)
            end
            op, a, b, d, e = c:step(job, reply)
        elseif op == "wait" then
            -- a: timeout (ms); the socket stays connected
            sock:settimeout(a)
            local reply = sock:receive()
            op, a, b, d, e = c:step(job, reply)
        else
            if sock then
                sock:close()
            end
            return a  -- "done", verified
        end
    end
end


--- verified(w, ip, user_agent) -> boolean: true when `ip` is in
-- challenge.crawlers.allow, or its user agent claims a crawler and
-- forward-confirmed reverse DNS agrees (cached in the shared dict).
local function verify(c, ip, user_agent)
    local r = c:check(ip, user_agent)
    if r == true or r == false then
        return r
    end
    local op, a, b, d, e = c:step(r, nil)
    return exchange(c, r, nil, op, a, b, d, e) == true
end


function _M.verified(w, ip, user_agent)
    local c = w.crawlers
    if not c or type(ip) ~= "string" then
        return false
    end
    local ok, res = pcall(verify, c, ip, user_agent)
    if not ok then
        log(ERR, "warden: crawler verification failed: ", res)
        return false
    end
    return res
end


return _M
