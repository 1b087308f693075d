"""No-op rebuild wall time of the repo's example workspace, against Python start-up floors.

Runs `mlbuild build //...` in the repository root --runs times, each as a whole process. The
first run brings the outputs up to date (it may build, and is reported apart); runs 2..N are
no-op rebuilds and their median (and best) is the figure. Each no-op run is checked to have
executed 0 actions. For reference it also times, the same number of times:
  python -c pass                        the interpreter's own start-up
  python -c "import mlbuild.cli.main"   importing the CLI module (what every command pays)
  mlbuild --version                     the console script, every subcommand registered

    python benchmarks/noop_example.py                  # 6 runs: 1 warm-up + 5 measured
    python benchmarks/noop_example.py --runs 11 --cache-dir /tmp/c

The cache dir is the one mlbuild would use anyway (--cache-dir, else $MLBUILD_CACHE_DIR, else
~/.cache/mlbuild), so an example already built there is not rebuilt from scratch.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_SUMMARY_RE = re.compile(r"Build (\w+): (\d+) targets, (\d+) executed, (\d+) cached.*? in ([0-9.]+)s")
NOOP_GOAL_S = 0.5


def timed(argv, cwd: Path, env: dict, timeout: float) -> tuple[float, int, str]:
    start = time.perf_counter()
    done = subprocess.run(argv, check=False, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL, timeout=timeout)
    return time.perf_counter() - start, done.returncode, done.stdout.decode(errors="replace")


def main() -> int:
    default_mlbuild = Path(sys.executable).with_name("mlbuild")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=6, help="builds in all; the first is the warm-up (default 6)")
    parser.add_argument("--target", action="append", help="patterns to build (default //...)")
    parser.add_argument("--config", help="passed to mlbuild build --config")
    parser.add_argument("--cache-dir", help="mlbuild --cache-dir (default: mlbuild's own default)")
    parser.add_argument("--workspace", default=str(REPO), help="workspace directory (default: the repo root)")
    parser.add_argument("--mlbuild", default=str(default_mlbuild) if default_mlbuild.exists() else "mlbuild",
                        help="mlbuild executable (default: the console script beside this Python, "
                        "bypassing any pyenv shim)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds allowed for each command")
    parser.add_argument("--no-bytecode-cache", action="store_true",
                        help="run with PYTHONDONTWRITEBYTECODE=1 (by default a set PYTHONDONTWRITEBYTECODE is dropped "
                        "and bytecode goes to $TMPDIR/mlbuild-bench-pycache, as a normal install would have it)")
    args = parser.parse_args()
    workspace = Path(args.workspace).resolve()
    if not (workspace / "BUILD.yaml").is_file():
        print(f"no example workspace: {workspace / 'BUILD.yaml'} does not exist", file=sys.stderr)
        return 2
    env = dict(os.environ)
    if env.pop("PYTHONDONTWRITEBYTECODE", None) and not args.no_bytecode_cache:
        # Measure mlbuild as normally installed, its bytecode cached, kept out of the repo.
        env["PYTHONPYCACHEPREFIX"] = os.path.join(tempfile.gettempdir(), "mlbuild-bench-pycache")
    elif args.no_bytecode_cache:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    mlbuild = args.mlbuild.split()
    build = [*mlbuild, *(["--cache-dir", args.cache_dir] if args.cache_dir else []), "build",
             *(args.target or ["//..."]), *(["--config", args.config] if args.config else [])]
    runs = max(2, args.runs)
    subprocess.run([*mlbuild, "--version"], check=False, env=env, capture_output=True)  # compile bytecode once

    results = []
    for i in range(runs):
        seconds, code, text = timed(build, workspace, env, args.timeout)
        match = None
        for match in _SUMMARY_RE.finditer(text):
            pass
        if code != 0 or match is None:
            print(f"run {i + 1}: `{' '.join(build)}` failed (exit {code}):\n{text[-2000:]}", file=sys.stderr)
            return 1
        executed, inner = int(match[3]), float(match[5])
        label = "warm-up" if i == 0 else "no-op"
        print(f"run {i + 1:>2} ({label:<7}) {seconds:7.3f}s  {match[2]} targets, {executed} executed, "
              f"build phase {inner:.3f}s", flush=True)
        results.append((seconds, executed, inner))

    floors = {
        "python -c pass": [sys.executable, "-c", "pass"],
        'python -c "import mlbuild.cli.main"': [sys.executable, "-c", "import mlbuild.cli.main"],
        "mlbuild --version": [*mlbuild, "--version"],
    }
    floor_times = {}
    for name, argv in floors.items():
        samples = []
        for _ in range(runs - 1):
            seconds, code, text = timed(argv, workspace, env, args.timeout)
            if code != 0:
                print(f"`{name}` failed (exit {code}): {text[-500:]}", file=sys.stderr)
                return 1
            samples.append(seconds)
        floor_times[name] = samples

    noop = results[1:]
    median = statistics.median(s for s, _, _ in noop)
    print()
    print(f"{'measurement':<38} {'median s':>9} {'best s':>8}")
    print(f"{'mlbuild build (no-op, runs 2..' + str(runs) + ')':<38} {median:9.3f} {min(s for s, _, _ in noop):8.3f}")
    print(f"{'  of which build phase (self-reported)':<38} {statistics.median(i for _, _, i in noop):9.3f} "
          f"{min(i for _, _, i in noop):8.3f}")
    for name, samples in floor_times.items():
        print(f"{name:<38} {statistics.median(samples):9.3f} {min(samples):8.3f}")
    print(f"first run (warm-up): {results[0][0]:.3f}s, {results[0][1]} executed")
    rebuilt = [n for _, n, _ in noop if n]
    if rebuilt:
        print(f"WARNING: no-op runs executed actions ({rebuilt}): the build is not reproducible-idle")
    print(f"goal: no-op {median:.3f}s vs < {NOOP_GOAL_S}s: {'MET' if median < NOOP_GOAL_S else 'NOT MET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
