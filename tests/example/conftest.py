"""What the example tests share: a fresh copy of the example workspace, and the CLI as a process."""

import shutil
import subprocess
from pathlib import Path

import pytest
from core.conftest import MLBUILD_COMMAND

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def copy_example(tmp_path_factory):
    """A function making a fresh copy of the repository's example workspace (its output tree
    is then the copy's, never the repository's)."""

    def copy(name: str) -> Path:
        root = tmp_path_factory.mktemp(name)
        shutil.copy(REPO / "BUILD.yaml", root)
        shutil.copytree(REPO / "targets", root / "targets")
        shutil.copytree(REPO / "toolchains", root / "toolchains")
        return root

    return copy


@pytest.fixture(scope="session")
def mlbuild():
    """A function running `mlbuild --cache-dir CACHE ARGS...` in ROOT as a child process."""

    def run(root: Path, cache: Path, *args) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [*MLBUILD_COMMAND, "--cache-dir", str(cache), *args],
            cwd=root, capture_output=True, text=True,
        )
        assert "Traceback" not in done.stderr, done.stderr
        return done

    return run
