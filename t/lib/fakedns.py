#!/usr/bin/python3
"""A tiny authoritative DNS server for t/22-crawlers.t (stdlib only).

    fakedns.py PORT LOGFILE

Answers UDP queries on 127.0.0.1:PORT and [::1]:PORT from the zone below and appends
"<type> <name>" to LOGFILE for every query it reads, so that a test can
count the lookups (the cache must save them). Names are compressed in the
answers (owners point at the question, targets at the owner's labels).
"""
import select
import socket
import struct
import sys

A, PTR, CNAME, AAAA = 1, 12, 5, 28

ZONE = {
    # a real Googlebot: PTR and a forward lookup that confirms
    ("1.66.249.66.in-addr.arpa", PTR): [(PTR, "crawl-66-249-66-1.googlebot.com")],
    ("crawl-66-249-66-1.googlebot.com", A): [(A, "66.249.66.1")],
    # a fake one: its PTR is outside Google's domains
    ("2.66.249.66.in-addr.arpa", PTR): [(PTR, "evil.example")],
    # a name in the domains whose forward lookup does not confirm
    ("3.66.249.66.in-addr.arpa", PTR): [(PTR, "crawl-66-249-66-3.googlebot.com")],
    ("crawl-66-249-66-3.googlebot.com", A): [(A, "192.0.2.99")],
    # 66.249.66.4: no answer at all (a timeout)
    # a label boundary: evilgooglebot.com is not googlebot.com
    ("5.66.249.66.in-addr.arpa", PTR): [(PTR, "crawl-5.evilgooglebot.com")],
    ("crawl-5.evilgooglebot.com", A): [(A, "66.249.66.5")],
    # a forward lookup through a CNAME
    ("6.66.249.66.in-addr.arpa", PTR): [(PTR, "crawl-66-249-66-6.googlebot.com")],
    ("crawl-66-249-66-6.googlebot.com", A): [
        (CNAME, "edge.googlebot.com"), (A, "66.249.66.6")],
    # an IPv6 Googlebot, confirmed by AAAA
    ("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.8.4.0.6.8.4.1.0.0.2.ip6.arpa", PTR):
        [(PTR, "crawl-2001-4860-4801-1.googlebot.com")],
    ("crawl-2001-4860-4801-1.googlebot.com", AAAA): [(AAAA, "2001:4860:4801::1")],
    # an operator's crawler (crawlers.extra)
    ("1.156.16.199.in-addr.arpa", PTR): [(PTR, "preview-1.twttr.com")],
    ("preview-1.twttr.com", A): [(A, "199.16.156.1")],
}
SILENT = {"4.66.249.66.in-addr.arpa"}


def read_name(m, at):
    labels = []
    while True:
        n = m[at]
        if n == 0:
            return ".".join(labels), at + 1
        labels.append(m[at + 1:at + 1 + n].decode("ascii", "replace"))
        at += 1 + n


def labels(name):
    out = b""
    for label in name.split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def answer(query):
    qid, flags, qd = struct.unpack(">HHH", query[:6])
    name, at = read_name(query, 12)
    qtype, qclass = struct.unpack(">HH", query[at:at + 4])
    question = query[12:at + 4]
    records = ZONE.get((name.lower(), qtype))
    rcode = 0 if records or any(k[0] == name.lower() for k in ZONE) else 3
    body = b""
    owner = b"\xc0\x0c"  # the question's name
    count = 0
    for rtype, value in records or []:
        if rtype in (A, AAAA):
            family = socket.AF_INET if rtype == A else socket.AF_INET6
            data = socket.inet_pton(family, value)
        else:
            data = labels(value)
        body += owner + struct.pack(">HHIH", rtype, 1, 7200, len(data)) + data
        if rtype == CNAME:
            # the records after it belong to the CNAME's target, written
            # just above: point at it
            owner = struct.pack(">H", 0xc000 | (12 + len(question) + len(body) - len(data)))
        count += 1
    head = struct.pack(">HHHHHH", qid, 0x8180 | rcode, 1, count, 0, 0)
    return head + question + body


def main():
    port, logfile = int(sys.argv[1]), sys.argv[2]
    socks = []
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        socks.append(sock)
    with open(logfile, "a") as log:
        while True:
            ready, _, _ = select.select(socks, [], [])
            for sock in ready:
                query, peer = sock.recvfrom(4096)
                try:
                    name, at = read_name(query, 12)
                    qtype = struct.unpack(">H", query[at:at + 2])[0]
                except (IndexError, struct.error):
                    continue
                log.write("%d %s\n" % (qtype, name))
                log.flush()
                if name.lower() in SILENT:
                    continue
                sock.sendto(answer(query), peer)


if __name__ == "__main__":
    main()
