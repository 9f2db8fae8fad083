# The `warden` command line (build/warden, `make cli`) against a real nginx
# serving warden:api() with 2 workers: block, blocks, why, unblock,
# events (and --follow), status; the exit codes of a wrong token, an
# unreachable API, a wrong URL, a bad address; flags over the environment
# over the config file.
use lib 't/lib';
use TestWarden;

our $Root = $TestWarden::Root;
our $Cli = $ENV{WARDEN_CLI} || "$Root/build/warden";
if (!-x $Cli) {
    die "$Cli is missing: build it with `make cli` (make test does)\n";
}

workers(2);
master_on();

our $HttpConfig = <<'_EOC_';
    lua_shared_dict warden 4m;
    init_by_lua_block {
        TOKEN = "t0ken-0123456789abcdef"
        warden = require("resty.warden").new{
            admin_token = TOKEN,
            -- the command's own requests (API errors are 4xx) never
            -- count for the detector; X-Forwarded-For names the clients
            allowlist = { "127.0.0.1" },
            trusted_proxies = { "127.0.0.1" },
            denylist = { "203.0.113.0/24" },
            detector = { not_found_threshold = 3 },
        }
        thttp = require "thttp"
        local json = require "warden_core"
        json_decode = json.json_decode
        API = "http://127.0.0.1:8098/api"

        -- run(args, env?) -> the command's output (stdout and stderr) with
        -- "rc=<exit code>" last. In the background, polled: this worker
        -- must go on serving while the command talks to nginx. env: shell
        -- assignments, by default the URL and the token, and an empty
        -- config file so that no file of this machine is read.
        ENV = "WARDEN_CONFIG=/dev/null WARDEN_URL=" .. API
              .. " WARDEN_TOKEN=" .. TOKEN
        -- start(args, env?) -> a handle; finish(handle, seconds?) -> the
        -- output once the command has ended. env may end with a command
        -- that runs the binary (timeout 4).
        function start(args, env)
            local file = os.tmpname()
            os.execute("(env -u WARDEN_TOKEN_FILE -u WARDEN_TIMEOUT "
                       .. (env or ENV) .. " " .. CLI .. " " .. args
                       .. " > " .. file .. " 2>&1; echo rc=$? >> " .. file
                       .. ") &")
            return file
        end
        function finish(file, wait)
            local out = ""
            for _ = 1, (wait or 10) * 20 do
                ngx.sleep(0.05)
                local f = io.open(file)
                out = f and f:read("*a") or ""
                if f then f:close() end
                if out:find("rc=%d+\n$") then break end
            end
            os.remove(file)
            return out
        end
        function run(args, env)
            return finish(start(args, env))
        end

        -- times change from run to run
        function norm(s)
            return (s:gsub("%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%dZ", "DATE")
                     :gsub("%((in [%w]+)%)", "(REL)")
                     :gsub("%(([%w]+ ago)%)", "(REL)")
                     :gsub("%(now%)", "(REL)"))
        end

        -- the status of a request from client ip
        function get(path, ip)
            -- until_close: after its log phase (the detector has seen it)
            local res, err = thttp.request{ port = 8098, path = path,
                headers = { ["X-Forwarded-For"] = ip }, until_close = true }
            return res and res.status or err
        end

        -- statuses of n requests spread over the workers
        function fan(path, ip, n)
            return (thttp.fan{ n = n or 20, concurrency = 5, port = 8098,
                               path = path, ip = ip })
        end
    }
    init_worker_by_lua_block { warden:init_worker() }
    server {
        listen 127.0.0.1:8098 reuseport;
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
        location /denied/ {
            deny all;
            content_by_lua_block { warden:api() }
        }
        location /nope { return 404; }
        location / { content_by_lua_block { ngx.say("ok") } }
    }
_EOC_

