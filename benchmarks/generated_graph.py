"""mlbuild vs ninja on a generated graph of N trivial actions (full, no-op and incremental builds).

Generates, from one deterministic description:
  * an mlbuild workspace: `BUILD.yaml` + `targets/pNNN/BUILD.yaml`, N `command` targets spread
    round-robin over P packages and split into L layers. A layer-0 target reads one source file
    (`cat {{src:in_x.txt}} > {{out}}`); a target of layer k>0 reads the outputs of two targets of
    layer k-1 chosen pseudo-randomly (`cat {{dep:A}} {{dep:B}} > {{out}}`);
  * the equivalent `build.ninja` in a sibling directory holding the same source files: the same
    expanded commands reading and writing the same relative paths (`out/<pkg>/<name>/out.txt`).
    By default ninja runs each command under `/bin/bash -c` as mlbuild does (`--ninja-shell sh`
    lets ninja's own `/bin/sh -c` run it instead).

Then measures, in this one run, each as the wall time of the whole process (start-up included):
  analysis     `mlbuild query //...`: start-up, loading and analysis of the whole graph;
  full         a full build at -j JOBS, fresh mlbuild cache dir, no prior ninja log; with
               --full-runs N, N rounds in which every system builds once (median reported).
               Between rounds mlbuild's build is undone as `mlbuild clean --expunge` does: its
               parse and analysis caches stay, as ninja's generated build file does, so the
               first round analyzes and the later ones reuse the analysis;
  no-op        the same build again, --noop-runs times (median and best reported);
  touch        one layer-0 source's mtime bumped (content unchanged): actions re-run and time;
  edit         one line appended to that source: actions re-run and time.
With `--baseline CMD` a second mlbuild (e.g. the last release, or main) is measured the same
way in its own copy of the workspace and cache. It prints a table with seconds, peak RSS and
ratios to ninja, the full builds' CPU (the process with its commands, and the process's own
without them), and the goals: mlbuild no-op < 0.5 s (< 1 s above 10,000 targets), full build
<= 1.5x ninja. Each command is started by a small fresh interpreter that times it and reads its
peak RSS: Linux carries a process's peak RSS over exec from the process that vforked it, so a
command started by this one (which holds the whole graph) would report at least this one's. A
peak below the spawner's own (about 8 MiB) reads as the spawner's.

    python benchmarks/generated_graph.py                      # 10,000 targets, 100 packages, -j2
    python benchmarks/generated_graph.py --targets 2000 --keep
    python benchmarks/generated_graph.py --generate-only --out /tmp/graph   # then profile by hand
    python benchmarks/generated_graph.py --baseline "env PYTHONPATH=/path/to/main python3 -c 'from mlbuild.cli.executable import run; run()'"

Generated directories live in a fresh temp dir (deleted afterwards unless --keep), or in --out.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

NOOP_GOAL_S = {10_000: 0.5, 100_000: 1.0}  # up to that many targets
FULL_GOAL_RATIO = 1.5
# Runs argv[2:] with this environment, cwd and stdio; writes "seconds exit-code peak-RSS-KiB CPU-seconds
# own-CPU-seconds" to fd argv[1]. wait4's usage counts the process and every descendant it reaped (ninja's and
# mlbuild's commands); the process's own CPU (its threads, none of its children) is read from /proc while it is
# a zombie: exited (waitid WNOWAIT), not yet reaped.
_SPAWNER = """
import os, sys, time
start = time.perf_counter()
pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)
os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
with open(f"/proc/{pid}/stat", "rb") as stat:
    fields = stat.read().rpartition(b")")[2].split()  # from field 3 on: utime and stime are fields 14 and 15
own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
_, status, usage = os.wait4(pid, 0)
os.write(int(sys.argv[1]), f"{time.perf_counter() - start} {os.waitstatus_to_exitcode(status)} {usage.ru_maxrss} "
                           f"{usage.ru_utime + usage.ru_stime} {own}".encode())
