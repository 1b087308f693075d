"""A yardstick for mlbuild's per-action cost: how fast plain Python threads can run a generated
graph while doing each action's work the way mlbuild does it, against ninja in the same run.

For every action of a ninja workspace written by `generated_graph.py --generate-only`, the
floor does what mlbuild's sandboxed execution does, and nothing more: a fresh sandbox
directory, sources copied and dependency outputs hardlinked from a content-addressed store, the
command run as `/bin/bash -c` with a scrubbed environment (LANG=C.UTF-8, sandbox HOME and
TMPDIR) in its own session, in a reused empty network namespace whose socket count and
interfaces are read before each spawn as mlbuild reads them to check it (as root), waited for
through a pidfd; then the output hashed with blake3 and linked into the store read-only by an
atomic rename, an action-cache entry written the same way, the filesystem synced once per 64
entries, the output linked into an output tree, and the sandbox removed. No loading, analysis,
keys over sources, up-to-date check, progress, logs in the store or build state: the gap
between this floor and mlbuild is what those and mlbuild's structure cost per action, the gap
between it and ninja what Python and the sandbox cost.

    python benchmarks/generated_graph.py --targets 2000 --packages 20 --generate-only --out /tmp/g2k
    python benchmarks/python_floor.py /tmp/g2k/ninja-ws --rounds 3
    python benchmarks/python_floor.py /tmp/g2k/ninja-ws --mlbuild "$VENV/bin/mlbuild"  # all three; not a pyenv shim
"""

from __future__ import annotations

import argparse
import ctypes
import itertools
import os
import resource
import select
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import blake3

_CLONE_NEWNET = 0x40000000
_SYNC_EVERY = 64  # action-cache entries per filesystem sync, as mlbuild's group commit batches them
_libc = ctypes.CDLL(None, use_errno=True)


def read_ninja_graph(ninja_ws: Path) -> dict[str, tuple[list[str], str]]:
    """output -> (inputs, script) from the `build OUT: cmd IN...` / `script = ...` pairs."""
    lines = (ninja_ws / "build.ninja").read_text().split("\n")
    graph = {}
    for i, line in enumerate(lines):
        if line.startswith("build "):
            output, inputs = line[len("build "):].split(": cmd ")
            graph[output] = (inputs.split(), lines[i + 1].split("script = ", 1)[1])
    return graph


class EmptyNetworkNamespace:
    """One reusable empty network namespace; entering it reads what mlbuild reads per spawn to
    check that the namespace is still empty: its sockstat and net/dev, opened inside it when it
    was made, re-read with pread (the comparison itself costs next to nothing)."""

    def __init__(self, home: int):
        _libc.unshare(_CLONE_NEWNET)
        self.fd, self.sockstat, self.dev = (os.open(f"/proc/thread-self/{name}", os.O_RDONLY | os.O_CLOEXEC)
                                            for name in ("ns/net", "net/sockstat", "net/dev"))
        _libc.setns(home, _CLONE_NEWNET)

    def enter(self) -> None:
        os.pread(self.sockstat, 64, 0)
        os.pread(self.dev, 1 << 16, 0)
        _libc.setns(self.fd, _CLONE_NEWNET)


