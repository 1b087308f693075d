"""The client side of remote execution: actions become Ray tasks on an existing cluster.

`RayCluster` is the connection, one per build:
  connect  check the address answers (Ray itself would wait minutes), join the cluster, and
           list its live nodes and what each declares;
  check    before anything runs, refuse any action whose resources no single node has;
  submit   one task carrying the action's resources; Ray retries a task whose node died
           (bounded by MAX_RETRIES); wait for the worker's report;
  cancel   on failure or Ctrl-C, cancel every task in flight (its process tree is killed).
`RayRunner` is its tier at the bottom of the runner stack (execution/runners.py): an action
`placement.runs_remotely` keeps here goes to the sandbox runner it wraps; any other has its
inputs shipped to the remote CAS (sources from the workspace, the deps' outputs from the local
CAS unless they were produced remotely and are there already), runs on the cluster, and comes
back as a result whose blobs stay in the remote CAS unless the request asks for a download.
"""

from __future__ import annotations

import logging
import socket
import threading
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from .. import __version__
from ..actions import Action, Input
from ..errors import EXIT_USAGE, ActionError, UserError
from ..execution.outcome import Outcome, Status
from ..execution.runners import ActionRequest, Runner, WrappingRunner
from ..storage.local import LocalCache
from ..storage.remote import RemoteCache
from .placement import runs_remotely
from .resources import Node, demand, task_options, unplaceable
from .task import RemoteTask, ToolchainSpec, WorkerReport

MAX_RETRIES = 3  # attempts after a node or worker died under a task
_CONNECT_TIMEOUT_S = 5.0


class ClusterError(UserError):
    """The Ray cluster cannot be used as given (address, flags)."""

    exit_code = EXIT_USAGE


class RayCluster:
    """One connection to a Ray cluster for a build; safe to use from the scheduler's threads."""

    def __init__(self, address: str | None, remote: RemoteCache | None):
        if remote is None:
            raise ClusterError(
                "--executor=ray needs a remote cache: workers fetch inputs from it and upload outputs to it",
                hint="pass --remote-cache URL (or set remote_cache in the workspace: section of BUILD.yaml)",
            )
        if not address:
            raise ClusterError("--executor=ray needs the cluster's address",
                               hint="pass --ray-address HOST:PORT (or set ray_address in the workspace: section)")
        self.address = address
        self.nodes: list[Node] = []
        self._running: set = set()
        self._lock = threading.Lock()
        self._cancelled = threading.Event()
        self._ray = None

    def connect(self) -> RayCluster:
        _check_reachable(self.address)
        import ray

        try:
            ray.init(address=self.address, logging_level=logging.WARNING, log_to_driver=False,
                     namespace="mlbuild")
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ClusterError(f"cannot join the Ray cluster at {self.address}: {exc}",
                               hint="start it with `ray start --head` (see README: Running on a Ray cluster)") from None
        self._ray = ray
        self._function = ray.remote(max_retries=MAX_RETRIES, retry_exceptions=False)(_run_on_worker)
        self.nodes = [Node(n["NodeID"], dict(n["Resources"])) for n in ray.nodes() if n.get("Alive")]
        return self

    def capacity(self) -> tuple[int, int]:
        """(CPUs, GPUs) of the whole cluster: how much the client may keep in flight."""
        cpus = sum(n.resources.get("CPU", 0.0) for n in self.nodes)
        gpus = sum(n.resources.get("GPU", 0.0) for n in self.nodes)
        return max(1, int(cpus)), int(gpus)

    def check(self, actions: list[Action]) -> None:
        """Refuse, before anything runs, an action that no node of the cluster could hold."""
        for action in actions:
            reason = unplaceable(demand(action.resources, self.nodes), self.nodes)
            if reason is not None:
                raise UserError(
                    f"{action.label} cannot run on the Ray cluster at {self.address}: {reason}",
                    hint="lower its resources:, add a node that has them, or tag it 'local'",
                )

    def submit(self, task: RemoteTask) -> WorkerReport:
        """Run `task` on a node that has its resources and wait for the worker's report."""
        ray = self._ray
        label = task.action.label
        if self._cancelled.is_set():
            raise ActionError(f"{label}: cancelled")
        options = task_options(demand(task.action.resources, self.nodes))
        ref = self._function.options(**options, name=f"mlbuild {label}").remote(task)
        with self._lock:
            self._running.add(ref)
        try:
            return ray.get(ref)
        except ray.exceptions.TaskCancelledError:
            raise ActionError(f"{label}: cancelled") from None
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError) as exc:
            raise ActionError(
                f"{label}: the Ray worker running it died {MAX_RETRIES + 1} times ({type(exc).__name__})",
                hint="check the nodes' logs (/tmp/ray/session_latest/logs) for out-of-memory kills",
            ) from None
        except ray.exceptions.RayError as exc:
            raise ActionError(f"{label}: Ray could not run it: {str(exc).splitlines()[0]}") from None
        finally:
            with self._lock:
                self._running.discard(ref)

    def cancel(self) -> None:
        """Cancel every task in flight; Ray interrupts it and its process tree is killed."""
        self._cancelled.set()
        with self._lock:
            running = list(self._running)
        for ref in running:
            self._ray.cancel(ref, recursive=True)

    def close(self) -> None:
        if self._ray is not None:
            self._ray.shutdown()
            self._ray = None


