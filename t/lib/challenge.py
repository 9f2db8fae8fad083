#!/usr/bin/python3
"""The challenge's formats, written again from the README's description,
for the tests (t/22-challenge.t, t/23-challenge-browser.t):

  challenge.py solve TOKEN BITS        -> a nonce: SHA-256(TOKEN + nonce)
                                          starts with BITS zero bits
  challenge.py cookie SECRET IP EXPIRES_S DIFFICULTY
                                       -> the cookie warden would make
"""
import base64
import hashlib
import hmac
import ipaddress
import sys


def zero_bits(h):
    n = 0
    for b in h:
        if b == 0:
            n += 8
            continue
        return n + 8 - b.bit_length()
    return n


def solve(token, bits):
    n = 0
    while zero_bits(hashlib.sha256((token + str(n)).encode()).digest()) < bits:
        n += 1
    return str(n)


def cookie(secret, ip, expires, difficulty, v6_prefix=64):
    a = ipaddress.ip_address(ip)
    if a.version == 4:
        client = bytes([4]) + (int(a)).to_bytes(16, "big")
    else:
        bits = int(a) & ((1 << 128) - (1 << (128 - v6_prefix)))
        client = bytes([6]) + bits.to_bytes(16, "big")
    label = b"warden challenge cookie v1"
    key = hmac.new(secret.encode(), label, hashlib.sha256).digest()
    msg = client + int(expires).to_bytes(8, "big") + bytes([int(difficulty)])
    mac = hmac.new(key, msg, hashlib.sha256).digest()[:16]
    text = base64.urlsafe_b64encode(mac).decode().rstrip("=")
    return "%d.%d.%s" % (int(expires), int(difficulty), text)


if __name__ == "__main__":
    if sys.argv[1] == "solve":
        print(solve(sys.argv[2], int(sys.argv[3])))
    elif sys.argv[1] == "cookie":
        print(cookie(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]))
    else:
        sys.exit("usage: challenge.py solve|cookie ...")
