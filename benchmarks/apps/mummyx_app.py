"""mummyx app: the C core with its native worker-thread pool.

Same work as every other app in this folder:
  GET /       -> 200 "Hello, World!" (text/plain)
  GET /sleep  -> time.sleep(0.01) on a pool thread, then the same answer

Usage: python mummyx_app.py PORT WORKERS
"""
import sys
import time

from mummyx import Router, Server

router = Router()
HEADERS = {"Content-Type": "text/plain"}
BODY = "Hello, World!"


@router.get("/")
def index(request):
    request.respond(200, HEADERS, BODY)


@router.get("/sleep")
def sleep(request):
    time.sleep(0.01)
    request.respond(200, HEADERS, BODY)


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    server = Server(router, workers=workers)
    server.serve(port, host="127.0.0.1")  # blocks


if __name__ == "__main__":
    main()
