"""tus 1.0.0 resumable uploads (https://tus.io/protocols/resumable-upload) on a mummyx Router.

    uploads = TusUploads("/var/uploads", on_complete=process)
    uploads.mount(router)            # before Server(router) is created

Implements the core protocol (OPTIONS, HEAD, PATCH) and the extensions creation,
creation-with-upload, termination, checksum (sha1, md5, sha256) and expiration. Deferred lengths
(creation-defer-length) and concatenation are not supported, and not advertised.

Storage: every upload is three files in ``directory``: ``<id>`` (the data, exactly ``offset``
bytes long), ``<id>.info`` (its state as JSON, replaced atomically on every change) and
``<id>.lock`` (held with ``flock`` by whoever writes the upload). Nothing lives in memory, so an
upload resumes on any connection, in another process sharing the directory, or after a restart.
The info file exists exactly while the upload does.

Writes: a PATCH (or a POST with data) takes the upload's lock without waiting (a second writer
gets 423 Locked; one that arrives after the first finished gets 409 Conflict from the offset
check), records in the info file that a write is under way, streams the body into the data file
in 64 KiB pieces (memory stays flat whatever the size) and then commits the new offset. Data
that arrived before the client vanished is kept, unless the request carried an
``Upload-Checksum``: then nothing of it is kept, since it cannot be verified. If the process
dies during a write, the next request that takes the lock (or the sweeper) finishes the job the
same way: the data file's size becomes the offset, or the write is undone when it was to be
verified.

``on_complete(upload)`` runs once per finished upload, on the server worker thread that
received the last byte, with the upload locked, before that request is answered: when a client
sees the final 204 (or 201), on_complete has returned. Keep it short (hand long work to a queue):
the client waits. That it ran is recorded in the info file; should the process die while it
runs, it runs again when the upload is next touched or swept (at least once across crashes,
exactly once otherwise). An exception it raises is logged on ``mummyx.tus`` and not retried; the
upload stays complete. It may move or delete ``upload.path``: a finished upload's state stays in
its info file until it is removed (``remove()`` or a DELETE); finished uploads never expire.
"""
from __future__ import annotations

import base64
import binascii
import contextlib
import email.utils
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple, Union

from . import _mummyx
from ._mummyx import ConnectionClosed, Request
from .server import Router

__all__ = ["TusUploads", "Upload", "TUS_VERSION", "CHECKSUM_ALGORITHMS", "parse_metadata"]

logger = logging.getLogger("mummyx.tus")

TUS_VERSION = "1.0.0"

#: Upload-Checksum algorithms, by their tus names (IANA "Hash Function Textual Names").
CHECKSUM_ALGORITHMS: Dict[str, Callable[[], Any]] = {
    "sha1": hashlib.sha1,
    "md5": lambda: hashlib.md5(usedforsecurity=False),
    "sha256": hashlib.sha256,
}

_OFFSET_TYPE = "application/offset+octet-stream"
_CHUNK = 65536
_ID = re.compile(r"[0-9a-f]{32}\Z")
_UINT = re.compile(r"[0-9]{1,18}\Z")  # Upload-Offset / Upload-Length: non-negative integers
_ORPHAN_AGE = 3600.0  # seconds before files left without an info file (a crash) are removed

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class Upload:
    """One upload, as given to ``on_complete`` and returned by ``TusUploads.get``."""

    id: str
    #: the data file (``directory/<id>``)
    path: str
    #: Upload-Length: the total size in bytes
    length: int
    #: bytes received so far
    offset: int
    #: Upload-Metadata decoded: values as UTF-8 text (undecodable bytes replaced); a key sent
    #: without a value maps to ""
    metadata: Dict[str, str]
    #: the Upload-Metadata header exactly as the client sent it (None without one)
    raw_metadata: Optional[str]
    #: creation time (seconds since the epoch)
    created: float
    #: when the upload expires if unfinished (None: never)
    expires: Optional[float]

    @property
    def complete(self) -> bool:
        return self.offset == self.length


