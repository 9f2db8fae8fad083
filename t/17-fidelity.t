# Fidelity to the systems warden replaces, through a real nginx with 4
# workers: FlatRun's agent's calls to its internal API (as its Go code
# sends them, no token), nginx-defender's integration guide (its shell
# snippets run verbatim, its auth_request and Lua configurations), and a
# deployment named by a route or site policy applying to the server of
# that server_name.
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
            detector = { not_found_threshold = 5 },
        }
        -- nginx-defender's Lua integration calls its module "defender"
        defender = warden
        thttp = require "thttp"
        LIB = package.searchpath("thttp", package.path):gsub("/[^/]*$", "")

        -- sh(script) -> what t/lib/<script> prints, up to its END line;
        -- in the background: this worker must go on serving meanwhile
        function sh(script)
            local file = os.tmpname()
            os.execute("(bash " .. LIB .. "/" .. script .. "; echo END) > "
                       .. file .. " 2>&1 &")
            local out = ""
            for _ = 1, 150 do
                ngx.sleep(0.1)
                local f = io.open(file)
                out = f and f:read("*a") or ""
                if f then f:close() end
                if out:find("END%s*$") then break end
            end
            os.remove(file)
            return (out:gsub('"expires":[%d.]+', '"expires":T')
                       :gsub("\nEND%s*$", ""))
        end

        -- api_res(method, path, body?, prefix?) -> "<status> <body>", res;
        -- prefix "/api" (no token) by default, "/admin-api" with the token
        function api_res(method, path, body, prefix)
            prefix = prefix or "/api"
            local headers = {}
            if prefix == "/admin-api" then
                headers.Authorization = "Bearer " .. TOKEN
            end
            local res, err = thttp.request{ port = 8090, method = method,
                path = prefix .. path, body = body, headers = headers }
            if not res then
                return "error " .. err
            end
            return res.status .. " " .. res.body:gsub("\n$", ""), res
        end
        function api(...)
            return (api_res(...))
        end

        -- get(path, ip, port?) -> status, response of a request from ip
        function get(path, ip, port)
            local res, err = thttp.request{ port = port or 8090, path = path,
                headers = { ["X-Forwarded-For"] = ip } }
            if not res then
                return "error " .. err
            end
            return res.status, res
        end

        function fan(path, ip, n)
            return (thttp.fan{ n = n or 20, concurrency = 10, port = 8090,
                               path = path, ip = ip })
        end
    }
    init_worker_by_lua_block { warden:init_worker() }

    # FlatRun's internal API: a private port, no token
    server {
        listen 127.0.0.1:8081;
        location /_internal/ {
            allow 127.0.0.1; deny all;
            content_by_lua_block { warden:api({ token = false }) }
        }
    }

    # nginx-defender's service (its port 8080 in its guide)
    server {
        listen 127.0.0.1:8090 reuseport;
        access_by_lua_block { warden:check() }
        log_by_lua_block { warden:log() }
        header_filter_by_lua_block {
            ngx.header["X-Worker-Pid"] = ngx.worker.pid()
        }

        # nginx-defender's API (no token: its scripts send none)
        location /api/ {
            allow 127.0.0.1; deny all;
            access_by_lua_block { }
            content_by_lua_block { warden:api({ token = false }) }
        }
        location /admin-api/ {
            access_by_lua_block { }
            content_by_lua_block { warden:api() }
        }
        location / { content_by_lua_block { ngx.say("ok") } }
    }

    # the front end of nginx-defender's guide (clients named by
    # X-Forwarded-For, as if they were its peers)
    server {
        listen 127.0.0.1:8093;
        set_real_ip_from 127.0.0.1;
        real_ip_header X-Forwarded-For;

        # Method 1 (the proxy_pass to its service)
        location = /defender-check {
            internal;
            proxy_pass http://127.0.0.1:8090/api/check;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Real-IP $remote_addr;
        }
        location /guarded/ {
            auth_request /defender-check;
            auth_request_set $defender_score $upstream_http_x_threat_score;
            add_header X-Threat-Score $defender_score;
            add_header X-Protected-By "nginx-defender";
            content_by_lua_block { ngx.say("app") }
        }

        # Method 2 (its access_by_lua_block)
        location /lua-defender/ {
            access_by_lua_block {
                local ip = ngx.var.remote_addr

                if defender.should_block(ip) then
                    ngx.status = 403
                    ngx.say("Access denied by nginx-defender")
                    ngx.exit(403)
                end

                local score = defender.get_threat_score(ip)
                ngx.header["X-Threat-Score"] = score
            }
            content_by_lua_block { ngx.say("app") }
        }
    }

    # a deployment's server: routes and site policies naming "my-app"
    # apply here without a site in check()
    server {
        listen 127.0.0.1:8091;
        server_name my-app www.my-app.example;
        access_by_lua_block { warden:check() }
        location / { content_by_lua_block { ngx.say("my-app") } }
    }
