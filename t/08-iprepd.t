# resty.warden.iprepd, the drop-in for iprepd-nginx, against a stand-in
# iprepd (port 1997) implementing GET /type/ip/<ip> with APIKey auth, and
# a protected site (port 1998, 4 workers) using nginx's realip module so
# that X-Forwarded-For picks the client.
use lib 't/lib';
use TestWarden;

workers(4);
master_on();

# A certificate for 127.0.0.1 (iprepd over https, 1994) and one for
# another name (1993), both trusted by lua_ssl_trusted_certificate.
our $Tls = "/tmp/warden-tls-$$";
mkdir $Tls;
for my $n (['ok', '127.0.0.1'], ['other', 'other.example']) {
    system("openssl req -x509 -newkey rsa:2048 -nodes -days 2"
           . " -subj /CN=$n->[1] -addext subjectAltName=DNS:$n->[1]"
           . " -keyout $Tls/$n->[0].key -out $Tls/$n->[0].crt 2>/dev/null") == 0
        or die "openssl: $?";
}
system("cat $Tls/ok.crt $Tls/other.crt > $Tls/trusted.crt");
chmod 0755, $Tls;
chmod 0644, glob("$Tls/*");
END { system("rm", "-rf", $Tls) if $Tls }

sub conf {
    my ($opts) = @_;
    # iprepd-nginx's 10 ms default timeout is too tight for a loaded 2-core
    # test machine (a lookup that times out is asked again): 3 s unless the
    # test sets its own (TEST 3 checks the timeout itself)
    $opts = "timeout = 3000, $opts" unless $opts =~ /\btimeout\s*=/;
    return <<"_EOC_";
    lua_shared_dict lookups 1m;
    init_by_lua_block {
        client = require("resty.warden.iprepd").new({
            url = "http://127.0.0.1:1997/", threshold = 50,
            api_key = "secret", $opts
        })
        thttp = require "thttp"
        -- One request to the site as client ip; returns status and headers.
        function visit(ip)
            local res, err = thttp.request{ port = 1998, path = "/",
                headers = { ["X-Forwarded-For"] = ip } }
            if not res then return err end
            return res.status .. " " .. (res.status == 200 and res.body or "")
        end
        function lookups(ip)
            return ngx.shared.lookups:get(ip) or 0
        end
    }
    server {
        listen 127.0.0.1:1997;
        location ~ ^/type/ip/(?<ip>.+)\$ {
            content_by_lua_block {
                local ip = ngx.var.ip
                ngx.shared.lookups:incr(ip, 1, 0)
                ngx.shared.lookups:set("head " .. ip, ngx.req.raw_header())
                if ngx.var.http_authorization ~= "APIKey secret" then
                    return ngx.exit(401)
                end
                local reps = { ["192.0.2.10"] = 20, ["192.0.2.20"] = 90,
                               ["2001:db8::5"] = 10 }
                if ip == "192.0.2.50" then return ngx.exit(500) end
                if ip == "192.0.2.60" then ngx.sleep(0.2) end
                if ip == "192.0.2.61" then ngx.sleep(2) end
                if ip == "192.0.2.70" then return ngx.print("garbage") end
                if not reps[ip] then return ngx.exit(404) end
                ngx.say('{"reputation": ', reps[ip], ', "ip": "', ip, '"}')
            }
        }
    }
    server {
        listen 127.0.0.1:1998 reuseport;
        set_real_ip_from 127.0.0.1;
        real_ip_header X-Forwarded-For;
        access_by_lua_block { client:check(ngx.var.remote_addr) }
        location / {
            content_by_lua_block {
                ngx.print(ngx.var.http_x_foxsec_ip_reputation or "-", " ",
                          ngx.var.http_x_foxsec_ip_reputation_below_threshold,
                          " ", ngx.var.http_x_foxsec_block)
            }
        }
    }
_EOC_
}

plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: reputations, headers, monitor mode, and one lookup for all workers
--- http_config eval: ::conf('')
--- config
    location /t {
        content_by_lua_block {
            ngx.say(visit("192.0.2.20"))
            ngx.say(visit("192.0.2.10"))
            ngx.say(visit("192.0.2.99"))
            ngx.say(visit("2001:db8::5"))
            for _ = 1, 40 do visit("192.0.2.20") end
            ngx.say("lookups: ", lookups("192.0.2.20"), " ", lookups("192.0.2.99"))
        }
    }
