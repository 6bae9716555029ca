"""ASGI upload app (uvicorn --http httptools --loop uvloop): bodies streamed to files.

Same work as mummyx_upload_app.py; the directory comes from $UPLOAD_DIR:
  PUT /upload  -> each receive() chunk written to a temporary file, renamed to DIR/blob when
                  complete; answers 200 with the byte count
  POST /form   -> multipart/form-data parsed as it arrives by streaming-form-data
                  (StreamingFormDataParser, a FileTarget for the "file" part, a ValueTarget for
                  the "note" field); answers 200 with the size of DIR/file

Plain blocking file writes on the event loop: the fastest way for one upload at a time (a
thread hop per chunk, or aiofiles, only adds work).
"""
import os

try:  # only /form needs it
    from streaming_form_data import StreamingFormDataParser
    from streaming_form_data.targets import FileTarget, ValueTarget
except ImportError:  # pragma: no cover - run.py skips upload-form without it
    StreamingFormDataParser = None

DIR = os.environ.get("UPLOAD_DIR", ".")


async def answer(send, status, text):
    body = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


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
    path, method = scope["path"], scope["method"]
    if path == "/upload" and method == "PUT":
        final = os.path.join(DIR, "blob")
        tmp = final + ".part"
        n = 0
        with open(tmp, "wb") as f:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    f.close()
                    os.unlink(tmp)
                    return
                chunk = message.get("body", b"")
                if chunk:
                    f.write(chunk)
                    n += len(chunk)
                if not message.get("more_body", False):
                    break
        os.replace(tmp, final)
        await answer(send, 200, str(n))
    elif path == "/form" and method == "POST":
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        target = os.path.join(DIR, "file")
        parser = StreamingFormDataParser(headers=headers)
        parser.register("file", FileTarget(target))
        parser.register("note", ValueTarget())
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            if chunk:
                parser.data_received(chunk)
            if not message.get("more_body", False):
                break
        await answer(send, 200, str(os.path.getsize(target)))
    else:
        await answer(send, 404, "Not Found")
