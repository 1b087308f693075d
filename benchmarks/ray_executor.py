"""`--executor=ray` on a simulated cluster against local `-j2`, in the same run.

A real Ray cluster (`ray.cluster_utils.Cluster`: 3 nodes x 2 CPUs on this machine) and a
real nginx remote cache on 127.0.0.1. Two generated workspaces, in fresh caches each time:
  wide    N independent actions of sleep-like work (`sleep S`, 1 CPU each, so the 2 real
          cores are not the limit): local -j2 has 2 slots, the cluster 6; ideal speed-up 3x
  chain   M actions each depending on the previous one: nothing overlaps, so the difference
          in wall time per action is the latency the Ray path adds to one action (submit,
          worker, remote CAS round trips both ways, download of the output)
Ray starts worker processes per job (per mlbuild run): the fixed start-up is measured apart,
by a build of 6 empty actions. Both Ray builds run with the default --remote-download=toplevel and every target requested,
so every output still comes back to the client: the fair comparison with a local build.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mlbuild.storage.nginx import NginxServer  # noqa: E402

MLBUILD = [sys.executable, "-c", "from mlbuild.cli.executable import run; run()"]
ROOT_BUILD = "workspace: {name: bench}\n"


def workspace(path: Path, count: int, sleep_s: float, chained: bool) -> Path:
    """`count` targets whose commands name the workspace, so no two workspaces share a key."""
    targets = []
    for i in range(count):
        dep = f'deps: [":a{i - 1}"], ' if chained and i else ""
        targets.append(f'a{i}: {{rule: command, {dep}outs: [o.txt], resources: {{cpus: 1}}, '
                       f'cmd: "sleep {sleep_s}; echo {path.name} {i} > {{{{out}}}}"}}')
    (path / "targets" / "p").mkdir(parents=True)
    (path / "BUILD.yaml").write_text(ROOT_BUILD)
    (path / "targets" / "p" / "BUILD.yaml").write_text("\n".join(targets) + "\n")
    return path


def build(root: Path, cache: Path, *args) -> tuple[float, list[float]]:
    """(wall seconds of the whole process, seconds of each action as --profile recorded it)."""
    profile = root / "profile.json"
    start = time.perf_counter()
    done = subprocess.run([*MLBUILD, "--cache-dir", str(cache), "build", "//p/...", "--profile", str(profile),
                           *map(str, args)], cwd=root, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"build failed:\n{done.stderr[-3000:]}")
    events = [e for e in json.loads(profile.read_text())["traceEvents"] if e.get("ph") == "X"]
    if any(e["args"]["outcome"] != "executed" for e in events):
        sys.exit(f"not every action executed:\n{done.stderr[-3000:]}")
    return wall, [e["dur"] / 1e6 for e in sorted(events, key=lambda e: e["ts"])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--actions", type=int, default=200, help="independent actions (wide)")
    parser.add_argument("--chain", type=int, default=20, help="actions in the dependency chain")
    parser.add_argument("--sleep", type=float, default=1.0, help="seconds of work per action")
    args = parser.parse_args()
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # keep Ray on 127.0.0.1
    os.environ["RAY_DISABLE_USAGE_STATS"] = "1"
    from ray.cluster_utils import Cluster  # the optional extra mlbuild[ray]

    scratch = Path(tempfile.mkdtemp(prefix="mlbuild-bench-ray-"))
    node = {"num_cpus": 2, "object_store_memory": 80 * 2**20, "node_ip_address": "127.0.0.1"}
    cluster = Cluster(initialize_head=True, head_node_args={
        **node, "include_dashboard": False, "env_vars": {"MLBUILD_CACHE_DIR": str(scratch / "node0")}})
    for i in (1, 2):
        cluster.add_node(**node, env_vars={"MLBUILD_CACHE_DIR": str(scratch / f"node{i}")})
    cluster.wait_for_nodes()
    server = NginxServer(scratch / "nginx" / "data", run_dir=scratch / "nginx" / "run").start()
    ray_flags = ("--executor=ray", "--ray-address", cluster.address, "--remote-cache", server.url)
    try:
        startup, _ = build(workspace(scratch / "startup", 6, 0.0, False), scratch / "startup-cache", *ray_flags)
        results = {}
        for name, count, chained in (("wide", args.actions, False), ("chain", args.chain, True)):
            local = build(workspace(scratch / f"{name}-local", count, args.sleep, chained), scratch / f"{name}-lc",
                          "-j2")
            remote = build(workspace(scratch / f"{name}-ray", count, args.sleep, chained), scratch / f"{name}-rc",
                           *ray_flags)
            results[name] = (local, remote)
    finally:
        server.stop()
        cluster.shutdown()
    (local_wall, _), (ray_wall, _) = results["wide"]
    print(f"wide: {args.actions} actions of {args.sleep:g} s, 1 CPU each")
    print(f"  local -j2            {local_wall:8.2f} s")
    print(f"  ray, 3 nodes x 2 CPU {ray_wall:8.2f} s   speed-up {local_wall / ray_wall:.2f}x")
    print(f"  of which fixed       {startup:8.2f} s   (a build of 6 empty actions: connect, start a worker "
          f"per slot, shut down)")
    print(f"  ideal                {args.actions * args.sleep / 6:8.2f} s   speed-up 3x")
    (_, local_actions), (_, ray_actions) = results["chain"]
    steady = ray_actions[1:]  # the first one waits for its worker process to start
    overhead = statistics.mean(steady) - statistics.mean(local_actions[1:])
    print(f"chain: {args.chain} dependent actions")
    print(f"  per action, local    {statistics.mean(local_actions[1:]) * 1000:8.1f} ms")
    print(f"  per action, ray      {statistics.mean(steady) * 1000:8.1f} ms   (median "
          f"{statistics.median(steady) * 1000:.1f})")
    print(f"  overhead of the Ray path per action: {overhead * 1000:.1f} ms")


if __name__ == "__main__":
    main()