--- response_body
200 90 false false
200 20 true true
200 100 false false
200 10 true true
lookups: 1 1
--- error_log
192.0.2.10 is below threshold with a reputation of 20
2001:db8::5 is below threshold with a reputation of 10
--- no_error_log
rejected with



=== TEST 2: blocking_mode = 1 answers 429
--- http_config eval: ::conf('blocking_mode = 1,')
--- config
    location /t {
        content_by_lua_block {
            ngx.say(visit("192.0.2.10"))
            ngx.say(visit("192.0.2.20"))
        }
    }
--- response_body
429 
200 90 false false
--- error_log
192.0.2.10 rejected with a reputation of 20



=== TEST 3: errors fail open; cache_errors = 0 asks again, timeouts are strict
--- http_config eval: ::conf('timeout = 500,')
--- config
    location /t {
        content_by_lua_block {
            ngx.say(visit("192.0.2.50"), " | ", visit("192.0.2.50"))
            ngx.say("lookups: ", lookups("192.0.2.50"))
            -- iprepd takes 2 s for this one: the 500 ms timeout cuts it
            ngx.update_time()
            local t0 = ngx.now()
            ngx.say(visit("192.0.2.61"))
            ngx.update_time()
            ngx.say("fast: ", ngx.now() - t0 < 1.2)
            ngx.say(visit("192.0.2.70"))
        }
    }
--- response_body
200 - false false | 200 - false false
lookups: 2
200 - false false
fast: true
200 - false false
--- error_log
iprepd responded with a 500 http status code
Error with request to iprepd: timeout
Unable to parse `reputation` value from response body
--- no_error_log
[alert]



=== TEST 4: cache_errors = 1 caches an error as 100 for cache_errors_ttl
--- http_config eval: ::conf('cache_errors = 1,')
--- config
    location /t {
        content_by_lua_block {
            ngx.say(visit("192.0.2.50"), " | ", visit("192.0.2.50"))
            ngx.say("lookups: ", lookups("192.0.2.50"))
        }
    }
--- response_body
200 100 false false | 200 100 false false
lookups: 1
--- error_log
iprepd responded with a 500 http status code
--- no_error_log
[alert]



=== TEST 5: the allowlist (and the deprecated whitelist) skips the lookup
--- http_config eval: ::conf('whitelist = "192.0.2.0/24,2001:db8::/32",')
--- config
    location /t {
        content_by_lua_block {
            ngx.say(visit("192.0.2.10"))
            ngx.say(visit("2001:db8::5"))
            ngx.say("lookups: ", lookups("192.0.2.10") + lookups("2001:db8::5"))
        }
    }
--- response_body
200 - false false
200 - false false
lookups: 0
--- error_log
whitelist option is deprecated. please switch to allowlist.



