# The detector: every rule at threshold-1 and at its threshold, counted
# across 4 workers, allowlist immunity, unblock, IPv6 grouping, monitor
# modes, expiry, escalation and events.
use lib 't/lib';
use TestWarden;

workers(4);
master_on();

# An http block whose warden has the given detector options. Requests to
# port 1990 (reuseport: spread over the 4 workers) answer with the status
# in their `s` argument.
sub conf {
    my ($detector, $extra) = @_;
    $extra //= '';
    return <<"_EOC_";
    lua_shared_dict warden 1m;
    init_by_lua_block {
        warden = require("resty.warden").new({
            trusted_proxies = { "127.0.0.1" },
            allowlist = { "198.51.100.1" },
            $extra
            detector = { $detector },
        })
        thttp = require "thttp"
        UA = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
        tdetect = require "tdetect"
        -- Sends each request in turn from client ip (t/lib/tdetect.lua).
        -- Returns the statuses; WORKERS is how many workers served them.
        function run(ip, paths, ua)
            local codes
            codes, WORKERS = tdetect.run(1990, ip, paths, ua or UA)
            return codes
        end
        rep = tdetect.rep
        -- Is ip refused now? One plain request.
        function probe(ip)
            return (run(ip, { "/ok" }))
        end
        function ev(ip)
            local e = tdetect.event(warden, ip)
            if not e then
                return "no event"
            end
            return table.concat({ e.type, e.rule, e.count, e.threshold,
                                  e.window, e.action }, " ")
        end
    }
    init_worker_by_lua_block { warden:init_worker() }
    server {
        listen 127.0.0.1:1990 reuseport;
        access_by_lua_block { warden:check() }
        log_by_lua_block { warden:log() }
        header_filter_by_lua_block {
            ngx.header["X-Worker-Pid"] = ngx.worker.pid()
        }
        location / {
            content_by_lua_block {
                ngx.status = tonumber(ngx.var.arg_s) or 200
                ngx.say("s")
            }
        }
        location = /capacity {
            content_by_lua_block {
                ngx.say(warden:stats().detector_capacity)
            }
        }
    }
_EOC_
}

plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: not_found trips at its threshold; harmless 404s and assets never count
--- http_config eval: ::conf('not_found_threshold = 4')
--- config
    location /t {
        content_by_lua_block {
            local ip = "192.0.2.1"
            run(ip, rep("/favicon.ico?s=404", 10))
            run(ip, rep("/.well-known/x?s=404", 3))
            run(ip, rep("/img/#.png?s=404", 10, true))
            ngx.say("harmless: ", probe(ip))
            run(ip, rep("/missing-#?s=404", 3, true))
            ngx.say("threshold-1: ", probe(ip))
            ngx.say("threshold: ", run(ip, { "/missing-4?s=404" }))
            ngx.say("then: ", probe(ip), " ", probe(ip))
            ngx.say(ev(ip))
            local _, info = warden:is_blocked(ip)
            -- a day, to the minute (requests have run since the trip)
            ngx.say(info.source, " ", info.reason, " ",
                    math.floor((info.expires - ngx.now()) / 60 + 0.5) * 60)
            ngx.say("others: ", probe("192.0.2.2"))
        }
    }
--- response_body
harmless: 200
threshold-1: 200
threshold: 404
then: 403 403
suspicious not_found 4 4 120 blocked for 1d
auto not_found: 4 in 2m 86400
others: 200
--- error_log
warden: auto-blocked 192.0.2.1 for 1d (not_found: 4 in 2m, offence 1)



=== TEST 2: auth_failure counts 401 and 403
--- http_config eval: ::conf('auth_failure_threshold = 3')
--- config
    location /t {
        content_by_lua_block {
            local ip = "192.0.2.3"
            run(ip, { "/login?s=401", "/admin?s=403" })
            ngx.say("threshold-1: ", probe(ip))
            run(ip, { "/login?s=401" })
            ngx.say("threshold: ", probe(ip))
            ngx.say(ev(ip))
        }
    }
--- response_body
threshold-1: 200
threshold: 403
auth_failed auth_failure 3 3 120 blocked for 1d



