"""Run an inference engine under the real MLPerf LoadGen and record what the harness itself measured.

LoadGen writes its own verdict and numbers (mlperf_log_summary.txt, mlperf_log_detail.txt,
mlperf_log_accuracy.json) into --out-dir; mlbuild parses those (mlbuild/benchresults.py), and an
accuracy checker scores mlperf_log_accuracy.json (accuracy_imagenet.py). This script adds to
--result only what LoadGen cannot know: the calibration it measured before the run and the raw
engine throughput after it (Offline performance).

Settings are MLPerf's, never hand-made: LoadGen's built-in mlperf.conf for --model-name and the
scenario, plus exactly one user.conf that this script writes into --out-dir (the calibrated target
QPS or latency, the keys the user declared with --conf, and for --run-style test the lowered
durations that make a short run, labeled NOT VALID FOR SUBMISSION). settings.json beside it holds
the official and the effective settings and every key that makes the result non-submittable.
With --found-from, the targets come from a performance search instead of the calibration; with
--search-out, this run is one probe of that search (see `next_probe`).

Control flow: parse args -> load dataset (npz keys x: NCHW float32, y: int64) and engine -> one
batch of --batch-size through the engine -> official settings -> calibrate (a short timed run of
the real model, unless targets are declared) -> user.conf -> TestSettings.FromConfig ->
StartTestWithLogSettings with a SUT (see `Sut` for where each scenario's work happens) -> raw
throughput -> result.json.

Exit codes: 0 the run finished (even when LoadGen calls it INVALID: the judge is mlbuild);
1 the run failed; 2 bad arguments or inputs; 3 a TensorRT engine without a usable TensorRT.
"""

import os
import sys
import argparse
import collections
import hashlib
import json
import platform
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
# real latency runs out of queries early (INVALID), one below it costs only memory. So Offline expects
# 1.5x the rate of the fastest rehearsal call: LoadGen only adds work to that call, and the median call
# of a short rehearsal on a busy machine was seen at half the real rate (the run then ended before
# min_duration). Server is judged on its p99 latency against server_target_latency_ns, so it gets half
# the median (sustainable) capacity and a generous bound in run style `test`: on 2 shared cores,
# stalls of other processes (~150 ms seen), not the model, set the tail of a short run. That bound
# makes a smoke test VALID; it is not MLPerf's latency constraint, which a `valid` run keeps from
# mlperf.conf.
OFFLINE_QPS_FACTOR = 1.5
LATENCY_FACTOR = 0.5
SERVER_QPS_FACTOR = 0.5
SERVER_MIN_TARGET_LATENCY_NS = 500_000_000  # 500 ms
SERVER_LATENCY_MULTIPLE = 50  # ... or 50 x the measured one-sample latency, whichever is larger
SEARCH_LATENCY_FACTOR = 0.9  # the next expected latency: just below the median the last probe measured


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

    def describe_inputs(self) -> str:
        return ", ".join(f"{i.name} {i.shape} {i.type}" for i in self.session.get_inputs())


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

    def describe_inputs(self) -> str:
        low, _, high = self.engine.get_tensor_profile_shape(self.input_name, 0)
        return f"{self.input_name} from {list(low)} to {list(high)}"


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


def _timed(fn, seconds: float, warmup: int = 3) -> tuple[int, float, list[float], float]:
    """Call fn repeatedly for about `seconds` after a few warm-up calls:
    (calls, elapsed s, per-call s, process CPU s), the warm-up counted in none of them."""
    for _ in range(warmup):
        fn()
    per_call = []
    cpu = time.process_time()
    start = last = time.perf_counter()
    while last - start < seconds:
        fn()
        now = time.perf_counter()
        per_call.append(now - last)
        last = now
    return len(per_call), last - start, per_call, time.process_time() - cpu