=== TEST 6: missing and bad options are start-up errors
--- http_config
    init_by_lua_block {
        local new = require("resty.warden.iprepd").new
        local cases = {
            { api_key = "k" },
            { threshold = 50 },
            { api_key = "k", threshold = 500 },
            { api_key = "k", threshold = 5, url = "ftp://x" },
            { api_key = "k", threshold = 5, audit_blocked_requests = 1 },
            { api_key = "k", threshold = 5, allowlist = "10.0.0.300" },
        }
        ERRS = {}
        for i, opts in ipairs(cases) do
            local ok, err = pcall(new, opts)
            ERRS[i] = ok and "ok" or err
        end
        local ok = pcall(new, { api_key = "k", threshold = 5,
                                whitelist = "10.0.0.1", allowlist = "10.0.0.2" })
        ERRS[#ERRS + 1] = tostring(ok)
    }
--- config
    location /t {
        content_by_lua_block {
            for _, e in ipairs(ERRS) do
                ngx.say((e:gsub("^.-resty%.warden%.iprepd: ", "")))
            end
        }
    }
--- response_body
Need to pass in a threshold (opts.threshold)
Need to pass in an api_key (opts.api_key)
opts.threshold must be a number from 0 to 100, got 500
opts.url must look like http://host[:port][/path] or https://host[:port][/path], got 'ftp://x'
audit blocked requests is enabled but no uris are specified (opts.audit_uri_list)
opts.allowlist has an invalid IP address or CIDR '10.0.0.300'
true
--- error_log
both whitelist and allowlist specified - using allowlist



=== TEST 7: concurrent requests for one address make one lookup; cache_ttl expires
--- http_config eval: ::conf('cache_ttl = 1,')
--- config
    location /t {
        content_by_lua_block {
            -- 192.0.2.60 answers after 200 ms: 30 requests arrive meanwhile
            -- (a 3 s timeout: a lookup that timed out on a loaded machine
            -- would be made again by a later request)
            local s = thttp.fanout{ n = 30, concurrency = 30, port = 1998,
                path = "/", headers = { ["X-Forwarded-For"] = "192.0.2.60" } }
            ngx.say("200s: ", s.status[200], " lookups: ", lookups("192.0.2.60"))
            visit("192.0.2.20")
            ngx.sleep(1.2)
            visit("192.0.2.20")
            ngx.say("after cache_ttl: ", lookups("192.0.2.20"))
        }
    }
--- response_body
200s: 30 lookups: 1
after cache_ttl: 2
--- timeout: 10



=== TEST 8: a wrong api_key (401) fails open and is logged; verbose logging
--- http_config eval: ::conf('api_key = "wrong", verbose = 1,')
--- config
    location /t {
        content_by_lua_block {
            ngx.say(visit("192.0.2.10"))
        }
    }
--- response_body
200 - false false
--- error_log
iprepd responded with a 401 http status code
[verbose] Checking 192.0.2.10
[verbose] 192.0.2.10 accepted



=== TEST 9: iprepd-nginx's allowlist cases; its lines at error level, from its functions
--- http_config eval: ::conf('blocking_mode = 1, verbose = 1, whitelist = "192.0.2.99/32", allowlist = "127.0.0.1/32,2001:db8::/32",')
--- config
    location /t {
        content_by_lua_block {
            ngx.say(visit("2001:db8::5"))   -- reputation 10, but allowlisted
            ngx.say(visit("192.0.2.10"))    -- reputation 20
            ngx.say(visit("192.0.2.99"))    -- only in the overridden whitelist
            ngx.say("lookups: ", lookups("2001:db8::5"), " ", lookups("192.0.2.99"))
        }
    }
--- response_body
200 - false false
429 
200 100 false false
lookups: 0 1
--- error_log eval
[
qr/\[error\].*warning\(\): whitelist option is deprecated\. please switch to allowlist\.$/,
qr/\[error\].*warning\(\): both whitelist and allowlist specified - using allowlist$/,
qr/\[error\].*debug_log\(\): \[verbose\] Checking 2001:db8::5, client/,
qr/\[error\].*debug_log\(\): \[verbose\] 2001:db8::5 in allowlist, client/,
qr/\[error\].*debug_log\(\): \[verbose\] Got reputation of 20 for 192\.0\.2\.10, client/,
qr/\[error\].*check\(\): 192\.0\.2\.10 rejected with a reputation of 20, client/,
qr/\[error\].*debug_log\(\): \[verbose\] no reputation for 192\.0\.2\.99, client/,
qr/\[error\].*debug_log\(\): \[verbose\] Got reputation of 100 for 192\.0\.2\.99, client/,
qr/\[error\].*debug_log\(\): \[verbose\] 192\.0\.2\.99 accepted, client/,
]
--- no_error_log eval
["192.0.2.10 accepted", "2001:db8::5 accepted", qr/\[warn\].*(whitelist|allowlist)/]



=== TEST 10: the lookup is iprepd-nginx's request: path, Host, User-Agent, key
--- http_config eval: ::conf('')
--- config
    location /t {
        content_by_lua_block {
            visit("192.0.2.20")
            local head = ngx.shared.lookups:get("head 192.0.2.20")
            head = head:gsub("ngx_lua/" .. ngx.config.ngx_lua_version, "ngx_lua/<v>")
                       :gsub("\r\n\r\n$", "\r\n")
            ngx.print((head:gsub("\r\n", "\n")))
        }
    }
--- response_body
GET /type/ip/192.0.2.20 HTTP/1.1
Host: 127.0.0.1:1997
Connection: keep-alive
User-Agent: lua-resty-http/0.12 (Lua) ngx_lua/<v>
Authorization: APIKey secret




=== TEST 11: unknown options are errors; https URLs are accepted
--- http_config
    init_by_lua_block {
        local new = require("resty.warden.iprepd").new
        local cases = {
            { api_key = "k", threshold = 5, ulr = "http://iprepd:8080" },
            { api_key = "k", threshold = 5, colour = "blue" },
            { api_key = "k", threshold = 5, verbose = "1" },
            { api_key = "k", threshold = 5, audit_blocked_requests = 1,
              audit_uri_list = "/a,/b[" },
            { api_key = "k", threshold = 5, url = "https://iprepd.example/" },
            { api_key = "k", threshold = 5, url = "http://h/x?y" },
        }
        ERRS = {}
        for i, opts in ipairs(cases) do
            local ok, err = pcall(new, opts)
            ERRS[i] = ok and "ok " .. err.url or err
        end
    }
--- config
    location /t {
        content_by_lua_block {
            for _, e in ipairs(ERRS) do
                ngx.say((e:gsub("^.-resty%.warden%.iprepd: ", ""):gsub(" %(known: url, api_key, .*", " (known: ...)")))
            end
        }
    }
--- response_body
opts.ulr is not an iprepd option; did you mean 'url'? (known: ...)
opts.colour is not an iprepd option (known: ...)
opts.verbose must be 0, 1, true or false, got '1'
opts.audit_uri_list has an invalid Lua pattern '/b[': malformed pattern (missing ']')
ok https://iprepd.example
opts.url must not have a query or a fragment (the lookups' paths are appended to it), got 'http://h/x?y'



=== TEST 12: iprepd over https: verified against lua_ssl_trusted_certificate
--- http_config eval
::conf('url = "https://127.0.0.1:1994", blocking_mode = 1,') . qq{
    lua_ssl_trusted_certificate $::Tls/trusted.crt;
    server {
        listen 127.0.0.1:1994 ssl;
        ssl_certificate $::Tls/ok.crt;
        ssl_certificate_key $::Tls/ok.key;
        location / { content_by_lua_block { ngx.say('{"reputation": 20}') } }
    }
    server {
        listen 127.0.0.1:1993 ssl;
        ssl_certificate $::Tls/other.crt;
        ssl_certificate_key $::Tls/other.key;
        location / { content_by_lua_block { ngx.say('{"reputation": 20}') } }
    }
}
--- config
    location /t {
        content_by_lua_block {
            ngx.say(visit("192.0.2.10"))
            ngx.say(visit("192.0.2.10"))  -- cached
            local other = require("resty.warden.iprepd").new({
                url = "https://127.0.0.1:1993", api_key = "k", threshold = 50,
                timeout = 3000 })
            ngx.say(other:get_reputation("192.0.2.10"))
        }
    }
--- response_body
429 
429 
nil
--- error_log eval
[
"192.0.2.10 rejected with a reputation of 20",
'lua ssl certificate does not match host "127.0.0.1"',
# Debian's lua-resty-core raises instead of returning "certificate host
# mismatch" when the handshake completes at once: "handshake failed" then
qr/get_reputation\(\): Error with request to iprepd: (certificate host mismatch|handshake failed), client/,
]
--- no_error_log
Could not send metric



=== TEST 13: an https URL to a plain HTTP server fails open, as with iprepd-nginx
--- http_config eval: ::conf('url = "https://127.0.0.1:1997",')
--- config
    location /t {
        content_by_lua_block {
            ngx.say(visit("192.0.2.10"))
        }
    }
--- response_body
200 - false false
--- error_log eval
[
qr/SSL_do_handshake\(\) failed/,
qr/get_reputation\(\): Error with request to iprepd: handshake failed, client/,
]
