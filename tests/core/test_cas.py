"""The local CAS and action cache: round trips, verification, corruption, LRU GC, atomic writes."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlbuild.actions import canonical_encoding
from mlbuild.hashing import StatCache, digest_bytes, digest_file
from mlbuild.storage.action_cache import ActionResult, OutputFile
from mlbuild.storage import atomic
from mlbuild.storage.atomic import write_atomically
from mlbuild.storage.local import LocalCache

from .conftest import check_cache_consistent


@pytest.fixture
def cache(tmp_path) -> LocalCache:
    return LocalCache(tmp_path / "cache")


def _files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _corrupt(path: Path, data: bytes) -> None:
    """What a disk fault or a user editing a hardlinked output does: rewrite the blob in place."""
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.write(data)
        f.truncate()


# -- round trips -----------------------------------------------------------------------------

@settings(max_examples=50, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=4096))
def test_bytes_round_trip(cache, data):
    digest = cache.cas.put_bytes(data)
    assert digest == digest_bytes(data)
    assert cache.cas.blob_path(digest).read_bytes() == data
    assert cache.cas.contains(digest)
    assert cache.cas.verify(digest)
    assert cache.cas.put_bytes(data) == digest  # idempotent


@pytest.mark.parametrize("executable", [False, True])
@pytest.mark.parametrize("take", [False, True])
def test_file_round_trip(cache, tmp_path, executable, take):
    src = tmp_path / "src.bin"
    data = os.urandom(10_000) + b"end"
    src.write_bytes(data)
    digest = cache.cas.put_file(src, executable=executable, take=take)
    assert digest == digest_bytes(data)
    blob = cache.cas.blob_path(digest, executable)
    assert blob.read_bytes() == data
    assert stat.S_IMODE(blob.stat().st_mode) == (0o555 if executable else 0o444)
    assert cache.cas.verify(digest, executable)
    assert not cache.cas.contains(digest, not executable)  # the two modes are two files
    if not take:
        assert src.stat().st_ino != blob.stat().st_ino
        assert os.access(src, os.W_OK) and stat.S_IMODE(src.stat().st_mode) & 0o200
    dest = tmp_path / "out" / "materialized.bin"
    cache.cas.materialize(digest, dest, executable)
    assert dest.read_bytes() == data
    assert os.access(dest, os.X_OK) == executable
    check_cache_consistent(cache.root)


def test_materialize_replaces_whatever_is_at_the_destination(cache, tmp_path):
    digest = cache.cas.put_bytes(b"new")
    dest = tmp_path / "d"
    dest.mkdir()
    (dest / "junk").write_text("x")
    cache.cas.materialize(digest, dest)
    assert dest.read_bytes() == b"new"
    link = tmp_path / "l"
    link.symlink_to(tmp_path / "elsewhere")
    cache.cas.materialize(digest, link)
    assert not link.is_symlink() and link.read_bytes() == b"new"


# -- adopt: nothing unverified enters the store --------------------------------------------

def test_adopt_rejects_wrong_digest_and_leaves_nothing(cache):
    data = b"downloaded bytes"
    good = digest_bytes(data)
    wrong = digest_bytes(b"what the checksum promised")
    before = _files_under(cache.root)
    tmp = cache.cas.incoming_path(wrong)
    tmp.write_bytes(data)
    assert cache.cas.adopt(tmp, wrong) is False
    assert not tmp.exists()
    assert not cache.cas.contains(wrong) and not cache.cas.contains(good)
    assert _files_under(cache.root) == before

    tmp = cache.cas.incoming_path(good)
    tmp.write_bytes(data)
    assert cache.cas.adopt(tmp, good) is True
    assert not tmp.exists()
    assert cache.cas.blob_path(good).read_bytes() == data
    check_cache_consistent(cache.root)


def test_adopt_executable(cache):
    data = b"#!/bin/sh\necho hi\n"
    digest = digest_bytes(data)
    tmp = cache.cas.incoming_path(digest)
    tmp.write_bytes(data)
    assert cache.cas.adopt(tmp, digest, executable=True)
    assert os.access(cache.cas.blob_path(digest, True), os.X_OK)


# -- corruption ------------------------------------------------------------------------------

@pytest.mark.parametrize("replacement", [b"X" * 11, b"short", b"much longer than before"])
def test_verify_detects_and_removes_a_corrupt_blob(cache, replacement):
    digest = cache.cas.put_bytes(b"hello world")
    assert cache.cas.verify(digest)  # the stat cache now remembers it as good
    _corrupt(cache.cas.blob_path(digest), replacement)
    assert cache.cas.verify(digest) is False
    assert not cache.cas.blob_path(digest).exists()
    assert cache.cas.verify(digest) is False  # missing is also not verified
    check_cache_consistent(cache.root)


def _entry(cache: LocalCache, key: str, payloads: dict[str, bytes], executable: bool = False) -> ActionResult:
    outputs = tuple(
        OutputFile(name, _put(cache, data, executable), len(data), executable) for name, data in payloads.items()
    )
    result = ActionResult(outputs=outputs, stdout_digest=cache.cas.put_bytes(b""),
                          stderr_digest=cache.cas.put_bytes(b""), duration_s=0.1)
    cache.actions.store(key, result)
    return result


def _put(cache: LocalCache, data: bytes, executable: bool) -> str:
    tmp = cache.root / "scratch"
    tmp.write_bytes(data)
    try:
        return cache.cas.put_file(tmp, executable=executable)
    finally:
        tmp.unlink()


def test_action_cache_round_trip(cache):
    key = digest_bytes(b"key")
    result = _entry(cache, key, {"a.txt": b"a", "sub/b.bin": b"bbb"})
    assert cache.actions.lookup(key) == result
    assert cache.actions.lookup(digest_bytes(b"other")) is None
    assert ActionResult.from_json(result.to_json()) == result


def test_an_entry_keeps_its_key_components_and_gc_takes_them_along(cache):
    key = digest_bytes(b"key")
    result = _entry(cache, key, {"a.txt": b"a"})
    assert cache.actions.key_components(key) is None  # recorded without them
    components = {"argv": ["cat", "in.txt"], "inputs": [["in.txt", digest_bytes(b"a"), False]]}
    cache.actions.store(key, result, canonical_encoding(components))
    assert cache.actions.lookup(key) == result
    assert cache.actions.key_components(key) == components
    legacy_notes = cache.root / "keys" / key[:2] / key  # where mlbuild kept them before
    legacy_notes.parent.mkdir(parents=True)
    legacy_notes.write_bytes(b"{}")
    cache.gc(max_bytes=0)
    assert cache.actions.key_components(key) is None
    assert not (cache.root / "keys").exists()


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
@pytest.mark.parametrize("executable", [False, True])
def test_lookup_drops_an_entry_whose_blob_is_bad(cache, damage, executable):
    key = digest_bytes(b"k")
    result = _entry(cache, key, {"ok.txt": b"fine", "bad.txt": b"will be damaged"}, executable)
    assert cache.actions.lookup(key) == result  # verified once: stat cache holds it
    blob = cache.cas.blob_path(result.outputs[1].digest, executable)
    if damage == "corrupt":
        _corrupt(blob, b"garbage garbage")
    else:
        blob.unlink()
    assert cache.actions.lookup(key) is None
    assert not cache.actions.entry_path(key).exists()
    assert not blob.exists()
    check_cache_consistent(cache.root)


@pytest.mark.parametrize("manifest", [b"", b"{", b"[]", b'{"version": 999}', b'{"version": 1, "outputs": 3}'])
def test_lookup_drops_a_malformed_entry(cache, manifest):
    key = digest_bytes(b"k")
    path = cache.actions.entry_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(manifest)
    assert cache.actions.lookup(key) is None
    assert not path.exists()


# -- garbage collection ---------------------------------------------------------------------

def _age(path: Path, seconds_ago: float) -> None:
    t = time.time() - seconds_ago
    os.utime(path, (t, t))


def test_gc_evicts_least_recently_used_entries_first(cache):
    size = 1000
    keys = [digest_bytes(f"key{i}".encode()) for i in range(6)]
    results = {}
    for i, key in enumerate(keys):
        results[key] = _entry(cache, key, {"o": bytes([i]) * size})
        _age(cache.actions.entry_path(key), 1000 - i * 100)  # keys[0] oldest, keys[5] newest
    unreferenced = cache.cas.put_bytes(b"z" * 500)
    # A lookup is a use: the oldest entry becomes the most recent one.
    assert cache.actions.lookup(keys[0]) is not None

    report = cache.gc(max_bytes=3 * size)  # the (empty) log blob is 0 bytes
    kept = {k for k in keys if cache.actions.entry_path(k).exists()}
    assert kept == {keys[0], keys[5], keys[4]}
    assert report.entries_removed == 3
    assert report.bytes_kept <= 3 * size
    for key in keys:
        blob = cache.cas.blob_path(results[key].outputs[0].digest)
        assert blob.exists() == (key in kept)
    assert not cache.cas.contains(unreferenced)
    for key in kept:
        assert cache.actions.lookup(key) == results[key]
    check_cache_consistent(cache.root)


def test_gc_keeps_blobs_shared_with_a_kept_entry(cache):
    shared = b"s" * 800
    old = _entry(cache, digest_bytes(b"old"), {"shared": shared, "own": b"o" * 800})
    new = _entry(cache, digest_bytes(b"new"), {"shared": shared})
    _age(cache.actions.entry_path(digest_bytes(b"old")), 500)
    cache.gc(max_bytes=1000)
    assert cache.actions.lookup(digest_bytes(b"new")) == new
    assert cache.actions.lookup(digest_bytes(b"old")) is None
    assert cache.cas.contains(old.outputs[0].digest)  # shared, still named by `new`
    assert not cache.cas.contains(old.outputs[1].digest)
    check_cache_consistent(cache.root)


def test_gc_to_zero_empties_the_cache_and_it_still_works(cache):
    for i in range(3):
        _entry(cache, digest_bytes(bytes([i])), {"o": bytes([i]) * 100}, executable=bool(i % 2))
    report = cache.gc(0)
    assert report.entries_removed == 3
    stats = cache.stats()
    assert (stats.blobs, stats.entries, stats.blob_bytes) == (0, 0, 0)
    again = _entry(cache, digest_bytes(b"again"), {"o": b"fresh"})
    assert cache.actions.lookup(digest_bytes(b"again")) == again


def test_gc_removes_unreadable_entries(cache):
    key = digest_bytes(b"bad")
    path = cache.actions.entry_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not json")
    report = cache.gc(10 ** 9)
    assert not path.exists() and report.entries_removed == 1


# -- atomic writes ---------------------------------------------------------------------------

def test_atomic_write_leaves_no_temp_file(tmp_path):
    dest = tmp_path / "d" / "file"
    write_atomically(dest, b"one")
    write_atomically(dest, b"two", mode=0o644)
    assert dest.read_bytes() == b"two"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o644
    assert [p.name for p in dest.parent.iterdir()] == ["file"]


def test_atomic_write_interrupted_keeps_the_old_file(tmp_path, monkeypatch):
    dest = tmp_path / "file"
    write_atomically(dest, b"old")
    write = os.write

    def interrupted(fd, data):  # part of the new bytes written, then Ctrl-C
        write(fd, bytes(data[:7]))
        raise KeyboardInterrupt

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(atomic.os, "write", interrupted)
        write_atomically(dest, b"partial new content")
    assert dest.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_a_taken_file_becomes_its_blob_by_a_hardlink(cache, tmp_path):
    src = tmp_path / "out.txt"
    src.write_bytes(b"an output")
    blob = cache.cas.blob_path(cache.cas.put_file(src, executable=True, take=True), executable=True)
    assert blob.stat().st_ino == src.stat().st_ino
    assert stat.S_IMODE(blob.stat().st_mode) == 0o555


def test_a_taken_file_is_copied_where_it_cannot_be_linked(cache, tmp_path, monkeypatch):
    src = tmp_path / "out.txt"
    src.write_bytes(b"an output on another filesystem")

    def cross_device(source, dest):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    blob = cache.cas.blob_path(cache.cas.put_file(src, take=True))
    assert blob.read_bytes() == b"an output on another filesystem"
    assert blob.stat().st_ino != src.stat().st_ino and stat.S_IMODE(blob.stat().st_mode) == 0o444


def test_a_blob_published_meanwhile_by_another_build_is_kept(cache, tmp_path, monkeypatch):
    """Between the check for the blob and the link, another build published the same bytes."""
    (tmp_path / "theirs").write_bytes(b"same bytes")
    digest = cache.cas.put_file(tmp_path / "theirs")
    theirs = cache.cas.blob_path(digest).stat().st_ino
    mine = tmp_path / "mine"
    mine.write_bytes(b"same bytes")
    monkeypatch.setattr(os.path, "exists", lambda path: False)  # the check ran before they published
    assert cache.cas.put_file(mine, take=True) == digest
    assert cache.cas.blob_path(digest).stat().st_ino == theirs


def test_cache_operations_leave_no_temp_files(cache, tmp_path):
    for i in range(5):
        _entry(cache, digest_bytes(bytes([i])), {"a": os.urandom(100), "b": b"same"}, executable=bool(i % 2))
        src = tmp_path / f"s{i}"
        src.write_bytes(os.urandom(50))
        cache.cas.put_file(src, take=True)
    cache.stat_cache.save()
    cache.gc(400)
    leftovers = [p for p in cache.root.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
    check_cache_consistent(cache.root)


# -- the stat cache that `verify` relies on --------------------------------------------------

def test_stat_cache_rehashes_a_changed_file(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"one")
    stats = StatCache(tmp_path / "stat.pickle")
    assert stats.digest(path) == digest_bytes(b"one")
    path.write_bytes(b"two, longer")
    assert stats.digest(path) == digest_bytes(b"two, longer")
    os.replace(tmp_path / "f", tmp_path / "g")
    (tmp_path / "g").rename(path)
    stats.save()
    assert StatCache(tmp_path / "stat.pickle").digest(path) == digest_file(path)


def test_stat_cache_survives_a_garbage_file(tmp_path):
    (tmp_path / "stat.pickle").write_bytes(b"\x80garbage")
    path = tmp_path / "f"
    path.write_bytes(b"x")
    assert StatCache(tmp_path / "stat.pickle").digest(path) == digest_bytes(b"x")
