-- Other servers for tests that need more than the test's own nginx: whole
-- nginx instances ("nodes") started, stopped, restarted and killed from a
-- test's content handler, and a redis-server. Used by t/13-state.t and
-- t/14-fleet.t. Blocking calls (os.execute) are fine in a test.
--
--   local tnode = require "tnode"
--   local a = tnode.node{ name = "a", port = 1991, workers = 2,
--                         warden = 'state_file = "..."',   -- new{} body
--                         http = "...", server = "..." }   -- extra config
--   a:start()  a:stop()  a:kill()  a:reload()  a:log()  a:dir
--   a:get(path, ip?, headers?) -> status, body
--   a:api(method, path, body?) -> status, body   (the admin API)
--   local r = tnode.redis{ port = 1979, args = "--appendonly yes" }
--   r:start()  r:stop()  r:cli("GET", "k")  r:pause(seconds)

local thttp = require "thttp"

local _M = {}

local TOKEN = "node-token-0123456789abcdef"
_M.TOKEN = TOKEN


local function sh(cmd)
    local p = io.popen(cmd .. " 2>&1")
    local out = p:read("*a")
    p:close()
    return out
end
_M.sh = sh


-- Starts a daemon without the test nginx's descriptors: a daemon that kept
-- the test's listening socket would keep its port bound after the test.
local function detached(cmd)
    -- bash: dash cannot close descriptors above 9
    return sh("bash -c 'for fd in $(ls /proc/$$/fd); do"
              .. " if [ $fd -gt 2 ]; then eval \"exec $fd>&-\"; fi; done; "
              .. cmd:gsub("'", "'\\''") .. "'")
end


local function write(path, text)
    local f = assert(io.open(path, "w"))
    f:write(text)
    f:close()
end
_M.write = write


local function read(path)
    local f = io.open(path, "rb")
    if not f then
        return nil
    end
    local t = f:read("*a")
    f:close()
    return t
end
_M.read = read


-- The nginx binary running this test, and how it loads the Lua module.
local BIN = sh("readlink /proc/" .. ngx.worker.pid() .. "/exe"):gsub("%s+$", "")
local MODULES = ""
if io.open("/usr/share/nginx/modules/ngx_http_lua_module.so")
   and not sh(BIN .. " -V"):find("lua", 1, true) then
    MODULES = "load_module /usr/share/nginx/modules/ndk_http_module.so;\n"
              .. "load_module /usr/share/nginx/modules/ngx_http_lua_module.so;\n"
end
local ROOT_USER = sh("id -u"):match("^0") ~= nil
local USER = ROOT_USER and (sh("id -u www-data"):match("^%d") and "www-data"
                            or "nobody nogroup")
_M.WORKER_USER = USER and USER:match("^%S+")

-- Where nodes and servers keep their files: under the test's server root.
_M.BASE = ngx.config.prefix() .. "nodes/"

-- Nodes left running by an earlier test that failed half-way.
-- (A stopped master cannot start new workers while its workers are killed.)
sh("for p in $(pgrep -f '[n]ginx -p " .. _M.BASE .. "'); do"
   .. " kill -STOP $p; pkill -9 -P $p; kill -9 $p; done")


-- Gives the nodes' workers (another user when the test runs as root) what
-- they need: searchable directories.
function _M.chown(path)
    if _M.WORKER_USER then
        os.execute("chown -R " .. _M.WORKER_USER .. " " .. path)
    end
end


