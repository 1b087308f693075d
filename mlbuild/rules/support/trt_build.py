"""Build a TensorRT engine (.plan) from an ONNX model, through the TensorRT Python API or else trtexec, plus a sidecar.

Mirrors CM's generate-nvidia-engine: batch size -> an optimization profile whose opt/max batch is N,
precision -> builder flags, workspace -> the WORKSPACE memory pool limit (CM passes bytes,
default 4194304; here it is given in MiB). An engine only runs on the TensorRT version and GPU
it was built for, so the sidecar records both.

Exit codes: 0 built; 1 the build failed; 2 bad arguments or inputs; 3 neither the `tensorrt`
Python package nor a trtexec binary is available.
"""

import os
import sys
import argparse
import hashlib
import json
import re
import shutil
import subprocess

EXIT_BUILD_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_NO_TENSORRT = 3


class BuildError(Exception):
    """A failure with the exit code it maps to."""

    def __init__(self, message: str, code: int = EXIT_BUILD_FAILED):
        super().__init__(message)
        self.code = code


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def parse_trt_version(text: str) -> str | None:
    """TensorRT version from trtexec output: `TensorRT version: 10.3.0`, else the banner `[TensorRT v100300]`.

    The banner packs the version as MMmmpp from TensorRT 10 on (100300 = 10.3.0) and as Mmpp before
    (8601 = 8.6.1).
    """
    match = re.search(r"TensorRT version:\s*(\d+(?:\.\d+)+)", text)
    if match:
        return match.group(1)
    match = re.search(r"\[TensorRT v(\d+)\]", text)
    if not match:
        return None
    n = int(match.group(1))
    if n >= 100000:
        return f"{n // 10000}.{(n // 100) % 100}.{n % 100}"
    return f"{n // 1000}.{(n // 100) % 10}.{n % 100}"


