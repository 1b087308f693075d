"""`mlbuild explain`: why a target's action ran (or will run), component by component.

It compares the canonical key content of the target's last two keys (kept in the cache for
every executed action) or of its last key and the one it would have now, and names what
changed: an input file and its digest, an env variable, the command, a toolchain fingerprint.
"""

from __future__ import annotations

import click

from ..errors import NothingToDoError
from ..execution.keys import compute_key, load_key_components
from ..execution.state import BuildState
from .completion import complete_labels
from .main import cli
from .options import config_option
from .session import Session


@cli.command()
@click.argument("target", shell_complete=complete_labels)
@config_option
@click.pass_context
def explain(ctx, target, configs):
    """Say which key component changed for TARGET."""
    session = Session(ctx.obj, configs)
    requests, graph = session.analyze([target])
    label = requests[0].node
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
    current_key, inputs = compute_key(action, session.workspace.root, session.cache.stat_cache, dep_results)
    current = action.key_components(inputs)
    cache_root = session.cache.root
    if current_key == previous.key:
        if previous.previous_key is None:
            click.echo(f"{label}: up to date (key {current_key[:12]}); it ran because it had never run")
            return
        click.echo(f"{label}: up to date (key {current_key[:12]}); it last ran because:")
        before = load_key_components(cache_root, previous.previous_key)
    else:
        click.echo(f"{label}: will run (key {previous.key[:12]} -> {current_key[:12]}) because:")
        before = load_key_components(cache_root, previous.key)
    if before is None:
        click.echo("  (the earlier key's content is no longer in the cache)")
        return
    for line in diff_components(before, current):
        click.echo(f"  {line}")


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
