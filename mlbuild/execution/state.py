"""The workspace's memory of its last build per configuration (ninja's .ninja_log analog).

For each target: the action key it was built with, its result manifest, and the stat of each
file materialized in the output tree. A target whose key is unchanged and whose output files
still have those stats is up to date without touching the cache at all, which keeps a no-op
build at one stat per file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..storage.action_cache import ActionResult
from ..storage.atomic import load_pickle, save_pickle


@dataclass(frozen=True)
class TargetState:
    key: str
    result: ActionResult
    stats: tuple[tuple[str, int, int, int], ...]  # (file, size, mtime_ns, inode)
    previous_key: str | None = None  # the key before the last change, for `explain`
    materialized: bool = True  # False: the outputs stayed in the remote CAS (build without the bytes)


def snapshot(directory: str, result: ActionResult) -> tuple[tuple[str, int, int, int], ...]:
    stats = []
    for output in result.outputs:
        path = f"{directory}/{output.path}"
        st = os.stat(path)
        stats.append((path, st.st_size, st.st_mtime_ns, st.st_ino))
    return tuple(stats)


def intact(state: TargetState) -> bool:
    for path, size, mtime_ns, inode in state.stats:
        try:
            st = os.stat(path)
        except OSError:
            return False
        if (st.st_size, st.st_mtime_ns, st.st_ino) != (size, mtime_ns, inode):
            return False
    return True


class BuildState:
    def __init__(self, file: Path):
        self.file = file
        self.targets: dict[str, TargetState] = load_pickle(file, {})
        self._dirty = False

    @classmethod
    def of(cls, workspace, configuration_name: str) -> "BuildState":
        """The state of `workspace`'s last build under one configuration."""
        return cls(workspace.state_dir / "state" / f"{configuration_name}.pickle")

    def get(self, label: str) -> TargetState | None:
        return self.targets.get(label)

    def record(self, label: str, state: TargetState) -> None:
        self.targets[label] = state
        self._dirty = True

    def save(self) -> None:
        if self._dirty:
            save_pickle(self.file, self.targets)
            self._dirty = False
