#!/usr/bin/env python3
"""Opens N TLS connections to HOST:PORT, sends one HTTP/1.1 request on each
and reads its answer, then holds them all open until stdin closes or
SIGTERM. Prints `READY n` once every connection has had its exchange.

  python3 tls_idle.py HOST PORT N CA_FILE
"""
import asyncio
import signal
import ssl
import sys


async def one(host, port, ctx, held, sem):
    async with sem:
        r, w = await asyncio.open_connection(host, port, ssl=ctx, server_hostname=None)
        w.write(b"GET /small HTTP/1.1\r\nHost: bench\r\n\r\n")
        await w.drain()
        head = await r.readuntil(b"\r\n\r\n")
        n = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                n = int(line.split(b":")[1])
        await r.readexactly(n)
        held.append(w)


async def main():
    host, port, n, ca = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False
    ctx.set_alpn_protocols(["http/1.1"])
    held = []
    sem = asyncio.Semaphore(64)
    await asyncio.gather(*(one(host, port, ctx, held, sem) for _ in range(n)))
    print(f"READY {len(held)}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()


asyncio.run(main())
