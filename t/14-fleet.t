# redis = {...}: two nginx instances ("nodes" a and b, 2 workers each, on
# ports 1991 and 1992) share blocks through one real redis-server (port
# 1979), started and stopped by the test through t/lib/tnode.lua.
use lib 't/lib';
use TestWarden;

$TestWarden::Timeout = 90;  # the default response timeout of this file's blocks

our $Http = <<'_EOC_';
    lua_shared_dict warden 1m;
    init_by_lua_block {
        tnode = require "tnode"
        REDIS = 1979
        -- nodes a and b (and c) on one redis; extra: more new{} options,
        -- redis_extra: more redis = {...} options
        function fleet(name, port, extra, redis_extra)
            return tnode.node{ name = name, port = port, warden = [[
                redis = { host = "127.0.0.1", port = ]] .. REDIS .. [[,
                          prefix = "t:", timeout = "2s", ]]
                          .. (redis_extra or "") .. [[
                          node = "]] .. name .. [[" },
                detector = { not_found_threshold = 5 },
            ]] .. (extra or "") }
        end
        -- redis started, and node a on it
        function redis_and_a()
            local r = tnode.redis{ port = REDIS }
            assert(r:start())
            local a = fleet("a", 1991)
            assert(a:start())
            return r, a
        end
        -- seconds until node n answers `want` to ip ("-" when never)
        function within(n, ip, want, seconds)
            local s = n:wait_status("/", ip, want, seconds or 3)
            return s and (s < 1 and "<1s" or string.format("%.1fs", s))
                   or "never"
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

=== TEST 1: blocks and unblocks from the API, Lua and the detector reach the other node within a second; expiry agrees
--- config
    location = /t {
        content_by_lua_block {
            local r = tnode.redis{ port = REDIS }
            assert(r:start())
            local a, b = fleet("a", 1991), fleet("b", 1992)
            assert(a:start())
            assert(b:start())
            ngx.sleep(0.3)
            a:api("POST", "/security/blocked-ips",
                  '{"ip":"192.0.2.1","reason":"api on a"}')
            ngx.say("api block a -> b: ", within(b, "192.0.2.1", 403))
            b:get("/lua?do=unblock&target=192.0.2.1")
            ngx.say("lua unblock b -> a: ", within(a, "192.0.2.1", 200))
            for i = 1, 6 do a:get("/nope" .. i, "192.0.2.9") end
            ngx.say("auto block a -> b: ", within(b, "192.0.2.9", 403))
            b:api("DELETE", "/security/blocked-ips/192.0.2.9")
            ngx.say("api unblock b -> a: ", within(a, "192.0.2.9", 200))
            b:get("/lua?do=block&target=2001:db8::/64&duration=2")
            ngx.say("lua block b -> a: ", within(a, "2001:db8::1", 403))
            ngx.say("every worker of a: ", a:statuses("/", "2001:db8::2", 8))
            -- both expire it themselves, at the same moment
            ngx.sleep(2.1)
            ngx.say("expired: ", a:statuses("/", "2001:db8::2", 4), " ",
                    b:statuses("/", "2001:db8::2", 4))
            ngx.say("redis: ", r:cli("HGET", "t:blocks", "192.0.2.9"), ",",
                    r:cli("HEXISTS", "t:blocks", "192.0.2.1"))
            local _, stats = a:get("/stats")
            ngx.say(stats:match("fleet_connected=%S+"), " ",
                    stats:match("fleet_node=%S+"), " ",
                    stats:match("fleet_queued=%S+"))
            local _, m = a:api("GET", "/metrics")
            tnode.write(tnode.BASE .. "metrics", m)
            ngx.say(tnode.sh("promtool check metrics < " .. tnode.BASE
                             .. "metrics; echo rc=$?"):gsub("%s+$", ""), "")
            ngx.say(m:match('warden_fleet_changes_total{direction="sent"} %d+'))
            ngx.say(m:match('warden_fleet_connected{node="a"} %d'))
            a:stop() b:stop() r:stop()
        }
    }
--- response_body
api block a -> b: <1s
lua unblock b -> a: <1s
auto block a -> b: <1s
api unblock b -> a: <1s
lua block b -> a: <1s
every worker of a: 403x8
expired: 200x4 200x4
redis: ,0
fleet_connected=true fleet_node=a fleet_queued=0
rc=0
warden_fleet_changes_total{direction="sent"} 2
warden_fleet_connected{node="a"} 1



=== TEST 2: a node that starts later loads the whole set before serving for long; an entry that is not a record is logged and left
--- config
    location = /t {
        content_by_lua_block {
            local r = tnode.redis{ port = REDIS }
            assert(r:start())
            local a = fleet("a", 1991)
            assert(a:start())
            for i = 1, 50 do
                a:get("/lua?do=block&target=198.51.100." .. i
                      .. "&duration=1h&reason=r" .. i)
            end
            ngx.sleep(0.5)
            ngx.say("in redis: ", r:cli("HLEN", "t:blocks"))
            r:cli("HSET", "t:blocks", "nope", "0|manual|x")  -- not a record
            local c = fleet("c", 1993)
            assert(c:start())
            ngx.say("c: ", within(c, "198.51.100.50", 403), " ",
                    c:statuses("/", "198.51.100.1", 4))
            local _, list = c:get("/blocked")
            local n, left = 0, 0
            for l in list:gmatch("[^\n]+") do
                n = n + 1
                left = math.max(left, tonumber(l:match("^%S+ %S+ (%d+)")))
            end
            ngx.say(n, " blocks, expiry kept: ", left <= 3600 and left > 3590)
            ngx.say(c:count("joined the fleet as c"), " ",
                    c:count("ignoring a malformed entry in redis t:blocks:"
                            .. " nope = 0|manual|x"))
            a:stop() c:stop() r:stop()
        }
    }
--- response_body
in redis: 50
c: <1s 403x4
50 blocks, expiry kept: true
1 1



=== TEST 3: Redis stopped and restarted in the middle (with its data): every node keeps enforcing, queues, logs once, resynchronises
--- config
    location = /t {
        content_by_lua_block {
            local r = tnode.redis{ port = REDIS, args = "--appendonly yes" }
            assert(r:start())
            local a, b = fleet("a", 1991), fleet("b", 1992)
            assert(a:start())
            assert(b:start())
            a:get("/lua?do=block&target=192.0.2.1")
            a:get("/lua?do=block&target=192.0.2.2")
            ngx.say("before: ", within(b, "192.0.2.2", 403))
            local function full_syncs(n)
                local _, stats = n:get("/stats")
                return tonumber(stats:match("full_syncs=(%d+)"))
            end
            local fa, fb = full_syncs(a), full_syncs(b)
            r:stop()
            ngx.sleep(1)
            -- while Redis is away: still enforced, and changes go on
            ngx.say("during: ", a:statuses("/", "192.0.2.1", 4), " ",
                    b:statuses("/", "192.0.2.1", 4))
            a:get("/lua?do=block&target=192.0.2.3")
            b:get("/lua?do=unblock&target=192.0.2.2")
            ngx.say("local: ", (a:get("/", "192.0.2.3")), " ",
                    (b:get("/", "192.0.2.3")), " ",
                    (b:get("/", "192.0.2.2")), " ",
                    (a:get("/", "192.0.2.2")))
            ngx.sleep(3)
            assert(r:start())
            ngx.say("after: ", within(b, "192.0.2.3", 403, 10), " ",
                    within(a, "192.0.2.2", 200, 10))
            ngx.say("a: ", a:statuses("/", "192.0.2.1", 4), " ",
                    a:statuses("/", "192.0.2.3", 4), " ",
                    a:statuses("/", "192.0.2.2", 4))
            ngx.say("logged once: ", a:count("is unreachable"), " ",
                    b:count("is unreachable"), " back: ",
                    a:count("is back;"), " ", b:count("is back;"))
            -- a few differences are journaled one by one: no worker
            -- re-reads every block on a request
            ngx.say("full re-reads: ", full_syncs(a) - fa, " ",
                    full_syncs(b) - fb)
            a:stop() b:stop() r:stop()
        }
    }
--- response_body_like chomp
^before: <1s
during: 403x4 403x4
local: 403 200 200 403
after: \S+ \S+
a: 403x4 403x4 200x4
logged once: 1 1 back: 1 1
full re-reads: 0 0
$



=== TEST 4: Redis restarted empty (no persistence): the nodes re-seed it from what they have; nothing is lost
--- config
    location = /t {
        content_by_lua_block {
            local r = tnode.redis{ port = REDIS }
            assert(r:start())
            local a, b = fleet("a", 1991), fleet("b", 1992)
            assert(a:start())
            assert(b:start())
            a:get("/lua?do=block&target=192.0.2.1")
            ngx.say("before: ", within(b, "192.0.2.1", 403))
            r:stop()
            ngx.sleep(1)
            b:get("/lua?do=block&target=192.0.2.5")   -- only b has it
            assert(r:start())                            -- empty
            ngx.say("after: ", within(a, "192.0.2.5", 403, 10))
            ngx.sleep(0.5)
            ngx.say("redis: ", r:cli("HLEN", "t:blocks"))
            ngx.say(b:statuses("/", "192.0.2.1", 4))
            a:stop() b:stop() r:stop()
        }
    }
--- response_body_like chomp
^before: <1s
after: \S+s
redis: 2
403x4
$



=== TEST 5: Redis answering slowly costs requests nothing
--- config
    location = /t {
        content_by_lua_block {
            local r, a = redis_and_a()
            a:get("/lua?do=block&target=192.0.2.1")
            r:pause(4)   -- SIGSTOP: connections hang, nothing answers
            local worst = 0
            for i = 1, 40 do
                ngx.update_time()
                local t0 = ngx.now()
                local s = a:get("/", i % 2 == 0 and "192.0.2.1" or "192.0.2.2")
                if i % 10 == 0 then a:get("/lua?do=block&target=192.0.2.1" .. i) end
                ngx.update_time()
                worst = math.max(worst, ngx.now() - t0)
                ngx.sleep(0.05)
            end
            ngx.say("slowest request under 0.5s: ", worst < 0.5)
            ngx.sleep(3)
            ngx.say("queued changes sent after: ",
                    r:cli("HEXISTS", "t:blocks", "192.0.2.140"))
            a:stop() r:stop()
        }
    }
--- response_body
slowest request under 0.5s: true
queued changes sent after: 1



=== TEST 6: changes that could not be queued (a full dict) are sent while connected, not only at the next reconnection
--- config
    location = /t {
        content_by_lua_block {
            local r, a = redis_and_a()
            a:get("/lua?do=block&target=192.0.2.50")
            ngx.sleep(0.5)
            -- a block Redis never got: removed from Redis behind the
            -- node's back, and the node told a change was lost
            r:cli("HDEL", "t:blocks", "192.0.2.50")
            a:get("/lua?do=lose")
            local waited = 0
            while r:cli("HEXISTS", "t:blocks", "192.0.2.50") ~= "1"
                  and waited < 15 do
                ngx.sleep(0.5)
                waited = waited + 0.5
            end
            ngx.say("sent again within 11 s: ", waited <= 11)
            ngx.say("still enforced: ", a:statuses("/", "192.0.2.50", 4))
            ngx.say((a:log():match("warden: 1 changes could not be queued "
                                   .. "for redis [^;]+; merged")))
            a:stop() r:stop()
        }
    }
--- response_body
sent again within 11 s: true
still enforced: 403x4
warden: 1 changes could not be queued for redis 127.0.0.1:1979; merged



=== TEST 7: password and db: nodes in one database share blocks; a fleet in another database of the same Redis hears nothing of them; a wrong password is logged once and the node serves
--- config
    location = /t {
        content_by_lua_block {
            local r = tnode.redis{ port = REDIS, password = "s3cret",
                                   args = "--requirepass s3cret" }
            assert(r:start())
            local pw = 'password = "s3cret", '
            local a = fleet("a", 1991, nil, pw .. "db = 3,")
            local b = fleet("b", 1992, nil, pw .. "db = 3,")
            local c = fleet("c", 1993, nil, pw .. "db = 4,")
            local d = fleet("d", 1994, nil, 'password = "wrong", db = 3,')
            assert(a:start()) assert(b:start())
            assert(c:start()) assert(d:start())
            ngx.sleep(0.3)
            a:get("/lua?do=block&target=192.0.2.1")
            c:get("/lua?do=block&target=192.0.2.2")
            ngx.say("a -> b: ", within(b, "192.0.2.1", 403))
            ngx.say("c -> a: ", within(a, "192.0.2.2", 403, 1.5))
            ngx.say("a -> c: ", c:statuses("/", "192.0.2.1", 4))
            ngx.say("db 3: ", r:cli("-n", 3, "HKEYS", "t:blocks"),
                    ", db 4: ", r:cli("-n", 4, "HKEYS", "t:blocks"),
                    ", db 0: ", r:cli("DBSIZE"))
            ngx.say("d serves: ", d:statuses("/", "192.0.2.3", 4), " ",
                    d:statuses("/", "192.0.2.1", 2))
            ngx.sleep(2)  -- a few reconnection attempts
            ngx.say("d logged once: ", d:count("is unreachable (AUTH failed: "))
            a:stop() b:stop() c:stop() d:stop() r:stop()
        }
    }
--- response_body
a -> b: <1s
c -> a: never
a -> c: 200x4
db 3: 192.0.2.1, db 4: 192.0.2.2, db 0: 0
d serves: 200x4 200x2
d logged once: 1