def gpu_info() -> list[dict] | None:
    """Name, driver and compute capability of each GPU per nvidia-smi; None when nvidia-smi is absent or fails."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    for fields in ("name,driver_version,compute_cap", "name,driver_version"):
        try:
            out = subprocess.run([smi, f"--query-gpu={fields}", "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if out.returncode == 0:
            keys = fields.split(",")
            rows = [[v.strip() for v in line.split(",")] for line in out.stdout.splitlines() if line.strip()]
            return [dict(zip(keys, row, strict=False)) for row in rows]
    return None


def model_input(path: str, name: str | None, dims: str | None) -> tuple[str, list[int], bool]:
    """(input name, non-batch dims, has Q/DQ nodes) from the flags, else from the ONNX model itself."""
    parsed_dims = None
    if dims:
        try:
            parsed_dims = [int(d) for d in dims.lower().split("x")]
        except ValueError:
            raise BuildError(f"--input-dims must look like 1x8x8, got {dims!r}", EXIT_BAD_INPUT) from None
    try:
        import onnx
    except ImportError:
        if name and parsed_dims:
            return name, parsed_dims, False
        raise BuildError("the onnx package is not importable: pass --input-name and --input-dims",
                         EXIT_BAD_INPUT) from None
    model = onnx.load(path, load_external_data=False)
    initializers = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if name is None:
        if len(inputs) != 1:
            raise BuildError(f"{path} has {len(inputs)} inputs: pass --input-name", EXIT_BAD_INPUT)
        name = inputs[0].name
    if parsed_dims is None:
        match = [i for i in inputs if i.name == name]
        if not match:
            raise BuildError(f"{path} has no input named {name!r}", EXIT_BAD_INPUT)
        shape = match[0].type.tensor_type.shape.dim[1:]
        if not all(d.HasField("dim_value") for d in shape):
            raise BuildError(f"input {name!r} of {path} has dynamic non-batch dims: pass --input-dims",
                             EXIT_BAD_INPUT)
        parsed_dims = [d.dim_value for d in shape]
    qdq = any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in model.graph.node)
    return name, parsed_dims, qdq


def _shape(batch: int, dims: list[int]) -> str:
    return "x".join(str(d) for d in [batch, *dims])


def trtexec_command(trtexec: str, args, name: str, dims: list[int]) -> list[str]:
    """The trtexec argv for this build (TensorRT >= 8.6 for --memPoolSize and --skipInference)."""
    cmd = [trtexec, f"--onnx={args.model}", f"--saveEngine={args.out}",
           f"--memPoolSize=workspace:{args.workspace_mib}M"]
    if args.precision == "fp16":
        cmd.append("--fp16")
    elif args.precision == "int8":
        cmd.append("--int8")
    cmd += [f"--minShapes={name}:{_shape(1, dims)}",
            f"--optShapes={name}:{_shape(args.batch_size, dims)}",
            f"--maxShapes={name}:{_shape(args.batch_size, dims)}",
            "--skipInference"]  # a build action builds; benchmarking is the harness's job
    return cmd


def build_with_trtexec(trtexec: str, args, name: str, dims: list[int]) -> dict:
    cmd = trtexec_command(trtexec, args, name, dims)
    print("trt_build: running " + " ".join(cmd), flush=True)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:
        raise BuildError(f"cannot run trtexec {trtexec}: {e}") from e
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        tail = "\n".join(output.splitlines()[-25:])
        raise BuildError(f"trtexec exited {proc.returncode}:\n{tail}")
    if not os.path.isfile(args.out):
        raise BuildError(f"trtexec exited 0 but wrote no engine at {args.out}")
    return {"builder": "trtexec", "trtexec": trtexec, "command": cmd[1:], "tensorrt_version": parse_trt_version(output)}


class _NpzCalibrator:
    """An IInt8EntropyCalibrator2 over calib.npz `x`, staging batches in device memory (torch or cuda-python)."""

    @staticmethod
    def create(trt, calib_path: str, batch_size: int):
        import numpy as np

        with np.load(calib_path) as data:
            x = np.ascontiguousarray(data["x"], dtype=np.float32)
        batches = [np.ascontiguousarray(x[i:i + batch_size]) for i in range(0, len(x) - batch_size + 1, batch_size)]
        if not batches:
            raise BuildError(f"{calib_path} holds {len(x)} samples, fewer than one batch of {batch_size}",
                             EXIT_BAD_INPUT)
        upload = _device_uploader(batches[0].nbytes)

        class Calibrator(trt.IInt8EntropyCalibrator2):
            def __init__(self):
                super().__init__()
                self._next = 0

            def get_batch_size(self):
                return batch_size

            def get_batch(self, names):
                if self._next >= len(batches):
                    return None
                batch = batches[self._next]
                self._next += 1
                return [upload(batch)]

            def read_calibration_cache(self):
                return None

            def write_calibration_cache(self, cache):
                pass

        return Calibrator()


def _device_uploader(nbytes: int):
    """A function copying a host array into one reused device buffer and returning its address."""
    try:
        import torch

        if torch.cuda.is_available():
            buf = torch.empty(nbytes, dtype=torch.uint8, device="cuda")

            def upload_torch(array):
                buf.copy_(torch.from_numpy(array.view("uint8").reshape(-1)))
                torch.cuda.synchronize()
                return int(buf.data_ptr())

            return upload_torch
    except ImportError:
        pass
    try:
        from cuda import cudart  # cuda-python
    except ImportError:
        raise BuildError("int8 calibration needs device memory: install torch (CUDA) or cuda-python",
                         EXIT_NO_TENSORRT) from None
    err, ptr = cudart.cudaMalloc(nbytes)
    if int(err) != 0:
        raise BuildError(f"cudaMalloc({nbytes}) failed: {err}")

    def upload_cudart(array):
        (err,) = cudart.cudaMemcpy(ptr, array.ctypes.data, array.nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice)
        if int(err) != 0:
            raise BuildError(f"cudaMemcpy failed: {err}")
        return int(ptr)

    return upload_cudart


def build_with_api(trt, args, name: str, dims: list[int], qdq: bool) -> dict:
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt, "NetworkDefinitionCreationFlag") and hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)  # TensorRT 8; the only mode in 10
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(os.path.abspath(args.model)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BuildError(f"TensorRT could not parse {args.model}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, args.workspace_mib << 20)
    if args.precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    profile.set_shape(name, [1, *dims], [args.batch_size, *dims], [args.batch_size, *dims])
    config.add_optimization_profile(profile)
    int8_mode = None
    if args.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        if qdq:
            int8_mode = "explicit (Q/DQ scales in the model)"
        elif args.calib:
            config.int8_calibrator = _NpzCalibrator.create(trt, args.calib, args.batch_size)
            config.set_calibration_profile(profile)
            int8_mode = f"calibrated (entropy2 over {os.path.basename(args.calib)})"
        else:
            raise BuildError("--precision int8 on a model without Q/DQ nodes needs --calib", EXIT_BAD_INPUT)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BuildError("TensorRT builder returned no engine (see the log above)")
    with open(args.out, "wb") as f:
        f.write(serialized)
    return {"builder": "tensorrt-python", "tensorrt_version": trt.__version__, "int8_mode": int8_mode}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="input ONNX model")
    parser.add_argument("--out", required=True, help="output serialized engine (.plan)")
    parser.add_argument("--sidecar", required=True, help="output JSON: TensorRT version, GPU, build settings")
    parser.add_argument("--precision", choices=("fp32", "fp16", "int8"), required=True)
    parser.add_argument("--batch-size", type=int, required=True, help="max (and opt) batch of the profile")
    parser.add_argument("--workspace-mib", type=int, required=True, help="WORKSPACE memory pool limit in MiB")
    parser.add_argument("--calib", help="calibration npz (x) for int8 on a model without Q/DQ nodes")
    parser.add_argument("--trtexec", help="trtexec binary (default: trtexec on PATH) when `tensorrt` won't import")
    parser.add_argument("--input-name", help="network input (default: the model's only input)")
    parser.add_argument("--input-dims", help="non-batch input dims like 1x8x8 (default: from the model)")
    args = parser.parse_args(argv)

    try:
        if args.batch_size < 1 or args.workspace_mib < 1:
            raise BuildError("--batch-size and --workspace-mib must be >= 1", EXIT_BAD_INPUT)
        for path in [args.model] + ([args.calib] if args.calib else []):
            if not os.path.isfile(path):
                raise BuildError(f"input not found: {path}", EXIT_BAD_INPUT)
        try:
            import tensorrt as trt
        except ImportError:
            trt = None
        trtexec = None
        if trt is None:
            trtexec = args.trtexec or shutil.which("trtexec")
            if args.trtexec and not (os.path.isfile(args.trtexec) and os.access(args.trtexec, os.X_OK)):
                raise BuildError(f"--trtexec {args.trtexec} is not an executable file", EXIT_NO_TENSORRT)
            if not trtexec:
                raise BuildError("TensorRT is not available: the `tensorrt` Python package does not import and no "
                                 "trtexec was given (--trtexec) or found on PATH", EXIT_NO_TENSORRT)
        name, dims, qdq = model_input(args.model, args.input_name, args.input_dims)
        for path in (args.out, args.sidecar):
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        if trt is not None:
            info = build_with_api(trt, args, name, dims, qdq)
        else:
            info = build_with_trtexec(trtexec, args, name, dims)
            if args.precision == "int8":
                info["int8_mode"] = ("explicit (Q/DQ scales in the model)" if qdq else
                                     "uncalibrated: trtexec without a calibration cache uses placeholder scales, "
                                     "fit for timing only")
    except BuildError as e:
        print(f"trt_build: error: {e}", file=sys.stderr)
        return e.code

    sidecar = {
        "kind": "tensorrt-engine",
        **info,
        "precision": args.precision,
        "batch_size": args.batch_size,
        "workspace_mib": args.workspace_mib,
        "workspace_bytes": args.workspace_mib << 20,
        "input": {"name": name, "min": [1, *dims], "opt": [args.batch_size, *dims], "max": [args.batch_size, *dims]},
        "gpus": gpu_info(),
        "model_sha256": _sha256(args.model),
        "engine_sha256": _sha256(args.out),
    }
    sidecar["gpu"] = sidecar["gpus"][0]["name"] if sidecar["gpus"] else None
    with open(args.sidecar, "w") as f:
        json.dump(sidecar, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"trt_build: {args.model} -> {args.out} via {info['builder']} (TensorRT {info['tensorrt_version']}, "
          f"{args.precision}, batch {args.batch_size}, workspace {args.workspace_mib} MiB, GPU {sidecar['gpu']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
