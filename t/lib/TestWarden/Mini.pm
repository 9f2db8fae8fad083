package TestWarden::Mini;

# A small runner for Test::Nginx's block format, used when
# Test::Nginx::Socket::Lua is not installed. It implements the subset this
# repository's tests use, with upstream's semantics:
#
#   file level: plan, run_tests, blocks, repeat_each, workers, master_on,
#               master_off, log_level, no_shuffle, no_long_string,
#               add_block_preprocessor, env_to_nginx, no_root_location
#   sections:   main_config, http_config, config, request (string or eval
#               array ref), more_headers, response_body, response_body_like,
#               error_code, response_headers, error_log, no_error_log,
#               grep_error_log + grep_error_log_out, must_die, wait,
#               timeout, user_files, ONLY, SKIP
#   filters:    eval, chomp
#
# Each block gets a fresh server root (t/servroot, or $TEST_NGINX_SERVROOT;
# as upstream, a previous block may leave nothing there but what the
# runner made), a fresh nginx (started, then stopped with QUIT so that its
# log is complete), and one Test::More test per assertion. As upstream, a
# file without a plan fails.
#
# TEST_NGINX_USE_VALGRIND=1 (as upstream's variable) runs nginx, master and
# workers, under valgrind's memcheck (suppressions from
# $TEST_NGINX_VALGRIND_SUPPRESS, default t/valgrind.suppress), with longer
# timeouts, and adds one test per block: no error and no definite leak
# whose stack passes through warden's Rust library (warden_core). Errors
# elsewhere (LuaJIT, nginx) are counted in a diagnostic, not failed. The
# block's own assertions are TODO then: valgrind slows nginx down enough
# to change what depends on time.

use strict;
use warnings;
use Cwd qw(abs_path);
use File::Path qw(make_path remove_tree);
use IO::Select;
use IO::Socket::INET;
use POSIX qw(WNOHANG);
use Test::More ();
use Time::HiRes qw(sleep time);

our @EXPORT = qw(plan run_tests blocks repeat_each workers master_on
                 master_off log_level no_shuffle no_long_string
                 add_block_preprocessor env_to_nginx no_root_location);

my $Workers = 1;
my $Master = 'off';
my $LogLevel = $ENV{TEST_NGINX_LOG_LEVEL} || 'debug';
my $Repeat = 1;
my @Preprocessors;
my @Env;
my $NoRootLocation = 0;
my $Port = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT} || 1984;
my $ServRoot = abs_path('.') . '/t/servroot';
$ServRoot = $ENV{TEST_NGINX_SERVROOT} if $ENV{TEST_NGINX_SERVROOT};
$ENV{TEST_NGINX_SERVER_ROOT} = $ServRoot;   # as upstream, once loaded
my $Nginx = $ENV{TEST_NGINX_BINARY} || 'nginx';
my $RunningPid;
my $Valgrind = $ENV{TEST_NGINX_USE_VALGRIND};
my $Slow = $Valgrind ? 20 : 1;   # timeouts are multiplied by this

sub import {
    my $caller = caller;
    no strict 'refs';
    *{"${caller}::$_"} = \&{$_} for @EXPORT;
}

sub workers { $Workers = shift }
sub master_on { $Master = 'on' }
sub master_off { $Master = 'off' }
sub log_level { $LogLevel = shift }
sub repeat_each { $Repeat = shift if @_; $Repeat }
sub no_shuffle { }
sub no_long_string { }
sub no_root_location { $NoRootLocation = 1 }
sub env_to_nginx { push @Env, @_ }
# as upstream: the last one added runs first
sub add_block_preprocessor { unshift @Preprocessors, shift }

sub plan { Test::More::plan(@_) }

# --- the block format ---------------------------------------------------

package TestWarden::Mini::Block;

our $AUTOLOAD;

sub new { my ($class, %a) = @_; bless {%a, sections => {}}, $class }
sub name { $_[0]{name} }
sub set_value { $_[0]{sections}{$_[1]} = $_[2] }
sub has { exists $_[0]{sections}{$_[1]} }

sub AUTOLOAD {
    my $self = shift;
    (my $name = $AUTOLOAD) =~ s/.*:://;
    return if $name eq 'DESTROY';
    return $self->{sections}{$name};
}

package TestWarden::Mini;

