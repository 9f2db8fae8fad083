-- A statsd client: metrics are buffered per worker in Rust
-- (src/metrics/statsd.rs: iprepd-nginx's lines, in order, datagrams under
-- 1432 bytes) and sent over UDP from a timer, so that the log phase (where
-- cosockets are not allowed) can record metrics too. iprepd-nginx's client
-- API:
--
--   s = statsd.new(host, port, max_buffer_count[, metrics])
--   s.count(name, n); s.incr(name); s.time(name, ms); s.set(name, value)
--   s.buffer_count(); s.flush()        -- from a timer where no cosocket
--   s.start_timer(interval)            -- init_worker: flush every interval
--
-- `metrics` is a buffer made in Rust that others record into as well (the
-- iprepd client's); s.full() says whether it holds max_buffer_count
-- metrics, s.flush_soon() sends it from a timer.

local core = require "resty.warden.core"

local ngx = ngx
local log = ngx.log
local ERR = ngx.ERR
local udp = ngx.socket.udp
local timer_at = ngx.timer.at
local pcall = pcall


local _M = {}


function _M.new(host, port, max_buffer_count, metrics)
    local m = metrics or core.lua.metrics(max_buffer_count)
    local s = { host = host, port = port }
    local pending = false

    local flush_soon

    local function send()
        if m:len() == 0 then
            return true
        end
        local made, sock = pcall(udp)
        if not made then
            -- a phase without cosockets (log_by_lua*): from a timer then
            flush_soon()
            return true
        end
        local packets = m:drain()
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
        if not ok then
            local line = m:send_failed(host, port, err)
            if line then
                log(ERR, line)
            end
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
    function flush_soon()
        if not pending then
            pending = true
            local ok, err = timer_at(0, flush_timer)
            if not ok then
                pending = false
                log(ERR, "cannot schedule a statsd flush: ", err)
            end
        end
    end

    local function added(full)
        if full then
            flush_soon()
        end
    end

    function s.count(name, n)
        added(m:count(name, n))
    end

    function s.incr(name)
        added(m:count(name, 1))
    end

    function s.time(name, ms)
        added(m:time(name, ms))
    end

    function s.gauge(name, value)
        added(m:gauge(name, value))
    end

    function s.set(name, value)
        added(m:set(name, value))
    end

    function s.buffer_count()
        return m:len()
    end

    function s.full()
        return m:full()
    end

    s.flush = send
    s.flush_soon = flush_soon

    -- Every interval, and when the worker exits (as iprepd-nginx's timer,
    -- which also ran on exit), what is buffered is sent.
    function s.start_timer(interval)
        return ngx.timer.every(interval, function()
            send()
        end)
    end

    return s
end


return _M