"""
_SUMMARY_RE = re.compile(
    r"Build (?P<verdict>\w+): (?P<targets>\d+) targets, (?P<executed>\d+) executed, (?P<cached>\d+) cached"
    r".*? in (?P<inner>[0-9.]+)s"
)


# -- the graph --------------------------------------------------------------------------------
@dataclass
class Target:
    package: str
    name: str
    layer: int
    deps: list = field(default_factory=list)  # Target
    source: str | None = None  # file name in the package dir (layer 0)

    @property
    def label(self) -> str:
        return f"//{self.package}:{self.name}"

    @property
    def out(self) -> str:
        return f"out/{self.package}/{self.name}/out.txt"

    @property
    def source_path(self) -> str:
        return f"targets/{self.package}/{self.source}"

    def command(self) -> str:
        """The command as mlbuild expands it (paths relative to the sandbox root)."""
        inputs = [self.source_path] if self.source else [d.out for d in self.deps]
        return f"cat {' '.join(inputs)} > {self.out}"


def make_graph(targets: int, packages: int, layers: int, seed: int) -> list[list[Target]]:
    rng = random.Random(seed)
    layers = max(1, min(layers, targets))
    sizes = [targets // layers + (1 if k < targets % layers else 0) for k in range(layers)]
    graph: list[list[Target]] = []
    index = 0
    for k, size in enumerate(sizes):
        layer = []
        for i in range(size):
            t = Target(f"p{index % packages:03d}", f"l{k}_{i:05d}", k)
            if k == 0:
                t.source = f"in_{i:05d}.txt"
            else:
                below = graph[k - 1]
                t.deps = rng.sample(below, min(2, len(below)))
            layer.append(t)
            index += 1
        graph.append(layer)
    return graph


def cones(graph: list[list[Target]]) -> list[int]:
    """For each layer-0 target, how many targets (itself included) depend on it transitively."""
    index = {id(t): i for i, t in enumerate(t for layer in graph for t in layer)}
    below: dict[int, int] = {}  # id -> bitmask of the target and everything depending on it
    for layer in reversed(graph):
        for t in layer:
            below[id(t)] = below.get(id(t), 0) | (1 << index[id(t)])
            for d in t.deps:
                below[id(d)] = below.get(id(d), 0) | below[id(t)]
    return [below[id(t)].bit_count() for t in graph[0]]


def pick_changed(graph: list[list[Target]], how: str) -> tuple[Target, int]:
    """The layer-0 target whose source the incremental scenarios change, and its cone size."""
    sizes = cones(graph)
    order = sorted(range(len(sizes)), key=lambda i: (sizes[i], i))
    i = {"first": 0, "median": order[len(order) // 2], "max": order[-1]}[how]
    return graph[0][i], sizes[i]


def write_sources(root: Path, graph: list[list[Target]]) -> None:
    for t in graph[0]:
        path = root / t.source_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"source of {t.label}\n")


def write_mlbuild_workspace(root: Path, graph: list[list[Target]]) -> None:
    root.mkdir(parents=True)
    (root / "BUILD.yaml").write_text("workspace:\n  name: generated_graph\n")
    write_sources(root, graph)
    by_package: dict[str, list[str]] = {}
    q = json.dumps  # JSON strings and lists are valid YAML
    for layer in graph:
        for t in layer:
            if t.source:
                body = [f"  srcs: {q([t.source])}", f"  cmd: {q(f'cat {{{{src:{t.source}}}}} > {{{{out}}}}')}"]
            else:
                deps = [f":{d.name}" if d.package == t.package else d.label for d in t.deps]
                placeholders = " ".join(f"{{{{dep:{d}}}}}" for d in deps)
                body = [f"  deps: {q(deps)}", f"  cmd: {q(f'cat {placeholders} > {{{{out}}}}')}"]
            entry = "\n".join([f"{t.name}:", "  rule: command", *body, '  outs: ["out.txt"]'])
            by_package.setdefault(t.package, []).append(entry)
    for package, entries in by_package.items():
        (root / "targets" / package).mkdir(parents=True, exist_ok=True)  # no layer-0 source of its own
        (root / "targets" / package / "BUILD.yaml").write_text("\n".join(entries) + "\n")


def write_ninja_workspace(root: Path, graph: list[list[Target]], shell: str) -> None:
    root.mkdir(parents=True)
    write_sources(root, graph)
    command = "/bin/bash -c '$script'" if shell == "bash" else "$script"
    lines = ["ninja_required_version = 1.5", "", "rule cmd", f"  command = {command}", "  description = $out", ""]
    for layer in graph:
        for t in layer:
            inputs = [t.source_path] if t.source else [d.out for d in t.deps]
            lines.append(f"build {t.out}: cmd {' '.join(inputs)}")
            lines.append(f"  script = {t.command()}")
    (root / "build.ninja").write_text("\n".join(lines) + "\n")


# -- running ----------------------------------------------------------------------------------
@dataclass
class Run:
    seconds: float
    executed: int | None  # actions that ran
    inner_s: float | None = None  # mlbuild's own "in X s" (build phase only)
    ok: bool = True
    note: str = ""
    rss_mib: float | None = None  # peak resident memory of the process
    cpu_s: float | None = None  # user + system CPU of the process and its commands
    own_cpu_s: float | None = None  # of it, the process's own (its threads, not its children)
    steal_s: float | None = None  # CPU time the hypervisor gave other guests meanwhile, all cores


@dataclass
class Process:
    """One measured command as the spawner saw it."""
    seconds: float
    code: int
    text: str  # its output
    rss_mib: float = 0.0
    cpu_s: float | None = None
    own_cpu_s: float | None = None
    steal_s: float | None = None

    def run(self, executed: int | None, **outcome) -> Run:
        """This process as a measured Run: its time, memory and CPU, and what it did."""
        return Run(self.seconds, executed, rss_mib=self.rss_mib, cpu_s=self.cpu_s, own_cpu_s=self.own_cpu_s,
                   steal_s=self.steal_s, **outcome)


def machine_steal_s() -> float | None:
    """CPU time stolen from this VM's cores since boot (`steal` in /proc/stat): a round whose
    wall time grew with it says more about the host's other guests than about the build."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


