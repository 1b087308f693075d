"""Named locks: a held name excludes every other holder, whether it reuses a released lock's
open description, is another lock of this process, or is a forked child's."""

from __future__ import annotations

import errno
import fcntl
import os

from mlbuild.storage.named_locks import LockFile


def can_lock(file: LockFile, name: str, fd: int) -> bool:
    """Whether open description `fd` of `file` could lock `name`'s byte now (then it holds it)."""
    request = file.lock(name)._request(fcntl.F_WRLCK)
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, request)
        return True
    except OSError as exc:
        assert exc.errno in (errno.EAGAIN, errno.EACCES)
        return False


def test_a_lock_reusing_a_released_description_excludes_others_until_released(tmp_path):
    file = LockFile(tmp_path / "locks")
    first = file.lock("key")
    first.acquire()
    first.release()  # its description goes back to the file's idle ones
    again = file.lock("key")
    again.acquire()
    other = os.open(file.path, os.O_RDWR)  # another holder: a description of its own
    try:
        assert not can_lock(file, "key", other)
        assert can_lock(file, "another key", other)
        again.release()
        assert can_lock(file, "key", other)
    finally:
        os.close(other)


def test_two_locks_held_by_one_process_never_share_a_description(tmp_path):
    file = LockFile(tmp_path / "locks")
    released = file.lock("key")
    released.acquire()
    released.release()
    held = file.lock("key")
    held.acquire()
    second = file.take()  # what a second lock of this process would lock with
    try:
        assert not can_lock(file, "key", second)
    finally:
        file.give_back(second)
        held.release()


def test_a_forked_child_does_not_lock_through_its_parents_descriptions(tmp_path):
    file = LockFile(tmp_path / "locks")
    released = file.lock("key")
    released.acquire()
    released.release()  # an idle description, which the child inherits
    locked_read, locked_write = os.pipe()
    done_read, done_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child holds the lock until the parent has looked
        try:
            os.close(locked_read)
            os.close(done_write)
            child = file.lock("key")
            child.acquire()
            os.write(locked_write, b"x")
            os.read(done_read, 1)
        finally:
            os._exit(0)
    os.close(locked_write)  # so a child that died early reads as end of file, not a hang
    os.close(done_read)
    try:
        assert os.read(locked_read, 1) == b"x"
        mine = file.take()  # the parent's idle description: the child must not have locked through it
        try:
            assert not can_lock(file, "key", mine)
        finally:
            file.give_back(mine)
    finally:
        os.close(done_write)  # the child reads end of file and exits
        os.waitpid(pid, 0)
        os.close(locked_read)
