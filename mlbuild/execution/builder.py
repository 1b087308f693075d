"""The rebuilder: decide for each action whether to reuse or run it, then do so.

For every configured target, in dependency order (the scheduler's job):
  1. compute its inputs' digests (sources via the stat cache, deps from their results) and
     its action key;
  2. up to date? key equal to the last build's and output files untouched → done, inline;
  3. else, under a per-key lock shared with other mlbuild processes: local action cache,
     then the remote cache, else execute in a sandbox, store outputs in the CAS, write the
     action-cache entry last, and publish to the remote;
  4. materialize the outputs by hardlink into mlbuild-out/<config>/<pkg>/<name>/.
Failing tests and benchmarks are never cached; passing ones are, like Bazel's test results.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import filelock

from ..actions import Action, Input, Resources, action_key, canonical_encoding
from ..errors import ActionError, UserError
from ..loading.labels import Label
from ..storage.action_cache import ActionResult, OutputFile
from ..storage.atomic import write_atomically
from .executors import EXECUTORS
from .processes import ProcessRunner
from .sandbox import Sandbox, stage_result, sweep_stale
from .scheduler import Capacity, Node, Outcome, Scheduler
from .state import BuildState, TargetState, intact, snapshot

OUTPUT_ROOT = "mlbuild-out"
CONVENIENCE_LINK = "mlbuild-bin"

# Outcome statuses, as the summary counts them.
UP_TO_DATE, LOCAL_HIT, REMOTE_HIT, EXECUTED = "up-to-date", "cached", "remote", "executed"
FAILED, SKIPPED, NO_ACTION = "failed", "skipped", "no-action"
TEST_FAILED = "test-failed"  # reported, but does not stop the build like FAILED does


@dataclass
class BuildOptions:
    jobs: int = os.cpu_count() or 1
    keep_going: bool = False
    gpus: int = 0
    memory_mb: int = 0
    upload: bool = True
    distdirs: tuple = ()  # directories searched for downloads before any URL
    rewrites: tuple = ()  # (regex, replacement) URL rewrites, e.g. to an internal mirror


@dataclass
class BuildSummary:
    outcomes: dict = field(default_factory=dict)  # Label -> Outcome
    wall_s: float = 0.0

    def count(self, *statuses) -> int:
        return sum(1 for o in self.outcomes.values() if o.status in statuses)

    @property
    def ok(self) -> bool:
        return self.count(FAILED, SKIPPED, TEST_FAILED) == 0

    def failures(self):
        """(label, error or message) of every failed action and failed test."""
        failed = []
        for label, outcome in self.outcomes.items():
            if outcome.status == FAILED:
                failed.append((label, outcome.detail))
            elif outcome.status == TEST_FAILED:
                failed.append((label, outcome.detail.extra.get("failure", f"{label} failed")))
        return failed


class Builder:
    def __init__(self, workspace, cache, configuration, *, remote=None, progress=None, options=None,
                 executors=None, observers=()):
        self.workspace = workspace
        self.cache = cache
        self.configuration = configuration
        self.remote = remote
        self.progress = progress
        self.observers = [o for o in (progress, *observers) if o is not None]  # get every event
        self.options = options or BuildOptions()
        self.output_root = workspace.root / OUTPUT_ROOT / configuration.name
        self.state = BuildState(workspace.state_dir / "state" / f"{configuration.name}.pickle")
        self.runner = ProcessRunner()
        # Deleting a sandbox costs milliseconds of synchronous disk work; a background thread
        # does it while the next actions run, and `build` waits for it before returning.
        self._remover = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlbuild-rm")
        self.sandbox_base = cache.root / "sandbox"
        self.results: dict[str, ActionResult] = {}
        self._keys: dict[str, tuple[str, list[Input]]] = {}
        self._lock = threading.Lock()
        self.executors = executors or EXECUTORS

    # -- public ------------------------------------------------------------------------
    def build(self, graph: dict, *, tests: set | None = None, force: set | None = None) -> BuildSummary:
        """Build every target of `graph` (a closed set of ConfiguredTargets).

        Targets in `tests` are test-like: their failure is reported, not cached. Targets in
        `force` bypass every cache (e.g. --no-cache-test-results).
        """
        self.graph = graph
        self.tests = tests or set()
        self.force = force or set()
        start = time.monotonic()
        nodes = {
            label: Node(
                deps=tuple(target.deps),
                resources=target.action.resources if target.action else Resources(),
                estimate_s=self._estimate(label),
            )
            for label, target in graph.items()
        }
        scheduler = Scheduler(
            Capacity(cpus=self.options.jobs, gpus=self.options.gpus, memory_mb=self.options.memory_mb),
            self.options.jobs,
        )
        with self._workspace_lock(), self.cache.shared():
            sweep_stale(self.sandbox_base)
            try:
                outcomes = scheduler.run(
                    nodes, self._work, self._try_inline, keep_going=self.options.keep_going,
                    abort=self.runner.cancel_all, on_event=self._on_event,
                )
            finally:
                self._remover.shutdown(wait=True)
                self.state.save()
                self.cache.stat_cache.save()
        point_convenience_link(self.workspace.root, self.output_root)
        return BuildSummary(outcomes, time.monotonic() - start)

    @contextmanager
    def _workspace_lock(self):
        """One build at a time per workspace and configuration: they share an output tree."""
        self.state.file.parent.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(self.state.file.with_suffix(".lock"))
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            self.warn(f"another mlbuild is building this workspace ({self.configuration.name}); waiting for it")
            lock.acquire()
        try:
            yield
        finally:
            lock.release()

    def key_of(self, label: Label) -> tuple[str, list[Input]]:
        """The action key of an analyzed target whose deps have been built."""
        text = str(label)
        cached = self._keys.get(text)
        if cached is None:
            action = self.graph[label].action
            inputs = self._inputs(action)
            cached = (action_key(action, inputs), inputs)
            self._keys[text] = cached
        return cached

    def warn(self, message: str) -> None:
        text = f"warning: {message}"
        if self.progress is not None:
            self.progress.message(text)
        else:
            print(text, file=sys.stderr)

    def download_progress(self, label: str):
        from ..downloads import NullProgress

        return self.progress.download(label) if self.progress is not None else NullProgress()

    def run_foreground(self, action: Action) -> int:
        """Run an uncached action (a `run` command, a benchmark) with output streamed."""
        sandbox = Sandbox(self.sandbox_base, action)
        try:
            sandbox.stage(self.workspace.root, {d: self.results[d] for d in action.deps}, self.cache.cas)
            done = self.runner.run(sandbox.argv(), sandbox.root, sandbox.env(), None, None, action.timeout_s)
            return done.exit_code
        finally:
            sandbox.remove()

    # -- scheduler callbacks -------------------------------------------------------------
    def _on_event(self, event: str, label, outcome) -> None:
        target = self.graph[label]
        mnemonic = target.action.mnemonic if target.action else target.rule
        for observer in self.observers:
            observer.event(event, str(label), mnemonic, outcome)

    def _try_inline(self, label) -> Outcome | None:
        target = self.graph[label]
        if target.action is None:
            alias_of = target.info.get("alias_of")
            if alias_of is not None:  # dependents read the actual target's outputs under this name
                self.results[str(label)] = self.results[alias_of]
            return Outcome(NO_ACTION)
        if label in self.force:
            return None
        key, _ = self.key_of(label)
        previous = self.state.get(str(label))
        if previous is not None and previous.key == key and intact(previous):
            self.results[str(label)] = previous.result
            return Outcome(UP_TO_DATE, previous.result)
        return None

    def _readopt_collected_blobs(self, dep: str) -> None:
        """`cache gc` may have dropped the blobs of an up-to-date dependency whose output tree
        is intact (same stat as when it was written): link them back before staging from the CAS."""
        cas = self.cache.cas
        owner = Label.parse(dep)
        while "alias_of" in self.graph[owner].info:  # an alias's files live in its actual target's tree
            owner = Label.parse(self.graph[owner].info["alias_of"])
        directory = self.output_root / owner.package / owner.name
        for output in self.results[dep].outputs:
            if not cas.contains(output.digest, output.executable):
                cas.put_file(directory / output.path, output.executable, digest=output.digest, take=True)

    def _work(self, label) -> Outcome:
        target = self.graph[label]
        action: Action = target.action
        key, inputs = self.key_of(label)
        use_cache = action.cacheable and label not in self.force
        status, result = None, None
        with self.cache.lock(key) if use_cache else nullcontext():
            if use_cache:
                result = self.cache.actions.lookup(key)
                status = LOCAL_HIT if result else None
                if result is None and self.remote is not None and action.remotable:
                    result = self.remote.fetch(key, self.cache)
                    status = REMOTE_HIT if result else None
            if result is None:
                try:
                    result = self._execute(action, key, inputs, label in self.tests)
                except UserError as exc:
                    return Outcome(FAILED, exc)
                status = EXECUTED
                if result.exit_code == 0 and use_cache:
                    self.cache.actions.store(key, result)  # after its blobs, as a reported build must be
                    if self.remote is not None and action.remotable and self.options.upload:
                        self.remote.publish(key, result, self.cache)
        self._materialize(label, key, result)
        if result.exit_code != 0:
            return Outcome(TEST_FAILED, result)
        return Outcome(status, result)

    # -- pieces ----------------------------------------------------------------------------
    def _inputs(self, action: Action) -> list[Input]:
        root = str(self.workspace.root)
        stat_cache = self.cache.stat_cache
        inputs = []
        for sandbox_path, relative in action.sources:
            path = os.path.join(root, relative)
            try:
                st = os.stat(path)
            except FileNotFoundError:
                raise ActionError(f"{action.label}: input {path} disappeared during the build",
                                  hint="run the build again once the files stop changing") from None
            inputs.append(Input(sandbox_path, stat_cache.digest(path, st), bool(st.st_mode & 0o111)))
        for dep in action.deps:
            base = "out/" + dep[2:].replace(":", "/", 1)
            for output in self.results[dep].outputs:
                inputs.append(Input(f"{base}/{output.path}", output.digest, output.executable))
        return inputs

    def _execute(self, action: Action, key: str, inputs: list[Input], is_test: bool) -> ActionResult:
        self._record_key_components(key, action, inputs)
        for dep in action.deps:
            self._readopt_collected_blobs(dep)
        sandbox = Sandbox(self.sandbox_base, action)
        try:
            sandbox.stage(self.workspace.root, {d: self.results[d] for d in action.deps}, self.cache.cas)
            logs = sandbox.root.with_name(sandbox.root.name + ".logs")
            logs.mkdir()
            try:
                extra = {}
                failure = None
                try:
                    execution = self.executors[action.executor](self, sandbox, logs, extra)
                    sandbox.check_inputs_untouched()
                except ActionError as exc:
                    if not is_test:
                        raise
                    failure = str(exc)  # a failed test keeps its logs and outputs, uncached
                    extra["failure"] = failure
                    execution = None
                try:
                    files, directories, symlinks = sandbox.collect(action.label)
                except ActionError:
                    if failure is None:
                        raise
                    files, directories, symlinks = [], [], []
                cas = self.cache.cas
                outputs = tuple(
                    OutputFile(rel, cas.put_file(path, executable, take=True), path.stat().st_size,
                               executable)
                    for rel, path, executable in files
                )
                stdout, stderr = logs / "stdout", logs / "stderr"
                return ActionResult(
                    outputs=outputs, directories=tuple(directories), symlinks=tuple(symlinks),
                    exit_code=0 if failure is None else 1,
                    stdout_digest=cas.put_file(stdout, take=True) if stdout.exists() else None,
                    stderr_digest=cas.put_file(stderr, take=True) if stderr.exists() else None,
                    duration_s=round(execution.duration_s, 3) if execution else 0.0, extra=extra,
                )
            finally:
                self._remover.submit(shutil.rmtree, logs, ignore_errors=True)
        finally:
            self._remover.submit(sandbox.remove)

    def _record_key_components(self, key: str, action: Action, inputs: list[Input]) -> None:
        """Keep the canonical key content of executed actions so `explain` can diff them."""
        path = self.cache.root / "keys" / key[:2] / key
        if not path.exists():  # explain's notes: losing one in a power cut costs nothing
            write_atomically(path, canonical_encoding(action.key_components(inputs)), durable=False)

    def _materialize(self, label, key: str, result: ActionResult) -> None:
        directory = self.output_root / label.package / label.name
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        stage_result(directory, result, self.cache.cas)
        self.results[str(label)] = result
        if result.exit_code == 0:
            with self._lock:
                before = self.state.get(str(label))
                previous_key = before and (before.previous_key if before.key == key else before.key)
                self.state.record(str(label), TargetState(key, result, snapshot(directory, result), previous_key))

    def _estimate(self, label) -> float:
        previous = self.state.get(str(label))
        return previous.result.duration_s + 0.01 if previous else 1.0


def point_convenience_link(workspace_root: Path, output_root: Path) -> None:
    """Make mlbuild-bin point at the output tree of the configuration built last."""
    link = workspace_root / CONVENIENCE_LINK
    target = os.path.relpath(output_root, workspace_root)
    if link.is_symlink() and os.readlink(link) == target:
        return
    tmp = link.with_name(f".{CONVENIENCE_LINK}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def load_key_components(cache_root: Path, key: str) -> dict | None:
    try:
        return json.loads((cache_root / "keys" / key[:2] / key).read_bytes())
    except (OSError, ValueError):
        return None
