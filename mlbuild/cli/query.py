"""`mlbuild query`: the configured target graph, as labels, JSON or Graphviz dot.

Expressions: a pattern (`//bench/...`), `deps(PATTERN)` (everything it needs, itself included)
and `rdeps(UNIVERSE, PATTERN)` (everything in UNIVERSE that needs it). Nothing is detected,
built or downloaded to answer. Each node shows its configuration as Bazel's cquery does:
the values of the groups it and its dependencies read (`//bench:digits (precision=int8)`),
nothing when it reads none; a node built through a transition is `LABEL@VALUES`.
"""

from __future__ import annotations

import json
import re

import click

from ..analysis.analyzer import Analyzer
from ..errors import BuildFileError
from ..toolchains.registry import UndetectedToolchains
from .main import cli
from .options import config_option
from .session import Session

_CALL = re.compile(r"^\s*(deps|rdeps)\s*\((.*)\)\s*$")


@cli.command()
@click.argument("expression")
@config_option
@click.option("--output", type=click.Choice(["label", "json", "dot"]), default="label", show_default=True)
@click.pass_context
def query(ctx, expression, configs, output):
    """Evaluate EXPRESSION over the target graph."""
    session = Session(ctx.obj, configs)
    analyzer = Analyzer(session.workspace, session.configuration, UndetectedToolchains(session.toolchains))
    match = _CALL.match(expression)
    if match is None:
        selected = set(session.workspace.expand([expression.strip()]))
        graph = analyzer.analyze(sorted(selected))
    elif match.group(1) == "deps":
        roots = session.workspace.expand([match.group(2).strip()])
        graph = analyzer.analyze(roots)
        selected = _closure(roots, lambda label: graph[label].deps)
    else:
        parts = [p.strip() for p in match.group(2).split(",")]
        if len(parts) != 2:
            raise BuildFileError("rdeps takes two arguments: rdeps(UNIVERSE, PATTERN)")
        graph = analyzer.analyze(session.workspace.expand([parts[0]]))
        wanted = set(session.workspace.expand([parts[1]]))
        users: dict = {label: [] for label in graph}
        for label, target in graph.items():
            for dep in target.deps:
                users[dep].append(label)
        selected = _closure([w for w in wanted if w in graph], lambda label: users[label])
    session.workspace.save_caches()
    ordered = sorted(selected)

    def configuration(label) -> dict:
        values = graph[label].configuration.values
        return {group: value for group, value in values if group in analyzer.closure_reads[label]}

    def spelled(label) -> str:
        values = configuration(label)
        return f"{label} ({','.join(f'{g}={v}' for g, v in values.items())})" if values else str(label)

    if output == "label":
        click.echo("\n".join(map(spelled, ordered)))
    elif output == "json":
        click.echo(json.dumps([
            {"label": str(label), "rule": graph[label].rule, "deps": [str(d) for d in graph[label].deps],
             "outputs": list(graph[label].outputs), "test": graph[label].is_test,
             "reads_config": sorted(graph[label].groups_read), "configuration": configuration(label)}
            for label in ordered], indent=2))
    else:
        lines = ["digraph mlbuild {"]
        for label in ordered:
            lines.append(f'  "{label}" [label="{spelled(label)}"];')
            lines += [f'  "{label}" -> "{dep}";' for dep in graph[label].deps if dep in selected]
        click.echo("\n".join(lines + ["}"]))


def _closure(roots, neighbours) -> set:
    seen, stack = set(), list(roots)
    while stack:
        label = stack.pop()
        if label not in seen:
            seen.add(label)
            stack.extend(neighbours(label))
    return seen
