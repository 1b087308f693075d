"""The no-op fast path: prove a whole build up to date from file stats alone, skipping analysis.

After a fully successful `mlbuild build`, a manifest records everything the result depended
on, as stats: what its analysis was made from, as analysis saw it (analysis/cache.py: the
BUILD and toolchain files, the directories searched for packages and the packages' directory
trees, the venv toolchains' fingerprint files, mlbuild's own code), every source and data
file, and every output in the output tree. The next identical request (same patterns,
configuration tokens, cache and toolchain dirs) stats them all; if nothing moved, nothing can
have a different key and every output is intact, so the answer is "up to date" without
parsing or analyzing anything. Any difference means the full path runs. No manifest is
written where the analysis's stamps cannot prove it: a toolchain detected on the host (whose
state no file stat captures), or a file changed while analysis ran.
"""

from __future__ import annotations

from pathlib import Path

from ..analysis.cache import Analyzed, code_stamps, file_stamp, request_file, source_paths, unchanged
from ..filesystem import make_directory
from ..storage.atomic import load_pickle, save_pickle

MANIFEST_FORMAT = 1


def manifest_file(root: Path, request: list) -> Path:
    return request_file(root, "noop", [MANIFEST_FORMAT, *request])


def check(root: Path, request: list) -> tuple[int, str] | None:
    """(number of targets, output tree) if the recorded build is still entirely up to date."""
    manifest = load_pickle(manifest_file(root, request), {})
    if (manifest.get("format") != MANIFEST_FORMAT or manifest["code"] != code_stamps()
            or not unchanged(manifest["files"])):
        return None
    return manifest["targets"], manifest["output_root"]


def record(root: Path, request: list, analyzed: Analyzed, graph: dict, outputs: list[str], output_root: Path) -> None:
    """Write the manifest for a build of `graph` (from `analyzed`) that just succeeded. What
    analysis read keeps the stamps it had when analysis ended: a BUILD file edited while the
    build ran is seen next time."""
    path = manifest_file(root, request)
    if analyzed.stamps is None:
        path.unlink(missing_ok=True)
        return
    files = source_paths(root, graph) | set(outputs)
    manifest = {"format": MANIFEST_FORMAT, "code": code_stamps(), "targets": len(graph),
                "output_root": str(output_root),
                "files": {**analyzed.stamps, **{f: file_stamp(f) for f in sorted(files)}}}
    make_directory(path.parent, "mlbuild's state directory")
    save_pickle(path, manifest)
