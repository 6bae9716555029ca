"""Server-Sent Events: SSEStream (in C) and SSEChannel, a fan-out with optional replay."""
from __future__ import annotations

import collections
import threading
from typing import Deque, List, Optional, Tuple, Union

from . import _mummyx
from ._mummyx import SSEStream

__all__ = ["SSEStream", "SSEChannel"]


class SSEChannel:
    """Publishes events to every subscribed SSEStream.

    Each event is encoded once (in C) and the same bytes are queued to every subscriber; nothing
    waits for the network. Closed streams (the client left, or was too slow) are dropped. With
    ``replay=N`` the channel keeps the last N events, and ``subscribe`` first sends the stream
    the ones after its ``last_event_id`` (all of them when that id is unknown or absent).
    Thread-safe.
    """

    def __init__(self, replay: int = 0) -> None:
        if replay < 0:
            raise ValueError("replay must not be negative")
        self.replay = replay
        self._lock = threading.Lock()
        self._streams: List[SSEStream] = []
        self._history: Deque[Tuple[Optional[str], bytes]] = collections.deque(maxlen=replay or 1)

    def subscribe(self, stream: SSEStream) -> None:
        if not isinstance(stream, SSEStream):
            raise TypeError("subscribe() takes an SSEStream (from request.respond_sse())")
        with self._lock:
            if self.replay:
                backlog = list(self._history)
                last = stream.last_event_id
                if last is not None:
                    for i in range(len(backlog) - 1, -1, -1):
                        if backlog[i][0] == last:
                            backlog = backlog[i + 1:]
                            break
                for _, payload in backlog:
                    _mummyx.sse_fanout([stream], payload)
            if not stream.closed and stream not in self._streams:
                self._streams.append(stream)

    def unsubscribe(self, stream: SSEStream) -> None:
        with self._lock:
            try:
                self._streams.remove(stream)
            except ValueError:
                pass

    def publish(self, data: str, *, event: Optional[str] = None,
                id: Optional[Union[str, int]] = None, retry: Optional[int] = None) -> int:
        """Queue one event on every subscriber; returns how many streams it reached."""
        with self._lock:
            streams = self._streams
            # encoded once, and those bytes queued on every stream (kept too when replaying)
            reached, payload = _mummyx.sse_publish(streams, data, event, id, retry,
                                                   bool(self.replay))
            if payload is not None:
                self._history.append((None if id is None else str(id), payload))
            if reached < len(streams):
                self._streams = [s for s in streams if not s.closed]
            return reached

    def __len__(self) -> int:
        with self._lock:
            if any(s.closed for s in self._streams):
                self._streams = [s for s in self._streams if not s.closed]
            return len(self._streams)

    def __repr__(self) -> str:
        return f"<SSEChannel subscribers={len(self)} replay={self.replay}>"
