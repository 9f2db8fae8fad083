-- wrk script: every request comes from a random client in 100.64.0.0/10
-- (none of the benchmark's lists or blocks covers it, so every request
-- takes the full clean path), through a trusted proxy's X-Forwarded-For.
math.randomseed(os.time())
local random, format = math.random, string.format

request = function()
    local ip = format("100.%d.%d.%d", random(64, 127), random(0, 255),
                      random(0, 255))
    return wrk.format("GET", "/", { ["X-Forwarded-For"] = ip })
end
