"""The engine rule's TensorRT path through the CLI, with the trtexec TEST DOUBLE (tests/doubles/trtexec).

No machine that runs these tests has a GPU or TensorRT. The double accepts trtexec's flags and
writes a JSON document (NOT an engine) recording what it was asked, so the test can check what
mlbuild passed: precision, workspace size and the optimization profile's shapes, all from
`--config`. The real CUDA toolchain (nvcc) is detected; `require_gpu: false` lets it stand
without a GPU, and the default (`require_gpu: true`) must stop the build before anything runs.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from core.conftest import check_cache_consistent

TRTEXEC = Path(__file__).resolve().parent.parent / "doubles" / "trtexec"

pytestmark = pytest.mark.skipif(shutil.which("nvcc") is None and not Path("/usr/local/cuda/bin/nvcc").exists(),
                                reason="nvcc (the CUDA toolkit) is not installed: the cuda toolchain cannot be detected")

ROOT = """\
workspace: {name: trt}
config:
  precision: {default: fp32, values: {fp32: {}, fp16: {}, int8: {}}}
  batch_size: {type: int, default: 1}
"""
ENGINES = """\
model:
  rule: command
  srcs: [digits.onnx]
  outs: [model.onnx]
  cmd: "cp {{src:digits.onnx}} {{out}}"
trt:
  rule: engine
  backend: tensorrt
  toolchain: python
  deps: [":model"]
  model: ":model"
  precision: "{{config:precision}}"
  batch_size: "{{config:batch_size}}"
  workspace_mib: 256
"""


def toolchains(cuda: str) -> str:
    return (f"cuda: {cuda}\n"
            f"tensorrt: {{kind: tensorrt, trtexec: {json.dumps(str(TRTEXEC))}}}\n"
            "python: {kind: python}\n")  # the interpreter running mlbuild, which has onnx


def digits_onnx() -> bytes:
    """A tiny classifier: input [N,1,8,8] -> Flatten -> MatMul -> output [N,10]."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.linspace(-1, 1, 640, dtype=np.float32).reshape(64, 10), "weights")
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"], axis=1),
         helper.make_node("MatMul", ["flat", "weights"], ["output"])],
        "digits",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 10])],
        initializer=[weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


def files(cuda: str) -> dict:
    return {
        "BUILD.yaml": ROOT,
        "toolchains/gpu.yaml": toolchains(cuda),
        "targets/eng/BUILD.yaml": ENGINES,
        "targets/eng/digits.onnx": digits_onnx(),
    }


def test_engine_flags_from_the_configuration_reach_trtexec(workspace):
    ws = workspace(files("{kind: cuda, require_gpu: false}"))
    model = (ws.root / "targets" / "eng" / "digits.onnx").read_bytes()
    result = ws.ok("build", "//eng:trt", "--config=int8,batch_size=16")
    assert result.built == {"//eng:model", "//eng:trt"}

    bin_dir = ws.root / "mlbuild-bin" / "eng" / "trt"
    engine = json.loads((bin_dir / "engine.plan").read_text())
    assert engine["test_double"] is True
    assert engine["precision"] == "int8" and "--int8" in engine["argv"]
    assert engine["workspace_mib"] == 256 and "--memPoolSize=workspace:256M" in engine["argv"]
    assert engine["shapes"] == {"min": {"input": [1, 1, 8, 8]}, "opt": {"input": [16, 1, 8, 8]},
                                "max": {"input": [16, 1, 8, 8]}}
    assert "--skipInference" in engine["argv"]
    assert engine["onnx_sha256"] == hashlib.sha256(model).hexdigest()  # the model it was given, staged

    sidecar = json.loads((bin_dir / "engine.json").read_text())
    assert sidecar["kind"] == "tensorrt-engine" and sidecar["builder"] == "trtexec"
    assert sidecar["tensorrt_version"] == "10.3.0"
    assert (sidecar["precision"], sidecar["batch_size"], sidecar["workspace_mib"]) == ("int8", 16, 256)
    assert sidecar["input"] == {"name": "input", "min": [1, 1, 8, 8], "opt": [16, 1, 8, 8], "max": [16, 1, 8, 8]}

    # Another precision and batch size is another engine; the model is not rebuilt.
    fp16 = ws.ok("build", "//eng:trt", "--config=fp16,batch_size=4")
    assert fp16.built == {"//eng:trt"}
    engine = json.loads((ws.root / "mlbuild-bin" / "eng" / "trt" / "engine.plan").read_text())
    assert engine["precision"] == "fp16" and "--fp16" in engine["argv"] and "--int8" not in engine["argv"]
    assert engine["shapes"]["max"] == {"input": [4, 1, 8, 8]}
    check_cache_consistent(ws.cache)


def test_cuda_requiring_a_gpu_fails_before_anything_runs(workspace):
    from mlbuild.toolchains.host import gpus

    if gpus():
        pytest.skip("a GPU is visible: require_gpu is satisfied here")
    ws = workspace(files("{kind: cuda}"))
    result = ws("build", "//eng:trt", "--config=int8,batch_size=16")
    assert result.code == 4, str(result)
    assert "Traceback" not in result.stderr
    assert "//eng:trt needs toolchain 'cuda'" in result.stderr
    assert "no NVIDIA GPU" in result.stderr
    assert result.events == {}  # not even the model was built
    assert not (ws.root / "mlbuild-out").exists()
