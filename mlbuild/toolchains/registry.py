"""Resolve toolchains by name: detect or build each once per process, remember failures."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import BuildFileError, did_you_mean
from ..loading.schema import (
    SCALAR_TEXT, TEXT, Boolean, Choice, Field, ListOf, MapOf, Nullable, OneOf, Record, Regex, RelativePath, Text,
    VersionSpec,
)
from ..loading.yamlsource import LocatedDict
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

# What a declaration under toolchains/ may hold, per kind; checked when the workspace's
# toolchains are first looked at, so detectors only see well-typed values.
_COMMON = {
    "kind": Field(Choice(*KINDS), required=True),
    "version": Field(VersionSpec(), doc="a PEP 440 constraint on the detected version"),
    "doc": Field(TEXT),
}
DECLARATIONS = {
    kind: Record({**_COMMON, **fields}, f"a {kind} toolchain declaration", fill=False)
    for kind, fields in {
        "python": {"interpreter": TEXT, "packages": MapOf(Nullable(VersionSpec()), noun="package")},
        "python_venv": {"interpreter": TEXT, "requirements": OneOf((str, RelativePath("a requirements file")),
                                                                    (list, ListOf(SCALAR_TEXT)))},
        "cuda": {"cuda_home": TEXT, "require_gpu": Boolean()},
        "tensorrt": {"trtexec": TEXT, "tensorrt_root": TEXT},
        "tool": {"binary": Text("a program name or path", pattern=r"[^/\s]+|/\S+"),
                 "version_args": ListOf(SCALAR_TEXT), "version_regex": Regex(groups=1)},
        "container": {"image": TEXT, "digest": TEXT, "tarball": TEXT, "runtime": TEXT},
    }.items()
}


def check_declaration(name: str, decl: LocatedDict) -> LocatedDict:
    """The declaration, checked against its kind's schema."""
    path = f"toolchain '{name}'"
    kind = Record({"kind": Field(Choice(*KINDS), required=True)}, fill=False).check(
        {"kind": decl.get("kind")}, decl.where("kind"), path)["kind"]
    return DECLARATIONS[kind].check(decl, decl.location, path)


class ToolchainRegistry:
    def __init__(self, decls: dict, cache_root: Path, log=print, distdirs=()):
        self._decls = {name: (check_declaration(name, decl), file) for name, (decl, file) in decls.items()}
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
            kind = decl["kind"]
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
