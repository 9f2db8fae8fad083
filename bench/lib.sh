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
