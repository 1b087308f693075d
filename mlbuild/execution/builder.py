"""The rebuilder: decide for each action whether it is up to date, else get its result.

For every configured target, in dependency order (the scheduler's job):
  1. compute its action key from its inputs' digests (execution/keys.py);
  2. up to date? key equal to the last build's and output files untouched → done, inline;
  3. else ask the runner stack (execution/runners.py: local action cache → remote cache →
     sandboxed execution) for its result, and report it built once its cache entry is
     recorded (a group commit: storage/group_commit.py);
  4. lay the result out in the output tree (execution/output_tree.py) and remember it in the
     build state (execution/state.py).
Failing tests and benchmarks are never cached; passing ones are, like Bazel's test results.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import filelock

from ..actions import Action, Input, Resources
from ..errors import UserError
from ..filesystem import make_directory
from ..storage.group_commit import GroupCommit
from .executors import BUILTIN_EXECUTORS, ExecutorContext
from .keys import compute_key
from .outcome import Outcome, Status
from .output_tree import OutputTree
from .processes import ProcessRunner
from .runners import ActionRequest, Runner, SandboxRunner, runner_stack
from .scheduler import Capacity, Node, NodeFailed, Scheduler
from .state import BuildState, TargetState, intact, snapshot


@dataclass
class BuildOptions:
    jobs: int = os.cpu_count() or 1
    keep_going: bool = False
    gpus: int = 0
    memory_mb: int = 0
    upload: bool = True
    distdirs: tuple = ()  # directories searched for downloads before any URL
    rewrites: tuple = ()  # (regex, replacement) URL rewrites, e.g. to an internal mirror
    remote_download: str = "all"  # which remotely held outputs come here: minimal, toplevel, all


@dataclass
class BuildSummary:
    outcomes: dict = field(default_factory=dict)  # Label -> Outcome
    wall_s: float = 0.0

    def count(self, *statuses: Status) -> int:
        return sum(1 for o in self.outcomes.values() if o.status in statuses)

    @property
    def remote_executions(self) -> int:
        return sum(1 for o in self.outcomes.values() if o.node is not None)

    @property
    def ok(self) -> bool:
        return self.count(Status.FAILED, Status.SKIPPED, Status.TEST_FAILED) == 0

    def internal_error(self) -> Exception | None:
        """The first exception that is neither a user's mistake nor an expected failure: a bug."""
        return next((o.error for o in self.outcomes.values() if o.status == Status.FAILED
                     and isinstance(o.error, Exception) and not isinstance(o.error, (UserError, NodeFailed))), None)

    def failures(self) -> list[tuple[object, str]]:
        """(label, message) of every failed action and failed test."""
        failed = []
        for label, outcome in self.outcomes.items():
            if outcome.status == Status.FAILED:
                error = outcome.error
                message = str(error) if isinstance(error, UserError) else (
                    f"{label}: {error}" if isinstance(error, NodeFailed) else f"{label}: {error!r}")
                failed.append((label, message))
            elif outcome.status == Status.TEST_FAILED:
                failed.append((label, outcome.result.failure or f"{label} failed"))  # readable lines, not a repr
        return failed


