"""MLPerf training in the example workspace: //training:digits judged by time-to-train, the
same run inside a container image built here from local files, a run that misses its target,
the official compliance checker, and the shape of the manual //training:resnet target."""

import json
import re

import pytest

from mlbuild.analysis.analyzer import Analyzer
from mlbuild.cli.session import GlobalOptions, Session
from mlbuild.loading.labels import Label
from mlbuild.toolchains.registry import UndetectedToolchains


@pytest.fixture(scope="module")
def example(copy_example):
    return copy_example("training")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def rows(path) -> dict:
    return {row["target"]: row for row in json.loads(path.read_text())}


def test_digits_trains_to_its_target_and_reports_time_to_train(example, cache_dir, mlbuild, tmp_path):
    done = mlbuild(example, cache_dir, "test", "//training:digits", "--results-json", str(tmp_path / "r.json"))
    assert done.returncode == 0, done.stderr
    assert re.search(r"time_to_train_s\s+epochs\s+accuracy", done.stdout), done.stdout
    row = rows(tmp_path / "r.json")["//training:digits"]
    assert row["verdict"] == "PASSED" and row["run_status"] == "success"
    assert row["accuracy"] >= 0.98 and 1 <= row["epochs"] <= 20 and row["time_to_train_s"] > 0
    log = (example / "mlbuild-bin" / "training" / "digits" / "mlperf_log.txt").read_text()
    assert ":::MLLOG" in log and '"key": "run_stop"' in log


def test_the_container_run_trains_the_same_weights(example, cache_dir, mlbuild, python_image):
    image_id, tarball = python_image
    (example / "toolchains" / "digits_image.yaml").write_text(
        f"digits_image:\n  kind: container\n  tarball: {tarball}\n  digest: {image_id}\n")
    done = mlbuild(example, cache_dir, "test", "//training:digits", "//training:digits_container")
    assert done.returncode == 0, done.stderr
    assert "//training:digits_container  PASSED" in done.stdout
    out = example / "mlbuild-bin" / "training"
    assert (out / "digits_container" / "weights.npz").read_bytes() == (out / "digits" / "weights.npz").read_bytes()


def test_a_run_that_misses_its_target_fails_with_the_reason(example, cache_dir, mlbuild, tmp_path):
    build = example / "targets" / "training" / "BUILD.yaml"
    original = build.read_text()
    build.write_text(original.replace("--max-epochs 20", "--max-epochs 2"))
    try:
        done = mlbuild(example, cache_dir, "test", "//training:digits", "--results-json", str(tmp_path / "r.json"))
    finally:
        build.write_text(original)
    assert done.returncode == 1
    assert "run_stop status is 'aborted', not 'success'" in done.stderr
    assert re.search(r"eval_accuracy 0\.9\d+ is below the target 0\.98", done.stderr), done.stderr
    row = rows(tmp_path / "r.json")["//training:digits"]
    assert row["verdict"] == "FAILED" and row["epochs"] == 2 and row["time_to_train_s"] > 0


def test_the_compliance_checker_rejects_a_log_missing_submission_keys(example, cache_dir, mlbuild):
    build = example / "targets" / "training" / "BUILD.yaml"
    original = build.read_text()
    build.write_text(original + "\nchecked:\n  <<: *digits\n  compliance_ruleset: \"4.1.0\"\n")
    try:
        done = mlbuild(example, cache_dir, "test", "//training:checked")
    finally:
        build.write_text(original)
    assert done.returncode == 1, done.stderr
    assert "the MLPerf compliance checker (training 4.1.0) rejected the log" in done.stderr
    assert "submission_org" in done.stderr  # the checker's own complaint, quoted


def test_resnet_mirrors_the_seed_as_configurations(example, tmp_path):
    data = tmp_path / "imagenet"
    data.mkdir()
    for name in ("train.rec", "train.idx", "val.rec", "val.idx"):
        (data / name).write_bytes(b"records")
    configs = ("training_version=r2.1,system_conf_name=DGXH100,results_dir=r21",
               f"imagenet_train_path={data},nvidia_training_code_checksum=sha256:{'ab' * 32}")
    session = Session(GlobalOptions(workspace=str(example), cache_dir=str(tmp_path / "c")), configs)
    graph = Analyzer(session.workspace, session.configuration, UndetectedToolchains(session.toolchains)).analyze(
        [Label.parse("//training:resnet")])
    code = graph[Label.parse("//training:nvidia_training_code")].action
    assert code.urls[0].startswith("https://github.com/mlcommons/training_results_v2.1/archive/")
    action = graph[Label.parse("//training:resnet")].action
    script = action.argv[2]
    assert "config_DGXH100.sh" in script and "LOGDIR=$PWD/out/training/resnet/r21" in script
    assert "--ruleset 2.1.0" in script and "mlperf_logging.compliance_checker" in script
    assert action.container == "<nvidia_resnet_r21.image>" and action.resources.gpus == 8
    assert action.executor == "training" and dict(action.params)["target_accuracy"] == 0.759
    assert "out/training/resnet/r21" in action.output_dirs
    assert {path for path, _ in action.sources} == {"data/train.rec", "data/train.idx", "data/val.rec", "data/val.idx"}
