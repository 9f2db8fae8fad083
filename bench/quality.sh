#!/usr/bin/env bash
# Detection quality on real traffic, with the detector's default options
# (issue 16): who gets blocked, and after how many requests.
#
#   bench/quality.sh [pages] [profiles]        (NGINX= selects nginx)
#
# A test nginx (2 workers) serves a real static documentation site (The
# Rust Programming Language, from the rust-docs of the toolchain, or
# SITE=dir): port 8101 behind warden:check() + warden:log() with default
# detector options, port 8102 the same site without warden. Every scenario
# starts a fresh nginx (empty counters) and reads its access log.
#
# - browser: headless Chromium reads `pages` (40) pages, one after the
#   other as fast as they load, each in a fresh profile (cold cache: every
#   style sheet, script, font and icon again);
# - office: `profiles` (20) such browsers at once, behind one address;
# - tools: gobuster, ffuf, dirb (dirb's common.txt, a browser user agent)
#   and sqlmap --random-agent (a page with two parameters): the requests
#   the site answered before the first refusal, against the requests the
#   tool sends to the unprotected port;
# - libraries, monitors and crawlers: 20 page requests with each one's
#   user agent.
#
# Needs chromium, gobuster, ffuf, dirb, sqlmap, curl and python3-websocket
# (installed when missing, as root). Not part of `make test`: it takes a
# few minutes. Wrap it in `flock -o /tmp/warden-nginx.lock`.
set -euo pipefail
pages=${1:-40}
profiles=${2:-20}
. "$(dirname "$0")/lib.sh"  # root, nginx, load
[ -f "$root/build/warden_core.so" ] || { echo "build first: make build"; exit 1; }

need=""
for p in chromium:chromium gobuster:gobuster ffuf:ffuf dirb:dirb \
         sqlmap:sqlmap curl:curl; do
    command -v "${p%%:*}" >/dev/null || need="$need ${p#*:}"
