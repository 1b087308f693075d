"""Toolchains: tools detected on the host or built (virtual environments), with fingerprints.

A fingerprint is what about a tool can change an action's result (name, version, GPU arch,
exact package versions). Its digest enters the key of every action that uses the toolchain,
so two teammates with different compilers never share a wrong cache hit (bazel#4558).
"""

from .base import ResolvedToolchain, ToolchainMissing
from .registry import ToolchainRegistry

__all__ = ["ResolvedToolchain", "ToolchainMissing", "ToolchainRegistry"]
