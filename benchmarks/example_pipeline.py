"""The README's main job, timed: cold and warm, the cost of a fully cached run, and the
LoadGen harness overhead.

Figures, all wall clock of the whole `mlbuild` process, on a copy of the example workspace:
  cold (toolchains built)   empty cache, toolchain venvs already built (the usual cold case)
  cold (from nothing)       empty cache and empty toolchain dir: venvs built too (--from-nothing)
  warm                      `mlbuild test //bench:digits_offline` again: a cached pass
  warm no-op build          `mlbuild build //bench:digits_offline`: what mlbuild itself costs
                            when everything is cached (compare: a warm MLCFlow run of a trivial
                            cached script costs ~3.3 s of CPU)
  harness overhead          LoadGen Offline samples/s over raw onnxruntime samples/s on the
                            same engine and batch size, measured in the same harness process,
                            for the sklearn MLP and the torch CNN engines
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MLBUILD = [sys.executable, "-c", "from mlbuild.cli.executable import run; run()"]


def timed(argv, cwd, env) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall seconds, CPU seconds of the child processes, result)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv[3:])} failed:\n{done.stderr[-3000:]}")
    return wall, cpu, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from-nothing", action="store_true", help="also time a cold run that builds the venvs")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="mlbuild-bench-example-"))
    workspace = scratch / "ws"
    workspace.mkdir()
    shutil.copy(REPO / "BUILD.yaml", workspace)
    for sub in ("targets", "toolchains"):
        shutil.copytree(REPO / sub, workspace / sub)
    env = dict(os.environ, MLBUILD_CACHE_DIR=str(scratch / "cache"))
    if args.from_nothing:
        env["MLBUILD_TOOLCHAIN_DIR"] = str(scratch / "toolchains")
    rows = []
    test = [*MLBUILD, "test", "//bench:digits_offline"]
    wall, cpu, _ = timed(test, workspace, env)
    rows.append(("cold" + (" (from nothing)" if args.from_nothing else " (toolchains built)"), wall, cpu))
    warm = [timed(test, workspace, env) for _ in range(args.repeat)]
    rows.append(("warm (cached pass)", statistics.median(w for w, _, _ in warm), statistics.median(c for _, c, _ in warm)))
    noop = [timed([*MLBUILD, "build", "//bench:digits_offline"], workspace, env) for _ in range(args.repeat)]
    rows.append(("warm no-op build", statistics.median(w for w, _, _ in noop), statistics.median(c for _, c, _ in noop)))
    floor = [timed([sys.executable, "-c", "import mlbuild.cli.main"], workspace, env) for _ in range(args.repeat)]
    rows.append(("(floor: python + import mlbuild)", statistics.median(w for w, _, _ in floor),
                 statistics.median(c for _, c, _ in floor)))
    print(f"{'measurement':<36}{'wall s':>10}{'CPU s':>10}")
    for name, wall, cpu in rows:
        print(f"{name:<36}{wall:>10.3f}{cpu:>10.3f}")
    print(f"warm cached run vs MLCFlow's ~3.3 s CPU for a trivial cached script: {3.3 / rows[1][2]:.0f}x less CPU")

    print("\nLoadGen harness overhead (Offline, batch 32, 1 thread): LoadGen samples/s / raw onnxruntime samples/s")
    for framework in ("sklearn", "torch"):
        results = scratch / f"results-{framework}.json"
        timed([*MLBUILD, "test", "//bench:digits_offline", f"--config=framework={framework}",
               "--no-cache-test-results", "--results-json", str(results)], workspace, env)
        row = json.loads(results.read_text())[0]
        print(f"  {framework:<8} loadgen {row['samples_per_second']:>12,.0f}/s   raw {row['raw_samples_per_second']:>12,.0f}/s"
              f"   ratio {row['harness_overhead']:.2f}")
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
