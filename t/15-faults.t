# Faults under load, on a node (4 workers, port 1991) driven by the test:
# kill -9 of workers and nginx -s reload every half second while requests
# flow; no request fails and no block is lost.
use lib 't/lib';
use TestWarden;

$TestWarden::Timeout = 90;  # the default response timeout of this file's blocks

our $Http = <<'_EOC_';
    lua_shared_dict warden 1m;
    init_by_lua_block {
        tnode = require "tnode"
        -- n requests in parallel threads, `per` at a time, from ips
        -- 192.0.2.1..k (odd ones blocked): counts of each outcome
        function load(node, n, k)
            local out = { ok = 0, blocked = 0, wrong = 0, failed = 0 }
            local function one(i)
                local ip = "192.0.2." .. (i % k + 1)
                local want = (i % k + 1) % 2 == 1 and 403 or 200
                local status = node:get("/", ip)
                if status == want then
                    out[want == 403 and "blocked" or "ok"] =
                        out[want == 403 and "blocked" or "ok"] + 1
                elseif type(status) == "number" then
                    out.wrong = out.wrong + 1
                else
                    out.failed = out.failed + 1
                end
            end
            local threads = {}
            for t = 1, 8 do
                threads[t] = ngx.thread.spawn(function()
                    for i = t, n, 8 do one(i) end
                end)
            end
            for t = 1, 8 do ngx.thread.wait(threads[t]) end
            return string.format("ok=%d blocked=%d wrong=%d failed=%d",
                                 out.ok, out.blocked, out.wrong, out.failed)
        end
        function block_odd(node, k)
            for i = 1, k, 2 do
                node:get("/lua?do=block&target=192.0.2." .. i)
            end
        end
    }
_EOC_

# TESTs 3 and 4: warden asking iprepd on 1996 (a stand-in there, or
# nothing), requests to 1995; timed(ip) -> seconds taken, status
our $IprepdHttp = <<'_EOC_';
    lua_shared_dict warden 1m;
    lua_socket_log_errors off;
    init_by_lua_block {
        warden = require("resty.warden").new{
            trusted_proxies = { "127.0.0.1" },
            iprepd = { url = "http://127.0.0.1:1996", api_key = "k",
                       threshold = 50, timeout = 200 },
        }
        thttp = require "thttp"
        function timed(ip)
            ngx.update_time()
            local t0 = ngx.now()
            local res = thttp.request{ port = 1995, path = "/",
                headers = { ["X-Forwarded-For"] = ip } }
            ngx.update_time()
            return ngx.now() - t0, res and res.status
        end
    }
    init_worker_by_lua_block { warden:init_worker() }
    server {
        listen 127.0.0.1:1995;
        access_by_lua_block { warden:check() }
        location / { content_by_lua_block { ngx.say("ok") } }
    }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    my $http = $block->http_config // '';
    $block->set_value('http_config', $http . $Http)
        unless $http =~ /tnode|init_by_lua/;
});

plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: kill -9 of workers under load: the replacements enforce every block
--- config
    location = /t {
        content_by_lua_block {
            local a = tnode.node{ name = "a", port = 1991, workers = 4 }
            assert(a:start())
            block_odd(a, 40)
            local killer = ngx.thread.spawn(function()
                for _ = 1, 3 do
                    ngx.sleep(0.3)
                    tnode.sh("pkill -9 -o -P " .. a:pid())  -- the oldest worker
                end
            end)
            local during = load(a, 800, 40)
            ngx.thread.wait(killer)
            ngx.sleep(0.3)
            -- a request in flight on a killed worker may fail; none may
            -- be answered wrongly
            ngx.say("during: ", during)
            ngx.say("after: ", load(a, 400, 40))
            local pids = tnode.sh("pgrep -P " .. a:pid() .. " | wc -l")
            ngx.say("workers: ", pids:match("%d+"))
            a:stop()
        }
    }
