"""The action key of a configured target, computed one way for the builder and for `explain`.

A key needs the digests of the action's inputs: workspace sources through the stat cache (one
stat per unchanged file), and the outputs of its dependencies from their results, seen at the
sandbox paths `out/<pkg>/<name>/...` where the action reads them. For every executed action
the key's canonical content is also kept beside the cache, so `explain` can later name what
changed between two keys.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping

from ..actions import Action, Input, action_key, canonical_encoding
from ..errors import ActionError
from ..hashing import StatCache
from ..storage.action_cache import ActionResult
from ..storage.atomic import write_atomically


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
                dep_results: Mapping[str, ActionResult]) -> tuple[str, list[Input]]:
    """(action key, inputs) of `action` once its dependencies have results."""
    inputs = action_inputs(action, workspace_root, stat_cache, dep_results)
    return action_key(action, inputs), inputs


def _note_path(cache_root: Path, key: str) -> Path:
    return Path(f"{cache_root}/keys/{key[:2]}/{key}")


def record_key_components(cache_root: Path, key: str, action: Action, inputs: list[Input]) -> None:
    """Keep the canonical key content of an executed action so `explain` can diff it later."""
    path = _note_path(cache_root, key)
    if not path.exists():  # explain's notes: losing one in a power cut costs nothing
        write_atomically(path, canonical_encoding(action.key_components(inputs)), durable=False)


def load_key_components(cache_root: Path, key: str) -> dict | None:
    try:
        return json.loads(_note_path(cache_root, key).read_bytes())
    except (OSError, ValueError):
        return None
