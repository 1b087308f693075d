"""`mlbuild cache stats|gc` and `mlbuild clean`."""

from __future__ import annotations

import re
import shutil

import click

from ..errors import UserError
from ..execution.output_tree import CONVENIENCE_LINK, OUTPUT_ROOT
from .main import cli
from .session import Session

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not match:
        raise UserError(f"invalid size '{text}'", hint="sizes look like 500M, 10G or 1.5T")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def human(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


@cli.group()
def cache():
    """Inspect and trim the local cache."""


@cache.command()
@click.pass_context
def stats(ctx):
    """Blob count and size, action-cache entries, cache location."""
    local = Session(ctx.obj).cache
    s = local.stats()
    click.echo(f"location:      {local.root}")
    click.echo(f"blobs:         {s.blobs} ({human(s.blob_bytes)})")
    click.echo(f"action entries: {s.entries}")


@cache.command()
@click.option("--max-size", required=True, metavar="SIZE", help="Target size, e.g. 10G.")
@click.pass_context
def gc(ctx, max_size):
    """Evict least-recently-used entries until the cache fits in SIZE."""
    report = Session(ctx.obj).cache.gc(parse_size(max_size))
    click.echo(f"removed {report.entries_removed} entries and {report.blobs_removed} blobs "
               f"({human(report.bytes_freed)}); {human(report.bytes_kept)} kept")


@cli.command()
@click.option("--expunge", is_flag=True, help="Also delete the whole local cache.")
@click.pass_context
def clean(ctx, expunge):
    """Remove the output tree and build state (and with --expunge, the cache)."""
    session = Session(ctx.obj)
    root = session.workspace.root
    shutil.rmtree(root / OUTPUT_ROOT, ignore_errors=True)
    (root / CONVENIENCE_LINK).unlink(missing_ok=True)
    shutil.rmtree(session.workspace.state_dir / "state", ignore_errors=True)
    if expunge:
        with session.cache.exclusive():
            for child in session.cache.root.iterdir():
                if child.name != "lock":
                    shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink()
    click.echo("cleaned" + (f" (and expunged {session.cache.root})" if expunge else ""))


@cache.command()
@click.option("--dir", "data_dir", required=True, metavar="DIR", help="Where the server keeps cas/ and ac/.")
@click.option("--port", type=int, default=8080, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (0.0.0.0 for a team).")
@click.option("--user", help="Require basic auth for uploads (reads stay anonymous).")
@click.option("--password-file", metavar="FILE", help="The uploader's password, for --user.")
def serve(data_dir, port, host, user, password_file):
    """Run a remote cache server (nginx with WebDAV PUT) in the foreground until Ctrl-C."""
    from pathlib import Path

    from ..storage.nginx import NginxServer

    if (user is None) != (password_file is None):
        raise UserError("--user and --password-file go together")
    auth = (user, Path(password_file).read_text().strip()) if user else None
    server = NginxServer(Path(data_dir).resolve(), port, host=host, auth=auth)
    try:
        server.start()
    except RuntimeError as exc:
        raise UserError(f"cannot start the cache server: {exc}", hint="is the port already in use?") from None
    click.echo(f"remote cache serving {data_dir} at {server.url} (Ctrl-C stops it)")
    try:
        server.wait()
    finally:
        server.stop()
