"""Declared resources in Ray's terms, and the check that some node of the cluster can hold them.

Ray schedules on named quantities per node: CPU, GPU, memory (bytes) and any custom name a
node declares (`ray start --resources='{"accelerator_type_A100": 1}'`). An action's
`resources:` map onto them one to one; `exclusive` asks for every CPU of the largest node.
A demand no single node can meet would wait forever in Ray's queue, so it is refused before
anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..actions import Resources

_UNITS = {"CPU": "CPU(s)", "GPU": "GPU(s)", "memory": "MiB of memory"}


@dataclass(frozen=True)
class Node:
    """A live node of the cluster and what it declares, in Ray's names."""

    node_id: str
    resources: dict[str, float]


def demand(resources: Resources, nodes: list[Node]) -> dict[str, float]:
    """What a Ray task running the action asks for, in Ray's resource names."""
    cpus = max((n.resources.get("CPU", 0.0) for n in nodes), default=resources.cpus) \
        if resources.exclusive else resources.cpus
    wanted = {"CPU": cpus, "GPU": float(resources.gpus), "memory": float(resources.memory_mb) * 2**20}
    wanted.update(dict(resources.custom))
    return {name: amount for name, amount in wanted.items() if amount > 0}


def task_options(wanted: dict[str, float]) -> dict:
    """`demand` as keyword arguments of a Ray remote function's `.options()`."""
    options = {"num_cpus": wanted.get("CPU", 0.0), "num_gpus": wanted.get("GPU", 0.0)}
    if "memory" in wanted:
        options["memory"] = int(wanted["memory"])
    custom = {name: amount for name, amount in wanted.items() if name not in _UNITS}
    if custom:
        options["resources"] = custom
    return options


def unplaceable(wanted: dict[str, float], nodes: list[Node]) -> str | None:
    """Why no node can run a task with this demand, or None when one can."""
    if any(all(n.resources.get(name, 0.0) >= amount for name, amount in wanted.items()) for n in nodes):
        return None
    reasons = []
    for name, amount in wanted.items():
        most = max((n.resources.get(name, 0.0) for n in nodes), default=0.0)
        if most < amount:
            reasons.append(f"needs {_amount(name, amount)}, the most any node has is {_amount(name, most)}")
    return "; ".join(reasons) or "no single node has all of " + ", ".join(_amount(n, a) for n, a in wanted.items())


def _amount(name: str, amount: float) -> str:
    if name == "memory":
        return f"{amount / 2**20:g} MiB of memory"
    return f"{amount:g} {_UNITS.get(name, f'of custom resource {name!r}')}"
