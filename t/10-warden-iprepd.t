# Reputation inside warden:check() (iprepd = { ... } in warden.new), and
# detector blocks reported to iprepd as violations.
use lib 't/lib';
use TestWarden;
use StatsdListener;

workers(4);
master_on();

# A statsd listener on 127.0.0.1:1999 (t/lib/StatsdListener.pm).
our $StatsdFile = StatsdListener::start(1999);

sub conf {
    my ($opts) = @_;
    return <<"_EOC_";
    lua_shared_dict warden 1m;
    lua_shared_dict iprepd 1m;
    init_by_lua_block {
        warden = require("resty.warden").new({
            trusted_proxies = { "127.0.0.1" },
            allowlist = { "198.51.100.1" },
            detector = { not_found_threshold = 3 },
            iprepd = { url = "http://127.0.0.1:1997", api_key = "secret",
                       threshold = 50, timeout = 3000,
                       violations = { not_found = "fxa:request_blacklisted_ip" } },
            $opts
        })
        thttp = require "thttp"
        STATSD_FILE = "$StatsdFile"
        function visit(ip, path)
            local res, err = thttp.request{ port = 1998, path = path or "/",
                until_close = true, headers = { ["X-Forwarded-For"] = ip } }
            return res and res.status .. (res.status == 200 and " " .. res.body or "") or err
        end
    }
    init_worker_by_lua_block { warden:init_worker() }
    server {
        listen 127.0.0.1:1997;
        location ~ ^/type/ip/(?<ip>.+)\$ {
            content_by_lua_block {
                ngx.shared.iprepd:incr("get " .. ngx.var.ip, 1, 0)
                local reps = { ["192.0.2.10"] = 20, ["192.0.2.20"] = 90 }
                local r = reps[ngx.var.ip]
                if not r then return ngx.exit(404) end
                ngx.say('{"reputation": ', r, '}')
            }
        }
        location ~ ^/violations/type/ip/(?<ip>.+)\$ {
            content_by_lua_block {
                ngx.req.read_body()
                ngx.shared.iprepd:set("put " .. ngx.var.ip,
                    ngx.req.get_method() .. " " .. ngx.var.http_authorization
                    .. " " .. ngx.req.get_body_data())
                ngx.status = 204
            }
        }
    }
    server {
        listen 127.0.0.1:1998 reuseport;
        access_by_lua_block { warden:check() }
        log_by_lua_block { warden:log() }
        location / {
            content_by_lua_block {
                if ngx.var.arg_s then return ngx.exit(tonumber(ngx.var.arg_s)) end
                ngx.print(ngx.var.http_x_foxsec_ip_reputation or "-", " ",
                          ngx.var.http_x_foxsec_block)
            }
        }
    }
_EOC_
}

plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: reputation after the lists and blocks, one lookup per address
--- http_config eval: ::conf('')
--- config
    location /t {
        content_by_lua_block {
            ngx.say(visit("192.0.2.20"))
            ngx.say(visit("192.0.2.10"))
            ngx.say(visit("192.0.2.30"))
            ngx.say(visit("198.51.100.1"))     -- allowlisted: never asked
            warden:block("192.0.2.40")
            ngx.say(visit("192.0.2.40"))       -- blocked: never asked
            for _ = 1, 20 do visit("192.0.2.20") end
            local d = ngx.shared.iprepd
            ngx.say(d:get("get 192.0.2.20"), " ", d:get("get 198.51.100.1"),
                    " ", d:get("get 192.0.2.40"))
        }
    }
--- response_body
200 90 false
429
200 100 false
200 - nil
403
1 nil nil
--- error_log
192.0.2.10 rejected with a reputation of 20



=== TEST 2: blocking_mode = 0 applies to reputation too
--- http_config eval: ::conf('blocking_mode = 0,')
--- config
    location /t {
        content_by_lua_block {
            ngx.say(visit("192.0.2.10"))
        }
    }
--- response_body
200 20 true
--- error_log
192.0.2.10 is below threshold with a reputation of 20



=== TEST 3: a detector block is reported to iprepd as a violation
--- http_config eval: ::conf('')
--- config
    location /t {
        content_by_lua_block {
            for i = 1, 3 do visit("192.0.2.60", "/nope" .. i .. "?s=404") end
            ngx.say(visit("192.0.2.60"))
            -- reported from a timer: waited for
            local put = require("twait").until_true(function()
                return ngx.shared.iprepd:get("put 192.0.2.60")
            end)
            local method, auth, body = put:match("^(%S+) (APIKey %S+) (.*)$")
            local v = require("cjson").decode(body)
            ngx.say(method, " ", auth, " ", v.object, " ", v.type, " ", v.violation)
        }
    }
--- response_body
403
PUT APIKey secret 192.0.2.60 ip fxa:request_blacklisted_ip



=== TEST 4: bad iprepd options name the option
--- http_config
    lua_shared_dict warden 1m;
    init_by_lua_block {
        local ok, err = pcall(require("resty.warden").new,
                              { iprepd = { api_key = "k", threshold = 500 } })
        ERR = err
    }
--- config
    location /t {
        content_by_lua_block { ngx.say((ERR:gsub("^.-resty%.warden: ", ""))) }
    }
--- response_body
opts.iprepd.threshold must be a number from 0 to 100, got 500



