"""Resolve toolchains by name: detect or build each once per process, remember failures."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import BuildFileError, did_you_mean
from . import container, host, venv
from .base import ResolvedToolchain, ToolchainMissing

TOOLCHAIN_DIR_ENV = "MLBUILD_TOOLCHAIN_DIR"

_DETECTORS = {
    "python": host.detect_python,
    "cuda": host.detect_cuda,
    "tensorrt": host.detect_tensorrt,
    "tool": host.detect_tool,
}
KINDS = sorted([*_DETECTORS, "python_venv", "container"])


class ToolchainRegistry:
    def __init__(self, decls: dict, cache_root: Path, log=print, distdirs=()):
        self._decls = decls  # name -> (LocatedDict, file)
        self._distdirs = tuple(distdirs)  # air-gapped: wheels and images come from these only
        self._venv_root = Path(os.environ.get(TOOLCHAIN_DIR_ENV) or cache_root / "toolchains")
        self._log = log
        self._resolved: dict[str, ResolvedToolchain | ToolchainMissing] = {}

    def names(self) -> list[str]:
        return sorted(self._decls)

    def declaration(self, name: str, referenced_at=None):
        if name not in self._decls:
            raise BuildFileError(
                f"unknown toolchain '{name}'", referenced_at,
                did_you_mean(name, self._decls) or f"declared toolchains: {', '.join(self.names()) or 'none'}",
            )
        return self._decls[name]

    def evidence(self) -> list[str] | None:
        """Files proving every toolchain resolved so far would resolve the same, or None if
        one was detected on the host (then only probing again can tell)."""
        files = []
        for result in self._resolved.values():
            if isinstance(result, ToolchainMissing) or not result.evidence:
                return None
            files += result.evidence
        return files

    def resolve(self, name: str, referenced_at=None) -> ResolvedToolchain:
        """The toolchain, or ToolchainMissing saying why it is unusable on this host."""
        if name not in self._resolved:
            decl, file = self.declaration(name, referenced_at)
            kind = decl.get("kind")
            if kind not in KINDS:
                raise BuildFileError(
                    f"toolchain '{name}' has unknown kind '{kind}'", decl.where("kind"),
                    f"kinds: {', '.join(KINDS)}",
                )
            try:
                if kind == "python_venv":
                    self._resolved[name] = venv.resolve_venv(name, decl, file, self._venv_root, self._log,
                                                             self._distdirs)
                elif kind == "container":
                    self._resolved[name] = container.resolve_container(name, decl, file, self._distdirs)
                else:
                    self._resolved[name] = _DETECTORS[kind](name, decl)
            except ToolchainMissing as exc:
                self._resolved[name] = exc
        result = self._resolved[name]
        if isinstance(result, ToolchainMissing):
            raise result
        return result


class UndetectedToolchains:
    """Stands in for the registry when only the graph's shape matters (`query`): nothing is
    detected or built, and paths read as <name>."""

    def __init__(self, registry: ToolchainRegistry):
        self._registry = registry

    def resolve(self, name: str, referenced_at=None) -> ResolvedToolchain:
        decl, _ = self._registry.declaration(name, referenced_at)
        return undetected(name, str(decl.get("kind")), {"undetected": True})


def undetected(name: str, kind: str, fingerprint: dict) -> ResolvedToolchain:
    """A toolchain known only by its declaration: its paths read as <name.tool>."""
    tool = {"python": "python", "python_venv": "python", "cuda": "nvcc", "tensorrt": "trtexec",
            "container": "image"}.get(kind, name)
    return ResolvedToolchain(name, kind, fingerprint, paths={tool: f"<{name}.{tool}>"})
