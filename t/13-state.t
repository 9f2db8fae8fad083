# state_file: blocks of every source and the admin API's policy survive a
# full stop and start of another nginx ("node", 2 workers, started and
# stopped by the test through t/lib/tnode.lua); corrupt, unreadable and
# unwritable state files never stop nginx.
use lib 't/lib';
use TestWarden;

$TestWarden::Timeout = 60;  # the default response timeout of this file's blocks

our $Http = <<'_EOC_';
    lua_shared_dict warden 1m;
    init_by_lua_block {
        tnode = require "tnode"
        -- "target source seconds-left reason" lines of node n
        function blocked(n)
            local _, body = n:get("/blocked")
            return body
        end
        -- node a with state_file in DIR, plus `extra` new{} options and
        -- `server` lines
        DIR = tnode.BASE .. "a/data/"
        function state_node(extra, server)
            return tnode.node{ name = "a", port = 1991, server = server,
                warden = 'state_file = "' .. DIR .. 'state",\n'
                         .. (extra or "") }
        end
        -- once a write fault is mended: the next write is logged, and a
        -- restart brings every block back
        function recover(a)
            until_true(function() return a:count("written again") > 0 end)
            ngx.say("recovered: ", a:count("written again"))
            a:stop()
            assert(a:start())
            ngx.say((blocked(a):gsub(" manual %-1 ", "")))
            a:stop()
        end
        -- a write of the state file is due every state_interval, later on
        -- a loaded machine
        until_true = require("twait").until_true
        -- the count of failed writes in node a's /stats
        function save_errors(a)
            local _, stats = a:get("/stats")
            return tonumber(stats:match("state_save_errors=(%d+)"))
        end
        function lines(s)
            local t = {}
            for l in s:gmatch("[^\n]+") do t[#t + 1] = l end
            return t
        end
    }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    # (before TestWarden's own, which adds the package paths: either order
    # gives the same block)
    my $http = $block->http_config // '';
    $block->set_value('http_config', $http . $Http) unless $http =~ /tnode/;
});

plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: restart: blocks of every source come back with their remaining time, and the policy
--- config
    location = /t {
        content_by_lua_block {
            local a = state_node([[
                detector = { not_found_threshold = 5,
                             auto_block_duration = "2h" },
            ]], [[
                location /shop/ {
                    access_by_lua_block { warden:check{ site = "shop" } }
                    content_by_lua_block { ngx.say("shop") }
                }
            ]])
            assert(a:start())
            ngx.say("api: ", (a:api("POST", "/security/blocked-ips",
                '{"ip":"192.0.2.1","reason":"by api","duration":"1h"}')))
            local _, body = a:get("/lua?do=block&target=198.51.100.0/24"
                                  .. "&reason=by+lua")
            ngx.print("lua: ", body)
            for i = 1, 6 do a:get("/nope" .. i, "192.0.2.9") end
            ngx.say("whitelist: ", (a:api("POST", "/security/whitelist",
                '{"type":"ip","value":"10.9.0.0/16","description":"office"}')))
            ngx.say("route: ", (a:api("POST", "/security/protected-routes",
                '{"path":"/admin","auth_type":"bearer","credentials":["t0k"]}')))
            ngx.say("site: ", (a:api("PUT", "/deployments/shop/security",
                '{"blocked_paths":["/shop/secret*"]}')))
            ngx.sleep(1.5)  -- the state file is written within ~1 s
            ngx.update_time()
            local t0 = ngx.now()
            local before = lines(blocked(a))
            assert(a:stop())
            ngx.sleep(2)    -- time passes while nginx is stopped
            assert(a:start())
            local after = lines(blocked(a))
            ngx.update_time()
            local elapsed = ngx.now() - t0  -- at least the 2 s, and more
            ngx.say("blocks: ", #before, " -> ", #after)
            for i, l in ipairs(before) do
                local t, src, left, why = l:match("^(%S+) (%S+) (%S+) (.*)$")
                local t2, src2, left2, why2 =
                    (after[i] or ""):match("^(%S+) (%S+) (%S+) (.*)$")
                local lost = tonumber(left) - tonumber(left2 or 0)
                ngx.say(t, " ", src, " ", why, ": ",
                        t == t2 and src == src2 and why == why2
                        and (left == "-1" and left2 == "-1"
                             and "permanent" or (lost >= 2
                                                 and math.abs(lost - elapsed) <= 1.5
                                                 and "kept its expiry"
                                                 or "lost " .. lost .. "s")))
            end
            for _, ip in ipairs({ "192.0.2.1", "198.51.100.7", "192.0.2.9",
                                  "192.0.2.200" }) do
                ngx.say(ip, " ", a:statuses("/", ip, 8))
            end
            local _, wl = a:api("GET", "/security/whitelist")
            ngx.say("whitelist kept: ", wl:find("10.9.0.0/16", 1, true) ~= nil)
            ngx.say("route kept: ", (a:get("/admin/x", "192.0.2.50")), " ",
                    (a:get("/admin/x", "192.0.2.50",
                           { Authorization = "Bearer t0k" })))
            ngx.say("site kept: ", (a:get("/shop/secret1", "192.0.2.51")),
                    " ", (a:get("/shop/open", "192.0.2.51")))
            ngx.say("logged: ", a:count("restored 3 blocks and the admin"
                                        .. " API's policy from"))
            a:stop()
        }
    }
--- response_body
api: 201
lua: true 198.51.100.0/24
whitelist: 201
route: 201
site: 200
blocks: 3 -> 3
192.0.2.1 manual by api: kept its expiry
192.0.2.9 auto not_found: 5 in 2m: kept its expiry
198.51.100.0/24 manual by lua: permanent
192.0.2.1 403x8
198.51.100.7 403x8
192.0.2.9 403x8
192.0.2.200 200x8
whitelist kept: true
route kept: 401 200
site kept: 403 200
logged: 1



=== TEST 2: unblocks and expiry survive too; a graceful stop writes the last change at once
--- config
    location = /t {
        content_by_lua_block {
            local a = state_node[[
                state_interval = "1h",
            ]]
            assert(a:start())
            a:get("/lua?do=block&target=192.0.2.1")
            a:get("/lua?do=block&target=192.0.2.2")
            a:get("/lua?do=block&target=192.0.2.3&duration=2")
            ngx.sleep(0.5)  -- the first write (at start) is done; the next
                            -- would wait an hour: only the stop writes it
            a:get("/lua?do=unblock&target=192.0.2.2")
            assert(a:stop())
            ngx.sleep(2.5)  -- 192.0.2.3's block expires while stopped
            assert(a:start())
            ngx.say(blocked(a))
            ngx.say(a:count("1 expired while nginx was stopped"))
            a:stop()
        }
    }
--- response_body
192.0.2.1 manual -1 
1



=== TEST 3: a crash (kill -9 of every process) loses at most state_interval
--- config
    location = /t {
        content_by_lua_block {
            local a = state_node[[
                state_interval = 0.5,
            ]]
            assert(a:start())
            a:get("/lua?do=block&target=2001:db8::/48&duration=1h")
            ngx.sleep(1.2)
            a:kill()
            assert(a:start())
            ngx.say(blocked(a):match("^%S+ %S+"))
            ngx.say(a:statuses("/", "2001:db8::7", 4))
            a:stop()
        }
    }
--- response_body
2001:db8::/48 manual
403x4



=== TEST 4: a corrupt state file is set aside and logged; nginx starts and serves
--- config
    location = /t {
        content_by_lua_block {
            local a = state_node()
            tnode.write(DIR .. "state", '{"format":"lua-resty-warden state",'
                        .. '"version":1,"blocks":[{"target":"10.0.0.300"')
            assert(a:start())
            ngx.say((a:get("/", "192.0.2.1")))
            local log = a:log()
            ngx.say(log:match("%[error%].-(warden: [^,]*corrupt[^;]*)") ~= nil)
            local aside = log:match("moved it to (%S+);")
            ngx.say("set aside: ", aside ~= nil and tnode.read(aside) ~= nil)
            -- a new, good file replaces it (the first write, at start)
            until_true(function() return tnode.read(DIR .. "state") ~= nil end)
            ngx.say((tnode.read(DIR .. "state") or "none"):sub(1, 40))
            a:stop()
        }
    }
--- response_body
200
true
set aside: true
{"format":"lua-resty-warden state","vers



=== TEST 5: an unreadable state file (a directory) is logged; nginx starts
--- config
    location = /t {
        content_by_lua_block {
            local a = state_node()
            os.execute("mkdir -p " .. DIR .. "state/sub")
            assert(a:start())
            ngx.say((a:get("/", "192.0.2.1")))
            ngx.say(a:count("[error]") > 0,
                    " ", a:log():find("state", 1, true) ~= nil)
            a:stop()
        }
    }
--- response_body
200
true true



=== TEST 6: an unwritable directory: logged once, counted, blocks still enforced; written again once fixed
--- config
    location = /t {
        content_by_lua_block {
            if not tnode.WORKER_USER then
                -- as a normal user the workers are the test's own user
                ngx.say("skipped: needs root to run workers as another user")
                return
            end
            local a = state_node[[
                state_interval = 0.2,
            ]]
            os.execute("chown root " .. DIR .. "; chmod 755 " .. DIR)
            assert(a:start())
            for i = 1, 3 do
                a:get("/lua?do=block&target=192.0.2." .. i)
                ngx.sleep(0.4)
            end
            ngx.say(a:statuses("/", "192.0.2.2", 4))
            until_true(function() return save_errors(a) > 1 end)
            ngx.say("logged: ", a:count("changes will not survive a restart"))
            ngx.say(save_errors(a) > 1)
            tnode.chown(DIR)
            recover(a)
        }
    }
--- response_body_like chomp
^(?:403x4
logged: 1
true
recovered: 1
192.0.2.1
192.0.2.2
192.0.2.3
|skipped: .*
)$



=== TEST 7: a full filesystem: logged once, counted, the last good file kept whole; written again once there is room
--- config
    location = /t {
        content_by_lua_block {
            local a = state_node[[
                state_interval = 0.2,
            ]]
            -- a 64 KiB filesystem of its own (needs root and mount rights)
            os.execute("umount " .. DIR .. " 2>/dev/null")  -- a leftover
            local mounted = os.execute("mount -t tmpfs -o size=64k,mode=0755"
                                       .. " tmpfs " .. DIR .. " 2>/dev/null")
            if mounted ~= 0 and mounted ~= true then
                ngx.say("skipped: cannot mount a small tmpfs here")
                return
            end
            tnode.chown(DIR)
            local function sh(cmd)
                local f = io.popen(cmd)
                local out = f:read("*a")
                f:close()
                return out
            end
            local ok, err = pcall(function()
                assert(a:start())
                for i = 1, 3 do a:get("/lua?do=block&target=192.0.2." .. i) end
                until_true(function()
                    return sh("cat " .. DIR .. "state"):find("192.0.2.3", 1, true)
                end)
                local before = sh("cat " .. DIR .. "state")
                -- fill the filesystem, then change something
                sh("dd if=/dev/zero of=" .. DIR .. "filler bs=4k 2>/dev/null")
                for i = 4, 6 do a:get("/lua?do=block&target=192.0.2." .. i) end
                until_true(function() return save_errors(a) > 1 end)
                ngx.say(a:statuses("/", "192.0.2.5", 4))
                ngx.say("logged: ", a:count("changes will not survive a restart"),
                        ", no space: ", a:count("No space left on device") > 0)
                ngx.say("failed writes counted: ", save_errors(a) > 1)
                ngx.say("last good file kept whole: ",
                        sh("cat " .. DIR .. "state") == before
                        and #before > 0)
                ngx.say("files: ", (sh("ls " .. DIR):gsub("\n", " ")))
                -- room again: the next write carries every change
                os.remove(DIR .. "filler")
                recover(a)
            end)
            os.execute("umount " .. DIR)
            if not ok then error(err) end
        }
    }
--- response_body_like chomp
^(?:403x4
logged: 1, no space: true
failed writes counted: true
last good file kept whole: true
files: filler state 
recovered: 1
192.0.2.1
192.0.2.2
192.0.2.3
192.0.2.4
192.0.2.5
192.0.2.6
|skipped: .*
)$



=== TEST 8: bad options name the option
--- config
    location = /t {
        content_by_lua_block {
            local new = require("resty.warden.core").lua.new
            for _, o in ipairs({ { state_file = 5 },
                                 { state_interval = "5ms" },
                                 { redis = { port = 6379 } },
                                 { redis = { host = "r", db = "x" } } }) do
                local ok, err = new(o)
                ngx.say(err)
            end
        }
    }
--- response_body
opts.state_file must be a file path like '/var/lib/warden/state', got 5
opts.state_interval must be from 100ms to 1h, got '5ms'
opts.redis.host is required
opts.redis.db must be a database number from 0 to 65535, got 'x'



=== TEST 9: the state file is readable by its owner only, and keeps no plain secret
--- config
    location = /t {
        content_by_lua_block {
            local a = state_node()
            assert(a:start())
            ngx.say("basic: ", (a:api("POST", "/security/protected-routes",
                '{"path":"/admin","auth_type":"basic",'
                .. '"credentials":["admin:pl41n-s3cret"]}')))
            ngx.say("bearer: ", (a:api("POST", "/security/protected-routes",
                '{"path":"/ops","auth_type":"bearer",'
                .. '"credentials":"t0k-pl41n"}')))
            -- the state file is written within ~1 s (later when loaded)
            until_true(function()
                local s = tnode.read(DIR .. "state")
                return s and select(2, s:gsub("%$2b%$", "")) == 2
            end)
            local p = io.popen("stat -c %a " .. DIR .. "state")
            ngx.say("mode: ", p:read("*l"))
            p:close()
            local f = assert(io.open(DIR .. "state"))
            local s = f:read("*a")
            f:close()
            ngx.say("plain secrets: ", s:find("pl41n", 1, true) and "found"
                                       or "none")
            ngx.say("bcrypt hashes: ", select(2, s:gsub("%$2b%$", "")))
            assert(a:stop())
            assert(a:start())
            local function auth(h)
                return (a:get("/admin/x", "192.0.2.50", { Authorization = h }))
            end
            ngx.say("basic after restart: ", auth(nil), " ",
                    auth("Basic " .. ngx.encode_base64("admin:pl41n-s3cret")),
                    " ", auth("Basic " .. ngx.encode_base64("admin:wrong")))
            ngx.say("bearer after restart: ", (a:get("/ops/x", "192.0.2.50",
                { Authorization = "Bearer t0k-pl41n" })))
            a:stop()
        }
    }
--- response_body
basic: 201
bearer: 201
mode: 600
plain secrets: none
bcrypt hashes: 2
basic after restart: 401 200 401
bearer after restart: 200
