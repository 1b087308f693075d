"""`mlbuild submission check DIR`: check an MLPerf inference submission tree, as the official checker would.

The checking itself is rules/support/submission_check.py, the script a `submission` target's
action runs on the tree it builds; here it runs on any tree, with mlbuild's interpreter (it needs
only the standard library). It prints each error and warning, the verdict, and the command line
of mlcommons/inference's own checker for the same tree.
"""

from __future__ import annotations

import subprocess
import sys

import click

from ..errors import EXIT_BUILD_FAILED
from ..rules.engine import SUPPORT_DIR
from .main import cli


@cli.group()
def submission():
    """MLPerf inference submission trees."""


@submission.command("check")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
def check(directory):
    """Check DIRECTORY (holding closed/ or open/) for what MLPerf's submission checker checks."""
    done = subprocess.run([sys.executable, str(SUPPORT_DIR / "submission_check.py"), directory])
    if done.returncode != 0:
        sys.exit(EXIT_BUILD_FAILED)
