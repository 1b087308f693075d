"""The action cache: action key → result manifest (what an action produced, by digest).

An entry is written only after every blob it names is in the CAS and on disk (one filesystem
sync per batch of entries, `store_all`; group_commit.py batches them across actions), so a
reader that finds an entry can trust its blobs exist, even after a power cut; `lookup` still checks, and drops an entry whose blobs vanished
(a garbage collection racing a crash, or a hand-deleted file). Hits refresh the entry's mtime,
which is what LRU garbage collection orders by.

An entry file is the manifest on its first line and, on a second, the canonical content of its
key (`Action.key_components`), which `mlbuild explain` diffs against a later key: kept with the
entry, it goes when the entry goes, and a lookup reads only the first line.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .atomic import sync_filesystem, unlink_quietly, write_atomically
from .cas import ContentStore

MANIFEST_VERSION = 2  # 2: `report` and `failure` replace the free-form `extra`
# One encoder for every manifest: json.dumps with options would make one per call.
_MANIFEST_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class OutputFile:
    path: str  # relative to the action's output root
    digest: str
    size: int
    executable: bool = False


@dataclass(frozen=True)
class ActionResult:
    """Everything needed to reproduce an action's effects without running it."""

    outputs: tuple[OutputFile, ...]
    directories: tuple[str, ...] = ()  # declared output directories, so empty ones come back
    symlinks: tuple[tuple[str, str], ...] = ()  # (path, relative target) inside the outputs
    exit_code: int = 0
    stdout_digest: str | None = None
    stderr_digest: str | None = None
    duration_s: float = 0.0
    report: dict | None = None  # a benchmark's figures (scenario, samples/s, latency, accuracy)
    failure: str | None = None  # why a test or benchmark failed (exit_code != 0)

    def blob_digests(self) -> list[str]:
        digests = [o.digest for o in self.outputs]
        digests += [d for d in (self.stdout_digest, self.stderr_digest) if d]
        return digests

    def to_json(self) -> bytes:
        """The manifest: what dataclasses.asdict gives, without its deep copy of every field
        (one manifest per action)."""
        body = dict(vars(self), outputs=[vars(o) for o in self.outputs], version=MANIFEST_VERSION)
        return _MANIFEST_ENCODER.encode(body).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "ActionResult":
        """Parse a manifest; ValueError for anything that is not a manifest of our version."""
        try:
            body = json.loads(data)
            if body.pop("version") != MANIFEST_VERSION:
                raise ValueError("manifest version mismatch")
            return cls(
                outputs=tuple(OutputFile(**o) for o in body.pop("outputs")),
                directories=tuple(body.pop("directories")),
                symlinks=tuple(tuple(s) for s in body.pop("symlinks")),
                **body,
            )
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
            raise ValueError(f"malformed action result: {exc}") from exc


def read_manifest(path: Path | str) -> ActionResult:
    """The result an entry file records; ValueError when it holds no manifest of our version."""
    with open(path, "rb") as f:
        return ActionResult.from_json(f.readline())


class ActionCache:
    def __init__(self, root: Path, cas: ContentStore):
        self.root = root / "ac"
        self.root.mkdir(parents=True, exist_ok=True)
        self.cas = cas

    def entry_path(self, key: str) -> Path:
        return Path(self.entry_file(key))

    def entry_file(self, key: str) -> str:
        """entry_path as a string: every lookup and every recorded entry need not build a Path."""
        return f"{self.root}/{key[:2]}/{key}"

    def lookup(self, key: str) -> ActionResult | None:
        path = self.entry_file(key)
        try:
            result = read_manifest(path)
        except FileNotFoundError:
            return None
        except ValueError:
            unlink_quietly(path)
            return None
        if not all(self.cas.verify(o.digest, o.executable) for o in result.outputs):
            unlink_quietly(path)
            return None
        try:
            os.utime(path)
        except OSError:
            pass
        return result

    def key_components(self, key: str) -> dict | None:
        """The canonical content of `key` kept with its entry; None once the entry is gone, or
        when it was recorded without it."""
        try:
            with open(self.entry_file(key), "rb") as f:
                f.readline()
                return json.loads(f.read())
        except (OSError, ValueError):
            return None

    def store(self, key: str, result: ActionResult, key_components: bytes | None = None) -> None:
        """Record a result whose blobs are already in the CAS (the caller guarantees it), with
        its key's canonical encoding when known."""
        self.store_all([(key, result, key_components)])

    def store_all(self, entries: list[tuple[str, ActionResult, bytes | None]]) -> None:
        """Record results whose blobs are in the CAS: one sync puts the blobs on disk, then the
        entries are written (not synced: an entry lost in a power cut costs a rebuild, never a
        wrong result)."""
        if not entries:
            return
        sync_filesystem(self.root)
        for key, result, key_components in entries:
            body = result.to_json() if key_components is None else result.to_json() + b"\n" + key_components
            write_atomically(self.entry_file(key), body, durable=False)

    def iter_entries(self):
        """Yield (path, key, mtime) for every entry, for stats and garbage collection."""
        for shard in self.root.iterdir():
            if shard.is_dir():
                for entry in os.scandir(shard):
                    if not entry.name.endswith(".tmp"):
                        yield Path(entry.path), entry.name, entry.stat().st_mtime
