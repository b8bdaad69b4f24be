#!/usr/bin/env python3
"""HTTP/1.1 request-smuggling and malformed-request probe.

    python3 tests/http/smuggling.py HOST:PORT [--upstream-log FILE] [options]

Sends each case in CASES as raw bytes on a fresh TCP connection to HOST:PORT
(a proxy in front of the test upstream from tests/http/start-nginx.sh, or
that nginx itself), reads what comes back for a bounded time and prints one
JSON line per case:

    {"case": ..., "status": 400, "closed": true, "ok": true, ...}

Exit status 0 iff every case is ok (2 on usage errors).

Every case's request targets a unique path, /smuggle-<case>, and a request
hidden in a body (the smuggled one) targets /smuggle-<case>-inner. The test
upstream answers any /smuggle-* path only after reading the whole body, with
200 "reached uri=... cl=... te=... body=N ..." describing what arrived, so a
response carrying "reached" proves the request got through to the
application, and its fields show in what shape.

With --upstream-log FILE (the upstream nginx's access log; start-nginx.sh
writes DIR/access.log) the script also reads the lines the upstream logged
while it ran and checks, per case, that:
  - /smuggle-<case>-inner never appears (any status);
  - /smuggle-<case> never appears for a case that must be rejected, appears
    only with a 2xx for a case that may be forwarded once normalised (a 4xx
    there means the proxy forwarded something the upstream refused), and
    only with a non-2xx for a bad chunked body (a streaming proxy may have
    sent the head on before the body turned out bad; the upstream must not
    have accepted it);
  - the control cases do appear, with a 2xx (proves the log check works).
Do not pass --upstream-log when the target IS that nginx: it logs the
requests it rejects too.

Outcomes per case ("expect" in the output):
  reject      one of the listed statuses, then the connection closed, and
              nothing reached the application;
  reject|fwd  as reject, or forwarded in a normalised form that the case's
              check accepts (e.g. duplicate identical Content-Length collapsed
              to one); some of these must also close after responding;
  body-error  a bad chunked body: one of the listed statuses or the
              connection closed without a response; never a 2xx from the
              application;
  control     a valid request: 200 from the application (sanity check).
"""

import argparse
import json
import os
import re
import socket
import sys
import time

# ---------------------------------------------------------------------------
# Cases


class Case:
    def __init__(self, name, build, kind, statuses=(400,), check=None, close_if_fwd=False,
                 responses=1, rfc=""):
        self.name = name
        self.build = build          # fn(host) -> bytes
        self.kind = kind            # reject | reject|fwd | body-error | control
        self.statuses = tuple(statuses)
        self.check = check          # fn(fields: dict) -> str|None (None = fine), for forwarded ones
        self.close_if_fwd = close_if_fwd
        self.responses = responses  # control only
        self.rfc = rfc

    @property
    def path(self):
        return f"/smuggle-{self.name}"

    @property
    def inner(self):
        return f"/smuggle-{self.name}-inner"


def req(method, path, host, headers=(), body=b"", version="HTTP/1.1", raw_head=None):
    """Builds a request; headers are raw lines (str or bytes) without CRLF."""
    lines = [f"{method} {path} {version}".encode()]
    if host is not None:
        lines.append(b"Host: " + host.encode())
    for h in headers:
        lines.append(h if isinstance(h, bytes) else h.encode("latin-1"))
    head = raw_head if raw_head is not None else b"\r\n".join(lines) + b"\r\n\r\n"
    return head + (body if isinstance(body, bytes) else body.encode("latin-1"))


def inner_req(c, host):
    return f"GET {c.inner} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


def chunk(data):
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST = b"0\r\n\r\n"


# Checks on what the upstream saw ("reached ..." fields) for forwarded cases.
def want(**expected):
    def check(f):
        bad = [f"{k}={f.get(k)!r} (want {v!r})" for k, v in expected.items() if f.get(k) != v]
        return "forwarded as " + ", ".join(bad) if bad else None
    return check


