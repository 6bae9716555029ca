"""Router: route forms, pattern matching, 404/405 and the router's settable handlers.

Every test runs a live server on 127.0.0.1 (the ``serve`` fixture) and talks to it with httpx or
a raw socket.
"""
from __future__ import annotations

import threading
from typing import Any, List

import httpx
import pytest

from mummyx import Router, Server

from conftest import parse_responses, raw_request

TIMEOUT = 5.0
METHODS = ["get", "head", "post", "put", "delete", "patch", "options"]


def client(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=TIMEOUT)


def tagged(tag: str):
    """A handler that answers 200 with its tag in the body and in an X-Route header."""

    def handler(request):
        request.respond(200, {"X-Route": tag}, tag)

    return handler


def params_handler(request):
    return dict(request.path_params)


# ---- route forms ---------------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
def test_decorator_form_registers_and_returns_the_function(serve, method):
    router = Router()

    def handler(request):
        request.respond(200, {"X-Method": request.method}, "deco-" + request.method)

    returned = getattr(router, method)("/thing")(handler)
    assert returned is handler
    server = serve(router)
    with client(server) as c:
        r = c.request(method.upper(), "/thing")
    assert r.status_code == 200
    assert r.headers["x-method"] == method.upper()
    assert r.content == (b"" if method == "head" else b"deco-" + method.upper().encode())


@pytest.mark.parametrize("method", METHODS)
def test_call_form(serve, method):
    router = Router()

    def handler(request):
        request.respond(200, {"X-Method": request.method}, "call-" + request.method)

    getattr(router, method)("/thing", handler)
    server = serve(router)
    with client(server) as c:
        r = c.request(method.upper(), "/thing")
    assert r.status_code == 200
    assert r.headers["x-method"] == method.upper()
    assert r.content == (b"" if method == "head" else b"call-" + method.upper().encode())


def test_each_method_goes_to_its_own_handler(serve):
    router = Router()
    for m in METHODS:
        getattr(router, m)("/r", tagged(m))
    server = serve(router)
    with client(server) as c:
        for m in METHODS:
            r = c.request(m.upper(), "/r")
            assert r.status_code == 200, m
            assert r.headers["x-route"] == m


def test_add_route_custom_method(serve):
    router = Router()
    router.add_route("PURGE", "/cache/@key", lambda req: "purged " + req.path_params["key"])
    router.get("/cache/@key", tagged("get"))
    server = serve(router)
    with client(server) as c:
        r = c.request("PURGE", "/cache/abc")
        assert r.status_code == 200
        assert r.text == "purged abc"
        assert c.get("/cache/abc").headers["x-route"] == "get"
    # the same custom method on the wire, byte for byte
    resp = parse_responses(raw_request(
        server.port, b"PURGE /cache/xyz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"))
    assert resp[0]["status"] == 200
    assert resp[0]["body"] == b"purged xyz"


def test_add_route_standard_method_and_decorator_form(serve):
    router = Router()
    router.add_route("GET", "/a", tagged("a"))

    @router.add_route("POST", "/b")
    def b(request):
        request.respond(201, body="made")

    server = serve(router)
    with client(server) as c:
        assert c.get("/a").text == "a"
        r = c.post("/b")
        assert r.status_code == 201 and r.text == "made"


def test_custom_method_gets_405_on_other_method(serve):
    router = Router()
    router.add_route("PURGE", "/p", tagged("purge"))
    server = serve(router)
    with client(server) as c:
        r = c.get("/p")
    assert r.status_code == 405
    assert "PURGE" in [m.strip() for m in r.headers["allow"].split(",")]


# ---- matching order ------------------------------------------------------------------------

def test_first_registered_match_wins_param_before_literal(serve):
    router = Router()
    router.get("/users/@id", tagged("param"))
    router.get("/users/me", tagged("literal"))
    server = serve(router)
    with client(server) as c:
        assert c.get("/users/me").text == "param"
        assert c.get("/users/42").text == "param"


