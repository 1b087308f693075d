"""Test-session settings shared by every test directory.

Toolchain virtual environments are built once per session into one directory and reused by
every test workspace (as they would be across a user's workspaces). When `make setup` has
filled the wheelhouse, pip installs from it only: the tests never reach a package index.
Scripts that tests run directly get one BLAS/OpenMP thread, as mlbuild's action env gives
them: on 2 shared cores oversubscription is slow and changes results.
"""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True, scope="session")
def offline_toolchains():
    pinned = {var: "1" for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    saved = {k: os.environ.get(k) for k in ("MLBUILD_TOOLCHAIN_DIR", "PIP_NO_INDEX", "PIP_FIND_LINKS", *pinned)}
    os.environ.update(pinned)
    os.environ["MLBUILD_TOOLCHAIN_DIR"] = str(REPO / ".mlbuild" / "test-toolchains")
    wheelhouse = REPO / ".wheelhouse"
    if wheelhouse.is_dir() and any(wheelhouse.iterdir()):
        os.environ["PIP_NO_INDEX"] = "1"
        os.environ["PIP_FIND_LINKS"] = str(wheelhouse)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