# the binary, for the Lua above
$HttpConfig =~ s/init_by_lua_block \{/init_by_lua_block {\n        CLI = "$Cli"/;

plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: block, blocks, why, unblock, events, status
--- http_config eval: $::HttpConfig
--- config
    location /t {
        content_by_lua_block {
            ngx.print(norm(run('block 192.0.2.7 --for 1h --reason "cli test"')))
            ngx.say("enforced: ", fan("/x", "192.0.2.7"))
            ngx.print(run("block 198.51.100.0/24"))
            -- the detector: three 404s
            for i = 1, 3 do get("/nope" .. i, "192.0.2.99") end
            ngx.sleep(0.1)

            local out = norm(run("blocks"))
            ngx.say(out:match("\n203%.0%.113%.0/24 +denylist +never +%- +denylist\n") ~= nil)
            ngx.say(out:match("\n192%.0%.2%.7 +manual +DATE +%S+ +cli test\n") ~= nil)
            ngx.say(out:match("\n192%.0%.2%.99 +auto +DATE +%S+ +not_found: 3 in 2m\n") ~= nil)
            ngx.say(out:match("\n198%.51%.100%.0/24 +manual +never +%-\n") ~= nil)
            ngx.say(out:match("\n4 blocks\nrc=0\n$") ~= nil)
            out = run("blocks --source manual --json")
            local v = json_decode(out:match("^(.-)rc=0\n$"))
            ngx.say("manual: ", v.total, " ", v.blocked_ips[1].ip, " ",
                    v.blocked_ips[2].ip, " ", v.blocked_ips[1].remaining > 3590)

            ngx.print(norm(run("why 192.0.2.99")))
            out = run("why 192.0.2.99 --json")
            v = json_decode(out:match("^(.-)rc=5\n$"))
            ngx.say("json: ", v.refused, " ", v.blocks[1].offence, " ",
                    v.blocks[1].trip.rule, " ", v.blocks[1].trip.count, "/",
                    v.blocks[1].trip.threshold, " ", v.check.threat_score,
                    " ", v.blocks[1].expires - v.blocks[1].since)
            ngx.print(norm(run("why 198.51.100.5")):match("^[^\n]*\n"))
            ngx.print(norm(run("why 203.0.113.9")):match("^[^\n]*\n"))
            ngx.print(run("why 192.0.2.200"))
            ngx.print(run("why 10.0.0.0/8"))

            ngx.print(run("unblock 192.0.2.7"))
            ngx.say("lifted: ", fan("/x", "192.0.2.7"))
            ngx.print(run("unblock 192.0.2.7"))
            ngx.print(run("unblock 203.0.113.0/24"))
            ngx.print(run("unblock 1.2.3.256"))
            ngx.print(run("block 192.0.2.8 --for soon"))

            out = run("events --ip 192.0.2.7 --json")
            local actions, refusals = {}, 0
            for line in out:gmatch("(%b{})\n") do
                local e = json_decode(line)
                -- (the refused requests' events: one a worker and minute)
                if e.action == "refused" then
                    refusals = refusals + 1
                else
                    actions[#actions + 1] = e.type .. " " .. e.rule .. ": "
                                            .. e.action
                end
            end
            ngx.say(table.concat(actions, ", "), " ", out:match("rc=%d+"))
            ngx.say("refusals listed: ", refusals > 0)
            out = norm(run("events --type suspicious --since 10m"))
            ngx.print((out:gsub(" +\n", "\n"):gsub(" +", " ")))
            ngx.print(run("events --type bogus"))

            out = run("status")
            ngx.say(out:match("\nblocks +[^\n]*"))
            local version, at = out:match("^warden +(%S+) at ([^\n]*)")
            ngx.say(version == warden._VERSION, " ", at)
            ngx.say(out:match("\ndetector +%d+ of 65536 clients tracked") ~= nil)
            ngx.say(out:match("\nblocked_ip +%d+ +%d+\n") ~= nil, " ", out:match("rc=%d+"))
            v = json_decode(run("status --json"):match("^(.-)rc=0\n$"))
            ngx.say(v.version == warden._VERSION, " ", v.blocks_by_source.auto,
                    " ", v.stats.counters.detector_trips)
        }
    }
--- response_body
blocked 192.0.2.7 for 1h (until DATE): cli test
rc=0
enforced: 403x20 errors=0 workers>1=true
blocked 198.51.100.0/24 permanently
rc=0
true
true
true
true
true
manual: 2 192.0.2.7 198.51.100.0/24 true
192.0.2.99: blocked by the auto block 192.0.2.99
  block         192.0.2.99 (source auto)
  reason        not_found: 3 in 2m
  rule          not_found (suspicious): 3 of 3 in a 2m window
  request       GET /nope3 404
  offence       1
  action        blocked for 1d
  since         DATE (REL)
  until         DATE (REL)
  to lift it    warden unblock 192.0.2.99
  threat score  100/100
  check         refused (blocked: auto)

latest events (1):
TIME (UTC)            TYPE        IP          RULE       COUNT      ACTION          REQUEST
DATE  suspicious  192.0.2.99  not_found  3/3 in 2m  blocked for 1d  GET /nope3 404
rc=5
json: true 1 not_found 3/3 100 86400
198.51.100.5: blocked by the manual block 198.51.100.0/24
203.0.113.9: blocked by the denylist entry 203.0.113.0/24
192.0.2.200: not blocked
  threat score  0/100
  check         allowed

no events recorded for it
rc=0
warden: '10.0.0.0/8' is a network: give one address (e.g. the client's)
rc=2
unblocked 192.0.2.7
rc=0
lifted: 200x20 errors=0 workers>1=true
warden: 192.0.2.7 is not blocked (field ip, status 404)
rc=1
warden: 203.0.113.0/24 is in the denylist (configuration), not a block (field ip, status 409)
rc=1
warden: invalid IP address or CIDR '1.2.3.256'
rc=2
warden: --for: invalid duration 'soon': use a number of seconds or a duration like 30s, 10m, 1h, 7d (or 1h30m)
rc=2
blocked_ip manual: blocked for 1h, blocked_ip manual: unblocked rc=0
refusals listed: true
TIME (UTC) TYPE IP RULE COUNT ACTION REQUEST
DATE suspicious 192.0.2.99 not_found 3/3 in 2m blocked for 1d GET /nope3 404
rc=0
warden: type must be one of blocked_ip, rate_limited, auth_failed, suspicious, scan_detected, capture, challenge_issued, challenge_solved, challenge_failed, got 'bogus' (status 400)
rc=1

blocks         3 (denylist 1, manual 1, auto 1)
true http://127.0.0.1:8098/api
true
true rc=0
true 1 1



=== TEST 2: the token, the URL, the config file, and their exit codes
--- http_config eval: $::HttpConfig
--- config
    location /t {
        content_by_lua_block {
            local url = "WARDEN_CONFIG=/dev/null WARDEN_URL=" .. API
            ngx.print(run("blocks", url .. " WARDEN_TOKEN=wrong"))
            ngx.print(run("blocks", url))
            ngx.print(run("block 192.0.2.50", url .. " WARDEN_TOKEN=wrong"))
            ngx.say("nothing blocked: ", get("/x", "192.0.2.50"))
            ngx.print(run("--url http://127.0.0.1:1/api status"))
            ngx.print(run("--url http://127.0.0.1:8098/nope status"))
            ngx.print(run("--url 127.0.0.1:8098/api status"))
            ngx.print(run("--url http://127.0.0.1:8098/denied status"))

            -- WARDEN_TOKEN_FILE; the config file; flags over both
            local token, cfg, bad = os.tmpname(), os.tmpname(), os.tmpname()
            local f = io.open(token, "w")
            f:write(TOKEN .. "\n")
            f:close()
            ngx.print(run("blocks --source manual",
                          url .. " WARDEN_TOKEN_FILE=" .. token))
            f = io.open(cfg, "w")
            f:write('url = "' .. API .. '"\ntoken_file = "' .. token .. '"\n')
            f:close()
            local file = "WARDEN_CONFIG=" .. cfg
            ngx.print(run("blocks --source manual", file))
            ngx.print(run("blocks --source manual",
                          file .. " WARDEN_URL=http://127.0.0.1:1/api"))
            ngx.print(run("--url " .. API .. " blocks --source manual",
                          file .. " WARDEN_URL=http://127.0.0.1:1/api"))
            ngx.print(run("--token-file /nonexistent blocks", file))
            f = io.open(bad, "w")
            f:write('url = "' .. API .. '"\ntokn = "x"\n')
            f:close()
            ngx.say(run("blocks", "WARDEN_CONFIG=" .. bad)
                    :match("unknown field `tokn`.*rc=2") ~= nil)
            os.remove(token)
            os.remove(cfg)
            os.remove(bad)
            ngx.print(run("nothing"):match("rc=%d+\n$"))
        }
    }
--- response_body
warden: invalid token (the token from WARDEN_TOKEN was refused)
rc=4
warden: missing Authorization: Bearer <token> (no token was given: set WARDEN_TOKEN or WARDEN_TOKEN_FILE, --token-file, or token in the config file)
rc=4
warden: invalid token (the token from WARDEN_TOKEN was refused)
rc=4
nothing blocked: 200
warden: cannot reach the admin API at http://127.0.0.1:1/api: connection refused (is nginx running, and is the URL right? set it with --url, WARDEN_URL or the config file)
rc=3
warden: http://127.0.0.1:8098/nope/security/stats answered 404 without an error message: is http://127.0.0.1:8098/nope the location serving warden:api()?
rc=1
warden: invalid URL '127.0.0.1:8098/api' (from --url): it must start with http:// or https://; e.g. http://127.0.0.1:8080/api, the location serving warden:api()
rc=2
warden: 403 Forbidden from http://127.0.0.1:8098/denied: nginx refuses this host there (the location's allow/deny)
rc=4
no blocks
rc=0
no blocks
rc=0
warden: cannot reach the admin API at http://127.0.0.1:1/api: connection refused (is nginx running, and is the URL right? set it with --url, WARDEN_URL or the config file)
rc=3
no blocks
rc=0
warden: cannot read the token file /nonexistent (from --token-file): No such file or directory (os error 2)
rc=2
true
rc=2
--- error_log
access forbidden by rule



=== TEST 3: events --follow prints each new event once
--- http_config eval: $::HttpConfig
--- config
    location /t {
        content_by_lua_block {
            -- polls about every second until `timeout` ends it: the two
            -- blocks come ~1.5 and ~3 s in, with polls to spare after each
            local follow = start("events --follow --interval 1s"
                                 .. " --type blocked_ip", ENV .. " timeout 6")
            ngx.sleep(1.5)
            warden:block("192.0.2.55", { duration = "1h" })
            ngx.sleep(1.5)
            warden:block("192.0.2.56")
            local out = finish(follow)
            out = norm(out):gsub(" +\n", "\n"):gsub(" +", " ")
            ngx.print(out)
        }
    }
--- response_body
TIME (UTC) TYPE IP RULE COUNT ACTION REQUEST
DATE blocked_ip 192.0.2.55 manual blocked for 1h
DATE blocked_ip 192.0.2.56 manual blocked permanently
rc=124
--- timeout: 15



=== TEST 4: why from a host that is not a trusted proxy: the blocks alone
--- http_config eval
$::HttpConfig =~ s/trusted_proxies = \{ "127.0.0.1" \},//r
--- config
    location /t {
        content_by_lua_block {
            warden:block("198.51.100.0/24", { reason = "r" })
            ngx.print((norm(run("why 198.51.100.5"))))
        }
    }
--- response_body
198.51.100.5: blocked by the manual block 198.51.100.0/24
  block       198.51.100.0/24 (source manual)
  reason      r
  action      blocked permanently
  since       DATE (REL)
  until       never (permanent)
  to lift it  warden unblock 198.51.100.0/24
  check       no verdict: /security/check answered 403 "only a trusted caller may name the ip" (it names a client only for a trusted proxy: list this host in trusted_proxies)

latest events (1):
TIME (UTC)            TYPE        IP               RULE    COUNT  ACTION               REQUEST
DATE  blocked_ip  198.51.100.0/24  manual         blocked permanently
rc=5
