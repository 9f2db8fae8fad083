-- Reads what the access phase needs of the request without allocating:
-- nginx variables are fetched through lua-resty-core's FFI entry point,
-- and the pointer into nginx's memory goes straight to Rust, so no Lua
-- string is created for a request that passes.

local ffi = require "ffi"
local base = require "resty.core.base"
require "resty.core.var"  -- declares ngx_http_lua_ffi_var_get

local C = ffi.C
local get_request = base.get_request
local var_get = C.ngx_http_lua_ffi_var_get

local value_ptr = ffi.new("char *[1]")
local value_len = ffi.new("size_t[1]")
local errmsg = ffi.new("char *[1]")
local lowcase = ffi.new("char[32]")  -- longer than any name used here

local NGX_OK = 0


local _M = {
    get_request = get_request,
    value_ptr = value_ptr,
    value_len = value_len,
}


-- Fetches variable `name` (lower case, < 32 bytes) of request `r` into
-- value_ptr[0] / value_len[0]. Returns true when the variable is set.
function _M.fetch(r, name)
    local rc = var_get(r, name, #name, lowcase, 0, value_ptr, value_len,
                       errmsg)
    return rc == NGX_OK
end


-- Variable `name` of request `r` as a pointer and a length, or nil, 0
-- when it is not set.
function _M.get(r, name)
    if var_get(r, name, #name, lowcase, 0, value_ptr, value_len, errmsg)
       == NGX_OK
    then
        return value_ptr[0], value_len[0]
    end
    return nil, 0
end


return _M
