"""The data every toolchain kind produces, and the version-constraint check they share."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from ..hashing import digest_bytes


class ToolchainMissing(Exception):
    """Detection failed: the tool is absent, too old, or unusable (message says which)."""


@dataclass(frozen=True)
class ResolvedToolchain:
    name: str
    kind: str
    fingerprint: dict
    paths: dict = field(default_factory=dict)  # named executables, e.g. {"python": ...}
    env: dict = field(default_factory=dict)  # set in the actions that use the toolchain
    bin_dirs: tuple[str, ...] = ()  # put first on the actions' PATH
    root: str | None = None  # a machine-specific install dir (a venv under the cache): never keyed
    # Files whose unchanged stats prove this resolution still holds (the no-op fast path);
    # empty for host-detected toolchains, which must be probed every time.
    evidence: tuple[str, ...] = ()

    @property
    def digest(self) -> str:
        return digest_bytes(json.dumps(self.fingerprint, sort_keys=True).encode())

    def describe(self) -> str:
        version = self.fingerprint.get("version", "")
        return f"{self.name} ({self.kind} {version})".replace(" )", ")")


def check_version(name: str, version: str, constraint: str | None) -> None:
    """Raise ToolchainMissing when `version` does not satisfy a PEP 440 `constraint`."""
    if not constraint:
        return
    try:
        ok = Version(version) in SpecifierSet(str(constraint))
    except (InvalidSpecifier, InvalidVersion) as exc:
        raise ToolchainMissing(f"cannot compare {name} version '{version}' with '{constraint}': {exc}") from None
    if not ok:
        raise ToolchainMissing(f"{name} {version} found, but {constraint} is required")


def run_probe(argv: list[str], timeout_s: float = 20.0) -> str:
    """Run a detection command and return its combined output, or raise ToolchainMissing."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
    except FileNotFoundError:
        raise ToolchainMissing(f"'{argv[0]}' not found") from None
    except subprocess.TimeoutExpired:
        raise ToolchainMissing(f"'{' '.join(argv)}' did not answer within {timeout_s:.0f} s") from None
    if done.returncode != 0:
        raise ToolchainMissing(f"'{' '.join(argv)}' failed (exit {done.returncode}): {done.stderr.strip()[:300]}")
    return done.stdout + done.stderr
