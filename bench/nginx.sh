#!/usr/bin/env bash
# wrk benchmark: plain nginx against nginx + warden:check(), one worker,
# the same server, runs interleaved. Reports requests/s and the worker's
# CPU time per request (utime+stime from /proc), since a saturated client
# hides cost. Usage: bench/nginx.sh [seconds per run] [rounds]
set -euo pipefail
secs=${1:-10}
rounds=${2:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
nginx=${NGINX:-nginx}
dir=$(mktemp -d /tmp/warden-bench.XXXXXX)
chmod 755 "$dir"
mkdir -p "$dir/logs"
command -v wrk >/dev/null || { echo "wrk is missing (apt-get install wrk)"; exit 1; }

load=""
if ! "$nginx" -V 2>&1 | grep -q lua-nginx-module \
   && [ -f /usr/share/nginx/modules/ngx_http_lua_module.so ]; then
    load="load_module /usr/share/nginx/modules/ndk_http_module.so;
load_module /usr/share/nginx/modules/ngx_http_lua_module.so;"
fi
awk -v root="$root" -v load="$load" \
    '{ gsub(/@ROOT@/, root); gsub(/@LOAD_MODULES@/, load); print }' \
    "$root/bench/nginx.conf" > "$dir/nginx.conf"
"$nginx" -p "$dir/" -c "$dir/nginx.conf"
trap '"$nginx" -p "$dir/" -c "$dir/nginx.conf" -s stop 2>/dev/null || true' EXIT
sleep 2
worker=$(pgrep -P "$(cat "$dir/logs/nginx.pid")" | head -n 1)
hz=$(getconf CLK_TCK)

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$worker/stat"; }

run() { # port -> "rps cpu_us_per_request"
    local port=$1 t0 t1 out reqs
    t0=$(cpu_ticks)
    out=$(taskset -c 1 wrk -t1 -c64 -d"${secs}s" -s "$root/bench/xff.lua" \
          "http://127.0.0.1:$port/" 2>&1)
    t1=$(cpu_ticks)
    reqs=$(echo "$out" | awk '/requests in/ { print $1 }')
    if echo "$out" | grep -q "Non-2xx"; then
        echo "unexpected non-2xx responses on port $port:" >&2
        echo "$out" >&2
        exit 1
    fi
    awk -v r="$reqs" -v s="$secs" -v c=$((t1 - t0)) -v hz="$hz" \
        'BEGIN { printf "%.0f %.2f\n", r / s, c / hz * 1e6 / r }'
}

# warm up the servers (JIT, caches)
run 8091 >/dev/null; run 8093 >/dev/null; run 8092 >/dev/null

printf '%-6s %10s %10s %10s %9s %9s %9s\n' round plain_rps empty_rps \
    warden_rps plain_us empty_us warden_us
sp=0; se=0; sw=0; cp=0; ce=0; cw=0
add() { awk -v a="$1" -v b="$2" 'BEGIN { print a + b }'; }
for i in $(seq "$rounds"); do
    read -r rp up < <(run 8091)
    read -r re ue < <(run 8093)
    read -r rw uw < <(run 8092)
    printf '%-6s %10s %10s %10s %9s %9s %9s\n' "$i" "$rp" "$re" "$rw" \
        "$up" "$ue" "$uw"
    sp=$(add "$sp" "$rp"); se=$(add "$se" "$re"); sw=$(add "$sw" "$rw")
    cp=$(add "$cp" "$up"); ce=$(add "$ce" "$ue"); cw=$(add "$cw" "$uw")
done
awk -v sp="$sp" -v se="$se" -v sw="$sw" -v cp="$cp" -v ce="$ce" \
    -v cw="$cw" -v n="$rounds" 'BEGIN {
    printf "\nthroughput vs plain nginx: empty access_by_lua %.1f%%, warden %.1f%%\n",
        100 * se / sp, 100 * sw / sp
    printf "worker CPU per request: plain %.2f us, empty handler %.2f us, warden %.2f us\n",
        cp / n, ce / n, cw / n
    printf "warden:check() itself: +%.2f us over an empty access_by_lua_block\n",
        (cw - ce) / n
}'
grep -E "\[(error|alert|crit|emerg)\]" "$dir/logs/error.log" && exit 1 || true
