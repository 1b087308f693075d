"""Build the CPU engine of an ONNX model: an onnxruntime-optimized model plus a sidecar naming its hardware."""

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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="input ONNX model")
    parser.add_argument("--out", required=True, help="output optimized ONNX model (the engine)")
    parser.add_argument("--sidecar", required=True, help="output JSON describing how and for what CPU it was built")
    parser.add_argument("--level", choices=LEVELS, default="all", help="graph optimization level (default all)")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra/inter-op threads (default 1)")
    args = parser.parse_args(argv)

    import onnxruntime as ort

    if not os.path.isfile(args.model):
        print(f"ort_optimize: error: model not found: {args.model}", file=sys.stderr)
        return 2
    level = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
             "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
             "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[args.level]
    for path in (args.out, args.sidecar):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = args.threads
    opts.graph_optimization_level = level
    opts.optimized_model_filepath = os.path.abspath(args.out)
    opts.log_severity_level = 3  # level "all" warns that the result is hardware-specific: the sidecar records that
    providers = ["CPUExecutionProvider"]
    sess = ort.InferenceSession(args.model, opts, providers=providers)
    if not os.path.isfile(args.out):
        print(f"ort_optimize: error: onnxruntime did not write {args.out}", file=sys.stderr)
        return 1

    # The engine must load as it is (no second round of optimization) on this machine.
    check = ort.SessionOptions()
    check.intra_op_num_threads = args.threads
    check.inter_op_num_threads = args.threads
    check.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    check.log_severity_level = 3
    ort.InferenceSession(args.out, check, providers=providers)

    sidecar = {
        "kind": "onnxruntime-optimized",
        "onnxruntime_version": ort.__version__,
        "providers": sess.get_providers(),
        "optimization_level": args.level,
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