def parse_metadata(value: str) -> Dict[str, bytes]:
    """Decode an Upload-Metadata header: ``key base64value`` pairs separated by commas.

    Raises ValueError for an empty or repeated key, or a value that is not valid base64.
    """
    out: Dict[str, bytes] = {}
    if not value.strip():
        return out
    for item in value.split(","):
        key, _, encoded = item.strip().partition(" ")
        if not key or any(ord(c) < 0x21 or ord(c) == 0x7F for c in key):
            raise ValueError(f"invalid Upload-Metadata key {key!r}")
        if key in out:
            raise ValueError(f"repeated Upload-Metadata key {key!r}")
        try:
            out[key] = base64.b64decode(encoded.strip(), validate=True)
        except binascii.Error:
            raise ValueError(f"Upload-Metadata value of {key!r} is not base64") from None
    return out


def _uint(value: Optional[str]) -> Optional[int]:
    """A header holding a non-negative integer, or None when absent or malformed."""
    if value is None or not _UINT.match(value.strip()):
        return None
    return int(value.strip())


def _http_date(ts: float) -> str:
    return email.utils.formatdate(ts, usegmt=True)  # RFC 9110 5.6.7 IMF-fixdate


class _Busy(Exception):
    """Another request (or process) holds the upload's lock."""


