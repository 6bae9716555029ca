"""mummyx SSE fan-out: one publisher thread, every subscriber gets every event.

  GET /events  -> text/event-stream; the stream is subscribed to one SSEChannel and stays open.
  A publisher thread publishes `event: tick` / `data: <time.time_ns()>` RATE times a second
  (paced on a fixed schedule; when it falls behind it does not burst to catch up), starting once
  SUBSCRIBERS streams are subscribed (or 30 s after the first one).
  The client computes publish-to-receive latency = its CLOCK_REALTIME - the data.

Usage: python mummyx_sse_app.py PORT RATE [WORKERS [SUBSCRIBERS]]
"""
import sys
import threading
import time

from mummyx import Router, Server, SSEChannel

router = Router()
channel = SSEChannel()


@router.get("/events")
def events(request):
    stream = request.respond_sse()
    channel.subscribe(stream)  # the handler returns; the stream stays open


def publisher(rate, wait_for):
    deadline = None
    while len(channel) < wait_for:
        if len(channel) and deadline is None:
            deadline = time.monotonic() + 30.0
        if deadline is not None and time.monotonic() > deadline:
            break
        time.sleep(0.01)
    interval = 1.0 / rate
    next_t = time.monotonic()
    while True:
        now = time.monotonic()
        if next_t > now:
            time.sleep(next_t - now)
        elif now - next_t > interval:
            next_t = now  # behind schedule: no catch-up burst
        channel.publish(str(time.time_ns()), event="tick")
        next_t += interval


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    rate = float(sys.argv[2]) if len(sys.argv) > 2 else 1000.0
    workers = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    wait_for = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    threading.Thread(target=publisher, args=(rate, wait_for), name="publisher", daemon=True).start()
    server = Server(router, workers=workers)
    server.serve(port, host="127.0.0.1")  # blocks


if __name__ == "__main__":
    main()
