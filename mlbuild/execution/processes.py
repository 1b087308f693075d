"""Running action processes in their own process group, so a timeout or Ctrl-C kills the tree."""

from __future__ import annotations

import functools
import os
import select
import signal
import subprocess
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass

from .isolation import empty_network_namespace

_GRACE_S = 2.0
_POLL_S = 1.0  # the longest a wait blocks without looking at pending interrupts


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

    def run(self, argv, cwd, env, stdout, stderr, timeout_s: float | None, no_network: bool = False) -> ProcessResult:
        """Run to completion; `stdout`/`stderr` are open files, or None to inherit (streaming);
        `no_network`: in an empty network namespace (isolation.py)."""
        if self._cancelled.is_set():
            return ProcessResult(-1, False, True)
        with empty_network_namespace() if no_network else nullcontext() as namespace:
            with namespace.spawning() if namespace else nullcontext():
                process = subprocess.Popen(
                    argv, cwd=cwd, env=env, stdout=stdout, stderr=stderr, stdin=_devnull(), start_new_session=True,
                )
            try:
                return self._finish(process, timeout_s)
            finally:  # after an interrupt too: a process that outlived its group's kill keeps it
                if namespace and _group_left_running(process.pid):
                    namespace.retire()

    def _finish(self, process: subprocess.Popen, timeout_s: float | None) -> ProcessResult:
        """Wait for the started `process`, killing its group on a timeout, cancel or interrupt."""
        with self._lock:
            self._running.add(process)
            cancelled = self._cancelled.is_set()
        if cancelled:  # cancel_all ran between the check above and Popen
            _kill_group(process)
        try:
            timed_out = _wait(process, timeout_s)
            if timed_out:
                _kill_group(process)
        except BaseException:  # interrupted (Ctrl-C, a cancelled remote task): take the tree along
            _kill_group(process)
            raise
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


@functools.cache
def _devnull() -> int:
    """Every action's stdin, opened once (subprocess.DEVNULL opens and closes it per process)."""
    return os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)


def _wait(process: subprocess.Popen, timeout_s: float | None) -> bool:
    """Wait for `process`, True if it ran past `timeout_s`. Blocks at most _POLL_S at a time: a
    blocking waitpid would not see an interrupt raised in this thread without a signal, which is
    how Ray cancels a running task. The exit is seen at once through a pidfd; subprocess's own
    timed wait polls with sleeps that double from 1 ms, which for a 3 ms action costs more
    than the action (it is the fallback where the kernel has no pidfds, before Linux 5.3)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        pidfd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):
        pidfd = exited = None
    else:
        exited = select.poll()
        exited.register(pidfd, select.POLLIN)
    try:
        while True:
            remaining = _POLL_S if deadline is None else min(_POLL_S, max(0.0, deadline - time.monotonic()))
            if exited is not None:
                if exited.poll(remaining * 1000):
                    process.wait()  # it has exited: reaped at once
                    return False
            else:
                try:
                    process.wait(timeout=remaining)
                    return False
                except subprocess.TimeoutExpired:
                    pass
            if deadline is not None and time.monotonic() >= deadline:
                return True
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _group_left_running(group: int) -> bool:
    """Whether processes of the exited action's process group still run (started in the
    background and not waited for)."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # one changed its user: running all the same
        pass
    return True


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