--- response_body_like chomp
^during: ok=\d+ blocked=\d+ wrong=0 failed=\d+
after: ok=200 blocked=200 wrong=0 failed=0
workers: 4
$



=== TEST 2: nginx -s reload every half second under load: no request fails, no block is lost
--- config
    location = /t {
        content_by_lua_block {
            local a = tnode.node{ name = "a", port = 1991, workers = 4 }
            assert(a:start())
            block_odd(a, 40)
            local reloader = ngx.thread.spawn(function()
                for _ = 1, 6 do
                    ngx.sleep(0.5)
                    a:reload()
                end
            end)
            local during = load(a, 1200, 40)
            ngx.thread.wait(reloader)
            ngx.say("during: ", during)
            ngx.say("after: ", load(a, 400, 40))
            a:stop()
        }
    }
--- response_body
during: ok=600 blocked=600 wrong=0 failed=0
after: ok=200 blocked=200 wrong=0 failed=0



=== TEST 3: iprepd slow, answering garbage or 502: requests pass within the timeout, every failure is counted, few are logged
--- http_config eval
($::IprepdHttp =~ s/timeout = 200/timeout = 600/r) . q{
    server {
        listen 127.0.0.1:1996;
        location ~ ^/type/ip/192\.0\.2\.1\d*$ {
            content_by_lua_block { ngx.sleep(2) ngx.say("{}") }
        }
        location ~ ^/type/ip/192\.0\.2\.2\d*$ {
            content_by_lua_block { ngx.print("garbage") }
        }
        location ~ ^/type/ip/192\.0\.2\.3\d*$ {
            content_by_lua_block { ngx.exit(502) }
        }
    }
}
--- config
    location = /t {
        content_by_lua_block {
            for _, kind in ipairs({ "1", "2", "3" }) do
                local worst, passed = 0, 0
                for i = 0, 9 do
                    local took, status = timed("192.0.2." .. kind .. i)
                    worst = math.max(worst, took)
                    if status == 200 then passed = passed + 1 end
                end
                -- 600 ms (a timeout for kind 1, whose answer takes 2 s;
                -- room for kinds 2 and 3 to answer on a loaded machine)
                ngx.say(kind, ": passed ", passed, "/10, within the timeout: ",
                        worst < 1.5)
            end
            ngx.say("lookup_errors: ", warden:stats().lookup_errors)
        }
    }
--- grep_error_log eval: qr/Error with request to iprepd: timeout|Unable to parse `reputation`[^,]*|iprepd responded with a 502 http status code/
--- grep_error_log_out
Error with request to iprepd: timeout
Unable to parse `reputation` value from response body
iprepd responded with a 502 http status code
--- response_body
1: passed 10/10, within the timeout: true
2: passed 10/10, within the timeout: true
3: passed 10/10, within the timeout: true
lookup_errors: 30
--- no_error_log
[alert]
--- timeout: 30



=== TEST 4: iprepd refusing connections: requests pass at once, every failure is counted, one line is logged
--- http_config eval
# nothing listens on 1996; a 2 s timeout, so that "at once" is well apart
# from it on a loaded machine
$::IprepdHttp =~ s/timeout = 200/timeout = 2000/r
--- config
    location = /t {
        content_by_lua_block {
            local worst, passed = 0, 0
            for i = 1, 20 do
                local took, status = timed("192.0.2." .. i)
                worst = math.max(worst, took)
                if status == 200 then passed = passed + 1 end
            end
            ngx.say("passed ", passed, "/20, well within the timeout: ",
                    worst < 1)
            ngx.say("lookup_errors: ", warden:stats().lookup_errors)
        }
    }
--- grep_error_log eval: qr/Error with request to iprepd: [^,]*/
--- grep_error_log_out
Error with request to iprepd: connection refused
--- response_body
passed 20/20, well within the timeout: true
lookup_errors: 20
--- no_error_log
[alert]
--- timeout: 30
