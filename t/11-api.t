# The admin API (warden:api()) through a real nginx with 4 workers:
# FlatRun's curl examples verbatim, the token, every endpoint, bad input,
# and changes enforced by every worker from the next request.
use lib 't/lib';
use TestWarden;

workers(4);
master_on();

our $Root = $TestWarden::Root;

our $HttpConfig = <<'_EOC_';
    lua_shared_dict warden 4m;
    init_by_lua_block {
        TOKEN = "t0ken-0123456789abcdef"
        warden = require("resty.warden").new{
            admin_token = TOKEN,
            trusted_proxies = { "127.0.0.1" },
            denylist = { "203.0.113.0/24" },
            admin_max_body = "4k",
            detector = { auth_failure_threshold = 5 },
        }
        thttp = require "thttp"
        LIB = package.searchpath("thttp", package.path):gsub("/[^/]*$", "")
        local json = require("warden_core")

        -- api_res(method, path, body?, token?) -> "<status> <body>", res
        -- token: nil = the right one, false = none, else that header
        function api_res(method, path, body, auth)
            local headers = {}
            if auth == nil then
                headers.Authorization = "Bearer " .. TOKEN
            elseif auth then
                headers.Authorization = auth
            end
            if type(body) == "table" then
                body = json.json_encode(body)
            end
            local res, err = thttp.request{ port = 8090, method = method,
                path = "/api" .. path, body = body, headers = headers }
            if not res then
                return "error " .. err
            end
            return res.status .. " " .. res.body:gsub("\n$", ""), res
        end
        function api(...)
            return (api_res(...))
        end

        -- get(path, ip, headers?) -> status of a request from client ip,
        -- and the response; WORKERS counts the workers that answered
        function get(path, ip, headers)
            local h = { ["X-Forwarded-For"] = ip }
            for k, v in pairs(headers or {}) do h[k] = v end
            local res, err = thttp.request{ port = 8090, path = path,
                                            headers = h }
            if not res then
                return "error " .. err
            end
            return res.status
        end

        -- the statuses of n requests, e.g. "200x20", and how many workers
        function fan(path, ip, n)
            return (thttp.fan{ n = n or 40, concurrency = 10, port = 8090,
                               path = path, ip = ip })
        end
    }
    init_worker_by_lua_block { warden:init_worker() }
    server {
        listen 127.0.0.1:8090 reuseport;
        access_by_lua_block { warden:check() }
        log_by_lua_block { warden:log() }
        header_filter_by_lua_block {
            ngx.header["X-Worker-Pid"] = ngx.worker.pid()
        }
        location /api/ {
            allow 127.0.0.1; deny all;
            access_by_lua_block { }
            content_by_lua_block { warden:api() }
        }
        location ~ ^/(admin|wp-admin|site)(/|$) {
            access_by_lua_block { warden:check{ site = "my-app" } }
            content_by_lua_block { ngx.say("site") }
        }
        location / { content_by_lua_block { ngx.say("ok") } }
    }
_EOC_

plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: FlatRun's curl examples, unchanged
--- http_config eval: $::HttpConfig
--- config
    location /t {
        content_by_lua_block {
            -- in the background: this worker must go on serving while
            -- curl talks to it
            local file = os.tmpname()
            os.execute("(TOKEN=" .. TOKEN .. " sh " .. LIB
                       .. "/flatrun-examples.sh; echo END) > " .. file
                       .. " 2>&1 &")
            local out = ""
            for _ = 1, 100 do
                ngx.sleep(0.1)
                local f = io.open(file)
                out = f and f:read("*a") or ""
                if f then f:close() end
                if out:find("END%s*$") then break end
            end
            os.remove(file)
            -- status, then the body's first keys (bodies are JSON with
            -- sorted keys)
            for body, status in out:gmatch("(%b{})%s+(%d%d%d)") do
                ngx.say(status, " ", body:match('^{"([^"]+)"'))
            end
            -- and what they set up is enforced by every worker: the
            -- route, the whitelist, the site's allowed_ips and
            -- blocked_paths (/admin and /wp-admin belong to site my-app)
            ngx.say("route: ", fan("/admin/x", "10.1.2.3", 20))
            ngx.say("credentials: ", get("/admin/x", "10.1.2.3",
                { Authorization = "Basic " .. ngx.encode_base64("admin:secret") }))
            ngx.say("not allowed: ", get("/admin/x", "192.0.2.1"))
            ngx.say("blocked path: ", get("/wp-admin/x", "192.0.2.1"))
            ngx.say("whitelisted: ", get("/wp-admin/x", "10.9.9.9"))
            ngx.say("other sites: ", get("/x", "192.0.2.1"))
        }
    }
