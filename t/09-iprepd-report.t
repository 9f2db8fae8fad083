# resty.warden.iprepd's statsd metrics (received by a real UDP listener)
# and its audit line (read back from the error log).
use lib 't/lib';
use TestWarden;
use StatsdListener;

workers(2);
master_on();

# A statsd listener on 127.0.0.1:1999 (t/lib/StatsdListener.pm).
our $StatsdFile = StatsdListener::start(1999);
# A resolver that never answers (it only records the queries).
StatsdListener::start(1996);

sub conf {
    my ($opts) = @_;
    return <<"_EOC_";
    init_by_lua_block {
        client = require("resty.warden.iprepd").new({
            url = "http://127.0.0.1:1997", api_key = "secret", threshold = 50,
            timeout = 3000, statsd_host = "127.0.0.1", statsd_port = 1999,
            statsd_flush_timer = 1,
            $opts
        })
        thttp = require "thttp"
        STATSD_FILE = "$StatsdFile"
        function visit(ip, path, method, body, headers)
            headers = headers or {}
            headers["X-Forwarded-For"] = ip
            local res, err = thttp.request{ port = 1998, path = path or "/",
                method = method, body = body, headers = headers }
            return res and res.status or err
        end
        -- What statsd received since the last call, as sent.
        function sent()
            local f = io.open(STATSD_FILE)
            local all = f and f:read("*a") or ""
            if f then f:close() end
            io.open(STATSD_FILE, "w"):close()
            return all
        end
        -- the statsd listener is another process: what it received is
        -- waited for
        until_true = require("twait").until_true
        -- sent(), once statsd has received a line matching `last`
        function sent_until(last)
            until_true(function()
                local f = io.open(STATSD_FILE)
                local all = f and f:read("*a") or ""
                if f then f:close() end
                return all:find(last)
            end, 5)
            return sent()
        end
        -- Sums of the statsd counters received so far, by name.
        function received()
            local f = io.open(STATSD_FILE)
            local sums = {}
            if f then
                for line in f:lines() do
                    local name, n, kind = line:match("^(.-):(.-)|(%a+)\$")
                    if kind == "c" then
                        sums[name] = (sums[name] or 0) + tonumber(n)
                    elseif name then
                        local set = sums[name .. "|" .. kind] or {}
                        set[n] = true
                        sums[name .. "|" .. kind] = set
                    end
                end
                f:close()
            end
            return sums
        end
    }
    init_worker_by_lua_block { client:config_flush_timer() }
    server {
        listen 127.0.0.1:1997;
        location ~ ^/type/ip/(?<ip>.+)\$ {
            content_by_lua_block {
                local ip = ngx.var.ip
                if ip == "192.0.2.50" then return ngx.exit(500) end
                if ip == "192.0.2.10" then return ngx.say('{"reputation": 20}') end
                return ngx.exit(404)
            }
        }
    }
    server {
        listen 127.0.0.1:1998 reuseport;
        set_real_ip_from 127.0.0.1;
        real_ip_header X-Forwarded-For;
        access_by_lua_block { client:check(ngx.var.remote_addr) }
        log_by_lua_block {
            if client.statsd then
                client.statsd.set("iprepd.ips_seen", ngx.var.remote_addr)
            end
        }
        location / { content_by_lua_block { ngx.say("ok") } }
        location /iprepd_ping { content_by_lua_block { ngx.say("pong") } }
    }
_EOC_
}

plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: iprepd-nginx's metrics reach statsd, summed, with custom ones
--- http_config eval: ::conf('blocking_mode = 1,')
--- config
    location /t {
        content_by_lua_block {
            -- only what this block sends (blocks may run in any order)
            io.open(STATSD_FILE, "w"):close()
            local codes = {}
            for _ = 1, 5 do codes[#codes + 1] = visit("192.0.2.99") end
            codes[#codes + 1] = visit("192.0.2.10")
            codes[#codes + 1] = visit("192.0.2.50")
            ngx.say(table.concat(codes, " "))
            -- statsd_flush_timer is 1 s, in both workers: every visit's
            -- status and address, then a moment for what follows them
            until_true(function()
                local s = received()
                return (s["iprepd.status.accepted"] or 0)
                       + (s["iprepd.status.rejected"] or 0) >= 7
                       and s["iprepd.err.500"] ~= nil
            end)
            ngx.sleep(0.2)
            local s = received()
            for _, name in ipairs({ "iprepd.get_reputation", "iprepd.cache_hit",
                    "iprepd.status.accepted", "iprepd.status.below_threshold",
                    "iprepd.status.rejected", "iprepd.err.500" }) do
                ngx.say(name, " ", s[name])
            end
            local seen = {}
            for ip in pairs(s["iprepd.ips_seen|s"] or {}) do
                seen[#seen + 1] = ip
            end
            table.sort(seen)
            ngx.say(table.concat(seen, " "))
        }
    }
--- response_body
200 200 200 200 200 429 200
iprepd.get_reputation 3
iprepd.cache_hit 4
iprepd.status.accepted 6
iprepd.status.below_threshold 1
iprepd.status.rejected 1
iprepd.err.500 1
192.0.2.10 192.0.2.50 192.0.2.99
--- error_log
iprepd responded with a 500 http status code
--- no_error_log
[alert]
--- timeout: 10



=== TEST 2: audit of blocked requests: matching URIs only, credentials removed
--- http_config eval: ::conf('audit_blocked_requests = 1, audit_include_headers = 1, audit_uri_list = "/audited,/x/%d+/y",')
--- config
    location /t {
        content_by_lua_block {
            visit("192.0.2.10", "/audited", "POST", "secret-body",
                  { Authorization = "Bearer t0ken", ["X-Trace"] = "abc" })
            visit("192.0.2.10", "/x/12/y")
            visit("192.0.2.10", "/other")
            local f = assert(io.open(ngx.config.prefix() .. "logs/error.log"))
            local log = f:read("*a")
            f:close()
            local n = 0
            for line in log:gmatch("FoxSec Audit[^\n]*") do
                n = n + 1
                local ip, h, body = line:match("ip: (.-), headers: (.-), body: ([^,]*)")
                -- iprepd-nginx's form: "name": "value", ... (base64)
                local headers = {}
                for k, v in ngx.decode_base64(h):gmatch('"(.-)": "(.-)", ') do
                    headers[k] = v
                end
                ngx.say(ip, " x-trace=", headers["x-trace"], " authorization=",
                        tostring(headers.authorization), " body=",
                        ngx.decode_base64(body) or body)
            end
            ngx.say(n, " audited")
        }
    }
--- response_body
192.0.2.10 x-trace=abc authorization=nil body=secret-body
192.0.2.10 x-trace=nil authorization=nil body=unable to read body
2 audited
--- error_log
192.0.2.10 is below threshold with a reputation of 20
--- no_error_log
[crit]



=== TEST 3: audit without headers; a full statsd buffer is sent at once
--- http_config eval: ::conf('audit_blocked_requests = 1, audit_uri_list = { "/a" }, statsd_max_buffer_count = 3, statsd_flush_timer = 3600,')
--- config
    location /t {
        content_by_lua_block {
            -- single worker requests would not fill a buffer of 3 metrics
            -- each; enough visits fill both workers' buffers
            for i = 1, 8 do visit("192.0.2.9" .. i) end
            visit("192.0.2.10", "/a", "POST", "b")
            until_true(function()
                return (received()["iprepd.get_reputation"] or 0) >= 4
            end)
            local s = received()
            ngx.say("sent before the hourly timer: ",
                    (s["iprepd.get_reputation"] or 0) >= 4)
            local f = assert(io.open(ngx.config.prefix() .. "logs/error.log"))
            ngx.say(f:read("*a"):match("FoxSec Audit [^\n]-, body: Yg=="))
            f:close()
        }
    }
--- response_body
sent before the hourly timer: true
FoxSec Audit || ip: 192.0.2.10, headers: , body: Yg==
--- error_log
192.0.2.10 is below threshold with a reputation of 20
--- no_error_log
[crit]



=== TEST 4: statsd gets iprepd-nginx's lines: one per metric, in order
--- http_config eval: ::conf('blocking_mode = 1, statsd_max_buffer_count = 1000,')
--- config
    location /t {
        content_by_lua_block {
            sent()
            for _, ip in ipairs({ "192.0.2.10", "192.0.2.10", "2001:db8::7" }) do
                ngx.say(visit(ip))
                -- statsd_flush_timer is 1 s; the log phase adds ips_seen last
                ngx.print(sent_until("ips_seen"))
            end
        }
    }
--- response_body
429
iprepd.get_reputation:1|c
iprepd.status.below_threshold:1|c
iprepd.status.rejected:1|c
iprepd.ips_seen:192.0.2.10|s
429
iprepd.cache_hit:1|c
iprepd.status.below_threshold:1|c
iprepd.status.rejected:1|c
iprepd.ips_seen:192.0.2.10|s
200
iprepd.get_reputation:1|c
iprepd.status.accepted:1|c
iprepd.ips_seen:2001_db8__7|s
--- error_log
check(): 192.0.2.10 rejected with a reputation of 20, client: 192.0.2.10
--- timeout: 10



=== TEST 5: failed requests: one-word errors are metrics, others a line; DNS timeouts
--- http_config eval
::conf('') . q{
    resolver 127.0.0.1:1996;
    resolver_timeout 100ms;
}
--- config
    location /t {
        content_by_lua_block {
            local new = require("resty.warden.iprepd").new
            local function client_for(url, timeout)
                return new({ url = url, api_key = "k", threshold = 50,
                             timeout = timeout, statsd_host = "127.0.0.1",
                             statsd_port = 1999 })
            end
            sent()
            for _, c in ipairs({
                { client_for("http://127.0.0.1:1", 500), "get_reputation" },
                { client_for("http://iprepd.test:1997", 500), "dns_timeout" },
            }) do
                ngx.say(c[1]:get_reputation("192.0.2.1"))
                c[1].statsd.flush()
                ngx.print(sent_until(c[2]))  -- its last line
            end
        }
    }
--- response_body
nil
iprepd.get_reputation:1|c
nil
iprepd.get_reputation:1|c
iprepd.err.dns_timeout:1|c
--- error_log eval
[
qr/\[error\].*get_reputation\(\): Could not send metric with error: connection refused, client/,
qr/\[error\].*get_reputation\(\): Error with request to iprepd: connection refused, client/,
qr/\[error\].*get_reputation\(\): Error with request to iprepd: iprepd\.test could not be resolved \(110: Operation timed out\), client/,
]
--- no_error_log
Could not send metric with error: iprepd.test



=== TEST 6: iprepd-nginx's audit cases: the line as its suite reads it
--- http_config eval: ::conf('blocking_mode = 1, audit_blocked_requests = 1, audit_uri_list = "/something,/iprepd_%l%l%l%l",')
--- config
    location /t {
        content_by_lua_block {
            ngx.say(visit("192.0.2.10", "/iprepd_ping"))
            ngx.say(visit("192.0.2.10", "/iprepd_ping", "POST", "body"))
            ngx.say(visit("192.0.2.10", "/iprepd_pin"))
        }
    }
--- response_body
429
429
429
--- error_log eval
[
qr/\[alert\].*audit_log\(\): FoxSec Audit \|\| ip: 192\.0\.2\.10, headers: , body: unable to read body, client: 192\.0\.2\.10, server: , request: "GET \/iprepd_ping HTTP\/1\.1", host: "localhost"$/,
qr/\[alert\].*audit_log\(\): FoxSec Audit \|\| ip: 192\.0\.2\.10, headers: , body: Ym9keQ==, client: 192\.0\.2\.10, server: , request: "POST \/iprepd_ping HTTP\/1\.1", host: "localhost"$/,
]
--- no_error_log eval
[qr/FoxSec Audit.*"GET \/iprepd_pin HTTP/]



=== TEST 7: a good reputation with statsd on: nothing in the error log
--- http_config eval: ::conf('blocking_mode = 1,')
--- config
    location /t {
        content_by_lua_block {
            ngx.say(visit("192.0.2.99", "/iprepd_ping"))
            ngx.sleep(1.2)
        }
    }
--- response_body
200
--- no_error_log eval
[qr/\[(error|crit|alert|emerg)\]/]



=== TEST 8: what is buffered is sent when a worker exits (a reload), as iprepd-nginx's timer did
--- http_config eval: ::conf('statsd_flush_timer = 3600,')
--- config
    location /t {
        content_by_lua_block {
            sent()
            ngx.say(visit("192.0.2.99"))
            ngx.sleep(0.1)
            local f = assert(io.open(ngx.config.prefix() .. "logs/nginx.pid"))
            local pid = f:read("*n")
            f:close()
            os.execute("kill -HUP " .. pid)
            ngx.print(sent_until("ips_seen"))
        }
    }
--- response_body
200
iprepd.get_reputation:1|c
iprepd.status.accepted:1|c
iprepd.ips_seen:192.0.2.99|s
--- timeout: 10



=== TEST 9: flush() in log_by_lua (no cosockets there) sends from a timer
--- http_config eval: ::conf('statsd_flush_timer = 3600,') =~ s/(client.statsd.set\("iprepd.ips_seen", ngx.var.remote_addr\))/$1 client.statsd.flush() client:flush_stats()/r
--- config
    location /t {
        content_by_lua_block {
            sent()
            ngx.say(visit("192.0.2.99"))
            ngx.print(sent_until("ips_seen"))
        }
    }
--- response_body
200
iprepd.get_reputation:1|c
iprepd.status.accepted:1|c
iprepd.ips_seen:192.0.2.99|s
