"""respond(): header and body forms, validation, status lines, and handler return values."""
from __future__ import annotations

import json
import logging
import queue
import threading
import time
from typing import Any, Dict, List

import httpx
import pytest

from mummyx import Router

from conftest import parse_responses, raw_request

TIMEOUT = 5.0


def client(server) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=TIMEOUT)


def raw_get(port: int, path: str = "/", method: str = "GET") -> Dict[str, Any]:
    data = raw_request(port, f"{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                       .encode())
    responses = parse_responses(data)
    assert len(responses) == 1, data[:300]
    r = responses[0]
    r["raw"] = data
    return r


def single(serve, handler, **options):
    """Serve ``handler`` for GET / on a fresh server; return the server."""
    router = Router()
    router.get("/", handler)
    return serve(router, **options)


# ---- header forms --------------------------------------------------------------------------

def test_headers_as_dict(serve):
    server = single(serve, lambda req: req.respond(200, {"X-One": "1", "X-Two": "two"}, b"ok"))
    with client(server) as c:
        r = c.get("/")
    assert r.headers["x-one"] == "1" and r.headers["x-two"] == "two"
    assert r.content == b"ok"


def test_headers_as_list_with_repeated_names(serve):
    def h(req):
        req.respond(200, [("Set-Cookie", "a=1; Path=/"), ("X-Other", "o"),
                          ("Set-Cookie", "b=2; HttpOnly")], b"ok")

    server = single(serve, h)
    with client(server) as c:
        r = c.get("/")
    assert r.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; HttpOnly"]
    assert r.cookies["a"] == "1" and r.cookies["b"] == "2"
    # and on the wire: two separate header lines, in order
    resp = raw_get(server.port)
    cookies = [v for k, v in resp["header_list"] if k == "set-cookie"]
    assert cookies == ["a=1; Path=/", "b=2; HttpOnly"]


def test_headers_as_tuple_of_pairs_and_lists(serve):
    def h(req):
        req.respond(200, (["X-A", "1"], ("X-B", "2")), b"ok")

    server = single(serve, h)
    with client(server) as c:
        r = c.get("/")
    assert r.headers["x-a"] == "1" and r.headers["x-b"] == "2"


def test_headers_from_a_generator_of_fresh_strings(serve):
    """Pairs from an iterator may be the only owners of their strings: each name and value must
    stay alive until the response is built (many, so freed memory would be reused)."""
    def handler(req):
        pairs = ((f"X-Gen-{i}-" + "n" * (i % 7), "v" * (i % 5) + f"-{i}") for i in range(200))
        req.respond(200, pairs, "ok")

    server = single(serve, handler)
    with client(server) as c:
        r = c.get("/")
    assert r.status_code == 200 and r.text == "ok"
    for i in range(200):
        assert r.headers[f"X-Gen-{i}-" + "n" * (i % 7)] == "v" * (i % 5) + f"-{i}"


def test_headers_none_and_empty(serve):
    router = Router()
    router.get("/none", lambda req: req.respond(200, None, b"n"))
    router.get("/empty", lambda req: req.respond(200, {}, b"e"))
    router.get("/emptylist", lambda req: req.respond(200, [], b"l"))
    router.get("/default", lambda req: req.respond(200))
    server = serve(router)
    with client(server) as c:
        assert c.get("/none").content == b"n"
        assert c.get("/empty").content == b"e"
        assert c.get("/emptylist").content == b"l"
        r = c.get("/default")
        assert r.status_code == 200 and r.content == b""
        assert r.headers["content-length"] == "0"


def test_keyword_arguments(serve):
    server = single(serve, lambda req: req.respond(status=202, headers={"X-K": "k"}, body="kw"))
    with client(server) as c:
        r = c.get("/")
    assert r.status_code == 202 and r.headers["x-k"] == "k" and r.text == "kw"


def test_server_adds_date_and_content_length(serve):
    server = single(serve, lambda req: req.respond(200, body=b"12345"))
    resp = raw_get(server.port)
    assert resp["headers"]["content-length"] == "5"
    assert "date" in resp["headers"]
    assert resp["headers"]["date"].endswith(" GMT")


# ---- body forms ----------------------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda: b"payload\x00\xff",
    lambda: bytearray(b"payload\x00\xff"),
    lambda: memoryview(b"xxpayload\x00\xffyy")[2:-2],
], ids=["bytes", "bytearray", "memoryview"])
def test_binary_body_types(serve, make):
    server = single(serve, lambda req: req.respond(200, {"Content-Type": "application/x-bin"},
                                                   make()))
    with client(server) as c:
        r = c.get("/")
    assert r.content == b"payload\x00\xff"
    assert r.headers["content-length"] == "9"
    assert r.headers["content-type"] == "application/x-bin"


