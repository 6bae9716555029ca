"""Request: every attribute a handler reads, checked against a live server."""
from __future__ import annotations

import json
import queue
from typing import Any, Dict, List

import httpx
import pytest

from mummyx import Request, Router

from conftest import parse_responses, raw_request

TIMEOUT = 5.0


def client(server) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=TIMEOUT)


def raw(port: int, head: bytes, body: bytes = b"") -> Dict[str, Any]:
    """One raw request (Connection: close added); returns the single parsed response."""
    data = raw_request(port, head + b"Connection: close\r\n\r\n" + body)
    responses = parse_responses(data)
    assert len(responses) == 1, data[:300]
    return responses[0]


def describe(request) -> Dict[str, Any]:
    return {
        "method": request.method,
        "uri": request.uri,
        "path": request.path,
        "query": dict(request.query),
        "query_items": list(request.query.items()),
        "path_params": request.path_params,
        "headers": [list(p) for p in request.headers.items()],
        "body": request.body.decode("latin-1"),
        "body_type": type(request.body).__name__,
        "remote_addr": request.remote_addr,
        "http_version": request.http_version,
    }


@pytest.fixture
def echo(serve):
    router = Router()
    router.add_route("GET", "/**", describe)
    router.add_route("GET", "/", describe)
    for m in ("POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PURGE"):
        router.add_route(m, "/**", describe)
    return serve(router)


# ---- repr ----------------------------------------------------------------------------------

def test_repr_shows_method_and_target(serve):
    router = Router()
    router.get("/**", repr)
    server = serve(router)
    with client(server) as c:
        assert c.get("/a/b?x=1").text == "<Request GET /a/b?x=1>"
        long_path = "/" + "p" * 300
        assert c.get(long_path).text == "<Request GET " + long_path[:200] + ">"


# ---- method, uri, path ---------------------------------------------------------------------

@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PURGE"])
def test_method(echo, method):
    with client(echo) as c:
        assert c.request(method, "/m").json()["method"] == method


def test_uri_is_raw_target_including_query(echo):
    r = raw(echo.port, b"GET /a%20b/c?x=1&y=%41+B HTTP/1.1\r\nHost: t\r\n")
    d = json.loads(r["body"])
    assert d["uri"] == "/a%20b/c?x=1&y=%41+B"
    assert d["path"] == "/a b/c"


def test_path_excludes_query(echo):
    with client(echo) as c:
        d = c.get("/x/y?z=1").json()
    assert d["path"] == "/x/y"
    assert d["uri"] == "/x/y?z=1"


def test_path_percent_decoded_utf8(echo):
    r = raw(echo.port, b"GET /caf%C3%A9/%E2%82%AC/%7Euser HTTP/1.1\r\nHost: t\r\n")
    d = json.loads(r["body"])
    assert d["path"] == "/caf\u00e9/\u20ac/~user"


def test_path_encoded_slash_decoded_in_path(echo):
    r = raw(echo.port, b"GET /a%2Fb HTTP/1.1\r\nHost: t\r\n")
    assert json.loads(r["body"])["path"] == "/a/b"


def test_plus_in_path_stays_plus(echo):
    r = raw(echo.port, b"GET /a+b HTTP/1.1\r\nHost: t\r\n")
    assert json.loads(r["body"])["path"] == "/a+b"


def test_root_path(echo):
    with client(echo) as c:
        d = c.get("/").json()
    assert d["path"] == "/" and d["uri"] == "/"


# ---- query ---------------------------------------------------------------------------------

def test_query_first_values_and_getall(serve):
    router = Router()

    @router.get("/q")
    def q(request):
        return {
            "a": request.query["a"],
            "a_all": request.query.getall("a"),
            "b": request.query.get("b"),
            "missing": request.query.get("missing"),
            "missing_all": request.query.getall("missing"),
            "in": "a" in request.query,
            "not_in": "zzz" in request.query,
            "len": len(request.query),
            "keys": list(request.query),
        }

    server = serve(router)
    with client(server) as c:
        d = c.get("/q?a=1&b=2&a=3&a=4").json()
    assert d["a"] == "1"
    assert d["a_all"] == ["1", "3", "4"]
    assert d["b"] == "2"
    assert d["missing"] is None
    assert d["missing_all"] == []
    assert d["in"] is True and d["not_in"] is False
    assert d["len"] == 2
    assert d["keys"] == ["a", "b"]


