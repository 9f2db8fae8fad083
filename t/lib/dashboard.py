#!/usr/bin/python3
"""Drives the dashboard (<api>/ui/) in headless Chromium, as an operator
would: t/21-dashboard-browser.t runs it against a test nginx.

    dashboard.py API_URL TOKEN [SHOTS_DIR]

API_URL is the location serving warden:api() (http://127.0.0.1:1984/api).
The browser is driven over Chromium's DevTools protocol on a pipe
(--remote-debugging-pipe: fd 3 in, fd 4 out, messages ended by a NUL
byte), so nothing but the standard library is needed. Clicks and typing
are real input events (Input.dispatchMouseEvent, Input.insertText); what
the page shows is read from its DOM, and what it changed is checked
against the API directly.

Prints one line per step, "ok <step>" or "FAIL <step>: <why>" (then
stops), and last "exit 0" or "exit 1" (its exit code), once the browser
has exited. With SHOTS_DIR, saves screenshots of
the main views at desktop and phone widths there (docs/ keeps them).
"""

import json
import os
import sys
import time

from devtools import Api, Browser, Failure

DESKTOP = (1280, 860)
PHONE = (390, 844)


def log_line(ip, path, status, agent="Mozilla/5.0 (X11; Linux x86_64)"):
    now = time.gmtime()
    return '%s - - [%s +0000] "GET %s HTTP/1.1" %d 153 "-" "%s"' % (
        ip, time.strftime("%d/%b/%Y:%H:%M:%S", now), path, status, agent)


def seed(api):
    """Events and blocks of several kinds, through the API."""
    lines = []
    for ip, n in (("198.51.100.9", 6), ("198.51.100.14", 5),
                  ("2001:db8:7::1", 4)):
        lines += [log_line(ip, "/wp-login.php?x=%d" % i, 404)
                  for i in range(n)]
    lines += [log_line("203.0.113.50", "/", 200, "sqlmap/1.7")]
    lines += [log_line("192.0.2.201", "/admin/login", 401) for _ in range(6)]
    status, r = api.call("POST", "/security/analyze", {"lines": lines})
    if status != 200 or not r["tripped"]:
        raise Failure("seeding events: %s %s" % (status, r))
    for ip, duration, reason in (("192.0.2.77", "6h", "seeded: abuse report"),
                                 ("10.20.0.0/16", 0, "seeded: bad network")):
        status, r = api.call("POST", "/security/blocked-ips",
                             {"ip": ip, "duration": duration,
                              "reason": reason})
        if status != 201:
            raise Failure("seeding a block: %s %s" % (status, r))