def calibrate(sut, n: int, scenario: str, samples_per_query: int, seconds: float) -> dict:
    """Time the SUT's own per-query path (engine + response building, minus LoadGen) on the real data.

    The fastest call bounds what LoadGen will see (it only adds work), so OFFLINE_QPS_FACTOR x its rate
    is above the real Offline rate and half its latency below the real SingleStream/MultiStream one;
    Server sizes its load from the median call, what the SUT sustains.
    """
    rng = np.random.default_rng(0)
    out = {"seconds": seconds}
    if scenario in ("Offline", "Server"):
        order = rng.permutation(n)[:max(sut.batch_size, min(n, 4 * sut.batch_size))]  # LoadGen's order is random
        _, _, per_call, _ = _timed(lambda: sut.rehearse(order), seconds / 2)
        out["best_samples_per_second"] = len(order) / min(per_call)  # Offline: an upper bound of the rate
        out["offline_samples_per_second"] = len(order) / float(np.median(per_call))  # Server: robust to stalls
    if scenario in ("SingleStream", "Server"):
        one = np.array([rng.integers(n)], dtype=np.intp)
        _, _, per_call, _ = _timed(lambda: sut.rehearse(one), seconds / 2)
        out["single_sample_latency_ns"] = float(np.median(per_call) * 1e9)
        out["best_single_sample_latency_ns"] = float(min(per_call) * 1e9)
    if scenario == "MultiStream":
        query = rng.permutation(np.arange(samples_per_query) % n)
        _, _, per_call, _ = _timed(lambda: sut.rehearse(query), seconds)
        out["best_query_latency_ns"] = float(min(per_call) * 1e9)
        out["samples_per_query"] = samples_per_query
    return out


def calibrated_targets(scenario: str, calibration: dict) -> dict:
    """The user.conf target keys for a scenario from the calibration (LoadGen's units: QPS, ms)."""
    if scenario == "Offline":
        return {"target_qps": OFFLINE_QPS_FACTOR * calibration["best_samples_per_second"]}
    if scenario == "SingleStream":
        return {"target_latency": LATENCY_FACTOR * calibration["best_single_sample_latency_ns"] / 1e6}
    if scenario == "MultiStream":
        return {"target_latency": LATENCY_FACTOR * calibration["best_query_latency_ns"] / 1e6}
    # Server: queries arrive one sample at a time; the worker batches what has queued up. Half of
    # the slower of the batched rate and the one-sample rate keeps the queue short.
    capacity = min(calibration["offline_samples_per_second"], 1e9 / calibration["single_sample_latency_ns"])
    return {"target_qps": SERVER_QPS_FACTOR * capacity}


# ---------------------------------------------------------------------------------------------
# Settings: LoadGen's built-in mlperf.conf for the model and scenario, plus one user.conf.

RUN_STYLES = ("test", "valid")
# What a `test` run lowers (unless the user declared the key): a short run, never a submission.
TEST_STYLE_KEYS = {"min_duration": 1000, "min_query_count": 64}
# Settings a submitter must set (what the system achieves), so differing from mlperf.conf is the point.
TARGET_SETTINGS = {"offline_expected_qps", "server_target_qps", "single_stream_expected_latency_ns",
                   "multi_stream_expected_latency_ns", "mode", "scenario"}
SCENARIO_TARGETS = {
    "Offline": ["offline_expected_qps"], "Server": ["server_target_qps", "server_target_latency_ns"],
    "SingleStream": ["single_stream_expected_latency_ns"],
    "MultiStream": ["multi_stream_expected_latency_ns", "multi_stream_samples_per_query"],
}
# Settings a submitter may raise but not lower.
RAISABLE_SETTINGS = {"min_duration_ms", "min_query_count", "performance_sample_count_override"}
_NO_MODEL = "mlbuild-no-such-model"


def settings_dict(settings) -> dict:
    """Every field of a TestSettings, enums as their names."""
    out = {}
    for name in dir(settings):
        if name.startswith("_") or name == "FromConfig":
            continue
        value = getattr(settings, name)
        out[name] = value if isinstance(value, (bool, int, float)) else str(value).rpartition(".")[2]
    return out


