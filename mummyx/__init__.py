"""mummyx: a threaded HTTP/1.1 server for Python with a C core.

One I/O thread (C, epoll) does all socket work; complete requests run on a pool of native worker
threads, so handlers are plain blocking Python functions. WebSockets and Server-Sent Events are
built in.
"""
import os as _os
import sys as _sys


def _extension_missing() -> ImportError:
    """The error for a mummyx folder without its C extension: most often the source checkout,
    which shadows the installed package when Python runs from the repository root (``python -m
    mummyx`` puts the current directory first on sys.path). Says where an installed mummyx is."""
    from importlib.machinery import EXTENSION_SUFFIXES
    here = _os.path.dirname(_os.path.abspath(__file__))
    installed = [
        _os.path.join(entry, "mummyx") for entry in _sys.path
        if _os.path.abspath(entry or ".") != _os.path.dirname(here)
        and any(_os.path.exists(_os.path.join(entry or ".", "mummyx", "_mummyx" + suffix))
                for suffix in EXTENSION_SUFFIXES)
    ]
    where = (f"the mummyx installed in {installed[0]} is hidden behind it: run from another "
             "directory to use that one, or build") if installed else "build"
    return ImportError(f"mummyx's C extension is not built in {here}, which Python imported "
                       f"mummyx from; {where} the extension in place from the checkout's root "
                       "with: python setup.py build_ext --inplace")


try:
    from ._mummyx import (BadRequest, ConnectionClosed, Error, HandshakeRefused, MultipartReader,
                          Part, Request, ResponseStream)
except ModuleNotFoundError as _exc:
    if _exc.name != __name__ + "._mummyx":
        raise
    raise _extension_missing() from None
from ._structures import Headers, QueryParams
from .cookies import set_cookie
from .errors import HTTPError, redirect
from .forms import FormData, FormFiles, UploadedFile
from .server import Router, Server
from .sse import SSEChannel, SSEStream
from .websocket import Message, MessageKind, WebSocket, WebSocketEvent

__all__ = [
    "BadRequest",
    "ConnectionClosed",
    "Error",
    "FormData",
    "FormFiles",
    "HandshakeRefused",
    "HTTPError",
    "Headers",
    "Message",
    "MessageKind",
    "MultipartReader",
    "Part",
    "QueryParams",
    "Request",
    "ResponseStream",
    "Router",
    "SSEChannel",
    "SSEStream",
    "Server",
    "UploadedFile",
    "WebSocket",
    "WebSocketEvent",
    "redirect",
    "set_cookie",
]
__version__ = "0.1.0"
