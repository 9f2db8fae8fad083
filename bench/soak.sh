#!/usr/bin/env bash
# Soak: warden under full load for a long time, with everything moving.
# Usage: bench/soak.sh [seconds] [normal|small]   (default 600 normal)
#
# One nginx (2 workers) with warden: trusted proxy, allowlist, denylist,
# the detector (auto blocks of 2 minutes), iprepd (a stand-in nginx on
# 8391 answering reputation 10 for 100.127.0.0/16, 90 otherwise), the state
# file and the admin API. For the whole run:
#   - wrk (bench/soak.lua) at full speed from ~50000 clients through
#     X-Forwarded-For, with attackers and scanners the detector blocks;
#   - every second the API blocks one address and unblocks another;
#   - every 5 s a sample: RSS (private and shared) of each worker and the
#     master, the shared dict's use, blocks, detector and event counters,
#     and the time one probe request takes;
#   - the node is in a fleet (redis-server on 8393, when installed): at 30%
#     of the run Redis stops answering for 5 s (CLIENT PAUSE), at 60% it is
#     stopped for 10 s and started again (appendonly).
# Before and after, the same probe requests must get the same answers, and
# Redis must hold the same blocks as the node.
# "small" runs with the shared memory deliberately too small: a 64k dict,
# 64 detector slots, 100 events, an iprepd cache of 100 addresses.
#
# Prints a report; the samples and a plot of memory over time (gnuplot,
# when installed) go to bench/soak-<mode>.{tsv,png}.
set -euo pipefail
secs=${1:-600}
mode=${2:-normal}
. "$(dirname "$0")/lib.sh"  # root, nginx, load
command -v wrk >/dev/null || { echo "wrk is missing (apt-get install wrk)"; exit 1; }
[ -f "$root/build/warden_core.so" ] || make -C "$root" build
dir=$(mktemp -d /tmp/warden-soak.XXXXXX)
chmod 755 "$dir"
mkdir -p "$dir/logs" "$dir/data" "$dir/rep/logs" "$dir/redis"
user=""
if [ "$(id -u)" = 0 ]; then
    user="user www-data;"
    chown www-data "$dir/data"
fi
case $mode in
    normal) dict=32m; clients=131072; events=10000; cache=100000 ;;
    small)  dict=64k; clients=64;    events=100;   cache=100 ;;
    *) echo "mode must be normal or small, got '$mode'"; exit 2 ;;
esac
TOKEN=soak-token-0123456789
RPORT=8393
redis=""
if command -v redis-server >/dev/null; then
    redis="redis = { host = \"127.0.0.1\", port = $RPORT, node = \"soak\" },"
fi
rcli() { redis-cli -p $RPORT "$@"; }
redis_start() {
    redis-server --port $RPORT --bind 127.0.0.1 --dir "$dir/redis" \
        --appendonly yes --save "" --daemonize yes \
        --logfile "$dir/redis/redis.log" --pidfile "$dir/redis/redis.pid"
    for _ in $(seq 50); do rcli ping >/dev/null 2>&1 && return; sleep 0.1; done
}
out=$root/bench/soak-$mode

# The iprepd stand-in: plain nginx, one worker.
cat > "$dir/rep/nginx.conf" <<EOF
worker_processes 1;
error_log $dir/rep/logs/error.log warn;
pid $dir/rep/logs/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    map \$uri \$reputation {
        ~^/type/ip/100\.127\. 10;
        default 90;
    }
    server {
        listen 127.0.0.1:8391 backlog=4096;
        keepalive_requests 100000;
        location /type/ip/ {
            default_type application/json;
            return 200 '{"type":"ip","reputation":\$reputation}';
        }
        location /violations/ { return 200; }
    }
}
EOF

