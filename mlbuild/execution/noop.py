"""The no-op fast path: prove a whole build up to date from file stats alone, skipping analysis.

After a fully successful `mlbuild build`, a manifest records everything the result depended
on, as stats: the BUILD and toolchain files read, every directory of the packages read (a new
file could match a glob), every directory searched for packages (a new one could match a
pattern), every source and data file, the venv toolchains' fingerprint files and base
interpreters, mlbuild's own code, and every output in the output tree. The next
identical request (same patterns, configuration tokens, cache and toolchain dirs) stats them
all; if nothing moved, nothing can have a different key and every output is intact, so the
answer is "up to date" without parsing or analyzing anything. Any difference, or a toolchain
detected on the host (whose state no file stat captures), means the full path runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..filesystem import make_directory
from ..hashing import digest_bytes
from ..storage.atomic import load_pickle, save_pickle

MANIFEST_FORMAT = 1
_CODE_DIR = Path(__file__).resolve().parent.parent


def _stamp(path: str):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def _code_stamps() -> dict:
    return {str(p): _stamp(str(p)) for p in sorted(_CODE_DIR.rglob("*.py"))}


def manifest_file(root: Path, request: list) -> Path:
    identity = json.dumps([MANIFEST_FORMAT, *request, os.environ.get("MLBUILD_TOOLCHAIN_DIR", "")])
    return root / ".mlbuild" / "noop" / f"{digest_bytes(identity.encode())[:24]}.pickle"


def check(root: Path, request: list) -> tuple[int, str] | None:
    """(number of targets, output tree) if the recorded build is still entirely up to date."""
    manifest = load_pickle(manifest_file(root, request), {})
    if manifest.get("format") != MANIFEST_FORMAT or manifest["code"] != _code_stamps():
        return None
    for path, stamp in manifest["files"].items():
        if _stamp(path) != stamp:
            return None
    return manifest["targets"], manifest["output_root"]


def record(root: Path, request: list, workspace, graph: dict, toolchain_files: list[str] | None,
           outputs: list[str], output_root: Path) -> None:
    """Write the manifest for a build that just succeeded; skipped when toolchains are host-detected."""
    path = manifest_file(root, request)
    if toolchain_files is None:
        path.unlink(missing_ok=True)
        return
    files = workspace.loaded_files | workspace.listed_directories | set(toolchain_files) | set(outputs)
    for package in {label.package for label in graph}:
        for directory, subdirs, _ in os.walk(workspace.package_dir(package)):
            files.add(directory)
    for target in graph.values():
        if target.action is not None:
            for _, source in target.action.sources:
                full = os.path.join(workspace.root, source)
                files.add(full)
                files.add(os.path.dirname(full))
    manifest = {"format": MANIFEST_FORMAT, "code": _code_stamps(), "targets": len(graph),
                "output_root": str(output_root),
                "files": {f: _stamp(f) for f in sorted(files)}}
    make_directory(path.parent, "mlbuild's state directory")
    save_pickle(path, manifest)
