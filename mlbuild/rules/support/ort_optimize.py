"""Build the CPU engine of an ONNX model: an onnxruntime-optimized model plus a sidecar naming its hardware.

Three things an unseen model taught (an opset-9, IR-3 ResNet-50 from a local mirror):
- IR < 4 models list every initializer as a graph input too; onnxruntime treats those as inputs a
  caller may override, and an optimized model can keep them as inputs nobody feeds. They are
  constants here: they are taken out of the inputs before optimizing.
- Constant folding can materialize what the model computes from small constants (a Tile, an
  Expand): 80 KB became 102 MB at level `all`. When the optimized model grows more than
  BLOWUP_FACTOR times (and by more than BLOWUP_MIN_BYTES), it is rebuilt without ConstantFolding
  and the sidecar says so.
- An engine is only cached after one real inference on an input of the declared shape (batch
  size x the model's other dims, or --input-shape), so a shape the model cannot take fails here,
  naming the model's inputs, not inside LoadGen.

Exit codes: 0 built; 1 onnxruntime failed; 2 a missing model or an input shape it cannot run.
"""

import os
import sys
import argparse
import hashlib
import json
import platform

# ISA extensions that decide which kernels onnxruntime picks (x86 `flags`, Arm `Features` in /proc/cpuinfo).
# A model optimized at level "all" may hold kernels/layouts (e.g. NCHWc) valid only where these match.
RELEVANT_CPU_FEATURES = frozenset({
    "sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c",
    "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd", "avx512_vnni", "avx512_bf16", "avx512_fp16",
    "avx_vnni", "avx_vnni_int8", "amx_tile", "amx_int8", "amx_bf16", "amx_fp16",
    "asimd", "asimddp", "asimdhp", "sve", "sve2", "i8mm", "bf16", "sme",
})

LEVELS = ("basic", "extended", "all")
BLOWUP_FACTOR = 4
BLOWUP_MIN_BYTES = 1 << 20
_NUMPY_TYPES = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
                "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int8)": "int8", "tensor(uint8)": "uint8",
                "tensor(bool)": "bool"}


class EngineError(Exception):
    """A model this engine cannot be built from, with the exit code it maps to."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def cpu_info(path: str = "/proc/cpuinfo") -> dict:
    """The machine, CPU model and sorted relevant ISA features; empty features where /proc/cpuinfo is absent."""
    features: set = set()
    model = None
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("flags", "features"):
                    features.update(value.split())
                elif key in ("model name", "cpu model") and model is None:
                    model = value.strip()
    except OSError:
        pass
    return {"machine": platform.machine(), "model": model,
            "features": sorted(features & RELEVANT_CPU_FEATURES)}


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def constants_as_inputs_removed(path: str, scratch: str) -> str:
    """The model without initializers listed as graph inputs (IR < 4), or the model itself."""
    import onnx

    model = onnx.load(path)
    constants = {init.name for init in model.graph.initializer}
    kept = [i for i in model.graph.input if i.name not in constants]
    if len(kept) == len(model.graph.input):
        return path
    del model.graph.input[:]
    model.graph.input.extend(kept)
    model.ir_version = max(model.ir_version, 4)
    onnx.save(model, scratch)
    return scratch


def _optimize(ort, model: str, args, disabled: list):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = args.threads
    opts.graph_optimization_level = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                     "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                                     "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[args.level]
    opts.optimized_model_filepath = os.path.abspath(args.out)
    opts.log_severity_level = 3  # level "all" warns that the result is hardware-specific: the sidecar records that
    try:
        return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"], disabled_optimizers=disabled)
    except Exception as e:  # noqa: BLE001 - onnxruntime raises several unrelated types
        raise EngineError(f"onnxruntime cannot load {args.model}: {e}", 1) from e


def _shape(model_input, args) -> list:
    """The declared shape of one input: --batch-size for the first dim, --input-shape or the model's dims after."""
    dims = list(model_input.shape)
    rest = args.input_shape or dims[1:]
    return [args.batch_size, *rest] if dims else []