sub trim_value {
    my $v = shift;
    $v =~ s/\A([ \t]*\n)+//;
    $v =~ s/(?<=\n)\s*\z//;
    return $v;
}

my @Blocks;

sub parse_blocks {
    return @Blocks if @Blocks;
    open my $fh, '<', $0 or die "cannot read $0: $!";
    my $text = do { local $/; <$fh> };
    close $fh;
    $text =~ s/\A.*?^__DATA__\n//ms or die "$0 has no __DATA__ section";
    my @raw = split /^(?==== )/m, $text;
    my $only;
    for my $raw (@raw) {
        next unless $raw =~ s/\A=== (.*)\n//;
        my $block = TestWarden::Mini::Block->new(name => $1);
        my @parts = split /^(?=--- \w)/m, $raw;
        for my $part (@parts) {
            next unless $part =~ s/\A--- (\w+)([^\n:]*)(?::[ \t]*(.*))?\n?//;
            my ($name, $filters, $inline) = ($1, $2, $3);
            my @filters = split ' ', $filters;
            my $value = defined $inline ? $inline : trim_value($part);
            for my $f (@filters) {
                if ($f eq 'eval') {
                    my @r = eval "package main; no strict; $value";
                    die "TEST $block->{name}: --- $name eval failed: $@" if $@;
                    $value = @r == 1 ? $r[0] : \@r;
                } elsif ($f eq 'chomp') {
                    chomp $value;
                }
            }
            $block->set_value($name, $value);
        }
        $only = $block if $block->has('ONLY');
        push @Blocks, $block;
    }
    @Blocks = ($only) if $only;
    return @Blocks;
}

sub blocks { parse_blocks() }

# --- nginx ----------------------------------------------------------------

sub expand_env {
    my $text = shift;
    return $text unless defined $text;
    $text =~ s/\$\{?(TEST_NGINX_[_A-Z0-9]+)\}?/
        defined $ENV{$1} ? $ENV{$1} : die "no environment variable $1\n"/ge;
    return $text;
}