def test_query_missing_key_raises_key_error(serve):
    router = Router()

    @router.get("/q")
    def q(request):
        try:
            request.query["nope"]
        except KeyError:
            return "keyerror"
        return "no error"

    server = serve(router)
    with client(server) as c:
        assert c.get("/q?a=1").text == "keyerror"


def test_query_plus_and_percent_decoding(echo):
    r = raw(echo.port, b"GET /q?name=John+Smith&e=a%2Bb%26c%3Dd&u=%C3%A9t%C3%A9 HTTP/1.1\r\nHost: t\r\n")
    d = json.loads(r["body"])
    assert d["query"] == {"name": "John Smith", "e": "a+b&c=d", "u": "\u00e9t\u00e9"}


def test_query_blank_values_kept(echo):
    r = raw(echo.port, b"GET /q?a=&b=1&c HTTP/1.1\r\nHost: t\r\n")
    d = json.loads(r["body"])
    assert d["query"]["a"] == ""
    assert d["query"]["b"] == "1"
    assert d["query"].get("c") == ""


def test_query_empty(echo):
    with client(echo) as c:
        d = c.get("/noquery").json()
        assert d["query"] == {}
        d = c.get(httpx.URL(echo.url + "/noquery?")).json()
        assert d["query"] == {}


def test_query_is_separate_from_path_params(serve):
    router = Router()
    router.get("/u/@id", lambda req: {"pp": req.path_params, "q": dict(req.query)})
    server = serve(router)
    with client(server) as c:
        assert c.get("/u/5?id=6").json() == {"pp": {"id": "5"}, "q": {"id": "6"}}


# ---- headers -------------------------------------------------------------------------------

def test_headers_case_insensitive_and_methods(serve):
    router = Router()

    @router.get("/h")
    def h(request):
        hd = request.headers
        return {
            "lower": hd["x-token"],
            "upper": hd["X-TOKEN"],
            "mixed": hd["X-Token"],
            "get": hd.get("x-TOKEN"),
            "get_missing": hd.get("x-missing"),
            "get_default": hd.get("x-missing", "dflt"),
            "in": "X-TOKEN" in hd,
            "in_lower": "x-token" in hd,
            "not_in": "x-missing" in hd,
            "host": hd["host"],
        }

    server = serve(router)
    r = raw(server.port, b"GET /h HTTP/1.1\r\nHost: example.test\r\nX-Token: abc123\r\n")
    d = json.loads(r["body"])
    assert d == {"lower": "abc123", "upper": "abc123", "mixed": "abc123", "get": "abc123",
                 "get_missing": None, "get_default": "dflt", "in": True, "in_lower": True,
                 "not_in": False, "host": "example.test"}


def test_headers_repeated_names_and_order(serve):
    router = Router()

    @router.get("/h")
    def h(request):
        return {
            "first": request.headers["x-multi"],
            "all": request.headers.getall("X-MULTI"),
            "none": request.headers.getall("x-none"),
            "items": [[k.lower(), v] for k, v in request.headers.items()],
        }

    server = serve(router)
    r = raw(server.port, b"GET /h HTTP/1.1\r\nHost: t\r\nX-Multi: one\r\nX-Other: mid\r\n"
                         b"x-multi: two\r\nX-MULTI: three\r\n")
    d = json.loads(r["body"])
    assert d["first"] == "one"
    assert d["all"] == ["one", "two", "three"]
    assert d["none"] == []
    assert d["items"] == [["host", "t"], ["x-multi", "one"], ["x-other", "mid"],
                          ["x-multi", "two"], ["x-multi", "three"], ["connection", "close"]]


def test_header_missing_raises_key_error(serve):
    router = Router()

    @router.get("/h")
    def h(request):
        try:
            request.headers["x-nope"]
        except KeyError:
            return "keyerror"
        return "no error"

    server = serve(router)
    with client(server) as c:
        assert c.get("/h").text == "keyerror"


