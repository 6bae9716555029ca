"""The option table (csrc/core/options.c, exported as mummyx._mummyx.OPTIONS) is the one home of
every default: Server(), the command line and the core read it, and the defaults are still what
they were before the table existed. Also: the exception hierarchy (mummyx.Error) and the one place
a returned value becomes a response."""
from __future__ import annotations

import inspect
import os
import subprocess
import sys
from typing import Any, Dict

import httpx
import pytest

import mummyx
from mummyx import Router, Server, _mummyx
from mummyx.server import OPTION_DEFAULTS

TIMEOUT = 10.0

# The documented defaults (README "Server"), as they were before the table: a change to any of
# them is a change users see and must be made on purpose, here and in the README.
DOCUMENTED = {
    "workers": None,  # automatic: 10 x CPU count, at least 4
    "max_headers_len": 8192,
    "max_body_len": 1048576,
    "max_message_len": 65536,
    "compression": True,
    "header_timeout": 10.0,
    "body_timeout": 30.0,
    "write_timeout": 30.0,
    "max_queue_time": None,
    "idle_timeout": 60.0,
    "max_pipeline": 16,
    "max_connections": 10000,
    "backlog": 1024,
    "max_send_queue": 4 * 1024 * 1024,
    "sse_heartbeat": 15.0,
    "websocket_compression": True,
    "websocket_ping_interval": None,
    "websocket_close_timeout": 5.0,
}
KINDS = {"int": int, "size": int, "float": float, "bool": bool}


def core(**options: Any) -> Any:
    """A bare Core (never started) with these options."""
    return _mummyx.Core(None, lambda r: None, None, None, None, None, None, None, None, None,
                        options=options)


# ---- the table ----

def test_table_shape() -> None:
    names = [o[0] for o in _mummyx.OPTIONS]
    assert len(names) == len(set(names))
    for name, kind, default, doc, lo, hi in _mummyx.OPTIONS:
        assert kind in KINDS, name
        assert doc and "\n" not in doc, name
        for value in (default, lo, hi):
            # bool is an int: check the exact type, so a size cannot come out as True
            assert value is None or type(value) is KINDS[kind], (name, value)


def test_table_defaults_are_the_documented_ones() -> None:
    assert OPTION_DEFAULTS == DOCUMENTED


def test_server_signature_defaults_equal_the_table() -> None:
    params = inspect.signature(Server.__init__).parameters
    for name, _kind, default, *_ in _mummyx.OPTIONS:
        assert name in params, f"Server() does not take the core option {name}"
        assert params[name].default == default and type(params[name].default) is type(default)
    # the options that belong to Python alone keep their own defaults
    assert params["access_log"].default is False
    assert params["shutdown_timeout"].default == 10.0


def test_automatic_workers() -> None:
    # the policy Server had in Python before it moved to the core
    expected = min(10000, max(4, 10 * (os.cpu_count() or 1)))
    assert core().workers == expected
    assert Server(lambda r: None).workers == expected
    assert Server(lambda r: None, workers=3).workers == 3


def test_cli_help_shows_the_table_defaults() -> None:
    out = subprocess.run([sys.executable, "-m", "mummyx", "--help"], capture_output=True,
                         text=True, timeout=30, cwd=os.path.dirname(os.path.dirname(
                             os.path.abspath(mummyx.__file__)))).stdout
    text = " ".join(out.split())  # argparse wraps lines
    assert "largest request body in bytes; larger gets 413 (default: 1048576)" in text
    assert "worker threads (default: 10 x CPU count, at least 4)" in text


# ---- Core checks its options against the table ----

@pytest.mark.parametrize("options, error, message", [
    ({"max_body_size": 1}, TypeError, "unknown server option 'max_body_size'"),
    ({"workers": "4"}, TypeError, "workers must be int, not str"),
    ({"workers": 2.0}, TypeError, "workers must be int, not float"),
    ({"header_timeout": "1"}, TypeError, "header_timeout must be float, not str"),
    ({"compression": 1}, TypeError, "compression must be bool, not int"),
    ({"idle_timeout": None}, TypeError, "idle_timeout must be float, not None"),
    ({"workers": 0}, ValueError, "workers must be between 1 and 10000"),
    ({"workers": 10001}, ValueError, "workers must be between 1 and 10000"),
    ({"workers": 2 ** 80}, ValueError, "workers must be between 1 and 10000"),
    ({"max_headers_len": 255}, ValueError, "max_headers_len must be at least 256"),
    ({"max_body_len": -1}, ValueError, "max_body_len must not be negative"),
    ({"max_send_queue": 1023}, ValueError, "max_send_queue must be at least 1024"),
    ({"max_message_len": 0}, ValueError, "max_message_len must be at least 1"),
    ({"header_timeout": float("nan")}, ValueError, "header_timeout must be a number"),
])
def test_core_refuses_bad_options(options: Dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error) as info:
        core(**options)
    assert str(info.value) == message


