"""A real Ray cluster on this machine and a real nginx remote cache, shared by the distributed tests.

`ray.cluster_utils.Cluster` starts real raylets as separate "nodes" on 127.0.0.1: a head and
two workers of 2 CPUs each. One worker declares `num_gpus=1` although this machine has no
GPU: that node is the GPU test double (SIMULATED_GPU_NODE), so that Ray's real GPU-aware
placement can be observed; nothing else is faked. Each node has its own mlbuild cache
directory (no shared filesystem between nodes, as on a real cluster); toolchain venvs come
from the test session's shared toolchain dir, as they would from a node's own disk.

The cluster is started once for this directory's tests (its startup costs tens of seconds here)
and left as it was found by every test; the client runs as a child process, as a user runs it.
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is the optional extra mlbuild[ray] (pip install -e '.[ray]')")
from core.conftest import MLBUILD_COMMAND  # noqa: E402
from example.conftest import copy_example  # noqa: E402,F401  (a fresh copy of the example workspace)
from ray.cluster_utils import Cluster  # noqa: E402

NODE_ARGS = {
    "num_cpus": 2,
    "object_store_memory": 80 * 2**20,  # Ray's minimum: these tests move no objects of note
    "node_ip_address": "127.0.0.1",
}
SIMULATED_GPU_NODE = "simulated_gpu_node"  # the node declaring a GPU this machine does not have


@dataclass
class RayCluster:
    cluster: Cluster
    address: str
    nodes: dict  # name -> ray._private.node.Node ("head", "cpu_node", SIMULATED_GPU_NODE)
    tmp: Path

    def node_id(self, name: str) -> str:
        return self.nodes[name].node_id

    def add_node(self, name: str, **args):
        """A further worker node; the test that adds one removes it."""
        node = self.cluster.add_node(**NODE_ARGS, env_vars=_node_env(self.tmp, name), **args)
        self.cluster.wait_for_nodes()
        self.nodes[name] = node
        return node

    def remove_node(self, name: str) -> None:
        """The node's machine dies: its raylet and every process under it (workers, actions)."""
        node = self.nodes.pop(name)
        doomed = _descendants(node.all_processes["raylet"][0].process.pid)
        self.cluster.remove_node(node, allow_graceful=False)
        for pid in doomed:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _descendants(pid: int) -> list[int]:
    """Every process below `pid`, from /proc (children, their children, ...)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _node_env(tmp: Path, name: str) -> dict:
    """What differs between nodes: each has its own cache (MLBUILD_CACHE_DIR)."""
    return {"MLBUILD_CACHE_DIR": str(tmp / "nodes" / name / "cache")}


@pytest.fixture(scope="package")
def ray_cluster(tmp_path_factory, offline_toolchains):
    """The cluster, for this directory's tests only: idle, its 26 processes still take about a fifth
    of a core and 1.8 GiB, which would slow every later test (and skew its LoadGen timings)."""
    tmp = tmp_path_factory.mktemp("ray")
    with pytest.MonkeyPatch.context() as env:
        # Loopback only: without this, Ray turns 127.0.0.1 into this host's network address
        # (its "single-machine cluster" switch; the nodes and every client inherit it).
        env.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        env.setenv("RAY_DISABLE_USAGE_STATS", "1")
        cluster = Cluster(initialize_head=True, head_node_args={
            **NODE_ARGS, "include_dashboard": False, "env_vars": _node_env(tmp, "head")})
        nodes = {"head": cluster.head_node}
        nodes["cpu_node"] = cluster.add_node(**NODE_ARGS, env_vars=_node_env(tmp, "cpu_node"))
        nodes[SIMULATED_GPU_NODE] = cluster.add_node(**NODE_ARGS, num_gpus=1,
                                                     env_vars=_node_env(tmp, SIMULATED_GPU_NODE))
        cluster.wait_for_nodes()
        try:
            yield RayCluster(cluster, cluster.address, nodes, tmp)
        finally:
            cluster.shutdown()


@pytest.fixture
def cache_server(start_nginx):
    """A real nginx remote cache of the test's own (nginx starts in a fraction of a second)."""
    return start_nginx()


@pytest.fixture
def mlbuild_process():
    """Run `mlbuild ARGS` in a child process with `cwd` (a workspace) and `cache` (its local cache)."""

    def run(cwd: Path, cache: Path, *args, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*MLBUILD_COMMAND, "--cache-dir", str(cache), *map(str, args)],
            cwd=cwd, capture_output=True, text=True, timeout=timeout,
        )

    return run
