# Detection quality with the default options: libraries, monitors and
# crawlers are not scanners; each payload class at threshold-1 and at the
# threshold; a site's refusals are not auth failures; probe paths and
# payloads matched percent-decoded; what a page pulls in is not volume.
# (bench/quality.sh drives a real browser and real tools.)
use lib 't/lib';
use TestWarden;

workers(2);
master_on();

our $HttpConfig = <<'_EOC_';
    lua_shared_dict warden 2m;
    init_by_lua_block {
        warden = require("resty.warden").new({
            trusted_proxies = { "127.0.0.1" },
            sites = { shop = { allowed_ips = { "10.0.0.0/8" },
                               blocked_paths = { "/shop/admin/**" } } },
            detector = DETECTOR,
        })
        thttp = require "thttp"
        UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
             .. "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
        tdetect = require "tdetect"
        -- Sends each request in turn from client ip (t/lib/tdetect.lua);
        -- returns the statuses.
        function run(ip, paths, ua, headers)
            return (tdetect.run(1990, ip, paths, ua or UA, headers))
        end
        rep = tdetect.rep
        function probe(ip)
            return (run(ip, { "/ok" }))
        end
        function ev(ip)
            local e = tdetect.event(warden, ip)
            if not e then
                return "no event"
            end
            return table.concat({ e.type, e.rule, e.count, e.threshold,
                                  e.action, e.detail or "" }, " ")
        end
    }
    init_worker_by_lua_block { warden:init_worker() }
    server {
        listen 127.0.0.1:1990 reuseport;
        access_by_lua_block { warden:check() }
        log_by_lua_block { warden:log() }
        location /shop/ {
            access_by_lua_block { warden:check{ site = "shop" } }
            content_by_lua_block { ngx.say("shop") }
        }
        location /cached {
            content_by_lua_block { ngx.exit(304) }
        }
        location / {
            content_by_lua_block {
                ngx.status = tonumber(ngx.var.arg_s) or 200
                ngx.say("s")
            }
        }
    }
_EOC_

sub conf {
    my ($detector) = @_;
    my $c = $::HttpConfig;
    $c =~ s/DETECTOR/{ $detector }/;
    return $c;
}

plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: libraries, monitors and crawlers are never blocked for their user agent
--- http_config eval: ::conf('')
--- config
    location /t {
        content_by_lua_block {
            local agents = {
                "python-httpx/0.27.0",
                "python-requests/2.31.0",
                "Go-http-client/1.1",
                "okhttp/4.12.0",
                "axios/1.6.7",
                "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
                "curl/8.5.0",
                "Wget/1.21.4",
                "Java/17.0.9",
                "libwww-perl/6.72",
                "kube-probe/1.29",
                "ELB-HealthChecker/2.0",
                "Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
                "Prometheus/2.48.0",
                "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
                "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
                "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
                "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
            }
            for i, ua in ipairs(agents) do
                local ip = "192.0.2." .. i
                ngx.say(run(ip, rep("/api/items?page=2", 4), ua), " ",
                        ev(ip), " ", ua:match("^[%w%-%.+]+"))
            end
            -- ProjectDiscovery's prober, by its own user agent
            local ip = "192.0.2.100"
            ngx.say(run(ip, rep("/", 2),
                "httpx - Open-source project (github.com/projectdiscovery/httpx)"))
            ngx.say(ev(ip))
        }
    }
--- response_body
200 200 200 200 no event python-httpx
200 200 200 200 no event python-requests
200 200 200 200 no event Go-http-client
200 200 200 200 no event okhttp
200 200 200 200 no event axios
200 200 200 200 no event node-fetch
200 200 200 200 no event curl
200 200 200 200 no event Wget
200 200 200 200 no event Java
200 200 200 200 no event libwww-perl
200 200 200 200 no event kube-probe
200 200 200 200 no event ELB-HealthChecker
200 200 200 200 no event Mozilla
200 200 200 200 no event Prometheus
200 200 200 200 no event Mozilla
200 200 200 200 no event Mozilla
200 200 200 200 no event facebookexternalhit
200 200 200 200 no event Slackbot-LinkExpanding
200 403
scan_detected scanner_agent 1 1 blocked for 1d projectdiscovery httpx



=== TEST 2: each payload class: threshold-1 passes, the threshold blocks
--- http_config eval: ::conf('')
--- config
    location /t {
        content_by_lua_block {
            local classes = {
                { "traversal", "/page?file=../../../../etc/passwd",
                  "/page?file=..%2f..%2f..%2fwindows%2fwin.ini",
                  "/page?f=php://filter/convert.base64-encode/resource=index.php" },
                { "sqli", "/item?id=1%27%20OR%20%271%27%3D%271",
                  "/item?id=1+AND+8652%3D8652",
                  "/item?id=-1+UNION+ALL+SELECT+NULL%2CNULL--+-" },
                { "xss", "/search?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
                  "/search?q=%22%3E%3Cimg+src%3Dx+onerror%3Dalert(1)%3E",
                  "/search?q=javascript:alert(document.cookie)" },
                { "cmdi", "/ping?host=127.0.0.1;env;",
                  "/ping?host=x%7Ccat+%2Fetc%2Fhostname",
                  "/ping?host=%24(sleep+5)" },
                { "ssti", "/hello?name=%7B%7B7*7%7D%7D",
                  "/hello?name=%24%7B7*7%7D", "/hello?name=%3C%25%3D+7*7+%25%3E" },
                { "ssrf", "/fetch?url=http://169.254.169.254/latest/meta-data/",
                  "/fetch?url=gopher://127.0.0.1:6379/_INFO",
                  "/fetch?url=http://metadata.google.internal/computeMetadata/v1/" },
            }
            for i, c in ipairs(classes) do
                local ip = "192.0.2." .. (10 + i)
                -- the same payload again and again counts once
                local first = run(ip, { c[2], c[2], c[2], c[3] })
                ngx.say(c[1], " threshold-1: ", first, " then ", probe(ip))
                run(ip, { c[4] })
                ngx.say(c[1], " threshold: ", probe(ip), " ", ev(ip))
            end
        }
    }
