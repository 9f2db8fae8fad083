#!/usr/bin/python3
"""Reads pages with a real headless Chromium, as fast as they load, over the
DevTools protocol (bench/quality.sh).

    quality-browser.py DEVTOOLS_PORT STREAMS URL...

STREAMS browsers read the URLs in turn, at the same time; every page is
opened in a new browser context (a fresh profile: empty cache and cookies,
as after a cache clear or on a new device), which loads the page and every
asset it pulls in (style sheets, scripts, fonts, icons, images), and is
closed once the page's load event has fired. Prints "pages=N failed=M
seconds=S". Needs python3-websocket.
"""
import json
import sys
import time
import urllib.request

import websocket

port, streams, urls = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
version = json.load(urllib.request.urlopen(
    "http://127.0.0.1:%d/json/version" % port))
ws = websocket.create_connection(version["webSocketDebuggerUrl"],
                                 timeout=1, suppress_origin=True)

next_id = 0
pending = {}   # message id -> (stream, step, page)


def send(method, params=None, session=None, stream=None, step=None):
    global next_id
    next_id += 1
    msg = {"id": next_id, "method": method, "params": params or {}}
    if session:
        msg["sessionId"] = session
    pending[next_id] = (stream, step, stream.page if stream else None)
    ws.send(json.dumps(msg))


class Stream:
    def __init__(self, n):
        self.n = n
        self.page = 0
        self.ctx = self.target = self.session = None
        self.started = 0.0

    def open(self):
        if self.page >= len(urls):
            return False
        self.started = time.time()
        send("Target.createBrowserContext", {"disposeOnDetach": True},
             stream=self, step="context")
        return True


state = [Stream(i) for i in range(streams)]
by_session = {}
done = failed = 0
t0 = time.time()
active = sum(1 for s in state if s.open())


def finish(s, ok):
    global done, failed, active
    done += 1
    failed += 0 if ok else 1
    by_session.pop(s.session, None)
    send("Target.disposeBrowserContext", {"browserContextId": s.ctx})
    s.page += 1
    if not s.open():
        active -= 1


while active > 0:
    try:
        msg = json.loads(ws.recv())
    except websocket.WebSocketTimeoutException:
        msg = {}
    if "id" in msg:
        s, step, page = pending.pop(msg["id"], (None, None, None))
        if s is None or page != s.page:
            continue  # not a stream's, or of a page given up
        if "error" in msg:
            sys.stderr.write("%s: %s\n" % (step, msg["error"]))
            finish(s, False)
        elif step == "context":
            s.ctx = msg["result"]["browserContextId"]
            # a window of its own: every page is visible, none throttled
            send("Target.createTarget", {"url": "about:blank",
                                         "browserContextId": s.ctx,
                                         "newWindow": True},
                 stream=s, step="target")
        elif step == "target":
            s.target = msg["result"]["targetId"]
            send("Target.attachToTarget", {"targetId": s.target,
                                           "flatten": True},
                 stream=s, step="attach")
        elif step == "attach":
            s.session = msg["result"]["sessionId"]
            by_session[s.session] = s
            send("Page.enable", session=s.session, stream=s, step="enable")
        elif step == "enable":
            send("Page.navigate", {"url": urls[s.page]}, session=s.session,
                 stream=s, step="navigate")
        elif step == "navigate" and msg["result"].get("errorText"):
            sys.stderr.write("%s: %s\n" % (urls[s.page],
                                           msg["result"]["errorText"]))
            finish(s, False)
    elif msg.get("method") == "Page.loadEventFired":
        s = by_session.get(msg.get("sessionId"))
        if s is not None:
            finish(s, True)
    for s in state:
        if s.page < len(urls) and time.time() - s.started > 60:
            sys.stderr.write("%s: timed out\n" % urls[s.page])
            finish(s, False)

print("pages=%d failed=%d seconds=%.1f" % (done, failed, time.time() - t0))