cat > "$dir/nginx.conf" <<EOF
$load
$user
worker_processes 2;
error_log $dir/logs/error.log notice;
pid $dir/logs/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    lua_package_path "$root/lua/?.lua;;";
    lua_package_cpath "$root/build/?.so;;";
    lua_shared_dict warden $dict;
    lua_shared_dict soak 1m;  # each worker's Lua heap, for the samples
    lua_socket_log_errors off;
    init_by_lua_block {
        warden = require("resty.warden").new{
            trusted_proxies = { "127.0.0.1" },
            allowlist = { "192.0.2.1" },
            denylist = { "198.51.100.0/24" },
            admin_token = "$TOKEN",
            state_file = "$dir/data/state",
            $redis
            max_events = $events,
            detector = { auto_block_duration = "2m", max_clients = $clients },
            iprepd = { url = "http://127.0.0.1:8391", api_key = "k",
                       threshold = 50, timeout = 100, cache_ttl = 30,
                       cache_buffer_count = $cache },
        }
    }
    init_worker_by_lua_block {
        warden:init_worker()
        -- glibc's malloc (nginx and the Rust core) apart from LuaJIT's
        -- own allocator, which the Lua heap figure measures from inside
        local ffi = require("ffi")
        local mallinfo = pcall(ffi.cdef, [[
            struct soak_mallinfo2 { size_t arena, ordblks, smblks, hblks,
                hblkhd, usmblks, fsmblks, uordblks, fordblks, keepcost; };
            struct soak_mallinfo2 mallinfo2(void);
        ]]) and pcall(function() return ffi.C.mallinfo2 end)
        ngx.timer.every(5, function()
            local id = ngx.worker.id()
            ngx.shared.soak:set("lua" .. id, collectgarbage("count"))
            if mallinfo then
                local m = ffi.C.mallinfo2()
                ngx.shared.soak:set("malloc" .. id,
                                    tonumber(m.arena + m.hblkhd) / 1024)
            end
        end)
    }
    server {
        listen 127.0.0.1:8390 reuseport backlog=4096;
        keepalive_requests 100000;
        access_by_lua_block { warden:check() }
        log_by_lua_block { warden:log() }
        location / { content_by_lua_block { ngx.say("ok") } }
        location /nope/ { content_by_lua_block { ngx.exit(404) } }
        location /api/ {
            allow 127.0.0.1; deny all;
            access_by_lua_block { }
            content_by_lua_block { warden:api() }
        }
    }
    server {
        listen 127.0.0.1:8392;
        location /sample {
            content_by_lua_block {
                local s = warden:stats()
                ngx.say(s.dict_capacity_bytes - s.dict_free_bytes, " ",
                        s.blocks, " ", s.detector_tracked or 0, " ",
                        s.auto_blocks, " ", s.dict_full, " ",
                        s.detector_evictions, " ", s.events_recorded, " ",
                        s.lookup_errors, " ", s.state_saves, " ",
                        s.state_save_errors, " ",
                        s.shm_bytes + (s.detector_memory_bytes or 0)
                        + s.events_memory_bytes, " ",
                        s.fleet_connected and 1 or 0, " ", s.fleet_queued or 0,
                        " ", math.floor(ngx.shared.soak:get("lua0") or 0),
                        " ", math.floor(ngx.shared.soak:get("lua1") or 0),
                        " ", math.floor(ngx.shared.soak:get("malloc0") or 0),
                        " ", math.floor(ngx.shared.soak:get("malloc1") or 0))
            }
        }
        # the targets blocked until after ?after=<ms since the epoch>
        location /blocked {
            content_by_lua_block {
                local after = tonumber(ngx.var.arg_after) / 1000
                local out = {}
                for _, b in ipairs(warden:blocked()) do
                    if b.source ~= "denylist"  -- configuration, not a block
                       and (b.expires == 0 or b.expires > after) then
                        out[#out + 1] = b.target
                    end
                end
                table.sort(out)
                ngx.print(table.concat(out, "\n"), #out > 0 and "\n" or "")
            }
        }
    }
}
EOF

stop() {
    [ -n "${api_pid:-}" ] && kill "$api_pid" 2>/dev/null || true
    [ -n "${sampler_pid:-}" ] && kill "$sampler_pid" 2>/dev/null || true
    "$nginx" -p "$dir/" -c "$dir/nginx.conf" -s stop 2>/dev/null || true
    "$nginx" -p "$dir/rep/" -c "$dir/rep/nginx.conf" -s stop 2>/dev/null || true
    [ -n "$redis" ] && rcli shutdown nosave >/dev/null 2>&1 || true
}
trap stop EXIT
"$nginx" -p "$dir/rep/" -c "$dir/rep/nginx.conf"
[ -n "$redis" ] && redis_start
"$nginx" -p "$dir/" -c "$dir/nginx.conf"
sleep 1
master=$(cat "$dir/logs/nginx.pid")
workers() { pgrep -P "$master" | sort -n | tr '\n' ' '; }
start_workers=$(workers)

api() { # method path [json] -> status
    curl -s -o /dev/null -w '%{http_code}' -X "$1" \
         -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
         ${3:+--data "$3"} "http://127.0.0.1:8390/api$2"
}
probe() { # ip path -> status
    curl -s -o /dev/null -w '%{http_code}' -H "X-Forwarded-For: $1" \
         "http://127.0.0.1:8390$2"
}
probes() {
    local p
    for p in "100.64.200.1 /" "198.51.100.200 /" "192.0.2.1 /" \
             "100.127.200.77 /" "203.0.113.250 /" "100.64.200.2 /nope/x" \
             "2001:db8::1 /"; do
        # shellcheck disable=SC2086
        printf '%s %s -> %s\n' $p "$(probe $p)"
    done
}

api POST /security/blocked-ips \
    '{"ip":"203.0.113.250","reason":"soak: permanent","duration":0}' >/dev/null
probes > "$dir/probes.before"

# Every second: block 203.0.113.<i % 250> for 20 s, unblock the one blocked
# 10 s earlier; every 10 s also read the stats through the API.
(
    i=0
    while :; do
        s=$(api POST /security/blocked-ips \
            "{\"ip\":\"203.0.113.$((i % 250))\",\"reason\":\"soak\",\"duration\":\"20s\"}")
        echo "block $s" >> "$dir/api.log"
        if [ $i -ge 10 ]; then
            echo "unblock $(api DELETE "/security/blocked-ips/203.0.113.$(((i - 10) % 250))")" >> "$dir/api.log"
        fi
        if [ $((i % 10)) -eq 0 ]; then
            echo "stats $(api GET /security/stats)" >> "$dir/api.log"
        fi
        i=$((i + 1))
        sleep 1
    done
) &
api_pid=$!

# Every 5 s: time, then per worker "pid anon_kb shmem_kb", the master's RSS,
# then /sample's fields.
(
    t0=$(date +%s)
    while :; do
        line="$(( $(date +%s) - t0 ))"
        for w in $(workers); do line="$line $w $(rss_kb "$w")"; done
        line="$line $(awk '/^VmRSS/ { print $2 }' "/proc/$master/status")"
        line="$line $(curl -s http://127.0.0.1:8392/sample)"
        line="$line $(curl -s -o /dev/null -w '%{time_total}' \
                      -H 'X-Forwarded-For: 100.64.200.3' http://127.0.0.1:8390/ \
                      | awk '{ printf "%.1f", $1 * 1000 }')"
        echo "$line" >> "$dir/samples"
        sleep 5
    done
) &
sampler_pid=$!

echo "soak ($mode): ${secs}s of wrk -t2 -c128 against 127.0.0.1:8390 (2 workers); work dir $dir"
# Redis faults, mid-load
if [ -n "$redis" ]; then
    (
        sleep $((secs * 3 / 10))
        echo "$(date +%s) redis paused for 5 s" >> "$dir/faults"
        rcli client pause 5000 all >/dev/null
        sleep $((secs * 3 / 10))
        echo "$(date +%s) redis stopped for 10 s" >> "$dir/faults"
        rcli shutdown >/dev/null 2>&1 || true
        sleep 10
        redis_start
        echo "$(date +%s) redis started" >> "$dir/faults"
    ) &
    faults_pid=$!
fi
WARDEN_BENCH_CLIENTS=50000 wrk -t2 -c128 -d"${secs}s" --timeout 5s --latency \
    -s "$root/bench/soak.lua" http://127.0.0.1:8390/ > "$dir/wrk.out" 2>&1
[ -n "${faults_pid:-}" ] && wait "$faults_pid"
sleep 6  # one more sample after the load
kill "$api_pid" "$sampler_pid" 2>/dev/null || true
wait "$api_pid" "$sampler_pid" 2>/dev/null || true
api_pid="" sampler_pid=""
end_workers=$(workers)
probes > "$dir/probes.after"

# ---- report ---------------------------------------------------------------
echo
echo "== load"
grep -E "Latency|requests in|Requests/sec|50%|99%" "$dir/wrk.out" | sed 's/^ */  /'
grep -E "^status|^socket_errors" "$dir/wrk.out" | sort -k2n | sed 's/^/  /'
fivexx=$(awk '$1 == "status" && $2 >= 500 { n += $3 } END { print n + 0 }' "$dir/wrk.out")
sockerr=$(awk '$1 == "socket_errors" { split($2, a, "="); split($3, b, "="); split($4, c, "="); split($5, d, "="); print a[2] + b[2] + c[2] + d[2] }' "$dir/wrk.out")
echo "  5xx responses: $fivexx; socket errors: $sockerr"
echo "== admin API (one block and one unblock a second)"
awk '{ n[$1 " " $2]++ } END { for (k in n) print "  " k ": " n[k] }' "$dir/api.log" | sort
echo "== workers"
echo "  at the start: $start_workers"
echo "  at the end:   $end_workers"
[ "$start_workers" = "$end_workers" ] && echo "  no worker restarted" || echo "  WORKERS CHANGED"
echo "== error log (lines per level; the most frequent messages)"
grep -oE "\[(emerg|alert|crit|error|warn)\]" "$dir/logs/error.log" | sort | uniq -c | sed 's/^/  /' || true
grep -E "\[(emerg|alert|crit|error)\]" "$dir/logs/error.log" \
    | sed -E 's/^[0-9\/: ]+\[[a-z]+\] [0-9#]+: (\*[0-9]+ )?//; s/[0-9]+(\.[0-9]+)*/N/g' \
    | cut -c1-150 | sort | uniq -c | sort -rn | head -8 | sed 's/^/  /' || true
grep -c "exited on signal" "$dir/logs/error.log" | sed 's/^/  workers exited on a signal: /' || true
echo "== answers before and after"
paste -d'|' "$dir/probes.before" "$dir/probes.after" | sed 's/|/   |   /; s/^/  /'
if cmp -s "$dir/probes.before" "$dir/probes.after"; then
    echo "  the same"
else
    echo "  DIFFERENT"
fi
if [ -n "$redis" ]; then
    echo "== fleet: Redis faults mid-load, then Redis against the node"
    sed 's/^/  /' "$dir/faults"
    grep -hoE "warden: redis [^,]*(unreachable|is back)[^,]*" "$dir/logs/error.log" \
        | cut -c1-120 | sed 's/^/  logged: /' || true
    sleep 2  # the last changes reach Redis within POLL
    after=$(( $(date +%s%3N) + 5000 ))
    curl -s "http://127.0.0.1:8392/blocked?after=$after" > "$dir/node.blocks"
    { comm -23 <(rcli hkeys warden:blocks | sort) <(rcli zrange warden:expiry 0 -1 | sort)
      rcli zrangebyscore warden:expiry "$after" +inf; } | grep -v '^$' | sort > "$dir/redis.blocks" || true
    echo "  blocks lasting more than 5 s: node $(wc -l < "$dir/node.blocks"), Redis $(wc -l < "$dir/redis.blocks")"
    if cmp -s "$dir/node.blocks" "$dir/redis.blocks"; then
        echo "  the same targets"
    else
        echo "  DIFFERENT:"; diff "$dir/node.blocks" "$dir/redis.blocks" | head -5 || true
    fi
fi

# Samples: columns t, then (pid anon shmem) per worker, master rss, then
# dict_used blocks tracked auto_blocks dict_full evictions events
# lookup_errors state_saves state_save_errors shm_bytes fleet_connected
# fleet_queued lua0_kb lua1_kb malloc0_kb malloc1_kb probe_ms.
awk '{ n = NF; printf "%s", $1; for (i = 2; i <= 7; i += 3) printf " %s %s", $(i + 1), $(i + 2);
       printf " %s", $8; for (i = 9; i <= n; i++) printf " %s", $i; printf "\n" }' \
    "$dir/samples" > "$dir/samples.tsv"
{
    echo "# t w1_anon_kb w1_shmem_kb w2_anon_kb w2_shmem_kb master_rss_kb dict_used_bytes blocks detector_tracked auto_blocks dict_full detector_evictions events_recorded lookup_errors state_saves state_save_errors rust_shm_bytes fleet_connected fleet_queued worker1_lua_kb worker2_lua_kb worker1_malloc_kb worker2_malloc_kb probe_ms"
    cat "$dir/samples.tsv"
} > "$out.tsv"
echo "== memory (KiB; warm-up = the first sample after 60 s)"
awk '
    BEGIN { split("2 3 4 5 6 7 20 21 22 23", col, " ")
            split("worker1_private worker1_shared worker2_private worker2_shared master_rss dict_used worker1_lua_heap worker2_lua_heap worker1_malloc worker2_malloc", name, " ") }
    $1 >= 60 && !w { w = 1; for (k in col) warm[k] = $col[k] }
    { for (k in col) { if ($col[k] > max[k]) max[k] = $col[k]; last[k] = $col[k] } }
    END {
        printf "  %-17s %10s %10s %10s\n", "", "warm-up", "end", "max"
        for (k = 1; k <= 10; k++) {
            d = (col[k] == 7) ? 1024 : 1
            printf "  %-17s %10d %10d %10d\n", name[k], warm[k] / d, last[k] / d, max[k] / d
        }
    }' "$dir/samples.tsv"
