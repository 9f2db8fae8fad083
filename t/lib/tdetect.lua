-- Helpers of the detector's tests (t/05-detector.t, t/17-detection.t):
-- requests sent one after another from one client, and the detector's
-- newest event about a client.

local thttp = require "thttp"

local _M = {}


--- run(port, ip, paths, ua, headers?) -> "200 200 403", workers
-- Sends a request for each path in turn from client `ip` (through
-- X-Forwarded-For), each on its own connection, waiting for nginx to
-- close it (after its log phase). Returns the statuses and how many
-- workers served them (by their X-Worker-Pid header).
function _M.run(port, ip, paths, ua, headers)
    local codes, pids, n = {}, {}, 0
    for _, p in ipairs(paths) do
        local h = { ["X-Forwarded-For"] = ip, ["User-Agent"] = ua }
        for k, v in pairs(headers or {}) do
            h[k] = v
        end
        local res, err = thttp.request{ port = port, path = p,
                                        until_close = true, headers = h }
        codes[#codes + 1] = res and res.status or err
        local pid = res and res.headers["x-worker-pid"]
        if pid and not pids[pid] then
            pids[pid] = true
            n = n + 1
        end
    end
    return table.concat(codes, " "), n
end


--- rep(path, n, distinct?) -> { path, ... }: n times `path`; with
-- `distinct`, each with its "#" replaced by its number.
function _M.rep(path, n, distinct)
    local t = {}
    for i = 1, n do
        t[i] = distinct and path:gsub("#", i) or path
    end
    return t
end


--- event(warden, ip) -> the newest event of the detector's about `ip`
-- (not the blocked_ip events of the refused requests that follow a
-- block), or nil.
function _M.event(warden, ip)
    for _, e in ipairs(warden:events{ ip = ip, limit = 50 }) do
        if e.action ~= "refused" then
            return e
        end
    end
end


return _M