def official_settings(lg, model: str, scenario: str) -> tuple[dict, bool]:
    """mlperf.conf's settings for model/scenario, and whether mlperf.conf knows the model at all
    (a model it does not know gets only the wildcard keys: open division)."""
    found = lg.TestSettings()
    found.FromConfig("", model, scenario, 0)  # conf_type 0: the built-in mlperf.conf only
    generic = lg.TestSettings()
    generic.FromConfig("", _NO_MODEL, scenario, 0)
    official, wildcard = settings_dict(found), settings_dict(generic)
    return official, official != wildcard


def write_user_conf(path: str, model: str, scenario: str, style: str, sections: list) -> None:
    """The one user.conf of the run: (title, {key: value}) sections, each key for this model and scenario."""
    lines = [f"# user.conf for {model} {scenario}, run style '{style}', written by mlbuild's LoadGen harness.",
             "# LoadGen loads its built-in mlperf.conf first, then this file (TestSettings.FromConfig)."]
    if style == "test":
        lines.append("# Run style 'test': durations lowered for a short run. NOT VALID FOR SUBMISSION.")
    for title, keys in sections:
        if keys:
            lines += ["", f"# {title}"] + [f"{model}.{scenario}.{key} = {_conf_value(v)}" for key, v in keys.items()]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def _conf_value(value) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.6g}"
    return str(int(value)) if isinstance(value, float) else str(value)


def non_submittable(official: dict, effective: dict) -> list[dict]:
    """The settings that make a result non-submittable: any that differs from mlperf.conf except
    the targets a submitter sets, and the minimums a submitter may raise."""
    found = []
    for key, value in sorted(effective.items()):
        if key in TARGET_SETTINGS or official.get(key) == value:
            continue
        if key in RAISABLE_SETTINGS and isinstance(value, (int, float)) and value >= official[key] and official[key]:
            continue
        found.append({"key": key, "official": official.get(key), "effective": value})
    return found


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


def raw_throughput(engine, x: np.ndarray, batch_size: int, seconds: float) -> dict:
    """The engine alone, over the same data at the same batch size: passes over x in contiguous batches."""

    def one_pass():
        for i in range(0, len(x), batch_size):
            engine(x[i:i + batch_size])

    calls, elapsed, _, cpu = _timed(one_pass, seconds, warmup=1)
    return {"samples_per_second": calls * len(x) / elapsed, "samples": calls * len(x), "seconds": elapsed,
            "cpu_seconds": cpu}


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def host_facts() -> dict:
    """The machine the run measured, for the submission's system description."""
    facts = {"cpu_model": None, "logical_cpus": os.cpu_count(), "memory_gib": None,
             "os": platform.platform(terse=True), "python": platform.python_version()}
    for path, key, field in (("/proc/cpuinfo", "model name", "cpu_model"), ("/proc/meminfo", "MemTotal", "memory_gib")):
        try:
            with open(path) as f:
                line = next((line for line in f if line.startswith(key)), None)
        except OSError:
            continue
        if line is not None:
            value = line.partition(":")[2].strip()
            facts[field] = round(int(value.split()[0]) / 2**20, 1) if field == "memory_gib" else value
    return facts


def _loadgen_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("mlcommons-loadgen")
    except Exception:  # noqa: BLE001 - metadata may be missing in a vendored build
        return None


def check_engine(engine, x: np.ndarray, batch_size: int) -> None:
    """One batch of the run's size through the engine before LoadGen starts, so a shape the model
    cannot take is an error naming it rather than a failure inside the run."""
    batch = x[:batch_size]
    try:
        classes(engine(batch))
    except Exception as e:  # noqa: BLE001 - any engine error is the user's model or data
        raise HarnessError(f"the engine cannot run a batch of shape {list(batch.shape)} from the dataset "
                           f"(model inputs: {engine.describe_inputs()}): {e}", EXIT_BAD_INPUT) from e


