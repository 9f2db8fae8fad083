# The dashboard in a real browser: headless Chromium (Debian's chromium)
# driven by t/lib/dashboard.py against this nginx: the sign-in form and
# nothing else without a token, a wrong token refused, the overview and its
# chart, a block made with the form then listed, searched and unblocked
# (checked against the API), events filtered by type, address and time,
# the counters, a phone's width, a token that stops working, sign-out, and
# no script error or CSP violation along the way.
#
# Skipped when chromium or python3 is missing (.ci/run installs both).
# WARDEN_DASHBOARD_SHOTS=docs keeps screenshots of the views there (the
# README's are made so).
use lib 't/lib';
use TestWarden;

our $Root = $TestWarden::Root;
our $Chromium = $ENV{CHROMIUM} || '/usr/bin/chromium';
our $Python = '/usr/bin/python3';

for my $need ($Chromium, $Python) {
    next if -x $need;
    plan skip_all => "$need is not installed: the dashboard's browser test"
        . " is skipped (apt-get install chromium python3 to run it)";
}

workers(2);
master_on();

our $Shots = $ENV{WARDEN_DASHBOARD_SHOTS} // '';
$Shots = "$Root/$Shots" if $Shots ne '' && $Shots !~ m{^/};

our $HttpConfig = <<"_EOC_";
    lua_shared_dict warden 4m;
    init_by_lua_block {
        TOKEN = "t0ken-0123456789abcdef"
        DRIVER = "$Python $Root/t/lib/dashboard.py"
        CHROMIUM = "$Chromium"
        SHOTS = "$Shots"
        warden = require("resty.warden").new{
            admin_token = TOKEN,
            detector = { not_found_threshold = 4, auth_failure_threshold = 5 },
        }
    }
_EOC_

plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: an operator's session in headless Chromium
--- http_config eval: $::HttpConfig
--- config
    location /api/ {
        content_by_lua_block { warden:api() }
    }
    location /t {
        content_by_lua_block {
            -- in the background: this nginx serves the browser meanwhile
            ngx.print(require("tdriver").run("CHROMIUM=" .. CHROMIUM .. " "
                .. DRIVER .. " http://127.0.0.1:" .. ngx.var.server_port
                .. "/api " .. TOKEN .. " " .. SHOTS, 150))
        }
    }
--- timeout: 160
--- response_body
ok without a token: the sign-in form only
ok a wrong token: refused, nothing shown
ok the right token: the overview, offenders and chart
ok the chart over the last day and hour
ok block an address with the form
ok see it listed; search and filter the list
ok unblock it (two clicks)
ok filter events by type, address and time
ok the counters, shared memory and detector table
ok on a phone: still signed in, no sideways scrolling
ok a token that stops working: back to the form
ok sign out
ok no script error and no CSP violation
exit 0
