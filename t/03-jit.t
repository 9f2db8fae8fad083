# The access phase stays JIT compiled and allocates nothing per request.
use lib 't/lib';
use TestWarden;

our $HttpConfig = <<'_EOC_';
    lua_shared_dict warden 1m;
    init_by_lua_block {
        warden = require("resty.warden").new({
            allowlist = { "10.0.0.0/8" },
            denylist = "203.0.113.0/24",
            trusted_proxies = { "127.0.0.1" },
            -- one client logged 200k times would trip these
            detector = { rules = { rate = "off", repeated_hits = "off" } },
        })
        warden:block("198.51.100.0/24")
        warden:block("198.51.100.9", { duration = "1h" })

        -- Runs f n times under jit.v; returns the log.
        function traced(f, n)
            local v = require "jit.v"
            local path = ngx.config.prefix() .. "logs/jit.log"
            v.on(path)
            f(n)
            v.off()
            local fh = assert(io.open(path))
            local log = fh:read("*a")
            fh:close()
            return log
        end

        -- n calls of warden:check() for the current request.
        function check_loop(n)
            local w = warden
            for _ = 1, n do
                w:check()
            end
        end

        -- n calls of warden:log() for the current request.
        function log_loop(n)
            local w = warden
            for _ = 1, n do
                w:log()
            end
        end

        -- Says "trace", "no NYI" and the KiB that 100k calls allocate.
        function jit_report(loop)
            local log = traced(loop, 1000)
            ngx.say(log:find("TRACE%s+%d+ %a+_by_lua%b():%d+ loop")
                    and "trace" or log)
            ngx.say(log:find("NYI") and log or "no NYI")
            ngx.say("KiB: ", allocated(loop, 100000))
        end

        -- KiB allocated by n calls of f, after a warm-up.
        function allocated(f, n)
            f(n)
            collectgarbage("collect")
            collectgarbage("stop")
            local before = collectgarbage("count")
            f(n)
            local after = collectgarbage("count")
            collectgarbage("restart")
            return after - before
        end
    }
    init_worker_by_lua_block { warden:init_worker() }
_EOC_

plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: check() from the peer address: a trace, no NYI, no allocation
--- http_config eval: $::HttpConfig
--- config
    location /t {
        content_by_lua_block {
            jit_report(check_loop)
        }
    }
--- response_body
trace
no NYI
KiB: 0



=== TEST 2: check() through a trusted proxy's X-Forwarded-For: a trace, no NYI, no allocation
--- http_config eval: $::HttpConfig
--- config
    location /t {
        content_by_lua_block {
            jit_report(check_loop)
        }
    }
--- more_headers
X-Forwarded-For: 192.0.2.1, 10.1.1.1
--- response_body
trace
no NYI
KiB: 0



=== TEST 3: check(ip) with a string: a trace, no NYI, no allocation
--- http_config eval: $::HttpConfig
--- config
    location /t {
        content_by_lua_block {
            local ips = { "192.0.2.1", "2001:db8::1", "10.1.2.3", "::ffff:192.0.2.7" }
            local function loop(n)
                local w = warden
                for i = 1, n do
                    w:check(ips[i % 4 + 1])
                end
            end
            jit_report(loop)
        }
    }
--- response_body
trace
no NYI
KiB: 0



=== TEST 4: log() feeding the detector: a trace, no NYI, no allocation
--- http_config eval: $::HttpConfig
--- config
    location /t {
        content_by_lua_block {
            jit_report(log_loop)
            ngx.say("counted: ", warden:stats().detector_observed >= 201000)
        }
    }
--- more_headers
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0
--- response_body
trace
no NYI
KiB: 0
counted: true



=== TEST 5: log() through a trusted proxy's X-Forwarded-For: a trace, no NYI, no allocation
--- http_config eval: $::HttpConfig
--- config
    location /t {
        content_by_lua_block {
            jit_report(log_loop)
        }
    }
--- more_headers
X-Forwarded-For: 192.0.2.1, 10.1.1.1
--- response_body
trace
no NYI
KiB: 0



=== TEST 6: the C interface comes from the library: LuaJIT lays each struct out as Rust does
--- http_config eval: $::HttpConfig
--- config
    location /t {
        content_by_lua_block {
            local ffi = require "ffi"
            local lib = require "warden_core"
            -- core.lua gave lib.cdef to ffi.cdef; every struct and field
            -- Rust reports has the same size and offset in LuaJIT
            local names = {}
            for ty in pairs(lib.layout) do names[#names + 1] = ty end
            table.sort(names)
            for _, ty in ipairs(names) do
                local fields = lib.layout[ty]
                local bad = {}
                for f, v in pairs(fields) do
                    local got = f == "size" and ffi.sizeof(ty)
                                or ffi.offsetof(ty, f)
                    if got ~= v then
                        bad[#bad + 1] = f .. " " .. tostring(got) .. "/" .. v
                    end
                end
                ngx.say(ty, ": ", #bad == 0 and "same" or table.concat(bad, ", "))
            end
            local core = require "resty.warden.core"
            ngx.say("codes: ", core.PASS, " ", core.SYNC, " ", core.BAD_ADDRESS,
                    " ", core.DECIDE_FORBIDDEN_IP)
        }
    }
--- response_body
warden_client_t: same
warden_decision_t: same
warden_iprepd_out_t: same
codes: 0 9 -1 3
