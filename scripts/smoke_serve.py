"""Serves one request with the installed mummyx and checks the answer; exits non-zero if not.

Run by scripts/wheels_check.py and scripts/dist_check.py inside a fresh venv, from a directory
outside the checkout, so the mummyx it imports is the installed one and never the source folder.
"""
import json
import sys
import urllib.request

import mummyx
from mummyx import Router
from mummyx.testing import running

router = Router()


@router.get("/hello/@name")
def hello(request: mummyx.Request) -> dict:
    return {"hello": request.path_params["name"], "python": sys.version.split()[0]}


with running(router, workers=2) as server:
    with urllib.request.urlopen(server.url + "/hello/wheel", timeout=10) as response:
        body = json.loads(response.read())
if body["hello"] != "wheel":
    sys.exit(f"unexpected answer: {body!r}")
# The extension must come from the install, not from a checkout on sys.path.
if "site-packages" not in mummyx._mummyx.__file__:
    sys.exit(f"mummyx._mummyx was loaded from {mummyx._mummyx.__file__}, not site-packages")
print(f"ok: python {body['python']}, {mummyx._mummyx.__file__}")
