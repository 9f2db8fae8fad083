#!/usr/bin/env bash
# What the state file and the Redis fleet cost at N blocked addresses.
# Usage: bench/fleet.sh [N] (default 1000000)
#
# 1. redis-server on 127.0.0.1:1980 gets N blocks written straight into
#    the fleet's hash (as N earlier changes from other nodes would leave it).
# 2. One nginx node (2 workers, port 1995, lua_shared_dict big enough) with
#    redis and state_file starts: time until it has reconciled (taken all
#    N blocks), time until every worker has re-read them, the first
#    requests' latency meanwhile, shared dict and worker memory.
# 3. The state file it writes: size and write time.
# 4. A restart with the state file only: time to restore N blocks.
# 5. Per change: bytes a node sends to Redis and Redis sends to each
#    subscriber, from Redis's own counters over 2000 blocks.
# 6. A Redis blip (the node's connections killed) under load: time to
#    reconnect and reconcile N blocks, and the requests' latency meanwhile.
set -euo pipefail
N=${1:-1000000}
. "$(dirname "$0")/lib.sh"  # root, nginx, load
dir=$(mktemp -d /tmp/warden-fleet.XXXXXX)
chmod 755 "$dir"
mkdir -p "$dir/logs" "$dir/data" "$dir/redis"
user=""
if [ "$(id -u)" = 0 ]; then
    user="user www-data;"
    chown www-data "$dir/data"
fi
RPORT=1980
PORT=1995
rcli() { redis-cli -p $RPORT "$@"; }

# dict: ~200 bytes a block (measured below), with headroom
dict_mb=$(( N * 400 / 1048576 + 16 ))

