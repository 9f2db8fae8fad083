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
    out=$(wrk -t1 -c64 -d"${secs}s" -s "$root/bench/xff.lua" \
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

# warm up both servers (JIT, caches)
run 8091 >/dev/null; run 8092 >/dev/null

printf '%-6s %12s %12s %14s %14s\n' round plain_rps warden_rps \
    plain_us/req warden_us/req
sum_p=0; sum_w=0; cpu_p=0; cpu_w=0
for i in $(seq "$rounds"); do
    read -r rp cp < <(run 8091)
    read -r rw cw < <(run 8092)
    printf '%-6s %12s %12s %14s %14s\n' "$i" "$rp" "$rw" "$cp" "$cw"
    sum_p=$((sum_p + rp)); sum_w=$((sum_w + rw))
    cpu_p=$(awk -v a="$cpu_p" -v b="$cp" 'BEGIN { print a + b }')
    cpu_w=$(awk -v a="$cpu_w" -v b="$cw" 'BEGIN { print a + b }')
done
awk -v sp="$sum_p" -v sw="$sum_w" -v cp="$cpu_p" -v cw="$cpu_w" -v n="$rounds" 'BEGIN {
    printf "\nthroughput: warden/plain = %.1f%%\n", 100 * sw / sp
    printf "worker CPU per request: plain %.2f us, warden %.2f us (+%.2f us, %.1f%% of plain)\n",
        cp / n, cw / n, (cw - cp) / n, 100 * (cw - cp) / cp
}'
grep -E "\[(error|alert|crit|emerg)\]" "$dir/logs/error.log" && exit 1 || true
