"""loadgen_harness.py under the real MLPerf LoadGen: each scenario VALID with auto-calibration, accuracy, errors."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mlperf_loadgen", reason="mlcommons-loadgen is not installed")

REPO = Path(__file__).resolve().parents[2]
DIGITS = REPO / "targets" / "digits"
SUPPORT = REPO / "mlbuild" / "rules" / "support"
HARNESS = SUPPORT / "loadgen_harness.py"
# Short runs: enough for LoadGen's early-stopping minimums (64 SingleStream / 662 MultiStream queries).
CHECKER = SUPPORT / "accuracy_imagenet.py"
# Run style `test` (the default) lowers min_query_count to 64, enough for LoadGen's early-stopping minimums.
SHORT = ["--conf", "min_duration=300", "--calibration-seconds", 0.2, "--raw-seconds", 0.2]


def run_script(path: Path, *args, expect: int = 0, timeout: float = 180) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(path), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == expect, (f"{path.name} exited {proc.returncode}, expected {expect}\n"
                                       f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def summary_field(out_dir: Path, key: str) -> str:
    text = (out_dir / "mlperf_log_summary.txt").read_text()
    match = re.search(rf"^{re.escape(key)}\s*:\s*(.+?)\s*$", text, re.MULTILINE)
    assert match, f"no {key!r} in the summary:\n{text}"
    return match.group(1)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """The digits val split and an onnxruntime-optimized MLP engine."""
    d = tmp_path_factory.mktemp("harness")
    run_script(DIGITS / "dataset.py", "--out", d / "data.npz")
    run_script(DIGITS / "preprocess.py", "--data", d / "data.npz", "--out-train", d / "train.npz",
               "--out-val", d / "val.npz", "--out-calib", d / "calib.npz")
    run_script(DIGITS / "train_sklearn.py", "--train", d / "train.npz", "--out", d / "mlp.onnx")
    run_script(SUPPORT / "ort_optimize.py", "--model", d / "mlp.onnx", "--out", d / "engine.onnx",
               "--sidecar", d / "engine.json")
    return {"val": d / "val.npz", "engine": d / "engine.onnx", "dir": d}


def harness(digits, tmp_path, scenario, *extra, mode="performance", expect=0, engine=None, dataset=None,
            model="digits"):
    out_dir, result = tmp_path / "logs", tmp_path / "result" / "result.json"
    proc = run_script(HARNESS, "--engine", engine or digits["engine"], "--dataset", dataset or digits["val"],
                      "--scenario", scenario, "--mode", mode, "--out-dir", out_dir, "--result", result,
                      "--batch-size", 32, "--threads", 1, "--model-name", model, *SHORT, *extra, expect=expect)
    return proc, out_dir, (json.loads(result.read_text()) if expect == 0 else None)


@pytest.mark.parametrize("scenario", ["Offline", "SingleStream", "MultiStream", "Server"])
def test_performance_run_is_valid_with_auto_calibration(digits, tmp_path, scenario):
    _, out_dir, result = harness(digits, tmp_path, scenario)
    assert summary_field(out_dir, "Scenario") == scenario
    assert summary_field(out_dir, "Result is") == "VALID"
    assert (out_dir / "mlperf_log_detail.txt").is_file() and (out_dir / "mlperf_log_accuracy.json").is_file()
    assert result["scenario"] == scenario and result["mode"] == "performance"
    assert result["loadgen_version"] and result["engine"]["backend"] == "onnxruntime"
    calibration = result["calibration"]
    assert calibration["source"] == "measured"
    settings = calibration["settings"]
    if scenario == "Offline":
        # Expected QPS above the fastest rehearsal's rate, so the single query outlasts min_duration.
        best, median = calibration["best_samples_per_second"], calibration["offline_samples_per_second"]
        assert settings["offline_expected_qps"] > best >= median
        assert result["raw_samples_per_second"] > 0
        assert float(summary_field(out_dir, "Samples per second")) > 0
    elif scenario == "SingleStream":
        assert settings["single_stream_expected_latency_ns"] < calibration["best_single_sample_latency_ns"]
    elif scenario == "MultiStream":
        assert settings["multi_stream_samples_per_query"] == 8
        assert settings["multi_stream_expected_latency_ns"] < calibration["best_query_latency_ns"]
        assert summary_field(out_dir, "samples_per_query") == "8"
    else:
        assert 0 < settings["server_target_qps"] < calibration["offline_samples_per_second"]
        assert float(summary_field(out_dir, "Completed samples per second")) > 0
    if scenario != "Offline":
        assert "raw_samples_per_second" not in result


@pytest.mark.parametrize("scenario", ["Offline", "Server"])
def test_accuracy_mode_logs_every_sample_and_the_checker_scores_it(digits, tmp_path, scenario):
    _, out_dir, result = harness(digits, tmp_path, scenario, mode="accuracy")
    entries = json.loads((out_dir / "mlperf_log_accuracy.json").read_text())
    assert sorted(e["qsl_idx"] for e in entries) == list(range(360))
    proc = run_script(CHECKER, "--log", out_dir / "mlperf_log_accuracy.json", "--ground-truth", digits["val"],
                      "--out", out_dir / "accuracy.txt")
    line = (out_dir / "accuracy.txt").read_text().strip()
    assert proc.stdout.strip() == line
    match = re.fullmatch(r"accuracy=(\d+\.\d{3})%, good=(\d+), total=360", line)
    assert match and float(match[1]) >= 93.0
    assert int(match[2]) == round(float(match[1]) * 360 / 100)


def test_checker_refuses_a_log_without_ground_truth(digits, tmp_path):
    _, out_dir, _ = harness(digits, tmp_path, "Offline", mode="accuracy")
    short = tmp_path / "short.npz"
    np.savez(short, x=np.zeros((10, 1, 8, 8), np.float32), y=np.zeros(10, np.int64))
    proc = run_script(CHECKER, "--log", out_dir / "mlperf_log_accuracy.json", "--ground-truth", short,
                      "--out", tmp_path / "accuracy.txt", expect=2)
    assert "350 sample(s) have no ground truth" in proc.stderr
    assert not (tmp_path / "accuracy.txt").exists()


def test_settings_come_from_mlperf_conf_and_one_user_conf(digits, tmp_path):
    proc, out_dir, result = harness(digits, tmp_path, "Offline")
    user_conf = (out_dir / "user.conf").read_text()
    assert "NOT VALID FOR SUBMISSION" in user_conf
    assert "digits.Offline.min_query_count = 64" in user_conf  # lowered by run style test
    assert "digits.Offline.min_duration = 300" in user_conf  # declared
    assert re.search(r"^digits\.Offline\.target_qps = [\d.e+]+$", user_conf, re.MULTILINE)  # calibrated
    settings = json.loads((out_dir / "settings.json").read_text())
    assert settings["in_mlperf_conf"] is False and settings["division"] == "open"
    assert "no entry in LoadGen's mlperf.conf" in proc.stderr
    assert settings["official"]["min_duration_ms"] == 600000 and settings["effective"]["min_duration_ms"] == 300
    assert {item["key"] for item in settings["non_submittable"]} == {"min_duration_ms", "min_query_count"}
    assert result["valid_for_submission"] is False and result["run_style"] == "test"
    detail = (out_dir / "mlperf_log_detail.txt").read_text()
    assert '"key": "effective_min_duration_ms", "value": 300' in detail  # LoadGen ran what the file says


def test_valid_style_lowers_nothing_and_warns_about_declared_lowerings(digits, tmp_path):
    """resnet50 is in mlperf.conf: its performance sample count (1024) exceeds the 360 samples here."""
    proc, out_dir, result = harness(digits, tmp_path, "SingleStream", "--run-style", "valid",
                                    "--conf", "min_query_count=64", model="resnet50")
    user_conf = (out_dir / "user.conf").read_text()
    assert "NOT VALID" not in user_conf and "Lowered by run style" not in user_conf
    settings = json.loads((out_dir / "settings.json").read_text())
    assert settings["in_mlperf_conf"] is True
    assert settings["effective"]["performance_sample_count_override"] == 360
    blocked = {item["key"] for item in settings["non_submittable"]}
    assert blocked == {"min_duration_ms", "min_query_count", "performance_sample_count_override"}
    assert "min_duration_ms = 300 (mlperf.conf: 600000) makes this result non-submittable" in proc.stderr
    assert result["valid_for_submission"] is False


def test_invalid_run_still_exits_0(digits, tmp_path):
    """A declared Offline QPS far below the real rate ends the run early: INVALID, judged by mlbuild, not here."""
    _, out_dir, result = harness(digits, tmp_path, "Offline", "--conf", "target_qps=1000")
    assert summary_field(out_dir, "Result is") == "INVALID"
    assert result["calibration"]["source"] == "declared"
    assert result["calibration"]["settings"]["offline_expected_qps"] == 1000


def test_a_batch_the_engine_cannot_take_is_named_before_loadgen_starts(digits, tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((40, 1, 4, 4), np.float32), y=np.zeros(40, np.int64))  # wrong input shape
    proc, out_dir, _ = harness(digits, tmp_path, "Offline", dataset=bad, expect=2)
    assert "cannot run a batch of shape [32, 1, 4, 4]" in proc.stderr
    assert "model inputs:" in proc.stderr and "[" in proc.stderr.split("model inputs:")[1]
    assert not (out_dir / "mlperf_log_summary.txt").exists()


def test_bad_inputs_exit_2_with_a_message(digits, tmp_path):
    raw = tmp_path / "raw.npz"
    np.savez(raw, images=np.zeros((4, 8, 8), np.float32), labels=np.zeros(4, np.int64))
    proc, _, _ = harness(digits, tmp_path, "Offline", dataset=raw, expect=2)
    assert "lacks key(s) ['x', 'y']" in proc.stderr
    proc, _, _ = harness(digits, tmp_path, "Offline", engine=tmp_path / "missing.onnx", expect=2)
    assert "engine not found" in proc.stderr
    fake_plan = tmp_path / "engine.plan"
    fake_plan.write_text(json.dumps({"test_double": True, "precision": "int8"}))
    proc, _, _ = harness(digits, tmp_path, "Offline", engine=fake_plan, expect=2)
    assert "TEST DOUBLE" in proc.stderr


def _harness_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("loadgen_harness_under_test", HARNESS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_server_search_bisects_between_the_last_valid_and_the_first_invalid_qps():
    next_probe = _harness_module().next_probe
    state = {"probes": []}
    assert next_probe(state, "Server") == {}  # the first probe: the calibration picks it
    state["probes"].append({"target": 100.0, "valid": True})
    assert next_probe(state, "Server") == {"target_qps": 200.0}  # no failure yet: double
    state["probes"].append({"target": 200.0, "valid": False})
    assert next_probe(state, "Server") == {"target_qps": 150.0}
    state["probes"].append({"target": 150.0, "valid": True})
    assert next_probe(state, "Server") == {"target_qps": 175.0}
    only_failed = {"probes": [{"target": 80.0, "valid": False}]}
    assert next_probe(only_failed, "Server") == {"target_qps": 40.0}  # nothing VALID yet: halve


def test_latency_search_steps_and_the_bench_uses_what_was_found(digits, tmp_path):
    steps = []
    for index in range(2):
        out = tmp_path / f"step{index}"
        previous = ["--search-from", steps[-1]] if steps else []
        harness(digits, out, "SingleStream", "--search-out", out / "search.json", *previous)
        steps.append(out / "search.json")
    state = json.loads(steps[-1].read_text())
    assert len(state["probes"]) == 2 and state["probes"][0]["valid"]
    second = state["probes"][1]
    assert second["target"] == pytest.approx(0.9 * state["probes"][0]["median_latency_ns"] / 1e6, rel=1e-3)
    assert state["found"]["target_latency"] > 0
    _, out_dir, result = harness(digits, tmp_path / "final", "SingleStream", "--found-from", steps[-1])
    assert result["calibration"]["source"] == "found by the performance search"
    assert re.search(r"^digits\.SingleStream\.target_latency = ", (out_dir / "user.conf").read_text(), re.M)


def test_a_search_that_found_nothing_is_a_clear_error(digits, tmp_path):
    empty = tmp_path / "search.json"
    empty.write_text(json.dumps({"scenario": "Server", "probes": [{"target": 1e9, "valid": False}], "found": None}))
    proc, _, _ = harness(digits, tmp_path, "Server", "--found-from", empty, expect=2)
    assert "found no VALID setting" in proc.stderr