--- response_body
traversal threshold-1: 200 200 200 200 then 200
traversal threshold: 403 scan_detected payload 3 3 blocked for 1d traversal
sqli threshold-1: 200 200 200 200 then 200
sqli threshold: 403 scan_detected payload 3 3 blocked for 1d sqli
xss threshold-1: 200 200 200 200 then 200
xss threshold: 403 scan_detected payload 3 3 blocked for 1d xss
cmdi threshold-1: 200 200 200 200 then 200
cmdi threshold: 403 scan_detected payload 3 3 blocked for 1d cmdi
ssti threshold-1: 200 200 200 200 then 200
ssti threshold: 403 scan_detected payload 3 3 blocked for 1d ssti
ssrf threshold-1: 200 200 200 200 then 200
ssrf threshold: 403 scan_detected payload 3 3 blocked for 1d ssrf
--- error_log
warden: auto-blocked 192.0.2.11 for 1d (payload: 3 in 2m (traversal), offence 1)



=== TEST 3: ordinary queries and odd but harmless paths never count
--- http_config eval: ::conf('payload_threshold = 1')
--- config
    location /t {
        content_by_lua_block {
            ngx.say(run("192.0.2.30", {
                "/search?q=rock+and+roll", "/search?q=O%27Brien",
                "/search?q=don%27t+or+won%27t", "/search?q=a%3Bb",
                "/search?q=select+the+best+option", "/search?q=1%2B1",
                "/cart?items=1|2|3", "/login?next=%2Faccount%2Fsettings",
                "/wiki/O%27Brien_(surname)", "/search?q=50%25+off",
                "/api/items?filter=%7B%22price%22%3A%7B%22gt%22%3A10%7D%7D",
            }), " ", ev("192.0.2.30"))
        }
    }
--- response_body
200 200 200 200 200 200 200 200 200 200 200 no event



=== TEST 4: decoding: percent, double percent, plus for space, dot segments
--- http_config eval: ::conf('')
--- config
    location /t {
        content_by_lua_block {
            -- probe paths after decoding: 2 failed probes block
            local ip = "192.0.2.31"
            ngx.say(run(ip, { "/%2eenv?s=404", "/%252e%2567it/config?s=404" }),
                    " ", probe(ip), " ", ev(ip))
            -- double encoding and + for space, in the query
            ip = "192.0.2.32"
            ngx.say(run(ip, { "/a?f=%252e%252e%252f%252e%252e%252fetc%252fpasswd",
                              "/a?id=1%27+or+1%3D1--+-",
                              "/a?q=%253Cscript%253Ealert(1)%253C/script%253E" }),
                    " ", probe(ip), " ", ev(ip))
        }
    }
--- response_body
404 404 403 suspicious probe_path 2 2 blocked for 1d 
200 200 200 403 scan_detected payload 3 3 blocked for 1d traversal+sqli+xss



=== TEST 5: a storm of site refusals does not block; the application's 403s do
--- http_config eval: ::conf('')
--- config
    location /t {
        content_by_lua_block {
            -- not in allowed_ips, then a blocked path of an allowed client
            local ip = "192.0.2.33"
            ngx.say(run(ip, rep("/shop/p", 20)), " elsewhere: ", probe(ip),
                    " ", ev(ip))
            ngx.say(run("10.1.2.3", rep("/shop/admin/x", 20)), " elsewhere: ",
                    probe("10.1.2.3"), " ", ev("10.1.2.3"))
            -- the application's own 403s are auth failures (5)
            ip = "192.0.2.34"
            ngx.say(run(ip, rep("/x?s=403", 5)), " then: ", probe(ip), " ", ev(ip))
        }
    }
--- response_body eval
"403 " x 19 . "403 elsewhere: 200 no event\n"
. "403 " x 19 . "403 elsewhere: 200 no event\n"
. "403 403 403 403 403 then: 403 auth_failed auth_failure 5 5 blocked for 1d \n"



=== TEST 6: what a page pulls in, revalidations and prefetches are not volume
--- http_config eval: ::conf('rate_threshold = 10')
--- config
    location /t {
        content_by_lua_block {
            local ip = "192.0.2.35"
            run(ip, rep("/avatar?u=1", 30), nil, { ["Sec-Fetch-Dest"] = "image" })
            run(ip, rep("/next", 10), nil, { ["Sec-Fetch-Dest"] = "document",
                                             ["Sec-Purpose"] = "prefetch" })
            run(ip, rep("/next", 10), nil, { Purpose = "prefetch" })
            run(ip, rep("/cached", 20))
            run(ip, rep("/page", 8), nil, { ["Sec-Fetch-Dest"] = "document" })
            ngx.say("threshold-1: ", probe(ip))
            -- fetch() calls are what the client asks for
            run(ip, { "/api" }, nil, { ["Sec-Fetch-Dest"] = "empty" })
            ngx.say("threshold: ", probe(ip), " ", ev(ip))
        }
    }
--- response_body
threshold-1: 200
threshold: 403 rate_limited rate 10 10 blocked for 1d 
