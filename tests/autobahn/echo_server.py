#!/usr/bin/env python3
"""mummyx WebSocket echo server for the Autobahn cases (tests/autobahn/run.py starts it).

    python tests/autobahn/echo_server.py PORT

Listens on 127.0.0.1:PORT. Any GET, on any path (kosoku requests "/"), is upgraded to a
WebSocket; every text or binary message is sent back as it came (text as text, binary as
binary). Pings are answered by mummyx itself; PING and PONG messages, which mummyx also hands to
the handler, are not echoed (an echoed ping payload would be an extra binary message, which
fails cases 2.x and 5.x). permessage-deflate is on (groups 12 and 13) and messages may be up to
16 MiB (group 9 sends exactly 16 MiB, and the echo of it must fit in the send queue).
SIGTERM stops it.
"""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# CI builds the extension in place (setup.py build_ext --inplace) without installing mummyx:
# use the checkout's package.
sys.path.insert(0, str(REPO))

from mummyx import MessageKind, Router, Server, WebSocketEvent  # noqa: E402

MAX_MESSAGE_LEN = 16 * 1024 * 1024
# The echo of a 16 MiB message is queued whole; the default max_send_queue (4 MiB) would
# disconnect the client (1008) on every message of 4 MiB or more (9.1.4-9.1.6, 9.2.4-9.4.9).
MAX_SEND_QUEUE = 32 * 1024 * 1024
ECHOED = (MessageKind.TEXT, MessageKind.BINARY)


def websocket_handler(websocket, event, message):  # type: ignore[no-untyped-def]
    if event is WebSocketEvent.MESSAGE and message.kind in ECHOED:
        websocket.send(message.data)  # str -> text, bytes -> binary


def upgrade(request):  # type: ignore[no-untyped-def]
    request.upgrade_to_websocket()


router = Router()
router.get("/", upgrade)
router.get("/**", upgrade)


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: echo_server.py PORT")
    server = Server(
        router,
        websocket_handler=websocket_handler,
        max_message_len=MAX_MESSAGE_LEN,
        max_send_queue=MAX_SEND_QUEUE,
        websocket_compression=True,
        workers=4,
    )
    print(f"mummyx echo server on ws://127.0.0.1:{sys.argv[1]}/", file=sys.stderr, flush=True)
    server.serve(int(sys.argv[1]), host="127.0.0.1")


if __name__ == "__main__":
    main()
