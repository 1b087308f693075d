"""The worker side of remote execution: one task, on whichever node Ray placed it.

  1. refuse a task from another mlbuild version (the key schema and sandbox may differ);
  2. resolve the action's toolchains here (a venv is built or reused on this node, a host
     tool detected) and refuse one whose fingerprint differs from the key's, naming both;
  3. run the action with the same SandboxRunner as a local build, with no workspace: every
     input comes from this node's CAS, fetched from the remote one and verified first;
  4. upload the outputs (and, when cacheable, the action-cache entry, last) to the remote;
  5. report the result manifest.
Nothing here imports Ray: the Ray runner calls `run_task` inside its remote function.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path

from .. import __version__
from ..errors import UserError
from ..execution.executors import BUILTIN_EXECUTORS, ExecutorContext
from ..execution.processes import ProcessRunner
from ..execution.runners import ActionRequest, SandboxRunner
from ..rules import EXECUTORS
from ..storage.local import LocalCache, default_cache_dir
from ..storage.remote import RemoteCache, RemoteCacheRequired
from ..toolchains import ResolvedToolchain, ToolchainMissing, ToolchainRegistry
from .task import RemoteTask, TaskFailure, ToolchainSpec, WorkerReport


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)  # the Ray worker's log file


class _Worker:
    """What a worker process keeps between tasks: its node's cache, one connection pool to the
    remote cache and a sandbox runner fetching from it, and toolchains already resolved (host
    ones are probed every time)."""

    def __init__(self):
        self.cache = LocalCache(default_cache_dir())
        self.context = ExecutorContext(processes=ProcessRunner(), cas=self.cache.cas, lock=self.cache.lock,
                                       cache_root=self.cache.root, warn=_warn)
        self.remotes: dict[str, tuple[RemoteCache, SandboxRunner]] = {}
        self.toolchains: dict[str, ResolvedToolchain] = {}

    def remote(self, task: RemoteTask) -> tuple[RemoteCache, SandboxRunner]:
        identity = repr(task.remote)
        if identity not in self.remotes:
            remote = RemoteCache(task.remote, _warn)
            sandboxes = SandboxRunner(
                self.context, {**BUILTIN_EXECUTORS, **EXECUTORS}, None, self.cache.root / "sandbox",
                fetch=lambda digest, executable, needed_by: remote.fetch_blob(digest, executable, self.cache,
                                                                              needed_by))
            self.remotes[identity] = remote, sandboxes
        return self.remotes[identity]

    def resolve(self, spec: ToolchainSpec) -> ResolvedToolchain:
        identity = json.dumps([spec.name, spec.declaration], sort_keys=True)
        known = self.toolchains.get(identity)
        if known is not None:
            return known
        origin = Path(f"<toolchain {spec.name} declared on the client>")
        registry = ToolchainRegistry({spec.name: (spec.declaration, origin)}, self.cache.root, _warn)
        resolved = registry.resolve(spec.name)
        if resolved.evidence:  # built here (a venv): stays valid; a host tool may change
            self.toolchains[identity] = resolved
        return resolved


_worker: _Worker | None = None


def run_task(task: RemoteTask, node: str) -> WorkerReport:
    """Run `task` on this node; an error the user can act on comes back as a TaskFailure."""
    global _worker
    label = task.action.label
    if task.client_version != __version__:
        return WorkerReport(node, None, TaskFailure(
            "version", f"{label}: node {node[:12]} runs mlbuild {__version__}, the client {task.client_version}",
            "install the client's mlbuild version on every node of the cluster"))
    if _worker is None:
        _worker = _Worker()
    worker = _worker
    try:
        with worker.cache.shared():
            action = _placed_here(worker, task)
            remote, sandboxes = worker.remote(task)
            try:
                outcome = sandboxes.run(ActionRequest(action, task.key, task.inputs, dict(task.dep_results),
                                                      is_test=task.is_test))
            finally:
                sandboxes.finish()
            result = outcome.result
            remote.upload_result(task.key, result, worker.cache, manifest=task.publish and result.exit_code == 0)
            return WorkerReport(node, result)
    except ToolchainMissing as exc:
        return WorkerReport(node, None, TaskFailure(
            "toolchain", f"{label}: toolchain unusable on node {node[:12]}: {exc}",
            "give every node the toolchains the client has, or tag the target 'local'"))
    except RemoteCacheRequired as exc:
        return WorkerReport(node, None, TaskFailure("remote", exc.message, exc.hint))
    except UserError as exc:
        return WorkerReport(node, None, TaskFailure("action", exc.message, exc.hint))


def _placed_here(worker: _Worker, task: RemoteTask):
    """The action with this node's toolchain install dirs behind its placeholders, and the GPUs
    Ray assigned it; a toolchain whose fingerprint differs from the key's is refused."""
    keyed = dict(task.action.toolchains)
    roots = []
    for spec in task.toolchains:
        resolved = worker.resolve(spec)
        if resolved.digest != keyed[spec.name]:
            raise ToolchainMissing(
                f"'{spec.name}' has fingerprint {resolved.digest[:16]} on this node but "
                f"{keyed[spec.name][:16]} in the action's key ({_difference(resolved.fingerprint, spec.fingerprint)})")
        if resolved.root:
            roots.append((spec.name, resolved.root))
    env = task.action.env
    if task.action.resources.gpus and "CUDA_VISIBLE_DEVICES" in os.environ:
        # The GPUs Ray gave this task; a placement fact like the install dirs, so not keyed.
        env = tuple(sorted({**dict(env), "CUDA_VISIBLE_DEVICES": os.environ["CUDA_VISIBLE_DEVICES"]}.items()))
    return replace(task.action, toolchain_roots=tuple(sorted(roots)), env=env)


def _difference(here: dict, client: dict) -> str:
    """The fingerprint fields that differ, worker's value first: what a user must align."""
    parts = []
    for field in sorted(set(here) | set(client)):
        mine, theirs = here.get(field), client.get(field)
        if mine == theirs:
            continue
        if isinstance(mine, list) and isinstance(theirs, list):
            only_here = sorted(set(map(str, mine)) - set(map(str, theirs)))[:3]
            only_client = sorted(set(map(str, theirs)) - set(map(str, mine)))[:3]
            parts.append(f"{field}: {', '.join(only_here) or '-'} here vs {', '.join(only_client) or '-'} on the client")
        else:
            parts.append(f"{field}: {mine} here vs {theirs} on the client")
    return "; ".join(parts) or "same fields, different encoding"
