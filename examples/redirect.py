"""Redirects: 301, 302, 303 and 307, each with a Location header.

  301 Moved Permanently  the resource has a new URL for good (clients may cache it)
  302 Found              temporarily elsewhere (browsers turn a POST into a GET)
  303 See Other          "go GET this other page", the usual answer to a form POST
  307 Temporary Redirect temporarily elsewhere; method and body are kept
  (308 Permanent Redirect is to 301 what 307 is to 302.)

Try it (-L follows redirects, -i shows the status and Location; --data makes a
POST, and unlike -X POST lets curl switch to GET after a 303 as browsers do):
    python examples/redirect.py
    curl -i http://localhost:8080/old-page
    curl -iL 'http://localhost:8080/old-page?x=1'       # the query string comes along
    curl -i http://localhost:8080/dashboard
    curl -iL --data 'name=ada' http://localhost:8080/signup       # POST, then GET /welcome
    curl -iL --data 'payload' http://localhost:8080/v1/upload     # POST, then POST again
"""

import os

from mummyx import Request, Router, Server

router = Router()


def redirect(request: Request, status: int, location: str) -> None:
    # A tiny body helps clients that do not follow redirects.
    request.respond(
        status,
        {"Location": location, "Content-Type": "text/plain"},
        f"Redirecting to {location}\n",
    )


def query_suffix(request: Request) -> str:
    # request.uri is the raw target, so the query string is passed on unchanged.
    _, sep, query = request.uri.partition("?")
    return sep + query


@router.get("/old-page")
def old_page(request: Request) -> None:
    redirect(request, 301, "/new-page" + query_suffix(request))


@router.get("/new-page")
def new_page(request: Request) -> str:
    return f"This is the new page. query={dict(request.query.items())!r}\n"


@router.get("/dashboard")
def dashboard(request: Request) -> None:
    # Pretend nobody is logged in.
    redirect(request, 302, "/login")


@router.get("/login")
def login(request: Request) -> str:
    return "Please log in.\n"


@router.post("/signup")
def signup(request: Request) -> None:
    # Handle the form, then send the browser to a page it may safely reload.
    redirect(request, 303, "/welcome")


@router.get("/welcome")
def welcome(request: Request) -> str:
    return "Welcome aboard!\n"


@router.post("/v1/upload")
def upload_v1(request: Request) -> None:
    # 307 makes the client repeat the POST, with its body, at the new URL.
    redirect(request, 307, "/v2/upload")


@router.post("/v2/upload")
def upload_v2(request: Request) -> dict:
    return {"received_bytes": len(request.body)}


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8080"))
    server = Server(router)
    print(f"Serving on http://localhost:{port}/ (Ctrl-C to stop)")
    try:
        server.serve(port)
    except KeyboardInterrupt:
        pass  # serve() has already let in-flight requests finish and closed the server
