#!/usr/bin/env python3
"""Real Python Dubbo 2 consumers for ferrymesh interop tests: PyPI dubbo-py
(`--lib dubbo-py`, the default) or PyPI dubbo-ssl-python (`--lib dubbo-ssl`, plain TCP, or
TLS with `--tls-ca CA_FILE`).
Connects directly (no registry) to HOST:PORT, makes COUNT calls of one method on one
connection and checks each outcome. Same flags and output as tests/interop/dubbo_client.js.

  python3 client.py HOST:PORT [--lib dubbo-py|dubbo-ssl] [--method echo|fail|slow|heartbeat]
      [--count N] [--message M] [--slow-ms MS] [--timeout-ms MS] [--service S] [--version V]
      [--group G] [--expect-error] [--expect-message T] [--expect-status N] [--expect-timeout]
      [--expect-server S] [--then-echo] [--deadline-ms MS]

  --method heartbeat  sends a Dubbo event request on the consumer's connection and waits
                      for the event response with the same id and status 20
  --expect-error      every call must get a Dubbo error response (not a timeout)
  --expect-message T  ... whose message contains T (implies --expect-error)
  --expect-status N   ... with wire status byte N (implies --expect-error unless N = 20)
  --expect-timeout    every call must get no answer within --timeout-ms (default 3000)
  --then-echo         afterwards one echo on the same connection must succeed; after slow
                      calls it waits until the late answers are due and echoes once more

Prints one JSON line per call ({"event":"call",...}), one per follow-up echo
({"event":"then_echo",...}), then {"event":"summary","ok":...}. Exit 0 iff every outcome
was the expected one; 1 otherwise; 2 on usage error; 3 if the overall deadline passed.

What the libraries do not offer is added around them, without changing their bytes:
- the wire status byte: both hide it (dubbo-ssl-python only names it in an exception),
  so their header parsing is wrapped to record (id, flag, status) per frame;
- dubbo-py's client hands out responses in arrival order without looking at the id, so a
  late answer to a timed-out call would be taken as the next call's answer: the wrapper
  waits for the answer whose id is the call's own and drops the others (as a Dubbo client
  must);
- dubbo-ssl-python cannot survive a late answer: its reader thread then fails on the
  missing waiter (KeyError) and stops consuming that connection. Its `slow` timeouts are
  therefore not exercised with --then-echo (the run would hang; the deadline catches it).
"""
import argparse
import json
import logging
import os
import queue
import struct
import sys
import threading
import time

SERVICE = "com.example.EchoService"

# ---- output ---------------------------------------------------------------------------------
failures = 0


def emit(line, ok):
    global failures
    line["ok"] = ok
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()
    if not ok:
        failures += 1
        sys.stderr.write("FAIL: " + json.dumps(line) + "\n")


def text(v):
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).decode(errors="replace")
    return v if v is None or isinstance(v, str) else str(v)


# ---- wire record: (id -> list of {flag, status, t}) ------------------------------------------
wire = {}
wire_lock = threading.Lock()


def record(header):
    if len(header) < 16 or header[0] != 0xDA or header[1] != 0xBB:
        return
    (rid,) = struct.unpack("!Q", bytes(header[4:12]))
    with wire_lock:
        wire.setdefault(rid, []).append({"flag": header[2], "status": header[3], "t": time.time()})


def frames_for(rid):
    with wire_lock:
        return list(wire.get(rid, []))


class Answer:
    """What one call got: a value, an error response, or nothing in time."""

    def __init__(self, rid, timeout=False, value=None, error=None):
        self.rid, self.timeout, self.value, self.error = rid, timeout, value, error


# ---- adapter: PyPI dubbo-py -------------------------------------------------------------------
class DubboPy:
    def __init__(self, host, port, o):
        from dubbo.codec import hessian2
        from dubbo import client as dclient

        # Record each frame's header: Decoder.decode reads the 16 header bytes from the
        # socket (2 + 14), then the body from a BytesIO.
        orig_read, orig_decode = hessian2.Decoder._read, hessian2.Decoder.decode

        def _read(self, length):
            data = orig_read(self, length)
            if hasattr(self._stream, "recv"):
                self.__dict__["_fm_head"] = self.__dict__.get("_fm_head", b"") + data
            return data

        def decode(self):
            self.__dict__["_fm_head"] = b""
            try:
                return orig_decode(self)
            finally:
                record(self.__dict__.get("_fm_head", b""))

        hessian2.Decoder._read, hessian2.Decoder.decode = _read, decode
        self.hessian2 = hessian2
        self.c = dclient.DubboClient(host, port, dubbo_version="2.5.3")
        self.o = o

    def call(self, method, args, timeout_s):
        rid = next(self.c._request_id)
        attachment = {"group": self.o.group} if self.o.group is not None else {}
        self.c._sock.sendall(self.hessian2.DubboRequest(
            id=rid, twoway=True, dubbo_version=self.c._dubbo_version, service_name=self.o.service,
            method_name=method, args=args, service_version=self.o.version, attachment=attachment).encode())
        deadline = time.time() + timeout_s
        while True:
            left = deadline - time.time()
            if left <= 0:
                return Answer(rid, timeout=True)
            try:
                msg = self.c._msg_queue.get(True, left)
            except queue.Empty:
                return Answer(rid, timeout=True)
            if getattr(msg, "id", None) != rid:
                continue  # an answer to a call that already gave up
            if msg.ok:
                return Answer(rid, value=text(msg.data))
            return Answer(rid, error=text(msg.error))

    def heartbeat(self):
        rid = next(self.c._request_id)
        self.c.send_heartbeat_request(rid)
        return rid


