"""Disposal (execution/sandbox.py) keeps a used sandbox's inodes for later sandboxes, and only
those that carry nothing of the action that used them; a used root comes back whole, with the
directories most sandboxes have, emptied."""

from __future__ import annotations

import fcntl
import os
import struct

import pytest

from mlbuild.actions import Action
from mlbuild.execution.sandbox import Disposal, Sandbox
from mlbuild.storage.cas import ContentStore


@pytest.fixture
def disposal(tmp_path):
    disposal = Disposal(tmp_path / "sandboxes")
    (tmp_path / "sandboxes").mkdir()
    yield disposal
    disposal.finish()


def used_sandbox(disposal: Disposal, files: dict[str, bytes]):
    root = disposal.base / "used"
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def test_a_used_file_becomes_the_next_file_a_sandbox_writes(disposal):
    used = used_sandbox(disposal, {"d/log": b""})
    os.chmod(used / "d/log", 0o4755)
    inode = (used / "d/log").stat().st_ino
    disposal.discard(used)
    assert not used.exists()
    fresh = disposal.base / "fresh"
    disposal.make_directories(fresh)
    assert disposal.place_file(fresh / "log", 0)
    st = (fresh / "log").stat()
    assert st.st_ino == inode and st.st_mode & 0o7777 == 0o666 & ~_umask()
    with open(fresh / "log", "wb") as log:  # how a sandbox fills a placed log
        log.write(b"new")
    assert (fresh / "log").read_bytes() == b"new"
    assert not disposal.place_file(fresh / "another", 0)  # no spare left: nothing placed, open() will make it
    assert not (fresh / "another").exists()


def test_a_used_file_holding_data_is_placed_only_where_data_is_written(disposal, tmp_path):
    """Cutting a file to nothing would free its block (a wait for the device where the
    filesystem discards at once): a spare holding data never becomes an empty log; a staged
    input overwrites it, cut to the input's size."""
    used = used_sandbox(disposal, {"in.txt": b"a longer input of a former action\n"})
    inode = (used / "in.txt").stat().st_ino
    disposal.discard(used)
    fresh = disposal.base / "fresh"
    fresh.mkdir()
    assert not disposal.place_file(fresh / "stdout", 0)
    assert not (fresh / "stdout").exists()
    (tmp_path / "src").mkdir()
    (tmp_path / "src/short.txt").write_bytes(b"short")
    action = Action(label="//p:t", mnemonic="Command", implementation="command/1", argv=("true",),
                    sources=(("p/short.txt", "src/short.txt"),))
    sandbox = Sandbox(disposal.base, action, disposal)
    sandbox.stage(tmp_path, {}, ContentStore(tmp_path / "cache"))
    staged = sandbox.root / "p/short.txt"
    assert staged.stat().st_ino == inode
    assert staged.read_bytes() == b"short"
    assert staged.stat().st_mode == (tmp_path / "src/short.txt").stat().st_mode


def test_a_spare_keeps_its_block_when_it_is_filled_again(disposal, tmp_path):
    """Where the filesystem maps files to blocks (FIEMAP: ext4, not tmpfs), the staged input
    lies in the block the spare held, on disk: the block was never freed."""
    used = used_sandbox(disposal, {"in.txt": b"x" * 100})
    with open(used / "in.txt", "rb+") as written:
        os.fsync(written.fileno())  # gives it its block on disk
    block = _first_block(used / "in.txt")
    if block is None or _filesystem_type(used) not in ("ext4", "ext3", "xfs"):
        pytest.skip("the filesystem does not report its files' blocks (FIEMAP), or it copies on write")
    disposal.discard(used)
    (tmp_path / "src").mkdir()
    (tmp_path / "src/in.txt").write_bytes(b"y" * 50)
    action = Action(label="//p:t", mnemonic="Command", implementation="command/1", argv=("true",),
                    sources=(("p/in.txt", "src/in.txt"),))
    sandbox = Sandbox(disposal.base, action, disposal)
    sandbox.stage(tmp_path, {}, ContentStore(tmp_path / "cache"))
    assert _first_block(sandbox.root / "p/in.txt") == block  # truncated and rewritten, it would await allocation
    assert (sandbox.root / "p/in.txt").read_bytes() == b"y" * 50


def test_files_that_could_carry_their_action_along_are_deleted_not_kept(disposal):
    used = used_sandbox(disposal, {"linked": b"a", "xattr": b"b", "big": b"c" * (1 << 20)})
    os.link(used / "linked", disposal.base / "elsewhere")  # e.g. an output the CAS took
    os.setxattr(used / "xattr", "user.left_behind", b"1")
    os.symlink("linked", used / "symlink")
    os.mkfifo(used / "fifo")
    holding_data = {(used / name).stat().st_ino for name in ("big", "xattr")}
    disposal.discard(used)
    assert not used.exists()
    # Unlinking these would free their blocks in the build's thread: the trash's rm does it.
    assert {path.stat().st_ino for path in disposal.base.glob("*-trash-*/*")} == holding_data
    fresh = disposal.base / "fresh"
    fresh.mkdir()
    assert not disposal.place_file(fresh / "log", 1)
    assert not (fresh / "log").exists()
    assert (disposal.base / "elsewhere").read_bytes() == b"a"


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file away takes root")
def test_a_file_the_action_gave_to_another_user_is_not_kept(disposal):
    used = used_sandbox(disposal, {"given": b"x"})
    os.chown(used / "given", 12345, 12345)
    disposal.discard(used)
    fresh = disposal.base / "fresh"
    fresh.mkdir()
    assert not disposal.place_file(fresh / "log", 1)
    assert not (fresh / "log").exists()


