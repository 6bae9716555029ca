"""Path parameters and query strings.

"@name" in a route captures one path segment into request.path_params["name"].
request.query maps each query parameter to its first value;
request.query.getall(name) returns every value.

Try it:
    python examples/params.py
    curl http://localhost:8080/users/42
    curl http://localhost:8080/users/42/posts/7
    curl http://localhost:8080/users/ada%20lovelace
    curl 'http://localhost:8080/search?q=mummy&tag=python&tag=c&page=2'
    curl 'http://localhost:8080/search?page=two'        # 400
    curl 'http://localhost:8080/search'                 # 400: q is required
"""

import os

from mummyx import Request, Router, Server

router = Router()


@router.get("/users/@id")
def user(request: Request) -> dict:
    return {"user": request.path_params["id"]}


@router.get("/users/@user_id/posts/@post_id")
def user_post(request: Request) -> dict:
    # Values are strings; convert them yourself.
    params = request.path_params
    return {"user": params["user_id"], "post": params["post_id"]}


@router.get("/search")
def search(request: Request) -> None:
    q = request.query.get("q")
    if not q:
        request.respond(400, {"Content-Type": "text/plain"}, "missing ?q=\n")
        return
    try:
        page = int(request.query.get("page", "1"))
    except ValueError:
        request.respond(400, {"Content-Type": "text/plain"}, "page must be a number\n")
        return
    tags = request.query.getall("tag")  # [] when absent
    body = f"q={q!r} tags={tags!r} page={page} raw target={request.uri!r}\n"
    request.respond(200, {"Content-Type": "text/plain; charset=utf-8"}, body)


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8080"))
    server = Server(router)
    print(f"Serving on http://localhost:{port}/ (Ctrl-C to stop)")
    try:
        server.serve(port)
    except KeyboardInterrupt:
        pass  # serve() has already let in-flight requests finish and closed the server
