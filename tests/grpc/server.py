#!/usr/bin/env python3
"""Raw-bytes gRPC test server (grpcio, no generated code) for ferrymesh tests.

Service `echo.Echo`; all messages are opaque bytes (no protobuf):
  Unary         -> b"<NAME>:" + request, initial metadata x-server: NAME
  ServerStream  request b"<count>" -> msg-0 .. msg-(count-1)
  ClientStream  -> all request messages joined by b","
  Bidi          -> b"echo:" + msg, sent as soon as each msg arrives
  Slow          request b"<ms>" -> sleeps ms (stops early if cancelled), returns b"done"
  Fail          -> INVALID_ARGUMENT, details "bad request: <req>",
                   trailers x-error-code: E42, x-detail-bin: b"\\x00\\x01\\x02"
  Big           request b"<n>" -> n bytes (repeating 0x00..0xff pattern)
  Metadata      (extra) -> JSON of the received invocation metadata
                   (binary values hex-encoded) and the server-side time_remaining

Usage: python3 server.py [--port 0] [--host 127.0.0.1] [--name NAME]
Prints exactly one line "READY <port>" on stdout once serving; exits 0 on
SIGTERM/SIGINT.
"""
import os

# Must be set before grpc is imported; keeps grpc-core's C logging quiet.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import argparse
import json
import signal
import sys
import threading
import time
from concurrent import futures

import grpc

MAX_MSG = 64 * 1024 * 1024
SERVICE = "echo.Echo"
PATTERN = bytes(range(256))


def big_payload(n):
    reps, rem = divmod(n, len(PATTERN))
    return PATTERN * reps + PATTERN[:rem]


def parse_int(req, context, what):
    try:
        return int(req.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "%s: expected ASCII integer, got %r" % (what, req[:64]))


def build_handlers(name):
    name_b = name.encode()

    def unary(req, context):
        context.send_initial_metadata((("x-server", name),))
        return name_b + b":" + req

    def server_stream(req, context):
        count = parse_int(req, context, "ServerStream")
        for i in range(count):
            if not context.is_active():
                return
            yield b"msg-%d" % i

    def client_stream(req_iter, context):
        return b",".join(req_iter)

    def bidi(req_iter, context):
        for msg in req_iter:
            yield b"echo:" + msg

    def slow(req, context):
        ms = parse_int(req, context, "Slow")
        end = time.monotonic() + ms / 1000.0
        # Sleep in slices so a cancelled/expired call frees its worker quickly.
        while context.is_active():
            left = end - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(left, 0.01))
        return b"done"

    def fail(req, context):
        context.set_trailing_metadata((
            ("x-error-code", "E42"),
            ("x-detail-bin", b"\x00\x01\x02"),
        ))
        context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                      "bad request: " + req.decode("utf-8", "replace"))

    def big(req, context):
        n = parse_int(req, context, "Big")
        if n < 0 or n > MAX_MSG - 64:
            context.abort(grpc.StatusCode.OUT_OF_RANGE, "Big: n out of range: %d" % n)
        return big_payload(n)

    def metadata(req, context):
        md = []
        for k, v in context.invocation_metadata():
            md.append([k, v.hex() if isinstance(v, bytes) else v])
        out = {"server": name, "metadata": md, "time_remaining": context.time_remaining(),
               "peer": context.peer()}
        return json.dumps(out).encode()

    h = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
        "Big": grpc.unary_unary_rpc_method_handler(big),
        "Metadata": grpc.unary_unary_rpc_method_handler(metadata),
    }
    # No request_deserializer / response_serializer => handlers see raw bytes.
    return grpc.method_handlers_generic_handler(SERVICE, h)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=0, help="0 = pick a free port")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--name", default="srv")
    ap.add_argument("--workers", type=int, default=32)
    args = ap.parse_args()

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=args.workers),
        handlers=[build_handlers(args.name)],
        options=[
            ("grpc.max_send_message_length", MAX_MSG),
            ("grpc.max_receive_message_length", MAX_MSG),
            ("grpc.so_reuseport", 0),  # a fixed --port must not silently share
        ],
    )
    try:
        port = server.add_insecure_port("%s:%d" % (args.host, args.port))
    except RuntimeError as e:  # grpcio >= 1.50 raises instead of returning 0
        port, err = 0, e
    else:
        err = None
    if port == 0:
        print("failed to bind %s:%d: %s" % (args.host, args.port, err), file=sys.stderr)
        sys.exit(2)
    server.start()

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    sys.stdout.write("READY %d\n" % port)
    sys.stdout.flush()

    # Short waits so the Python signal handler runs promptly.
    while not stop.wait(0.2):
        pass
    server.stop(grace=0.5).wait(2)
    sys.exit(0)


if __name__ == "__main__":
    main()
