"""`training`: a test-like MLPerf training run, judged by time-to-train as MLPerf judges it.

    digits:
      rule: training
      toolchain: py_training
      srcs: [train_digits.py]
      deps: ["//digits:preprocess"]
      cmd: "{{toolchain:py_training.python}} {{src:train_digits.py}} ... --log {{out:mlperf_log.txt}}"
      target_accuracy: 0.95
      compliance_ruleset: "3.0.0"      # real MLPerf benchmarks only: run the official checker

The command trains and writes an MLPerf training log (`mlperf_logging.mllog`) to `log`. The
training executor then reads its `:::MLLOG` lines (mlbuild/training_log.py): the run passes
when it stopped with status success at or above `target_accuracy`, and `mlbuild test`
reports its time-to-train (run_start → run_stop). With `compliance_ruleset`, the action also
runs the `mlperf-logging` compliance checker on the log (with `compliance_python`, inside the
same container when there is one) and a rejected log fails the run. Passing runs are cached
like passing tests; failures never are.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import replace
from pathlib import Path

from ..errors import ActionError
from ..execution.executors import Execution, ExecutorContext, run_subprocess
from ..execution.sandbox import Sandbox
from ..training_log import judge_training, parse_training_log
from .base import Attr, ConfiguredTarget, RuleContext, check_relative_path
from .command import CommandRule

COMPLIANCE_LOG, COMPLIANCE_STATUS = "compliance.log", "compliance.status"


def execute_training(ctx: ExecutorContext, sandbox: Sandbox, logs: Path) -> Execution:
    """Run the training command, then judge its MLPerf log: the report (time-to-train, epochs,
    accuracy, status, compliance) and why it failed if it did. A command that exited non-zero
    but left a log is judged too, so the report says how far it got."""
    action = sandbox.action
    params = dict(action.params)
    log = sandbox.root / params["log"]
    start = time.monotonic()
    try:
        execution, crashed = run_subprocess(sandbox, ctx.processes, logs), None
    except ActionError as exc:
        if not log.is_file() or exc.message.endswith(": cancelled"):
            raise
        execution, crashed = Execution(1, time.monotonic() - start, logs / "stdout", logs / "stderr"), exc
    if not log.is_file():
        raise ActionError(f"{action.label}: the training command wrote no MLPerf log at {params['log']}",
                          hint="write it with mlperf_logging.mllog (mllog.config(filename=...))")
    run = parse_training_log(log.read_text(errors="replace"))
    report = {"time_to_train_s": run.time_to_train_s, "accuracy": run.accuracy, "epochs": run.epochs,
              "run_status": run.status}
    reasons = judge_training(run, params["target_accuracy"]).reasons
    ruleset = params["compliance_ruleset"]
    if ruleset:
        passed = (log.parent / COMPLIANCE_STATUS).read_text().strip() == "0"
        report["compliance"] = "PASSED" if passed else "FAILED"
        if not passed:
            checker_log = (log.parent / COMPLIANCE_LOG).read_text(errors="replace").splitlines()
            # The checker's complaints: a failed CHECK (and its test), a key required but absent.
            errors = [line.strip() for line in checker_log
                      if line.startswith(("WARNING -", "Required ", "failed test:"))][:6] or checker_log[-5:]
            reasons.append(f"the MLPerf compliance checker (training {ruleset}) rejected the log: "
                           + " | ".join(errors))
    if crashed is not None:  # its message: the exit status and the tail of stderr
        reasons.insert(0, crashed.message.removeprefix(f"{action.label}: "))
    failure = f"{action.label}: training run failed: " + "; ".join(reasons) if reasons else None
    return replace(execution, report=report, failure=failure)


class TrainingRule(CommandRule):
    name = "training"
    version = 1
    executors = {"training": execute_training}
    attrs = {
        **CommandRule.attrs,
        "log": Attr("str", "mlperf_log.txt", doc="the MLPerf training log the command writes (an output)"),
        "target_accuracy": Attr("float", required=True, doc="eval_accuracy the run must reach"),
        "compliance_ruleset": Attr("str", doc="mlperf-logging ruleset (e.g. 3.0.0): run the official checker"),
        "compliance_python": Attr("str", "python3", doc="interpreter with mlperf-logging, for the checker"),
        "toolchain": Attr("str", doc="a python toolchain the command uses (also for {{toolchain:NAME}})"),
        "results_dir": Attr("str", doc="a directory of results the command writes under {{outdir}} (an output)"),
    }

    def analyze(self, ctx: RuleContext) -> ConfiguredTarget:
        """A command target whose command is wrapped to run the checker, judged by the training executor."""
        attrs = dict(ctx.attrs)
        if attrs["argv"] is not None and attrs["cmd"] is None:
            attrs["cmd"], attrs["argv"] = shlex.join(map(str, attrs["argv"])), None
        log = ctx.expand(str(attrs["log"]), "log")
        check_relative_path(log, f"log '{log}'", ctx.where("log"))
        ruleset = ctx.expand(str(attrs["compliance_ruleset"]), "compliance_ruleset") if attrs["compliance_ruleset"] else None
        attrs["outs"] = [*attrs["outs"], *([log] if log not in attrs["outs"] else []),
                         *([COMPLIANCE_LOG, COMPLIANCE_STATUS] if ruleset else [])]
        if attrs["results_dir"]:
            results = ctx.expand(str(attrs["results_dir"]), "results_dir")
            check_relative_path(results, f"results_dir '{results}'", ctx.where("results_dir"))
            attrs["out_dirs"] = [*attrs["out_dirs"], results]
        log_path = f"{ctx.outdir}/{log}"
        if attrs["cmd"] is not None:
            lines = ["(", attrs["cmd"], ")", "status=$?"]
            if ruleset:
                lines.append(f"{attrs['compliance_python']} -m mlperf_logging.compliance_checker --usage training "
                             f"--ruleset {shlex.quote(ruleset)} --log_output {ctx.outdir}/{COMPLIANCE_LOG} "
                             f"{shlex.quote(log_path)} > /dev/null; echo $? > {ctx.outdir}/{COMPLIANCE_STATUS}")
            attrs["cmd"] = "\n".join([*lines, "exit $status"])
        attrs["test"] = True
        ctx.attrs = attrs
        target = super().analyze(ctx)
        action = target.action
        if action.executor == "subprocess":  # not "unavailable" (a data_dir not given yet)
            params = {"log": log_path, "target_accuracy": float(attrs["target_accuracy"]),
                      "compliance_ruleset": ruleset}
            action = replace(action, mnemonic="Train", executor="training", params=tuple(sorted(params.items())))
        return replace(target, rule=self.name, action=action)
