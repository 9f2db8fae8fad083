# Allowlist, denylist, trusted proxies and X-Forwarded-For, through real
# requests.
use lib 't/lib';
use TestWarden;

our $HttpConfig = <<'_EOC_';
    lua_shared_dict warden 1m;
    init_by_lua_block {
        warden = require("resty.warden").new({
            allowlist = { "10.0.0.0/8", "2001:db8::/32", "203.0.113.7" },
            denylist  = "203.0.113.0/24,198.51.100.7,2001:db9::/48",
            trusted_proxies = { "127.0.0.1" },
        })
    }
    init_worker_by_lua_block { warden:init_worker() }
_EOC_

our $Protected = <<'_EOC_';
    location /p {
        access_by_lua_block { warden:check() }
        content_by_lua_block { ngx.say("passed") }
    }
_EOC_

plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: a client on no list passes
--- http_config eval: $::HttpConfig
--- config eval: $::Protected
--- request
GET /p
--- more_headers
X-Forwarded-For: 192.0.2.1
--- response_body
passed



=== TEST 2: a denylisted client gets 403
--- http_config eval: $::HttpConfig
--- config eval: $::Protected
--- request
GET /p
--- more_headers
X-Forwarded-For: 203.0.113.9
--- error_code: 403



=== TEST 3: the allowlist wins over the denylist
--- http_config eval: $::HttpConfig
--- config eval: $::Protected
--- request
GET /p
--- more_headers
X-Forwarded-For: 203.0.113.7
--- response_body
passed



=== TEST 4: the client is the rightmost address that is not a trusted proxy
--- http_config eval: $::HttpConfig
--- config eval: $::Protected
--- request
GET /p
--- more_headers
X-Forwarded-For: 192.0.2.1, 198.51.100.7, 127.0.0.1
--- error_code: 403



=== TEST 5: a spoofed leftmost address does not help a denylisted client
--- http_config eval: $::HttpConfig
--- config eval: $::Protected
--- request
GET /p
--- more_headers
X-Forwarded-For: 10.0.0.1, 198.51.100.7
--- error_code: 403



=== TEST 6: X-Forwarded-For from an untrusted peer is ignored
--- http_config
    lua_shared_dict warden 1m;
    init_by_lua_block {
        warden = require("resty.warden").new({
            denylist = "127.0.0.1",
            trusted_proxies = { "192.0.2.1" },
        })
    }
    init_worker_by_lua_block { warden:init_worker() }
--- config eval: $::Protected
--- request
GET /p
--- more_headers
X-Forwarded-For: 192.0.2.99
--- error_code: 403



=== TEST 7: IPv6 and IPv4-mapped clients, through check(ip)
--- http_config eval: $::HttpConfig
--- config
    location /t {
        content_by_lua_block {
            for _, ip in ipairs({ "2001:db8::1", "2001:db9::1", "2001:db9:1::1",
                                  "::ffff:198.51.100.7", "::ffff:10.1.2.3",
                                  "::ffff:192.0.2.1" }) do
                local blocked, info = warden:is_blocked(ip)
                ngx.say(ip, " ", blocked, " ", info and info.source or "-",
                        " ", info and info.target or "-")
            end
        }
    }
--- response_body
2001:db8::1 false - -
2001:db9::1 true denylist 2001:db9::/48
2001:db9:1::1 false - -
::ffff:198.51.100.7 true denylist 198.51.100.7
::ffff:10.1.2.3 false - -
::ffff:192.0.2.1 false - -



=== TEST 8: check(ip) in the iprepd style
--- http_config eval: $::HttpConfig
--- config
    location /p {
        access_by_lua_block { warden:check(ngx.var.arg_ip) }
        content_by_lua_block { ngx.say("passed") }
    }
--- request eval
["GET /p?ip=192.0.2.1", "GET /p?ip=::ffff:198.51.100.7", "GET /p?ip=2001:db9::5"]
--- error_code eval
[200, 403, 403]



=== TEST 9: a malformed check(ip) is an error log line, and the request passes
--- http_config eval: $::HttpConfig
--- config
    location /p {
        access_by_lua_block {
            local ok, err = warden:check(ngx.var.arg_ip)
            ngx.ctx.res = tostring(ok) .. " " .. tostring(err)
        }
        content_by_lua_block { ngx.say(ngx.ctx.res) }
    }
--- request
GET /p?ip=300.1.1.1
--- response_body
nil invalid IP address '300.1.1.1'
--- error_log
warden: check(): invalid IP address '300.1.1.1'



