"""ASGI app for uvicorn (--http httptools --loop uvloop).

Same work as every other app in this folder:
  GET /       -> 200 "Hello, World!" (text/plain)
  GET /sleep  -> await asyncio.sleep(0.01), then the same answer
(asyncio.sleep is the idiomatic async equivalent of a blocking 10 ms sleep.)
"""
import asyncio

BODY = b"Hello, World!"
START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")],
}
END = {"type": "http.response.body", "body": BODY}
NOT_FOUND_START = {
    "type": "http.response.start",
    "status": 404,
    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"9")],
}
NOT_FOUND_END = {"type": "http.response.body", "body": b"Not Found"}


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/sleep":
        await asyncio.sleep(0.01)
    elif path != "/":
        await send(NOT_FOUND_START)
        await send(NOT_FOUND_END)
        return
    await send(START)
    await send(END)
