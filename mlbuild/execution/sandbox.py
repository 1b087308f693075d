"""The sandbox: a fresh directory holding only an action's declared inputs.

Sources are hardlinked from the workspace and dependency outputs from the CAS (a copy only
across filesystems); the action runs with cwd at the sandbox root and a scrubbed env; then
only declared outputs are collected. An output that is missing, or a symlink that points
outside the sandbox, fails the action with a clear message.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from ..actions import SANDBOX_PLACEHOLDER, Action
from ..errors import ActionError
from ..storage.action_cache import ActionResult
from ..storage.cas import ContentStore


class Sandbox:
    def __init__(self, base: Path, action: Action):
        self.action = action
        self.root = base / uuid.uuid4().hex[:16]
        self.root.mkdir(parents=True)
        for special in (".home", ".tmp"):
            (self.root / special).mkdir()

    def substitute(self, text: str) -> str:
        return text.replace(SANDBOX_PLACEHOLDER, str(self.root))

    def env(self) -> dict[str, str]:
        return {k: self.substitute(v) for k, v in self.action.env}

    def argv(self) -> list[str]:
        return [self.substitute(a) for a in self.action.argv]

    def stage(self, workspace_root: Path, dep_results: dict[str, ActionResult], cas: ContentStore) -> None:
        for sandbox_path, relative in self.action.sources:
            _link_or_copy(workspace_root / relative, self.root / sandbox_path)
        for label, result in dep_results.items():
            stage_result(self.root / label_output_dir(label), result, cas)
        for path in (*self.action.outputs, *self.action.output_dirs):
            (self.root / path).parent.mkdir(parents=True, exist_ok=True)

    def collect(self, label: str) -> tuple[list[tuple[str, Path, bool]], list[str], list[tuple[str, str]]]:
        """Declared outputs as (path relative to the target's outdir, file, executable),
        directories, and in-tree symlinks; raise ActionError on anything missing or escaping."""
        outdir = label_output_dir(label)
        files, directories, symlinks = [], [], []
        for path in self.action.outputs:
            full = self.root / path
            if not full.exists() and not full.is_symlink():
                raise ActionError(
                    f"{label} did not produce its declared output '{_relative(path, outdir)}'",
                    hint=f"the command must write {path} (relative to its working directory); "
                    "use {{out}} or {{out:NAME}} in the command",
                )
            resolved = self._inside(full, label)
            if not resolved.is_file():
                raise ActionError(f"{label}: declared output '{_relative(path, outdir)}' is not a regular file",
                                  hint="declare directories under out_dirs")
            files.append((_relative(path, outdir), resolved, os.access(resolved, os.X_OK)))
        for path in self.action.output_dirs:
            full = self.root / path
            if not full.is_dir() or full.is_symlink():
                raise ActionError(f"{label} did not produce its declared output directory '{_relative(path, outdir)}'")
            directories.append(_relative(path, outdir))
            for current, subdirs, names in os.walk(full):
                for name in sorted(subdirs + names):
                    entry = Path(current) / name
                    relative = _relative(str(entry.relative_to(self.root)), outdir)
                    if entry.is_symlink():
                        target = os.readlink(entry)
                        self._inside(entry, label, within=full)
                        symlinks.append((relative, target))
                    elif entry.is_dir():
                        directories.append(relative)
                    elif entry.is_file():
                        files.append((relative, entry, os.access(entry, os.X_OK)))
                    else:
                        raise ActionError(f"{label}: output '{relative}' is not a file, directory or symlink")
                subdirs[:] = [d for d in subdirs if not (Path(current) / d).is_symlink()]
        return files, directories, symlinks

    def _inside(self, path: Path, label: str, within: Path | None = None) -> Path:
        """The real path of `path`, which must stay inside `within` (default: the sandbox)."""
        boundary = (within or self.root).resolve()
        resolved = path.resolve()
        if resolved != boundary and boundary not in resolved.parents:
            raise ActionError(
                f"{label}: output '{path.relative_to(self.root)}' is a symlink escaping the sandbox "
                f"(points to {os.readlink(path) if path.is_symlink() else resolved})",
                hint="outputs must be real files inside the action's output directory",
            )
        return resolved

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def label_output_dir(label: str) -> str:
    package, _, name = label[2:].partition(":")
    return f"out/{package}/{name}"


def stage_result(directory: Path, result: ActionResult, cas: ContentStore) -> None:
    """Lay a result's outputs out under `directory` (hardlinks to the CAS)."""
    for sub in result.directories:
        (directory / sub).mkdir(parents=True, exist_ok=True)
    for output in result.outputs:
        cas.materialize(output.digest, directory / output.path, output.executable)
    for path, target in result.symlinks:
        link = directory / path
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(target, link)


def _relative(path: str, outdir: str) -> str:
    return path[len(outdir) + 1:] if path.startswith(outdir + "/") else path


def _link_or_copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)