def test_first_registered_match_wins_literal_before_param(serve):
    router = Router()
    router.get("/users/me", tagged("literal"))
    router.get("/users/@id", tagged("param"))
    router.get("/**", tagged("catchall"))
    server = serve(router)
    with client(server) as c:
        assert c.get("/users/me").text == "literal"
        assert c.get("/users/42").text == "param"
        assert c.get("/other/thing").text == "catchall"
        assert c.get("/users/42/extra").text == "catchall"


def test_same_pattern_registered_twice_first_wins(serve):
    router = Router()
    router.get("/dup", tagged("first"))
    router.get("/dup", tagged("second"))
    server = serve(router)
    with client(server) as c:
        assert c.get("/dup").text == "first"


def test_method_mismatch_falls_through_to_later_route(serve):
    router = Router()
    router.post("/x/@id", tagged("post-param"))
    router.get("/x/@id", tagged("get-param"))
    server = serve(router)
    with client(server) as c:
        assert c.get("/x/1").text == "get-param"
        assert c.post("/x/1").text == "post-param"


# ---- @name captures ------------------------------------------------------------------------

def test_named_params_are_captured(serve):
    router = Router()
    router.get("/users/@user_id/posts/@post", params_handler)
    server = serve(router)
    with client(server) as c:
        r = c.get("/users/42/posts/hello-world")
    assert r.status_code == 200
    assert r.json() == {"user_id": "42", "post": "hello-world"}


def test_named_params_percent_decoded_utf8(serve):
    router = Router()
    router.get("/p/@name", params_handler)
    server = serve(router)
    resp = parse_responses(raw_request(
        server.port,
        b"GET /p/J%C3%BCrgen%20M%c3%bcller HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"))
    assert resp[0]["status"] == 200
    import json
    assert json.loads(resp[0]["body"]) == {"name": "Jürgen Müller"}


def test_encoded_slash_inside_segment_does_not_split(serve):
    router = Router()
    router.get("/files/@name", params_handler)
    router.get("/files/@a/@b", lambda req: {"two": [req.path_params["a"], req.path_params["b"]]})
    server = serve(router)
    with client(server) as c:
        r = c.get(httpx.URL(server.url + "/files/a%2Fb"))
        assert r.status_code == 200
        assert r.json() == {"name": "a/b"}
        r = c.get("/files/a/b")
        assert r.json() == {"two": ["a", "b"]}


def test_plus_in_path_param_is_not_a_space(serve):
    router = Router()
    router.get("/q/@v", params_handler)
    server = serve(router)
    with client(server) as c:
        assert c.get("/q/a+b").json() == {"v": "a+b"}


def test_param_does_not_match_empty_segment(serve):
    router = Router()
    router.get("/u/@id", params_handler)
    server = serve(router)
    with client(server) as c:
        assert c.get("/u/").status_code == 404
        assert c.get("/u").status_code == 404
        assert c.get("/u/1/2").status_code == 404


def test_path_params_empty_dict_without_params(serve):
    router = Router()
    router.get("/plain", lambda req: {"params": req.path_params, "type": type(req.path_params).__name__})
    server = serve(router)
    with client(server) as c:
        assert c.get("/plain").json() == {"params": {}, "type": "dict"}


def test_literal_segment_matches_percent_encoded_request(serve):
    router = Router()
    router.get("/caf\u00e9", tagged("cafe"))  # a non-ASCII literal, compared as UTF-8
    router.get("/hello world", tagged("space"))
    server = serve(router)
    with client(server) as c:
        assert c.get(httpx.URL(server.url + "/hello%20world")).text == "space"
        assert c.get(httpx.URL(server.url + "/caf%C3%A9")).text == "cafe"
        assert c.get(httpx.URL(server.url + "/caf%c3%a9")).text == "cafe"


# ---- wildcards -----------------------------------------------------------------------------

def test_star_matches_exactly_one_segment(serve):
    router = Router()
    router.get("/star/*", tagged("star"))
    router.get("/star/*/end", tagged("star-end"))
    server = serve(router)
    with client(server) as c:
        assert c.get("/star/x").text == "star"
        assert c.get("/star/anything-at.all").text == "star"
        assert c.get("/star/x/end").text == "star-end"
        assert c.get("/star/x/y").status_code == 404
        assert c.get("/star").status_code == 404
        assert c.get("/star/").status_code == 404  # one empty segment is not matched by *