awk -v secs="$secs" '
    # How fast private memory grows after warm-up, in thirds of the rest:
    # a leak grows at the same rate in every third, a heap settling at its
    # high-water mark slows down.
    $1 >= 60 { t[++n] = $1; p[n] = ($2 + $4) / 2; q[n] = ($22 + $23) / 2 }
    END {
        if (n < 4) exit
        printf "  private memory growth after warm-up (KiB a minute, mean of the workers; malloc in brackets):"
        for (k = 0; k < 3; k++) {
            a = 1 + int(k * (n - 1) / 3); b = 1 + int((k + 1) * (n - 1) / 3)
            m = (t[b] - t[a]) / 60
            printf " %d-%ds: %.0f (%.0f);", t[a], t[b], (p[b] - p[a]) / m, (q[b] - q[a]) / m
        }
        printf "\n"
    }' "$dir/samples.tsv"
awk '{ if ($24 > m) m = $24; s += $24; n++ } END { printf "  probe request every 5 s: mean %.1f ms, slowest %.1f ms\n", s / n, m }' "$dir/samples.tsv"
tail -n 1 "$dir/samples.tsv" | awk '{ printf "  at the end: %d blocks, %d clients tracked, %d auto blocks, %d blocks refused (dict_full), %d detector evictions, %d events, %d iprepd lookup errors, %d state saves (%d failed), Rust shared memory %d KiB\n", $8, $9, $10, $11, $12, $13, $14, $15, $16, $17 / 1024 }'
if command -v gnuplot >/dev/null; then
    gnuplot <<EOF
