"""`python`: run a script with a Python-framework toolchain (a pinned virtual environment).

    train:
      rule: python
      toolchain: py_digits
      main: train_sklearn.py
      args: ["--train", "{{dep::prep train.npz}}", "--out", "{{out}}"]
      deps: [":prep"]
      outs: [model.onnx]

BLAS/OpenMP/onnxruntime thread counts are pinned to `resources.cpus` (default 1) through the
env, so they are part of the key: on shared cores oversubscription changes results, not just
speed.
"""

from __future__ import annotations

import os

from .base import Attr, ConfiguredTarget, RuleContext
from .command import CommandRule


class PythonRule(CommandRule):
    name = "python"
    version = 1
    attrs = {
        "toolchain": Attr("str", required=True, doc="a python or python_venv toolchain"),
        "main": Attr("str", required=True, doc="the script, a path in the package"),
        "args": Attr("list", []),
        "srcs": Attr("labels", []),
        "outs": Attr("paths", []),
        "out_dirs": Attr("paths", []),
        "run": Attr("str"),
        "test": Attr("bool", False),
        "data_dir": Attr("str"),
    }

    def analyze(self, ctx: RuleContext) -> ConfiguredTarget:
        attrs = dict(ctx.attrs)
        attrs["srcs"] = [attrs["main"], *[s for s in attrs["srcs"] if s != attrs["main"]]]
        ctx.attrs = attrs
        package_dir, relative = ctx.source_location(attrs["main"], "main")
        main = ctx.workspace.relative(os.path.join(package_dir, relative))
        attrs["argv"] = [f"{{{{toolchain:{attrs['toolchain']}.python}}}}", main, *map(str, attrs["args"])]
        attrs["cmd"] = None
        return super().analyze(ctx)