--- response_body
201 expires
200 ip
201 auth_type
201 created
200 events
200 captured
200 allowed_ips
200 blocks
200 blocked_ips
200 older_than
route: 401x20 errors=0 workers>1=true
credentials: 200
not allowed: 403
blocked path: 403
whitelisted: 200
other sites: 200



=== TEST 2: without a valid token: 401, and nothing changes
--- http_config eval: $::HttpConfig
--- config
    location /t {
        content_by_lua_block {
            local block = { ip = "192.0.2.50" }
            ngx.say(api("POST", "/security/blocked-ips", block, false))
            ngx.say(api("POST", "/security/blocked-ips", block, "Bearer wrong"))
            ngx.say(api("POST", "/security/blocked-ips", block, "Basic " .. TOKEN))
            local _, res = api_res("GET", "/security/stats", nil, false)
            ngx.say(res.headers["www-authenticate"])
            ngx.say(api("GET", "/security/blocked-ips"))
            ngx.say(get("/x", "192.0.2.50"))
            -- the public endpoints
            ngx.say(api("GET", "/health", nil, false):match('^%d+ .*"status":"ok"') ~= nil)
        }
    }
--- response_body
401 {"error":"missing Authorization: Bearer <token>","field":"Authorization"}
401 {"error":"invalid token","field":"Authorization"}
401 {"error":"Authorization must be Bearer <token>","field":"Authorization"}
Bearer realm="warden"
200 {"blocked_ips":[{"expires":null,"ip":"203.0.113.0/24","permanent":true,"reason":"denylist","remaining":null,"source":"denylist"}],"total":1}
200
true



=== TEST 3: blocked-ips: block in every worker, nginx export, unblock, errors
--- http_config eval: $::HttpConfig
--- config
    location /t {
        content_by_lua_block {
            ngx.say(api("POST", "/security/blocked-ips",
                        { ip = "198.51.100.0/24", reason = "scan", duration = "1h" }):sub(1, 14))
            ngx.say(fan("/x", "198.51.100.7"))
            ngx.say(api("POST", "/security/blocked-ips",
                        { ip = "2001:db8::1", duration = 0 }):match('"permanent":true') ~= nil)
            local _, res = api_res("GET", "/security/blocked-ips?format=nginx")
            ngx.say(res.headers["content-type"])
            ngx.print((res.body:gsub("^#[^\n]*\n", "")))
            ngx.say(api("DELETE", "/security/blocked-ips/198.51.100.0/24"))
            ngx.say(fan("/x", "198.51.100.7"))
            ngx.say(api("DELETE", "/security/blocked-ips/198.51.100.0/24"))
            ngx.say(api("DELETE", "/security/blocked-ips/203.0.113.0/24"))
            ngx.say(api("DELETE", "/security/blocked-ips/not-an-ip"))
            ngx.say(api("POST", "/security/blocked-ips", { ip = "1.2.3.256" }))
            ngx.say(api("POST", "/security/blocked-ips", { reason = "x" }))
            ngx.say(api("POST", "/security/blocked-ips", { ip = "1.2.3.4", duration = -5 }))
            ngx.say(api("POST", "/security/blocked-ips", { ip = "1.2.3.4", reason = 5 }))
            ngx.say(api("POST", "/security/blocked-ips", '{"ip": "1.2.3.4"'))
            ngx.say(api("POST", "/security/blocked-ips", '["1.2.3.4"]'))
            ngx.say(api("POST", "/security/blocked-ips",
                        '{"ip": "1.2.3.4", "reason": "' .. string.rep("x", 5000) .. '"}'))
            ngx.say(api("GET", "/security/blocked-ips?format=xml"))
            ngx.say(api("GET", "/security/blocked-ips"):match('"total":%d+'))
        }
    }
