"""The sandbox runner (execution/runners.py) kept between builds, as a Ray worker keeps it: what
it remembers for one build must not outlive a `cache gc` that may run between two."""

from __future__ import annotations

from mlbuild.actions import Action
from mlbuild.execution.executors import BUILTIN_EXECUTORS, ExecutorContext
from mlbuild.execution.processes import ProcessRunner
from mlbuild.execution.runners import ActionRequest, SandboxRunner
from mlbuild.storage.local import LocalCache


def test_the_empty_log_is_stored_again_in_the_next_build(tmp_path):
    """A silent action's logs are the empty blob, stored once per build; after `finish` (the end
    of a build, when a gc may empty the CAS) the next build stores it again."""
    cache = LocalCache(tmp_path / "cache")
    context = ExecutorContext(processes=ProcessRunner(), cas=cache.cas, lock=cache.lock, cache_root=cache.root)
    runner = SandboxRunner(context, BUILTIN_EXECUTORS, tmp_path, cache.root / "sandbox")
    action = Action(label="//p:t", mnemonic="Command", implementation="command/1",
                    argv=("/bin/sh", "-c", "echo x > out/p/t/o.txt"), outputs=("out/p/t/o.txt",), network=True)
    request = ActionRequest(action, "key", (), {})
    for _ in range(2):
        result = runner.run(request).result
        assert result.stdout_digest == result.stderr_digest
        assert cache.cas.contains(result.stdout_digest)
        runner.finish()
        cache.cas.blob_path(result.stdout_digest).unlink()  # what `cache gc --max-size 0` does
