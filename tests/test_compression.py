"""Response compression: negotiation, thresholds, content types, and the bytes on the wire."""
from __future__ import annotations

import gzip
import json
import zlib
from typing import Any, Dict, Optional

import httpx
import pytest

from mummyx import Router

from conftest import parse_responses, raw_request

TIMEOUT = 5.0
THRESHOLD = 860  # bodies must be *over* this many bytes to be compressed

TEXT = ("The quick brown fox jumps over the lazy dog. " * 100).encode()  # 4500 bytes
HTML = ("<html><body>" + "<p>hello, compressible world</p>" * 100 + "</body></html>").encode()
JSON_VALUE = {"items": [{"id": i, "name": f"item-{i}", "tags": ["a", "b"]} for i in range(100)]}


def fetch(port: int, path: str, accept: Optional[str], method: str = "GET") -> Dict[str, Any]:
    """One raw request; returns the parsed response with the body exactly as sent."""
    head = f"{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
    if accept is not None:
        head += f"Accept-Encoding: {accept}\r\n"
    data = raw_request(port, (head + "\r\n").encode())
    responses = parse_responses(data)
    assert len(responses) == 1, data[:300]
    r = responses[0]
    r["raw"] = data
    return r


@pytest.fixture
def server(serve):
    router = Router()
    router.get("/text", lambda req: req.respond(200, {"Content-Type": "text/plain"}, TEXT))
    router.get("/html", lambda req: req.respond(200, {"Content-Type": "text/html; charset=utf-8"},
                                                HTML))
    router.get("/json", lambda req: JSON_VALUE)  # returned dict -> application/json
    router.get("/json-explicit", lambda req: req.respond(
        200, {"Content-Type": "application/json"}, json.dumps(JSON_VALUE)))
    router.get("/str", lambda req: TEXT.decode())  # returned str -> text/plain
    router.get("/png", lambda req: req.respond(200, {"Content-Type": "image/png"}, TEXT))
    router.get("/octet", lambda req: TEXT)  # returned bytes -> application/octet-stream
    router.get("/size/@n", lambda req: req.respond(200, {"Content-Type": "text/plain"},
                                                   b"a" * int(req.path_params["n"])))
    router.get("/precompressed", lambda req: req.respond(
        200, {"Content-Type": "text/plain", "Content-Encoding": "gzip"}, gzip.compress(TEXT)))
    router.get("/identity-set", lambda req: req.respond(
        200, {"Content-Type": "text/plain", "Content-Encoding": "identity"}, TEXT))
    router.get("/vary", lambda req: req.respond(
        200, {"Content-Type": "text/plain", "Vary": "Cookie"}, TEXT))
    return serve(router)


def _assert_gzip(r: Dict[str, Any], original: bytes) -> None:
    assert r["status"] == 200
    assert r["headers"].get("content-encoding") == "gzip", r["headers"]
    assert int(r["headers"]["content-length"]) == len(r["body"])
    assert r["body"][:2] == b"\x1f\x8b"  # gzip magic
    assert len(r["body"]) < len(original)
    assert gzip.decompress(r["body"]) == original
    vary = [v for k, v in r["header_list"] if k == "vary"]
    assert any("accept-encoding" in [t.strip().lower() for t in v.split(",")] for v in vary), vary


def _assert_identity(r: Dict[str, Any], original: bytes) -> None:
    assert r["status"] == 200
    assert "content-encoding" not in r["headers"] or r["headers"]["content-encoding"] == "identity"
    assert r["body"] == original
    assert int(r["headers"]["content-length"]) == len(original)


# ---- gzip ----------------------------------------------------------------------------------

@pytest.mark.parametrize("path,original", [
    ("/text", TEXT), ("/html", HTML), ("/str", TEXT),
    ("/json-explicit", json.dumps(JSON_VALUE).encode()),
])
def test_gzip_for_compressible_types(server, path, original):
    _assert_gzip(fetch(server.port, path, "gzip"), original)


def test_gzip_for_returned_dict(server):
    r = fetch(server.port, "/json", "gzip")
    assert r["headers"]["content-encoding"] == "gzip"
    assert json.loads(gzip.decompress(r["body"])) == JSON_VALUE


def test_gzip_preferred_when_both_accepted(server):
    _assert_gzip(fetch(server.port, "/text", "gzip, deflate"), TEXT)
    _assert_gzip(fetch(server.port, "/text", "deflate, gzip"), TEXT)
    _assert_gzip(fetch(server.port, "/text", "gzip, deflate, br"), TEXT)


@pytest.mark.parametrize("accept", ["GZIP", "x-gzip", "gzip;q=1.0", "gzip;q=0.5", " gzip ",
                                    "br;q=1, gzip;q=0.1", "*"])
def test_gzip_accept_variants(server, accept):
    _assert_gzip(fetch(server.port, "/text", accept), TEXT)


def test_httpx_decodes_gzip(server):
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as c:
        r = c.get("/html", headers={"Accept-Encoding": "gzip"})
    assert r.headers["content-encoding"] == "gzip"
    assert r.content == HTML
    assert int(r.headers["content-length"]) < len(HTML)


def test_vary_merges_with_handler_vary(server):
    r = fetch(server.port, "/vary", "gzip")
    assert r["headers"]["content-encoding"] == "gzip"
    tokens = [t.strip().lower() for k, v in r["header_list"] if k == "vary" for t in v.split(",")]
    assert "cookie" in tokens and "accept-encoding" in tokens