set terminal pngcairo size 900,700 font ",10"
set output "$out.png"
set multiplot layout 2,1 title "warden soak ($mode): ${secs}s of full load, 2 workers"
set key outside right top vertical
set xlabel "seconds"
set ylabel "MiB"
set yrange [0:*]
set lmargin 10
plot "$out.tsv" using 1:(\$2/1024) with lines lw 2 title "worker 1 private", \
     "" using 1:(\$4/1024) with lines lw 2 title "worker 2 private", \
     "" using 1:(\$3/1024) with lines dt 2 title "worker 1 shared", \
     "" using 1:(\$5/1024) with lines dt 2 title "worker 2 shared", \
     "" using 1:(\$6/1024) with lines title "master", \
     "" using 1:(\$7/1048576) with lines lw 2 title "shared dict used", \
     "" using 1:(\$20/1024) with lines dt 3 title "worker 1 Lua heap", \
     "" using 1:(\$21/1024) with lines dt 3 title "worker 2 Lua heap", \
     "" using 1:(\$22/1024) with lines dt 4 title "worker 1 malloc", \
     "" using 1:(\$23/1024) with lines dt 4 title "worker 2 malloc"
set ylabel "blocks; ms"
set y2label "connected to Redis"
set y2range [-0.1:1.5]
set y2tics 0,1,1
plot "$out.tsv" using 1:8 with lines lw 2 title "blocks", \
     "" using 1:(\$24*10) with impulses title "probe request (ms x10)", \
     "" using 1:18 axes x1y2 with steps lc rgb "gray" title "Redis (right)"
unset multiplot
EOF
    echo "plot: $out.png"
fi
echo "samples: $out.tsv"