class Builder:
    def __init__(self, workspace, cache, configuration, *, remote=None, progress=None, options=None,
                 executors=None, observers=(), runner: Runner | None = None,
                 executor: Callable[[SandboxRunner], Runner] | None = None):
        """`executors`: Action.executor -> function (default: the built-in ones); `runner`: the
        bottom of the runner stack (default: sandboxed local execution); `executor`: makes the
        bottom from the local sandbox runner instead (a remote executor keeps some actions here)."""
        self.workspace = workspace
        self.cache = cache
        self.configuration = configuration
        self.progress = progress
        self.observers = [o for o in (progress, *observers) if o is not None]  # get every event
        self.options = options or BuildOptions()
        self.output_tree = OutputTree(workspace.root, configuration.name, cache.cas)
        self.output_root = self.output_tree.root
        self.state = BuildState.of(workspace, configuration.name)
        self.context = ExecutorContext(
            processes=ProcessRunner(), cas=cache.cas, lock=cache.lock, cache_root=cache.root,
            distdirs=self.options.distdirs, rewrites=self.options.rewrites, warn=self.warn,
            progress=progress.download if progress is not None else None,
        )
        fetch = None if remote is None else (
            lambda digest, executable, needed_by: remote.fetch_blob(digest, executable, cache, needed_by))
        self.sandboxes = SandboxRunner(self.context, executors or BUILTIN_EXECUTORS, workspace.root,
                                       cache.root / "sandbox", fetch=fetch)
        self.commits = GroupCommit(cache.actions)
        bottom = runner or (executor(self.sandboxes) if executor is not None else self.sandboxes)
        self.runner = runner_stack(cache, remote, bottom, self.commits, upload=self.options.upload)
        self.results: dict[str, object] = {}  # label -> ActionResult, as targets complete
        self._keys: dict[str, tuple[str, list[Input]]] = {}
        self._key_encodings: dict[str, bytes] = {}  # of keys computed and not yet run or found up to date
        self._from_state: set[str] = set()  # up to date from the last build: gc may have dropped their blobs since
        self._lock = threading.Lock()

    # -- public ------------------------------------------------------------------------
    def build(self, graph: dict, *, tests: set | None = None, force: set | None = None,
              toplevel: set | None = None) -> BuildSummary:
        """Build every target of `graph` (a closed set of ConfiguredTargets).

        Targets in `tests` are test-like: their failure is reported, not cached. Targets in
        `force` bypass every cache (e.g. --no-cache-test-results). `toplevel` (default: all)
        are the requested ones, whose outputs --remote-download=toplevel brings here.
        """
        self.graph = graph
        self.toplevel = set(graph) if toplevel is None else toplevel
        self._targets = {str(label): target for label, target in graph.items()}
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
            try:
                outcomes = scheduler.run(
                    nodes, self._work, self._try_inline, keep_going=self.options.keep_going,
                    abort=self.runner.cancel, on_event=self._on_event,
                )
            finally:
                try:
                    self.commits.flush()
                finally:
                    self.runner.finish()
                    self.state.save()
                    self.cache.stat_cache.save()
        self.output_tree.point_convenience_link()
        return BuildSummary(outcomes, time.monotonic() - start)

    @contextmanager
    def _workspace_lock(self):
        """One build at a time per workspace and configuration: they share an output tree."""
        make_directory(self.state.file.parent, "mlbuild's state directory")
        make_directory(self.output_tree.root, "the output tree")
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

    def key_of(self, label) -> tuple[str, list[Input]]:
        """The action key of an analyzed target whose deps have been built."""
        text = str(label)
        cached = self._keys.get(text)
        if cached is None:
            key, encoding, inputs = compute_key(self.graph[label].action, self.workspace.root, self.cache.stat_cache,
                                                self.results)
            cached = self._keys[text] = (key, inputs)
            self._key_encodings[text] = encoding  # the cache entry records it, if the action runs
        return cached

    def warn(self, message: str) -> None:
        text = f"warning: {message}"
        if self.progress is not None:
            self.progress.message(text)
        else:
            print(text, file=sys.stderr)

    def run_foreground(self, action: Action) -> int:
        """Run an uncached action (a `run` command, a benchmark) with output streamed."""
        return self.sandboxes.run_in_foreground(action, {d: self.results[d] for d in action.deps})

    # -- scheduler callbacks -------------------------------------------------------------
    def _on_event(self, event: str, label, outcome) -> None:
        """Tell the observers; an action is reported finished once its cache entry is recorded."""
        target = self.graph[label]
        mnemonic = target.action.mnemonic if target.action else target.rule

        def notify():
            for observer in self.observers:
                observer.event(event, str(label), mnemonic, outcome)

        key = self._keys.get(str(label)) if event == "finished" else None
        if key is None:
            notify()
        else:
            self.commits.after(key[0], notify)

    def _try_inline(self, label) -> Outcome | None:
        target = self.graph[label]
        text = str(label)  # one string for the results and the set below (at 100k targets it shows)
        if target.action is None:
            actual = str(target.alias_of)
            if actual in self.results:  # dependents read the actual target's outputs here
                self.results[text] = self.results[actual]
                if actual in self._from_state:
                    self._from_state.add(text)
            return Outcome(Status.NO_ACTION)
        if label in self.force:
            return None
        key, _ = self.key_of(label)
        previous = self.state.get(text)
        if (previous is not None and previous.key == key and intact(previous)
                and (previous.materialized or not self._wanted(label))):
            self.results[text] = previous.result
            self._from_state.add(text)
            self._key_encodings.pop(text, None)
            return Outcome(Status.UP_TO_DATE, previous.result)
        return None

    def _wanted(self, label) -> bool:
        """Whether `label`'s outputs come here when they are only in the remote CAS."""
        mode = self.options.remote_download
        return mode == "all" or (mode == "toplevel" and label in self.toplevel)

    def _work(self, label) -> Outcome:
        action: Action = self.graph[label].action
        key, inputs = self.key_of(label)
        dep_results = {dep: self.results[dep] for dep in action.deps}
        with self._lock:  # once per build and dep; a dependent staging it meanwhile waits here
            for dep in self._from_state.intersection(action.deps):
                self._from_state.discard(dep)
                target = self._targets[dep]
                self.output_tree.readopt(target.alias_of or target.label, dep_results[dep])
        previous = self.state.get(str(label))
        request = ActionRequest(action, key, tuple(inputs), dep_results, is_test=label in self.tests,
                                cacheable=action.cacheable and label not in self.force, download=self._wanted(label),
                                last_duration_s=previous.result.duration_s if previous else None,
                                key_encoding=self._key_encodings.pop(str(label), None))
        try:
            outcome = self.runner.run(request)
        except UserError as exc:
            return Outcome(Status.FAILED, error=exc)
        try:
            self._materialize(label, key, outcome.result)
        except UserError as exc:  # a file blocks the target's output directory
            return Outcome(Status.FAILED, error=exc)
        if outcome.result.exit_code != 0:
            return Outcome(Status.TEST_FAILED, outcome.result, node=outcome.node)
        return outcome

    # -- pieces ----------------------------------------------------------------------------
    def _materialize(self, label, key: str, result) -> None:
        """Lay the outputs out if they are here; those left in the remote CAS get no directory."""
        here = self.cache.cas.holds(result)
        directory = self.output_tree.materialize(label, result) if here else self.output_tree.remove(label)
        self.results[str(label)] = result
        if result.exit_code == 0:
            stats = snapshot(directory, result) if here else ()
            with self._lock:
                before = self.state.get(str(label))
                previous_key = before and (before.previous_key if before.key == key else before.key)
                self.state.record(str(label), TargetState(key, result, stats, previous_key, materialized=here))

    def _estimate(self, label) -> float:
        previous = self.state.get(str(label))
        return previous.result.duration_s + 0.01 if previous else 1.0
