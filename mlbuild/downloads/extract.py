"""Unpack downloaded tar and zip archives without letting any member land outside the destination."""

from __future__ import annotations

import lzma
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlbuild.errors import ActionError

_KINDS = ("dir", "file", "hardlink", "symlink")  # also the order in which they are created
_MAX_SYMLINK_HOPS = 40
_TAR_SPECIAL = {tarfile.CHRTYPE: "character device", tarfile.BLKTYPE: "block device", tarfile.FIFOTYPE: "FIFO"}
_ZIP_SPECIAL = {
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
    stat.S_IFIFO: "FIFO",
    stat.S_IFSOCK: "socket",
}
_READ_ERRORS = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError, RuntimeError, OSError)


@dataclass(frozen=True)
class _Member:
    """One archive entry: `name` as stored, `path` where it goes (after strip_components)."""

    name: str
    kind: str  # one of _KINDS, or a description of a rejected type
    mode: int
    link: str  # symlink target as stored; hardlink target (a member name, stripped once planned)
    source: Any  # TarInfo or ZipInfo, handed back to the archive's opener
    path: str = ""


def safe_extract(archive: Path, dest: Path, *, strip_components: int = 0, name: str | None = None) -> list[str]:
    """Extract a tar (optionally gz/bz2/xz) or zip `archive` into `dest`, which must not exist or be empty.

    Every member is checked before anything is written; an unsafe one raises ActionError and
    leaves `dest` untouched. Returns the sorted relative paths of the non-directory entries.
    `name` is what error messages call the archive (default: its path).
    """
    if strip_components < 0:
        raise ValueError(f"strip_components must be >= 0, got {strip_components}")
    archive, dest = Path(archive), Path(dest)
    shown = name or str(archive)
    try:
        with _open_archive(archive, shown) as (members, open_member):
            planned = _plan(shown, members, strip_components)
            if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
                raise ActionError(f"cannot extract {shown}: {dest} already exists and is not empty")
            _write(planned, open_member, dest)
    except _READ_ERRORS as e:
        raise ActionError(f"cannot extract {shown}: {e}") from e
    return sorted(m.path for m in planned if m.kind != "dir")


@contextmanager
def _open_archive(archive: Path, shown: str) -> Iterator[tuple[list[_Member], Callable]]:
    """The members and a function opening a member's content, for a tar or zip file."""
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tar:
            yield [_tar_member(info) for info in tar.getmembers()], tar.extractfile
    elif zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            yield [_zip_member(zf, info) for info in zf.infolist()], zf.open
    else:
        raise ActionError(
            f"cannot extract {shown}: not a tar (.tar, .tar.gz, .tgz, .tar.bz2, .tar.xz) or zip archive"
        )


def _tar_member(info: tarfile.TarInfo) -> _Member:
    if info.isreg():
        kind = "file"
    elif info.isdir():
        kind = "dir"
    elif info.issym():
        kind = "symlink"
    elif info.islnk():
        kind = "hardlink"
    else:
        kind = _TAR_SPECIAL.get(info.type, f"member of tar type {info.type!r}")
    return _Member(info.name, kind, info.mode, info.linkname, info)


def _zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> _Member:
    mode = info.external_attr >> 16
    file_type = stat.S_IFMT(mode)
    link = ""
    if info.is_dir():
        kind = "dir"
    elif file_type == stat.S_IFLNK:
        kind, link = "symlink", os.fsdecode(zf.read(info))
    elif file_type in (0, stat.S_IFREG):  # 0: made on a system without Unix modes
        kind = "file"
    else:
        kind = _ZIP_SPECIAL.get(file_type, f"member of file type {file_type:o}")
    return _Member(info.filename, kind, mode, link, info)


