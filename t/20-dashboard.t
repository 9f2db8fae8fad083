# The dashboard's page (<api location>/ui/) through a real nginx: served by
# warden:api() without the token, with its locked-down headers (the CSP's
# hashes computed here from src/admin/ui.html, independently of the Rust
# code), revalidated with its ETag; every endpoint it reads still needs the
# token; and security/timeline, the endpoint of its chart.
# (t/21-dashboard-browser.t drives the page in a real browser.)
use lib 't/lib';
use TestWarden;
use Digest::SHA qw(sha256_base64);

workers(2);
master_on();

our $Root = $TestWarden::Root;

sub slurp {
    open my $fh, '<:raw', shift or die $!;
    local $/;
    return <$fh>;
}

sub hash {
    my $b64 = sha256_base64(shift);
    $b64 .= '=' while length($b64) % 4;
    return "'sha256-$b64'";
}

our $Page = slurp("$Root/src/admin/ui.html");
my ($script) = $Page =~ m{<script>(.*?)</script>}s;
my ($style) = $Page =~ m{<style>(.*?)</style>}s;
our $Csp = "default-src 'none'; script-src " . hash($script)
    . "; style-src " . hash($style) . "; connect-src 'self'; img-src data:; "
    . "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

our $HttpConfig = <<'_EOC_';
    lua_shared_dict warden 4m;
    init_by_lua_block {
        TOKEN = "t0ken-0123456789abcdef"
        warden = require("resty.warden").new{ admin_token = TOKEN }
        thttp = require "thttp"

        -- api(method, path, auth?) -> "<status> <body>", res
        -- auth: nil = the right token, false = none, else that header
        function api(method, path, auth, headers)
            local h = headers or {}
            if auth == nil then
                h.Authorization = "Bearer " .. TOKEN
            elseif auth then
                h.Authorization = auth
            end
            local res, err = thttp.request{ port = tonumber(ngx.var.server_port),
                method = method, path = path, headers = h }
            if not res then
                return "error " .. err
            end
            return res.status .. " " .. res.body:gsub("\n$", ""), res
        end
    }
_EOC_

our $Config = <<'_EOC_';
    location /api/ {
        content_by_lua_block { warden:api() }
    }
    location /ops/warden/ {
        content_by_lua_block { warden:api() }
    }
_EOC_

plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: the page, without a token, with its headers
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
GET /api/ui/
--- response_headers eval
"Content-Type: text/html; charset=utf-8
Cache-Control: no-cache
Content-Security-Policy: $::Csp
X-Frame-Options: DENY
X-Content-Type-Options: nosniff
Referrer-Policy: no-referrer
! WWW-Authenticate"
--- response_body eval: $::Page



=== TEST 2: HEAD: the headers, no body
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
HEAD /api/ui/
--- response_headers eval
"Content-Type: text/html; charset=utf-8
Content-Security-Policy: $::Csp
X-Frame-Options: DENY"
--- response_body chomp



=== TEST 3: other methods: 405
--- http_config eval: $::HttpConfig
--- config eval: $::Config
--- request
POST /api/ui/
--- more_headers
Authorization: Bearer t0ken-0123456789abcdef
--- error_code: 405
--- response_headers
Allow: GET
Content-Type: application/json
--- response_body
{"error":"POST is not allowed here (allowed: GET)","field":null}



=== TEST 4: any prefix, with or without a slash; 304 with its ETag
--- http_config eval: $::HttpConfig
--- config eval
$::Config . <<'_EOC_'
    location /t {
        content_by_lua_block {
            local _, page = api("GET", "/api/ui/", false)
            for _, path in ipairs{ "/api/ui", "/ops/warden/ui/", "/api/ui//" } do
                local s, res = api("GET", path, false)
                ngx.say(path, " ", res.status, " ", res.body == page.body,
                        " ", res.headers["content-type"])
            end
            local etag = page.headers["etag"]
            ngx.say("etag: ", etag:match('^"[%w+/]+"$') ~= nil)
            local s, res = api("GET", "/api/ui/", false,
                               { ["If-None-Match"] = etag })
            ngx.say("same: ", res.status, " [", res.body, "] ",
                    res.headers["etag"] == etag, " ",
                    res.headers["cache-control"])
            s, res = api("GET", "/api/ui/", false,
                         { ["If-None-Match"] = '"other"' })
            ngx.say("other: ", res.status, " ", res.body == page.body)
            -- no endpoint of the API answers under ui/
            ngx.say((api("GET", "/api/ui/security/stats", false)))
        }
    }
