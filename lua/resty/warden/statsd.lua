-- A statsd client: metrics are buffered per worker in Rust (src/report.rs:
-- counters summed, names made safe, datagrams under 1432 bytes) and sent
-- over UDP from a timer, so that the log phase (where cosockets are not
-- allowed) can record metrics too. iprepd-nginx's client API:
--
--   s = statsd.new(host, port, max_buffer_count)
--   s.count(name, n); s.incr(name); s.time(name, ms); s.set(name, value)
--   s.buffer_count(); s.flush()        -- flush() needs a cosocket phase
--   s.start_timer(interval)            -- init_worker: flush every interval

local core = require "resty.warden.core"

local ngx = ngx
local log = ngx.log
local ERR = ngx.ERR
local udp = ngx.socket.udp
local timer_at = ngx.timer.at
local now = ngx.now
local tostring = tostring
local tonumber = tonumber

local ERROR_LOG_INTERVAL = 60  -- seconds between two "cannot send" lines


local _M = {}


function _M.new(host, port, max_buffer_count)
    local m = core.lua.metrics()
    local s = { host = host, port = port }
    local pending = false
    local logged = 0

    local function send()
        local packets = m:drain()
        if #packets == 0 then
            return true
        end
        local sock = udp()
        local ok, err = sock:setpeername(host, port)
        if ok then
            for i = 1, #packets do
                ok, err = sock:send(packets[i])
                if not ok then
                    break
                end
            end
        end
        sock:close()
        if not ok and now() - logged >= ERROR_LOG_INTERVAL then
            logged = now()
            log(ERR, "Error sending stats to statsd at ", host, ":", port,
                ": ", err)
        end
        return ok, err
    end

    local function flush_timer(premature)
        pending = false
        if not premature then
            send()
        end
    end

    -- A full buffer is sent from a timer (any phase may record metrics).
    local function added(n)
        if n >= max_buffer_count and not pending then
            pending = true
            local ok, err = timer_at(0, flush_timer)
            if not ok then
                pending = false
                log(ERR, "cannot schedule a statsd flush: ", err)
            end
        end
    end

    function s.count(name, n)
        added(m:count(tostring(name), tonumber(n) or 0))
    end

    function s.incr(name)
        added(m:count(tostring(name), 1))
    end

    function s.time(name, ms)
        added(m:time(tostring(name), tonumber(ms) or 0))
    end

    function s.gauge(name, value)
        added(m:gauge(tostring(name), tonumber(value) or 0))
    end

    function s.set(name, value)
        added(m:set(tostring(name), tostring(value)))
    end

    function s.buffer_count()
        return m:len()
    end

    s.flush = send

    function s.start_timer(interval)
        return ngx.timer.every(interval, function(premature)
            if not premature then
                send()
            end
        end)
    end

    return s
end


return _M
