"""`alias` (another name for a target, e.g. chosen by `select`) and `group` (a set of targets).

A target depending on a group depends on each of its members: their outputs are staged in
its sandbox, and `{{dep:GROUP}}` expands to their directories.
"""

from __future__ import annotations

from ..errors import BuildFileError
from .base import Attr, ConfiguredTarget, Rule, RuleContext


class AliasRule(Rule):
    name = "alias"
    executes = False
    attrs = {"actual": Attr("str", required=True, doc="the target this name stands for")}

    def validate(self, attrs, location, label=None):
        values = super().validate(attrs, location, label)
        if values["deps"]:
            raise BuildFileError("an alias takes 'actual', not 'deps'", attrs.where("deps"))
        values["deps"] = [values["actual"]]
        return values

    def analyze(self, ctx: RuleContext) -> ConfiguredTarget:
        actual, target, _ = ctx.dep(ctx.attrs["actual"], "actual")
        return ConfiguredTarget(
            label=ctx.label, rule=self.name, deps=(actual,), action=None, outputs=target.outputs,
            output_dirs=target.output_dirs, groups_read=frozenset(ctx.groups_read),
            alias_of=target.alias_of or actual, primary_output=target.primary_output, info=target.info,
        )


class GroupRule(Rule):
    name = "group"
    executes = False

    def analyze(self, ctx: RuleContext) -> ConfiguredTarget:
        return ConfiguredTarget(label=ctx.label, rule=self.name, deps=tuple(ctx.deps), action=None,
                                groups_read=frozenset(ctx.groups_read), info={"members": ctx.staged_deps()})
