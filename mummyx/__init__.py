"""mummyx: a threaded HTTP/1.1 server for Python with a C core.

One I/O thread (C, epoll) does all socket work; complete requests run on a pool of native worker
threads, so handlers are plain blocking Python functions.
"""
from ._mummyx import ConnectionClosed, Request
from ._structures import Headers, QueryParams
from .server import Router, Server

__all__ = [
    "ConnectionClosed",
    "Headers",
    "QueryParams",
    "Request",
    "Router",
    "Server",
]
__version__ = "0.1.0"