def test_str_body_gets_text_plain_utf8(serve):
    server = single(serve, lambda req: req.respond(200, None, "h\u00e9llo \u20ac"))
    with client(server) as c:
        r = c.get("/")
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.content == "h\u00e9llo \u20ac".encode("utf-8")
    assert r.headers["content-length"] == str(len("h\u00e9llo \u20ac".encode("utf-8")))


def test_str_body_with_other_headers_still_gets_content_type(serve):
    server = single(serve, lambda req: req.respond(200, {"X-A": "1"}, "text"))
    with client(server) as c:
        r = c.get("/")
    assert r.headers["content-type"] == "text/plain; charset=utf-8"


@pytest.mark.parametrize("name", ["Content-Type", "content-type", "CONTENT-TYPE"])
def test_explicit_content_type_kept_with_str_body(serve, name):
    server = single(serve, lambda req: req.respond(200, {name: "text/html; charset=utf-8"},
                                                   "<b>hi</b>"))
    resp = raw_get(server.port)
    ctypes = [v for k, v in resp["header_list"] if k == "content-type"]
    assert ctypes == ["text/html; charset=utf-8"]
    assert resp["body"] == b"<b>hi</b>"


def test_explicit_content_type_kept_with_bytes_body(serve):
    server = single(serve, lambda req: req.respond(200, [("Content-Type", "image/png")], b"\x89PNG"))
    with client(server) as c:
        r = c.get("/")
    assert r.headers["content-type"] == "image/png"
    assert r.content == b"\x89PNG"


def test_large_body(serve):
    payload = bytes(range(256)) * 8192  # 2 MiB
    server = single(serve, lambda req: req.respond(200, {"Content-Type": "application/x-bin"}, payload))
    with client(server) as c:
        r = c.get("/")
    assert r.content == payload


def test_invalid_body_type_raises_type_error(serve):
    errors: "queue.Queue[Any]" = queue.Queue()

    def h(req):
        try:
            req.respond(200, None, 12345)
        except TypeError as e:
            errors.put(e)
        req.respond(200, body="recovered")

    server = single(serve, h)
    with client(server) as c:
        assert c.get("/").text == "recovered"
    assert isinstance(errors.get(timeout=TIMEOUT), TypeError)


# ---- respond() errors ----------------------------------------------------------------------

def test_second_respond_raises_runtime_error(serve):
    results: "queue.Queue[Any]" = queue.Queue()

    def h(req):
        req.respond(200, body="first")
        try:
            req.respond(201, body="second")
        except RuntimeError as e:
            results.put(("RuntimeError", str(e)))
        else:
            results.put(("no error", None))

    server = single(serve, h)
    with client(server) as c:
        r = c.get("/")
        assert r.status_code == 200 and r.text == "first"
        # the connection is still in a sane state: a second request gets its own first response
        r = c.get("/")
        assert r.text == "first"
    assert results.get(timeout=TIMEOUT)[0] == "RuntimeError"
    assert results.get(timeout=TIMEOUT)[0] == "RuntimeError"


BAD_HEADERS = [
    ("X-Bad", "a\r\nInjected: 1"),
    ("X-Bad", "a\nInjected: 1"),
    ("X-Bad", "a\rInjected: 1"),
    ("X-Bad", "\r\n\r\nHTTP/1.1 200 OK"),
    ("X-Bad\r\nInjected", "1"),
    ("X-Bad\n", "1"),
    ("Bad Name", "1"),
    ("Bad:Name", "1"),
    ("", "1"),
    ("X-Bad", "nul\x00byte"),
]


@pytest.mark.parametrize("name,value", BAD_HEADERS)
@pytest.mark.parametrize("form", ["dict", "list"])
def test_invalid_header_raises_value_error_then_handler_can_respond(serve, name, value, form):
    results: "queue.Queue[Any]" = queue.Queue()

    def h(req):
        headers = {name: value} if form == "dict" else [("X-Good", "g"), (name, value)]
        try:
            req.respond(200, headers, b"smuggled")
        except ValueError:
            results.put("ValueError")
        except Exception as e:  # pragma: no cover - reported through the queue
            results.put(f"{type(e).__name__}: {e}")
        else:
            results.put("no error")
        results.put(req.responded)
        req.respond(200, {"X-Proper": "1"}, b"proper")

    server = single(serve, h)
    resp = raw_get(server.port)
    assert results.get(timeout=TIMEOUT) == "ValueError"
    assert results.get(timeout=TIMEOUT) is False  # the rejected call did not count as a response
    assert resp["status"] == 200
    assert resp["body"] == b"proper"
    assert resp["headers"].get("x-proper") == "1"
    assert b"Injected" not in resp["raw"] and b"smuggled" not in resp["raw"]
    assert "x-good" not in resp["headers"]


