"""`mlbuild config list` and `mlbuild toolchain list`: what a workspace offers and what the host has."""

from __future__ import annotations

import click

from ..toolchains import ToolchainMissing
from .main import cli
from .session import Session


@cli.group()
def config():
    """Inspect configuration groups."""


@config.command("list")
@click.pass_context
def config_list(ctx):
    """Show config groups, their values and defaults, bundles and incompatibilities."""
    schema = Session(ctx.obj).workspace.configs
    for group in schema.groups.values():
        if group.parametric:
            click.echo(f"{group.name}  ({group.type}, default {group.default})  {group.doc}".rstrip())
            continue
        click.echo(f"{group.name}  {group.doc}".rstrip())
        for value, settings in group.values.items():
            marks = ["default"] if value == group.default else []
            marks += [f"implies {g}={v}" for g, v in settings.implies]
            marks += [f"needs toolchain {t}" for t in settings.toolchains]
            click.echo(f"  {value}" + (f"  ({'; '.join(marks)})" if marks else ""))
    for name, refs in schema.bundles.items():
        click.echo(f"bundle {name} = {','.join(refs)}")
    for refs, _ in schema.incompatible:
        click.echo("incompatible: " + ",".join(f"{g}={v}" for g, v in refs))
    for combination in schema.combinations:
        click.echo("when " + ",".join(f"{g}={v}" for g, v in combination.when) + ": "
                   + "; ".join([f"implies {g}={v}" for g, v in combination.settings.implies]
                               + [f"env {k}" for k, _ in combination.settings.env]
                               + [f"needs toolchain {t}" for t in combination.settings.toolchains]))


@cli.group()
def toolchain():
    """Inspect toolchains."""


@toolchain.command("list")
@click.option("--distdir", "distdirs", multiple=True, metavar="DIR",
              help="Build venvs and load images from DIR only (filled by `mlbuild fetch`).")
@click.pass_context
def toolchain_list(ctx, distdirs):
    """Detect, build or load every declared toolchain; show its fingerprint or why it is unusable."""
    registry = Session(ctx.obj, distdirs=distdirs).toolchains
    for name in registry.names():
        try:
            resolved = registry.resolve(name)
        except ToolchainMissing as exc:
            click.echo(f"{name:<16} MISSING  {exc}")
            continue
        facts = {k: v for k, v in resolved.fingerprint.items() if k not in ("kind", "packages")}
        packages = resolved.fingerprint.get("packages")
        extra = f", {len(packages)} packages" if isinstance(packages, (list, dict)) else ""
        click.echo(f"{name:<16} ok       {resolved.kind} {facts}{extra}  [{resolved.digest[:12]}]")