--- response_body
201 {"expires"
403x40 errors=0 workers>1=true
true
text/plain
deny 203.0.113.0/24;
deny 198.51.100.0/24;
deny 2001:db8::1;
200 {"ip":"198.51.100.0/24","message":"unblocked"}
200x40 errors=0 workers>1=true
404 {"error":"198.51.100.0/24 is not blocked","field":"ip"}
409 {"error":"203.0.113.0/24 is in the denylist (configuration), not a block","field":"ip"}
400 {"error":"invalid IP address or CIDR 'not-an-ip'","field":"ip"}
400 {"error":"invalid IP address or CIDR '1.2.3.256'","field":"ip"}
400 {"error":"ip is required: an IP address or a CIDR","field":"ip"}
400 {"error":"duration must be a number of seconds >= 0 or a string like '90s', '15m', '24h', '7d', got -5","field":"duration"}
400 {"error":"reason must be a string","field":"reason"}
400 {"error":"invalid JSON: EOF while parsing an object at line 1 column 16","field":"body"}
400 {"error":"the body must be a JSON object","field":"body"}
413 {"error":"request body of 5031 bytes is over the limit of 4096 (opts.admin_max_body)","field":"body"}
400 {"error":"format must be 'json' or 'nginx', got 'xml'","field":"format"}
"total":2



=== TEST 4: 404 and 405
--- http_config eval: $::HttpConfig
--- config
    location /t {
        content_by_lua_block {
            ngx.say(api("GET", "/security/nothing"))
            ngx.say(api("GET", "/nothing/at/all"))
            local s, res = api_res("PATCH", "/security/blocked-ips")
            ngx.say(s)
            ngx.say(res.headers["allow"])
            ngx.say(api("DELETE", "/security/stats"))
            ngx.say(api("POST", "/health", nil, false))
        }
    }
--- response_body
404 {"error":"no such endpoint: /api/security/nothing","field":null}
404 {"error":"no such endpoint: /api/nothing/at/all","field":null}
405 {"error":"PATCH is not allowed here (allowed: GET, POST)","field":null}
GET, POST
405 {"error":"DELETE is not allowed here (allowed: GET)","field":null}
405 {"error":"POST is not allowed here (allowed: GET)","field":null}



=== TEST 5: whitelist: addresses bypass blocks, paths bypass every check
--- http_config eval: $::HttpConfig
--- config
    location /t {
        content_by_lua_block {
            api("POST", "/security/blocked-ips", { ip = "192.0.2.0/24" })
            ngx.say("blocked: ", fan("/x", "192.0.2.9", 20))
            ngx.say(api("POST", "/security/whitelist",
                        { type = "ip", value = "192.0.2.9", description = "ops" }):gsub('"created":%d+', '"created":T'), "")
            ngx.say("whitelisted ip: ", fan("/x", "192.0.2.9", 20))
            ngx.say("others still blocked: ", get("/x", "192.0.2.10"))
            ngx.say(api("POST", "/security/whitelist",
                        { type = "path", value = "/health" }):gsub('"created":%d+', '"created":T'), "")
            ngx.say("whitelisted path: ", fan("/health/live", "192.0.2.10", 20))
            ngx.say("other paths: ", get("/x", "192.0.2.10"))
            ngx.say("denylisted on the path: ", get("/health", "203.0.113.5"))
            ngx.say(api("GET", "/security/whitelist"):gsub('"created":%d+', '"created":T'), "")
            ngx.say(api("POST", "/security/whitelist", { type = "ip", value = "192.0.2.9" }))
            ngx.say(api("DELETE", "/security/whitelist/1"))
            ngx.say(api("DELETE", "/security/whitelist/1"))
            ngx.say(api("DELETE", "/security/whitelist/x"))
            ngx.say("removed: ", fan("/x", "192.0.2.9", 20))
            ngx.say(api("POST", "/security/whitelist", { type = "host", value = "a" }))
            ngx.say(api("POST", "/security/whitelist", { type = "cidr", value = "10.0.0.0/40" }))
            ngx.say(api("POST", "/security/whitelist", { type = "path", value = "health" }))
            ngx.say(api("POST", "/security/whitelist", { type = "ip", value = "10.0.0.1", color = "red" }))
            ngx.say(warden:stats().policy_skipped >= 20)
        }
    }
--- response_body
blocked: 403x20 errors=0 workers>1=true
201 {"created":T,"description":"ops","id":1,"type":"ip","value":"192.0.2.9"}
whitelisted ip: 200x20 errors=0 workers>1=true
others still blocked: 403
201 {"created":T,"description":"","id":2,"type":"path","value":"/health"}
whitelisted path: 200x20 errors=0 workers>1=true
other paths: 403
denylisted on the path: 200
200 {"total":2,"whitelist":[{"created":T,"description":"ops","id":1,"source":"api","type":"ip","value":"192.0.2.9"},{"created":T,"description":"","id":2,"source":"api","type":"path","value":"/health"}]}
409 {"error":"192.0.2.9 is already in the whitelist (id 1)","field":"value"}
200 {"id":1,"message":"whitelist entry 1 deleted"}
404 {"error":"no whitelist entry with id 1","field":"id"}
400 {"error":"id must be a positive integer, got 'x'","field":"id"}
removed: 403x20 errors=0 workers>1=true
400 {"error":"type: must be 'ip', 'cidr' or 'path', got 'host'","field":"type"}
400 {"error":"value: invalid CIDR '10.0.0.0/40': prefix length must be 0 to 32","field":"value"}
400 {"error":"value: path glob 'health' must start with '/' or '*'","field":"value"}
400 {"error":"color: is not a known field (known: type, value, description)","field":"color"}
true



=== TEST 6: events, cleanup, stats, real-time capture
--- http_config eval: $::HttpConfig
--- config
    location /t {
        content_by_lua_block {
            api("POST", "/security/blocked-ips", { ip = "192.0.2.77", reason = "r1" })
            api("POST", "/security/blocked-ips", { ip = "192.0.2.78", reason = "r2" })
            local s, res = api_res("GET", "/security/events?limit=1&type=blocked_ip")
            ngx.say(s:match("^%d+"), " ", s:match('"total":%d+'), " ", s:match('"ip":"[^"]+"'))
            ngx.say(api("GET", "/security/events?ip=192.0.2.77"):match('"total":%d+'))
            ngx.say(api("GET", "/security/events?limit=abc"))
            ngx.say(api("GET", "/security/events?type=bogus"):match("^%d+ .-\"field\":\"type\""))
            ngx.say(api("GET", "/security/events?since=-1"):match("^%d+ .-\"field\":\"since\""))
            local st = api("GET", "/security/stats")
            ngx.say(st:match('"blocked_ips":%d+'), " ", st:match('"top_offenders":%[[^%]]*%]'))
            -- capture: off by default, on for every worker, then off
            get("/before", "192.0.2.200")
            ngx.say(api("PUT", "/security/realtime-capture", { enabled = true }):match('"enabled":true') ~= nil)
            for i = 1, 8 do get("/captured/" .. i, "192.0.2.201") end
            ngx.say(api("PUT", "/security/realtime-capture", { enabled = false }):match('"enabled":false') ~= nil)
            get("/after", "192.0.2.202")
            ngx.sleep(0.2)
            local _, r = api_res("GET", "/security/events?type=capture&limit=100")
            local ev = require("warden_core").json_decode(r.body).events
            local paths = {}
            for _, e in ipairs(ev) do
                if e.path:find("^/captured/") and e.ip == "192.0.2.201" then
                    paths[#paths + 1] = e.path
                elseif not e.path:find("^/api/") then
                    paths[#paths + 1] = "unexpected " .. e.path
                end
            end
            table.sort(paths)
            ngx.say(table.concat(paths, " "))
            ngx.say(api("PUT", "/security/realtime-capture", { enabled = "yes" }))
            ngx.say(api("POST", "/security/cleanup", {}))
            ngx.say(api("POST", "/security/cleanup", { older_than = "soon" }))
            ngx.say(api("POST", "/security/cleanup", { older_than = 0 }):match('"removed":(%d+)') + 0 > 2)
            ngx.say(api("GET", "/security/events"):match('"total":%d+'))
        }
    }
--- response_body
200 "total":1 "ip":"192.0.2.78"
"total":1
400 {"error":"limit must be a positive integer, got 'abc'","field":"limit"}
400 {"error":"type must be one of blocked_ip, rate_limited, auth_failed, suspicious, scan_detected, capture, challenge_issued, challenge_solved, challenge_failed, got 'bogus'","field":"type"
400 {"error":"since must be a time in seconds since the epoch, got -1","field":"since"
"blocked_ips":3 "top_offenders":[{"events":1,"ip":"192.0.2.77"},{"events":1,"ip":"192.0.2.78"}]
true
true
/captured/1 /captured/2 /captured/3 /captured/4 /captured/5 /captured/6 /captured/7 /captured/8
400 {"error":"enabled must be true or false, got yes","field":"enabled"}
400 {"error":"older_than is required: seconds, or a duration like '7d'","field":"older_than"}
400 {"error":"older_than: duration must be a duration like '90s', '15m', '24h' or '7d', got 'soon'","field":"older_than"}
true
"total":0



=== TEST 7: refresh re-reads the dict in every worker; the policy survives a reload
--- http_config eval: $::HttpConfig
--- config
    location /t {
        content_by_lua_block {
            api("POST", "/security/whitelist", { type = "path", value = "/open" })
            -- a block written behind warden's back (as a state file or
            -- another tool would): the workers learn of it on refresh
            local engine = warden.engine
            local rec = engine:prepare("192.0.2.33", 0, "external", "manual", ngx.now())
            warden.dict:set(rec.key, rec.value)
            ngx.say("before: ", get("/x", "192.0.2.33"))
            ngx.say(api("POST", "/security/refresh"))
            ngx.say("after: ", fan("/x", "192.0.2.33", 20))
            ngx.say("open: ", get("/open", "192.0.2.33"))
        }
    }
--- response_body
before: 200
200 {"blocks":2,"message":"refreshed","protected_routes":0}
after: 403x20 errors=0 workers>1=true
open: 200



=== TEST 8: a change waits while another worker holds the policy's lock
--- http_config eval: $::HttpConfig
--- config
    location /t {
        content_by_lua_block {
            -- another worker's change, for 50 ms
            warden.dict:set("p|lock", 1, 0.05)
            local t0 = ngx.now()
            ngx.say(api("POST", "/security/whitelist",
                        { type = "path", value = "/waited" }):gsub('"created":%d+', '"created":T'), "")
            ngx.update_time()
            ngx.say("waited: ", ngx.now() - t0 >= 0.04)
            ngx.say(api("GET", "/security/whitelist"):match('"total":%d+'))
        }
    }
--- response_body
201 {"created":T,"description":"","id":1,"type":"path","value":"/waited"}
waited: true
"total":1