@pytest.mark.parametrize("status", [-1, 0, 99, 100, 101, 103, 199, 1000, 1200, 70000])
def test_invalid_status_raises_value_error(serve, status):
    results: "queue.Queue[Any]" = queue.Queue()

    def h(req):
        try:
            req.respond(status, None, b"x")
        except ValueError:
            results.put("ValueError")
        except Exception as e:  # pragma: no cover
            results.put(f"{type(e).__name__}: {e}")
        else:
            results.put("no error")
        req.respond(200, body=b"fine")

    server = single(serve, h)
    with client(server) as c:
        r = c.get("/")
    assert results.get(timeout=TIMEOUT) == "ValueError"
    assert r.status_code == 200 and r.content == b"fine"


def test_non_int_status_raises_type_error(serve):
    results: "queue.Queue[Any]" = queue.Queue()

    def h(req):
        try:
            req.respond("200", None, b"x")
        except TypeError:
            results.put("TypeError")
        req.respond(200, body=b"fine")

    server = single(serve, h)
    with client(server) as c:
        assert c.get("/").content == b"fine"
    assert results.get(timeout=TIMEOUT) == "TypeError"


@pytest.mark.parametrize("name", ["Transfer-Encoding", "transfer-encoding", "TRANSFER-ENCODING"])
def test_transfer_encoding_header_rejected(serve, name):
    results: "queue.Queue[Any]" = queue.Queue()

    def h(req):
        try:
            req.respond(200, [(name, "chunked")], b"x")
        except ValueError:
            results.put("ValueError")
        else:
            results.put("no error")
        req.respond(200, body=b"fine")

    server = single(serve, h)
    resp = raw_get(server.port)
    assert results.get(timeout=TIMEOUT) == "ValueError"
    assert resp["body"] == b"fine"
    assert "transfer-encoding" not in resp["headers"]


# ---- status lines --------------------------------------------------------------------------

@pytest.mark.parametrize("status,reason", [
    (200, "OK"), (201, "Created"), (202, "Accepted"), (301, "Moved Permanently"),
    (302, "Found"), (400, "Bad Request"), (401, "Unauthorized"), (403, "Forbidden"),
    (404, "Not Found"), (409, "Conflict"), (418, "I'm a teapot"), (422, None),
    (429, "Too Many Requests"), (500, "Internal Server Error"), (502, "Bad Gateway"),
    (503, "Service Unavailable"),
])
def test_status_and_reason(serve, status, reason):
    server = single(serve, lambda req: req.respond(status, None, b"body"))
    resp = raw_get(server.port)
    assert resp["status"] == status
    assert resp["reason"].strip() != ""
    if reason is not None:
        assert resp["reason"].lower() == reason.lower()
    assert resp["body"] == b"body"