=== TEST 10: a malformed X-Forwarded-For is a warning; the nearest trusted hop is the client
--- http_config
    lua_shared_dict warden 1m;
    init_by_lua_block {
        warden = require("resty.warden").new({
            denylist = "127.0.0.1",
            trusted_proxies = { "127.0.0.1" },
        })
    }
    init_worker_by_lua_block { warden:init_worker() }
--- config eval: $::Protected
--- request
GET /p
--- more_headers
X-Forwarded-For: 192.0.2.1, <script>
--- error_code: 403
--- error_log
warden: malformed X-Forwarded-For from a trusted proxy: "192.0.2.1, <script>"; using 127.0.0.1 as the client
--- no_error_log
[error]



=== TEST 11: blocking_mode 0 logs and lets the request through
--- http_config
    lua_shared_dict warden 1m;
    init_by_lua_block {
        warden = require("resty.warden").new({
            denylist = "198.51.100.7",
            trusted_proxies = { "127.0.0.1" },
            blocking_mode = 0,
        })
    }
    init_worker_by_lua_block { warden:init_worker() }
--- config eval: $::Protected
--- request
GET /p
--- more_headers
X-Forwarded-For: 198.51.100.7
--- response_body
passed
--- error_log
warden: 198.51.100.7 would have been blocked (denylist: denylist); blocking_mode is 0



=== TEST 12: block_status sets the status of blocked requests
--- http_config
    lua_shared_dict warden 1m;
    init_by_lua_block {
        warden = require("resty.warden").new({
            denylist = "127.0.0.1", block_status = 429,
        })
    }
    init_worker_by_lua_block { warden:init_worker() }
--- config eval: $::Protected
--- request
GET /p
--- error_code: 429
--- response_body_like: 429 Too Many Requests



=== TEST 13: many prefixes of every length: the most specific denylist entry, the allowlist anywhere
--- http_config
    lua_shared_dict warden 1m;
    init_by_lua_block {
        local deny = {}
        for len = 8, 32 do
            deny[#deny + 1] = "100.64.0.0/" .. len
        end
        warden = require("resty.warden").new({
            denylist = deny, allowlist = { "100.64.0.0/30" },
        })
    }
--- config
    location /t {
        content_by_lua_block {
            for _, ip in ipairs({ "100.64.0.0", "100.64.0.4", "100.64.0.8",
                                  "100.65.0.0", "100.128.0.0", "101.0.0.0" }) do
                local blocked, info = warden:is_blocked(ip)
                ngx.say(ip, " ", blocked, " ", info and info.target or "-")
            end
        }
    }
--- response_body
100.64.0.0 false -
100.64.0.4 true 100.64.0.0/29
100.64.0.8 true 100.64.0.0/28
100.65.0.0 true 100.64.0.0/15
100.128.0.0 true 100.0.0.0/8
101.0.0.0 false -



=== TEST 14: a trusted proxy without X-Forwarded-For may name the client in X-Real-IP
--- http_config eval: $::HttpConfig
--- config eval: $::Protected
--- request
GET /p
--- more_headers
X-Real-IP: 198.51.100.7
--- error_code: 403



=== TEST 15: X-Forwarded-For wins over X-Real-IP; a bad X-Real-IP is a warning
--- http_config eval: $::HttpConfig
--- config
    location /t {
        content_by_lua_block {
            local thttp = require "thttp"
            local function status(h)
                return thttp.request{ port = ngx.var.server_port, path = "/p",
                                      headers = h }.status
            end
            ngx.say(status{ ["X-Real-IP"] = "198.51.100.7",
                            ["X-Forwarded-For"] = "192.0.2.9" })
            ngx.say(status{ ["X-Real-IP"] = "192.0.2.9",
                            ["X-Forwarded-For"] = "198.51.100.7" })
            ngx.say(status{ ["X-Real-IP"] = "not-an-address" })
        }
    }
    location /p {
        access_by_lua_block { warden:check() }
        content_by_lua_block { ngx.say("passed") }
    }
--- response_body
200
403
200
--- error_log
warden: malformed X-Real-IP from a trusted proxy: "not-an-address"; using 127.0.0.1 as the client



=== TEST 16: headers from a peer that is not a trusted proxy are never read
--- http_config
    lua_shared_dict warden 1m;
    init_by_lua_block {
        warden = require("resty.warden").new({
            denylist = "198.51.100.7",
            trusted_proxies = { "10.0.0.0/8" },
        })
    }
    init_worker_by_lua_block { warden:init_worker() }
--- config eval: $::Protected
--- request
GET /p
--- more_headers
X-Real-IP: 198.51.100.7
X-Forwarded-For: 198.51.100.7
--- response_body
passed
