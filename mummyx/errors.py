"""HTTPError: raise it from a handler to answer with a status; redirect(): a redirect to return.

``raise HTTPError(404, "no such user")`` answers ``404 Not Found`` with the detail as a plain-text
body (and any headers given), logs one line at INFO and no traceback, and goes through the
router's ``error_handler`` first when there is one (as BadRequest does), so an application can
render its errors its own way. ``return redirect("/login")`` answers 307 with ``Location``.
"""
from __future__ import annotations

from typing import Iterable, List, Mapping, Optional, Tuple, Union

from . import _mummyx

__all__ = ["HTTPError", "redirect"]

_Headers = Union[Mapping[str, str], Iterable[Tuple[str, str]]]
_REDIRECTS = (301, 302, 303, 307, 308)


class HTTPError(_mummyx.Error):
    """An HTTP error answer (status 400-599) raised from a handler."""

    def __init__(self, status: int, detail: Optional[str] = None,
                 headers: Optional[_Headers] = None) -> None:
        if not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 599:
            raise ValueError(f"HTTPError status must be an int from 400 to 599, not {status!r}")
        self.status = status
        self.detail = detail
        self.headers: List[Tuple[str, str]] = list(
            headers.items() if isinstance(headers, Mapping) else headers or [])
        reason = _mummyx.status_reason(status)
        super().__init__(f"{status} {reason}" + (f": {detail}" if detail else ""))

    def body(self) -> str:
        """What the default answer sends: the reason phrase, and the detail when given."""
        reason = _mummyx.status_reason(self.status)
        return f"{reason}: {self.detail}" if self.detail else reason


def redirect(url: str, status: int = 307) -> Tuple[str, int, List[Tuple[str, str]]]:
    """A value to return from a handler that redirects to ``url`` (301, 302, 303, 307 or 308;
    307 keeps the method and body, 303 turns the next request into a GET)."""
    if status not in _REDIRECTS:
        raise ValueError(f"redirect status must be one of {_REDIRECTS}, not {status!r}")
    if not url or any(c in url for c in "\r\n\0"):
        raise ValueError(f"invalid redirect URL {url!r}")
    return _mummyx.status_reason(status), status, [("Location", url)]
