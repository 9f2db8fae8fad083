-- Verified crawlers: the DNS lookups of src/challenge/crawlers.rs over
-- UDP cosockets. Rust decides everything (which user agents claim which
-- crawler, the packets, the answers, the forward confirmation, the cache
-- records and their TTLs); this file only moves datagrams and the dict
-- value of a verdict (a key and a value that only Rust reads).
--
--   local crawler = require "resty.warden.crawler"
--   if w.crawlers and crawler.verified(w, ip, ngx.var.http_user_agent) then
--       -- let a verified crawler through instead of challenging it
--   end
--
-- Cosockets: call it where they are allowed (rewrite, access, content,
-- timers). A timeout or an error means "not verified" (the request is
-- challenged, never blocked) and is cached for a minute.

local core = require "resty.warden.core"
local ffi = require "ffi"

local udp = ngx.socket.udp
local log = ngx.log
local ERR = ngx.ERR
local WARN = ngx.WARN
local type = type
local pcall = pcall
local setmetatable = setmetatable
local ffi_cast = ffi.cast
local ffi_string = ffi.string

local C = core.C
local check_c = C.warden_crawler_check
local verdict_c = C.warden_crawler_verdict
local VERIFIED, NONE = core.CRAWLER_VERIFIED, core.CRAWLER_NONE

-- scratch space for a cache key, reused by every call of this worker
local KEY_MAX = core.CRAWLER_KEY_MAX
local keybuf = ffi.new("unsigned char[?]", KEY_MAX)

-- w.crawlers -> its FFI handle
local handles = setmetatable({}, { __mode = "k" })

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


-- The lookups, when the dict holds no verdict: Rust's state machine
-- (mlua), driven over UDP cosockets.
local function lookup(c, ip, user_agent)
    local job = c:start(ip, user_agent)
    if not job then
        return false
    end
    local op, a, b, d, e = c:step(job, nil)
    return exchange(c, job, nil, op, a, b, d, e) == true
end


--- verified(w, ip, user_agent) -> boolean: true when `ip` is in
-- challenge.crawlers.allow, or its user agent claims a crawler and
-- forward-confirmed reverse DNS agrees (cached in the shared dict, and
-- remembered by each worker for 10 s: then it costs one FFI call).
function _M.verified(w, ip, user_agent)
    local c = w.crawlers
    if not c or type(ip) ~= "string" then
        return false
    end
    local h = handles[c]
    if not h then
        h = ffi_cast("const warden_crawlers_t *", c:ptr())
        handles[c] = h
    end
    if type(user_agent) ~= "string" then
        user_agent = ""
    end
    -- verified (allowlisted, or this worker remembers it), not verified
    -- (no claim, or remembered so), or the key of the verdict in the dict
    local n = check_c(h, ip, #ip, user_agent, #user_agent, keybuf, KEY_MAX)
    if n == VERIFIED then
        return true
    end
    if n == NONE then
        return false
    end
    local v = w.dict:get(ffi_string(keybuf, n))
    if type(v) == "string" then
        local r = verdict_c(h, v, #v)
        if r >= 0 then
            return r == 1
        end
    end
    local ok, res = pcall(lookup, c, ip, user_agent)
    if not ok then
        log(ERR, "warden: crawler verification failed: ", res)
        return false
    end
    return res
end


return _M
