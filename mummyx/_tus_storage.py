"""Upload storage for mummyx.tus: where uploads live, how they are written, and when they expire.

The tus protocol (mummyx/tus.py) speaks to its storage only through ``UploadStore`` below; that
interface is all it needs, so another storage (an object store, a database) could be plugged in
later by implementing it. ``FileStore`` is the one there is today.

FileStore keeps every upload as three files in ``directory``: ``<id>`` (the data, exactly
``offset`` bytes long), ``<id>.info`` (its state as JSON, replaced atomically on every change) and
``<id>.lock`` (held with ``flock`` by whoever writes the upload). Nothing lives in memory, so an
upload resumes on any connection, in another process sharing the directory, or after a restart.
The info file exists exactly while the upload does.

Writes: ``write`` takes the upload's lock without waiting (a second writer gets ``Busy``; one
that arrives after the first finished gets ``OffsetMismatch``), records in the info file that a
write is under way, copies the chunks it is given into the data file (memory stays flat whatever
the size) and then commits the new offset. Data that arrived before the source raised
``SourceClosed`` is kept, unless the write was to be verified against a checksum: then nothing
of it is kept. If the process dies during a write, the next caller that takes the lock (or the
sweeper) finishes the job the same way: the data file's size becomes the offset, or the write is
undone when it was to be verified.

``on_complete(upload)`` runs once per finished upload, with the upload locked, on the thread whose
call finished it (``create`` of an empty upload, or ``write``). That it ran is recorded in the
info file; should the process die while it runs, it runs again when the upload is next settled
or swept (at least once across crashes, exactly once otherwise). An exception it raises is
logged on ``mummyx.tus`` and not retried.

Threads: every method may be called from any thread at once (the flock, taken on a file opened
per call, excludes writers between threads as between processes); the sweeper is one daemon
thread, started by ``start`` and joined by ``close``.
"""
from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import json
import logging
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import (Any, Callable, Dict, Iterable, Iterator, Literal, Mapping, Optional, Protocol,
                    Tuple, Union)

logger = logging.getLogger("mummyx.tus")

_ID = re.compile(r"[0-9a-f]{32}\Z")
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
    It lives with the storage because ``Upload.metadata`` is the stored header decoded.
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


class StoreError(Exception):
    """Base of the errors an UploadStore raises to its caller (never seen by users)."""


class Busy(StoreError):
    """Another writer (a thread here or another process) holds the upload's lock."""


class Gone(StoreError):
    """The upload was removed (or never existed)."""


class OffsetMismatch(StoreError):
    """A write asked to start elsewhere than at the upload's offset; ``offset`` is the latter."""

    def __init__(self, offset: int) -> None:
        super().__init__(f"the upload is at offset {offset}")
        self.offset = offset


class SourceClosed(Exception):
    """Raised by a chunk source whose sender went away before the end of the data."""


class Hasher(Protocol):
    """What ``write`` needs of a checksum: hashlib objects fit."""

    def update(self, data: bytes, /) -> None: ...

    def digest(self) -> bytes: ...


#: "ok": every chunk stored; "mismatch": the checksum failed, nothing kept; "too-large": a chunk
#: went past the upload's length, nothing kept and the source not read to its end; "closed": the
#: source raised SourceClosed, what arrived kept unless it was to be verified.
Outcome = Literal["ok", "mismatch", "too-large", "closed"]


@dataclass(frozen=True)
class Written:
    """What ``write`` did: its outcome, how many bytes it read from the source, and the upload
    as it stands afterwards."""

    outcome: Outcome
    received: int
    upload: Upload


class UploadStore(Protocol):
    """Everything the tus protocol asks of a storage. Each method may be called from any
    thread; none takes ownership of its arguments beyond the call (``write`` consumes
    ``chunks``). Ids are whatever the URL carried: a store answers a malformed one as unknown."""

    #: seconds an unfinished upload may go without receiving data (None: never expires)
    expire_after: Optional[float]

    def create(self, length: int, raw_metadata: Optional[str]) -> Upload:
        """A new empty upload of ``length`` bytes; one of length 0 is finished (and
        ``on_complete`` has run) when this returns. Raises Busy or Gone should someone else
        take or remove such an upload before it is finished."""
        ...

    def get(self, upload_id: str) -> Optional[Upload]:
        """The upload as recorded, expired or not; None when unknown."""
        ...

    def settle(self, upload_id: str) -> Optional[Upload]:
        """As ``get``, after finishing what a crash left undone (a write, an ``on_complete``)
        when the upload is unexpired and no one is writing it now."""
        ...

    def write(self, upload_id: str, offset: int, chunks: Iterable[bytes],
              checksum: Optional[Tuple[Hasher, bytes]] = None,
              announced: Optional[int] = None) -> Written:
        """Append ``chunks`` at ``offset``, the upload's current offset; ``checksum`` is a fresh
        hasher and the digest all the chunks together must have. ``announced``: the source's
        length when known (more than fits answers "too-large" before reading anything). Runs
        ``on_complete`` when this finishes the upload (unless the outcome is "closed"). Raises
        Busy, Gone or OffsetMismatch before reading anything."""
        ...

    def remove(self, upload_id: str) -> bool:
        """Delete the upload; False if it is unknown. Raises Busy while it is being written."""
        ...

    def remove_if_expired(self, upload_id: str) -> bool:
        """Delete the upload if it has expired and no one is writing it; whether it did."""
        ...

    def sweep(self) -> int:
        """One pass of upkeep: remove expired uploads, settle what crashes left undone.
        Returns the number of uploads removed."""
        ...

    def start(self) -> None:
        """Begin background upkeep (a sweeper); idempotent, and a no-op after ``close``."""
        ...

    def close(self) -> None:
        """Stop background upkeep; uploads are kept."""
        ...