def body_is(n):
    def check(f):
        # The proxy may re-encode the body (chunked or Content-Length): only
        # the byte count the upstream read matters, and no Transfer-Encoding
        # other than plain chunked.
        body = f.get("body") or "0"
        if body != str(n):
            return f"upstream read a {body}-byte body (want {n})"
        if f.get("te") not in ("", "chunked"):
            return f"forwarded with Transfer-Encoding {f.get('te')!r}"
        return None
    return check


def no_cr_ctl(f):
    v = f.get("ctl", "")
    if any(ch in v for ch in "\r\n\0"):
        return f"forwarded with a raw CR/LF/NUL in the value: {v!r}"
    return None


CASES = []


def case(name, kind, **kw):
    def deco(build):
        CASES.append(Case(name, build, kind, **kw))
        return build
    return deco


def C(name):
    return next(c for c in CASES if c.name == name)


# --- controls: a target that fails these is broken, not strict --------------

@case("control-get", "control", rfc="valid request")
def _(c, h):
    return req("GET", c.path, h)


@case("control-post-cl", "control", check=body_is(5), rfc="valid request")
def _(c, h):
    return req("POST", c.path, h, ["Content-Length: 5"], b"hello")


@case("control-post-chunked", "control", check=body_is(11), rfc="valid request")
def _(c, h):
    return req("POST", c.path, h, ["Transfer-Encoding: chunked"],
               chunk(b"hello") + chunk(b" world") + LAST)


@case("control-pipelined", "control", responses=2, rfc="valid pipelining (RFC 9112 §9.3.2)")
def _(c, h):
    return req("GET", c.path, h) + req("GET", c.path + "-2nd", h)


# --- Content-Length -----------------------------------------------------------

@case("cl-conflict", "reject",
      rfc="RFC 9112 §6.3(5): differing Content-Length values are an unrecoverable "
          "framing error: 400 and close. Body hides a request (first CL=0).")
def _(c, h):
    inner = inner_req(c, h)
    return req("POST", c.path, h, ["Content-Length: 0", f"Content-Length: {len(inner)}"], inner)


@case("cl-duplicate-identical", "reject|fwd", check=body_is(5),
      rfc="RFC 9110 §8.6 / RFC 9112 §6.3(5): identical repeated values MAY be collapsed "
          "into one Content-Length (forwarded-as-one) or rejected with 400.")
def _(c, h):
    return req("POST", c.path, h, ["Content-Length: 5", "Content-Length: 5"], b"hello")


@case("cl-list-identical", "reject|fwd", check=body_is(5),
      rfc="RFC 9110 §8.6: a list of identical values (\"5, 5\") MAY be collapsed to one "
          "or rejected with 400.")
def _(c, h):
    return req("POST", c.path, h, ["Content-Length: 5, 5"], b"hello")


@case("cl-list-conflict", "reject",
      rfc="RFC 9110 §8.6: \"0, N\" is not a valid Content-Length: 400 and close. "
          "Body hides a request.")
def _(c, h):
    inner = inner_req(c, h)
    return req("POST", c.path, h, [f"Content-Length: 0, {len(inner)}"], inner)


@case("cl-negative", "reject", rfc="Content-Length = 1*DIGIT (RFC 9110 §8.6): 400.")
def _(c, h):
    return req("POST", c.path, h, ["Content-Length: -5"], b"hello")


@case("cl-plus-sign", "reject", rfc="Content-Length = 1*DIGIT (RFC 9110 §8.6): 400.")
def _(c, h):
    return req("POST", c.path, h, ["Content-Length: +5"], b"hello")


@case("cl-huge", "reject", statuses=(400, 413),
      rfc="Content-Length overflowing 64 bits: 400 (413 tolerated). A parser that "
          "wraps it reads a small length.")
def _(c, h):
    return req("POST", c.path, h, ["Content-Length: 18446744073709551621"], b"hello")


