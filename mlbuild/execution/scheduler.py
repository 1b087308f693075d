"""A parallel, resource-aware DAG scheduler, critical path first.

Pools, in ninja's spirit: every node declares what it occupies (cpus, gpus, memory, or the
whole machine when `exclusive`), and a node starts only when its dependencies are done and
its resources fit in what is free. Among ready nodes the one with the longest remaining chain
of estimated work below it starts first, so the critical path is never left waiting behind
short independent work. A node too big for the machine is clamped to the whole machine
(cpus, memory) so it still runs alone; a GPU count that does not exist fails it.

Control flow of `run`:
  1. nodes with no pending deps are "ready"; each ready node is first offered to `try_inline`
     (the up-to-date check: a no-op build is decided in the calling thread and never starts a
     worker);
  2. worker threads, up to `jobs`, take ready nodes in priority order while resources fit (an
     exclusive node waits for the machine to drain and blocks later starts meanwhile);
  3. a worker that finishes a node records it: its dependents' pending counts drop, new nodes
     become ready (offered to `try_inline` first), and the worker takes the next one itself;
  4. on failure without keep_going, nothing new starts, `abort` is called so running work is
     cancelled, and the remaining nodes are reported as skipped.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from dataclasses import dataclass, field
from typing import Callable, Hashable

from ..actions import Resources
from .outcome import Outcome, Status

# The longest the calling thread waits without looking at pending signals. Linux may deliver a
# Ctrl-C to any thread, and Python runs its handler only when the main thread next runs; the
# workers do not wake it until the run is over, so it wakes itself.
_SIGNAL_POLL_S = 0.25


@dataclass(frozen=True)
class Capacity:
    cpus: float
    gpus: int = 0
    memory_mb: int = 0  # 0 = do not track memory


@dataclass
class Node:
    deps: tuple[Hashable, ...]
    resources: Resources = field(default_factory=Resources)
    estimate_s: float = 1.0


class NodeFailed(Exception):
    """Raised by a worker for an expected failure (the message is reported as is)."""


class Scheduler:
    def __init__(self, capacity: Capacity, jobs: int):
        self.capacity = capacity
        self.jobs = max(1, jobs)

    def demand(self, resources: Resources) -> tuple[float, int, int]:
        """The (cpus, gpus, memory) a node holds while it runs: clamped to the machine."""
        if resources.exclusive:
            return self.capacity.cpus, self.capacity.gpus, self.capacity.memory_mb
        memory = min(resources.memory_mb, self.capacity.memory_mb) if self.capacity.memory_mb else 0
        return min(resources.cpus, self.capacity.cpus), resources.gpus, memory

    def run(
        self,
        nodes: dict[Hashable, Node],
        work: Callable[[Hashable], Outcome],
        try_inline: Callable[[Hashable], Outcome | None] = lambda _: None,
        keep_going: bool = False,
        abort: Callable[[], None] = lambda: None,
        on_event: Callable[[str, Hashable, Outcome | None], None] = lambda *_: None,
    ) -> dict[Hashable, Outcome]:
        return _Run(self, nodes, work, try_inline, keep_going, abort, on_event).outcomes()


class _Run:
    """One run's bookkeeping, shared under one lock by up to `jobs` worker threads. A worker
    that finishes a node records its outcome and takes the next ready node itself, so no
    thread hand-off separates two actions (a dispatching thread cost each worker about 7% of
    a trivial build in waits); the calling thread decides the first ready nodes, then waits."""

    def __init__(self, scheduler: Scheduler, nodes, work, try_inline, keep_going, abort, on_event):
        self._scheduler = scheduler
        self._nodes = nodes
        self._work = work
        self._try_inline = try_inline
        self._keep_going = keep_going
        self._abort = abort
        self._on_event = on_event
        self._priorities: dict = {}
        self._dependents: dict[Hashable, list] = {n: [] for n in nodes}
        self._pending = {}
        for name, node in nodes.items():
            self._pending[name] = len(node.deps)
            for dep in node.deps:
                self._dependents[dep].append(name)
        self._outcomes: dict[Hashable, Outcome] = {}
        self._counter = itertools.count()
        self._ready: list = []  # heap of (-priority, arrival, name)
        capacity = scheduler.capacity
        self._free = [capacity.cpus, capacity.gpus, capacity.memory_mb]
        self._running: set = set()
        self._failed = False  # without keep_going: start nothing new
        self._raised: BaseException | None = None  # by a worker thread: re-raised in the calling thread
        self._stopping = False
        self._changed = threading.Condition()  # the lock over all of the above
        self._threads: list[threading.Thread] = []
        self._idle = 0  # worker threads waiting for a ready node

    def outcomes(self) -> dict[Hashable, Outcome]:
        try:
            with self._changed:
                self._record([], [n for n in self._nodes if self._pending[n] == 0])
                self._share()
                while not (self._raised or self._over()):
                    self._changed.wait(_SIGNAL_POLL_S)
                raised = self._raised
            if raised is not None:
                raise raised
        except BaseException:
            self._abort()
            raise
        finally:
            with self._changed:
                self._stopping = True
                self._changed.notify_all()
            for thread in self._threads:
                thread.join()
        return {name: self._outcomes.get(name) or Outcome(Status.SKIPPED) for name in self._nodes}

    def _over(self) -> bool:
        """Nothing runs and nothing more will start."""
        return not self._running and (self._failed or not self._ready)

    def _priority(self, name) -> float:
        """Computed on first need: a build whose nodes are all up to date never needs it."""
        if not self._priorities:
            self._priorities.update(_critical_path(self._nodes))
        return self._priorities[name]

    def _record(self, completed: list, ready: list) -> None:
        """Record `completed` (name, outcome) pairs and offer `ready` nodes to try_inline, and
        so on for the dependents they release: a worklist, not recursion, so a chain of
        thousands of up-to-date or skipped nodes cannot overflow the stack."""
        while completed or ready:
            while ready:
                name = ready.pop()
                inline = self._try_inline(name)
                if inline is not None:
                    completed.append((name, inline))
                else:
                    heapq.heappush(self._ready, (-self._priority(name), next(self._counter), name))
            if not completed:
                break
            current, result = completed.pop()
            if current in self._outcomes:
                continue
            self._outcomes[current] = result
            self._on_event("finished", current, result)
            blocked = result.status.blocks_dependents
            for child in self._dependents[current]:
                if blocked:
                    completed.append((child, Outcome(Status.SKIPPED, blocked_by=current)))
                    continue
                self._pending[child] -= 1
                if self._pending[child] == 0 and child not in self._outcomes:
                    ready.append(child)

    def _serve(self) -> None:
        """A worker thread: take a node, run it, record it, take the next, until none is left."""
        try:
            name, outcome = None, None
            while True:
                with self._changed:
                    aborting = name is not None and self._complete(name, outcome)
                    name = None if aborting else self._take()
                if aborting:
                    self._abort()  # before waiting for the running nodes: it is what stops them
                    continue
                if name is None:
                    return
                try:
                    outcome = self._work(name)
                except Exception as exc:  # NodeFailed, or an internal error: fails only this node
                    outcome = Outcome(Status.FAILED, error=exc)
        except BaseException as exc:  # the calling thread raises it
            with self._changed:
                self._raised = self._raised or exc
                self._changed.notify_all()

    def _complete(self, name, outcome: Outcome) -> bool:
        """Free `name`'s resources and record its outcome; True if the build must now abort."""
        self._running.discard(name)
        for i, amount in enumerate(self._scheduler.demand(self._nodes[name].resources)):
            self._free[i] += amount
        abort = outcome.status == Status.FAILED and not self._keep_going and not self._failed
        self._failed = self._failed or abort
        self._record([(name, outcome)], [])
        return abort

    def _take(self):
        """The next node for this worker to run, waiting while others run; None when the run is
        over (or stopping)."""
        while not (self._raised or self._stopping):
            name = self._start_next()
            if name is not None:
                self._share()
                return name
            if self._over():
                self._changed.notify_all()  # the calling thread and idle workers: it is over
                return None
            self._idle += 1
            self._changed.wait()
            self._idle -= 1
        return None

    def _start_next(self):
        """Pop the ready node of highest priority that fits in what is free and mark it
        running; None if none does (an exclusive node at the head waits for the machine to
        drain, and blocks later starts meanwhile)."""
        deferred, chosen = [], None
        capacity = self._scheduler.capacity
        while self._ready and not self._failed:
            entry = heapq.heappop(self._ready)
            name = entry[2]
            cpus, gpus, memory = demand = self._scheduler.demand(self._nodes[name].resources)
            if gpus > capacity.gpus:
                self._record([(name, Outcome(Status.FAILED, error=NodeFailed(
                    f"needs {gpus} GPU(s), this machine has {capacity.gpus}")))], [])
                self._failed = self._failed or not self._keep_going
                continue
            free_cpus, free_gpus, free_memory = self._free
            if cpus <= free_cpus + 1e-9 and gpus <= free_gpus and memory <= free_memory:
                self._free = [free - amount for free, amount in zip(self._free, demand)]
                self._on_event("started", name, None)
                self._running.add(name)
                chosen = name
                break
            deferred.append(entry)
            if self._nodes[name].resources.exclusive:
                break
        for entry in deferred:
            heapq.heappush(self._ready, entry)
        if chosen is None and self._ready and not self._running and not self._failed:
            raise RuntimeError("scheduler stalled with ready nodes")  # cannot happen with clamping
        return chosen

    def _share(self) -> None:
        """Ready nodes left over: wake an idle worker, or start one while under `jobs`."""
        if not self._ready or self._failed:
            return
        if self._idle:
            self._changed.notify(min(self._idle, len(self._ready)))
        elif len(self._threads) < self._scheduler.jobs:
            thread = threading.Thread(target=self._serve, name=f"mlbuild_{len(self._threads)}", daemon=True)
            self._threads.append(thread)
            thread.start()


def _critical_path(nodes: dict[Hashable, Node]) -> dict[Hashable, float]:
    """Estimated seconds from the start of each node to the end of the longest chain above it."""
    dependents: dict[Hashable, list] = {n: [] for n in nodes}
    indegree = {n: 0 for n in nodes}
    for name, node in nodes.items():
        for dep in node.deps:
            dependents[dep].append(name)
            indegree[name] += 1
    order, stack = [], [n for n, d in indegree.items() if d == 0]
    while stack:
        name = stack.pop()
        order.append(name)
        for child in dependents[name]:
            indegree[child] -= 1
            if indegree[child] == 0:
                stack.append(child)
    longest: dict[Hashable, float] = {}
    for name in reversed(order):
        below = max((longest[c] for c in dependents[name]), default=0.0)
        longest[name] = nodes[name].estimate_s + below
    return longest
