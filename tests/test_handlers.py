"""Handler faults, concurrency, and the access log: the server keeps working whatever a handler
does."""
from __future__ import annotations

import concurrent.futures
import logging
import os
import re
import socket
import threading
import time
from typing import Any, List

import httpx
import pytest

from mummyx import Router


TIMEOUT = 5.0


def client(server) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=TIMEOUT)


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: List[logging.LogRecord] = []
        self._lock2 = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock2:
            self.records.append(record)

    def snapshot(self) -> List[logging.LogRecord]:
        with self._lock2:
            return list(self.records)

    def wait_for(self, pred, timeout: float = TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for rec in self.snapshot():
                if pred(rec):
                    return rec
            time.sleep(0.01)
        return None


def _attach(name: str, level: int = logging.DEBUG):
    logger = logging.getLogger(name)
    handler = ListHandler()
    old_level, old_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(level)
    return logger, handler, old_level, old_propagate


@pytest.fixture
def mummyx_log():
    logger, handler, old_level, old_propagate = _attach("mummyx")
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old_level)
    logger.propagate = old_propagate


@pytest.fixture
def access_log():
    logger, handler, old_level, old_propagate = _attach("mummyx.access", logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old_level)
    logger.propagate = old_propagate


# ---- raising handlers ----------------------------------------------------------------------

class MarkerError(Exception):
    pass


def test_raise_gives_500_and_logs_traceback(serve, mummyx_log):
    router = Router()

    @router.get("/boom")
    def boom(request):
        raise MarkerError("marker-4711")

    server = serve(router)
    with client(server) as c:
        r = c.get("/boom")
    assert r.status_code == 500
    assert r.reason_phrase == "Internal Server Error"
    assert "marker-4711" not in r.text  # no traceback leaked to the client
    rec = mummyx_log.wait_for(lambda rec: rec.levelno == logging.ERROR and rec.exc_info)
    assert rec is not None, [r.getMessage() for r in mummyx_log.snapshot()]
    assert rec.name == "mummyx"
    exc_type, exc, tb = rec.exc_info
    assert exc_type is MarkerError and str(exc) == "marker-4711"
    formatted = logging.Formatter().format(rec)
    assert "Traceback" in formatted and "marker-4711" in formatted and "boom" in formatted


def test_raise_via_caplog(serve, caplog):
    router = Router()

    @router.get("/boom")
    def boom(request):
        raise MarkerError("via-caplog")

    server = serve(router)
    with caplog.at_level(logging.ERROR, logger="mummyx"):
        with client(server) as c:
            assert c.get("/boom").status_code == 500
        deadline = time.monotonic() + TIMEOUT
        found = False
        while time.monotonic() < deadline and not found:
            found = any(r.name == "mummyx" and r.levelno == logging.ERROR and r.exc_info
                        and "via-caplog" in str(r.exc_info[1]) for r in caplog.records)
            time.sleep(0.01)
    assert found


def test_raise_after_respond_keeps_the_response(serve, mummyx_log):
    router = Router()

    @router.get("/late")
    def late(request):
        request.respond(200, body="already sent")
        raise MarkerError("after respond")

    server = serve(router)
    with client(server) as c:
        r = c.get("/late")
        assert r.status_code == 200 and r.text == "already sent"
        assert c.get("/late").text == "already sent"
    assert mummyx_log.wait_for(lambda rec: rec.levelno == logging.ERROR) is not None


@pytest.mark.parametrize("exc_type, args", [
    pytest.param(t, a, id=t.__name__)
    for t, a in [(KeyError, ("k",)), (ZeroDivisionError, ()), (RecursionError, ()),
                 (SystemExit, (3,)), (KeyboardInterrupt, ()), (GeneratorExit, ())]])
def test_any_exception_type_gives_500(serve, exc_type, args, mummyx_log):
    router = Router()

    @router.get("/boom")
    def boom(request):
        # A fresh exception per request. Raising one instance made at collection time (a
        # parametrize value, alive for the whole session) would leave its __traceback__ holding
        # this frame, and with it the Request and its native request, until the process exits.
        raise exc_type(*args)

    router.get("/ok", lambda req: "ok")
    server = serve(router)
    with client(server) as c:
        assert c.get("/boom").status_code == 500
    with client(server) as c:
        assert c.get("/ok").text == "ok"


