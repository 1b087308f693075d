"""The scheduler on random DAGs: dependency order, resource capacity, exclusivity, exactly-once,
failure handling and critical-path-first ordering."""

from __future__ import annotations

import signal
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlbuild.actions import Resources
from mlbuild.execution.scheduler import Capacity, Node, NodeFailed, Outcome, Scheduler


def demand(resources: Resources, capacity: Capacity) -> tuple[float, int, int]:
    """The clamping rule: more cpus/memory than the machine counts as exactly the machine."""
    if resources.exclusive:
        return capacity.cpus, capacity.gpus, capacity.memory_mb
    memory = min(resources.memory_mb, capacity.memory_mb) if capacity.memory_mb else 0
    return min(resources.cpus, capacity.cpus), resources.gpus, memory


class Recorder:
    """A work function that checks every invariant at the instant a node starts."""

    def __init__(self, nodes: dict, capacity: Capacity, linger_s: float = 0.003):
        self.nodes = nodes
        self.capacity = capacity
        self.linger_s = linger_s
        self.lock = threading.Lock()
        self.started_one = threading.Condition(self.lock)
        self.running: dict = {}
        self.finished: set = set()
        self.starts: list = []
        self.max_cpus_seen = 0.0
        self.violations: list[str] = []
        self.overlaps = 0

    def __call__(self, name) -> Outcome:
        node = self.nodes[name]
        with self.lock:
            self.starts.append(name)
            missing = [d for d in node.deps if d not in self.finished]
            if missing:
                self.violations.append(f"{name} started before its deps {missing} finished")
            if name in self.running or name in self.finished:
                self.violations.append(f"{name} ran twice")
            if node.resources.exclusive and self.running:
                self.violations.append(f"exclusive {name} started while {list(self.running)} run")
            exclusive_running = [n for n in self.running if self.nodes[n].resources.exclusive]
            if exclusive_running:
                self.violations.append(f"{name} started while exclusive {exclusive_running} runs")
            self.running[name] = demand(node.resources, self.capacity)
            cpus = sum(d[0] for d in self.running.values())
            gpus = sum(d[1] for d in self.running.values())
            memory = sum(d[2] for d in self.running.values())
            if cpus > self.capacity.cpus + 1e-9 or gpus > self.capacity.gpus or memory > self.capacity.memory_mb:
                self.violations.append(f"over capacity with {sorted(self.running)}: {cpus} cpus, {gpus} gpus, {memory} MB")
            if len(self.running) > 1:
                self.overlaps += 1
            # Linger until the scheduler starts another node (or a few ms pass), so that nodes
            # really overlap; correctness never depends on this wait, only the coverage does.
            count = len(self.starts)
            self.started_one.notify_all()
            self.started_one.wait_for(lambda: len(self.starts) > count, timeout=self.linger_s)
            del self.running[name]
            self.finished.add(name)
        return Outcome("executed")


@st.composite
def graphs(draw):
    capacity = Capacity(
        cpus=draw(st.integers(1, 4)),
        gpus=draw(st.integers(0, 3)),
        memory_mb=draw(st.sampled_from([0, 1000, 4000])),
    )
    n = draw(st.integers(1, 40))
    nodes = {}
    for i in range(n):
        deps = draw(st.lists(st.integers(0, i - 1), max_size=3, unique=True)) if i else []
        nodes[i] = Node(
            deps=tuple(deps),
            resources=Resources(
                cpus=draw(st.sampled_from([1.0, 1.5, 2.0, 3.0])),
                gpus=draw(st.integers(0, capacity.gpus)),
                memory_mb=draw(st.sampled_from([0, 300, 900, 5000])),
                exclusive=draw(st.booleans().map(lambda b: b and draw(st.integers(0, 9)) == 0)),
            ),
            estimate_s=draw(st.sampled_from([0.1, 1.0, 5.0])),
        )
    jobs = draw(st.integers(1, 6))
    return nodes, capacity, jobs


@settings(max_examples=60, deadline=None)
@given(graphs())
def test_random_dags_respect_deps_capacity_exclusivity_and_run_exactly_once(graph):
    nodes, capacity, jobs = graph
    recorder = Recorder(nodes, capacity)
    outcomes = Scheduler(capacity, jobs).run(nodes, recorder)
    assert recorder.violations == []
    assert sorted(recorder.starts) == sorted(nodes)  # every node exactly once
    assert {name: o.status for name, o in outcomes.items()} == {name: "executed" for name in nodes}


