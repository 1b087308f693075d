"""kill -9 and Ctrl-C in the middle of a build (DESIGN §4): the cache holds no partial blob and no
entry with missing blobs, completed work is reused, running actions are killed on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import ROOT_BUILD, check_cache_consistent

DEADLINE_S = 60


def package(tmp: Path) -> str:
    """Six quick actions, one that blocks until `release` exists, and one below it."""
    lines = [f"f{i}: {{rule: command, outs: [o.txt], cmd: 'echo fast{i} > {{{{out}}}}'}}" for i in range(6)]
    lines.append(
        f"block: {{rule: command, outs: [o.txt], cmd: 'echo $$ > {tmp}/block.pid; "
        f"while [ ! -f {tmp}/release ]; do sleep 0.02; done; echo released > {{{{out}}}}'}}")
    lines.append("after: {rule: command, deps: [':block', ':f0'], outs: [o.txt], "
                 "cmd: 'cat {{dep::block}} {{dep::f0}} > {{out}}'}")
    return "\n".join(lines) + "\n"


def wait_for(predicate, what: str):
    deadline = time.monotonic() + DEADLINE_S
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)  # polling an external process's progress, not ordering our own threads


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie nobody reaped yet is as good as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


@pytest.fixture
def blocking(workspace, tmp_path):
    mlb = workspace({"BUILD.yaml": ROOT_BUILD, "targets/k/BUILD.yaml": package(tmp_path)})
    pids = []
    yield mlb, tmp_path, pids
    (tmp_path / "release").touch()  # let any orphaned action end by itself
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def start(mlb, tmp_path, *args) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / "build.log"
    with open(log, "w") as err:
        process = subprocess.Popen(mlb.popen_argv("build", "//k/...", "-j3", *args), stdout=subprocess.DEVNULL,
                                   stderr=err, start_new_session=True)
    return process, log


def built_lines(log: Path) -> int:
    return log.read_text().count("] built ")


def test_kill_9_mid_build_leaves_a_consistent_cache_and_loses_only_work_in_flight(blocking):
    mlb, tmp, pids = blocking
    process, log = start(mlb, tmp)
    try:
        wait_for(lambda: (tmp / "block.pid").exists() and (tmp / "block.pid").read_text().strip()
                 and built_lines(log) >= 6, "six actions done and the blocking one running")
        pids.append(int((tmp / "block.pid").read_text()))
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=DEADLINE_S)
    assert process.returncode == -signal.SIGKILL

    counts = check_cache_consistent(mlb.cache)
    assert counts["entries"] == 6  # exactly the completed actions
    leftovers = [p for p in mlb.cache.rglob("*.tmp") if "sandbox" not in p.relative_to(mlb.cache).parts]
    assert leftovers == []

    (tmp / "release").touch()
    result = mlb.ok("build", "//k/...")
    assert result.hits == {f"//k:f{i}" for i in range(6)}
    assert result.built == {"//k:block", "//k:after"}
    assert mlb.out("", "//k:after", "o.txt").read_text() == "released\nfast0\n"
    for i in range(6):
        assert mlb.out("", f"//k:f{i}", "o.txt").read_text() == f"fast{i}\n"
    check_cache_consistent(mlb.cache)
    assert mlb.ok("build", "//k/...").summary["executed"] == 0


def test_ctrl_c_kills_running_actions_and_exits_8(blocking):
    mlb, tmp, pids = blocking
    process, log = start(mlb, tmp)
    try:
        wait_for(lambda: (tmp / "block.pid").exists() and (tmp / "block.pid").read_text().strip(),
                 "the blocking action to start")
        pid = int((tmp / "block.pid").read_text())
        pids.append(pid)
        assert alive(pid)
        process.send_signal(signal.SIGINT)
        process.wait(timeout=DEADLINE_S)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    text = log.read_text()
    assert process.returncode == 8, text
    assert "interrupted" in text and "Traceback" not in text
    assert not alive(pid), "the running action survived Ctrl-C"
    check_cache_consistent(mlb.cache)
    sandboxes = mlb.cache / "sandbox"
    assert not sandboxes.exists() or list(sandboxes.iterdir()) == []
    # Nothing of the interrupted action was recorded; the next build completes it.
    (tmp / "release").touch()
    result = mlb.ok("build", "//k/...")
    assert {"//k:block", "//k:after"} <= result.built
    assert mlb.out("", "//k:after", "o.txt").read_text() == "released\nfast0\n"


def test_kill_9_during_execution_of_many_actions_never_publishes_partial_blobs(workspace, tmp_path):
    """Kill at an arbitrary instant while many actions write largish outputs."""
    lines = [f"w{i}: {{rule: command, outs: [o.bin], cmd: 'head -c {200_000 + i} /dev/zero | tr \"\\\\0\" x > {{{{out}}}}'}}"
             for i in range(40)]
    mlb = workspace({"BUILD.yaml": ROOT_BUILD, "targets/k/BUILD.yaml": "\n".join(lines) + "\n"})
    process, log = start(mlb, tmp_path)
    try:
        wait_for(lambda: built_lines(log) >= 5, "a few actions done")
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=DEADLINE_S)
    check_cache_consistent(mlb.cache, allow_temp=True)
    result = mlb.ok("build", "//k/...")
    assert result.summary["executed"] + result.summary["hits"] == 40
    for i in (0, 17, 39):
        assert mlb.out("", f"//k:w{i}", "o.bin").read_bytes() == b"x" * (200_000 + i)