=== TEST 3: unique_paths counts distinct failed paths
--- http_config eval: ::conf('unique_paths_threshold = 6')
--- config
    location /t {
        content_by_lua_block {
            local ip = "192.0.2.4"
            run(ip, rep("/page-#?s=200", 20, true))   -- pages that exist
            run(ip, rep("/bad-#?s=400", 5, true))
            run(ip, rep("/bad-1?s=400", 5))          -- not distinct
            ngx.say("threshold-1: ", probe(ip))
            run(ip, { "/bad-6?s=400" })
            ngx.say("threshold: ", probe(ip))
            ngx.say(ev(ip))
        }
    }
--- response_body
threshold-1: 200
threshold: 403
scan_detected unique_paths 6 6 120 blocked for 1d



=== TEST 4: repeated_hits counts hits on one path
--- http_config eval: ::conf('repeated_hits_threshold = 8')
--- config
    location /t {
        content_by_lua_block {
            local ip = "192.0.2.5"
            run(ip, rep("/same?s=200", 7))
            run(ip, rep("/style.css", 20))   -- assets never count
            ngx.say("threshold-1: ", probe(ip))
            run(ip, { "/same?page=2" })       -- the query is not the path
            ngx.say("threshold: ", probe(ip))
            ngx.say(ev(ip))
        }
    }
--- response_body
threshold-1: 200
threshold: 403
rate_limited repeated_hits 8 8 120 blocked for 1d



=== TEST 5: rate counts documents and API calls
--- http_config eval: ::conf('rate_threshold = 12')
--- config
    location /t {
        content_by_lua_block {
            local ip = "192.0.2.6"
            run(ip, rep("/r#.js", 20, true))   -- assets never count
            run(ip, rep("/r#", 10, true))
            ngx.say("workers: ", WORKERS > 1)
            ngx.say("threshold-1: ", probe(ip))
            ngx.say("threshold: ", probe(ip))
            ngx.say("then: ", probe(ip))
            ngx.say(ev(ip))
        }
    }
--- response_body
workers: true
threshold-1: 200
threshold: 200
then: 403
rate_limited rate 12 12 120 blocked for 1d



=== TEST 6: scanner user agents are matched as tokens and blocked at once
--- http_config eval: ::conf('')
--- config
    location /t {
        content_by_lua_block {
            ngx.say(run("192.0.2.7", rep("/?s=200", 3), "Titanium/2.0 (iPhone)"))
            ngx.say(run("192.0.2.8", rep("/?s=404", 3), "sqlmap/1.7.2#stable (https://sqlmap.org)"))
            ngx.say(ev("192.0.2.8"))
            ngx.say(run("192.0.2.9", rep("/", 2), "Mozilla/5.00 (Nikto/2.1.6) (Evasions:None) (Test:000003)"))
        }
    }
--- response_body
200 200 200
404 403 403
scan_detected scanner_agent 1 1 120 blocked for 1d
200 403
--- error_log
warden: auto-blocked 192.0.2.8 for 1d (scanner_agent: 'sqlmap', offence 1)



=== TEST 7: probe paths count only when they fail
--- http_config eval: ::conf('probe_path_threshold = 2')
--- config
    location /t {
        content_by_lua_block {
            local ip = "192.0.2.10"
            run(ip, rep("/wp-login.php?s=200", 5))   -- a WordPress site
            run(ip, { "/app/.env?s=404" })
            ngx.say("threshold-1: ", probe(ip))
            run(ip, { "/.git/config?s=403" })
            ngx.say("threshold: ", probe(ip))
            ngx.say(ev(ip))
        }
    }
--- response_body
threshold-1: 200
threshold: 403
suspicious probe_path 2 2 120 blocked for 1d



=== TEST 8: auto_block_threshold: signals of any kind
--- http_config eval: ::conf('auto_block_threshold = 6, not_found_threshold = 5, auth_failure_threshold = 5, probe_path_threshold = 5')
--- config
    location /t {
        content_by_lua_block {
            local ip = "192.0.2.11"
            run(ip, { "/a?s=404", "/b?s=404", "/c?s=404", "/d?s=401",
                      "/e?s=401" })
            ngx.say("threshold-1: ", probe(ip))
            run(ip, { "/f?s=403" })
            ngx.say("threshold: ", probe(ip))
            ngx.say(ev(ip))
        }
    }
--- response_body
threshold-1: 200
threshold: 403
suspicious events 6 6 120 blocked for 1d



