"""Hello, World: the smallest mummyx server.

One route, one handler. The handler runs on a worker thread and answers with
request.respond(status, headers, body).

Try it:
    python examples/basic_router.py          # PORT=9000 python ... to use another port
    curl -i http://localhost:8080/
"""

import os

from mummyx import Request, Router, Server

router = Router()


@router.get("/")
def index(request: Request) -> None:
    request.respond(200, {"Content-Type": "text/plain"}, "Hello, World!")


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8080"))
    server = Server(router, workers=16)
    print(f"Serving on http://localhost:{port}/ (Ctrl-C to stop)")
    try:
        server.serve(port)
    except KeyboardInterrupt:
        pass  # serve() has already let in-flight requests finish and closed the server
