"""trt_build.py against the trtexec TEST DOUBLE: the flags mlbuild passes, the sidecar it writes, its failures."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
TRT_BUILD = REPO / "mlbuild" / "rules" / "support" / "trt_build.py"
DOUBLES = REPO / "tests" / "doubles"
TRTEXEC = DOUBLES / "trtexec"


def _tensorrt_importable() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


pytestmark = pytest.mark.skipif(_tensorrt_importable(),
                                reason="the real `tensorrt` package is importable: trt_build would use it, not trtexec")


def run(args, env_extra=None, path=None):
    env = dict(os.environ)
    env.pop("TRTEXEC_DOUBLE_VERSION", None)
    env.pop("TRTEXEC_DOUBLE_FAIL", None)
    if path is not None:
        env["PATH"] = path
    env.update(env_extra or {})
    return subprocess.run([sys.executable, str(TRT_BUILD), *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A plain fp32 model and a Q/DQ one, both input [N,1,8,8] -> probabilities [N,10]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    d = tmp_path_factory.mktemp("trt")
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(np.array([-1, 64], dtype=np.int64), "shape"),
             numpy_helper.from_array(rng.standard_normal((64, 10)).astype(np.float32), "w")]
    nodes = [helper.make_node("Reshape", ["input", "shape"], ["flat"]),
             helper.make_node("MatMul", ["flat", "w"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)]
    io = ([helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 8, 8])],
          [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10])])
    opset = [helper.make_opsetid("", 17)]
    fp32 = helper.make_model(helper.make_graph(nodes, "tiny", *io, inits), opset_imports=opset)
    qdq_nodes = [helper.make_node("QuantizeLinear", ["input", "s", "z"], ["q"]),
                 helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"]),
                 helper.make_node("Reshape", ["dq", "shape"], ["flat"]), *nodes[1:]]
    qdq_inits = inits + [numpy_helper.from_array(np.array(0.05, dtype=np.float32), "s"),
                         numpy_helper.from_array(np.array(0, dtype=np.int8), "z")]
    qdq = helper.make_model(helper.make_graph(qdq_nodes, "tiny_qdq", *io, qdq_inits), opset_imports=opset)
    paths = {"fp32": d / "tiny.onnx", "qdq": d / "tiny_qdq.onnx"}
    onnx.save(fp32, str(paths["fp32"]))
    onnx.save(qdq, str(paths["qdq"]))
    calib = d / "calib.npz"
    np.savez(calib, x=rng.standard_normal((32, 1, 8, 8)).astype(np.float32), y=np.zeros(32, dtype=np.int64))
    paths["calib"] = calib
    paths["dir"] = d
    return paths


def test_int8_flags_reach_trtexec_and_sidecar_records_the_build(models, tmp_path):
    engine, sidecar = tmp_path / "out" / "engine.plan", tmp_path / "out" / "engine.json"
    proc = run(["--model", models["qdq"], "--out", engine, "--sidecar", sidecar, "--precision", "int8",
                "--batch-size", 16, "--workspace-mib", 256, "--calib", models["calib"], "--trtexec", TRTEXEC])
    assert proc.returncode == 0, proc.stderr
    built = json.loads(engine.read_text())  # the double's record of what it was asked
    assert built["test_double"] is True
    assert built["precision"] == "int8" and "--int8" in built["argv"] and "--fp16" not in built["argv"]
    assert built["workspace_mib"] == 256 and "--memPoolSize=workspace:256M" in built["argv"]
    assert built["shapes"] == {"min": {"input": [1, 1, 8, 8]}, "opt": {"input": [16, 1, 8, 8]},
                               "max": {"input": [16, 1, 8, 8]}}
    assert built["onnx_sha256"] == hashlib.sha256(models["qdq"].read_bytes()).hexdigest()
    side = json.loads(sidecar.read_text())
    assert side["builder"] == "trtexec" and side["tensorrt_version"] == "10.3.0"
    assert (side["precision"], side["batch_size"], side["workspace_mib"]) == ("int8", 16, 256)
    assert side["workspace_bytes"] == 256 << 20
    assert side["int8_mode"].startswith("explicit")  # Q/DQ model: scales come from the model
    assert side["engine_sha256"] == hashlib.sha256(engine.read_bytes()).hexdigest()
    assert "gpu" in side  # None here: no nvidia-smi


@pytest.mark.parametrize("precision, flag", [("fp16", "--fp16"), ("fp32", None)])
def test_precision_flags(models, tmp_path, precision, flag):
    engine = tmp_path / "e.plan"
    proc = run(["--model", models["fp32"], "--out", engine, "--sidecar", tmp_path / "e.json",
                "--precision", precision, "--batch-size", 4, "--workspace-mib", 64, "--trtexec", TRTEXEC])
    assert proc.returncode == 0, proc.stderr
    built = json.loads(engine.read_text())
    assert built["precision"] == precision
    precision_flags = {a for a in built["argv"] if a in ("--fp16", "--int8", "--best")}
    assert precision_flags == ({flag} if flag else set())
    assert built["shapes"]["max"]["input"] == [4, 1, 8, 8]


def test_trtexec_found_on_path_and_old_version_banner(models, tmp_path):
    """No --trtexec: PATH is searched. TensorRT 8's banner packs 8.6.1 as v8601."""
    proc = run(["--model", models["fp32"], "--out", tmp_path / "e.plan", "--sidecar", tmp_path / "e.json",
                "--precision", "int8", "--batch-size", 8, "--workspace-mib", 32],
               env_extra={"TRTEXEC_DOUBLE_VERSION": "8601"}, path=f"{DOUBLES}{os.pathsep}{os.environ['PATH']}")
    assert proc.returncode == 0, proc.stderr
    side = json.loads((tmp_path / "e.json").read_text())
    assert side["tensorrt_version"] == "8.6.1"
    assert side["trtexec"] == str(TRTEXEC)
    assert side["int8_mode"].startswith("uncalibrated")  # no Q/DQ and trtexec cannot read calib.npz


