"""Routing: methods, the three ways to register a route, and every wildcard form.

Routes are matched on the I/O thread before any Python runs, so an unknown path
gets its 404 without touching a worker. A handler may call request.respond(), or
simply return a str (text/plain), bytes, or a dict/list (sent as JSON).

Try it:
    python examples/router.py
    curl http://localhost:8080/
    curl -X POST --data 'hello' http://localhost:8080/echo
    curl -X PUT --data 'new text' http://localhost:8080/notes/7
    curl -X PATCH --data 'more' http://localhost:8080/notes/7
    curl -X DELETE -i http://localhost:8080/notes/7
    curl -I http://localhost:8080/ping                  # HEAD
    curl -X OPTIONS -i http://localhost:8080/echo
    curl http://localhost:8080/health
    curl http://localhost:8080/files/report.pdf         # "*"    one whole segment
    curl http://localhost:8080/static/app.js            # "*.js" part of a segment
    curl http://localhost:8080/page_2                   # "page_*"
    curl http://localhost:8080/docs/guide/install/linux # "**"   one or more segments
    curl http://localhost:8080/repo/a/b/c/edit          # "**" followed by a literal
    curl -X POST -i http://localhost:8080/              # 405: GET only
"""

import os

from mummyx import Request, Router, Server

router = Router()


# The decorator form.
@router.get("/")
def index(request: Request) -> str:
    return "Try /echo, /notes/7, /files/x, /static/app.js, /page_2, /docs/a/b\n"


@router.post("/echo")
def echo(request: Request) -> None:
    # Send the body back with the client's own Content-Type.
    content_type = request.headers.get("Content-Type", "application/octet-stream")
    request.respond(200, {"Content-Type": content_type}, request.body)


@router.options("/echo")
def echo_options(request: Request) -> None:
    request.respond(204, {"Allow": "POST, OPTIONS"})


# The same path may carry a different handler for each method.
@router.put("/notes/@id")
def put_note(request: Request) -> dict:
    return {"id": request.path_params["id"], "replaced_with": request.body.decode(errors="replace")}


@router.patch("/notes/@id")
def patch_note(request: Request) -> dict:
    return {"id": request.path_params["id"], "appended": request.body.decode(errors="replace")}


@router.delete("/notes/@id")
def delete_note(request: Request) -> None:
    request.respond(204)


@router.head("/ping")
def ping(request: Request) -> None:
    # A HEAD response carries headers only.
    request.respond(200, [("Content-Type", "text/plain"), ("X-Pong", "1")])


# The plain-call form, and add_route for any method.
def health(request: Request) -> dict:
    return {"status": "ok"}


router.add_route("GET", "/health", health)


# Wildcards. The handler sees the real path in request.path.
def show_path(request: Request) -> str:
    return f"{request.method} {request.path} matched\n"


router.get("/files/*", show_path)  # exactly one segment: /files/a, not /files/a/b
router.get("/static/*.js", show_path)  # part of a segment: /static/app.js
router.get("/page_*", show_path)  # prefix: /page_1, /page_about
router.get("/docs/**", show_path)  # one or more segments: /docs/a, /docs/a/b/c
router.get("/repo/**/edit", show_path)  # "**" then literals: /repo/x/y/edit


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8080"))
    server = Server(router)
    print(f"Serving on http://localhost:{port}/ (Ctrl-C to stop)")
    try:
        server.serve(port)
    except KeyboardInterrupt:
        pass  # serve() has already let in-flight requests finish and closed the server
