"""tus 1.0.0 resumable uploads (https://tus.io/protocols/resumable-upload) on a mummyx Router.

    uploads = TusUploads("/var/uploads", on_complete=process)
    uploads.mount(router)            # before Server(router) is created

Implements the core protocol (OPTIONS, HEAD, PATCH) and the extensions creation,
creation-with-upload, termination, checksum (sha1, md5, sha256) and expiration. Deferred lengths
(creation-defer-length) and concatenation are not supported, and not advertised.

This module is the protocol: the routes, the headers and statuses, the checksum and expiration
extensions. It speaks to the storage only through the small interface
``mummyx._tus_storage.UploadStore`` (create, get, settle, write, remove, remove_if_expired,
sweep, start, close), so another storage could be plugged in later; today TusUploads always
uses ``FileStore``: every upload is three files in ``directory`` (the data, its state as JSON and
a lock file), nothing lives in memory, and an upload resumes on any connection, in another
process sharing the directory, or after a restart. mummyx/_tus_storage.py describes the files,
the locking, crash recovery and the sweeper thread that removes expired uploads.

Writes: a PATCH (or a POST with data) takes the upload's lock without waiting (a second writer
gets 423 Locked; one that arrives after the first finished gets 409 Conflict from the offset
check) and streams the body into storage in 64 KiB pieces (memory stays flat whatever the size).
Data that arrived before the client vanished is kept, unless the request carried an
``Upload-Checksum``: then nothing of it is kept, since it cannot be verified.

``on_complete(upload)`` runs once per finished upload, on the server worker thread that
received the last byte, with the upload locked, before that request is answered: when a client
sees the final 204 (or 201), on_complete has returned. Keep it short (hand long work to a queue):
the client waits. That it ran is recorded with the upload; should the process die while it
runs, it runs again when the upload is next touched or swept (at least once across crashes,
exactly once otherwise). An exception it raises is logged on ``mummyx.tus`` and not retried; the
upload stays complete. It may move or delete ``upload.path``: a finished upload's state stays
until it is removed (``remove()`` or a DELETE); finished uploads never expire.

Threads: the handlers run on server workers, any number at once; the storage's lock keeps one
writer per upload.
"""
from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import logging
import re
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from . import _mummyx
from ._mummyx import ConnectionClosed, Request
from ._tus_storage import (Busy, FileStore, Gone, Hasher, OffsetMismatch, PathLike, SourceClosed,
                           StoreError, Upload, UploadStore, Written, parse_metadata)
from .server import Router

__all__ = ["TusUploads", "Upload", "TUS_VERSION", "CHECKSUM_ALGORITHMS", "parse_metadata"]

logger = logging.getLogger("mummyx.tus")  # the storage logs here too

TUS_VERSION = "1.0.0"

#: Upload-Checksum algorithms, by their tus names (IANA "Hash Function Textual Names").
CHECKSUM_ALGORITHMS: Dict[str, Callable[[], Any]] = {
    "sha1": hashlib.sha1,
    "md5": lambda: hashlib.md5(usedforsecurity=False),
    "sha256": hashlib.sha256,
}

_OFFSET_TYPE = "application/offset+octet-stream"
_CHUNK = 65536
_UINT = re.compile(r"[0-9]{1,18}\Z")  # Upload-Offset / Upload-Length: non-negative integers


def _uint(value: Optional[str]) -> Optional[int]:
    """A header holding a non-negative integer, or None when absent or malformed."""
    if value is None or not _UINT.match(value.strip()):
        return None
    return int(value.strip())


def _http_date(ts: float) -> str:
    return email.utils.formatdate(ts, usegmt=True)  # RFC 9110 5.6.7 IMF-fixdate


def _expired(upload: Upload, now: float) -> bool:
    # Upload.expires is None once the upload is finished: finished uploads never expire.
    return upload.expires is not None and upload.expires <= now


def _expiry_header(upload: Upload) -> Dict[str, str]:
    return {} if upload.expires is None else {"Upload-Expires": _http_date(upload.expires)}


def _chunks(request: Request) -> Iterator[bytes]:
    """The request's body in pieces, for the storage: a client that leaves mid-body ends it
    with SourceClosed, the storage's word for a sender gone."""
    try:
        yield from request.iter_body(_CHUNK)
    except ConnectionClosed:
        raise SourceClosed() from None