done
/usr/bin/python3 -c "import websocket" 2>/dev/null || need="$need python3-websocket"
if [ -n "$need" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing:$need"
        apt-get update -q >/dev/null &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q $need >/dev/null
    else
        echo "missing:$need"; exit 1
    fi
fi

site=${SITE:-$(ls -d "$HOME"/.rustup/toolchains/*/share/doc/rust/html/book 2>/dev/null | head -n 1)}
[ -n "$site" ] && [ -d "$site" ] || {
    echo "no site: give SITE=dir (rustup component add rust-docs has the book)"; exit 1; }
words=/usr/share/dirb/wordlists/common.txt
UA="Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"

dir=$(mktemp -d /tmp/warden-quality.XXXXXX)
chmod 755 "$dir"
mkdir -p "$dir/logs"
cp -r "$site" "$dir/site"
chmod -R a+rX "$dir/site"

cat > "$dir/nginx.conf" <<EOF
$load
worker_processes 2;
error_log logs/error.log warn;
pid logs/nginx.pid;
events { worker_connections 4096; }
http {
    include /etc/nginx/mime.types;
    lua_package_path  "$root/lua/?.lua;;";
    lua_package_cpath "$root/build/?.so;;";
    lua_shared_dict warden 16m;
    log_format q '\$status \$refused "\$request_uri"';
    init_by_lua_block {
        warden = require("resty.warden").new({})
    }
    init_worker_by_lua_block { warden:init_worker() }
    server {
        listen 127.0.0.1:8101;
        root $dir/site;
        access_log logs/protected.log q;
        set \$refused 0;
        # \$refused stays 1 when check() ends the request
        access_by_lua_block {
            ngx.var.refused = 1
            warden:check()
            ngx.var.refused = 0
        }
        log_by_lua_block { warden:log() }
    }
    server {
        listen 127.0.0.1:8102;
        root $dir/site;
        set \$refused 0;
        access_log logs/open.log q;
    }
}
EOF

chrome_pid=""
start() {
    rm -f "$dir"/logs/*.log
    "$nginx" -p "$dir/" -c "$dir/nginx.conf"
    for _ in $(seq 50); do
        curl -fs -o /dev/null http://127.0.0.1:8102/index.html && return
        sleep 0.2
    done
    cat "$dir/logs/error.log"; exit 1
}
stop() {
    "$nginx" -p "$dir/" -c "$dir/nginx.conf" -s stop 2>/dev/null || true
    for _ in $(seq 50); do [ -f "$dir/logs/nginx.pid" ] || break; sleep 0.1; done
}
cleanup() {
    [ -n "$chrome_pid" ] && kill "$chrome_pid" 2>/dev/null || true
    stop
    rm -rf "$dir"
}
trap cleanup EXIT

# <log> -> "requests refused passed-before-the-first-refusal"
stats() {
    awk '{ n++ } $2 == 1 { r++; if (!first) first = n - 1 }
         END { if (!r) first = n; print n + 0, r + 0, first + 0 }' "$1"
}
# what blocked 127.0.0.1, as warden's log line says it; then what a rule in
# monitor mode reported (it blocks nothing)
blocked_by() {
    local b m
    b=$(grep -o 'auto-blocked 127.0.0.1 for .*, offence [0-9]*' "$dir/logs/error.log" |
        head -n 1 | sed 's/^auto-blocked [^ ]* for [^ ]* (//; s/, offence [0-9]*$//' || true)
    m=$(grep -o 'would have been auto-blocked (.*); rule' "$dir/logs/error.log" |
        head -n 1 | sed 's/^would have been auto-blocked (//; s/); rule$//' || true)
    echo "${b:--}${m:+ (monitor: $m)}"
}

results=()
row() { results+=("$1"); }

# --- real browsers -----------------------------------------------------------
mapfile -t urls < <(cd "$dir/site" && ls ch[0-9]*.html | sort | head -n "$pages" |
                    sed 's|^|http://127.0.0.1:8101/|')
chromium --headless=new --no-sandbox --disable-gpu --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --disable-default-apps --user-data-dir="$dir/chrome" \
    --remote-debugging-port=9333 about:blank >"$dir/chrome.log" 2>&1 &
chrome_pid=$!
for _ in $(seq 100); do
    curl -fs -o /dev/null http://127.0.0.1:9333/json/version && break
    sleep 0.2
done

for streams in 1 "$profiles"; do
    start
    out=$(/usr/bin/python3 "$root/bench/quality-browser.py" 9333 "$streams" "${urls[@]}") ||
        out="the browser driver failed (seconds=?)"
    sleep 1
    read -r n r _ < <(stats "$dir/logs/protected.log")
    docs=$(grep -c '\.html' "$dir/logs/protected.log" || true)
    secs=${out##*seconds=}
    what="browser: $pages pages, cold cache"
    [ "$streams" -gt 1 ] && what="office: $streams browsers x $pages pages, one address"
    row "| $what | $n requests ($docs pages) in ${secs}s | $r refused | $(blocked_by) |"
    echo "$what: $out; $n requests, $r refused" >&2
    stop
done
kill "$chrome_pid" 2>/dev/null || true
wait "$chrome_pid" 2>/dev/null || true
chrome_pid=""

# --- attack tools ------------------------------------------------------------
tool() { # name command-with-PORT
    local name=$1 cmd=$2 open n r passed
    start
    (cd "$dir" && eval "${cmd//PORT/8102}") >"$dir/tool.log" 2>&1 || true
    open=$(wc -l < "$dir/logs/open.log")
    stop
    start
    (cd "$dir" && eval "${cmd//PORT/8101}") >"$dir/tool.log" 2>&1 || true
    sleep 1
    read -r n r passed < <(stats "$dir/logs/protected.log")
    row "| $name | $passed answered before the block (of $n sent; $open unprotected) | $r refused | $(blocked_by) |"
    echo "$name: $passed passed, $n sent, $open unprotected" >&2
    stop
}
tool "gobuster dir, browser UA" \
    "gobuster dir -q -t 10 --no-error -a '$UA' -u http://127.0.0.1:PORT/ -w $words"
tool "ffuf, browser UA" \
    "ffuf -s -t 10 -H 'User-Agent: $UA' -u http://127.0.0.1:PORT/FUZZ -w $words"
tool "dirb, browser UA" \
    "HOME=$dir dirb http://127.0.0.1:PORT/ $words -a '$UA' -r -S -w"
tool "sqlmap --random-agent" \
    "sqlmap -u 'http://127.0.0.1:PORT/ch01-01-installation.html?id=1&q=rust' --batch --random-agent --flush-session --output-dir=$dir/sqlmap -v 0"

# --- libraries, monitors, crawlers -------------------------------------------
agents=(
    "python-httpx/0.27.0" "python-requests/2.31.0" "Go-http-client/1.1"
    "okhttp/4.12.0" "axios/1.6.7"
    "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)" "curl/8.5.0"
    "Wget/1.21.4" "Java/17.0.9" "libwww-perl/6.72" "kube-probe/1.29"
    "ELB-HealthChecker/2.0"
    "Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)"
    "Prometheus/2.48.0"
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)"
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"
)
start
for a in "${agents[@]}"; do
    for u in "${urls[@]:0:20}"; do
        curl -s -o /dev/null -A "$a" "$u"
    done
done
sleep 1
read -r n r _ < <(stats "$dir/logs/protected.log")
row "| ${#agents[@]} libraries, monitors and crawlers x 20 pages | $n requests | $r refused | $(blocked_by) |"
stop

echo
echo "| traffic (default options) | requests | refused | blocked by |"
echo "|---|---|---|---|"
printf '%s\n' "${results[@]}"
