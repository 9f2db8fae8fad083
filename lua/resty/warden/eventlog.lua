-- The event log (`event_log`): one JSON line per security event, written
-- by worker 0 off the request path. Rust formats the lines, drains the
-- events ring and writes files itself (src/events/log.rs); here only the
-- timer, and ngx.log for event_log = "error_log".

local state = require "resty.warden.state"

local ngx = ngx
local log = ngx.log
local ERR = ngx.ERR
local WARN = ngx.WARN

local INTERVAL = 1  -- seconds between drains


local _M = {}


--- start(engine, target): in worker 0's init_worker. target: a file
-- (relative to nginx's prefix unless absolute), "stderr" or "error_log".
function _M.start(engine, target)
    if target ~= "error_log" and target ~= "stderr" then
        target = state.path(target)
    end
    local ok, err = engine:start_event_log(target)
    if not ok then
        log(ERR, "warden: ", err)
        return nil, err
    end
    -- premature (the worker exits): what is left is written now
    local ok2, err2 = ngx.timer.every(INTERVAL, function(premature)
        local lines = engine:event_log(premature and true or false)
        for i = 1, #lines do
            log(WARN, lines[i])
        end
    end)
    if not ok2 then
        log(ERR, "warden: cannot start the event log timer: ", err2)
        return nil, err2
    end
    return true
end


return _M