def check_inference(ort, engine: str, args):
    """Load the engine as it is (no second round of optimization) and run it once on the declared shape."""
    import numpy as np

    check = ort.SessionOptions()
    check.intra_op_num_threads = args.threads
    check.inter_op_num_threads = args.threads
    check.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    check.log_severity_level = 3
    sess = ort.InferenceSession(engine, check, providers=["CPUExecutionProvider"])
    inputs = sess.get_inputs()
    described = ", ".join(f"{i.name} {i.shape} {i.type}" for i in inputs)
    feed = {}
    for model_input in inputs:
        shape = _shape(model_input, args)
        if any(not isinstance(d, int) for d in shape) or model_input.type not in _NUMPY_TYPES:
            raise EngineError(f"{args.model}: cannot make an input of shape {shape} for {model_input.name} "
                              f"(model inputs: {described}); give the per-sample dims with --input-shape "
                              "(the engine's input_shape attribute)")
        feed[model_input.name] = np.zeros(shape, dtype=_NUMPY_TYPES[model_input.type])
    try:
        sess.run(None, feed)
    except Exception as e:  # noqa: BLE001 - any failure here is the model's or the declared shape's
        shapes = ", ".join(f"{name} {list(value.shape)}" for name, value in feed.items())
        raise EngineError(f"{args.model}: the engine fails on the declared input ({shapes}); model inputs: "
                          f"{described}: {e}") from e
    return sess


def build(args) -> tuple:
    """Optimize (without constant folding if it blows the model up), then check one inference."""
    import tempfile

    import onnxruntime as ort

    if not os.path.isfile(args.model):
        raise EngineError(f"model not found: {args.model}")
    for path in (args.out, args.sidecar):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        model = constants_as_inputs_removed(args.model, os.path.join(scratch, "model.onnx"))
        _optimize(ort, model, args, [])
        if not os.path.isfile(args.out):
            raise EngineError(f"onnxruntime did not write {args.out}", 1)
        before, after = os.path.getsize(args.model), os.path.getsize(args.out)
        folding = "enabled"
        if after > BLOWUP_FACTOR * before and after - before > BLOWUP_MIN_BYTES:
            _optimize(ort, model, args, ["ConstantFolding"])
            folding = (f"disabled: folding grew the model from {before} to {after} bytes; "
                       f"without it {os.path.getsize(args.out)}")
            print(f"ort_optimize: constant folding {folding}", file=sys.stderr)
    return check_inference(ort, args.out, args), folding


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="input ONNX model")
    parser.add_argument("--out", required=True, help="output optimized ONNX model (the engine)")
    parser.add_argument("--sidecar", required=True, help="output JSON describing how and for what CPU it was built")
    parser.add_argument("--level", choices=LEVELS, default="all", help="graph optimization level (default all)")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra/inter-op threads (default 1)")
    parser.add_argument("--batch-size", type=int, default=1, help="batch of the check inference (default 1)")
    parser.add_argument("--input-shape", type=int, nargs="+", metavar="DIM",
                        help="per-sample dims of the check inference (default: the model's)")
    args = parser.parse_args(argv)

    try:
        built = build(args)
    except EngineError as e:
        print(f"ort_optimize: error: {e}", file=sys.stderr)
        return e.code
    import onnxruntime as ort

    sess, folding = built
    sidecar = {
        "kind": "onnxruntime-optimized",
        "onnxruntime_version": ort.__version__,
        "providers": sess.get_providers(),
        "optimization_level": args.level,
        "constant_folding": folding,
        "checked_input_shapes": {i.name: _shape(i, args) for i in sess.get_inputs()},
        "threads": args.threads,
        "cpu": cpu_info(),
        "inputs": [{"name": i.name, "shape": i.shape, "type": i.type} for i in sess.get_inputs()],
        "outputs": [{"name": o.name, "shape": o.shape, "type": o.type} for o in sess.get_outputs()],
        "model_sha256": _sha256(args.model),
        "engine_sha256": _sha256(args.out),
    }
    with open(args.sidecar, "w") as f:
        json.dump(sidecar, f, indent=2, sort_keys=True)
        f.write("\n")
    features = " ".join(sidecar["cpu"]["features"]) or "no ISA flags found"
    print(f"ort_optimize: {args.model} -> {args.out} (level {args.level}, onnxruntime {ort.__version__}, "
          f"{platform.machine()} {features}); sidecar {args.sidecar}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
