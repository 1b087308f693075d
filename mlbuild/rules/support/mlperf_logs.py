"""Read LoadGen's mlperf_log_detail.txt, and score a run the way MLPerf's compliance scripts do.

The detail log is one `:::MLLOG {json}` record per line; each record has a key, a value and
metadata saying whether it is an error. A run's score for comparing two runs of one scenario is
what compliance/TEST0x/verify_performance.py compares: Offline samples/s, Server completed
samples/s, SingleStream/MultiStream the early-stopping latency estimate (ns).

Standard library only: the compliance and submission scripts beside it run in any interpreter,
and `mlbuild submission check` runs them with its own.
"""

import json

PREFIX = ":::MLLOG "
SCORE_KEYS = {
    "Offline": "result_samples_per_second",
    "Server": "result_completed_samples_per_sec",
    "SingleStream": "early_stopping_latency_ss",
    "MultiStream": "early_stopping_latency_ms",
}
LATENCY_SCENARIOS = ("SingleStream", "MultiStream")


class LogError(Exception):
    pass


def read_detail(path: str) -> tuple[dict, list[str]]:
    """(key -> last value, error messages) of a detail log."""
    values: dict = {}
    errors: list[str] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.startswith(PREFIX):
                    continue
                try:
                    record = json.loads(line[len(PREFIX):])
                except ValueError:
                    continue
                values[record.get("key")] = record.get("value")
                if (record.get("metadata") or {}).get("is_error"):
                    errors.append(f"{record.get('key')}: {record.get('value')}")
    except OSError as e:
        raise LogError(f"cannot read {path}: {e.strerror or e}") from e
    if "effective_scenario" not in values:
        raise LogError(f"{path} is not a LoadGen detail log (no effective_scenario)")
    return values, errors


def score(values: dict, path: str) -> float:
    """The run's score as verify_performance.py reads it (a latency in ns for SingleStream/MultiStream)."""
    scenario = values["effective_scenario"]
    key = SCORE_KEYS.get(scenario)
    if key is None or key not in values:
        raise LogError(f"{path}: no {key or 'score'} for scenario {scenario}")
    return float(values[key])