=== TEST 5: with statsd_host, iprepd's metrics and warden's own counters reach statsd
--- http_config eval: ::conf('') =~ s/timeout = 3000,/timeout = 3000, statsd_host = "127.0.0.1", statsd_port = 1999, statsd_flush_timer = 1,/r
--- config
    location /t {
        content_by_lua_block {
            -- only what this block sends (blocks may run in any order)
            io.open(STATSD_FILE, "w"):close()
            -- worker 0 takes its baseline in init_worker: let it start
            ngx.sleep(0.5)
            for i = 1, 5 do visit("192.0.2.20") end
            visit("192.0.2.10")
            for i = 1, 3 do visit("192.0.2.61", "/n" .. i .. "?s=404") end
            local function sum()
                local sums = {}
                for line in io.lines(STATSD_FILE) do
                    local name, n = line:match("^(.-):(%d+)|c$")
                    if name then sums[name] = (sums[name] or 0) + tonumber(n) end
                end
                return sums
            end
            -- both workers flush every second: until the counts are in,
            -- then one more flush for anything counted twice
            require("twait").until_true(function()
                local s = sum()
                return (s["warden.passed"] or 0) >= 9 and s["warden.detector_trips"]
                       and s["iprepd.status.rejected"]
            end, 8)
            ngx.sleep(1.2)
            local sums = sum()
            for _, k in ipairs({ "iprepd.status.rejected", "iprepd.cache_hit",
                                 "warden.passed", "warden.auto_blocks",
                                 "warden.detector_trips" }) do
                ngx.say(k, " ", sums[k])
            end
        }
    }
--- response_body
iprepd.status.rejected 1
iprepd.cache_hit 6
warden.passed 9
warden.auto_blocks 1
warden.detector_trips 1
--- error_log
192.0.2.10 rejected with a reputation of 20
--- timeout: 20



=== TEST 6: statsd_host at the top level: counters, gauges, lookup errors
--- http_config eval
"    lua_shared_dict warden 1m;
    init_by_lua_block {
        warden = require('resty.warden').new({
            statsd_host = '127.0.0.1', statsd_port = 1999,
            statsd_flush_timer = 1,
            trusted_proxies = { '127.0.0.1' },
            -- nothing listens on port 1: every lookup fails (open)
            iprepd = { url = 'http://127.0.0.1:1', timeout = 200, threshold = 50, api_key = 'k' },
        })
        thttp = require 'thttp'
        STATSD_FILE = '$::StatsdFile'
    }
    init_worker_by_lua_block { warden:init_worker() }
    server {
        listen 127.0.0.1:1998 reuseport;
        access_by_lua_block { warden:check() }
        location / { content_by_lua_block { ngx.say('ok') } }
    }
"
--- config
    location /t {
        content_by_lua_block {
            io.open(STATSD_FILE, "w"):close()
            ngx.sleep(0.5)
            warden:block("192.0.2.90")
            for i = 1, 3 do
                thttp.request{ port = 1998, path = "/",
                               headers = { ["X-Forwarded-For"] = "192.0.2." .. i } }
            end
            local function read()
                local sums, gauges = {}, {}
                for line in io.lines(STATSD_FILE) do
                    local name, n, kind = line:match("^(.-):([%d.]+)|(%a+)$")
                    if kind == "c" then
                        sums[name] = (sums[name] or 0) + tonumber(n)
                    elseif kind == "g" then
                        gauges[name] = tonumber(n)
                    end
                end
                return sums, gauges
            end
            -- as in TEST 5: until the counts are in, then one more flush
            require("twait").until_true(function()
                local s, g = read()
                return (s["warden.passed"] or 0) >= 3
                       and (s["warden.lookup_errors"] or 0) >= 3
                       and g["warden.blocked_addresses"]
            end, 8)
            ngx.sleep(1.2)
            local sums, gauges = read()
            ngx.say("warden.passed ", sums["warden.passed"])
            ngx.say("warden.lookup_errors ", sums["warden.lookup_errors"])
            ngx.say("warden.blocked_addresses ", gauges["warden.blocked_addresses"])
            ngx.say("shm free > 0: ", (gauges["warden.shm_free_bytes"] or 0) > 0)
        }
    }
--- response_body
warden.passed 3
warden.lookup_errors 3
warden.blocked_addresses 1
shm free > 0: true
--- error_log
Error with request to iprepd
--- timeout: 20



=== TEST 7: should_block() and threat_score() use the reputation's verdict
--- http_config eval: ::conf('blocking_mode = 0,')
--- config
    location /t {
        content_by_lua_block {
            ngx.say(warden:should_block("192.0.2.10"))
            ngx.say(warden:should_block("192.0.2.20"))
            ngx.say(warden:threat_score("192.0.2.10"))
            ngx.say(warden:should_block("198.51.100.1"))  -- allowlisted
        }
    }
--- response_body
truereputation
false
80reputation
false



=== TEST 8: an unknown iprepd option is an error naming it
--- http_config
    lua_shared_dict warden 1m;
    init_by_lua_block {
        local ok, err = pcall(require("resty.warden").new,
            { iprepd = { api_key = "k", threshold = 50, ulr = "http://x" } })
        ERR = err
    }
--- config
    location /t {
        content_by_lua_block {
            ngx.say((ERR:gsub("^.-resty%.warden: ", ""):gsub(" %(known: .*", "")))
        }
    }
--- response_body
opts.iprepd.ulr is not an iprepd option; did you mean 'url'?
