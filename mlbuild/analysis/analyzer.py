"""Analysis: turn requested labels, under one or more configurations, into configured targets.

For each (label, configuration): resolve `select`s, validate attributes against the rule's
schema (defaults filled in), then compute once, with the rules' own placeholder parser, the
config groups the target reads. Its dependencies are analyzed first, each in the same
configuration or in the one its transition sets; then the toolchains it names and those its
config values require are resolved, and the rule declares its actions. Nothing changes a
target's reads after that.

Trimming: a configured target's identity in the graph (its node) holds only the groups it and
its dependencies read. A target reached in two configurations that agree on those groups is
one node, so one action, one cache entry and one place in the output tree; the node of a
target in the build's primary configuration is its plain label, any other is `LABEL@VALUES`
spelling the read groups that differ. The walk is iterative (a chain thousands of targets
deep is fine) and reports a cycle, transitions included, as the path that closes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..actions import output_dir
from ..errors import BuildFileError, ToolchainError, did_you_mean
from ..loading.configs import Configuration, configuration_name
from ..loading.labels import Label
from ..loading.select import resolve_selects
from ..rules import RULES, ConfiguredTarget, RuleContext
from ..toolchains import ToolchainMissing
from .transitions import DepEdge, local_names, parse_edges


@dataclass
class _Pending:
    """A target whose dependencies are being analyzed: everything known before the rule runs."""

    label: Label
    configuration: Configuration
    decl: object
    rule: object
    attrs: dict
    reads: frozenset
    edges: list[DepEdge]
    dep_configurations: list[Configuration]
    dep_nodes: list[Label] = field(default_factory=list)


class Analyzer:
    def __init__(self, workspace, configuration, toolchains):
        self.workspace = workspace
        self.schema = workspace.configs
        self.configuration = configuration  # the primary one: its nodes are plain labels
        self.toolchains = toolchains
        self.targets: dict[Label, ConfiguredTarget] = {}
        self.closure_reads: dict[Label, frozenset] = {}  # node -> groups it and its deps read
        self._nodes: dict[tuple, Label] = {}  # (label, configuration values) -> node
        self._signatures: dict[Label, tuple] = {}

    def analyze(self, labels: list[Label], configuration: Configuration | None = None) -> dict[Label, ConfiguredTarget]:
        """Analyze `labels` (in the primary configuration unless told) with their dependencies."""
        self.nodes(labels, configuration)
        return self.targets

    def nodes(self, labels: list[Label], configuration: Configuration | None = None) -> list[Label]:
        """The graph node of each label in `configuration`, analyzing what is not yet."""
        configuration = configuration or self.configuration
        return [self._analyze(label, configuration) for label in labels]

    def _analyze(self, label: Label, configuration: Configuration) -> Label:
        done = self._nodes.get((label, configuration.values))
        if done is not None:
            return done
        stack = [self._start(label, configuration, None)]
        in_progress = {label: 0}
        while stack:
            pending = stack[-1]
            index = len(pending.dep_nodes)
            if index < len(pending.edges):
                edge, dep_configuration = pending.edges[index], pending.dep_configurations[index]
                node = self._nodes.get((edge.label, dep_configuration.values))
                if node is not None:
                    pending.dep_nodes.append(node)
                    continue
                if edge.label in in_progress:
                    path = [str(p.label) for p in stack[in_progress[edge.label]:]] + [str(edge.label)]
                    raise BuildFileError("dependency cycle: " + " -> ".join(path), edge.location,
                                         "remove one of these dependencies (a transition does not break a cycle)")
                in_progress[edge.label] = len(stack)
                stack.append(self._start(edge.label, dep_configuration, edge.location))
                continue
            stack.pop()
            del in_progress[pending.label]
            self._nodes[(pending.label, pending.configuration.values)] = self._finish(pending)
        return self._nodes[(label, configuration.values)]

    def _start(self, label: Label, configuration: Configuration, referenced_at) -> _Pending:
        decl = self.workspace.target(label, referenced_at)
        rule = RULES.get(decl.rule)
        if rule is None:
            raise BuildFileError(
                f"unknown rule '{decl.rule}' for {label}", decl.attrs.where("rule"),
                did_you_mean(decl.rule, RULES) or f"rules: {', '.join(sorted(RULES))}",
            )
        self._check_output_directory(label, decl)
        reads: set = set()
        resolved = decl.attrs
        if "select" in decl.attrs.marks:
            resolved = resolve_selects(decl.attrs, self.schema, configuration, reads)
        attrs = rule.validate(resolved, decl.location, label)
        for group in attrs["configs"]:
            if group not in self.schema.groups:
                raise BuildFileError(f"unknown config group '{group}'", decl.attrs.where("configs"),
                                     did_you_mean(group, self.schema.groups))
            reads.add(group)
        if "config" in decl.attrs.marks or rule.defaults_read_config:
            reads |= rule.config_reads(attrs, decl.attrs, self.schema)
        reads = self.schema.reads_closure(configuration, reads)
        deps = resolved.get("deps") if "deps" in resolved else None
        where = deps.where if hasattr(deps, "where") else (lambda _index: decl.attrs.where(
            "actual" if "actual" in decl.attrs else "deps"))
        edges = parse_edges(attrs["deps"], label, where, self.schema)
        dep_configurations = [self.schema.transition(configuration, edge.refs, edge.location) if edge.refs
                              else configuration for edge in edges]
        return _Pending(label, configuration, decl, rule, attrs, reads, edges, dep_configurations)

    def _finish(self, pending: _Pending) -> Label:
        """Name the target's node by what it reads; analyze it unless that node exists."""
        closure = set(pending.reads)
        for edge, node in zip(pending.edges, pending.dep_nodes):
            closure |= self.closure_reads[node] - edge.groups  # a transition pins what it sets
        signature = (pending.reads, tuple(pending.dep_nodes))
        node = self._node_name(pending.label, pending.configuration, closure)
        if node in self._signatures and self._signatures[node] != signature:
            # Same read values, different dependencies: a force or implication the transition
            # did not pin. Keep them apart under the full configuration's name.
            node = Label(pending.label.package, f"{pending.label.name}@{pending.configuration.name}")
        if node in self.targets:
            return node
        label, decl, rule, configuration = pending.label, pending.decl, pending.rule, pending.configuration
        names = local_names(pending.edges, self.schema)
        deps = {dep: self.targets[dep] for dep in pending.dep_nodes}
        config_reads = pending.reads if rule.executes else frozenset()  # aliases run nothing
        toolchains = self._toolchains(label, rule.toolchain_names(pending.attrs), decl, configuration, config_reads)
        ctx = RuleContext(
            label=label, node=node, attrs=pending.attrs, location=decl.location, raw_attrs=decl.attrs,
            workspace=self.workspace, configuration=configuration, deps=deps, toolchains=toolchains,
            groups_read=pending.reads, schema=self.schema, local_names=dict(zip(names, pending.dep_nodes)),
        )
        configured = replace(rule.analyze(ctx), label=node, configuration=configuration)
        self.targets[node] = configured
        self.closure_reads[node] = frozenset(closure)
        self._signatures[node] = signature
        return node

    def _node_name(self, label: Label, configuration: Configuration, closure: set) -> Label:
        primary = dict(self.configuration.values)
        changed = [(group, value, self.schema.groups[group].parametric) for group, value in configuration.values
                   if group in closure and primary[group] != value]
        return Label(label.package, f"{label.name}@{configuration_name(changed)}") if changed else label

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

    def _toolchains(self, label, names, decl, configuration, groups_read) -> dict:
        """Resolve named toolchains and those the configuration requires; fail before running."""
        wanted: dict[str, str | None] = {}
        for source, settings in self.schema.settings_for(configuration, frozenset(groups_read)):
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