sub write_config {
    my $block = shift;
    my $workers = $Master eq 'on' ? $Workers : 1;
    my $main = expand_env($block->main_config // '');
    my $http = expand_env($block->http_config // '');
    my $config = expand_env($block->config // '');
    my $env = join '', map { "env $_;\n" } @Env;
    # As upstream: workers run as root when the master does, unless
    # TEST_NGINX_WORKER_USER says otherwise.
    my $user = $ENV{TEST_NGINX_WORKER_USER} || ($> == 0 ? 'root' : '');
    $env = "user $user;\n$env" if $user && $Master eq 'on';
    my $root = $NoRootLocation ? '' : <<_EOC_;
        location / {
            root $ServRoot/html;
            index index.html index.htm;
        }
_EOC_
    open my $out, '>', "$ServRoot/conf/nginx.conf" or die $!;
    print $out <<_EOC_;
worker_processes  $workers;
daemon on;
master_process $Master;
error_log $ServRoot/logs/error.log $LogLevel;
pid       $ServRoot/logs/nginx.pid;
$env
$main

http {
    access_log $ServRoot/logs/access.log;
    default_type text/plain;
    keepalive_timeout  68;
    client_body_temp_path $ServRoot/client_body_temp;
    proxy_temp_path $ServRoot/proxy_temp;
    fastcgi_temp_path $ServRoot/fastcgi_temp;
    uwsgi_temp_path $ServRoot/uwsgi_temp;
    scgi_temp_path $ServRoot/scgi_temp;

$http

    server {
        listen          $Port;
        server_name     'localhost';
        client_max_body_size 30M;

$config

$root
    }
}

events {
    worker_connections  1024;
}
_EOC_
    close $out;
}

sub setup_root {
    my $block = shift;
    # As upstream: what a runner makes is removed, then the server root
    # itself; anything else left there (a previous block's own files) ends
    # the run, as upstream's "Can't remove t/servroot (not empty?)" does.
    if (-d $ServRoot) {
        remove_tree(map({ "$ServRoot/$_" } qw(conf html logs cache)),
                    glob("$ServRoot/*_temp"), glob("$ServRoot/*_cache"));
        rmdir $ServRoot or do {
            stop_nginx();
            Test::More::BAIL_OUT("Can't remove $ServRoot (not empty?): $!");
        };
    }
    make_path(map { "$ServRoot/$_" } qw(conf html logs));
    # Debian's workers run as www-data when the master runs as root.
    chmod 0755, $ServRoot, map { "$ServRoot/$_" } qw(conf html logs);
    my $t = $ServRoot;
    while (($t =~ s{/[^/]+$}{}) && $t ne '') {
        last if (stat $t)[2] & 0001;   # already world-searchable
        chmod((stat $t)[2] | 0711, $t);
    }
    if (defined(my $files = $block->user_files)) {
        for my $f (split /^(?=>>> )/m, $files) {
            next unless $f =~ s/\A>>> (\S+)\n//;
            my $path = "$ServRoot/html/$1";
            (my $dir = $path) =~ s{/[^/]+$}{};
            make_path($dir);
            open my $out, '>', $path or die $!;
            print $out $f;
            close $out;
            chmod 0644, $path;
        }
    }
    $ENV{TEST_NGINX_SERVER_PORT} = $Port;
    $ENV{TEST_NGINX_HTML_DIR} = "$ServRoot/html";
    $ENV{TEST_NGINX_SERVROOT} = $ServRoot;
}

sub start_nginx {
    my $cmd = "$Nginx -p $ServRoot/ -c $ServRoot/conf/nginx.conf"
            . " > $ServRoot/logs/stderr.log 2>&1";
    if ($Valgrind) {
        my $supp = $ENV{TEST_NGINX_VALGRIND_SUPPRESS}
                   || abs_path('t') . '/valgrind.suppress';
        $cmd = "valgrind --tool=memcheck --leak-check=full"
             . " --show-leak-kinds=definite --errors-for-leak-kinds=definite"
             . " --num-callers=40 --trace-children=no --keep-debuginfo=yes"
             . (-f $supp ? " --suppressions=$supp" : '')
             . " --log-file=$ServRoot/logs/valgrind.%p.log $cmd";
    }
    my $status = system($cmd);
    return $status;
}

sub read_pid {
    open my $fh, '<', "$ServRoot/logs/nginx.pid" or return;
    my $pid = <$fh>;
    close $fh;
    return unless defined $pid && $pid =~ /(\d+)/;
    return $1;
}

# A daemonised master is reaped by PID 1, which may take a while: a
# zombie counts as stopped.
sub alive {
    my $pid = shift;
    return 0 unless kill 0, $pid;
    open my $fh, '<', "/proc/$pid/stat" or return 1;
    my $stat = <$fh> // '';
    close $fh;
    return $stat !~ /^\d+ \(.*\) Z/;
}

sub stop_nginx {
    my $pid = $RunningPid || read_pid() or return;
    undef $RunningPid;
    for my $sig (qw(QUIT TERM KILL)) {
        kill $sig, $pid or return;
        for (1 .. 250 * $Slow) {
            return unless alive($pid);
            sleep 0.02;
        }
    }
}

sub wait_port {
    for (1 .. 100 * $Slow) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $Port, Proto => 'tcp');
        if ($s) { close $s; return 1 }
        sleep 0.05;
    }
    return 0;
}

END { stop_nginx() }

# --- HTTP -----------------------------------------------------------------

sub http_request {
    my ($raw, $headers, $timeout) = @_;
    $raw =~ s/\A\s+//;
    my ($line, $body) = split /\n/, $raw, 2;
    $line =~ s/\s+\z//;
    $line .= ' HTTP/1.1' unless $line =~ m{ HTTP/\d\.\d$};
    my $req = "$line\r\nHost: localhost\r\nConnection: close\r\n";
    for my $h (split /\n/, $headers // '') {
        next unless $h =~ /\S/;
        $req .= "$h\r\n";
    }
    if (defined $body && length $body) {
        $req .= 'Content-Length: ' . length($body) . "\r\n";
    }
    $req .= "\r\n" . ($body // '');

    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $Port,
                                  Proto => 'tcp', Timeout => $timeout)
        or return (undef, "cannot connect: $!");
    print $s $req;
    my $sel = IO::Select->new($s);
    my $resp = '';
    my $deadline = time + $timeout;
    while (1) {
        my $left = $deadline - time;
        return (undef, "timeout after ${timeout}s") if $left <= 0;
        last unless $sel->can_read($left);
        my $n = sysread($s, my $buf, 65536);
        last unless $n;
        $resp .= $buf;
    }
    close $s;
    my ($head, $rbody) = split /\r\n\r\n/, $resp, 2;
    return (undef, "malformed response: $resp") unless defined $head
        && $head =~ m{\AHTTP/\d\.\d (\d+)};
    my $status = $1;
    my %h;
    for my $hl (split /\r\n/, $head) {
        next unless $hl =~ /^([^:]+):\s*(.*)$/;
        $h{lc $1} = $2;
    }
    $rbody //= '';
    if (($h{'transfer-encoding'} // '') =~ /chunked/i) {
        my $out = '';
        while ($rbody =~ s/\A([0-9a-fA-F]+)[^\r\n]*\r\n//) {
            my $len = hex $1;
            last if $len == 0;
            $out .= substr($rbody, 0, $len, '');
            $rbody =~ s/\A\r\n//;
        }
        $rbody = $out;
    }
    return ({ status => $status, headers => \%h, body => $rbody });
}

# --- checks ---------------------------------------------------------------

sub nth {
    my ($v, $i) = @_;
    return ref $v eq 'ARRAY' ? $v->[$i] : $v;
}

sub log_patterns {
    my $v = shift;
    return () unless defined $v;
    return @$v if ref $v eq 'ARRAY';
    return ($v) if ref $v eq 'Regexp';   # "--- error_log eval" with one qr//
    return grep { length } split /\n/, $v;
}

sub read_log {
    my $log = '';
    for my $f ("$ServRoot/logs/error.log", "$ServRoot/logs/stderr.log") {
        open my $fh, '<', $f or next;
        local $/;
        $log .= <$fh> // '';
        close $fh;
    }
    return $log;
}

sub check_logs {
    my ($block, $name) = @_;
    my $log = read_log();
    my @lines = split /\n/, $log;
    for my $p (log_patterns($block->error_log)) {
        my $hit = ref $p eq 'Regexp' ? scalar grep { /$p/ } @lines
                                     : scalar grep { index($_, $p) >= 0 } @lines;
        Test::More::ok($hit, "$name - pattern \"$p\" matches a line in error.log")
            or Test::More::diag(tail($log));
    }
    for my $p (log_patterns($block->no_error_log)) {
        my @hits = ref $p eq 'Regexp' ? grep { /$p/ } @lines
                                      : grep { index($_, $p) >= 0 } @lines;
        Test::More::ok(!@hits, "$name - pattern \"$p\" should not match any line in error.log")
            or Test::More::diag(join "\n", @hits[0 .. ($#hits > 4 ? 4 : $#hits)]);
    }
    if (defined(my $g = $block->grep_error_log)) {
        my $re = ref $g eq 'Regexp' ? $g : qr/\Q$g\E/;
        my $out = join '', map { "$_\n" } ($log =~ /($re)/g);
        Test::More::is($out, $block->grep_error_log_out // '',
                       "$name - grep_error_log_out");
    }
}

# line_diff($got, $want): the lines that differ, numbered, so that the end of
# a long failure report (all a CI log may keep) still shows them.
sub line_diff {
    my ($got, $want) = @_;
    my @g = split /\n/, $got, -1;
    my @w = split /\n/, $want, -1;
    my $max = @g > @w ? scalar @g : scalar @w;
    my @out;
    for my $i (0 .. $max - 1) {
        my ($a, $b) = ($g[$i] // '<none>', $w[$i] // '<none>');
        next if $a eq $b;
        push @out, "line " . ($i + 1) . ":\n     got: $a\n    want: $b";
    }
    return join "\n", "differing lines:", @out;
}

sub tail {
    my $log = shift;
    my @l = split /\n/, $log;
    my $from = @l > 30 ? @l - 30 : 0;
    return "error.log tail:\n" . join("\n", @l[$from .. $#l]);
}

sub run_block {
    my ($block, $name) = @_;
    # Under valgrind everything runs 20-50 times slower: what a block
    # asserts becomes TODO (a TTL may expire early), and valgrind's own
    # assertion, added at the end, is the one that counts.
    my $tb = Test::More->builder;
    $tb->todo_start('under valgrind, timings differ') if $Valgrind;
    run_block_assertions($block, $name);
    $tb->todo_end if $Valgrind;
    check_valgrind($name) if $Valgrind;
}

sub run_block_assertions {
    my ($block, $name) = @_;
    setup_root($block);
    write_config($block);
    my $status = start_nginx();

    if (defined $block->must_die) {
        Test::More::ok($status != 0, "$name - die as expected");
        $RunningPid = read_pid() if $status == 0;
        stop_nginx();
        check_logs($block, $name);
        return;
    }
    if ($status != 0 || !wait_port()) {
        Test::More::fail("$name - nginx started");
        Test::More::diag(tail(read_log()));
        stop_nginx();
        return;
    }
    $RunningPid = read_pid();

    my $reqs = $block->request;
    my @reqs = ref $reqs eq 'ARRAY' ? @$reqs : ($reqs);
    my $timeout = ($block->timeout || 3) * $Slow;
    for my $i (0 .. $#reqs) {
        my $n = @reqs > 1 ? "$name - req $i" : $name;
        my ($res, $err) = http_request($reqs[$i], nth($block->more_headers, $i),
                                       $timeout);
        if (!$res) {
            Test::More::fail("$n - request: $err");
            next;
        }
        my $code = nth($block->error_code, $i) // 200;
        Test::More::is($res->{status}, $code, "$n - status code ok");
        if (defined(my $want = nth($block->response_body, $i))) {
            Test::More::is($res->{body}, $want, "$n - response_body - response is expected")
                or Test::More::diag(line_diff($res->{body}, $want));
        }
        if (defined(my $like = nth($block->response_body_like, $i))) {
            my $re = ref $like eq 'Regexp' ? $like : qr/$like/s;
            Test::More::like($res->{body}, $re, "$n - response_body_like - response is expected");
        }
        if (defined(my $hs = nth($block->response_headers, $i))) {
            for my $h (split /\n/, $hs) {
                if ($h =~ /^!\s*(\S+)/) {
                    Test::More::ok(!defined $res->{headers}{lc $1}, "$n - header $1 absent");
                } elsif ($h =~ /^([^:]+):\s*(.*)$/) {
                    Test::More::is($res->{headers}{lc $1}, $2, "$n - header $1 ok");
                }
            }
        }
    }
    sleep $block->wait if $block->wait;
    stop_nginx();
    check_logs($block, $name);
}

# Valgrind's reports (one file per process): every error or definite leak
# whose stack passes through warden_core fails the block; the others
# (LuaJIT's and nginx's own) are only counted.
sub check_valgrind {
    my $name = shift;
    # workers outlive the master's exit by a moment: wait for their reports
    for (1 .. 50 * $Slow) {
        last unless grep { !valgrind_done($_) } valgrind_logs();
        sleep 0.1;
    }
    my (@ours, $others);
    for my $f (valgrind_logs()) {
        open my $fh, '<', $f or next;
        local $/;
        my $text = <$fh>;
        close $fh;
        # a report is a paragraph: "==pid== <what>" then "==pid==    at/by"
        for my $para (split /^==\d+==\s*\n/m, $text) {
            next unless $para =~ /^==\d+== (Invalid|Conditional|Use of uninit|Syscall param|Mismatched|Source and destination|Argument|\S.* definitely lost)/m;
            if ($para =~ /warden_core/) {
                push @ours, $para;
            } else {
                $others++;
            }
        }
    }
    Test::More::ok(!@ours, "$name - valgrind: no error or leak in warden_core")
        or Test::More::diag(join "\n", @ours[0 .. ($#ours > 2 ? 2 : $#ours)]);
    Test::More::diag("$name: valgrind: $others report(s) outside warden_core")
        if $others && $ENV{TEST_NGINX_VALGRIND_VERBOSE};
}

sub valgrind_logs { glob "$ServRoot/logs/valgrind.*.log" }

sub valgrind_done {
    my $f = shift;
    open my $fh, '<', $f or return 1;
    local $/;
    my $text = <$fh>;
    close $fh;
    return $text =~ /ERROR SUMMARY/;
}

sub run_tests {
    for my $block (parse_blocks()) {
        next if $block->has('SKIP');
        $_->($block) for @Preprocessors;
        for my $r (1 .. $Repeat) {
            my $name = 'TEST ' . $block->name;
            $name =~ s/^TEST TEST /TEST /;
            $name .= " (repeat $r)" if $Repeat > 1;
            run_block($block, $name);
        }
    }
    remove_tree($ServRoot) unless $ENV{TEST_NGINX_NO_CLEAN};
    # No done_testing() for a file without a plan: upstream has none
    # either, and Test::More fails such a file ("no plan was declared").
}

1;
