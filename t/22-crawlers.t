# Verified crawlers (issue 19): resty.warden.crawler's verified(w, ip, ua)
# through real nginx (2 workers), against a tiny authoritative DNS server
# (t/lib/fakedns.py on 127.0.0.1:1953) that logs every query it reads. The
# challenge itself comes last (TEST 9); before, a content handler (/v) asks
# verified() for the client that X-Forwarded-For names (the realip module,
# the trusted proxy 127.0.0.1) and prints the answer with the number of
# DNS queries it took; /t makes the requests (t/lib/thttp.lua), one
# connection each, so that they spread over both workers.
use lib 't/lib';
use TestWarden;

workers(2);
master_on();

our $DnsLog = "/tmp/warden-fakedns-$$.log";
unlink $DnsLog;
my $dns_pid = fork();
die "fork: $!" unless defined $dns_pid;
if ($dns_pid == 0) {
    exec('/usr/bin/python3', "$TestWarden::Root/t/lib/fakedns.py", 1953,
         $DnsLog) or die "fakedns.py: $!";
}
END {
    local $?;  # waitpid must not set the script's exit status
    if ($dns_pid) {
        kill 9, $dns_pid;
        waitpid $dns_pid, 0;
        unlink $DnsLog;
    }
}
# the server is up once it has logged a probe
for (1 .. 50) {
    system("/usr/bin/python3", "-c", <<'_PY_');
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.1)
q = b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05probe\x00\x00\x01\x00\x01"
s.sendto(q, ("127.0.0.1", 1953))
try:
    s.recv(512); sys.exit(0)
except OSError:
    sys.exit(1)
_PY_
    last if $? == 0;
    select(undef, undef, undef, 0.1);
}

sub conf {
    my ($challenge) = @_;
    return <<"_EOC_";
    lua_shared_dict warden 1m;
    init_by_lua_block {
        -- the challenge needs its secret; the crawlers' options are the test's
        local challenge = $challenge
        challenge.secret = "0123456789abcdef"
        warden = require("resty.warden").new({
            trusted_proxies = { "127.0.0.1" },
            challenge = challenge,
        })
        crawler = require "resty.warden.crawler"
        thttp = require "thttp"
        -- DNS queries read so far by the server
        function queries()
            local n = 0
            local f = io.open("$DnsLog")
            if f then
                for _ in f:lines() do n = n + 1 end
                f:close()
            end
            return n
        end
        -- verified() for client ip with user agent ua, in another request
        function ask(ip, ua)
            local res, err = thttp.request{ port = 1984, path = "/v",
                headers = { ["X-Forwarded-For"] = ip, ["User-Agent"] = ua } }
            if not res then return err end
            return res.body
        end
    }
    init_worker_by_lua_block { warden:init_worker() }
_EOC_
}

our $Conf = conf(<<'_EOC_');
{
                crawlers = {
                    allow = { "203.0.113.0/24" },
                    timeout = "2s",
                    extra = { { agent = "Twitterbot", domains = "twttr.com" } },
                },
                resolver = { "127.0.0.1:1953" },
            }
_EOC_

our $Locations = <<'_EOC_';
    location = /v {
        set_real_ip_from 127.0.0.1;
        real_ip_header X-Forwarded-For;
        content_by_lua_block {
            local before = queries()
            local ok = crawler.verified(warden, ngx.var.remote_addr,
                                        ngx.var.http_user_agent)
            ngx.print(tostring(ok), " ", queries() - before)
        }
    }
_EOC_

our $Googlebot = 'Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)';

plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: a real Googlebot is verified (PTR, then A); then from the cache
--- http_config eval: $::Conf
--- config eval
$::Locations . <<"_EOC_";
    location = /t {
        content_by_lua_block {
            local ua = "$::Googlebot"
            for i = 1, 4 do
                ngx.say(ask("66.249.66.1", ua))
            end
            ngx.say(warden.engine:stat("crawlers_verified"))
        }
    }
_EOC_
--- response_body
true 2
true 0
true 0
true 0
1



