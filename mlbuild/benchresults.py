"""Reads what a benchmark action left behind (LoadGen's summary, the harness's result.json) and judges it.

LoadGen is the authority on a run: mlperf_log_summary.txt says whether it is VALID and what it
measured. The task's accuracy checker is the authority on accuracy: accuracy.txt holds its
official line (`accuracy=XX.XXX%, good=N, total=N`). The harness (rules/support/loadgen_harness.py,
which cannot import mlbuild) only adds what neither can know: its calibration, the raw engine
throughput, and settings.json (official and effective settings, run style). `load_bench_result`
merges these into one flat dict, `judge` turns it and a target's thresholds into a pass/fail
`Verdict`, and the same dict feeds the tables the CLI prints.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

from mlbuild.errors import ActionError

SUMMARY_FILE = "mlperf_log_summary.txt"
ACCURACY_FILE = "accuracy.txt"
SETTINGS_FILE = "settings.json"

_RULE = re.compile(r"^=+$")
_KEY_VALUE = re.compile(r"^\s*(?P<key>[^:]+?)\s*:\s*(?P<value>.*?)\s*$")
_PERCENTILE = re.compile(r"^(?P<pct>\d+(?:\.\d+)?) percentile latency \(ns\)$")
_HEADLINE = re.compile(r"^(?P<pct>\d+(?:\.\d+)?)th percentile latency \(ns\)$")
_ACCURACY_LINE = re.compile(r"^accuracy=(?P<pct>[\d.]+)%, good=(?P<good>\d+), total=(?P<total>\d+)")
_COUNT = re.compile(r"^(?:(?P<n>\d+)|No) (?P<kind>warning|error)s? encountered", re.IGNORECASE)

_CHECKS = {
    "Min duration satisfied": "min_duration",
    "Min queries satisfied": "min_queries",
    "Early stopping satisfied": "early_stopping",
    "Performance constraints satisfied": "performance_constraints",
}
_LATENCY_STATS = {"Min latency (ns)": "min", "Max latency (ns)": "max", "Mean latency (ns)": "mean"}


class SummaryError(ActionError):
    """mlperf_log_summary.txt is missing, truncated or not a LoadGen summary."""


@dataclass(frozen=True)
class Verdict:
    """A benchmark's pass/fail: `reasons` names each failed check, `checks` every check that was made."""

    passed: bool
    reasons: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)


def _number(text: str) -> int | float | str:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _percentile_key(pct: str) -> str:
    """'50.00' -> 'p50', '99.90' -> 'p99.9'."""
    return "p" + (pct.rstrip("0").rstrip(".") if "." in pct else pct)