@case("cl-space-before-colon", "reject",
      rfc="RFC 9112 §5.1: whitespace between field name and colon MUST be rejected "
          "with 400. Body hides a request (read as 0 if the field is ignored).")
def _(c, h):
    inner = inner_req(c, h)
    return req("POST", c.path, h, [f"Content-Length : {len(inner)}"], inner)


# --- Content-Length + Transfer-Encoding ---------------------------------------

@case("cl-te", "reject|fwd", check=body_is(0), close_if_fwd=True,
      rfc="RFC 9112 §6.1/§6.3(3): CL + TE: chunked. Either 400, or drop Content-Length, "
          "forward chunked (body ends at the 0-chunk) and close the connection after "
          "responding. The bytes after the 0-chunk are a hidden request that must "
          "never be processed (CL.TE smuggling).")
def _(c, h):
    body = LAST + inner_req(c, h)
    return req("POST", c.path, h, [f"Content-Length: {len(body)}", "Transfer-Encoding: chunked"], body)


@case("te-cl", "reject|fwd", close_if_fwd=True,
      rfc="RFC 9112 §6.1/§6.3(3): TE: chunked + CL (TE first). Either 400, or forward the "
          "chunked body (the hidden request is chunk data) without Content-Length and "
          "close. A CL-framed reading makes the chunk data a second request (TE.CL).")
def _(c, h):
    inner = inner_req(c, h)
    body = chunk(inner) + LAST
    return req("POST", c.path, h, ["Transfer-Encoding: chunked", "Content-Length: 4"], body)




@case("http10-te", "reject|fwd", check=body_is(0), close_if_fwd=True,
      rfc="RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 request: treat the framing as "
          "faulty even with Content-Length, close after responding. 400 expected; a "
          "forward must carry the chunked body only and close. Body hides a request.")
def _(c, h):
    body = LAST + inner_req(c, h)
    return req("POST", c.path, h, ["Transfer-Encoding: chunked", f"Content-Length: {len(body)}"],
               body, version="HTTP/1.0")


# --- Transfer-Encoding ----------------------------------------------------------

TE_RFC = ("RFC 9112 §6.3(4): chunked is not the final coding of a request: MUST 400 "
          "and close (501 tolerated: §6.1 SHOULD for codings not understood). "
          "Body (no Content-Length) hides a request.")


@case("te-gzip", "reject", statuses=(400, 501), rfc=TE_RFC)
def _(c, h):
    return req("POST", c.path, h, ["Transfer-Encoding: gzip"], inner_req(c, h))


@case("te-chunked-gzip", "reject", statuses=(400, 501), rfc=TE_RFC)
def _(c, h):
    return req("POST", c.path, h, ["Transfer-Encoding: chunked, gzip"], inner_req(c, h))


@case("te-xchunked", "reject", statuses=(400, 501), rfc=TE_RFC)
def _(c, h):
    return req("POST", c.path, h, ["Transfer-Encoding: xchunked"], inner_req(c, h))


@case("te-unknown-then-chunked", "reject", statuses=(501, 400),
      rfc="RFC 9112 §6.1: a transfer coding the server does not understand (xfoo) before "
          "a final chunked: 501 is the RFC's answer (SHOULD); 400 fine too.")
def _(c, h):
    return req("POST", c.path, h, ["Transfer-Encoding: xfoo, chunked"], chunk(b"hello") + LAST)


@case("te-chunked-twice", "reject", statuses=(400, 501),
      rfc="RFC 9112 §7: chunked MUST NOT be applied more than once (\"chunked, chunked\"): "
          "400 (501 tolerated). Body hides a request after the outer 0-chunk.")
def _(c, h):
    return req("POST", c.path, h, ["Transfer-Encoding: chunked, chunked"], LAST + inner_req(c, h))


@case("te-two-headers", "reject", statuses=(400, 501),
      rfc="Two Transfer-Encoding: chunked fields combine to \"chunked, chunked\" "
          "(RFC 9110 §5.3): 400 (501 tolerated).")
