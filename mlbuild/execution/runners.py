"""The runner stack: how an action that is not up to date gets its result, one tier per class.

In the spirit of Pants' command runners, every tier is a *runner* with one method:

    run(request: ActionRequest) -> Outcome

and a cache tier wraps the next one (`WrappingRunner`): it answers from its store when it
can, else asks the runner it wraps and keeps what comes back. `runner_stack` below is the one place the tiers
are composed:

    LocalCacheRunner        local action cache, under a per-key lock shared by every mlbuild;
                            entries recorded in batches (storage/group_commit.py)
      RemoteCacheRunner     the remote cache (only when one is configured)
        SandboxRunner       stages the inputs in a fresh sandbox and runs the action's executor

What a runner receives, `ActionRequest` (frozen):
  action       the Action, plain data: argv and env (with {{sandbox}} and toolchain-root
               placeholders), sources, deps, declared outputs, `executor` and its `params`,
               `resources` (cpus, gpus, memory_mb, exclusive: already reserved on this machine
               by the scheduler before `run` is called), `timeout_s`, `tags`, `toolchains`
               ((name, fingerprint digest) pairs, part of the key) and `toolchain_roots`
               ((name, install dir on this machine) behind the placeholders, not keyed);
  key          its action key (execution/keys.py);
  inputs       every input with its digest, at the sandbox path the action reads it;
  dep_results  dependency label -> its ActionResult; its blobs are in the local CAS, or (build
               without the bytes) in the remote one, which `fetch` brings them from;
  is_test      a test or benchmark: failing is a result (exit_code 1, `failure` set), not an error;
  cacheable    False when the action is tagged no-cache or the user forced it to run: no tier
               may answer from a cache or store the result;
  download     bring the result's blobs here even if it was found or made remotely (the
               requested targets' with --remote-download=toplevel, every one with all);
  last_duration_s  how long it ran last time, if known (a remote executor keeps tiny ones here);
  key_encoding what `key` is a digest of, if the caller has it (the builder computed it for the key).

What it returns: an `Outcome` whose `status` says where the result came from (LOCAL_HIT,
REMOTE_HIT or EXECUTED, with the `node` when a remote executor ran it) and whose `result` is an
ActionResult whose blobs are in the local CAS when `download` was asked or it ran here (the
builder lays the output tree out from there), else in the remote CAS. A failure that is not a
test's raises ActionError (or another UserError) with the message the user will see.

Also on every runner:
  cancel()     stop running actions now (fail-fast, Ctrl-C); a wrapping tier forwards it;
  finish()     at the end of each build: wait for background work (the runner stays usable).

To add an executor (Ray, a container), write a runner that takes the SandboxRunner's place at
the bottom of the stack, or wraps it and delegates what it does not handle, and pass it to
`runner_stack` (the Builder's `runner` argument, or its `executor` factory for one that wraps
the SandboxRunner: distributed/ray_runner.py). It must honour the contract above: write
results' blobs into the local CAS (or fetch them there) before returning, and read the action's
inputs only from `inputs`/`dep_results`, the workspace sources and the CAS. In-process pieces an
executor needs (process runner, CAS, locks, distdirs, URL rewrites, warnings, progress) are in
the `ExecutorContext` the SandboxRunner holds.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Protocol

from ..actions import Action, Input, canonical_encoding
from ..errors import ActionError
from ..storage.action_cache import ActionResult, OutputFile
from ..storage.group_commit import GroupCommit
from ..storage.local import LocalCache
from .executors import Executor, ExecutorContext
from .isolation import run_confined
from .outcome import Outcome, Status
from .sandbox import Disposal, Sandbox, sweep_stale

_LOGS = ("stdout", "stderr")  # what an executor writes into its logs directory


@dataclass(frozen=True)
class ActionRequest:
    action: Action
    key: str
    inputs: tuple[Input, ...]
    dep_results: Mapping[str, ActionResult]
    is_test: bool = False
    cacheable: bool = True
    download: bool = True
    last_duration_s: float | None = None
    key_encoding: bytes | None = None  # encoded_key_components() when the caller has it already

    def encoded_key_components(self) -> bytes:
        """What the key is a digest of, recorded with the cache entry for `mlbuild explain`."""
        if self.key_encoding is not None:
            return self.key_encoding
        return canonical_encoding(self.action.key_components(self.inputs))


class Runner(Protocol):
    def run(self, request: ActionRequest) -> Outcome: ...

    def cancel(self) -> None: ...

    def finish(self) -> None: ...


class WrappingRunner:
    """A tier that answers some requests itself and hands the rest to the runner it wraps."""

    def __init__(self, inner: Runner):
        self.inner = inner

    def run(self, request: ActionRequest) -> Outcome:
        return self.inner.run(request)

    def cancel(self) -> None:
        self.inner.cancel()

    def finish(self) -> None:
        self.inner.finish()


class LocalCacheRunner(WrappingRunner):
    """The local action cache. The per-key lock spans lookup, the tiers below and the recording
    of the entry, so two mlbuild processes wanting one action run it once: the second finds the
    first's entry. Entries of executed actions are recorded by a group commit, which releases
    the lock once the entry is on disk; the builder reports the action as built only then."""

    def __init__(self, cache: LocalCache, inner: Runner, commits: GroupCommit):
        super().__init__(inner)
        self.cache = cache
        self.commits = commits

    def run(self, request: ActionRequest) -> Outcome:
        if not request.cacheable:
            return self.inner.run(request)
        lock = self.cache.lock(request.key)
        lock.acquire()
        release = lock.release
        try:
            result = self.cache.actions.lookup(request.key)
            if result is not None:
                return Outcome(Status.LOCAL_HIT, result)
            outcome = self.inner.run(request)
            if (outcome.status == Status.EXECUTED and outcome.result.exit_code == 0
                    and (outcome.node is None  # ran here: its blobs are here; a remote node's may stay there
                         or self.cache.cas.holds(outcome.result))):
                self.commits.store(request.key, outcome.result, then=release,
                                   key_components=request.encoded_key_components())
                release = None
            return outcome
        finally:
            if release is not None:
                release()


class RemoteCacheRunner(WrappingRunner):
    """The remote cache: a hit's blobs are verified into the local CAS and its entry recorded
    locally (RemoteCache.fetch), unless the request wants no download; a passing local execution
    is published unless uploads are off (a remote executor's workers publish their own)."""

    def __init__(self, remote, cache: LocalCache, inner: Runner, upload: bool = True):
        super().__init__(inner)
        self.remote = remote
        self.cache = cache
        self.upload = upload

    def run(self, request: ActionRequest) -> Outcome:
        shared = request.cacheable and request.action.remotable
        if shared:
            result = self.remote.fetch(request.key, self.cache, blobs=request.download,
                                       key_components=request.encoded_key_components())
            if result is not None:
                return Outcome(Status.REMOTE_HIT, result)
        outcome = self.inner.run(request)
        if (shared and self.upload and outcome.status == Status.EXECUTED and outcome.node is None
                and outcome.result.exit_code == 0):
            self.remote.publish(request.key, outcome.result, self.cache)
        return outcome


class SandboxRunner:
    """Local execution: stage the inputs in a fresh sandbox, run the action's executor, check
    it left its hardlinked inputs alone, collect the declared outputs into the CAS.

    Inputs staged from the CAS that are not there come from `fetch(digest, executable,
    needed_by)` (the remote cache, under build without the bytes). Without a workspace
    (`workspace_root=None`: a remote worker) the sources come from the CAS too, by digest.
    """

    def __init__(self, context: ExecutorContext, executors: Mapping[str, Executor], workspace_root: Path | None,
                 sandbox_base: Path, fetch: Callable[[str, bool, str], None] | None = None):
        self.context = context
        self.executors = executors
        self.workspace_root = workspace_root
        self.sandbox_base = sandbox_base
        self.fetch = fetch
        sweep_stale(sandbox_base)
        self._disposal = Disposal(sandbox_base)  # used sandboxes' inodes make the next ones
        self._idle_logs: list[Path] = []  # log directories of finished actions, lent to the next ones
        self._logs_lock = threading.Lock()
        self._empty_log: str | None = None  # the empty blob's digest, once stored this build (gc waits for builds)

    def run(self, request: ActionRequest) -> Outcome:
        action = request.action
        from_workspace = set() if self.workspace_root is None else {path for path, _ in action.sources}
        self._fetch_missing(action.label, [(i.digest, i.executable) for i in request.inputs
                                           if i.path not in from_workspace])
        sandbox = Sandbox(self.sandbox_base, action, self._disposal)
        try:
            if self.workspace_root is None:
                sources = dict(action.sources)
                sandbox.stage_from_cas([i for i in request.inputs if i.path in sources], request.dep_results,
                                       self.context.cas)
            else:
                sandbox.stage(self.workspace_root, request.dep_results, self.context.cas)
            logs = self._lend_logs(sandbox)
            try:
                return Outcome(Status.EXECUTED, self._execute(sandbox, logs, request.is_test))
            finally:
                self._give_back_logs(logs)
        finally:
            self._disposal.discard_sandbox(sandbox.root)

    def _lend_logs(self, sandbox: Sandbox) -> Path:
        """A directory for the action's logs, beside its sandbox: one that an earlier action
        used, holding at most its empty logs (which the executor's new_file takes as they are:
        no rename in and out of the spares for each), or a new one."""
        with self._logs_lock:
            if self._idle_logs:
                return self._idle_logs.pop()
        logs = Path(f"{sandbox.root}.logs")
        self._disposal.make_directories(logs)
        return logs

    def _give_back_logs(self, logs: Path) -> None:
        """Keep `logs` for the next action with the empty logs that can serve it as they are;
        the others (taken into the CAS, or holding what a failed action wrote) are discarded,
        and so is the directory where that fails (something other than a file is in its way)."""
        try:
            for name in _LOGS:
                path = f"{logs}/{name}"
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    continue
                if st.st_size or not self._disposal.reusable(path, st):
                    self._disposal.discard_file(path, st)
        except OSError:
            self._disposal.discard(logs)
            return
        with self._logs_lock:
            self._idle_logs.append(logs)

    def _execute(self, sandbox: Sandbox, logs: Path, is_test: bool) -> ActionResult:
        action = sandbox.action
        execution, failure = None, None
        try:
            execution = self.executors[action.executor](self.context, sandbox, logs)
            sandbox.check_inputs_untouched()
            if execution.failure is not None:
                raise ActionError(execution.failure)
        except ActionError as exc:
            if not is_test:
                raise
            failure = str(exc)  # a failed test keeps its logs and outputs, uncached
        try:
            files, directories, symlinks = sandbox.collect(action.label)
        except ActionError:
            if failure is None:
                raise
            files, directories, symlinks = [], [], []
        cas = self.context.cas
        outputs = tuple(
            OutputFile(rel, cas.put_file(path, executable, take=True), size, executable)
            for rel, path, executable, size in files
        )
        return ActionResult(
            outputs=outputs, directories=tuple(directories), symlinks=tuple(symlinks),
            exit_code=0 if failure is None else 1,
            stdout_digest=self._store_log(f"{logs}/stdout"), stderr_digest=self._store_log(f"{logs}/stderr"),
            duration_s=round(execution.duration_s, 3) if execution else 0.0,
            report=execution.report if execution else None, failure=failure,
        )

    def _store_log(self, path: str) -> str | None:
        """The digest of a log the executor wrote, once in the CAS; most are empty, and an empty
        one is neither read nor stored again this build. The file is left for _give_back_logs."""
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            return None
        if size > 0:
            return self.context.cas.put_file(path, take=True)
        if self._empty_log is None:
            self._empty_log = self.context.cas.put_bytes(b"")
        return self._empty_log

    def _fetch_missing(self, label: str, blobs: list[tuple[str, bool]]) -> None:
        """Bring here the blobs to stage that only the remote CAS has."""
        for digest, executable in blobs:
            if not self.context.cas.contains(digest, executable):
                if self.fetch is None:
                    raise ActionError(f"{label}: input blob {digest} is in no cache",
                                      hint="configure the remote cache it was built with, or clean and rebuild")
                self.fetch(digest, executable, label)

    def run_in_foreground(self, action: Action, dep_results: Mapping[str, ActionResult]) -> int:
        """Run an uncached action (`mlbuild run`) with its output streamed; its exit code."""
        self._fetch_missing(action.label, [(o.digest, o.executable) for r in dep_results.values() for o in r.outputs])
        sandbox = Sandbox(self.sandbox_base, action)
        try:
            sandbox.stage(self.workspace_root, dep_results, self.context.cas)
            return run_confined(self.context.processes, sandbox, None, None).exit_code
        finally:
            sandbox.remove()

    def cancel(self) -> None:
        self.context.processes.cancel_all()

    def finish(self) -> None:
        with self._logs_lock:
            idle, self._idle_logs = self._idle_logs, []
        for logs in idle:
            self._disposal.discard(logs)
        self._disposal.finish()
        self._empty_log = None  # a `cache gc` between builds may remove the blob


def runner_stack(cache: LocalCache, remote, bottom: Runner, commits: GroupCommit, *, upload: bool = True) -> Runner:
    """The one place the tiers are composed: local action cache → remote cache → `bottom`."""
    runner = bottom
    if remote is not None:
        runner = RemoteCacheRunner(remote, cache, runner, upload=upload)
    return LocalCacheRunner(cache, runner, commits)
