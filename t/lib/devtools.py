#!/usr/bin/python3
"""Headless Chromium driven over its DevTools protocol on a pipe
(--remote-debugging-pipe: fd 3 in, fd 4 out, messages ended by a NUL
byte), with nothing but the standard library: the browser of
t/21-dashboard-browser.t (dashboard.py) and t/23-challenge-browser.t
(challenge_browser.py); and the admin API they check the browser's doings
against.
"""

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request


CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


class Failure(Exception):
    pass


class Browser:
    """Chromium with one page, over the DevTools pipe."""

    def __init__(self):
        self.profile = tempfile.mkdtemp(prefix="warden-chromium-")
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()

        def fds():
            # fds 3 and 4 in the child, inheritable (dup2 clears CLOEXEC)
            a, b = os.dup(to_chrome_r), os.dup(from_chrome_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
             "--disable-dev-shm-usage", "--remote-debugging-pipe",
             "--user-data-dir=" + self.profile, "--no-first-run",
             "--no-default-browser-check", "--disable-extensions",
             "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--mute-audio", "--hide-scrollbars",
             "--force-color-profile=srgb", "--lang=en-US", "about:blank"],
            close_fds=False, preexec_fn=fds, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=dict(os.environ, HOME=self.profile, LANG="en_US.UTF-8"))
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.buf = b""
        self.next_id = 0
        self.events = []
        self.session = None
        target = self.call("Target.createTarget", {"url": "about:blank"},
                           session=False)
        self.session = self.call("Target.attachToTarget", {
            "targetId": target["targetId"], "flatten": True},
            session=False)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(domain + ".enable")

    def close(self):
        try:
            self.call("Browser.close", session=False, timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self.to_chrome, self.from_chrome):
            os.close(fd)
        shutil.rmtree(self.profile, ignore_errors=True)

    def _read(self, deadline):
        left = deadline - time.time()
        if left <= 0 or not select.select([self.from_chrome], [], [], left)[0]:
            raise Failure("no answer from chromium")
        data = os.read(self.from_chrome, 1 << 16)
        if not data:
            raise Failure("chromium exited")
        self.buf += data

    def _messages(self, deadline):
        while True:
            while b"\0" in self.buf:
                msg, self.buf = self.buf.split(b"\0", 1)
                yield json.loads(msg)
            self._read(deadline)

    def call(self, method, params=None, session=True, timeout=30):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self.session
        os.write(self.to_chrome, json.dumps(msg).encode() + b"\0")
        for m in self._messages(time.time() + timeout):
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise Failure("%s: %s" % (method, m["error"]))
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, method, timeout=20):
        for i, m in enumerate(self.events):
            if m.get("method") == method:
                return self.events.pop(i)
        for m in self._messages(time.time() + timeout):
            if m.get("method") == method:
                return m
            self.events.append(m)

    # ---- the page

    def js(self, expr):
        """The value of expression `expr` (awaited when a promise)."""
        r = self.call("Runtime.evaluate", {
            "expression": expr, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise Failure("js %r: %s" % (expr, d.get("exception", {})
                                         .get("description", d.get("text"))))
        return r["result"].get("value")

    def wait(self, expr, what, timeout=10):
        deadline = time.time() + timeout
        while True:
            v = self.js(expr)
            if v:
                return v
            if time.time() > deadline:
                raise Failure("timed out waiting for " + what)
            time.sleep(0.1)

    def goto(self, url):
        """Loads `url` afresh, even when only its #fragment changes (the
        tab's sessionStorage stays)."""
        for u in ("about:blank", url):
            self.events = [m for m in self.events
                           if m.get("method") != "Page.loadEventFired"]
            self.call("Page.navigate", {"url": u})
            self.wait_event("Page.loadEventFired")

    def viewport(self, size, mobile=False):
        self.call("Emulation.setDeviceMetricsOverride", {
            "width": size[0], "height": size[1],
            "deviceScaleFactor": 2 if mobile else 1, "mobile": mobile})
        self.call("Emulation.setTouchEmulationEnabled", {"enabled": mobile})

    def visible(self, selector):
        return self.js("""(() => { const e = document.querySelector(%s);
            return !!e && e.getClientRects().length > 0; })()"""
                       % json.dumps(selector))

    def click(self, selector):
        box = self.js("""(() => {
            const e = document.querySelector(%s);
            if (!e) return null;
            e.scrollIntoView({block: 'center'});
            const r = e.getBoundingClientRect();
            return [r.x + r.width / 2, r.y + r.height / 2, r.width];
        })()""" % json.dumps(selector))
        if not box or not box[2]:
            raise Failure("nothing visible to click at " + selector)
        x, y = box[0], box[1]
        self.call("Input.dispatchMouseEvent",
                  {"type": "mouseMoved", "x": x, "y": y})
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", {
                "type": kind, "x": x, "y": y, "button": "left",
                "clickCount": 1})

    def type(self, selector, text):
        """Replaces the field's text, as typed."""
        self.click(selector)
        self.js("document.querySelector(%s).select()" % json.dumps(selector))
        self.call("Input.dispatchKeyEvent",
                  {"type": "keyDown", "key": "Backspace",
                   "code": "Backspace", "windowsVirtualKeyCode": 8})
        self.call("Input.dispatchKeyEvent",
                  {"type": "keyUp", "key": "Backspace", "code": "Backspace",
                   "windowsVirtualKeyCode": 8})
        if text:
            self.call("Input.insertText", {"text": text})

    def enter(self):
        for kind in ("keyDown", "keyUp"):
            p = {"type": kind, "key": "Enter", "code": "Enter",
                 "windowsVirtualKeyCode": 13}
            if kind == "keyDown":
                p["text"] = "\r"
            self.call("Input.dispatchKeyEvent", p)

    def choose(self, selector, value):
        """Picks an option of a <select> (its pop-up is not drawn
        headless): focus, set, and the change event a user's pick fires."""
        self.click(selector)
        self.js("""(() => { const s = document.querySelector(%s);
            s.value = %s; s.dispatchEvent(new Event('change', {bubbles: true}));
        })()""" % (json.dumps(selector), json.dumps(value)))

    def text(self, selector="body"):
        return self.js("(document.querySelector(%s) || {}).innerText || ''"
                       % json.dumps(selector))

    def rows(self, table):
        """The rows of a table's body, as lists of cell texts."""
        return self.js("""[...document.querySelectorAll(%s)]
            .map(tr => [...tr.cells].map(td => td.innerText.trim()))"""
                       % json.dumps("#%s tbody tr" % table))

    def screenshot(self, path):
        """What the screen shows, from the top of the page."""
        self.js("document.activeElement && document.activeElement.blur();"
                " window.scrollTo(0, 0)")
        self.call("Input.dispatchMouseEvent",
                  {"type": "mouseMoved", "x": 0, "y": 0})
        time.sleep(0.3)  # let the last frame settle
        shot = self.call("Page.captureScreenshot", {"format": "png"})
        with open(path, "wb") as f:
            f.write(base64.b64decode(shot["data"]))

    def problems(self):
        """Errors the page met: exceptions, CSP violations, console
        errors (not the 401s it was told to expect: network entries)."""
        out = []
        for m in self.events:
            p = m.get("params", {})
            if m.get("method") == "Runtime.exceptionThrown":
                out.append(p["exceptionDetails"].get("text", "exception"))
            elif m.get("method") == "Log.entryAdded":
                e = p["entry"]
                if e["level"] == "error" and e["source"] != "network":
                    out.append("%s: %s" % (e["source"], e["text"]))
            elif m.get("method") == "Runtime.consoleAPICalled":
                if p["type"] in ("error", "assert"):
                    out.append("console: %s" % p["args"])
        return out


class Api:
    """The admin API, called directly to check what the page did."""

    def __init__(self, base, token):
        self.base, self.token = base, token

    def call(self, method, path, body=None):
        req = urllib.request.Request(
            self.base + path, method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": "Bearer " + self.token,
                     "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def text(self, path):
        """A GET's body as text (the Prometheus metrics)."""
        req = urllib.request.Request(
            self.base + path, headers={"Authorization": "Bearer " + self.token})
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.read().decode()

    def blocked(self):
        return {b["ip"]: b for b in
                self.call("GET", "/security/blocked-ips")[1]["blocked_ips"]}
