"""sse-starlette (EventSourceResponse on Starlette) fan-out, for uvicorn.

  GET /events  -> 200 text/event-stream, stays open; every subscriber gets every event.

The idiomatic sse-starlette way: one asyncio.Queue per subscriber, drained by the async generator
handed to EventSourceResponse (one ServerSentEvent per event, sse-starlette does the framing,
disconnect detection and its default 15 s keep-alive pings). A publisher task (started with the
first subscriber) puts time.time_ns() into every queue SSE_RATE times a second (env var, default
1000), paced on a fixed schedule without catch-up bursts; a full queue (SSE_QUEUE, default 256)
drops the event for that subscriber.
"""
import asyncio
import os
import time

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.routing import Route

RATE = float(os.environ.get("SSE_RATE", "1000"))
QUEUE = int(os.environ.get("SSE_QUEUE", "256"))
WAIT_FOR = int(os.environ.get("SSE_SUBSCRIBERS", "1"))  # publish once this many are subscribed
WAIT_MAX = 30.0  # ... or this many seconds after the first one

subscribers = set()
publisher_task = None


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
        ts = str(time.time_ns())
        for q in subscribers:
            if not q.full():
                q.put_nowait(ts)
        next_t += interval


async def stream(q):
    try:
        while True:
            ts = await q.get()
            yield ServerSentEvent(data=ts, event="tick")
    finally:
        subscribers.discard(q)


async def events(request):
    global publisher_task
    if publisher_task is None:
        publisher_task = asyncio.ensure_future(publisher())
    q = asyncio.Queue(QUEUE)
    subscribers.add(q)
    return EventSourceResponse(stream(q))


app = Starlette(routes=[Route("/events", events)])