class Floor:
    """One build of `graph` (read_ninja_graph of `ninja_ws`) into `work` with `jobs` threads."""

    def __init__(self, graph: dict[str, tuple[list[str], str]], ninja_ws: Path, work: Path, jobs: int):
        self.ninja_ws, self.jobs = ninja_ws, jobs
        self.graph = graph
        self.cas, self.actions, self.out, self.sandboxes = (str(work / d) for d in ("cas", "ac", "out", "sandbox"))
        for directory in (self.cas, self.actions):
            for shard in range(256):
                os.makedirs(f"{directory}/{shard:02x}")
        os.makedirs(self.sandboxes)
        self.isolate = os.geteuid() == 0  # mlbuild's in-thread namespaces need root, as here
        self.home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self.devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        self.sync_fd = os.open(self.actions, os.O_RDONLY | os.O_CLOEXEC)
        self.digests: dict[str, str] = {}
        self.numbers = itertools.count()
        self.idle_namespaces: list[EmptyNetworkNamespace] = []
        self.changed = threading.Condition()
        self.pending = {o: sum(i in self.graph for i in inputs) for o, (inputs, _) in self.graph.items()}
        self.dependents: dict[str, list[str]] = {o: [] for o in self.graph}
        for output, (inputs, _) in self.graph.items():
            for i in inputs:
                if i in self.graph:
                    self.dependents[i].append(output)
        self.ready = [o for o, count in self.pending.items() if count == 0]
        self.done = 0
        self.unsynced = 0

    def build(self) -> None:
        threads = [threading.Thread(target=self._serve) for _ in range(self.jobs)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if self.done != len(self.graph):
            raise SystemExit(f"floor: {self.done} of {len(self.graph)} actions built")

    def _serve(self) -> None:
        while True:
            with self.changed:
                while not self.ready and self.done < len(self.graph):
                    self.changed.wait()
                if self.done == len(self.graph):
                    return
                output = self.ready.pop()
            digest = self._run(output)
            with self.changed:
                self.digests[output] = digest
                self.done += 1
                self.unsynced += 1
                sync = self.unsynced == _SYNC_EVERY
                if sync:
                    self.unsynced = 0
                for dependent in self.dependents[output]:
                    self.pending[dependent] -= 1
                    if self.pending[dependent] == 0:
                        self.ready.append(dependent)
                self.changed.notify_all()
            if sync:  # by this worker, while the others go on (mlbuild's commit thread does it aside)
                _libc.syncfs(self.sync_fd)

    def _run(self, output: str) -> str:
        inputs, script = self.graph[output]
        root = f"{self.sandboxes}/{next(self.numbers)}"
        os.makedirs(f"{root}/{os.path.dirname(output)}")
        for path in inputs:
            os.makedirs(f"{root}/{os.path.dirname(path)}", exist_ok=True)
            if path in self.graph:
                digest = self.digests[path]
                os.link(f"{self.cas}/{digest[:2]}/{digest}", f"{root}/{path}")
            else:
                shutil.copyfile(self.ninja_ws / path, f"{root}/{path}")
        os.makedirs(f"{root}.logs")
        self._spawn(root, script)
        produced = f"{root}/{output}"
        with open(produced, "rb") as file:
            digest = blake3.blake3(file.read()).hexdigest()
        blob = f"{self.cas}/{digest[:2]}/{digest}"
        if not os.path.exists(blob):
            os.link(produced, f"{blob}.tmp")
            os.chmod(f"{blob}.tmp", 0o444)
            os.replace(f"{blob}.tmp", blob)
        key = blake3.blake3(repr((script, [self.digests.get(i) for i in inputs])).encode()).hexdigest()
        entry = f"{self.actions}/{key[:2]}/{key}"
        with open(f"{entry}.tmp", "wb") as file:
            file.write(repr((output, digest, os.stat(produced).st_size)).encode())
        os.replace(f"{entry}.tmp", entry)
        os.makedirs(f"{self.out}/{os.path.dirname(output)}", exist_ok=True)
        os.link(blob, f"{self.out}/{output}")
        shutil.rmtree(root)
        shutil.rmtree(f"{root}.logs")
        return digest

    def _spawn(self, root: str, script: str) -> None:
        namespace = None
        if self.isolate:
            with self.changed:
                namespace = self.idle_namespaces.pop() if self.idle_namespaces else None
            namespace = namespace or EmptyNetworkNamespace(self.home)
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": f"{root}/.home", "TMPDIR": f"{root}/.tmp"}
        with open(f"{root}.logs/stdout", "wb") as stdout, open(f"{root}.logs/stderr", "wb") as stderr:
            if namespace:
                namespace.enter()
            try:
                process = subprocess.Popen(["/bin/bash", "-c", script], cwd=root, env=env, stdin=self.devnull,
                                           stdout=stdout, stderr=stderr, start_new_session=True)
            finally:
                if namespace:
                    _libc.setns(self.home, _CLONE_NEWNET)
            pidfd = os.pidfd_open(process.pid)
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            poller.poll()
            os.close(pidfd)
            process.wait()
        if namespace:
            with self.changed:
                self.idle_namespaces.append(namespace)
        if process.returncode != 0:
            raise SystemExit(f"floor: `{script}` exited {process.returncode}")


def _cpu_s() -> float:
    """CPU seconds of this process and its waited-for children so far."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(run) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of `run()`."""
    wall, cpu = time.perf_counter(), _cpu_s()
    run()
    return time.perf_counter() - wall, _cpu_s() - cpu


def _check(done: subprocess.CompletedProcess) -> None:
    """A failed build ends the benchmark with its command and the end of its stderr."""
    if done.returncode != 0:
        raise SystemExit(f"{shlex.join(done.args)} exited {done.returncode}:\n{done.stderr.strip()[-2000:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ninja_ws", type=Path, help="a ninja workspace from generated_graph.py --generate-only")
    parser.add_argument("--jobs", "-j", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved builds of each system")
    parser.add_argument("--ninja", default=shutil.which("ninja") or "ninja")
    parser.add_argument("--mlbuild", metavar="CMD",
                        help="also build the sibling mlbuild-ws with this mlbuild (split as a shell would), "
                             "from a fresh cache and output tree each round")
    args = parser.parse_args()
    if not (args.ninja_ws / "build.ninja").is_file():
        parser.error(f"{args.ninja_ws} has no build.ninja: generate one with generated_graph.py --generate-only")
    mlbuild_ws = args.ninja_ws.parent / "mlbuild-ws"
    if args.mlbuild and not (mlbuild_ws / "BUILD.yaml").is_file():
        parser.error(f"--mlbuild needs the generated workspace {mlbuild_ws} beside the ninja one")
    graph = read_ninja_graph(args.ninja_ws)
    print(f"{len(graph)} actions, -j{args.jobs}, "
          f"network namespaces {'on' if os.geteuid() == 0 else 'off (not root)'}")
    systems = ["floor", "ninja", *(["mlbuild"] if args.mlbuild else [])]
    print("round  " + "".join(f"{name + ' wall / CPU':>22s}" for name in systems)
          + "".join(f"{name + '/ninja':>15s}" for name in systems if name != "ninja"))
    for number in range(1, args.rounds + 1):
        results = {}
        with tempfile.TemporaryDirectory(dir=args.ninja_ws.parent) as work:
            results["floor"] = measure(Floor(graph, args.ninja_ws, Path(work), args.jobs).build)
        shutil.rmtree(args.ninja_ws / "out", ignore_errors=True)
        (args.ninja_ws / ".ninja_log").unlink(missing_ok=True)
        results["ninja"] = measure(lambda: _check(subprocess.run(
            [args.ninja, "-j", str(args.jobs)], cwd=args.ninja_ws, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True)))
        if args.mlbuild:
            for leftover in (".mlbuild", "mlbuild-out"):  # the last round's build state and output tree
                shutil.rmtree(mlbuild_ws / leftover, ignore_errors=True)
            with tempfile.TemporaryDirectory(dir=args.ninja_ws.parent) as cache:
                argv = [*shlex.split(args.mlbuild), "--cache-dir", cache, "build", "//...", "-j", str(args.jobs)]
                results["mlbuild"] = measure(lambda: _check(subprocess.run(
                    argv, cwd=mlbuild_ws, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)))
        print(f"{number:5d}  " + "".join(f"{results[n][0]:11.2f} s / {results[n][1]:6.2f} s" for n in systems)
              + "".join(f"{results[n][0] / results['ninja'][0]:14.2f}x" for n in systems if n != "ninja"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