def parse_conf(pairs: list) -> dict:
    declared = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        try:
            declared[key.strip()] = float(value) if "." in value or "e" in value.lower() else int(value)
        except ValueError:
            raise HarnessError(f"--conf {pair!r}: expected KEY=NUMBER (a LoadGen user.conf key)", EXIT_BAD_INPUT) from None
        if not sep or not key.strip():
            raise HarnessError(f"--conf {pair!r}: expected KEY=NUMBER", EXIT_BAD_INPUT)
    return declared


def configure(lg, args, sut, n: int) -> tuple:
    """Official settings, calibration and the one user.conf -> (TestSettings, settings record, calibration)."""
    official, known = official_settings(lg, args.model_name, args.scenario)
    if not known:
        print(f"loadgen_harness: warning: model '{args.model_name}' has no entry in LoadGen's mlperf.conf; "
              "only its wildcard settings apply and the result is for the open division only", file=sys.stderr)
    declared = parse_conf(args.conf)
    found = {k: v for k, v in load_found(args.found_from).items() if k not in declared}
    user_conf = os.path.join(args.out_dir, "user.conf")
    if args.user_conf_from:  # the accuracy run reuses the performance run's user.conf, as MLPerf requires
        if os.path.abspath(args.user_conf_from) != os.path.abspath(user_conf):
            with open(args.user_conf_from) as src, open(user_conf, "w") as dst:
                dst.write(src.read())
        calibration = {"source": f"reused {args.user_conf_from}"}
    else:
        needs = {"Offline": ["target_qps"], "Server": ["target_qps"], "SingleStream": ["target_latency"],
                 "MultiStream": ["target_latency"]}[args.scenario]
        given = {**found, **declared}
        if all(key in given for key in needs) and not (args.scenario == "Server" and args.run_style == "test"):
            calibration = {"source": "found by the performance search" if found else "declared"}
        elif args.mode == "accuracy" and args.scenario != "Server":
            # Accuracy runs issue every sample once, back to back (Offline: one query): no schedule to size.
            calibration = {"source": "none (accuracy mode)"}
        else:
            samples_per_query = int(declared.get("samples_per_query", official["multi_stream_samples_per_query"]))
            calibration = {"source": "measured",
                           **calibrate(sut, n, args.scenario, samples_per_query, args.calibration_seconds)}
        targets = {k: v for k, v in calibrated_targets(args.scenario, calibration).items() if k not in given} \
            if calibration["source"] == "measured" else {}
        lowered = {}
        if args.run_style == "test":
            lowered = {k: v for k, v in TEST_STYLE_KEYS.items() if k not in declared}
            if args.scenario == "Server" and "target_latency" not in declared:
                one_sample_ms = calibration.get("single_sample_latency_ns", 0) / 1e6
                lowered["target_latency"] = int(max(SERVER_MIN_TARGET_LATENCY_NS / 1e6,
                                                    SERVER_LATENCY_MULTIPLE * one_sample_ms))
        fitted = {}
        if official["performance_sample_count_override"] > n and "performance_sample_count_override" not in declared:
            fitted["performance_sample_count_override"] = n
        write_user_conf(user_conf, args.model_name, args.scenario, args.run_style, [
            ("Targets (calibrated unless declared)", targets), (f"Found by the performance search ({args.found_from})", found),
            ("Lowered by run style 'test'", lowered),
            (f"Lowered to the dataset's {n} samples (fewer than mlperf.conf's count)", fitted),
            ("Declared in the bench's user_conf", declared)])
    settings = lg.TestSettings()
    status = settings.FromConfig(user_conf, args.model_name, args.scenario)
    if status != 0:
        raise HarnessError(f"LoadGen rejected {user_conf} (FromConfig returned {status}): "
                           "see mlperf_log_detail.txt", EXIT_BAD_INPUT)
    settings.scenario = getattr(lg.TestScenario, args.scenario)
    settings.mode = lg.TestMode.PerformanceOnly if args.mode == "performance" else lg.TestMode.AccuracyOnly
    effective = settings_dict(settings)
    blockers = non_submittable(official, effective)
    if args.run_style == "valid":  # a test run is non-submittable by design: its user.conf says so
        for item in blockers:
            print(f"loadgen_harness: warning: {item['key']} = {item['effective']} (mlperf.conf: {item['official']}) "
                  "makes this result non-submittable", file=sys.stderr)
    record = {
        "model_name": args.model_name, "scenario": args.scenario, "mode": args.mode, "run_style": args.run_style,
        "in_mlperf_conf": known, "division": "closed or open" if known else "open",
        "user_conf": "user.conf", "official": official, "effective": effective, "non_submittable": blockers,
        "valid_for_submission": args.run_style == "valid" and not blockers,
    }
    with open(os.path.join(args.out_dir, "settings.json"), "w") as f:
        json.dump(record, f, indent=2, sort_keys=True)
        f.write("\n")
    calibration["settings"] = {k: effective[k] for k in SCENARIO_TARGETS[args.scenario]}
    return settings, record, calibration


