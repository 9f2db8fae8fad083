#!/usr/bin/env bash
# wrk benchmark: plain nginx against nginx + warden:check(), one worker,
# the same server, runs interleaved. Reports requests/s and the worker's
# CPU time per request (utime+stime from /proc), since a saturated client
# hides cost. Usage: bench/nginx.sh [seconds per run] [rounds]
set -euo pipefail
secs=${1:-10}
rounds=${2:-3}
. "$(dirname "$0")/lib.sh"  # root, nginx, load
dir=$(mktemp -d /tmp/warden-bench.XXXXXX)
chmod 755 "$dir"
mkdir -p "$dir/logs"
command -v wrk >/dev/null || { echo "wrk is missing (apt-get install wrk)"; exit 1; }

awk -v root="$root" -v load="$load" \
    '{ gsub(/@ROOT@/, root); gsub(/@LOAD_MODULES@/, load); print }' \
    "$root/bench/nginx.conf" > "$dir/nginx.conf"
"$nginx" -p "$dir/" -c "$dir/nginx.conf"
trap '"$nginx" -p "$dir/" -c "$dir/nginx.conf" -s stop 2>/dev/null || true' EXIT
sleep 2
worker=$(pgrep -P "$(cat "$dir/logs/nginx.pid")" | head -n 1)
run() { cpu_per_request "$worker" "$1" "$secs"; }  # port -> rps cpu_us user_us

# warm up the servers (JIT, caches, the detector's table)
for port in 8091 8093 8092 8094 8095 8096; do run $port >/dev/null; done

names=(plain empty_access warden_check empty_access_log warden_full warden_policies)
ports=(8091 8093 8092 8094 8095 8096)
declare -a rps us med_r med_u
for j in "${!ports[@]}"; do rps[$j]=0; us[$j]=0; done
add() { awk -v a="$1" -v b="$2" 'BEGIN { print a + b }'; }
printf '%-6s' round
for n in "${names[@]}"; do printf ' %17s' "$n"; done
printf '   (requests/s, worker CPU us per request)\n'
for i in $(seq "$rounds"); do
    printf '%-6s' "$i"
    for j in "${!ports[@]}"; do
        read -r r u uu < <(run "${ports[$j]}")
        printf ' %9s %7s' "$r" "$u"
        rps[$j]=$(add "${rps[$j]}" "$r"); us[$j]=$(add "${us[$j]}" "$u")
        echo "$j $r $u $uu $i" >> "$dir/samples"
    done
    printf '\n'
done
# Medians resist this VM's noisy neighbours better than means.
printf '\nmedians:'
for j in "${!ports[@]}"; do
    mr=$(awk -v j="$j" '$1 == j { print $2 }' "$dir/samples" | median)
    mu=$(awk -v j="$j" '$1 == j { print $3 }' "$dir/samples" | median)
    printf ' %s %s rps %s us;' "${names[$j]}" "$mr" "$mu"
    med_r[$j]=$mr; med_u[$j]=$mu
done
printf '\n'
awk -v r="${med_r[*]}" -v u="${med_u[*]}" 'BEGIN {
    split(r, R, " "); split(u, U, " ")
    printf "median throughput vs plain: empty access %.1f%%, check %.1f%%, empty access+log %.1f%%, check+log (full pipeline) %.1f%%\n",
        100 * R[2] / R[1], 100 * R[3] / R[1], 100 * R[4] / R[1], 100 * R[5] / R[1]
    printf "median worker CPU per request: check +%.2f us over empty access; log +%.2f us over empty log\n",
        U[3] - U[2], (U[5] - U[4]) - (U[3] - U[2])
    printf "with path and site policies (check{site=} + log): %.1f%% of plain, +%.2f us per request over check+log without\n",
        100 * R[6] / R[1], U[6] - U[5]
}'
# Each round against itself: the full pipeline's CPU per request over the
# empty access+log handlers measured just before it (so that a slow
# stretch of the VM moves both), and the difference in user time alone
# (warden adds no system calls; the kernel's share of each request, most of
# it, is noise here). Medians over the rounds.
awk '$1 == 3 { e[$5] = $3; eu[$5] = $4 } $1 == 4 { f[$5] = $3; fu[$5] = $4 }
    END { for (i in f) if (i in e) print f[i] / e[i], f[i] - e[i], fu[i] - eu[i], e[i] }' \
    "$dir/samples" > "$dir/paired"
# With each median, a confidence interval of at least 95% for it (lib.sh's
# median_ci): a target within the interval is neither met nor missed by
# this run.
read -r ratio rlo rhi < <(awk '{ print $1 }' "$dir/paired" | median_ci)
read -r user ulo uhi < <(awk '{ print $3 }' "$dir/paired" | median_ci)
floor=$(awk '{ print $4 }' "$dir/paired" | median)
awk -v r="$ratio" -v u="$user" -v f="$floor" -v rlo="$rlo" -v rhi="$rhi" \
    -v ulo="$ulo" -v uhi="$uhi" 'BEGIN {
    printf "paired by round (median of the rounds): full pipeline %+.1f%% of worker CPU over the empty access+log handlers; user time alone +%.2f us (%+.1f%% of the empty handlers %.2f us)\n",
        100 * (r - 1), u, 100 * u / f, f
    if (rlo != "-")
        printf "95%% intervals of those medians: worker CPU %+.1f%% .. %+.1f%%; user time %+.2f .. %+.2f us\n",
            100 * (rlo - 1), 100 * (rhi - 1), ulo, uhi
}'
awk -v n="$rounds" -v r="${rps[*]}" -v u="${us[*]}" 'BEGIN {
    split(r, R, " "); split(u, U, " ")
    printf "\nthroughput vs plain nginx (same run, interleaved):\n"
    printf "  empty access_by_lua            %5.1f%%\n", 100 * R[2] / R[1]
    printf "  warden:check()                 %5.1f%%\n", 100 * R[3] / R[1]
    printf "  empty access_by_lua + log_by_lua %3.1f%%\n", 100 * R[4] / R[1]
    printf "  warden:check() + warden:log()  %5.1f%%   (full pipeline)\n", 100 * R[5] / R[1]
    printf "worker CPU per request (us): plain %.2f, empty access %.2f, check %.2f, empty access+log %.2f, check+log %.2f\n",
        U[1] / n, U[2] / n, U[3] / n, U[4] / n, U[5] / n
    printf "warden:check() itself: +%.2f us over an empty access handler\n", (U[3] - U[2]) / n
    printf "warden:log() itself:   +%.2f us over an empty log handler\n", ((U[5] - U[4]) - (U[3] - U[2])) / n
}'
grep -E "\[(error|alert|crit|emerg)\]" "$dir/logs/error.log" && exit 1 || true
