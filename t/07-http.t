# The cosocket HTTP client (lua/resty/warden/http.lua) against nginx
# itself: framing, keepalive, one deadline for the whole exchange, errors.
use lib 't/lib';
use TestWarden;

our $HttpConfig = <<'_EOC_';
    init_by_lua_block { http = require "resty.warden.http" }
    server {
        listen 127.0.0.1:1995;
        location = /json {
            content_by_lua_block {
                local body = '{"reputation": 42}'
                ngx.header["Content-Length"] = #body
                ngx.print(body)
            }
        }
        location = /chunked {
            content_by_lua_block {
                for i = 1, 3 do ngx.say("line ", i); ngx.flush(true) end
            }
        }
        location = /slow {
            content_by_lua_block { ngx.sleep(1); ngx.say("late") }
        }
        location = /echo {
            content_by_lua_block {
                ngx.req.read_body()
                ngx.say(ngx.req.get_method(), " ", ngx.var.http_authorization,
                        " ", ngx.req.get_body_data())
            }
        }
        location = /big {
            content_by_lua_block { ngx.print(string.rep("x", 100000)) }
        }
        location / { return 404; }
    }
    server {
        listen 127.0.0.1:1996;
        keepalive_timeout 0;
        location / { content_by_lua_block { ngx.say("bye") } }
    }
_EOC_

plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: lengths, chunks, statuses, methods and bodies
--- http_config eval: $::HttpConfig
--- config
    location /t {
        content_by_lua_block {
            local function show(res, err)
                if not res then return ngx.say("error: ", err) end
                ngx.say(res.status, " ", res.body:gsub("\n", "|"), " ",
                        res.headers["content-type"] or "-")
            end
            -- a trailing slash in the url is dropped, as iprepd-nginx does
            show(http.request{ url = "http://127.0.0.1:1995/", path = "/json",
                               timeout = 1000 })
            show(http.request{ url = "http://127.0.0.1:1995", path = "/chunked",
                               timeout = 1000 })
            show(http.request{ url = "http://127.0.0.1:1995", path = "/nope",
                               timeout = 1000 })
            show(http.request{ host = "127.0.0.1", port = 1995, path = "/echo",
                               method = "PUT", body = "payload",
                               headers = { Authorization = "APIKey k" },
                               timeout = 1000 })
            show(http.request{ url = "http://127.0.0.1:1995", path = "/big",
                               timeout = 1000 })
            show(http.request{ url = "http://127.0.0.1:1995", path = "/big",
                               timeout = 1000, max_body = 1000000 }
                 and { status = 200, body = "big ok", headers = {} })
        }
    }
--- response_body_like
^200 \{"reputation": 42\} text/plain
200 line 1\|line 2\|line 3\| text/plain
404 .*404 Not Found.* text/html
200 PUT APIKey k payload\| text/plain
error: body larger than 65536 bytes
200 big ok -



=== TEST 2: connections are kept alive and reused; a closing server is fine
--- http_config eval: $::HttpConfig
--- config
    location /t {
        content_by_lua_block {
            local r = {}
            for i = 1, 3 do
                local res = http.request{ url = "http://127.0.0.1:1995",
                                          path = "/json", timeout = 1000 }
                r[i] = res.reused
            end
            ngx.say("reused: ", table.concat(r, " "))
            for i = 1, 2 do
                local res, err = http.request{ url = "http://127.0.0.1:1996",
                                               timeout = 1000 }
                ngx.say(res and res.body or err, " ", res and res.reused)
            end
        }
    }
--- response_body
reused: 0 1 2
bye
 0
bye
 0



=== TEST 3: one deadline for everything; errors, never a raise
--- http_config eval: $::HttpConfig
--- config
    location /t {
        content_by_lua_block {
            ngx.update_time()
            local t0 = ngx.now()
            local res, err = http.request{ url = "http://127.0.0.1:1995",
                                           path = "/slow", timeout = 50 }
            ngx.update_time()
            local took = (ngx.now() - t0) * 1000
            -- cut at the 50 ms deadline, long before the 1 s answer
            ngx.say(res, " ", err, " ", took >= 40 and took < 800)
            ngx.say(http.request{ url = "http://127.0.0.1:1", timeout = 100 })
            ngx.say(http.request{ url = "ftp://x" })
            ngx.say(http.request{ url = "http://127.0.0.1:99999" })
        }
    }
--- response_body
nil timeout true
nilconnection refused
nilurl must look like http://host[:port][/path] or https://host[:port][/path], got 'ftp://x'
nilurl has a bad port: 'http://127.0.0.1:99999'
--- error_log
lua tcp socket read timed out