class _Gone(Exception):
    """The upload was removed."""


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
        self.directory = os.path.abspath(os.fspath(directory))
        self.prefix = prefix
        self.max_size = max_size
        self.expire_after = None if expire_after is None else float(expire_after)
        self.on_complete = on_complete
        if sweep_interval is None:
            base = self.expire_after if self.expire_after is not None else 6000.0
            sweep_interval = min(max(base / 10, 0.1), 600.0)
        self.sweep_interval = float(sweep_interval)
        os.makedirs(self.directory, exist_ok=True)
        self._stop = threading.Event()
        self._sweeper: Optional[threading.Thread] = None
        self._sweeper_lock = threading.Lock()

    # ---- public API ----

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
        with self._sweeper_lock:
            if self._sweeper is None and not self._stop.is_set():
                self._sweeper = threading.Thread(target=self._sweep_loop, name="mummyx-tus-sweeper",
                                                 daemon=True)
                self._sweeper.start()
        return self

    def close(self) -> None:
        """Stop the sweeper thread (the routes stay; uploads on disk are kept)."""
        self._stop.set()
        with self._sweeper_lock:
            thread, self._sweeper = self._sweeper, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def get(self, upload_id: str) -> Optional[Upload]:
        """The upload with this id, or None (unknown or expired)."""
        info = self._read_info(upload_id) if _ID.match(upload_id) else None
        if info is None or self._expired(info, time.time()):
            return None
        return self._upload(info)

    def remove(self, upload_id: str) -> bool:
        """Delete an upload and its files; False if it is unknown or being written right now."""
        if not _ID.match(upload_id):
            return False
        try:
            with self._locked(upload_id):
                if self._read_info(upload_id) is None:
                    return False
                self._remove_files(upload_id)
                return True
        except (_Busy, _Gone):
            return False

    def sweep(self) -> int:
        """One pass of the sweeper: remove expired unfinished uploads, finish writes a crash
        interrupted, run pending ``on_complete`` calls and delete files a crash left behind.
        Returns the number of uploads removed. Uploads being written are skipped."""
        now = time.time()
        removed = 0
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return 0
        present = set(names)
        for name in names:
            stem, dot, ext = name.partition(".")
            if not _ID.match(stem):
                continue
            if ext == "info":
                info = self._read_info(stem)
                if info is None:
                    continue
                if self._expired(info, now):
                    removed += self._remove_if_expired(stem)
                elif "write" in info or (info["completed"] and not info["notified"]):
                    try:
                        with self._locked(stem):
                            self._recover(stem)
                    except (_Busy, _Gone):
                        pass
            elif ext.endswith(".tmp") or (ext in ("", "lock") and stem + ".info" not in present):
                # a leftover of a crash during creation, removal or an info update
                path = os.path.join(self.directory, name)
                with contextlib.suppress(OSError):
                    if now - os.stat(path).st_mtime > _ORPHAN_AGE:
                        os.unlink(path)
        return removed

    # ---- storage ----

    def _path(self, upload_id: str, suffix: str = "") -> str:
        return os.path.join(self.directory, upload_id + suffix)

    def _read_info(self, upload_id: str) -> Optional[Dict[str, Any]]:
        try:
            with open(self._path(upload_id, ".info"), "rb") as f:
                info: Dict[str, Any] = json.load(f)
                return info
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            logger.exception("unreadable tus info file for upload %s", upload_id)
            return None

    def _write_info(self, info: Dict[str, Any]) -> None:
        """Replace the info file atomically (a reader sees the old state or the new one)."""
        path = self._path(info["id"], ".info")
        tmp = f"{path}.{secrets.token_hex(4)}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(info, f, separators=(",", ":"))
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _remove_files(self, upload_id: str) -> None:
        """Delete an upload; the caller holds its lock. The info file goes first: from then on
        the upload does not exist. The lock file goes last, while still held: a request that
        opened it meanwhile finds it gone once it gets the lock (see _locked)."""
        for suffix in (".info", "", ".lock"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path(upload_id, suffix))

    @contextlib.contextmanager
    def _locked(self, upload_id: str) -> Iterator[None]:
        """Hold the upload's lock (flock on ``<id>.lock``: exclusive between threads, since each
        takes it on its own open file, and between processes). Raises _Busy when it is taken,
        _Gone when the upload was removed."""
        path = self._path(upload_id, ".lock")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            raise _Gone() from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise _Busy() from None
            # The upload may have been removed between our open and flock: then the lock file we
            # hold is no longer the one at the path.
            try:
                st = os.stat(path)
            except FileNotFoundError:
                raise _Gone() from None
            mine = os.fstat(fd)
            if (st.st_ino, st.st_dev) != (mine.st_ino, mine.st_dev):
                raise _Gone()
            yield
        finally:
            os.close(fd)  # releases the flock

    def _create(self, length: int, raw_metadata: Optional[str]) -> Dict[str, Any]:
        upload_id = secrets.token_hex(16)
        now = time.time()
        for suffix in (".lock", ""):
            with open(self._path(upload_id, suffix), "xb"):
                pass
        info: Dict[str, Any] = {
            "id": upload_id, "length": length, "offset": 0, "metadata": raw_metadata,
            "created": now, "expires": self._next_expiry(now), "completed": length == 0,
            "notified": False,
        }
        self._write_info(info)
        return info

    def _next_expiry(self, now: float) -> Optional[float]:
        return None if self.expire_after is None else now + self.expire_after

    @staticmethod
    def _expired(info: Mapping[str, Any], now: float) -> bool:
        expires = info.get("expires")
        return not info["completed"] and expires is not None and expires <= now

    def _remove_if_expired(self, upload_id: str) -> int:
        try:
            with self._locked(upload_id):
                info = self._read_info(upload_id)
                if info is not None and self._expired(info, time.time()):
                    self._remove_files(upload_id)
                    logger.info("tus upload %s expired and was removed", upload_id)
                    return 1
        except (_Busy, _Gone):
            pass
        return 0

    def _upload(self, info: Mapping[str, Any]) -> Upload:
        raw = info.get("metadata")
        try:
            decoded = parse_metadata(raw) if raw else {}
        except ValueError:  # validated at creation; only a hand-edited info file gets here
            decoded = {}
        return Upload(
            id=info["id"], path=self._path(info["id"]), length=info["length"],
            offset=info["offset"],
            metadata={k: v.decode("utf-8", "replace") for k, v in decoded.items()},
            raw_metadata=raw, created=info["created"],
            expires=None if info["completed"] else info.get("expires"),
        )

    def _recover(self, upload_id: str) -> Optional[Dict[str, Any]]:
        """With the lock held: re-read the state, settle a write that a crash interrupted and run
        an on_complete that did not finish. Returns the state, or None if the upload is gone."""
        info = self._read_info(upload_id)
        if info is None:
            return None
        write = info.pop("write", None)
        if write is not None or not info["completed"]:
            path = self._path(upload_id)
            try:
                size = os.path.getsize(path)
            except FileNotFoundError:
                size = 0
                open(path, "ab").close()
            if write is not None:
                # A crash mid-write: unverifiable bytes are dropped, otherwise what reached the
                # disk counts (as after a disconnect).
                offset = min(size, int(write["start"])) if write["verify"] else size
            else:
                # Offsets are committed without fsync: after a power loss the data may be shorter
                # than the recorded offset. The offset then goes back (a client at the old one
                # gets 409, asks with HEAD and sends the rest again) rather than letting zeros in.
                offset = min(size, info["offset"])
            offset = min(offset, info["length"])
            if size != offset:
                os.truncate(path, offset)
            if write is not None or offset != info["offset"]:
                if write is None:
                    logger.warning("tus upload %s: data file shorter than its offset (%d < %d)",
                                   upload_id, size, info["offset"])
                info["offset"] = offset
                info["completed"] = offset == info["length"]
                self._write_info(info)
        if info["completed"] and not info["notified"]:
            self._notify(info)
        return info

    def _notify(self, info: Dict[str, Any]) -> None:
        """Run on_complete once (the caller holds the lock), then record that it ran."""
        if self.on_complete is not None:
            try:
                self.on_complete(self._upload(info))
            except Exception:
                logger.exception("tus on_complete raised for upload %s", info["id"])
        info["notified"] = True
        self._write_info(info)

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

    def _expiry_header(self, info: Mapping[str, Any]) -> Dict[str, str]:
        if info["completed"] or info.get("expires") is None:
            return {}
        return {"Upload-Expires": _http_date(info["expires"])}

    def _lookup(self, request: Request) -> Dict[str, Any]:
        """The upload the URL names; 404 for an unknown (or malformed) id, 410 once expired."""
        upload_id = request.path_params.get("id", "")
        info = self._read_info(upload_id) if _ID.match(upload_id) else None
        if info is None:
            raise _Reject(404, "no such upload")
        if self._expired(info, time.time()):
            self._remove_if_expired(upload_id)
            raise _Reject(410, "the upload expired")
        return info

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
    def _checksum(request: Request) -> Optional[Tuple[str, bytes]]:
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
        if len(digest) != factory().digest_size:
            raise _Reject(400, "Upload-Checksum has the wrong length")
        return name.lower(), digest

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
        info = self._lookup(request)
        if "write" in info or (info["completed"] and not info["notified"]):
            try:  # a crash interrupted a write; when no one is writing now, settle it
                with self._locked(info["id"]):
                    info = self._recover(info["id"]) or info
            except (_Busy, _Gone):
                pass
        headers = {
            "Upload-Offset": str(info["offset"]),
            "Upload-Length": str(info["length"]),
            "Cache-Control": "no-store",
            **self._expiry_header(info),
        }
        if info.get("metadata"):
            headers["Upload-Metadata"] = info["metadata"]
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
        info = self._create(length, raw_metadata or None)
        headers = {"Location": self.prefix + info["id"]}
        outcome = "ok"
        try:
            with self._locked(info["id"]):
                if with_data:
                    outcome = self._receive(request, info, checksum)
                    headers["Upload-Offset"] = str(info["offset"])
                if info["completed"] and not info["notified"]:
                    self._notify(info)  # an empty upload is finished as soon as it exists
        except (_Busy, _Gone):  # someone removed it (or guessed its id) already
            raise _Reject(409, "the upload was removed while being created") from None
        headers.update(self._expiry_header(info))
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
        info = self._lookup(request)
        upload_id = info["id"]
        if info["completed"] and "write" not in info:
            # Finished: nothing can be written, so no lock is needed.
            if offset != info["offset"]:
                raise _Reject(409, f"Upload-Offset is {offset}, the upload is at {info['offset']}")
            if self._receive(request, info, None) != "ok":
                raise _Reject(413, "the upload is already complete")
            self._respond(request, 204, {"Upload-Offset": str(info["offset"])})
            return
        try:
            with self._locked(upload_id):
                current = self._recover(upload_id)
                if current is None:
                    raise _Reject(404, "no such upload")
                info = current
                if offset != info["offset"]:
                    raise _Reject(409, f"Upload-Offset is {offset}, the upload is at {info['offset']}")
                announced = self._body_length(request)
                if announced is not None and announced > info["length"] - offset:
                    raise _Reject(413, "the body goes past Upload-Length")
                outcome = self._receive(request, info, checksum)
                if info["completed"] and not info["notified"]:
                    self._notify(info)
        except _Busy:
            raise _Reject(423, "the upload is being written by another request") from None
        except _Gone:
            raise _Reject(404, "no such upload") from None
        # The answer goes out once the lock is released (and on_complete returned): a client
        # may follow up at once.
        if outcome == "mismatch":
            raise _Reject(460, "checksum mismatch")
        if outcome == "too-large":
            raise _Reject(413, "the body goes past Upload-Length")
        self._respond(request, 204, {"Upload-Offset": str(info["offset"]), **self._expiry_header(info)})

    def _do_delete(self, request: Request) -> None:
        self._check_version(request)
        upload_id = self._lookup(request)["id"]
        try:
            with self._locked(upload_id):
                self._remove_files(upload_id)
        except _Busy:
            raise _Reject(423, "the upload is being written by another request") from None
        except _Gone:
            raise _Reject(404, "no such upload") from None
        self._respond(request, 204)

    def _receive(self, request: Request, info: Dict[str, Any],
                 checksum: Optional[Tuple[str, bytes]]) -> str:
        """Stream the body into the data file at info["offset"] (the caller holds the lock) and
        commit the new offset in ``info`` and its file. Returns "ok", "mismatch" (nothing kept)
        or "too-large" (nothing kept; the body was not read to its end). Raises ConnectionClosed
        when the client left mid-body, after keeping what arrived (unless it was to be
        verified)."""
        start = int(info["offset"])
        room = int(info["length"]) - start
        if room == 0:  # a finished upload (its file may be gone): only an empty body fits;
            # nothing changes, so this needs no lock
            for chunk in request.iter_body(_CHUNK):
                if chunk:
                    return "too-large"
            return "ok"
        hasher = CHECKSUM_ALGORITHMS[checksum[0]]() if checksum is not None else None
        path = self._path(info["id"])
        # Record the write first, so a crash in the middle is settled like a disconnect (see
        # _recover); pushing the expiry forward keeps the sweeper off a long-running write.
        info["write"] = {"start": start, "verify": hasher is not None}
        info["expires"] = self._next_expiry(time.time())
        self._write_info(info)
        written = kept = 0
        outcome = "ok"
        try:
            with open(path, "r+b") as f:
                f.truncate(start)
                f.seek(start)
                try:
                    for chunk in request.iter_body(_CHUNK):
                        if len(chunk) > room - written:
                            outcome = "too-large"
                            break
                        f.write(chunk)
                        if hasher is not None:
                            hasher.update(chunk)
                        written += len(chunk)
                except ConnectionClosed:
                    outcome = "closed"
            if outcome == "ok" and checksum is not None and hasher is not None:
                if hasher.digest() != checksum[1]:
                    outcome = "mismatch"
            if outcome == "ok" or (outcome == "closed" and hasher is None):
                kept = written
        finally:
            if kept != written:
                os.truncate(path, start + kept)
            del info["write"]
            info["offset"] = start + kept
            if kept:
                info["expires"] = self._next_expiry(time.time())
            info["completed"] = info["offset"] == info["length"]
            self._write_info(info)
        if outcome == "closed":
            raise ConnectionClosed(f"client left after {written} bytes of the body; "
                                   f"upload {info['id']} is at offset {info['offset']}")
        return outcome

    # ---- sweeper ----

    def _sweep_loop(self) -> None:
        while True:
            try:
                self.sweep()
            except Exception:  # pragma: no cover - keep sweeping whatever happens
                logger.exception("tus sweep failed")
            if self._stop.wait(self.sweep_interval):
                return
