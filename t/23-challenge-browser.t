# Challenge instead of ban in a real browser (issue 19): headless Chromium
# (Debian's chromium), driven by t/lib/challenge_browser.py over the
# DevTools pipe (t/lib/devtools.py), is challenged at the default
# difficulty, solves the proof of work by itself and ends on the page it
# asked for; the next page needs no second challenge; with JavaScript off
# it sees the explanation; curl and dirb never get a page, and dirb ends
# up blocked. The measured times go to the error log ("challenge time"),
# and with WARDEN_CHALLENGE_TIMES=<file>, to that file (the README's).
#
# Skipped when chromium, python3, curl or dirb is missing (.ci/run
# installs them).
use lib 't/lib';
use TestWarden;

our $Root = $TestWarden::Root;
our $Chromium = $ENV{CHROMIUM} || '/usr/bin/chromium';
our $Python = '/usr/bin/python3';
our $Times = $ENV{WARDEN_CHALLENGE_TIMES} // '';
# the README's difficulty table: WARDEN_CHALLENGE_DIFFICULTY=18 ...
our $Difficulty = $ENV{WARDEN_CHALLENGE_DIFFICULTY} // 16;

for my $need ($Chromium, $Python, '/usr/bin/curl', '/usr/bin/dirb') {
    next if -x $need;
    plan skip_all => "$need is not installed: the challenge's browser test"
        . " is skipped";
}

workers(2);
master_on();

our $HttpConfig = <<"_EOC_";
    lua_shared_dict warden 4m;
    init_by_lua_block {
        TOKEN = "t0ken-0123456789abcdef"
        DRIVER = "WARDEN_CHALLENGE_TIMES='$Times' CHROMIUM=$Chromium $Python $Root/t/lib/challenge_browser.py"
        warden = require("resty.warden").new{
            admin_token = TOKEN,
            trusted_proxies = { "127.0.0.1" },
            detector = false,
            challenge = { secret = "a secret of the browser test",
                          difficulty = $Difficulty,
                          path = "/site/.warden/challenge" },
        }
    }
    init_worker_by_lua_block { warden:init_worker() }
_EOC_

plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: a browser passes the challenge by itself; curl and a scanner do not
--- http_config eval: $::HttpConfig
--- config
    location /api/ {
        content_by_lua_block { warden:api() }
    }
    location = /favicon.ico {
        return 204;
    }
    location /site/ {
        access_by_lua_block { warden:check() }
        content_by_lua_block {
            ngx.say("<!DOCTYPE html><title>site</title><p>article ",
                    ngx.var.arg_id or "home")
        }
    }
    location = /t {
        content_by_lua_block {
            -- in the background: this nginx serves the browser meanwhile
            local text = require("tdriver").run(DRIVER .. " http://127.0.0.1:"
                .. ngx.var.server_port .. " /site " .. TOKEN, 240)
            for line in text:gmatch("time [^\n]+") do
                ngx.log(ngx.WARN, "challenge ", line)
            end
            ngx.print((text:gsub("time [^\n]+\n", "")))
        }
    }
--- timeout: 240
--- response_body
ok the browser solves the challenge and ends on the page it asked for
ok its cookie is HttpOnly, SameSite=Lax, Path=/
ok the next page loads at once: no second challenge
ok no script error and no CSP violation
ok without JavaScript: the plain explanation
ok curl gets 429, never the page
ok dirb finds nothing and ends up blocked
exit 0
