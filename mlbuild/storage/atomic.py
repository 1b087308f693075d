"""Crash-safe file writes: temp file in the same directory, fsync, atomic rename.

Every file mlbuild persists goes through here (cache blobs and entries, build state, stat
and parse caches, no-op manifests), so a kill -9 at any instant leaves either the old state or
the complete new file, never a partial one. Where many files must reach the disk before one
that names them (a batch of blobs before their action-cache entries), `sync_filesystem`
flushes them all with one call instead of one fsync each.
"""

from __future__ import annotations

import ctypes
import functools
import os
import pickle
import secrets
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_writer(dest: Path, mode: int = 0o444, durable: bool = True):
    """Yield a binary file; on clean exit it is fsynced (unless not `durable`: a file that may
    be lost in a power cut but never seen partial) and renamed onto `dest`."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name[:16]}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_atomically(dest: Path, data: bytes, mode: int = 0o444, durable: bool = True) -> None:
    with atomic_writer(dest, mode, durable) as f:
        f.write(data)


def sync_filesystem(path: Path) -> None:
    """Flush every file written so far on `path`'s filesystem to the disk: one syncfs(2)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc().syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


@functools.cache
def _libc():
    return ctypes.CDLL(None, use_errno=True)


def save_pickle(dest: Path, value) -> None:
    """Persist a memo (state, stat cache...): atomic, not fsynced. A memo lost in a power cut
    is rebuilt; one seen half-written never is."""
    write_atomically(dest, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL), mode=0o644, durable=False)


def load_pickle(path: Path, default=None):
    """What `save_pickle` wrote, or `default` when it is missing or unreadable (another version's)."""
    try:
        with open(path, "rb") as f:
            return pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError, IndexError, ValueError,
            TypeError):
        return default


def temp_path_beside(dest: Path) -> Path:
    """A fresh temp name in dest's directory (not created: a link or a download makes the file),
    so a later os.replace stays on one filesystem."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    return dest.with_name(f".{dest.name[:16]}.{secrets.token_hex(8)}.tmp")
