"""socketify native App API, one process.

Same work as every other app in this folder:
  GET /       -> 200 "Hello, World!" (text/plain)
  GET /sleep  -> await asyncio.sleep(0.01), then the same answer
(socketify runs coroutine handlers on its own asyncio-compatible loop, so
asyncio.sleep is the idiomatic equivalent of a blocking 10 ms sleep.)

Usage: python socketify_app.py PORT
"""
import asyncio
import sys

from socketify import App, AppListenOptions

BODY = "Hello, World!"


def index(res, req):
    res.write_header("Content-Type", "text/plain")
    res.end(BODY)


async def sleep(res, req):
    await asyncio.sleep(0.01)
    res.write_header("Content-Type", "text/plain")
    res.end(BODY)


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    app = App()
    app.get("/", index)
    app.get("/sleep", sleep)
    app.listen(AppListenOptions(port=port, host="127.0.0.1"), lambda config: None)
    app.run()


if __name__ == "__main__":
    main()
