#!/usr/bin/env python3
"""Raw-bytes gRPC test client (grpcio, no generated code) for ferrymesh tests.

Scenario mode (default): runs scenarios against TARGET (HOST:PORT of ferrymesh or
of server.py directly), prints one JSON line per scenario and a summary line.
Exit 0 iff all pass; otherwise 1 with the reasons on stderr.

  python3 client.py 127.0.0.1:PORT [--only unary,bidi] [--expect-server NAME]

Expect-status mode: one unary call that must fail with the given gRPC code;
prints {"code":..,"code_name":..,"details":..} and exits 0 iff it matches.

  python3 client.py 127.0.0.1:PORT --expect-status 14
  python3 client.py 127.0.0.1:PORT --expect-status 12 --method /echo.Echo/Nope
  python3 client.py 127.0.0.1:PORT --expect-status 4 --method /echo.Echo/Slow \
      --request 2000 --timeout 0.3

Every wait is bounded: each RPC has a deadline, the default run shares a
--budget (default 13 s) and a watchdog hard-exits at budget + 1.5 s.
"""
import os

# Must be set before grpc is imported; keeps grpc-core's C logging quiet.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import argparse
import json
import queue
import sys
import threading
import time

import grpc

MAX_MSG = 64 * 1024 * 1024
PATTERN = bytes(range(256))

DEFAULT_SCENARIOS = ["unary", "server_streaming", "client_streaming", "bidi",
                     "deadline", "error", "big", "concurrent"]
EXTRA_SCENARIOS = ["metadata"]

CHANNEL_OPTIONS = [
    # Never route through http_proxy/https_proxy/grpc_proxy from the environment.
    ("grpc.enable_http_proxy", 0),
    # No transparent/configured retries: we want to see exactly what the
    # proxy answered (e.g. a REFUSED_STREAM would otherwise be retried silently).
    ("grpc.enable_retries", 0),
    ("grpc.max_send_message_length", MAX_MSG),
    ("grpc.max_receive_message_length", MAX_MSG),
    # Fresh connection per client process, not shared with other channels.
    ("grpc.use_local_subchannel_pool", 1),
]


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def big_payload(n):
    reps, rem = divmod(n, len(PATTERN))
    return PATTERN * reps + PATTERN[:rem]


def rpc_err(e):
    if isinstance(e, grpc.RpcError) and hasattr(e, "code"):
        return "RpcError %s (%d): %r" % (e.code().name, e.code().value[0], e.details())
    return "%s: %s" % (type(e).__name__, e)


class Ctx:
    def __init__(self, channel, args, deadline_at):
        self.ch = channel
        self.args = args
        self.deadline_at = deadline_at

    def timeout(self, want):
        """Per-RPC timeout: `want` seconds, capped by what is left of the budget."""
        left = self.deadline_at - time.monotonic()
        if left < 0.2:
            raise Fail("global time budget exhausted")
        return min(want, left)

    def uu(self, m):
        return self.ch.unary_unary("/echo.Echo/" + m)

    def us(self, m):
        return self.ch.unary_stream("/echo.Echo/" + m)

    def su(self, m):
        return self.ch.stream_unary("/echo.Echo/" + m)

    def ss(self, m):
        return self.ch.stream_stream("/echo.Echo/" + m)


# ---------------------------------------------------------------- scenarios

def sc_unary(c):
    resp, call = c.uu("Unary").with_call(b"hello", timeout=c.timeout(3))
    md = dict(call.initial_metadata() or ())
    check("x-server" in md, "no x-server in initial metadata: %r" % (call.initial_metadata(),))
    server = md["x-server"]
    if c.args.expect_server is not None:
        check(server == c.args.expect_server,
              "x-server=%r, expected %r" % (server, c.args.expect_server))
    check(resp == server.encode() + b":hello", "bad response %r for x-server=%r" % (resp, server))
    check(call.code() == grpc.StatusCode.OK, "status %s" % call.code())
    return {"server": server, "response": resp.decode()}


def sc_server_streaming(c):
    n = 100
    got = []
    for m in c.us("ServerStream")(b"%d" % n, timeout=c.timeout(3)):
        got.append(m)
    want = [b"msg-%d" % i for i in range(n)]
    if got != want:
        first_bad = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), n))
        raise Fail("got %d messages, first mismatch at %d" % (len(got), first_bad))
    return {"messages": len(got)}


