"""Shell completion: `mlbuild completion bash|zsh|fish`, and target labels completed from the workspace."""

from __future__ import annotations

from pathlib import Path

import click
from click.shell_completion import CompletionItem, get_completion_class

from .main import cli


def complete_labels(ctx, param, incomplete: str) -> list[CompletionItem]:
    """Labels and patterns of the workspace around the current directory."""
    from ..errors import UserError
    from ..loading.workspace import Workspace, find_workspace_root

    try:
        workspace = Workspace(find_workspace_root(Path.cwd()))
        candidates = ["//..."]
        for package in workspace.all_packages():
            candidates.append(f"//{package}/...")
            if incomplete.startswith(f"//{package}:"):
                candidates += [str(decl.label) for decl in workspace.package(package).values()]
            else:
                candidates.append(f"//{package}:")
    except UserError:
        return []
    return [CompletionItem(c) for c in candidates if c.startswith(incomplete)]


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell):
    """Print the completion script for SHELL, e.g. `eval "$(mlbuild completion bash)"`."""
    completer = get_completion_class(shell)(cli, {}, "mlbuild", "_MLBUILD_COMPLETE")
    click.echo(completer.source())
