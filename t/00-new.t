# new(): options, defaults and the errors bad options give.
use lib 't/lib';
use TestWarden;

plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: new() with the synopsis options
--- http_config
    lua_shared_dict warden 1m;
    init_by_lua_block {
        warden = require("resty.warden").new({
            allowlist = { "127.0.0.1", "10.0.0.0/8", "2001:db8::/32" },
            denylist  = "203.0.113.0/24,198.51.100.7",
            trusted_proxies = { "127.0.0.1" },
        })
    }
--- config
    location /t {
        content_by_lua_block {
            ngx.say(warden.blocking_mode, " ", warden.block_status, " ",
                    warden.dict_name, " ", #warden:blocked())
        }
    }
--- response_body
1 403 warden 2



=== TEST 2: bad options name the option and the value
--- http_config
    lua_shared_dict warden 1m;
    init_by_lua_block {
        local new = require("resty.warden").new
        local cases = {
            { allowlist = { "10.0.0.1", "10.0.0.300" } },
            { denylist = "203.0.113.0/24,nope" },
            { trusted_proxies = { "fe80::1%eth0" } },
            { denylist = "10.0.0.0/33" },
            { blocking_mode = 2 },
            { block_status = 99 },
            { dict = "missing" },
            { blokcing_mode = 1 },
            "allowlist",
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
opts.allowlist has an invalid IP address or CIDR '10.0.0.300'
opts.denylist has an invalid IP address or CIDR 'nope'
opts.trusted_proxies has an invalid IP address 'fe80::1%eth0': zone ids (%...) are not allowed
opts.denylist has an invalid CIDR '10.0.0.0/33': prefix length must be 0 to 32
opts.blocking_mode must be 0, 1, true or false, got 2
opts.block_status must be an HTTP status from 100 to 599, got 99
opts.dict: no lua_shared_dict named 'missing' (add 'lua_shared_dict missing 64m;' to the http block)
opts.blokcing_mode is not a known option (known: dict, allowlist, denylist, trusted_proxies, blocking_mode, block_status, detector, retention_days, max_events, iprepd, whitelist, protected_routes, sites, realtime_capture, max_captures, admin_token, admin_token_file, admin_max_body, statsd_host, statsd_port, statsd_flush_timer, state_file, state_interval, redis, event_log, capture_max_duration, challenge)
opts must be a table, got string



=== TEST 3: a bad option stops nginx from starting
--- http_config
    lua_shared_dict warden 1m;
    init_by_lua_block {
        warden = require("resty.warden").new({ denylist = "203.0.113.0/24,nope" })
    }
--- config
--- must_die
--- error_log
opts.denylist has an invalid IP address or CIDR 'nope'



=== TEST 4: new() outside init_by_lua is refused
--- http_config
    lua_shared_dict warden 1m;
--- config
    location /t {
        content_by_lua_block {
            local ok, err = pcall(require("resty.warden").new, {})
            ngx.say(ok, " ", err)
        }
    }
--- response_body_like
^false .*new\(\) must be called in init_by_lua\*.*\(called in content\)$
