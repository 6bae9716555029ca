#!/usr/bin/env python3
"""Reference WebSocket echo server for validating tests/autobahn/run.py only (not mummyx).

    python tests/autobahn/reference_echo.py PORT

Uses the `websockets` library's asyncio server on 127.0.0.1 with permessage-deflate enabled
and a 16 MiB message limit. It echoes every message back with its type (text or binary), on
any path. Needs `pip install websockets` (it is not a dependency of mummyx or of CI).

Known result (websockets 17.4): every case of 1-10,12-13 passes except 7.1.5, where websockets
answers a close frame that arrives in the middle of a fragmented message with 1002 ("incomplete
fragmented message"); Autobahn expects the close to be echoed with 1000.
"""
from __future__ import annotations

import asyncio
import os
import signal
import sys

# websockets fails a message of more than 4096 fragments with 1009 ("too many fragments");
# cases 9.3.1 and 9.4.1 send 4 MiB in 64-byte fragments (65536 frames). Lift that cap.
os.environ.setdefault("WEBSOCKETS_MAX_FRAGMENTS", str(1 << 20))

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

MAX_MESSAGE_LEN = 16 * 1024 * 1024


async def echo(websocket: ServerConnection) -> None:
    try:
        async for message in websocket:
            await websocket.send(message)
    except ConnectionClosed:
        pass


async def main(port: int) -> None:
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(
        echo,
        "127.0.0.1",
        port,
        compression="deflate",
        max_size=MAX_MESSAGE_LEN,
        ping_interval=None,  # no keepalive pings of our own: they would show up in the cases
        close_timeout=5,
    ):
        print(f"reference echo server on ws://127.0.0.1:{port}/", file=sys.stderr, flush=True)
        await stop


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: reference_echo.py PORT")
    asyncio.run(main(int(sys.argv[1])))