def test_raising_does_not_affect_other_connections(serve, mummyx_log):
    router = Router()

    @router.get("/boom")
    def boom(request):
        raise MarkerError("x")

    router.get("/ok", lambda req: "ok")
    server = serve(router)
    with client(server) as keep, client(server) as other:
        assert keep.get("/ok").text == "ok"  # open a keep-alive connection first
        assert other.get("/boom").status_code == 500
        assert keep.get("/ok").text == "ok"
        assert other.get("/ok").text == "ok"


def test_error_handler_that_raises_gives_500(serve, mummyx_log):
    router = Router()

    @router.get("/boom")
    def boom(request):
        raise MarkerError("original")

    def on_error(request, exc):
        raise ValueError("error handler broke")

    router.error_handler = on_error
    router.get("/ok", lambda req: "ok")
    server = serve(router)
    with client(server) as c:
        r = c.get("/boom")
        assert r.status_code == 500
        assert c.get("/ok").text == "ok"


def test_error_handler_that_responds_then_raises(serve, mummyx_log):
    router = Router()

    @router.get("/boom")
    def boom(request):
        raise MarkerError("original")

    def on_error(request, exc):
        request.respond(502, body="handled")
        raise ValueError("then broke")

    router.error_handler = on_error
    server = serve(router)
    with client(server) as c:
        r = c.get("/boom")
    assert r.status_code == 502 and r.text == "handled"


def test_not_found_handler_returning_none_gives_500(serve, mummyx_log):
    router = Router()
    router.not_found_handler = lambda request: None
    server = serve(router)
    with client(server) as c:
        assert c.get("/x").status_code == 500


def test_method_not_allowed_handler_raising_gives_500(serve, mummyx_log):
    router = Router()
    router.get("/x", lambda req: "x")

    def mna(request):
        raise MarkerError("mna")

    router.method_not_allowed_handler = mna
    server = serve(router)
    with client(server) as c:
        assert c.post("/x").status_code == 500
        assert c.get("/x").text == "x"


def test_many_raising_requests_leave_server_healthy(serve):
    # a quiet logger here: 500 tracebacks are expected; count them instead of printing them
    logger, handler, old_level, old_propagate = _attach("mummyx", logging.ERROR)
    logger.propagate = False
    try:
        router = Router()

        @router.get("/boom")
        def boom(request):
            raise MarkerError("again")

        router.get("/none", lambda req: None)
        router.get("/ok", lambda req: "ok")
        server = serve(router, workers=4)
        with client(server) as c:
            for i in range(500):
                assert c.get("/boom" if i % 5 else "/none").status_code == 500
            assert c.get("/ok").text == "ok"
        with client(server) as c:
            assert c.get("/ok").text == "ok"
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline and len(handler.snapshot()) < 400:
            time.sleep(0.01)
        assert len([r for r in handler.snapshot() if r.levelno == logging.ERROR]) >= 400
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate


def test_many_raising_requests_concurrently(serve):
    logger, handler, old_level, old_propagate = _attach("mummyx", logging.ERROR)
    logger.propagate = False
    try:
        router = Router()

        @router.get("/boom")
        def boom(request):
            raise MarkerError("concurrent")

        router.get("/ok", lambda req: "ok")
        server = serve(router, workers=8)

        def hammer(n: int) -> List[int]:
            with client(server) as c:
                return [c.get("/boom").status_code for _ in range(n)]

        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            results = [s for f in [ex.submit(hammer, 25) for _ in range(8)]
                       for s in f.result(timeout=30)]
        assert results == [500] * 200
        with client(server) as c:
            assert c.get("/ok").text == "ok"
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate


# ---- blocking and concurrency --------------------------------------------------------------

