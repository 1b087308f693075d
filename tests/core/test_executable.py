"""The `mlbuild` executable ends its own process: the command's exit code, its buffered output and
the exit handlers it registered all survive; the interpreter's teardown does not run. (Real
commands through the executable: test_build_cli's installed-script tests.)"""

from __future__ import annotations

import os
import subprocess
import sys

# A stand-in command: it registers an exit handler and holds an object whose finalizer only
# the interpreter's teardown would call; neither writes with flush, so the output tests the
# executable's own flush.
_COMMAND = """
import atexit, sys
import mlbuild.cli.main as command

class HeldUntilTeardown:
    def __del__(self):
        print("torn down")

def main():
    atexit.register(print, "exit handler ran")
    command.held = HeldUntilTeardown()
    sys.exit(3)

command.main = main
from mlbuild.cli.executable import run
run()
"""


def test_exit_handlers_run_and_the_teardown_is_skipped():
    buffered = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}  # as in a pipeline
    done = subprocess.run([sys.executable, "-c", _COMMAND], capture_output=True, text=True, timeout=60, env=buffered)
    assert done.returncode == 3, done.stderr
    assert done.stdout.splitlines() == ["exit handler ran"]


# The real main() around a stand-in command whose exit handler reports the cyclic collector.
_COLLECTOR_AT_EXIT = """
import atexit, gc
import mlbuild.cli.main as command

def run_command(argv):
    atexit.register(lambda: print("collector enabled" if gc.isenabled() else "collector disabled"))

command._run = run_command
from mlbuild.cli.executable import run
run()
"""


def test_the_collector_stays_off_after_the_command():
    """Re-enabled before exit, the collector's first pass would scan the whole heap the command left."""
    done = subprocess.run([sys.executable, "-c", _COLLECTOR_AT_EXIT], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["collector disabled"]
