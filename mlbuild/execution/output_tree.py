"""The output tree: `mlbuild-out/<config>/<pkg>/<name>/`, where users find what a build made.

Each target's directory holds hardlinks to its result's CAS blobs (plus its declared
directories and in-tree symlinks), replaced whole whenever the target's result changes.
`mlbuild-bin` points at the tree of the configuration built last. Because the tree's files
are the CAS's inodes, it can give blobs back: after `cache gc` dropped the blobs of a target
whose tree is intact, `readopt` links them into the CAS again before a dependent stages them.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from ..filesystem import make_directory
from ..storage.action_cache import ActionResult
from ..storage.cas import ContentStore

OUTPUT_ROOT = "mlbuild-out"
CONVENIENCE_LINK = "mlbuild-bin"


class OutputTree:
    def __init__(self, workspace_root: Path, configuration_name: str, cas: ContentStore):
        self.workspace_root = workspace_root
        self.root = workspace_root / OUTPUT_ROOT / configuration_name
        self.cas = cas

    def directory(self, label) -> str:
        """`label`'s directory, as a string: every built target's is laid out and stat'ed, and a
        Path per target costs more than its syscalls."""
        package, _, name = str(label)[2:].partition(":")
        return f"{self.root}/{package}/{name}" if package else f"{self.root}/{name}"

    def materialize(self, label, result: ActionResult) -> str:
        """Replace `label`'s directory by `result`'s outputs; returns the directory."""
        directory = self.directory(label)
        try:
            os.mkdir(directory)  # the common case, one syscall: nothing there yet, the parent is
        except OSError:
            self.remove(label)
            make_directory(directory, f"the output directory of {label}")
        lay_out(directory, result, self.cas)
        return directory

    def remove(self, label) -> str:
        """Drop `label`'s directory (also all a result left in the remote CAS gets); returns it."""
        directory = self.directory(label)
        try:
            st = os.lstat(directory)
        except FileNotFoundError:
            return directory
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(directory)  # only this target's: analysis keeps targets' directories apart
        else:
            os.unlink(directory)
        return directory

    def readopt(self, label, result: ActionResult) -> None:
        """Put back into the CAS any blob of `label`'s result that `cache gc` dropped, from the
        tree (the caller knows the tree is intact: same stats as when it was written)."""
        for output in result.outputs:
            if not self.cas.contains(output.digest, output.executable):  # rare: the tree is looked at only then
                path = f"{self.directory(label)}/{output.path}"
                if os.path.isfile(path):
                    self.cas.put_file(path, output.executable, digest=output.digest, take=True)

    def point_convenience_link(self) -> None:
        point_convenience_link(self.workspace_root, self.root)


def point_convenience_link(workspace_root: Path, output_root: Path) -> None:
    """Make mlbuild-bin point at the output tree of the configuration built last."""
    link = workspace_root / CONVENIENCE_LINK
    target = os.path.relpath(output_root, workspace_root)
    if link.is_symlink() and os.readlink(link) == target:
        return
    tmp = link.with_name(f".{CONVENIENCE_LINK}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def lay_out(directory: str, result: ActionResult, cas: ContentStore) -> None:
    """Lay a result's outputs out under `directory` as hardlinks to the CAS."""
    for sub in result.directories:
        os.makedirs(f"{directory}/{sub}", exist_ok=True)
    for output in result.outputs:
        cas.materialize(output.digest, f"{directory}/{output.path}", output.executable)
    make_symlinks(directory, result)


def make_symlinks(directory: str, result: ActionResult) -> None:
    for path, target in result.symlinks:
        link = Path(directory, path)
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(target, link)
