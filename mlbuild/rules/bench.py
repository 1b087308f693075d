"""`bench`: a test-like action that runs an engine under the real MLPerf LoadGen and judges it.

Settings are MLPerf's: LoadGen's built-in mlperf.conf for `model_name` and the scenario, plus one
user.conf the harness writes (calibrated targets, the keys declared in `user_conf`, and in run
style `test` the lowered durations of a short run, labeled not valid for submission; run style
`valid` lowers nothing). One action runs the harness once per mode (performance, then accuracy
with the same user.conf) into `<mode>/` with LoadGen's standard logs, user.conf and
settings.json, then the `accuracy_checker` target's script on the accuracy log into
`accuracy/accuracy.txt`. The verdict passes the target only if LoadGen says VALID, the accuracy
in accuracy.txt reaches `accuracy_reference * accuracy_ratio` (MLPerf's 99 % of the fp32
reference) or `min_accuracy`, and the optional performance floors hold. Passing results are
cached like Bazel caches test results; failures never are.

Calibration is not left to the user: without a declared `target_qps`/`target_latency` the harness
measures the engine for a short warm-up and writes LoadGen's expected QPS/latency from that.
"""

from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path

from ..actions import Action, Resources, output_dir
from ..errors import BuildFileError, did_you_mean
from ..execution.executors import Execution, ExecutorContext, run_subprocess
from ..execution.sandbox import Sandbox
from ..loading.labels import Label
from ..loading.schema import TEXT, ListOf
from .base import Attr, ConfiguredTarget, RuleContext
from .command import CommandRule
from .engine import dep_file, support_script

SCENARIOS = ("Offline", "SingleStream", "MultiStream", "Server")
MODES = ("performance", "accuracy")
RUN_STYLES = ("test", "valid")
# The keys LoadGen reads from a user.conf (test_settings_internal.cc), for `model.scenario.KEY = value`.
USER_CONF_KEYS = frozenset({
    "target_qps", "target_latency", "target_latency_percentile", "min_duration", "max_duration",
    "min_query_count", "max_query_count", "performance_sample_count_override", "accuracy_sample_count_override",
    "samples_per_query", "coalesce_queries", "max_async_queries", "print_timestamps", "qsl_rng_seed",
    "sample_index_rng_seed", "schedule_rng_seed", "accuracy_log_rng_seed", "accuracy_log_probability",
    "accuracy_log_sampling_target", "performance_issue_unique", "performance_issue_same",
    "performance_issue_same_index", "sample_concatenate_permutation",
})


def harness_command(python: str, harness: str, *, engine: str, dataset: str, scenario: str, batch_size: str,
                    threads: str, model_name: str, run_style: str, user_conf: dict, calibration_seconds: float,
                    raw_seconds: float) -> list[str]:
    """The harness argv every run of a bench shares (its compliance runs too); mode and paths follow."""
    argv = [python, harness, "--engine", engine, "--dataset", dataset, "--scenario", scenario,
            "--batch-size", batch_size, "--threads", threads, "--model-name", model_name, "--run-style", run_style,
            "--calibration-seconds", str(calibration_seconds), "--raw-seconds", str(raw_seconds)]
    for key, value in sorted(user_conf.items()):
        argv += ["--conf", f"{key}={value}"]
    return argv


def execute_bench(ctx: ExecutorContext, sandbox: Sandbox, logs: Path) -> Execution:
    """Run the LoadGen harness, then judge its logs: the report, and why it failed if it did."""
    from ..benchresults import judge, load_bench_result

    execution = run_subprocess(sandbox, ctx.processes, logs)
    params = dict(sandbox.action.params)
    outdir = sandbox.root / output_dir(sandbox.action.label)
    report, reasons = {}, []
    for mode in params["modes"]:
        result = load_bench_result(str(outdir / mode), str(outdir / mode / "result.json"))
        if mode == "performance":
            verdict = judge(result, min_qps=params["min_qps"], max_latency_p99_ns=params["max_latency_p99_ns"])
            latency = result.get("latency_ns") or {}
            report.update({
                "scenario": result.get("scenario"), "valid": result.get("valid"),
                "samples_per_second": result.get("samples_per_second"),
                "latency_p90_ms": latency["p90"] / 1e6 if latency.get("p90") else None,
                "latency_p99_ms": latency["p99"] / 1e6 if latency.get("p99") else None,
                "raw_samples_per_second": result.get("raw_samples_per_second"),
                "harness_overhead": result.get("harness_overhead"),
            })
        else:
            verdict = judge(result, accuracy_threshold=params["accuracy_threshold"])
            report["accuracy"] = result.get("accuracy")
            report.setdefault("scenario", result.get("scenario"))
        reasons += [f"{mode}: {reason}" for reason in verdict.reasons]
    failure = f"{sandbox.action.label}: benchmark failed: " + "; ".join(reasons) if reasons else None
    return replace(execution, report=report, failure=failure)


