#!/bin/bash
# Runs the shell snippets of nginx-defender's nginx integration guide
# (t/lib/nginx-defender/*.sh, verbatim) against warden:api() on port 8090
# (t/17-fidelity.t). What runs is the guide's text with only its
# machine's paths changed: its port 8080 becomes the test nginx's 8090,
# its files go to a temporary directory, and iptables and `nginx -s
# reload` are stubs that record their arguments.
set -u
# run from an nginx worker: drop the descriptors it leaves open (its
# listening sockets), so that nothing started here holds nginx's ports
for fd in /proc/$$/fd/*; do
    fd=${fd##*/}
    [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-"
done
HERE=$(cd "$(dirname "$0")/nginx-defender" && pwd)
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
mkdir -p "$DIR/bin"
for cmd in iptables nginx; do
    printf '#!/bin/sh\necho "%s $*" >> "%s/stubs.log"\n' "$cmd" "$DIR" \
        > "$DIR/bin/$cmd"
    chmod +x "$DIR/bin/$cmd"
done
export PATH="$DIR/bin:$PATH"
for f in "$HERE"/*.sh; do
    sed -e 's#127\.0\.0\.1:8080#127.0.0.1:8090#g' \
        -e "s#/var/log/nginx-defender/#$DIR/#g" \
        -e "s#/var/log/nginx/access\.log#$DIR/access.log#g" \
        -e "s#/etc/nginx/conf\.d/#$DIR/#g" \
        "$f" > "$DIR/$(basename "$f")"
done

echo "== ban-ip.sh 192.0.2.44"
bash "$DIR/ban-ip.sh" 192.0.2.44 2>/dev/null
echo
cat "$DIR/stubs.log"
sed 's/^.*: Blocked/Blocked/' "$DIR/blocks.log"

echo "== log-processing.sh"
# an attacker's 404s in the access log, as nginx's combined format
# writes them
for i in 1 2 3 4 5 6; do
    echo "198.51.100.23 - - [07/Dec/2026:08:00:0$i +0000] \"GET /page-$i.html HTTP/1.1\" 404 153 \"-\" \"Mozilla/5.0 (X11; Linux x86_64)\"" >> "$DIR/access.log"
done
# its own process group, so that tail -F stops with it
setsid bash "$DIR/log-processing.sh" > "$DIR/analyze.out" 2>/dev/null &
PG=$!
for _ in $(seq 1 50); do
    [ "$(grep -c analyzed "$DIR/analyze.out" 2>/dev/null)" -ge 6 ] && break
    sleep 0.1
done
kill -TERM -- "-$PG" 2>/dev/null
sleep 0.2
kill -KILL -- "-$PG" 2>/dev/null
sed 's/}{/}\n{/g' "$DIR/analyze.out"
echo

echo "== dynamic-config.sh"
bash "$DIR/dynamic-config.sh" 2>/dev/null
cat "$DIR/defender-blocks.conf"
grep '^nginx' "$DIR/stubs.log"
