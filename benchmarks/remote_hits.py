"""A teammate's build served by the remote cache, against the same build served by a local cache.

A real nginx (WebDAV) on 127.0.0.1 is filled by one build of the example's //digits/...;
then, in fresh copies of the workspace (no output tree, no build state), with the toolchain
venvs already built (as on a teammate's machine):
  local hits   the filling build's cache dir: every action is a local action-cache hit
  remote hits  an empty cache dir: every action is fetched from nginx and verified
The ratio remote/local is the price of sharing through the server instead of the disk.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mlbuild.storage.nginx import NginxServer  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
MLBUILD = [sys.executable, "-c", "from mlbuild.cli.executable import run; run()"]
PATTERN = "//digits/..."


def fresh_workspace(scratch: Path, name: str) -> Path:
    root = scratch / name
    root.mkdir()
    shutil.copy(REPO / "BUILD.yaml", root)
    for sub in ("targets", "toolchains"):
        shutil.copytree(REPO / sub, root / sub)
    return root


def build(workspace: Path, cache: Path, url: str, toolchains: Path) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run([*MLBUILD, "--cache-dir", str(cache), "build", PATTERN, "--remote-cache", url],
                          cwd=workspace, capture_output=True, text=True,
                          env=dict(os.environ, MLBUILD_TOOLCHAIN_DIR=str(toolchains)))
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(done.stderr[-3000:])
    summary = re.search(r"Build OK: .*", done.stderr).group(0)
    return wall, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="mlbuild-bench-remote-"))
    with NginxServer(scratch / "server") as server:
        filled, toolchains = scratch / "cache-filled", scratch / "toolchains"
        _, summary = build(fresh_workspace(scratch, "fill"), filled, server.url, toolchains)
        print(f"fill:        {summary}")
        local, remote = [], []
        for i in range(args.repeat):
            wall, local_summary = build(fresh_workspace(scratch, f"local{i}"), filled, server.url, toolchains)
            local.append(wall)
            wall, remote_summary = build(fresh_workspace(scratch, f"remote{i}"), scratch / f"cache-empty{i}",
                                         server.url, toolchains)
            remote.append(wall)
        print(f"local hits:  {local_summary}")
        print(f"remote hits: {remote_summary}")
        blobs = sum(f.stat().st_size for f in (scratch / "server").rglob("*") if f.is_file())
        print(f"\nserver holds {blobs / 2**20:.1f} MiB; median of {args.repeat} runs, whole process:")
        print(f"  local-hit build   {statistics.median(local):.3f} s")
        print(f"  remote-hit build  {statistics.median(remote):.3f} s")
        print(f"  ratio remote/local {statistics.median(remote) / statistics.median(local):.2f}")
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