def test_recorder_sees_overlap():
    """Guard for the property above: its work function does make nodes run concurrently."""
    capacity = Capacity(cpus=4)
    nodes = {i: Node(()) for i in range(12)}
    recorder = Recorder(nodes, capacity, linger_s=0.2)
    Scheduler(capacity, 4).run(nodes, recorder)
    assert recorder.violations == []
    assert recorder.overlaps >= 4


def test_nodes_do_overlap_when_capacity_allows():
    """Two nodes that each wait for the other to start can only finish if run concurrently."""
    started = {name: threading.Event() for name in "ab"}

    def work(name):
        started[name].set()
        other = "b" if name == "a" else "a"
        if not started[other].wait(timeout=10):
            raise NodeFailed(f"{other} never started while {name} ran")
        return Outcome("executed")

    nodes = {"a": Node(()), "b": Node(())}
    outcomes = Scheduler(Capacity(cpus=2), jobs=2).run(nodes, work)
    assert {o.status for o in outcomes.values()} == {"executed"}


def test_inline_outcomes_never_reach_the_pool():
    nodes = {i: Node(deps=(i - 1,) if i else ()) for i in range(5)}
    nodes["fresh"] = Node(deps=(4,))
    ran = []
    outcomes = Scheduler(Capacity(2), 2).run(
        nodes, lambda n: ran.append(n) or Outcome("executed"),
        try_inline=lambda n: None if n == "fresh" else Outcome("up-to-date"),
    )
    assert ran == ["fresh"]
    assert [outcomes[i].status for i in range(5)] == ["up-to-date"] * 5


def test_long_chain_of_up_to_date_nodes(n=1500):
    """A no-op build of a long pipeline is decided inline; it must not recurse per node."""
    nodes = {i: Node(deps=(i - 1,) if i else ()) for i in range(n)}
    outcomes = Scheduler(Capacity(2), 2).run(nodes, lambda n: Outcome("executed"),
                                             try_inline=lambda n: Outcome("up-to-date"))
    assert all(o.status == "up-to-date" for o in outcomes.values())


def test_long_chain_below_a_failure_is_skipped(n=1500):
    nodes = {i: Node(deps=(i - 1,) if i else ()) for i in range(n)}

    def work(name):
        raise NodeFailed("root fails")

    outcomes = Scheduler(Capacity(2), 2).run(nodes, work)
    assert outcomes[0].status == "failed"
    assert all(outcomes[i].status == "skipped" for i in range(1, n))


def test_failure_without_keep_going_skips_dependents_and_stops_new_starts():
    # jobs=1: the failing node has the longest chain below it, so it runs first.
    nodes = {
        "bad": Node((), estimate_s=100),
        "child": Node(("bad",)),
        "grandchild": Node(("child",)),
        "x": Node(()), "y": Node(()), "z": Node(("x",)),
    }
    ran, aborted = [], []

    def work(name):
        ran.append(name)
        if name == "bad":
            raise NodeFailed("bad failed")
        return Outcome("executed")

    outcomes = Scheduler(Capacity(1), 1).run(nodes, work, abort=lambda: aborted.append(True))
    assert ran == ["bad"]
    assert aborted
    assert outcomes["bad"].status == "failed"
    assert str(outcomes["bad"].error) == "bad failed"
    for name in ("child", "grandchild", "x", "y", "z"):
        assert outcomes[name].status == "skipped", name


def test_failure_lets_running_nodes_finish_but_starts_nothing_new():
    gate = threading.Event()
    ran = []

    def work(name):
        ran.append(name)
        if name == "slow":
            assert gate.wait(timeout=10)
            return Outcome("executed")
        if name == "bad":
            raise NodeFailed("boom")
        return Outcome("executed")

    def abort():
        gate.set()  # the running node is told to stop; here it just finishes

    nodes = {"slow": Node((), estimate_s=50), "bad": Node((), estimate_s=40),
             "later1": Node(()), "later2": Node(()), "after_slow": Node(("slow",))}
    outcomes = Scheduler(Capacity(2), 2).run(nodes, work, abort=abort)
    assert sorted(ran) == ["bad", "slow"]
    assert outcomes["slow"].status == "executed"
    assert outcomes["bad"].status == "failed"
    for name in ("later1", "later2", "after_slow"):
        assert outcomes[name].status == "skipped"