_EOC_

plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: FlatRun's agent: block-ip, unblock-ip, the health check; no token
--- http_config eval: $::HttpConfig
--- config
    location /t {
        content_by_lua_block {
            ngx.say(sh("flatrun-agent.sh"))
            ngx.say("blocked: ", fan("/x", "192.0.2.9"))
            local list = api("GET", "/security/blocked-ips", nil, "/admin-api")
            local item = list:match('{[^{}]*"ip":"192.0.2.9"[^{}]*}')
            local left = tonumber(item:match('"remaining":(%d+)'))
            ngx.say((item:gsub('"expires":[%d.]+', '"expires":T')
                         :gsub('"remaining":%d+', '"remaining":R')),
                    " ", left > 50 and left <= 60)
            ngx.say(sh("flatrun-agent-unblock.sh"))
            ngx.say("unblocked: ", fan("/x", "192.0.2.9"))
            ngx.say(sh("flatrun-agent-unblock.sh"))
            -- the token is waived where api{ token = false } says so only
            ngx.say(api("POST", "/security/refresh-blocked-ips", nil, "/admin-api"):match("^%d+ "))
            local res = thttp.request{ port = 8090, method = "POST",
                path = "/admin-api/_internal/security/refresh-blocked-ips" }
            ngx.say(res.status)
            -- FlatRun's documented endpoint takes ttl too: not permanent
            ngx.say((api("POST", "/security/blocked-ips",
                         '{"ip": "192.0.2.11", "ttl": 60}', "/admin-api")
                     :gsub('"expires":[%d.]+', '"expires":T')))
            -- and a field it does not know is refused, nothing blocked
            ngx.say(api("POST", "/security/blocked-ips",
                        '{"ip": "192.0.2.12", "tll": 60}', "/admin-api"))
            ngx.say((get("/x", "192.0.2.12")))
        }
    }
--- response_body
== block-ip ttl=60
{"expires":T,"ip":"192.0.2.9","message":"blocked","permanent":false,"reason":"","remaining":60,"source":"manual","success":true}
== block-ip, the agent's permanent (1 year)
{"expires":T,"ip":"192.0.2.10","message":"blocked","permanent":false,"reason":"","remaining":31536000,"source":"manual","success":true}
== health check
yes
blocked: 403x20 errors=0 workers>1=true
{"expires":T,"ip":"192.0.2.9","permanent":false,"reason":"","remaining":R,"source":"manual"} true
{"ip":"192.0.2.9","message":"unblocked","success":true}
unblocked: 200x20 errors=0 workers>1=true
{"ip":"192.0.2.9","message":"192.0.2.9 was not blocked","success":true}
200 
401
201 {"expires":T,"ip":"192.0.2.11","message":"blocked","permanent":false,"reason":"","remaining":60,"source":"manual"}
400 {"error":"tll: is not a known field (known: ip, duration, ttl, reason, action)","field":"tll"}
200



=== TEST 2: nginx-defender's guide: its shell snippets, verbatim
--- http_config eval: $::HttpConfig
--- config
    location /t {
        content_by_lua_block {
            ngx.say((sh("nginx-defender-guide.sh")
                     :gsub('"action":"[^"]*"', '"action":A')))
            ngx.say("auto-blocked: ", fan("/x", "198.51.100.23"))
            ngx.say("banned: ", fan("/x", "192.0.2.44"))
        }
    }
