"""WebSocket events and messages (the connection object itself, WebSocket, is in C)."""
from __future__ import annotations

import enum
from typing import Union

from ._mummyx import WebSocket

__all__ = ["WebSocket", "WebSocketEvent", "Message", "MessageKind"]


class WebSocketEvent(enum.Enum):
    """What happened on a WebSocket: delivered to the handler in order, OPEN first, CLOSE last."""

    OPEN = "open"
    MESSAGE = "message"
    ERROR = "error"
    CLOSE = "close"


class MessageKind(enum.Enum):
    """The kind of a WebSocket message."""

    TEXT = "text"
    BINARY = "binary"
    PING = "ping"
    PONG = "pong"


class Message:
    """A received WebSocket message: ``data`` is ``str`` for TEXT, ``bytes`` otherwise."""

    __slots__ = ("kind", "data")

    def __init__(self, kind: MessageKind, data: Union[str, bytes]) -> None:
        self.kind = kind
        self.data = data

    def __repr__(self) -> str:
        shown = repr(self.data)
        if len(shown) > 64:
            shown = shown[:60] + "..."
        return f"Message({self.kind.name}, {shown})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return self.kind is other.kind and self.data == other.data

    __hash__ = None  # type: ignore[assignment]


# The order the C core indexes them by.
_EVENTS = (WebSocketEvent.OPEN, WebSocketEvent.MESSAGE, WebSocketEvent.ERROR, WebSocketEvent.CLOSE)
_KINDS = (MessageKind.TEXT, MessageKind.BINARY, MessageKind.PING, MessageKind.PONG)
SUPPORT = (_EVENTS, _KINDS, Message)
