"""Group commit: entries recorded in batches, callbacks only once their entry is on disk, and a
failure to record reported by flush() without leaving a caller (or a lock) waiting forever."""

from __future__ import annotations

import threading

import pytest

from mlbuild.storage.action_cache import ActionResult, OutputFile
from mlbuild.storage.group_commit import GroupCommit
from mlbuild.storage.local import LocalCache


def result_in(cache: LocalCache, text: str) -> ActionResult:
    digest = cache.cas.put_bytes(text.encode())
    return ActionResult(outputs=(OutputFile("o.txt", digest, len(text)),))


def test_callbacks_run_once_the_entry_is_recorded(tmp_path):
    cache = LocalCache(tmp_path / "cache")
    commits = GroupCommit(cache.actions)
    seen = []
    lock = threading.Lock()

    def check(key: str):
        def callback():
            with lock:  # the committer thread calls back; record what it could see then
                seen.append((key, cache.actions.lookup(key) is not None))
        return callback

    keys = [f"{i:02x}" * 32 for i in range(20)]
    for i, key in enumerate(keys):
        commits.store(key, result_in(cache, f"output {i}\n"), then=check(key))
        commits.after(key, check(key))  # pending (or already recorded): runs once it is
    commits.flush()
    assert sorted(seen) == sorted((key, True) for key in keys for _ in range(2))
    ran = []
    commits.after("ff" * 32, lambda: ran.append(True))  # nothing pending: runs at once
    assert ran == [True]


def test_a_failed_batch_still_calls_back_and_flush_raises(tmp_path):
    cache = LocalCache(tmp_path / "cache")
    commits = GroupCommit(cache.actions)
    key = "ab" * 32
    cache.actions.entry_path(key).mkdir(parents=True)  # a directory where the entry must go
    released = []
    commits.store(key, result_in(cache, "x\n"), then=lambda: released.append(key))
    with pytest.raises(OSError):
        commits.flush()
    assert released == [key]
    commits.flush()  # the error is reported once; the committer goes on
