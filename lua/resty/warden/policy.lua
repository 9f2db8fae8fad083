-- Changes to the admin API's policy document (the whitelist, protected
-- routes, site policies, capture: src/policy/doc.rs). A change is one
-- call into Rust that never yields; when another worker holds the
-- change's lock, that call answers false ("busy") and the change waits a
-- little here (ngx.sleep yields, so the wait stays in Lua) and tries
-- again, for at most LOCK_WAIT seconds.

local ngx = ngx
local ngx_sleep = ngx.sleep
local ngx_now = ngx.now

local LOCK_WAIT = 3     -- seconds a change waits for the lock
local RETRY = 0.005     -- seconds between two tries


local _M = {}


--- update(w, op, a, b) -> result | nil, err, field, status
-- op, a, b: as engine:edit_policy (src/lua/ops.rs): "add", "remove",
-- "put_site", "delete_site", "capture".
function _M.update(w, op, a, b)
    local deadline = ngx_now() + LOCK_WAIT
    while true do
        local last = ngx_now() >= deadline
        local res, err, field, status = w.engine:edit_policy(last, op, a, b)
        if res ~= false then
            return res, err, field, status
        end
        ngx_sleep(RETRY)
    end
end


return _M
