"""The `mlbuild` executable: run the command, then end the process without the interpreter's teardown.

A command ends holding large structures: parsed BUILD files, the target graph, build state.
The interpreter's teardown would free them object by object (0.9 s after a 10,000-target
build) just before the OS reclaims the whole heap at once. So the process ends itself, in the
last exit handler, once every other exit handler (Ray's shutdown, logging's flush, file locks'
release) has run. In-process callers (tests) keep calling `main.main`: their interpreter goes on.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys


class _EndProcess:
    """The last exit handler: registered before the command's modules, so it runs after theirs."""

    def __init__(self):
        self.code: int | None = None  # set once the command has exited; None: teardown as usual

    def __call__(self) -> None:
        if self.code is None:
            return
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # the reader has gone, or the stream is closed
                pass
        os._exit(self.code)


def run() -> None:
    """`mlbuild ARGS`: the command; the process ends as soon as it and the exit handlers are done."""
    end_process = _EndProcess()
    atexit.register(end_process)
    # Off for good, not only while the command runs (main): re-enabled, the collector's first
    # pass would scan the whole heap the command left (0.1 s after 10,000 targets) just before exit.
    gc.disable()
    from .main import main  # only now: the handlers its modules register run before end_process

    try:
        main()
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            end_process.code = exc.code or 0
        raise
