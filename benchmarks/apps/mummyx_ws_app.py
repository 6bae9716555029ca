"""mummyx WebSocket echo: every message comes back on the same connection, same type.

  GET /ws  -> upgrade; each text/binary message is sent back unchanged (str -> text frame,
              bytes -> binary frame). Handlers run on the native worker pool.

Usage: python mummyx_ws_app.py PORT WORKERS
"""
import sys

from mummyx import Router, Server, WebSocketEvent

router = Router()


@router.get("/ws")
def upgrade(request):
    request.upgrade_to_websocket()


def websocket_handler(websocket, event, message):
    if event is WebSocketEvent.MESSAGE:
        websocket.send(message.data)


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    server = Server(router, workers=workers, websocket_handler=websocket_handler,
                    max_message_len=16 * 1024 * 1024)
    server.serve(port, host="127.0.0.1")  # blocks


if __name__ == "__main__":
    main()
