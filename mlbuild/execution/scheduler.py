"""A parallel, resource-aware DAG scheduler, critical path first.

Pools, in ninja's spirit: every node declares what it occupies (cpus, gpus, memory, or the
whole machine when `exclusive`), and a node starts only when its dependencies are done and
its resources fit in what is free. Among ready nodes the one with the longest remaining chain
of estimated work below it starts first, so the critical path is never left waiting behind
short independent work. A node too big for the machine is clamped to the whole machine
(cpus, memory) so it still runs alone; a GPU count that does not exist fails it.

Control flow of `run`:
  1. nodes with no pending deps are "ready"; each ready node is first offered to `try_inline`
     (the up-to-date check, done in the calling thread: a no-op build never touches the pool);
  2. nodes that need work are started on the worker threads in priority order while resources
     fit (an exclusive node waits for the machine to drain and blocks later starts meanwhile);
  3. when a node finishes, its dependents' pending counts drop and new nodes become ready;
  4. on failure without keep_going, nothing new starts, `abort` is called so running work is
     cancelled, and the remaining nodes are reported as skipped.
"""

from __future__ import annotations

import heapq
import itertools
import queue
import threading
from dataclasses import dataclass, field
from typing import Callable, Hashable

from ..actions import Resources
from .outcome import Outcome, Status


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

    def _demand(self, resources: Resources) -> tuple[float, int, int]:
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
        priorities: dict = {}

        def priority(name) -> float:
            """Computed on first need: a build whose nodes are all up to date never needs it."""
            if not priorities:
                priorities.update(_critical_path(nodes))
            return priorities[name]

        dependents: dict[Hashable, list] = {n: [] for n in nodes}
        pending = {}
        for name, node in nodes.items():
            pending[name] = len(node.deps)
            for dep in node.deps:
                dependents[dep].append(name)
        outcomes: dict[Hashable, Outcome] = {}
        counter = itertools.count()
        ready: list = []
        free_cpus, free_gpus, free_memory = self.capacity.cpus, self.capacity.gpus, self.capacity.memory_mb
        running: set = set()
        failed = False

        completed: list = []  # (name, outcome) waiting to be recorded: a worklist, not recursion,
        # so a chain of thousands of up-to-date or skipped nodes cannot overflow the stack

        def finish(name, outcome: Outcome):
            completed.append((name, outcome))
            while completed:
                current, result = completed.pop()
                if current in outcomes:
                    continue
                outcomes[current] = result
                on_event("finished", current, result)
                blocked = result.status.blocks_dependents
                for child in dependents[current]:
                    if blocked:
                        completed.append((child, Outcome(Status.SKIPPED, blocked_by=current)))
                        continue
                    pending[child] -= 1
                    if pending[child] == 0 and child not in outcomes:
                        inline = try_inline(child)
                        if inline is not None:
                            completed.append((child, inline))
                        else:
                            heapq.heappush(ready, (-priority(child), next(counter), child))

        for name in [n for n in nodes if pending[n] == 0]:
            inline = try_inline(name)
            if inline is not None:
                finish(name, inline)
            else:
                heapq.heappush(ready, (-priority(name), next(counter), name))

        workers = _Workers(self.jobs, work)
        try:
            while ready or running:
                deferred = []
                while ready and not failed and len(running) < self.jobs:
                    entry = heapq.heappop(ready)
                    name = entry[2]
                    cpus, gpus, memory = self._demand(nodes[name].resources)
                    if gpus > self.capacity.gpus:
                        finish(name, Outcome(Status.FAILED, error=NodeFailed(
                            f"needs {gpus} GPU(s), this machine has {self.capacity.gpus}")))
                        failed = failed or not keep_going
                        continue
                    if cpus <= free_cpus + 1e-9 and gpus <= free_gpus and memory <= free_memory:
                        free_cpus, free_gpus, free_memory = free_cpus - cpus, free_gpus - gpus, free_memory - memory
                        on_event("started", name, None)
                        running.add(name)
                        workers.start(name, busy=len(running))
                    else:
                        deferred.append(entry)
                        if nodes[name].resources.exclusive:
                            break  # let the machine drain for it
                for entry in deferred:
                    heapq.heappush(ready, entry)
                if failed and not running:
                    break
                if not running:
                    if ready:  # nothing runs and nothing fits: cannot happen with clamping
                        raise RuntimeError("scheduler stalled with ready nodes")
                    break
                for name, outcome in workers.finished():
                    running.discard(name)
                    cpus, gpus, memory = self._demand(nodes[name].resources)
                    free_cpus, free_gpus, free_memory = free_cpus + cpus, free_gpus + gpus, free_memory + memory
                    if outcome.status == Status.FAILED and not keep_going and not failed:
                        failed = True
                        abort()
                    finish(name, outcome)
        except BaseException:
            abort()
            raise
        finally:
            workers.stop()
        for name in nodes:
            if name not in outcomes:
                outcomes[name] = Outcome(Status.SKIPPED)
        return outcomes


class _Workers:
    """Up to `jobs` threads running `work(name)`, started as needed; each outcome lands in one
    queue that the scheduler blocks on. Two C queues cost an action less than a Future and a
    `wait()` per completion, whose Python locks and events were a tenth of a trivial build."""

    def __init__(self, jobs: int, work: Callable[[Hashable], Outcome]):
        self._jobs = jobs
        self._work = work
        self._todo: queue.SimpleQueue = queue.SimpleQueue()  # names, then one None per thread to stop
        self._done: queue.SimpleQueue = queue.SimpleQueue()  # (name, outcome, BaseException or None)
        self._threads: list[threading.Thread] = []

    def start(self, name: Hashable, busy: int) -> None:
        """Run `name`; `busy`: how many nodes are running, this one included."""
        if busy > len(self._threads) < self._jobs:
            thread = threading.Thread(target=self._serve, name=f"mlbuild_{len(self._threads)}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self._todo.put(name)

    def _serve(self) -> None:
        while (name := self._todo.get()) is not None:
            try:
                self._done.put((name, self._work(name), None))
            except Exception as exc:  # NodeFailed, or an internal error: fails only this node
                self._done.put((name, Outcome(Status.FAILED, error=exc), None))
            except BaseException as exc:  # the scheduler raises it
                self._done.put((name, None, exc))

    def finished(self):
        """Yield (name, outcome) for each node finished: waits for one, then takes all there are."""
        item = self._done.get()
        while True:
            name, outcome, raised = item
            if raised is not None:
                raise raised
            yield name, outcome
            try:
                item = self._done.get_nowait()
            except queue.Empty:
                return

    def stop(self) -> None:
        """Let every thread finish its node and end."""
        for _ in self._threads:
            self._todo.put(None)
        for thread in self._threads:
            thread.join()


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
