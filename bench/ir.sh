#!/usr/bin/env bash
# Instructions per request, counted by valgrind's callgrind (stable to
# ~0.1%, unlike wall-clock on this VM): one nginx with `master_process off`
# under callgrind, the servers of bench/nginx.conf, and for each server a
# warm-up, a full collection of the Lua heap with the collector stopped
# until the dump (lua-nginx-module's own garbage would otherwise be
# collected in whichever server's window the collector happened to run),
# `callgrind_control -z`, exactly N requests on one keep-alive
# connection (random clients through a trusted proxy's X-Forwarded-For,
# bench/ir-client.py), `callgrind_control -d`.
#
#   bench/ir.sh [requests] [warm-up requests]      (NGINX= selects nginx)
#
# Reports instructions per request for plain nginx, empty access_by_lua +
# log_by_lua handlers (the floor any Lua module pays) and warden's full
# pipeline (check() + log(), 100k deny prefixes, 10k blocks, detector on),
# their difference (warden's own work), and where warden's own work goes:
# the functions whose cost differs most between the full pipeline and the
# empty handlers. Beside each count, the misses of callgrind's simulated
# first-level instruction cache per request (--cache-sim=yes): the code
# lines a request fetches again, which explain more of the wall clock than
# the instructions do (bench/README.md).
set -euo pipefail
n=${1:-5000}
warm=${2:-5000}
. "$(dirname "$0")/lib.sh"  # root, nginx, load
for t in valgrind callgrind_control callgrind_annotate; do
    command -v $t >/dev/null || { echo "$t is missing (apt-get install valgrind)"; exit 1; }
done
[ -f "$root/build/warden_core.so" ] || { echo "build first: make build"; exit 1; }
dir=$(mktemp -d /tmp/warden-ir.XXXXXX)
chmod 755 "$dir"
mkdir -p "$dir/logs"
awk -v root="$root" -v load="$load" \
    '{ gsub(/@ROOT@/, root); gsub(/@LOAD_MODULES@/, load); print }' \
    "$root/bench/nginx.conf" | grep -v worker_cpu_affinity > "$dir/nginx.conf"

valgrind --tool=callgrind --smc-check=all-non-file --dump-instr=no --cache-sim=yes \
    --callgrind-out-file="$dir/cg.out" \
    "$nginx" -p "$dir/" -c "$dir/nginx.conf" \
    -g "master_process off; daemon off;" >"$dir/valgrind.log" 2>&1 &
vg=$!
cleanup() { kill "$vg" 2>/dev/null || true; wait "$vg" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 600); do
    curl -fs -o /dev/null http://127.0.0.1:8095/ 2>/dev/null && break
    kill -0 "$vg" 2>/dev/null || { cat "$dir/valgrind.log" "$dir/logs/error.log"; exit 1; }
    sleep 1
done

requests() { # port count seed -> count
    /usr/bin/python3 "$root/bench/ir-client.py" "$1" "$2" "$3"
}

measure() { # name port -> prints "name instructions/request I1-misses/request"
    local name=$1 port=$2 got
    requests "$port" "$warm" 7 >/dev/null
    curl -fs -o /dev/null "http://127.0.0.1:8090/gc?do=stop"
    callgrind_control -z "$vg" >/dev/null
    got=$(requests "$port" "$n" 11)
    callgrind_control -d "$name" "$vg" >/dev/null
    curl -fs -o /dev/null "http://127.0.0.1:8090/gc?do=restart"
    [ "$got" = "$n" ] || { echo "the client made $got requests, not $n" >&2; exit 1; }
    local f
    f=$(ls -t "$dir"/cg.out.* | head -n 1)
    mv "$f" "$dir/$name.out"
    # events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw
    awk -v n="$n" -v name="$name" '/^(summary|totals):/ { t = $2; m = $5 }
        END { printf "%-10s %8.0f %6.0f\n", name, t / n, m / n }' "$dir/$name.out"
}

{
    measure plain 8091
    measure empty 8094
    measure warden 8095
    measure policies 8096
} | tee "$dir/ir.txt"

awk -v n="$n" '{ v[$1] = $2; m[$1] = $3 } END {
    printf "\nwarden own work (full pipeline - empty handlers): %.0f instructions per request\n", v["warden"] - v["empty"]
    printf "instruction-cache misses per request (simulated by callgrind, first level): empty handlers %.0f, full pipeline %.0f (+%.0f)\n", m["empty"], m["warden"], m["warden"] - m["empty"]
    printf "empty handlers over plain nginx: %.0f; with path and site policies: +%.0f over warden\n", v["empty"] - v["plain"], v["policies"] - v["warden"]
}' "$dir/ir.txt"

# By object: warden's own code, and the code of nginx, LuaJIT and the
# libraries, which moves with where warden's code evicts theirs.
printf '\nper request, full pipeline minus empty handlers, by object (instructions, instruction-cache misses):\n'
/usr/bin/python3 "$root/bench/cg-objects.py" "$dir/empty.out" "$dir/warden.out" "$n"

# Where warden's own work goes: self cost per function, full pipeline
# minus empty handlers, per request; then the inclusive cost of each of
# warden's entry points (FFI functions) per request.
self_costs() { # callgrind file -> "cost<TAB>function" (self cost)
    callgrind_annotate --show=Ir --auto=no --inclusive=no --tree=none --threshold=100 "$1" 2>/dev/null |
        awk '/^ *[0-9,]+ +\( *[0-9.]+%\)  / && !/\(100\.0%\)/ {
            c = $1; gsub(",", "", c); $1 = ""; sub(/^ +\( *[0-9.]+%\) +/, "");
            print c "\t" $0 }'
}
self_costs "$dir/warden.out" > "$dir/warden.fn"
self_costs "$dir/empty.out" > "$dir/empty.fn"
printf '\nper request, full pipeline minus empty handlers, by function (self cost):\n'
awk -F'\t' -v n="$n" 'NR == FNR { e[$2] = $1; next }
    { d = ($1 - e[$2]) / n; if (d >= 15 || d <= -15) printf "%8.0f  %s\n", d, $2 }' \
    "$dir/empty.fn" "$dir/warden.fn" | sort -rn | head -n 40
printf '\nper request, inclusive, warden entry points:\n'
callgrind_annotate --show=Ir --auto=no --inclusive=yes --tree=none --threshold=100 "$dir/warden.out" 2>/dev/null |
    awk -v n="$n" '/warden_[a-z_]+ \[/ && /\( *[0-9.]+%\)/ {
        c = $1; gsub(",", "", c); $1 = ""; sub(/^ +\( *[0-9.]+%\) +/, "");
        printf "%8.0f  %s\n", c / n, $0 }' | head -n 20
echo
echo "(callgrind files in $dir)"