def _first_block(path) -> tuple[int, int] | None:
    """(physical address, flags) of the file's first extent (FS_IOC_FIEMAP), None where the
    filesystem does not say."""
    request = struct.pack("=QQIIII", 0, 1 << 62, 0, 0, 1, 0) + bytes(_FIEMAP_EXTENT_SIZE)
    with open(path, "rb") as file:
        try:
            answer = fcntl.ioctl(file.fileno(), _FS_IOC_FIEMAP, request)
        except OSError:
            return None
    if struct.unpack_from("=I", answer, 20)[0] == 0:  # fm_mapped_extents
        return None
    _logical, physical, _length = struct.unpack_from("=QQQ", answer, 32)
    flags = struct.unpack_from("=I", answer, 32 + 40)[0]
    return physical, flags


def _filesystem_type(path) -> str:
    """The type of the filesystem `path` is on (the longest mount point above it, /proc/mounts)."""
    path, best = os.path.realpath(path), ("", "")
    with open("/proc/mounts") as mounts:
        for line in mounts:
            _device, mount_point, kind = line.split()[:3]
            inside = path == mount_point or path.startswith(mount_point.rstrip("/") + "/")
            if inside and len(mount_point) >= len(best[0]):
                best = (mount_point, kind)
    return best[1]


_FS_IOC_FIEMAP = 0xC020660B
_FIEMAP_EXTENT_SIZE = 56


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _placed_directories(disposal, count: int) -> list:
    fresh = disposal.base / "fresh"
    fresh.mkdir(exist_ok=True)
    made = [fresh / f"d{i}" for i in range(count)]
    for directory in made:
        disposal.make_directories(directory)
    return made


def test_a_directory_with_extended_attributes_is_not_kept(disposal):
    """A default ACL (an xattr) on a directory would shape the files a later action makes in it."""
    used = used_sandbox(disposal, {"tagged/f": b"x"})
    os.setxattr(used / "tagged", "user.left_behind", b"1")
    disposal.discard(used)
    for directory in _placed_directories(disposal, 3):
        assert os.listxattr(directory) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory away takes root")
def test_a_directory_the_action_gave_to_another_user_is_not_kept(disposal):
    used = used_sandbox(disposal, {"given/f": b"x"})
    os.chown(used / "given", 12345, 12345)
    disposal.discard(used)
    for directory in _placed_directories(disposal, 3):
        st = directory.stat()
        assert (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid())


def test_a_used_root_comes_back_whole_with_its_skeleton_emptied(disposal):
    """A root keeps `.home`, `.tmp` and `out` in place, emptied and with mkdir's mode; everything
    else it held goes to the spares."""
    used = used_sandbox(disposal, {".home/f": b"secret", ".tmp/d/x": b"secret", "out/p/n/o.txt": b"out",
                                   "targets/p/in.txt": b"in", "top.txt": b"top"})
    os.chmod(used / ".tmp", 0o700)
    os.chmod(used, 0o700)
    inode = used.stat().st_ino
    disposal.discard_sandbox(used)
    assert not used.exists()
    fresh = str(disposal.base / "fresh")
    assert disposal.make_root(fresh) == {".home", ".tmp", "out"}
    assert os.stat(fresh).st_ino == inode
    assert sorted(os.listdir(fresh)) == [".home", ".tmp", "out"]
    for directory in (fresh, *(f"{fresh}/{name}" for name in os.listdir(fresh))):
        assert os.stat(directory).st_mode & 0o7777 == 0o777 & ~_umask(), directory
    assert [os.listdir(f"{fresh}/{name}") for name in (".home", ".tmp", "out")] == [[], [], []]
    assert disposal.make_root(str(disposal.base / "another")) == set()  # no spare root left: a new one
    assert os.listdir(disposal.base / "another") == []


def test_a_skeleton_directory_that_could_carry_its_action_along_is_not_left_in_place(disposal):
    used = used_sandbox(disposal, {".home/f": b"x", ".tmp/f": b"x", "out/f": b"x"})
    os.setxattr(used / ".tmp", "user.left_behind", b"1")
    disposal.discard_sandbox(used)
    fresh = str(disposal.base / "fresh")
    assert disposal.make_root(fresh) == {".home", "out"}
    assert sorted(os.listdir(fresh)) == [".home", "out"]


def test_a_sandbox_in_a_used_root_has_no_out_directory_unless_its_action_puts_something_there(disposal, tmp_path):
    disposal.discard_sandbox(used_sandbox(disposal, {"out/p/n/o.txt": b"x", ".home/f": b"x", ".tmp/f": b"x"}))
    action = Action(label="//p:t", mnemonic="Command", implementation="command/1", argv=("true",))
    sandbox = Sandbox(disposal.base, action, disposal)
    sandbox.stage(tmp_path, {}, ContentStore(tmp_path / "cache"))
    assert sorted(os.listdir(sandbox.root)) == [".home", ".tmp"]
    disposal.discard_sandbox(sandbox.root)
