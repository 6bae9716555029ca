"""Server-Sent Events: a clock that ticks once a second in the browser.

GET / serves a page whose EventSource listens to GET /events. Each /events handler sends a
"tick" event with the time, then waits on stream.wait_closed(INTERVAL), which sleeps without
the GIL and returns True as soon as the browser goes away. Every tick carries an id, so a
browser that reconnects (it does so by itself, after `retry` ms) sends Last-Event-ID and the
count resumes where it stopped. The server writes heartbeat comments on idle streams itself.

Each open clock occupies one worker thread while it waits; for many clients, publish from one
thread to an SSEChannel instead (see sse_dashboard.py).

Try it:
    python examples/sse_clock.py             # then open http://localhost:8080/
    curl -N http://localhost:8080/events
"""

import os
import time

from mummyx import Request, Router, Server

INTERVAL = 1.0  # seconds between ticks

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>mummyx SSE clock</title>
<h1 id="clock">connecting…</h1>
<p>tick <span id="n">-</span></p>
<script>
  const source = new EventSource("/events");
  source.addEventListener("tick", (e) => {
    document.getElementById("clock").textContent = e.data;
    document.getElementById("n").textContent = e.lastEventId;
  });
  source.onerror = () => { document.getElementById("clock").textContent = "reconnecting…"; };
</script>
"""

router = Router()


@router.get("/")
def index(request: Request) -> None:
    request.respond(200, {"Content-Type": "text/html; charset=utf-8"}, PAGE)


@router.get("/events")
def events(request: Request) -> None:
    stream = request.respond_sse()
    last = stream.last_event_id
    n = int(last) + 1 if last and last.isdigit() else 1
    stream.send(time.strftime("%H:%M:%S"), event="tick", id=n, retry=2000)
    while not stream.wait_closed(INTERVAL):  # True once the client has left
        n += 1
        try:
            stream.send(time.strftime("%H:%M:%S"), event="tick", id=n)
        except ConnectionError:  # mummyx.ConnectionClosed: it left between two ticks
            break


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8080"))
    server = Server(router, workers=16)
    print(f"Serving on http://localhost:{port}/ (Ctrl-C to stop)")
    try:
        server.serve(port)
    except KeyboardInterrupt:
        pass
