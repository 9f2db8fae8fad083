-- A small HTTP/1.1 client on cosockets, with a keepalive pool and one
-- deadline for the whole exchange (iprepd's budget is 10 ms). Responses
-- are parsed in Rust (the httparse crate; src/http.rs). Debian has no
-- lua-resty-http; this is what warden needs and no more.
--
--   res, err = http.request{
--       url = "http://127.0.0.1:8080",  -- or host = , port =
--       method = "GET", path = "/type/ip/192.0.2.1",
--       headers = { Authorization = "APIKey k" }, body = nil,
--       timeout = 10,                    -- ms, for everything
--       keepalive_timeout = 60000, pool_size = 32,
--       max_body = 65536,
--   }
--   res = { status = 200, headers = { ["content-type"] = ... },
--           body = "...", reused = <times the connection was reused> }
--
-- err is "timeout", "connection refused", ... or "malformed response: ..."
-- and never raises.

local core = require "resty.warden.core"

local ngx = ngx
local tcp = ngx.socket.tcp
local now = ngx.now
local update_time = ngx.update_time
local concat = table.concat
local pairs = pairs
local tonumber = tonumber
local floor = math.floor

local http_head = core.lua.http_head
local http_chunked = core.lua.http_chunked

local DEFAULT_MAX_BODY = 65536


local _M = {}


-- "http://host:port/prefix" -> host, port, prefix
function _M.parse_url(url)
    local host, port, prefix = url:match("^http://([^:/]+):?(%d*)(.*)$")
    if not host then
        return nil, "url must look like http://host:port, got '" .. url .. "'"
    end
    port = tonumber(port) or 80
    if port < 1 or port > 65535 then
        return nil, "url has a bad port: '" .. url .. "'"
    end
    if prefix:sub(-1) == "/" then
        prefix = prefix:sub(1, -2)
    end
    return host, port, prefix
end


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
    local req = {
        opts.method or "GET", " ", opts.path or "/", " HTTP/1.1\r\n",
        "Host: ", opts.host_header, "\r\n",
        "Connection: keep-alive\r\n",
    }
    for k, v in pairs(opts.headers or {}) do
        req[#req + 1] = k .. ": " .. v .. "\r\n"
    end
    local body = opts.body
    if body then
        req[#req + 1] = "Content-Length: " .. #body .. "\r\n"
    end
    req[#req + 1] = "\r\n"
    req[#req + 1] = body or ""

    sock:settimeout(remaining(deadline))
    local ok, err = sock:send(concat(req))
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


local function once(opts, host, port, deadline)
    local sock = tcp()
    sock:settimeout(remaining(deadline))
    local ok, err = sock:connect(host, port)
    if not ok then
        return nil, err
    end
    local reused = sock:getreusedtimes() or 0

    local res, keep_alive
    res, err, keep_alive = exchange(sock, opts, deadline)
    if not res then
        sock:close()
        return nil, err, reused
    end
    res.reused = reused
    if keep_alive then
        sock:setkeepalive(opts.keepalive_timeout or 60000,
                          opts.pool_size or 32)
    else
        sock:close()
    end
    return res, nil, reused
end


function _M.request(opts)
    update_time()
    local deadline = now() + (opts.timeout or 10) / 1000
    local host, port = opts.host, opts.port
    if opts.url then
        local prefix
        host, port, prefix = _M.parse_url(opts.url)
        if not host then
            return nil, port
        end
        opts.path = prefix .. (opts.path or "/")
    end
    opts.host_header = port == 80 and host or host .. ":" .. port

    local res, err, reused = once(opts, host, port, deadline)
    if not res and reused and reused > 0 and remaining(deadline) > 0
       and (err == "closed" or err == "connection reset by peer")
    then
        -- the server dropped a pooled connection: one fresh try
        res, err = once(opts, host, port, deadline)
    end
    return res, err
end


return _M
