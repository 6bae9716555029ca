"""mummyx: a threaded HTTP/1.1 server for Python with a C core.

One I/O thread (C, epoll) does all socket work; complete requests run on a pool of native worker
threads, so handlers are plain blocking Python functions. WebSockets and Server-Sent Events are
built in.
"""
from ._mummyx import (BadRequest, ConnectionClosed, Error, HandshakeRefused, MultipartReader, Part,
                      Request, ResponseStream)
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