local CONF = [[
%s
%s
worker_processes %d;
daemon on;
master_process on;
error_log %slogs/error.log info;
pid %slogs/nginx.pid;
events { worker_connections 256; }
http {
    access_log off;
    lua_package_path "%s";
    lua_package_cpath "%s";
    lua_shared_dict warden 8m;
    init_by_lua_block {
        warden = require("resty.warden").new{
            admin_token = "%s",
            trusted_proxies = { "127.0.0.1" },
            %s
        }
    }
    init_worker_by_lua_block { warden:init_worker() }
    %s
    server {
        listen 127.0.0.1:%d;
        access_by_lua_block { warden:check() }
        log_by_lua_block { warden:log() }
        location / {
            content_by_lua_block { ngx.say("ok ", ngx.var.remote_addr) }
        }
        location /nope {
            content_by_lua_block { ngx.exit(404) }
        }
        location = /lua {
            content_by_lua_block {
                -- /lua?do=block&target=..&duration=..&action=..  |
                -- do=unblock | do=is_blocked (its action)
                local a = ngx.req.get_uri_args()
                local ok, err
                if a["do"] == "block" then
                    ok, err = warden:block(a.target, {
                        duration = tonumber(a.duration) or a.duration,
                        reason = a.reason, action = a.action })
                elseif a["do"] == "unblock" then
                    ok, err = warden:unblock(a.target)
                elseif a["do"] == "is_blocked" then
                    local info
                    ok, info = warden:is_blocked(a.target)
                    err = info and info.action
                elseif a["do"] == "lose" then
                    -- as if a change could not be queued for the fleet
                    -- (what fleet:queue() records when the dict is full)
                    ok, err = ngx.shared.warden:incr("r|lost", 1, 0)
                end
                ngx.say(tostring(ok), " ", tostring(err))
            }
        }
        location = /blocked {
            content_by_lua_block {
                -- target source seconds-left(-1: permanent) reason, sorted;
                -- ?round=N: seconds-left to the nearest N (a test that
                -- reads a day's block some requests later)
                local list = warden:blocked()
                local r = tonumber(ngx.var.arg_round) or 1
                local out = {}
                for _, b in ipairs(list) do
                    local left = b.expires == 0 and -1
                                 or math.floor((b.expires - ngx.now()) / r + 0.5) * r
                    out[#out + 1] = b.target .. " " .. b.source .. " "
                                    .. left .. " " .. b.reason
                end
                table.sort(out)
                ngx.print(table.concat(out, "\n"))
            }
        }
        location = /stats {
            content_by_lua_block {
                local s = warden:stats()
                local keys = {}
                for k, v in pairs(s) do
                    if type(v) ~= "table" then
                        keys[#keys + 1] = k .. "=" .. tostring(v)
                    end
                end
                table.sort(keys)
                ngx.print(table.concat(keys, "\n"))
            }
        }
        location /api/ {
            content_by_lua_block { warden:api() }
        }
        %s
    }
}
]]


local Node = {}
Node.__index = Node


--- node{ name, port, workers?, warden?, http?, server? } -> node
function _M.node(o)
    local self = setmetatable({}, Node)
    self.name = o.name
    self.port = o.port
    self.dir = _M.BASE .. o.name .. "/"
    self.workers = o.workers or 2
    os.execute("mkdir -p " .. self.dir .. "conf " .. self.dir .. "logs "
               .. self.dir .. "data")
    os.execute("chmod 755 " .. _M.BASE .. " " .. self.dir .. " "
               .. self.dir .. "conf " .. self.dir .. "logs")
    _M.chown(self.dir .. "data")
    self:configure(o)
    return self
end


--- node:configure{ warden?, http?, server?, workers? }: rewrites nginx.conf.
function Node:configure(o)
    self.workers = o.workers or self.workers
    local user = USER and ("user " .. USER .. ";") or ""
    write(self.dir .. "conf/nginx.conf", CONF:format(
        MODULES, user, self.workers, self.dir, self.dir, package.path,
        package.cpath, TOKEN, o.warden or "", o.http or "", self.port,
        o.server or ""))
end


-- Probes with curl, not a cosocket: nginx would log every refused
-- connection of the test's own nginx as an error.
local function wait_port(port)
    for _ = 1, 200 do
        local code = sh("curl -s -o /dev/null -w '%{http_code}'"
                        .. " http://127.0.0.1:" .. port .. "/")
        if code:match("^%d%d%d$") and code ~= "000" then
            return true
        end
        ngx.sleep(0.05)
    end
    return false
end


function Node:pid()
    local t = read(self.dir .. "logs/nginx.pid")
    return t and tonumber(t:match("%d+"))
end


--- node:start() -> true | nil, err (with the error log's tail)
function Node:start()
    local out = detached(BIN .. " -p " .. self.dir .. " -c " .. self.dir
                         .. "conf/nginx.conf")
    if not wait_port(self.port) then
        return nil, "node " .. self.name .. " did not start: " .. out
               .. (self:log():sub(-600))
    end
    -- wait until every worker is up (init_worker done)
    ngx.sleep(0.2)
    return true
end


-- os.execute's result differs between Lua 5.1 (0) and 5.2 mode (true).
local function run(cmd)
    local r = os.execute(cmd)
    return r == 0 or r == true
end
_M.run = run


local function alive(pid)
    return pid ~= nil and run("kill -0 " .. pid .. " 2>/dev/null")
end


local function wait_gone(pid)
    for _ = 1, 300 do
        if not alive(pid) then
            return true
        end
        ngx.sleep(0.02)
    end
    return false
end


--- node:stop(): a graceful stop (QUIT), as systemd's stop does.
function Node:stop()
    local pid = self:pid()
    if not pid then
        return true
    end
    os.execute("kill -QUIT " .. pid)
    return wait_gone(pid)
end


--- node:kill(): kill -9 the master and every worker (a crash).
function Node:kill()
    local pid = self:pid()
    if not pid then
        return true
    end
    -- stopped first: a master whose workers die starts new ones at once
    os.execute("kill -STOP " .. pid .. "; pkill -9 -P " .. pid
               .. "; kill -9 " .. pid)
    wait_gone(pid)
    os.remove(self.dir .. "logs/nginx.pid")
    return true
end


function Node:reload()
    os.execute("kill -HUP " .. self:pid())
    ngx.sleep(0.5)
end


function Node:log()
    return read(self.dir .. "logs/error.log") or ""
end


--- node:count(pattern) -> lines of the error log containing pattern
function Node:count(pattern)
    local n = 0
    for line in self:log():gmatch("[^\n]+") do
        if line:find(pattern, 1, true) then
            n = n + 1
        end
    end
    return n
end


--- node:get(path, ip?, headers?) -> status, body
function Node:get(path, ip, headers)
    local h = {}
    for k, v in pairs(headers or {}) do
        h[k] = v
    end
    if ip then
        h["X-Forwarded-For"] = ip
    end
    local res, err = thttp.request{ port = self.port, path = path,
                                    headers = h, timeout = 3000 }
    if not res then
        return "error " .. err, ""
    end
    return res.status, res.body
end


--- node:api(method, path, body?) -> status, body
function Node:api(method, path, body)
    local res, err = thttp.request{ port = self.port, method = method,
        path = "/api" .. path, body = body,
        headers = { Authorization = "Bearer " .. TOKEN }, timeout = 3000 }
    if not res then
        return "error " .. err, ""
    end
    return res.status, res.body
end


--- node:statuses(path, ip, n, headers?) -> "403x8" etc.: n requests, over
-- workers (headers: more request headers)
function Node:statuses(path, ip, n, headers)
    local h = { ["X-Forwarded-For"] = ip }
    for k, v in pairs(headers or {}) do
        h[k] = v
    end
    return thttp.statuses(thttp.fanout{ n = n or 8, concurrency = 4,
                                        port = self.port, path = path,
                                        headers = h })
end


--- node:wait_status(path, ip, want, seconds) -> seconds it took | nil
function Node:wait_status(path, ip, want, seconds)
    local start = ngx.now()
    repeat
        ngx.update_time()
        if self:get(path, ip) == want then
            ngx.update_time()
            return ngx.now() - start
        end
        ngx.sleep(0.02)
        ngx.update_time()
    until ngx.now() - start > seconds
    return nil
end


local Redis = {}
Redis.__index = Redis


--- redis{ port, args?, password? } -> a redis-server on 127.0.0.1:port
-- (password: what redis-cli authenticates with, for args' --requirepass)
function _M.redis(o)
    local self = setmetatable({ port = o.port, args = o.args or "",
                                password = o.password }, Redis)
    self.dir = _M.BASE .. "redis-" .. o.port .. "/"
    os.execute("mkdir -p " .. self.dir)
    if self:cli("PING") == "PONG" then
        self:cli("SHUTDOWN", "NOSAVE")  -- left by an earlier test
    end
    return self
end


function Redis:start()
    local out = detached("redis-server --port " .. self.port
                   .. " --bind 127.0.0.1 --daemonize yes --save ''"
                   .. " --dir " .. self.dir .. " --pidfile " .. self.dir
                   .. "redis.pid --logfile " .. self.dir .. "redis.log "
                   .. self.args)
    for _ = 1, 200 do
        if self:cli("PING") == "PONG" then
            return true
        end
        ngx.sleep(0.05)
    end
    return nil, "redis-server did not start: " .. out
end


function Redis:stop()
    local pid = tonumber((read(self.dir .. "redis.pid") or ""):match("%d+"))
    -- SHUTDOWN writes the AOF/RDB when configured, as a real stop would
    self:cli("SHUTDOWN")
    if pid then
        wait_gone(pid)
    end
end


--- redis:pause(seconds): the server stops answering (SIGSTOP), then
-- resumes; returns at once.
function Redis:pause(seconds)
    local pid = (read(self.dir .. "redis.pid") or ""):match("%d+")
    os.execute("kill -STOP " .. pid .. "; (sleep " .. seconds
               .. "; kill -CONT " .. pid .. ") >/dev/null 2>&1 &")
end


function Redis:cli(...)
    local args = { "redis-cli", "-p", tostring(self.port) }
    if self.password then
        args[#args + 1] = "--no-auth-warning -a '" .. self.password .. "'"
    end
    for _, a in ipairs({ ... }) do
        args[#args + 1] = "'" .. tostring(a):gsub("'", "'\\''") .. "'"
    end
    return (sh(table.concat(args, " ")):gsub("%s+$", ""))
end


return _M
