#!/usr/bin/env python3
"""Slow uploads through a proxy (issue 13, item 4), for bench/slow_uploads.sh.

  slow_uploads.py backend PORT           a keep-alive HTTP/1.1 server that
      reads each request body and answers 200; prints, on SIGTERM, the
      connections it accepted and the most it had open at once.
  slow_uploads.py client PORT N BYTES RATE
      N uploads of BYTES each at RATE bytes/s, their starts spread over one
      upload's duration; prints how many got 200 and the slowest.
"""
import asyncio
import signal
import sys
import time


async def backend(port):
    stats = {"accepted": 0, "open": 0, "peak": 0, "requests": 0}

    async def serve(reader, writer):
        stats["accepted"] += 1
        stats["open"] += 1
        stats["peak"] = max(stats["peak"], stats["open"])
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                    if name.strip().lower() == b"transfer-encoding":
                        raise ValueError("chunked request: the proxy did not hold it")
                await reader.readexactly(length)
                stats["requests"] += 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, asyncio.CancelledError):
            pass
        finally:
            stats["open"] -= 1
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", port, backlog=4096)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        await stop.wait()
    print(stats["accepted"], stats["peak"], stats["requests"], flush=True)


async def upload(port, size, rate, delay):
    await asyncio.sleep(delay)
    start = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"POST /up HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {size}\r\n\r\n".encode()
        )
        piece = max(1, rate // 10)
        sent = 0
        while sent < size:
            n = min(piece, size - sent)
            writer.write(b"u" * n)
            await writer.drain()
            sent += n
            if sent < size:
                await asyncio.sleep(0.1)
        status = (await reader.readline()).split(b" ")[1]
        writer.close()
        return status == b"200", time.monotonic() - start
    except (ConnectionError, IndexError, OSError):
        return False, time.monotonic() - start


async def client(port, n, size, rate):
    # Starts spread over one upload's duration, as real clients come: a
    # proxy that holds bodies needs a few backend connections, one that
    # streams them needs one per upload in progress.
    spread = size / rate / n
    results = await asyncio.gather(*(upload(port, size, rate, i * spread) for i in range(n)))
    ok = sum(1 for good, _ in results if good)
    print(ok, f"{max(t for _, t in results):.1f}", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "backend":
        asyncio.run(backend(int(sys.argv[2])))
    else:
        port, n, size, rate = map(int, sys.argv[2:6])
        asyncio.run(client(port, n, size, rate))
