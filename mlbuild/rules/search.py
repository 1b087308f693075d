"""`performance_search`: one step of the search for the performance a benchmark can claim.

MLPerf results are only as good as their targets: a Server run is judged at the target QPS the
submitter sets (too high and its latency bound breaks: INVALID), a SingleStream/MultiStream run
sizes itself from the expected latency. Each step is a target of its own, so each probe is one
cached action; a bounded chain of them (`previous`) refines the result, and a bench names the
last step in `performance_search` to run with what was found.

    digits_server_search_1: {<<: *search, scenario: Server}
    digits_server_search_2: {<<: *search, scenario: Server, previous: ":digits_server_search_1",
                             deps: [..., ":digits_server_search_1"]}

A step takes the bench's harness attributes (engine, dataset, model_name, user_conf, ...) and
runs one short probe (run style `test`, whatever the configuration says: a search of 600 s runs
would take hours). Server: a bisection for the highest VALID target QPS (doubling until a probe
fails, halving until one passes); SingleStream/MultiStream: the expected latency, just under the
previous probe's median (a mean is a hostage to a stall), kept from the last VALID probe. The state travels in search.json.
"""

from __future__ import annotations

from ..errors import BuildFileError
from ..loading.labels import Label
from .base import Attr, ConfiguredTarget, RuleContext
from .bench import BenchRule
from .engine import support_script

_HARNESS_ATTRS = ("engine", "dataset", "toolchain", "model_name", "scenario", "batch_size", "user_conf",
                  "calibration_seconds", "raw_seconds")


class PerformanceSearchRule(BenchRule):
    name = "performance_search"
    version = 1
    attrs = {
        **{name: BenchRule.attrs[name] for name in _HARNESS_ATTRS},
        "previous": Attr("str", doc="the previous step (also in deps); none for the first"),
    }

    def analyze(self, ctx: RuleContext) -> ConfiguredTarget:
        _, harness, scenario, common = self.harness(ctx, "test")
        out = ctx.outdir
        argv = [*common, "--mode", "performance", "--out-dir", f"{out}/probe", "--result", f"{out}/probe/result.json",
                "--search-out", f"{out}/search.json"]
        if ctx.attrs["previous"]:
            previous = Label.parse(ctx.attrs["previous"], ctx.label.package, ctx.where("previous"))
            target = ctx.deps.get(previous)
            if target is None or target.rule != self.name or target.info["scenario"] != scenario:
                raise BuildFileError(f"previous: {previous} is not a {scenario} performance_search step in deps of "
                                     f"{ctx.label}", ctx.where("previous"), "add it to deps")
            argv += ["--search-from", f"{ctx.dep_dir(previous)}/search.json"]
        ctx.outputs = ctx.declare_outputs(["search.json"], "previous")
        action = self.action(ctx, argv, ctx.outputs, [f"{out}/probe"], mnemonic="PerfSearch",
                             sources=[*ctx.sources(), harness, support_script("mlperf_logs.py")])
        return ConfiguredTarget(
            label=ctx.label, rule=self.name, deps=tuple(ctx.deps), action=action, outputs=("search.json",),
            output_dirs=("probe",), groups_read=frozenset(ctx.groups_read),
            info={"scenario": scenario, "primary_output": "search.json"},
        )