def test_sidecar_names_the_gpu_that_nvidia_smi_reports(models, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"  # a stand-in answering the one query trt_build makes
    smi.write_text('#!/bin/sh\necho "NVIDIA H100 80GB HBM3, 550.54.15, 9.0"\n')
    smi.chmod(0o755)
    proc = run(["--model", models["fp32"], "--out", tmp_path / "e.plan", "--sidecar", tmp_path / "e.json",
                "--precision", "fp16", "--batch-size", 8, "--workspace-mib", 32, "--trtexec", TRTEXEC],
               path=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert proc.returncode == 0, proc.stderr
    side = json.loads((tmp_path / "e.json").read_text())
    assert side["gpu"] == "NVIDIA H100 80GB HBM3"
    assert side["gpus"] == [{"name": "NVIDIA H100 80GB HBM3", "driver_version": "550.54.15", "compute_cap": "9.0"}]


def test_no_tensorrt_and_no_trtexec_exits_3(models, tmp_path):
    proc = run(["--model", models["fp32"], "--out", tmp_path / "e.plan", "--sidecar", tmp_path / "e.json",
                "--precision", "fp32", "--batch-size", 1, "--workspace-mib", 16], path=str(tmp_path))
    assert proc.returncode == 3
    assert "TensorRT is not available" in proc.stderr
    assert not (tmp_path / "e.plan").exists()


def test_trtexec_failure_is_reported_with_its_output(models, tmp_path):
    proc = run(["--model", models["fp32"], "--out", tmp_path / "e.plan", "--sidecar", tmp_path / "e.json",
                "--precision", "fp16", "--batch-size", 2, "--workspace-mib", 16, "--trtexec", TRTEXEC],
               env_extra={"TRTEXEC_DOUBLE_FAIL": "1"})
    assert proc.returncode == 1
    assert "trtexec exited 1" in proc.stderr and "&&&& FAILED" in proc.stderr
    assert not (tmp_path / "e.json").exists()


def test_missing_model_is_bad_input(tmp_path):
    proc = run(["--model", tmp_path / "nope.onnx", "--out", tmp_path / "e.plan", "--sidecar", tmp_path / "e.json",
                "--precision", "fp32", "--batch-size", 1, "--workspace-mib", 16, "--trtexec", TRTEXEC])
    assert proc.returncode == 2 and "input not found" in proc.stderr


def test_double_validates_its_flags(models, tmp_path):
    def double(*args):
        return subprocess.run([str(TRTEXEC), *args], capture_output=True, text=True, timeout=60)

    banner = double(f"--onnx={models['fp32']}", f"--saveEngine={tmp_path / 'ok.plan'}")
    assert banner.returncode == 0 and "&&&& RUNNING TensorRT.trtexec [TensorRT v100300]" in banner.stdout
    assert double(f"--saveEngine={tmp_path / 'a.plan'}").returncode != 0  # no --onnx
    assert double(f"--onnx={models['fp32']}").returncode != 0  # no --saveEngine
    missing = double(f"--onnx={tmp_path / 'missing.onnx'}", f"--saveEngine={tmp_path / 'b.plan'}")
    assert missing.returncode != 0 and "&&&& FAILED" in missing.stdout
    assert double(f"--onnx={models['fp32']}", f"--saveEngine={tmp_path / 'c.plan'}", "--bogus").returncode != 0
    assert double(f"--onnx={models['fp32']}", f"--saveEngine={tmp_path / 'd.plan'}",
                  "--minShapes=input:1x1x8x8").returncode != 0  # min without opt/max
    assert not any((tmp_path / name).exists() for name in ("a.plan", "b.plan", "c.plan", "d.plan"))
