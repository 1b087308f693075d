"""Tests for safe_extract on real tar and zip files, including hostile ones."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import tempfile
import zipfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlbuild.downloads import safe_extract
from mlbuild.errors import ActionError

# (name, kind, payload): payload is the content for "file", the target for "symlink"/"hardlink".
Entry = tuple[str, str, object]
_TAR_TYPES = {
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "fifo": tarfile.FIFOTYPE,
    "chardev": tarfile.CHRTYPE,
}


def make_tar(path: Path, entries: list[Entry], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tar:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size, info.mode = len(payload), 0o644
                tar.addfile(info, io.BytesIO(payload))
                continue
            info.type = _TAR_TYPES[kind]
            info.mode = 0o755
            if kind in ("symlink", "hardlink"):
                info.linkname = payload
            tar.addfile(info)
    return path


def make_zip(path: Path, entries: list[Entry]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, kind, payload in entries:
            if kind == "file":
                zf.writestr(name, payload)
            elif kind == "dir":
                zf.writestr(name.rstrip("/") + "/", b"")
            else:
                info = zipfile.ZipInfo(name)
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                zf.writestr(info, payload)
    return path


@pytest.fixture
def archives(tmp_path):
    """A directory for archives, apart from where they are extracted."""
    path = tmp_path / "archives"
    path.mkdir()
    return path


def assert_rejected(archive: Path, dest: Path, member: str, **kwargs):
    with pytest.raises(ActionError) as caught:
        safe_extract(archive, dest, **kwargs)
    message = str(caught.value)
    assert str(archive) in message and repr(member) in message
    assert not dest.exists()
    assert os.listdir(dest.parent) == []  # no staging directory left behind


def test_tar_gz_round_trip(archives, tmp_path):
    archive = make_tar(
        archives / "pkg.tar.gz",
        [
            ("pkg", "dir", None),
            ("pkg/bin/tool", "file", b"#!/bin/sh\n"),
            ("./pkg/data/weights.bin", "file", b"\x00\x01" * 1000),
            ("pkg/data/latest", "symlink", "weights.bin"),
            ("pkg/bin/alias", "symlink", "../data/weights.bin"),
            ("pkg/data/copy.bin", "hardlink", "pkg/data/weights.bin"),
        ],
    )
    dest = tmp_path / "out" / "pkg"
    files = safe_extract(archive, dest)
    assert files == ["pkg/bin/alias", "pkg/bin/tool", "pkg/data/copy.bin", "pkg/data/latest", "pkg/data/weights.bin"]
    assert (dest / "pkg/data/latest").read_bytes() == b"\x00\x01" * 1000
    assert os.readlink(dest / "pkg/bin/alias") == "../data/weights.bin"
    assert (dest / "pkg/data/copy.bin").stat().st_ino == (dest / "pkg/data/weights.bin").stat().st_ino
    assert os.listdir(tmp_path / "out") == ["pkg"]


@pytest.mark.parametrize("mode, suffix", [("w", ".tar"), ("w:bz2", ".tar.bz2"), ("w:xz", ".tar.xz"), ("w:gz", ".bin")])
def test_tar_compressions_detected_by_content(archives, tmp_path, mode, suffix):
    archive = make_tar(archives / f"a{suffix}", [("a.txt", "file", b"hello")], mode)
    assert safe_extract(archive, tmp_path / "out") == ["a.txt"]
    assert (tmp_path / "out" / "a.txt").read_bytes() == b"hello"


def test_executable_bit_is_kept_and_write_bits_normalised(archives, tmp_path):
    archive = archives / "modes.tar"
    with tarfile.open(archive, "w") as tar:
        for name, mode in (("run.sh", 0o4777), ("data.txt", 0o666)):
            info = tarfile.TarInfo(name)
            info.size, info.mode = 2, mode
            tar.addfile(info, io.BytesIO(b"ok"))
    safe_extract(archive, tmp_path / "out")
    assert stat.S_IMODE((tmp_path / "out" / "run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "out" / "data.txt").stat().st_mode) == 0o644


def test_zip_round_trip(archives, tmp_path):
    archive = make_zip(
        archives / "model.zip",
        [("model/", "dir", None), ("model/config.json", "file", b"{}"), ("model/current", "symlink", "config.json")],
    )
    dest = tmp_path / "out"
    assert safe_extract(archive, dest) == ["model/config.json", "model/current"]
    assert (dest / "model/current").is_symlink()
    assert (dest / "model/current").read_bytes() == b"{}"


def test_existing_empty_dest_is_filled(archives, tmp_path):
    archive = make_zip(archives / "a.zip", [("a.txt", "file", b"x")])
    (tmp_path / "out").mkdir()
    assert safe_extract(archive, tmp_path / "out") == ["a.txt"]


def test_non_empty_dest_is_refused(archives, tmp_path):
    archive = make_zip(archives / "a.zip", [("a.txt", "file", b"x")])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(ActionError, match="already exists and is not empty"):
        safe_extract(archive, tmp_path / "out")
    assert os.listdir(tmp_path / "out") == ["keep.txt"]


def test_strip_components(archives, tmp_path):
    archive = make_tar(
        archives / "src.tgz",
        [
            ("pkg-1.0", "dir", None),
            ("pkg-1.0/README", "file", b"readme"),
            ("pkg-1.0/src/main.py", "file", b"print()"),
            ("pkg-1.0/src/same.py", "hardlink", "pkg-1.0/src/main.py"),
            ("toplevel.txt", "file", b"dropped"),
        ],
    )
    dest = tmp_path / "out"
    assert safe_extract(archive, dest, strip_components=1) == ["README", "src/main.py", "src/same.py"]
    assert (dest / "src/same.py").read_bytes() == b"print()"
    assert not (dest / "toplevel.txt").exists()


@pytest.mark.parametrize(
    "entries, member",
    [
        ([("ok.txt", "file", b""), ("../evil", "file", b"x")], "../evil"),
        ([("a/../../evil", "file", b"x")], "a/../../evil"),
        ([("/etc/evil", "file", b"x")], "/etc/evil"),
        ([("link", "symlink", "../../outside")], "link"),
        ([("link", "symlink", "/etc/passwd")], "link"),
        # lexically "a/.." is harmless, but `a` is itself a link to `.`, so `b` points at `..`
        ([("a", "symlink", "."), ("b", "symlink", "a/..")], "b"),
        ([("loop", "symlink", "loop")], "loop"),
        ([("sub", "dir", None), ("link", "symlink", "sub"), ("link/file", "file", b"x")], "link/file"),
        ([("link", "symlink", "/tmp"), ("link/file", "file", b"x")], "link"),  # the link itself is caught first
        ([("hard", "hardlink", "../outside")], "hard"),
        ([("hard", "hardlink", "/etc/passwd")], "hard"),
        ([("pipe", "fifo", None)], "pipe"),
        ([("tty", "chardev", None)], "tty"),
        ([("x", "file", b"1"), ("x", "file", b"2")], "x"),
        ([("x", "file", b"1"), ("x/y", "file", b"2")], "x/y"),
    ],
)
def test_unsafe_tar_members_are_rejected_before_writing(archives, tmp_path, entries, member):
    archive = make_tar(archives / "evil.tar.gz", entries)
    (tmp_path / "out").mkdir()
    assert_rejected(archive, tmp_path / "out" / "dest", member)


@pytest.mark.parametrize(
    "entries, member",
    [
        ([("ok.txt", "file", b""), ("../evil.txt", "file", b"x")], "../evil.txt"),
        ([("/abs.txt", "file", b"x")], "/abs.txt"),
        ([("a\\..\\..\\evil.txt", "file", b"x")], "a\\..\\..\\evil.txt"),
        ([("link", "symlink", "../outside")], "link"),
        ([("link", "symlink", "sub"), ("link/f", "file", b"x")], "link/f"),
    ],
)
def test_unsafe_zip_members_are_rejected(archives, tmp_path, entries, member):
    archive = make_zip(archives / "evil.zip", entries)
    (tmp_path / "out").mkdir()
    assert_rejected(archive, tmp_path / "out" / "dest", member)


def test_strip_components_cannot_hide_a_dotdot(archives, tmp_path):
    archive = make_tar(archives / "evil.tgz", [("top/../../evil", "file", b"x")])
    (tmp_path / "out").mkdir()
    assert_rejected(archive, tmp_path / "out" / "dest", "top/../../evil", strip_components=1)


@pytest.mark.parametrize("content", [b"", b"plain text, not an archive", b"\x1f\x8b\x08\x00broken gzip"])
def test_non_archives_are_an_action_error(archives, tmp_path, content):
    archive = archives / "bad.tar.gz"
    archive.write_bytes(content)
    with pytest.raises(ActionError, match="cannot extract"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


_SEGMENT = st.text(alphabet="abcXYZ019_-. ", min_size=1, max_size=8).filter(lambda s: s.strip(".") != "")
_PATHS = st.lists(st.lists(_SEGMENT, min_size=1, max_size=3).map("/".join), min_size=1, max_size=8, unique=True)


@settings(max_examples=40, deadline=None)
@given(paths=_PATHS, use_zip=st.booleans())
def test_random_safe_names_round_trip(paths, use_zip):
    paths = [p for p in paths if not any(other.startswith(p + "/") for other in paths)]
    entries = [(p, "file", p.encode()) for p in paths]
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        archive = make_zip(root / "a.zip", entries) if use_zip else make_tar(root / "a.tar", entries, "w")
        dest = root / "out"
        assert safe_extract(archive, dest) == sorted(paths)
        for path in paths:
            assert (dest / path).read_bytes() == path.encode()
