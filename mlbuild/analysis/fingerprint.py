"""Static target fingerprints: what an action key would be, computed without building.

An action key needs its dependencies' output digests, which only a build knows. A target's
fingerprint replaces each dependency's outputs by that dependency's own fingerprint, and a
toolchain's detected fingerprint by a digest of its declaration (requirements included), so
two revisions of a workspace can be compared from their graphs alone, as bazel-diff and
target-determinator do. Equal fingerprints mean equal keys; a changed one means the target's
key (transitively) changed.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..actions import Input, canonical_encoding
from ..hashing import StatCache, digest_bytes
from ..toolchains.base import ResolvedToolchain
from ..toolchains.registry import undetected
from ..toolchains.venv import requirement_lines


class DeclaredToolchains:
    """Toolchains fingerprinted by their declarations: nothing is detected or built."""

    def __init__(self, registry):
        self._registry = registry

    def resolve(self, name: str, referenced_at=None) -> ResolvedToolchain:
        decl, file = self._registry.declaration(name, referenced_at)
        facts = {"declaration": json.loads(json.dumps(decl, default=str))}
        if decl.get("kind") == "python_venv":
            facts["requirements"] = requirement_lines(decl, Path(file))
        return undetected(name, str(decl.get("kind")), facts)


def fingerprints(workspace, graph: dict, stat_cache: StatCache | None = None) -> dict:
    """Label → fingerprint for every target of an analyzed graph."""
    stat_cache = stat_cache or StatCache(None)
    result: dict = {}

    def visit(label):
        if label in result:
            return result[label]
        target = graph[label]
        dep_prints = {str(dep): visit(dep) for dep in target.deps}
        if target.action is None:
            body = {"rule": target.rule, "deps": sorted(dep_prints.items())}
        else:
            inputs = [Input(path, stat_cache.digest(workspace.root / relative))
                      for path, relative in target.action.sources]
            inputs += [Input(f"dep:{dep}", dep_prints[dep]) for dep in target.action.deps]
            body = target.action.key_components(inputs)
        result[label] = digest_bytes(canonical_encoding(body))
        return result[label]

    for label in graph:
        visit(label)
    return result