class Harness:
    def __init__(self, args, base: Path):
        self.args = args
        self.base = base
        self.ws = {"mlbuild": base / "mlbuild-ws", "baseline": base / "baseline-ws", "ninja": base / "ninja-ws"}
        self.commands = {"mlbuild": args.mlbuild, "baseline": args.baseline}
        self.logs = base / "logs"
        self.set_aside = base / "set-aside"  # earlier rounds' builds, deleted once all are measured
        self.logs.mkdir(parents=True, exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MLBUILD_")}
        if self.env.pop("PYTHONDONTWRITEBYTECODE", None) and not args.no_bytecode_cache:
            # Measure mlbuild as normally installed, its bytecode cached: kept apart from the repo.
            self.env["PYTHONPYCACHEPREFIX"] = str(base / "pycache")
        elif args.no_bytecode_cache:
            self.env["PYTHONDONTWRITEBYTECODE"] = "1"
        self.counter = 0

    def _run(self, argv, cwd: Path, tag: str) -> Process:
        """One whole process, measured."""
        self.counter += 1
        log = self.logs / f"{self.counter:02d}-{tag}.log"
        report_read, report_write = os.pipe()
        steal_before = machine_steal_s()
        with open(log, "wb") as out:
            spawner = subprocess.Popen([sys.executable, "-S", "-I", "-c", _SPAWNER, str(report_write), *argv],
                                       cwd=cwd, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, pass_fds=[report_write], start_new_session=True)
            os.close(report_write)
            deadline = threading.Timer(self.args.timeout, lambda: os.killpg(spawner.pid, 9))
            deadline.start()
            with os.fdopen(report_read) as report:
                figures = report.read().split()
            spawner.wait()
            deadline.cancel()
        steal_after = machine_steal_s()
        steal = None if steal_before is None or steal_after is None else steal_after - steal_before
        text = log.read_text(errors="replace")
        if len(figures) != 5:  # killed at the timeout, or the command could not start (the log says why)
            return Process(self.args.timeout if spawner.returncode == -9 else 0.0, spawner.returncode, text)
        return Process(float(figures[0]), int(figures[1]), text, int(figures[2]) / 1024, float(figures[3]),
                       float(figures[4]), steal)

    def mlbuild(self, system: str, tag: str) -> Run:
        argv = [*self.commands[system], "--cache-dir", str(self.base / f"{system}-cache"), "build", "//...",
                "-j", str(self.args.jobs)]
        done = self._run(argv, self.ws[system], f"{system}-{tag}")
        match = None
        for match in _SUMMARY_RE.finditer(done.text):
            pass
        if done.code != 0 or match is None:
            tail = " | ".join(done.text.strip().splitlines()[-3:])
            return done.run(None, ok=False, note=f"exit {done.code}: {tail[:300]}")
        return done.run(int(match["executed"]), inner_s=float(match["inner"]), ok=match["verdict"] == "OK")

    def analysis(self, system: str) -> Run:
        """`mlbuild query //...`: start-up, loading and analysis of every target, nothing built."""
        argv = [*self.commands[system], "--cache-dir", str(self.base / f"{system}-cache"), "query", "//..."]
        done = self._run(argv, self.ws[system], f"{system}-analysis")
        return done.run(0, ok=done.code == 0, note="" if done.code == 0 else done.text[-300:])

    def start_afresh(self, system: str) -> None:
        """Undo a full build for the next round: for mlbuild what `clean --expunge` removes (the
        output tree and its link, the build state, the cache), so its parse and analysis caches
        stay, as ninja's build file does. What it made is moved aside, not deleted, until every
        build is measured: on ext4 without a journal (this project's machines) the kernel skips
        each inode freed in the last 1-6 minutes whenever it allocates one, so deleting tens of
        thousands of files here would bill the next builds for the harness's own deletions
        (measured: 7 CPU-seconds of a 10,000-target mlbuild build, 2 of ninja's)."""
        if system == "ninja":
            doomed = [self.ws["ninja"] / name for name in ("out", ".ninja_log", ".ninja_deps")]
        else:
            workspace = self.ws[system]
            doomed = [self.base / f"{system}-cache", workspace / "mlbuild-bin", workspace / "mlbuild-out",
                      workspace / ".mlbuild" / "state"]
        self.set_aside.mkdir(exist_ok=True)
        aside = Path(tempfile.mkdtemp(prefix=f"{system}-", dir=self.set_aside))
        for index, path in enumerate(doomed):
            if os.path.lexists(path):
                path.rename(aside / f"{index}-{path.name}")

    def ninja(self, tag: str) -> Run:
        argv = [self.args.ninja, "-j", str(self.args.jobs)]
        done = self._run(argv, self.ws["ninja"], f"ninja-{tag}")
        executed = sum(1 for line in done.text.splitlines() if re.match(r"^\[\d+/\d+\] ", line))
        note = "" if done.code == 0 else f"exit {done.code}: {done.text.strip().splitlines()[-1:]}"
        return done.run(executed, ok=done.code == 0, note=note)


_NOTABLE_MOUNT_OPTIONS = ("discard", "sync", "dirsync", "data=journal", "nobarrier")


def mount_info(path: Path) -> str:
    """Filesystem type and notable mount options of `path` (from /proc/mounts), e.g. 'ext4 (discard)'."""
    best, info = "", "?"
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return info
    for line in lines:
        parts = line.split()
        if len(parts) < 4:
            continue
        mount = parts[1]
        inside = str(path) == mount or str(path).startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            notable = [o for o in parts[3].split(",") if o in _NOTABLE_MOUNT_OPTIONS]
            best, info = mount, parts[2] + (" (" + ",".join(notable) + ")" if notable else "")
    return info


def _fmt_s(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if not a or not b else f"{a / b:.2f}x"


def main() -> int:
    default_mlbuild = Path(sys.executable).with_name("mlbuild")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", type=int, default=10_000)
    parser.add_argument("--packages", type=int, default=100)
    parser.add_argument("--layers", type=int, default=10)
    parser.add_argument("--jobs", "-j", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--noop-runs", type=int, default=5, help="no-op repetitions per system (median reported)")
    parser.add_argument("--full-runs", type=int, default=1,
                        help="full builds per system, one round of every system after another (median reported): "
                        "a shared machine's speed drifts by tens of per cent over minutes")
    parser.add_argument("--no-incremental", action="store_true",
                        help="skip the touch and edit scenarios (scale runs: analysis, full and no-op only)")
    parser.add_argument("--out", metavar="DIR", help="generate here (kept) instead of a temp dir")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (workspaces, cache, logs)")
    parser.add_argument("--generate-only", action="store_true", help="write the workspaces and stop")
    parser.add_argument("--skip", choices=["mlbuild", "baseline", "ninja"], action="append", default=[],
                        help="do not run this system (repeatable)")
    parser.add_argument("--changed", choices=["max", "median", "first"], default="max",
                        help="which layer-0 source touch/edit change: the one with the most targets "
                        "downstream (default), the median one, or the first")
    parser.add_argument("--ninja-shell", choices=["bash", "sh"], default="bash",
                        help="bash: ninja runs `/bin/bash -c CMD` like mlbuild (default); sh: ninja's /bin/sh -c")
    parser.add_argument("--mlbuild", default=str(default_mlbuild) if default_mlbuild.exists() else "mlbuild",
                        help="mlbuild executable (default: the console script beside this Python, "
                        "bypassing any pyenv shim)")
    parser.add_argument("--baseline", metavar="CMD",
                        help="a second mlbuild command to measure the same way, split as a shell would, e.g. "
                        "main's: \"env PYTHONPATH=/path/to/main python3 -c "
                        "'from mlbuild.cli.executable import run; run()'\" "
                        "(name the interpreter itself: a pyenv shim adds its own, varying start-up)")
    parser.add_argument("--ninja", default=shutil.which("ninja") or "ninja")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds allowed per build command")
    parser.add_argument("--no-bytecode-cache", action="store_true",
                        help="run mlbuild with PYTHONDONTWRITEBYTECODE=1 (by default a set PYTHONDONTWRITEBYTECODE is "
                        "dropped and bytecode goes to <dir>/pycache, as a normal install would have it)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args()
    args.mlbuild = shlex.split(args.mlbuild)
    args.baseline = shlex.split(args.baseline) if args.baseline else None
    measured = {"mlbuild": args.mlbuild, "baseline": args.baseline, "ninja": [args.ninja]}
    for system, command in measured.items():
        if command and system not in args.skip and not args.generate_only and shutil.which(command[0]) is None:
            parser.error(f"--{system}: no program {command[0]!r} (give a path or a command on PATH)")

    if args.out:
        base = Path(args.out).resolve()
        if base.exists() and any(base.iterdir()):
            parser.error(f"--out {base} exists and is not empty")
        base.mkdir(parents=True, exist_ok=True)
    else:
        base = Path(tempfile.mkdtemp(prefix="mlbuild-graph-bench-"))

    graph = make_graph(args.targets, args.packages, args.layers, args.seed)
    total = sum(len(layer) for layer in graph)
    t0 = time.perf_counter()
    write_mlbuild_workspace(base / "mlbuild-ws", graph)
    write_ninja_workspace(base / "ninja-ws", graph, args.ninja_shell)
    victim, affected = pick_changed(graph, args.changed)
    print(f"generated {total} targets in {min(args.packages, total)} packages, {len(graph)} layers "
          f"under {base} ({time.perf_counter() - t0:.1f}s)", flush=True)
    print(f"changed source: {victim.source_path} ({affected} targets depend on it, itself included)", flush=True)
    if args.generate_only:
        print(f"mlbuild: cd {base / 'mlbuild-ws'} && mlbuild --cache-dir {base / 'cache'} build //... -j {args.jobs}")
        print(f"ninja:   cd {base / 'ninja-ws'} && ninja -j {args.jobs}")
        return 0

    h = Harness(args, base)
    systems = [s for s in ("mlbuild", "baseline", "ninja") if s not in args.skip and (s != "baseline" or args.baseline)]
    builders = [s for s in systems if s != "ninja"]
    if "baseline" in systems:
        shutil.copytree(base / "mlbuild-ws", base / "baseline-ws")
    runners = {s: (h.ninja if s == "ninja" else functools.partial(h.mlbuild, s)) for s in systems}
    results: dict[str, dict[str, object]] = {s: {} for s in systems}
    fs = mount_info(base)
    ninja = "" if "ninja" not in systems else ", ninja " + subprocess.run(
        [args.ninja, "--version"], check=False, capture_output=True, text=True).stdout.strip()
    print(f"host: {os.cpu_count()} cpus, filesystem {fs}, python {sys.version.split()[0]}{ninja}, "
          f"-j{args.jobs}", flush=True)

    def step(name: str, system: str, run: Run) -> Run:
        extra = f", build phase {run.inner_s:.3f}s" if run.inner_s is not None else ""
        status = "" if run.ok else f"  FAILED {run.note}"
        cpu = "" if run.cpu_s is None else f"  cpu {run.cpu_s:7.2f}s (own {run.own_cpu_s:6.2f}s)"
        steal = "" if run.steal_s is None else f", steal {run.steal_s:.1f}s"
        print(f"  {name:<8} {system:<8} {run.seconds:8.3f}s{cpu}  {run.rss_mib:7.1f} MiB  executed={run.executed}"
              f"{extra}{steal}{status}", flush=True)
        return run

    for s in builders:  # compile bytecode once
        subprocess.run([*h.commands[s], "--version"], check=False, env=h.env, capture_output=True)
    print("analysis (mlbuild query //...)", flush=True)
    for s in builders:
        results[s]["analysis"] = step("analysis", s, h.analysis(s))

    print(f"full builds ({args.full_runs} each, the systems taking turns)", flush=True)
    for round_ in range(args.full_runs):
        for s in systems:
            if round_:
                h.start_afresh(s)
            results[s].setdefault("full", []).append(step("full", s, runners[s](f"full{round_}")))

    print(f"no-op builds ({args.noop_runs} each)", flush=True)
    for s in systems:
        results[s]["noop"] = [step("no-op", s, runners[s](f"noop{i}")) for i in range(args.noop_runs)]

    if not args.no_incremental:
        print("touch (mtime only) of one layer-0 source", flush=True)
        stamp = time.time() + 1
        for s in systems:
            os.utime(h.ws[s] / victim.source_path, (stamp, stamp))
            results[s]["touch"] = step("touch", s, runners[s]("touch"))

        print("edit (content change) of the same source", flush=True)
        for s in systems:
            with open(h.ws[s] / victim.source_path, "a") as f:
                f.write("edited\n")
            results[s]["edit"] = step("edit", s, runners[s]("edit"))

    # -- report ------------------------------------------------------------------------------
    def runs_of(system: str, what: str) -> list[Run]:
        value = results.get(system, {}).get(what)
        return [] if value is None else value if isinstance(value, list) else [value]

    def seconds(system: str, what: str) -> float | None:
        runs = runs_of(system, what)
        return statistics.median(r.seconds for r in runs) if runs else None

    def rss(system: str, what: str) -> str:
        runs = [r for r in runs_of(system, what) if r.rss_mib is not None]
        return f"{max(r.rss_mib for r in runs):.0f}" if runs else "-"

    def executed(system: str, what: str) -> str:
        counts = sorted({r.executed for r in runs_of(system, what)}, key=lambda c: (c is None, c))
        return "/".join("?" if c is None else str(c) for c in counts) or "-"

    rows = [("analysis (query //...)", "analysis"), (f"full build (median of {args.full_runs})", "full"),
            (f"no-op (median of {args.noop_runs})", "noop"), ("touch 1 source (mtime)", "touch"),
            ("edit 1 source (content)", "edit")]
    print()
    print(f"{total} targets, {len(graph)} layers, {min(args.packages, total)} packages, -j{args.jobs}; "
          f"{affected} targets downstream of the changed source")
    header = f"{'scenario':<26}" + "".join(f" {s + ' s':>11} {'MiB':>6} {'ran':>6}" for s in systems)
    header += "".join(f" {s + '/ninja':>15}" for s in builders if "ninja" in systems)
    print(header)
    print("-" * len(header))
    for title, what in rows:
        line = f"{title:<26}"
        for s in systems:
            line += f" {_fmt_s(seconds(s, what)):>11} {rss(s, what):>6} {executed(s, what):>6}"
        if "ninja" in systems:
            line += "".join(f" {_ratio(seconds(s, what), seconds('ninja', what)):>15}" for s in builders)
        print(line)
    for s in builders:
        noop_runs = results[s]["noop"]
        inner = [r.inner_s for r in noop_runs if r.inner_s is not None]
        full_inner = [r.inner_s for r in runs_of(s, "full") if r.inner_s is not None]
        print(f"{s} no-op: best {min(r.seconds for r in noop_runs):.3f}s, build phase (scheduler+up-to-date checks) "
              f"median {_fmt_s(statistics.median(inner) if inner else None)}s; full build phase median "
              f"{_fmt_s(statistics.median(full_inner) if full_inner else None)}s")
    full_runs = {s: [r for r in runs_of(s, "full") if r.cpu_s is not None] for s in systems}
    if all(full_runs.values()):
        medians = {s: (statistics.median(r.cpu_s for r in runs), statistics.median(r.own_cpu_s for r in runs))
                   for s, runs in full_runs.items()}
        print("full build CPU, user + system of the process and its commands, median (cores busy; the process's "
              "own, without its commands): " + ", ".join(
                  f"{s} {cpu:.1f}s ({cpu / seconds(s, 'full'):.2f}; own {own:.1f}s)"
                  for s, (cpu, own) in medians.items()))
    m_noop, m_full, n_full = seconds("mlbuild", "noop"), seconds("mlbuild", "full"), seconds("ninja", "full")
    verdicts = []
    if m_noop is not None:
        goal = next((g for size, g in sorted(NOOP_GOAL_S.items()) if args.targets <= size),
                    max(NOOP_GOAL_S.values()))
        verdicts.append(f"no-op {m_noop:.3f}s vs goal < {goal}s: {'MET' if m_noop < goal else 'NOT MET'}")
    if m_full and n_full:
        ratio = m_full / n_full
        verdicts.append(f"full {ratio:.2f}x ninja vs goal <= {FULL_GOAL_RATIO}x: "
                        f"{'MET' if ratio <= FULL_GOAL_RATIO else 'NOT MET'}")
    for v in verdicts:
        print("goal: " + v)
    failed = [f"{s} {w}" for s in systems for w in results[s] for run in runs_of(s, w) if not run.ok]
    if failed:
        print("FAILED runs: " + ", ".join(failed) + f" (logs in {h.logs})")

    shutil.rmtree(h.set_aside, ignore_errors=True)
    if args.json:
        payload = {
            "targets": total, "packages": min(args.packages, total), "layers": len(graph), "jobs": args.jobs,
            "downstream_of_changed_source": affected, "filesystem": fs,
            "results": {s: {w: [r.__dict__ for r in runs_of(s, w)] for w in r} for s, r in results.items()},
        }
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
    if args.out or args.keep:
        print(f"kept {base}")
    else:
        shutil.rmtree(base, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
