"""RSGI upload app for granian (--interface rsgi): bodies streamed to files.

Same work as mummyx_upload_app.py and upload_asgi_app.py; the directory comes from $UPLOAD_DIR:
  PUT /upload  -> each body chunk (`async for chunk in protocol`) written to a temporary file,
                  renamed to DIR/blob when complete; answers 200 with the byte count
  POST /form   -> multipart/form-data parsed as it arrives by streaming-form-data (a FileTarget
                  for "file", a ValueTarget for "note"); answers 200 with the size of DIR/file
"""
import os

try:  # only /form needs it
    from streaming_form_data import StreamingFormDataParser
    from streaming_form_data.targets import FileTarget, ValueTarget
except ImportError:  # pragma: no cover - run.py skips upload-form without it
    StreamingFormDataParser = None

DIR = os.environ.get("UPLOAD_DIR", ".")
TEXT = [("content-type", "text/plain")]


async def app(scope, protocol):
    if scope.proto != "http":
        return
    if scope.path == "/upload" and scope.method == "PUT":
        final = os.path.join(DIR, "blob")
        tmp = final + ".part"
        n = 0
        with open(tmp, "wb") as f:
            async for chunk in protocol:
                f.write(chunk)
                n += len(chunk)
        os.replace(tmp, final)
        protocol.response_str(200, TEXT, str(n))
    elif scope.path == "/form" and scope.method == "POST":
        target = os.path.join(DIR, "file")
        parser = StreamingFormDataParser(headers={"Content-Type": scope.headers.get("content-type", "")})
        parser.register("file", FileTarget(target))
        parser.register("note", ValueTarget())
        async for chunk in protocol:
            parser.data_received(chunk)
        protocol.response_str(200, TEXT, str(os.path.getsize(target)))
    else:
        protocol.response_str(404, TEXT, "Not Found")