def _(c, h):
    return req("POST", c.path, h, ["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"],
               LAST + inner_req(c, h))


@case("te-space-before-colon", "reject",
      rfc="RFC 9112 §5.1: \"Transfer-Encoding : chunked\" MUST be rejected with 400. "
          "Body (not chunk-framed) is a hidden request if the field is ignored.")
def _(c, h):
    return req("POST", c.path, h, ["Transfer-Encoding : chunked"], inner_req(c, h))


@case("te-vertical-tab", "reject", statuses=(400, 501),
      rfc="\\x0b before chunked is not OWS (RFC 9110 §5.6.3): 400 (501 tolerated).")
def _(c, h):
    return req("POST", c.path, h, [b"Transfer-Encoding:\x0bchunked"], LAST + inner_req(c, h))


@case("te-leading-space-first-line", "reject|fwd", check=want(te="", cl="5", body="5"),
      rfc="RFC 9112 §2.2: whitespace before the first field line (\" Transfer-Encoding: "
          "chunked\"): MUST reject (400) or consume that line without processing it; so a "
          "forward carries no Transfer-Encoding, just Content-Length: 5.")
def _(c, h):
    head = (f"POST {c.path} HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: {h}\r\n"
            f"Content-Length: 5\r\n\r\n").encode()
    return head + b"hello"


def folded(f):
    if not re.fullmatch(r"a[ \t]+b", f.get("fold", "")):
        return f"forwarded with X-Fold {f.get('fold')!r} (want 'a', SP..., 'b')"
    return None


@case("obs-fold", "reject|fwd", check=folded,
      rfc="RFC 9112 §5.2: obs-fold in a request: 400, or replace each fold with one or "
          "more SP before forwarding (X-Fold: \"a b\", \"a   b\").")
def _(c, h):
    return req("GET", c.path, h, ["X-Fold: a", " b"])


@case("te-obs-fold", "reject|fwd", check=body_is(0), close_if_fwd=True,
      rfc="RFC 9112 §5.2: Transfer-Encoding value folded onto the next line, with a "
          "Content-Length: 400, or unfold (= CL + TE, see cl-te: forward chunked only "
          "and close). Hidden request after the 0-chunk.")
def _(c, h):
    body = LAST + inner_req(c, h)
    return req("POST", c.path, h, [f"Content-Length: {len(body)}", "Transfer-Encoding:", " chunked"], body)


# --- chunked body errors (the head may already be on its way upstream) ----------

@case("chunk-size-invalid", "body-error",
      rfc="RFC 9112 §7.1: chunk-size = 1*HEXDIG; \"zz\": 400 and close.")
def _(c, h):
    return req("POST", c.path, h, ["Transfer-Encoding: chunked"], b"zz\r\nhello\r\n" + LAST)


@case("chunk-size-overflow", "body-error",
      rfc="RFC 9112 §7.1: a chunk size that overflows (18 hex digits): 400 and close; "
          "a parser that wraps reads a small size.")
def _(c, h):
    return req("POST", c.path, h, ["Transfer-Encoding: chunked"], b"ffffffffffffffffff\r\nhello\r\n" + LAST)


@case("chunk-size-wrap", "body-error",
      rfc="RFC 9112 §7.1: 0x10000000000000005 (2^64 + 5): 400; a parser that wraps "
          "reads 5 and takes the rest as a hidden request.")
def _(c, h):
    return req("POST", c.path, h, ["Transfer-Encoding: chunked"],
               b"10000000000000005\r\nhello\r\n" + LAST + inner_req(c, h))


@case("chunk-lf-only", "reject|fwd", check=body_is(5),
      rfc="RFC 9112 §7.1: chunk lines end in CRLF; bare LF is not allowed there (§2.2's "
          "leniency covers start-line and fields only): 400, or at least re-encode "
          "consistently (upstream reads exactly the 5 bytes).")
def _(c, h):
    return req("POST", c.path, h, ["Transfer-Encoding: chunked"], b"5\nhello\n0\n\n")


