"""Hand-written ASGI SSE fan-out for granian (--interface asgi); also runs on uvicorn.

  GET /events  -> 200 text/event-stream, chunked, stays open; every subscriber gets every event.

One asyncio.Queue per subscriber. A publisher task (started with the first subscriber) puts
`event: tick\\ndata: <time.time_ns()>\\n\\n` into every queue SSE_RATE times a second (env var,
default 1000), paced on a fixed schedule without catch-up bursts. A subscriber's task sends
whatever its queue holds in one body chunk (up to 64 events). A queue that is full (SSE_QUEUE
events, default 256: the client is too slow) drops the new event for that subscriber rather than
grow without bound; the client sees fewer events.
"""
import asyncio
import os
import time

RATE = float(os.environ.get("SSE_RATE", "1000"))
QUEUE = int(os.environ.get("SSE_QUEUE", "256"))
WAIT_FOR = int(os.environ.get("SSE_SUBSCRIBERS", "1"))  # publish once this many are subscribed
WAIT_MAX = 30.0  # ... or this many seconds after the first one

subscribers = set()
publisher_task = None
START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
}
NOT_FOUND_START = {
    "type": "http.response.start",
    "status": 404,
    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"9")],
}
NOT_FOUND_END = {"type": "http.response.body", "body": b"Not Found"}


async def publisher():
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_MAX
    while len(subscribers) < WAIT_FOR and loop.time() < deadline:
        await asyncio.sleep(0.01)
    interval = 1.0 / RATE
    next_t = loop.time()
    while True:
        now = loop.time()
        if next_t > now:
            await asyncio.sleep(next_t - now)
        else:
            if now - next_t > interval:
                next_t = now  # behind schedule: no catch-up burst
            await asyncio.sleep(0)
        event = b"event: tick\ndata: %d\n\n" % time.time_ns()
        for q in subscribers:
            if not q.full():
                q.put_nowait(event)
        next_t += interval


async def events(send):
    global publisher_task
    if publisher_task is None:
        publisher_task = asyncio.ensure_future(publisher())
    q = asyncio.Queue(QUEUE)
    subscribers.add(q)
    try:
        await send(START)
        while True:
            chunk = await q.get()
            n = q.qsize()
            if n:
                chunk = b"".join([chunk] + [q.get_nowait() for _ in range(min(n, 63))])
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    finally:
        subscribers.discard(q)


async def app(scope, receive, send):
    kind = scope["type"]
    if kind == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if kind != "http":
        return
    if scope["path"] == "/events":
        await events(send)
    else:
        await send(NOT_FOUND_START)
        await send(NOT_FOUND_END)