def sc_client_streaming(c):
    msgs = [b"m%d" % i for i in range(50)]
    resp = c.su("ClientStream")(iter(msgs), timeout=c.timeout(3))
    check(resp == b",".join(msgs), "bad response %r..." % resp[:80])
    return {"messages": len(msgs), "response_len": len(resp)}


def sc_bidi(c):
    """Ping-pong: request i+1 is only produced after response i was received,
    so success proves the proxy streams in both directions without buffering.
    The request stream stays open (no half-close) until all rounds are done."""
    rounds = 20
    per_round = 2.0
    outq = queue.Queue()
    inq = queue.Queue()
    done = object()
    rpc_timeout = c.timeout(5)

    def requests():
        while True:
            item = outq.get()  # always unblocked by `done` in the finally below
            if item is done:
                return
            yield item

    call = c.ss("Bidi")(requests(), timeout=rpc_timeout)

    def reader():
        try:
            for m in call:
                inq.put(("msg", m))
            inq.put(("end", None))
        except grpc.RpcError as e:
            inq.put(("err", e))

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    try:
        for i in range(rounds):
            req = b"ping-%d" % i
            outq.put(req)
            try:
                kind, val = inq.get(timeout=per_round)
            except queue.Empty:
                raise Fail("round %d: no response within %.1f s while the request stream "
                           "is still open (proxy buffering / not interleaving?)" % (i, per_round))
            if kind == "end":
                raise Fail("round %d: response stream ended early (status %s)" % (i, call.code()))
            if kind == "err":
                raise Fail("round %d: %s" % (i, rpc_err(val)))
            check(val == b"echo:" + req, "round %d: got %r" % (i, val))
        outq.put(done)  # half-close; server then finishes with OK
        try:
            kind, val = inq.get(timeout=per_round)
        except queue.Empty:
            raise Fail("no end of stream within %.1f s after half-close" % per_round)
        check(kind == "end", "after half-close got %s %r" % (kind, val if kind == "msg" else rpc_err(val)))
        check(call.code() == grpc.StatusCode.OK, "final status %s" % call.code())
    finally:
        outq.put(done)
        call.cancel()
    return {"rounds": rounds}


def sc_deadline(c):
    t0 = time.monotonic()
    try:
        resp = c.uu("Slow")(b"2000", timeout=0.3)
    except grpc.RpcError as e:
        el = time.monotonic() - t0
        check(e.code() == grpc.StatusCode.DEADLINE_EXCEEDED, "got %s" % rpc_err(e))
        check(el < 1.0, "DEADLINE_EXCEEDED only after %.3f s" % el)
        return {"code": e.code().name, "elapsed_ms": round(el * 1000, 1)}
    raise Fail("Slow(2000) with 300 ms deadline succeeded: %r" % resp)


def sc_error(c):
    try:
        resp = c.uu("Fail")(b"oops", timeout=c.timeout(3))
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.INVALID_ARGUMENT, "got %s" % rpc_err(e))
        check(e.details() == "bad request: oops", "details %r" % e.details())
        tm = list(e.trailing_metadata() or ())
        check(("x-error-code", "E42") in tm, "x-error-code missing in trailers %r" % tm)
        check(("x-detail-bin", b"\x00\x01\x02") in tm, "x-detail-bin missing/wrong in trailers %r" % tm)
        return {"code": e.code().name, "details": e.details(),
                "trailers": [[k, v.hex() if isinstance(v, bytes) else v] for k, v in tm]}
    raise Fail("Fail succeeded: %r" % resp)


def sc_big(c):
    n = 8 * 1024 * 1024
    resp = c.uu("Big")(b"%d" % n, timeout=c.timeout(5))
    check(len(resp) == n, "length %d != %d" % (len(resp), n))
    check(resp == big_payload(n), "content corrupted")
    return {"bytes": len(resp)}


def sc_concurrent(c):
    n = 200
    stub = c.uu("Unary")
    t = c.timeout(5)
    futs = [stub.future(b"c-%d" % i, timeout=t) for i in range(n)]
    bad = []
    for i, f in enumerate(futs):
        try:
            r = f.result(timeout=max(0.01, c.deadline_at - time.monotonic()))
        except grpc.FutureTimeoutError:
            bad.append((i, "future timeout"))
            continue
        except grpc.RpcError as e:
            bad.append((i, rpc_err(e)))
            continue
        if not r.endswith(b":c-%d" % i):
            bad.append((i, r[:40]))
    for f in futs:
        f.cancel()
    if bad:
        raise Fail("%d/%d calls failed, e.g. %r" % (len(bad), n, bad[:3]))
    return {"calls": n}