# --- bytes in fields ----------------------------------------------------------------

@case("ctl-x01-value", "reject",
      rfc="RFC 9110 §5.5: CTLs other than HTAB are invalid in values; recipients MAY keep "
          "them in safe contexts, but a proxy should reject: 400.")
def _(c, h):
    return req("GET", c.path, h, [b"X-Ctl: a\x01b"])


@case("ctl-x7f-value", "reject", rfc="RFC 9110 §5.5: DEL (\\x7f) in a value: 400 (as \\x01).")
def _(c, h):
    return req("GET", c.path, h, [b"X-Ctl: a\x7fb"])


@case("bare-cr-value", "reject|fwd", check=no_cr_ctl,
      rfc="RFC 9112 §2.2 / RFC 9110 §5.5: bare CR in a value: reject (400) or replace "
          "with SP before forwarding.")
def _(c, h):
    return req("GET", c.path, h, [b"X-Ctl: a\rb"])


@case("nul-value", "reject|fwd", check=no_cr_ctl,
      rfc="RFC 9110 §5.5: NUL in a value: MUST reject (400) or replace with SP.")
def _(c, h):
    return req("GET", c.path, h, [b"X-Ctl: a\x00b"])


@case("nul-name", "reject", rfc="RFC 9110 §5.1: field name is a token; NUL in it: 400.")
def _(c, h):
    return req("GET", c.path, h, [b"X-\x00Ctl: b"])


@case("uri-space", "reject",
      rfc="RFC 9112 §3: SP in the request-target (\"GET /a b HTTP/1.1\"): 400.")
def _(c, h):
    return req("GET", c.path + " x", h)


# --- sizes --------------------------------------------------------------------------

@case("uri-64k", "reject", statuses=(414, 400),
      rfc="RFC 9112 §3: request-target longer than the server parses: 414 (400 fine).")
def _(c, h):
    return req("GET", c.path + "?" + "a" * 65536, h)


@case("header-line-64k", "reject", statuses=(431, 400),
      rfc="RFC 6585 §5: one 64 KiB field: 431 (400 fine; nginx says 400 "
          "\"Request Header Or Cookie Too Large\").")
def _(c, h):
    return req("GET", c.path, h, ["X-Big: " + "b" * 65536])


@case("header-section-64k", "reject", statuses=(431, 400),
      rfc="RFC 6585 §5: a 64 KiB field section (64 fields of 1 KiB): 431 (400 fine).")
def _(c, h):
    return req("GET", c.path, h, [f"X-Big-{i}: " + "b" * 1010 for i in range(64)])


@case("headers-200", "reject", statuses=(431, 400),
      rfc="RFC 6585 §5: 200 small fields, more than the proxy keeps: 431 (400 fine).")
def _(c, h):
    return req("GET", c.path, h, [f"X-H-{i}: v" for i in range(200)])


# --- Host ---------------------------------------------------------------------------

@case("no-host", "reject", rfc="RFC 9112 §3.2: an HTTP/1.1 request without Host: MUST 400.")
def _(c, h):
    return req("GET", c.path, None)


@case("host-duplicate", "reject",
      rfc="RFC 9112 §3.2: more than one Host field line: MUST 400.")
def _(c, h):
    return req("GET", c.path, h, ["Host: other.example"])


@case("absolute-form-host-mismatch", "reject|fwd", check=want(host="a.example"),
      rfc="RFC 9112 §3.2.2: absolute-form target wins over Host; a proxy forwarding it "
          "MUST send Host = the target's authority (a.example) (or reject with 400). "
          "Routing must use a.example too.")
def _(c, h):
    return req("GET", f"http://a.example{c.path}", "b.example")


CASE_NAMES = [c.name for c in CASES]
assert len(set(CASE_NAMES)) == len(CASE_NAMES)


# ---------------------------------------------------------------------------
# Wire

RESP_RE = re.compile(rb"HTTP/1\.[01] (\d{3})[^\r\n]*\r?\n")