def run(args) -> dict:
    import mlperf_loadgen as lg

    x, y = load_dataset(args.dataset)
    engine = load_engine(args.engine, args.threads)
    os.makedirs(args.out_dir, exist_ok=True)
    n = len(x)
    sut = Sut(engine, x, args.batch_size)
    check_engine(engine, x, sut.batch_size)
    settings, record, calibration = configure(lg, args, sut, n)
    override = record["effective"]["performance_sample_count_override"]
    perf_count = min(override or n, n)

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
        "model_name": args.model_name,
        "run_style": args.run_style,
        "valid_for_submission": record["valid_for_submission"],
        "engine": {"path": args.engine, "sha256": _sha256(args.engine), **engine.info},
        "dataset": {"path": args.dataset, "samples": n, "performance_sample_count": perf_count},
        "batch_size": sut.batch_size,
        "threads": args.threads,
        "loadgen_version": _loadgen_version(),
        "host": host_facts(),
        "loadgen_wall_seconds": wall,
        # CPU time of the whole process (LoadGen's threads included) during the run: with raw.cpu_seconds
        # it gives a per-CPU-second overhead that other load on a shared machine does not skew.
        "loadgen_cpu_seconds": cpu,
        "samples_completed": sut.completed,
        "calibration": calibration,
        "logs": {"summary": "mlperf_log_summary.txt", "detail": "mlperf_log_detail.txt",
                 "accuracy": "mlperf_log_accuracy.json", "user_conf": "user.conf", "settings": "settings.json"},
    }
    if args.mode == "performance" and args.scenario == "Offline":
        raw = raw_throughput(engine, x, sut.batch_size, args.raw_seconds)
        result["raw_samples_per_second"] = raw["samples_per_second"]
        result["raw"] = raw
    return result


def load_found(path: str | None) -> dict:
    """The user.conf targets a performance search found (its search.json's `found`), or none."""
    if not path:
        return {}
    try:
        with open(path) as f:
            found = json.load(f).get("found")
    except (OSError, ValueError) as e:
        raise HarnessError(f"cannot read the performance search result {path}: {e}", EXIT_BAD_INPUT) from e
    if not found:
        raise HarnessError(f"the performance search ({path}) found no VALID setting: see its probes", EXIT_BAD_INPUT)
    return found


# ---------------------------------------------------------------------------------------------
# Performance search: one probe per call, the state carried from step to step in search.json.


def next_probe(state: dict, scenario: str) -> dict:
    """The user.conf target of the next probe: none for the first (the calibration picks it)."""
    probes = state["probes"]
    if not probes:
        return {}
    if scenario == "Server":
        passed = [p["target"] for p in probes if p["valid"]]
        low = max(passed) if passed else None
        failed = [p["target"] for p in probes if not p["valid"] and (low is None or p["target"] > low)]
        high = min(failed) if failed else None
        qps = (low + high) / 2 if low and high else 2 * low if low else high / 2
        return {"target_qps": qps}
    return {"target_latency": SEARCH_LATENCY_FACTOR * probes[-1]["median_latency_ns"] / 1e6}


