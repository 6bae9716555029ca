"""Raw HTTP/1.1 requests and the outcome each must have, for tests/test_conformance.py.

Written from RFC 9110/9112 and the request-smuggling literature (CL.TE, TE.CL and TE.TE
obfuscations: whitespace around names and values, duplicate and comma-joined fields, "chunked"
not last, odd chunk sizes and extensions, bare LF/CR, NUL, obs-fold, oversized pieces).

A vector is (id, raw bytes, expected responses in order, how the connection ends):

* ``ok(method, target, body)``: a 200 from the echo handler, which reports what it saw (method,
  request-target, body length and SHA-256, HTTP version); a wrong body means wrong framing.
* an ``int``: a response with that status made by the server (errors always close).
* ``end="open"``: the connection must still be usable. The test appends a valid request with
  ``Connection: close`` and expects it to be answered too; this proves the server consumed
  exactly the bytes it should have (a misread body length shows up as a wrong response).
* ``end="closed"``: the server must close after the last expected response. The test appends a
  valid ``GET /smuggled`` request in the same send and asserts it is never answered (nor ever
  reaches the handler).

The server under test runs with ``max_body_len=1024`` and the default ``max_headers_len=8192``
(so request-targets longer than 8192 - 64 = 8128 bytes get 414).

Choices made where the RFCs leave room (each is noted at its vector, too):

* Content-Length repeated or comma-joined, even with identical values ("5, 5"), is a 400.
  RFC 9110 8.6 lets a recipient either reject such a message or collapse identical values; the
  server rejects (RFC 9112 6.3 item 5: an invalid Content-Length is an unrecoverable error).
* Bare LF as a line terminator is a 400 anywhere (RFC 9112 2.2: recognising it is a MAY).
* Transfer-Encoding on HTTP/1.0 is a 400 (RFC 9112 6.1: MUST treat the framing as faulty).
* Empty list elements in Transfer-Encoding are ignored ("chunked," is chunked), as RFC 9110
  5.6.1 requires of recipients.
* Up to two empty lines before a request-line are ignored (RFC 9112 2.2: SHOULD ignore at
  least one); a third is a 400.
* The request-target is taken as any visible ASCII: a fragment or a malformed percent-escape
  reaches the handler as sent (RFC 9112 3 only says SHOULD reject an invalid request-line).
  The target's *form* is held to the RFCs, though: asterisk-form only with OPTIONS (RFC 9112
  3.2.4), absolute-form with a non-empty host (RFC 9110 4.2.1) and no userinfo (4.2.4). The
  server checks them in response.c.

Known bugs outside the parser are marked on their vectors: ``xfail`` (every delivery) or
``xfail_bytes`` (only the byte-by-byte delivery), and ``fragile`` lists the split points that
trigger a delivery-dependent bug, which test_conformance.py also reproduces with explicit splits.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import List, Optional, Tuple, Union

HOST_LINE = "Host: t"


@dataclass(frozen=True)
class Seen:
    """A 200 from the echo handler, which saw exactly this request."""

    method: str
    target: str
    body: bytes = b""
    version: str = "HTTP/1.1"

    def echo(self) -> str:
        digest = hashlib.sha256(self.body).hexdigest()[:16]
        return f"{self.method} {self.target} {len(self.body)} {digest} {self.version}"


Expected = Union[int, Seen]


@dataclass(frozen=True)
class Vector:
    id: str
    data: bytes
    expect: Tuple[Expected, ...]
    end: str  # "open" or "closed"
    why: str = ""  # the rule (RFC section) the expectation comes from
    xfail: Optional[str] = None  # every delivery fails: a known bug outside http1.c
    xfail_bytes: Optional[str] = None  # only the byte-by-byte delivery fails (known bug)
    # Split points where a read boundary triggers a known, separately reported bug: random
    # pieces never cut there, and the byte-by-byte delivery pauses there so that the boundary
    # really reaches the server as one.
    fragile: Tuple[int, ...] = field(default=())
    continue_ok: bool = False  # an interim 100 Continue may precede the final response


def ok(method: str, target: str, body: bytes = b"", version: str = "HTTP/1.1") -> Seen:
    return Seen(method, target, body, version)


def req(line: str, *fields: Union[str, bytes], host: bool = True, body: bytes = b"") -> bytes:
    """A request: the request-line, Host (unless host=False), the fields, CRLF, the body."""
    parts = [line.encode("latin-1")]
    if host:
        parts.append(HOST_LINE.encode())
    parts.extend(f if isinstance(f, bytes) else f.encode("latin-1") for f in fields)
    return b"\r\n".join(parts) + b"\r\n\r\n" + body


def post(*fields: Union[str, bytes], body: bytes = b"", target: str = "/",
         version: str = "HTTP/1.1", host: bool = True) -> bytes:
    return req(f"POST {target} {version}", *fields, host=host, body=body)


def chunked(*chunks: bytes, trailer: bytes = b"") -> bytes:
    """A well-formed chunked body of the given chunks, then the last chunk and the trailers."""
    out = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks)
    return out + b"0\r\n" + trailer + b"\r\n"


def te(body: bytes, *fields: Union[str, bytes], value: str = "chunked") -> bytes:
    """A chunked POST with raw body bytes (which may be malformed on purpose)."""
    return post(f"Transfer-Encoding: {value}", *fields, body=body)


TE_FIELD = "Transfer-Encoding: chunked"
SMUGGLE = b"GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"  # must never be answered when hidden
GET = req("GET / HTTP/1.1")
HELLO = b"hello"
BINARY = bytes(range(256))  # every byte value, CR, LF and NUL included

VECTORS: List[Vector] = []


def V(id: str, data: bytes, *expect: Expected, end: Optional[str] = None, why: str = "",
      **kw) -> None:
    if end is None:
        last = expect[-1]
        end = "closed" if isinstance(last, int) and last >= 400 else "open"
    VECTORS.append(Vector(id, data, tuple(expect), end, why, **kw))


# =================================================================================================
# Request line (RFC 9112 3)
# =================================================================================================
V("rl-get-root", GET, ok("GET", "/"))
V("rl-get-path-query", req("GET /a/b?x=1&y=%20z&&k HTTP/1.1"), ok("GET", "/a/b?x=1&y=%20z&&k"))
V("rl-head", req("HEAD /h HTTP/1.1"), ok("HEAD", "/h"), why="RFC 9110 9.3.2: no body in reply")
V("rl-post-no-framing", req("POST / HTTP/1.1"), ok("POST", "/"),
  why="RFC 9112 6.3 item 7: a request without CL or TE has a zero-length body")
V("rl-put", req("PUT /r HTTP/1.1", "Content-Length: 5", body=HELLO), ok("PUT", "/r", HELLO))
V("rl-delete", req("DELETE /r HTTP/1.1"), ok("DELETE", "/r"))
V("rl-patch", req("PATCH /r HTTP/1.1", "Content-Length: 2", body=b"{}"), ok("PATCH", "/r", b"{}"))
V("rl-options-path", req("OPTIONS /r HTTP/1.1"), ok("OPTIONS", "/r"))
V("rl-trace", req("TRACE / HTTP/1.1"), ok("TRACE", "/"))
V("rl-method-extension", req("BREW /pot HTTP/1.1"), ok("BREW", "/pot"),
  why="RFC 9110 9.1: any token is a method")
V("rl-method-lowercase", req("get / HTTP/1.1"), ok("get", "/"),
  why="RFC 9110 9.1: methods are case-sensitive; 'get' is just another token")
V("rl-method-all-tchars", req("!#$%&'*+-.^_`|~09azAZ / HTTP/1.1"),
  ok("!#$%&'*+-.^_`|~09azAZ", "/"), why="RFC 9110 5.6.2 tchar")
V("rl-method-long", req("M" * 300 + " / HTTP/1.1"), ok("M" * 300, "/"))
V("rl-method-over-head-limit", req("M" * 8200 + " / HTTP/1.1"), 414,
  why="the request-line alone is longer than max_headers_len; http1.h answers 414 for a head "
      "that ends inside its request-line (any 4xx would be acceptable)")
V("rl-method-empty", b" / HTTP/1.1\r\nHost: t\r\n\r\n", 400, why="RFC 9112 3: method = token")
V("rl-method-slash", req("GE/T / HTTP/1.1"), 400, why="RFC 9110 5.6.2: '/' is not a tchar")
V("rl-method-colon", req("GET: / HTTP/1.1"), 400)
V("rl-method-non-ascii", req("G\xc9T / HTTP/1.1"), 400)
V("rl-method-nul", b"GE\x00T / HTTP/1.1\r\nHost: t\r\n\r\n", 400)
V("rl-two-spaces-after-method", req("GET  / HTTP/1.1"), 400,
  why="RFC 9112 3: exactly one SP; a recipient MAY accept other whitespace, we do not")
V("rl-two-spaces-before-version", req("GET /  HTTP/1.1"), 400)
V("rl-tab-after-method", req("GET\t/ HTTP/1.1"), 400)
V("rl-tab-before-version", req("GET /\tHTTP/1.1"), 400)
V("rl-trailing-space", req("GET / HTTP/1.1 "), 400)
V("rl-leading-space", req(" GET / HTTP/1.1"), 400)
V("rl-no-target", req("GET HTTP/1.1"), 400)
V("rl-space-in-target", req("GET /a b HTTP/1.1"), 400)
V("rl-target-ctl", b"GET /a\x01b HTTP/1.1\r\nHost: t\r\n\r\n", 400)
V("rl-target-nul", b"GET /a\x00b HTTP/1.1\r\nHost: t\r\n\r\n", 400)
V("rl-target-del", b"GET /a\x7fb HTTP/1.1\r\nHost: t\r\n\r\n", 400)
V("rl-target-non-ascii", req("GET /\xe9 HTTP/1.1"), 400, why="RFC 3986: non-ASCII must be %-encoded")
V("rl-target-relative", req("GET foo HTTP/1.1"), 400, why="RFC 9112 3.2: not one of the four forms")
V("rl-target-fragment", req("GET /a#b HTTP/1.1"), 400,
  why="RFC 9112 3.2: a request-target carries no fragment (it used to reach path_params)")
V("rl-target-nul-escape", req("GET /a%00b HTTP/1.1"), 400,
  why="a %00 in the path would reach handlers as a NUL")
V("rl-target-bad-percent", req("GET /%zz HTTP/1.1"), ok("GET", "/%zz"),
  why="lenient by choice: the raw target reaches the handler, which decides")
V("rl-target-dot-segments", req("GET /a/../b/./c HTTP/1.1"), ok("GET", "/a/../b/./c"))
V("rl-target-double-slash", req("GET //x HTTP/1.1"), ok("GET", "//x"))
V("rl-target-empty-query", req("GET /? HTTP/1.1"), ok("GET", "/?"))
V("rl-absolute-form", req("GET http://example.com/p?q=1 HTTP/1.1"),
  ok("GET", "http://example.com/p?q=1"), why="RFC 9112 3.2.2: servers MUST accept absolute-form")
V("rl-absolute-form-uppercase-scheme", req("GET HTTP://EXAMPLE.COM/P HTTP/1.1"),
  ok("GET", "HTTP://EXAMPLE.COM/P"), why="RFC 3986 3.1: schemes are case-insensitive")
V("rl-absolute-form-https", req("GET https://example.com:8443/x HTTP/1.1"),
  ok("GET", "https://example.com:8443/x"))
V("rl-absolute-form-no-path", req("GET http://example.com HTTP/1.1"), ok("GET", "http://example.com"))
V("rl-absolute-form-host-differs", req("GET http://example.com/ HTTP/1.1", "Host: other.example",
                                       host=False),
  ok("GET", "http://example.com/"),
  why="RFC 9112 3.2.2: the server MUST ignore Host and use the target's authority")
V("rl-absolute-form-without-host", req("GET http://example.com/ HTTP/1.1", host=False), 400,
  why="RFC 9112 3.2: an HTTP/1.1 request without Host MUST get 400, whatever the form")
V("rl-absolute-form-ftp", req("GET ftp://example.com/ HTTP/1.1"), 400)
V("rl-absolute-form-one-slash", req("GET http:/example.com/ HTTP/1.1"), 400)
V("rl-absolute-form-empty-host", req("GET http:///p HTTP/1.1"), 400,
  why="RFC 9110 4.2.1: an http URI with an empty host MUST be rejected as invalid")
V("rl-absolute-form-userinfo", req("GET http://user:pw@example.com/p HTTP/1.1"), 400,
  why="RFC 9110 4.2.4: SHOULD treat userinfo in an http URI as an error (phishing); "
      "RFC 9112 3.2.2 absolute-form has no userinfo")
V("rl-asterisk-options", req("OPTIONS * HTTP/1.1"), ok("OPTIONS", "*"), why="RFC 9112 3.2.4")
V("rl-asterisk-get", req("GET * HTTP/1.1"), 400,
  why="RFC 9112 3.2.4: asterisk-form is only for OPTIONS; an invalid request-line SHOULD get "
      "400 (RFC 9112 3)")
V("rl-connect-authority-form", req("CONNECT example.com:443 HTTP/1.1", "Host: example.com:443",
                                   host=False), 400,
  why="RFC 9110 9.3.6: this server is no proxy; a clean 400, never a tunnel or a hang")
V("rl-authority-form-get", req("GET example.com:80 HTTP/1.1"), 400,
  why="RFC 9112 3.2.3: authority-form is only for CONNECT")

# --- HTTP-version (RFC 9112 2.3, RFC 9110 6.2) ---
V("ver-1.0", req("GET / HTTP/1.0", host=False), ok("GET", "/", version="HTTP/1.0"),
  end="closed", why="RFC 9112 9.3: HTTP/1.0 persists only with keep-alive; no Host needed")
V("ver-1.0-keep-alive", req("GET / HTTP/1.0", "Connection: keep-alive", host=False),
  ok("GET", "/", version="HTTP/1.0"), why="RFC 9112 9.3 / RFC 2068 19.7.1")
V("ver-1.0-keep-alive-case", req("GET / HTTP/1.0", "connection: Keep-Alive", host=False),
  ok("GET", "/", version="HTTP/1.0"), why="RFC 9110 7.6.1: connection options are case-insensitive")
V("ver-1.0-keep-alive-and-close", req("GET / HTTP/1.0", "Connection: keep-alive, close"),
  ok("GET", "/", version="HTTP/1.0"), end="closed", why="RFC 9112 9.3: close wins")
V("ver-1.0-body", req("POST / HTTP/1.0", "Content-Length: 5", "Connection: keep-alive",
                      host=False, body=HELLO), ok("POST", "/", HELLO, version="HTTP/1.0"))
V("ver-1.0-two-hosts", req("GET / HTTP/1.0", "Host: t"), 400,
  why="RFC 9112 3.2: more than one Host MUST get 400 on any version")
V("ver-1.2", req("GET / HTTP/1.2"), 505,
  why="RFC 9110 15.6.6; we only speak 1.0 and 1.1 (6.2 would allow answering 1.2 as 1.1)")
V("ver-2.0", req("GET / HTTP/2.0"), 505)
V("ver-0.9", req("GET / HTTP/0.9"), 505)
V("ver-9.9", req("GET / HTTP/9.9"), 505)
V("ver-h2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505,
  why="an HTTP/2 prior-knowledge preface is a well-formed request-line of version 2.0")
V("ver-lowercase", req("GET / http/1.1"), 400, why="RFC 9112 2.3: HTTP-name is case-sensitive")
V("ver-no-minor", req("GET / HTTP/1"), 400)
V("ver-two-digit-minor", req("GET / HTTP/1.10"), 400, why="RFC 9112 2.3: DIGIT '.' DIGIT")
V("ver-two-digit-major", req("GET / HTTP/11.1"), 400)
V("ver-three-parts", req("GET / HTTP/1.1.1"), 400)
V("ver-letter-minor", req("GET / HTTP/1.x"), 400)
V("ver-https-name", req("GET / HTTPS/1.1"), 400)
V("ver-space-before-slash", req("GET / HTTP /1.1"), 400)
V("ver-missing", b"GET /\r\nHost: t\r\n\r\n", 400,
  why="HTTP/0.9 simple requests are not supported (RFC 9112 2.3 / appendix C.1)")
V("ver-cr-cr-lf", b"GET / HTTP/1.1\r\r\nHost: t\r\n\r\n", 400, why="RFC 9112 2.2: bare CR")
V("ver-bare-lf", b"GET / HTTP/1.1\nHost: t\r\n\r\n", 400,
  why="RFC 9112 2.2: recognising bare LF is a MAY; the server is strict")
V("ver-bare-cr", b"GET / HTTP/1.1\rHost: t\r\n\r\n", 400)

# --- empty lines before the request-line (RFC 9112 2.2) ---
_LEADING_CRLF_BUG = ("conn.c parse_head() skips a leading CRLF only when both bytes are "
                     "buffered: a lone '\\r' read first is parsed as a request-line (400)")
V("empty-line-before", b"\r\n" + GET, ok("GET", "/"), fragile=(1,),
  why="RFC 9112 2.2: SHOULD ignore at least one empty line before a request-line")
V("two-empty-lines-before", b"\r\n\r\n" + GET, ok("GET", "/"), fragile=(1, 3))
# Only bytes 0..5 matter here; cuts at 2 or 4 make it accepted (see test_three_empty_lines_split).
V("three-empty-lines-before", b"\r\n\r\n\r\n" + GET, 400, fragile=(1, 2, 3, 4, 5),
  why="documented limit: up to two empty lines are ignored")
V("bare-lf-empty-line-before", b"\n" + GET, 400)
V("space-line-before", b" \r\n" + GET, 400)
V("empty-line-after-request", GET + b"\r\n", ok("GET", "/"), fragile=(len(GET) + 1,),
  why="a CRLF after a request is an empty line before the next request-line (RFC 9112 2.2)")

# =================================================================================================
# Host (RFC 9112 3.2, RFC 9110 7.2)
# =================================================================================================
V("host-missing", req("GET / HTTP/1.1", host=False), 400, why="RFC 9112 3.2: MUST 400")
V("host-twice-same", req("GET / HTTP/1.1", "Host: t"), 400, why="RFC 9112 3.2: MUST 400")
V("host-twice-different", req("GET / HTTP/1.1", "Host: evil"), 400)
V("host-twice-case-variants", req("GET / HTTP/1.1", "host: t"), 400)
V("host-name-lowercase", req("GET / HTTP/1.1", "host: t", host=False), ok("GET", "/"),
  why="RFC 9110 5.1: field names are case-insensitive")
V("host-name-uppercase", req("GET / HTTP/1.1", "HOST: t", host=False), ok("GET", "/"))
V("host-with-port", req("GET / HTTP/1.1", "Host: t:8080", host=False), ok("GET", "/"))
V("host-ipv6", req("GET / HTTP/1.1", "Host: [::1]:8080", host=False), ok("GET", "/"))
V("host-empty", req("GET / HTTP/1.1", "Host:", host=False), ok("GET", "/"),
  why="RFC 9112 3.2: an empty Host is what a client sends when the authority is undefined")
V("host-trailing-ows", req("GET / HTTP/1.1", "Host: t \t", host=False), ok("GET", "/"))
V("host-sub-delims", req("GET / HTTP/1.1", "Host: a,b", host=False), ok("GET", "/"),
  why="RFC 3986 3.2.2: reg-name may hold sub-delims, ',' included")
V("host-space-inside", req("GET / HTTP/1.1", "Host: a b", host=False), 400,
  why="RFC 9112 3.2: an invalid Host value MUST get 400")
V("host-slash", req("GET / HTTP/1.1", "Host: a/b", host=False), 400)
V("host-at", req("GET / HTTP/1.1", "Host: user@evil", host=False), 400)
V("host-obs-text", req("GET / HTTP/1.1", "Host: \xe9", host=False), 400)
V("host-nul", b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n", 400)

# =================================================================================================
# Field syntax (RFC 9112 5, RFC 9110 5.5)
# =================================================================================================
V("hdr-no-ows", req("GET / HTTP/1.1", "X-A:b"), ok("GET", "/"))
V("hdr-ows-tabs", req("GET / HTTP/1.1", "X-A:\t b \t"), ok("GET", "/"),
  why="RFC 9112 5.1: OWS around the value is not part of it")
V("hdr-empty-value", req("GET / HTTP/1.1", "X-A:"), ok("GET", "/"))
V("hdr-obs-text-value", req("GET / HTTP/1.1", "X-A: caf\xe9"), ok("GET", "/"),
  why="RFC 9110 5.5: obs-text is allowed in a field value")
V("hdr-htab-inside-value", req("GET / HTTP/1.1", "X-A: a\tb"), ok("GET", "/"))
V("hdr-name-all-tchars", req("GET / HTTP/1.1", "!#$%&'*+-.^_`|~09azAZ: v"), ok("GET", "/"))
V("hdr-repeated-custom", req("GET / HTTP/1.1", "X-A: 1", "X-A: 2", "x-a: 3"), ok("GET", "/"))
V("hdr-long-name", req("GET / HTTP/1.1", "X" * 2000 + ": v"), ok("GET", "/"))
V("hdr-long-value", req("GET / HTTP/1.1", "X-A: " + "v" * 7000), ok("GET", "/"))
V("hdr-space-before-colon", req("GET / HTTP/1.1", "X-A : b"), 400,
  why="RFC 9112 5.1: whitespace between name and colon MUST get 400")
V("hdr-tab-before-colon", req("GET / HTTP/1.1", "X-A\t: b"), 400)
V("hdr-space-in-name", req("GET / HTTP/1.1", "X A: b"), 400)
V("hdr-name-paren", req("GET / HTTP/1.1", "X(A): b"), 400, why="RFC 9110 5.1: name is a token")
V("hdr-name-slash", req("GET / HTTP/1.1", "X/A: b"), 400)
V("hdr-name-at", req("GET / HTTP/1.1", "X@A: b"), 400)
V("hdr-name-non-ascii", req("GET / HTTP/1.1", "X-\xe9: b"), 400)
V("hdr-name-nul", b"GET / HTTP/1.1\r\nHost: t\r\nX-\x00A: b\r\n\r\n", 400)
V("hdr-empty-name", req("GET / HTTP/1.1", ": b"), 400)
V("hdr-no-colon", req("GET / HTTP/1.1", "JustAName"), 400)
V("hdr-colon-only", req("GET / HTTP/1.1", ":"), 400)
V("hdr-obs-fold-space", req("GET / HTTP/1.1", "X-A: b", " c"), 400,
  why="RFC 9112 5.2: a server MAY reject obs-fold with 400; we do")
V("hdr-obs-fold-tab", req("GET / HTTP/1.1", "X-A: b", "\tc"), 400)
V("hdr-obs-fold-empty-first-line", req("GET / HTTP/1.1", "X-A:", " b"), 400)
V("hdr-first-field-indented", b"GET / HTTP/1.1\r\n Host: t\r\n\r\n", 400,
  why="RFC 9112 2.2: whitespace before the first field line MUST be rejected or consumed")
V("hdr-nul-in-value", b"GET / HTTP/1.1\r\nHost: t\r\nX-A: b\x00c\r\n\r\n", 400,
  why="RFC 9110 5.5: NUL MUST be rejected or replaced")
V("hdr-ctl-01-in-value", req("GET / HTTP/1.1", "X-A: \x01"), 400)
V("hdr-esc-in-value", req("GET / HTTP/1.1", "X-A: a\x1b[31m"), 400)
V("hdr-del-in-value", req("GET / HTTP/1.1", "X-A: a\x7f"), 400)
V("hdr-vt-in-value", req("GET / HTTP/1.1", "X-A: a\x0bb"), 400)
V("hdr-ff-in-value", req("GET / HTTP/1.1", "X-A: a\x0cb"), 400)
V("hdr-bare-cr-in-value", req("GET / HTTP/1.1", "X-A: b\rc"), 400,
  why="RFC 9112 2.2: a bare CR MUST be rejected or replaced with SP")
V("hdr-bare-lf-in-value", req("GET / HTTP/1.1", "X-A: b\nc"), 400)
V("hdr-bare-lf-line-end", b"GET / HTTP/1.1\r\nHost: t\nX-A: b\r\n\r\n", 400,
  why="RFC 9112 2.2: bare LF is a MAY; strict")
V("hdr-bare-lf-head-end", b"GET / HTTP/1.1\r\nHost: t\r\n\n", 400)
V("hdr-all-bare-lf", b"GET / HTTP/1.1\nHost: t\n\n", 400)
V("hdr-cr-cr-lf", b"GET / HTTP/1.1\r\nHost: t\r\r\n\r\n", 400)
V("hdr-bare-cr-head-end", b"GET / HTTP/1.1\r\nHost: t\r\n\rX", 400)
V("hdr-lf-cr-head-end", b"GET / HTTP/1.1\r\nHost: t\n\r\n", 400)

# --- sizes (RFC 9110 15.5.15, 15.5.19; RFC 6585 5) ---
_fill_8192 = "X-Fill: " + "f" * (8192 - len(GET) - len("X-Fill: \r\n"))
V("size-head-exactly-8192", req("GET / HTTP/1.1", _fill_8192), ok("GET", "/"))
V("size-head-8193", req("GET / HTTP/1.1", _fill_8192 + "f"), 431)
V("size-value-9000", req("GET / HTTP/1.1", "X-Big: " + "v" * 9000), 431)
V("size-head-unterminated", b"GET / HTTP/1.1\r\nHost: t\r\nX-Endless: " + b"e" * 9000, 431,
  why="a head that cannot end within the limit is refused, not buffered")
V("size-bad-byte-past-limit", req("GET / HTTP/1.1", "X-Big: " + "v" * 9000 + "\x00"), 431,
  why="bytes past max_headers_len are never looked at: 431 however the bytes arrive")
V("size-bad-byte-within-limit", req("GET / HTTP/1.1", "X-A: \x00", "X-Big: " + "v" * 9000), 400)
V("size-100-fields", req("GET / HTTP/1.1", *[f"X-{i}: v" for i in range(99)]), ok("GET", "/"))
V("size-101-fields", req("GET / HTTP/1.1", *[f"X-{i}: v" for i in range(100)]), 431)
_target_8128 = "/" + "a" * 8127
V("size-target-8128", req(f"GET {_target_8128} HTTP/1.1"), ok("GET", _target_8128),
  why="max_target_len = max_headers_len - 64")
V("size-target-8129", req(f"GET {_target_8128}a HTTP/1.1"), 414, why="RFC 9110 15.5.15")
V("size-target-9000-then-bad-byte", req("GET /" + "a" * 9000 + "\x01 HTTP/1.1"), 414,
  why="414 is certain before the bad byte arrives")
V("size-target-unterminated", b"GET /" + b"c" * 9000, 414)

# =================================================================================================
# Content-Length (RFC 9110 8.6, RFC 9112 6.3)
# =================================================================================================
V("cl-basic", post("Content-Length: 5", body=HELLO), ok("POST", "/", HELLO))
V("cl-zero", post("Content-Length: 0"), ok("POST", "/"))
V("cl-leading-zeros", post("Content-Length: 005", body=HELLO), ok("POST", "/", HELLO),
  why="RFC 9110 8.6: Content-Length = 1*DIGIT")
V("cl-ows", post("Content-Length:   5  ", body=HELLO), ok("POST", "/", HELLO))
V("cl-tabs", post("Content-Length:\t5\t", body=HELLO), ok("POST", "/", HELLO))
V("cl-name-lowercase", post("content-length: 5", body=HELLO), ok("POST", "/", HELLO))
V("cl-on-get", req("GET / HTTP/1.1", "Content-Length: 5", body=HELLO), ok("GET", "/", HELLO),
  why="RFC 9110 9.3.1: a GET body has no semantics but is framed like any other")
V("cl-binary-body", post(f"Content-Length: {len(BINARY)}", body=BINARY), ok("POST", "/", BINARY))
V("cl-body-hides-request", post(f"Content-Length: {len(SMUGGLE)}", body=SMUGGLE),
  ok("POST", "/", SMUGGLE), why="body bytes are never parsed as a request")
V("cl-exactly-limit", post("Content-Length: 1024", body=b"b" * 1024), ok("POST", "/", b"b" * 1024))
V("cl-over-limit", post("Content-Length: 1025", body=b"b" * 1025), 413, why="RFC 9110 15.5.14")
V("cl-int64-max", post("Content-Length: 9223372036854775807"), 413)
V("cl-overflow-int64", post("Content-Length: 9223372036854775808", body=HELLO), 400)
V("cl-overflow-20-digits", post("Content-Length: 99999999999999999999", body=HELLO), 400)
V("cl-shorter-than-sent", post("Content-Length: 3", body=b"abcdef\r\n"),
  ok("POST", "/", b"abc"), 400,
  why="the extra bytes start the next request ('def' CRLF is a bad request-line)")
V("cl-plus", post("Content-Length: +5", body=HELLO), 400, why="RFC 9110 8.6: 1*DIGIT only")
V("cl-minus", post("Content-Length: -5", body=HELLO), 400)
V("cl-minus-zero", post("Content-Length: -0"), 400)
V("cl-hex", post("Content-Length: 0x5", body=HELLO), 400)
V("cl-decimal-point", post("Content-Length: 5.0", body=HELLO), 400)
V("cl-exponent", post("Content-Length: 5e0", body=HELLO), 400)
V("cl-empty", post("Content-Length:", body=HELLO), 400)
V("cl-space-inside", post("Content-Length: 5 5", body=HELLO), 400)
V("cl-letters", post("Content-Length: five", body=HELLO), 400)
V("cl-comma-same", post("Content-Length: 5, 5", body=HELLO), 400,
  why="choice: RFC 9110 8.6 MAY accept identical comma-joined values; rejected (9112 6.3 #5)")
V("cl-comma-different", post("Content-Length: 5, 6", body=HELLO + b"!"), 400)
V("cl-trailing-comma", post("Content-Length: 5,", body=HELLO), 400)
V("cl-repeated-same", post("Content-Length: 5", "Content-Length: 5", body=HELLO), 400,
  why="choice, as cl-comma-same")
V("cl-repeated-different", post("Content-Length: 5", "Content-Length: 6", body=HELLO + b"!"), 400,
  why="RFC 9112 6.3 item 5: differing values are an unrecoverable framing error")
V("cl-repeated-zero-then-body", post("Content-Length: 0", "Content-Length: 41",
                                     body=b"x" * 41), 400)
V("cl-space-before-colon", post("Content-Length : 5", body=HELLO), 400)
V("cl-nul", b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\x00\r\n\r\nhello", 400)
V("cl-obs-fold", post("Content-Length:", " 5", body=HELLO), 400)
V("cl-underscore-name", post("Content_Length: 3", body=b"x\r\n"), ok("POST", "/"), 400,
  why="Content_Length is some other field: no body, so 'x' CRLF is the next (bad) request")

# =================================================================================================
# Transfer-Encoding (RFC 9112 6.1, 6.3, 7) and TE.TE obfuscations
# =================================================================================================
_BODY = chunked(b"hel", b"lo")
V("te-chunked", te(_BODY), ok("POST", "/", HELLO))
V("te-chunked-capitalized", te(_BODY, value="Chunked"), ok("POST", "/", HELLO),
  why="RFC 9112 7: transfer-coding names are case-insensitive")
V("te-chunked-uppercase", te(_BODY, value="CHUNKED"), ok("POST", "/", HELLO))
V("te-name-lowercase", post("transfer-encoding: chunked", body=_BODY), ok("POST", "/", HELLO))
V("te-name-mixed-case", post("TRANSFER-encoding: chunked", body=_BODY), ok("POST", "/", HELLO))
V("te-leading-spaces", te(_BODY, value="   chunked"), ok("POST", "/", HELLO),
  why="RFC 9112 5.1: OWS before the value is not part of it")
V("te-trailing-spaces", te(_BODY, value="chunked   "), ok("POST", "/", HELLO))
V("te-tab-before-value", post("Transfer-Encoding:\tchunked", body=_BODY), ok("POST", "/", HELLO))
V("te-tab-after-value", post("Transfer-Encoding: chunked\t", body=_BODY), ok("POST", "/", HELLO))
V("te-empty-element-after", te(_BODY, value="chunked,"), ok("POST", "/", HELLO),
  why="RFC 9110 5.6.1: a recipient MUST accept and ignore empty list elements")
V("te-empty-element-before", te(_BODY, value=", chunked"), ok("POST", "/", HELLO))
V("te-on-get", req("GET / HTTP/1.1", TE_FIELD, body=_BODY), ok("GET", "/", HELLO))
V("te-chunked-identity", te(_BODY, value="chunked, identity"), 400,
  why="RFC 9112 6.3 item 4: chunked not final in a request MUST get 400")
V("te-identity-chunked", te(_BODY, value="identity, chunked"), 501,
  why="RFC 9112 6.1: an unknown coding SHOULD get 501 ('identity' is no longer registered)")
V("te-identity", te(_BODY, value="identity"), 400)
V("te-gzip", te(_BODY, value="gzip"), 400)
V("te-gzip-chunked", te(_BODY, value="gzip, chunked"), 501)
V("te-x-chunked", te(_BODY, value="x-chunked"), 400)
V("te-xchunked", te(_BODY, value="xchunked"), 400)
V("te-chunk", te(_BODY, value="chunk"), 400)
V("te-chunked-suffix", te(_BODY, value="chunkedx"), 400)
V("te-quoted", te(_BODY, value='"chunked"'), 400)
V("te-chunked-param", te(_BODY, value="chunked;q=1"), 400,
  why="RFC 9112 7: chunked has no parameters")
V("te-chunked-semicolon", te(_BODY, value="chunked;"), 400)
V("te-chunked-twice", te(_BODY, value="chunked, chunked"), 400,
  why="RFC 9112 6.1: a sender MUST NOT apply chunked more than once")
V("te-two-fields-chunked", post(TE_FIELD, TE_FIELD, body=_BODY), 400)
V("te-two-fields-chunked-identity", post(TE_FIELD, "Transfer-Encoding: identity", body=_BODY), 400,
  why="RFC 9110 5.3: repeated fields form one list; chunked is then not last")
V("te-two-fields-gzip-chunked", post("Transfer-Encoding: gzip", TE_FIELD, body=_BODY), 501)
V("te-empty-value", te(_BODY, value=""), 400)
V("te-comma-only", te(_BODY, value=","), 400)
V("te-space-inside-coding", te(_BODY, value="chun ked"), 400)
V("te-obs-text-after", te(_BODY, value="chunked\xe9"), 400)
V("te-space-before-colon", post("Transfer-Encoding : chunked", body=_BODY), 400,
  why="RFC 9112 5.1: MUST 400 (the classic TE.TE obfuscation)")
V("te-tab-before-colon", post("Transfer-Encoding\t: chunked", body=_BODY), 400)
V("te-obs-fold", post("Transfer-Encoding:", " chunked", body=_BODY), 400)
V("te-obs-fold-second-coding", post("Transfer-Encoding: identity", " chunked", body=_BODY), 400)
V("te-vt-before-value", post("Transfer-Encoding:\x0bchunked", body=_BODY), 400)
V("te-ff-before-value", post("Transfer-Encoding:\x0cchunked", body=_BODY), 400)
V("te-nul-after-value", post(b"Transfer-Encoding: chunked\x00", body=_BODY), 400)
V("te-bare-cr-before-value", post("Transfer-Encoding:\rchunked", body=_BODY), 400)
V("te-name-underscore", post("Transfer_Encoding: chunked", body=b"x\r\n"), ok("POST", "/"), 400,
  why="Transfer_Encoding is some other field: no body; 'x' CRLF is the next (bad) request")
V("te-field-TE-is-not-framing", req("GET / HTTP/1.1", "TE: chunked"), ok("GET", "/"),
  why="RFC 9110 10.1.4: TE says what the client accepts; it does not frame the request")
V("te-and-cl", post(TE_FIELD, "Content-Length: 5", body=_BODY), 400,
  why="RFC 9112 6.1: a server MAY reject TE with CL; 6.3 item 3: close after")
V("cl-and-te", post("Content-Length: 5", TE_FIELD, body=_BODY), 400)
V("cl-zero-and-te", post("Content-Length: 0", TE_FIELD, body=_BODY), 400)
V("cl-te-smuggle", post("Content-Length: 6", TE_FIELD, body=b"0\r\n\r\nG") + SMUGGLE, 400,
  why="CL.TE: the front end counts 6 bytes, the back end sees chunked")
V("te-cl-smuggle", post("Content-Length: 4", TE_FIELD,
                        body=b"%x\r\n" % len(SMUGGLE) + SMUGGLE + b"\r\n0\r\n\r\n"), 400,
  why="TE.CL: the front end decodes chunked, the back end counts 4 bytes")
V("te-obfuscated-and-cl", post("Content-Length: 5", "Transfer-Encoding: xchunked", body=HELLO),
  400, why="TE.TE: any TE with CL is refused, recognised coding or not")
V("te-http10", post(TE_FIELD, version="HTTP/1.0", host=False, body=_BODY), 400,
  why="RFC 9112 6.1: TE in HTTP/1.0 MUST be treated as faulty framing")
V("te-http10-with-cl", post("Content-Length: 5", TE_FIELD, version="HTTP/1.0", host=False,
                            body=_BODY), 400)

# =================================================================================================
# Chunked framing (RFC 9112 7.1)
# =================================================================================================
V("ch-single", te(chunked(HELLO)), ok("POST", "/", HELLO))
V("ch-empty-body", te(b"0\r\n\r\n"), ok("POST", "/"))
V("ch-many-small", te(chunked(*[bytes([c]) for c in b"abcdefghij"])), ok("POST", "/", b"abcdefghij"))
V("ch-leading-zeros", te(b"005\r\nhello\r\n0\r\n\r\n"), ok("POST", "/", HELLO),
  why="RFC 9112 7.1: chunk-size = 1*HEXDIG")
V("ch-many-leading-zeros", te(b"0" * 40 + b"5\r\nhello\r\n0\r\n\r\n"), ok("POST", "/", HELLO))
V("ch-last-chunk-zeros", te(b"5\r\nhello\r\n0000\r\n\r\n"), ok("POST", "/", HELLO),
  why="RFC 9112 7.1: last-chunk = 1*('0')")
V("ch-uppercase-hex", te(b"A\r\n0123456789\r\n0\r\n\r\n"), ok("POST", "/", b"0123456789"))
V("ch-lowercase-hex", te(b"a\r\n0123456789\r\n0\r\n\r\n"), ok("POST", "/", b"0123456789"))
V("ch-mixed-case-hex", te(b"1aB\r\n" + b"z" * 0x1ab + b"\r\n0\r\n\r\n"),
  ok("POST", "/", b"z" * 0x1ab))
V("ch-binary-data", te(chunked(BINARY, b"\r\n0\r\n\r\n")), ok("POST", "/", BINARY + b"\r\n0\r\n\r\n"),
  why="chunk data is opaque: CR, LF, NUL and a fake last-chunk inside are just data")
V("ch-data-hides-request", te(chunked(b"0\r\n\r\n" + SMUGGLE)), ok("POST", "/", b"0\r\n\r\n" + SMUGGLE))
V("ch-exactly-limit", te(chunked(b"c" * 1000, b"c" * 24)), ok("POST", "/", b"c" * 1024))
V("ch-over-limit", te(chunked(b"c" * 1000, b"c" * 25)), 413)
V("ch-size-int64-max", te(b"7fffffffffffffff\r\n" + b"d" * 1100), 413,
  why="a size within int64 is parsed; the body limit stops it")
V("ch-ext-name", te(b"5;foo\r\nhello\r\n0\r\n\r\n"), ok("POST", "/", HELLO),
  why="RFC 9112 7.1.1: extensions are ignored")
V("ch-ext-token-value", te(b"5;foo=bar\r\nhello\r\n0\r\n\r\n"), ok("POST", "/", HELLO))
V("ch-ext-quoted-value", te(b'5;foo="bar; baz=1"\r\nhello\r\n0\r\n\r\n'), ok("POST", "/", HELLO))
V("ch-ext-quoted-escape", te(b'5;foo="a\\"b\\\\"\r\nhello\r\n0\r\n\r\n'), ok("POST", "/", HELLO),
  why="RFC 9110 5.6.4 quoted-pair")
V("ch-ext-several", te(b"5;a=1;b;c=\"x\"\r\nhello\r\n0\r\n\r\n"), ok("POST", "/", HELLO))
V("ch-ext-bws", te(b"5 ;\ta = 1 ; b\r\nhello\r\n0\r\n\r\n"), ok("POST", "/", HELLO),
  why="RFC 9112 7.1.1: BWS around ';' and '='")
V("ch-ext-on-last-chunk", te(b"5\r\nhello\r\n0;final=yes\r\n\r\n"), ok("POST", "/", HELLO))
V("ch-ext-empty-name", te(b"5;\r\nhello\r\n0\r\n\r\n"), 400)
V("ch-ext-no-name", te(b"5;=v\r\nhello\r\n0\r\n\r\n"), 400)
V("ch-ext-empty-value", te(b"5;a=\r\nhello\r\n0\r\n\r\n"), 400)
V("ch-ext-space-in-value", te(b"5;a=b c\r\nhello\r\n0\r\n\r\n"), 400)
V("ch-ext-trailing-space", te(b"5;a=b \r\nhello\r\n0\r\n\r\n"), 400,
  why="RFC 9112 7.1.1: BWS only before ';' or '='")
V("ch-ext-unterminated-quote", te(b'5;a="b\r\nhello\r\n0\r\n\r\n'), 400)
V("ch-ext-crlf-in-quote", te(b'5;a="b\r\n"\r\nhello\r\n0\r\n\r\n'), 400)
V("ch-ext-nul", te(b"5;a\x00\r\nhello\r\n0\r\n\r\n"), 400)
V("ch-ext-bare-lf", te(b"5;a\nhello\r\n0\r\n\r\n"), 400)
V("ch-ext-lf-hides-chunk", te(b"2;a\nxx\r\n5\r\nhello\r\n0\r\n\r\n"), 400,
  why="a parser ending the line at LF would read different chunks: reject")
V("ch-size-trailing-space", te(b"5 \r\nhello\r\n0\r\n\r\n"), 400)
V("ch-size-trailing-tab", te(b"5\t\r\nhello\r\n0\r\n\r\n"), 400)
V("ch-size-leading-space", te(b" 5\r\nhello\r\n0\r\n\r\n"), 400)
V("ch-size-tab-before-ext", te(b"5\t;a\r\nhello\r\n0\r\n\r\n"), ok("POST", "/", HELLO))
V("ch-size-negative", te(b"-5\r\nhello\r\n0\r\n\r\n"), 400)
V("ch-size-plus", te(b"+5\r\nhello\r\n0\r\n\r\n"), 400)
V("ch-size-0x", te(b"0x5\r\nhello\r\n0\r\n\r\n"), 400)
V("ch-size-not-hex", te(b"g\r\nhello\r\n0\r\n\r\n"), 400)
V("ch-size-hex-then-junk", te(b"5g\r\nhello\r\n0\r\n\r\n"), 400)
V("ch-size-underscore", te(b"1_0\r\n" + b"x" * 16 + b"\r\n0\r\n\r\n"), 400)
V("ch-size-empty", te(b"\r\nhello\r\n0\r\n\r\n"), 400)
V("ch-size-2pow63", te(b"8000000000000000\r\nhello\r\n0\r\n\r\n"), 400,
  why="over int64: rejected, never wrapped")
V("ch-size-2pow64-minus-1", te(b"ffffffffffffffff\r\nhello\r\n0\r\n\r\n"), 400)
V("ch-size-2pow64-plus-5", te(b"10000000000000005\r\nhello\r\n0\r\n\r\n"), 400,
  why="would wrap to 5 in 64 bits: the classic overflow smuggle")
V("ch-size-40-hex-digits", te(b"f" * 40 + b"\r\nhello\r\n0\r\n\r\n"), 400)
V("ch-size-line-too-long", te(b"0" * 4100 + b"5\r\nhello\r\n0\r\n\r\n"), 400,
  why="size lines are bounded (4096 bytes)")
V("ch-size-bare-lf", te(b"5\nhello\r\n0\r\n\r\n"), 400)
V("ch-size-bare-cr", te(b"5\rhello\r\n0\r\n\r\n"), 400)
V("ch-size-cr-cr-lf", te(b"5\r\r\nhello\r\n0\r\n\r\n"), 400)
V("ch-data-too-long", te(b"5\r\nhelloXX\r\n0\r\n\r\n"), 400)
V("ch-data-too-short", te(b"5\r\nhell\r\n0\r\n\r\n"), 400)
V("ch-data-lf-only", te(b"5\r\nhello\n0\r\n\r\n"), 400)
V("ch-data-cr-only", te(b"5\r\nhello\r0\r\n\r\n"), 400)
V("ch-data-no-crlf", te(b"5\r\nhello0\r\n\r\n"), 400)
V("ch-bad-after-good-chunks", te(b"3\r\nabc\r\n3\r\ndefXX\r\n0\r\n\r\n"), 400)
V("ch-last-chunk-bare-lf", te(b"5\r\nhello\r\n0\n\r\n"), 400)
V("ch-final-bare-lf", te(b"5\r\nhello\r\n0\r\n\n"), 400)
V("ch-no-final-crlf", te(b"5\r\nhello\r\n0\r\n"), 400,
  why="the next request-line would be read as a trailer field: 'GET /... HTTP/1.1' is not one")
V("ch-crlf-after-body", te(chunked(HELLO)) + b"\r\n", ok("POST", "/", HELLO),
  fragile=(len(te(chunked(HELLO))) + 1,),
  why="an extra CRLF after a body is an empty line before the next request (RFC 9112 2.2)")
# --- trailers (RFC 9112 7.1.2, RFC 9110 6.5) ---
V("ch-trailer", te(chunked(HELLO, trailer=b"X-T: v\r\n")), ok("POST", "/", HELLO))
V("ch-trailers-several", te(chunked(HELLO, trailer=b"X-T: v\r\nX-U:\r\nX-V:\tw \r\n")),
  ok("POST", "/", HELLO))
V("ch-trailer-content-length", te(chunked(HELLO, trailer=b"Content-Length: 50\r\n")),
  ok("POST", "/", HELLO), why="RFC 9110 6.5.1: framing fields in trailers are not framing")
V("ch-trailer-transfer-encoding", te(chunked(HELLO, trailer=b"Transfer-Encoding: chunked\r\n")),
  ok("POST", "/", HELLO))
V("ch-trailer-host", te(chunked(HELLO, trailer=b"Host: evil\r\n")), ok("POST", "/", HELLO))
V("ch-trailer-obs-text", te(chunked(HELLO, trailer=b"X-T: caf\xe9\r\n")), ok("POST", "/", HELLO))
V("ch-trailer-space-before-colon", te(chunked(HELLO, trailer=b"X-T : v\r\n")), 400)
V("ch-trailer-obs-fold", te(chunked(HELLO, trailer=b"X-T: v\r\n w\r\n")), 400)
V("ch-trailer-leading-space", te(chunked(HELLO, trailer=b" X-T: v\r\n")), 400)
V("ch-trailer-no-colon", te(chunked(HELLO, trailer=b"X-T\r\n")), 400)
V("ch-trailer-empty-name", te(chunked(HELLO, trailer=b": v\r\n")), 400)
V("ch-trailer-nul", te(chunked(HELLO, trailer=b"X-T: a\x00b\r\n")), 400)
V("ch-trailer-bare-lf", te(chunked(HELLO, trailer=b"X-T: v\n")), 400)
V("ch-trailer-bare-cr", te(chunked(HELLO, trailer=b"X-T: a\rb\r\n")), 400)
V("ch-trailer-line-too-long", te(chunked(HELLO, trailer=b"X-T: " + b"t" * 4100 + b"\r\n")), 400,
  why="trailer lines are bounded (4096 bytes)")

# =================================================================================================
# Connection persistence (RFC 9112 9), pipelining (9.3.2), Expect (RFC 9110 10.1.1)
# =================================================================================================
V("conn-close", req("GET / HTTP/1.1", "Connection: close"), ok("GET", "/"), end="closed",
  why="RFC 9112 9.6: close after the response; nothing after it is a request")
V("conn-close-uppercase", req("GET / HTTP/1.1", "Connection: CLOSE"), ok("GET", "/"),
  end="closed")
V("conn-close-in-list", req("GET / HTTP/1.1", "Connection: foo, close"), ok("GET", "/"),
  end="closed")
V("conn-close-second-field", req("GET / HTTP/1.1", "Connection: foo", "Connection: close"),
  ok("GET", "/"), end="closed")
V("conn-close-with-body", post("Connection: close", "Content-Length: 5", body=HELLO),
  ok("POST", "/", HELLO), end="closed")
V("conn-keep-alive-1.1", req("GET / HTTP/1.1", "Connection: keep-alive"), ok("GET", "/"))
V("conn-upgrade-ignored", req("GET / HTTP/1.1", "Connection: Upgrade, HTTP2-Settings",
                              "Upgrade: h2c", "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"),
  ok("GET", "/"), why="RFC 9110 7.8: a server MAY ignore Upgrade")
V("pipe-three-gets", req("GET /1 HTTP/1.1") + req("GET /2 HTTP/1.1") + req("GET /3 HTTP/1.1"),
  ok("GET", "/1"), ok("GET", "/2"), ok("GET", "/3"), why="RFC 9112 9.3.2: answered in order")
V("pipe-mixed-framing",
  req("GET /a HTTP/1.1") + post("Content-Length: 5", body=HELLO, target="/b")
  + post(TE_FIELD, body=chunked(b"wor", b"ld"), target="/c") + req("HEAD /d HTTP/1.1")
  + req("DELETE /e HTTP/1.1"),
  ok("GET", "/a"), ok("POST", "/b", HELLO), ok("POST", "/c", b"world"), ok("HEAD", "/d"),
  ok("DELETE", "/e"))
V("pipe-20-requests", b"".join(req(f"GET /{i} HTTP/1.1") for i in range(20)),
  *[ok("GET", f"/{i}") for i in range(20)], why="more than max_pipeline (16) in one send")
V("pipe-bad-third", req("GET /1 HTTP/1.1") + req("GET /2 HTTP/1.1") + req("GET /3 HTTP/1.1",
                                                                          "X : y"),
  ok("GET", "/1"), ok("GET", "/2"), 400)
V("pipe-close-in-middle", req("GET /1 HTTP/1.1") + req("GET /2 HTTP/1.1", "Connection: close")
  + req("GET /3 HTTP/1.1"), ok("GET", "/1"), ok("GET", "/2"), end="closed")
V("pipe-http10-first", req("GET /1 HTTP/1.0", host=False) + req("GET /2 HTTP/1.1"),
  ok("GET", "/1", version="HTTP/1.0"), end="closed")
V("pipe-http10-keep-alive-then-11", req("GET /1 HTTP/1.0", "Connection: keep-alive", host=False)
  + req("GET /2 HTTP/1.1"), ok("GET", "/1", version="HTTP/1.0"), ok("GET", "/2"))
V("pipe-then-505", req("GET /1 HTTP/1.1") + req("GET /2 HTTP/2.0"), ok("GET", "/1"), 505)
V("pipe-then-413", req("GET /1 HTTP/1.1") + post("Content-Length: 2000", body=b"x" * 2000),
  ok("GET", "/1"), 413)
V("pipe-chunked-then-cl", post(TE_FIELD, body=chunked(HELLO)) + post("Content-Length: 3",
                                                                    body=b"abc"),
  ok("POST", "/", HELLO), ok("POST", "/", b"abc"))
V("pipe-body-then-bad", post("Content-Length: 5", body=HELLO) + b"GET / HTTP/1.1\r\nHost: t\n\r\n",
  ok("POST", "/", HELLO), 400)
V("expect-continue-cl", post("Expect: 100-continue", "Content-Length: 5", body=HELLO),
  ok("POST", "/", HELLO), continue_ok=True,
  why="RFC 9110 10.1.1: a 100 may come first (MAY be omitted once body bytes arrived)")
V("expect-continue-chunked", post("Expect: 100-continue", TE_FIELD, body=chunked(HELLO)),
  ok("POST", "/", HELLO), continue_ok=True)
V("expect-continue-mixed-case", post("Expect: 100-Continue", "Content-Length: 5", body=HELLO),
  ok("POST", "/", HELLO), continue_ok=True, why="RFC 9110 10.1.1: case-insensitive")
V("expect-continue-no-body", post("Expect: 100-continue", "Content-Length: 0"), ok("POST", "/"),
  why="nothing to wait for: no 100")
V("expect-continue-http10", post("Expect: 100-continue", "Content-Length: 5",
                                 "Connection: keep-alive", version="HTTP/1.0", host=False,
                                 body=HELLO),
  ok("POST", "/", HELLO, version="HTTP/1.0"),
  why="RFC 9110 10.1.1: 100-continue in an HTTP/1.0 request MUST be ignored: never a 100")
V("expect-unknown", post("Expect: fly", "Content-Length: 5", body=HELLO), 417,
  why="RFC 9110 10.1.1: MAY answer an unknown expectation with 417")
V("expect-continue-and-unknown", post("Expect: 100-continue, fly", "Content-Length: 5",
                                      body=HELLO), 417)
V("expect-empty", req("GET / HTTP/1.1", "Expect:"), ok("GET", "/"))

IDS = [v.id for v in VECTORS]
assert len(set(IDS)) == len(IDS), "duplicate vector ids"