def parse_responses(data):
    """Splits DATA into responses: list of dicts(status, headers, body,
    complete). Stops at the first incomplete or unparseable one."""
    out = []
    pos = 0
    while pos < len(data):
        m = RESP_RE.match(data, pos)
        if not m:
            out.append({"status": None, "garbage": data[pos:pos + 80].decode("latin-1"), "complete": False})
            break
        status = int(m.group(1))
        end = data.find(b"\r\n\r\n", m.end() - 2)
        if end < 0:
            out.append({"status": status, "headers": {}, "body": b"", "complete": False})
            break
        headers = {}
        for line in data[m.end():end].split(b"\r\n"):
            if b":" in line:
                k, v = line.split(b":", 1)
                headers.setdefault(k.strip().lower().decode("latin-1"), v.strip().decode("latin-1"))
        bstart = end + 4
        resp = {"status": status, "headers": headers}
        if 100 <= status < 200 and status != 101:
            pos = bstart
            continue  # interim response
        if status in (204, 304):
            resp.update(body=b"", complete=True)
            pos = bstart
        elif "transfer-encoding" in headers:
            body, p, ok = b"", bstart, False
            while True:
                le = data.find(b"\r\n", p)
                if le < 0:
                    break
                try:
                    n = int(data[p:le].split(b";")[0], 16)
                except ValueError:
                    break
                if n == 0:
                    te = data.find(b"\r\n\r\n", le)
                    if te >= 0:
                        p, ok = te + 4, True
                    break
                if le + 2 + n + 2 > len(data):
                    break
                body += data[le + 2:le + 2 + n]
                p = le + 2 + n + 2
            resp.update(body=body, complete=ok)
            pos = p if ok else len(data)
        elif "content-length" in headers:
            try:
                n = int(headers["content-length"])
            except ValueError:
                n = len(data) - bstart
            resp.update(body=data[bstart:bstart + n], complete=len(data) - bstart >= n)
            pos = bstart + n if resp["complete"] else len(data)
        else:  # delimited by close
            resp.update(body=data[bstart:], complete=None)
            pos = len(data)
        out.append(resp)
        if not resp["complete"]:
            break
    return out


