#!/usr/bin/python3
"""A challenged site in headless Chromium (t/23-challenge-browser.t):

    challenge_browser.py BASE_URL SITE TOKEN

BASE_URL serves the site under SITE (/site: warden:check() there,
trusted_proxies 127.0.0.1) and warden:api() at /api. Clients are told apart by the
X-Forwarded-For header each one sends. The browser is challenged, solves
the proof of work by itself and ends on the page it asked for; with
JavaScript off it sees the explanation; curl and dirb (a scanner that
names itself a browser) never get the site's pages and dirb ends up
blocked.

Prints "ok <step>" or "FAIL <step>: <why>" per step, "time ..." lines
with what was measured, and last "exit 0" or "exit 1".
"""

import os
import re
import subprocess
import sys
import time

from devtools import Api, Browser, Failure

BROWSER_IP = "192.0.2.77"
NOSCRIPT_IP = "192.0.2.78"
CURL_IP = "192.0.2.79"
SCANNER_IP = "192.0.2.80"


class Site(Api):
    """The admin API, with what this test asks of it."""

    def challenge(self, ip):
        self.call("POST", "/security/blocked-ips",
                  {"ip": ip, "action": "challenge", "reason": "browser test"})

    def counters(self):
        text = self.text("/metrics")
        out = {}
        for k in ("issued", "solved", "failed"):
            m = re.search(r'warden_challenges_total\{result="%s"\} (\d+)' % k,
                          text)
            out[k] = int(m.group(1)) if m else -1
        m = re.search(r"warden_challenge_solve_milliseconds_total (\d+)", text)
        out["solve_ms"] = int(m.group(1)) if m else -1
        return out

    def blocked_ip(self, ip):
        b = self.blocked().get(ip)
        return [b] if b else []


def settle(b, expr, what, timeout):
    """Waits for `expr` across navigations (a page being replaced has no
    context to evaluate in for a moment)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if b.js(expr):
                return
        except Failure:
            pass
        time.sleep(0.05)
    raise Failure("timed out waiting for " + what)


def run(base, site, token):
    api = Site(base + "/api", token)
    site = base + site
    for ip in (BROWSER_IP, NOSCRIPT_IP, CURL_IP, SCANNER_IP):
        api.challenge(ip)
    b = Browser()
    steps = []

    def step(name, fn):
        fn()
        print("ok " + name, flush=True)
        steps.append(name)

    try:
        b.call("Network.enable")

        def as_client(ip):
            b.call("Network.setExtraHTTPHeaders",
                   {"headers": {"X-Forwarded-For": ip}})

        def solves():
            as_client(BROWSER_IP)
            before = api.counters()
            t0 = time.time()
            b.call("Page.navigate", {"url": site + "/article?id=3"})
            settle(b, "document.body && document.body.innerText"
                   " .includes('article 3')", "the article", 150)
            took = time.time() - t0
            where = b.js("location.pathname + location.search")
            if where != "/site/article?id=3":
                raise Failure("ended on " + where)
            after = api.counters()
            if after["issued"] - before["issued"] != 1 or \
                    after["solved"] - before["solved"] != 1:
                raise Failure("counters %r -> %r" % (before, after))
            line = ("time page to article %.2f s; server's solve time %d ms"
                    % (took, after["solve_ms"] - before["solve_ms"]))
            print(line, flush=True)
            times = os.environ.get("WARDEN_CHALLENGE_TIMES")
            if times:
                with open(times, "a") as f:
                    f.write(line + "\n")

        step("the browser solves the challenge and ends on the page it"
             " asked for", solves)

        def cookie():
            cs = [c for c in b.call("Network.getCookies")["cookies"]
                  if c["name"] == "warden_pass"]
            if len(cs) != 1 or not cs[0]["httpOnly"] or \
                    cs[0]["sameSite"] != "Lax" or cs[0]["path"] != "/":
                raise Failure("cookie %r" % cs)

        step("its cookie is HttpOnly, SameSite=Lax, Path=/", cookie)

        def no_second():
            before = api.counters()
            b.goto(site + "/article?id=4")
            if "article 4" not in b.text():
                raise Failure("shows " + b.text()[:80])
            if api.counters()["issued"] != before["issued"]:
                raise Failure("challenged again")

        step("the next page loads at once: no second challenge", no_second)

        def clean():
            bad = [p for p in b.problems()
                   if "429" not in p and "Too Many" not in p]
            if bad:
                raise Failure("; ".join(bad))

        step("no script error and no CSP violation", clean)

        def noscript():
            b.call("Network.clearBrowserCookies")
            as_client(NOSCRIPT_IP)
            b.call("Emulation.setScriptExecutionDisabled", {"value": True})
            b.goto(site + "/article?id=5")
            text = b.text()
            b.call("Emulation.setScriptExecutionDisabled", {"value": False})
            if "needs JavaScript" not in text or "article 5" in text:
                raise Failure("shows " + text[:120])

        step("without JavaScript: the plain explanation", noscript)

        def curl():
            for accept in ("*/*", "text/html"):
                out = subprocess.run(
                    ["curl", "-s", "-H", "X-Forwarded-For: " + CURL_IP,
                     "-H", "Accept: " + accept, "-w", "\n%{http_code}",
                     site + "/article?id=6"],
                    capture_output=True, text=True, timeout=20).stdout
                body, code = out.rsplit("\n", 1)
                if code != "429" or "article 6" in body:
                    raise Failure("curl (%s): %s" % (accept, code))

        step("curl gets 429, never the page", curl)

        def scanner():
            words = "/tmp/warden-challenge-words"
            with open(words, "w") as f:
                f.write("\n".join("%s%d" % (w, i) for i in range(10)
                                  for w in ("admin", "login", "backup",
                                            "config", "article", "old"))
                        + "\n")
            out = subprocess.run(
                ["dirb", site + "/", words, "-r", "-S", "-w",
                 "-H", "X-Forwarded-For: " + SCANNER_IP],
                capture_output=True, text=True, timeout=120,
                env={"HOME": "/tmp", "PATH": "/usr/bin:/bin"}).stdout
            if "CODE:200" in out:
                raise Failure("dirb found pages: " + out[-300:])
            if not api.blocked_ip(SCANNER_IP) or \
                    "action" in api.blocked_ip(SCANNER_IP)[0]:
                raise Failure("dirb not blocked: %r; %s"
                              % (api.blocked_ip(SCANNER_IP), out[-400:]))

        step("dirb finds nothing and ends up blocked", scanner)
        return 0
    except Failure as e:
        print("FAIL after %d steps: %s" % (len(steps), e), flush=True)
        return 1
    finally:
        b.close()


def main():
    try:
        code = run(sys.argv[1], sys.argv[2], sys.argv[3])
    except Exception as e:  # anything unexpected: a failure, not a hang
        print("FAIL: %r" % e, flush=True)
        code = 1
    print("exit %d" % code, flush=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