conf() { # redis option (or empty) -> nginx.conf
    cat > "$dir/nginx.conf" <<EOF
$load
$user
worker_processes 2;
error_log $dir/logs/error.log info;
pid $dir/logs/nginx.pid;
events { worker_connections 256; }
http {
    access_log off;
    lua_package_path "$root/lua/?.lua;;";
    lua_package_cpath "$root/build/?.so;;";
    lua_shared_dict warden ${dict_mb}m;
    init_by_lua_block {
        warden = require("resty.warden").new{
            state_file = "$dir/data/state",
            trusted_proxies = { "127.0.0.1" },
            $1
        }
    }
    init_worker_by_lua_block { warden:init_worker() }
    server {
        listen 127.0.0.1:$PORT;
        access_by_lua_block { warden:check() }
        location / { content_by_lua_block { ngx.say("ok") } }
        location = /stats {
            content_by_lua_block {
                local s = warden:stats()
                ngx.say(s.blocks, " ", s.dict_capacity_bytes - s.dict_free_bytes)
            }
        }
        location = /block {
            content_by_lua_block {
                for i = 1, tonumber(ngx.var.arg_n) do
                    warden:block("203.0." .. math.floor(i / 256) % 256 .. "." .. i % 256)
                end
            }
        }
    }
}
EOF
}
start() { "$nginx" -p "$dir/" -c "$dir/nginx.conf"; }
stop() {
    local pid
    pid=$(cat "$dir/logs/nginx.pid" 2>/dev/null) || return 0
    kill -QUIT "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
}
now() { date +%s.%N; }
rss() { # each worker's private and shared resident memory
    local m a sh
    m=$(cat "$dir/logs/nginx.pid")
    for p in $(pgrep -P "$m"); do
        read -r a sh < <(rss_kb "$p")
        printf "%d MiB private + %d MiB shared; " $((a / 1024)) $((sh / 1024))
    done
}
cleanup() {
    stop
    rcli shutdown nosave >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT

redis-server --port $RPORT --bind 127.0.0.1 --daemonize yes --save '' \
    --dir "$dir/redis" --logfile "$dir/redis/log" >/dev/null
until rcli ping >/dev/null 2>&1; do sleep 0.1; done

echo "== $N blocks written into Redis"
t0=$(now)
python3 - "$N" <<'EOF' | rcli --pipe | tail -n 1
import sys
n = int(sys.argv[1])
out = sys.stdout.buffer
def cmd(*args):
    b = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a.encode()
        b.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(b)
out.write(cmd("SET", "warden:epoch", "bench"))
for i in range(n):
    ip = "10.%d.%d.%d" % (i >> 16 & 255, i >> 8 & 255, i & 255)
    out.write(cmd("HSET", "warden:blocks", ip, "0|manual|bench"))
EOF
echo "written in $(echo "$(now) - $t0" | bc) s; Redis used_memory: $(rcli info memory | awk -F: '/^used_memory_human/ { print $2 }' | tr -d '\r')"

echo "== a node joins: redis + state_file, dict ${dict_mb}m, 2 workers"
conf 'redis = { host = "127.0.0.1", port = '$RPORT' },'
t0=$(now)
start
until grep -q "joined the fleet" "$dir/logs/error.log"; do sleep 0.05; done
t1=$(now)
echo "reconciled (all blocks taken into the shared dict): $(echo "$t1 - $t0" | bc) s"
grep -o "merged with.*\|mirrored with.*" "$dir/logs/error.log" | head -n 1 | sed 's/, context.*//'
# the workers re-read everything (the journal says "R"): the first request
# of each worker that gets there before its background sync pays for it
worst=0
for i in $(seq 1 20); do
    t=$(curl -s -o /dev/null -w '%{time_total}' -H "X-Forwarded-For: 10.0.0.1" "http://127.0.0.1:$PORT/")
    worst=$(echo "if ($t > $worst) $t else $worst" | bc)
done
echo "slowest of the next 20 requests: ${worst} s (a blocked client: $(curl -s -o /dev/null -w '%{http_code}' -H "X-Forwarded-For: 10.0.0.1" "http://127.0.0.1:$PORT/"))"
sleep 2
read -r blocks used < <(curl -s "http://127.0.0.1:$PORT/stats")
echo "blocks: $blocks; shared dict used: $(( used / 1048576 )) MiB ($(( used / (blocks > 0 ? blocks : 1) )) bytes a block)"
echo "workers: $(rss)"

echo "== the state file"
# the write after the join (the one at start-up had no blocks)
until grep -q "state file .* written ([1-9]" "$dir/logs/error.log"; do sleep 0.2; done
grep -o "state file .* written ([1-9][^)]*)" "$dir/logs/error.log" | tail -n 1
ls -l "$dir/data/state" | awk '{ printf "size: %d MiB\n", $5 / 1048576 }'

echo "== per change, with 1 node subscribed"
in0=$(rcli info stats | awk -F: '/total_net_input_bytes/ { print $2 }' | tr -d '\r')
out0=$(rcli info stats | awk -F: '/total_net_output_bytes/ { print $2 }' | tr -d '\r')
curl -s "http://127.0.0.1:$PORT/block?n=2000" >/dev/null
sleep 1
in1=$(rcli info stats | awk -F: '/total_net_input_bytes/ { print $2 }' | tr -d '\r')
out1=$(rcli info stats | awk -F: '/total_net_output_bytes/ { print $2 }' | tr -d '\r')
echo "node -> Redis: $(( (in1 - in0) / 2000 )) bytes a block; Redis -> nodes: $(( (out1 - out0) / 2000 )) bytes a block (the reply to the sender and one message to each subscriber, the sender included; pings included)"

echo "== a Redis blip: the node's connections dropped, 10 blocks added in Redis meanwhile"
# under load (wrk, 8 connections): what the reconnection's reconciliation
# of N blocks costs requests
wrk -t1 -c8 -d10s --latency "http://127.0.0.1:$PORT/" > "$dir/wrk.txt" &
wrk_pid=$!
sleep 2
for i in $(seq 1 10); do rcli hset warden:blocks "198.18.0.$i" "0|manual|blip" >/dev/null; done
t0=$(now)
rcli client kill type pubsub >/dev/null
rcli client kill type normal >/dev/null
until grep -q "is back;" "$dir/logs/error.log"; do sleep 0.05; done
echo "reconnected and reconciled: $(echo "$(now) - $t0" | bc) s"
grep -o "is back; .*" "$dir/logs/error.log" | head -n 1 | sed 's/, context.*//'
wait $wrk_pid
awk '/Latency  / { print "requests meanwhile: latency avg " $2 ", max " $4 } / 99%/ { print "p99 " $2 }' "$dir/wrk.txt" | paste -sd ' '
stop

echo "== restart with the state file only"
conf ""
t0=$(now)
start
t1=$(now)
echo "nginx started (restore included, in the master): $(echo "$t1 - $t0" | bc) s"
grep -o "restored [0-9]* blocks.*" "$dir/logs/error.log" | tail -n 1 | sed 's/, context.*//; s/ (saved.*;/;/'
stop
