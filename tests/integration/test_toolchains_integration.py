"""`python_venv` toolchains through the CLI: built once, shared across workspaces, keyed by content.

No package index is reachable here: the venvs hold either nothing beyond pip (an empty
requirement list) or a tiny wheel made in the test and installed with PIP_NO_INDEX and
PIP_FIND_LINKS. Each test points MLBUILD_TOOLCHAIN_DIR (set session-wide by tests/conftest.py)
at its own directory, so it sees venvs being created.
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

import pytest
from core.conftest import ROOT_BUILD, check_cache_consistent

CREATING = "creating virtual environment"

REPORT_PY = """\
import sys
try:
    import tinypkg
    version = tinypkg.VERSION
except ImportError:
    version = "none"
with open(sys.argv[1], "w") as f:
    f.write(f"venv={sys.prefix != sys.base_prefix} tinypkg={version}\\n")
"""
PKG = """\
report:
  rule: python
  toolchain: py_tiny
  main: report.py
  args: ["{{out}}"]
  outs: [report.txt]
"""


def files(requirements: list[str], in_file: bool = False) -> dict:
    """The workspace; its toolchain's requirements inline, or in a requirements file beside it."""
    declared = "requirements/tiny.txt" if in_file else requirements
    tree = {
        "BUILD.yaml": ROOT_BUILD,
        "toolchains/python.yaml": f"py_tiny: {{kind: python_venv, requirements: {declared!r}}}\n",
        "targets/p/BUILD.yaml": PKG,
        "targets/p/report.py": REPORT_PY,
    }
    if in_file:
        tree["toolchains/requirements/tiny.txt"] = "# pinned\n" + "".join(f"{r}\n" for r in requirements)
    return tree


def report(ws) -> str:
    return ws.out("", "//p:report", "report.txt").read_text()


@pytest.fixture
def toolchain_dir(tmp_path, monkeypatch) -> Path:
    directory = tmp_path / "toolchains"
    monkeypatch.setenv("MLBUILD_TOOLCHAIN_DIR", str(directory))
    return directory


def venvs(toolchain_dir: Path) -> list[Path]:
    return sorted(p for p in toolchain_dir.glob("py_tiny-*") if p.is_dir())


def identity(venv: Path) -> dict:
    """What rebuilding the venv would change: inodes and mtimes of it and its key files."""
    paths = [venv, venv / "bin" / "python", venv / "mlbuild-fingerprint.json", venv / "pyvenv.cfg"]
    return {str(p): (p.lstat().st_ino, p.lstat().st_mtime_ns) for p in paths}


def test_venv_is_built_once_and_reused_by_another_workspace(workspace, toolchain_dir, tmp_path, monkeypatch):
    one = workspace(files([]), name="one", cache=tmp_path / "cache-one")
    first = one.ok("build", "//...")
    assert f"toolchain py_tiny: {CREATING} (0 pinned requirements)" in first.stderr
    assert first.built == {"//p:report"}
    assert report(one) == "venv=True tinypkg=none\n"
    (venv,) = venvs(toolchain_dir)
    before = identity(venv)

    # Another workspace, another local cache, the same toolchain dir: no pip, the same venv.
    two = workspace(files([]), name="two", cache=tmp_path / "cache-two")
    second = two.ok("build", "//...")
    assert CREATING not in second.stderr
    assert second.built == {"//p:report"}  # its own cache is empty: the action ran, in that venv
    assert report(two) == "venv=True tinypkg=none\n"
    assert venvs(toolchain_dir) == [venv]
    assert identity(venv) == before
    assert two.key("", "//p:report") == one.key("", "//p:report")

    # A teammate whose venv lives elsewhere builds the same action key: a hit in a shared cache.
    monkeypatch.setenv("MLBUILD_TOOLCHAIN_DIR", str(tmp_path / "elsewhere"))
    three = workspace(files([]), name="three", cache=tmp_path / "cache-one")
    third = three.ok("build", "//...")
    assert CREATING in third.stderr
    assert third.hits == {"//p:report"}
    assert three.key("", "//p:report") == one.key("", "//p:report")
    assert identity(venv) == before
    check_cache_consistent(tmp_path / "cache-one")


def tiny_wheel(directory: Path) -> Path:
    """A pure-Python wheel of `tinypkg` 0.1 (the wheel format written out: no build backend needed)."""
    contents = {
        "tinypkg/__init__.py": b'VERSION = "0.1"\n',
        "tinypkg-0.1.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tinypkg\nVersion: 0.1\n",
        "tinypkg-0.1.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: mlbuild-tests\n"
                                       b"Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = ""
    for name, data in contents.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record += f"{name},sha256={digest},{len(data)}\n"
    contents["tinypkg-0.1.dist-info/RECORD"] = (record + "tinypkg-0.1.dist-info/RECORD,,\n").encode()
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / "tinypkg-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in contents.items():
            archive.writestr(name, data)
    return wheel


def test_requirement_set_enters_the_action_key(workspace, toolchain_dir, tmp_path, monkeypatch):
    wheelhouse = tmp_path / "wheelhouse"
    tiny_wheel(wheelhouse)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheelhouse))

    ws = workspace(files([], in_file=True))
    ws.ok("build", "//...")
    empty_key = ws.key("", "//p:report")
    assert report(ws) == "venv=True tinypkg=none\n"

    # Only the requirements file changes (no BUILD file does): the no-op fast path must notice.
    ws.write(files(["tinypkg==0.1"], in_file=True))
    pinned = ws.ok("build", "//...")
    assert f"toolchain py_tiny: {CREATING} (1 pinned requirements)" in pinned.stderr
    assert pinned.built == {"//p:report"}
    assert ws.key("", "//p:report") != empty_key
    assert report(ws) == "venv=True tinypkg=0.1\n"
    assert len(venvs(toolchain_dir)) == 2  # one per requirement set

    # Back to the empty set: its venv and its cached result are both still there.
    ws.write(files([], in_file=True))
    back = ws.ok("build", "//...")
    assert CREATING not in back.stderr
    assert back.built == set() and back.hits == {"//p:report"}
    assert ws.key("", "//p:report") == empty_key
    assert report(ws) == "venv=True tinypkg=none\n"
