"""A small JSON API: create, read, update and delete items kept in memory.

Handlers run on several worker threads at once, so the shared dict is guarded by
a lock. Bad JSON gets a 400, an unknown id a 404.

Try it:
    python examples/json_api.py
    curl -i -X POST -H 'Content-Type: application/json' \\
         --data '{"name": "mummy", "price": 3}' http://localhost:8080/items
    curl http://localhost:8080/items
    curl http://localhost:8080/items/1
    curl -i -X PUT --data '{"name": "mummy", "price": 4}' http://localhost:8080/items/1
    curl -i -X DELETE http://localhost:8080/items/1
    curl -i http://localhost:8080/items/1               # 404
    curl -i -X POST --data '{oops' http://localhost:8080/items   # 400
"""

import json
import os
import threading
from typing import Any, Optional

from mummyx import Request, Router, Server

router = Router()

_lock = threading.Lock()  # guards _items and _next_id
_items: dict[int, dict[str, Any]] = {}
_next_id = 1


def send_json(request: Request, status: int, obj: Any, headers: Optional[dict] = None) -> None:
    all_headers = {"Content-Type": "application/json"}
    all_headers.update(headers or {})
    request.respond(status, all_headers, json.dumps(obj))


def send_error(request: Request, status: int, message: str) -> None:
    send_json(request, status, {"error": message})


def read_item(request: Request) -> Optional[dict[str, Any]]:
    """The request body as a JSON object, or None after answering 400."""
    try:
        data = json.loads(request.body)  # bytes are fine; a bad encoding is a ValueError too
    except ValueError as exc:
        send_error(request, 400, f"invalid JSON: {exc}")
        return None
    if not isinstance(data, dict):
        send_error(request, 400, "expected a JSON object")
        return None
    data.pop("id", None)  # the id comes from the URL, never from the body
    return data


def item_id(request: Request) -> Optional[int]:
    """The @id path parameter as an int, or None after answering 404."""
    try:
        return int(request.path_params["id"])
    except ValueError:
        send_error(request, 404, "no such item")
        return None


@router.get("/items")
def list_items(request: Request) -> None:
    with _lock:
        items = [{"id": k, **v} for k, v in sorted(_items.items())]
    send_json(request, 200, items)


@router.post("/items")
def create_item(request: Request) -> None:
    global _next_id
    data = read_item(request)
    if data is None:
        return
    with _lock:
        new_id = _next_id
        _next_id += 1
        _items[new_id] = data
    send_json(request, 201, {"id": new_id, **data}, {"Location": f"/items/{new_id}"})


@router.get("/items/@id")
def get_item(request: Request) -> None:
    key = item_id(request)
    if key is None:
        return
    with _lock:
        data = _items.get(key)
    if data is None:
        send_error(request, 404, "no such item")
    else:
        send_json(request, 200, {"id": key, **data})


@router.put("/items/@id")
def replace_item(request: Request) -> None:
    key = item_id(request)
    if key is None:
        return
    data = read_item(request)
    if data is None:
        return
    with _lock:
        found = key in _items
        if found:
            _items[key] = data
    if not found:
        send_error(request, 404, "no such item")
    else:
        send_json(request, 200, {"id": key, **data})


@router.delete("/items/@id")
def delete_item(request: Request) -> None:
    key = item_id(request)
    if key is None:
        return
    with _lock:
        found = _items.pop(key, None) is not None
    if not found:
        send_error(request, 404, "no such item")
    else:
        request.respond(204)


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8080"))
    server = Server(router)
    print(f"Serving on http://localhost:{port}/items (Ctrl-C to stop)")
    try:
        server.serve(port)
    except KeyboardInterrupt:
        pass  # serve() has already let in-flight requests finish and closed the server
