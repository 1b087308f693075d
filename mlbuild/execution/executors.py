"""Executors: how an action of each kind is carried out inside its sandbox.

`subprocess` runs argv; other kinds (downloads) run in-process but obey the same contract:
read only staged inputs, write only declared outputs under the sandbox.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from ..errors import ActionError
from .processes import ProcessRunner
from .sandbox import Sandbox, label_output_dir

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


def _execute_bench(builder, sandbox: Sandbox, logs: Path, extra: dict) -> Execution:
    """Run the LoadGen harness, then judge its logs; a failed verdict is an ActionError."""
    from ..benchresults import judge, load_bench_result

    execution = run_subprocess(sandbox, builder.runner, logs)
    params = dict(sandbox.action.params)
    outdir = sandbox.root / label_output_dir(sandbox.action.label)
    report, reasons = {}, []
    for mode in params["modes"]:
        result = load_bench_result(str(outdir / mode), str(outdir / mode / "result.json"))
        if mode == "performance":
            verdict = judge(result, min_qps=params["min_qps"], max_latency_p99_ns=params["max_latency_p99_ns"])
            latency = result.get("latency_ns") or {}
            report.update({
                "scenario": result.get("scenario"), "valid": result.get("valid"),
                "samples_per_second": result.get("samples_per_second"),
                "latency_p90_ms": latency["p90"] / 1e6 if latency.get("p90") else None,
                "latency_p99_ms": latency["p99"] / 1e6 if latency.get("p99") else None,
                "raw_samples_per_second": result.get("raw_samples_per_second"),
                "harness_overhead": result.get("harness_overhead"),
            })
        else:
            verdict = judge(result, accuracy_threshold=params["accuracy_threshold"])
            report["accuracy"] = result.get("accuracy")
            report.setdefault("scenario", result.get("scenario"))
        reasons += [f"{mode}: {reason}" for reason in verdict.reasons]
    extra["report"] = report
    if reasons:
        raise ActionError(f"{sandbox.action.label}: benchmark failed: " + "; ".join(reasons))
    return execution


def _execute_download(builder, sandbox: Sandbox, logs: Path, extra: dict) -> Execution:
    """Fetch (or reuse by checksum), verify, and unpack safely if asked; runs in-process.

    The cache indexes downloads by checksum (→ blake3 digest), under a lock per checksum, so
    the same file named by two targets, builds or workspaces is fetched once."""
    from ..downloads import MD5_WARNING, Checksum, fetch, safe_extract
    from ..storage.atomic import write_atomically

    action = sandbox.action
    params = dict(action.params)
    checksum = Checksum.parse(params["checksum"])
    if checksum.is_legacy:
        builder.warn(f"{action.label}: {MD5_WARNING}")
    start = time.monotonic()
    dest = sandbox.root / (action.outputs or action.output_dirs)[0]
    file_name = PurePosixPath(urlparse(action.urls[0]).path).name or dest.name
    fetched = sandbox.root / ".tmp" / file_name if params["extract"] else dest
    cas, name = builder.cache.cas, f"{checksum.algorithm}-{checksum.hexdigest}"
    index = builder.cache.root / "downloads" / name
    with builder.cache.lock(f"download-{name}"):
        known = index.read_text().strip() if index.exists() else None
        if known and cas.verify(known):
            cas.materialize(known, fetched)
        else:
            fetch(list(action.urls), checksum, fetched, distdirs=builder.options.distdirs,
                  rewrites=builder.options.rewrites, progress=builder.download_progress(action.label),
                  warn=builder.warn)
            write_atomically(index, cas.put_file(fetched).encode())
    if params["extract"]:
        safe_extract(fetched, dest, strip_components=params["strip_components"],
                     name=f"{action.label}'s archive {file_name} ({action.urls[0]})")
    stdout, stderr = logs / "stdout", logs / "stderr"
    stdout.write_text(f"{checksum} verified\n"), stderr.touch()
    return Execution(0, time.monotonic() - start, stdout, stderr)


def _execute_unavailable(builder, sandbox: Sandbox, logs: Path, extra: dict) -> Execution:
    """An action whose inputs the user has not provided yet (e.g. a dataset directory)."""
    raise ActionError(dict(sandbox.action.params)["reason"])


# Action.executor -> function(builder, sandbox, logs_dir, extra facts dict) -> Execution
EXECUTORS = {
    "subprocess": _execute_subprocess,
    "bench": _execute_bench,
    "download": _execute_download,
    "unavailable": _execute_unavailable,
}
