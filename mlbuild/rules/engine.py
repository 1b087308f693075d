"""`engine`: build an inference engine from an ONNX model, for the configured device.

CPU (`backend: onnxruntime`): an onnxruntime-optimized model plus a sidecar JSON naming the
ORT version and CPU features, cached only after one real inference at the declared batch size. The result is hardware-specific, so the host's CPU features
are part of the action key (the ORT version already is, through the toolchain fingerprint).
CUDA (`backend: tensorrt`): a TensorRT engine via the TensorRT Python API or `trtexec`, with
batch size, precision and workspace size from the configuration as in CM's
generate-nvidia-engine; it requires the `cuda` and `tensorrt` toolchains.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import BuildFileError
from ..loading.schema import SCALAR_TEXT, Integer
from ..toolchains.host import cpu_features
from .base import Attr, ConfiguredTarget, RuleContext
from .command import CommandRule

SUPPORT_DIR = Path(__file__).parent / "support"
BACKENDS = ("onnxruntime", "tensorrt")


def support_script(name: str) -> tuple[str, str]:
    """(sandbox path, absolute path) of a script mlbuild ships for its rules' actions."""
    return (f"_mlbuild/{name}", str(SUPPORT_DIR / name))


def dep_file(ctx: RuleContext, attr: str) -> str:
    """Resolve a `LABEL [FILE]` attribute to a sandbox path; the label must be a dep."""
    text = str(ctx.attrs[attr])
    label_text, _, inner = text.partition(" ")
    _node, target, directory = ctx.dep(label_text, attr)
    if inner:
        return f"{directory}/{inner.strip()}"
    primary = target.primary_output or (target.outputs[0] if len(target.outputs) == 1 else None)
    if primary is None:
        raise BuildFileError(f"{label_text} has several outputs; name one: '{label_text} FILE'", ctx.where(attr))
    return f"{directory}/{primary}"


class EngineRule(CommandRule):
    name = "engine"
    version = 1
    attrs = {
        "model": Attr("str", required=True, doc="ONNX model: 'LABEL' or 'LABEL FILE' (also list it in deps)"),
        "toolchain": Attr("str", required=True, doc="python toolchain running the builder script"),
        "backend": Attr("str", "onnxruntime", doc="onnxruntime (CPU) or tensorrt (CUDA)"),
        "precision": Attr(SCALAR_TEXT, "fp32"),
        "batch_size": Attr(SCALAR_TEXT, "1"),
        "workspace_mib": Attr(Integer(minimum=1, maximum=2**24), 1024),
        "optimization_level": Attr("str", "all"),
        "calibration": Attr("str", doc="calibration data 'LABEL FILE' (TensorRT int8)"),
        "input_shape": Attr("list", [], doc="per-sample input dims for the check inference (default: the model's)"),
    }

    def toolchain_names(self, attrs: dict) -> list[str]:
        extra = ["cuda", "tensorrt"] if attrs.get("backend") == "tensorrt" else []
        return [*super().toolchain_names(attrs), *extra]

    def analyze(self, ctx: RuleContext) -> ConfiguredTarget:
        attrs = ctx.attrs
        backend = ctx.expand(str(attrs["backend"]), "backend")
        if backend not in BACKENDS:
            raise BuildFileError(f"unknown engine backend '{backend}'", ctx.where("backend"),
                                 f"backends: {', '.join(BACKENDS)}")
        model = dep_file(ctx, "model")
        python = f"{{{{toolchain:{attrs['toolchain']}.python}}}}"
        threads = str(max(1, int(ctx.resources().cpus)))
        params = ()
        if backend == "onnxruntime":
            engine_file = "engine.onnx"
            ctx.outputs = ctx.declare_outputs([engine_file, "engine.json"], "model")
            script = support_script("ort_optimize.py")
            argv = [python, script[0], "--model", model, "--out", ctx.outputs[0], "--sidecar", ctx.outputs[1],
                    "--level", ctx.expand(str(attrs["optimization_level"]), "optimization_level"),
                    "--threads", threads, "--batch-size", ctx.expand(str(attrs["batch_size"]), "batch_size")]
            if attrs["input_shape"]:
                argv += ["--input-shape", *(str(d) for d in attrs["input_shape"])]
            params = (("cpu_features", list(cpu_features())),)
        else:
            engine_file = "engine.plan"
            ctx.outputs = ctx.declare_outputs([engine_file, "engine.json"], "model")
            script = support_script("trt_build.py")
            argv = [python, script[0], "--model", model, "--out", ctx.outputs[0], "--sidecar", ctx.outputs[1],
                    "--precision", ctx.expand(str(attrs["precision"]), "precision"),
                    "--batch-size", ctx.expand(str(attrs["batch_size"]), "batch_size"),
                    "--workspace-mib", str(attrs["workspace_mib"]),
                    "--trtexec", "{{toolchain:tensorrt.trtexec}}"]
            if attrs["calibration"]:
                argv += ["--calib", dep_file(ctx, "calibration")]
        argv = tuple(ctx.expand(a, "model") for a in argv)
        action = self.action(ctx, argv, ctx.outputs, (), mnemonic="Engine",
                             sources=[*ctx.sources(), script], params=params)
        return ConfiguredTarget(
            label=ctx.label, rule=self.name, deps=tuple(ctx.deps), action=action,
            outputs=(engine_file, "engine.json"), groups_read=frozenset(ctx.groups_read),
            primary_output=engine_file,
        )
