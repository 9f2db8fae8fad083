-- A small HTTP/1.1 client on cosockets, for tests (Debian has no
-- lua-resty-http). One connection per request (`Connection: close`), so
-- that a fan-out spreads over nginx's workers.
--
--   res, err = thttp.request{ host=, port=, method=, path=, headers=, body=,
--                             timeout=, until_close= }
--     until_close: return only once nginx has closed the connection, i.e.
--     after the request's log phase
--   stats = thttp.fanout{ n=, concurrency=, port=, path=, headers=, method= }
--     stats.status[code] = count, stats.errors, stats.pids[pid] = count
--     (from the X-Worker-Pid response header), stats.npids

local tcp = ngx.socket.tcp
local spawn, wait = ngx.thread.spawn, ngx.thread.wait
local concat = table.concat
local tonumber, pairs, ipairs = tonumber, pairs, ipairs

local _M = {}


local function read_body(sock, headers)
    local te = headers["transfer-encoding"]
    if te and te:lower():find("chunked", 1, true) then
        local parts = {}
        while true do
            local line, err = sock:receive("*l")
            if not line then
                return nil, "chunk size: " .. err
            end
            local size = tonumber(line:match("^%x+"), 16)
            if not size then
                return nil, "bad chunk size: " .. line
            end
            if size == 0 then
                repeat  -- trailers up to the empty line
                    line = sock:receive("*l")
                until not line or line == ""
                return concat(parts)
            end
            local data
            data, err = sock:receive(size)
            if not data then
                return nil, "chunk: " .. err
            end
            parts[#parts + 1] = data
            sock:receive(2)  -- CRLF
        end
    end
    local len = tonumber(headers["content-length"])
    if len then
        return sock:receive(len)
    end
    return sock:receive("*a")
end


function _M.request(opts)
    local sock = tcp()
    sock:settimeout(opts.timeout or 2000)
    local ok, err = sock:connect(opts.host or "127.0.0.1", opts.port)
    if not ok then
        return nil, "connect: " .. err
    end
    local body = opts.body
    local req = {
        (opts.method or "GET"), " ", opts.path or "/", " HTTP/1.1\r\n",
        "Host: localhost\r\nConnection: close\r\n",
    }
    for k, v in pairs(opts.headers or {}) do
        req[#req + 1] = k .. ": " .. v .. "\r\n"
    end
    if body then
        req[#req + 1] = "Content-Length: " .. #body .. "\r\n"
    end
    req[#req + 1] = "\r\n"
    req[#req + 1] = body or ""
    ok, err = sock:send(concat(req))
    if not ok then
        sock:close()
        return nil, "send: " .. err
    end

    local line
    line, err = sock:receive("*l")
    if not line then
        sock:close()
        return nil, "status line: " .. err
    end
    local status = tonumber(line:match("^HTTP/%d%.%d (%d%d%d)"))
    if not status then
        sock:close()
        return nil, "bad status line: " .. line
    end
    local headers = {}
    while true do
        line, err = sock:receive("*l")
        if not line then
            sock:close()
            return nil, "headers: " .. err
        end
        if line == "" then
            break
        end
        local k, v = line:match("^([^:]+):%s*(.*)$")
        if k then
            headers[k:lower()] = v
        end
    end
    local res_body
    res_body, err = read_body(sock, headers)
    if res_body and opts.until_close then
        -- nginx closes the connection after the request's log phase: once
        -- it is closed, the request has been counted
        sock:receive("*a")
    end
    sock:close()
    if not res_body then
        return nil, "body: " .. err
    end
    return { status = status, headers = headers, body = res_body }
end


function _M.fanout(opts)
    local n = opts.n or 100
    local stats = { status = {}, errors = 0, pids = {}, npids = 0, err = nil }
    local next_i = 0

    local function worker()
        while next_i < n do
            next_i = next_i + 1
            local res, err = _M.request(opts)
            if not res then
                stats.errors = stats.errors + 1
                stats.err = err
            else
                stats.status[res.status] = (stats.status[res.status] or 0) + 1
                local pid = res.headers["x-worker-pid"]
                if pid then
                    if not stats.pids[pid] then
                        stats.npids = stats.npids + 1
                    end
                    stats.pids[pid] = (stats.pids[pid] or 0) + 1
                end
            end
        end
    end

    local threads = {}
    for i = 1, opts.concurrency or 10 do
        threads[i] = spawn(worker)
    end
    for _, th in ipairs(threads) do
        wait(th)
    end
    return stats
end


--- statuses(stats) -> "200x18 403x2": fanout()'s statuses with their
-- counts, in order.
function _M.statuses(stats)
    local codes = {}
    for code, count in pairs(stats.status) do
        codes[#codes + 1] = code .. "x" .. count
    end
    table.sort(codes)
    return table.concat(codes, " ")
end


--- fan(opts) -> "403x20 errors=0 workers>1=true", stats
-- fanout(opts) from client opts.ip (through X-Forwarded-For): the
-- statuses, the failed requests and whether more than one worker served
-- them.
function _M.fan(opts)
    opts.headers = { ["X-Forwarded-For"] = opts.ip }
    local s = _M.fanout(opts)
    return _M.statuses(s) .. " errors=" .. s.errors
           .. " workers>1=" .. tostring(s.npids > 1), s
end


return _M
