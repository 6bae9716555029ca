"""RSGI WebSocket echo for granian (--interface rsgi), granian's own, fastest interface.

  /ws  -> accept; each message is sent back unchanged (bytes -> binary, str -> text).
"""
from granian.rsgi import WebsocketMessageType

BYTES = WebsocketMessageType.bytes
STRING = WebsocketMessageType.string


async def app(scope, protocol):
    if scope.proto == "ws":
        transport = await protocol.accept()
        while True:
            message = await transport.receive()
            kind = message.kind
            if kind == BYTES:
                await transport.send_bytes(message.data)
            elif kind == STRING:
                await transport.send_str(message.data)
            else:  # close
                return
    protocol.response_str(404, [("content-type", "text/plain")], "Not Found")
