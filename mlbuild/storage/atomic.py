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
from pathlib import Path


def write_atomically(dest: Path | str, data: bytes, mode: int = 0o444, durable: bool = True) -> None:
    """Write `data` to a temp file beside `dest`, fsync it (unless not `durable`: a file that may
    be lost in a power cut but never seen partial) and rename it onto `dest`. Bare syscalls:
    every action-cache entry is one, and a file object would add an fstat, an ioctl and an lseek."""
    tmp = temp_name_beside(dest)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = in_directory_made(lambda: os.open(tmp, flags, 0o600), tmp)
    try:
        try:
            os.fchmod(fd, mode)  # exactly `mode`, whatever the umask
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, dest)
    except BaseException:
        unlink_quietly(tmp)
        raise


def temp_name_beside(dest: Path | str) -> str:
    """A fresh temp name in dest's directory (not created), so a later os.replace stays on one
    filesystem; garbage collection removes those a crash left (`*.tmp`)."""
    directory, name = os.path.split(dest)
    return f"{directory}/.{name[:16]}.{secrets.token_hex(8)}.tmp"


def in_directory_made(create, path: str):
    """`create()`, which makes `path`; when path's directory is missing it is made and `create`
    tried again (one mkdir per new directory, not one per file)."""
    try:
        return create()
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return create()


def unlink_quietly(path: str | Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


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
    """`temp_name_beside`, its directory made: a download writes the file there."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    return Path(temp_name_beside(dest))
