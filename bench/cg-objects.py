#!/usr/bin/python3
"""Per request, the instructions and simulated first-level instruction-cache
misses that one callgrind profile has over another, by object (the program
or shared library the code belongs to), for bench/ir.sh:

    cg-objects.py BASE.out PROFILE.out REQUESTS

Self costs only (a call's cost belongs to the callee's object). The misses
of warden's own object are what its code layout decides; the others' move
with where warden's code evicts theirs.
"""
import collections
import re
import sys

NAME = re.compile(r"\((\d+)\)(?: (.*))?")


def by_object(path):
    """{object: [Ir, I1mr]} of a callgrind file (name compression resolved)."""
    names = {"ob": {}, "fn": {}}
    cost = collections.defaultdict(lambda: [0, 0])
    ob, cur_ob, after_call = None, None, False
    npos, ir, i1 = 1, 0, -1

    def name(kind, text):
        m = NAME.match(text)
        if not m:
            return text
        if m.group(2) is not None:
            names[kind][m.group(1)] = m.group(2)
        return names[kind].get(m.group(1), text)

    for line in open(path, encoding="utf-8", errors="replace"):
        if line.startswith("events:"):
            events = line.split()[1:]
            ir = events.index("Ir")
            i1 = events.index("I1mr") if "I1mr" in events else -1
        elif line.startswith("positions:"):
            npos = len(line.split()) - 1
        elif line.startswith("ob="):
            cur_ob = name("ob", line[3:].strip())
        elif line.startswith("cob="):
            name("ob", line[4:].strip())
        elif line.startswith("fn="):
            ob = cur_ob
        elif line.startswith("calls="):
            after_call = True  # the next cost line is the call's, not self
        elif line[:1].isdigit() or line[:1] in "+-*":
            if after_call:
                after_call = False
                continue
            values = line.split()[npos:]
            c = cost[ob]
            if len(values) > ir:
                c[0] += int(values[ir])
            if 0 <= i1 < len(values):
                c[1] += int(values[i1])
    return cost


def main():
    base, profile, n = by_object(sys.argv[1]), by_object(sys.argv[2]), float(sys.argv[3])
    rows = []
    for ob in set(base) | set(profile):
        b, p = base.get(ob, [0, 0]), profile.get(ob, [0, 0])
        rows.append(((p[0] - b[0]) / n, (p[1] - b[1]) / n, ob or "?"))
    rows.sort(key=lambda r: -abs(r[1]))
    for ir, i1, ob in rows:
        if abs(ir) >= 1 or abs(i1) >= 0.5:
            print("%8.0f %7.1f  %s" % (ir, i1, ob))


if __name__ == "__main__":
    main()
