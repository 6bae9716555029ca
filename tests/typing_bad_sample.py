"""Deliberate type errors. tests/test_typing.py checks that mypy reports an error on exactly
the lines whose comment starts with "error:", so the stubs are known to catch these mistakes.
Never imported or run.
"""
from __future__ import annotations

from mummyx import Request, Router, Server
from mummyx.testing import running

router = Router()


@router.get("/")
def index(request: Request) -> None:
    request.respond("200")  # error: status must be an int
    request.respond(200, body=123)  # error: body must be bytes or str
    request.respond(200, {"X-A": 1.5})  # error: header values are str, int or bytes
    request.respond(200, None, b"", "extra")  # error: too many arguments


@router.post("/items/@id")
def create(request: Request) -> int:
    request.method = "PUT"  # error: attributes are read-only
    n: int = request.path_params["id"]  # error: path parameters are str
    body: str = request.body  # error: the body is bytes
    return n + len(body)


def main() -> None:
    Server(router, workers="4")  # error: workers is an int
    Server(router, max_body_size=10)  # error: no such option
    server = Server(router).start(8080)
    port: str = server.port  # error: port is an int
    with running(router) as running_server:
        running_server.serv()  # error: no such method
    print(port)