# ---- deflate -------------------------------------------------------------------------------

@pytest.mark.parametrize("accept", ["deflate", "deflate, br", "gzip;q=0, deflate",
                                    "deflate;q=1, gzip;q=0.5"])
def test_deflate_when_only_deflate_acceptable(server, accept):
    r = fetch(server.port, "/text", accept)
    assert r["status"] == 200
    assert r["headers"].get("content-encoding") == "deflate", r["headers"]
    assert int(r["headers"]["content-length"]) == len(r["body"])
    assert len(r["body"]) < len(TEXT)
    # RFC 9110 8.4.1.2: "deflate" is the zlib format (RFC 1950)
    assert zlib.decompress(r["body"]) == TEXT
    assert "accept-encoding" in r["headers"].get("vary", "").lower()


def test_httpx_decodes_deflate(server):
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as c:
        r = c.get("/text", headers={"Accept-Encoding": "deflate"})
    assert r.headers["content-encoding"] == "deflate"
    assert r.content == TEXT


# ---- not compressed ------------------------------------------------------------------------

@pytest.mark.parametrize("accept", [None, "", "identity", "br", "gzip;q=0", "GZIP;Q=0",
                                    "gzip;q=0, deflate;q=0", "*;q=0", "gzip;q=0.000",
                                    "identity, *;q=0"])
def test_not_compressed_when_not_acceptable(server, accept):
    _assert_identity(fetch(server.port, "/text", accept), TEXT)


def test_gzip_q0_with_star_is_not_gzip(server):
    r = fetch(server.port, "/text", "gzip;q=0, *")
    assert r["headers"].get("content-encoding") != "gzip"
    if r["headers"].get("content-encoding") == "deflate":
        assert zlib.decompress(r["body"]) == TEXT
    else:
        assert r["body"] == TEXT


@pytest.mark.parametrize("n", [0, 1, 100, 500, THRESHOLD])
def test_small_bodies_not_compressed(server, n):
    _assert_identity(fetch(server.port, f"/size/{n}", "gzip"), b"a" * n)


@pytest.mark.parametrize("n", [THRESHOLD + 1, 2000, 200_000])
def test_bodies_over_threshold_compressed(server, n):
    _assert_gzip(fetch(server.port, f"/size/{n}", "gzip"), b"a" * n)


def test_image_png_not_compressed(server):
    _assert_identity(fetch(server.port, "/png", "gzip, deflate"), TEXT)


def test_octet_stream_not_compressed(server):
    _assert_identity(fetch(server.port, "/octet", "gzip, deflate"), TEXT)


def test_handler_content_encoding_not_recompressed(server):
    r = fetch(server.port, "/precompressed", "gzip")
    assert [v for k, v in r["header_list"] if k == "content-encoding"] == ["gzip"]
    assert r["body"] == gzip.compress(TEXT) or gzip.decompress(r["body"]) == TEXT
    # exactly one layer of gzip
    assert gzip.decompress(r["body"]) == TEXT


def test_handler_identity_content_encoding_left_alone(server):
    r = fetch(server.port, "/identity-set", "gzip")
    assert [v for k, v in r["header_list"] if k == "content-encoding"] == ["identity"]
    assert r["body"] == TEXT


def test_compression_disabled(serve):
    router = Router()
    router.get("/text", lambda req: req.respond(200, {"Content-Type": "text/plain"}, TEXT))
    router.get("/json", lambda req: JSON_VALUE)
    server = serve(router, compression=False)
    _assert_identity(fetch(server.port, "/text", "gzip, deflate"), TEXT)
    r = fetch(server.port, "/json", "gzip")
    assert "content-encoding" not in r["headers"]
    assert json.loads(r["body"]) == JSON_VALUE


def test_head_with_gzip_has_no_body(server):
    data = raw_request(server.port,
                       b"HEAD /text HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n"
                       b"GET /size/5 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    head_end = data.index(b"\r\n\r\n") + 4
    assert data.startswith(b"HTTP/1.1 200")
    assert data[head_end:].startswith(b"HTTP/1.1 200"), data[head_end:head_end + 40]
    assert parse_responses(data[head_end:])[0]["body"] == b"aaaaa"


def test_keep_alive_mixed_compressed_and_plain(server):
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as c:
        for _ in range(5):
            r = c.get("/text", headers={"Accept-Encoding": "gzip"})
            assert r.headers["content-encoding"] == "gzip" and r.content == TEXT
            r = c.get("/png", headers={"Accept-Encoding": "gzip"})
            assert "content-encoding" not in r.headers and r.content == TEXT
            r = c.get("/text", headers={"Accept-Encoding": "identity"})
            assert "content-encoding" not in r.headers and r.content == TEXT


def test_repeated_accept_encoding_lines_are_combined(server):
    # RFC 9110 5.3: several field lines with the same name form one comma-separated list.
    data = raw_request(server.port, b"GET /text HTTP/1.1\r\nHost: t\r\nAccept-Encoding: identity\r\n"
                                    b"Accept-Encoding: gzip\r\nConnection: close\r\n\r\n")
    r = parse_responses(data)[0]
    _assert_gzip(r, TEXT)
