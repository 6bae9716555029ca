"""mummyx upload app: request bodies streamed to files by the C core, without the GIL.

Same work as upload_asgi_app.py / upload_rsgi_app.py:
  PUT /upload  -> the whole body saved to DIR/blob; answers 200 with the byte count
  POST /form   -> multipart/form-data: each file part saved to DIR/file, other fields read;
                  answers 200 with the file bytes saved

Usage: python mummyx_upload_app.py PORT WORKERS DIR
"""
import os
import sys

from mummyx import Router, Server

router = Router()
HEADERS = {"Content-Type": "text/plain"}
DIR = sys.argv[3] if len(sys.argv) > 3 else "."


@router.put("/upload", stream=True, max_body_len=None)
def upload(request):
    n = request.save_body(os.path.join(DIR, "blob"))  # temp file, renamed into place
    request.respond(200, HEADERS, str(n))


@router.post("/form", stream=True, max_body_len=None)
def form(request):
    total = 0
    for part in request.multipart():
        if part.filename is not None:
            total += part.save(os.path.join(DIR, "file"))
        else:
            part.read()
    request.respond(200, HEADERS, str(total))


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    Server(router, workers=workers).serve(port, host="127.0.0.1")  # blocks


if __name__ == "__main__":
    main()
