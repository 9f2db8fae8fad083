# Sourced by the bench scripts: $root (the checkout), $nginx (NGINX= or
# nginx) and $load, the load_module lines Debian's nginx needs for Lua
# (empty where lua-nginx-module is built in, as in OpenResty).
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
nginx=${NGINX:-nginx}
load=""
if ! "$nginx" -V 2>&1 | grep -q lua-nginx-module \
   && [ -f /usr/share/nginx/modules/ngx_http_lua_module.so ]; then
    load="load_module /usr/share/nginx/modules/ndk_http_module.so;
load_module /usr/share/nginx/modules/ngx_http_lua_module.so;"
fi
# rss_kb <pid>: "<private> <shared>" resident KiB of a process (RssAnon,
# RssShmem), "0 0" once it is gone.
rss_kb() { awk '/^RssAnon/ { a = $2 } /^RssShmem/ { s = $2 } END { print a + 0, s + 0 }' "/proc/$1/status" 2>/dev/null || echo "0 0"; }
# cpu_per_request <worker pid> <port> <seconds>: wrk (pinned to CPU 1, 64
# connections, bench/xff.lua's clients) against one port of the benchmark
# nginx; prints "<requests/s> <worker CPU us> <worker user-time us>" per
# request (utime+stime, then utime, from /proc: a saturated client hides
# cost). Fails on a non-2xx answer.
cpu_per_request() {
    local worker=$1 port=$2 secs=$3 u0 s0 u1 s1 out reqs
    read -r u0 s0 < <(awk '{ print $14, $15 }' "/proc/$worker/stat")
    out=$(taskset -c 1 wrk -t1 -c64 -d"${secs}s" -s "$root/bench/xff.lua" \
          "http://127.0.0.1:$port/" 2>&1)
    read -r u1 s1 < <(awk '{ print $14, $15 }' "/proc/$worker/stat")
    if echo "$out" | grep -q "Non-2xx"; then
        echo "unexpected non-2xx responses on port $port:" >&2
        echo "$out" >&2
        return 1
    fi
    reqs=$(echo "$out" | awk '/requests in/ { print $1 }')
    awk -v r="$reqs" -v s="$secs" -v u=$((u1 - u0)) -v k=$((s1 - s0)) \
        -v hz="$(getconf CLK_TCK)" \
        'BEGIN { printf "%.0f %.3f %.3f\n", r / s, (u + k) / hz * 1e6 / r, u / hz * 1e6 / r }'
}
# median_ci: "<median> <low> <high>" of the numbers on stdin, where low and
# high bound a distribution-free confidence interval of at least 95% for
# the median (order statistics k and n+1-k, k from the binomial
# distribution: for 16 rounds, the 4th and the 13th value); "- -" for the
# bounds with fewer than 6 numbers, too few for such an interval.
median_ci() {
    sort -n | awk '{ a[NR] = $1 } END {
        n = NR; m = (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        k = 0; c = 0; p = 0.5 ^ n  # p: P(X = j), c: P(X <= j), X ~ Bin(n, 1/2)
        for (j = 0; j < n; j++) {
            c += p
            if (2 * c > 0.05) break
            k = j + 1; p = p * (n - j) / (j + 1)
        }
        if (k == 0) print m, "-", "-"; else print m, a[k], a[n + 1 - k]
    }'
}
# median: the median of the numbers on standard input, one a line.
median() { median_ci | { read -r m _; echo "$m"; }; }
