# Security events (issues 17 and 20): refused requests as blocked_ip
# events aggregated per client and minute, block reasons in events,
# events kept across a restart with state_file (and cleaned up), real-time
# capture switching itself off, the ECS event log, FlatRun's option names.
# Nodes are whole nginx instances with 2 workers (t/lib/tnode.lua).
use lib 't/lib';
use TestWarden;

$TestWarden::Timeout = 60;  # the default response timeout of this file's blocks

our $Http = <<'_EOC_';
    lua_shared_dict warden 1m;
    init_by_lua_block {
        tnode = require "tnode"
        cjson = require "cjson.safe"
        DIR = tnode.BASE .. "a/data/"
        function node(extra, workers)
            return tnode.node{ name = "a", port = 1991, workers = workers,
                warden = "detector = false,\n" .. (extra or "") }
        end
        -- "type ip action reason count" lines of the events API
        function events(n, query)
            local status, body = n:api("GET", "/security/events?limit=1000"
                                       .. (query or ""))
            local doc = cjson.decode(body) or {}
            local out = {}
            for _, e in ipairs(doc.events or {}) do
                out[#out + 1] = table.concat({ e.type, e.ip, e.action,
                    e.reason, e.count }, " ")
            end
            return out, doc.events or {}, status
        end
    }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    my $http = $block->http_config // '';
    $block->set_value('http_config', $http . $Http) unless $http =~ /lua_shared_dict/;
});

plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: a flood from a blocked client is one event per worker and minute with its count; other events survive; reasons kept
--- config
    location = /t {
        content_by_lua_block {
            -- room for 16 events: 1 + 5 blocks, the refusals (one per
            -- client, worker and minute: up to 8 across a minute
            -- boundary) and the unblock fit; 410 refused requests would not
            local a = node('max_events = 16, denylist = "203.0.113.0/24",')
            os.remove(DIR .. "state")
            assert(a:start())
            ngx.say("block: ", (a:api("POST", "/security/blocked-ips",
                '{"ip":"192.0.2.1","reason":"abuse","duration":"1h"}')))
            for i = 1, 5 do
                a:get("/lua?do=block&target=198.51.100." .. i
                      .. "&reason=other" .. i)
            end
            ngx.say("flood: ", a:statuses("/", "192.0.2.1", 400))
            ngx.say("denylisted: ", a:statuses("/", "203.0.113.9", 10))
            local _, list = events(a)
            local refusals, total, others, by_ip = 0, 0, 0, {}
            for _, e in ipairs(list) do
                if e.action == "refused" then
                    refusals = refusals + 1
                    by_ip[e.ip] = (by_ip[e.ip] or 0) + e.count
                    assert(e.window == 60 and e.status == 403)
                    if e.ip == "192.0.2.1" then
                        assert(e.reason == "abuse" and e.rule == "manual"
                               and e.path == "/", e.reason)
                    else
                        assert(e.reason == "denylist" and e.rule == "denylist")
                    end
                elseif e.ip:find("^198%.51%.100%.") then
                    others = others + 1
                    assert(e.reason == "other" .. e.ip:match("%d+$"))
                end
            end
            ngx.say("refused counted: ", by_ip["192.0.2.1"], " ",
                    by_ip["203.0.113.9"])
            -- 2 workers, maybe a minute boundary: at most 4 per client
            ngx.say("few events: ", refusals <= 8)
            ngx.say("other blocks' events kept: ", others)
            ngx.say("unblock: ", (a:api("DELETE",
                                        "/security/blocked-ips/192.0.2.1")))
            local l = events(a, "&ip=192.0.2.1&type=blocked_ip")
            ngx.say(l[1])
            ngx.say(l[#l])
            a:stop()
        }
    }
--- response_body
block: 201
flood: 403x400
denylisted: 403x10
refused counted: 400 10
few events: true
other blocks' events kept: 5
unblock: 200
blocked_ip 192.0.2.1 unblocked abuse 0
blocked_ip 192.0.2.1 blocked for 1h abuse 0



=== TEST 2: events survive a restart with state_file; cleanup removes them from the file too; retention_days applies to what is restored
--- config
    location = /t {
        content_by_lua_block {
            os.remove(DIR .. "state")
            local a = node('state_file = "' .. DIR .. 'state",\n'
                           .. 'retention_days = 30,')
            assert(a:start())
            a:api("POST", "/security/blocked-ips",
                  '{"ip":"192.0.2.7","reason":"kept","duration":"2h"}')
            a:statuses("/", "192.0.2.7", 20)
            local before = events(a)
            assert(a:stop())
            assert(a:start())
            local after = events(a)
            ngx.say("events: ", #before, " -> ", #after, " same: ",
                    table.concat(before, "|") == table.concat(after, "|"))
            ngx.say(after[#after])
            ngx.say("logged: ", a:count("restored " .. #before
                                        .. " security events from"))
            local _, removed = a:api("POST", "/security/cleanup",
                                     '{"older_than":0}')
            ngx.say("cleanup: ", cjson.decode(removed).removed)
            assert(a:stop())
            assert(a:start())
            ngx.say("after cleanup and restart: ", #events(a))
            assert(a:stop())
            -- a saved file with an event older than retention_days
            local now = math.floor(ngx.now() * 1000)
            local old = now - 31 * 86400000
            tnode.write(DIR .. "state", '{"format":"lua-resty-warden state",'
                .. '"version":1,"saved_ms":' .. now .. ',"fleet_epoch":null,'
                .. '"policy":null,"blocks":[],"events":[\n'
                .. '{"time_ms":' .. old .. ',"type":"suspicious","ip":"192.0.2.1"},\n'
                .. '{"time_ms":' .. now .. ',"type":"scan_detected","ip":"192.0.2.2",'
                .. '"rule":"scanner_agent","action":"blocked for 24h","reason":"r"}\n]}\n')
            tnode.chown(DIR)
            assert(a:start())
            ngx.say(table.concat(events(a), "|"))
            ngx.say(a:count("(1 older than retention_days, 0 beyond max_events)"))
            a:stop()
        }
    }
--- response_body_like
^events: (\d+) -> \1 same: true
blocked_ip 192.0.2.7 blocked for 2h kept 0
logged: 1
cleanup: \1
after cleanup and restart: 0
scan_detected 192.0.2.2 blocked for 24h r 0
1



=== TEST 3: real-time capture switches itself off after capture_max_duration
--- config
    location = /t {
        content_by_lua_block {
            local a = node('capture_max_duration = "1s",')
            assert(a:start())
            ngx.say((a:api("PUT", "/security/realtime-capture",
                           '{"enabled":true}')))
            a:get("/x", "192.0.2.5")
            local _, body = a:api("GET", "/security/realtime-capture")
            ngx.say("on: ", cjson.decode(body).enabled)
            -- checked every second: off within ~2 s, later when loaded
            ngx.sleep(1)
            require("twait").until_true(function()
                _, body = a:api("GET", "/security/realtime-capture")
                return not cjson.decode(body).enabled
            end)
            ngx.say("then: ", cjson.decode(body).enabled)
            ngx.say("logged: ", a:count("real-time capture switched itself"
                                        .. " off after 1s (capture_max_duration)"))
            local l = events(a, "&type=capture")
            ngx.say(l[1])
            a:stop()
        }
    }
--- response_body
200
on: true
then: false
logged: 1
capture  capture switched off after 1s  0



=== TEST 4: the ECS event log: one JSON line per event, in a file reopened after logrotate, or in the error log
--- config
    location = /t {
        content_by_lua_block {
            local file = DIR .. "events.json"
            -- the event log is written every second
            local until_true = require("twait").until_true
            os.remove(file)
            os.remove(file .. ".1")
            local a = node('event_log = "' .. file .. '",')
            assert(a:start())
            a:api("POST", "/security/blocked-ips",
                  '{"ip":"192.0.2.8","reason":"scraper \\"x\\"","duration":60}')
            a:api("DELETE", "/security/blocked-ips/192.0.2.8")
            until_true(function()
                return select(2, (tnode.read(file) or ""):gsub("\n", "")) >= 2
            end)
            local lines = {}
            for l in (tnode.read(file) or ""):gmatch("[^\n]+") do
                lines[#lines + 1] = assert(cjson.decode(l))
            end
            ngx.say("lines: ", #lines)
            local e = lines[1]
            ngx.say(e["@timestamp"]:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$") ~= nil)
            ngx.say(e.event.action, " ", e.event.kind, " ", e.event.category[1],
                    " ", e.event.type[1], " ", e.event.reason)
            ngx.say(e.source.ip, " ", e.rule.name, " ", e.warden.action)
            ngx.say(lines[2].event.type[1], " ", lines[2].warden.action, " ",
                    lines[2].event.reason, " ", lines[2].event.sequence
                    - e.event.sequence)
            -- logrotate moves the file away: the next lines go to a new one
            os.rename(file, file .. ".1")
            a:get("/lua?do=block&target=192.0.2.9&reason=rotated")
            until_true(function() return (tnode.read(file) or ""):find("\n") end)
            local new = cjson.decode((tnode.read(file) or ""):match("[^\n]+") or "")
            ngx.say("after rotation: ", new and new.source.ip, " ",
                    new and new.event.reason)
            a:stop()
            -- to nginx's error log
            a = node('event_log = "error_log",')
            assert(a:start())
            a:get("/lua?do=block&target=192.0.2.10&reason=err")
            until_true(function() return a:log():find("{\"@timestamp\"", 1, true) end)
            local line = a:log():match("%[warn%][^\n]-({\"@timestamp\".-}), context")
            local j = cjson.decode(line or "")
            ngx.say("error_log: ", j and j.source.ip, " ", j and j.event.reason)
            ngx.say("counted: ", select(2, a:get("/stats")):match("event_log_lines=(%d+)"))
            a:stop()
        }
    }
--- response_body
lines: 2
true
blocked_ip event network creation scraper "x"
192.0.2.8 manual blocked for 1m
deletion unblocked scraper "x" 1
after rotation: 192.0.2.9 rotated
error_log: 192.0.2.10 err
counted: 1



=== TEST 5: FlatRun's option names: event_retention is retention_days, enabled = true is accepted, enabled = false is refused with what to use
--- http_config
    lua_shared_dict warden 1m;
    init_by_lua_block {
        local new = require("resty.warden").new
        local cases = {
            { event_retention = 7, enabled = true },
            { event_retention = "12h" },
            { event_retention = 7, retention_days = 7 },
            { enabled = false },
            { event_log = 5 },
            { capture_max_duration = "60d" },
        }
        ERRS = {}
        for i, opts in ipairs(cases) do
            local ok, err = pcall(new, opts)
            ERRS[i] = ok and "ok" or err
        end
    }
--- config
    location /t {
        content_by_lua_block {
            for _, e in ipairs(ERRS) do
                ngx.say((e:gsub("^.-resty%.warden: ", "")))
            end
        }
    }
--- response_body
ok
ok
opts.event_retention is FlatRun's name for opts.retention_days: set only retention_days
opts.enabled is FlatRun's switch of its whole security module, which warden does not have (got false): to let every request through and only log, set blocking_mode = false; to stop detection, detector = false; to stop warden, remove warden:check() from the configuration
opts.event_log must be a file path like '/var/log/nginx/warden-events.json', 'error_log' or 'stderr', got 5
opts.capture_max_duration must be at most 30d (0: no limit), got '60d'
