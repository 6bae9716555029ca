"""A user program exercising the public API, type-checked by tests/test_typing.py.

It must pass ``mypy --strict``. pytest does not collect it (the name does not start with
``test_``), and nothing runs it: importing it only defines functions.
"""
from __future__ import annotations

import json
import threading
from typing import Any, Dict, Iterator, List, Optional

import mummyx
from mummyx import ConnectionClosed, Headers, QueryParams, Request, Router, Server
from mummyx.testing import running

router = Router()


# ---- the decorator form, each method ----

@router.get("/")
def index(request: Request) -> None:
    request.respond(200, {"Content-Type": "text/plain"}, "Hello, World!")


@router.post("/echo")
def echo(request: Request) -> None:
    content_type: str = request.headers.get("Content-Type", "application/octet-stream")
    request.respond(200, [("Content-Type", content_type), ("Set-Cookie", "a=1"),
                          ("Set-Cookie", "b=2")], request.body)


@router.put("/items/@id")
def put_item(request: Request) -> Dict[str, Any]:
    return {"id": request.path_params["id"], "data": json.loads(request.body)}


@router.patch("/items/@id")
def patch_item(request: Request) -> Dict[str, str]:
    item_id: str = request.path_params["id"]
    return {"patched": item_id}


@router.delete("/items/@id")
def delete_item(request: Request) -> None:
    request.respond(204)


@router.head("/ping")
def ping(request: Request) -> None:
    request.respond(200, {"X-Pong": 1, "X-Bytes": b"ok"})


@router.options("/echo")
def echo_options(request: Request) -> None:
    request.respond(status=204, headers={"Allow": "POST, OPTIONS"})


@router.get("/big", max_body_len=None)
def big(request: Request) -> bytes:
    return bytes(request.body)


# The decorator gives back the function itself, still callable and still typed.
assert index.__name__ == "index"


# ---- the call form and add_route ----

def show(request: Request) -> None:
    request.respond(200, body=request.path_params["id"])


def search(request: Request) -> List[str]:
    query: QueryParams = request.query
    first: Optional[str] = query.get("q")
    tags: List[str] = query.getall("tag")
    return ([first] if first is not None else []) + tags


def everything(request: Request) -> str:
    headers: Headers = request.headers
    accepts: List[str] = headers.getall("Accept")
    pairs = [f"{name}: {value}" for name, value in headers.items()]
    status: Optional[int] = request.status
    allow: Optional[str] = request.allow
    lines = [
        request.method, request.uri, request.path, request.remote_addr, request.http_version,
        str(request.responded), str(status), str(request.response_length), str(allow),
        str("host" in headers), str(len(request.body)), *accepts, *pairs,
    ]
    return "\n".join(lines)


returned = router.get("/objects/@id", show)
assert returned is show
router.get("/search", search)
router.add_route("PROPFIND", "/dav/**", everything)
router.post("/upload", everything, max_body_len=10 * 1024 * 1024)
routes = router.routes
first_method: str = routes[0][0]


# ---- custom handlers ----

def not_found(request: Request) -> None:
    request.respond(404, {"Content-Type": "application/json"}, json.dumps({"path": request.path}))


def not_allowed(request: Request) -> None:
    request.respond(405, {"Allow": request.allow or ""}, "no")


def on_error(request: Request, exc: BaseException) -> None:
    request.respond(500, None, f"error: {type(exc).__name__}")


router.not_found_handler = not_found
router.method_not_allowed_handler = not_allowed
router.error_handler = on_error


# ---- responding from another thread (the handler waits for it) ----

@router.get("/later")
def later(request: Request) -> None:
    def finish() -> None:
        try:
            request.respond(200, body=bytearray(b"done"))
        except ConnectionClosed:
            pass
        except RuntimeError:
            pass  # already answered
    worker = threading.Thread(target=finish)
    worker.start()
    worker.join()


# ---- Server ----

def plain_handler(request: Request) -> str:
    return "any path: " + request.path


def make_server() -> Server:
    return Server(
        router,
        workers=16,
        max_headers_len=8192,
        max_body_len=1048576,
        max_message_len=65536,
        compression=True,
        access_log=False,
        header_timeout=10.0,
        idle_timeout=60.0,
        max_pipeline=16,
        max_connections=10000,
        backlog=1024,
    )


def serve_forever() -> None:
    make_server().serve(8080, "0.0.0.0")
    Server(plain_handler).serve(unix="/tmp/app.sock")


def background() -> str:
    server = Server(plain_handler, workers=4).start(0, "::1")
    try:
        port: int = server.port
        url: str = server.url
        return f"{url} {port} {server.closed}"
    finally:
        server.close(timeout=5.0)


def context_manager() -> int:
    with Server(router) as server:
        return server.port


# ---- mummyx.testing ----

def with_testing() -> str:
    with running(router, workers=4, max_body_len=100) as server:
        return server.url
    with running(plain_handler, unix="/tmp/t.sock") as server:
        return server.url


def fixture() -> Iterator[Server]:
    # The pytest fixture pattern (decorate with @pytest.fixture in a real suite).
    with running(router) as server:
        yield server


# ---- module-level helpers ----

version: str = mummyx.__version__
reason: str = mummyx._mummyx.status_reason(404)
