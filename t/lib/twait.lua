-- Waiting in tests for what a timer, another worker or another process
-- delivers (a file written, a line logged, a datagram received): polled
-- with a deadline, never a fixed sleep a little longer than the period,
-- which a loaded machine outlasts.

local _M = {}


--- until_true(f, seconds?) -> f()'s last value
-- Calls f() every 50 ms until it returns a true value, for at most
-- `seconds` (default 10). What a test asserts, it asserts afterwards.
function _M.until_true(f, seconds)
    local deadline = ngx.now() + (seconds or 10)
    local v = f()
    while not v and ngx.now() < deadline do
        ngx.sleep(0.05)
        ngx.update_time()
        v = f()
    end
    return v
end


return _M
