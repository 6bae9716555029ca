"""mummyx.HTTPError and mummyx.redirect: answers a handler chooses, through the error handler."""
from __future__ import annotations

import logging
from typing import Any, List

import httpx
import pytest

from mummyx import BadRequest, Error, HTTPError, Router, redirect

TIMEOUT = 5.0


def test_http_error_answers_its_status_without_a_traceback(serve, caplog):
    router = Router()

    @router.get("/users/@id")
    def user(request: Any) -> Any:
        raise HTTPError(404, f"no user {request.path_params['id']}", {"X-Hint": "try 7"})

    router.get("/teapot", lambda request: (_ for _ in ()).throw(HTTPError(418)))
    router.get("/typed", lambda request: (_ for _ in ()).throw(
        HTTPError(409, "{}", [("Content-Type", "application/json")])))
    server = serve(router)
    with caplog.at_level(logging.INFO, logger="mummyx"), httpx.Client(
            base_url=server.url, timeout=TIMEOUT) as c:
        r = c.get("/users/5")
        assert (r.status_code, r.text, r.headers["x-hint"]) == (404, "Not Found: no user 5",
                                                                "try 7")
        assert r.headers["content-type"] == "text/plain; charset=utf-8"
        r = c.get("/teapot")
        assert (r.status_code, r.text) == (418, "I'm a teapot")
        r = c.get("/typed")
        assert r.status_code == 409 and r.headers.get_list("content-type") == ["application/json"]
    assert "Traceback" not in caplog.text and "404" in caplog.text


@pytest.mark.parametrize("exc", [HTTPError(403, "nope"), BadRequest("bad form", 422)])
def test_http_error_and_bad_request_go_through_the_error_handler(serve, exc):
    router = Router()
    seen: List[BaseException] = []
    router.get("/", lambda request: (_ for _ in ()).throw(exc))

    def on_error(request: Any, e: BaseException) -> Any:
        seen.append(e)
        return {"error": getattr(e, "status", 0)}, getattr(e, "status", 500)

    router.error_handler = on_error
    server = serve(router)
    r = httpx.get(server.url + "/", timeout=TIMEOUT)
    assert r.status_code == exc.status and r.json() == {"error": exc.status}
    assert seen == [exc]


def test_error_handler_declining_leaves_the_status(serve):
    router = Router()
    router.get("/", lambda request: (_ for _ in ()).throw(HTTPError(451, "legal")))
    router.error_handler = lambda request, e: None
    server = serve(router)
    r = httpx.get(server.url + "/", timeout=TIMEOUT)
    assert (r.status_code, r.text) == (451, "Unavailable For Legal Reasons: legal")


def test_http_error_contract():
    assert issubclass(HTTPError, Error)
    e = HTTPError(404)
    assert (e.status, e.detail, e.headers) == (404, None, [])
    assert str(e) == "404 Not Found"
    for bad in [200, 302, 600, "404", True]:
        with pytest.raises(ValueError):
            HTTPError(bad)  # type: ignore[arg-type]


def test_redirect(serve):
    router = Router()
    router.get("/old", lambda request: redirect("/new"))
    router.post("/form", lambda request: redirect("/done", 303))
    router.get("/new", lambda request: "new place")
    router.get("/done", lambda request: "done")
    server = serve(router)
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as c:
        r = c.get("/old")
        assert (r.status_code, r.headers["location"]) == (307, "/new")
        assert c.get("/old", follow_redirects=True).text == "new place"
        r = c.post("/form", content=b"x", follow_redirects=True)
        assert r.text == "done" and r.history[0].status_code == 303
    with pytest.raises(ValueError):
        redirect("/x", 200)
    with pytest.raises(ValueError):
        redirect("/x\r\nSet-Cookie: a=b")
