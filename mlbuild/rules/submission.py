"""`submission`: an MLPerf inference submission tree from benches and their compliance tests.

    digits:
      rule: submission
      submitter: mlbuild-example
      division: open
      system: cpu-2core            # the system description id
      system_name: ...             # plus status, category and the fields mlbuild cannot detect
      benchmark: digits
      results: {Offline: "//bench:digits_offline", ...}
      compliance: ["//bench:digits_offline_TEST01", ...]

One action lays out `submission/` (support/submission_tree.py: the official layout, the system
description from the measured machine and toolchains plus the user's fields, measurements.json,
READMEs, accuracy logs truncated with their hash kept), packs `submission.tar.gz` reproducibly,
and checks the tree (support/submission_check.py, also `mlbuild submission check DIR`); an
error fails the build. What can be known before running is checked here, with file:line: a
`test`-style bench in the closed division, a missing system field or measurement, a compliance
test of a bench not in the submission.
"""

from __future__ import annotations

import json
from dataclasses import replace

from ..errors import BuildFileError
from ..loading.labels import Label
from .base import Attr, ConfiguredTarget, RuleContext
from .command import CommandRule
from .engine import support_script

DIVISIONS = ("closed", "open")
STATUSES = ("available", "preview", "rdi")
CATEGORIES = ("edge", "datacenter", "datacenter,edge")
# System fields the tree script fills from the measured machine and the engine's toolchain.
DETECTED_FIELDS = frozenset({
    "division", "submitter", "status", "system_name", "system_type", "number_of_nodes", "host_processor_model_name",
    "host_processors_per_node", "host_processor_core_count", "host_memory_capacity", "accelerators_per_node",
    "accelerator_model_name", "accelerator_memory_capacity", "accelerator_host_interconnect",
    "accelerator_memory_configuration", "accelerator_interconnect", "framework", "operating_system",
    "other_software_stack",
})
# The rest of what the official checker requires in systems/<system>.json: the user declares them.
DECLARED_FIELDS = (
    "host_storage_capacity", "host_storage_type", "host_processor_frequency", "host_processor_caches",
    "host_memory_configuration", "host_processor_interconnect", "host_networking", "host_networking_topology",
    "accelerator_frequency", "accelerator_interconnect_topology", "accelerator_on-chip_memories", "cooling",
    "hw_notes", "sw_notes", "host_network_card_count", "system_type_detail",
)
MEASUREMENT_FIELDS = ("input_data_types", "retraining", "starting_weights_filename", "weight_data_types",
                      "weight_transformations")


