"""MLPerf training results, read as MLPerf reads them: from the `:::MLLOG` lines of a run's log.

A training benchmark is judged by time-to-train: the wall time from `run_start` to
`run_stop`, for a run that reached the quality target. The log (written by
`mlperf_logging.mllog`, one JSON record per line after `:::MLLOG `) says all of it:

    :::MLLOG {"key": "run_start", "time_ms": ..., "event_type": "INTERVAL_START", ...}
    :::MLLOG {"key": "eval_accuracy", "value": 0.93, "metadata": {"epoch_num": 3}, ...}
    :::MLLOG {"key": "run_stop", "time_ms": ..., "metadata": {"status": "success"}, ...}

A run passes when it started and stopped with status `success` and its last evaluation
reached the target accuracy; an aborted run, one that never stopped, or one that stopped
below target fails, with the reason. (For the real MLPerf benchmarks the official compliance
checker of the `mlperf-logging` package is run on the log too; the training rule does that.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

MLLOG_PREFIX = ":::MLLOG "


@dataclass(frozen=True)
class TrainingRun:
    """What a training log says about its run."""

    run_start_ms: int | None = None
    run_stop_ms: int | None = None
    status: str | None = None  # run_stop's metadata.status: "success" or "aborted"
    accuracies: tuple[tuple[float | None, float], ...] = ()  # (epoch_num, eval_accuracy), in log order
    benchmark: str | None = None  # submission_benchmark, when logged
    malformed_lines: tuple[int, ...] = ()

    @property
    def time_to_train_s(self) -> float | None:
        if self.run_start_ms is None or self.run_stop_ms is None:
            return None
        return (self.run_stop_ms - self.run_start_ms) / 1000.0

    @property
    def accuracy(self) -> float | None:
        """The last evaluation's accuracy: what the run stopped at."""
        return self.accuracies[-1][1] if self.accuracies else None

    @property
    def epochs(self) -> float | None:
        return self.accuracies[-1][0] if self.accuracies else None


@dataclass(frozen=True)
class TrainingVerdict:
    passed: bool
    reasons: list[str] = field(default_factory=list)


def parse_training_log(text: str) -> TrainingRun:
    """Read the `:::MLLOG` records of a log (other lines, e.g. the script's prints, are skipped)."""
    start = stop = status = benchmark = None
    accuracies, malformed = [], []
    for number, line in enumerate(text.splitlines(), 1):
        _, found, payload = line.partition(MLLOG_PREFIX)
        if not found:
            continue
        try:
            record = json.loads(payload)
            key, metadata = record["key"], record.get("metadata") or {}
        except (ValueError, KeyError, TypeError):
            malformed.append(number)
            continue
        if key == "run_start" and start is None:
            start = record.get("time_ms")
        elif key == "run_stop":
            stop, status = record.get("time_ms"), metadata.get("status")
        elif key == "eval_accuracy" and isinstance(record.get("value"), (int, float)):
            accuracies.append((metadata.get("epoch_num"), float(record["value"])))
        elif key == "submission_benchmark":
            benchmark = record.get("value")
    return TrainingRun(start, stop, status, tuple(accuracies), benchmark, tuple(malformed))


def judge_training(run: TrainingRun, target_accuracy: float) -> TrainingVerdict:
    """PASS when the run started, stopped with status success, and reached `target_accuracy`."""
    reasons = []
    if run.run_start_ms is None:
        reasons.append("the log has no run_start (is it an MLPerf training log written with mllog?)")
    if run.run_stop_ms is None:
        reasons.append("the log has no run_stop: the run did not finish")
    elif run.status != "success":
        reasons.append(f"run_stop status is '{run.status}', not 'success'")
    if run.accuracy is None:
        reasons.append("the log has no eval_accuracy")
    elif run.accuracy < target_accuracy:
        reasons.append(f"eval_accuracy {run.accuracy:.4f} is below the target {target_accuracy:g}")
    if run.malformed_lines:
        reasons.append(f"malformed :::MLLOG lines: {', '.join(map(str, run.malformed_lines[:5]))}")
    return TrainingVerdict(not reasons, reasons)
