# Challenge instead of ban (issue 19), through a node of 4 workers
# (t/lib/tnode.lua; clients named by X-Forwarded-For from the trusted
# 127.0.0.1): the page and what it holds, a correct answer (the proof of
# work computed here by t/lib/challenge.py), a wrong one, a replay, forged,
# expired and moved cookies, API clients and exempt paths getting 429 with
# Retry-After, cookies valid after a reload, escalation to a block, a
# challenge made by hand through the API and by a detector rule, metrics
# and events.
use lib 't/lib';
use TestWarden;

$TestWarden::Timeout = 90;  # the default response timeout of this file's blocks

our $Root = $TestWarden::Root;
our $Python = '/usr/bin/python3';
plan skip_all => "$Python is missing" unless -x $Python;

our $Http = <<"_EOC_";
    lua_shared_dict warden 1m;
    init_by_lua_block {
        tnode = require "tnode"
        thttp = require "thttp"
        cjson = require "cjson.safe"
        HELPER = "$Python $Root/t/lib/challenge.py"
        SECRET = "0123456789abcdef0123"
        HTML = "text/html,application/xhtml+xml,*/*;q=0.8"
        function node(extra, max_unsolved)
            return tnode.node{ name = "a", port = 1991, workers = 4,
                warden = "challenge = { secret = '" .. SECRET .. "', "
                    .. "difficulty = 8, max_unsolved = "
                    .. (max_unsolved or 1000) .. ", "
                    .. "exempt_paths = { '/data/**', '/feed.xml' } },\\n"
                    .. (extra or "detector = false,") }
        end
        function sh(cmd)
            local f = assert(io.popen(cmd))
            local out = f:read("*a")
            f:close()
            return (out:gsub("%s+\$", ""))
        end
        -- a request from client ip: status, body, headers
        function req(n, ip, o)
            o = o or {}
            local h = { ["X-Forwarded-For"] = ip, Accept = o.accept or HTML }
            if o.cookie then
                h.Cookie = "warden_pass=" .. o.cookie
            end
            if o.body then
                h["Content-Type"] = "application/x-www-form-urlencoded"
            end
            local res = assert(thttp.request{ port = n.port,
                method = o.method or "GET", path = o.path or "/",
                headers = h, body = o.body, timeout = 5000 })
            return res.status, res.body, res.headers
        end
        function token_of(page)
            return page:match('name="token" value="([^"]+)"')
        end
        function solve(token, bits)
            return sh(HELPER .. " solve '" .. token .. "' " .. (bits or 8))
        end
        function answer(token, nonce, back)
            return "token=" .. ngx.escape_uri(token) .. "&nonce=" .. nonce
                   .. "&back=" .. ngx.escape_uri(back or "/")
        end
        -- asks for a page, solves it: the cookie (and the answer's body)
        function pass(n, ip, back)
            local _, page = req(n, ip, { path = back })
            local t = token_of(page)
            local body = answer(t, solve(t), back)
            local s, _, h = req(n, ip, { method = "POST",
                path = "/.warden/challenge", body = body })
            assert(s == 303, "answer: " .. tostring(s))
            return h["set-cookie"]:match("warden_pass=([^;]+)"), body, h
        end
        -- n requests of ip with `cookie` over the workers: "200x40"
        function statuses(n, ip, cookie, count)
            return n:statuses("/", ip, count or 40, { Accept = HTML,
                Cookie = cookie and "warden_pass=" .. cookie })
        end
        function challenge(n, ip)
            return (n:api("POST", "/security/blocked-ips",
                '{"ip":"' .. ip .. '","action":"challenge","reason":"t"}'))
        end
    }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    my $http = $block->http_config // '';
    $block->set_value('http_config', $http . $Http) unless $http =~ /tnode/;
});

plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: the page: self-contained, the token in it, never cached or indexed; API clients, other methods and exempt paths get 429 with Retry-After
--- config
    location = /t {
        content_by_lua_block {
            local a = node()
            assert(a:start())
            local s, body = a:api("POST", "/security/blocked-ips",
                '{"ip":"192.0.2.10","action":"challenge","duration":"1h"}')
            local v = cjson.decode(body)
            ngx.say("challenge: ", s, " ", v.action, " ", v.message)
            local bs, bb = a:api("POST", "/security/blocked-ips",
                '{"ip":"192.0.2.11","action":"captcha"}')
            ngx.say("bad action: ", bs, " ", (bb:gsub("\n$", "")))
            local _, list = a:api("GET", "/security/blocked-ips")
            ngx.say("listed: ", cjson.decode(list).blocked_ips[1].action)
            local st, page, h = req(a, "192.0.2.10", { path = "/a?b=1" })
            ngx.say("page: ", st, " ", h["content-type"])
            ngx.say("no-store: ", h["cache-control"], "; ", h["x-robots-tag"])
            ngx.say("csp worker: ",
                    h["content-security-policy"]:find("worker-src blob:", 1,
                                                      true) ~= nil)
            ngx.say("token: ", token_of(page):match("^%d+%.8%.[%w_-]+$")
                               ~= nil)
            ngx.say("back: ", page:match('name="back" value="([^"]+)"'))
            ngx.say("external urls: ", page:find("https?://") ~= nil,
                    " src/href: ", page:find("src=") ~= nil,
                    page:find("href=") ~= nil)
            ngx.say("noscript: ", page:find("<noscript>", 1, true) ~= nil)
            local function too_many(o)
                local st, _, h = req(a, "192.0.2.10", o)
                return st .. " retry-after " .. tostring(h["retry-after"])
            end
            ngx.say("json: ", too_many{ accept = "application/json" })
            ngx.say("no accept: ", too_many{ accept = "*/*" })
            ngx.say("post: ", too_many{ method = "POST", body = "x=1" })
            ngx.say("exempt: ", too_many{ path = "/data/x.json" })
            ngx.say("exempt feed: ", too_many{ path = "/feed.xml" })
            ngx.say("others pass: ", statuses(a, "192.0.2.99", nil, 20))
            -- warden:block(ip, { action = "challenge" })
            ngx.say("lua: ", select(2, a:get("/lua?do=block&target=192.0.2.12"
                                             .. "&action=challenge")))
            ngx.say("lua challenged: ", (req(a, "192.0.2.12")))
            ngx.say("is_blocked: ", select(2, a:get("/lua?do=is_blocked"
                                                    .. "&target=192.0.2.12")))
            local _, bad = a:get("/lua?do=block&target=192.0.2.13&action=ban")
            ngx.say("lua, bad: ", (bad:gsub("\n$", "")))
            a:stop()
        }
    }
--- response_body
challenge: 201 challenge challenged
bad action: 400 {"error":"action must be 'block' or 'challenge', got 'captcha'","field":"action"}
listed: challenge
page: 429 text/html; charset=utf-8
no-store: no-store; noindex, nofollow
csp worker: true
token: true
back: /a?b=1
external urls: false src/href: falsefalse
noscript: true
json: 429 retry-after 60
no accept: 429 retry-after 60
post: 429 retry-after 60
exempt: 429 retry-after 60
exempt feed: 429 retry-after 60
others pass: 200x20
lua: true 192.0.2.12

lua challenged: 429
is_blocked: true challenge

lua, bad: nil action must be 'block' or 'challenge', got 'ban'




=== TEST 2: a correct answer: 303 back with the cookie, then every worker lets the client through; replay, wrong answers, forged, expired and moved cookies refused; a reload keeps cookies valid
--- config
    location = /t {
        content_by_lua_block {
            local a = node()
            assert(a:start())
            challenge(a, "192.0.2.20")
            challenge(a, "192.0.2.21")
            challenge(a, "2001:db8:1:2::5")
            local cookie, body, h = pass(a, "192.0.2.20", "/x?y=1")
            ngx.say("location: ", h["location"])
            local sc = h["set-cookie"]
            ngx.say("cookie attributes: ", sc:gsub("^warden_pass=[^;]+", ""))
            ngx.say("through: ", statuses(a, "192.0.2.20", cookie))
            ngx.say("without it: ", statuses(a, "192.0.2.20", nil, 8))
            -- the same answer again
            ngx.say("replay: ", (req(a, "192.0.2.20", { method = "POST",
                path = "/.warden/challenge", body = body })))
            -- a nonce that does not do the work
            local _, page = req(a, "192.0.2.21")
            local t = token_of(page)
            local bad = tonumber(solve(t)) + 1
            while sh(HELPER .. " solve '" .. t .. "' 8") == tostring(bad) do
                bad = bad + 1
            end
            local wrong = 0
            for _, nonce in ipairs{ "abc", "", tostring(bad) } do
                local s = req(a, "192.0.2.21", { method = "POST",
                    path = "/.warden/challenge", body = answer(t, nonce) })
                wrong = wrong + (s == 403 and 1 or 0)
            end
            ngx.say("wrong answers refused: ", wrong)
            -- another client's token
            local s = req(a, "192.0.2.21", { method = "POST",
                path = "/.warden/challenge",
                body = answer(token_of(select(2, req(a, "192.0.2.20"))),
                              "1") })
            ngx.say("another's token: ", s)
            ngx.say("moved cookie: ", statuses(a, "192.0.2.21", cookie, 8))
            local now = math.floor(ngx.now())
            local expired = sh(HELPER .. " cookie " .. SECRET
                               .. " 192.0.2.20 " .. (now - 5) .. " 8")
            ngx.say("expired: ", statuses(a, "192.0.2.20", expired, 8))
            local forged = sh(HELPER .. " cookie not-the-secret-at-all "
                              .. "192.0.2.20 " .. (now + 3600) .. " 8")
            ngx.say("forged: ", statuses(a, "192.0.2.20", forged, 8))
            local made = sh(HELPER .. " cookie " .. SECRET .. " 192.0.2.20 "
                            .. (now + 3600) .. " 8")
            ngx.say("made with the secret: ",
                    statuses(a, "192.0.2.20", made, 8))
            ngx.say("easier than asked: ", statuses(a, "192.0.2.20",
                sh(HELPER .. " cookie " .. SECRET .. " 192.0.2.20 "
                   .. (now + 3600) .. " 4"), 8))
            -- IPv6: the /64 is the client
            local c6 = pass(a, "2001:db8:1:2::5", "/")
            ngx.say("same /64: ", statuses(a, "2001:db8:1:2::77", c6, 8))
            a:reload()
            ngx.say("after reload: ", statuses(a, "192.0.2.20", cookie))
            ngx.say("still challenged: ", statuses(a, "192.0.2.20", nil, 8))
            a:stop()
        }
    }