class FileStore:
    """An UploadStore keeping uploads as files in ``directory`` (see the module docstring).

    ``sweep_interval``: seconds between passes of the sweeper thread ``start`` runs.
    """

    def __init__(self, directory: PathLike, expire_after: Optional[float],
                 on_complete: Optional[Callable[[Upload], Any]], sweep_interval: float) -> None:
        self.directory = os.path.abspath(os.fspath(directory))
        self.expire_after = expire_after
        self.on_complete = on_complete
        self.sweep_interval = sweep_interval
        os.makedirs(self.directory, exist_ok=True)
        self._stop = threading.Event()
        self._sweeper: Optional[threading.Thread] = None
        self._sweeper_lock = threading.Lock()

    # ---- the UploadStore interface ----

    def create(self, length: int, raw_metadata: Optional[str]) -> Upload:
        upload_id = secrets.token_hex(16)
        now = time.time()
        # The lock file comes first: from the moment the info file exists, the upload can be
        # locked. The "x" mode makes a (vanishingly unlikely) id collision fail loudly.
        for suffix in (".lock", ""):
            with open(self._path(upload_id, suffix), "xb"):
                pass
        info: Dict[str, Any] = {
            "id": upload_id, "length": length, "offset": 0, "metadata": raw_metadata,
            "created": now, "expires": self._next_expiry(now), "completed": length == 0,
            "notified": False,
        }
        self._write_info(info)
        if info["completed"]:  # an empty upload is finished as soon as it exists
            with self._locked(upload_id):
                self._notify(info)
        return self._upload(info)

    def get(self, upload_id: str) -> Optional[Upload]:
        info = self._read_info(upload_id) if _ID.match(upload_id) else None
        return None if info is None else self._upload(info)

    def settle(self, upload_id: str) -> Optional[Upload]:
        info = self._read_info(upload_id) if _ID.match(upload_id) else None
        if info is None:
            return None
        if self._unsettled(info) and not self._expired(info, time.time()):
            with contextlib.suppress(Busy, Gone), self._locked(upload_id):
                info = self._recover(upload_id) or info
        return self._upload(info)

    def write(self, upload_id: str, offset: int, chunks: Iterable[bytes],
              checksum: Optional[Tuple[Hasher, bytes]] = None,
              announced: Optional[int] = None) -> Written:
        if not _ID.match(upload_id):  # never let a name from a URL reach the file system
            raise Gone()
        with self._locked(upload_id):
            info = self._recover(upload_id)
            if info is None:
                raise Gone()
            if offset != info["offset"]:
                raise OffsetMismatch(info["offset"])
            if announced is not None and announced > info["length"] - offset:
                return Written("too-large", 0, self._upload(info))
            outcome, received = self._receive(info, chunks, checksum)
            if outcome != "closed" and info["completed"] and not info["notified"]:
                self._notify(info)
        return Written(outcome, received, self._upload(info))

    def remove(self, upload_id: str) -> bool:
        if not _ID.match(upload_id):
            return False
        try:
            with self._locked(upload_id):
                if self._read_info(upload_id) is None:
                    return False
                self._remove_files(upload_id)
                return True
        except Gone:
            return False

    def remove_if_expired(self, upload_id: str) -> bool:
        if not _ID.match(upload_id):
            return False
        try:
            with self._locked(upload_id):
                info = self._read_info(upload_id)
                if info is not None and self._expired(info, time.time()):
                    self._remove_files(upload_id)
                    logger.info("tus upload %s expired and was removed", upload_id)
                    return True
        except (Busy, Gone):
            pass
        return False

    def sweep(self) -> int:
        """Remove expired unfinished uploads, finish writes a crash interrupted, run pending
        ``on_complete`` calls and delete files a crash left behind. Uploads being written are
        skipped."""
        now = time.time()
        removed = 0
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return 0
        present = set(names)
        for name in names:
            stem, _, ext = name.partition(".")
            if not _ID.match(stem):
                continue
            if ext == "info":
                info = self._read_info(stem)
                if info is None:
                    continue
                if self._expired(info, now):
                    removed += self.remove_if_expired(stem)
                elif self._unsettled(info):
                    with contextlib.suppress(Busy, Gone), self._locked(stem):
                        self._recover(stem)
            elif ext.endswith(".tmp") or (ext in ("", "lock") and stem + ".info" not in present):
                # a leftover of a crash during creation, removal or an info update
                path = os.path.join(self.directory, name)
                with contextlib.suppress(OSError):
                    if now - os.stat(path).st_mtime > _ORPHAN_AGE:
                        os.unlink(path)
        return removed

    def start(self) -> None:
        with self._sweeper_lock:
            if self._sweeper is None and not self._stop.is_set():
                self._sweeper = threading.Thread(target=self._sweep_loop, name="mummyx-tus-sweeper",
                                                 daemon=True)
                self._sweeper.start()

    def close(self) -> None:
        self._stop.set()
        with self._sweeper_lock:
            thread, self._sweeper = self._sweeper, None
        # on_complete may call close from the sweeper itself: it cannot join itself
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    # ---- files ----

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
        the upload does not exist. The lock file goes last, while still held: a caller that
        opened it meanwhile finds it gone once it gets the lock (see _locked)."""
        for suffix in (".info", "", ".lock"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path(upload_id, suffix))

    @contextlib.contextmanager
    def _locked(self, upload_id: str) -> Iterator[None]:
        """Hold the upload's lock (flock on ``<id>.lock``: exclusive between threads, since each
        takes it on its own open file, and between processes). Raises Busy when it is taken,
        Gone when the upload was removed."""
        path = self._path(upload_id, ".lock")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            raise Gone() from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise Busy() from None
            # The upload may have been removed between our open and flock: then the lock file we
            # hold is no longer the one at the path.
            try:
                st = os.stat(path)
            except FileNotFoundError:
                raise Gone() from None
            mine = os.fstat(fd)
            if (st.st_ino, st.st_dev) != (mine.st_ino, mine.st_dev):
                raise Gone()
            yield
        finally:
            os.close(fd)  # releases the flock

    # ---- state ----

    def _next_expiry(self, now: float) -> Optional[float]:
        return None if self.expire_after is None else now + self.expire_after

    @staticmethod
    def _expired(info: Mapping[str, Any], now: float) -> bool:
        expires = info.get("expires")
        return not info["completed"] and expires is not None and expires <= now

    @staticmethod
    def _unsettled(info: Mapping[str, Any]) -> bool:
        """Whether a crash left a write or an on_complete call unfinished."""
        return "write" in info or (info["completed"] and not info["notified"])

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

    def _receive(self, info: Dict[str, Any], chunks: Iterable[bytes],
                 checksum: Optional[Tuple[Hasher, bytes]]) -> Tuple[Outcome, int]:
        """Copy ``chunks`` into the data file at info["offset"] (the caller holds the lock) and
        commit the new offset in ``info`` and its file. Returns the outcome and the bytes read."""
        start = int(info["offset"])
        room = int(info["length"]) - start
        if room == 0:  # finished meanwhile (its file may be gone): only an empty source fits,
            # and nothing changes on disk
            try:
                return ("too-large" if any(chunks) else "ok"), 0
            except SourceClosed:
                return "closed", 0
        hasher = checksum[0] if checksum is not None else None
        path = self._path(info["id"])
        # Record the write first, so a crash in the middle is settled like a disconnect (see
        # _recover); pushing the expiry forward keeps the sweeper off a long-running write.
        info["write"] = {"start": start, "verify": hasher is not None}
        info["expires"] = self._next_expiry(time.time())
        self._write_info(info)
        written = kept = 0
        outcome: Outcome = "ok"
        try:
            with open(path, "r+b") as f:
                f.truncate(start)
                f.seek(start)
                try:
                    for chunk in chunks:
                        if len(chunk) > room - written:
                            outcome = "too-large"
                            break
                        f.write(chunk)
                        if hasher is not None:
                            hasher.update(chunk)
                        written += len(chunk)
                except SourceClosed:
                    outcome = "closed"
            if outcome == "ok" and checksum is not None and hasher is not None:
                if hasher.digest() != checksum[1]:
                    outcome = "mismatch"
            if outcome == "ok" or (outcome == "closed" and hasher is None):
                kept = written
        finally:
            # Anything else raised (a full disk, a source's other error) keeps nothing.
            if kept != written:
                os.truncate(path, start + kept)
            del info["write"]
            info["offset"] = start + kept
            if kept:
                info["expires"] = self._next_expiry(time.time())
            info["completed"] = info["offset"] == info["length"]
            self._write_info(info)
        return outcome, written

    def _sweep_loop(self) -> None:
        while True:
            try:
                self.sweep()
            except Exception:  # pragma: no cover - keep sweeping whatever happens
                logger.exception("tus sweep failed")
            if self._stop.wait(self.sweep_interval):
                return