def test_star_captures_nothing(serve):
    router = Router()
    router.get("/s/*", params_handler)
    server = serve(router)
    with client(server) as c:
        assert c.get("/s/abc").json() == {}


def test_suffix_wildcard(serve):
    router = Router()
    router.get("/static/*.js", tagged("js"))
    router.get("/static/*.css", tagged("css"))
    server = serve(router)
    with client(server) as c:
        assert c.get("/static/app.js").text == "js"
        assert c.get("/static/vendor.min.js").text == "js"
        assert c.get("/static/app.css").text == "css"
        assert c.get("/static/app.jsx").status_code == 404
        assert c.get("/static/app.js/x").status_code == 404
        assert c.get("/static/dir/app.js").status_code == 404


def test_prefix_wildcard(serve):
    router = Router()
    router.get("/docs/page_*", tagged("page"))
    server = serve(router)
    with client(server) as c:
        assert c.get("/docs/page_1").text == "page"
        assert c.get("/docs/page_intro").text == "page"
        assert c.get("/docs/page").status_code == 404
        assert c.get("/docs/xpage_1").status_code == 404
        assert c.get("/docs/page_1/more").status_code == 404


def test_double_star_matches_one_or_more_segments(serve):
    router = Router()
    router.get("/g/**", tagged("glob"))
    server = serve(router)
    with client(server) as c:
        assert c.get("/g/a").text == "glob"
        assert c.get("/g/a/b").text == "glob"
        assert c.get("/g/a/b/c/d/e").text == "glob"
        assert c.get("/g").status_code == 404
        assert c.get("/gx/a").status_code == 404


def test_double_star_followed_by_literal(serve):
    router = Router()
    router.get("/a/**/b", tagged("a-b"))
    server = serve(router)
    with client(server) as c:
        assert c.get("/a/x/b").text == "a-b"
        assert c.get("/a/x/y/z/b").text == "a-b"
        assert c.get("/a/b").status_code == 404  # ** needs at least one segment
        assert c.get("/a/x/c").status_code == 404
        assert c.get("/a/x/b/c").status_code == 404


def test_double_star_followed_by_param(serve):
    router = Router()
    router.get("/tree/**/@leaf", params_handler)
    server = serve(router)
    with client(server) as c:
        assert c.get("/tree/a/b/c").json() == {"leaf": "c"}
        assert c.get("/tree/a/z").json() == {"leaf": "z"}
        assert c.get("/tree/z").status_code == 404


def test_root_route(serve):
    router = Router()
    router.get("/", tagged("root"))
    router.get("/@x", tagged("param"))
    server = serve(router)
    with client(server) as c:
        assert c.get("/").text == "root"
        assert c.get("/a").text == "param"


def test_query_string_does_not_affect_matching(serve):
    router = Router()
    router.get("/search", tagged("search"))
    router.get("/f/*.js", tagged("js"))
    server = serve(router)
    with client(server) as c:
        assert c.get("/search?q=1&x=/y").text == "search"
        assert c.get("/f/a.js?v=2").text == "js"


# ---- trailing slash ------------------------------------------------------------------------

def test_trailing_slash_is_distinct(serve):
    router = Router()
    router.get("/t", tagged("no-slash"))
    router.get("/u/", tagged("slash"))
    server = serve(router)
    with client(server) as c:
        assert c.get("/t").text == "no-slash"
        assert c.get("/t/").status_code == 404
        assert c.get("/u/").text == "slash"
        assert c.get("/u").status_code == 404


def test_both_trailing_slash_forms_registered(serve):
    router = Router()
    router.get("/t", tagged("no-slash"))
    router.get("/t/", tagged("slash"))
    server = serve(router)
    with client(server) as c:
        assert c.get("/t").text == "no-slash"
        assert c.get("/t/").text == "slash"


# ---- invalid patterns ----------------------------------------------------------------------

INVALID_PATTERNS = [
    "",
    "a",
    "users/@id",
    "*",
    "/a*b",
    "/*a*",
    "/a**",
    "/***",
    "/**/x/**",
    "/a/**/**",
    "/@",
    "/a/@/b",
    "/@id/@id",
    "/@id/x/@id",
    "/@id*",
    "/@i-d",
    "/a@b",
    "/a?b",
    "/a#b",
    "/a\x00b",
]