--- response_body
== ban-ip.sh 192.0.2.44
{"expires":T,"ip":"192.0.2.44","message":"blocked","permanent":false,"reason":"nginx-defender auto-block","remaining":3600,"source":"manual"}

iptables -A INPUT -s 192.0.2.44 -j DROP
Blocked 192.0.2.44 for 3600s - nginx-defender auto-block
== log-processing.sh
{"analyzed":1,"errors":[],"rejected":0,"tripped":[]}
{"analyzed":1,"errors":[],"rejected":0,"tripped":[]}
{"analyzed":1,"errors":[],"rejected":0,"tripped":[]}
{"analyzed":1,"errors":[],"rejected":0,"tripped":[]}
{"analyzed":1,"errors":[],"rejected":0,"tripped":[{"action":A,"ip":"198.51.100.23","rule":"not_found"}]}
{"analyzed":1,"errors":[],"rejected":0,"tripped":[]}

== dynamic-config.sh
# Auto-generated by nginx-defender
deny 192.0.2.44;
deny 198.51.100.23;
nginx -s reload
auto-blocked: 403x20 errors=0 workers>1=true
banned: 403x20 errors=0 workers>1=true



=== TEST 3: nginx-defender's auth_request and Lua integrations
--- http_config eval: $::HttpConfig
--- config
    location /t {
        content_by_lua_block {
            ngx.say(api("POST", "/block",
                '{"ip":"192.0.2.61","duration":"3600s","reason":"test"}'):match("^%d+"))
            for _, ip in ipairs({ "192.0.2.61", "192.0.2.62" }) do
                local s, res = get("/guarded/x", ip, 8093)
                ngx.say("auth_request ", ip, ": ", s, " ",
                        tostring(res.headers["x-threat-score"]), " ",
                        tostring(res.headers["x-protected-by"]))
                s, res = get("/lua-defender/x", ip, 8093)
                ngx.say("lua ", ip, ": ", s, " ",
                        tostring(res.headers["x-threat-score"]), " ",
                        (res.body:gsub("\n", "")))
            end
            ngx.say((warden:get_threat_score("192.0.2.61")))
            ngx.say(warden:should_block("192.0.2.61"))
            ngx.say((warden.get_threat_score("192.0.2.62")))
            ngx.say(require("resty.warden").should_block("192.0.2.62"))
            -- Laravel's Http::post('/api/check', ['ip' => $ip])
            ngx.say(api("POST", "/check", '{"ip":"192.0.2.61"}'))
        }
    }
--- response_body
201
auth_request 192.0.2.61: 403 nil nil
lua 192.0.2.61: 403 nil Access denied by nginx-defender
auth_request 192.0.2.62: 200 0 nginx-defender
lua 192.0.2.62: 200 0 app
100
truemanual
0
false
403 {"allowed":false,"ip":"192.0.2.61","reason":"blocked: manual","should_block":true,"threat_score":100}



=== TEST 4: a deployment applies to the server of that server_name
--- http_config eval: $::HttpConfig
--- config
    location /t {
        content_by_lua_block {
            -- FlatRun's documented example
            ngx.say(api("POST", "/security/protected-routes",
                '{"path": "/admin", "method": "ALL", "auth_type": "basic", '
                .. '"credentials": "admin:secret", "deployment": "my-app"}',
                "/admin-api"):match("^%d+"))
            ngx.say("my-app: ", (get("/admin/x", "192.0.2.70", 8091)))
            local ok = thttp.request{ port = 8091, path = "/admin/x",
                headers = { Authorization = "Basic "
                            .. ngx.encode_base64("admin:secret") } }
            ngx.say("my-app with credentials: ", ok.status)
            ngx.say("another server: ", (get("/admin/x", "192.0.2.70")))
            ngx.say(api("PUT", "/deployments/my-app/security",
                '{"blocked_paths": ["/wp-admin"]}', "/admin-api"):match("^%d+"))
            ngx.say("my-app: ", (get("/wp-admin/x", "192.0.2.70", 8091)))
            ngx.say("another server: ", (get("/wp-admin/x", "192.0.2.70")))
        }
    }
--- response_body
201
my-app: 401
my-app with credentials: 200
another server: 200
200
my-app: 403
another server: 200
