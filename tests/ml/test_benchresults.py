"""mlbuild.benchresults on summaries that real LoadGen runs wrote, and on broken ones."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlbuild.benchresults import (SummaryError, Verdict, judge, load_bench_result, parse_summary, read_accuracy,
                                  read_summary)
from mlbuild.errors import EXIT_BUILD_FAILED

pytest.importorskip("mlperf_loadgen", reason="mlcommons-loadgen is not installed")

REPO = Path(__file__).resolve().parents[2]
HARNESS = REPO / "mlbuild" / "rules" / "support" / "loadgen_harness.py"
CHECKER = REPO / "mlbuild" / "rules" / "support" / "accuracy_imagenet.py"
SHORT = ["--model-name", "tiny", "--conf", "min_duration=300", "--calibration-seconds", 0.2, "--raw-seconds", 0.2]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Real LoadGen runs on a tiny random ONNX classifier: Offline VALID, Offline INVALID, SingleStream, accuracy."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    d = tmp_path_factory.mktemp("bench")
    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["input", "shape"], ["flat"]),
         helper.make_node("MatMul", ["flat", "w"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(np.array([-1, 64], dtype=np.int64), "shape"),
         numpy_helper.from_array(rng.standard_normal((64, 10)).astype(np.float32), "w")])
    model = d / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(model))
    x = rng.standard_normal((200, 1, 8, 8)).astype(np.float32)
    data = d / "data.npz"
    np.savez(data, x=x, y=rng.integers(0, 10, 200).astype(np.int64))

    def run(name, scenario, *extra, mode="performance"):
        out_dir, result = d / name, d / f"{name}.json"
        proc = subprocess.run([sys.executable, str(HARNESS), "--engine", str(model), "--dataset", str(data),
                               "--scenario", scenario, "--mode", mode, "--out-dir", str(out_dir),
                               "--result", str(result), "--batch-size", "16", *map(str, SHORT), *map(str, extra)],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        if mode == "accuracy":
            subprocess.run([sys.executable, str(CHECKER), "--log", str(out_dir / "mlperf_log_accuracy.json"),
                            "--ground-truth", str(data), "--out", str(out_dir / "accuracy.txt")], check=True)
        return out_dir, result

    return {"offline": run("offline", "Offline"), "invalid": run("invalid", "Offline", "--conf", "target_qps=500"),
            "single": run("single", "SingleStream"), "accuracy": run("accuracy", "Offline", mode="accuracy")}


def test_parses_a_real_offline_summary(runs):
    out_dir, _ = runs["offline"]
    summary = read_summary(str(out_dir / "mlperf_log_summary.txt"))
    assert (summary["scenario"], summary["mode"], summary["result"]) == ("Offline", "PerformanceOnly", "VALID")
    assert summary["valid"] is True and summary["has_results"] is True
    assert summary["checks"] == {"min_duration": True, "min_queries": True, "early_stopping": True}
    assert summary["samples_per_second"] > 0
    lat = summary["latency_ns"]
    assert {"min", "max", "mean", "p50", "p90", "p95", "p97", "p99", "p99.9"} <= set(lat)
    assert lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert summary["parameters"]["min_duration (ms)"] == 300
    assert summary["parameters"]["performance_sample_count"] == 200
    assert summary["errors"] == 0


def test_parses_an_invalid_run_and_its_recommendation(runs):
    out_dir, _ = runs["invalid"]
    summary = read_summary(str(out_dir / "mlperf_log_summary.txt"))
    assert summary["result"] == "INVALID" and summary["valid"] is False
    assert summary["checks"]["min_duration"] is False
    assert any("expected QPS" in r for r in summary["recommendations"])


def test_singlestream_headline_and_qps(runs):
    out_dir, _ = runs["single"]
    summary = read_summary(str(out_dir / "mlperf_log_summary.txt"))
    assert summary["scenario"] == "SingleStream" and summary["valid"] is True
    assert summary["headline"]["name"] == "90.0th percentile latency (ns)"
    assert summary["headline"]["value"] == summary["latency_ns"]["p90"]
    assert summary["samples_per_second"] == summary["qps_with_loadgen_overhead"] > 0
    assert summary["early_stopping"] and summary["early_stopping"][0].startswith("Processed at least 64 queries")


def test_accuracy_summary_has_no_verdict(runs):
    out_dir, result = runs["accuracy"]
    summary = read_summary(str(out_dir / "mlperf_log_summary.txt"))
    assert summary["has_results"] is False and summary["valid"] is None and summary["errors"] == 0
    merged = load_bench_result(str(out_dir), str(result))
    assert merged["mode"] == "accuracy" and merged["samples"] == 200
    assert merged["accuracy"] == read_accuracy(str(out_dir / "accuracy.txt"))["accuracy"]  # the checker's number
    assert judge(merged, accuracy_threshold=0.0).passed
    verdict = judge(merged, accuracy_threshold=1.01)
    assert not verdict.passed and "accuracy" in verdict.reasons[0]


def test_load_bench_result_merges_harness_measurements(runs):
    out_dir, result = runs["offline"]
    merged = load_bench_result(str(out_dir), str(result))
    harness = json.loads(Path(result).read_text())
    assert merged["valid"] is True and merged["scenario"] == "Offline"
    assert merged["samples_per_second"] == merged["loadgen"]["samples_per_second"]
    assert merged["calibration"] == harness["calibration"]
    assert merged["harness_overhead"] == pytest.approx(merged["samples_per_second"] / harness["raw_samples_per_second"])
    assert 0 < merged["harness_overhead"] < 2


def test_judge_thresholds(runs):
    merged = load_bench_result(str(runs["offline"][0]), str(runs["offline"][1]))
    qps, p99 = merged["samples_per_second"], merged["latency_ns"]["p99"]
    ok = judge(merged, accuracy_threshold=None, min_qps=qps / 2, max_latency_p99_ns=p99 * 2)
    assert ok == Verdict(passed=True, reasons=[], checks=ok.checks) and len(ok.checks) == 3
    slow = judge(merged, accuracy_threshold=None, min_qps=qps * 10, max_latency_p99_ns=p99 / 10)
    assert not slow.passed and len(slow.reasons) == 2
    assert "samples/s" in slow.reasons[0] and "p99 latency" in slow.reasons[1]
    no_accuracy = judge(merged, accuracy_threshold=0.9, min_qps=None, max_latency_p99_ns=None)
    assert not no_accuracy.passed and "measured none" in no_accuracy.reasons[0]
    invalid = load_bench_result(str(runs["invalid"][0]), str(runs["invalid"][1]))
    verdict = judge(invalid, accuracy_threshold=None, min_qps=None, max_latency_p99_ns=None)
    assert not verdict.passed and verdict.reasons == ["LoadGen result INVALID (min duration not satisfied)"]


def test_accuracy_txt_in_another_format_is_a_clear_error(tmp_path):
    (tmp_path / "accuracy.txt").write_text("top1 = 0.97\n")
    with pytest.raises(SummaryError, match="expected 'accuracy=XX.XXX%, good=N, total=N'"):
        read_accuracy(str(tmp_path / "accuracy.txt"))
    (tmp_path / "accuracy.txt").write_text("accuracy=97.250%, good=389, total=400\nhash=abc\n")
    assert read_accuracy(str(tmp_path / "accuracy.txt")) == {"accuracy": 0.9725, "good": 389, "total": 400}


def test_truncated_garbage_and_missing_summaries_are_clear_errors(runs, tmp_path):
    text = (runs["offline"][0] / "mlperf_log_summary.txt").read_text()
    for cut in (len(text) // 2, text.index("Result is")):
        with pytest.raises(SummaryError, match="truncated"):
            parse_summary(text[:cut])
    with pytest.raises(SummaryError, match="lacks 'Result is'"):
        parse_summary(text.replace("Result is : VALID\n", ""))
    for garbage in ("", "\x00\x01binary", "Traceback (most recent call last):\n  File x: y\n"):
        with pytest.raises(SummaryError, match="not a LoadGen summary"):
            parse_summary(garbage)
    with pytest.raises(SummaryError, match="cannot read") as info:
        load_bench_result(str(tmp_path))
    assert info.value.exit_code == EXIT_BUILD_FAILED
    (tmp_path / "mlperf_log_summary.txt").write_text(text)
    (tmp_path / "result.json").write_text("{not json")
    with pytest.raises(SummaryError, match="not JSON"):
        load_bench_result(str(tmp_path), str(tmp_path / "result.json"))
