"""ort_optimize.py on models like the unseen ones users bring: IR 3 with initializers as inputs,
constants that folding would blow up, and batch sizes a model cannot take."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[2] / "mlbuild" / "rules" / "support" / "ort_optimize.py"


def optimize(tmp_path, model, *extra, expect=0):
    out, sidecar = tmp_path / "engine.onnx", tmp_path / "engine.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--model", str(model), "--out", str(out), "--sidecar",
                           str(sidecar), *map(str, extra)], capture_output=True, text=True, timeout=120)
    assert done.returncode == expect, done.stderr
    return done, out, (json.loads(sidecar.read_text()) if expect == 0 else None)


def save(tmp_path, nodes, inputs, outputs, initializers, ir_version=3, opset=9, name="model.onnx"):
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, initializers),
                              opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def ir3_model(tmp_path, batch="N"):
    """Opset 9, IR 3: every initializer is listed as a graph input too, as old exporters wrote them."""
    w = numpy_helper.from_array(np.arange(640, dtype=np.float32).reshape(64, 10) / 640, "w")
    shape = numpy_helper.from_array(np.array([-1, 64], dtype=np.int64), "shape")
    return save(tmp_path, [helper.make_node("Reshape", ["x", "shape"], ["flat"]),
                           helper.make_node("MatMul", ["flat", "w"], ["y"])],
                [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 1, 8, 8]),
                 helper.make_tensor_value_info("w", TensorProto.FLOAT, [64, 10]),
                 helper.make_tensor_value_info("shape", TensorProto.INT64, [2])],
                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 10])], [w, shape])


@pytest.mark.parametrize("level", ["basic", "extended", "all"])
def test_ir3_model_builds_an_engine_that_takes_only_its_real_input(tmp_path, level):
    import onnxruntime as ort

    _, engine, sidecar = optimize(tmp_path, ir3_model(tmp_path), "--level", level, "--batch-size", 4)
    assert [i["name"] for i in sidecar["inputs"]] == ["x"]
    assert sidecar["checked_input_shapes"] == {"x": [4, 1, 8, 8]}
    session = ort.InferenceSession(str(engine), providers=["CPUExecutionProvider"])
    assert session.run(None, {"x": np.ones((3, 1, 8, 8), np.float32)})[0].shape == (3, 10)


def test_a_batch_the_model_cannot_take_fails_naming_its_inputs(tmp_path):
    done, engine, _ = optimize(tmp_path, ir3_model(tmp_path, batch=1), "--batch-size", 32, expect=2)
    assert "fails on the declared input (x [32, 1, 8, 8])" in done.stderr
    assert "model inputs: x [1, 1, 8, 8] tensor(float)" in done.stderr
    assert "Traceback" not in done.stderr


def test_symbolic_sample_dims_need_an_input_shape(tmp_path):
    w = numpy_helper.from_array(np.ones((1, 1), np.float32), "w")
    model = save(tmp_path, [helper.make_node("Mul", ["x", "w"], ["y"])],
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "H"])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "H"])], [w], ir_version=7, opset=13)
    done, _, _ = optimize(tmp_path, model, expect=2)
    assert "cannot make an input of shape [1, 'H']" in done.stderr and "--input-shape" in done.stderr
    _, _, sidecar = optimize(tmp_path, model, "--input-shape", 5)
    assert sidecar["checked_input_shapes"] == {"x": [1, 5]}


def test_folding_that_blows_the_model_up_is_turned_off(tmp_path):
    """A Tile of a 64x1 constant folded into a 16 MiB weight: the engine stays the model's size."""
    small = numpy_helper.from_array(np.ones((64, 1), np.float32), "small")
    reps = numpy_helper.from_array(np.array([1, 65536], np.int64), "reps")
    model = save(tmp_path, [helper.make_node("Tile", ["small", "reps"], ["big"]),
                            helper.make_node("Flatten", ["x"], ["flat"]),
                            helper.make_node("MatMul", ["flat", "big"], ["y"])],
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 65536])], [small, reps],
                 ir_version=4)
    done, engine, sidecar = optimize(tmp_path, model)
    assert engine.stat().st_size < 4 * model.stat().st_size + (1 << 20)
    assert sidecar["constant_folding"].startswith("disabled: folding grew the model")
    assert "constant folding disabled" in done.stderr