class SubmissionRule(CommandRule):
    name = "submission"
    version = 1
    attrs = {
        "submitter": Attr("str", required=True),
        "division": Attr("str", "open", doc="closed or open"),
        "status": Attr("str", "available", doc=", ".join(STATUSES)),
        "category": Attr("str", "edge", doc="system_type: " + ", ".join(CATEGORIES)),
        "system": Attr("str", required=True, doc="system description id (systems/<system>.json)"),
        "system_name": Attr("str", required=True),
        "system_fields": Attr("dict", {}, doc="system description fields mlbuild cannot detect: "
                                              + ", ".join(DECLARED_FIELDS)),
        "benchmark": Attr("str", required=True, doc="benchmark directory name (resnet, ...)"),
        "results": Attr("dict", required=True, doc="scenario -> bench label (also in deps)"),
        "compliance": Attr("list", [], doc="compliance test labels of those benches (also in deps)"),
        "measurements": Attr("dict", {}, doc="measurements.json fields: " + ", ".join(MEASUREMENT_FIELDS)),
        "model_mapping": Attr("dict", {}, doc="open division: your model name -> the official benchmark"),
    }

    def analyze(self, ctx: RuleContext) -> ConfiguredTarget:
        attrs = ctx.attrs
        for attr, allowed in (("division", DIVISIONS), ("status", STATUSES), ("category", CATEGORIES)):
            if attrs[attr] not in allowed:
                raise BuildFileError(f"{attr} '{attrs[attr]}' is not one of {', '.join(allowed)}", ctx.where(attr))
        missing = [f for f in DECLARED_FIELDS if f not in (attrs["system_fields"] or {})]
        if missing:
            raise BuildFileError(f"{ctx.label}: missing system field(s) {', '.join(missing)}",
                                 ctx.where("system_fields"), "declare them under system_fields (MLPerf's checker "
                                 "requires every field of systems/<system>.json)")
        missing = [f for f in MEASUREMENT_FIELDS if not (attrs["measurements"] or {}).get(f)]
        if missing:
            raise BuildFileError(f"{ctx.label}: missing measurements field(s) {', '.join(missing)}",
                                 ctx.where("measurements"))
        results, benches = {}, {}
        for scenario, text in attrs["results"].items():
            node, bench, bench_dir = self._dep(ctx, "results", text, "bench")
            if bench.info["scenario"] != scenario:
                raise BuildFileError(f"results: {bench.label} runs {bench.info['scenario']}, listed as {scenario}",
                                     ctx.where("results"))
            if sorted(bench.info["modes"]) != ["accuracy", "performance"]:
                raise BuildFileError(f"results: {bench.label} must run both performance and accuracy modes",
                                     ctx.where("results"))
            if attrs["division"] == "closed" and bench.info["run_style"] != "valid":
                raise BuildFileError(
                    f"{bench.label} runs in run style '{bench.info['run_style']}', which is not valid for submission: "
                    "the closed division refuses it", ctx.where("division"), "build with --config=run_style=valid")
            benches[str(node)] = scenario
            results[scenario] = {"bench": str(node), "bench_dir": bench_dir, "compliance": {},
                                 "accuracy_target": round(100 * (bench.info["accuracy_threshold"] or 0), 4)}
        for text in attrs["compliance"]:
            _node, test, test_dir = self._dep(ctx, "compliance", text, "compliance")
            scenario = benches.get(test.info["bench"])
            if scenario is None:
                raise BuildFileError(f"compliance: {test.label} tests {test.info['bench']}, which is not in results",
                                     ctx.where("compliance"))
            name = test.info["compliance_test"]
            results[scenario]["compliance"][name] = f"{test_dir}/{name}"
        spec = {
            "label": str(ctx.label), "division": attrs["division"], "submitter": attrs["submitter"],
            "status": attrs["status"], "category": attrs["category"], "system_id": attrs["system"],
            "system_name": attrs["system_name"], "system": dict(attrs["system_fields"]),
            "benchmark": attrs["benchmark"], "results": results, "measurements": dict(attrs["measurements"]),
            "model_mapping": dict(attrs["model_mapping"] or {}),
        }
        first = ctx.deps[Label.parse(next(iter(results.values()))["bench"])]
        python = first.info["harness_argv"][0]
        scripts = [support_script(name) for name in ("submission_tree.py", "submission_check.py", "mlperf_logs.py")]
        out = ctx.outdir
        argv = (python, scripts[0][0], "--spec", json.dumps(spec, sort_keys=True), "--out", f"{out}/submission",
                "--tarball", f"{out}/submission.tar.gz")
        action = replace(  # run by the benches' interpreter: their toolchain is this action's
            self.action(ctx, argv, [f"{out}/submission.tar.gz"], [f"{out}/submission"], mnemonic="Submission",
                        sources=scripts),
            env=first.action.env, toolchains=first.action.toolchains, toolchain_roots=first.action.toolchain_roots)
        return ConfiguredTarget(
            label=ctx.label, rule=self.name, deps=tuple(ctx.deps), action=action,
            outputs=("submission.tar.gz",), output_dirs=("submission",), groups_read=frozenset(ctx.groups_read),
            primary_output="submission.tar.gz",
        )

    @staticmethod
    def _dep(ctx: RuleContext, attr: str, text: str, rule: str):
        """(node, configured target, sandbox dir) of a dependency that must be a `rule` target."""
        node, target, directory = ctx.dep(str(text), attr)
        if target.rule != rule:
            raise BuildFileError(f"{attr}: {text} is not a {rule} target in deps of {ctx.label}", ctx.where(attr),
                                 "add it to deps")
        return node, target, directory
