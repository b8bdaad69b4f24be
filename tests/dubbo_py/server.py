#!/usr/bin/env python3
"""A real Dubbo 2 provider built on PyPI dubbo-py (dubbo header + its own hessian2),
no registry, for ferrymesh interop tests.

  python3 server.py [--port 0] [--name NAME] [--host 127.0.0.1]

Prints exactly one line on stdout, `READY <port>`, once listening; logging goes to
stderr. Exits 0 on SIGTERM / SIGINT.

Serves com.example.EchoService (dubbo-py ignores the service version) with
  echo(s)     -> s + "|server=" + NAME
  fail(s)     -> raises => dubbo-py answers status 90 (CLIENT_ERROR), body = the message
  slow(s, ms) -> "slow:" + s + "|server=" + NAME after ms milliseconds (capped at 60 s)

dubbo-py quirks (library behaviour, kept as is): it serves one request at a time per
connection; it answers heartbeats with status 0 (not 20); a method it does not know gets
no answer at all; every 60 s it sends its own two-way heartbeat to each consumer.

DubboService() itself is not used: its constructor looks up the host's public address
(a UDP connect to 8.8.8.8) and binds 0.0.0.0. The same server and request handler are
built here on 127.0.0.1 instead.
"""
import argparse
import logging
import signal
import sys
import time

from dubbo.server import _DubboServer, _ServerThread, _get_dubbo_request_handler

SERVICE = "com.example.EchoService"


def text(v):
    return v.decode() if isinstance(v, (bytes, bytearray)) else str(v)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=20881)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--name", default=None)
    args = ap.parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.ERROR,
                        format="[dubbo-py server] %(levelname)s %(message)s")

    name = {"v": args.name}

    def echo(s):
        return text(s) + "|server=" + name["v"]

    def fail(s):
        raise RuntimeError("fail:" + text(s))

    def slow(s, ms):
        time.sleep(max(0, min(int(ms or 0), 60000)) / 1000.0)
        return "slow:" + text(s) + "|server=" + name["v"]

    services = {SERVICE: {"echo": echo, "fail": fail, "slow": slow}}
    try:
        server = _DubboServer((args.host, args.port), _get_dubbo_request_handler(services))
    except OSError as e:
        print(f"server.py: cannot listen on {args.host}:{args.port}: {e}", file=sys.stderr)
        sys.exit(2)
    port = server.server_address[1]
    if not name["v"]:
        name["v"] = f"dubbo-py-{port}"
    thread = _ServerThread(server)
    thread.start()

    def stop(signum, _frame):
        # Handler threads are daemons: shut the accept loop and leave.
        server.shutdown()
        server.server_close()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sys.stdout.write(f"READY {port}\n")
    sys.stdout.flush()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