def test_keep_going_runs_independent_branches():
    nodes = {
        "bad": Node(()), "child": Node(("bad",)), "grandchild": Node(("child",)),
        "x": Node(()), "y": Node(("x",)), "z": Node(("y",)), "mixed": Node(("bad", "y")),
    }

    def work(name):
        if name == "bad":
            raise RuntimeError("internal error in one node")
        return Outcome("executed")

    outcomes = Scheduler(Capacity(2), 2).run(nodes, work, keep_going=True)
    assert outcomes["bad"].status == "failed"
    assert isinstance(outcomes["bad"].error, RuntimeError)
    assert {n: outcomes[n].status for n in ("child", "grandchild", "mixed")} == dict.fromkeys(
        ("child", "grandchild", "mixed"), "skipped")
    assert {n: outcomes[n].status for n in ("x", "y", "z")} == dict.fromkeys(("x", "y", "z"), "executed")


def test_critical_path_first():
    nodes = {f"s{i}": Node(()) for i in range(4)}
    nodes.update({"c1": Node(()), "c2": Node(("c1",)), "c3": Node(("c2",)), "c4": Node(("c3",))})
    order = []
    Scheduler(Capacity(1), 1).run(nodes, lambda n: order.append(n) or Outcome("executed"))
    assert order[:3] == ["c1", "c2", "c3"]
    assert sorted(order) == sorted(nodes)


def test_critical_path_uses_estimates():
    nodes = {"short_chain_head": Node((), estimate_s=1), "short_chain_tail": Node(("short_chain_head",), estimate_s=1),
             "long_single": Node((), estimate_s=30)}
    order = []
    Scheduler(Capacity(1), 1).run(nodes, lambda n: order.append(n) or Outcome("executed"))
    assert order[0] == "long_single"


def test_too_many_gpus_fails_that_node_only_with_a_message():
    nodes = {"gpu": Node((), Resources(gpus=2)), "after": Node(("gpu",)), "cpu": Node(())}
    ran = []
    outcomes = Scheduler(Capacity(cpus=2, gpus=1), 2).run(
        nodes, lambda n: ran.append(n) or Outcome("executed"), keep_going=True)
    assert outcomes["gpu"].status == "failed" and "GPU" in str(outcomes["gpu"].error)
    assert outcomes["after"].status == "skipped"
    assert outcomes["cpu"].status == "executed"
    assert "gpu" not in ran


def test_oversized_node_is_clamped_and_runs_alone():
    capacity = Capacity(cpus=2, memory_mb=1000)
    nodes = {"big": Node((), Resources(cpus=16, memory_mb=64000)),
             **{f"n{i}": Node((), Resources(cpus=1, memory_mb=100)) for i in range(6)}}
    recorder = Recorder(nodes, capacity)
    outcomes = Scheduler(capacity, 4).run(nodes, recorder)
    assert recorder.violations == []
    assert outcomes["big"].status == "executed"


def test_exception_while_scheduling_aborts_and_propagates():
    """An exception raised while a node is being started (here by an observer) reaches the
    caller, and the build is aborted."""
    gate = threading.Event()
    aborted = []

    def work(name):
        gate.wait(timeout=10)
        return Outcome("executed")

    def on_event(event, name, outcome):
        if event == "started":
            raise KeyboardInterrupt

    def abort():
        aborted.append(True)
        gate.set()

    with pytest.raises(KeyboardInterrupt):
        Scheduler(Capacity(1), 1).run({"a": Node(())}, work, abort=abort, on_event=on_event)
    assert aborted


def test_interrupt_while_waiting_aborts_running_work():
    """Ctrl-C while the calling thread waits for the workers, delivered (as Linux may) to a
    worker thread: running work is told to stop, the workers end, the interrupt propagates."""
    stopped = threading.Event()  # set by abort: the running work's process killed
    stopped_in_time = []

    def work(name):
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)  # to this worker, not the waiting caller
        stopped_in_time.append(stopped.wait(timeout=10))  # else it would run on: a hung build
        return Outcome("executed")

    with pytest.raises(KeyboardInterrupt):
        Scheduler(Capacity(1), 1).run({"a": Node(())}, work, abort=stopped.set)
    assert stopped_in_time == [True]
    assert not [t for t in threading.enumerate() if t.name.startswith("mlbuild_")]
