#!/usr/bin/python3
"""Sends exactly N requests on one keep-alive connection, each from a random
client among $WARDEN_BENCH_CLIENTS (50000) in 100.64.0.0/10 through a trusted
proxy's X-Forwarded-For, as bench/xff.lua does for wrk (bench/ir.sh).

    ir-client.py PORT N SEED
"""
import random
import socket
import sys
import os

port, n, seed = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
clients = int(os.environ.get("WARDEN_BENCH_CLIENTS", "50000"))
rng = random.Random(seed)
sock = socket.create_connection(("127.0.0.1", port))
buf = b""
for _ in range(n):
    c = rng.randrange(clients)
    ip = "100.%d.%d.%d" % (64 + (c >> 16) % 64, (c >> 8) % 256, c % 256)
    sock.sendall(("GET / HTTP/1.1\r\nHost: bench\r\nX-Forwarded-For: %s\r\n"
                  "\r\n" % ip).encode())
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(65536)
    head, _, buf = buf.partition(b"\r\n\r\n")
    status = head.split(b" ", 2)[1]
    if status != b"200":
        sys.exit("unexpected status %s" % status.decode())
    length, close = 0, False
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        k = k.strip().lower()
        if k == b"content-length":
            length = int(v)
        elif k == b"connection" and v.strip().lower() == b"close":
            close = True  # keepalive_requests reached
    while len(buf) < length:
        buf += sock.recv(65536)
    buf = buf[length:]
    if close:
        sock.close()
        sock = socket.create_connection(("127.0.0.1", port))
        buf = b""
sock.close()
print(n)
