"""Running action processes in their own process group, so a timeout or Ctrl-C kills the tree."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from dataclasses import dataclass

_GRACE_S = 2.0


@dataclass(frozen=True)
class ProcessResult:
    exit_code: int
    timed_out: bool
    cancelled: bool


class ProcessRunner:
    def __init__(self):
        self._running: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self._cancelled = threading.Event()

    def run(self, argv, cwd, env, stdout, stderr, timeout_s: float | None) -> ProcessResult:
        """Run to completion; `stdout`/`stderr` are open files, or None to inherit (streaming)."""
        if self._cancelled.is_set():
            return ProcessResult(-1, False, True)
        process = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        with self._lock:
            self._running.add(process)
            cancelled = self._cancelled.is_set()
        if cancelled:  # cancel_all ran between the check above and Popen
            _kill_group(process)
        timed_out = False
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(process)
        finally:
            with self._lock:
                self._running.discard(process)
        return ProcessResult(process.returncode, timed_out, self._cancelled.is_set())

    def cancel_all(self) -> None:
        """Kill every running action's process group (fail-fast, Ctrl-C)."""
        with self._lock:
            self._cancelled.set()
            running = list(self._running)
        for process in running:
            _kill_group(process)


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=_GRACE_S)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
