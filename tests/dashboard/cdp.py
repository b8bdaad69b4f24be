#!/usr/bin/env python3
"""Drives a running headless Chromium over the DevTools protocol (stdlib only).

Used by tests/dashboard.rs: the test starts Chromium itself (so it can kill it
by PID) with --remote-debugging-port=0 and a fresh --user-data-dir, and runs

    cdp.py --profile DIR --url URL --seconds 6 --screenshot OUT.png

This script finds the DevTools port in DIR/DevToolsActivePort, attaches to the
page target, loads URL, lets the page run for SECONDS of real time (plus up to
--extra seconds while chart-rate has fewer than --min-points points), then
prints one JSON object describing the dashboard's DOM on stdout and saves a
PNG screenshot. Diagnostics go to stderr; the exit code is non-zero on failure.
"""

import argparse
import base64
import hashlib
import json
import os
import socket
import struct
import sys
import time
import urllib.request

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# DevTools listens on 127.0.0.1: never go through an http_proxy from the environment.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class WebSocket:
    """A minimal RFC 6455 client: text frames out (masked), frames in."""

    def __init__(self, host, port, path, timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("DevTools closed the connection during the handshake")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        if " 101 " not in lines[0] + " ":
            raise ConnectionError(f"websocket upgrade refused: {lines[0]}")
        want = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        accept = [l.split(":", 1)[1].strip() for l in lines[1:] if l.lower().startswith("sec-websocket-accept:")]
        if accept != [want]:
            raise ConnectionError("bad Sec-WebSocket-Accept")

    def _send_frame(self, opcode, payload):
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def send_text(self, text):
        self._send_frame(0x1, text.encode())

    def _read(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(1 << 16)
            except socket.timeout:
                raise TimeoutError from None
            if not chunk:
                raise ConnectionError("DevTools closed the connection")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_text(self, deadline):
        """The next text message; TimeoutError at the deadline."""
        parts = []
        while True:
            b0, b1 = self._read(2, deadline)
            fin, opcode = b0 & 0x80, b0 & 0x0F
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._read(2, deadline))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._read(8, deadline))[0]
            mask = self._read(4, deadline) if b1 & 0x80 else None
            payload = self._read(n, deadline)
            if mask:
                payload = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
            if opcode == 0x8:
                raise ConnectionError("DevTools closed the websocket")
            if opcode == 0x9:
                self._send_frame(0xA, payload)
                continue
            if opcode in (0x0, 0x1, 0x2):
                parts.append(payload)
                if fin:
                    return b"".join(parts).decode()

    def close(self):
        try:
            self._send_frame(0x8, b"")
        except OSError:
            pass
        self.sock.close()