_EOC_
--- response_body
/api/ui 200 true text/html; charset=utf-8
/ops/warden/ui/ 200 true text/html; charset=utf-8
/api/ui// 200 true text/html; charset=utf-8
etag: true
same: 304 [] true no-cache
other: 200 true
401 {"error":"missing Authorization: Bearer <token>","field":"Authorization"}



=== TEST 5: what the page reads and changes still needs the token
--- http_config eval: $::HttpConfig
--- config eval
$::Config . <<'_EOC_'
    location /t {
        content_by_lua_block {
            local calls = {
                { "GET", "/api/security/stats" },
                { "GET", "/api/security/blocked-ips" },
                { "GET", "/api/security/events?limit=100&since=0" },
                { "GET", "/api/security/timeline?range=hour" },
                { "GET", "/api/security/timeline?range=day" },
                { "POST", "/api/security/blocked-ips" },
                { "DELETE", "/api/security/blocked-ips/192.0.2.1" },
            }
            for _, auth in ipairs{ false, "Bearer wrong", "Basic " .. TOKEN } do
                local got = {}
                for _, c in ipairs(calls) do
                    local s = api(c[1], c[2], auth)
                    got[#got + 1] = s:match("^%d+")
                end
                ngx.say(tostring(auth):sub(1, 12), ": ", table.concat(got, " "))
            end
            local got = {}
            for i = 1, 5 do
                got[#got + 1] = api(calls[i][1], calls[i][2]):match("^%d+")
            end
            ngx.say("token: ", table.concat(got, " "))
        }
    }
_EOC_
--- response_body
false: 401 401 401 401 401 401 401
Bearer wrong: 401 401 401 401 401 401 401
Basic t0ken-: 401 401 401 401 401 401 401
token: 200 200 200 200 200



=== TEST 6: security/timeline counts events and blocks per minute and quarter
--- http_config eval: $::HttpConfig
--- config eval
$::Config . <<'_EOC_'
    location /t {
        content_by_lua_block {
            local json = require("warden_core")
            local function post(ip, duration)
                local res = thttp.request{ port = tonumber(ngx.var.server_port),
                    method = "POST", path = "/api/security/blocked-ips",
                    headers = { Authorization = "Bearer " .. TOKEN },
                    body = '{"ip":"' .. ip .. '","duration":"' .. duration .. '"}' }
                return res.status
            end
            ngx.say(post("192.0.2.1", "1h"), " ", post("192.0.2.2", "0"))
            ngx.say(api("DELETE", "/api/security/blocked-ips/192.0.2.1"):match("^%d+"))
            for _, range in ipairs{ "hour", "day" } do
                local s, res = api("GET", "/api/security/timeline?range=" .. range)
                local v = json.json_decode(res.body)
                local n = #v.events
                local sum = function(list)
                    local t = 0
                    for _, x in ipairs(list) do t = t + x end
                    return t
                end
                -- the last bucket holds now (give or take the minute that
                -- may have just begun)
                local last = v.events[n] + v.events[n - 1]
                ngx.say(range, ": ", res.status, " buckets=", n,
                        " step=", v.step, " span=", v.to - v.from,
                        " now_in=", v.from <= ngx.time() and ngx.time() < v.to,
                        " events=", sum(v.events), " last=", last,
                        " blocks=", sum(v.blocks),
                        " blocked_ip=", sum(v.by_type.blocked_ip),
                        " suspicious=", sum(v.by_type.suspicious))
            end
            ngx.say((api("GET", "/api/security/timeline?range=week")))
            ngx.say((api("GET", "/api/security/timeline?range")))
        }
    }
_EOC_
--- response_body
201 201
200
hour: 200 buckets=60 step=60 span=3600 now_in=true events=3 last=3 blocks=2 blocked_ip=3 suspicious=0
day: 200 buckets=96 step=900 span=86400 now_in=true events=3 last=3 blocks=2 blocked_ip=3 suspicious=0
400 {"error":"range must be 'hour' or 'day', got 'week'","field":"range"}
400 {"error":"range must be given once, with a value","field":"range"}
