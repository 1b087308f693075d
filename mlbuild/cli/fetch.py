"""`mlbuild fetch TARGETS --into DIR`: vendor what the targets need from outside, for air-gapped builds."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..errors import EXIT_BUILD_FAILED
from ..vendoring import copy_downloads, download_targets, vendor_toolchains, write_manifest
from .build import _run_build, _start
from .completion import complete_labels
from .main import cli
from .options import build_options


@cli.command()
@click.argument("targets", nargs=-1, required=True, shell_complete=complete_labels)
@click.option("--into", required=True, metavar="DIR",
              help="Directory to fill (created if missing; later fetches add to it).")
@build_options
@click.pass_context
def fetch(ctx, targets, into, **kwargs):
    """Collect what TARGETS need from outside into DIR: downloads by checksum, the wheels of
    their venv toolchains, their container images. Carry DIR to an air-gapped machine and
    build there with --distdir DIR."""
    session, analyzed = _start(ctx, targets, kwargs)
    graph = analyzed.graph
    into = Path(into).expanduser().resolve()
    into.mkdir(parents=True, exist_ok=True)
    downloads = download_targets(graph)
    if downloads:
        _, summary = _run_build(session, downloads, kwargs)
        if not summary.ok:
            sys.exit(EXIT_BUILD_FAILED)
    names = copy_downloads(downloads, session.cache, into)
    vendor_toolchains(graph, session.toolchains, into)
    counts = write_manifest(into, [str(request.label) for request in analyzed.requests], names)
    click.echo(f"vendored into {into}: {counts['downloads']} downloads, {counts['wheels']} wheels, "
               f"{counts['images']} container images (MANIFEST.json lists them)")
    click.echo(f"on the air-gapped machine: mlbuild build {' '.join(targets)} --distdir {into}")