=== TEST 2: fake crawlers are refused, and the refusal is cached
A PTR outside Google's domains (one query), a name whose forward lookup
does not hold the address, a name that only ends in "googlebot.com"
without a label boundary, an address without a PTR.
--- http_config eval: $::Conf
--- config eval
$::Locations . <<"_EOC_";
    location = /t {
        content_by_lua_block {
            local ua = "$::Googlebot"
            for _, ip in ipairs{ "66.249.66.2", "66.249.66.3", "66.249.66.5",
                                 "66.249.66.9" } do
                ngx.say(ip, " ", ask(ip, ua), ", again ", ask(ip, ua))
            end
            ngx.say(warden.engine:stat("crawlers_failed"), " ",
                    warden.engine:stat("crawler_lookup_errors"))
        }
    }
_EOC_
--- response_body
66.249.66.2 false 1, again false 0
66.249.66.3 false 2, again false 0
66.249.66.5 false 1, again false 0
66.249.66.9 false 1, again false 0
4 0
--- error_log
66.249.66.2 claims to be a crawler of google and is not: evil.example not in google's domains
66.249.66.3 claims to be a crawler of google and is not: crawl-66-249-66-3.googlebot.com forward lookup does not hold the address



=== TEST 3: a resolver that does not answer: not verified within the timeout, cached
--- http_config eval
$::Conf =~ s/timeout = "2s"/timeout = "400ms"/r
--- config eval
$::Locations . <<"_EOC_";
    location = /t {
        content_by_lua_block {
            local ua = "$::Googlebot"
            local t0 = ngx.now()
            ngx.say(ask("66.249.66.4", ua))
            ngx.update_time()
            local took = ngx.now() - t0
            ngx.say(took >= 0.3 and took < 1.5 and "within the timeout" or took)
            ngx.say(ask("66.249.66.4", ua))
            ngx.say(warden.engine:stat("crawler_lookup_errors"))
        }
    }
_EOC_
--- response_body
false 1
within the timeout
false 0
1
--- error_log
cannot verify 66.249.66.4 as a crawler of google: no answer (timeout)



=== TEST 4: no claim, no lookup; the allowlist; other crawlers; a CNAME
A browser from Google's address makes no query; a Google address that
claims to be Bingbot is refused (its name is not in search.msn.com); the
operator's Twitterbot (crawlers.extra) is verified; an allowlisted address
passes whatever its user agent; a forward lookup through a CNAME confirms.
--- http_config eval: $::Conf
--- config eval
$::Locations . <<"_EOC_";
    location = /t {
        content_by_lua_block {
            ngx.say(ask("66.249.66.1", "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"))
            ngx.say(ask("66.249.66.1", "Mozilla/5.0 (compatible; bingbot/2.0)"))
            ngx.say(ask("199.16.156.1", "Twitterbot/1.0"))
            ngx.say(ask("203.0.113.77", "curl/8.5.0"))
            ngx.say(ask("66.249.66.6", "$::Googlebot"))
        }
    }
_EOC_
--- response_body
false 0
false 1
true 2
true 0
true 2



=== TEST 5: verify = false: only the allowlist
--- http_config eval
main::conf('{ crawlers = { verify = false, allow = "203.0.113.0/24" } }')
--- config eval
$::Locations . <<"_EOC_";
    location = /t {
        content_by_lua_block {
            ngx.say(ask("66.249.66.1", "$::Googlebot"))
            ngx.say(ask("203.0.113.1", "$::Googlebot"))
            ngx.say(warden.crawlers ~= nil)
        }
    }
_EOC_
--- response_body
false 0
true 0
true



=== TEST 6: without opts.challenge, w.crawlers is nil and verified() is false
--- http_config
    lua_shared_dict warden 1m;
    init_by_lua_block {
        warden = require("resty.warden").new({})
        crawler = require "resty.warden.crawler"
    }
--- config
    location = /t {
        content_by_lua_block {
            ngx.say(warden.crawlers == nil, " ",
                    crawler.verified(warden, "66.249.66.1", "Googlebot/2.1"))
        }
    }
