# block() / unblock() / is_blocked() / blocked(): enforced by every worker
# from the next request, with TTLs, across reloads, never dropped silently.
use lib 't/lib';
use TestWarden;

workers(4);
master_on();

# A second server with reuseport spreads connections over all 4 workers.
our $HttpConfig = <<'_EOC_';
    lua_shared_dict warden 1m;
    init_by_lua_block {
        warden = require("resty.warden").new({
            trusted_proxies = { "127.0.0.1" },
            detector = false,  -- 200 requests on one path would trip it
        })
        thttp = require "thttp"
        -- Fires n requests from client `ip`, each on its own connection;
        -- returns a summary ("403x200 errors=0 workers=4") and the stats.
        function fan_stats(ip, n)
            local s = thttp.fanout({ n = n or 200, concurrency = 20,
                                     port = 1990, path = "/p",
                                     headers = { ["X-Forwarded-For"] = ip } })
            return thttp.statuses(s) .. " errors=" .. s.errors
                   .. " workers=" .. s.npids, s
        end
        function fan(ip, n)
            return (fan_stats(ip, n))
        end
    }
    init_worker_by_lua_block { warden:init_worker() }
    server {
        listen 127.0.0.1:1990 reuseport;
        location /p {
            access_by_lua_block { warden:check() }
            log_by_lua_block { warden:log() }
            content_by_lua_block { ngx.say("passed") }
            header_filter_by_lua_block {
                ngx.header["X-Worker-Pid"] = ngx.worker.pid()
            }
        }
    }
_EOC_

plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: block, is_blocked, blocked, unblock
--- http_config eval: $::HttpConfig
--- config
    location /t {
        content_by_lua_block {
            ngx.say(warden:block("192.0.2.10", { duration = "15m", reason = "test" }))
            local b, info = warden:is_blocked("192.0.2.10")
            ngx.say(b, " ", info.target, " ", info.source, " ", info.reason, " ",
                    math.floor(info.expires - ngx.now() + 0.5))
            ngx.say(warden:block("198.18.0.0/15", { reason = "range" }))
            b, info = warden:is_blocked("198.19.1.1")
            ngx.say(b, " ", info.target, " ", info.source, " ", info.expires)
            ngx.say(warden:block("::ffff:192.0.2.20", { duration = 0 }))
            b, info = warden:is_blocked("192.0.2.20")
            ngx.say(b, " ", info.target, " ", info.expires)
            for _, e in ipairs(warden:blocked()) do
                ngx.say(e.target, " ", e.source, " ", e.reason, " ",
                        e.expires == 0 and "permanent" or "expires")
            end
            ngx.say(warden:unblock("192.0.2.10"))
            ngx.say(warden:is_blocked("192.0.2.10"))
            ngx.say(warden:unblock("192.0.2.10"))
            ngx.say(warden:unblock("198.18.0.0/15"))
            ngx.say(warden:is_blocked("198.19.1.1"))
        }
    }
--- response_body
true192.0.2.10
true 192.0.2.10 manual test 900
true198.18.0.0/15
true 198.18.0.0/15 manual 0
true192.0.2.20
true 192.0.2.20 0
192.0.2.10 manual test expires
192.0.2.20 manual  permanent
198.18.0.0/15 manual range permanent
true
false
nil192.0.2.10 is not blocked
true
false



