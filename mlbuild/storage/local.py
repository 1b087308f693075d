"""The local cache directory: CAS + action cache + locks, shared by every mlbuild process.

Concurrency model: a build holds a shared flock on `<root>/lock` for its whole run and
garbage collection takes it exclusively, so GC never deletes a blob a build is about to link.
Two builds that want the same action (or download) serialize on a lock named by its key
(or checksum; storage/named_locks.py): the second waits, then finds the first one's result
instead of redoing it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..hashing import StatCache
from .action_cache import ActionCache, read_manifest
from .cas import ContentStore
from .named_locks import LockFile, NamedLock

CACHE_DIR_ENV = "MLBUILD_CACHE_DIR"


def default_cache_dir() -> Path:
    """`$MLBUILD_CACHE_DIR`, else `$XDG_CACHE_HOME/mlbuild`, else `~/.cache/mlbuild`."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "mlbuild"


@dataclass(frozen=True)
class CacheStats:
    blobs: int
    blob_bytes: int
    entries: int


@dataclass(frozen=True)
class GcReport:
    entries_removed: int
    blobs_removed: int
    bytes_freed: int
    bytes_kept: int


class LocalCache:
    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.stat_cache = StatCache(root / "statcache.pickle")
        self.cas = ContentStore(root, self.stat_cache)
        self.actions = ActionCache(root, self.cas)
        self._named_locks = LockFile(root / "named-locks")

    @contextmanager
    def _flock(self, mode: int):
        with open(self.root / "lock", "a+") as f:
            fcntl.flock(f, mode)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def shared(self):
        """Held by a build for its whole run."""
        return self._flock(fcntl.LOCK_SH)

    def exclusive(self):
        """Held by garbage collection and `clean --expunge`."""
        return self._flock(fcntl.LOCK_EX)

    def lock(self, name: str) -> NamedLock:
        """A lock shared by every mlbuild process on this cache: one per action key or download."""
        return self._named_locks.lock(name)

    def stats(self) -> CacheStats:
        blobs = list(self.cas.iter_blobs())
        entries = sum(1 for _ in self.actions.iter_entries())
        return CacheStats(len(blobs), sum(b[2] for b in blobs), entries)

    def gc(self, max_bytes: int) -> GcReport:
        """Evict least-recently-used action entries until their blobs fit in `max_bytes`.

        Blobs no remaining entry names are deleted too, and so are entries naming a blob that
        is gone. Entries are dropped before blobs, so an interrupted GC leaves only unreferenced
        blobs, never an entry with missing blobs.
        """
        with self.exclusive():
            blob_sizes: dict[str, int] = {}
            for _, digest, size, _ in self.cas.iter_blobs():
                blob_sizes[digest] = blob_sizes.get(digest, 0) + size
            entries = sorted(self.actions.iter_entries(), key=lambda e: e[2], reverse=True)
            kept: set[str] = set()
            kept_bytes = 0
            removed_entries = 0
            for path, _key, _mtime in entries:
                try:
                    digests = set(read_manifest(path).blob_digests())
                except (OSError, ValueError):
                    digests = None
                new = set() if digests is None else digests - kept
                new_bytes = sum(blob_sizes.get(d, 0) for d in new)
                if digests is None or not digests <= blob_sizes.keys() or kept_bytes + new_bytes > max_bytes:
                    path.unlink(missing_ok=True)
                    removed_entries += 1
                    continue
                kept |= new
                kept_bytes += new_bytes
            for leftover in [*self.cas.root.glob("*/*.tmp"), *self.actions.root.glob("*/*.tmp")]:
                leftover.unlink(missing_ok=True)  # no build runs now: every temp file is a crash's
            shutil.rmtree(self.root / "keys", ignore_errors=True)  # explain's notes before they moved into entries
            blobs_removed = freed = 0
            for path, digest, size, _ in list(self.cas.iter_blobs()):
                if digest not in kept:
                    path.unlink(missing_ok=True)
                    self.stat_cache.forget(path)
                    blobs_removed += 1
                    freed += size
            self.stat_cache.save()
            return GcReport(removed_entries, blobs_removed, freed, kept_bytes)
