"""Actions: the unit of execution, as pure serializable data, and their cache key.

An action says what to run (argv, env), what it reads (workspace sources, and the outputs of
the targets it depends on, staged under `out/<pkg>/<name>/`), what it must produce, and which
toolchains it uses. Because it is plain data it could be shipped to another machine.

The action key is blake3 over a canonical JSON encoding of exactly what can change the
result: implementation version, argv, the env the action sees, each input's path and digest,
the declared outputs, toolchain fingerprints and executor parameters. Labels, configuration
values the action never reads, resources, timeouts, tags, download URLs and where a toolchain
is installed are not in it: the same download under `--config=cpu` and `--config=cuda` is one
cache entry, and two teammates with their venvs in different cache dirs share hits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .hashing import digest_bytes

# Bump when the canonical encoding or the sandbox layout changes meaning.
KEY_SCHEMA_VERSION = 1
SANDBOX_PLACEHOLDER = "{{sandbox}}"


def output_dir(label) -> str:
    """Where a target's outputs live inside a sandbox, `out/<pkg>/<name>`: the action writes
    there, and dependents read them there (the one place this layout is spelled)."""
    package, _, name = str(label)[2:].partition(":")
    return f"out/{package}/{name}"


def toolchain_root_placeholder(name: str) -> str:
    """Stands for a toolchain's install dir in argv and env, so the key holds the toolchain's
    fingerprint but not where this machine happens to keep it."""
    return "{{toolchain_root:" + name + "}}"


@dataclass(frozen=True, slots=True)
class Resources:
    """What an action occupies while it runs; the scheduler never oversubscribes these.

    `custom` names resources that only a cluster's nodes declare (an accelerator type, a
    licensed tool): a remote executor places the action on a node that has them; local
    execution ignores them.
    """

    cpus: float = 1.0
    gpus: int = 0
    memory_mb: int = 0
    exclusive: bool = False
    custom: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True, slots=True)
class Input:
    path: str  # where the action sees it, relative to its sandbox
    digest: str
    executable: bool = False


@dataclass(frozen=True, slots=True)
class Action:
    label: str  # the target that declared it (display only, not in the key)
    mnemonic: str  # e.g. Command, Download, Bench (display only)
    implementation: str  # rule name and version, e.g. "command/1"
    argv: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()  # values may contain {{sandbox}}
    sources: tuple[tuple[str, str], ...] = ()  # (sandbox path, workspace-relative or absolute path)
    deps: tuple[str, ...] = ()  # graph nodes (labels, LABEL@CONFIG) whose outputs this action reads
    dep_dirs: tuple[tuple[str, str], ...] = ()  # (dep, sandbox dir) where not output_dir(dep)
    outputs: tuple[str, ...] = ()  # sandbox-relative files it must produce
    output_dirs: tuple[str, ...] = ()  # sandbox-relative directories it must produce
    toolchains: tuple[tuple[str, str], ...] = ()  # (name, fingerprint digest)
    executor: str = "subprocess"  # which executor runs it
    params: tuple[tuple[str, object], ...] = ()  # executor parameters (json-able values)
    urls: tuple[str, ...] = ()  # where a download may come from: its checksum fixes the content, so not keyed
    toolchain_roots: tuple[tuple[str, str], ...] = ()  # (name, install dir) behind {{toolchain_root:NAME}}; not keyed
    resources: Resources = field(default_factory=Resources)
    timeout_s: float | None = None
    tags: tuple[str, ...] = ()
    network: bool = False  # may reach the network; otherwise it runs in an empty network namespace
    # The image ID it runs in, and the runtime binary, from its container toolchain; not keyed:
    # the image's digest is, as that toolchain's fingerprint.
    container: str | None = None
    container_runtime: str | None = None

    def dep_dir(self, dep: str) -> str:
        """The sandbox directory holding a dependency's outputs (inputs carry it, so it is keyed)."""
        for name, directory in self.dep_dirs:
            if name == dep:
                return directory
        return output_dir(dep)

    @property
    def cacheable(self) -> bool:
        return "no-cache" not in self.tags

    @property
    def remotable(self) -> bool:
        return "no-remote" not in self.tags

    def key_components(self, inputs: list[Input]) -> dict:
        """The canonical content of the key; `explain` diffs two of these."""
        return {
            "schema": KEY_SCHEMA_VERSION,
            "implementation": self.implementation,
            "executor": self.executor,
            "argv": list(self.argv),
            "env": sorted([k, v] for k, v in self.env),
            "inputs": sorted([i.path, i.digest, i.executable] for i in inputs),
            "outputs": sorted(self.outputs),
            "output_dirs": sorted(self.output_dirs),
            "toolchains": sorted([n, d] for n, d in self.toolchains),
            "params": sorted([k, v] for k, v in self.params),
        }


# One encoder for every key: json.dumps with options would make one per call.
_CANONICAL_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_encoding(components: dict) -> bytes:
    return _CANONICAL_ENCODER.encode(components).encode()


def keyed_encoding(action: Action, inputs: list[Input]) -> tuple[str, bytes]:
    """(the action key, the canonical encoding of its components that it is a digest of)."""
    encoding = canonical_encoding(action.key_components(inputs))
    return digest_bytes(encoding), encoding


def action_key(action: Action, inputs: list[Input]) -> str:
    return keyed_encoding(action, inputs)[0]
