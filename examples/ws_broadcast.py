"""Broadcast from a background thread: every connected client gets the time once a second.

WebSocket.send() is thread-safe and never blocks on the network (it queues the message for the
server's I/O thread), so any thread may send: here a ticker thread that is not a handler at all.
A client that stops reading fills its bounded queue (Server(max_send_queue=...)) and is
disconnected; send() then raises ConnectionClosed, and its CLOSE event removes it.

Try it:
    python examples/ws_broadcast.py
    python -m websockets ws://localhost:8080/ws      # in as many terminals as you like
    open http://localhost:8080/
"""

import os
import threading
import time
from typing import Optional, Set

from mummyx import ConnectionClosed, Message, Request, Router, Server, WebSocket, WebSocketEvent

router = Router()

_lock = threading.Lock()  # guards _clients
_clients: Set[WebSocket] = set()

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>mummyx broadcast</title>
<p>Server time: <b id="now">connecting...</b></p>
<script>
const url = new URL("/ws", location.href);
url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
const socket = new WebSocket(url);
socket.onmessage = (e) => { document.getElementById("now").textContent = e.data; };
socket.onclose = () => { document.getElementById("now").textContent = "disconnected"; };
</script>
"""


@router.get("/")
def index(request: Request) -> None:
    request.respond(200, {"Content-Type": "text/html; charset=utf-8"}, PAGE)


@router.get("/ws")
def subscribe(request: Request) -> None:
    request.upgrade_to_websocket()


def websocket_handler(websocket: WebSocket, event: WebSocketEvent,
                      message: Optional[Message]) -> None:
    if event is WebSocketEvent.OPEN:
        with _lock:
            _clients.add(websocket)
    elif event is WebSocketEvent.CLOSE:
        with _lock:
            _clients.discard(websocket)
    # messages from clients are ignored


def broadcast(data: str) -> int:
    """Sends data to every connected client; returns how many it reached."""
    with _lock:
        clients = list(_clients)  # send outside the lock: handlers need it meanwhile
    sent = 0
    for websocket in clients:
        try:
            websocket.send(data)
            sent += 1
        except ConnectionClosed:
            pass  # gone or too slow; its CLOSE event removes it
    return sent


def start_ticker(interval: float = 1.0) -> threading.Event:
    """Starts a daemon thread broadcasting the time every `interval` seconds; set the returned
    event to stop it."""
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(interval):
            broadcast(time.strftime("%H:%M:%S"))

    threading.Thread(target=run, name="ticker", daemon=True).start()
    return stop


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8080"))
    # Ping idle clients every 30 s, so dead connections do not linger in _clients.
    server = Server(router, websocket_handler=websocket_handler, websocket_ping_interval=30.0)
    stop_ticker = start_ticker()
    print(f"Broadcasting on ws://localhost:{port}/ws, page at http://localhost:{port}/")
    try:
        server.serve(port)
    except KeyboardInterrupt:
        pass
    finally:
        stop_ticker.set()
