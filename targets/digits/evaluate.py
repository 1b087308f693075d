"""Measure top-1 accuracy of an ONNX digits model on the validation split with onnxruntime."""

import os
import sys
import argparse
import json

import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="ONNX model: input [N,1,8,8] -> class scores [N,10]")
    parser.add_argument("--val", required=True, help="val npz from preprocess.py (x, y)")
    parser.add_argument("--out", required=True, help="output JSON: {accuracy, samples}")
    parser.add_argument("--batch-size", type=int, default=256, help="inference batch size (default 256)")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime/BLAS threads (default 1)")
    args = parser.parse_args(argv)

    import onnxruntime as ort

    with np.load(args.val) as data:
        x = np.ascontiguousarray(data["x"], dtype=np.float32)
        y = np.asarray(data["y"], dtype=np.int64)

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = args.threads
    sess = ort.InferenceSession(args.model, opts, providers=["CPUExecutionProvider"])
    input_name = sess.get_inputs()[0].name
    output_name = sess.get_outputs()[0].name
    predictions = np.concatenate([
        np.argmax(sess.run([output_name], {input_name: x[i:i + args.batch_size]})[0], axis=1)
        for i in range(0, len(x), args.batch_size)
    ])
    accuracy = float((predictions == y).mean())
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"accuracy": accuracy, "samples": int(len(y))}, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"evaluate: {args.model}: top-1 accuracy {accuracy:.4f} on {len(y)} samples -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