def sc_metadata(c):
    """Extra (not in the default set): custom request metadata incl. a binary
    header reaches the server, and the deadline (grpc-timeout) is propagated."""
    md = (("x-test", "abc"), ("x-test-bin", b"\xff\x00\xfe"))
    resp = c.uu("Metadata")(b"", metadata=md, timeout=c.timeout(3))
    info = json.loads(resp)
    got = {k: v for k, v in info["metadata"]}
    check(got.get("x-test") == "abc", "x-test not received: %r" % info["metadata"])
    check(got.get("x-test-bin") == "ff00fe", "x-test-bin not received: %r" % info["metadata"])
    tr = info.get("time_remaining")
    check(tr is not None and 0 < tr <= 3.5, "server time_remaining %r (grpc-timeout lost?)" % tr)
    return {"server": info["server"], "time_remaining": tr}


SCENARIOS = {
    "unary": sc_unary,
    "server_streaming": sc_server_streaming,
    "client_streaming": sc_client_streaming,
    "bidi": sc_bidi,
    "deadline": sc_deadline,
    "error": sc_error,
    "big": sc_big,
    "concurrent": sc_concurrent,
    "metadata": sc_metadata,
}


# ---------------------------------------------------------------- modes

def emit(obj):
    sys.stdout.write(json.dumps(obj, sort_keys=False) + "\n")
    sys.stdout.flush()


