# Protected routes (basic and bearer, plain and hashed), site policies,
# /security/check behind nginx's auth_request, /security/analyze,
# /metrics through promtool, threat_score() and should_block().
use lib 't/lib';
use TestWarden;

workers(4);
master_on();

our $HttpConfig = <<'_EOC_';
    lua_shared_dict warden 4m;
    init_by_lua_block {
        TOKEN = "t0ken-0123456789abcdef"
        warden = require("resty.warden").new{
            admin_token = TOKEN,
            trusted_proxies = { "127.0.0.1" },
            detector = { auth_failure_threshold = 5, not_found_threshold = 4 },
            protected_routes = {
                -- htpasswd lines: bcrypt ($2y$, PHP's documented example),
                -- apr1 (openssl passwd -apr1), {SHA} and plain
                { path = "/hashed", auth_type = "basic", credentials = {
                    "rasmus:$2y$10$.vGA1O9wmRjrwAVXD98HNOgsNpDczlqm3Jq7KnEd1rVAGv3Fykk1a",
                    "apr:$apr1$warden0$u/oAqnaYtuy54Sxayga2g.",
                    "sha:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=",
                    "plain:pl4in",
                } },
                { path = "/data/**", method = "POST,DELETE", auth_type = "bearer",
                  credentials = "tok-123", realm = "api" },
            },
            sites = { shop = { rate_limit = "5r/m" } },
        }
        thttp = require "thttp"
        json = require "warden_core"
        function api(method, path, body)
            if type(body) == "table" then body = json.json_encode(body) end
            local res = thttp.request{ port = 8091, method = method,
                path = "/api" .. path, body = body,
                headers = { Authorization = "Bearer " .. TOKEN } }
            return res.status .. " " .. res.body:gsub("\n$", "")
        end
        -- status (and response) of a request from client ip
        function req_res(path, ip, headers, method, port)
            local h = { ["X-Forwarded-For"] = ip }
            for k, v in pairs(headers or {}) do h[k] = v end
            -- until_close: after its log phase (the detector has counted
            -- it), so that a block it makes is there for the next request,
            -- whichever of the 4 workers takes that one
            local res, err = thttp.request{ port = port or 8091, path = path,
                                            headers = h, method = method,
                                            until_close = true }
            if not res then return "error " .. err end
            return res.status, res
        end
        function req(...)
            return (req_res(...))
        end
        function basic(u, p)
            return { Authorization = "Basic " .. ngx.encode_base64(u .. ":" .. p) }
        end
    }
    init_worker_by_lua_block { warden:init_worker() }
    server {
        listen 127.0.0.1:8091 reuseport;
        access_by_lua_block { warden:check() }
        log_by_lua_block { warden:log() }
        location /api/ {
            access_by_lua_block { }
            content_by_lua_block { warden:api() }
        }
        location /shop/ {
            access_by_lua_block { warden:check{ site = "shop" } }
            content_by_lua_block { ngx.say("shop") }
        }
        location /missing { return 404; }
        location / { content_by_lua_block { ngx.say("ok") } }
    }
    # A front end without Lua in its requests' path: nginx-defender's
    # auth_request integration, pointed at /security/check.
    server {
        listen 127.0.0.1:8092;
        location = /defender-check {
            internal;
            proxy_pass http://127.0.0.1:8091/api/security/check;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Real-IP $http_x_test_client;
        }
        location / {
            auth_request /defender-check;
            auth_request_set $defender_score $upstream_http_x_threat_score;
            add_header X-Threat-Score $defender_score always;
            empty_gif;  # a content handler: "return" would skip auth_request
        }
    }
_EOC_

plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: basic credentials, plain and hashed, from the options
--- http_config eval: $::HttpConfig
--- config
    location /t {
        content_by_lua_block {
            local ip = "192.0.2.1"
            local s, res = req_res("/hashed/x", ip)
            ngx.say("none: ", s, " ", res.headers["www-authenticate"])
            ngx.say("bcrypt: ", req("/hashed/x", ip, basic("rasmus", "rasmuslerdorf")))
            ngx.say("apr1: ", req("/hashed/x", ip, basic("apr", "apr-pass")))
            ngx.say("sha: ", req("/hashed/x", ip, basic("sha", "password")))
            ngx.say("plain: ", req("/hashed", ip, basic("plain", "pl4in")))
            ngx.say("wrong: ", req("/hashed/x", ip, basic("plain", "nope")))
            ngx.say("unknown user: ", req("/hashed/x", ip, basic("eve", "pl4in")))
            ngx.say("malformed: ", req("/hashed/x", ip, { Authorization = "Basic !!!" }))
            ngx.say("not covered: ", req("/hashedx", ip))
            req("/hashed/x", ip, basic("plain", "nope2"))
            -- five failures: the detector blocked 192.0.2.1 (threshold 5)
            ngx.say("blocked: ", req("/hashed/x", ip, basic("plain", "pl4in")))
            ngx.say("dot segments: ", req("/x/../hashed/y", "192.0.2.9"))
            ngx.say("percent-encoded: ", req("/%68ashed/y", "192.0.2.9"))
            local st = warden:stats()
            ngx.say("passed ", st.auth_passed, " failed ", st.auth_failed)
        }
    }
--- response_body
none: 401 Basic realm="warden", charset="UTF-8"
bcrypt: 200
apr1: 200
sha: 200
plain: 200
wrong: 401
unknown user: 401
malformed: 401
not covered: 200
blocked: 403
dot segments: 401
percent-encoded: 401
passed 4 failed 7



=== TEST 2: bearer route by method; every failure counts for the detector
--- http_config eval: $::HttpConfig
--- config
    location /t {
        content_by_lua_block {
            local ip = "192.0.2.2"
            ngx.say("GET is open: ", req("/data2/x", ip), " ", req("/data/x", ip, nil, "GET"))
            local s, res = req_res("/data/x", ip, nil, "POST")
            ngx.say("POST: ", s, " ", res.headers["www-authenticate"])
            ngx.say("token: ", req("/data/x", ip, { Authorization = "Bearer tok-123" }, "DELETE"))
            for i = 1, 4 do req("/data/x", ip, { Authorization = "Bearer bad" }, "POST") end
            -- the fifth failure trips auth_failure: blocked everywhere
            ngx.say("blocked: ", req("/other", ip))
            local ev = warden:events{ ip = ip, type = "auth_failed" }
            ngx.say(#ev, " ", ev[1].rule, " ", ev[#ev].action)
        }
    }
--- response_body
GET is open: 200 200
POST: 401 Bearer realm="api"
token: 200
blocked: 403
6 auth_failure 401: credentials missing
--- error_log
warden: auto-blocked 192.0.2.2 for 1d (auth_failure: 5 in 2m, offence 1)



=== TEST 3: routes from the API: by site, enforced by every worker, deleted
--- http_config eval: $::HttpConfig
--- config
    location /t {
        content_by_lua_block {
            ngx.say(api("POST", "/security/protected-routes", {
                path = "/shop/admin/*", auth_type = "basic",
                credentials = "boss:$apr1$warden0$u/oAqnaYtuy54Sxayga2g.",
                deployment = "shop" }):gsub('"created":%d+', ""), "")
            local codes = {}
            for i = 1, 12 do
                codes[#codes + 1] = req("/shop/admin/p" .. i, "10.0.0." .. i)
            end
            ngx.say(table.concat(codes, " "))
            ngx.say(req("/shop/admin/x", "10.0.1.1", basic("boss", "apr-pass")))
            -- a site without the route's deployment is not covered
            ngx.say(req("/shop/admin/x/y", "10.0.1.2"))
            ngx.say(api("POST", "/security/protected-routes", { path = "/x", auth_type = "digest", credentials = "a:b" }))
            ngx.say(api("POST", "/security/protected-routes", { path = "/x", auth_type = "basic", credentials = "nocolon" }))
            ngx.say(api("POST", "/security/protected-routes", { path = "/x", auth_type = "basic", credentials = "u:$2y$10$short" }))
            ngx.say(api("POST", "/security/protected-routes", { path = "x", auth_type = "basic", credentials = "u:p" }))
            ngx.say(api("POST", "/security/protected-routes", { path = "/x", method = "G3T", auth_type = "basic", credentials = "u:p" }))
            ngx.say(api("DELETE", "/security/protected-routes/1"))
            ngx.say(req("/shop/admin/p1", "10.0.2.1"))
        }
    }
--- response_body
201 {"auth_type":"basic",,"credentials":["boss:<apr1>"],"deployment":"shop","id":1,"method":"ALL","path":"/shop/admin/*","realm":"warden","source":"api"}
401 401 401 401 401 401 401 401 401 401 401 401
200
200
400 {"error":"auth_type: 'digest' is not 'basic' or 'bearer'","field":"auth_type"}
400 {"error":"credentials: 'nocolon' is not 'user:password'","field":"credentials"}
400 {"error":"credentials: user 'u' has a malformed bcrypt hash","field":"credentials"}
400 {"error":"path: path glob 'x' must start with '/' or '*'","field":"path"}
400 {"error":"method: must be an HTTP method (GET, POST, ...) or ALL, got 'G3T'","field":"method"}
200 {"id":1,"message":"protected route 1 deleted"}
200



=== TEST 4: site policy: rate limit, allowed_ips, blocked_paths, disabled
--- http_config eval: $::HttpConfig
--- config
    location /t {
        content_by_lua_block {
            -- the limit counts per clock minute: not across a boundary
            ngx.update_time()
            if ngx.now() % 60 > 57 then ngx.sleep(60.2 - ngx.now() % 60) end
            local codes = {}
            for i = 1, 7 do codes[#codes + 1] = req("/shop/p", "192.0.2.40") end
            ngx.say("5r/m: ", table.concat(codes, " "))
            local _, res = req_res("/shop/p", "192.0.2.40")
            local retry = tonumber(res.headers["retry-after"])
            ngx.say("retry-after in 1..60: ", retry >= 1 and retry <= 60)
            ngx.say("other client: ", req("/shop/p", "192.0.2.41"))
            ngx.say("outside the site: ", req("/p", "192.0.2.40"))
            ngx.say(#warden:events{ type = "rate_limited", ip = "192.0.2.40" })
            ngx.say(api("PUT", "/deployments/shop/security", {
                allowed_ips = { "10.0.0.0/8" }, blocked_paths = { "/shop/wp-admin" } }))
            ngx.say("allowed: ", req("/shop/p", "10.1.1.1"), " not allowed: ", req("/shop/p", "192.0.2.42"))
            ngx.say("blocked path: ", req("/shop/wp-admin/x", "10.1.1.1"))
            ngx.say(api("PUT", "/deployments/shop/security", { enabled = false }))
            warden:block("192.0.2.43")
            ngx.say("disabled: ", req("/shop/p", "192.0.2.43"), " elsewhere: ", req("/p", "192.0.2.43"))
            ngx.say(api("PUT", "/deployments/shop/security", { rate_limit = "fast" }))
            ngx.say(api("PUT", "/deployments/shop/security", { allowed_ips = { "10.0.0.0/99" } }))
            ngx.say(api("PUT", "/deployments/sh%20op/security", {}))
            ngx.say(api("DELETE", "/deployments/shop/security"))
            -- back to the options' policy (5r/m)
            ngx.say(api("GET", "/deployments/shop/security"))
            ngx.say(api("GET", "/deployments/nope/security"))
        }
    }
--- response_body
5r/m: 200 200 200 200 200 429 429
retry-after in 1..60: true
other client: 200
outside the site: 200
1
200 {"allowed_ips":["10.0.0.0/8"],"blocked_paths":["/shop/wp-admin"],"deployment":"shop","enabled":true,"rate_limit":0,"source":"api"}
allowed: 200 not allowed: 403
blocked path: 403
200 {"allowed_ips":[],"blocked_paths":[],"deployment":"shop","enabled":false,"rate_limit":0,"source":"api"}
disabled: 200 elsewhere: 403
400 {"error":"rate_limit: must be a number of requests per second or a string like '10r/s' or '600r/m', got 'fast'","field":"rate_limit"}
400 {"error":"allowed_ips: invalid CIDR '10.0.0.0/99': prefix length must be 0 to 32","field":"allowed_ips"}
404 {"error":"no such endpoint: /api/deployments/sh op/security","field":null}
200 {"deployment":"shop","message":"deleted"}
200 {"allowed_ips":[],"blocked_paths":[],"deployment":"shop","enabled":true,"rate_limit":"5r/m","source":"config"}
404 {"error":"no security policy for deployment 'nope'","field":"deployment"}



=== TEST 5: /security/check behind auth_request (nginx-defender's integration)
--- http_config eval: $::HttpConfig
--- config
    location /t {
        content_by_lua_block {
            local function front(ip, path, headers)
                local h = { ["X-Test-Client"] = ip }
                for k, v in pairs(headers or {}) do h[k] = v end
                local s, res = req_res(path or "/", nil, h, nil, 8092)
                return s .. " score=" .. tostring(res.headers["x-threat-score"])
            end
            ngx.say("clean: ", front("192.0.2.60"))
            warden:block("192.0.2.61", { reason = "test" })
            ngx.say("blocked: ", front("192.0.2.61"))
            ngx.say("denied route: ", front("192.0.2.62", "/hashed/x"))
            ngx.say("route with credentials: ", front("192.0.2.62", "/hashed/x", basic("plain", "pl4in")))
            -- a client halfway to not_found_threshold (4) scores 50
            req("/missing/1", "192.0.2.63"); req("/missing/2", "192.0.2.63")
            ngx.sleep(0.1)
            ngx.say("suspicious: ", front("192.0.2.63"))
            -- nginx-defender's POST { ip } from a trusted caller
            ngx.say(api("POST", "/security/check", { ip = "192.0.2.61" }))
            ngx.say(api("POST", "/security/check", { ip = "nope" }))
            ngx.say(warden:threat_score("192.0.2.63"), " ", warden:threat_score("192.0.2.61"))
            ngx.say(warden:should_block("192.0.2.61"))
            ngx.say(warden:should_block("192.0.2.63"))
            ngx.say(warden:threat_score("x.y"))
        }
    }
--- response_body
clean: 200 score=0
blocked: 403 score=100
denied route: 401 score=0
route with credentials: 200 score=0
suspicious: 200 score=50
403 {"allowed":false,"ip":"192.0.2.61","reason":"blocked: manual","should_block":true,"threat_score":100}
400 {"error":"invalid IP address 'nope'","field":"ip"}
50 100nil
truemanual
false
nilinvalid IP address 'x.y'



=== TEST 6: /security/analyze: combined log lines feed the detector
--- http_config eval: $::HttpConfig
--- config
    location /t {
        content_by_lua_block {
            local lines = {}
            for i = 1, 4 do
                lines[#lines + 1] = '198.51.100.9 - - [21/Nov/2026:10:15:3' .. i
                    .. ' +0000] "GET /nope/' .. i .. ' HTTP/1.1" 404 153 "-" "Mozilla/5.0"'
            end
            ngx.say(api("POST", "/security/analyze", table.concat(lines, "\n")))
            ngx.say("blocked: ", req("/x", "198.51.100.9"))
            -- nginx-defender's JSON form, with a scanner
            ngx.say(api("POST", "/security/analyze", { ip = "198.51.100.10",
                log_entry = '198.51.100.10 - - [21/Nov/2026:10:15:32 +0000] "GET / HTTP/1.1" 200 5 "-" "sqlmap/1.7"' }))
            ngx.say(api("POST", "/security/analyze", "not a log line\n" .. lines[1]:gsub("198.51.100.9", "198.51.100.11")))
            ngx.say(api("POST", "/security/analyze", "garbage"))
            ngx.say(api("POST", "/security/analyze", '{"lines": [1]}'))
        }
    }
--- response_body
200 {"analyzed":4,"errors":[],"rejected":0,"tripped":[{"action":"blocked for 1d","ip":"198.51.100.9","rule":"not_found"}]}
blocked: 403
200 {"analyzed":1,"errors":[],"rejected":0,"tripped":[{"action":"blocked for 1d","ip":"198.51.100.10","rule":"scanner_agent"}]}
200 {"analyzed":1,"errors":[{"error":"line: expected '- ' after the address, got 'a log line'","field":"line","line":1}],"rejected":1,"tripped":[]}
400 {"error":"line 1: line: expected '- ' after the address, got ''","field":"line"}
400 {"error":"log lines must be strings","field":"log_entry"}
--- error_log
warden: auto-blocked 198.51.100.9 for 1d (not_found: 4 in 2m, offence 1)



=== TEST 7: /metrics passes promtool check metrics
--- http_config eval: $::HttpConfig
--- config
    location /t {
        content_by_lua_block {
            req("/x", "192.0.2.70")
            warden:block("192.0.2.71")
            req("/x", "192.0.2.71")
            local res = thttp.request{ port = 8091, path = "/api/metrics",
                headers = { Authorization = "Bearer " .. TOKEN } }
            ngx.say(res.status, " ", res.headers["content-type"])
            local file = os.tmpname()
            local f = io.open(file, "w")
            f:write(res.body)
            f:close()
            local p = io.popen("promtool check metrics < " .. file .. " 2>&1; echo rc=$?")
            ngx.say(p:read("*a"):gsub("%s+$", ""), "")
            p:close()
            os.remove(file)
            -- blocked_ip: the block, and the refused request
            for _, m in ipairs{ 'warden_requests_blocked_total{source="manual"} 1',
                                'warden_events_total{type="blocked_ip"} 2',
                                'warden_blocked_addresses 1',
                                'warden_shm_free_bytes{dict="warden"} ' } do
                ngx.say(m, ": ", res.body:find(m, 1, true) ~= nil)
            end
        }
    }
--- response_body
200 text/plain; version=0.0.4
rc=0
warden_requests_blocked_total{source="manual"} 1: true
warden_events_total{type="blocked_ip"} 2: true
warden_blocked_addresses 1: true
warden_shm_free_bytes{dict="warden"} : true



=== TEST 8: bad options name the option
--- http_config
    lua_shared_dict warden 1m;
--- config
    location /t {
        content_by_lua_block {
            local new = require("resty.warden").new
            for _, o in ipairs{
                { protected_routes = { { path = "/a", auth_type = "basic" } } },
                { protected_routes = { { path = "/a", auth_type = "basic", credentials = "x" } } },
                { sites = { ["bad name"] = {} } },
                { sites = { s = { rate_limit = -1 } } },
                { whitelist = { { type = "ip", value = "300.1.1.1" } } },
                { admin_token = 5 },
                { admin_token = "a", admin_token_file = "/x" },
                { admin_max_body = "huge" },
            } do
                ngx.say(select(3, pcall(function() return
                    require("warden_core").new(o) end)))
            end
        }
    }
--- response_body
opts.protected_routes[1].credentials is required
opts.protected_routes[1].credentials 'x' is not 'user:password'
opts.sites must be 1 to 64 letters, digits, '.', '_' or '-', got 'bad name'
opts.sites.s.rate_limit must be a number of requests per second or a string like '10r/s' or '600r/m', got -1
opts.whitelist[1].value invalid IP address or CIDR '300.1.1.1'
opts.admin_token must be a non-empty string, got 5
opts.admin_token_file cannot be set together with opts.admin_token (choose one)
opts.admin_max_body must be a size from 1k to 1g (bytes, or '64k', '1m'), got 'huge'



=== TEST 9: admin_token_file: read in Rust, refused when other users may read it
--- http_config
    lua_shared_dict warden 1m;
--- config
    location /t {
        content_by_lua_block {
            local path = "/tmp/warden-t12-token-" .. ngx.worker.pid()
            local f = assert(io.open(path, "w"))
            f:write("  0123456789abcdef0123456789abcdef\n")
            f:close()
            local function new(mode)
                os.execute("chmod " .. mode .. " " .. path)
                local w, err = require("warden_core").new{
                    admin_token_file = path }
                if not w then
                    return (err:gsub(path:gsub("%p", "%%%0"), "FILE"))
                end
                return "token of " .. #w:config().admin_token .. " bytes"
            end
            ngx.say(new("644"))
            ngx.say(new("606"))
            ngx.say(new("600"))
            ngx.say(new("640"))
            os.remove(path)
            local _, err = require("warden_core").new{
                admin_token_file = path }
            ngx.say((err:gsub(path:gsub("%p", "%%%0"), "FILE")))
        }
    }
--- response_body
opts.admin_token_file 'FILE' is open to other users (mode 0644); make it readable by its owner only: chmod 600 'FILE'
opts.admin_token_file 'FILE' is open to other users (mode 0606); make it readable by its owner only: chmod 600 'FILE'
token of 32 bytes
token of 32 bytes
opts.admin_token_file 'FILE' cannot be read: No such file or directory (os error 2)