def test_blocking_handler_does_not_block_others(serve):
    entered = threading.Event()
    router = Router()

    @router.get("/slow")
    def slow(request):
        entered.set()
        time.sleep(1.0)
        return "slow"

    router.get("/fast", lambda req: "fast")
    server = serve(router, workers=2)

    result: List[Any] = []

    def call_slow():
        with client(server) as c:
            result.append(c.get("/slow").text)

    t = threading.Thread(target=call_slow)
    t0 = time.monotonic()
    t.start()
    assert entered.wait(TIMEOUT)
    with client(server) as c:
        for _ in range(5):
            assert c.get("/fast").text == "fast"
    fast_done = time.monotonic() - t0
    assert fast_done < 0.8, f"fast requests waited {fast_done:.2f}s behind a blocking handler"
    t.join(TIMEOUT)
    assert result == ["slow"]


def test_concurrent_blocking_handlers_run_in_parallel(serve):
    router = Router()

    @router.get("/sleep")
    def sleep(request):
        time.sleep(0.3)
        return "done"

    server = serve(router, workers=8)

    def call() -> str:
        with client(server) as c:
            return c.get("/sleep").text

    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        results = list(ex.map(lambda _: call(), range(8)))
    elapsed = time.monotonic() - t0
    assert results == ["done"] * 8
    assert elapsed < 1.5, f"8 x 0.3 s handlers on 8 workers took {elapsed:.2f}s"


def test_many_concurrent_requests_all_answered(serve):
    router = Router()
    router.get("/n/@i", lambda req: req.path_params["i"])
    server = serve(router, workers=4)

    def run(k: int) -> List[str]:
        with client(server) as c:
            return [c.get(f"/n/{k}-{j}").text for j in range(20)]

    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        out = list(ex.map(run, range(16)))
    for k, texts in enumerate(out):
        assert texts == [f"{k}-{j}" for j in range(20)]


def test_client_disconnect_during_handler_does_not_hurt(serve, mummyx_log):
    entered = threading.Event()
    release = threading.Event()
    router = Router()

    @router.get("/wait")
    def wait(request):
        entered.set()
        release.wait(TIMEOUT)
        request.respond(200, body="too late")  # the client is gone: must not raise or crash

    router.get("/ok", lambda req: "ok")
    server = serve(router, workers=2)
    s = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    s.sendall(b"GET /wait HTTP/1.1\r\nHost: t\r\n\r\n")
    assert entered.wait(TIMEOUT)
    s.close()
    time.sleep(0.05)
    release.set()
    with client(server) as c:
        for _ in range(3):
            assert c.get("/ok").text == "ok"


# ---- access log ----------------------------------------------------------------------------

CLF = re.compile(
    r'^(?P<host>\S+) \S+ \S+ \[(?P<time>[^\]]+)\] "(?P<method>\S+) (?P<target>\S+) (?P<version>[^"]+)" '
    r'(?P<status>\d{3}) (?P<size>\d+|-) (?P<duration>\S+)$')


def test_access_log_line(serve, access_log):
    router = Router()
    router.get("/hello", lambda req: "Hello, World!")
    server = serve(router, access_log=True)
    with client(server) as c:
        assert c.get("/hello?x=1").text == "Hello, World!"
    rec = access_log.wait_for(lambda rec: "/hello" in rec.getMessage())
    assert rec is not None, [r.getMessage() for r in access_log.snapshot()]
    assert rec.name == "mummyx.access"
    msg = rec.getMessage()
    m = CLF.match(msg)
    assert m, msg
    assert m["host"] == "127.0.0.1"
    assert m["method"] == "GET"
    assert m["target"].startswith("/hello")
    assert m["version"] == "HTTP/1.1"
    assert m["status"] == "200"
    assert m["size"] == str(len("Hello, World!"))
    float(m["duration"].rstrip("ms"))  # a number (possibly with a unit)
    time.strptime(m["time"].split()[0], "%d/%b/%Y:%H:%M:%S")


