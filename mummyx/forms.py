"""HTML forms: ``request.form()`` reads a whole form body into a :class:`FormData`.

``application/x-www-form-urlencoded`` bodies are parsed like query strings; ``multipart/form-data``
bodies go through ``request.multipart()`` (the C parser), with fields decoded as UTF-8 and files
kept in memory as :class:`UploadedFile` objects. Large uploads belong on a ``stream=True`` route
read part by part with ``request.multipart()`` and ``Part.save()``, not here.
"""
from __future__ import annotations

from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple
from urllib.parse import parse_qsl

from ._mummyx import BadRequest
from ._structures import Headers, QueryParams

__all__ = ["FormData", "FormFiles", "UploadedFile"]

# form()'s per-value limits on a stream=True route when none is given (on a buffered route the
# whole body is already in memory, bounded by the route's max_body_len, so none applies).
STREAMED_LIMIT = 1024 * 1024
_CACHE_ATTR = "_mummyx_form"


class UploadedFile:
    """A file part of a form, held in memory: ``data`` is its content.

    ``filename`` is exactly what the client sent (``filename*`` preferred): it may be empty,
    contain ``/``, ``\\`` or ``..``. Never use it as a path without sanitising it.
    """

    __slots__ = ("name", "filename", "content_type", "headers", "data")

    def __init__(self, name: str, filename: str, content_type: Optional[str], headers: Headers,
                 data: bytes) -> None:
        self.name = name
        self.filename = filename
        self.content_type = content_type
        self.headers = headers
        self.data = data

    @property
    def size(self) -> int:
        """``len(data)``."""
        return len(self.data)

    def __repr__(self) -> str:
        return (f"UploadedFile(name={self.name!r}, filename={self.filename!r}, "
                f"content_type={self.content_type!r}, size={len(self.data)})")


class FormFiles(Mapping[str, UploadedFile]):
    """The files of a form by field name: ``files[name]`` is the first, ``getall`` every one;
    ``items()`` gives every (name, file) pair in the order received."""

    __slots__ = ("_items", "_index")

    def __init__(self, items: List[Tuple[str, UploadedFile]]) -> None:
        self._items = items
        index: Dict[str, List[UploadedFile]] = {}
        for name, f in items:
            index.setdefault(name, []).append(f)
        self._index = index

    def __getitem__(self, name: str) -> UploadedFile:
        return self._index[name][0]

    def getall(self, name: str) -> List[UploadedFile]:
        """Every file sent under ``name``, in order (``[]`` when none)."""
        return list(self._index.get(name, ()))

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def items(self) -> List[Tuple[str, UploadedFile]]:  # type: ignore[override]
        return list(self._items)

    def __repr__(self) -> str:
        return f"FormFiles({self._items!r})"


class FormData(QueryParams):
    """The fields of a form (a multi-mapping like ``request.query``) and its ``files``.

    ``form["name"]`` / ``form.get("name")`` give a field's first value and ``form.getall(name)``
    every value; ``form.files`` maps field names to :class:`UploadedFile` objects.
    """

    __slots__ = ("files",)

    def __init__(self, fields: List[Tuple[str, str]],
                 files: Optional[List[Tuple[str, UploadedFile]]] = None) -> None:
        super().__init__(fields)
        self.files = FormFiles(files or [])

    def __repr__(self) -> str:
        return f"FormData({self._items!r}, files={self.files._items!r})"


def _limit(value: Optional[int], streamed: bool, what: str) -> Optional[int]:
    if value is None:
        return STREAMED_LIMIT if streamed else None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{what} must be a non-negative int or None")
    return value


def _read_limited(read: Any, limit: Optional[int], what: str) -> bytes:
    """All of a part's ``read()`` (which fills up to n), or BadRequest(413) beyond ``limit``."""
    if limit is None:
        data: bytes = read()
        return data
    data = read(limit + 1)
    if len(data) > limit:
        raise BadRequest(f"{what} is larger than {limit} bytes", 413)
    return data


def _read_body(request: Any, limit: Optional[int]) -> bytes:
    """The whole streamed body (request.read(n) returns what has arrived, up to n bytes)."""
    chunks: List[bytes] = []
    size = 0
    while True:
        chunk = request.read(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if limit is not None and size > limit:
            raise BadRequest(f"the form body is larger than {limit} bytes", 413)
        chunks.append(chunk)


def _has_body(request: Any) -> bool:
    headers = request.headers
    return "transfer-encoding" in headers or headers.get("content-length", "0").strip() != "0"


def _request_form(request: Any, streamed: bool, *, max_file_size: Optional[int] = None,
                  max_field_size: Optional[int] = None) -> FormData:
    """request.form(): see the Request stub. ``streamed`` says whether the route is stream=True."""
    cached = getattr(request, _CACHE_ATTR, None)
    if cached is not None:  # a second call gives the same form (a streamed body reads once)
        return cached  # type: ignore[no-any-return]
    file_limit = _limit(max_file_size, streamed, "max_file_size")
    field_limit = _limit(max_field_size, streamed, "max_field_size")
    ctype = request.headers.get("content-type", "")
    media = ctype.split(";", 1)[0].strip().lower()
    if media == "application/x-www-form-urlencoded":
        if streamed:
            body = _read_body(request, field_limit)
        else:
            body = request.body
            if field_limit is not None and len(body) > field_limit:
                raise BadRequest(f"the form body is larger than {field_limit} bytes", 413)
        pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        form = FormData(pairs)
    elif media == "multipart/form-data":
        fields: List[Tuple[str, str]] = []
        files: List[Tuple[str, UploadedFile]] = []
        for part in request.multipart():
            if part.filename is None:
                data = _read_limited(part.read, field_limit, f"form field {part.name!r}")
                fields.append((part.name, data.decode("utf-8", "replace")))
            else:
                data = _read_limited(part.read, file_limit, f"file {part.filename!r}")
                files.append((part.name, UploadedFile(part.name, part.filename,
                                                      part.content_type, part.headers, data)))
        form = FormData(fields, files)
    elif not ctype and not _has_body(request):
        form = FormData([])  # no form at all (a GET, an empty POST): empty rather than an error
    else:
        raise BadRequest(f"the request body is not a form (Content-Type {ctype!r})", 400)
    setattr(request, _CACHE_ATTR, form)
    return form