--- response_body
location: /x?y=1
cookie attributes: ; Max-Age=86400; Path=/; HttpOnly; SameSite=Lax1
through: 200x40
without it: 429x8
replay: 403
wrong answers refused: 3
another's token: 403
moved cookie: 429x8
expired: 429x8
forged: 429x8
made with the secret: 200x8
easier than asked: 429x8
same /64: 200x8
after reload: 200x40
still challenged: 429x8



=== TEST 3: a return path is local only (no open redirect); the answer path is never a return path
--- config
    location = /t {
        content_by_lua_block {
            local a = node()
            assert(a:start())
            for i, back in ipairs{ "https://evil.example/", "//evil.example/x",
                                   "/\\evil.example", "/.warden/challenge",
                                   "/ok?a=b" } do
                local ip = "192.0.2." .. (30 + i)
                challenge(a, ip)
                local _, page = req(a, ip)
                local t = token_of(page)
                local _, _, h = req(a, ip, { method = "POST",
                    path = "/.warden/challenge",
                    body = answer(t, solve(t), back) })
                ngx.say(back, " -> ", h["location"])
            end
            a:stop()
        }
    }
--- response_body
https://evil.example/ -> /
//evil.example/x -> /
/\evil.example -> /
/.warden/challenge -> /
/ok?a=b -> /ok?a=b



=== TEST 4: a client that ignores its challenge, or keeps failing it, is blocked through the offence schedule
--- config
    location = /t {
        content_by_lua_block {
            local a = node(nil, 6)
            assert(a:start())
            challenge(a, "192.0.2.40")
            challenge(a, "192.0.2.41")
            local seen = {}
            for _ = 1, 8 do
                seen[#seen + 1] = (req(a, "192.0.2.40",
                                       { accept = "application/json" }))
            end
            ngx.say("ignored: ", table.concat(seen, " "))
            seen = {}
            for _ = 1, 8 do
                seen[#seen + 1] = (req(a, "192.0.2.41", { method = "POST",
                    path = "/.warden/challenge", body = "token=1.8.x&nonce=1" }))
            end
            ngx.say("failing: ", table.concat(seen, " "))
            local _, list = a:get("/blocked?round=60")  -- a day, give or take
            ngx.say(list)
            local _, ev = a:api("GET", "/security/events?type=challenge_failed"
                                .. "&ip=192.0.2.40")
            local e = cjson.decode(ev).events[1]
            ngx.say("event: ", e.action, " / ", e.reason)
            a:stop()
        }
    }
--- response_body
ignored: 429 429 429 429 429 429 403 403
failing: 403 403 403 403 403 403 403 403
192.0.2.40 auto 86400 challenge: 7 ignored challenges
192.0.2.41 auto 86400 challenge: 7 failed challenges
event: blocked for 1d (offence 1) / challenge: 7 ignored challenges



