"""The tus upload storage on its own (mummyx._tus_storage.FileStore, no server): creating, writing
at an offset, offset and length errors, checksums, a source that breaks off, finishing and
on_complete, expiry by the sweeper thread, removal, crash recovery, and concurrent writers."""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

import pytest

from mummyx._tus_storage import (Busy, FileStore, Gone, OffsetMismatch, SourceClosed, Upload,
                                 UploadStore, Written)
from mummyx.tus import Upload as PublicUpload
from mummyx.tus import parse_metadata


class Store:
    """A FileStore in a temporary directory that records its on_complete calls."""

    def __init__(self, directory: Path, expire_after: Optional[float] = 3600.0,
                 sweep_interval: float = 3600.0) -> None:
        self.directory = directory
        self.completed: List[Upload] = []
        self.files = FileStore(directory, expire_after, self.completed.append, sweep_interval)
        self.store: UploadStore = self.files  # the tests use the interface the protocol uses

    def info(self, upload_id: str) -> Dict[str, Any]:
        info: Dict[str, Any] = json.loads((self.directory / (upload_id + ".info")).read_text())
        return info

    def set_info(self, upload_id: str, **changes: Any) -> None:
        info = self.info(upload_id)
        info.update(changes)
        (self.directory / (upload_id + ".info")).write_text(json.dumps(info))

    def data(self, upload_id: str) -> bytes:
        return (self.directory / upload_id).read_bytes()

    def names(self) -> List[str]:
        return sorted(os.listdir(self.directory))


@pytest.fixture
def s(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "uploads")
    yield store
    store.files.close()


class Source:
    """A chunk source that counts what was taken from it and can break off like a client that
    leaves (SourceClosed) or fail otherwise."""

    def __init__(self, chunks: Iterable[bytes], then: Optional[BaseException] = None) -> None:
        self.chunks = list(chunks)
        self.then = then
        self.taken = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            self.taken += 1
            yield chunk
        if self.then is not None:
            raise self.then


def sha1(data: bytes) -> Tuple[Any, bytes]:
    return hashlib.sha1(), hashlib.sha1(data).digest()


# ---- create ----

def test_create(s: Store) -> None:
    before = time.time()
    up = s.store.create(11, "name aGk=,flag")
    assert up.length == 11 and up.offset == 0 and not up.complete
    assert len(up.id) == 32 and set(up.id) <= set("0123456789abcdef")
    assert up.path == str(s.directory / up.id) and up.raw_metadata == "name aGk=,flag"
    assert up.metadata == {"name": "hi", "flag": ""}
    assert before <= up.created <= time.time()
    assert up.expires is not None and abs(up.expires - (up.created + 3600)) < 1e-6
    assert s.names() == sorted([up.id, up.id + ".info", up.id + ".lock"])
    assert s.data(up.id) == b"" and s.completed == []
    assert s.store.get(up.id) == up and s.store.settle(up.id) == up
    assert isinstance(up, PublicUpload)  # mummyx.tus re-exports the same class
    other = s.store.create(1, None)
    assert other.id != up.id and other.metadata == {} and other.raw_metadata is None


def test_create_empty_upload_is_finished_at_once(s: Store) -> None:
    up = s.store.create(0, None)
    assert up.complete and up.expires is None  # finished uploads never expire
    assert s.completed == [up]
    assert s.info(up.id)["notified"] is True
    assert s.store.settle(up.id) == up and len(s.completed) == 1


def test_no_expiry(tmp_path: Path) -> None:
    st = Store(tmp_path, expire_after=None)
    up = st.store.create(5, None)
    assert up.expires is None and st.store.sweep() == 0 and st.store.get(up.id) == up


def test_unknown_and_malformed_ids(s: Store) -> None:
    (s.directory.parent / "secret.info").write_text('{"id": "../secret"}')
    for bad in ("0" * 32, "AB" * 16, "../secret", "", "x" * 32):
        assert s.store.get(bad) is None and s.store.settle(bad) is None
        assert s.store.remove(bad) is False and s.store.remove_if_expired(bad) is False
        with pytest.raises(Gone):
            s.store.write(bad, 0, [b"x"])
    assert (s.directory.parent / "secret.info").exists()


# ---- write ----

