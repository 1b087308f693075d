"""`compliance`: an MLPerf compliance test (TEST01, TEST04) derived from a bench, run as a test.

    digits_offline_TEST01:
      rule: compliance
      bench: ":digits_offline"
      test: TEST01
      deps: [":digits_offline"]

The action writes the test's audit.config, runs the bench's own harness command in performance
mode with it and the bench's user.conf (so only the audit changes), then verifies the run
against the bench's results by the documented criteria (support/compliance.py), leaving
`<TEST>/` laid out as the submission checker expects. In run style `test` the performance
criterion is reported, not enforced (short runs on a shared machine measure the neighbours). A failed criterion fails the test; a pass
is cached like any test result. Its key covers the bench's results, so a new bench run re-runs
its compliance tests.
"""

from __future__ import annotations

import shlex

from ..actions import Action, Resources
from ..errors import BuildFileError
from ..loading.labels import Label
from .base import Attr, ConfiguredTarget, Rule, RuleContext
from .engine import support_script

TESTS = {"TEST01": ("performance", "accuracy"), "TEST04": ("performance",)}  # test -> bench modes it needs


class ComplianceRule(Rule):
    name = "compliance"
    version = 1
    attrs = {
        "bench": Attr("str", required=True, doc="label of the bench target (also in deps)"),
        "test": Attr("str", required=True, doc="TEST01 or TEST04"),
        "tolerance": Attr("float", doc="performance tolerance instead of MLPerf's 10 %/20 % (closed division refuses it)"),
        "sampling_target": Attr("int", doc="TEST01 accuracy_log_sampling_target (default: MLPerf's for the model)"),
    }

    def analyze(self, ctx: RuleContext) -> ConfiguredTarget:
        test = ctx.attrs["test"]
        if test not in TESTS:
            raise BuildFileError(f"unknown compliance test '{test}'", ctx.where("test"),
                                 f"tests: {', '.join(TESTS)} (TEST05 was retired in 2024)")
        label, bench, results = ctx.dep(ctx.attrs["bench"], "bench")
        if bench.rule != "bench":
            raise BuildFileError(f"'bench' names {label}, which is not a bench target in deps of {ctx.label}",
                                 ctx.where("bench"), "add the bench to deps")
        missing = [mode for mode in TESTS[test] if mode not in bench.info["modes"]]
        if missing:
            raise BuildFileError(f"{test} needs the {' and '.join(missing)} run(s) of {label}, whose modes are "
                                 f"{bench.info['modes']}", ctx.where("bench"))
        harness_argv = bench.info["harness_argv"]
        python = harness_argv[0]
        compliance, logs = support_script("compliance.py"), support_script("mlperf_logs.py")
        out = ctx.outdir
        script = "\n".join(["set -e", shlex.join([
            python, compliance[0], "audit-config", "--test", test, "--model-name", bench.info["model_name"],
            "--out", f"{out}/audit.config", *_flag("--sampling-target", ctx.attrs["sampling_target"])]), shlex.join([
            *harness_argv, "--mode", "performance", "--out-dir", f"{out}/run", "--result", f"{out}/run/result.json",
            "--user-conf-from", f"{results}/performance/user.conf", "--audit-config", f"{out}/audit.config"]),
            shlex.join([python, compliance[0], "verify", "--test", test, "--results", results, "--run", f"{out}/run",
                        "--out", f"{out}/{test}", "--run-style", bench.info["run_style"],
                        *_flag("--tolerance", ctx.attrs["tolerance"])])])
        staged = [(str(label), results), *((d, bench.action.dep_dir(d)) for d in bench.action.deps)]
        action = Action(
            label=str(ctx.label), mnemonic="Compliance", implementation=self.implementation,
            argv=("/bin/bash", "-c", script), env=bench.action.env,
            sources=tuple(dict.fromkeys([*bench.action.sources, compliance, logs])),
            **ctx.action_deps(staged), outputs=(f"{out}/audit.config",), output_dirs=(f"{out}/{test}",),
            toolchains=bench.action.toolchains, toolchain_roots=bench.action.toolchain_roots,
            resources=Resources(cpus=bench.action.resources.cpus, exclusive=True),
            timeout_s=ctx.attrs.get("timeout"), tags=tuple(ctx.attrs["tags"]),
        )
        return ConfiguredTarget(
            label=ctx.label, rule=self.name, deps=tuple(dict.fromkeys(Label.parse(d) for d, _ in staged)), action=action,
            outputs=("audit.config",), output_dirs=(test,), is_test=True, groups_read=frozenset(ctx.groups_read),
            info={"compliance_test": test, "bench": str(label), "scenario": bench.info["scenario"]},
        )


def _flag(name: str, value) -> list[str]:
    return [] if value is None else [name, str(value)]
