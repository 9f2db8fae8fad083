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
# `no_error_log [error]` for blocks that check no log at all. Before each
# block and at the end of the file it also stops what t/lib/tnode.lua left
# under the server root (see stop_nodes).

use strict;
use warnings;
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Path qw(remove_tree);
use Time::HiRes qw(sleep);

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

# The server root of the runner (upstream sets this variable when it is
# loaded, as Mini does).
sub servroot {
    $ENV{TEST_NGINX_SERVER_ROOT} || $ENV{TEST_NGINX_SERVROOT}
        || abs_path('.') . '/t/servroot';
}

# t/lib/tnode.lua runs extra nginx instances ("nodes") and redis-server
# under <servroot>/nodes/. Upstream Test::Nginx removes only the
# directories it made before a block, then bails out ("Can't remove
# t/servroot (not empty?)") when anything else is left there; Mini removes
# the whole server root. So before each block (what the previous block
# left: nothing but files unless it failed half-way) and at the end of the
# file, every process still running there is killed; before a block, the
# directory is removed too, so each block starts from nothing under either
# runner. Nodes are found by their master's command line (nginx -p
# <servroot>/nodes/...), redis-server by its working directory (its
# --dir), which still names it once Mini has removed the server root.
sub node_pids {
    my $base = shift;
    my @pids;
    for my $dir (glob '/proc/[0-9]*') {
        my ($pid) = $dir =~ m{(\d+)$};
        open my $fh, '<', "$dir/cmdline" or next;
        my $cmd = do { local $/; <$fh> } // '';
        close $fh;
        $cmd =~ tr/\0/ /;
        if ($cmd =~ /nginx.* -p \Q$base\E\//) {
            push @pids, $pid;
        } elsif ($cmd =~ /redis/) {
            my $cwd = readlink "$dir/cwd" // '';
            push @pids, $pid if index($cwd, "$base/") == 0;
        }
    }
    return @pids;
}

sub children {
    my $ppid = shift;
    my @kids;
    for my $stat (glob '/proc/[0-9]*/stat') {
        open my $fh, '<', $stat or next;
        my $line = <$fh> // '';
        close $fh;
        push @kids, $1 if $line =~ /^(\d+) \(.*\) \S (\d+) / && $2 == $ppid;
    }
    return @kids;
}

sub stop_nodes {
    my $remove = shift;
    my $base = servroot() . '/nodes';
    if (my @pids = node_pids($base)) {
        # a master whose workers die starts new ones: stop it first
        kill 'STOP', @pids;
        kill 'KILL', map { children($_) } @pids;
        kill 'KILL', @pids;
        for (1 .. 100) {
            last unless grep { -e "/proc/$_" && !zombie($_) } @pids;
            sleep 0.02;
        }
    }
    remove_tree($base) if $remove && -d $base;
}

sub zombie {
    open my $fh, '<', "/proc/$_[0]/stat" or return 1;
    my $line = <$fh> // '';
    close $fh;
    return $line =~ /^\d+ \(.*\) Z/;
}

# The response timeout of a block that sets none (see preprocess).
our $Timeout = 30;

my $MainPid = $$;
END { local $?; stop_nodes(0) if $$ == $MainPid }

sub preprocess {
    my $block = shift;

    stop_nodes(1);

    if (!defined $block->request && !defined $block->must_die) {
        $block->set_value('request', "GET /t\n");
    }
    if (!defined $block->error_log && !defined $block->no_error_log) {
        $block->set_value('no_error_log', "[error]\n");
    }
    # Test::Nginx waits 3 s for a response by default: blocks that start
    # processes, nodes or several requests of their own outlast that on a
    # slow machine. A timeout here only bounds a hung test; what a block
    # asserts about time, it measures itself. A file may set its own
    # default ($TestWarden::Timeout) before run_tests().
    if (!defined $block->timeout) {
        $block->set_value('timeout', $Timeout);
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
