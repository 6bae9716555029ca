"""Cookies (RFC 6265): reading the ``Cookie`` header, and formatting ``Set-Cookie`` values.

``request.cookies`` gives the cookies a client sent as a dict (parsed with
:func:`parse_cookie_header`); :func:`set_cookie` builds the value of one ``Set-Cookie`` header::

    request.respond(200, [("Set-Cookie", set_cookie("sid", token, max_age=3600, httponly=True,
                                                     secure=True, samesite="Lax"))], "ok")
"""
from __future__ import annotations

import datetime
import email.utils
import re
from typing import Dict, Optional, Union

__all__ = ["parse_cookie_header", "set_cookie"]

# RFC 6265 4.1.1: cookie-name is a token; cookie-octet excludes CTLs, whitespace, DQUOTE, comma,
# semicolon and backslash (a value may also be wrapped in one pair of double quotes).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_OCTETS = re.compile(r'[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*\Z')
_ATTR_VALUE = re.compile(r"[\x20-\x3a\x3c-\x7e]*\Z")  # no CTLs, no ';'
_SAMESITE = {"strict": "Strict", "lax": "Lax", "none": "None"}


def parse_cookie_header(header: str) -> Dict[str, str]:
    """The name/value pairs of a ``Cookie`` header. Pairs that do not follow RFC 6265 (no ``=``,
    a name that is not a token, a value with forbidden bytes) are skipped, never an error; for a
    repeated name the first one wins (RFC 6265 5.4: the most specific path comes first)."""
    out: Dict[str, str] = {}
    for part in header.split(";"):
        name, eq, value = part.strip().partition("=")
        if not eq or not _TOKEN.match(name):
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if not _OCTETS.match(value) or name in out:
            continue
        out[name] = value
    return out


def set_cookie(name: str, value: str = "", *, max_age: Optional[int] = None,
               expires: Optional[Union[datetime.datetime, float]] = None, path: Optional[str] = "/",
               domain: Optional[str] = None, secure: bool = False, httponly: bool = False,
               samesite: Optional[str] = None) -> str:
    """The value of a ``Set-Cookie`` header (RFC 6265 4.1). Raises ValueError for a name that is
    not a token, a value or attribute that would break the header (``;``, CR, LF, ...), or an
    unknown SameSite; ``samesite="None"`` requires ``secure=True`` (browsers drop it otherwise).
    ``expires`` is a timezone-aware datetime or a POSIX timestamp."""
    if not _TOKEN.match(name):
        raise ValueError(f"invalid cookie name {name!r}: it must be an RFC 9110 token")
    if not _OCTETS.match(value):
        raise ValueError(f"invalid cookie value {value!r}: no whitespace, '\"', ',', ';' or '\\\\'"
                         " (encode it, e.g. with base64 or urllib.parse.quote)")
    parts = [f"{name}={value}"]
    if expires is not None:
        if isinstance(expires, datetime.datetime):
            if expires.tzinfo is None:
                raise ValueError("expires must be timezone-aware")
            expires = expires.timestamp()
        parts.append("Expires=" + email.utils.formatdate(float(expires), usegmt=True))
    if max_age is not None:
        parts.append(f"Max-Age={int(max_age)}")
    for attr, v in (("Domain", domain), ("Path", path)):
        if v is not None:
            if not v or not _ATTR_VALUE.match(v):
                raise ValueError(f"invalid cookie {attr} {v!r}")
            parts.append(f"{attr}={v}")
    if secure:
        parts.append("Secure")
    if httponly:
        parts.append("HttpOnly")
    if samesite is not None:
        canon = _SAMESITE.get(samesite.lower())
        if canon is None:
            raise ValueError(f"invalid SameSite {samesite!r}: use 'Strict', 'Lax' or 'None'")
        if canon == "None" and not secure:
            raise ValueError("SameSite=None requires secure=True")
        parts.append(f"SameSite={canon}")
    return "; ".join(parts)