# ---- adapter: PyPI dubbo-ssl-python ------------------------------------------------------------
class DubboSsl:
    def __init__(self, host, port, o):
        from dubbo_ssl import client as sclient
        from dubbo_ssl.common import util, constants
        from dubbo_ssl.connection import connections

        orig = connections.parse_response_head

        def parse_response_head(head):
            record(head)
            return orig(head)

        connections.parse_response_head = parse_response_head
        self.util, self.constants, self.pool = util, constants, connections.connection_pool
        self.host = f"{host}:{port}"
        self.c = sclient.DubboClient(interface=o.service, group=o.group, version=o.version,
                                     dubbo_version="2.7.23", host=self.host, verify=o.tls_ca)
        self.exc = __import__("dubbo_ssl.common.exceptions", fromlist=["x"])
        self.o_tls_ca = o.tls_ca

    def call(self, method, args, timeout_s):
        # The library takes the id inside call(); the next one is the counter's value now.
        rid = self.util.invoke_id
        try:
            value = self.c.call(method=method, args=list(args), timeout=timeout_s)
            return Answer(rid, value=text(value))
        except self.exc.DubboRequestTimeoutException:
            return Answer(rid, timeout=True)
        except self.exc.DubboResponseException as e:
            return Answer(rid, error=str(e).strip())

    def heartbeat(self):
        conn = self.pool._get_connection(self.host, self.o_tls_ca)
        rid = self.util.get_invoke_id()
        req = self.constants.CLI_HEARTBEAT_REQ_HEAD + list(struct.pack("!q", rid)) + self.constants.CLI_HEARTBEAT_TAIL
        conn.write(bytearray(req))
        return rid


# ---- main ---------------------------------------------------------------------------------------
def parse_args():
    ap = argparse.ArgumentParser(description="Python Dubbo consumer for ferrymesh interop tests")
    ap.add_argument("addr")
    ap.add_argument("--lib", choices=["dubbo-py", "dubbo-ssl"], default="dubbo-py")
    ap.add_argument("--method", choices=["echo", "fail", "slow", "heartbeat"], default="echo")
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--message", default="hello")
    ap.add_argument("--slow-ms", type=int, default=1500)
    ap.add_argument("--timeout-ms", type=int, default=3000)
    ap.add_argument("--service", default=SERVICE)
    ap.add_argument("--version", default="1.0")
    ap.add_argument("--group", default=None)
    ap.add_argument("--expect-error", action="store_true")
    ap.add_argument("--expect-message", default=None)
    ap.add_argument("--expect-status", type=int, default=None)
    ap.add_argument("--expect-timeout", action="store_true")
    ap.add_argument("--expect-server", default=None)
    ap.add_argument("--then-echo", action="store_true")
    ap.add_argument("--deadline-ms", type=int, default=0)
    ap.add_argument("--tls-ca", default=None,
                    help="dubbo-ssl only: connect over TLS, verifying the server against this CA file")
    o = ap.parse_args()
    if o.expect_message is not None or (o.expect_status is not None and o.expect_status != 20):
        o.expect_error = True
    if o.expect_error and o.expect_timeout:
        ap.error("--expect-error and --expect-timeout exclude each other")
    if o.count < 1 or o.timeout_ms < 1:
        ap.error("--count and --timeout-ms must be >= 1")
    host, _, port = o.addr.rpartition(":")
    if not host or not port.isdigit():
        ap.error("need HOST:PORT")
    o.host, o.port = host, int(port)
    if not o.deadline_ms:
        o.deadline_ms = 10000 + o.count * (o.timeout_ms + (o.slow_ms if o.method == "slow" else 0))
    return o