class RayRunner(WrappingRunner):
    """Runs actions on the cluster; those that stay on the client go to the runner it wraps."""

    def __init__(self, cluster: RayCluster, remote: RemoteCache, cache: LocalCache, workspace_root: Path,
                 toolchain_spec: Callable[[str], ToolchainSpec], inner: Runner):
        super().__init__(inner)
        self.cluster = cluster
        self.remote = remote
        self.cache = cache
        self.workspace_root = workspace_root
        self._toolchain_spec = toolchain_spec
        self._specs: dict[str, ToolchainSpec] = {}
        self._shipped: set[str] = set()  # digests known to be in the remote CAS
        self._lock = threading.Lock()

    def run(self, request: ActionRequest) -> Outcome:
        action = request.action
        if not runs_remotely(action, request.last_duration_s):
            return self.inner.run(request)
        self._ship_inputs(action, request.inputs)
        task = RemoteTask(
            action=action, key=request.key, inputs=request.inputs, dep_results=tuple(sorted(request.dep_results.items())),
            toolchains=tuple(self._spec(name) for name, _ in action.toolchains), remote=self.remote.options,
            is_test=request.is_test, publish=request.cacheable and action.remotable, client_version=__version__,
        )
        report = self.cluster.submit(task)
        if report.failure is not None:
            raise ActionError(report.failure.message, hint=report.failure.hint)
        result = report.result
        with self._lock:
            self._shipped.update(result.blob_digests())
        if request.download:
            logs = {(d, False) for d in (result.stdout_digest, result.stderr_digest) if d}
            for digest, executable in sorted({(o.digest, o.executable) for o in result.outputs} | logs):
                self.remote.fetch_blob(digest, executable, self.cache, action.label)
        return Outcome(Status.EXECUTED, result, node=report.node)

    def cancel(self) -> None:
        self.cluster.cancel()
        self.inner.cancel()

    def _ship_inputs(self, action: Action, inputs: tuple[Input, ...]) -> None:
        """Make sure the remote CAS holds every input of `action`."""
        sources = dict(action.sources)
        for blob in inputs:
            if blob.digest in self._shipped:
                continue
            if blob.path in sources:
                self.remote.upload_file(blob.digest, self.workspace_root / sources[blob.path], action.label)
            elif self.cache.cas.contains(blob.digest, blob.executable):
                self.remote.upload_blob(blob.digest, blob.executable, self.cache, action.label)
            # else: produced remotely and never brought here (build without the bytes): it is there
            with self._lock:
                self._shipped.add(blob.digest)

    def _spec(self, name: str) -> ToolchainSpec:
        with self._lock:
            if name not in self._specs:
                self._specs[name] = self._toolchain_spec(name)
            return self._specs[name]


def _run_on_worker(task: RemoteTask) -> WorkerReport:
    """The Ray task: mlbuild on the node runs it; the node id says where it ran."""
    import ray

    from mlbuild.distributed.worker import run_task

    return run_task(task, ray.get_runtime_context().get_node_id())


def _check_reachable(address: str) -> None:
    """Fail in seconds on an address nothing answers at (ray.init would retry for minutes)."""
    if address == "auto":
        return
    parts = urlsplit(address if "://" in address else f"ray://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if not host or not port:
        raise ClusterError(f"Ray address {address!r} is not HOST:PORT",
                           hint="e.g. --ray-address 10.0.0.5:6379 (what `ray start --head` prints), or auto")
    try:
        socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise ClusterError(
            f"no Ray cluster answers at {address}: {exc.strerror or exc}",
            hint="start one with `ray start --head --port PORT` and pass its address (see README)",
        ) from None
