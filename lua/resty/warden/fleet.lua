-- The fleet (`redis = { host = ... }`): nginx nodes sharing their blocks
-- through one Redis. On each node, worker 0 runs one agent, a timer that
-- lives as long as the worker. The agent is Rust's (src/persist/fleet/:
-- the session, its order and timings, Redis's keys, scripts and
-- protocol); this is its driver: it asks Rust what to do next
-- (engine:fleet_step), does it on a cosocket or with ngx.sleep, and hands
-- back what came of it.

local ngx = ngx
local tcp = ngx.socket.tcp
local sleep = ngx.sleep
local exiting = ngx.worker.exiting
local pairs = pairs
local pcall = pcall
local tostring = tostring

local READ = 65536  -- bytes read at most at once

local _M = {}
local mt = { __index = _M }


--- new(w) -> fleet: in new() (init phase); names this node.
function _M.new(w)
    w.engine:fleet_init()
    return setmetatable({ engine = w.engine }, mt)
end


-- Does one step: returns what came of it (data, or true), or nil, err.
local function perform(socks, act, conn, a, b, c)
    if act == "io" then
        local sock = socks[conn]
        if a then
            local ok, err = sock:send(a)
            if not ok then
                return nil, err
            end
        end
        return sock:receiveany(READ)
    elseif act == "connect" then
        if socks[conn] then
            socks[conn]:close()
        end
        local sock = tcp()
        socks[conn] = sock
        sock:settimeout(c)
        if b then
            return sock:connect(a, b)
        end
        return sock:connect(a)  -- unix:/path
    elseif act == "close" then
        for k, sock in pairs(socks) do
            sock:close()
            socks[k] = nil
        end
        return true
    elseif act == "sleep" then
        sleep(a)
        return true
    end
    error("unknown fleet step " .. tostring(act))
end


local function run(premature, engine)
    if premature then
        return
    end
    local socks = {}
    local res, err
    while true do
        local act, conn, a, b, c = engine:fleet_step(exiting(), res, err)
        if act == "done" then
            return
        end
        local ok
        ok, res, err = pcall(perform, socks, act, conn, a, b, c)
        if not ok then
            res, err = false, tostring(res)  -- logged by fleet_step
        elseif not res then
            err = tostring(err)
        end
    end
end


--- fleet:start(): in worker 0's init_worker.
function _M:start()
    local ok, err = ngx.timer.at(0, run, self.engine)
    if not ok then
        ngx.log(ngx.ERR, "warden: cannot start the fleet agent: ", err)
        return nil, err
    end
    return true
end


return _M
