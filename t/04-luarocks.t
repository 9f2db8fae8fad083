# `luarocks make` with the make-backend rockspec installs a tree from which
# nginx loads resty.warden and warden_core.so.
use lib 't/lib';
use TestWarden;

my $tree = "$TestWarden::Root/t/servroot-rocks";
if (system('command -v luarocks >/dev/null 2>&1') != 0) {
    plan skip_all => 'luarocks is not installed';
}
system("rm -rf $tree");
my $rc = system("cd $TestWarden::Root && luarocks make --tree $tree "
                . "rockspec/make/lua-resty-warden-0.1.0-1.rockspec "
                . "> $TestWarden::Root/t/luarocks.log 2>&1");
if ($rc != 0) {
    system("cat $TestWarden::Root/t/luarocks.log");
    die "luarocks make failed\n";
}
$ENV{TEST_NGINX_ROCKS_TREE} = $tree;

plan 'no_plan';
run_tests();

__DATA__

=== TEST 1: require from the installed tree
--- http_config
    lua_package_path "$TEST_NGINX_ROCKS_TREE/share/lua/5.1/?.lua;;";
    lua_package_cpath "$TEST_NGINX_ROCKS_TREE/lib/lua/5.1/?.so;;";
    lua_shared_dict warden 1m;
    init_by_lua_block {
        warden = require("resty.warden").new({ denylist = "127.0.0.1" })
    }
    init_worker_by_lua_block { warden:init_worker() }
--- config
    location /t {
        access_by_lua_block { warden:check() }
        content_by_lua_block { ngx.say("passed") }
    }
    location /where {
        content_by_lua_block {
            ngx.say(package.searchpath("resty.warden", package.path))
            ngx.say(package.searchpath("warden_core", package.cpath))
        }
    }
--- request eval
["GET /t", "GET /where"]
--- error_code eval
[403, 200]
--- response_body_like eval
[".*", "servroot-rocks/share/lua/5.1/resty/warden.lua\n.*servroot-rocks/lib/lua/5.1/warden_core.so\n"]
