"""Executors: how an action of each kind is carried out inside its sandbox.

`subprocess` runs argv; other kinds (downloads) run in-process but obey the same contract:
read only staged inputs, write only declared outputs under the sandbox.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import ActionError
from .processes import ProcessRunner
from .sandbox import Sandbox

_STDERR_TAIL_LINES = 25


@dataclass
class Execution:
    exit_code: int
    duration_s: float
    stdout: Path
    stderr: Path


def run_subprocess(sandbox: Sandbox, runner: ProcessRunner, logs_dir: Path, stream: bool = False) -> Execution:
    action = sandbox.action
    stdout, stderr = logs_dir / "stdout", logs_dir / "stderr"
    start = time.monotonic()
    try:
        if stream:
            stdout.touch(), stderr.touch()
            result = runner.run(sandbox.argv(), sandbox.root, sandbox.env(), None, None, action.timeout_s)
        else:
            with open(stdout, "wb") as out, open(stderr, "wb") as err:
                result = runner.run(sandbox.argv(), sandbox.root, sandbox.env(), out, err, action.timeout_s)
    except FileNotFoundError:
        raise ActionError(
            f"{action.label}: command not found: {action.argv[0]}",
            hint="use an absolute path or a tool from a declared toolchain ({{toolchain:NAME}})",
        ) from None
    except PermissionError:
        raise ActionError(f"{action.label}: command is not executable: {action.argv[0]}") from None
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
        raise ActionError(message + (f"\n{tail}" if tail else ""), hint=hint)
    return Execution(result.exit_code, duration, stdout, stderr)


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("  | " + line for line in lines[-_STDERR_TAIL_LINES:])


def _execute_subprocess(builder, sandbox: Sandbox, logs: Path, extra: dict) -> Execution:
    return run_subprocess(sandbox, builder.runner, logs)


# Action.executor -> function(builder, sandbox, logs_dir, extra facts dict) -> Execution
EXECUTORS = {"subprocess": _execute_subprocess}
