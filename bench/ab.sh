#!/usr/bin/env bash
# Two builds against each other on the wall clock: two nginx instances, one
# from each checkout (each `make build`-ed), bench/nginx.conf each (A on
# ports 809x, B on 819x), one worker each on CPU 0, wrk on CPU 1. Each
# round measures A's empty access+log handlers and full pipeline, then B's
# (the order alternates between rounds); the figure is the median over the
# rounds of the full pipeline's user time per request over the same
# instance's empty handlers, and of the ratio of their worker CPU.
#
#   bench/ab.sh CHECKOUT_A CHECKOUT_B [seconds per run] [rounds]
#
# Which instance a build runs in moves the figure too (by ~0.1 us on this
# VM: the same build in both gave +0.793 and +0.685 us): run it again with
# the checkouts swapped before believing a difference of that size.
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,14p' "$0"; exit 2; }
a=$(cd "$1" && pwd); b=$(cd "$2" && pwd)
secs=${3:-4}
rounds=${4:-16}
command -v wrk >/dev/null || { echo "wrk is missing (apt-get install wrk)"; exit 1; }
. "$(dirname "$0")/lib.sh"  # root (this checkout's xff.lua), cpu_per_request, median
dirs=()
start() { # checkout port-prefix -> the instance's directory
    local root=$1 prefix=$2 dir load
    [ -f "$root/build/warden_core.so" ] || { echo "$root: build first (make build)" >&2; exit 1; }
    dir=$(mktemp -d /tmp/warden-ab.XXXXXX)
    chmod 755 "$dir"
    mkdir -p "$dir/logs"
    load=$(. "$root/bench/lib.sh"; printf '%s' "$load")
    awk -v root="$root" -v load="$load" -v p="$prefix" \
        '{ gsub(/@ROOT@/, root); gsub(/@LOAD_MODULES@/, load);
           gsub(/127\.0\.0\.1:809/, "127.0.0.1:" p); print }' \
        "$root/bench/nginx.conf" > "$dir/nginx.conf"
    "${NGINX:-nginx}" -p "$dir/" -c "$dir/nginx.conf"
    echo "$dir"
}
stop() { for d in "${dirs[@]}"; do "${NGINX:-nginx}" -p "$d/" -c "$d/nginx.conf" -s stop 2>/dev/null || true; done; }
trap stop EXIT
da=$(start "$a" 809); dirs+=("$da")
db=$(start "$b" 819); dirs+=("$db")
sleep 2
wa=$(pgrep -P "$(cat "$da/logs/nginx.pid")" | head -n 1)
wb=$(pgrep -P "$(cat "$db/logs/nginx.pid")" | head -n 1)

measure() { # A|B round -> a line of samples
    local w p
    if [ "$1" = A ]; then w=$wa; p=809; else w=$wb; p=819; fi
    read -r _ et eu < <(cpu_per_request "$w" ${p}4 "$secs")
    read -r _ ft fu < <(cpu_per_request "$w" ${p}5 "$secs")
    echo "$1 $2 $eu $et $fu $ft"
}
for x in A B; do measure $x 0 >/dev/null; done  # warm up
samples=$(mktemp)
for i in $(seq "$rounds"); do
    if (( i % 2 )); then order="A B"; else order="B A"; fi
    for x in $order; do measure "$x" "$i" >> "$samples"; done
done
for x in A B; do
    if [ $x = A ]; then root=$a; else root=$b; fi
    read -r du dlo dhi < <(awk -v x=$x '$1 == x { print $5 - $3 }' "$samples" | median_ci)
    rt=$(awk -v x=$x '$1 == x { print $6 / $4 }' "$samples" | median)
    eu=$(awk -v x=$x '$1 == x { print $3 }' "$samples" | median)
    printf '%s %s (%s): full pipeline user time +%.3f us (95%% interval %s .. %s) over the empty handlers (%.3f us); worker CPU x%.4f\n' \
        "$x" "$root" "$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')" "$du" "$dlo" "$dhi" "$eu" "$rt"
done
rm -f "$samples"