def _plan(shown: str, members: list[_Member], strip: int) -> list[_Member]:
    """Check every member and give it its destination path; nothing is written here."""

    def reject(member: _Member, why: str) -> ActionError:
        return ActionError(f"refusing to extract {shown}: member {member.name!r} {why}")

    planned: dict[str, _Member] = {}
    for member in members:
        if member.kind not in _KINDS:
            raise reject(member, f"is a {member.kind}")
        parts = _relative_parts(member.name)
        if parts is None:
            raise reject(member, "has an absolute path or a '..' component")
        if len(parts) <= strip:
            continue
        link = member.link
        if member.kind == "hardlink":
            target = _relative_parts(link)
            if target is None or len(target) <= strip:
                raise reject(member, f"is a hardlink to {link!r}, outside the extracted tree")
            link = "/".join(target[strip:])
        elif member.kind == "symlink" and (not link or link.startswith(("/", "\\")) or _has_drive(link)):
            raise reject(member, f"is a symlink to {link!r}, outside the destination")
        path = "/".join(parts[strip:])
        previous = planned.get(path)
        if previous is not None and not (previous.kind == member.kind == "dir"):
            raise reject(member, f"appears more than once (as {previous.kind} and {member.kind})")
        planned[path] = _Member(member.name, member.kind, member.mode, link, member.source, path)

    symlinks = {path: m.link for path, m in planned.items() if m.kind == "symlink"}
    for path, member in planned.items():
        parts = path.split("/")
        for depth in range(1, len(parts)):
            parent = planned.get("/".join(parts[:depth]))
            if parent is not None and parent.kind == "symlink":
                raise reject(member, f"would be written through the symlink {parent.name!r}")
            if parent is not None and parent.kind != "dir":
                raise reject(member, f"is inside {parent.name!r}, which is not a directory")
        if member.kind == "symlink" and _resolve(parts[:-1] + member.link.split("/"), symlinks) is None:
            raise reject(member, f"is a symlink to {member.link!r}, which resolves outside the destination or loops")
        if member.kind == "hardlink" and getattr(planned.get(member.link), "kind", None) != "file":
            raise reject(member, f"is a hardlink to {member.link!r}, which is not a regular file in the archive")
    return sorted(planned.values(), key=lambda m: _KINDS.index(m.kind))  # stable: archive order within a kind


def _has_drive(name: str) -> bool:
    return re.match(r"[A-Za-z]:", name) is not None


def _relative_parts(name: str) -> list[str] | None:
    """The components of a relative, `..`-free member name (empty and `.` dropped); None if unsafe."""
    if not name or name.startswith(("/", "\\")) or _has_drive(name) or "\0" in name:
        return None
    parts = [part for part in re.split(r"[/\\]", name) if part not in ("", ".")]
    return None if ".." in parts else parts


def _resolve(parts: list[str], symlinks: dict[str, str]) -> list[str] | None:
    """Resolve a path as the OS would, following the archive's symlinks; None if it leaves the root or loops."""
    resolved: list[str] = []
    pending = list(parts)
    hops = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not resolved:
                return None
            resolved.pop()
            continue
        resolved.append(part)
        target = symlinks.get("/".join(resolved))
        if target is not None:
            hops += 1
            if hops > _MAX_SYMLINK_HOPS or target.startswith("/"):
                return None
            resolved.pop()
            pending[:0] = target.split("/")
    return resolved


def _write(planned: list[_Member], open_member: Callable, dest: Path) -> None:
    """Create the planned entries in a temp dir beside `dest`, then rename it into place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        for member in planned:  # symlinks last, so nothing can be written through one
            target = staging / member.path
            if member.kind == "dir":
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if member.kind == "file":
                with open_member(member.source) as src, open(target, "xb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
                os.chmod(target, 0o755 if member.mode & stat.S_IXUSR else 0o644)
            elif member.kind == "hardlink":
                os.link(staging / member.link, target, follow_symlinks=False)
            else:
                os.symlink(member.link, target)
        os.chmod(staging, 0o755)
        os.replace(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