def run(base, token, shots):
    api = Api(base, token)
    page = base + "/ui/"
    seed(api)
    b = Browser()
    steps = []

    def step(name, fn):
        try:
            fn()
        except Failure as e:
            print("FAIL %s: %s" % (name, e), flush=True)
            raise
        print("ok " + name, flush=True)
        steps.append(name)

    def shot(name):
        if shots:
            b.screenshot(os.path.join(shots, "dashboard-%s.png" % name))

    def nothing_shown():
        if b.visible("#app") or b.visible("#tabs"):
            raise Failure("the dashboard shows without a valid token")
        body = b.text()
        for secret in ("192.0.2.77", "198.51.100.9", "seeded"):
            if secret in body:
                raise Failure("%s is on the page without a valid token"
                              % secret)
        n = b.js("document.querySelectorAll('#app td, #app svg').length")
        if n:
            raise Failure("%d data elements are in the page" % n)

    try:
        b.viewport(DESKTOP)

        def login_form():
            b.goto(page)
            b.wait("!document.getElementById('login').hidden", "the form")
            nothing_shown()
            if b.js("sessionStorage.length"):
                raise Failure("something is in sessionStorage")
        step("without a token: the sign-in form only", login_form)
        shot("login")

        def wrong_token():
            b.type("#token", "not-the-token")
            b.enter()
            b.wait("document.getElementById('login-msg').innerText"
                   ".includes('refused')", "the refusal")
            msg = b.text("#login-msg")
            if "invalid token" not in msg:
                raise Failure("message: " + msg)
            nothing_shown()
            if b.js("sessionStorage.length"):
                raise Failure("a refused token was kept")
        step("a wrong token: refused, nothing shown", wrong_token)

        def sign_in():
            b.type("#token", token)
            b.click("#login-form button")
            b.wait("document.querySelectorAll('#offenders tbody tr')"
                   ".length > 1", "the overview")
            if b.visible("#login"):
                raise Failure("the form is still shown")
            if b.js("Object.values(sessionStorage)[0]") != token:
                raise Failure("the token is not kept in sessionStorage")
            cards = b.text("#cards")
            if "addresses blocked" not in cards:
                raise Failure("cards: " + cards)
            offenders = [r[0] for r in b.rows("offenders")]
            if "198.51.100.9" not in offenders:
                raise Failure("top offenders: %s" % offenders)
            bars = b.js("document.querySelectorAll('#chart rect.t-suspicious,"
                        " #chart rect.t-blocked_ip').length")
            if not bars:
                raise Failure("no bar in the chart")
            total = b.text("#chart-total")
            if "blocks made" not in total or total.startswith("0 events"):
                raise Failure("chart total: " + total)
        step("the right token: the overview, offenders and chart", sign_in)
        shot("overview")

        def day_chart():
            b.click("#range button[data-range=day]")
            b.wait("document.querySelector('#chart svg')"
                   ".getAttribute('aria-label').includes('15 minutes')",
                   "the day's chart")
            b.click("#range button[data-range=hour]")
            b.wait("document.querySelector('#chart svg')"
                   ".getAttribute('aria-label').includes('minute')",
                   "the hour's chart")
        step("the chart over the last day and hour", day_chart)

        target = "198.51.100.23"

        def block():
            b.click("nav a[data-view=blocks]")
            b.wait("!document.getElementById('view-blocks').hidden",
                   "the blocks view")
            b.type("#block-ip", target)
            b.type("#block-duration", "2h")
            b.type("#block-reason", "dashboard test")
            b.click("#block-submit")
            b.wait("document.getElementById('block-msg').innerText"
                   ".startsWith('Blocked')", "the answer")
            msg = b.text("#block-msg")
            if not msg.startswith("Blocked %s for 1h 59m" % target) and \
                    not msg.startswith("Blocked %s for 2h" % target):
                raise Failure("message: " + msg)
            got = api.blocked().get(target)
            if not got or got["reason"] != "dashboard test" or \
                    got["source"] != "manual" or not 7000 < got["remaining"] <= 7200:
                raise Failure("the API has %s" % got)
        step("block an address with the form", block)

        def listed():
            b.wait("[...document.querySelectorAll('#blocks tbody tr')]"
                   ".some(r => r.dataset.ip === %s)" % json.dumps(target),
                   "the new block in the list")
            row = [r for r in b.rows("blocks") if r[0] == target][0]
            if row[1] != "manual" or row[2] != "dashboard test" or \
                    not row[3].startswith("in 1h 59m"):
                raise Failure("row: %s" % row)
            b.type("#blocks-search", "dashboard")
            rows = b.rows("blocks")
            if [r[0] for r in rows] != [target]:
                raise Failure("search 'dashboard': %s" % rows)
            b.type("#blocks-search", "no-such-block")
            if b.rows("blocks") != [["No block matches."]]:
                raise Failure("search: %s" % b.rows("blocks"))
            b.type("#blocks-search", "")
            b.choose("#blocks-source", "auto")
            sources = {r[1] for r in b.rows("blocks")}
            if sources != {"auto"}:
                raise Failure("source auto: %s" % sources)
            b.choose("#blocks-source", "")
            if len(b.rows("blocks")) != len(api.blocked()):
                raise Failure("not every block is listed")
        step("see it listed; search and filter the list", listed)
        shot("blocks")

        def unblock():
            sel = "#blocks tbody tr[data-ip=%s] button" % json.dumps(target)
            b.click(sel)
            if b.text(sel) != "Confirm unblock":
                raise Failure("the first click did not ask to confirm")
            if target not in api.blocked():
                raise Failure("unblocked on the first click")
            b.click(sel)
            b.wait("!document.querySelector(%s)" % json.dumps(sel),
                   "the row to go")
            if not b.text("#unblock-msg").startswith("Unblocked " + target):
                raise Failure("message: " + b.text("#unblock-msg"))
            if target in api.blocked():
                raise Failure("still blocked in the API")
        step("unblock it (two clicks)", unblock)

        def events():
            b.click("nav a[data-view=events]")
            b.wait("document.querySelectorAll('#events tbody tr[data-type]')"
                   ".length > 3", "the events")
            types = set(b.js("[...document.querySelectorAll('#events tbody"
                             " tr')].map(r => r.dataset.type)"))
            if not {"suspicious", "blocked_ip"} <= types:
                raise Failure("types: %s" % types)
            shot("events")
            b.choose("#ev-type", "blocked_ip")
            b.type("#ev-ip", target)
            b.enter()
            b.wait("[...document.querySelectorAll('#events tbody tr')]"
                   ".every(r => r.dataset.ip === %s)" % json.dumps(target),
                   "the filtered events")
            actions = [r[6] for r in b.rows("events")]
            if actions != ["unblocked", "blocked for 2h"]:
                raise Failure("actions: %s" % actions)
            b.choose("#ev-type", "suspicious")
            b.wait("!!document.querySelector('#events tbody td.empty')",
                   "no event")
            b.choose("#ev-type", "")
            b.type("#ev-ip", "")
            b.choose("#ev-since", "900")
            b.enter()
            b.wait("document.querySelectorAll('#events tbody tr[data-type]')"
                   ".length > 3", "every recent event")
            b.type("#ev-ip", "nope")
            b.enter()
            b.wait("document.getElementById('events-msg').innerText",
                   "the error")
            msg = b.text("#events-msg")
            if msg != "ip: invalid IP address or CIDR 'nope' [ip]":
                raise Failure("message: " + msg)
            b.type("#ev-ip", "")
            b.enter()
        step("filter events by type, address and time", events)

        def counters():
            b.click("nav a[data-view=counters]")
            b.wait("document.querySelectorAll('#counters tbody tr')"
                   ".length > 10", "the counters")
            names = [r[0] for r in b.rows("counters")]
            for n in ("auto_blocks", "dict_free_bytes", "detector_tracked",
                      "events_blocked_ip"):
                if n not in names:
                    raise Failure("%s is not listed" % n)
            if "lua_shared_dict warden" not in b.text("#shm"):
                raise Failure("shm: " + b.text("#shm"))
            if "clients tracked" not in b.text("#detector"):
                raise Failure("detector: " + b.text("#detector"))
        step("the counters, shared memory and detector table", counters)
        shot("counters")

        def phone():
            b.viewport(PHONE, mobile=True)
            for view in ("overview", "blocks", "events"):
                b.goto(page + "#" + view)
                b.wait("!document.getElementById('view-%s').hidden && "
                       "document.querySelectorAll('#view-%s tbody tr')"
                       ".length > 0" % (view, view), "the " + view)
                over = b.js("document.documentElement.scrollWidth"
                            " - window.innerWidth")
                if over > 0:
                    raise Failure("%s is %dpx wider than the phone"
                                  % (view, over))
                shot("phone-" + view)
            b.viewport(DESKTOP)
        step("on a phone: still signed in, no sideways scrolling", phone)

        def revoked():
            b.js("sessionStorage.setItem(Object.keys(sessionStorage)[0],"
                 " 'revoked-token')")
            b.goto(page + "#blocks")
            b.wait("!document.getElementById('login').hidden", "the form")
            if "refused" not in b.text("#login-msg"):
                raise Failure("message: " + b.text("#login-msg"))
            nothing_shown()
        step("a token that stops working: back to the form", revoked)

        def sign_out():
            b.type("#token", token)
            b.enter()
            b.wait("!document.getElementById('app').hidden", "the dashboard")
            b.click("#logout")
            b.wait("!document.getElementById('login').hidden", "the form")
            nothing_shown()
            if b.js("sessionStorage.length"):
                raise Failure("the token is still kept")
        step("sign out", sign_out)

        def clean():
            problems = b.problems()
            if problems:
                raise Failure("; ".join(problems))
        step("no script error and no CSP violation", clean)
    finally:
        b.close()
    return steps


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    # only stdin, stdout and stderr from whoever started us (an nginx
    # worker's sockets must not live on in the browser)
    os.closerange(3, 1 << 16)
    shots = sys.argv[3] if len(sys.argv) > 3 else None
    if shots:
        os.makedirs(shots, exist_ok=True)
    code = 0
    try:
        run(sys.argv[1].rstrip("/"), sys.argv[2], shots)
    except Failure:
        code = 1
    except Exception as e:
        print("FAIL: %s: %s" % (type(e).__name__, e), flush=True)
        code = 1
    # the last line, once the browser is gone
    print("exit %d" % code, flush=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
