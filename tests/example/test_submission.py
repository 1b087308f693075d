"""`//submission:digits`: an MLPerf open-division submission tree built offline, and its check.

The tree comes from the real pipeline: four scenarios under LoadGen (run style test), their
accuracy runs scored by the accuracy checker, TEST01/TEST04 compliance runs; then the layout,
truncation, tarball and the check. Tampering with the result shows the check looks.
"""

import json
import re
import shutil
import tarfile

import pytest

SCENARIOS = ("Offline", "SingleStream", "MultiStream", "Server")


@pytest.fixture(scope="module")
def built_tree(copy_example, tmp_path_factory, mlbuild):
    workspace, cache = copy_example("submission"), tmp_path_factory.mktemp("cache")
    done = mlbuild(workspace, cache, "build", "//submission:digits")
    assert done.returncode == 0, done.stderr
    out = workspace / "mlbuild-bin" / "submission" / "digits"
    return workspace, cache, out / "submission", out / "submission.tar.gz"


def test_tree_has_the_official_layout(built_tree):
    _, _, tree, _ = built_tree
    base = tree / "open" / "mlbuild-example"
    system = json.loads((base / "systems" / "cpu-example.json").read_text())
    assert system["division"] == "open" and system["framework"].startswith("onnxruntime ")
    assert system["host_processor_core_count"] >= 1 and system["cooling"] == "Air"
    assert (base / "code" / "digits" / "README.md").is_file() and (base / "src" / "digits" / "README.md").is_file()
    assert json.loads((base / "model_mapping.json").read_text()) == {"digits": "resnet"}
    assert system["accelerators_per_node"] == "0"  # the official checker reads a numeric 0 as no answer
    for scenario in SCENARIOS:
        results = base / "results" / "cpu-example" / "digits" / scenario
        for name in ("measurements.json", "user.conf", "README.md", "accuracy/accuracy.txt",
                     "accuracy/mlperf_log_accuracy.json", "accuracy/mlperf_log_detail.txt",
                     "performance/run_1/mlperf_log_detail.txt", "performance/run_1/mlperf_log_summary.txt",
                     "TEST01/verify_accuracy.txt", "TEST01/verify_performance.txt",
                     "TEST01/accuracy/mlperf_log_accuracy.json", "TEST01/performance/run_1/mlperf_log_detail.txt",
                     "TEST04/verify_performance.txt", "TEST04/performance/run_1/mlperf_log_summary.txt"):
            assert (results / name).is_file(), f"{scenario}/{name}"
        assert "TEST PASS" in (results / "TEST01" / "verify_accuracy.txt").read_text()
        assert "NOT VALID FOR SUBMISSION" in (results / "user.conf").read_text()
        accuracy = (results / "accuracy" / "accuracy.txt").read_text()
        # Truncated as the official tool does: 4 KiB head and tail, the full log's sha256 kept.
        assert re.match(r"accuracy=\d+\.\d{3}%, good=\d+, total=360\n\nhash=[0-9a-f]{64}\n$", accuracy), accuracy
        assert (results / "accuracy" / "mlperf_log_accuracy.json").stat().st_size <= 2 * 4096 + 16


def test_tarball_holds_the_tree(built_tree):
    _, _, tree, tarball = built_tree
    with tarfile.open(tarball) as tar:
        names = {m.name for m in tar.getmembers() if m.isfile()}
        assert all(m.mtime == 0 for m in tar.getmembers())
    files = {str(p.relative_to(tree.parent)) for p in tree.rglob("*") if p.is_file()}
    assert names == files


def test_check_passes_and_prints_the_official_command(built_tree, mlbuild):
    workspace, cache, tree, _ = built_tree
    done = mlbuild(workspace, cache, "submission", "check", str(tree))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "submission check passed: 0 error(s)" in done.stdout
    assert "run style 'test' (short durations): NOT VALID FOR SUBMISSION" in done.stdout  # open: a warning
    # Mapped to ResNet-50: what a test-style run of a small dataset lacks is named, as warnings.
    assert "the accuracy run covers 360 samples, the benchmark's dataset has 50000" in done.stdout
    assert "Server latency bound 500000000 ns, MLPerf's is 15000000 ns" in done.stdout
    assert f"submission_checker.main --input {tree}" in done.stdout


def test_check_finds_what_was_tampered_with(built_tree, mlbuild, tmp_path):
    workspace, cache, tree, _ = built_tree
    copy = tmp_path / "tree"
    shutil.copytree(tree, copy)
    results = copy / "open" / "mlbuild-example" / "results" / "cpu-example" / "digits"
    detail = results / "Server" / "performance" / "run_1" / "mlperf_log_detail.txt"
    detail.write_text(detail.read_text().replace('"value": "VALID"', '"value": "INVALID"'))
    (results / "Offline" / "measurements.json").unlink()
    (results / "SingleStream" / "accuracy" / "accuracy.txt").write_text("accuracy=12.000%, good=1, total=8\n")
    system = copy / "open" / "mlbuild-example" / "systems" / "cpu-example.json"
    system.write_text(json.dumps({k: v for k, v in json.loads(system.read_text()).items() if k != "cooling"}))
    done = mlbuild(workspace, cache, "submission", "check", str(copy))
    assert done.returncode == 1
    out = done.stdout
    assert "Server/performance/run_1/mlperf_log_detail.txt: LoadGen result is INVALID, not VALID" in out
    assert "Offline/measurements.json: missing or empty" in out
    assert "SingleStream/accuracy/accuracy.txt: accuracy 12.000% is below the target" in out
    assert "missing system field 'cooling'" in out
    assert "submission check FAILED: 4 error(s)" in out


def test_warm_rebuild_runs_nothing(built_tree, mlbuild):
    workspace, cache, _, _ = built_tree
    done = mlbuild(workspace, cache, "build", "//submission:digits")
    assert done.returncode == 0 and "0 executed" in done.stderr, done.stderr


@pytest.mark.parametrize("edit, message", [
    (("division: open", "division: closed"), "runs in run style 'test', which is not valid for submission: "
                                             "the closed division refuses it"),
    (("    cooling: Air\n", ""), "missing system field(s) cooling"),
])
def test_bad_declarations_are_refused_before_anything_runs(copy_example, tmp_path, mlbuild, edit, message):
    workspace = copy_example("bad-submission")
    build_file = workspace / "targets" / "submission" / "BUILD.yaml"
    build_file.write_text(build_file.read_text().replace(*edit))
    done = mlbuild(workspace, tmp_path / "cache", "build", "//submission:digits")
    assert done.returncode == 3, done.stderr
    assert message in done.stderr
    assert re.search(r"targets/submission/BUILD\.yaml:\d+", done.stderr)
    assert "] built" not in done.stderr
