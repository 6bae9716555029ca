"""WebSocket echo: every message comes back as it was sent (text as text, bytes as binary).

GET /ws answers the WebSocket handshake with request.upgrade_to_websocket(); from then on the
connection's events (OPEN, MESSAGE, ERROR, CLOSE) go to websocket_handler, one at a time and in
order, on the worker pool. A handler may send right after upgrading, before OPEN is delivered.

Try it (the websockets package has an interactive client):
    python examples/ws_echo.py
    python -m websockets ws://localhost:8080/ws
"""

import logging
import os
from typing import Optional

from mummyx import Message, MessageKind, Request, Router, Server, WebSocket, WebSocketEvent

log = logging.getLogger("ws_echo")
router = Router()


@router.get("/ws")
def upgrade(request: Request) -> None:
    websocket = request.upgrade_to_websocket()
    websocket.send("Hello world from WebSocket!")  # allowed before OPEN is delivered


def websocket_handler(websocket: WebSocket, event: WebSocketEvent,
                      message: Optional[Message]) -> None:
    if event is WebSocketEvent.OPEN:
        log.info("connection %s from %s opened", websocket.id, websocket.remote_addr)
    elif event is WebSocketEvent.MESSAGE:
        assert message is not None
        if message.kind in (MessageKind.TEXT, MessageKind.BINARY):
            websocket.send(message.data)  # str goes out as text, bytes as binary
        # PING messages were already answered with a PONG by the server
    elif event is WebSocketEvent.CLOSE:
        log.info("connection %s closed: %s %s", websocket.id, websocket.close_code,
                 websocket.close_reason)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    port = int(os.environ.get("PORT", "8080"))
    server = Server(router, websocket_handler=websocket_handler)
    print(f"Echoing on ws://localhost:{port}/ws (Ctrl-C to stop)")
    try:
        server.serve(port)
    except KeyboardInterrupt:
        pass  # serve() has closed open WebSockets (code 1001) and the server