def parse_summary(text: str, source: str = SUMMARY_FILE) -> dict:
    """Parse LoadGen's mlperf_log_summary.txt.

    Returns scenario, mode, sut_name, result ("VALID"/"INVALID"), valid (bool), checks
    (min_duration, min_queries, early_stopping, performance_constraints: bool), recommendations,
    early_stopping (its bullet lines), samples_per_second (Offline "Samples per second", Server
    "Completed samples per second", SingleStream "QPS w/ loadgen overhead"; None for MultiStream,
    whose summary states none), scheduled_samples_per_second (Server), qps_with/without_loadgen_overhead
    (SingleStream), headline ({"name", "value"}: SingleStream/MultiStream's percentile latency),
    latency_ns (min, max, mean, p50, p90, p95, p97, p99, p99.9), parameters ("Test Parameters Used"),
    warnings, errors, and has_results. An accuracy-mode run's summary holds only the warning and
    error counts: then has_results is False and result/valid are None.

    Raises SummaryError on text that is not a complete summary: LoadGen writes the error count
    last, so a file without it is truncated; a performance summary needs its "Result is" line.
    """
    out: dict = {
        "scenario": None, "mode": None, "sut_name": None, "result": None, "valid": None, "checks": {},
        "recommendations": [], "early_stopping": [], "samples_per_second": None,
        "scheduled_samples_per_second": None, "qps_with_loadgen_overhead": None,
        "qps_without_loadgen_overhead": None, "headline": None, "latency_ns": {}, "parameters": {},
        "warnings": None, "errors": None, "has_results": False,
    }
    section = None
    bullets: list | None = None
    for raw in text.splitlines():
        line = raw.rstrip()
        stripped = line.strip()
        if not stripped or _RULE.match(stripped):
            continue
        count = _COUNT.match(stripped)
        if count:
            out[count["kind"].lower() + "s"] = int(count["n"] or 0)
            continue
        if stripped in ("MLPerf Results Summary", "Additional Stats", "Test Parameters Used"):
            section = stripped
            out["has_results"] = True
            bullets = None
            continue
        if stripped == "Recommendations:":
            bullets = out["recommendations"]
            continue
        if stripped == "Early Stopping Result:":
            bullets = out["early_stopping"]
            continue
        if stripped.startswith("* ") and bullets is not None:
            bullets.append(stripped[2:])
            continue
        match = _KEY_VALUE.match(line)
        if not match:
            continue  # e.g. MultiStream's "Per-query latency:" caption
        key, value = match["key"].strip(), match["value"]
        if section == "Test Parameters Used":
            out["parameters"][key] = _number(value)
        elif key in _CHECKS:
            out["checks"][_CHECKS[key]] = value.lower() == "yes"
        elif key == "Scenario":
            out["scenario"] = value
        elif key == "Mode":
            out["mode"] = value
        elif key == "SUT name":
            out["sut_name"] = value
        elif key == "Result is":
            out["result"] = value
            out["valid"] = value == "VALID"
        elif key in ("Samples per second", "Completed samples per second"):
            out["samples_per_second"] = float(value)
        elif key == "Scheduled samples per second":
            out["scheduled_samples_per_second"] = float(value)
        elif key == "QPS w/ loadgen overhead":
            out["qps_with_loadgen_overhead"] = float(value)
        elif key == "QPS w/o loadgen overhead":
            out["qps_without_loadgen_overhead"] = float(value)
        elif key in _LATENCY_STATS:
            out["latency_ns"][_LATENCY_STATS[key]] = float(value)
        elif _PERCENTILE.match(key):
            out["latency_ns"][_percentile_key(_PERCENTILE.match(key)["pct"])] = float(value)
        elif _HEADLINE.match(key):
            out["headline"] = {"name": key, "value": float(value)}

    if out["errors"] is None:
        if out["has_results"] or out["warnings"] is not None:
            raise SummaryError(f"{source}: truncated LoadGen summary (no final error count)")
        raise SummaryError(f"{source}: not a LoadGen summary (no 'MLPerf Results Summary' or error count)")
    if out["has_results"]:
        missing = [name for name, value in (("Scenario", out["scenario"]), ("Mode", out["mode"]),
                                            ("Result is", out["result"])) if value is None]
        if missing:
            raise SummaryError(f"{source}: LoadGen summary lacks {', '.join(repr(m) for m in missing)}")
    if out["samples_per_second"] is None and out["scenario"] == "SingleStream":
        out["samples_per_second"] = out["qps_with_loadgen_overhead"]  # one sample per query
    return out


def read_summary(path: str) -> dict:
    """parse_summary of a file, with a clear error when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError as e:
        raise SummaryError(f"cannot read LoadGen summary {path}: {e.strerror or e}") from e
    return parse_summary(text, source=path)


def read_accuracy(path: str) -> dict:
    """The official line of an accuracy checker's accuracy.txt: {accuracy (0..1), good, total}."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            first = f.readline().strip()
    except OSError as e:
        raise SummaryError(f"cannot read accuracy checker output {path}: {e.strerror or e}") from e
    match = _ACCURACY_LINE.match(first)
    if not match:
        raise SummaryError(f"{path}: expected 'accuracy=XX.XXX%, good=N, total=N', got {first[:80]!r}")
    return {"accuracy": float(match["pct"]) / 100, "good": int(match["good"]), "total": int(match["total"])}


