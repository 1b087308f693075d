"""The digits example's scripts, run as mlbuild runs them: separate processes, files in, files out."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
DIGITS = REPO / "targets" / "digits"
SUPPORT = REPO / "mlbuild" / "rules" / "support"


def run_script(path: Path, *args, timeout: float = 180) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(path), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, (f"{path.name} exited {proc.returncode}\nstdout:\n{proc.stdout}\n"
                                  f"stderr:\n{proc.stderr}")
    return proc


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def accuracy(model: Path, val: Path, out: Path) -> float:
    run_script(DIGITS / "evaluate.py", "--model", model, "--val", val, "--out", out)
    metrics = json.loads(out.read_text())
    assert metrics["samples"] == 360
    return metrics["accuracy"]


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """dataset -> preprocess -> train_sklearn -> quantize -> ort_optimize, outputs in nested dirs."""
    d = tmp_path_factory.mktemp("digits")
    p = {name: d / rel for name, rel in {
        "data": "raw/data.npz", "train": "split/train.npz", "val": "split/val.npz", "calib": "split/calib.npz",
        "fp32": "models/mlp.onnx", "int8": "models/mlp_int8.onnx",
        "engine": "engine/mlp_int8_opt.onnx", "sidecar": "engine/mlp_int8_opt.json"}.items()}
    run_script(DIGITS / "dataset.py", "--out", p["data"])
    run_script(DIGITS / "preprocess.py", "--data", p["data"], "--out-train", p["train"], "--out-val", p["val"],
               "--out-calib", p["calib"], "--calib-size", 100, "--seed", 0)
    run_script(DIGITS / "train_sklearn.py", "--train", p["train"], "--out", p["fp32"])
    run_script(DIGITS / "quantize.py", "--model", p["fp32"], "--calib", p["calib"], "--out", p["int8"])
    run_script(SUPPORT / "ort_optimize.py", "--model", p["int8"], "--out", p["engine"], "--sidecar", p["sidecar"],
               "--level", "all", "--threads", 1)
    p["dir"] = d
    return p


def test_dataset_is_the_digits_set(chain):
    with np.load(chain["data"]) as data:
        assert sorted(data.files) == ["images", "labels"]
        assert data["images"].shape == (1797, 8, 8) and data["images"].dtype == np.float32
        assert data["labels"].dtype == np.int64 and set(np.unique(data["labels"])) == set(range(10))


def test_preprocess_splits_are_stratified_normalized_nchw(chain):
    with np.load(chain["train"]) as train, np.load(chain["val"]) as val, np.load(chain["calib"]) as calib:
        for split in (train, val, calib):
            assert {"x", "y", "mean", "std"} <= set(split.files)
            assert split["x"].dtype == np.float32 and split["x"].shape[1:] == (1, 8, 8)
            assert split["y"].dtype == np.int64
        assert len(train["x"]) == 1437 and len(val["x"]) == 360 and len(calib["x"]) == 100
        # Standardized with train statistics: train is ~N(0,1), and every split stores the same stats.
        assert abs(float(train["x"].mean())) < 1e-4 and abs(float(train["x"].std()) - 1) < 1e-4
        assert float(val["mean"]) == float(train["mean"]) and float(val["std"]) == float(train["std"])
        # Stratified: each class's share of val is within a sample of its share of train.
        train_share = np.bincount(train["y"], minlength=10) / len(train["y"])
        val_share = np.bincount(val["y"], minlength=10) / len(val["y"])
        assert np.all(np.abs(train_share - val_share) < 1.5 / len(val["y"]) + 1e-9)
        # Calibration rows are train rows.
        train_rows = {row.tobytes() for row in train["x"]}
        assert all(row.tobytes() in train_rows for row in calib["x"])


def test_fp32_model_interface_and_accuracy(chain):
    import onnx

    model = onnx.load(str(chain["fp32"]))
    (inp,) = model.graph.input
    (out,) = model.graph.output
    assert inp.name == "input" and out.name == "probabilities"
    assert [d.dim_value or d.dim_param for d in inp.type.tensor_type.shape.dim] == ["N", 1, 8, 8]
    assert out.type.tensor_type.shape.dim[1].dim_value == 10
    assert accuracy(chain["fp32"], chain["val"], chain["dir"] / "fp32.json") >= 0.93


def test_int8_is_qdq_and_within_1_5_points_of_fp32(chain):
    import onnx

    ops = {node.op_type for node in onnx.load(str(chain["int8"])).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    fp32 = accuracy(chain["fp32"], chain["val"], chain["dir"] / "fp32.json")
    int8 = accuracy(chain["int8"], chain["val"], chain["dir"] / "int8.json")
    assert int8 >= fp32 - 0.015, (fp32, int8)


def test_ort_optimized_engine_runs_and_records_its_hardware(chain):
    import onnxruntime

    sidecar = json.loads(chain["sidecar"].read_text())
    assert sidecar["onnxruntime_version"] == onnxruntime.__version__
    assert sidecar["optimization_level"] == "all"
    assert sidecar["providers"] == ["CPUExecutionProvider"]
    assert sidecar["cpu"]["machine"]
    assert sidecar["cpu"]["features"] == sorted(sidecar["cpu"]["features"])
    assert sidecar["engine_sha256"] == sha256(chain["engine"])
    assert sidecar["model_sha256"] == sha256(chain["int8"])
    int8 = accuracy(chain["int8"], chain["val"], chain["dir"] / "int8.json")
    assert accuracy(chain["engine"], chain["val"], chain["dir"] / "engine.json") == pytest.approx(int8, abs=0.005)


def test_outputs_are_byte_reproducible(chain, tmp_path):
    """Same inputs, same bytes: what lets the action cache share these outputs."""
    run_script(DIGITS / "dataset.py", "--out", tmp_path / "data.npz")
    assert sha256(tmp_path / "data.npz") == sha256(chain["data"])
    run_script(DIGITS / "train_sklearn.py", "--train", chain["train"], "--out", tmp_path / "mlp.onnx")
    assert sha256(tmp_path / "mlp.onnx") == sha256(chain["fp32"])
    run_script(DIGITS / "quantize.py", "--model", chain["fp32"], "--calib", chain["calib"], "--out",
               tmp_path / "mlp_int8.onnx")
    assert sha256(tmp_path / "mlp_int8.onnx") == sha256(chain["int8"])


def test_torch_cnn_trains_exports_and_quantizes(chain, tmp_path):
    pytest.importorskip("torch", reason="torch is not installed (pip install torch==2.13.0)")
    fp32, int8 = tmp_path / "cnn.onnx", tmp_path / "cnn_int8.onnx"
    proc = run_script(DIGITS / "train_torch.py", "--train", chain["train"], "--out", fp32, "--threads", 1)
    assert "exporter" in proc.stdout
    import onnx

    model = onnx.load(str(fp32))
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["probabilities"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch
    fp32_acc = accuracy(fp32, chain["val"], tmp_path / "cnn.json")
    assert fp32_acc >= 0.95
    run_script(DIGITS / "quantize.py", "--model", fp32, "--calib", chain["calib"], "--out", int8)
    assert accuracy(int8, chain["val"], tmp_path / "cnn_int8.json") >= fp32_acc - 0.015
