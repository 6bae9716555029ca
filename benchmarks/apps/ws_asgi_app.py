"""ASGI WebSocket echo for uvicorn (--ws websockets) (also runs on granian --interface asgi).

  /ws  -> accept; each message is sent back unchanged (bytes -> binary, text -> text).
"""

NOT_FOUND_START = {
    "type": "http.response.start",
    "status": 404,
    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"9")],
}
NOT_FOUND_END = {"type": "http.response.body", "body": b"Not Found"}


async def app(scope, receive, send):
    kind = scope["type"]
    if kind == "websocket":
        message = await receive()  # websocket.connect
        if message["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.receive":
                data = message.get("bytes")
                if data is not None:
                    await send({"type": "websocket.send", "bytes": data})
                else:
                    await send({"type": "websocket.send", "text": message["text"]})
            else:  # websocket.disconnect
                return
    elif kind == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    else:
        await send(NOT_FOUND_START)
        await send(NOT_FOUND_END)
