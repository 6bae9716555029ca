"""Server-Sent Events: a live dashboard fed by one background thread through an SSEChannel.

A Feeder thread publishes a "metrics" event (JSON) to the channel twice a second. Each GET
/events handler only subscribes its stream and returns, so no worker is held per browser; the
channel encodes each event once and queues the same bytes to every subscriber without waiting
for the network. Browsers that leave, or stop reading, are dropped from the channel by the
server. With replay=20 a reconnecting browser first gets the events it missed (after its
Last-Event-ID), or the last 20 when it is new.

Try it:
    python examples/sse_dashboard.py         # then open http://localhost:8080/ in a few tabs
    curl -N http://localhost:8080/events
"""

import json
import os
import random
import threading
import time

from mummyx import Request, Router, Server, SSEChannel

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>mummyx SSE dashboard</title>
<style>body { font-family: sans-serif } td { padding: 0 1em; text-align: right }</style>
<h1>Dashboard</h1>
<table>
  <tr><th>cpu %</th><td id="cpu">-</td></tr>
  <tr><th>requests/s</th><td id="requests">-</td></tr>
  <tr><th>users online</th><td id="users">-</td></tr>
  <tr><th>updated</th><td id="time">-</td></tr>
</table>
<script>
  const source = new EventSource("/events");
  source.addEventListener("metrics", (e) => {
    const m = JSON.parse(e.data);
    for (const key of ["cpu", "requests", "users", "time"])
      document.getElementById(key).textContent = m[key];
  });
</script>
"""

channel = SSEChannel(replay=20)
router = Router()


@router.get("/")
def index(request: Request) -> None:
    request.respond(200, {"Content-Type": "text/html; charset=utf-8"}, PAGE)


@router.get("/events")
def events(request: Request) -> None:
    channel.subscribe(request.respond_sse())  # and return: the channel keeps the stream


class Feeder(threading.Thread):
    """Publishes made-up metrics every ``interval`` seconds until stop()."""

    def __init__(self, channel: SSEChannel, interval: float = 0.5) -> None:
        super().__init__(name="dashboard-feeder", daemon=True)
        self.channel = channel
        self.interval = interval
        self._stop_event = threading.Event()

    def run(self) -> None:
        n, cpu, requests = 0, 20.0, 100.0
        while not self._stop_event.wait(self.interval):
            n += 1
            cpu = min(100.0, max(0.0, cpu + random.uniform(-5, 5)))
            requests = max(0.0, requests + random.uniform(-20, 20))
            metrics = {"cpu": round(cpu, 1), "requests": round(requests),
                       "users": len(self.channel), "time": time.strftime("%H:%M:%S")}
            self.channel.publish(json.dumps(metrics), event="metrics", id=str(n))

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8080"))
    feeder = Feeder(channel)
    feeder.start()
    server = Server(router, workers=16)
    print(f"Serving on http://localhost:{port}/ (Ctrl-C to stop)")
    try:
        server.serve(port)
    except KeyboardInterrupt:
        pass
    finally:
        feeder.stop()
