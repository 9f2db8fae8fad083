#!/usr/bin/env bash
# Starts the demo in the foreground: examples/nginx.conf with the paths of
# this checkout. Usage: examples/run.sh <nginx binary> <work dir>
set -euo pipefail
nginx=${1:-nginx}
dir=${2:-/tmp/warden-demo}
root=$(cd "$(dirname "$0")/.." && pwd)
load=""
if ! "$nginx" -V 2>&1 | grep -q lua-nginx-module \
   && [ -f /usr/share/nginx/modules/ngx_http_lua_module.so ]; then
    load="load_module /usr/share/nginx/modules/ndk_http_module.so;
load_module /usr/share/nginx/modules/ngx_http_lua_module.so;"
fi
mkdir -p "$dir/logs" "$dir/data"
# The workers (not root) must be able to read the checkout, and to write
# the state file.
chmod 755 "$dir"
if [ "$(id -u)" = 0 ]; then
    # no `user` directive: the workers run as the build's --user, or nobody
    user=$("$nginx" -V 2>&1 | grep -o -- '--user=[^ ]*' | cut -d= -f2 || true)
    chown "${user:-nobody}" "$dir/data"
fi
awk -v root="$root" -v dir="$dir" -v load="$load" \
    '{ gsub(/@ROOT@/, root); gsub(/@DIR@/, dir); gsub(/@LOAD_MODULES@/, load); print }' \
    "$root/examples/nginx.conf" > "$dir/nginx.conf"
"$nginx" -p "$dir/" -c "$dir/nginx.conf" -t -q
sed "s|@DIR@|$dir|g" "$root/examples/banner.txt"
exec "$nginx" -p "$dir/" -c "$dir/nginx.conf" -g 'daemon off;'
