#!/usr/bin/env bash
# Where warden's wall-clock cost goes, by turning parts off: one nginx (one
# worker on CPU 0, wrk on CPU 1) serving bench/nginx.conf's servers and two
# more, in interleaved rounds; for each, the median over the rounds of the
# worker's user time per request over the empty access+log handlers (user
# time alone: warden makes no system calls, and most of the noise is the
# kernel's). Usage: bench/parts.sh [seconds per run] [rounds]
#
#   8094  empty access_by_lua + log_by_lua handlers (the floor)
#   8095  the full pipeline: check() + log(), every detector rule on
#   8097  the same lists and blocks, detector = false: check() + log()
#   8098  check() with an empty log handler
#
# WARDEN_BENCH_CLIENTS (bench/xff.lua, default 50000) sets how many clients
# the requests come from: with a few hundred, the detector's table stays in
# cache.
set -euo pipefail
secs=${1:-4}
rounds=${2:-15}
. "$(dirname "$0")/lib.sh"  # root, nginx, load
command -v wrk >/dev/null || { echo "wrk is missing (apt-get install wrk)"; exit 1; }
dir=$(mktemp -d /tmp/warden-parts.XXXXXX)
chmod 755 "$dir"
mkdir -p "$dir/logs"

# bench/nginx.conf, with a third instance (no detector) made after the
# first, and two servers more before the http block's closing brace
awk -v root="$root" -v load="$load" '
    function add(s) { lines[++n] = s }
    { gsub(/@ROOT@/, root); gsub(/@LOAD_MODULES@/, load) }
    /-- the same, plus policies/ {
        add("        warden_nodet = require(\"resty.warden\").new({")
        add("            dict = \"warden_nodet\", denylist = deny,")
        add("            trusted_proxies = { \"127.0.0.1\" }, detector = false,")
        add("        })")
        add("        for i = 1, 10000 do")
        add("            assert(warden_nodet:block(format(\"198.%d.%d.%d\", 18 + i % 2,")
        add("                                             random(0, 255), random(0, 255))))")
        add("        end")
    }
    { add($0) }
    /lua_shared_dict warden_policy / { add("    lua_shared_dict warden_nodet 64m;") }
    /^    init_worker_by_lua_block {/ { add("        warden_nodet:init_worker()") }
    END {
        # everything but the last line, the http block closing brace
        for (i = 1; i < n; i++) print lines[i]
        print "    server {"
        print "        listen 127.0.0.1:8097;"
        print "        root " root "/examples/html;"
        print "        access_by_lua_block { warden_nodet:check() }"
        print "        log_by_lua_block { warden_nodet:log() }"
        print "    }"
        print "    server {"
        print "        listen 127.0.0.1:8098;"
        print "        root " root "/examples/html;"
        print "        access_by_lua_block { warden:check() }"
        print "        log_by_lua_block { }"
        print "    }"
        print lines[n]
    }' "$root/bench/nginx.conf" > "$dir/nginx.conf"
"$nginx" -p "$dir/" -c "$dir/nginx.conf"
trap '"$nginx" -p "$dir/" -c "$dir/nginx.conf" -s stop 2>/dev/null || true' EXIT
sleep 2
worker=$(pgrep -P "$(cat "$dir/logs/nginx.pid")" | head -n 1)
ports=(8094 8095 8097 8098)
names=("empty handlers" "full pipeline" "detector = false" "check() only")
for p in "${ports[@]}"; do cpu_per_request "$worker" "$p" "$secs" >/dev/null; done  # warm up
for i in $(seq "$rounds"); do
    for p in "${ports[@]}"; do
        read -r _ t u < <(cpu_per_request "$worker" "$p" "$secs")
        echo "$i $p $u $t" >> "$dir/samples"
    done
done
printf '%-18s %10s %10s %22s\n' server "user us" "total us" "user over empty (med)"
for j in "${!ports[@]}"; do
    p=${ports[$j]}
    mu=$(awk -v p="$p" '$2 == p { print $3 }' "$dir/samples" | median)
    mt=$(awk -v p="$p" '$2 == p { print $4 }' "$dir/samples" | median)
    du=$(awk -v p="$p" '$2 == 8094 { e[$1] = $3 } $2 == p { u[$1] = $3 }
        END { for (i in u) print u[i] - e[i] }' "$dir/samples" | median)
    printf '%-18s %10.3f %10.3f %+22.3f\n' "${names[$j]}" "$mu" "$mt" "$du"
done
grep -E "\[(error|alert|crit|emerg)\]" "$dir/logs/error.log" && exit 1 || true
