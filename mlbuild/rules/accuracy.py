"""`accuracy_checker`: how a benchmark's task is scored, declared once and used by its benches.

MLPerf scores each task with its own script over LoadGen's mlperf_log_accuracy.json and the
dataset's ground truth, and the submission checker reads the line that script prints
(`accuracy=XX.XXX%, good=N, total=N` for ImageNet). A checker target names that script (the
built-in ImageNet top-1, or the user's own taking the same flags) and the ground truth; a bench
that lists it in `accuracy_checker` runs it on its accuracy-mode log and writes
`accuracy/accuracy.txt`, and the bench's verdict reads the number from that file.

    digits_top1:
      rule: accuracy_checker
      ground_truth: "//digits:preprocess val.npz"
      deps: ["//digits:preprocess"]

A checker has no action of its own: it is run inside each bench that uses it, by the bench's
toolchain, so its script, ground truth and flags are part of that bench's key.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import BuildFileError
from .base import Attr, ConfiguredTarget, Rule, RuleContext
from .engine import dep_file, support_script

METHODS = {"imagenet_top1": "accuracy_imagenet.py"}


@dataclass(frozen=True)
class AccuracyChecker:
    """What a bench needs to run a checker: argv after the interpreter, minus --log and --out."""

    argv: tuple[str, ...]
    sources: tuple[tuple[str, str], ...]
    deps: tuple[tuple[str, str], ...]  # (graph node, sandbox dir) of what it reads, e.g. ground truth


class AccuracyCheckerRule(Rule):
    name = "accuracy_checker"
    executes = False
    attrs = {
        "method": Attr("str", "imagenet_top1", doc="built-in scoring: " + ", ".join(METHODS)),
        "script": Attr("str", doc="your own checker instead (a file in the package), taking the same flags"),
        "ground_truth": Attr("str", required=True, doc="'LABEL FILE': npz with y, or val_map.txt (also in deps)"),
        "label_offset": Attr("int", 0, doc="predicted class minus this is the label (1 with a background class)"),
        "dtype": Attr("str", "int64", doc="the response's data type in mlperf_log_accuracy.json"),
    }

    def analyze(self, ctx: RuleContext) -> ConfiguredTarget:
        attrs = ctx.attrs
        if attrs["script"]:
            ctx.attrs = {**attrs, "srcs": [attrs["script"]]}
            sources = ctx.sources()
            script = sources[0][0]
        elif attrs["method"] in METHODS:
            sources = [support_script(METHODS[attrs["method"]])]
            script = sources[0][0]
        else:
            raise BuildFileError(f"unknown accuracy method '{attrs['method']}'", ctx.where("method"),
                                 f"methods: {', '.join(METHODS)}, or give 'script'")
        ground_truth = dep_file(ctx, "ground_truth")
        checker = AccuracyChecker(
            argv=(script, "--ground-truth", ground_truth, "--label-offset", str(attrs["label_offset"]),
                  "--dtype", attrs["dtype"]),
            sources=tuple(sources), deps=tuple(ctx.staged_deps()),
        )
        return ConfiguredTarget(label=ctx.label, rule=self.name, deps=tuple(ctx.deps), action=None,
                                groups_read=frozenset(ctx.groups_read), info={"accuracy_checker": checker})
