package StatsdListener;
# A statsd stand-in for tests: a child process listening on a UDP port of
# 127.0.0.1 that appends every datagram to a file. The child is killed and
# the file removed when the test script exits.
#
#   use StatsdListener;
#   our $StatsdFile = StatsdListener::start(1999);
use strict;
use warnings;
use IO::Socket::INET;

my @children;

sub start {
    my ($port) = @_;
    my $file = "/tmp/warden-statsd-$port-$$.log";
    unlink $file;
    my $pid = fork();
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        my $sock = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
            LocalPort => $port, Proto => 'udp') or die "udp listener: $!";
        open(my $fh, '>>', $file) or die "$file: $!";
        $fh->autoflush(1);
        while (1) {
            my $buf;
            $sock->recv($buf, 65535) or next;
            print $fh $buf;
        }
    }
    push @children, [$pid, $file];
    return $file;
}

END {
    for my $c (@children) {
        kill 9, $c->[0];
        unlink $c->[1];
    }
}

1;