def test_write_at_offset(s: Store) -> None:
    up = s.store.create(11, None)
    first = s.store.write(up.id, 0, Source([b"hel", b"lo "]))
    assert first == Written("ok", 6, first.upload)
    assert first.upload.offset == 6 and not first.upload.complete
    assert s.data(up.id) == b"hello " and s.store.get(up.id) == first.upload
    assert "write" not in s.info(up.id)
    # data moves the expiry forward
    assert first.upload.expires is not None and up.expires is not None
    assert first.upload.expires >= up.expires
    assert s.completed == []
    second = s.store.write(up.id, 6, Source([b"world"]), announced=5)
    assert second.outcome == "ok" and second.received == 5
    assert second.upload.complete and second.upload.offset == 11 and second.upload.expires is None
    assert s.data(up.id) == b"hello world"
    # finishing ran on_complete, once, with the finished upload
    assert s.completed == [second.upload] and s.info(up.id)["notified"] is True
    # a finished upload takes an empty write at its end, nothing more
    assert s.store.write(up.id, 11, Source([b""])).outcome == "ok"
    assert s.store.write(up.id, 11, Source([b"!"])).outcome == "too-large"
    assert s.data(up.id) == b"hello world" and len(s.completed) == 1


def test_offset_mismatch(s: Store) -> None:
    up = s.store.create(10, None)
    s.store.write(up.id, 0, [b"abc"])
    for wrong in (0, 2, 4, 10):
        src = Source([b"xyz"])
        with pytest.raises(OffsetMismatch) as e:
            s.store.write(up.id, wrong, src)
        assert e.value.offset == 3 and src.taken == 0  # refused before reading anything
    assert s.data(up.id) == b"abc" and s.store.get(up.id).offset == 3  # type: ignore[union-attr]


def test_too_large(s: Store) -> None:
    up = s.store.create(5, None)
    s.store.write(up.id, 0, [b"ab"])
    # announced too long: refused before reading
    src = Source([b"cde"])
    w = s.store.write(up.id, 2, src, announced=4)
    assert (w.outcome, w.received, src.taken) == ("too-large", 0, 0)
    # found too long while reading: nothing of it is kept, and the rest is not read
    src = Source([b"cd", b"efg", b"h"])
    w = s.store.write(up.id, 2, src)
    assert w.outcome == "too-large" and w.received == 2 and src.taken == 2
    assert w.upload.offset == 2 and s.data(up.id) == b"ab"
    assert s.store.write(up.id, 2, [b"cde"]).upload.complete and s.data(up.id) == b"abcde"


def test_checksum(s: Store) -> None:
    up = s.store.create(8, None)
    w = s.store.write(up.id, 0, [b"ab", b"cd"], sha1(b"abcd"))
    assert w.outcome == "ok" and w.upload.offset == 4
    w = s.store.write(up.id, 4, [b"efgX"], sha1(b"efgh"))
    assert w.outcome == "mismatch" and w.received == 4 and w.upload.offset == 4
    assert s.data(up.id) == b"abcd" and "write" not in s.info(up.id)
    assert s.store.write(up.id, 4, [b"efgh"], sha1(b"efgh")).upload.complete
    assert s.data(up.id) == b"abcdefgh" and len(s.completed) == 1


def test_source_closed_keeps_what_arrived_unless_verified(s: Store) -> None:
    up = s.store.create(10, None)
    w = s.store.write(up.id, 0, Source([b"abc", b"de"], then=SourceClosed()))
    assert (w.outcome, w.received, w.upload.offset) == ("closed", 5, 5)
    assert s.data(up.id) == b"abcde"
    w = s.store.write(up.id, 5, Source([b"fgh"], then=SourceClosed()), sha1(b"fghij"))
    assert (w.outcome, w.received, w.upload.offset) == ("closed", 3, 5)
    assert s.data(up.id) == b"abcde" and "write" not in s.info(up.id)
    # a source that breaks off after the last byte finishes the upload, but on_complete waits
    # for the next settle (as it did before the split: the request failed)
    w = s.store.write(up.id, 5, Source([b"fghij"], then=SourceClosed()))
    assert w.outcome == "closed" and w.upload.complete and s.completed == []
    assert s.store.settle(up.id) is not None and len(s.completed) == 1


def test_other_errors_keep_nothing_and_propagate(s: Store) -> None:
    up = s.store.create(10, None)
    s.store.write(up.id, 0, [b"abc"])
    with pytest.raises(RuntimeError, match="disk on fire"):
        s.store.write(up.id, 3, Source([b"def"], then=RuntimeError("disk on fire")))
    assert s.data(up.id) == b"abc" and s.info(up.id)["offset"] == 3
    assert "write" not in s.info(up.id)
    assert s.store.write(up.id, 3, [b"defghij"]).upload.complete