def _raise_if_closed(written: Written) -> None:
    """A client that left mid-body: after the storage kept what it could, the request ends as
    any whose client vanished (logged at INFO, no answer)."""
    if written.outcome == "closed":
        raise ConnectionClosed(f"client left after {written.received} bytes of the body; "
                               f"upload {written.upload.id} is at offset {written.upload.offset}")


class _Reject(Exception):
    """A request to answer with an error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class TusUploads:
    """tus 1.0.0 server endpoints storing uploads in ``directory``.

    ``prefix``: the creation URL (POST here creates uploads; each lives at ``prefix + id``).
    ``max_size``: the largest Upload-Length accepted (``Tus-Max-Size``; None: no limit).
    ``expire_after``: seconds an unfinished upload may go without receiving data before it is
    removed (None: never). ``on_complete(upload)``: see the module docstring.
    ``sweep_interval``: seconds between passes of the background sweeper that removes expired
    uploads (default: a tenth of ``expire_after``, between 0.1 s and 10 minutes).

    Everything about where and how uploads are kept goes through ``self._store``, an
    ``UploadStore``; another storage could take FileStore's place there.
    """

    def __init__(
        self,
        directory: PathLike,
        prefix: str = "/files/",
        max_size: Optional[int] = None,
        expire_after: Optional[float] = 86400,
        on_complete: Optional[Callable[[Upload], Any]] = None,
        *,
        sweep_interval: Optional[float] = None,
    ) -> None:
        if not isinstance(prefix, str) or not prefix.startswith("/") or any(c in prefix for c in "@*"):
            raise ValueError(f"invalid prefix: {prefix!r}")
        if not prefix.endswith("/"):
            prefix += "/"
        _mummyx.validate_pattern(prefix + "@id")
        if max_size is not None and (not isinstance(max_size, int) or max_size < 0):
            raise ValueError("max_size must be a non-negative int or None")
        if expire_after is not None and not expire_after > 0:
            raise ValueError("expire_after must be positive or None")
        expire = None if expire_after is None else float(expire_after)
        if sweep_interval is None:
            base = expire if expire is not None else 6000.0
            sweep_interval = min(max(base / 10, 0.1), 600.0)
        self.prefix = prefix
        self.max_size = max_size
        self.on_complete = on_complete
        self.sweep_interval = float(sweep_interval)
        # The store calls back into self, so that on_complete stays this object's attribute.
        files = FileStore(directory, expire, self._run_on_complete, self.sweep_interval)
        self.directory = files.directory
        self._store: UploadStore = files

    # ---- public API ----

    @property
    def expire_after(self) -> Optional[float]:
        return self._store.expire_after

    @expire_after.setter
    def expire_after(self, value: Optional[float]) -> None:
        self._store.expire_after = value

    @property
    def extensions(self) -> List[str]:
        """The extensions advertised in Tus-Extension."""
        ext = ["creation", "creation-with-upload", "termination", "checksum"]
        if self.expire_after is not None:
            ext.append("expiration")
        return ext

    def mount(self, router: Router) -> "TusUploads":
        """Register the tus routes on ``router`` and start the sweeper thread; returns self.

        Routes: POST and OPTIONS on the prefix (with and without its trailing slash), HEAD,
        PATCH, DELETE, OPTIONS and POST (for X-HTTP-Method-Override) on ``prefix + "@id"``.
        """
        base = self.prefix.rstrip("/")
        for path in [self.prefix] + ([base] if base else []):
            router.add_route("POST", path, self._post, stream=True, max_body_len=None)
            router.add_route("OPTIONS", path, self._options)
        upload = self.prefix + "@id"
        router.add_route("HEAD", upload, self._head)
        router.add_route("PATCH", upload, self._patch, stream=True, max_body_len=None)
        router.add_route("DELETE", upload, self._delete)
        router.add_route("OPTIONS", upload, self._options)
        router.add_route("POST", upload, self._override, stream=True, max_body_len=None)
        self._store.start()
        return self

    def close(self) -> None:
        """Stop the sweeper thread (the routes stay; uploads on disk are kept)."""
        self._store.close()

    def get(self, upload_id: str) -> Optional[Upload]:
        """The upload with this id, or None (unknown or expired)."""
        upload = self._store.get(upload_id)
        if upload is None or _expired(upload, time.time()):
            return None
        return upload

    def remove(self, upload_id: str) -> bool:
        """Delete an upload and its files; False if it is unknown or being written right now."""
        try:
            return self._store.remove(upload_id)
        except Busy:
            return False

    def sweep(self) -> int:
        """One pass of the sweeper: remove expired unfinished uploads, finish writes a crash
        interrupted, run pending ``on_complete`` calls and delete files a crash left behind.
        Returns the number of uploads removed. Uploads being written are skipped."""
        return self._store.sweep()

    def _run_on_complete(self, upload: Upload) -> None:
        if self.on_complete is not None:
            self.on_complete(upload)

    # ---- HTTP ----

    def _respond(self, request: Request, status: int, headers: Optional[Dict[str, str]] = None,
                 body: str = "") -> None:
        h = {"Tus-Resumable": TUS_VERSION}
        if headers:
            h.update(headers)
        if body and "Content-Type" not in h:
            h["Content-Type"] = "text/plain; charset=utf-8"
        request.respond(status, h, body.encode() if body else b"")

    def _options(self, request: Request) -> None:
        # No Tus-Resumable check: OPTIONS requests need not carry it (tus 1.0.0, "Tus-Resumable").
        headers = {
            "Tus-Version": TUS_VERSION,
            "Tus-Extension": ",".join(self.extensions),
            "Tus-Checksum-Algorithm": ",".join(CHECKSUM_ALGORITHMS),
        }
        if self.max_size is not None:
            headers["Tus-Max-Size"] = str(self.max_size)
        self._respond(request, 204, headers)

    def _check_version(self, request: Request) -> None:
        if request.headers.get("Tus-Resumable", "").strip() != TUS_VERSION:
            raise _Reject(412, f"Tus-Resumable must be {TUS_VERSION}")

    def _lookup(self, request: Request, settle: bool = False) -> Upload:
        """The upload the URL names; 404 for an unknown (or malformed) id, 410 once expired.
        ``settle``: first finish what a crash left undone, if no one is writing it now."""
        upload_id = request.path_params.get("id", "")
        upload = self._store.settle(upload_id) if settle else self._store.get(upload_id)
        if upload is None:
            raise _Reject(404, "no such upload")
        if _expired(upload, time.time()):
            self._store.remove_if_expired(upload_id)
            raise _Reject(410, "the upload expired")
        return upload

    @staticmethod
    def _body_length(request: Request) -> Optional[int]:
        """The announced body length: an int, 0 without a body, None for a chunked body."""
        if "Transfer-Encoding" in request.headers:
            return None
        return _uint(request.headers.get("Content-Length")) or 0

    @staticmethod
    def _content_type(request: Request) -> str:
        return request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()

    @staticmethod
    def _checksum(request: Request) -> Optional[Tuple[Hasher, bytes]]:
        """Upload-Checksum as a fresh hasher and the digest expected of the body."""
        value = request.headers.get("Upload-Checksum")
        if value is None:
            return None
        name, _, encoded = value.strip().partition(" ")
        factory = CHECKSUM_ALGORITHMS.get(name.lower())
        if factory is None:  # tus 1.0.0 checksum: an unsupported algorithm gets 400
            raise _Reject(400, f"unsupported checksum algorithm {name!r}")
        try:
            digest = base64.b64decode(encoded.strip(), validate=True)
        except binascii.Error:
            raise _Reject(400, "Upload-Checksum is not base64") from None
        hasher = factory()
        if len(digest) != hasher.digest_size:
            raise _Reject(400, "Upload-Checksum has the wrong length")
        return hasher, digest

    def _guard(self, request: Request, fn: Callable[[Request], None]) -> None:
        try:
            fn(request)
        except _Reject as e:
            headers = {"Tus-Version": TUS_VERSION} if e.status == 412 else {}
            if request.method == "HEAD":
                headers["Cache-Control"] = "no-store"
            self._respond(request, e.status, headers, str(e) + "\n")

    def _head(self, request: Request) -> None:
        self._guard(request, self._do_head)

    def _post(self, request: Request) -> None:
        self._guard(request, self._do_post)

    def _patch(self, request: Request) -> None:
        self._guard(request, self._do_patch)

    def _delete(self, request: Request) -> None:
        self._guard(request, self._do_delete)

    def _override(self, request: Request) -> None:
        """POST to an upload URL with X-HTTP-Method-Override: PATCH, DELETE or HEAD."""
        method = request.headers.get("X-HTTP-Method-Override", "").strip().upper()
        handler = {"PATCH": self._patch, "DELETE": self._delete, "HEAD": self._head}.get(method)
        if handler is None:
            self._respond(request, 405, {"Allow": "HEAD, PATCH, DELETE, OPTIONS"},
                          "POST to an upload needs X-HTTP-Method-Override\n")
        else:
            handler(request)

    def _do_head(self, request: Request) -> None:
        self._check_version(request)
        upload = self._lookup(request, settle=True)
        headers = {
            "Upload-Offset": str(upload.offset),
            "Upload-Length": str(upload.length),
            "Cache-Control": "no-store",
            **_expiry_header(upload),
        }
        if upload.raw_metadata:
            headers["Upload-Metadata"] = upload.raw_metadata
        self._respond(request, 200, headers)

    def _do_post(self, request: Request) -> None:
        self._check_version(request)
        length = _uint(request.headers.get("Upload-Length"))
        if length is None:
            if "Upload-Defer-Length" in request.headers:
                raise _Reject(400, "Upload-Defer-Length is not supported; send Upload-Length")
            raise _Reject(400, "a valid Upload-Length is required")
        if self.max_size is not None and length > self.max_size:
            raise _Reject(413, f"Upload-Length exceeds Tus-Max-Size ({self.max_size})")
        raw_metadata = request.headers.get("Upload-Metadata")
        try:
            parse_metadata(raw_metadata or "")
        except ValueError as e:
            raise _Reject(400, str(e)) from None
        announced = self._body_length(request)
        with_data = self._content_type(request) == _OFFSET_TYPE
        if announced != 0 and not with_data:
            raise _Reject(415, f"upload data needs Content-Type: {_OFFSET_TYPE}")
        checksum = self._checksum(request) if with_data else None
        if announced is not None and announced > length:
            raise _Reject(413, "the body is longer than Upload-Length")
        written: Optional[Written] = None
        try:
            upload = self._store.create(length, raw_metadata or None)
            if with_data:
                written = self._store.write(upload.id, 0, _chunks(request), checksum)
        except StoreError:  # someone removed it (or guessed its id) already
            raise _Reject(409, "the upload was removed while being created") from None
        headers = {"Location": self.prefix + upload.id}
        if written is not None:
            _raise_if_closed(written)
            upload = written.upload
            headers["Upload-Offset"] = str(upload.offset)
        headers.update(_expiry_header(upload))
        outcome = "ok" if written is None else written.outcome
        if outcome == "mismatch":  # the upload exists (at offset 0): say where it is
            self._respond(request, 460, headers, "checksum mismatch\n")
        elif outcome == "too-large":
            self._respond(request, 413, headers, "the body is longer than Upload-Length\n")
        else:
            self._respond(request, 201, headers)

    def _do_patch(self, request: Request) -> None:
        self._check_version(request)
        if self._content_type(request) != _OFFSET_TYPE:
            raise _Reject(415, f"PATCH needs Content-Type: {_OFFSET_TYPE}")
        offset = _uint(request.headers.get("Upload-Offset"))
        if offset is None:
            raise _Reject(400, "a valid Upload-Offset is required")
        checksum = self._checksum(request)
        upload = self._lookup(request)
        if upload.complete:
            # Finished: nothing can be written, so the storage is not asked for its lock; only
            # an empty body at the end is fine.
            if offset != upload.offset:
                raise _Reject(409, f"Upload-Offset is {offset}, the upload is at {upload.offset}")
            if any(request.iter_body(_CHUNK)):
                raise _Reject(413, "the upload is already complete")
            self._respond(request, 204, {"Upload-Offset": str(upload.offset)})
            return
        try:
            written = self._store.write(upload.id, offset, _chunks(request), checksum,
                                        self._body_length(request))
        except Busy:
            raise _Reject(423, "the upload is being written by another request") from None
        except Gone:
            raise _Reject(404, "no such upload") from None
        except OffsetMismatch as e:
            raise _Reject(409, f"Upload-Offset is {offset}, the upload is at {e.offset}") from None
        # The answer goes out once the storage released the lock (and on_complete returned): a
        # client may follow up at once.
        _raise_if_closed(written)
        if written.outcome == "mismatch":
            raise _Reject(460, "checksum mismatch")
        if written.outcome == "too-large":
            raise _Reject(413, "the body goes past Upload-Length")
        upload = written.upload
        self._respond(request, 204, {"Upload-Offset": str(upload.offset), **_expiry_header(upload)})

    def _do_delete(self, request: Request) -> None:
        self._check_version(request)
        upload_id = self._lookup(request).id
        try:
            removed = self._store.remove(upload_id)
        except Busy:
            raise _Reject(423, "the upload is being written by another request") from None
        if not removed:
            raise _Reject(404, "no such upload")
        self._respond(request, 204)
