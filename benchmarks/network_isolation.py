"""What running actions without network costs: N trivial actions without network (the
default) vs tagged `network` (no namespace), and the same action in a container; and, as root,
what one spawn costs in a lent namespace against a new namespace per spawn.

    python benchmarks/network_isolation.py                 # 400 actions, -j2
    python benchmarks/network_isolation.py --actions 1000 --jobs 2 --container-actions 20

Each full build runs in a fresh workspace and cache, as a whole `mlbuild build` process; the
table gives wall seconds, the per-action cost, and the ratio against the baseline (network on).
The container row (needs a docker daemon and busybox) builds --container-actions actions in a
busybox image imported for the run, and reports the per-action cost of `docker run`.

The spawn table (root only) runs --spawns spawns of /bin/true in this process, rounds of the
three ways interleaved: without a namespace (the baseline), in mlbuild's lent namespace
(`isolation.empty_network_namespace`), and in a new namespace per spawn made the way mlbuild
did before namespaces were lent (unshare on the spawning thread, setns back). CPU seconds
include the children's and not the kernel's deferred teardown of dead namespaces, so they
understate the new-namespace cost; whole builds at this size are too noisy on a shared
machine to show a difference below ~10%.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = "workspace: {name: bench}\n"


def workspace(base: Path, actions: int, extra: str) -> Path:
    root = base / f"ws-{len(list(base.iterdir()))}"
    (root / "targets" / "p").mkdir(parents=True)
    (root / "BUILD.yaml").write_text(ROOT)
    body = "".join(f"t{i}:\n  rule: command\n  outs: [o]\n  cmd: echo {i} > {{{{out}}}}\n{extra}" for i in range(actions))
    (root / "targets" / "p" / "BUILD.yaml").write_text(body)
    return root


def build(root: Path, jobs: int) -> float:
    mlbuild = Path(sys.executable).parent / "mlbuild"
    command = ([str(mlbuild)] if mlbuild.exists()
               else [sys.executable, "-c", "from mlbuild.cli.executable import run; run()"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLBUILD_")}
    start = time.monotonic()
    subprocess.run([*command, "-C", str(root), "--cache-dir", str(root / "cache"), "build", "//p/...",
                    "-j", str(jobs)], check=True, capture_output=True, env=env)
    return time.monotonic() - start


def busybox_image(base: Path) -> str:
    rootfs = base / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy2(shutil.which("busybox"), rootfs / "bin" / "busybox")
    for applet in ("sh", "echo"):
        os.symlink("busybox", rootfs / "bin" / applet)
    (rootfs / "bin" / "bash").write_text('#!/bin/sh\nexec /bin/sh "$@"\n')
    (rootfs / "bin" / "bash").chmod(0o755)
    with tarfile.open(base / "rootfs.tar", "w") as tar:
        tar.add(rootfs, arcname=".")
    return subprocess.run(["docker", "import", str(base / "rootfs.tar")], check=True, capture_output=True,
                          text=True).stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--actions", type=int, default=400)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--container-actions", type=int, default=20, help="0: no container row")
    parser.add_argument("--spawns", type=int, default=500, help="per way and round in the spawn table (0: none)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mlbuild-netbench-") as scratch:
        base = Path(scratch)
        rows = [("network on (baseline)", args.actions, build(workspace(base, args.actions, "  network: true\n"), args.jobs)),
                ("network off (namespace)", args.actions, build(workspace(base, args.actions, ""), args.jobs))]
        if args.container_actions and shutil.which("docker") and shutil.which("busybox") and subprocess.run(
                ["docker", "version"], capture_output=True).returncode == 0:
            image = busybox_image(base)
            container = workspace(base, args.container_actions, "  toolchains: [img]\n")
            (container / "toolchains").mkdir()
            (container / "toolchains" / "img.yaml").write_text(f"img:\n  kind: container\n  digest: {image}\n")
            rows.append(("in a container (docker run)", args.container_actions, build(container, args.jobs)))
            subprocess.run(["docker", "rmi", image], capture_output=True)
    baseline = rows[0][2] / rows[0][1]
    print(f"{'actions':<28} {'n':>5} {'wall s':>8} {'ms/action':>10} {'vs baseline':>12}")
    for name, count, seconds in rows:
        print(f"{name:<28} {count:>5} {seconds:>8.2f} {1000 * seconds / count:>10.1f} "
              f"{seconds / count / baseline:>11.2f}x")
    if args.spawns and os.geteuid() == 0:
        spawn_table(args.spawns)
    return 0


def spawn_table(spawns: int, rounds: int = 3) -> None:
    """Per-spawn wall and CPU milliseconds of the three ways, best of `rounds` interleaved rounds."""
    import resource

    from mlbuild.execution import isolation

    def plain():
        subprocess.Popen(["/bin/true"]).wait()

    def lent():
        with isolation.empty_network_namespace() as namespace, namespace.spawning():
            process = subprocess.Popen(["/bin/true"])
        process.wait()

    def new_each_time():
        isolation._namespace_call("unshare", isolation._CLONE_NEWNET)
        try:
            process = subprocess.Popen(["/bin/true"])
        finally:
            isolation._namespace_call("setns", isolation._home_network_namespace(), isolation._CLONE_NEWNET)
        process.wait()

    def cpu_s() -> float:
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    ways = [("no namespace (baseline)", plain), ("lent namespace (mlbuild)", lent),
            ("new namespace per spawn", new_each_time)]
    best = {name: (float("inf"), float("inf")) for name, _ in ways}
    for _ in range(rounds):
        for name, spawn in ways:
            wall, cpu = time.perf_counter(), cpu_s()
            for _ in range(spawns):
                spawn()
            wall, cpu = (time.perf_counter() - wall) / spawns * 1000, (cpu_s() - cpu) / spawns * 1000
            best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
    base_wall, base_cpu = best[ways[0][0]]
    print(f"\n{'one spawn of /bin/true':<28} {'wall ms':>8} {'cpu ms':>8} {'+wall ms':>9} {'+cpu ms':>8}")
    for name, (wall, cpu) in best.items():
        print(f"{name:<28} {wall:>8.3f} {cpu:>8.3f} {wall - base_wall:>9.3f} {cpu - base_cpu:>8.3f}")


if __name__ == "__main__":
    sys.exit(main())