def test_on_complete_error_is_logged_not_retried(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    calls: List[str] = []

    def boom(upload: Upload) -> None:
        calls.append(upload.id)
        raise RuntimeError("boom")

    files = FileStore(tmp_path, 60.0, boom, 60.0)
    up = files.create(2, None)
    assert files.write(up.id, 0, [b"ok"]).upload.complete
    assert any("on_complete raised" in r.getMessage() and r.name == "mummyx.tus"
               for r in caplog.records)
    files.sweep()
    files.settle(up.id)
    assert calls == [up.id]


# ---- crash recovery ----

def test_crash_during_a_write_is_settled(s: Store) -> None:
    up = s.store.create(10, None)
    # the process died after 6 bytes of an unverified write: they count
    s.set_info(up.id, write={"start": 0, "verify": False})
    (s.directory / up.id).write_bytes(b"abcdef")
    assert s.store.get(up.id).offset == 0  # type: ignore[union-attr]  # get does not settle
    assert s.store.settle(up.id).offset == 6  # type: ignore[union-attr]
    assert "write" not in s.info(up.id)
    # ... after 3 bytes of a verified one: undone, by the sweeper this time
    s.set_info(up.id, write={"start": 6, "verify": True})
    (s.directory / up.id).write_bytes(b"abcdefXYZ")
    assert s.store.sweep() == 0
    assert s.info(up.id)["offset"] == 6 and s.data(up.id) == b"abcdef"
    # the data lost committed bytes (power loss, no fsync): the offset goes back
    os.truncate(s.directory / up.id, 4)
    with pytest.raises(OffsetMismatch) as e:
        s.store.write(up.id, 6, [b"ghij"])
    assert e.value.offset == 4
    assert s.store.write(up.id, 4, [b"efghij"]).upload.complete and len(s.completed) == 1
    # the process died while on_complete ran: the next settle runs it again, once
    s.set_info(up.id, notified=False)
    assert s.store.settle(up.id) is not None and len(s.completed) == 2
    assert s.store.settle(up.id) is not None and len(s.completed) == 2


def test_sweep_removes_old_leftovers_of_crashes(s: Store) -> None:
    up = s.store.create(3, None)
    stray = "ab" * 16
    for name in (stray, stray + ".lock", up.id + ".info.1234abcd.tmp", "notes.txt"):
        (s.directory / name).write_bytes(b"")
    assert s.store.sweep() == 0 and len(s.names()) == 7  # too young to be leftovers
    old = time.time() - 2 * 3600
    for name in s.names():
        os.utime(s.directory / name, (old, old))
    assert s.store.sweep() == 0
    assert s.names() == sorted([up.id, up.id + ".info", up.id + ".lock", "notes.txt"])


# ---- expiry ----

def sweepers() -> List[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "mummyx-tus-sweeper"]


def test_expiry_by_the_sweeper(tmp_path: Path) -> None:
    st = Store(tmp_path, expire_after=0.3, sweep_interval=0.05)
    before = len(sweepers())
    try:
        stale = st.store.create(10, None)
        done = st.store.create(2, None)
        assert st.store.write(done.id, 0, [b"ok"]).upload.complete
        st.store.start()
        st.store.start()  # idempotent: one thread
        assert len(sweepers()) == before + 1
        # nothing here calls sweep(): the thread removes the unfinished upload on its own
        deadline = time.monotonic() + 5
        while st.store.get(stale.id) is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert st.store.get(stale.id) is None
        assert st.names() == sorted([done.id, done.id + ".info", done.id + ".lock"])
        time.sleep(0.4)
        assert st.store.get(done.id) is not None  # finished uploads never expire
    finally:
        st.store.close()
    assert len(sweepers()) == before  # close joined it
    st.store.start()  # no restart after close
    assert len(sweepers()) == before


def test_expired_upload_is_kept_until_removed(tmp_path: Path) -> None:
    st = Store(tmp_path, expire_after=0.2)
    up = st.store.create(10, None)
    time.sleep(0.3)
    # get answers with the record, expired or not: the caller decides (410, or None)
    got = st.store.get(up.id)
    assert got is not None and got.expires is not None and got.expires <= time.time()
    st.set_info(up.id, write={"start": 0, "verify": False})
    (tmp_path / up.id).write_bytes(b"abc")
    assert st.store.settle(up.id).offset == 0  # type: ignore[union-attr]  # expired: left alone
    assert st.store.remove_if_expired(up.id) is True
    assert st.store.get(up.id) is None and st.names() == []
    assert st.store.remove_if_expired(up.id) is False
    fresh = Store(tmp_path, expire_after=60).store.create(1, None)
    assert st.store.remove_if_expired(fresh.id) is False  # not expired
    assert st.store.sweep() == 0 and st.store.get(fresh.id) is not None


# ---- remove ----

def test_remove(s: Store) -> None:
    up = s.store.create(4, None)
    s.store.write(up.id, 0, [b"ab"])
    assert s.store.remove(up.id) is True
    assert s.names() == [] and s.store.get(up.id) is None
    assert s.store.remove(up.id) is False
    with pytest.raises(Gone):
        s.store.write(up.id, 2, [b"cd"])
    # a finished upload whose data file on_complete moved away can be removed too
    done = s.store.create(1, None)
    s.store.write(done.id, 0, [b"x"])
    os.rename(done.path, s.directory.parent / "moved")
    assert s.store.remove(done.id) is True and s.names() == []


# ---- concurrent writers ----

def hold_lock(s: Store, upload_id: str) -> int:
    """Take the upload's flock as another process would; returns the fd to close."""
    fd = os.open(s.directory / (upload_id + ".lock"), os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def test_a_held_lock_makes_writers_and_removers_busy(s: Store) -> None:
    up = s.store.create(4, None)
    fd = hold_lock(s, up.id)
    try:
        src = Source([b"abcd"])
        with pytest.raises(Busy):
            s.store.write(up.id, 0, src)
        assert src.taken == 0
        with pytest.raises(Busy):
            s.store.remove(up.id)
        s.set_info(up.id, expires=time.time() - 1)  # expired, but locked: skipped
        assert s.store.sweep() == 0 and s.store.remove_if_expired(up.id) is False
        assert s.store.get(up.id) is not None
    finally:
        os.close(fd)
    assert s.store.write(up.id, 0, [b"abcd"]).upload.complete and s.data(up.id) == b"abcd"


def test_second_writer_is_busy_then_finds_the_offset_moved(s: Store) -> None:
    up = s.store.create(6, None)
    inside = threading.Event()
    go_on = threading.Event()
    result: List[Written] = []

    def slow() -> Iterator[bytes]:
        yield b"abc"
        inside.set()  # the first write is under way, holding the lock
        assert go_on.wait(5)
        yield b"def"

    first = threading.Thread(target=lambda: result.append(s.store.write(up.id, 0, slow())))
    first.start()
    try:
        assert inside.wait(5)
        assert "write" in s.info(up.id)
        other = Source([b"XYZXYZ"])
        with pytest.raises(Busy):
            s.store.write(up.id, 0, other)
        assert other.taken == 0
    finally:
        go_on.set()
        first.join(5)
    assert result[0].outcome == "ok" and result[0].upload.complete
    with pytest.raises(OffsetMismatch) as e:
        s.store.write(up.id, 0, [b"XYZXYZ"])
    assert e.value.offset == 6 and s.data(up.id) == b"abcdef" and len(s.completed) == 1


def test_racing_writers_never_corrupt(s: Store) -> None:
    size = 256 * 1024
    up = s.store.create(size, None)
    n = 8
    barrier = threading.Barrier(n)
    outcomes: Dict[int, Any] = {}

    def writer(i: int) -> None:
        def chunks() -> Iterator[bytes]:
            for _ in range(size // 4096):
                yield bytes([i]) * 4096
                time.sleep(0)  # let the others run mid-write

        barrier.wait()
        try:
            outcomes[i] = s.store.write(up.id, 0, chunks()).outcome
        except (Busy, OffsetMismatch) as e:
            outcomes[i] = type(e)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    winners = [i for i, o in outcomes.items() if o == "ok"]
    assert len(winners) == 1, outcomes
    assert all(o in ("ok", Busy, OffsetMismatch) for o in outcomes.values()), outcomes
    assert s.data(up.id) == bytes([winners[0]]) * size
    assert len(s.completed) == 1 and s.completed[0].offset == size


def test_parse_metadata_is_shared() -> None:
    assert parse_metadata("a YQ==, b") == {"a": b"a", "b": b""}
    with pytest.raises(ValueError):
        parse_metadata("a !!")
