"""Warm `mlbuild build //submission:digits`: everything cached, the tree re-checked; goal < 1 s.

Copies the example workspace to a temp dir, builds //submission:digits once (cold: the digits
pipeline, four benchmarks with accuracy runs, eight compliance tests, the tree; a few minutes on
2 cores), then times --runs warm builds of it, each a whole process, checking each executed
nothing. As a baseline in the same run it times warm builds of one small target
(//digits:dataset): the difference is what the submission's 20-target graph costs. CPU time of
each process is reported beside the wall time: on a loaded machine it is the steadier figure.

    python benchmarks/submission_warm.py                  # 1 cold + 7 warm builds of each
    python benchmarks/submission_warm.py --runs 11 --cache-dir /tmp/c
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GOAL_S = 1.0


def build(mlbuild: list, workspace: Path, cache: Path, target: str) -> tuple[float, float, str]:
    """(wall s, CPU s of the process, its stderr)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([*mlbuild, "--cache-dir", str(cache), "build", target], cwd=workspace,
                          capture_output=True, text=True, timeout=3600)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"mlbuild build {target} failed:\n{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu, done.stderr


def main() -> int:
    default_mlbuild = Path(sys.executable).with_name("mlbuild")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="warm builds of each target (default 7)")
    parser.add_argument("--cache-dir", help="mlbuild --cache-dir (default: a fresh temp dir)")
    parser.add_argument("--mlbuild", default=str(default_mlbuild) if default_mlbuild.exists() else None,
                        help="mlbuild executable (default: the console script beside this Python)")
    args = parser.parse_args()
    mlbuild = ([args.mlbuild] if args.mlbuild
               else [sys.executable, "-c", "from mlbuild.cli.executable import run; run()"])
    with tempfile.TemporaryDirectory() as scratch:
        workspace = Path(scratch) / "ws"
        workspace.mkdir()
        shutil.copy(REPO / "BUILD.yaml", workspace)
        for tree in ("targets", "toolchains"):
            shutil.copytree(REPO / tree, workspace / tree)
        cache = Path(args.cache_dir) if args.cache_dir else Path(scratch) / "cache"
        cold, _, _ = build(mlbuild, workspace, cache, "//submission:digits")
        print(f"cold build of //submission:digits: {cold:.1f} s")
        print(f"{'target':<22} {'median s':>9} {'best s':>7} {'median CPU s':>13}")
        medians, cpus = {}, {}
        for target in ("//submission:digits", "//digits:dataset"):
            build(mlbuild, workspace, cache, target)  # the first build of a new request is not a no-op
            times, cpu = [], []
            for _ in range(args.runs):
                elapsed, used, stderr = build(mlbuild, workspace, cache, target)
                if " 0 executed" not in stderr:
                    sys.exit(f"a warm build of {target} executed actions:\n{stderr}")
                times.append(elapsed)
                cpu.append(used)
            medians[target], cpus[target] = statistics.median(times), statistics.median(cpu)
            print(f"{target:<22} {medians[target]:>9.3f} {min(times):>7.3f} {cpus[target]:>13.3f}")
        warm = medians["//submission:digits"]
        print(f"warm //submission:digits: {warm:.3f} s wall, {cpus['//submission:digits']:.3f} s CPU "
              f"(goal < {GOAL_S} s: {'met' if warm < GOAL_S else 'NOT met'}); "
              f"{warm / medians['//digits:dataset']:.2f}x a one-target warm build")
    return 0 if warm < GOAL_S else 1


if __name__ == "__main__":
    sys.exit(main())