VALID_PATTERNS = ["/", "/a", "/a/", "/a//b", "/@id", "/*", "/*.js", "/page_*", "/**",
                  "/a/**/b", "/@a/@b", "/x/@id_2/*/**/*.txt"]


@pytest.mark.parametrize("pattern", INVALID_PATTERNS)
def test_invalid_pattern_raises_value_error_call_form(pattern):
    router = Router()
    with pytest.raises(ValueError):
        router.get(pattern, tagged("x"))
    assert router.routes == []


@pytest.mark.parametrize("pattern", INVALID_PATTERNS)
def test_invalid_pattern_raises_value_error_decorator_form(pattern):
    router = Router()
    with pytest.raises(ValueError):
        router.post(pattern)  # raises at registration, before decorating anything
    with pytest.raises(ValueError):
        router.add_route("PURGE", pattern, tagged("x"))
    assert router.routes == []


@pytest.mark.parametrize("pattern", VALID_PATTERNS)
def test_valid_patterns_are_accepted(pattern):
    router = Router()
    router.get(pattern, tagged("x"))
    assert len(router.routes) == 1


@pytest.mark.parametrize("method", ["", "GE T", "GET\r\n", "G:T"])
def test_invalid_method_raises_value_error(method):
    router = Router()
    with pytest.raises(ValueError):
        router.add_route(method, "/x", tagged("x"))


# ---- 404 and 405 ---------------------------------------------------------------------------

def test_default_404(serve):
    router = Router()
    router.get("/exists", tagged("x"))
    server = serve(router)
    with client(server) as c:
        r = c.get("/missing")
    assert r.status_code == 404
    assert r.reason_phrase == "Not Found"
    assert "Not Found" in r.text
    assert int(r.headers["content-length"]) == len(r.content)


def test_empty_router_gives_404(serve):
    server = serve(Router())
    with client(server) as c:
        assert c.get("/").status_code == 404
        assert c.post("/anything", content=b"x").status_code == 404


def test_405_with_allow_header(serve):
    router = Router()
    router.get("/r", tagged("get"))
    router.post("/r", tagged("post"))
    router.put("/other", tagged("put"))
    server = serve(router)
    with client(server) as c:
        r = c.delete("/r")
    assert r.status_code == 405
    assert r.reason_phrase == "Method Not Allowed"
    allow = [m.strip() for m in r.headers["allow"].split(",")]
    assert set(allow) == {"GET", "HEAD", "POST"}
    assert len(allow) == len(set(allow))


def test_405_allow_without_get_has_no_head(serve):
    router = Router()
    router.post("/r", tagged("post"))
    router.patch("/r", tagged("patch"))
    server = serve(router)
    with client(server) as c:
        r = c.get("/r")
        r_head = c.head("/r")
    assert r.status_code == 405
    assert set(m.strip() for m in r.headers["allow"].split(",")) == {"POST", "PATCH"}
    assert r_head.status_code == 405
    assert r_head.content == b""


def test_405_allow_collects_methods_from_different_patterns(serve):
    router = Router()
    router.get("/items/@id", tagged("get"))
    router.delete("/items/*", tagged("delete"))
    router.put("/items/**", tagged("put"))
    server = serve(router)
    with client(server) as c:
        r = c.post("/items/7")
    assert r.status_code == 405
    assert set(m.strip() for m in r.headers["allow"].split(",")) == {"GET", "HEAD", "DELETE", "PUT"}


def test_405_does_not_run_any_handler(serve):
    calls: List[str] = []
    router = Router()

    @router.get("/r")
    def h(request):
        calls.append(request.method)
        return "x"

    server = serve(router)
    with client(server) as c:
        assert c.post("/r").status_code == 405
    assert calls == []


# ---- HEAD via GET --------------------------------------------------------------------------