--- response_body
true false



=== TEST 7: bad options are refused with the field and the value
--- http_config
    lua_shared_dict warden 1m;
    init_by_lua_block {
        for _, c in ipairs{
            { crawlers = { verfy = true } },
            { crawlers = { timeout = "1h" } },
            { crawlers = { allow = { "10.0.0.300" } } },
            { crawlers = { extra = { { agent = "X", domains = "a..b" } } } },
            { resolver = { "dns.example" } },
        } do
            c.secret = "0123456789abcdef"
            local ok, err = pcall(require("resty.warden").new, { challenge = c })
            print("NEW: ", err)
        end
    }
--- config
    location = /t {
        return 200;
    }
--- error_log
NEW: resty.warden: opts.challenge.crawlers.verfy is not a known option (known: verify, allow, extra, timeout)
NEW: resty.warden: opts.challenge.crawlers.timeout must be from 10ms to 30s, got '1h'
NEW: resty.warden: opts.challenge.crawlers.allow has an invalid IP address or CIDR '10.0.0.300'
NEW: resty.warden: opts.challenge.crawlers.extra[1].domains has 'a..b', which is not a domain like 'twttr.com'
NEW: resty.warden: opts.challenge.resolver has 'dns.example', which is not a resolver address
--- no_error_log
[crit]



=== TEST 8: resolvers over IPv6, the next resolver when one refuses, an IPv6 crawler
The first resolver has nothing listening (the kernel refuses the datagram):
the second, on [::1], answers; an IPv6 Googlebot is confirmed by AAAA.
--- http_config eval
main::conf('{ resolver = { "127.0.0.1:1954", "[::1]:1953" } }')
--- config eval
$::Locations . <<"_EOC_";
    location = /t {
        content_by_lua_block {
            ngx.say(ask("66.249.66.1", "$::Googlebot"))
            ngx.say(ask("2001:4860:4801::1", "$::Googlebot"))
            ngx.say(table.concat(warden.crawlers:resolvers(), " "))
        }
    }
_EOC_
--- response_body
true 2
true 2
127.0.0.1:1954 [::1]:1953
--- error_log
warden: crawler lookup via 127.0.0.1:1954: connection refused



=== TEST 9: a challenged verified crawler gets the page; a fake one is challenged
Both addresses are challenged by hand; the page location runs check().
Googlebot at 66.249.66.1 is verified by DNS and served; a client that
only says Googlebot (66.249.66.2, whose PTR is evil.example) gets the
challenge (429, the proof-of-work page), as does a browser there.
--- http_config eval: $::Conf
--- config eval
$::Locations . <<"_EOC_";
    location = /page {
        access_by_lua_block { warden:check() }
        content_by_lua_block { ngx.say("the page") }
    }
    location = /t {
        content_by_lua_block {
            for _, ip in ipairs{ "66.249.66.1", "66.249.66.2" } do
                assert(warden:block(ip, { action = "challenge",
                                          duration = 600 }))
            end
            local function get(ip, ua)
                local res, err = thttp.request{ port = 1984, path = "/page",
                    headers = { ["X-Forwarded-For"] = ip,
                                ["User-Agent"] = ua,
                                ["Accept"] = "text/html" } }
                if not res then return err end
                return res.status .. " "
                       .. (res.body:match("^the page") and "page"
                           or res.body:find("<html", 1, true) and "challenge"
                           or "other")
            end
            ngx.say("googlebot: ", get("66.249.66.1", "$::Googlebot"))
            ngx.say("googlebot again: ", get("66.249.66.1", "$::Googlebot"))
            ngx.say("fake googlebot: ", get("66.249.66.2", "$::Googlebot"))
            ngx.say("browser: ", get("66.249.66.2", "Mozilla/5.0 (X11)"))
        }
    }
_EOC_
--- response_body
googlebot: 200 page
googlebot again: 200 page
fake googlebot: 429 challenge
browser: 429 challenge
--- no_error_log
[error]
