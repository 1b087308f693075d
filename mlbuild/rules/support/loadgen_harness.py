"""Run an inference engine under the real MLPerf LoadGen and record what the harness itself measured.

LoadGen writes its own verdict and numbers (mlperf_log_summary.txt, mlperf_log_detail.txt,
mlperf_log_accuracy.json) into --out-dir; mlbuild parses those (mlbuild/benchresults.py). This
script adds to --result only what LoadGen cannot know: the calibration it measured before the run,
the raw engine throughput after it (Offline performance), and top-1 accuracy computed from
mlperf_log_accuracy.json (accuracy mode).

Control flow: parse args -> load dataset (npz keys x: NCHW float32, y: int64) and engine ->
calibrate (a short timed run of the real model, unless targets are given) -> TestSettings ->
StartTestWithLogSettings with a SUT (see `Sut` for where each scenario's work happens) ->
accuracy / raw throughput -> result.json.

Exit codes: 0 the run finished (even when LoadGen calls it INVALID: the judge is mlbuild);
1 the run failed; 2 bad arguments or inputs; 3 a TensorRT engine without a usable TensorRT.
"""

import os
import sys
import argparse
import collections
import hashlib
import json
import threading
import time

import numpy as np

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_NO_TENSORRT = 3

SCENARIOS = ("Offline", "SingleStream", "MultiStream", "Server")
MODES = ("performance", "accuracy")

# Calibration margins. LoadGen sizes a performance run from these expectations: Offline issues
# expected_qps x min_duration samples in one query, so an expectation below the real rate ends the
# run before min_duration (INVALID); SingleStream/MultiStream pre-generate min_duration / expected
# latency queries and stop once min_duration and min_query_count are met, so an expectation above the
# real latency runs out of queries early (INVALID), one below it costs only memory. Server is judged
# on its p99 latency against server_target_latency_ns, so it gets half the measured capacity and a
# generous default bound: on 2 shared cores, stalls of other processes (~150 ms seen), not the model,
# set the tail of a short run. That default makes a smoke test VALID; it is not an MLPerf latency
# constraint, which a real benchmark passes with --server-target-latency-ns.
OFFLINE_QPS_FACTOR = 1.5
LATENCY_FACTOR = 0.5
SERVER_QPS_FACTOR = 0.5
SERVER_MIN_TARGET_LATENCY_NS = 500_000_000  # 500 ms
SERVER_LATENCY_MULTIPLE = 50  # ... or 50 x the measured one-sample latency, whichever is larger


class HarnessError(Exception):
    """A failure with the exit code it maps to."""

    def __init__(self, message: str, code: int = EXIT_FAILED):
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------------------------------------
# Engines: a callable from a float32 NCHW batch to class scores, plus what to record about it.


class OrtEngine:
    """An ONNX model (plain or onnxruntime-optimized) on onnxruntime's CPU provider."""

    def __init__(self, path: str, threads: int):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = threads
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime raises several unrelated types
            raise HarnessError(f"onnxruntime cannot load {path}: {e}", EXIT_BAD_INPUT) from e
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [self.session.get_outputs()[0].name]
        self.max_batch = None
        self.info = {"backend": "onnxruntime", "onnxruntime_version": ort.__version__,
                     "providers": self.session.get_providers()}

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(self.output_names, {self.input_name: batch})[0]


