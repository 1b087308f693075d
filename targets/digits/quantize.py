"""Quantize an fp32 digits ONNX model to int8 (QDQ, static, calibrated on calib.npz) with onnxruntime."""

import os
import sys
import argparse
import logging

import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="fp32 ONNX model (input [N,1,8,8])")
    parser.add_argument("--calib", required=True, help="calibration npz from preprocess.py (x)")
    parser.add_argument("--out", required=True, help="output int8 QDQ ONNX model")
    parser.add_argument("--calib-batch-size", type=int, default=10, help="samples per calibration batch (default 10)")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime/BLAS threads (default 1)")
    args = parser.parse_args(argv)

    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    with np.load(args.calib) as data:
        calib_x = np.ascontiguousarray(data["x"], dtype=np.float32)
    input_name = onnx.load(args.model, load_external_data=False).graph.input[0].name

    class NpzReader(CalibrationDataReader):
        """Feeds calib.npz to the calibrator in fixed-size batches."""

        def __init__(self):
            self._batches = iter([calib_x[i:i + args.calib_batch_size]
                                  for i in range(0, len(calib_x), args.calib_batch_size)])

        def get_next(self):
            batch = next(self._batches, None)
            return None if batch is None else {input_name: batch}

    _pin_calibration_threads(args.threads)
    # quantize_static advises "pre-processing" (shape inference + optimization) on the root logger;
    # these graphs are already shape-complete, so that advice is noise in every build log.
    logging.getLogger().addFilter(lambda record: "pre-processing" not in record.getMessage())
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    quantize_static(
        args.model, args.out, NpzReader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        per_channel=False,
        calibrate_method=CalibrationMethod.MinMax,
        # Softmax stays fp32: int8 probabilities would only cost accuracy at the very end.
        op_types_to_quantize=["Conv", "MatMul", "Gemm", "Add", "Relu", "Reshape", "Flatten", "MaxPool"],
        extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
        calibration_providers=["CPUExecutionProvider"],
    )
    ops = sorted({node.op_type for node in onnx.load(args.out).graph.node})
    print(f"quantize: {args.model} -> {args.out} (QDQ int8, per-tensor, MinMax on {len(calib_x)} calibration "
          f"samples); ops: {', '.join(ops)}")
    return 0


def _pin_calibration_threads(threads: int) -> None:
    """Make the calibrator's private InferenceSession use `threads` threads.

    quantize_static builds that session from a bare `onnxruntime.SessionOptions()` (all cores) and
    offers no knob, so the calibrate module is handed an onnxruntime whose SessionOptions come
    pre-pinned. MinMax ranges do not depend on it; the 2 shared cores do.
    """
    import types

    import onnxruntime as ort
    from onnxruntime.quantization import calibrate

    if getattr(calibrate, "onnxruntime", None) is not ort:
        return  # layout changed in a newer onnxruntime: calibration then runs with its default threads

    class PinnedOrt(types.ModuleType):
        def __getattr__(self, name):
            return getattr(ort, name)

        @staticmethod
        def SessionOptions():  # noqa: N802 - mirrors onnxruntime's name
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = threads
            return so

    calibrate.onnxruntime = PinnedOrt("onnxruntime")


if __name__ == "__main__":
    sys.exit(main())
