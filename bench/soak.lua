-- wrk script for bench/soak.sh: a mix of clients, all through a trusted
-- proxy's X-Forwarded-For, each kind in its own range so that the status
-- it gets is known:
--   1.5%  attackers probing missing paths (404, then 403 once the detector
--         blocks them); 64 new ones every 10 s, in 198.18.0.0/16
--   0.5%  scanners (user agent sqlmap), 64 new ones every 10 s, 198.19/16
--   2%    clients with a bad iprepd reputation, 100.127.0.0/24 (429)
--   1%    denylisted clients, 198.51.100.0/24 (403)
--   2%    clients the API blocks and unblocks, 203.0.113.0/24 (403 or 200)
--   1%    the allowlisted 192.0.2.1 (200)
--   92%   $WARDEN_BENCH_CLIENTS (50000) clean clients in 100.64.0.0/10 (200)
-- Clients that are not attackers spread their requests over 50 pages, as
-- visitors do: at ~50k requests/s, 50000 clients hitting "/" alone would
-- each pass the detector's repeated_hits threshold (120 in 2m) and all be
-- blocked, rightly.
-- done() prints one line per status and the socket errors, for soak.sh.
math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)"), 16) % 1000)
local random, format, floor, time = math.random, string.format, math.floor, os.time
local clients = tonumber(os.getenv("WARDEN_BENCH_CLIENTS")) or 50000
local pages = {}
for i = 1, 50 do pages[i] = "/page/" .. i end
local function page() return pages[random(50)] end

local threads = {}
function setup(thread)
    threads[#threads + 1] = thread
end

statuses = {}

local function req(ip, path, ua)
    return wrk.format("GET", path, { ["X-Forwarded-For"] = ip,
                                     ["User-Agent"] = ua or "soak" })
end

request = function()
    local r = random(1000)
    if r <= 15 then
        local wave = floor(time() / 10)
        return req(format("198.18.%d.%d", wave % 256, random(0, 63)),
                   format("/nope/%d", random(1000000)))
    elseif r <= 20 then
        local wave = floor(time() / 10)
        return req(format("198.19.%d.%d", wave % 256, random(0, 63)), "/",
                   "sqlmap/1.7.2#stable (https://sqlmap.org)")
    elseif r <= 40 then
        return req(format("100.127.0.%d", random(0, 255)), page())
    elseif r <= 50 then
        return req(format("198.51.100.%d", random(0, 255)), page())
    elseif r <= 70 then
        return req(format("203.0.113.%d", random(0, 249)), page())
    elseif r <= 80 then
        return req("192.0.2.1", page())
    end
    local n = random(0, clients - 1)
    return req(format("100.%d.%d.%d", 64 + floor(n / 65536) % 63,
                      floor(n / 256) % 256, n % 256), page())
end

response = function(status)
    statuses[status] = (statuses[status] or 0) + 1
end

done = function(summary)
    local total = {}
    for _, t in ipairs(threads) do
        for status, n in pairs(t:get("statuses")) do
            total[status] = (total[status] or 0) + n
        end
    end
    for status, n in pairs(total) do
        io.write(format("status %d %d\n", status, n))
    end
    local e = summary.errors
    io.write(format("socket_errors connect=%d read=%d write=%d timeout=%d status=%d\n",
                    e.connect, e.read, e.write, e.timeout, e.status))
    io.write(format("requests %d seconds %.1f\n", summary.requests,
                    summary.duration / 1e6))
end
