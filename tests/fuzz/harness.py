"""Run fuzz cases through the real CLI entry point, in forked workers, and judge each run.

A worker imports mlbuild once and runs cases in-process (a few milliseconds per `query`
instead of a quarter second for a fresh interpreter); a case that hangs past its timeout or
kills its worker (a segfault in a C extension) is recorded and the worker replaced.

A run breaks mlbuild's promise (README: exit codes) when it exits 70 or with an undocumented
code, prints a traceback, dies by a signal, hangs, reports an internal exception as a failed
action, or reports a build-file error (exit 3) without saying where.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from mutations import COMMANDS, Case, make_case, write_case

DOCUMENTED_EXIT_CODES = {0, 1, 2, 3, 4, 5}
_LOCATED = re.compile(r"^(\S[^\n]*?): error: ", re.MULTILINE)
_UNLOCATED = re.compile(r"^error: (.*)$", re.MULTILINE)
_EXCEPTION_AS_FAILURE = re.compile(r"^//\S+: [A-Z]\w*(Error|Exception|Interrupt)\(", re.MULTILINE)
# Errors that are about the command line or the machine, not a file: no file location to give.
_NOT_ABOUT_A_FILE = re.compile(r"no workspace found|no targets match|--config|command line")


@dataclass
class Run:
    command: list
    code: int | None  # None: hung or killed
    output: str
    problem: str | None = None  # why this run breaks the promise, or None


@dataclass
class Outcome:
    seed: int
    runs: list
    crashed: str | None = None  # "signal 11", "hang > 60s"

    @property
    def problems(self) -> list[str]:
        found = [f"{' '.join(r.command)}: {r.problem}" for r in self.runs if r.problem]
        return found + ([self.crashed] if self.crashed else [])


_ACTION_LOG = re.compile(r"^  \| .*\n?", re.MULTILINE)
_FRAME = re.compile(r'File "[^"]*/(mlbuild/[^"]+)", line (\d+), in (\w+)')


def failure_site(output: str) -> str:
    """Exception type and innermost mlbuild frame of a traceback: one failure site."""
    frames = _FRAME.findall(output)
    lines = [line for line in output.splitlines() if re.match(r"^[A-Za-z_.]+(Error|Exception)\b", line)]
    where = f"{frames[-1][0]}:{frames[-1][1]} {frames[-1][2]}" if frames else "?"
    kind, _, message = (lines[-1] if lines else "?").partition(":")
    return f"{kind} at {where} ({message.strip()[:100]})"


def judge(code: int, output: str) -> str | None:
    output = _ACTION_LOG.sub("", output)  # a failed action's own stderr may hold its traceback
    if "Traceback (most recent call last)" in output:
        return "traceback: " + failure_site(output)
    if code == 70 or "internal error" in output:
        return "internal error (exit 70)"
    if code not in DOCUMENTED_EXIT_CODES:
        return f"undocumented exit code {code}"
    if code == 1 and _EXCEPTION_AS_FAILURE.search(output):
        return "internal exception reported as a failed action"
    if code == 3 and not _LOCATED.search(output):
        unlocated = _UNLOCATED.search(output)
        if unlocated and not _NOT_ABOUT_A_FILE.search(unlocated.group(1)):
            return "build-file error without a location"
    return None


def run_cli(argv: list[str]) -> tuple[int, str]:
    """`mlbuild ARGV` in this process; (exit code, stdout + stderr)."""
    from mlbuild.cli.main import main

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        try:
            main(argv)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return code, buffer.getvalue()


def run_case(case: Case, scratch: Path, cache: Path) -> list[Run]:
    root = Path(tempfile.mkdtemp(prefix=f"case{case.seed}-", dir=scratch))
    try:
        workspace = write_case(case, root)
        runs = []
        for command in COMMANDS:
            argv = ["--verbose", "-C", str(workspace), "--cache-dir", str(cache), *command]
            if command[0] != "config":
                argv += [f"--config={token}" for token in case.configs]
            code, output = run_cli(argv)
            runs.append(Run(command, code, output[-4000:], judge(code, output)))
        return runs
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _worker(connection, scratch: str) -> None:
    scratch_dir = Path(scratch)
    cache = scratch_dir / "cache"
    os.environ["MLBUILD_TOOLCHAIN_DIR"] = str(scratch_dir / "toolchains")
    while True:
        seed = connection.recv()
        if seed is None:
            return
        connection.send(run_case(make_case(seed), scratch_dir, cache))


class Pool:
    """Workers that run cases by seed; `run(seeds)` yields an Outcome per seed."""

    def __init__(self, workers: int, timeout_s: float, scratch: Path):
        self.timeout_s = timeout_s
        self.scratch = scratch
        self.context = multiprocessing.get_context("fork")
        self.workers = [self._start(i) for i in range(workers)]

    def _start(self, index: int):
        parent, child = self.context.Pipe()
        directory = self.scratch / f"worker{index}-{time.monotonic_ns()}"
        directory.mkdir(parents=True)
        process = self.context.Process(target=_worker, args=(child, str(directory)), daemon=True)
        process.start()
        child.close()
        return {"process": process, "connection": parent, "seed": None, "since": 0.0, "dir": directory}

    def _replace(self, index: int) -> None:
        worker = self.workers[index]
        if worker["process"].is_alive():
            worker["process"].kill()
        worker["process"].join()
        shutil.rmtree(worker["dir"], ignore_errors=True)
        self.workers[index] = self._start(index)

    def run(self, seeds, deadline: float | None = None):
        seeds = iter(seeds)
        exhausted = False
        while True:
            for worker in self.workers:
                if worker["seed"] is None and not exhausted:
                    if deadline is not None and time.monotonic() > deadline:
                        exhausted = True
                        break
                    seed = next(seeds, None)
                    if seed is None:
                        exhausted = True
                        break
                    worker["connection"].send(seed)
                    worker["seed"], worker["since"] = seed, time.monotonic()
            busy = [w for w in self.workers if w["seed"] is not None]
            if not busy:
                return
            ready = multiprocessing.connection.wait([w["connection"] for w in busy], timeout=1.0)
            for index, worker in enumerate(self.workers):
                if worker["seed"] is None:
                    continue
                seed = worker["seed"]
                if worker["connection"] in ready:
                    try:
                        runs = worker["connection"].recv()
                    except EOFError:
                        worker["process"].join(5)
                        code = worker["process"].exitcode
                        worker["seed"] = None
                        self._replace(index)
                        yield Outcome(seed, [], f"worker died ({'signal ' + str(-code) if code and code < 0 else code})")
                        continue
                    worker["seed"] = None
                    yield Outcome(seed, runs)
                elif time.monotonic() - worker["since"] > self.timeout_s:
                    worker["seed"] = None
                    self._replace(index)
                    yield Outcome(seed, [], f"hang: no result within {self.timeout_s:.0f} s")

    def close(self) -> None:
        for worker in self.workers:
            try:
                worker["connection"].send(None)
            except OSError:
                pass
            worker["process"].join(5)
            if worker["process"].is_alive():
                worker["process"].kill()
