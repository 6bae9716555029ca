"""request.json(), request.cookies, mummyx.set_cookie, and (body, status[, headers]) returns."""
from __future__ import annotations

import logging
import socket
from typing import Any, Iterator

import httpx
import pytest

from mummyx import BadRequest, Router, set_cookie

TIMEOUT = 5.0


def client(server) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=TIMEOUT)


def test_json_body(serve):
    router = Router()
    router.post("/", lambda request: {"got": request.json()})
    server = serve(router)
    with client(server) as c:
        for value in [{"a": [1, 2, {"b": None}]}, [1, "x"], 3.5, "text", True]:
            r = c.post("/", json=value)
            assert r.status_code == 200 and r.json() == {"got": value}
        assert c.post("/", content=b"null").json() == {"got": None}
        # no JSON content type needed
        r = c.post("/", content=b'{"k": "v"}', headers={"Content-Type": "text/plain"})
        assert r.json() == {"got": {"k": "v"}}


@pytest.mark.parametrize("body,why", [
    (b"{not json", "not valid JSON"),
    (b"", "not valid JSON"),
    (b'{"a": 1} trailing', "not valid JSON"),
    (b'"\xff\xfe"', "not valid UTF-8"),
])
def test_json_bad_body_is_400(serve, body, why):
    router = Router()
    router.post("/", lambda request: {"got": request.json()})
    server = serve(router)
    with client(server) as c:
        r = c.post("/", content=body)
    assert r.status_code == 400 and why in r.text


def test_json_error_can_be_caught_by_the_handler(serve):
    router = Router()

    @router.post("/")
    def handler(request: Any) -> Any:
        try:
            return request.json()
        except BadRequest as e:
            return {"error": str(e), "status": e.status}, 422

    server = serve(router)
    with client(server) as c:
        r = c.post("/", content=b"[1,")
    assert r.status_code == 422 and r.json()["status"] == 400


def test_cookies(serve):
    router = Router()
    router.get("/", lambda request: request.cookies)
    server = serve(router)
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as s:
        s.sendall(b'GET / HTTP/1.1\r\nHost: t\r\nCookie: a=1; b="two"; bad pair; =x; c=d=e\r\n'
                  b"Cookie: sp ace=1; a=shadowed; e=caf\xc3\xa9; f=ok\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    import json
    got = json.loads(data.partition(b"\r\n\r\n")[2])
    assert got == {"a": "1", "b": "two", "c": "d=e", "f": "ok"}
    with client(server) as c:
        assert c.get("/").json() == {}


def test_set_cookie_formatting():
    assert set_cookie("sid", "abc") == "sid=abc; Path=/"
    v = set_cookie("sid", "abc", max_age=60, expires=0, path="/app", domain="example.com",
                   secure=True, httponly=True, samesite="lax")
    assert v == ("sid=abc; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=60; Domain=example.com; "
                 "Path=/app; Secure; HttpOnly; SameSite=Lax")
    assert set_cookie("gone", "", max_age=0, path=None) == "gone=; Max-Age=0"
    for bad in [dict(name="a b", value="x"), dict(name="a", value="x;y"),
                dict(name="a", value="x\r\nSet-Cookie: evil=1"), dict(name="a", value="sp ace"),
                dict(name="a", value="x", path="/a;b"), dict(name="a", value="x", samesite="sorta"),
                dict(name="a", value="x", samesite="None")]:
        with pytest.raises(ValueError):
            set_cookie(**bad)


def test_set_cookie_reaches_the_client(serve):
    router = Router()
    router.get("/login", lambda request: ("ok", 200, [("Set-Cookie", set_cookie("sid", "t0k3n")),
                                                        ("Set-Cookie", set_cookie("theme", "dark"))]))
    router.get("/me", lambda request: request.cookies.get("sid", "none"))
    server = serve(router)
    with client(server) as c:
        c.get("/login")
        assert c.get("/me").text == "t0k3n"


def test_tuple_returns(serve):
    router = Router()
    router.get("/created", lambda request: ({"id": 7}, 201))
    router.get("/text", lambda request: ("not here", 404, {"X-Why": "gone"}))
    router.get("/bytes", lambda request: (b"\x00\x01", 202, [("Content-Type", "image/x-test")]))
    router.get("/none-headers", lambda request: ("ok", 200, None))

    def gen(request: Any) -> Iterator[str]:
        yield "part"
    router.get("/stream", lambda request: (gen(request), 206, {"Content-Type": "text/x-part"}))
    server = serve(router)
    with client(server) as c:
        r = c.get("/created")
        assert (r.status_code, r.headers["content-type"], r.json()) == (201, "application/json",
                                                                        {"id": 7})
        r = c.get("/text")
        assert (r.status_code, r.text, r.headers["x-why"]) == (404, "not here", "gone")
        assert r.headers["content-type"] == "text/plain; charset=utf-8"
        r = c.get("/bytes")
        assert (r.status_code, r.content, r.headers["content-type"]) == (202, b"\x00\x01",
                                                                         "image/x-test")
        assert c.get("/none-headers").text == "ok"
        r = c.get("/stream")
        assert (r.status_code, r.text, r.headers["content-type"]) == (206, "part", "text/x-part")


@pytest.mark.parametrize("value", [("ok",), ("ok", "200"), ("ok", 200, {}, "extra"),
                                   ("ok", 99), ("ok", True)])
def test_bad_tuple_returns_are_500(serve, caplog, value):
    router = Router()
    router.get("/", lambda request: value)
    server = serve(router)
    with caplog.at_level(logging.ERROR, logger="mummyx"), client(server) as c:
        assert c.get("/").status_code == 500