class BenchRule(CommandRule):
    name = "bench"
    version = 2
    executors = {"bench": execute_bench}
    attrs = {
        "engine": Attr("str", required=True, doc="'LABEL' of an engine target (also in deps)"),
        "dataset": Attr("str", required=True, doc="'LABEL FILE' of an npz with x and y (also in deps)"),
        "toolchain": Attr("str", required=True, doc="python toolchain with mlperf_loadgen and the runtime"),
        "model_name": Attr("str", required=True, doc="MLPerf model name in mlperf.conf (resnet50, ...)"),
        "scenario": Attr("str", "{{config:scenario}}"),
        "run_style": Attr("str", "{{config:run_style}}", doc="test (short, not valid for submission) or valid"),
        "modes": Attr(ListOf(TEXT, min_items=1), list(MODES)),
        "batch_size": Attr("scalar", "1"),
        "accuracy_checker": Attr("str", doc="label of an accuracy_checker target (also in deps)"),
        "accuracy_reference": Attr("float", doc="fp32 reference accuracy (0..1)"),
        "accuracy_ratio": Attr("float", 0.99, doc="required share of the reference (MLPerf: 0.99)"),
        "min_accuracy": Attr("float"),
        "min_qps": Attr("float"),
        "max_latency_p99_ms": Attr("float"),
        "user_conf": Attr("dict", {}, doc="user.conf keys for this model and scenario (target_qps, min_duration, ...)"),
        "calibration_seconds": Attr("float", 0.5),
        "raw_seconds": Attr("float", 0.5, doc="raw engine throughput run after Offline performance"),
        "performance_search": Attr("str", doc="last step of a performance_search: its target QPS/latency is used"),
    }

    def analyze(self, ctx: RuleContext) -> ConfiguredTarget:
        attrs = ctx.attrs
        run_style = self._choice(ctx, "run_style", RUN_STYLES, "run style")
        modes = list(attrs["modes"])
        for mode in modes:
            if mode not in MODES:
                raise BuildFileError(f"unknown bench mode '{mode}'", ctx.where("modes"), f"modes: {', '.join(MODES)}")
        checker = self._checker(ctx) if "accuracy" in modes else None
        python, harness, scenario, common = self.harness(ctx, run_style)
        if attrs["performance_search"]:
            search = Label.parse(attrs["performance_search"], ctx.label.package, ctx.where("performance_search"))
            if search not in ctx.deps or ctx.deps[search].rule != "performance_search":
                raise BuildFileError(f"performance_search {search} is not a performance_search target in deps of "
                                     f"{ctx.label}", ctx.where("performance_search"), "add it to deps")
            common += ["--found-from", f"{ctx.dep_dir(search)}/search.json"]
        outdir = ctx.outdir
        lines = []
        for mode in modes:
            argv = [*common, "--mode", mode, "--out-dir", f"{outdir}/{mode}", "--result", f"{outdir}/{mode}/result.json"]
            if mode == "accuracy" and "performance" in modes:  # MLPerf: both runs under one user.conf
                argv += ["--user-conf-from", f"{outdir}/performance/user.conf"]
            lines.append(shlex.join(argv))
        if checker is not None:
            lines.append(shlex.join([python, *checker.argv, "--log", f"{outdir}/accuracy/mlperf_log_accuracy.json",
                                     "--out", f"{outdir}/accuracy/accuracy.txt"]))
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
        # The checker itself has no outputs: the action reads its script and ground truth instead.
        checker_deps = checker.deps if checker else ()
        deps = tuple(dict.fromkeys([*ctx.deps, *(Label.parse(node) for node, _ in checker_deps)]))
        checkers = {str(node) for node, target in ctx.deps.items() if "accuracy_checker" in target.info}
        action_deps = [(node, directory) for node, directory in ctx.staged_deps()
                       if node not in checkers] + list(checker_deps)
        sources = [*ctx.sources(), harness, support_script("mlperf_logs.py"), *(checker.sources if checker else ())]
        action = self.action(
            ctx, ("/bin/bash", "-c", "set -e\n" + "\n".join(lines)), [], [f"{outdir}/{mode}" for mode in modes],
            mnemonic="Bench", sources=sources, executor="bench", resources=resources,
            params=tuple(sorted((k, v) for k, v in judge.items())), deps=action_deps,
        )
        foreground_mode = "performance" if "performance" in modes else modes[0]
        run_action = Action(
            label=str(ctx.label), mnemonic="Bench", implementation=self.implementation,
            argv=tuple(ctx.abstract(a) for a in (*common, "--mode", foreground_mode, "--out-dir", ".",
                                                 "--result", "result.json")),
            env=action.env, sources=action.sources, deps=action.deps, dep_dirs=action.dep_dirs,
            toolchains=action.toolchains,
            toolchain_roots=action.toolchain_roots,
            tags=("no-cache",), network=True, container=action.container, container_runtime=action.container_runtime,
        )
        return ConfiguredTarget(
            label=ctx.label, rule=self.name, deps=deps, action=action,
            output_dirs=tuple(modes), run_action=run_action, is_test=True,
            groups_read=frozenset(ctx.groups_read),
            info={"scenario": scenario, "run_style": run_style, "modes": modes,
                  "harness_argv": tuple(ctx.abstract(a) for a in common),
                  "model_name": ctx.expand(attrs["model_name"], "model_name"), "accuracy_checker": checker,
                  "accuracy_threshold": threshold},
        )

    def harness(self, ctx: RuleContext, run_style: str) -> tuple:
        """(python, harness script, scenario, argv every run shares) from the harness attributes."""
        attrs = ctx.attrs
        scenario = self._choice(ctx, "scenario", SCENARIOS, "LoadGen scenario")
        user_conf = {}
        for key, value in (attrs["user_conf"] or {}).items():
            if key not in USER_CONF_KEYS:
                raise BuildFileError(f"'{key}' is not a LoadGen user.conf key", ctx.where("user_conf"),
                                     did_you_mean(key, USER_CONF_KEYS) or f"keys: {', '.join(sorted(USER_CONF_KEYS))}")
            user_conf[key] = ctx.expand(str(value), "user_conf")
        engine, dataset = dep_file(ctx, "engine"), dep_file(ctx, "dataset")
        harness = support_script("loadgen_harness.py")
        python = ctx.expand(f"{{{{toolchain:{attrs['toolchain']}.python}}}}", "toolchain")
        common = harness_command(
            python, harness[0], engine=engine, dataset=dataset, scenario=scenario,
            batch_size=ctx.expand(str(attrs["batch_size"]), "batch_size"),
            threads=str(max(1, int(ctx.resources().cpus))), model_name=ctx.expand(attrs["model_name"], "model_name"),
            run_style=run_style, user_conf=user_conf, calibration_seconds=attrs["calibration_seconds"],
            raw_seconds=attrs["raw_seconds"],
        )
        return python, harness, scenario, common

    @staticmethod
    def _choice(ctx: RuleContext, attr: str, allowed: tuple, what: str) -> str:
        value = ctx.expand(str(ctx.attrs[attr]), attr)
        if value not in allowed:
            raise BuildFileError(f"unknown {what} '{value}'", ctx.where(attr), f"{attr}: {', '.join(allowed)}")
        return value

    @staticmethod
    def _checker(ctx: RuleContext):
        text = ctx.attrs["accuracy_checker"]
        if not text:
            raise BuildFileError(f"{ctx.label} runs in accuracy mode but names no accuracy_checker",
                                 ctx.where("modes"), "add accuracy_checker: LABEL of an accuracy_checker target, "
                                 "or set modes: [performance]")
        _node, target, _dir = ctx.dep(text, "accuracy_checker")
        checker = target.info.get("accuracy_checker")
        if checker is None:
            raise BuildFileError(f"accuracy_checker {text} is not an accuracy_checker target in deps of {ctx.label}",
                                 ctx.where("accuracy_checker"), "add it to deps")
        return checker
