package TestWarden;

# What every t/*.t file uses:
#
#   use lib 't/lib';
#   use TestWarden;
#
# It runs the file with an installed Test::Nginx::Socket::Lua when there is
# one, and otherwise with TestWarden::Mini, a small runner for the same
# block format. Either way it sets the defaults of this repository:
# package paths to lua/ and build/, Debian's load_module lines when the
# nginx binary is not OpenResty, `GET /t` as the default request, and
# `no_error_log [error]` for blocks that check no log at all.

use strict;
use warnings;
use Cwd qw(abs_path);
use File::Basename qw(dirname);

our $Root = $ENV{TEST_WARDEN_ROOT} || abs_path(dirname(__FILE__) . '/../..');
our $Impl;

BEGIN {
    if (!$ENV{TEST_WARDEN_MINI}
        && eval { require Test::Nginx::Socket::Lua; 1 })
    {
        $Impl = 'Test::Nginx::Socket::Lua';
    } else {
        require TestWarden::Mini;
        $Impl = 'TestWarden::Mini';
    }
}

sub nginx_binary { $ENV{TEST_NGINX_BINARY} || 'nginx' }

# Debian's nginx loads the Lua module dynamically; OpenResty has it built in.
sub load_modules {
    my $dir = '/usr/share/nginx/modules';
    return '' unless -f "$dir/ngx_http_lua_module.so";
    my $bin = nginx_binary();
    my $v = `$bin -V 2>&1`;
    return '' if $v =~ /lua-nginx-module|--add-module=\S*lua/;
    return "load_module $dir/ndk_http_module.so;\n"
         . "load_module $dir/ngx_http_lua_module.so;\n";
}

my $LoadModules = load_modules();

sub import {
    my $caller = caller;
    # Let the implementation export its API into the test script, as
    # `use Test::Nginx::Socket::Lua;` there would.
    eval "package $caller; $Impl->import(); 1" or die $@;
    $Impl->can('add_block_preprocessor')->(\&preprocess);
}

sub preprocess {
    my $block = shift;

    if (!defined $block->request && !defined $block->must_die) {
        $block->set_value('request', "GET /t\n");
    }
    if (!defined $block->error_log && !defined $block->no_error_log) {
        $block->set_value('no_error_log', "[error]\n");
    }

    # A block that sets its own package paths (an installed tree) keeps
    # them; the others use the checkout.
    my $http = defined $block->http_config ? $block->http_config : '';
    if ($http !~ /\blua_package_path\b/) {
        $block->set_value('http_config', <<_EOC_ . $http);
    lua_package_path "$Root/lua/?.lua;$Root/t/lib/?.lua;;";
    lua_package_cpath "$Root/build/?.so;;";
_EOC_
    }

    if ($LoadModules) {
        my $main = defined $block->main_config ? $block->main_config : '';
        $block->set_value('main_config', $LoadModules . $main);
    }
}

1;