class TrtEngine:
    """A serialized TensorRT engine (.plan), with device buffers from torch (CUDA)."""

    def __init__(self, path: str):
        with open(path, "rb") as f:
            blob = f.read()
        if blob[:1] == b"{" and b'"test_double"' in blob[:4096]:
            raise HarnessError(f"{path} was written by the trtexec TEST DOUBLE, not TensorRT: it cannot run",
                               EXIT_BAD_INPUT)
        try:
            import tensorrt as trt
        except ImportError:
            raise HarnessError(f"{path} is a TensorRT engine but the `tensorrt` Python package does not import",
                               EXIT_NO_TENSORRT) from None
        try:
            import torch
        except ImportError:
            raise HarnessError("running a TensorRT engine needs torch with CUDA for device buffers",
                               EXIT_NO_TENSORRT) from None
        if not torch.cuda.is_available():
            raise HarnessError("running a TensorRT engine needs a CUDA device; torch sees none", EXIT_NO_TENSORRT)
        self._torch = torch
        logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(logger).deserialize_cuda_engine(blob)
        if self.engine is None:
            raise HarnessError(f"TensorRT {trt.__version__} cannot deserialize {path} (built by another version "
                               "or for another GPU?)", EXIT_BAD_INPUT)
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or not outputs:
            raise HarnessError(f"{path}: expected one input and an output, got {inputs} / {outputs}", EXIT_BAD_INPUT)
        self.input_name, self.output_name = inputs[0], outputs[0]
        self.max_batch = int(self.engine.get_tensor_profile_shape(self.input_name, 0)[2][0])
        self.stream = torch.cuda.Stream()
        self.info = {"backend": "tensorrt", "tensorrt_version": trt.__version__,
                     "gpu": torch.cuda.get_device_name(0), "max_batch": self.max_batch}

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.cuda.stream(self.stream):
            x = torch.from_numpy(batch).to("cuda", non_blocking=False)
            self.context.set_input_shape(self.input_name, tuple(batch.shape))
            out = torch.empty(tuple(self.context.get_tensor_shape(self.output_name)), dtype=torch.float32,
                              device="cuda")
            self.context.set_tensor_address(self.input_name, x.data_ptr())
            self.context.set_tensor_address(self.output_name, out.data_ptr())
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed")
            result = out.cpu().numpy()
        return result


def load_engine(path: str, threads: int):
    if not os.path.isfile(path):
        raise HarnessError(f"engine not found: {path}", EXIT_BAD_INPUT)
    if path.endswith((".plan", ".engine", ".trt")):
        return TrtEngine(path)
    return OrtEngine(path, threads)


def load_dataset(path: str) -> tuple[np.ndarray, np.ndarray]:
    if not os.path.isfile(path):
        raise HarnessError(f"dataset not found: {path}", EXIT_BAD_INPUT)
    try:
        with np.load(path) as data:
            missing = {"x", "y"} - set(data.files)
            if missing:
                raise HarnessError(f"{path} lacks key(s) {sorted(missing)} (has {data.files}); expected x (N,C,H,W) "
                                   "float32 and y (N,) int64 as written by preprocess.py", EXIT_BAD_INPUT)
            x = np.ascontiguousarray(data["x"], dtype=np.float32)
            y = np.asarray(data["y"], dtype=np.int64)
    except (OSError, ValueError) as e:
        raise HarnessError(f"cannot read {path} as npz: {e}", EXIT_BAD_INPUT) from e
    if len(x) == 0 or len(x) != len(y):
        raise HarnessError(f"{path}: x has {len(x)} samples and y {len(y)}", EXIT_BAD_INPUT)
    return x, y


# ---------------------------------------------------------------------------------------------
# Calibration: a short timed run of the real engine, so targets never have to be guessed by hand.


def _timed(fn, seconds: float, warmup: int = 3) -> tuple[int, float, list[float]]:
    """Call fn repeatedly for about `seconds` after a few warm-up calls: (calls, elapsed s, per-call s)."""
    for _ in range(warmup):
        fn()
    per_call = []
    start = last = time.perf_counter()
    while last - start < seconds:
        fn()
        now = time.perf_counter()
        per_call.append(now - last)
        last = now
    return len(per_call), last - start, per_call


def calibrate(sut, n: int, scenario: str, samples_per_query: int, seconds: float) -> dict:
    """Time the SUT's own per-query path (engine + response building, minus LoadGen) on the real data.

    What LoadGen will then see is at least this slow, so 1.5x the measured rate is above the real
    Offline rate, and half the measured latency is below the real SingleStream/MultiStream one.
    """
    rng = np.random.default_rng(0)
    out = {"seconds": seconds}
    if scenario in ("Offline", "Server"):
        order = rng.permutation(n)[:max(sut.batch_size, min(n, 4 * sut.batch_size))]  # LoadGen's order is random
        _, _, per_call = _timed(lambda: sut.rehearse(order), seconds / 2)
        out["offline_samples_per_second"] = len(order) / float(np.median(per_call))  # median: robust to stalls
    if scenario in ("SingleStream", "Server"):
        one = np.array([rng.integers(n)], dtype=np.intp)
        _, _, per_call = _timed(lambda: sut.rehearse(one), seconds / 2)
        out["single_sample_latency_ns"] = float(np.median(per_call) * 1e9)
    if scenario == "MultiStream":
        query = rng.permutation(np.arange(samples_per_query) % n)
        _, _, per_call = _timed(lambda: sut.rehearse(query), seconds)
        out["query_latency_ns"] = float(np.median(per_call) * 1e9)
        out["samples_per_query"] = samples_per_query
    return out


