"""The example workspace end to end: real training, quantization, engines and MLPerf LoadGen.

The workspace is copied to a temporary directory so the repository's output tree is left
alone; the toolchain venvs are shared with the rest of the session (tests/conftest.py). The
first full `mlbuild test` of the benchmarks is a module fixture (`scenarios_tested`): every
test that builds on its results asks for it, so each test passes alone and in any order.
"""

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

UPSTREAM_OF_PRECISION = ["//digits:dataset", "//digits:preprocess", "//digits:model_sklearn"]


@pytest.fixture(scope="module")
def workspace(copy_example):
    return copy_example("example")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def built(stderr: str) -> set[str]:
    return set(re.findall(r"\] built (//\S+)", stderr))


@pytest.fixture(scope="module")
def scenarios_tested(workspace, cache_dir, mlbuild, tmp_path_factory):
    """`mlbuild test` of every benchmark and the accuracy check, in the default configuration:
    (the process, its --results-json rows by target, where mlbuild-bin pointed right after)."""
    results = tmp_path_factory.mktemp("results") / "results.json"
    done = mlbuild(workspace, cache_dir, "test", "//bench/...", "//digits:accuracy_check",
                   "--results-json", str(results))
    rows = {row["target"]: row for row in json.loads(results.read_text())} if results.exists() else {}
    return done, rows, (workspace / "mlbuild-bin").resolve()


def test_all_scenarios_pass_under_loadgen(workspace, scenarios_tested):
    done, rows, convenience_link = scenarios_tested
    assert done.returncode == 0, done.stderr + done.stdout
    for scenario in ("offline", "singlestream", "multistream", "server"):
        row = rows[f"//bench:digits_{scenario}"]
        assert row["verdict"] == "PASSED"
        assert row["valid"] is True
        assert row["accuracy"] >= 0.95 * 0.99
        assert row["latency_p99_ms"] > 0
        if scenario != "multistream":  # LoadGen reports MultiStream by per-query latency only
            assert row["samples_per_second"] > 0
    assert convenience_link == (workspace / "mlbuild-out" / "default").resolve()
    out = convenience_link / "bench" / "digits_offline" / "performance"
    assert "Result is : VALID" in (out / "mlperf_log_summary.txt").read_text()
    assert (out / "mlperf_log_detail.txt").is_file()


def test_passing_benchmarks_are_cached_like_tests(workspace, cache_dir, mlbuild, scenarios_tested):
    done = mlbuild(workspace, cache_dir, "test", "//bench:digits_offline")
    assert done.returncode == 0, done.stderr
    assert built(done.stderr) == set()
    assert "PASSED (cached)" in done.stdout
    rerun = mlbuild(workspace, cache_dir, "test", "//bench:digits_offline", "--no-cache-test-results")
    assert rerun.returncode == 0, rerun.stderr
    assert built(rerun.stderr) == {"//bench:digits_offline"}


def test_int8_reuses_everything_upstream_of_precision(workspace, cache_dir, mlbuild, scenarios_tested):
    done = mlbuild(workspace, cache_dir, "test", "//bench:digits_offline", "--config=int8")
    assert done.returncode == 0, done.stderr + done.stdout
    ran = built(done.stderr)
    assert ran.isdisjoint(UPSTREAM_OF_PRECISION), ran
    assert {"//engines:digits", "//bench:digits_offline"} <= ran  # model_int8 was cached by eval_int8
    fp32_dir = workspace / "mlbuild-out" / "default" / "digits" / "preprocess"
    int8_dir = workspace / "mlbuild-out" / "int8" / "digits" / "preprocess"
    # Both configurations' trees hold the same blob (one inode, hardlinked from the CAS).
    assert (fp32_dir / "train.npz").stat().st_ino == (int8_dir / "train.npz").stat().st_ino


def test_cuda_fails_fast_naming_the_toolchain(workspace, cache_dir, mlbuild):
    done = mlbuild(workspace, cache_dir, "build", "//bench:digits_offline", "--config=cuda,int8")
    if shutil.which("nvidia-smi"):
        pytest.skip("a GPU is present: the CUDA path is exercised for real")
    assert done.returncode == 4, done.stderr
    assert "//engines:digits needs toolchain 'cuda'" in done.stderr
    assert "device=cuda" in done.stderr
    assert "] built" not in done.stderr


def test_run_streams_loadgen_output(workspace, cache_dir, mlbuild):
    done = mlbuild(workspace, cache_dir, "run", "//bench:digits", "--config=latency")
    assert done.returncode == 0, done.stderr
    assert "SingleStream" in done.stdout + done.stderr


def test_torch_framework_trains_a_cnn_and_shares_the_dataset(workspace, cache_dir, mlbuild, scenarios_tested):
    done = mlbuild(workspace, cache_dir, "build", "//digits:eval_fp32", "--config=framework=torch")
    assert done.returncode == 0, done.stderr
    ran = built(done.stderr)
    assert "//digits:model_torch" in ran
    assert ran.isdisjoint({"//digits:dataset", "//digits:preprocess"}), ran
    metrics = workspace / "mlbuild-bin" / "digits" / "eval_fp32" / "metrics.json"
    assert json.loads(metrics.read_text())["accuracy"] >= 0.93


def test_report_is_a_self_contained_page_whose_plots_render(workspace, cache_dir, mlbuild, tmp_path):
    """The page opened in headless Chromium: the bars, lines and histograms are on the screenshot."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed (scripts/setup.sh installs it)")
    from PIL import Image

    report = tmp_path / "report.html"
    done = mlbuild(workspace, cache_dir, "test", "//bench:digits_offline", "//bench:digits_singlestream",
                   "//bench:digits_server", "--report", str(report))
    assert done.returncode == 0, done.stderr
    page = report.read_text()
    assert page.count("<svg") == 3 and "<table>" in page and "//bench:digits_server" in page
    assert not re.search(r"<(script|link|img)\b|\bsrc=", page)  # nothing to fetch
    shot = tmp_path / "shot.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1300,2400", f"--screenshot={shot}", report.as_uri()],
                   capture_output=True, timeout=120, check=True)
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)

    def count(rgb):
        return int(np.all(np.abs(pixels - np.array(rgb)) <= 8, axis=-1).sum())

    assert count((31, 119, 180)) > 2000  # throughput bars (and the first percentile line)
    assert count((255, 127, 14)) > 2000  # histogram bins
    assert count((44, 160, 44)) > 50  # the third percentile line


def test_server_search_steps_are_cached_actions_and_the_bench_runs_at_what_they_found(workspace, cache_dir, mlbuild):
    done = mlbuild(workspace, cache_dir, "build", "//bench:digits_server_search_3")
    assert done.returncode == 0, done.stderr
    assert {f"//bench:digits_server_search_{i}" for i in (1, 2, 3)} <= built(done.stderr)
    again = mlbuild(workspace, cache_dir, "build", "//bench:digits_server_search_3")
    assert again.returncode == 0 and built(again.stderr) == set(), again.stderr
    state = json.loads((workspace / "mlbuild-bin" / "bench" / "digits_server_search_3" / "search.json").read_text())
    assert len(state["probes"]) == 3 and state["found"]["target_qps"] == max(
        p["target"] for p in state["probes"] if p["valid"])
    # The verdict of a run at the edge of validity depends on the machine's load; the settings do not.
    mlbuild(workspace, cache_dir, "test", "//bench:digits_server_searched")
    user_conf = workspace / "mlbuild-out" / "default" / "bench" / "digits_server_searched" / "performance" / "user.conf"
    assert f"digits.Server.target_qps = {state['found']['target_qps']:.6g}" in user_conf.read_text()
