"""`bench`: a test-like action that runs an engine under the real MLPerf LoadGen and judges it.

One action runs the harness once per mode (performance, accuracy) into `<mode>/` with
LoadGen's standard logs; the bench executor then reads `mlperf_log_summary.txt` and the
harness's result.json and passes the target only if LoadGen says VALID, accuracy reaches
`accuracy_reference * accuracy_ratio` (MLPerf's 99 % of the fp32 reference) or
`min_accuracy`, and the optional performance floors hold. Passing results are cached like
Bazel caches test results; failures never are.

Calibration is not left to the user: without `target_qps`/`target_latency_ms` the harness
measures the engine for a short warm-up and sets LoadGen's expected QPS/latency from that.
"""

from __future__ import annotations

import shlex

from ..actions import Action, Resources
from ..errors import BuildFileError
from .base import Attr, ConfiguredTarget, RuleContext
from .command import CommandRule
from .engine import dep_file, support_script

SCENARIOS = ("Offline", "SingleStream", "MultiStream", "Server")
MODES = ("performance", "accuracy")
_SETTINGS = {
    "min_duration_ms": "--min-duration-ms", "max_duration_ms": "--max-duration-ms",
    "min_query_count": "--min-query-count", "target_qps": "--target-qps",
    "samples_per_query": "--samples-per-query", "performance_sample_count": "--performance-sample-count",
    "calibration_seconds": "--calibration-seconds", "raw_seconds": "--raw-seconds",
}


class BenchRule(CommandRule):
    name = "bench"
    version = 1
    attrs = {
        "engine": Attr("str", required=True, doc="'LABEL' of an engine target (also in deps)"),
        "dataset": Attr("str", required=True, doc="'LABEL FILE' of an npz with x and y (also in deps)"),
        "toolchain": Attr("str", required=True, doc="python toolchain with mlperf_loadgen and the runtime"),
        "scenario": Attr("str", "{{config:scenario}}"),
        "modes": Attr("list", list(MODES)),
        "batch_size": Attr("str", "1"),
        "accuracy_reference": Attr("float", doc="fp32 reference accuracy (0..1)"),
        "accuracy_ratio": Attr("float", 0.99, doc="required share of the reference (MLPerf: 0.99)"),
        "min_accuracy": Attr("float"),
        "min_qps": Attr("float"),
        "max_latency_p99_ms": Attr("float"),
        "target_latency_ms": Attr("float", doc="SingleStream/MultiStream expected latency (else measured)"),
        "server_target_latency_ms": Attr("float"),
        "settings": Attr("dict", {}, doc="LoadGen settings: " + ", ".join(_SETTINGS)),
        "label_offset": Attr("int", 0, doc="predicted class minus this is the label (1 for a background class)"),
    }

    def analyze(self, ctx: RuleContext) -> ConfiguredTarget:
        attrs = ctx.attrs
        scenario = ctx.expand(str(attrs["scenario"]), "scenario")
        if scenario not in SCENARIOS:
            raise BuildFileError(f"unknown LoadGen scenario '{scenario}'", ctx.where("scenario"),
                                 f"scenarios: {', '.join(SCENARIOS)}")
        modes = list(attrs["modes"])
        for mode in modes:
            if mode not in MODES:
                raise BuildFileError(f"unknown bench mode '{mode}'", ctx.where("modes"), f"modes: {', '.join(MODES)}")
        engine, dataset = dep_file(ctx, "engine"), dep_file(ctx, "dataset")
        harness = support_script("loadgen_harness.py")
        python = ctx.expand(f"{{{{toolchain:{attrs['toolchain']}.python}}}}", "toolchain")
        threads = str(max(1, int(ctx.resources().cpus)))
        common = [python, harness[0], "--engine", engine, "--dataset", dataset, "--scenario", scenario,
                  "--batch-size", ctx.expand(str(attrs["batch_size"]), "batch_size"), "--threads", threads]
        for key, value in (attrs["settings"] or {}).items():
            if key not in _SETTINGS:
                raise BuildFileError(f"unknown LoadGen setting '{key}'", ctx.where("settings"),
                                     f"settings: {', '.join(_SETTINGS)}")
            common += [_SETTINGS[key], ctx.expand(str(value), "settings")]
        if attrs["label_offset"]:
            common += ["--label-offset", str(attrs["label_offset"])]
        if attrs["target_latency_ms"] is not None:
            common += ["--target-latency-ns", str(int(attrs["target_latency_ms"] * 1e6))]
        if attrs["server_target_latency_ms"] is not None:
            common += ["--server-target-latency-ns", str(int(attrs["server_target_latency_ms"] * 1e6))]
        outdir = ctx.outdir
        runs = {mode: [*common, "--mode", mode, "--out-dir", f"{outdir}/{mode}", "--result", f"{outdir}/{mode}/result.json"]
                for mode in modes}
        script = "set -e\n" + "\n".join(shlex.join(argv) for argv in runs.values())
        threshold = attrs["min_accuracy"]
        if threshold is None and attrs["accuracy_reference"] is not None:
            threshold = attrs["accuracy_reference"] * attrs["accuracy_ratio"]
        judge = {
            "modes": modes, "accuracy_threshold": threshold, "min_qps": attrs["min_qps"],
            "max_latency_p99_ns": attrs["max_latency_p99_ms"] * 1e6 if attrs["max_latency_p99_ms"] else None,
        }
        resources = ctx.resources()
        if not attrs["resources"]:  # a benchmark measures the machine: alone on it unless told otherwise
            resources = Resources(cpus=resources.cpus, exclusive=True)
        action = self.action(
            ctx, ("/bin/bash", "-c", script), [], [f"{outdir}/{mode}" for mode in modes], mnemonic="Bench",
            sources=[*ctx.sources(), harness], executor="bench", resources=resources,
            params=tuple(sorted((k, v) for k, v in judge.items())),
        )
        foreground_mode = "performance" if "performance" in modes else modes[0]
        run_action = Action(
            label=str(ctx.label), mnemonic="Bench", implementation=self.implementation,
            argv=tuple(ctx.abstract(a) for a in (*common, "--mode", foreground_mode, "--out-dir", ".",
                                                 "--result", "result.json")),
            env=action.env, sources=action.sources, deps=action.deps, toolchains=action.toolchains,
            toolchain_roots=action.toolchain_roots,
            tags=("no-cache",),
        )
        return ConfiguredTarget(
            label=ctx.label, rule=self.name, deps=tuple(ctx.deps), action=action,
            output_dirs=tuple(modes), run_action=run_action, is_test=True,
            groups_read=frozenset(ctx.groups_read), info={"scenario": scenario},
        )