def apply_targets(settings, args, calibration: dict) -> dict:
    """Fill the scenario's expectation fields from the flags, else from the calibration; returns them."""
    used = {}
    if args.scenario == "Offline":
        qps = args.target_qps or OFFLINE_QPS_FACTOR * calibration["offline_samples_per_second"]
        settings.offline_expected_qps = float(qps)
        used["offline_expected_qps"] = float(qps)
    elif args.scenario == "SingleStream":
        ns = args.target_latency_ns or LATENCY_FACTOR * calibration["single_sample_latency_ns"]
        settings.single_stream_expected_latency_ns = max(1, int(ns))
        used["single_stream_expected_latency_ns"] = max(1, int(ns))
    elif args.scenario == "MultiStream":
        ns = args.target_latency_ns or LATENCY_FACTOR * calibration["query_latency_ns"]
        settings.multi_stream_expected_latency_ns = max(1, int(ns))
        settings.multi_stream_samples_per_query = args.samples_per_query
        used["multi_stream_expected_latency_ns"] = max(1, int(ns))
        used["multi_stream_samples_per_query"] = args.samples_per_query
    else:  # Server
        if args.target_qps:
            qps = args.target_qps
        else:
            # Queries arrive one sample at a time; the worker batches what has queued up. Half of the
            # slower of the batched rate and the one-sample rate keeps the queue short.
            capacity = min(calibration["offline_samples_per_second"], 1e9 / calibration["single_sample_latency_ns"])
            qps = SERVER_QPS_FACTOR * capacity
        latency = args.server_target_latency_ns or max(
            SERVER_MIN_TARGET_LATENCY_NS, SERVER_LATENCY_MULTIPLE * calibration.get("single_sample_latency_ns", 0))
        settings.server_target_qps = float(qps)
        settings.server_target_latency_ns = int(latency)
        used["server_target_qps"] = float(qps)
        used["server_target_latency_ns"] = int(latency)
    return used


# ---------------------------------------------------------------------------------------------
# The system under test.


