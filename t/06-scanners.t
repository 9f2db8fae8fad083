# Real scanners from Debian's packages (dirb, gobuster) against a test
# nginx on loopback, with the detector's default options: each is blocked
# within its rule's threshold. `make deps` (and .ci/run) install them.
use lib 't/lib';
use TestWarden;

workers(4);
master_on();

# Port 1991 is the scanned site: "/" exists, everything else is a 404. It
# listens without reuseport, so the worker busy running the scanner (in
# io.popen) takes no connections. The log phase counts statuses.
our $HttpConfig = <<'_EOC_';
    lua_shared_dict warden 1m;
    lua_shared_dict seen 1m;
    init_by_lua_block {
        warden = require("resty.warden").new({})
        -- Runs a scanner over a 40-word list; returns what the site saw.
        function scan(cmd)
            local words = os.tmpname()
            local f = assert(io.open(words, "w"))
            for i = 1, 40 do
                f:write("word", i, "\n")
            end
            f:close()
            local p = assert(io.popen(cmd:gsub("WORDS", words) .. " 2>&1"))
            local out = p:read("*a")
            p:close()
            os.remove(words)
            local seen = ngx.shared.seen
            local total = 0
            for _, code in ipairs({ 200, 403, 404 }) do
                total = total + (seen:get(code) or 0)
            end
            return seen:get(200) or 0, seen:get(404) or 0,
                   seen:get(403) or 0, total, out
        end
    }
    init_worker_by_lua_block { warden:init_worker() }
    server {
        listen 127.0.0.1:1991;
        access_by_lua_block { warden:check() }
        log_by_lua_block {
            warden:log()
            ngx.shared.seen:incr(ngx.status, 1, 0)
        }
        location = / {
            content_by_lua_block { ngx.say("home") }
        }
        location / {
            content_by_lua_block { ngx.exit(404) }
        }
    }
_EOC_

plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: dirb (a browser user agent) is blocked at the 10th 404
--- http_config eval: $::HttpConfig
--- config
    location /t {
        content_by_lua_block {
            -- dirb crashes without HOME, which nginx clears
            local ok200, nf, forbidden, total, out =
                scan("HOME=/tmp dirb http://127.0.0.1:1991/ WORDS -r -S -w")
            ngx.say("404s before the block: ", nf)
            -- every request after the 10th 404 was refused (dirb also
            -- retries words as directories when it sees a 403)
            ngx.say("refused after it: ", forbidden == total - ok200 - nf
                    and forbidden >= 30)
            local e = warden:events{ ip = "127.0.0.1", type = "suspicious" }[1]
            if not e then
                ngx.say(ok200, " ", nf, " ", forbidden, " ", total, "\n", out)
                return
            end
            ngx.say(e.rule, " ", e.count, " ", e.action, " ",
                    e.user_agent:find("MSIE", 1, true) ~= nil)
        }
    }
--- response_body
404s before the block: 10
refused after it: true
not_found 10 blocked for 1d true
--- timeout: 60



=== TEST 2: gobuster (names itself) is blocked at its first request
--- http_config eval: $::HttpConfig
--- config
    location /t {
        content_by_lua_block {
            local ok200, nf, forbidden, total, out = scan(
                "gobuster dir -q --no-error -t 1 -u http://127.0.0.1:1991/ -w WORDS")
            ngx.say("requests that got through: ", ok200 + nf)
            ngx.say("refused: ", forbidden, " of ", total)
            local e = warden:events{ ip = "127.0.0.1", type = "scan_detected" }[1]
            ngx.say(e.rule, " ", e.count, " ", e.action, " ", e.user_agent)
            if forbidden == 0 then ngx.say(out) end
        }
    }
--- response_body_like
requests that got through: 1
refused: \d+ of \d+
scanner_agent 1 blocked for 1d gobuster/3\.\d+
--- timeout: 60
