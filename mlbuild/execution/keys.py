"""The action key of a configured target, computed one way for the builder and for `explain`.

A key needs the digests of the action's inputs: workspace sources through the stat cache (one
stat per unchanged file), and the outputs of its dependencies from their results, seen at the
sandbox paths `out/<pkg>/<name>/...` where the action reads them. What a key is a digest of is
kept in its action-cache entry (storage/action_cache.py), so `explain` can later name what
changed between two keys.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from ..actions import Action, Input, keyed_encoding
from ..errors import ActionError
from ..hashing import StatCache
from ..storage.action_cache import ActionResult


def action_inputs(action: Action, workspace_root: Path, stat_cache: StatCache,
                  dep_results: Mapping[str, ActionResult]) -> list[Input]:
    """Every input of `action` with its digest; `dep_results` holds each dependency's result."""
    root = str(workspace_root)
    inputs = []
    for sandbox_path, relative in action.sources:
        path = os.path.join(root, relative)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise ActionError(f"{action.label}: input {path} disappeared during the build",
                              hint="run the build again once the files stop changing") from None
        inputs.append(Input(sandbox_path, stat_cache.digest(path, st), bool(st.st_mode & 0o111)))
    for dep in action.deps:
        base = action.dep_dir(dep)
        for output in dep_results[dep].outputs:
            inputs.append(Input(f"{base}/{output.path}", output.digest, output.executable))
    return inputs


def compute_key(action: Action, workspace_root: Path, stat_cache: StatCache,
                dep_results: Mapping[str, ActionResult]) -> tuple[str, bytes, list[Input]]:
    """(action key, the canonical encoding it is a digest of, inputs) of `action` once its
    dependencies have results; the encoding goes into the action's cache entry."""
    inputs = action_inputs(action, workspace_root, stat_cache, dep_results)
    return (*keyed_encoding(action, inputs), inputs)
