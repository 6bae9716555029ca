"""WSGI app for granian (--interface wsgi) and gunicorn (gthread).

Same work as every other app in this folder:
  GET /       -> 200 "Hello, World!" (text/plain)
  GET /sleep  -> sleep 10 ms (blocking, releases the GIL), then the same answer
"""
import time

BODY = b"Hello, World!"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]
NOT_FOUND = [("Content-Type", "text/plain"), ("Content-Length", "9")]


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/sleep":
        time.sleep(0.01)
    elif path != "/":
        start_response("404 Not Found", NOT_FOUND)
        return [b"Not Found"]
    start_response("200 OK", HEADERS)
    return [BODY]