def test_core_options_must_be_a_dict() -> None:
    with pytest.raises(TypeError, match="options must be a dict"):
        _mummyx.Core(None, print, None, None, None, None, None, None, None, None,
                     options=[("workers", 1)])


def test_core_accepts_bounds_and_none_where_allowed() -> None:
    core(workers=1, max_headers_len=256, max_body_len=0, max_send_queue=1024,
         max_message_len=1, max_queue_time=None, sse_heartbeat=None,
         websocket_ping_interval=None, header_timeout=1, compression=False)
    assert core(workers=10000).workers == 10000


def test_server_keeps_its_lenient_conversions() -> None:
    # Server has always taken any truthy value for a switch and any number for seconds.
    Server(lambda r: None, compression=0, websocket_compression=None, header_timeout=5,
           sse_heartbeat=None)
    with pytest.raises(ValueError, match="max_body_len must not be negative"):
        Server(lambda r: None, max_body_len=-1)


def test_default_max_body_len_is_enforced(serve: Any) -> None:
    # the table's default reaches the core: one byte over it is refused
    server = serve(lambda request: request.respond(200, None, str(len(request.body))))
    limit = OPTION_DEFAULTS["max_body_len"]
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as c:
        assert c.post("/", content=b"x" * limit).text == str(limit)
        assert c.post("/", content=b"x" * (limit + 1)).status_code == 413


# ---- mummyx.Error ----

def test_every_package_exception_derives_from_error() -> None:
    exceptions = [v for v in vars(mummyx).values()
                  if isinstance(v, type) and issubclass(v, BaseException)]
    assert mummyx.Error in exceptions and mummyx.Error.__bases__ == (Exception,)
    assert {e.__name__ for e in exceptions} >= {"BadRequest", "ConnectionClosed",
                                               "HandshakeRefused"}
    for exc in exceptions:
        assert issubclass(exc, mummyx.Error), exc
    # and each keeps the built-in base user code may already catch
    assert issubclass(mummyx.BadRequest, ValueError)
    assert issubclass(mummyx.HandshakeRefused, ValueError)
    assert issubclass(mummyx.ConnectionClosed, ConnectionError)
    assert mummyx.BadRequest("x", 413).status == 413
    assert "Error" in mummyx.__all__


def test_errors_raised_by_the_core_are_mummyx_errors(serve: Any) -> None:
    router = Router()
    caught: Dict[str, str] = {}

    def catch(name: str, call: Any) -> None:
        try:
            call()
        except mummyx.Error as exc:
            caught[name] = type(exc).__name__

    @router.post("/form")
    def form(request: Any) -> None:
        catch("form", request.form)  # not a form body: BadRequest from C
        catch("upgrade", request.upgrade_to_websocket)  # not a handshake: HandshakeRefused
        request.respond(200, None, "ok")

    @router.get("/sse")
    def sse(request: Any) -> None:
        stream = request.respond_sse()
        stream.close()
        catch("sse", lambda: stream.send("late"))  # a closed stream: ConnectionClosed

    server = serve(router, websocket_handler=lambda ws, ev, msg: None)
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as c:
        c.post("/form", content=b"x", headers={"Content-Type": "text/plain"})
        c.get("/sse")
    assert caught == {"form": "BadRequest", "upgrade": "HandshakeRefused",
                      "sse": "ConnectionClosed"}


def test_second_response_is_still_a_runtime_error(serve: Any) -> None:
    seen = []

    def handler(request: Any) -> None:
        request.respond(200, None, "first")
        try:
            request.respond(200, None, "second")
        except RuntimeError as exc:
            seen.append(str(exc))

    server = serve(handler)
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as c:
        assert c.get("/").text == "first"
    assert seen == ["a response was already sent for this request"]


# ---- a returned value becomes a response in one place (request.c) ----

@pytest.mark.parametrize("value, ctype, body", [
    ({"a": 1}, "application/json", b'{"a":1}'),
    (bytearray(b"raw"), "application/octet-stream", b"raw"),
    ("text", "text/plain; charset=utf-8", b"text"),
])
def test_error_handler_return_value_is_sent(serve: Any, value: Any, ctype: str,
                                            body: bytes) -> None:
    router = Router()

    @router.get("/")
    def boom(request: Any) -> None:
        raise KeyError("x")

    router.error_handler = lambda request, exc: value
    server = serve(router)
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as c:
        r = c.get("/")
    assert (r.status_code, r.headers["content-type"], r.content) == (200, ctype, body)


def test_error_handler_returning_an_unsendable_value_gives_500(serve: Any) -> None:
    router = Router()
    router.get("/", lambda request: 1 / 0)
    router.error_handler = lambda request, exc: 42
    server = serve(router)
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as c:
        assert c.get("/").status_code == 500


def test_respond_value_checks_its_request() -> None:
    with pytest.raises(TypeError, match="needs a Request"):
        _mummyx.respond_value(object(), "x")
