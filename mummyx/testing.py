"""Helpers for testing applications served by mummyx.

Use ``running`` in a pytest fixture to serve your app on a free port for the duration of a test::

    import httpx, pytest
    from mummyx.testing import running
    from myapp import router

    @pytest.fixture
    def server():
        with running(router) as server:
            yield server

    def test_index(server):
        assert httpx.get(server.url + "/").status_code == 200
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Optional, Union

from .server import Router, Server

__all__ = ["running"]


@contextlib.contextmanager
def running(
    handler: Union[Router, Callable[[Any], Any]],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    unix: Optional[str] = None,
    close_timeout: float = 5.0,
    **server_options: Any,
) -> Iterator[Server]:
    """Start a Server for ``handler`` on a free port (or ``unix`` socket), yield it, close it.

    ``server_options`` are passed to :class:`mummyx.Server` (``workers``, ``max_body_len``, ...).
    """
    server = Server(handler, **server_options)
    server.start(port, host, unix=unix)
    try:
        yield server
    finally:
        server.close(timeout=close_timeout)
