"""The server under soak (run as a subprocess by tests/soak/run.py): plain routes, a handler that
raises, a streamed upload route, WebSocket echo and SSE streams that end after a few events."""
import sys

from mummyx import Router, Server, WebSocketEvent

router = Router()


@router.get("/")
def index(request):
    request.respond(200, {"Content-Type": "text/plain"}, "Hello, World!")


@router.get("/raise")
def boom(request):
    raise RuntimeError("soak: a handler that raises")


@router.post("/upload", stream=True, max_body_len=None)
def upload(request):
    total = 0
    for chunk in request.iter_body():
        total += len(chunk)
    request.respond(200, body=str(total))


@router.get("/ws")
def ws(request):
    request.upgrade_to_websocket()


@router.get("/events")
def events(request):
    stream = request.respond_sse()
    for i in range(3):
        stream.send(f"event {i}", id=str(i))
    stream.close()


def echo(websocket, event, message):
    if event is WebSocketEvent.MESSAGE:
        websocket.send(message.data)


if __name__ == "__main__":
    import logging
    logging.getLogger("mummyx").setLevel(logging.CRITICAL)  # the raising handler is expected
    Server(router, websocket_handler=echo, workers=8, header_timeout=2.0, body_timeout=2.0,
           idle_timeout=5.0).serve(int(sys.argv[1]), host="127.0.0.1")
