"""Resumable uploads with the tus protocol (https://tus.io): upload big files in pieces, resume
after a dropped connection or a server restart.

TusUploads stores each upload under ./tus-data (the data file plus a small JSON state file), so
a client can continue an interrupted upload from any connection, even after this server was
restarted. PATCH bodies stream to disk in 64 KiB pieces. When an upload is complete,
on_complete moves its file to ./tus-data/done/ under the name the client gave in its metadata.
Unfinished uploads that receive no data for an hour are removed.

GET / serves a page that uploads with the official JavaScript client (tus-js-client, loaded
from a CDN): pick a file, stop the server mid-upload, start it again, and press Upload again to
resume.

Try it:
    python examples/tus_server.py            # then open http://localhost:8080/
    curl -i -X OPTIONS http://localhost:8080/files/
    # create a 11-byte upload named hello.txt, then send it in two pieces
    curl -i -X POST http://localhost:8080/files/ -H 'Tus-Resumable: 1.0.0' \\
         -H 'Upload-Length: 11' -H "Upload-Metadata: filename $(printf hello.txt | base64)"
    curl -i -X PATCH http://localhost:8080/files/ID -H 'Tus-Resumable: 1.0.0' \\
         -H 'Upload-Offset: 0' -H 'Content-Type: application/offset+octet-stream' --data-binary 'hello '
    curl -I http://localhost:8080/files/ID -H 'Tus-Resumable: 1.0.0'     # Upload-Offset: 6
    curl -i -X PATCH http://localhost:8080/files/ID -H 'Tus-Resumable: 1.0.0' \\
         -H 'Upload-Offset: 6' -H 'Content-Type: application/offset+octet-stream' --data-binary 'world'
    # or with the Python client: pip install tuspy
    python -c "from tusclient import client; client.TusClient('http://localhost:8080/files/')\\
.uploader('big.iso', chunk_size=1 << 20, metadata={'filename': 'big.iso'}).upload()"
"""

import logging
import os
import re
import shutil

from mummyx import Request, Router, Server
from mummyx.tus import TusUploads, Upload

DATA = os.path.abspath("tus-data")
DONE = os.path.join(DATA, "done")

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>mummyx tus uploads</title>
<script src="https://cdn.jsdelivr.net/npm/tus-js-client@4/dist/tus.min.js"></script>
<h1>Resumable upload</h1>
<input type="file" id="file"> <button id="go">Upload</button>
<p id="status">pick a file</p>
<script>
  document.getElementById("go").onclick = () => {
    const file = document.getElementById("file").files[0];
    const status = document.getElementById("status");
    if (!file) return;
    const upload = new tus.Upload(file, {
      endpoint: "/files/",
      chunkSize: 1024 * 1024,
      retryDelays: [0, 1000, 3000, 5000],
      metadata: { filename: file.name, filetype: file.type },
      onProgress: (sent, total) => { status.textContent = `${(100 * sent / total).toFixed(1)} %`; },
      onError: (err) => { status.textContent = "failed: " + err; },
      onSuccess: () => { status.textContent = "done: " + upload.url; },
    });
    // resume the previous upload of the same file, if the browser remembers one
    upload.findPreviousUploads().then((previous) => {
      if (previous.length) upload.resumeFromPreviousUpload(previous[0]);
      upload.start();
    });
  };
</script>
"""


def safe_name(name: str) -> str:
    """A file name from client metadata, reduced to something harmless."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(name)).lstrip(".")
    return name[:100] or "upload"


def on_complete(upload: Upload) -> None:
    # Runs on the worker thread that received the last byte, before that request is answered.
    os.makedirs(DONE, exist_ok=True)
    target = os.path.join(DONE, f"{upload.id[:8]}-{safe_name(upload.metadata.get('filename', ''))}")
    shutil.move(upload.path, target)
    logging.info("upload %s complete: %d bytes -> %s", upload.id, upload.length, target)


router = Router()
uploads = TusUploads(DATA, prefix="/files/", max_size=10 * 1024**3, expire_after=3600,
                     on_complete=on_complete).mount(router)


@router.get("/")
def index(request: Request) -> None:
    request.respond(200, {"Content-Type": "text/html; charset=utf-8"}, PAGE)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    port = int(os.environ.get("PORT", "8080"))
    server = Server(router, workers=16)
    print(f"Serving on http://localhost:{port}/ (Ctrl-C to stop); uploads go to {DATA}")
    try:
        server.serve(port)
    except KeyboardInterrupt:
        pass
    finally:
        uploads.close()
