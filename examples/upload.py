"""Streamed uploads: a PUT route that writes the request body straight to a directory.

A route registered with stream=True runs its handler as soon as the request head is in; the
body is not buffered in memory. request.save_body(path) writes it in C, without the GIL, into a
temporary file in the target directory, renamed into place only once the whole body is in: a
half-finished or aborted upload never shows up under its final name. Memory stays flat whatever
the size, because the server stops reading the socket while the handler is behind.

The handler checks the name (and the token, when UPLOAD_TOKEN is set) before it reads anything.
curl sends big files with "Expect: 100-continue", and the server answers "100 Continue" only when
the handler first reads the body, so a refused upload (400, 401) is refused before a byte of it
is sent.

Files go to UPLOAD_DIR (default: ./uploads). Try it:
    python examples/upload.py
    head -c 100M /dev/urandom > big.bin
    curl -T big.bin http://localhost:8080/files/big.bin       # 201 {"name": ..., "bytes": ...}
    curl http://localhost:8080/files                         # what is there
    UPLOAD_TOKEN=s3cret python examples/upload.py            # then every upload needs:
    curl -T big.bin -H 'Authorization: Bearer s3cret' http://localhost:8080/files/big.bin
"""

import hmac
import os
import re
from typing import Dict

from mummyx import Request, Router, Server

UPLOAD_DIR = os.environ.get("UPLOAD_DIR", "uploads")
UPLOAD_TOKEN = os.environ.get("UPLOAD_TOKEN", "")
MAX_UPLOAD = 10 * 1024**3  # 10 GiB; None would mean no limit at all

# A plain file name: no path separators, and no leading dot (no "..", no hidden files).
NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")

router = Router()


@router.put("/files/@name", stream=True, max_body_len=MAX_UPLOAD)
def upload(request: Request) -> None:
    name = request.path_params["name"]
    if not NAME.fullmatch(name):
        # Answering before reading: the client never gets "100 Continue", the body is never
        # parsed as requests, and the server closes the connection after this response.
        request.respond(400, body="bad file name\n")
        return
    if UPLOAD_TOKEN:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {UPLOAD_TOKEN}".encode()):
            request.respond(401, {"WWW-Authenticate": "Bearer"}, "token required\n")
            return
    os.makedirs(UPLOAD_DIR, exist_ok=True)
    # Blocks until the whole body is in; raises ConnectionClosed if the client goes away (the
    # temporary file is removed then), OSError if the file cannot be written.
    written = request.save_body(os.path.join(UPLOAD_DIR, name))
    request.respond(201, {"Content-Type": "application/json"},
                    f'{{"name": "{name}", "bytes": {written}}}')


@router.get("/files")
def listing(request: Request) -> Dict[str, int]:
    try:
        names = sorted(n for n in os.listdir(UPLOAD_DIR) if not n.startswith("."))
    except FileNotFoundError:
        names = []
    return {n: os.path.getsize(os.path.join(UPLOAD_DIR, n)) for n in names}


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8080"))
    print(f"Saving uploads to {os.path.abspath(UPLOAD_DIR)}; "
          f"curl -T FILE http://localhost:{port}/files/NAME (Ctrl-C to stop)")
    try:
        Server(router).serve(port)
    except KeyboardInterrupt:
        pass
