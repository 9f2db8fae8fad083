-- Runs a browser driver (t/lib/dashboard.py, t/lib/challenge_browser.py)
-- in the background, so that the test's nginx serves the browser
-- meanwhile, and returns what it printed once it printed "exit <code>"
-- (or after `seconds`).
--
--   local text = require("tdriver").run(command, seconds)

local _M = {}


function _M.run(cmd, seconds)
    local out = os.tmpname()
    os.execute(cmd .. " > " .. out .. " 2>&1 < /dev/null &")
    local text = ""
    for _ = 1, seconds * 10 do
        ngx.sleep(0.1)
        local f = io.open(out)
        text = f and f:read("*a") or ""
        if f then
            f:close()
        end
        if text:find("exit %d+\n$") then
            break
        end
    end
    os.remove(out)
    return text
end


return _M
