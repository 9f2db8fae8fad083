# The test runner itself (t/lib/TestWarden/Mini.pm when Test::Nginx is not
# installed) and the thttp.lua client the other tests use.
use lib 't/lib';
use TestWarden;

workers(2);
master_on();

plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: response_body
--- config
    location /t {
        content_by_lua_block { ngx.say("hello") }
    }
--- response_body
hello



=== TEST 2: error_code, response_headers and error_log
--- config
    location /t {
        content_by_lua_block {
            ngx.header["X-Foo"] = "bar"
            ngx.log(ngx.WARN, "something to find")
            ngx.status = 418
            ngx.say("teapot")
        }
    }
--- error_code: 418
--- response_headers
X-Foo: bar
!X-Missing
--- error_log
something to find
--- no_error_log
[error]



=== TEST 3: several requests, more_headers, a POST body
--- config
    location /t {
        content_by_lua_block {
            ngx.req.read_body()
            ngx.say(ngx.req.get_method(), " ", ngx.var.http_x_a or "-", " ",
                    ngx.req.get_body_data() or "-")
        }
    }
--- request eval
["GET /t", "POST /t\nbody text"]
--- more_headers eval
["X-A: one", "X-A: two"]
--- response_body eval
["GET one -\n", "POST two body text\n"]



=== TEST 4: thttp: a chunked response, env substitution, fan-out over workers
--- config
    location /c {
        content_by_lua_block {
            ngx.header["X-Worker-Pid"] = ngx.worker.pid()
            ngx.print("ab") ngx.flush(true) ngx.print("cd")
        }
    }
    location /nope {
        content_by_lua_block { ngx.exit(404) }
    }
    location /t {
        content_by_lua_block {
            local thttp = require "thttp"
            local res = assert(thttp.request({ port = $TEST_NGINX_SERVER_PORT, path = "/c" }))
            ngx.say(res.status, " ", res.body, " ", res.headers["transfer-encoding"])
            local s = thttp.fanout({ n = 200, concurrency = 20,
                                     port = $TEST_NGINX_SERVER_PORT, path = "/c" })
            ngx.say(s.status[200], " ", s.errors)
            s = thttp.fanout({ n = 10, port = $TEST_NGINX_SERVER_PORT, path = "/nope" })
            ngx.say(s.status[404])
        }
    }
--- response_body
200 abcd chunked
200 0
10



=== TEST 5: must_die
--- http_config
    init_by_lua_block { error("boom at start-up") }
--- config
--- must_die
--- error_log
boom at start-up
