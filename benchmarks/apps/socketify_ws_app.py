"""socketify native WebSocket echo (uWebSockets underneath), one process.

  /ws  -> each message is sent back unchanged with the same opcode; no compression,
          max_payload_length 16 MiB (as mummyx's max_message_len).

Usage: python socketify_ws_app.py PORT
"""
import sys

from socketify import App, AppListenOptions, CompressOptions


def message(ws, msg, opcode):
    ws.send(msg, opcode)


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    app = App()
    app.ws("/ws", {
        "compression": CompressOptions.DISABLED,
        "max_payload_length": 16 * 1024 * 1024,
        "idle_timeout": 120,
        "message": message,
    })
    app.any("/*", lambda res, req: res.write_status(404).end("Not Found"))
    app.listen(AppListenOptions(port=port, host="127.0.0.1"), lambda config: None)
    app.run()


if __name__ == "__main__":
    main()