=== TEST 9: counted exactly across 4 workers, concurrently
--- http_config eval: ::conf('not_found_threshold = 60, auto_block_threshold = 0')
--- config
    location /t {
        content_by_lua_block {
            local ip = "192.0.2.12"
            local function burst(n)
                local s = thttp.fanout{ n = n, concurrency = 15, port = 1990,
                    path = "/x?s=404", until_close = true,
                    headers = { ["X-Forwarded-For"] = ip } }
                return s.npids, s.status[404], s.errors
            end
            ngx.say("burst: ", burst(59))
            ngx.say("threshold-1: ", probe(ip))
            ngx.say("threshold: ", run(ip, { "/x?s=404" }), " ", probe(ip))
            local s = warden:stats()
            ngx.say("trips: ", s.detector_trips, " auto_blocks: ", s.auto_blocks,
                    " contended: ", s.detector_contended)
        }
    }
--- response_body
burst: 4590
threshold-1: 200
threshold: 404 403
trips: 1 auto_blocks: 1 contended: 0



=== TEST 10: the allowlist always wins
--- http_config eval: ::conf('not_found_threshold = 3, rate_threshold = 5')
--- config
    location /t {
        content_by_lua_block {
            local ip = "198.51.100.1"
            ngx.say(run(ip, rep("/n#?s=404", 8, true), "sqlmap/1.7"))
            ngx.say(warden:is_blocked(ip), " ", #warden:events{ ip = ip })
            ngx.say(warden:stats().detector_observed)
        }
    }
--- response_body
404 404 404 404 404 404 404 404
false 0
0



=== TEST 11: unblock clears the counters; a repeat offender gets a longer block
--- http_config eval: ::conf('not_found_threshold = 3, auto_block_duration = "1h", repeat_offender_factor = 3, max_block_duration = "5h"')
--- config
    location /t {
        content_by_lua_block {
            local ip = "192.0.2.13"
            local function left()
                local _, info = warden:is_blocked(ip)
                return info and math.floor((info.expires - ngx.now()) / 3600 + 0.5)
            end
            for round = 1, 4 do
                -- blocked at the threshold; after round 1, the first 404
                -- of the round already makes 3 with the two below
                run(ip, rep("/m#?s=404", round == 1 and 3 or 1, true))
                ngx.say("round ", round, ": ", probe(ip), " ", left(), "h")
                ngx.say(warden:unblock(ip), " ", probe(ip))
                -- two more 404s: below the threshold again, because the
                -- unblock cleared the counters
                run(ip, rep("/again#?s=404", 2, true))
                ngx.say("after unblock: ", probe(ip))
            end
            ngx.say(warden:events{ ip = ip, limit = 1, type = "suspicious" }[1].action)
        }
    }
--- response_body
round 1: 403 1h
true 200
after unblock: 200
round 2: 403 3h
true 200
after unblock: 200
round 3: 403 5h
true 200
after unblock: 200
round 4: 403 5h
true 200
after unblock: 200
blocked for 5h (offence 4)



=== TEST 12: IPv6 clients are counted and blocked by /64; mapped addresses are IPv4
--- http_config eval: ::conf('not_found_threshold = 4')
--- config
    location /t {
        content_by_lua_block {
            run("2001:db8:1:2::1", { "/a?s=404" })
            run("2001:db8:1:2::2", { "/b?s=404" })
            run("2001:db8:1:2:ffff::3", { "/c?s=404" })
            ngx.say("threshold-1: ", probe("2001:db8:1:2::4"))
            run("2001:db8:1:2::5", { "/d?s=404" })
            ngx.say("threshold: ", probe("2001:db8:1:2::99"), " ",
                    probe("2001:db8:1:3::1"))
            local _, info = warden:is_blocked("2001:db8:1:2::77")
            ngx.say(info.target, " ", ev("2001:db8:1:2::/64"))
            run("::ffff:192.0.2.14", rep("/m#?s=404", 4, true))
            ngx.say(probe("192.0.2.14"), " ", (warden:is_blocked("192.0.2.14")))
        }
    }
--- response_body
threshold-1: 200
threshold: 403 200
2001:db8:1:2::/64 suspicious not_found 4 4 120 blocked for 1d
403 true



=== TEST 13: a rule in monitor mode reports without blocking
--- http_config eval: ::conf('not_found_threshold = 3, rules = { not_found = "monitor" }')
--- config
    location /t {
        content_by_lua_block {
            local ip = "192.0.2.15"
            run(ip, rep("/q#?s=404", 6, true))
            ngx.say(probe(ip), " ", (warden:is_blocked(ip)))
            ngx.say(ev(ip))
            ngx.say(#warden:events{ ip = ip })
        }
    }
--- response_body
200 false
suspicious not_found 3 3 120 monitor: would block
1
--- error_log
warden: 192.0.2.15 would have been auto-blocked (not_found: 3 in 2m); rule not_found is in monitor mode



=== TEST 14: blocking_mode = 0 applies to automatic blocks
--- http_config eval: ::conf('not_found_threshold = 3', 'blocking_mode = 0,')
--- config
    location /t {
        content_by_lua_block {
            local ip = "192.0.2.16"
            run(ip, rep("/q#?s=404", 3, true))
            ngx.say(probe(ip), " ", (warden:is_blocked(ip)))
        }
    }
--- response_body
200 true
--- error_log
warden: 192.0.2.16 would have been blocked (auto: not_found: 3 in 2m); blocking_mode is 0
; blocking_mode is 0, so it is only logged



=== TEST 15: automatic blocks expire
--- http_config eval: ::conf('not_found_threshold = 2, auto_block_duration = "2s"')
--- config
    location /t {
        content_by_lua_block {
            local ip = "192.0.2.17"
            run(ip, rep("/e#?s=404", 2, true))
            ngx.say(probe(ip))
            ngx.sleep(2.2)
            ngx.say(probe(ip))
        }
    }
--- response_body
403
200
--- timeout: 10



=== TEST 16: auto_block_enabled = false records events only
--- http_config eval: ::conf('not_found_threshold = 2, auto_block_enabled = false')
--- config
    location /t {
        content_by_lua_block {
            local ip = "192.0.2.18"
            run(ip, rep("/e#?s=404", 3, true))
            ngx.say(probe(ip), " ", ev(ip))
        }
    }
--- response_body
200 suspicious not_found 2 2 120 none: auto_block_enabled is false



=== TEST 17: events: filters, fields, errors; manual blocks are events too
--- http_config eval: ::conf('not_found_threshold = 2')
--- config
    location /t {
        content_by_lua_block {
            local t0 = ngx.now()
            warden:block("203.0.113.9", { duration = "15m", reason = "x" })
            run("192.0.2.19", { "/a/b?c=d&s=404", "/z?s=404" }, "curl/8.0")
            local e = warden:events{ ip = "192.0.2.19" }[1]
            ngx.say(e.type, " ", e.method, " ", e.path, " ", e.status, " ",
                    e.user_agent, " ", e.time >= t0)
            ngx.say(#warden:events(), " ", #warden:events{ limit = 1 })
            ngx.say(warden:events{ type = "blocked_ip" }[1].action)
            ngx.say(#warden:events{ since = ngx.now() + 60 })
            ngx.say(warden:events{ type = "nope" })
            ngx.say(warden:events{ limit = 0 })
            ngx.say(warden:events{ ip = "1.2.3" })
            ngx.say(warden:events("x"))
            ngx.say(warden:cleanup(0), " ", #warden:events())
        }
    }
--- response_body
suspicious GET /z?s=404 404 curl/8.0 true
2 1
blocked for 15m
0
niltype must be one of blocked_ip, rate_limited, auth_failed, suspicious, scan_detected, capture, challenge_issued, challenge_solved, challenge_failed, got 'nope'
nillimit must be a positive integer, got 0
nilip: invalid IP address or CIDR '1.2.3'
nilfilter must be a table, got string
2 0



=== TEST 18: bad detector options name the option and the value
--- http_config
    lua_shared_dict warden 1m;
    init_by_lua_block {
        local new = require("resty.warden").new
        local cases = {
            { detector = { not_found_threshold = 300 } },
            { detector = { detection_window = "abc" } },
            { detector = { rules = { rate = "loud" } } },
            { detector = { rules = { nope = "off" } } },
            { detector = { probe_paths = { "env" } } },
            { detector = { ipv6_prefix = 129 } },
            { detector = { tresholds = 1 } },
            { retention_days = -1 },
            { detector = "on" },
        }
        ERRS = {}
        for i, opts in ipairs(cases) do
            local ok, err = pcall(new, opts)
            ERRS[i] = ok and "ok" or err
        end
    }
--- config
    location /t {
        content_by_lua_block {
            for _, e in ipairs(ERRS) do
                ngx.say((e:gsub("^.-resty%.warden: ", ""):sub(1, 100)))
            end
        }
    }
--- response_body
opts.detector.not_found_threshold must be an integer from 0 (off) to 255, got 300
opts.detector.detection_window must be a duration like '90s', '15m', '24h' or '7d', got 'abc'
opts.detector.rules.rate must be "block", "challenge", "monitor" or "off", got 'loud'
opts.detector.rules.nope is not a rule (rules: scanner_agent, probe_path, auth_failure, not_found, u
opts.detector.probe_paths is invalid: path glob 'env' must start with '/' or '*'
opts.detector.ipv6_prefix must be a prefix length from 1 to 128, got 129
opts.detector.tresholds is not a known option (known: enabled, detection_window, not_found_threshold
opts.retention_days must be a number of days from 0 (keep until overwritten) to 3650, got -1
opts.detector must be a table (or true/false), got 'on'



=== TEST 19: memory pressure evicts old counters, counts and logs it; blocks stay
--- http_config eval: ::conf('not_found_threshold = 2, max_clients = 16')
--- config
    location /t {
        content_by_lua_block {
            run("192.0.2.20", rep("/p#?s=404", 2, true))
            for i = 1, 60 do
                run("10.9.0." .. i, { "/x" })
            end
            local s = warden:stats()
            ngx.say(s.detector_capacity, " ", s.detector_evictions > 0, " ",
                    s.detector_bytes_per_client)
            ngx.say(probe("192.0.2.20"))
            ngx.sleep(1.2)
        }
    }
--- response_body
16 true 320
403
--- error_log
warden: detector table full: evicted



=== TEST 20: counts and events survive nginx -s reload (the tables are kept)
--- http_config eval: ::conf('not_found_threshold = 4')
--- config
    location /t {
        content_by_lua_block {
            local ip = "192.0.2.21"
            local function pids()
                local seen = {}
                for _ = 1, 8 do
                    local res = thttp.request{ port = 1990, path = "/ok",
                        until_close = true,
                        headers = { ["X-Forwarded-For"] = "192.0.2.22" } }
                    if res then seen[res.headers["x-worker-pid"]] = true end
                end
                return seen
            end
            run(ip, rep("/r#?s=404", 3, true))
            warden:block("203.0.113.77", { duration = "1h" })
            local old = pids()
            local f = assert(io.open(ngx.config.prefix() .. "logs/nginx.pid"))
            local master = f:read("*n")
            f:close()
            os.execute("kill -HUP " .. master)
            local fresh = false
            for _ = 1, 50 do
                ngx.sleep(0.1)
                fresh = true
                for pid in pairs(pids()) do
                    if old[pid] then fresh = false end
                end
                if fresh then break end
            end
            ngx.say("new workers only: ", fresh)
            ngx.say("threshold-1: ", probe(ip))
            run(ip, { "/r4?s=404" })
            ngx.say("threshold: ", probe(ip))
            ngx.say(ev(ip))
            for _, e in ipairs(warden:events{ type = "blocked_ip" }) do
                if e.action ~= "refused" then ngx.say(e.ip) break end
            end
        }
    }
--- response_body
new workers only: true
threshold-1: 200
threshold: 403
suspicious not_found 4 4 120 blocked for 1d
203.0.113.77
--- timeout: 30



=== TEST 21: a reload that resizes the detector's table gets a new one
--- http_config eval: ::conf('not_found_threshold = 4, max_clients = 64')
--- config
    location /t {
        content_by_lua_block {
            local function capacities()
                local seen = {}
                for _ = 1, 8 do
                    local res = thttp.request{ port = 1990,
                                               path = "/capacity" }
                    if res then seen[#seen + 1] = res.body:sub(1, -2) end
                end
                return table.concat(seen, " ")
            end
            ngx.say(capacities())
            local conf = ngx.config.prefix() .. "conf/nginx.conf"
            local f = assert(io.open(conf))
            local text = f:read("*a"):gsub("max_clients = 64", "max_clients = 128")
            f:close()
            f = assert(io.open(conf, "w"))
            f:write(text)
            f:close()
            f = assert(io.open(ngx.config.prefix() .. "logs/nginx.pid"))
            local master = f:read("*n")
            f:close()
            os.execute("kill -HUP " .. master)
            local now
            for _ = 1, 50 do
                ngx.sleep(0.1)
                now = capacities()
                if now == "128 128 128 128 128 128 128 128" then break end
            end
            ngx.say(now)
            run("192.0.2.23", rep("/r#?s=404", 4, true))
            ngx.say(probe("192.0.2.23"))
        }
    }
--- response_body
64 64 64 64 64 64 64 64
128 128 128 128 128 128 128 128
403
--- timeout: 30