class Sut:
    """LoadGen's SUT callbacks over a preloaded contiguous array.

    Registered with ConstructFastSUT: LoadGen hands the callback two int lists (response ids, sample
    indices) instead of one QuerySample object per sample, which measured ~30% more Offline
    samples/s through the Python binding. Each sample answers with its argmax class as 8
    little-endian bytes (int64), which LoadGen copies into mlperf_log_accuracy.json in accuracy
    mode; QuerySamplesComplete gets one list per batch and copies before returning, so a batch's
    prediction array only has to outlive that call.

    Where the work happens, per scenario:
    - Offline, SingleStream, MultiStream: the issue callback runs the query batch by batch and
      completes each batch inline. (A separate completion thread for Offline measured slower: the
      threads trade the GIL instead of overlapping.)
    - Server: the issue callback queues the samples and returns; a worker thread drains up to
      --batch-size queued samples per engine call (dynamic batching) and completes them.
    """

    def __init__(self, engine, x: np.ndarray, batch_size: int):
        import mlperf_loadgen as lg

        self.lg = lg
        self.engine = engine
        self.x = x
        self.batch_size = batch_size if engine.max_batch is None else min(batch_size, engine.max_batch)
        self.error: Exception | None = None
        self.completed = 0
        self._worker: threading.Thread | None = None
        self._pending: collections.deque = collections.deque()  # Server: (id, index) awaiting the worker
        self._wakeup = threading.Condition()
        self._stop = False

    # -- the engine, and answering LoadGen ------------------------------------------------------

    def _predict(self, indices: np.ndarray):
        """Argmax classes for these sample indices, or None after recording the engine's exception."""
        try:
            if len(indices) == 1:
                batch = self.x[indices[0]:indices[0] + 1]
            elif indices[-1] - indices[0] == len(indices) - 1 and np.all(np.diff(indices) == 1):
                batch = self.x[indices[0]:indices[-1] + 1]  # a contiguous run: a view, no gather
            else:
                batch = self.x[indices]
            return np.ascontiguousarray(classes(self.engine(batch)), dtype=np.int64)
        except Exception as e:  # noqa: BLE001 - reported after the run; LoadGen must not hang
            if self.error is None:
                self.error = e
            return None

    def _complete(self, ids: list, predictions) -> None:
        lg = self.lg
        if predictions is None:  # the engine failed: answer empty so LoadGen can finish, then exit non-zero
            lg.QuerySamplesComplete([lg.QuerySampleResponse(q, 0, 0) for q in ids])
        else:
            base = predictions.ctypes.data
            lg.QuerySamplesComplete([lg.QuerySampleResponse(q, base + 8 * k, 8) for k, q in enumerate(ids)])
        self.completed += len(ids)

    def rehearse(self, indices: np.ndarray) -> None:
        """Everything one query costs the SUT except telling LoadGen: the calibration's yardstick."""
        ids = list(range(len(indices)))
        for i in range(0, len(indices), self.batch_size):
            predictions = self._predict(indices[i:i + self.batch_size])
            if predictions is None:
                raise HarnessError(f"the engine failed during calibration: {self.error!r}") from self.error
            base = predictions.ctypes.data
            responses = [self.lg.QuerySampleResponse(q, base + 8 * k, 8)
                         for k, q in enumerate(ids[i:i + self.batch_size])]
            del responses  # built only to be timed

    # -- issue callbacks (FastSUT: ids and indices as two lists) ---------------------------------

    def issue_inline(self, ids: list, indices: list) -> None:
        idx = np.asarray(indices, dtype=np.intp)
        bs = self.batch_size
        for i in range(0, len(ids), bs):
            self._complete(ids[i:i + bs], self._predict(idx[i:i + bs]))

    def issue_queued(self, ids: list, indices: list) -> None:
        with self._wakeup:
            self._pending.extend(zip(ids, indices, strict=True))
            self._wakeup.notify()

    @staticmethod
    def flush() -> None:
        pass

    # -- Server ---------------------------------------------------------------------------------

    def _server_worker(self) -> None:
        bs = self.batch_size
        while True:
            with self._wakeup:
                while not self._pending and not self._stop:
                    self._wakeup.wait()
                if not self._pending:
                    return
                take = [self._pending.popleft() for _ in range(min(bs, len(self._pending)))]
            ids = [q for q, _ in take]
            self._complete(ids, self._predict(np.fromiter((i for _, i in take), dtype=np.intp, count=len(take))))

    def callback(self, scenario: str):
        """The issue callback for a scenario; Server's also starts its worker thread."""
        if scenario != "Server":
            return self.issue_inline
        self._worker = threading.Thread(target=self._server_worker, name="sut-server-worker", daemon=True)
        self._worker.start()
        return self.issue_queued

    def stop(self) -> None:
        if self._worker is not None:
            with self._wakeup:
                self._stop = True
                self._wakeup.notify()
            self._worker.join()


# ---------------------------------------------------------------------------------------------
# After the run.


def classes(output: np.ndarray) -> np.ndarray:
    """Predicted classes: the argmax of scores [N, C], or the output itself when the model
    already ends in an ArgMax (MLPerf's ResNet-50 answers ArgMax:0, int64 [N])."""
    return output if output.ndim == 1 else np.argmax(output, axis=1)


def accuracy_from_log(path: str, labels: np.ndarray, label_offset: int = 0) -> tuple[float, int]:
    """Top-1 accuracy from mlperf_log_accuracy.json: each entry's data is the hex of an int64 class;
    class - label_offset is compared with the label (1 for models with a background class 0)."""
    try:
        with open(path) as f:
            entries = json.load(f)
    except (OSError, ValueError) as e:
        raise HarnessError(f"cannot read LoadGen's accuracy log {path}: {e}") from e
    predicted = {}
    for entry in entries:
        raw = bytes.fromhex(entry["data"])
        if len(raw) != 8:
            raise HarnessError(f"{path}: sample {entry.get('qsl_idx')} answered {len(raw)} bytes, expected 8 "
                               "(the SUT failed on it?)")
        predicted[int(entry["qsl_idx"])] = int.from_bytes(raw, "little", signed=True)
    if not predicted:
        raise HarnessError(f"{path} holds no samples")
    correct = sum(1 for idx, cls in predicted.items() if cls - label_offset == labels[idx])
    return correct / len(predicted), len(predicted)