=== TEST 2: bad input is nil, err
--- http_config eval: $::HttpConfig
--- config
    location /t {
        content_by_lua_block {
            ngx.say(warden:block("nope"))
            ngx.say(warden:block("10.0.0.0/33"))
            ngx.say(warden:block(nil))
            ngx.say(warden:block("192.0.2.1", { duration = "abc" }))
            ngx.say(warden:block("192.0.2.1", { duration = -5 }))
            ngx.say(warden:block("192.0.2.1", { duration = true }))
            ngx.say(warden:block("192.0.2.1", "15m"))
            ngx.say(warden:unblock("fe80::1%eth0"))
            ngx.say(warden:is_blocked("1.2.3"))
            ngx.say(#warden:blocked())
        }
    }
--- response_body
nilinvalid IP address or CIDR 'nope'
nilinvalid CIDR '10.0.0.0/33': prefix length must be 0 to 32
niltarget must be a string, got nil
nilduration must be a duration like '90s', '15m', '24h' or '7d', got 'abc'
nilduration must be a number of seconds >= 0 or a string like '90s', '15m', '24h', '7d', got -5
nilduration must be a number of seconds >= 0 or a string like '90s', '15m', '24h', '7d', got boolean
nilopts must be a table, got string
nilinvalid IP address 'fe80::1%eth0': zone ids (%...) are not allowed
nilinvalid IP address '1.2.3'
0



=== TEST 3: a block is enforced by every worker from the next request
--- http_config eval: $::HttpConfig
--- config
    location /t {
        content_by_lua_block {
            ngx.say("before: ", fan("192.0.2.30"))
            warden:block("192.0.2.30")
            ngx.say("blocked: ", fan("192.0.2.30"))
            ngx.say("others: ", fan("192.0.2.31"))
            warden:unblock("192.0.2.30")
            ngx.say("unblocked: ", fan("192.0.2.30"))
        }
    }
--- response_body
before: 200x200 errors=0 workers=4
blocked: 403x200 errors=0 workers=4
others: 200x200 errors=0 workers=4
unblocked: 200x200 errors=0 workers=4
--- timeout: 20



=== TEST 4: a range block covers its addresses in every worker
--- http_config eval: $::HttpConfig
--- config
    location /t {
        content_by_lua_block {
            warden:block("2001:db8:1::/48")
            ngx.say(fan("2001:db8:1::7"))
            ngx.say(fan("2001:db8:2::7"))
            warden:block("192.0.2.0/24")
            ngx.say(fan("::ffff:192.0.2.99"))
        }
    }
--- response_body
403x200 errors=0 workers=4
200x200 errors=0 workers=4
403x200 errors=0 workers=4
--- timeout: 20



=== TEST 5: TTLs expire on time; permanent blocks stay
--- http_config eval: $::HttpConfig
--- config
    location /t {
        content_by_lua_block {
            ngx.update_time()
            local t0 = ngx.now()
            warden:block("192.0.2.40", { duration = 1 })
            -- long enough to be in force after the second line's fans on a
            -- loaded machine; the third line waits for its end
            warden:block("192.0.2.41", { duration = "5s" })
            warden:block("192.0.2.42")
            ngx.say(fan("192.0.2.40", 40), " | ", fan("192.0.2.42", 40))
            ngx.sleep(1.1)
            ngx.say(fan("192.0.2.40", 40), " | ", fan("192.0.2.41", 40))
            ngx.update_time()
            ngx.sleep(math.max(0, t0 + 5.1 - ngx.now()))
            ngx.say(fan("192.0.2.41", 40), " | ", fan("192.0.2.42", 40))
            ngx.say(warden:is_blocked("192.0.2.40"), " ", #warden:blocked())
        }
    }
--- response_body
403x40 errors=0 workers=4 | 403x40 errors=0 workers=4
200x40 errors=0 workers=4 | 403x40 errors=0 workers=4
200x40 errors=0 workers=4 | 403x40 errors=0 workers=4
false 1
--- timeout: 20



=== TEST 6: blocks survive nginx -s reload, with their remaining time
--- http_config eval: $::HttpConfig
--- config
    location /t {
        content_by_lua_block {
            warden:block("192.0.2.50")
            warden:block("192.0.2.51", { duration = "1h", reason = "ttl" })
            local _, before = warden:is_blocked("192.0.2.51")
            local _, s = fan_stats("192.0.2.50", 40)
            local old = s.pids
            local f = assert(io.open(ngx.config.prefix() .. "logs/nginx.pid"))
            local master = f:read("*n")
            f:close()
            os.execute("kill -HUP " .. master)
            -- wait until all 4 new workers answer and no old one does:
            -- the master signals the old ones to stop accepting only
            -- after it has started the new ones, so a small sample of
            -- fresh pids alone does not prove the old ones are gone
            local fresh, npids
            for _ = 1, 100 do
                ngx.sleep(0.1)
                local _, s2 = fan_stats("192.0.2.52", 40)
                fresh, npids = 0, s2.npids
                for pid in pairs(s2.pids) do
                    if not old[pid] then fresh = fresh + 1 end
                end
                if fresh == 4 and npids == 4 then break end
            end
            ngx.say("new workers only: ", fresh == 4 and npids == 4)
            ngx.say(fan("192.0.2.50", 100))
            ngx.say(fan("192.0.2.51", 100))
            ngx.say(fan("192.0.2.52", 100))
            local _, after = warden:is_blocked("192.0.2.51")
            ngx.say(after.reason, " ", after.expires == before.expires)
        }
    }
--- response_body
new workers only: true
403x100 errors=0 workers=4
403x100 errors=0 workers=4
200x100 errors=0 workers=4
ttl true
--- timeout: 40



=== TEST 7: a full shared dict refuses a block with an error, and drops none
--- http_config
    lua_shared_dict warden 16k;
    init_by_lua_block {
        warden = require("resty.warden").new({})
    }
    init_worker_by_lua_block { warden:init_worker() }
--- config
    location /t {
        content_by_lua_block {
            local n, err = 0
            for i = 1, 10000 do
                local ok
                ok, err = warden:block("10.9." .. math.floor(i / 256) .. "." .. i % 256,
                                       { reason = string.rep("x", 40) })
                if not ok then break end
                n = n + 1
            end
            ngx.say(n > 10, " ", (err:gsub("10%.9%.%d+%.%d+", "X")))
            local kept = 0
            for i = 1, n do
                if warden:is_blocked("10.9." .. math.floor(i / 256) .. "." .. i % 256) then
                    kept = kept + 1
                end
            end
            ngx.say(kept == n, " ", #warden:blocked() == n)
            ngx.say(warden:stats().dict_full)
        }
    }
--- response_body
true shared dict 'warden' is full (no memory): cannot block X
true true
1
--- error_log
is full (no memory): cannot block



=== TEST 8: a full shared dict: counters are refused, never stored by evicting blocks
--- http_config
    lua_shared_dict warden 16k;
    init_by_lua_block {
        warden = require("resty.warden").new{
            trusted_proxies = { "127.0.0.1" },
            sites = { shop = { rate_limit = 100 } },
        }
        thttp = require "thttp"
    }
    init_worker_by_lua_block { warden:init_worker() }
    server {
        listen 127.0.0.1:1990;
        access_by_lua_block { warden:check{ site = "shop" } }
        log_by_lua_block { warden:log() }
        location / { content_by_lua_block { ngx.say("ok") } }
    }
--- config
    location /t {
        content_by_lua_block {
            local function ip(i)
                return "10.9." .. math.floor(i / 256) .. "." .. i % 256
            end
            local n = 0
            while warden:block(ip(n + 1), { reason = "filler" }) do
                n = n + 1
            end
            -- and fill what is left with keys the size of a counter
            local dict, f = ngx.shared.warden, 0
            while dict:safe_set("f|" .. f, f) do f = f + 1 end
            -- 100 new clients, each needing a rate-limit counter, and each
            -- a scanner: an offence counter and an automatic block
            local statuses = {}
            for i = 1, 100 do
                local res = thttp.request{ port = 1990, path = "/",
                    headers = { ["X-Forwarded-For"] = "10.8.0." .. i,
                                ["User-Agent"] = "sqlmap/1.7" } }
                statuses[res.status] = (statuses[res.status] or 0) + 1
            end
            -- in the dict itself, the source every worker re-reads
            local kept = 0
            for i = 1, n do
                if dict:get("b|" .. ip(i)) then kept = kept + 1 end
            end
            ngx.say("every request answered 200: ", statuses[200] == 100)
            ngx.say("blocks kept: ", kept == n and n > 10, " ",
                    #warden:blocked() == n)
            ngx.say("refused blocks counted: ", warden:stats().dict_full > 1)
            -- refusals are logged once, then once every 10 s with a count
            warden:block("10.7.0.2")  -- refused within 10 s: not logged
            ngx.sleep(10.1)
            ngx.say((select(2, warden:block("10.7.0.1"))))
            local lines = 0
            for l in io.lines(ngx.config.prefix() .. "logs/error.log") do
                if l:find("is full (no memory)", 1, true) then
                    lines = lines + 1
                end
            end
            -- at most one line per worker (4), and this worker's second
            ngx.say("lines: ", lines <= 5, ", refusals: ",
                    warden:stats().dict_full > 100)
        }
    }
--- response_body
every request answered 200: true
blocks kept: true true
refused blocks counted: true
shared dict 'warden' is full (no memory): cannot block 10.7.0.1
lines: true, refusals: true
--- error_log eval
qr/is full \(no memory\): cannot block 10\.7\.0\.1 \(and \d+ more in the last \d+s\)/
--- no_error_log
[alert]
--- timeout: 30



=== TEST 9: a worker that misses a journal entry re-reads every block
--- http_config eval: $::HttpConfig
--- config
    location /t {
        content_by_lua_block {
            warden:block("192.0.2.60")
            warden:block("192.0.2.61")
            local dict = ngx.shared.warden
            local v = warden.engine:version()  -- the journal's newest entry
            dict:delete("j|" .. v)
            dict:delete("j|" .. (v - 1))
            ngx.say(fan("192.0.2.60", 100))
            ngx.say(fan("192.0.2.61", 100))
            ngx.say(warden:stats().full_syncs > 0)
        }
    }
--- response_body
403x100 errors=0 workers=4
403x100 errors=0 workers=4
true
--- timeout: 20



=== TEST 10: counters leave the dict's last pages to blocks: a long attack from many addresses is still blocked
--- http_config
    lua_shared_dict warden 256k;
    init_by_lua_block {
        warden = require("resty.warden").new{
            trusted_proxies = { "127.0.0.1" },
        }
        thttp = require "thttp"
    }
    init_worker_by_lua_block { warden:init_worker() }
    server {
        listen 127.0.0.1:1990;
        access_by_lua_block { warden:check() }
        log_by_lua_block { warden:log() }
        location / { content_by_lua_block { ngx.say("ok") } }
    }
--- config
    location /t {
        content_by_lua_block {
            local dict = ngx.shared.warden
            -- the offences of a long attack from many addresses, each kept
            -- 30 days: created until the reserve is reached, then refused
            local n = 0
            while warden.engine:counter(
                    "o|10.1." .. math.floor(n / 256) .. "." .. n % 256,
                    1, 30 * 86400) do
                n = n + 1
            end
            ngx.say("counters: ", n > 500, ", refused: ",
                    warden:stats().counters_refused == 1,
                    ", room left: ", dict:free_space() >= 256 * 1024 / 8 - 4096)
            -- an existing counter still counts
            ngx.say((warden.engine:counter("o|10.1.0.0", 1)))
            -- 50 new scanners: each is blocked (its offence counts as a
            -- first one), and then refused
            for i = 1, 50 do
                thttp.request{ port = 1990, path = "/", headers = {
                    ["X-Forwarded-For"] = "10.8.0." .. i,
                    ["User-Agent"] = "sqlmap/1.7" } }
            end
            ngx.sleep(0.2)  -- the last log phases
            local blocked = 0
            for i = 1, 50 do
                local res = thttp.request{ port = 1990, path = "/", headers = {
                    ["X-Forwarded-For"] = "10.8.0." .. i } }
                if res.status == 403 then blocked = blocked + 1 end
            end
            ngx.say("scanners blocked: ", blocked, ", dict_full: ",
                    warden:stats().dict_full)
            ngx.say("counters refused: ", warden:stats().counters_refused > 50)
        }
    }
--- response_body
counters: true, refused: true, room left: true
2
scanners blocked: 50, dict_full: 0
counters refused: true
--- error_log
offence and rate-limit counters are not created
--- no_error_log
is full (no memory)
--- timeout: 20



=== TEST 11: expired blocks behind a permanent one are freed: the dict does not fill up with them
--- http_config
    lua_shared_dict warden 128k;
    init_by_lua_block {
        warden = require("resty.warden").new{ detector = false }
    }
    init_worker_by_lua_block { warden:init_worker() }
--- config
    location /t {
        content_by_lua_block {
            local dict = ngx.shared.warden
            -- nginx frees expired keys only from the least recently used
            -- end, and stops at a live one: here a permanent block
            warden:block("192.0.2.1")
            local function fill(round)
                local n = 0
                while warden:block("10." .. round .. "." .. math.floor(n / 256)
                                   .. "." .. n % 256, { duration = 1 }) do
                    n = n + 1
                end
                return n
            end
            local n = fill(1)
            ngx.sleep(1.2)
            -- a write that finds no room frees the expired keys and retries
            local ok, err = warden:block("10.9.9.9", { duration = 1 })
            ngx.say(n > 100, " ", ok, " ", err)
            ngx.say(warden:is_blocked("192.0.2.1"), " ", #warden:blocked())
            -- and worker 0 frees them every 10 s without being asked
            fill(2)
            ngx.say((dict:safe_set("x", "a block's worth of bytes", 1)))
            ngx.sleep(10.5)
            ngx.say((dict:safe_set("x", "a block's worth of bytes", 1)))
            ngx.say(warden:stats().dict_full > 1)
        }
    }
--- response_body
true true 10.9.9.9
true 2
false
true
true
--- error_log
is full (no memory): cannot block 10.1.
--- timeout: 25
