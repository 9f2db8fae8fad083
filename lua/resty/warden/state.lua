-- The state file (`state_file`): blocks and the admin API's policy kept
-- across a full stop and start of nginx. Rust restores it (in new(), in
-- the master) and saves it (src/persist/keep.rs); here only the path,
-- worker 0's timer, and the last write when the worker exits (the timer
-- runs once more, premature).

local ngx = ngx
local log = ngx.log
local ERR = ngx.ERR

local CHECK_INTERVAL = 0.2  -- seconds between looks at the journal


local _M = {}


-- A relative path is relative to nginx's prefix (as nginx's own paths).
function _M.path(p)
    if p:sub(1, 1) == "/" then
        return p
    end
    return ngx.config.prefix() .. p
end


local function tick(premature, engine)
    engine:save_tick(premature)
end


--- start(engine, path): in worker 0's init_worker.
function _M.start(engine, path)
    engine:start_saving(path)
    local ok, err = ngx.timer.every(CHECK_INTERVAL, tick, engine)
    if not ok then
        log(ERR, "warden: cannot start the state file timer: ", err)
        return nil, err
    end
    return true
end


return _M