def raw_throughput(engine, x: np.ndarray, batch_size: int, seconds: float) -> dict:
    """The engine alone, over the same data at the same batch size: passes over x in contiguous batches."""

    def one_pass():
        for i in range(0, len(x), batch_size):
            engine(x[i:i + batch_size])

    cpu = time.process_time()
    calls, elapsed, _ = _timed(one_pass, seconds, warmup=1)
    cpu = time.process_time() - cpu
    return {"samples_per_second": calls * len(x) / elapsed, "samples": calls * len(x), "seconds": elapsed,
            "cpu_seconds": cpu}


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _loadgen_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("mlcommons-loadgen")
    except Exception:  # noqa: BLE001 - metadata may be missing in a vendored build
        return None


def run(args) -> dict:
    import mlperf_loadgen as lg

    x, y = load_dataset(args.dataset)
    engine = load_engine(args.engine, args.threads)
    os.makedirs(args.out_dir, exist_ok=True)
    n = len(x)
    perf_count = min(args.performance_sample_count or n, n)

    settings = lg.TestSettings()
    settings.scenario = getattr(lg.TestScenario, args.scenario)
    settings.mode = lg.TestMode.PerformanceOnly if args.mode == "performance" else lg.TestMode.AccuracyOnly
    if args.min_duration_ms is not None:
        settings.min_duration_ms = args.min_duration_ms
    if args.min_query_count is not None:
        settings.min_query_count = args.min_query_count
    if args.max_duration_ms is not None:
        settings.max_duration_ms = args.max_duration_ms

    sut = Sut(engine, x, args.batch_size)
    given = {"Offline": args.target_qps, "SingleStream": args.target_latency_ns,
             "MultiStream": args.target_latency_ns,
             "Server": args.target_qps and args.server_target_latency_ns}[args.scenario]
    if given:
        calibration = {"source": "given"}
    elif args.mode == "accuracy" and args.scenario != "Server":
        # Accuracy runs issue every sample once, back to back (Offline: one query): no schedule to size.
        calibration = {"source": "none (accuracy mode)", "settings": {}}
    else:
        calibration = {"source": "measured",
                       **calibrate(sut, n, args.scenario, args.samples_per_query, args.calibration_seconds)}
    if "settings" not in calibration:
        calibration["settings"] = apply_targets(settings, args, calibration)

    log_settings = lg.LogSettings()
    log_settings.log_output.outdir = os.path.abspath(args.out_dir)
    log_settings.log_output.copy_summary_to_stdout = False
    log_settings.enable_trace = False

    sut_handle = lg.ConstructFastSUT(sut.callback(args.scenario), sut.flush)
    qsl_handle = lg.ConstructQSL(n, perf_count, lambda indices: None, lambda indices: None)  # preloaded
    # LoadGen reads audit.config from the working directory when present; only an explicit one may
    # change this run (compliance tests), never a stray file.
    audit = args.audit_config or os.path.join(os.path.abspath(args.out_dir), ".no-audit.config")
    started, started_cpu = time.perf_counter(), time.process_time()
    try:
        lg.StartTestWithLogSettings(sut_handle, qsl_handle, settings, log_settings, audit)
    finally:
        wall = time.perf_counter() - started
        cpu = time.process_time() - started_cpu
        sut.stop()
        lg.DestroyQSL(qsl_handle)
        lg.DestroyFastSUT(sut_handle)
    if sut.error is not None:
        raise HarnessError(f"the engine failed during the run: {sut.error!r}") from sut.error

    result = {
        "scenario": args.scenario,
        "mode": args.mode,
        "engine": {"path": args.engine, "sha256": _sha256(args.engine), **engine.info},
        "dataset": {"path": args.dataset, "samples": n, "performance_sample_count": perf_count},
        "batch_size": sut.batch_size,
        "threads": args.threads,
        "loadgen_version": _loadgen_version(),
        "loadgen_wall_seconds": wall,
        # CPU time of the whole process (LoadGen's threads included) during the run: with raw.cpu_seconds
        # it gives a per-CPU-second overhead that other load on a shared machine does not skew.
        "loadgen_cpu_seconds": cpu,
        "samples_completed": sut.completed,
        "calibration": calibration,
        "logs": {"summary": "mlperf_log_summary.txt", "detail": "mlperf_log_detail.txt",
                 "accuracy": "mlperf_log_accuracy.json"},
    }
    if args.mode == "accuracy":
        accuracy, samples = accuracy_from_log(os.path.join(args.out_dir, "mlperf_log_accuracy.json"), y,
                                              args.label_offset)
        result["accuracy"] = accuracy
        result["samples"] = samples
    elif args.scenario == "Offline":
        raw = raw_throughput(engine, x, sut.batch_size, args.raw_seconds)
        result["raw_samples_per_second"] = raw["samples_per_second"]
        result["raw"] = raw
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", required=True, help=".onnx (onnxruntime CPU) or .plan (TensorRT) engine")
    parser.add_argument("--dataset", required=True, help="npz with x (N,C,H,W) float32 and y (N,) int64")
    parser.add_argument("--scenario", choices=SCENARIOS, required=True)
    parser.add_argument("--mode", choices=MODES, default="performance")
    parser.add_argument("--out-dir", required=True, help="LoadGen's log directory (mlperf_log_*.txt/json)")
    parser.add_argument("--result", required=True, help="output JSON with the harness's own measurements")
    parser.add_argument("--batch-size", type=int, default=1, help="max samples per engine call (default 1)")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime/BLAS threads (default 1)")
    parser.add_argument("--min-duration-ms", type=int, help="LoadGen min_duration_ms (default: LoadGen's)")
    parser.add_argument("--max-duration-ms", type=int, help="LoadGen max_duration_ms (default: LoadGen's)")
    parser.add_argument("--min-query-count", type=int, help="LoadGen min_query_count (default: LoadGen's)")
    parser.add_argument("--target-qps", type=float,
                        help="Offline offline_expected_qps / Server server_target_qps (default: calibrated)")
    parser.add_argument("--target-latency-ns", type=int,
                        help="SingleStream/MultiStream expected latency (default: calibrated)")
    parser.add_argument("--server-target-latency-ns", type=int,
                        help=f"Server server_target_latency_ns (default: max({SERVER_MIN_TARGET_LATENCY_NS}, "
                             f"{SERVER_LATENCY_MULTIPLE} x one-sample latency))")
    parser.add_argument("--samples-per-query", type=int, default=8, help="MultiStream samples per query (default 8)")
    parser.add_argument("--performance-sample-count", type=int,
                        help="samples LoadGen may use in performance mode (default: all)")
    parser.add_argument("--calibration-seconds", type=float, default=0.5,
                        help="length of the calibration run (default 0.5)")
    parser.add_argument("--raw-seconds", type=float, default=0.5,
                        help="length of the raw engine throughput run after Offline performance (default 0.5)")
    parser.add_argument("--label-offset", type=int, default=0,
                        help="predicted class minus this is the label (1 for MLPerf ResNet-50's background class)")
    parser.add_argument("--audit-config", help="LoadGen audit.config for compliance tests (default: none)")
    args = parser.parse_args(argv)

    try:
        if args.batch_size < 1 or args.threads < 1 or args.samples_per_query < 1:
            raise HarnessError("--batch-size, --threads and --samples-per-query must be >= 1", EXIT_BAD_INPUT)
        result = run(args)
    except HarnessError as e:
        print(f"loadgen_harness: error: {e}", file=sys.stderr)
        return e.code
    os.makedirs(os.path.dirname(os.path.abspath(args.result)), exist_ok=True)
    with open(args.result, "w") as f:
        json.dump(result, f, indent=2, sort_keys=True)
        f.write("\n")
    measured = " ".join([result["calibration"]["source"]] +
                        [f"{k}={v:.4g}" for k, v in result["calibration"]["settings"].items()])
    extra = (f", accuracy {result['accuracy']:.4f} on {result['samples']}" if "accuracy" in result else
             f", raw engine {result['raw_samples_per_second']:.4g} samples/s" if "raw_samples_per_second" in result
             else "")
    print(f"loadgen_harness: {args.scenario} {args.mode} on {args.engine}: {result['samples_completed']} samples in "
          f"{result['loadgen_wall_seconds']:.2f} s (calibration: {measured}){extra}; "
          f"logs in {args.out_dir}, result {args.result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
