-- wrk script: every request comes from a random client among
-- $WARDEN_BENCH_CLIENTS (50000) in 100.64.0.0/10 (none of the benchmark's
-- lists or blocks covers it, so every request takes the full clean path),
-- through a trusted proxy's X-Forwarded-For.
math.randomseed(os.time())
local random, format = math.random, string.format
local clients = tonumber(os.getenv("WARDEN_BENCH_CLIENTS")) or 50000

request = function()
    local n = random(0, clients - 1)
    local ip = format("100.%d.%d.%d", 64 + math.floor(n / 65536) % 64,
                      math.floor(n / 256) % 256, n % 256)
    return wrk.format("GET", "/", { ["X-Forwarded-For"] = ip })
end
