"""LoadGen harness overhead on a ResNet-50-shaped model: Offline samples/s / raw onnxruntime samples/s.

Generates (seeded, with the onnx helper API) an opset-13 ONNX network with ResNet-50 v1.5's
shape: 7x7 stem, bottleneck stages [3, 4, 6, 3] of widths 256/512/1024/2048, global pooling,
1000 classes and an ArgMax, random weights (~100 MB). It costs tens of ms per sample on one
core: the regime where a harness should cost nothing, which is what this measures. The engine is
built by mlbuild's own ort_optimize.py (level all), the samples are random 3x224x224 images.

Each round is one run of mlbuild's loadgen_harness.py in Offline performance mode (run style
test, --seconds of min_duration), which in one process runs LoadGen and then the same engine,
threads and batch size on the same data without LoadGen (the raw rate): the rounds interleave
the two measurements by construction. The figure is the median over rounds of LoadGen
samples/s / raw samples/s; the goal is >= 0.95. On a shared machine the wall-clock rates
measure the neighbours too, so the same ratio per CPU second of this process (LoadGen's threads
included) is reported beside it: work the harness adds shows there, others' load does not.

    python benchmarks/harness_overhead.py                 # 7 rounds of 10 s, batch 8, 1 thread
    python benchmarks/harness_overhead.py --rounds 11 --seconds 6 --threads 2 --keep /tmp/r50
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SUPPORT = REPO / "mlbuild" / "rules" / "support"
GOAL = 0.95


def resnet50_shaped(path: Path, seed: int = 0) -> None:
    """ResNet-50 v1.5's layers with random weights (He-scaled so activations stay finite)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, weights = [], []

    def conv(x, cin, cout, k, stride=1, relu=True):
        name = f"conv{len(nodes)}"
        w = (rng.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k))).astype(np.float32)
        weights.extend([numpy_helper.from_array(w, f"{name}_w"),
                        numpy_helper.from_array(np.zeros(cout, np.float32), f"{name}_b")])
        nodes.append(helper.make_node("Conv", [x, f"{name}_w", f"{name}_b"], [name], kernel_shape=[k, k],
                                      strides=[stride, stride], pads=[k // 2] * 4))
        if not relu:
            return name
        nodes.append(helper.make_node("Relu", [name], [f"{name}_r"]))
        return f"{name}_r"

    x = conv("input", 3, 64, 7, stride=2)
    nodes.append(helper.make_node("MaxPool", [x], ["pool"], kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4))
    x, cin = "pool", 64
    for stage, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512))):
        for block in range(blocks):
            stride = 2 if block == 0 and stage > 0 else 1
            y = conv(x, cin, width, 1)
            y = conv(y, width, width, 3, stride=stride)  # v1.5: the stride on the 3x3
            y = conv(y, width, 4 * width, 1, relu=False)
            shortcut = conv(x, cin, 4 * width, 1, stride=stride, relu=False) if block == 0 else x
            out = f"add{len(nodes)}"
            nodes += [helper.make_node("Add", [y, shortcut], [out]), helper.make_node("Relu", [out], [out + "_r"])]
            x, cin = out + "_r", 4 * width
    fc = (rng.standard_normal((2048, 1000)) * np.sqrt(1.0 / 2048)).astype(np.float32)
    weights.append(numpy_helper.from_array(fc, "fc_w"))
    nodes += [helper.make_node("GlobalAveragePool", [x], ["gap"]), helper.make_node("Flatten", ["gap"], ["flat"]),
              helper.make_node("MatMul", ["flat", "fc_w"], ["logits"]),
              helper.make_node("ArgMax", ["logits"], ["classes"], axis=1, keepdims=0)]
    graph = helper.make_graph(nodes, "resnet50_shaped",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 224, 224])],
                              [helper.make_tensor_value_info("classes", TensorProto.INT64, ["N"])], weights)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))


def run(argv: list, timeout: float) -> str:
    done = subprocess.run([sys.executable, *map(str, argv)], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        sys.exit(f"{argv[0]} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=10.0, help="LoadGen min_duration and raw run length")
    parser.add_argument("--samples", type=int, default=64, help="images in the dataset (default 64)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep the model, engine and logs")
    parser.add_argument("--json", metavar="FILE", help="also write the rounds as JSON")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        work = Path(args.keep or scratch)
        work.mkdir(parents=True, exist_ok=True)
        model, engine, data = work / "resnet50_shaped.onnx", work / "engine.onnx", work / "data.npz"
        if not engine.exists():
            start = time.perf_counter()
            resnet50_shaped(model)
            run([SUPPORT / "ort_optimize.py", "--model", model, "--out", engine, "--sidecar", work / "engine.json",
                 "--threads", args.threads, "--batch-size", args.batch_size], timeout=1800)
            print(f"model {model.stat().st_size / 2**20:.0f} MiB, engine built in {time.perf_counter() - start:.0f} s")
        rng = np.random.default_rng(1)
        np.savez(data, x=rng.standard_normal((args.samples, 3, 224, 224)).astype(np.float32),
                 y=rng.integers(0, 1000, args.samples))
        rows = []
        print(f"{'round':>5}  {'loadgen samples/s':>17}  {'raw samples/s':>13}  {'ratio':>6}  {'ratio/CPU-s':>12}  "
              f"{'ms/sample':>9}")
        for index in range(args.rounds):
            out = work / f"round{index}"
            run([SUPPORT / "loadgen_harness.py", "--engine", engine, "--dataset", data, "--scenario", "Offline",
                 "--out-dir", out, "--result", out / "result.json", "--model-name", "resnet50",
                 "--batch-size", args.batch_size, "--threads", args.threads,
                 "--conf", f"min_duration={int(args.seconds * 1000)}", "--conf", "min_query_count=1",
                 "--raw-seconds", args.seconds, "--calibration-seconds", 2], timeout=1800)
            result = json.loads((out / "result.json").read_text())
            summary = (out / "mlperf_log_summary.txt").read_text()
            loadgen = float(summary.split("Samples per second:")[1].split()[0])
            raw = result["raw_samples_per_second"]
            per_cpu = (result["samples_completed"] / result["loadgen_cpu_seconds"]) / (
                result["raw"]["samples"] / result["raw"]["cpu_seconds"])
            rows.append({"loadgen": loadgen, "raw": raw, "ratio": loadgen / raw, "ratio_per_cpu_second": per_cpu,
                         "valid": "Result is : VALID" in summary})
            print(f"{index + 1:>5}  {loadgen:>17.2f}  {raw:>13.2f}  {loadgen / raw:>6.3f}  {per_cpu:>12.3f}  "
                  f"{1000 / raw:>9.1f}" + ("" if rows[-1]["valid"] else "  (INVALID)"))
        median = statistics.median(r["ratio"] for r in rows)
        per_cpu = statistics.median(r["ratio_per_cpu_second"] for r in rows)
        print(f"median LoadGen/raw: {median:.3f} wall-clock, {per_cpu:.3f} per CPU second, over {len(rows)} rounds "
              f"(goal >= {GOAL}): {'met' if median >= GOAL else 'NOT met'} wall-clock")
        if args.json:
            Path(args.json).write_text(json.dumps({"rounds": rows, "median_ratio": median,
                                                   "median_ratio_per_cpu_second": per_cpu}, indent=2) + "\n")
    return 0 if median >= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