def load_bench_result(out_dir: str, result_path: str | None = None) -> dict:
    """One flat dict for a benchmark run: the harness's result.json overlaid with LoadGen's summary.

    Keys: everything result.json holds (scenario, mode, calibration, raw_samples_per_second, engine,
    loadgen_version, run_style, ...), accuracy and samples from accuracy.txt where the accuracy
    checker wrote one, settings (settings.json), plus valid, result, samples_per_second,
    scheduled_samples_per_second, latency_ns, loadgen (the whole parsed summary) and
    harness_overhead (LoadGen samples/s over raw engine samples/s, where both exist; 1.0 means the
    harness costs nothing).
    """
    merged: dict = {}
    if result_path is not None:
        try:
            with open(result_path, encoding="utf-8") as f:
                merged = json.load(f)
        except OSError as e:
            raise SummaryError(f"cannot read harness result {result_path}: {e.strerror or e}") from e
        except ValueError as e:
            raise SummaryError(f"harness result {result_path} is not JSON: {e}") from e
        if not isinstance(merged, dict):
            raise SummaryError(f"harness result {result_path} is not a JSON object")
    summary = read_summary(os.path.join(out_dir, SUMMARY_FILE))
    merged.update({
        "valid": summary["valid"],
        "result": summary["result"],
        "samples_per_second": summary["samples_per_second"],
        "scheduled_samples_per_second": summary["scheduled_samples_per_second"],
        "latency_ns": summary["latency_ns"],
        "loadgen": summary,
    })
    merged.setdefault("scenario", summary["scenario"])
    accuracy_path = os.path.join(out_dir, ACCURACY_FILE)
    if os.path.exists(accuracy_path):
        scored = read_accuracy(accuracy_path)
        merged.update(accuracy=scored["accuracy"], samples=scored["total"])
    settings_path = os.path.join(out_dir, SETTINGS_FILE)
    if os.path.exists(settings_path):
        with open(settings_path, encoding="utf-8") as f:
            merged["settings"] = json.load(f)
    raw = merged.get("raw_samples_per_second")
    if summary["samples_per_second"] and raw:
        merged["harness_overhead"] = summary["samples_per_second"] / raw
    return merged


def _is_accuracy_run(result: dict) -> bool:
    mode = result.get("mode")
    if mode is not None:
        return str(mode).lower().startswith("accuracy")
    return result.get("valid") is None and "accuracy" in result


def judge(result: dict, *, accuracy_threshold: float | None = None, min_qps: float | None = None,
          max_latency_p99_ns: float | None = None) -> Verdict:
    """Pass/fail of a run (a `load_bench_result` dict) against a target's thresholds.

    A performance run must be VALID per LoadGen, an accuracy run carries no such verdict; a run
    whose LoadGen log counts errors fails; each threshold that is set must be met by a value the
    run actually measured (a threshold with nothing to compare fails rather than passing silently).
    """
    reasons: list[str] = []
    checks: list[str] = []

    def check(ok: bool, text: str) -> None:
        checks.append(("ok: " if ok else "FAIL: ") + text)
        if not ok:
            reasons.append(text)

    loadgen = result.get("loadgen") or {}
    if not _is_accuracy_run(result):
        valid = result.get("valid")
        if valid is None:
            check(False, "LoadGen summary has no 'Result is' line")
        else:
            failed = [name.replace("_", " ") for name, ok in (loadgen.get("checks") or {}).items() if not ok]
            detail = f" ({', '.join(failed)} not satisfied)" if failed else ""
            check(bool(valid), f"LoadGen result {'VALID' if valid else 'INVALID' + detail}")
    errors = loadgen.get("errors")
    if errors:
        check(False, f"LoadGen logged {errors} error(s): see mlperf_log_detail.txt")

    if accuracy_threshold is not None:
        accuracy = result.get("accuracy")
        if accuracy is None:
            check(False, f"accuracy >= {accuracy_threshold:g} required but the run measured none "
                         "(a performance-mode run?)")
        else:
            ok = accuracy >= accuracy_threshold
            check(ok, f"accuracy {accuracy:.4f} {'>=' if ok else '<'} {accuracy_threshold:g}")
    if min_qps is not None:
        qps = result.get("samples_per_second")
        if qps is None:
            check(False, f"samples/s >= {min_qps:g} required but the {result.get('scenario') or 'run'}'s summary "
                         "states no samples per second")
        else:
            check(qps >= min_qps, f"samples/s {qps:.6g} {'>=' if qps >= min_qps else '<'} {min_qps:g}")
    if max_latency_p99_ns is not None:
        p99 = (result.get("latency_ns") or {}).get("p99")
        if p99 is None:
            check(False, f"p99 latency <= {max_latency_p99_ns:g} ns required but the summary states none")
        else:
            check(p99 <= max_latency_p99_ns,
                  f"p99 latency {p99:.6g} ns {'<=' if p99 <= max_latency_p99_ns else '>'} {max_latency_p99_ns:g} ns")
    return Verdict(passed=not reasons, reasons=reasons, checks=checks)