def test_head_served_by_get_route(serve):
    seen: List[str] = []
    router = Router()

    @router.get("/doc")
    def doc(request):
        seen.append(request.method)
        request.respond(200, {"X-Custom": "yes", "Content-Type": "text/html"}, "<p>hello</p>")

    server = serve(router)
    with client(server) as c:
        r = c.head("/doc")
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["content-length"] == str(len("<p>hello</p>"))
    assert r.headers["x-custom"] == "yes"
    assert r.headers["content-type"] == "text/html"
    assert seen == ["HEAD"]  # the GET handler ran and saw the real method


def test_head_body_really_suppressed_on_the_wire(serve):
    router = Router()
    router.get("/doc", lambda req: "0123456789")
    server = serve(router)
    data = raw_request(server.port,
                       b"HEAD /doc HTTP/1.1\r\nHost: t\r\n\r\n"
                       b"GET /doc HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    # The HEAD response carries Content-Length: 10 but no body, so the byte stream must be the
    # HEAD head immediately followed by the GET response.
    head_end = data.index(b"\r\n\r\n") + 4
    head = data[:head_end]
    assert head.startswith(b"HTTP/1.1 200")
    assert b"\r\ncontent-length: 10\r\n" in head.lower()
    rest = data[head_end:]
    assert rest.startswith(b"HTTP/1.1 200"), rest[:60]
    second = parse_responses(rest)
    assert len(second) == 1 and second[0]["body"] == b"0123456789"


def test_explicit_head_route_wins_over_get(serve):
    router = Router()
    router.get("/x", tagged("get"))
    router.head("/x", tagged("head"))
    server = serve(router)
    with client(server) as c:
        r = c.head("/x")
    assert r.headers["x-route"] == "head"
    assert r.content == b""


def test_head_on_unknown_path_is_404_without_body(serve):
    router = Router()
    router.get("/x", tagged("get"))
    server = serve(router)
    data = raw_request(server.port,
                       b"HEAD /nope HTTP/1.1\r\nHost: t\r\n\r\n"
                       b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    head_end = data.index(b"\r\n\r\n") + 4
    assert data.startswith(b"HTTP/1.1 404")
    assert data[head_end:].startswith(b"HTTP/1.1 200")


# ---- settable handlers ---------------------------------------------------------------------

def test_custom_not_found_handler(serve):
    router = Router()
    router.get("/x", tagged("x"))

    def not_found(request):
        request.respond(404, {"Content-Type": "text/plain", "X-NF": "1"},
                        f"nothing at {request.path} ({request.method})")

    router.not_found_handler = not_found
    server = serve(router)
    with client(server) as c:
        r = c.get("/missing/page")
        assert r.status_code == 404
        assert r.headers["x-nf"] == "1"
        assert r.text == "nothing at /missing/page (GET)"
        r = c.post("/elsewhere")
        assert r.text == "nothing at /elsewhere (POST)"
        assert c.get("/x").text == "x"


def test_not_found_handler_may_return_a_value(serve):
    router = Router()
    router.not_found_handler = lambda request: {"missing": request.path}
    server = serve(router)
    with client(server) as c:
        r = c.get("/gone")
    # A returned value is sent like any handler's (200 JSON); what matters is that it is used.
    assert r.json() == {"missing": "/gone"}


def test_custom_method_not_allowed_handler(serve):
    router = Router()
    router.get("/r", tagged("get"))
    router.put("/r", tagged("put"))

    def not_allowed(request):
        request.respond(405, {"Allow": request.allow, "X-MNA": "1"},
                        f"{request.method} not allowed; try {request.allow}")

    router.method_not_allowed_handler = not_allowed
    server = serve(router)
    with client(server) as c:
        r = c.delete("/r")
    assert r.status_code == 405
    assert r.headers["x-mna"] == "1"
    allowed = {m.strip() for m in r.headers["allow"].split(",")}
    assert allowed == {"GET", "HEAD", "PUT"}
    assert r.text.startswith("DELETE not allowed; try ")


def test_request_allow_is_a_string(serve):
    router = Router()
    router.post("/r", tagged("post"))
    router.method_not_allowed_handler = lambda request: {"allow": request.allow,
                                                         "type": type(request.allow).__name__}
    server = serve(router)
    with client(server) as c:
        r = c.get("/r")
    assert r.json()["type"] == "str"
    assert r.json()["allow"].strip() == "POST"


def test_error_handler_receives_exception(serve):
    seen: List[Any] = []
    router = Router()

    class Boom(Exception):
        pass

    @router.get("/boom")
    def boom(request):
        raise Boom("kaboom")

    def on_error(request, exc):
        seen.append(exc)
        request.respond(503, {"X-Error": type(exc).__name__}, f"handled: {exc} at {request.path}")

    router.error_handler = on_error
    server = serve(router)
    with client(server) as c:
        r = c.get("/boom")
    assert r.status_code == 503
    assert r.headers["x-error"] == "Boom"
    assert r.text == "handled: kaboom at /boom"
    assert len(seen) == 1 and isinstance(seen[0], Boom)


def test_error_handler_not_called_for_successful_handlers(serve):
    seen: List[Any] = []
    router = Router()
    router.get("/ok", tagged("ok"))
    router.error_handler = lambda request, exc: seen.append(exc)
    server = serve(router)
    with client(server) as c:
        assert c.get("/ok").text == "ok"
    assert seen == []


def test_error_handler_that_does_not_respond_gives_500(serve):
    router = Router()

    @router.get("/boom")
    def boom(request):
        raise RuntimeError("x")

    router.error_handler = lambda request, exc: None
    server = serve(router)
    with client(server) as c:
        r = c.get("/boom")
    assert r.status_code == 500


def test_error_handler_covers_not_found_handler_raising(serve):
    router = Router()

    def not_found(request):
        raise KeyError("nf")

    router.not_found_handler = not_found
    server = serve(router)
    with client(server) as c:
        r = c.get("/missing")
    assert r.status_code == 500


# ---- per-route body limit ------------------------------------------------------------------

def test_per_route_max_body_len(serve):
    router = Router()
    router.post("/small", lambda req: f"small {len(req.body)}", max_body_len=10)
    router.post("/big", lambda req: f"big {len(req.body)}")
    server = serve(router, max_body_len=100_000)
    with client(server) as c:
        r = c.post("/small", content=b"x" * 10)
        assert r.status_code == 200 and r.text == "small 10"
    with client(server) as c:
        r = c.post("/small", content=b"x" * 11)
        assert r.status_code == 413
    with client(server) as c:
        r = c.post("/big", content=b"x" * 11)
        assert r.status_code == 200 and r.text == "big 11"
        r = c.post("/big", content=b"x" * 50_000)
        assert r.status_code == 200 and r.text == "big 50000"


def test_per_route_max_body_len_larger_than_server_limit(serve):
    router = Router()
    router.post("/upload", lambda req: f"{len(req.body)}", max_body_len=200_000)
    router.post("/default", lambda req: f"{len(req.body)}")
    server = serve(router, max_body_len=1000)
    with client(server) as c:
        r = c.post("/upload", content=b"y" * 150_000)
        assert r.status_code == 200 and r.text == "150000"
    with client(server) as c:
        assert c.post("/default", content=b"y" * 1001).status_code == 413


def test_per_route_max_body_len_applies_to_chunked_bodies(serve):
    router = Router()
    router.post("/small", lambda req: f"{len(req.body)}", max_body_len=10)
    server = serve(router)
    body = b"6\r\nabcdef\r\n6\r\nghijkl\r\n0\r\n\r\n"  # 12 bytes decoded
    data = raw_request(server.port, b"POST /small HTTP/1.1\r\nHost: t\r\n"
                       b"Transfer-Encoding: chunked\r\n\r\n" + body)
    assert data.startswith(b"HTTP/1.1 413"), data[:80]


def test_invalid_max_body_len_rejected():
    router = Router()
    with pytest.raises(ValueError):
        router.post("/x", tagged("x"), max_body_len=-1)


# ---- a plain callable instead of a Router --------------------------------------------------

def test_server_with_plain_callable(serve):
    seen: List[tuple] = []
    lock = threading.Lock()

    def app(request):
        with lock:
            seen.append((request.method, request.path))
        request.respond(200, {"X-App": "1"}, f"{request.method} {request.uri}")

    server = serve(app)
    with client(server) as c:
        for method, target in [("GET", "/"), ("GET", "/a/b/c"), ("POST", "/x?y=1"),
                               ("DELETE", "/anything/at/all/"), ("PURGE", "/p")]:
            r = c.request(method, target)
            assert r.status_code == 200
            assert r.headers["x-app"] == "1"
            assert r.text == f"{method} {target}"
    assert ("PURGE", "/p") in seen


def test_server_with_callable_object(serve):
    class App:
        def __call__(self, request):
            return {"path": request.path}

    server = serve(App())
    with client(server) as c:
        assert c.get("/z/y").json() == {"path": "/z/y"}


def test_server_rejects_non_callable():
    with pytest.raises(TypeError):
        Server(42)  # type: ignore[arg-type]


# ---- matching against percent-encoded paths ------------------------------------------------

@pytest.mark.parametrize("target,expected", [
    ("/static/app%2ejs", "js"), ("/static/app%2Ejs", "js"), ("/static/%2ejs", "js"),
    ("/static/.js", "js"), ("/docs/page%5F1", "page"), ("/docs/pag%65_1", "page"),
    ("/docs/page_", "page"), ("/lit%65ral", "literal"),
])
def test_wildcards_and_literals_match_decoded_segments(serve, target, expected):
    router = Router()
    router.get("/static/*.js", tagged("js"))
    router.get("/docs/page_*", tagged("page"))
    router.get("/literal", tagged("literal"))
    server = serve(router)
    resp = parse_responses(raw_request(
        server.port, f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode()))
    assert resp[0]["status"] == 200 and resp[0]["body"] == expected.encode()


def test_several_encoded_params_decoded_independently(serve):
    router = Router()
    router.get("/u/@user/p/@post/@rest", params_handler)
    server = serve(router)
    resp = parse_responses(raw_request(
        server.port, b"GET /u/a%20b/p/c%2Fd%2F/%E2%82%AC%25x HTTP/1.1\r\nHost: t\r\n"
                     b"Connection: close\r\n\r\n"))
    import json
    assert json.loads(resp[0]["body"]) == {"user": "a b", "post": "c/d/", "rest": "\u20ac%x"}


def test_many_params(serve):
    router = Router()
    router.get("/" + "/".join(f"@p{i}" for i in range(32)), params_handler)
    server = serve(router)
    path = "/" + "/".join(f"v%41{i}" for i in range(32))
    with client(server) as c:
        r = c.get(httpx.URL(server.url + path))
    assert r.json() == {f"p{i}": f"vA{i}" for i in range(32)}


# ---- per-route limits and 100-continue -----------------------------------------------------

def test_per_route_limit_checked_before_100_continue(serve):
    router = Router()
    router.post("/small", lambda req: "ok", max_body_len=10)
    server = serve(router)
    data = raw_request(server.port, b"POST /small HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n"
                                    b"Expect: 100-continue\r\n\r\n", timeout=3.0)
    assert data.startswith(b"HTTP/1.1 413"), data[:80]
    assert b"100 Continue" not in data


def test_per_route_max_body_len_zero(serve):
    router = Router()
    router.post("/zero", lambda req: f"{len(req.body)}", max_body_len=0)
    server = serve(router)
    with client(server) as c:
        assert c.post("/zero").text == "0"
    with client(server) as c:
        assert c.post("/zero", content=b"x").status_code == 413


@pytest.mark.parametrize("pattern,spelling", [
    ("/users/{id}", "@id"), ("/users/{id:int}", "@id"), ("/users/:id", "@id"),
    ("/users/<id>", "@id"), ("/users/<int:user_id>", "@user_id"),
])
def test_other_frameworks_parameter_spellings_are_refused_with_ours(pattern, spelling):
    router = Router()
    with pytest.raises(ValueError) as e:
        router.get(pattern, lambda request: None)
    assert spelling in str(e.value) and pattern.split("/")[2] in str(e.value)


def test_look_alike_literals_stay_literal(serve):
    router = Router()
    router.get("/time/12:30", lambda request: "noon-ish")
    server = serve(router)
    import httpx
    assert httpx.get(server.url + "/time/12:30", timeout=5).text == "noon-ish"

