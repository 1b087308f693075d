"""The file system as input: what may be hashed and staged, and where mlbuild may write.

Only regular files are inputs. A FIFO would block the hasher forever, a device or a file of
/proc, /sys or /dev has no stable content, and a source symlink leading out of the workspace
makes a build depend on a file nobody declared; each is refused with a message saying which
path and why. A dataset directory (`data_dir`) may hold such entries among real data: they
are skipped, with one warning. Directories mlbuild writes (its state, the output tree) that
are blocked by a file get an error naming the file to remove, not an OSError.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from .errors import Location, UserError

SPECIAL_FILE_SYSTEMS = ("/proc", "/sys", "/dev")


def _special(path: str) -> bool:
    return any(path == root or path.startswith(root + "/") for root in SPECIAL_FILE_SYSTEMS)


def reaches_special(real_path: str) -> str | None:
    """The special file system a directory is in or holds, or None."""
    for root in SPECIAL_FILE_SYSTEMS:
        if real_path == root or real_path.startswith(root + "/") or root.startswith(real_path.rstrip("/") + "/"):
            return root
    return None


def file_problem(path: str, boundary: str | None) -> str | None:
    """Why `path` cannot be an input file, or None for a regular file (inside `boundary`,
    the workspace, when it is a symlink and a boundary is given)."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if stat.S_ISLNK(st.st_mode):
        real = os.path.realpath(path)
        if _special(real):
            return f"is a symlink into {real}"
        if boundary is not None and not real.startswith(boundary + os.sep):
            return f"is a symlink leaving the workspace (to {real})"
        try:
            st = os.stat(path)
        except OSError as exc:
            return f"is a broken symlink ({exc.strerror})"
    elif _special(os.path.abspath(path)):
        return f"is on the special file system {reaches_special(os.path.abspath(path))}"
    if stat.S_ISREG(st.st_mode):
        return None
    return f"is {_kind(st.st_mode)}, not a regular file"


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


@dataclass(frozen=True)
class Dataset:
    """A dataset directory as listed, for the sandbox's data/ and for the analysis cache."""

    files: list[tuple[str, str]]  # (path relative to the directory, absolute path) of each regular file, sorted
    directories: list[str]  # every directory listed: a file added to any of them changes the dataset
    warning: str | None  # naming a few of the entries skipped as not regular files, if any


def list_dataset(directory: str) -> Dataset:
    """Every regular file below `directory`; entries that are not regular files are skipped."""
    found, skipped, listed = [], [], []
    for current, subdirs, names in os.walk(directory):
        listed.append(current)
        subdirs.sort()
        for name in sorted(names):
            path = os.path.join(current, name)
            problem = file_problem(path, None)
            if problem is None:
                found.append((os.path.relpath(path, directory), path))
            else:
                skipped.append(f"{os.path.relpath(path, directory)} ({problem})")
    warning = None
    if skipped:
        shown = "; ".join(skipped[:3]) + (f"; and {len(skipped) - 3} more" if len(skipped) > 3 else "")
        warning = f"{directory}: skipped {len(skipped)} entries that are not regular files: {shown}"
    return Dataset(found, listed, warning)


def make_directory(path, what: str) -> None:
    """Create `path` and its parents, or say which file blocks it and that removing it helps."""
    try:
        os.mkdir(path)  # the common case, one syscall: the parent is there, `path` is not
        return
    except FileExistsError:
        if os.path.isdir(path):
            return
    except (FileNotFoundError, NotADirectoryError):
        try:
            os.makedirs(path, exist_ok=True)
            return
        except (FileExistsError, NotADirectoryError):
            pass
    parts = os.path.abspath(path).split(os.sep)
    prefixes = (os.sep.join(parts[:i]) for i in range(2, len(parts) + 1))
    blocker = next((p for p in prefixes if os.path.lexists(p) and not os.path.isdir(p)), str(path))
    raise UserError(f"cannot create {what} {path}: this file is in the way", Location(blocker),
                    hint=f"remove {blocker} (mlbuild creates it as a directory)")
