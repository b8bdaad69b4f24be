#!/usr/bin/env python3
"""Opens N TCP connections to a bolt listener on 127.0.0.1 and holds them idle.

Used by bench/idle_mem.sh. On every connection it sends one bolt v1 heartbeat
request (22 bytes) and reads the 20-byte heartbeat ack, which proves the
connection is live end to end (through an L4 proxy the echo upstream answers
it). Then it holds all of them until RELEASE_FILE exists (or --max-hold
seconds pass), checks that none was closed meanwhile, closes everything and
exits.

Progress goes to stdout, one line each:
    HELD <n> <seconds-to-open>      all n connections are open and acked
    ALIVE <n> CLOSED <m>            after the hold, before closing
    DONE
Exit status is non-zero if any connection failed to open or ack, or was
closed by the peer during the hold.
"""

import argparse
import os
import resource
import selectors
import socket
import struct
import sys
import time

HB_LEN = 22
ACK_LEN = 20


def heartbeat(req_id: int) -> bytes:
    # proto=1 type=1(request) cmd=0(heartbeat) ver2=1 id codec=1(hessian2)
    # timeout=3000 classLen=0 headerLen=0 contentLen=0
    return struct.pack(">BBHBIBiHHI", 1, 1, 0, 1, req_id, 1, 3000, 0, 0, 0)


def check_ack(b: bytes, req_id: int) -> str | None:
    if len(b) != ACK_LEN:
        return f"ack of {len(b)} bytes"
    proto, typ, cmd, _ver2, rid, _codec, status, cl, hl, ctl = struct.unpack(">BBHBIBHHHI", b)
    if proto != 1 or typ != 0 or cmd != 0:
        return f"not a heartbeat ack: {b.hex()}"
    if rid != req_id:
        return f"ack id {rid}, sent {req_id}"
    if status != 0 or cl or hl or ctl:
        return f"bad ack {b.hex()}"
    return None


def raise_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, need)) if hard != resource.RLIM_INFINITY else max(soft, need)
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < need:
        sys.exit(f"idle_conns: need {need} fds, hard limit is {hard}")


def open_batch(addr, ids, no_heartbeat, timeout):
    """Connects len(ids) sockets concurrently, heartbeats each; returns sockets."""
    sel = selectors.DefaultSelector()
    state = {}
    socks = []
    for i in ids:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        err = s.connect_ex(addr)
        if err not in (0, 115):  # EINPROGRESS
            raise OSError(err, f"connect: {os.strerror(err)}")
        socks.append(s)
        state[s] = [i, b""]
        sel.register(s, selectors.EVENT_WRITE)
    pending = len(socks)
    deadline = time.monotonic() + timeout
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{pending} connections not established/acked in {timeout}s")
        for key, ev in sel.select(left):
            s = key.fileobj
            req_id, got = state[s]
            if ev & selectors.EVENT_WRITE:
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(err, f"connect: {os.strerror(err)}")
                if no_heartbeat:
                    sel.unregister(s)
                    pending -= 1
                    continue
                s.send(heartbeat(req_id))  # 22 bytes into an empty buffer
                sel.modify(s, selectors.EVENT_READ)
            elif ev & selectors.EVENT_READ:
                chunk = s.recv(ACK_LEN - len(got))
                if not chunk:
                    raise ConnectionError(f"connection {req_id} closed before the ack")
                got += chunk
                state[s][1] = got
                if len(got) == ACK_LEN:
                    why = check_ack(got, req_id)
                    if why:
                        raise ValueError(f"connection {req_id}: {why}")
                    sel.unregister(s)
                    pending -= 1
    sel.close()
    return socks


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True, help="listener port on 127.0.0.1")
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=200, help="connections opened concurrently")
    ap.add_argument("--no-heartbeat", action="store_true", help="only connect")
    ap.add_argument("--release-file", required=True, help="hold until this file exists")
    ap.add_argument("--max-hold", type=float, default=300.0)
    ap.add_argument("--timeout", type=float, default=30.0, help="per batch")
    a = ap.parse_args()

    raise_nofile(a.conns + 64)
    addr = ("127.0.0.1", a.port)  # never anything else
    t0 = time.monotonic()
    conns = []
    try:
        for start in range(0, a.conns, a.batch):
            ids = range(start + 1, min(start + a.batch, a.conns) + 1)
            conns += open_batch(addr, ids, a.no_heartbeat, a.timeout)
    except Exception as e:  # report, close what is open, fail
        print(f"FAILED after {len(conns)} connections: {e}", flush=True)
        for s in conns:
            s.close()
        return 1
    print(f"HELD {len(conns)} {time.monotonic() - t0:.2f}", flush=True)

    until = time.monotonic() + a.max_hold
    while not os.path.exists(a.release_file) and time.monotonic() < until:
        time.sleep(0.05)

    # Still open? A peer close shows as a readable socket with recv() == b"".
    closed = 0
    for s in conns:
        try:
            if s.recv(1) == b"":
                closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    print(f"ALIVE {len(conns) - closed} CLOSED {closed}", flush=True)
    for s in conns:
        s.close()
    print("DONE", flush=True)
    return 1 if closed else 0


if __name__ == "__main__":
    sys.exit(main())
