"""`mlbuild config list|show` and `mlbuild toolchain list`: what a workspace offers, what a
configuration resolves to, and what the host has."""

from __future__ import annotations

import click

from ..toolchains import ToolchainMissing
from .main import cli
from .options import config_option
from .session import Session, config_tokens


@cli.group()
def config():
    """Inspect configuration groups."""


@config.command("list")
@click.pass_context
def config_list(ctx):
    """Show config groups with their values, aliases, env, implications, forces, default
    overrides and toolchains; then bundles, incompatibilities and combinations."""
    schema = Session(ctx.obj).workspace.configs
    for group in schema.groups.values():
        kind = f"  ({group.type}, default {group.default!r})" if group.parametric else ""
        click.echo(f"{group.name}{kind}  {group.doc}".rstrip())
        if group.settings.env:
            click.echo(f"  env {_env(group.settings)}")
        for value, settings in group.values.items():
            marks = ["default"] if value == group.default else []
            aliases = [alias for alias, target in group.aliases.items() if target == value]
            marks += [f"alias {', '.join(aliases)}"] if aliases else []
            marks += _describe(settings)
            click.echo(f"  {value}" + (f"  ({'; '.join(marks)})" if marks else ""))
    for name, refs in schema.bundles.items():
        click.echo(f"bundle {name} = {','.join(refs)}")
    for refs, _ in schema.incompatible:
        click.echo("incompatible: " + ",".join(f"{g}={v}" for g, v in refs))
    for combination in schema.combinations:
        click.echo("when " + ",".join(f"{g}={v}" for g, v in combination.when) + ": "
                   + "; ".join(_describe(combination.settings)))


def _describe(settings) -> list[str]:
    spell = lambda refs: ", ".join(f"{g}={v}" for g, v in refs)  # noqa: E731
    return ([f"implies {spell(settings.implies)}"] if settings.implies else []) \
        + ([f"forces {spell(settings.forces)}"] if settings.forces else []) \
        + ([f"defaults {spell(settings.defaults)}"] if settings.defaults else []) \
        + ([f"env {_env(settings)}"] if settings.env else []) \
        + ([f"needs toolchain {', '.join(settings.toolchains)}"] if settings.toolchains else [])


def _env(settings) -> str:
    return " ".join(f"{key}={value}" for key, value in settings.env)


@config.command("show")
@config_option
@click.pass_context
def config_show(ctx, configs):
    """Print the configuration --config resolves to: each group's value and where it came
    from (default, command line, bundle, implied, forced, default override)."""
    session = Session(ctx.obj, configs)
    configuration = session.configuration
    origins = dict(configuration.origins)
    width = max((len(group) for group, _ in configuration.values), default=0)
    click.echo(f"configuration {configuration.name}"
               + (f"  (--config={','.join(config_tokens(configs))})" if configs else ""))
    for group, value in configuration.values:
        click.echo(f"  {group:<{width}}  {value!s:<12} {origins.get(group, 'default')}")


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
