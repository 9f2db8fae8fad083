-- A small HTTP/1.1 client on cosockets, with a keepalive pool, TLS and one
-- deadline for the whole exchange (iprepd's budget is 10 ms). URLs,
-- request heads and responses are read and written in Rust
-- (src/net/http.rs). Debian has no lua-resty-http; this is what warden
-- needs and no more.
--
--   res, err = http.request{
--       url = "https://127.0.0.1:8080",  -- or host =, port =, tls =
--       method = "GET", path = "/type/ip/192.0.2.1",
--       headers = { Authorization = "APIKey k" }, body = nil,
--       head = nil,                      -- or a head made elsewhere
--       timeout = 10,                    -- ms, for everything
--       keepalive_timeout = nil, pool_size = nil,  -- nginx's defaults
--       max_body = 65536,
--   }
--   res = { status = 200, headers = { ["content-type"] = ... },
--           body = "...", reused = <times the connection was reused> }
--
-- err is "timeout", "connection refused", "handshake failed", "<host>
-- could not be resolved (...)", ... or "malformed response: ..." and
-- never raises. With TLS the certificate is verified against the host
-- (lua_ssl_trusted_certificate), as lua-resty-http does for iprepd-nginx.

local core = require "resty.warden.core"

local ngx = ngx
local tcp = ngx.socket.tcp
local now = ngx.now
local update_time = ngx.update_time
local floor = math.floor
local pcall = pcall

local http_head = core.lua.http_head
local http_chunked = core.lua.http_chunked
local parse_url = core.lua.parse_url
local request_head = core.lua.http_request_head

local DEFAULT_MAX_BODY = 65536


local _M = {}


local function remaining(deadline)
    update_time()
    local left = floor((deadline - now()) * 1000)
    return left > 0 and left or 0
end


-- Appends what arrives next (before the deadline) to buf.
local function read(sock, deadline, buf)
    local left = remaining(deadline)
    if left == 0 then
        return nil, "timeout"
    end
    sock:settimeout(left)
    local data, err = sock:receiveany(65536)
    if not data then
        return nil, err
    end
    return buf .. data
end


local function exchange(sock, opts, deadline)
    sock:settimeout(remaining(deadline))
    local ok, err = sock:send(opts.body and { opts.head, opts.body }
                              or opts.head)
    if not ok then
        return nil, err
    end

    local buf, head = ""
    while true do
        buf, err = read(sock, deadline, buf)
        if not buf then
            return nil, err
        end
        head, err = http_head(buf, opts.method == "HEAD")
        if head then
            break
        elseif head == nil then
            return nil, err
        end
    end

    local max = opts.max_body or DEFAULT_MAX_BODY
    local rest = buf:sub(head.len + 1)
    local res_body
    if head.length then
        if head.length > max then
            return nil, "body larger than " .. max .. " bytes"
        end
        while #rest < head.length do
            rest, err = read(sock, deadline, rest)
            if not rest then
                return nil, err
            end
        end
        res_body = rest:sub(1, head.length)
    elseif head.chunked then
        while true do
            local used
            res_body, used = http_chunked(rest, max)
            if res_body then
                break
            elseif res_body == nil then
                return nil, used
            end
            rest, err = read(sock, deadline, rest)
            if not rest then
                return nil, err
            end
        end
    else
        while true do  -- until the server closes
            local more
            more, err = read(sock, deadline, rest)
            if not more then
                if err ~= "closed" then
                    return nil, err
                end
                break
            end
            rest = more
            if #rest > max then
                return nil, "body larger than " .. max .. " bytes"
            end
        end
        res_body = rest
    end
    return { status = head.status, headers = head.headers, body = res_body },
           nil, head.keep_alive
end


local function once(opts, deadline)
    local sock = tcp()
    sock:settimeout(remaining(deadline))
    local ok, err = sock:connect(opts.host, opts.port)
    if not ok then
        return nil, err
    end
    local reused = sock:getreusedtimes() or 0
    if opts.tls and reused == 0 then
        sock:settimeout(remaining(deadline))
        local done
        done, ok, err = pcall(sock.sslhandshake, sock, nil, opts.host, true)
        if not done then
            -- lua-resty-core 0.1.25 raises (an assertion) instead of
            -- returning some verification failures; nginx has logged why
            ok, err = nil, "handshake failed"
        end
        if not ok then
            sock:close()
            return nil, err
        end
    end

    local res, keep_alive
    res, err, keep_alive = exchange(sock, opts, deadline)
    if not res then
        sock:close()
        return nil, err, reused
    end
    res.reused = reused
    if keep_alive then
        sock:setkeepalive(opts.keepalive_timeout, opts.pool_size)
    else
        sock:close()
    end
    return res, nil, reused
end


function _M.request(opts)
    update_time()
    local deadline = now() + (opts.timeout or 10) / 1000
    local path = opts.path or "/"
    if opts.url then
        local u, err = parse_url(opts.url)
        if not u then
            return nil, "url " .. err
        end
        opts.host, opts.port, opts.tls = u.host, u.port, u.tls
        path = u.prefix .. path
    end
    if not opts.head then
        opts.head = request_head(opts.method or "GET", path, opts.host,
                                 opts.port, opts.tls or false, opts.headers,
                                 opts.body and #opts.body)
    end

    local res, err, reused = once(opts, deadline)
    if not res and reused and reused > 0 and remaining(deadline) > 0
       and (err == "closed" or err == "connection reset by peer")
    then
        -- the server dropped a pooled connection: one fresh try
        res, err = once(opts, deadline)
    end
    return res, err
end


return _M
