"""A chat room: a small browser page and its WebSocket, served by the same router.

GET / serves the page; GET /ws?name=alice joins the room. Every message a member sends goes to
everyone in the room. The members are kept in a dict keyed by WebSocket (a WebSocket is
hashable, and the handler gets the same object for every event of a connection). Handlers of
different connections run on different worker threads at once, so the dict is guarded by a lock;
sending is done outside the lock, since send() only queues and never waits for the network.
Each member's connection gets its own handler (upgrade_to_websocket(handler=...)) that knows the
member's name.

Try it:
    python examples/ws_chat.py
    open http://localhost:8080/ in two browser windows
    python -m websockets 'ws://localhost:8080/ws?name=terminal'     # or join from a terminal
"""

import functools
import json
import os
import threading
from typing import Dict, List, Optional

from mummyx import (ConnectionClosed, Message, MessageKind, Request, Router, Server, WebSocket,
                    WebSocketEvent)

MAX_NAME_LEN = 32
MAX_TEXT_LEN = 2000

router = Router()

_lock = threading.Lock()  # guards _members
_members: Dict[WebSocket, str] = {}


PAGE = """<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>mummyx chat</title>
<style>
  body { font: 16px system-ui, sans-serif; max-width: 40em; margin: 2em auto; }
  #log { border: 1px solid #ccc; height: 20em; overflow-y: auto; padding: .5em; }
  #log .notice { color: #888; font-style: italic; }
  form { display: flex; gap: .5em; margin-top: .5em; }
  #text { flex: 1; }
</style>
<h1>mummyx chat</h1>
<div id="log"></div>
<form id="form">
  <input id="name" placeholder="your name" size="10" required>
  <input id="text" placeholder="say something" autocomplete="off">
  <button>Send</button>
</form>
<script>
const log = document.getElementById("log");
const nameBox = document.getElementById("name");
const textBox = document.getElementById("text");
let socket = null;

function show(text, cls) {
  const line = document.createElement("div");
  line.textContent = text;
  if (cls) line.className = cls;
  log.appendChild(line);
  log.scrollTop = log.scrollHeight;
}

function join() {
  const url = new URL("/ws", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  url.searchParams.set("name", nameBox.value);
  socket = new WebSocket(url);
  socket.onmessage = (e) => {
    const m = JSON.parse(e.data);
    if (m.type === "message") show(m.name + ": " + m.text);
    else show(m.text, "notice");
  };
  socket.onclose = (e) => { show("disconnected (" + e.code + ")", "notice"); socket = null; };
  nameBox.disabled = true;
}

document.getElementById("form").onsubmit = (e) => {
  e.preventDefault();
  if (!socket) join();
  const text = textBox.value;
  if (!text) return;
  const send = () => socket.send(text);
  if (socket.readyState === WebSocket.OPEN) send(); else socket.addEventListener("open", send);
  textBox.value = "";
};
</script>
</html>
"""


@router.get("/")
def index(request: Request) -> None:
    request.respond(200, {"Content-Type": "text/html; charset=utf-8"}, PAGE)


@router.get("/ws")
def join(request: Request) -> None:
    name = (request.query.get("name") or "").strip()[:MAX_NAME_LEN]
    if not name:
        request.respond(400, {"Content-Type": "text/plain"}, "?name= is required")
        return
    # A handler of its own for this connection, with the member's name bound to it. (Setting an
    # attribute on the WebSocket here would race with OPEN, which may already be running.)
    request.upgrade_to_websocket(handler=functools.partial(member_handler, name))


def broadcast(payload: Dict[str, str]) -> None:
    """Sends to every member; members that left meanwhile are skipped."""
    data = json.dumps(payload)
    with _lock:
        members: List[WebSocket] = list(_members)
    for member in members:
        try:
            member.send(data)
        except ConnectionClosed:
            pass  # it left (or stopped reading); its CLOSE event removes it


def member_handler(name: str, websocket: WebSocket, event: WebSocketEvent,
                   message: Optional[Message]) -> None:
    if event is WebSocketEvent.OPEN:
        with _lock:
            _members[websocket] = name
            count = len(_members)
        websocket.send(json.dumps({"type": "notice",
                                   "text": f"welcome, {name}: {count} in the room"}))
        broadcast({"type": "notice", "text": f"{name} joined"})
    elif event is WebSocketEvent.MESSAGE:
        assert message is not None
        text = message.data
        if message.kind is not MessageKind.TEXT or not isinstance(text, str):
            return  # binary, ping and pong messages (bytes) are not chat
        broadcast({"type": "message", "name": name, "text": text[:MAX_TEXT_LEN]})
    elif event is WebSocketEvent.CLOSE:
        with _lock:
            was_member = _members.pop(websocket, None) is not None
        if was_member:
            broadcast({"type": "notice", "text": f"{name} left"})


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8080"))
    server = Server(router)  # no server-wide websocket_handler: /ws passes its own
    print(f"Chat on http://localhost:{port}/ (Ctrl-C to stop)")
    try:
        server.serve(port)
    except KeyboardInterrupt:
        pass
