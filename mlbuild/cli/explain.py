"""`mlbuild explain`: why a target's action ran (or will run), component by component.

It compares the canonical key content of the target's last two keys (kept with their
action-cache entries) or of its last key and the one it would have now, and names what
changed: an input file and its digest, an env variable, the command, a toolchain fingerprint.
With `--against-config=B` it compares the target's key under `--config=A` and under B instead,
without building: dependencies stand in by their static fingerprints (analysis/fingerprint.py),
and a dependency whose fingerprint differs is explained in turn.
"""

from __future__ import annotations

import click

from ..analysis.analyzer import Analyzer
from ..analysis.fingerprint import DeclaredToolchains, fingerprints, static_components
from ..errors import Location, NothingToDoError
from ..execution.keys import compute_key
from ..execution.state import BuildState
from ..hashing import StatCache
from ..loading.labels import Label
from .completion import complete_labels
from .main import cli
from .options import config_option
from .session import Session, config_tokens


@cli.command()
@click.argument("target", shell_complete=complete_labels)
@config_option
@click.option("--against-config", "against", multiple=True, metavar="VALUES",
              help="Compare TARGET's key under --config with its key under these values instead.")
@click.pass_context
def explain(ctx, target, configs, against):
    """Say which key component changed for TARGET."""
    session = Session(ctx.obj, configs)
    if against:
        _explain_configurations(session, target, config_tokens(configs), config_tokens(against))
        return
    analyzed = session.analyze([target])
    graph = analyzed.graph
    label = analyzed.requests[0].node
    if graph[label].action is None:
        raise NothingToDoError(f"{label} declares no action")
    action = graph[label].action
    state = BuildState.of(session.workspace, session.configuration.name)
    previous = state.get(str(label))
    if previous is None:
        click.echo(f"{label}: never built under --config={session.configuration.describe()}")
        return
    stale = [dep for dep in action.deps if state.get(dep) is None]
    if stale:
        click.echo(f"{label}: will run because dependency {stale[0]} has not been built in this configuration")
        return
    dep_results = {dep: state.get(dep).result for dep in action.deps}
    current_key, _, inputs = compute_key(action, session.workspace.root, session.cache.stat_cache, dep_results)
    current = action.key_components(inputs)
    entries = session.cache.actions
    if current_key == previous.key:
        if previous.previous_key is None:
            click.echo(f"{label}: up to date (key {current_key[:12]}); it ran because it had never run")
            return
        click.echo(f"{label}: up to date (key {current_key[:12]}); it last ran because:")
        before = entries.key_components(previous.previous_key)
    else:
        click.echo(f"{label}: will run (key {previous.key[:12]} -> {current_key[:12]}) because:")
        before = entries.key_components(previous.key)
    if before is None:
        why = ("a no-cache action keeps no cache entry" if not action.cacheable
               else "the cache no longer holds it")
        click.echo(f"  (the earlier key's content is not known: {why})")
        return
    for line in diff_components(before, current):
        click.echo(f"  {line}")


def _explain_configurations(session: Session, target: str, tokens: list[str], against: list[str]) -> None:
    workspace = session.workspace
    labels = workspace.expand([target])
    configurations = (session.configuration, workspace.configs.resolve(against, Location("--against-config")))
    names = [f"--config={','.join(tokens)}" if tokens else "the defaults", f"--config={','.join(against)}"]
    toolchains, stat_cache = DeclaredToolchains(session.toolchains), StatCache(None)
    sides = []
    for configuration in configurations:
        graph = Analyzer(workspace, configuration, toolchains).analyze(labels[:1])
        sides.append((graph, fingerprints(workspace, graph, stat_cache)))
    differing = [group for group, value in configurations[0].values if configurations[1][group] != value]
    (graph_a, prints_a), (graph_b, prints_b) = sides
    pending, seen = [(labels[0], labels[0])], set()
    if prints_a[labels[0]] == prints_b[labels[0]]:
        click.echo(f"{labels[0]}: the same key under {names[0]} and {names[1]}: neither it nor its dependencies "
                   f"read what differs ({', '.join(differing) or 'nothing'})")
        return
    while pending:
        node_a, node_b = pending.pop(0)
        if (node_a, node_b) in seen or prints_a[node_a] == prints_b[node_b]:
            continue
        seen.add((node_a, node_b))
        target_a, target_b = graph_a[node_a], graph_b[node_b]
        before = static_components(workspace, target_a, prints_a, stat_cache)
        after = static_components(workspace, target_b, prints_b, stat_cache)
        role = "" if node_a == labels[0] else " (a dependency)"
        click.echo(f"{node_a}{role}: key differs between {names[0]} and {names[1]}:")
        for line in diff_components(before, after):
            click.echo(f"  {line}")
        pending += _changed_dependencies(target_a, target_b, prints_a, prints_b)


def _changed_dependencies(target_a, target_b, prints_a, prints_b) -> list[tuple]:
    """Pairs of dependency nodes staged at the same place whose fingerprints differ."""
    if target_a.action is None or target_b.action is None:
        return [(a, b) for a, b in zip(target_a.deps, target_b.deps) if prints_a[a] != prints_b[b]]
    by_dir = {target_b.action.dep_dir(dep): dep for dep in target_b.action.deps}
    return [(Label.parse(dep), Label.parse(by_dir[target_a.action.dep_dir(dep)])) for dep in target_a.action.deps
            if target_a.action.dep_dir(dep) in by_dir
            and prints_a[Label.parse(dep)] != prints_b[Label.parse(by_dir[target_a.action.dep_dir(dep)])]]


def diff_components(before: dict, after: dict) -> list[str]:
    """Human-readable differences between two action-key contents."""
    lines = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if name == "inputs":
            old_map = {p: d for p, d, _ in old or []}
            new_map = {p: d for p, d, _ in new or []}
            for path in sorted(set(old_map) | set(new_map)):
                if path not in old_map:
                    lines.append(f"input added: {path}")
                elif path not in new_map:
                    lines.append(f"input removed: {path}")
                elif old_map[path] != new_map[path]:
                    lines.append(f"input changed: {path} ({old_map[path][:12]} -> {new_map[path][:12]})")
        elif name in ("env", "toolchains", "params"):
            old_map, new_map = dict(map(tuple, old or [])), dict(map(tuple, new or []))
            for key in sorted(set(old_map) | set(new_map)):
                if old_map.get(key) != new_map.get(key):
                    what = {"env": "env variable", "toolchains": "toolchain", "params": "parameter"}[name]
                    change = "added" if key not in old_map else "removed" if key not in new_map else "changed"
                    lines.append(f"{what} {change}: {key}")
        elif name == "argv":
            lines.append(f"command changed:\n    was: {' '.join(old)}\n    now: {' '.join(new)}")
        else:
            lines.append(f"{name} changed: {old} -> {new}")
    return lines
