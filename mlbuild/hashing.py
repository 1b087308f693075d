"""blake3 digests of bytes and files, and the stat cache that spares re-hashing unchanged files.

A digest is the lowercase hex of a 32-byte blake3 hash. Hashing a multi-GB model on every build
would dominate a no-op build, so `StatCache` remembers (size, mtime_ns, inode) → digest and only
re-hashes a file whose stat changed, the way ninja and git trust stat information.
"""

from __future__ import annotations

import os
from pathlib import Path

import blake3

from .storage.atomic import load_pickle, save_pickle

CHUNK_SIZE = 1 << 20
DIGEST_HEX_LENGTH = 64
# Below this size a plain read beats memory-mapping and blake3's thread pool.
_MMAP_THRESHOLD = 8 << 20


def digest_bytes(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def digest_file(path: str | os.PathLike) -> str:
    """Digest of a file's content, streaming (bounded memory whatever the size). A small file is
    read with bare syscalls: a Python file object adds an ioctl, an lseek and an fstat."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        if size >= _MMAP_THRESHOLD:
            return blake3.blake3(max_threads=blake3.blake3.AUTO).update_mmap(path).hexdigest()
        data = os.read(fd, size + 1)  # the whole file, and the end of it seen, in one read
        if len(data) <= size:
            return blake3.blake3(data).hexdigest()
        hasher = blake3.blake3(data)  # it grew since the fstat
        while chunk := os.read(fd, CHUNK_SIZE):
            hasher.update(chunk)
        return hasher.hexdigest()
    finally:
        os.close(fd)


def is_digest(text: str) -> bool:
    return len(text) == DIGEST_HEX_LENGTH and all(c in "0123456789abcdef" for c in text)


class StatCache:
    """Persistent map path → (size, mtime_ns, inode, digest), saved atomically when changed.

    Each process loads it once and writes it back once; concurrent writers lose at most a few
    entries (they are recomputed next time), never correctness, because a stale stat never
    matches a changed file.
    """

    def __init__(self, file: Path | None):
        self._file = file
        self._entries: dict[str, tuple[int, int, int, str]] = {}
        self._dirty = False
        if file is not None:
            self._entries = load_pickle(file, {})

    def digest(self, path: str | os.PathLike, st: os.stat_result | None = None) -> str:
        key = os.fspath(path)
        st = st or os.stat(key)
        entry = self._entries.get(key)
        if entry is not None and entry[:3] == (st.st_size, st.st_mtime_ns, st.st_ino):
            return entry[3]
        digest = digest_file(key)
        self._entries[key] = (st.st_size, st.st_mtime_ns, st.st_ino, digest)
        self._dirty = True
        return digest

    def forget(self, path: str | os.PathLike) -> None:
        if self._entries.pop(os.fspath(path), None) is not None:
            self._dirty = True

    def save(self) -> None:
        if not self._dirty or self._file is None:
            return
        save_pickle(self._file, self._entries)
        self._dirty = False
