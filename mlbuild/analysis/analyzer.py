"""Analysis: turn the requested labels, under one configuration, into configured targets.

For each target: resolve `select`s, validate attributes against the rule's schema, analyze
its dependencies first (reporting a cycle as the path that closes it), resolve the toolchains
it names plus those required by the config values of groups it reads, then let the rule
declare its actions. Only targets reachable from the request are touched.
"""

from __future__ import annotations

import re

from ..actions import output_dir
from ..errors import BuildFileError, ToolchainError, did_you_mean
from ..loading.labels import Label
from ..loading.select import resolve_selects
from ..rules import RULES, ConfiguredTarget, RuleContext
from ..toolchains import ToolchainMissing

_CONFIG_PLACEHOLDER = re.compile(r"\{\{\s*config:\s*([A-Za-z0-9_\-]+)\s*\}\}")


class Analyzer:
    def __init__(self, workspace, configuration, toolchains):
        self.workspace = workspace
        self.configuration = configuration
        self.toolchains = toolchains
        self.targets: dict[Label, ConfiguredTarget] = {}
        self._in_progress: list[Label] = []

    def analyze(self, labels: list[Label]) -> dict[Label, ConfiguredTarget]:
        for label in labels:
            self._analyze(label, None)
        return self.targets

    def _analyze(self, label: Label, referenced_at) -> ConfiguredTarget:
        done = self.targets.get(label)
        if done is not None:
            return done
        if label in self._in_progress:
            cycle = self._in_progress[self._in_progress.index(label):] + [label]
            raise BuildFileError(
                "dependency cycle: " + " -> ".join(map(str, cycle)), referenced_at,
                "remove one of these dependencies",
            )
        decl = self.workspace.target(label, referenced_at)
        rule = RULES.get(decl.rule)
        if rule is None:
            raise BuildFileError(
                f"unknown rule '{decl.rule}' for {label}", decl.attrs.where("rule"),
                did_you_mean(decl.rule, RULES) or f"rules: {', '.join(sorted(RULES))}",
            )
        self._check_output_directory(label, decl)
        self._in_progress.append(label)
        try:
            groups_read: set = set()
            resolved = decl.attrs
            if "select" in decl.attrs.marks:
                resolved = resolve_selects(decl.attrs, self.workspace.configs, self.configuration, groups_read)
            if "config" in decl.attrs.marks:
                groups_read.update(_CONFIG_PLACEHOLDER.findall(repr(resolved)))
            attrs = rule.validate(resolved, decl.location, label)
            for group in attrs["configs"]:
                if group not in self.workspace.configs.groups:
                    raise BuildFileError(f"unknown config group '{group}'", decl.attrs.where("configs"),
                                         did_you_mean(group, self.workspace.configs.groups))
                groups_read.add(group)
            deps = {}
            for text in attrs["deps"]:
                where = decl.attrs.where("deps")
                dep_label = Label.parse(text, label.package, where)
                deps[dep_label] = self._analyze(dep_label, where)
            # Config values require toolchains of targets that run something, not of aliases.
            config_groups = groups_read if rule.executes else set()
            toolchains = self._toolchains(label, rule.toolchain_names(attrs), decl, config_groups)
            ctx = RuleContext(
                label=label, attrs=attrs, location=decl.location, raw_attrs=decl.attrs,
                workspace=self.workspace, configuration=self.configuration, deps=deps,
                toolchains=toolchains, groups_read=groups_read, schema=self.workspace.configs,
            )
            configured = rule.analyze(ctx)
        finally:
            self._in_progress.pop()
        self.targets[label] = configured
        return configured

    def _check_output_directory(self, label, decl) -> None:
        """Outputs of two targets never overlap: checked by package structure, so it holds in
        every configuration and whichever targets a build requests."""
        other = self.workspace.nesting_target(label)
        if other is not None:
            outer, inner = sorted([label, other], key=lambda l: len(output_dir(l)))
            raise BuildFileError(
                f"the outputs of {outer} and {inner} overlap: {output_dir(outer)}/ holds {output_dir(inner)}/ "
                "in the output tree (mlbuild-out/<configuration>/)", decl.location,
                f"rename target '{outer.name}' of //{outer.package}, or move package //{inner.package}",
            )

    def _toolchains(self, label, names, decl, groups_read) -> dict:
        """Resolve named toolchains and those the configuration requires; fail before running."""
        wanted: dict[str, str | None] = {}
        for source, settings in self.workspace.configs.settings_for(self.configuration, frozenset(groups_read)):
            for name in settings.toolchains:
                wanted.setdefault(name, source)  # naming the config value is the useful hint
        for name in names:
            wanted.setdefault(name, None)
        resolved = {}
        for name, required_by in wanted.items():
            where = decl.attrs.where("toolchains")
            try:
                resolved[name] = self.toolchains.resolve(name, where)
            except ToolchainMissing as exc:
                reason = f"required by config value {required_by}" if required_by else "named in its toolchains"
                hint = (
                    f"choose another value than {required_by} with --config, or build on a machine that has it"
                    if required_by else "install it, or adjust its declaration under toolchains/"
                )
                raise ToolchainError(
                    f"{label} needs toolchain '{name}' ({reason}), which is unusable here: {exc}",
                    decl.location, hint + "; `mlbuild toolchain list` shows what is detected",
                ) from None
        return resolved