@pytest.mark.parametrize("status", [299, 599, 999, 250, 700])
def test_nonstandard_status_gets_some_reason(serve, status):
    server = single(serve, lambda req: req.respond(status, None, b"x"))
    data = raw_request(server.port, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    status_line = data.split(b"\r\n", 1)[0]
    parts = status_line.split(b" ", 2)
    assert parts[0] == b"HTTP/1.1" and parts[1] == str(status).encode()
    assert len(parts) == 3 and parts[2].strip() != b""


def test_204_has_no_body_and_no_content_length(serve):
    server = single(serve, lambda req: req.respond(204, {"X-A": "1"}, b""))
    resp = raw_get(server.port)
    assert resp["status"] == 204
    assert resp["reason"] == "No Content"
    assert "content-length" not in resp["headers"]
    assert resp["headers"]["x-a"] == "1"
    head_end = resp["raw"].index(b"\r\n\r\n") + 4
    assert resp["raw"][head_end:] == b""


def test_204_with_body_given_body_is_dropped(serve):
    server = single(serve, lambda req: req.respond(204, None, b"should not be sent"))
    data = raw_request(server.port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
                                    b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert b"should not be sent" not in data
    assert data.count(b"HTTP/1.1 204") == 2


def test_304_has_no_body_and_no_content_length(serve):
    server = single(serve, lambda req: req.respond(304, {"ETag": '"v1"'}, b""))
    resp = raw_get(server.port)
    assert resp["status"] == 304
    assert resp["reason"] == "Not Modified"
    assert "content-length" not in resp["headers"]
    assert resp["headers"]["etag"] == '"v1"'
    head_end = resp["raw"].index(b"\r\n\r\n") + 4
    assert resp["raw"][head_end:] == b""


def test_keep_alive_after_204_and_304(serve):
    router = Router()
    router.get("/204", lambda req: req.respond(204))
    router.get("/304", lambda req: req.respond(304))
    router.get("/ok", lambda req: "ok")
    server = serve(router)
    with client(server) as c:
        for _ in range(3):
            assert c.get("/204").status_code == 204
            assert c.get("/304").status_code == 304
            assert c.get("/ok").text == "ok"


# ---- respond from another thread -----------------------------------------------------------

def test_respond_from_another_thread(serve):
    def h(req):
        def later():
            time.sleep(0.05)
            req.respond(200, {"X-Thread": threading.current_thread().name}, "from thread")

        t = threading.Thread(target=later, name="responder")
        t.start()
        t.join(TIMEOUT)

    server = single(serve, h)
    with client(server) as c:
        r = c.get("/")
    assert r.status_code == 200
    assert r.text == "from thread"
    assert r.headers["x-thread"] == "responder"


def test_respond_from_another_thread_while_handler_waits_on_event(serve):
    done = threading.Event()

    def h(req):
        def later():
            req.respond(201, None, b"async")
            done.set()

        threading.Thread(target=later).start()
        assert done.wait(TIMEOUT)

    server = single(serve, h)
    with client(server) as c:
        for _ in range(3):
            done.clear()
            r = c.get("/")
            assert r.status_code == 201 and r.content == b"async"


def test_concurrent_respond_from_two_threads_one_wins(serve):
    outcomes: "queue.Queue[str]" = queue.Queue()

    def h(req):
        barrier = threading.Barrier(2)

        def attempt(tag):
            barrier.wait(TIMEOUT)
            try:
                req.respond(200, None, tag)
                outcomes.put("ok:" + tag)
            except RuntimeError:
                outcomes.put("RuntimeError")

        ts = [threading.Thread(target=attempt, args=(t,)) for t in ("a", "b")]
        for t in ts:
            t.start()
        for t in ts:
            t.join(TIMEOUT)

    server = single(serve, h)
    with client(server) as c:
        r = c.get("/")
    got = sorted([outcomes.get(timeout=TIMEOUT), outcomes.get(timeout=TIMEOUT)])
    assert got[0] == "RuntimeError" and got[1].startswith("ok:")
    assert r.text == got[1][3:]


# ---- return values -------------------------------------------------------------------------

def test_return_str(serve):
    server = single(serve, lambda req: "hi \u00e9")
    with client(server) as c:
        r = c.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert r.text == "hi \u00e9"
    assert r.headers["content-length"] == str(len("hi \u00e9".encode()))


def test_return_bytes(serve):
    server = single(serve, lambda req: b"\x00\x01raw")
    with client(server) as c:
        r = c.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.content == b"\x00\x01raw"


@pytest.mark.parametrize("value", [
    {"a": 1, "b": [1, 2, {"c": None}], "s": "\u00e9\u20ac", "t": True, "f": 1.5},
    [1, "two", {"three": 3}, [], {}],
    {},
    [],
])
def test_return_json(serve, value):
    server = single(serve, lambda req: value)
    with client(server) as c:
        r = c.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].split(";")[0].strip() == "application/json"
    assert json.loads(r.content.decode("utf-8")) == value
    assert int(r.headers["content-length"]) == len(r.content)


def _wait_for_record(records: List[logging.LogRecord], pred, timeout: float = TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for rec in list(records):
            if pred(rec):
                return rec
        time.sleep(0.01)
    return None


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: List[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def mummyx_log():
    logger = logging.getLogger("mummyx")
    handler = ListHandler()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler.records
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def test_return_none_without_respond_is_500_and_warning(serve, mummyx_log):
    router = Router()
    router.get("/silent", lambda req: None)
    server = serve(router)
    with client(server) as c:
        r = c.get("/silent")
    assert r.status_code == 500
    rec = _wait_for_record(mummyx_log, lambda rec: rec.levelno == logging.WARNING)
    assert rec is not None, [r.getMessage() for r in mummyx_log]
    assert "/silent" in rec.getMessage()


def test_return_none_warning_via_caplog(serve, caplog):
    router = Router()
    router.get("/silent", lambda req: None)
    server = serve(router)
    with caplog.at_level(logging.WARNING, logger="mummyx"):
        with client(server) as c:
            assert c.get("/silent").status_code == 500
        rec = _wait_for_record(caplog.records,
                               lambda rec: rec.name.startswith("mummyx")
                               and rec.levelno == logging.WARNING)
    assert rec is not None


def test_return_none_after_respond_is_fine_and_not_logged(serve, mummyx_log):
    router = Router()
    router.get("/ok", lambda req: req.respond(200, body="ok"))
    server = serve(router)
    with client(server) as c:
        assert c.get("/ok").text == "ok"
    time.sleep(0.1)
    assert [r for r in mummyx_log if r.levelno >= logging.WARNING] == []


@pytest.mark.parametrize("value", [42, 1.5, object(), ("a", "b"), {"a"}, True])
def test_return_unsupported_type_is_500(serve, value, mummyx_log):
    router = Router()
    router.get("/bad", lambda req: value)
    server = serve(router)
    with client(server) as c:
        r = c.get("/bad")
        assert r.status_code == 500
        # the server keeps serving on the same connection or a new one
        assert c.get("/bad").status_code == 500


def test_return_value_after_respond_is_ignored_or_logged_not_sent(serve):
    router = Router()

    @router.get("/both")
    def both(req):
        req.respond(200, body="responded")
        return "returned"

    server = serve(router)
    with client(server) as c:
        r = c.get("/both")
        assert r.text == "responded"
        assert c.get("/both").text == "responded"


# ---- more header and body edge cases -------------------------------------------------------

@pytest.mark.parametrize("count", [1, 23, 24, 25, 64, 300])
@pytest.mark.parametrize("body", ["str body", b"bytes body"], ids=["str", "bytes"])
def test_many_response_headers(serve, count, body):
    pairs = [(f"X-H{i}", f"v{i}") for i in range(count)]
    server = single(serve, lambda req: req.respond(200, pairs, body))
    resp = raw_get(server.port)
    got = [(k, v) for k, v in resp["header_list"] if k.startswith("x-h")]
    assert got == [(k.lower(), v) for k, v in pairs]
    expected_body = body.encode() if isinstance(body, str) else body
    assert resp["body"] == expected_body
    ctypes = [v for k, v in resp["header_list"] if k == "content-type"]
    assert ctypes == (["text/plain; charset=utf-8"] if isinstance(body, str) else ctypes)
    assert len(ctypes) <= 1


def test_handler_content_length_never_breaks_framing(serve):
    """A handler-supplied Content-Length is either rejected (ValueError) or replaced: the client
    must see exactly one Content-Length, equal to the real body length."""
    def h(req):
        try:
            req.respond(200, {"Content-Length": "999"}, b"abc")
        except ValueError:
            req.respond(200, None, b"abc")

    server = single(serve, h)
    resp = raw_get(server.port)
    lengths = [v for k, v in resp["header_list"] if k == "content-length"]
    assert lengths == ["3"]
    assert resp["body"] == b"abc"
    assert resp["raw"].endswith(b"\r\n\r\nabc")


def test_non_ascii_header_value_does_not_crash(serve):
    def h(req):
        try:
            req.respond(200, {"X-U": "caf\u00e9"}, b"ok")
        except ValueError:
            req.respond(200, None, b"ok")

    server = single(serve, h)
    assert raw_get(server.port)["body"] == b"ok"


def test_returned_dict_not_json_serializable_is_500(serve):
    router = Router()
    router.get("/bad", lambda req: {"a": object()})
    router.get("/ok", lambda req: {"fine": True})
    server = serve(router)
    logger = logging.getLogger("mummyx")
    old = logger.disabled
    logger.disabled = True  # the traceback is expected
    try:
        with client(server) as c:
            assert c.get("/bad").status_code == 500
            assert c.get("/ok").json() == {"fine": True}
    finally:
        logger.disabled = old


def test_respond_is_non_blocking_response_sent_before_handler_returns(serve):
    """respond() hands the response to the I/O thread at once: the client gets it while the
    handler is still running."""
    handler_done = threading.Event()

    def h(req):
        req.respond(200, None, b"early")
        time.sleep(1.0)
        handler_done.set()

    server = single(serve, h)
    t0 = time.monotonic()
    with client(server) as c:
        r = c.get("/")
    elapsed = time.monotonic() - t0
    assert r.content == b"early"
    assert elapsed < 0.7, f"response arrived after {elapsed:.2f}s, i.e. when the handler returned"
    assert not handler_done.is_set()
