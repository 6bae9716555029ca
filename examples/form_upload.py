"""HTML forms and file uploads: a page with a form, uploads streamed into a directory.

GET / serves a form with a text field and a multiple-file input. Its POST /upload route is
registered with stream=True, so the handler runs as soon as the request head is in and walks the
multipart/form-data body part by part (request.multipart()) as it arrives: each file goes to disk
with part.save(path), in C without the GIL, through a temporary file renamed into place once the
part is complete. Memory stays flat whatever the size of the files.

The filename a browser sends is untrusted (it may hold "../", a path, or be empty): it is only
shown to the user and used, cleaned, as the suffix of a name the server makes itself.

POST /comment shows request.form() on a small urlencoded form (the whole body is in memory).

A malformed body, too many parts or over-long part headers raise mummyx.BadRequest, which the
server answers 400/413/431 and logs at INFO; a body over MAX_UPLOAD gets 413.

Files go to UPLOAD_DIR (default: ./uploads). Try it:
    python examples/form_upload.py                 # then open http://localhost:8080/
    curl -F title=holiday -F files=@photo.jpg -F files=@notes.txt http://localhost:8080/upload
    curl -d 'name=Ada&comment=hello+there%21' http://localhost:8080/comment
    curl -H 'Content-Type: multipart/form-data; boundary=x' -d 'junk' http://localhost:8080/upload
"""

import html
import os
import re
import uuid
from typing import List

from mummyx import Request, Router, Server

UPLOAD_DIR = os.environ.get("UPLOAD_DIR", "uploads")
MAX_UPLOAD = 2 * 1024**3  # bytes per request (all the files together)

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>mummyx uploads</title>
<h1>Upload files</h1>
<form action="/upload" method="post" enctype="multipart/form-data">
  <p><label>Title <input name="title"></label></p>
  <p><input type="file" name="files" multiple></p>
  <p><button>Upload</button></p>
</form>
<h2>Leave a comment</h2>
<form action="/comment" method="post">
  <p><label>Name <input name="name"></label> <label>Comment <input name="comment"></label>
  <button>Send</button></p>
</form>
<h2>Uploaded so far</h2>
<ul>{files}</ul>
"""

router = Router()


def stored_name(filename: str) -> str:
    """A name of our own for an upload: a random prefix and a cleaned copy of the client's name."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", filename.replace("\\", "/").rsplit("/", 1)[-1])
    return f"{uuid.uuid4().hex[:12]}-{base.lstrip('.')[-80:] or 'file'}"


@router.get("/")
def index(request: Request) -> None:
    os.makedirs(UPLOAD_DIR, exist_ok=True)
    names = sorted(n for n in os.listdir(UPLOAD_DIR) if not n.startswith("."))
    items = "".join(f"<li>{html.escape(n)} ({os.path.getsize(os.path.join(UPLOAD_DIR, n))} bytes)"
                    for n in names) or "<li>nothing yet"
    request.respond(200, {"Content-Type": "text/html; charset=utf-8"}, PAGE.format(files=items))


@router.post("/upload", stream=True, max_body_len=MAX_UPLOAD)
def upload(request: Request) -> None:
    os.makedirs(UPLOAD_DIR, exist_ok=True)
    title = ""
    saved: List[str] = []
    for part in request.multipart(max_parts=100):
        if part.filename is None:  # a plain field
            if part.name == "title":
                title = part.read(1000).decode("utf-8", "replace")
            continue  # anything unread of a part is skipped when the loop moves on
        if part.filename == "":  # a file input left empty: the browser sends an empty part
            continue
        name = stored_name(part.filename)
        size = part.save(os.path.join(UPLOAD_DIR, name))
        saved.append(f"<li>{html.escape(part.filename)} &rarr; {html.escape(name)} "
                     f"({size} bytes, {html.escape(part.content_type or '?')})")
    body = (f'<!doctype html><meta charset="utf-8"><h1>{html.escape(title) or "Upload"}</h1>'
            f'<ul>{"".join(saved) or "<li>no files"}</ul><p><a href="/">back</a>')
    request.respond(201, {"Content-Type": "text/html; charset=utf-8"}, body)


@router.post("/comment")
def comment(request: Request) -> dict:
    form = request.form()  # a buffered route: fields (and small files) from the body in memory
    return {"name": form.get("name", "anonymous"), "comment": form.get("comment", "")}


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8080"))
    server = Server(router, workers=16)
    print(f"Serving on http://localhost:{port}/ (Ctrl-C to stop); files go to {UPLOAD_DIR}/")
    try:
        server.serve(port)
    except KeyboardInterrupt:
        pass