def test_access_log_includes_responses_made_without_python(serve, access_log):
    router = Router()
    router.get("/hello", lambda req: "hi")
    router.post("/small", lambda req: "x", max_body_len=4)
    server = serve(router, access_log=True)
    with client(server) as c:
        assert c.get("/nope").status_code == 404
        assert c.post("/hello").status_code == 405
    with client(server) as c:
        assert c.post("/small", content=b"12345").status_code == 413
    for target, status in [("/nope", "404"), ("/hello", "405"), ("/small", "413")]:
        rec = access_log.wait_for(lambda rec: target in rec.getMessage(), timeout=1.0)
        assert rec is not None, f"no access log line for {target}"
        m = CLF.match(rec.getMessage())
        assert m and m["status"] == status


def test_access_log_logs_500_and_post(serve, access_log, mummyx_log):
    router = Router()

    @router.post("/boom")
    def boom(request):
        raise MarkerError("x")

    server = serve(router, access_log=True)
    with client(server) as c:
        assert c.post("/boom", content=b"abc").status_code == 500
    rec = access_log.wait_for(lambda rec: "/boom" in rec.getMessage())
    assert rec is not None
    m = CLF.match(rec.getMessage())
    assert m and m["method"] == "POST" and m["status"] == "500"


def test_access_log_duration_reflects_handler_time(serve, access_log):
    router = Router()

    @router.get("/slow")
    def slow(request):
        time.sleep(0.2)
        return "s"

    server = serve(router, access_log=True)
    with client(server) as c:
        assert c.get("/slow").text == "s"
    rec = access_log.wait_for(lambda rec: "/slow" in rec.getMessage())
    assert rec is not None
    m = CLF.match(rec.getMessage())
    assert m
    d = m["duration"]
    seconds = float(d[:-2]) / 1000 if d.endswith("ms") else float(d.rstrip("s"))
    assert 0.15 <= seconds < 5.0, d


def test_no_access_log_by_default(serve, access_log):
    router = Router()
    router.get("/hello", lambda req: "hi")
    server = serve(router)
    with client(server) as c:
        assert c.get("/hello").text == "hi"
    time.sleep(0.1)
    assert access_log.snapshot() == []


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs sched_setaffinity")
def test_server_confined_to_one_cpu(serve):
    """A server started on a thread allowed one CPU (taskset, cpusets) holds worker wake-ups until
    the I/O thread's pass is over. Every kind of work must still be picked up: plain requests
    from many connections, handlers that block, streamed bodies, WebSocket messages."""
    from websockets.sync.client import connect

    from mummyx import WebSocketEvent

    router = Router()
    router.get("/", lambda req: req.respond(200, {}, "hi"))

    inside = [0, 0]  # handlers in /sleep now, most at once
    lock = threading.Lock()

    @router.get("/sleep")
    def slow(req):
        with lock:
            inside[0] += 1
            inside[1] = max(inside)
        time.sleep(0.05)
        with lock:
            inside[0] -= 1
        req.respond(200, {}, "slept")

    @router.post("/up", stream=True, max_body_len=None)
    def up(req):
        req.respond(200, {}, str(len(req.read())))

    router.get("/ws", lambda req: req.upgrade_to_websocket())

    def on_ws(ws, event, message):
        if event is WebSocketEvent.MESSAGE:
            ws.send(message.data)

    mine = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(mine)})  # this thread only; the server's threads inherit it
    try:
        server = serve(router, workers=4, websocket_handler=on_ws)
    finally:
        os.sched_setaffinity(0, mine)
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        def hits(_: int) -> List[str]:
            with client(server) as c:
                return [c.get("/").text for _ in range(25)]
        assert [r for rs in pool.map(hits, range(16)) for r in rs] == ["hi"] * 400
        slept = list(pool.map(lambda _: client(server).get("/sleep").text, range(16)))
        assert slept == ["slept"] * 16
        assert inside[1] >= 3, "blocking handlers did not run side by side"
    body = b"x" * 3_000_000
    with client(server) as c:
        assert c.post("/up", content=body).text == str(len(body))
    with connect(f"ws://127.0.0.1:{server.port}/ws", open_timeout=TIMEOUT) as ws:
        for i in range(200):
            ws.send(f"m{i}")
            assert ws.recv(timeout=TIMEOUT) == f"m{i}"
