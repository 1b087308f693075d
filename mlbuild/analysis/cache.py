"""The analysis cache: a request's analyzed graph, reused while nothing it was made from moved.

Loading and analyzing 10,000 targets takes one to two seconds, which every build that is not
a no-op pays (a source edited, a test run again) where ninja reads the build file its
generator wrote. What analysis reads is known: the BUILD and toolchain files, the directories
searched for packages, each package's directory tree (a glob could match a new file), every
directory of a `data_dir` dataset, each source's directory and kind (a plain file inside the
workspace, or a symlink to one), the venv toolchains' fingerprint files, and mlbuild's own
code. After an analysis they are recorded as stats beside the pickled graph, under the
request's identity (patterns, configuration tokens, sweeps, distdirs, cache and toolchain
directories); the next analysis of the same request stats them and, if none moved, unpickles
the graph instead. The entries of the KEPT_ENTRIES requests used last are kept.

A source's bytes are not among them: keys are computed from digests when the build runs. So
a source edited in place keeps the analysis, and one replaced (renamed over, made a symlink,
retargeted) does not: its stamp is its kind and inode, and its target's for a symlink.
Host-detected toolchains (no stat sees a pip install) disable the cache, as they disable the
no-op fast path (execution/noop.py, whose manifest adds sources and outputs to these inputs).
A file that changed while analysis ran may have been read before the change: its stat would
vouch for what was not read, so when one has changed since just before analysis started
(racily clean, as git calls it) neither an entry nor a no-op manifest is written.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import stat
from dataclasses import dataclass
from pathlib import Path

from ..filesystem import make_directory
from ..hashing import digest_bytes
from ..storage.atomic import load_pickle, save_pickle

FORMAT = 1
KEPT_ENTRIES = 16  # requests whose analysis is kept: the ones used last
_CODE_DIR = Path(__file__).resolve().parent.parent
# A file's mtime comes from the kernel's coarse clock, a tick or so behind the clock analysis
# starts by; and some filesystems keep whole seconds. A second of margin covers both.
_RACY_MARGIN_NS = 1_000_000_000


@dataclass(frozen=True)
class Analyzed:
    """A request's analysis: its requests and graph, and what they were made from."""

    requests: list
    graph: dict
    warnings: list[str]  # what analysis warned of: said again when the analysis is reused
    # The file_stamp of every file and directory analysis read (but sources), taken when it
    # ended; None when they cannot prove it: a toolchain was detected on the host, or one of
    # them changed while analysis ran.
    stamps: dict | None


def file_stamp(path: str):
    """What a stat says about whether `path` changed: size, mtime, inode and mode (a chmod
    moves no mtime, and an action key holds a source's executable bit); None if absent."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_mode)


def unchanged(stamps: dict) -> bool:
    """Whether every recorded `file_stamp` still holds (stopping at the first that moved)."""
    return all(file_stamp(path) == stamp for path, stamp in stamps.items())


@functools.cache
def code_stamps() -> dict:
    """mlbuild's own code: a changed mlbuild may analyze (and build) differently. Taken once
    per process, when first asked (before anything is analyzed): the code this process runs,
    even if an upgrade replaces the files while it builds."""
    return {str(p): file_stamp(str(p)) for p in sorted(_CODE_DIR.rglob("*.py"))}


def source_paths(root: Path, graph: dict) -> set[str]:
    """The path of every source of `graph`'s actions (data files outside the workspace included)."""
    return {os.path.join(root, source) for target in graph.values() if target.action is not None
            for _, source in target.action.sources}


def request_file(root: Path, kind: str, identity: list) -> Path:
    """Where the `kind` cache (a directory of `.mlbuild/`) keeps its entry for a request: named
    by a digest of the request's identity and of the toolchain directory it resolves venvs in."""
    key = json.dumps([*identity, os.environ.get("MLBUILD_TOOLCHAIN_DIR", "")])
    return root / ".mlbuild" / kind / f"{digest_bytes(key.encode())[:24]}.pickle"


def stamps_of(workspace, graph: dict, toolchain_files: list[str] | None, started_ns: int) -> dict | None:
    """`Analyzed.stamps` for an analysis of `graph` whose first read was after `started_ns`
    (time.time_ns())."""
    if toolchain_files is None:
        return None
    read = workspace.loaded_files | workspace.listed_directories | set(toolchain_files)
    for package in {label.package for label in graph}:
        for directory, _, _ in os.walk(workspace.package_dir(package)):
            read.add(directory)
    read.update(os.path.dirname(source) for source in source_paths(workspace.root, graph))
    stamps = {path: file_stamp(path) for path in sorted(read)}
    racy_after = started_ns - _RACY_MARGIN_NS
    if any(stamp is not None and stamp[1] >= racy_after for stamp in stamps.values()):
        return None
    return stamps


def load(root: Path, identity: list) -> Analyzed | None:
    """The recorded analysis of `identity` if nothing it was made from has moved since."""
    path = request_file(root, "analysis", [FORMAT, *identity])
    entry = load_pickle(path, {})
    if entry.get("format") != FORMAT or entry["code"] != code_stamps() or not unchanged(entry["files"]):
        return None
    if any(_source_stamp(source) != recorded for source, recorded in entry["sources"].items()):
        return None
    requests, graph = pickle.loads(entry["graph"])
    try:
        os.utime(path)  # used now: pruning keeps the entries used last
    except OSError:
        pass
    return Analyzed(requests, graph, entry["warnings"], entry["files"])


def save(root: Path, identity: list, analyzed: Analyzed) -> None:
    """Record `analyzed` for `identity`, unless its stamps cannot prove it."""
    path = request_file(root, "analysis", [FORMAT, *identity])
    if analyzed.stamps is None:
        path.unlink(missing_ok=True)
        return
    entry = {"format": FORMAT, "code": code_stamps(), "files": analyzed.stamps, "warnings": analyzed.warnings,
             "sources": {source: _source_stamp(source) for source in sorted(source_paths(root, analyzed.graph))},
             "graph": pickle.dumps((analyzed.requests, analyzed.graph), protocol=pickle.HIGHEST_PROTOCOL)}
    make_directory(path.parent, "mlbuild's state directory")
    save_pickle(path, entry)
    _prune(path.parent)


def _prune(directory: Path) -> None:
    """Keep the KEPT_ENTRIES entries used last (one of 100,000 targets is about 37 MB)."""
    used = []
    for entry in directory.glob("*.pickle"):
        try:
            used.append((entry.stat().st_mtime_ns, entry))
        except FileNotFoundError:  # pruned by another mlbuild meanwhile
            pass
    for _, entry in sorted(used, reverse=True)[KEPT_ENTRIES:]:
        entry.unlink(missing_ok=True)


def _source_stamp(path: str):
    """What analysis reads of a source: its kind and inode, and its target's if a symlink."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISLNK(st.st_mode):
        return (stat.S_IFMT(st.st_mode), st.st_ino)
    try:
        target = os.stat(path)
    except OSError:
        return (stat.S_IFLNK, st.st_ino, os.readlink(path), None)
    return (stat.S_IFLNK, st.st_ino, os.readlink(path), stat.S_IFMT(target.st_mode), target.st_ino)
