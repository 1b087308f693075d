"""What the client sends a worker: one action as pure data, and what the worker sends back.

A task carries no paths of the client's machine: sources and the deps' outputs are named by
digest (the worker fetches them from the remote CAS), and each toolchain by its declaration,
made self-contained, plus the fingerprint the client keyed the action with (the worker
resolves the toolchain itself and refuses to run if its fingerprint differs).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..actions import Action, Input
from ..loading.yamlsource import LocatedDict
from ..storage.action_cache import ActionResult
from ..storage.remote import RemoteOptions
from ..toolchains.venv import requirement_lines


@dataclass(frozen=True)
class ToolchainSpec:
    name: str
    declaration: LocatedDict  # as loaded from toolchains/*.yaml (errors point there), requirements inlined
    fingerprint: dict  # what the client resolved: the action's key holds its digest


@dataclass(frozen=True)
class RemoteTask:
    action: Action
    key: str
    inputs: tuple[Input, ...]  # sources and the deps' outputs, by digest, as the key has them
    dep_results: tuple[tuple[str, ActionResult], ...]  # (label, result) of each dependency
    toolchains: tuple[ToolchainSpec, ...]
    remote: RemoteOptions  # the cache holding the inputs, and receiving the outputs
    is_test: bool  # a failed test is a result (exit code 1), not an error
    publish: bool  # write the action-cache entry too (a cacheable action)
    client_version: str  # mlbuild's version on the client: a worker running another refuses


@dataclass(frozen=True)
class TaskFailure:
    """An error a worker reports instead of raising: it keeps its hint and its exit code."""

    kind: str  # "action" (the action failed), "toolchain", "remote" (the cache), "version"
    message: str
    hint: str | None = None


@dataclass(frozen=True)
class WorkerReport:
    node: str  # the Ray node id that ran the task
    result: ActionResult | None  # outputs uploaded to the remote CAS; None when `failure`
    failure: TaskFailure | None = None


def toolchain_spec(registry, name: str) -> ToolchainSpec:
    """The declaration a worker needs to resolve `name` without the client's files."""
    decl, file = registry.declaration(name)
    if decl.get("kind") == "python_venv":  # a requirements file is the client's: inline its lines
        decl = decl.with_items({**decl, "requirements": requirement_lines(decl, file)}.items())
    return ToolchainSpec(name, decl, registry.resolve(name).fingerprint)
