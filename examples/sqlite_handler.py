"""Blocking work in handlers: one sqlite3 query per request.

Handlers run on a pool of worker threads, never on the thread doing network I/O,
so a handler may block (a database query, a file read, a call to another
service) without stalling other connections. sqlite3 releases the GIL while a
query runs, so other handlers, other queries included, carry on meanwhile. A
sqlite3 connection must stay on the thread that made it, so each worker opens
its own (threading.local).

The database is a temporary file, created and filled at startup, removed on exit.

Try it:
    python examples/sqlite_handler.py
    curl http://localhost:8080/users
    curl http://localhost:8080/users/2
    curl -i http://localhost:8080/users/99              # 404
    curl -i -X POST --data 'name=grace' http://localhost:8080/users
    curl 'http://localhost:8080/slow?n=3000000'         # a deliberately slow query;
    curl http://localhost:8080/users                    # other requests still answer
"""

import json
import os
import shutil
import sqlite3
import tempfile
import threading
from urllib.parse import parse_qs

from mummyx import Request, Router, Server

DB_PATH = ""  # set at startup, before the server runs any handler
_local = threading.local()


def db() -> sqlite3.Connection:
    """This thread's connection, opened on first use."""
    conn = getattr(_local, "conn", None)
    if conn is None:
        # timeout: wait up to 10 s for another thread's write lock instead of failing.
        conn = sqlite3.connect(DB_PATH, timeout=10.0)
        conn.row_factory = sqlite3.Row
        _local.conn = conn
    return conn


def create_database() -> None:
    conn = sqlite3.connect(DB_PATH)
    with conn:
        # WAL lets readers carry on while one thread writes.
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        conn.executemany(
            "INSERT INTO users (name) VALUES (?)", [("ada",), ("linus",), ("margaret",)]
        )
    conn.close()


router = Router()


@router.get("/users")
def list_users(request: Request) -> list:
    rows = db().execute("SELECT id, name FROM users ORDER BY id").fetchall()
    return [dict(row) for row in rows]


@router.get("/users/@id")
def get_user(request: Request) -> None:
    # Parameters are always bound with "?", never formatted into the SQL.
    row = db().execute(
        "SELECT id, name FROM users WHERE id = ?", (request.path_params["id"],)
    ).fetchone()
    if row is None:
        request.respond(404, {"Content-Type": "text/plain"}, "no such user\n")
    else:
        request.respond(200, {"Content-Type": "application/json"}, json.dumps(dict(row)))


@router.post("/users")
def add_user(request: Request) -> None:
    form = parse_qs(request.body.decode("utf-8", errors="replace"))
    name = form.get("name", [""])[0].strip()
    if not name:
        request.respond(400, {"Content-Type": "text/plain"}, "send name=...\n")
        return
    conn = db()
    with conn:  # commits, or rolls back on error
        cur = conn.execute("INSERT INTO users (name) VALUES (?)", (name,))
    new_id = cur.lastrowid
    request.respond(
        201,
        {"Content-Type": "application/json", "Location": f"/users/{new_id}"},
        json.dumps({"id": new_id, "name": name}),
    )


@router.get("/slow")
def slow(request: Request) -> str:
    # A recursive query that counts to n: it keeps this worker busy for a while
    # (about a second for n=3000000) while the others keep serving.
    try:
        n = min(int(request.query.get("n", "1000000")), 50_000_000)
    except ValueError:
        n = 1_000_000
    (total,) = db().execute(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?)"
        " SELECT count(*) FROM c",
        (n,),
    ).fetchone()
    return f"counted to {total} on {threading.current_thread().name}\n"


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8080"))
    db_dir = tempfile.mkdtemp(prefix="mummyx-example-")
    DB_PATH = os.path.join(db_dir, "example.db")
    create_database()
    print(f"Database at {DB_PATH}")
    # Each blocked handler occupies a worker; size the pool for how many may wait at once.
    server = Server(router, workers=8)
    print(f"Serving on http://localhost:{port}/users (Ctrl-C to stop)")
    try:
        server.serve(port)
    except KeyboardInterrupt:
        pass  # serve() has already let in-flight requests finish and closed the server
    finally:
        shutil.rmtree(db_dir, ignore_errors=True)