def test_header_values_whitespace_trimmed(serve):
    router = Router()
    router.get("/h", lambda req: {"v": req.headers["x-pad"], "e": req.headers["x-empty"]})
    server = serve(router)
    r = raw(server.port, b"GET /h HTTP/1.1\r\nHost: t\r\nX-Pad: \t  inner  value \t\r\nX-Empty:\r\n")
    assert json.loads(r["body"]) == {"v": "inner  value", "e": ""}


def test_header_values_latin1_or_utf8_do_not_crash(serve):
    router = Router()
    router.get("/h", lambda req: {"v": req.headers.get("x-bin")})
    server = serve(router)
    r = raw(server.port, b"GET /h HTTP/1.1\r\nHost: t\r\nX-Bin: caf\xc3\xa9 \xff\r\n")
    assert r["status"] == 200
    assert isinstance(json.loads(r["body"])["v"], str)


def test_headers_from_httpx(echo):
    with client(echo) as c:
        d = c.get("/h", headers=[("X-A", "1"), ("X-B", "2"), ("X-A", "3")]).json()
    pairs = [(k.lower(), v) for k, v in d["headers"]]
    assert [v for k, v in pairs if k == "x-a"] == ["1", "3"]
    assert ("x-b", "2") in pairs


# ---- body ----------------------------------------------------------------------------------

def test_body_bytes(serve):
    router = Router()
    router.post("/b", lambda req: bytes(req.body[::-1]) if isinstance(req.body, bytes) else "not bytes")
    server = serve(router)
    payload = bytes(range(256)) * 40
    with client(server) as c:
        r = c.post("/b", content=payload)
    assert r.status_code == 200
    assert r.content == payload[::-1]


def test_body_empty_on_get(echo):
    with client(echo) as c:
        d = c.get("/e").json()
    assert d["body"] == "" and d["body_type"] == "bytes"


def test_body_chunked_request_assembled(echo):
    r = raw(echo.port, b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n",
            b"5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n")
    d = json.loads(r["body"])
    assert d["body"] == "hello world"


def test_body_with_nul_and_crlf(echo):
    payload = b"a\x00b\r\n\r\nc"
    with client(echo) as c:
        d = c.put("/x", content=payload).json()
    assert d["body"].encode("latin-1") == payload


# ---- connection facts ----------------------------------------------------------------------

def test_remote_addr(echo):
    with client(echo) as c:
        assert c.get("/r").json()["remote_addr"] == "127.0.0.1"


def test_http_version_11(echo):
    r = raw(echo.port, b"GET /v HTTP/1.1\r\nHost: t\r\n")
    assert json.loads(r["body"])["http_version"] == "HTTP/1.1"


def test_http_version_10(echo):
    data = raw_request(echo.port, b"GET /v HTTP/1.0\r\n\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.")
    assert json.loads(body)["http_version"] == "HTTP/1.0"


# ---- responded, construction, attributes ---------------------------------------------------

def test_responded_flag(serve):
    seen: "queue.Queue[Any]" = queue.Queue()
    router = Router()

    @router.get("/r")
    def r(request):
        seen.put(("before", request.responded))
        request.respond(200, body="ok")
        seen.put(("after", request.responded))

    server = serve(router)
    with client(server) as c:
        assert c.get("/r").text == "ok"
    assert seen.get(timeout=TIMEOUT) == ("before", False)
    assert seen.get(timeout=TIMEOUT) == ("after", True)


def test_responded_true_after_returned_value_is_sent(serve):
    holder: "queue.Queue[Any]" = queue.Queue()
    router = Router()

    @router.get("/r")
    def r(request):
        holder.put(request)
        return "value"

    server = serve(router)
    with client(server) as c:
        assert c.get("/r").text == "value"
    req = holder.get(timeout=TIMEOUT)
    assert req.responded is True


def test_request_cannot_be_instantiated():
    with pytest.raises(TypeError):
        Request()  # type: ignore[call-arg]


def test_request_type_cannot_be_instantiated_from_handler(serve):
    router = Router()

    @router.get("/t")
    def t(request):
        try:
            type(request)()
        except TypeError:
            return "typeerror"
        return "constructed"

    server = serve(router)
    with client(server) as c:
        assert c.get("/t").text == "typeerror"


