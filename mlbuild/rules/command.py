"""`command`: the generic hermetic action (a shell command or an argv), Bazel's genrule."""

from __future__ import annotations

from ..actions import Action
from ..errors import BuildFileError
from ..loading.schema import SCALAR, ListOf
from .base import Attr, ConfiguredTarget, Rule, RuleContext


class CommandRule(Rule):
    name = "command"
    version = 1
    attrs = {
        "cmd": Attr("str", doc="shell command (bash -c), placeholders expanded"),
        "argv": Attr(ListOf(SCALAR, min_items=1), doc="argument vector, run without a shell"),
        "srcs": Attr("labels", []),
        "outs": Attr("paths", []),
        "out_dirs": Attr("paths", []),
        "run": Attr("str", doc="shell command `mlbuild run` executes after building"),
        "test": Attr("bool", False, doc="a test: `mlbuild test` runs it and caches passes"),
        "data_dir": Attr("str", doc="a directory outside the workspace staged as data/ ({{data_dir}})"),
    }

    def analyze(self, ctx: RuleContext) -> ConfiguredTarget:
        attrs = ctx.attrs
        if (attrs["cmd"] is None) == (attrs["argv"] is None):
            raise BuildFileError(f"{ctx.label}: give exactly one of 'cmd' or 'argv'", ctx.location)
        outputs = ctx.declare_outputs(attrs["outs"], "outs")
        output_dirs = ctx.declare_outputs(attrs["out_dirs"], "out_dirs")
        ctx.outputs = outputs
        argv = self.argv(ctx, attrs["cmd"], attrs["argv"], "cmd" if attrs["cmd"] is not None else "argv")
        is_test = bool(attrs["test"]) or "test" in attrs["tags"]
        action = self.action(ctx, argv, outputs, output_dirs, mnemonic="Test" if is_test else "Command")
        run_action = None
        if attrs["run"]:
            run_action = Action(
                label=str(ctx.label), mnemonic="Run", implementation=self.implementation,
                argv=("/bin/bash", "-c", ctx.abstract(ctx.expand(attrs["run"], "run"))),
                env=action.env, sources=action.sources, deps=(*action.deps, str(ctx.node)),
                dep_dirs=(*action.dep_dirs, (str(ctx.node), ctx.outdir)),
                toolchains=action.toolchains, toolchain_roots=action.toolchain_roots, tags=("no-cache",),
                network=True, container=action.container, container_runtime=action.container_runtime,
            )
        return ConfiguredTarget(
            label=ctx.label, rule=self.name, deps=tuple(ctx.deps), action=action,
            outputs=tuple(attrs["outs"]), output_dirs=tuple(attrs["out_dirs"]),
            run_action=run_action, is_test=is_test, groups_read=frozenset(ctx.groups_read),
        )

    @staticmethod
    def argv(ctx: RuleContext, cmd, argv, attr: str) -> tuple[str, ...]:
        if cmd is not None:
            return ("/bin/bash", "-c", ctx.expand(cmd, attr))
        return tuple(ctx.expand(str(a), attr) for a in argv)

    def action(self, ctx, argv, outputs, output_dirs, mnemonic, env_extra=None, sources=None, resources=None,
               deps=None, **extra) -> Action:
        sources = tuple((ctx.sources() + ctx.data_sources()) if sources is None else sources)
        if ctx.missing_data:
            extra.update(executor="unavailable", params=(("reason", ctx.missing_data),))
        image, runtime = ctx.container()
        return Action(
            label=str(ctx.label), mnemonic=mnemonic, implementation=self.implementation,
            argv=tuple(ctx.abstract(a) for a in argv), env=ctx.action_env(env_extra),
            toolchain_roots=ctx.toolchain_roots(),
            sources=sources,
            **ctx.action_deps(deps), outputs=tuple(outputs), output_dirs=tuple(output_dirs),
            toolchains=ctx.toolchain_digests(), resources=resources or ctx.resources(),
            timeout_s=ctx.attrs.get("timeout"), tags=tuple(ctx.attrs["tags"]), network=ctx.network(),
            container=image, container_runtime=runtime, **extra,
        )