def check_answer(prefix, ans, o):
    prefix += "|server="
    if not isinstance(ans, str) or not ans.startswith(prefix) or len(ans) == len(prefix):
        return None, f"answered {ans!r}, expected {prefix}<name>"
    server = ans[len(prefix):]
    if o.expect_server and server != o.expect_server:
        return None, f"answered by {server}, expected {o.expect_server}"
    return server, None


def main():
    o = parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.CRITICAL)

    def watchdog():
        time.sleep(o.deadline_ms / 1000.0)
        sys.stderr.write(f"FAIL: overall deadline of {o.deadline_ms} ms passed\n")
        sys.stdout.write(json.dumps({"event": "summary", "ok": False, "error": "deadline"}) + "\n")
        sys.stdout.flush()
        os._exit(3)

    threading.Thread(target=watchdog, daemon=True).start()

    try:
        peer = (DubboPy if o.lib == "dubbo-py" else DubboSsl)(o.host, o.port, o)
    except OSError as e:
        emit({"event": "connect", "error": f"could not connect to {o.addr}: {e}"}, False)
        return 1
    timeout_s = o.timeout_ms / 1000.0
    t0 = time.time()
    timed_out = []

    for i in range(o.count):
        msg = o.message if o.count == 1 else f"{o.message}-{i}"
        line = {"event": "call", "call": i, "method": o.method, "lib": o.lib, "message": msg}
        start = time.time()
        if o.method == "heartbeat":
            rid = peer.heartbeat()
            line["id"] = rid
            acks = []
            while time.time() - start < timeout_s and not acks:
                acks = [f for f in frames_for(rid) if f["flag"] & 0xA0 == 0x20]  # event response
                time.sleep(0.01)
            line["ms"] = int((time.time() - start) * 1000)
            if not acks:
                line["error"] = f"no heartbeat answer in {o.timeout_ms} ms"
                emit(line, False)
                continue
            line["ack_status"], line["ack_flag"] = acks[0]["status"], acks[0]["flag"]
            emit(line, acks[0]["status"] == 20)
            continue
        args = [msg, o.slow_ms] if o.method == "slow" else [msg]
        ans = peer.call(o.method, args, timeout_s)
        line["ms"] = int((time.time() - start) * 1000)
        line["id"] = ans.rid
        frames = [f for f in frames_for(ans.rid) if not f["flag"] & 0x20]
        if frames:
            line["status"] = frames[0]["status"]
        if ans.timeout:
            line["timeout"] = True
            timed_out.append(ans.rid)
            emit(line, o.expect_timeout)
            continue
        if ans.error is not None:
            line["error"] = ans.error
            ok = o.expect_error and bool(frames)
            if ok and o.expect_status is not None and line.get("status") != o.expect_status:
                line["why"], ok = f"status {line.get('status')} != {o.expect_status}", False
            if ok and o.expect_message is not None and o.expect_message not in ans.error:
                line["why"], ok = f"message lacks {o.expect_message!r}", False
            emit(line, ok)
            continue
        line["result"] = ans.value
        if o.expect_error or o.expect_timeout:
            line["error"] = "expected " + ("a timeout" if o.expect_timeout else "an error") + ", got an answer"
            emit(line, False)
            continue
        server, bad = check_answer(("slow:" if o.method == "slow" else "") + msg, ans.value, o)
        if bad:
            line["error"] = bad
            emit(line, False)
        else:
            line["server"] = server
            emit(line, True)

    if o.then_echo:
        def echo(tag):
            msg = f"{o.message}-{tag}"
            line = {"event": "then_echo", "after": tag, "lib": o.lib}
            start = time.time()
            ans = peer.call("echo", [msg], 3.0)
            line["ms"] = int((time.time() - start) * 1000)
            if ans.timeout or ans.error is not None:
                line["error"] = "timeout" if ans.timeout else ans.error
                emit(line, False)
                return
            server, bad = check_answer(msg, ans.value, o)
            line["result"] = ans.value
            if bad:
                line["error"] = bad
            else:
                line["server"] = server
            emit(line, bad is None)

        echo("after-calls")
        if o.method == "slow":
            time.sleep(max(0.0, t0 + o.count * o.slow_ms / 1000.0 + 0.3 - time.time()))
            echo("after-late")

    late = [{"id": rid, "status": f["status"]} for rid in timed_out for f in frames_for(rid)]
    sys.stdout.write(json.dumps({"event": "summary", "ok": failures == 0, "failures": failures, "calls": o.count,
                                 "lib": o.lib, "timed_out_ids": timed_out, "late_replies": late,
                                 "ms": int((time.time() - t0) * 1000)}) + "\n")
    sys.stdout.flush()
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # the libraries' reader/heartbeat threads never end by themselves