def run_scenarios(args, channel):
    names = DEFAULT_SCENARIOS if not args.only else [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        print("unknown scenario(s): %s; known: %s" % (",".join(unknown), ",".join(SCENARIOS)), file=sys.stderr)
        return 2
    start = time.monotonic()
    deadline_at = start + args.budget
    failures = []
    try:
        grpc.channel_ready_future(channel).result(timeout=min(args.connect_timeout, args.budget))
    except grpc.FutureTimeoutError:
        msg = "could not connect to %s within %.1f s" % (args.target, args.connect_timeout)
        emit({"scenario": "connect", "ok": False, "error": msg})
        emit({"summary": True, "target": args.target, "passed": 0, "failed": len(names), "ok": False})
        print("FAIL connect: " + msg, file=sys.stderr)
        return 1
    c = Ctx(channel, args, deadline_at)
    for name in names:
        t0 = time.monotonic()
        rec = {"scenario": name}
        try:
            info = SCENARIOS[name](c)
            rec["ok"] = True
            rec.update(info or {})
        except Fail as e:
            rec["ok"] = False
            rec["error"] = str(e)
        except Exception as e:  # RpcError and anything unexpected
            rec["ok"] = False
            rec["error"] = rpc_err(e)
        rec["ms"] = round((time.monotonic() - t0) * 1000, 1)
        emit(rec)
        if not rec["ok"]:
            failures.append("%s: %s" % (name, rec["error"]))
    total = round((time.monotonic() - start) * 1000, 1)
    emit({"summary": True, "target": args.target, "passed": len(names) - len(failures),
          "failed": len(failures), "ms": total, "ok": not failures})
    for f in failures:
        print("FAIL " + f, file=sys.stderr)
    return 0 if not failures else 1


def run_expect_status(args, channel):
    want = args.expect_status
    rec = {"mode": "expect-status", "target": args.target, "method": args.method,
           "expected": want}
    t0 = time.monotonic()
    try:
        resp, call = channel.unary_unary(args.method).with_call(
            args.request.encode(), timeout=args.timeout)
        rec.update({"code": 0, "code_name": "OK", "details": None,
                    "response": resp[:200].decode("utf-8", "replace")})
    except grpc.RpcError as e:
        code = e.code()
        details = e.details()
        rec.update({"code": code.value[0], "code_name": code.name, "details": details})
        im = e.initial_metadata() or ()
        tm = e.trailing_metadata() or ()
        rec["initial_metadata"] = [[k, v.hex() if isinstance(v, bytes) else v] for k, v in im]
        rec["trailers"] = [[k, v.hex() if isinstance(v, bytes) else v] for k, v in tm]
        rec["source"] = status_source(details or "")
    rec["elapsed_ms"] = round((time.monotonic() - t0) * 1000, 1)
    reason = None
    if rec["code"] != want:
        reason = "expected status %d, got %d (%s): %r" % (want, rec["code"], rec["code_name"], rec["details"])
    elif rec.get("source") == "http-status" and not args.allow_http_status:
        reason = ("status %d was synthesized by grpcio from a non-gRPC HTTP response (%r): "
                  "the peer sent no grpc-status; pass --allow-http-status to accept"
                  % (want, rec["details"]))
    elif args.from_peer and rec.get("source") != "peer":
        reason = ("status %d did not come from a peer's grpc-status (source=%s, details %r)"
                  % (want, rec.get("source"), rec["details"]))
    rec["ok"] = reason is None
    emit(rec)
    if reason:
        print("FAIL " + reason, file=sys.stderr)
        return 1
    return 0


def status_source(details):
    """Best-effort guess at who produced a non-OK status, from grpcio's details text.

    http-status:    peer answered with a non-200 :status and no grpc-status;
                    grpcio maps it (503->UNAVAILABLE, 404->UNIMPLEMENTED, ...)
    no-status:      peer ended the stream without grpc-status (UNKNOWN)
    client-connect: grpcio could not connect at all
    client-deadline: grpcio's own deadline timer fired (the peer may have sent nothing)
    peer:           anything else -- normally a real grpc-status from the peer
    """
    if details.startswith("Received http2 header with status:"):
        return "http-status"
    if details == "No status received":
        return "no-status"
    if details.startswith("failed to connect to all addresses"):
        return "client-connect"
    if details in ("Deadline Exceeded", "Stream removed (Deadline Exceeded)"):
        return "client-deadline"
    return "peer"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("target", help="HOST:PORT")
    ap.add_argument("--only", help="comma-separated scenarios (default: %s; extra: %s)"
                    % (",".join(DEFAULT_SCENARIOS), ",".join(EXTRA_SCENARIOS)))
    ap.add_argument("--expect-server", help="require x-server == NAME in unary")
    ap.add_argument("--expect-status", type=int, help="single-call mode: expected gRPC status code")
    ap.add_argument("--method", default="/echo.Echo/Unary", help="expect-status mode: full method path")
    ap.add_argument("--request", default="hello", help="expect-status mode: request payload (ASCII)")
    ap.add_argument("--timeout", type=float, default=5.0, help="expect-status mode: RPC deadline, s")
    ap.add_argument("--allow-http-status", action="store_true",
                    help="expect-status mode: accept a status grpcio synthesized from a plain "
                         "HTTP :status (no grpc-status header); rejected by default")
    ap.add_argument("--from-peer", action="store_true",
                    help="expect-status mode: additionally require that the status came from the "
                         "peer (a TCP connection was made and grpc-status was received), i.e. not "
                         "grpcio's own connect failure")
    ap.add_argument("--budget", type=float, default=13.0, help="scenario mode: total time budget, s")
    ap.add_argument("--connect-timeout", type=float, default=3.0)
    ap.add_argument("--ca", help="TLS: the CA bundle (PEM file) that signs the server's certificate")
    ap.add_argument("--cert", help="TLS: a client certificate (PEM file), with --key")
    ap.add_argument("--key", help="TLS: the client certificate's key (PEM file)")
    ap.add_argument("--server-name", help="TLS: the name to verify (default: the target's host)")
    args = ap.parse_args()

    hard = (args.timeout if args.expect_status is not None else args.budget) + 1.5

    def watchdog():
        sys.stderr.write("FAIL watchdog: client still running after %.1f s\n" % hard)
        sys.stderr.flush()
        os._exit(1)

    wd = threading.Timer(hard, watchdog)
    wd.daemon = True
    wd.start()

    if args.ca:
        def read(path):
            with open(path, "rb") as f:
                return f.read()
        creds = grpc.ssl_channel_credentials(
            root_certificates=read(args.ca),
            private_key=read(args.key) if args.key else None,
            certificate_chain=read(args.cert) if args.cert else None)
        options = list(CHANNEL_OPTIONS)
        if args.server_name:
            options.append(("grpc.ssl_target_name_override", args.server_name))
        channel = grpc.secure_channel(args.target, creds, options=options)
    else:
        channel = grpc.insecure_channel(args.target, options=CHANNEL_OPTIONS)
    try:
        if args.expect_status is not None:
            rc = run_expect_status(args, channel)
        else:
            rc = run_scenarios(args, channel)
    finally:
        channel.close()
    sys.stdout.flush()
    sys.stderr.flush()
    # os._exit: skip interpreter teardown (grpc's threads can delay it).
    os._exit(rc)


if __name__ == "__main__":
    main()
