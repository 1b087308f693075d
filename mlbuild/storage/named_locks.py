"""Locks named by an action key or a checksum, shared by every mlbuild process on one cache.

Two builds that want the same action (or download) serialize on its name. A lock file per
name would leave a file in the cache for every action ever run, and creating a file is one of
the dearest steps of a tiny action. So every name is one byte of a single lock file, at an
offset taken from its digest (60 bits: two names share a byte about never, and then they only
wait for each other), locked with an open-file-description lock (F_OFD_SETLK). Such a lock
belongs to one open of the file, so two threads of one process exclude each other as two
processes do, any thread may release it (a group commit does), and the kernel drops it when
its holder dies: a kill -9 leaves nothing behind. A released lock's open description is kept
for the next lock of this process (`LockFile`), so a lock costs two fcntl calls, not an open
(with its path lookup) and a close as well.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import threading
import time
from pathlib import Path

from ..hashing import digest_bytes

_FIRST_WAIT_S = 0.001
_LONGEST_WAIT_S = 0.05  # a wait stays short so Ctrl-C (or a cancelled Ray task) gets through


class LockFile:
    """The one file whose bytes are the locks, and this process's open descriptions of it that
    hold no lock (each held lock needs a description of its own)."""

    def __init__(self, path: Path):
        self.path = path
        self._idle: list[int] = []
        self._owner = os.getpid()
        self._mutex = threading.Lock()

    def lock(self, name: str) -> "NamedLock":
        return NamedLock(self, name)

    def take(self) -> int:
        """An open description of the file holding no lock."""
        with self._mutex:
            if self._owner != os.getpid():  # a forked child: its parent's descriptions are not its own
                self._idle, self._owner = [], os.getpid()
            if self._idle:
                return self._idle.pop()
        return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)

    def give_back(self, fd: int) -> None:
        """`fd`, from take(), holds no lock again."""
        with self._mutex:
            if self._owner == os.getpid():
                self._idle.append(fd)
                return
        os.close(fd)


class NamedLock:
    def __init__(self, file: LockFile, name: str):
        self._file = file
        self._offset = int(digest_bytes(name.encode())[:15], 16)
        self._fd: int | None = None

    def _request(self, kind: int) -> bytes:
        """A struct flock for this lock's byte (l_pid must be 0 for OFD locks)."""
        return struct.pack("hhqqi4x", kind, os.SEEK_SET, self._offset, 1, 0)

    def acquire(self) -> None:
        """Wait until no other holder has it, then hold it."""
        fd = self._file.take()
        try:
            wait = _FIRST_WAIT_S
            while True:
                try:
                    fcntl.fcntl(fd, fcntl.F_OFD_SETLK, self._request(fcntl.F_WRLCK))
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                time.sleep(wait)
                wait = min(2 * wait, _LONGEST_WAIT_S)
        except BaseException:
            self._file.give_back(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        try:
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, self._request(fcntl.F_UNLCK))
        except OSError:
            os.close(fd)  # closing the open file description drops its lock
            raise
        self._file.give_back(fd)

    def __enter__(self) -> "NamedLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
