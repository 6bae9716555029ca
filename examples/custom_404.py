"""Custom 404, 405 and 500 responses.

router.not_found_handler(request) answers paths no route matches;
router.method_not_allowed_handler(request) answers a known path asked for with
the wrong method; router.error_handler(request, exc) runs when a handler raises
before responding. mummyx logs the traceback either way; without these handlers
it sends short plain-text defaults.

Try it:
    python examples/custom_404.py
    curl -i http://localhost:8080/
    curl -i http://localhost:8080/nowhere               # 404, JSON
    curl -i -X DELETE http://localhost:8080/            # 405, JSON
    curl -i http://localhost:8080/boom                  # 500, JSON; traceback logged here
"""

import json
import os

from mummyx import Request, Router, Server

router = Router()


def send_json(request: Request, status: int, obj: object) -> None:
    request.respond(status, {"Content-Type": "application/json"}, json.dumps(obj))


@router.get("/")
def index(request: Request) -> str:
    return "Hello! Now try /nowhere, DELETE /, or /boom.\n"


@router.get("/boom")
def boom(request: Request) -> str:
    raise RuntimeError("something broke")


def not_found(request: Request) -> None:
    send_json(request, 404, {"error": "not found", "path": request.path})


def method_not_allowed(request: Request) -> None:
    send_json(request, 405, {"error": "method not allowed", "method": request.method})


def on_error(request: Request, exc: BaseException) -> None:
    # The traceback is already in the server's log; tell the client nothing about
    # the internals. (Respond explicitly: a value returned from here would go out
    # with status 200.)
    send_json(request, 500, {"error": "internal server error"})


router.not_found_handler = not_found
router.method_not_allowed_handler = method_not_allowed
router.error_handler = on_error


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8080"))
    server = Server(router)
    print(f"Serving on http://localhost:{port}/ (Ctrl-C to stop)")
    try:
        server.serve(port)
    except KeyboardInterrupt:
        pass  # serve() has already let in-flight requests finish and closed the server