def record_probe(state: dict, args, result: dict) -> dict:
    """Add the probe just run to the state and say what the search has found so far."""
    from mlperf_logs import read_detail

    values, _ = read_detail(os.path.join(args.out_dir, "mlperf_log_detail.txt"))
    settings = result["calibration"]["settings"]
    target = settings["server_target_qps"] if args.scenario == "Server" else \
        settings[SCENARIO_TARGETS[args.scenario][0]] / 1e6
    state["probes"].append({"target": target, "valid": values.get("result_validity") == "VALID",
                            "median_latency_ns": values.get("result_50.00_percentile_latency_ns")})
    passed = [p["target"] for p in state["probes"] if p["valid"]]
    key = "target_qps" if args.scenario == "Server" else "target_latency"
    if not passed:
        state["found"] = None
    else:  # the highest VALID QPS; the latest VALID expected latency (each refines the one before)
        state["found"] = {key: max(passed) if args.scenario == "Server" else passed[-1]}
    return state


def search_step(args) -> dict:
    state = {"scenario": args.scenario, "probes": []}
    if args.search_from:
        with open(args.search_from) as f:
            state = json.load(f)
    args.conf += [f"{key}={value}" for key, value in next_probe(state, args.scenario).items()]
    result = run(args)
    record_probe(state, args, result)
    with open(args.search_out, "w") as f:
        json.dump(state, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"loadgen_harness: search step {len(state['probes'])}: {state['probes'][-1]}; found {state['found']}")
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
    parser.add_argument("--model-name", required=True,
                        help="MLPerf model name for mlperf.conf (resnet50, ...); another name gets only its wildcards")
    parser.add_argument("--run-style", choices=RUN_STYLES, default="test",
                        help="test: short, lowered durations, not valid for submission; valid: official durations")
    parser.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                        help="a user.conf key for this model and scenario (repeatable), e.g. target_qps=500")
    parser.add_argument("--user-conf-from", metavar="FILE",
                        help="use this user.conf as it is (the accuracy run reuses the performance run's)")
    parser.add_argument("--calibration-seconds", type=float, default=0.5,
                        help="length of the calibration run (default 0.5)")
    parser.add_argument("--raw-seconds", type=float, default=0.5,
                        help="length of the raw engine throughput run after Offline performance (default 0.5)")
    parser.add_argument("--found-from", metavar="SEARCH_JSON",
                        help="use the targets a performance search found (the last step's search.json)")
    parser.add_argument("--search-out", metavar="SEARCH_JSON", help="run one performance search probe, write the state")
    parser.add_argument("--search-from", metavar="SEARCH_JSON", help="the previous search step's state")
    parser.add_argument("--audit-config", help="LoadGen audit.config for compliance tests (default: none)")
    args = parser.parse_args(argv)

    try:
        if args.batch_size < 1 or args.threads < 1:
            raise HarnessError("--batch-size and --threads must be >= 1", EXIT_BAD_INPUT)
        result = search_step(args) if args.search_out else run(args)
    except HarnessError as e:
        print(f"loadgen_harness: error: {e}", file=sys.stderr)
        return e.code
    os.makedirs(os.path.dirname(os.path.abspath(args.result)), exist_ok=True)
    with open(args.result, "w") as f:
        json.dump(result, f, indent=2, sort_keys=True)
        f.write("\n")
    measured = " ".join([result["calibration"]["source"]] +
                        [f"{k}={v:.4g}" for k, v in result["calibration"]["settings"].items()])
    extra = (f", raw engine {result['raw_samples_per_second']:.4g} samples/s" if "raw_samples_per_second" in result
             else "")
    style = "" if result["valid_for_submission"] else ", NOT VALID FOR SUBMISSION (see settings.json)"
    print(f"loadgen_harness: {args.scenario} {args.mode} on {args.engine}: {result['samples_completed']} samples in "
          f"{result['loadgen_wall_seconds']:.2f} s (calibration: {measured}){extra}{style}; "
          f"logs in {args.out_dir}, result {args.result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