=== TEST 5: a statistical rule challenges by default with opts.challenge; the client solves and goes on; metrics and events count issued, solved, failed and the solve time
--- config
    location = /t {
        content_by_lua_block {
            local a = node("detector = { rate_threshold = 10 },")
            assert(a:start())
            ngx.say("before: ", statuses(a, "192.0.2.50", nil, 10))
            ngx.sleep(0.2)
            local s, _, h = req(a, "192.0.2.50")
            ngx.say("tripped: ", s, " ", h["content-type"])
            local _, list = a:get("/blocked?round=60")  -- a day, give or take
            ngx.say(list)
            local cookie = pass(a, "192.0.2.50", "/")
            ngx.say("solved: ", statuses(a, "192.0.2.50", cookie, 20))
            req(a, "192.0.2.50", { method = "POST", path = "/.warden/challenge",
                                   body = "token=1.8.x&nonce=1" })
            local _, stats = a:get("/stats")
            for _, k in ipairs{ "challenges_issued", "challenges_solved",
                                "challenges_failed", "challenge_passed",
                                "events_challenge_solved" } do
                ngx.say(k, " ", stats:match(k .. "=(%d+)"))
            end
            ngx.say("solve time kept: ",
                    tonumber(stats:match("challenge_solve_ms=(%d+)")) >= 0)
            local _, m = a:api("GET", "/metrics")
            ngx.say("prometheus: ", m:match(
                'warden_challenges_total{result="solved"} %d+'))
            local _, ev = a:api("GET", "/security/events?ip=192.0.2.50")
            -- each kind once, newest first (issued: per worker and minute)
            local kinds, seen = {}, {}
            for _, e in ipairs(cjson.decode(ev).events) do
                if not seen[e.type] then
                    kinds[#kinds + 1] = e.type
                    seen[e.type] = true
                end
            end
            ngx.say(table.concat(kinds, " "))
            a:stop()
        }
    }
--- response_body
before: 200x10
tripped: 429 text/html; charset=utf-8
192.0.2.50 auto 86400 rate: 10 in 2m
solved: 200x20
challenges_issued 2
challenges_solved 1
challenges_failed 1
challenge_passed 20
events_challenge_solved 1
solve time kept: true
prometheus: warden_challenges_total{result="solved"} 1
challenge_failed challenge_solved challenge_issued rate_limited



=== TEST 6: a site policy challenges every client of the site (sites = { shop = { challenge = true } }); a solved challenge lets it through
--- config
    location = /t {
        content_by_lua_block {
            local a = tnode.node{ name = "a", port = 1991, workers = 4,
                server = "server_name shop;",
                warden = "challenge = { secret = '" .. SECRET .. "', "
                    .. "difficulty = 8 }, detector = false, "
                    .. "sites = { shop = { challenge = true } }," }
            assert(a:start())
            local s, _, h = req(a, "192.0.2.60")
            ngx.say("page: ", s, " ", h["content-type"])
            ngx.say("api: ", (req(a, "192.0.2.60",
                                  { accept = "application/json" })))
            local cookie = pass(a, "192.0.2.60", "/")
            ngx.say("solved: ", statuses(a, "192.0.2.60", cookie, 20))
            ngx.say("other client: ", statuses(a, "192.0.2.61", cookie, 4))
            -- (the node's admin API is on the site too: challenged)
            ngx.say("the api too: ", (a:api("GET", "/security/stats")))
            a:stop()
        }
    }
--- response_body
page: 429 text/html; charset=utf-8
api: 429
solved: 200x20
other client: 429x4
the api too: 429



=== TEST 7: check(ip) (the caller names the client): the cookie is verified too, so a solved challenge does not loop
--- config
    location = /t {
        content_by_lua_block {
            local a = tnode.node{ name = "a", port = 1991, workers = 4,
                server = [[
        location /byip {
            access_by_lua_block {
                warden:check(ngx.var.http_x_forwarded_for)
            }
            content_by_lua_block { ngx.say("by ip") }
        }]],
                warden = "challenge = { secret = '" .. SECRET .. "', "
                    .. "difficulty = 8 }, detector = false," }
            assert(a:start())
            challenge(a, "192.0.2.70")
            challenge(a, "192.0.2.72")
            local s, _, h = req(a, "192.0.2.70", { path = "/byip" })
            ngx.say("page: ", s, " ", h["content-type"])
            local cookie = pass(a, "192.0.2.70", "/byip")
            ngx.say("solved: ", a:statuses("/byip", "192.0.2.70", 12,
                { Accept = HTML, Cookie = "warden_pass=" .. cookie }))
            ngx.say("moved: ", a:statuses("/byip", "192.0.2.72", 4,
                { Accept = HTML, Cookie = "warden_pass=" .. cookie }))
            a:stop()
        }
    }
--- response_body
page: 429 text/html; charset=utf-8
solved: 200x12
moved: 429x4
