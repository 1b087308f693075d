"""The sandbox runner (execution/runners.py): what it keeps from one action for the next (log
directories) and, kept between builds as a Ray worker keeps it, what it remembers for one build,
which must not outlive a `cache gc` that may run between two."""

from __future__ import annotations

import os

import pytest

from mlbuild.actions import Action
from mlbuild.execution.executors import BUILTIN_EXECUTORS, ExecutorContext
from mlbuild.execution.processes import ProcessRunner
from mlbuild.execution.runners import ActionRequest, SandboxRunner
from mlbuild.hashing import digest_bytes
from mlbuild.storage.local import LocalCache


def _runner(tmp_path) -> tuple[SandboxRunner, LocalCache]:
    cache = LocalCache(tmp_path / "cache")
    context = ExecutorContext(processes=ProcessRunner(), cas=cache.cas, lock=cache.lock, cache_root=cache.root)
    return SandboxRunner(context, BUILTIN_EXECUTORS, tmp_path, cache.root / "sandbox"), cache


def _shell(script: str, is_test: bool = False) -> ActionRequest:
    action = Action(label="//p:t", mnemonic="Command", implementation="command/1",
                    argv=("/bin/sh", "-c", script), network=True)
    return ActionRequest(action, "key", (), {}, is_test=is_test)


def _log_directories(cache: LocalCache) -> list[str]:
    return [name for name in os.listdir(cache.root / "sandbox") if name.endswith(".logs")]


def test_an_action_gets_its_own_logs_in_a_log_directory_an_earlier_one_used(tmp_path):
    """The directory and its empty logs serve the next action as they are; what an action wrote
    (stored, or left by a failure) never reaches the next action's logs."""
    runner, cache = _runner(tmp_path)
    first = runner.run(_shell("echo to stdout")).result
    assert first.stdout_digest == digest_bytes(b"to stdout\n")
    [logs] = _log_directories(cache)
    empty_stderr = os.stat(cache.root / "sandbox" / logs / "stderr").st_ino
    failed = runner.run(_shell("echo broken >&2; exit 3", is_test=True)).result
    assert failed.exit_code == 1 and failed.stderr_digest == digest_bytes(b"broken\n")
    assert failed.stdout_digest == digest_bytes(b"")
    empty_stdout = os.stat(cache.root / "sandbox" / logs / "stdout").st_ino
    silent = runner.run(_shell("true")).result
    assert silent.stdout_digest == silent.stderr_digest == digest_bytes(b"")
    assert _log_directories(cache) == [logs]
    assert os.stat(cache.root / "sandbox" / logs / "stdout").st_ino == empty_stdout  # used as it was
    assert os.stat(cache.root / "sandbox" / logs / "stderr").st_ino != empty_stderr  # the failure's was discarded
    assert cache.cas.verify(first.stdout_digest) and cache.cas.verify(failed.stderr_digest)  # the logs taken are intact
    runner.finish()
    assert _log_directories(cache) == []


def test_a_log_directory_an_action_tampered_with_is_not_lent_again(tmp_path):
    runner, cache = _runner(tmp_path)
    with pytest.raises(IsADirectoryError):  # a directory in place of a log fails the action, as it always did
        runner.run(_shell('rm "$PWD.logs/stdout" && mkdir "$PWD.logs/stdout"'))
    assert _log_directories(cache) == []
    assert runner.run(_shell("echo fine")).result.stdout_digest == digest_bytes(b"fine\n")


def test_the_empty_log_is_stored_again_in_the_next_build(tmp_path):
    """A silent action's logs are the empty blob, stored once per build; after `finish` (the end
    of a build, when a gc may empty the CAS) the next build stores it again."""
    runner, cache = _runner(tmp_path)
    action = Action(label="//p:t", mnemonic="Command", implementation="command/1",
                    argv=("/bin/sh", "-c", "echo x > out/p/t/o.txt"), outputs=("out/p/t/o.txt",), network=True)
    request = ActionRequest(action, "key", (), {})
    for _ in range(2):
        result = runner.run(request).result
        assert result.stdout_digest == result.stderr_digest
        assert cache.cas.contains(result.stdout_digest)
        runner.finish()
        cache.cas.blob_path(result.stdout_digest).unlink()  # what `cache gc --max-size 0` does