class Page:
    """One page target: commands with ids, events collected on the way."""

    def __init__(self, ws):
        self.ws = ws
        self.seq = 0
        self.events = []
        self.problems = []  # uncaught exceptions and console errors from the page

    def _event(self, msg):
        method = msg.get("method")
        params = msg.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = params.get("exceptionDetails", {})
            text = d.get("exception", {}).get("description") or d.get("text", "exception")
            self.problems.append(f"exception: {text}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.problems.append(f"console.{params.get('type')}: {args}")
        self.events.append(method)

    def call(self, method, params=None, timeout=30.0):
        self.seq += 1
        my = self.seq
        self.ws.send_text(json.dumps({"id": my, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = json.loads(self.ws.recv_text(deadline))
            except TimeoutError:
                raise TimeoutError(f"no answer to {method} within {timeout} s") from None
            if msg.get("id") == my:
                if "error" in msg:
                    raise RuntimeError(f"{method} failed: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self._event(msg)

    def pump(self, until, stop_on=None, since=0):
        """Handles events until the monotonic time `until`, or until event
        `stop_on` (counting those already seen from index `since`)."""
        if stop_on and stop_on in self.events[since:]:
            return True
        while True:
            try:
                msg = json.loads(self.ws.recv_text(until))
            except TimeoutError:
                return False
            if "method" in msg:
                self._event(msg)
                if stop_on and msg["method"] == stop_on:
                    return True

    def evaluate(self, expr):
        r = self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in r:
            raise RuntimeError(f"evaluate failed: {r['exceptionDetails']}")
        return r.get("result", {}).get("value")


# What the test looks at, read from the live DOM.
PROBE = r"""
(() => {
  const chart = id => {
    const c = document.getElementById(id);
    if (!c) return null;
    const n = s => (s === undefined || s === "" ? null : Number(s));
    return {points: n(c.dataset.points), last: n(c.dataset.last), max: n(c.dataset.max),
            width: c.width, height: c.height};
  };
  return {
    title: document.title,
    polls: Number(document.body.dataset.polls || 0),
    connected: document.body.dataset.connected || null,
    charts: {rate: chart("chart-rate"), errors: chart("chart-errors"), latency: chart("chart-latency")},
    clusters: [...document.querySelectorAll("tr[data-cluster]")].map(r => r.dataset.cluster),
    hosts: [...document.querySelectorAll("tr[data-host]")].map(r => ({
      address: r.dataset.host, healthy: r.dataset.healthy, cluster: r.dataset.clusterName || null})),
    listeners: [...document.querySelectorAll("tr[data-listener]")].map(r => r.dataset.listener),
    text: document.body.innerText.slice(0, 4000),
  };
})()
"""


def devtools_port(profile, timeout):
    path = os.path.join(profile, "DevToolsActivePort")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                first = f.readline().strip()
            if first.isdigit():
                return int(first)
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"Chromium wrote no {path} within {timeout} s (did it start?)")


def page_target(port, timeout):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            with HTTP.open(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                targets = json.load(r)
            pages = [t for t in targets if t.get("type") == "page" and t.get("webSocketDebuggerUrl")]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
            req = urllib.request.Request(f"http://127.0.0.1:{port}/json/new?about:blank", method="PUT")
            HTTP.open(req, timeout=5).close()
        except OSError as e:
            last = e
        time.sleep(0.1)
    raise TimeoutError(f"no page target on DevTools port {port}: {last}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--profile", help="Chromium --user-data-dir (holds DevToolsActivePort)")
    where.add_argument("--port", type=int, help="DevTools port")
    ap.add_argument("--url", required=True)
    ap.add_argument("--seconds", type=float, default=6.0, help="real time to let the page run after load")
    ap.add_argument("--min-points", type=int, default=0, help="then wait while chart-rate has fewer points")
    ap.add_argument("--extra", type=float, default=10.0, help="at most this much longer for --min-points")
    ap.add_argument("--screenshot", help="PNG to write")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=900)
    a = ap.parse_args()

    port = a.port or devtools_port(a.profile, 30)
    ws_url = page_target(port, 30)
    rest = ws_url.split("://", 1)[1]
    hostport, path = rest.split("/", 1)
    host, wsport = hostport.rsplit(":", 1)
    ws = WebSocket(host, int(wsport), "/" + path)
    page = Page(ws)
    try:
        page.call("Page.enable")
        page.call("Runtime.enable")
        page.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": a.width, "height": a.height, "deviceScaleFactor": 1, "mobile": False},
        )
        mark = len(page.events)
        nav = page.call("Page.navigate", {"url": a.url})
        if nav.get("errorText"):
            raise RuntimeError(f"navigation to {a.url} failed: {nav['errorText']}")
        if not page.pump(time.monotonic() + 20, stop_on="Page.loadEventFired", since=mark):
            raise TimeoutError(f"{a.url} did not load within 20 s")
        page.pump(time.monotonic() + a.seconds)
        if a.min_points:
            deadline = time.monotonic() + a.extra
            while time.monotonic() < deadline:
                pts = page.evaluate("Number(document.getElementById('chart-rate')?.dataset.points || 0)")
                if pts is not None and pts >= a.min_points:
                    break
                page.pump(time.monotonic() + 0.5)
        result = page.evaluate(PROBE)
        if a.screenshot:
            shot = page.call("Page.captureScreenshot", {"format": "png"})
            d = os.path.dirname(a.screenshot)
            if d:
                os.makedirs(d, exist_ok=True)
            with open(a.screenshot, "wb") as f:
                f.write(base64.b64decode(shot["data"]))
        result["problems"] = page.problems
        json.dump(result, sys.stdout)
        sys.stdout.write("\n")
    finally:
        ws.close()


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # one line for the test's failure message
        print(f"cdp.py: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(2)