def test_handler_receives_a_request_instance(serve):
    router = Router()
    router.get("/t", lambda req: {"isinstance": isinstance(req, Request)})
    server = serve(router)
    with client(server) as c:
        assert c.get("/t").json() == {"isinstance": True}


def test_request_accepts_attribute_assignment(serve):
    router = Router()

    @router.get("/a")
    def a(request):
        request.user = 1
        request.session = {"k": "v"}
        return {"user": request.user, "session": request.session,
                "has": hasattr(request, "user")}

    server = serve(router)
    with client(server) as c:
        assert c.get("/a").json() == {"user": 1, "session": {"k": "v"}, "has": True}


def test_attributes_are_per_request(serve):
    router = Router()

    @router.get("/a")
    def a(request):
        had = hasattr(request, "marker")
        request.marker = True
        return {"had": had}

    server = serve(router)
    with client(server) as c:
        for _ in range(5):
            assert c.get("/a").json() == {"had": False}


def test_request_object_outlives_its_response(serve):
    """Keeping the Request after the response (e.g. in a list) is safe; attributes still read."""
    kept: List[Any] = []
    router = Router()

    @router.post("/k")
    def k(request):
        kept.append(request)
        return "ok"

    server = serve(router)
    with client(server) as c:
        for i in range(3):
            assert c.post(f"/k?i={i}", content=f"body{i}".encode()).text == "ok"
    assert len(kept) == 3
    for i, req in enumerate(kept):
        assert req.method == "POST"
        assert req.path == "/k"
        assert req.query["i"] == str(i)
        assert req.body == f"body{i}".encode()
        assert req.responded is True
        with pytest.raises(RuntimeError):
            req.respond(200, body="late")


def test_lazy_attributes_read_after_connection_reused(serve):
    """Headers and query are built lazily: reading them for the first time after the connection
    has carried other requests must still give this request's values."""
    kept: "queue.Queue[Any]" = queue.Queue()
    router = Router()

    @router.post("/keep")
    def keep(request):
        kept.put(request)
        request.respond(200, body="k")

    router.post("/other", lambda req: "o")
    server = serve(router)
    with client(server) as c:
        assert c.post("/keep?a=1&b=two", headers={"X-Secret": "first"}, content=b"body-1").text == "k"
        for i in range(10):
            assert c.post(f"/other?zzzzzzzzzzzzzzzzzzzz={i}", headers={"X-Secret": "overwrite" * 5},
                          content=b"q" * 100).text == "o"
    req = kept.get(timeout=TIMEOUT)
    assert req.uri == "/keep?a=1&b=two"
    assert req.path == "/keep"
    assert dict(req.query) == {"a": "1", "b": "two"}
    assert req.headers["x-secret"] == "first"
    assert req.headers.getall("X-Secret") == ["first"]
    assert req.body == b"body-1"
    assert req.remote_addr == "127.0.0.1"
    assert req.http_version == "HTTP/1.1"


@pytest.mark.parametrize("target", [b"/p/%FF", b"/p/%C3", b"/p/%zz", b"/p/%", b"/p/%4"])
def test_invalid_percent_escapes_in_path_do_not_fail(serve, target):
    router = Router()
    router.get("/p/@x", lambda req: {"path": req.path, "x": req.path_params["x"]})
    server = serve(router)
    data = raw_request(server.port, b"GET " + target + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    status = int(data[9:12])
    assert status == 200 or 400 <= status < 500, data[:200]
    if status == 200:
        d = json.loads(parse_responses(data)[0]["body"])
        assert isinstance(d["path"], str) and d["path"].startswith("/p/")
        assert isinstance(d["x"], str) and d["x"] != ""


def test_invalid_percent_escapes_in_query_do_not_fail(echo):
    r = raw(echo.port, b"GET /q?a=%FF&b=%&c=%zz HTTP/1.1\r\nHost: t\r\n")
    assert r["status"] == 200
    d = json.loads(r["body"])
    assert d["query"]["b"] == "%" and d["query"]["c"] == "%zz"
    assert isinstance(d["query"]["a"], str)
