"""Entry point: the command group, global options, and the one place errors become exit codes.

Exit codes (also in `mlbuild --help`):
  0 success · 1 build or test failed · 2 usage error · 3 error in build files, labels or
  configuration · 4 required toolchain missing · 5 nothing matched · 8 interrupted ·
  70 internal error (traceback with --verbose)
"""

from __future__ import annotations

import gc
import sys
import traceback

import click

from .. import __version__
from ..errors import EXIT_CODES, EXIT_INTERNAL, EXIT_INTERRUPTED, UserError
from .session import GlobalOptions

_EXIT_TABLE = "\b\nExit codes:\n" + "\n".join(f"  {code:<3} {text}" for code, text in EXIT_CODES.items())


@click.group(epilog=_EXIT_TABLE, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mlbuild")
@click.option("-C", "--workspace", metavar="DIR", help="Workspace directory (default: search upward from cwd).")
@click.option("--cache-dir", metavar="DIR", envvar="MLBUILD_CACHE_DIR",
              help="Local cache directory (default: ~/.cache/mlbuild; env MLBUILD_CACHE_DIR).")
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks of internal errors.")
@click.pass_context
def cli(ctx, workspace, cache_dir, verbose):
    """mlbuild: build, cache and benchmark ML pipelines, Bazel style."""
    ctx.obj = GlobalOptions(workspace=workspace, cache_dir=cache_dir, verbose=verbose)


def main(argv=None) -> None:
    # A command is a short-lived process that builds large acyclic structures (parsed BUILD
    # files, the target graph, build state); the cyclic collector only rescans them, which
    # measured ~1 s of a 10,000-target no-op build. (Re-enabled on return, for in-process use.)
    collecting = gc.isenabled()
    gc.disable()
    try:
        _run(argv)
    finally:
        if collecting:
            gc.enable()


def _run(argv) -> None:
    from . import (  # noqa: F401  (register subcommands)
        affected, build, cache, completion, explain, fetch, info, query, submission,
    )

    verbose = "-v" in (argv or sys.argv[1:]) or "--verbose" in (argv or sys.argv[1:])
    try:
        code = cli.main(args=argv, standalone_mode=False)
    except UserError as exc:
        click.echo(str(exc), err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted: running actions were killed; the cache is consistent", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except Exception:
        if verbose:
            traceback.print_exc()
        else:
            click.echo(f"internal error: {sys.exc_info()[1]!r} (run with --verbose for the traceback)", err=True)
        sys.exit(EXIT_INTERNAL)
    sys.exit(code or 0)
