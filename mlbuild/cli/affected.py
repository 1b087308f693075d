"""`mlbuild affected`: the targets whose action keys differ between two git revisions.

Both revisions are analyzed (the head defaults to the working tree, uncommitted changes
included) and compared by static fingerprints (analysis/fingerprint.py), not by file-name
heuristics. The output feeds CI directly:

    mlbuild test $(mlbuild affected --base origin/main --tests)
"""

from __future__ import annotations

import subprocess
import tarfile
import tempfile
from pathlib import Path

import click

from ..analysis.analyzer import Analyzer
from ..analysis.fingerprint import DeclaredToolchains, fingerprints
from ..errors import UserError
from ..loading.workspace import ROOT_FILE, Workspace
from ..toolchains import ToolchainRegistry
from .main import cli
from .options import config_option
from .session import Session, config_tokens


@cli.command()
@click.option("--base", required=True, metavar="REV", help="Revision to compare against (e.g. origin/main).")
@click.option("--head", metavar="REV", help="Revision to compare (default: the working tree).")
@click.option("--tests", "tests_only", is_flag=True, help="List only test and bench targets.")
@config_option
@click.pass_context
def affected(ctx, base, head, tests_only, configs):
    """List targets (not tagged manual) whose keys differ between BASE and HEAD."""
    session = Session(ctx.obj, configs)
    root = session.workspace.root
    with tempfile.TemporaryDirectory(prefix="mlbuild-affected-") as scratch:
        before = _graph_prints(_checkout(root, base, Path(scratch) / "base"), configs, session)
        if head:
            after = _graph_prints(_checkout(root, head, Path(scratch) / "head"), configs, session)
        else:
            after = _graph_prints(root, configs, session)
    changed = sorted(label for label, (digest, _) in after.items()
                     if before.get(label, (None, None))[0] != digest and (after[label][1] or not tests_only))
    for label in changed:
        click.echo(str(label))


def _graph_prints(root: Path, configs, session: Session) -> dict:
    """Label → (fingerprint, is_test) for every non-manual target of the workspace at `root`
    (none when the revision has no workspace yet: then everything is affected)."""
    if not (root / ROOT_FILE).is_file():
        return {}
    workspace = Workspace(root)
    configuration = workspace.configs.resolve(config_tokens(configs))
    registry = ToolchainRegistry(workspace.toolchain_decls, session.cache.root)
    labels = workspace.expand(["//..."])
    graph = Analyzer(workspace, configuration, DeclaredToolchains(registry)).analyze(labels)
    prints = fingerprints(workspace, graph)
    wanted = set(labels)
    return {label: (digest, graph[label].is_test) for label, digest in prints.items() if label in wanted}


def _checkout(root: Path, revision: str, dest: Path) -> Path:
    """Export the workspace as it is at `revision` (git archive), returning its root there."""
    def git(*args, **kwargs):
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, **kwargs)

    top = git("rev-parse", "--show-toplevel", text=True)
    if top.returncode != 0:
        raise UserError(f"{root} is not inside a git repository", hint="affected compares git revisions")
    prefix = git("rev-parse", "--show-prefix", text=True).stdout.strip()
    archive = git("archive", "--format=tar", revision)
    if archive.returncode != 0:
        raise UserError(f"cannot read revision '{revision}': {archive.stderr.decode().strip()}",
                        hint="fetch it first (e.g. git fetch origin main)")
    dest.mkdir(parents=True)
    tar_path = dest.with_suffix(".tar")
    tar_path.write_bytes(archive.stdout)
    with tarfile.open(tar_path) as tar:
        tar.extractall(dest, filter="data")
    return dest / prefix
