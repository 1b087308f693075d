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
from ..loading.labels import Label
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
    """Node → fingerprint for every target of an analyzed graph, dependencies first (an
    explicit stack: a chain thousands of targets deep must not hit Python's recursion limit)."""
    stat_cache = stat_cache or StatCache(None)
    result: dict = {}
    for root in graph:
        stack = [root]
        while stack:
            node = stack[-1]
            if node in result:
                stack.pop()
                continue
            missing = [dep for dep in graph[node].deps if dep not in result]
            if missing:
                stack.extend(missing)
                continue
            stack.pop()
            result[node] = digest_bytes(canonical_encoding(static_components(workspace, graph[node], result,
                                                                             stat_cache)))
    return result


def static_components(workspace, target, known: dict, stat_cache: StatCache) -> dict:
    """The key content of `target` with each dependency's outputs replaced by the dependency's
    fingerprint (in `known`): what `explain --against-config` compares."""
    if target.action is None:
        return {"rule": target.rule, "deps": sorted((str(dep), known[dep]) for dep in target.deps)}
    inputs = [Input(path, stat_cache.digest(workspace.root / relative)) for path, relative in target.action.sources]
    inputs += [Input(f"dep:{target.action.dep_dir(dep)}", known[Label.parse(dep)]) for dep in target.action.deps]
    return target.action.key_components(inputs)
