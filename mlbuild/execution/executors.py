"""Executors: how an action of each kind is carried out inside its sandbox.

An executor is a function `(ExecutorContext, Sandbox, logs_dir) -> Execution`, chosen by
`Action.executor`. `subprocess` runs argv; other kinds run in-process (downloads, in
mlbuild/downloads/) or judge what a process wrote (benchmarks, in the bench rule), and all
obey one contract: read only staged inputs, write only declared outputs under the sandbox,
stdout/stderr into `logs_dir`, where an earlier action may have left them empty (lent log
directories: execution/runners.py), so both are rewritten or emptied (`Sandbox.new_file`).
An executor sees the build only through its small frozen `ExecutorContext`, never the
builder. It raises ActionError when the action failed; a test or benchmark that ran but did
not pass returns an Execution with `failure` set instead.
"""

from __future__ import annotations

import sys
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import ActionError
from ..storage.cas import ContentStore
from .isolation import run_confined
from .processes import ProcessRunner
from .sandbox import Sandbox

_STDERR_TAIL_LINES = 25


def _warn_on_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


@dataclass(frozen=True)
class ExecutorContext:
    """Everything an executor may use besides its sandbox."""

    processes: ProcessRunner  # runs argv in its own process group; cancelled on fail-fast and Ctrl-C
    cas: ContentStore
    lock: Callable[[str], AbstractContextManager]  # a named lock shared by every mlbuild on this cache
    cache_root: Path  # where an executor may keep an index of its own (downloads by checksum)
    distdirs: tuple = ()  # directories searched for downloads before any URL
    rewrites: tuple = ()  # (regex, replacement) URL rewrites
    warn: Callable[[str], None] = _warn_on_stderr
    progress: Callable[[str], object] | None = None  # label -> where a download reports its bytes


@dataclass(frozen=True)
class Execution:
    exit_code: int
    duration_s: float
    stdout: Path
    stderr: Path
    report: dict | None = None  # a benchmark's figures
    failure: str | None = None  # a test or benchmark that ran and did not pass: why


Executor = Callable[[ExecutorContext, Sandbox, Path], Execution]


def run_subprocess(sandbox: Sandbox, runner: ProcessRunner, logs_dir: Path, stream: bool = False) -> Execution:
    action = sandbox.action
    stdout, stderr = logs_dir / "stdout", logs_dir / "stderr"
    start = time.monotonic()
    try:
        if stream:
            stdout.touch(), stderr.touch()
            result = run_confined(runner, sandbox, None, None)
        else:
            with sandbox.new_file(stdout) as out, sandbox.new_file(stderr) as err:
                result = run_confined(runner, sandbox, out, err)
    except FileNotFoundError:
        raise ActionError(
            f"{action.label}: command not found: {action.argv[0]}",
            hint="use an absolute path or a tool from a declared toolchain ({{toolchain:NAME}})",
        ) from None
    except PermissionError:
        raise ActionError(f"{action.label}: command is not executable: {action.argv[0]}") from None
    except OSError as exc:  # ENOEXEC (not a program), ENAMETOOLONG, E2BIG: the action's argv is at fault
        raise ActionError(f"{action.label}: cannot run {action.argv[0]}: {exc.strerror}",
                          hint="argv[0] must be a program (a script needs a #! line) and arguments must fit "
                               "the system's limits") from None
    duration = time.monotonic() - start
    if result.cancelled:
        raise ActionError(f"{action.label}: cancelled")
    if result.timed_out:
        raise ActionError(
            f"{action.label}: timed out after {action.timeout_s:g} s (process group killed)",
            hint="raise the target's 'timeout' attribute if it legitimately takes longer",
        )
    if result.exit_code != 0:
        tail = _tail(stderr)
        message = f"{action.label}: {action.mnemonic.lower()} failed (exit {result.exit_code})"
        hint = None
        if result.exit_code == 127:
            message = f"{action.label}: command not found (exit 127)"
            hint = "the action's PATH holds only its toolchains' bin dirs and /usr/local/bin:/usr/bin:/bin"
            if action.container:
                hint = (f"in a container the command must exist in image {action.container} (PATH "
                        "/usr/local/bin:/usr/bin:/bin); a `cmd` needs /bin/bash there, an `argv` runs without a shell")
        elif result.exit_code == 125 and action.container:
            message = f"{action.label}: the container runtime could not start image {action.container} (exit 125)"
        raise ActionError(message + (f"\n{tail}" if tail else ""), hint=hint)
    return Execution(result.exit_code, duration, stdout, stderr)


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("  | " + line for line in lines[-_STDERR_TAIL_LINES:])


def _execute_subprocess(ctx: ExecutorContext, sandbox: Sandbox, logs: Path) -> Execution:
    return run_subprocess(sandbox, ctx.processes, logs)


def _execute_unavailable(ctx: ExecutorContext, sandbox: Sandbox, logs: Path) -> Execution:
    """An action whose inputs the user has not provided yet (e.g. a dataset directory)."""
    raise ActionError(dict(sandbox.action.params)["reason"])


# The executors every build has; rules add theirs (see mlbuild.rules.EXECUTORS).
BUILTIN_EXECUTORS: dict[str, Executor] = {
    "subprocess": _execute_subprocess,
    "unavailable": _execute_unavailable,
}