def exchange(addr, payload, timeout, idle, want_responses=1):
    """Sends PAYLOAD on a new connection; reads until the peer closes, until
    IDLE seconds pass without data once WANT_RESPONSES complete responses are
    in, or until TIMEOUT. Returns (data, closed, reset, send_error)."""
    s = socket.create_connection(addr, timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    send_error = None
    try:
        s.sendall(payload)
    except OSError as e:  # the target answered and closed before reading it all
        send_error = type(e).__name__
    data = b""
    closed = reset = False
    deadline = time.monotonic() + timeout
    last = time.monotonic()
    try:
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            rs = parse_responses(data)
            done = sum(1 for r in rs if r.get("complete")) >= want_responses
            # A response announcing "Connection: close" gets the whole
            # TIMEOUT to actually close (Envoy, for one, waits up to its
            # delayed_close_timeout, 1 s, for the client to go first).
            closing = any("close" in r.get("headers", {}).get("connection", "").lower() for r in rs)
            if done and not closing and now - last >= idle:
                break
            s.settimeout(max(0.01, min(deadline - now, idle if done else deadline - now)))
            try:
                chunk_ = s.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                closed = reset = True
                break
            if not chunk_:
                closed = True
                break
            data += chunk_
            last = time.monotonic()
    finally:
        s.close()
    return data, closed, reset, send_error


REACHED_RE = re.compile(r"reached (.*)")


def reached_fields(body):
    """Parses the test upstream's 'reached k=v k=[v w] ...' line."""
    m = REACHED_RE.search(body)
    if not m:
        return None
    f = {}
    for k, v in re.findall(r"(\w+)=(\[[^\]]*\]|\S*)", m.group(1)):
        f[k] = v[1:-1] if v.startswith("[") else v
    return f


# ---------------------------------------------------------------------------
# Upstream access log (start-nginx.sh's format: '... "$request" $status ...')

LOG_RE = re.compile(r'"(?P<req>(?:[^"\\]|\\.)*)" (?P<status>\d{3}) ')


def log_path_of(request_line):
    parts = request_line.split(" ")
    if len(parts) < 2:
        return None
    target = parts[1]
    if "://" in target:
        target = "/" + target.split("://", 1)[1].partition("/")[2]
    return target.split("?", 1)[0]


def read_log(path, offset):
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            text = f.read().decode("latin-1")
    except FileNotFoundError:
        return None
    hits = []
    for line in text.splitlines():
        m = LOG_RE.search(line)
        if m:
            hits.append((log_path_of(m.group("req")), int(m.group("status"))))
    return hits


# ---------------------------------------------------------------------------


def judge(c, data, closed, reset, send_error, host):
    rs = parse_responses(data)
    first = rs[0] if rs else None
    status = first["status"] if first else None
    bodies = [r.get("body", b"").decode("latin-1") for r in rs]
    inner_hit = any(f"reached uri={c.inner}" in b for b in bodies)
    fields = None
    for b in bodies:
        f = reached_fields(b)
        if f and f.get("uri", "").split("?")[0] in (c.path, f"http://a.example{c.path}"):
            fields = f
            break
    forwarded = fields is not None and status is not None and 200 <= status < 300
    n_complete = sum(1 for r in rs if r.get("complete"))
    why = []
    if inner_hit:
        why.append("the hidden request reached the upstream")
    if c.kind == "control":
        ok_st = [r["status"] for r in rs if r.get("complete")]
        if ok_st[:c.responses] != [200] * c.responses or n_complete < c.responses:
            why.append(f"expected {c.responses}x 200, got {ok_st or 'nothing'}")
        elif not forwarded:
            why.append("200 but not from the test upstream")
        elif c.check and (e := c.check(fields)):
            why.append(e)
    else:
        if forwarded:
            if c.kind != "reject|fwd":
                why.append(f"forwarded (upstream answered {status})")
            else:
                if c.check and (e := c.check(fields)):
                    why.append(e)
                if c.close_if_fwd and not closed:
                    why.append("forwarded but the connection stayed open (RFC: close after responding)")
        elif status is None:
            if c.kind == "body-error" and closed:
                pass  # dropped without an answer: acceptable for a bad body
            elif closed:
                why.append("connection closed without a response" + (" (reset)" if reset else ""))
            else:
                why.append(f"no response within the timeout (waiting for more bytes?)")
        elif status not in c.statuses:
            why.append(f"status {status} (want {'/'.join(map(str, c.statuses))})")
        elif not closed:
            why.append(f"{status} but the connection stayed open")
        extra = n_complete - 1
        if extra > 0:
            why.append(f"{extra} more response(s) followed: a second request was processed")
    return {
        "case": c.name,
        "status": status,
        "closed": closed,
        "ok": not why,
        "expect": c.kind + ("" if c.kind == "control" else " " + "/".join(map(str, c.statuses))),
        "forwarded": forwarded,
        "inner_forwarded": inner_hit,
        "responses": len(rs),
        "reset": reset,
        "send_error": send_error,
        "upstream_saw": fields,
        "why": "; ".join(why) or None,
        "rfc": c.rfc,
    }


def check_log(results, hits):
    by_path = {}
    for p, st in hits:
        by_path.setdefault(p, []).append(st)
    for r in results:
        c = C(r["case"])
        outer = by_path.get(c.path, [])
        inner = by_path.get(c.inner, [])
        why = []
        if inner:
            why.append(f"upstream log: hidden request {c.inner} arrived ({inner})")
        if c.kind == "control":
            if len([s for s in outer if 200 <= s < 300]) < 1:
                why.append(f"upstream log: control request not logged with 2xx ({outer})")
        elif c.kind == "reject":
            if outer:
                why.append(f"upstream log: {c.path} arrived upstream ({outer})")
        elif c.kind == "reject|fwd":
            bad = [s for s in outer if not 200 <= s < 300]
            if bad:
                why.append(f"upstream log: forwarded in a form the upstream refused ({bad})")
        elif c.kind == "body-error":
            good = [s for s in outer if 200 <= s < 300]
            if good:
                why.append(f"upstream log: upstream accepted the bad body ({outer})")
        r["upstream_log"] = {"outer": outer, "inner": inner}
        if why:
            r["ok"] = False
            r["why"] = "; ".join(x for x in [r["why"]] + why if x)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("target", nargs="?", help="HOST:PORT to send the requests to")
    ap.add_argument("--upstream-log", help="access log of the upstream nginx behind the target")
    ap.add_argument("--host", default="localhost", help="Host header value (default localhost)")
    ap.add_argument("--only", help="comma-separated case names")
    ap.add_argument("--timeout", type=float, default=3.0, help="per-case read limit, s (default 3)")
    ap.add_argument("--idle", type=float, default=0.5,
                    help="after the expected responses, wait this long for more data or the close, s")
    ap.add_argument("--log-wait", type=float, default=0.5, help="wait before reading the upstream log, s")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--summary", action="store_true", help="also print a table on stderr")
    ap.add_argument("-v", "--verbose", action="store_true", help="print raw responses on stderr")
    a = ap.parse_args()

    if a.list:
        for c in CASES:
            print(f"{c.name:30} {c.kind:11} {'/'.join(map(str, c.statuses)) if c.kind != 'control' else '200':9} {c.rfc}")
        return 0
    if not a.target:
        ap.error("target HOST:PORT required")
    host, _, port = a.target.rpartition(":")
    if not host or not port.isdigit():
        ap.error("target must be HOST:PORT")
    addr = (host, int(port))

    # te-cl's expected forwarded body depends on the Host used in the inner request.
    C("te-cl").check = body_is(len(inner_req(C("te-cl"), a.host)))

    cases = CASES
    if a.only:
        names = a.only.split(",")
        unknown = [n for n in names if n not in CASE_NAMES]
        if unknown:
            ap.error(f"unknown case(s): {', '.join(unknown)}")
        cases = [c for c in CASES if c.name in names]

    log_off = None
    if a.upstream_log:
        log_off = os.path.getsize(a.upstream_log) if os.path.exists(a.upstream_log) else 0

    results = []
    for c in cases:
        payload = c.build(c, a.host)
        try:
            data, closed, reset, send_err = exchange(addr, payload, a.timeout, a.idle,
                                                     c.responses if c.kind == "control" else 1)
        except OSError as e:
            results.append({"case": c.name, "status": None, "closed": None, "ok": False,
                            "why": f"connect failed: {e}", "rfc": c.rfc})
            continue
        if a.verbose:
            print(f"--- {c.name}: closed={closed} reset={reset}\n{data[:600].decode('latin-1')}", file=sys.stderr)
        results.append(judge(c, data, closed, reset, send_err, a.host))

    if a.upstream_log:
        time.sleep(a.log_wait)
        hits = read_log(a.upstream_log, log_off)
        if hits is None:
            print(f"smuggling.py: {a.upstream_log} does not exist", file=sys.stderr)
            return 1
        check_log([r for r in results if "expect" in r], hits)

    for r in results:
        print(json.dumps(r), flush=True)
    bad = [r for r in results if not r["ok"]]
    if a.summary:
        print(f"\n{'case':30} {'status':>6} {'closed':6} {'ok':3} why", file=sys.stderr)
        for r in results:
            print(f"{r['case']:30} {str(r['status']):>6} {str(r['closed']):6} {'ok' if r['ok'] else 'NO':3} "
                  f"{r.get('why') or ''}", file=sys.stderr)
        print(f"\n{len(results) - len(bad)}/{len(results)} ok", file=sys.stderr)
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
