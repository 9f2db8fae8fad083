# The engine's operations on the shared dict (src/ops, src/lua/ops.rs) as
# Lua and the admin API call them: errors carry the field and the status
# of their kind; a policy change waits for another worker's lock, then
# gives up with 503.
use lib 't/lib';
use TestWarden;

workers(2);
master_on();

our $HttpConfig = <<'_EOC_';
    lua_shared_dict warden 64k;
    init_by_lua_block {
        TOKEN = "t0ken-0123456789abcdef"
        warden = require("resty.warden").new{
            admin_token = TOKEN,
            denylist = { "203.0.113.0/24" },
            detector = false,
        }
        thttp = require "thttp"
        local json = require("warden_core")
        -- api(method, path, body?) -> status, body (without its newline)
        function api(method, path, body)
            if type(body) == "table" then
                body = json.json_encode(body)
            end
            local res = assert(thttp.request{ port = 1984, method = method,
                path = "/api" .. path, body = body, timeout = 10000,
                headers = { Authorization = "Bearer " .. TOKEN } })
            return res.status, (res.body:gsub("\n$", ""))
        end
    }
    init_worker_by_lua_block { warden:init_worker() }
_EOC_

plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: errors name their field and carry their kind's status
--- http_config eval: $::HttpConfig
--- config
    location /api/ { content_by_lua_block { warden:api() } }
    location /t {
        content_by_lua_block {
            local e = warden.engine
            ngx.say(e:block("nope"))
            ngx.say(e:block("192.0.2.1", "soon"))
            ngx.say(e:unblock("192.0.2.9"))
            ngx.say(e:unblock("203.0.113.0/24"))
            ngx.say(e:edit_policy(true, "rename", "x"))
            ngx.say(e:edit_policy(true, "remove", "whitelist", 7))
            ngx.say(e:edit_policy(true, "delete_site", "shop"))
            -- the public API keeps its two values
            ngx.say(warden:block("nope"))
            -- a stored document that is not JSON: the API says so (500)
            ngx.shared.warden:set("p", "{")
            ngx.say(api("GET", "/security/whitelist"))
            ngx.shared.warden:delete("p")
            ngx.say(api("GET", "/security/whitelist"))
            -- a full dict: 507, and no field
            local dict, i = ngx.shared.warden, 0
            for _, size in ipairs({ 200, 40, 8, 1 }) do
                while dict:safe_set("f|" .. i, string.rep("x", size)) do
                    i = i + 1
                end
            end
            ngx.say(api("POST", "/security/blocked-ips", { ip = "192.0.2.50" }))
            ngx.say(e:counter("o|192.0.2.50", 1, 60))
        }
    }
--- response_body
nilinvalid IP address or CIDR 'nope'ip400
nilduration must be a duration like '90s', '15m', '24h' or '7d', got 'soon'duration400
nil192.0.2.9 is not blockedip404
nil203.0.113.0/24 is in the denylist (configuration), not a blockip409
nilunknown policy edit 'rename'op400
nilno whitelist entry with id 7id404
nilno security policy for deployment 'shop' set through the APIdeployment404
nilinvalid IP address or CIDR 'nope'
500{"error":"stored policy document: invalid JSON: EOF while parsing an object at line 1 column 1","field":null}
200{"total":0,"whitelist":[]}
507{"error":"shared dict 'warden' is full (no memory): cannot block 192.0.2.50","field":null}
nilno memorynil507
--- error_log
offence and rate-limit counters are not created
--- no_error_log
[alert]



=== TEST 2: a policy change waits for the lock another worker holds; after 3 s it gives up with 503
--- http_config eval: $::HttpConfig
--- config
    location /api/ { content_by_lua_block { warden:api() } }
    location /t {
        content_by_lua_block {
            local dict = ngx.shared.warden
            -- held by a worker that was killed: the lock expires
            dict:safe_add("p|lock", 1, 0.3)
            ngx.say(warden.engine:edit_policy(false, "capture", true))
            local t0 = ngx.now()
            local status = api("POST", "/security/whitelist",
                               { type = "ip", value = "192.0.2.1" })
            ngx.update_time()
            ngx.say(status, " after the lock expired: ", ngx.now() - t0 >= 0.25)
            -- held for longer than a change waits
            dict:safe_add("p|lock", 1, 10)
            t0 = ngx.now()
            ngx.say(api("POST", "/security/whitelist",
                        { type = "ip", value = "192.0.2.2" }))
            ngx.update_time()
            ngx.say("gave up after ", math.floor(ngx.now() - t0 + 0.5), " s")
            dict:delete("p|lock")
            local _, body = api("GET", "/security/whitelist")
            ngx.say(select(2, body:gsub('"value"', "")), " entry")
        }
    }
--- response_body
false
201 after the lock expired: true
503{"error":"cannot change the policy: another change holds the lock","field":null}
gave up after 3 s
1 entry
--- no_error_log
[alert]
--- timeout: 20
