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
