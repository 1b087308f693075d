"""The sandbox: a fresh directory holding only an action's declared inputs.

Small inputs are copied in, so an action (often running as root, which ignores file modes)
can never write into the workspace or the CAS through them; large ones are hardlinked (no
multi-GB copies) and checked after the action: one it modified fails the action, and a CAS
blob it damaged is deleted so it is rebuilt. The action runs with cwd at the sandbox root and
a scrubbed env; then only declared outputs are collected. An output that is missing, or a
symlink that points outside the sandbox, fails the action with a clear message.
"""

from __future__ import annotations

import functools
import itertools
import os
import shutil
import stat
import subprocess
import threading
import uuid
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Mapping

from ..actions import SANDBOX_PLACEHOLDER, Action, Input, output_dir, toolchain_root_placeholder
from ..errors import ActionError
from ..storage.action_cache import ActionResult
from ..storage.cas import ContentStore
from .output_tree import make_symlinks

# Inputs below this size are copied into the sandbox, larger ones hardlinked and checked.
COPY_BELOW_BYTES = 8 << 20
_SPARE_MAX_ENTRIES = 64  # a used sandbox directory that held more is removed, not kept (Disposal)
_SPARE_FILE_MAX_ALLOCATED = 4 << 10  # a used file holding more is not kept: spares hold at most one block
# Directories at a sandbox's root that most actions have: a used root keeps them, emptied (Disposal).
_SKELETON = frozenset({".home", ".tmp", "out"})
_UMASK = os.umask(0o022)  # read (and put back) at import, before any thread makes files
os.umask(_UMASK)
_DIRECTORY_MODE = 0o777 & ~_UMASK  # what mkdir gives a directory: a recycled one gets it back
_FILE_MODE = 0o666 & ~_UMASK  # what open(O_CREAT) gives a file: a recycled one gets it back
_OWNER = (os.geteuid(), os.getegid())  # whom open(O_CREAT) makes a file for: a recycled one must be theirs


_numbers = itertools.count()


def _unique_name() -> str:
    """A sandbox name no other sandbox of this cache has had, cheaper per action than a uuid4:
    the owner's pid first (see sweep_stale), a token drawn once per process (a dead process's
    leftovers may carry a recycled pid), a number."""
    pid = os.getpid()
    return f"{pid}-{_process_token(pid)}-{next(_numbers)}"


@functools.cache
def _process_token(pid: int) -> str:
    """Keyed by pid: a forked child draws its own."""
    return uuid.uuid4().hex[:12]


class NewInodes:
    """Where a sandbox's directories and files come from when nothing is recycled: made new."""

    def make_directories(self, path: Path | str) -> None:
        os.makedirs(path, exist_ok=True)  # shared parents (the sandbox base) may appear meanwhile: exist_ok

    def make_root(self, path: str) -> frozenset[str]:
        """A sandbox's root at `path`, and the names of the directories already in it: none."""
        self.make_directories(path)
        return frozenset()

    def make_directory(self, path: str) -> None:
        """`path`, whose parent exists."""
        _mkdir(path)

    def place_file(self, path: Path | str, size: int) -> bool:
        """Nothing to place: the caller's open() makes the file."""
        return False


class Sandbox:
    def __init__(self, base: Path, action: Action, inodes: NewInodes | Disposal = NewInodes()):
        """`inodes` makes the sandbox's directories and files (a Disposal recycles used ones)."""
        self.action = action
        self.inodes = inodes
        root = f"{base}/{_unique_name()}"
        self.root = Path(root)
        present = inodes.make_root(root)
        # Made in it so far (until the action runs, only we write here), a used root's skeleton included.
        self._directories = {root, *(f"{root}/{name}" for name in present)}
        for directory in (".home", ".tmp"):
            self.make_directories(f"{root}/{directory}")

    def make_directories(self, path: str) -> None:
        """`mkdir -p` inside the sandbox, top-down from the deepest directory made so far: no
        stat, no rename that fails for a missing parent."""
        missing = []
        while path not in self._directories:
            missing.append(path)
            parent = os.path.dirname(path)
            if parent == path:
                raise ValueError(f"{missing[0]} is not inside the sandbox {self.root}")
            path = parent
        for directory in reversed(missing):
            self.inodes.make_directory(directory)
            self._directories.add(directory)

    def new_file(self, path: Path) -> BinaryIO:
        """`path` (in an existing directory) opened empty for writing: a log, which only a child
        process writes, so unbuffered (no buffer, no ioctl or lseek to set one up). The empty
        log an earlier action left there (SandboxRunner lends log directories) is used as it
        is; where there is none, a spare file."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        except FileNotFoundError:
            self.inodes.place_file(path, 0)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        return open(fd, "wb", buffering=0)

    def substitute(self, text: str) -> str:
        for name, root in self.action.toolchain_roots:
            text = text.replace(toolchain_root_placeholder(name), root)
        return text.replace(SANDBOX_PLACEHOLDER, str(self.root))

    def env(self) -> dict[str, str]:
        return {k: self.substitute(v) for k, v in self.action.env}

    def argv(self) -> list[str]:
        return [self.substitute(a) for a in self.action.argv]

    def stage(self, workspace_root: Path, dep_results: Mapping[str, ActionResult], cas: ContentStore) -> None:
        """Lay out the sources from the workspace and the deps' outputs from the CAS."""
        sources = [(workspace_root / relative, sandbox_path, None) for sandbox_path, relative in self.action.sources]
        self._stage(sources, dep_results, cas)

    def stage_from_cas(self, sources: Iterable[Input], dep_results: Mapping[str, ActionResult],
                       cas: ContentStore) -> None:
        """Lay out everything from the CAS: a remote worker has the sources' blobs, not the workspace."""
        self._stage([(cas.blob_path(i.digest, i.executable), i.path, i.digest) for i in sources], dep_results, cas)

    def _stage(self, sources: list[tuple[Path, str, str | None]], dep_results: Mapping[str, ActionResult],
               cas: ContentStore) -> None:
        self._cas = cas
        self._linked: list[tuple[Path, tuple, str | None]] = []  # (staged file, stat, CAS digest)
        root = str(self.root)  # paths as strings: a Path per input file costs more than its syscalls
        for src, sandbox_path, digest in sources:
            self._stage_file(src, f"{root}/{sandbox_path}", digest)
        for label, result in dep_results.items():
            directory = f"{root}/{self.action.dep_dir(label)}"
            for sub in result.directories:
                self.make_directories(f"{directory}/{sub}")
            for output in result.outputs:
                blob = cas.blob_file(output.digest, output.executable)
                self._stage_file(blob, f"{directory}/{output.path}", output.digest)
            make_symlinks(directory, result)
        for path in (*self.action.outputs, *self.action.output_dirs):
            self.make_directories(os.path.dirname(f"{root}/{path}"))
        out = f"{root}/out"
        below_out = f"{out}/"
        if out in self._directories and not any(d.startswith(below_out) for d in self._directories):
            os.rmdir(out)  # a used root's, and this action has nothing there: no directory it would not have had

    def _stage_file(self, src: Path | str, dest: str, digest: str | None) -> None:
        self.make_directories(os.path.dirname(dest))
        st = os.stat(src)
        if st.st_size >= COPY_BELOW_BYTES:
            try:
                os.link(src, dest)
            except OSError:
                pass  # on another filesystem: copied like a small one
            else:
                self._linked.append((Path(dest), (st.st_size, st.st_mtime_ns), digest))
                return
        _copy(src, dest, st, placed=self.inodes.place_file(dest, st.st_size))

    def check_inputs_untouched(self) -> None:
        """Fail the action if it wrote to a hardlinked input (and drop a damaged CAS blob)."""
        touched = []
        for path, stamp, digest in self._linked:
            st = path.stat() if path.exists() else None
            if st is None or (st.st_size, st.st_mtime_ns) != stamp:
                touched.append(str(path.relative_to(self.root)))
                if digest is not None:
                    self._cas.verify(digest)
        if touched:
            raise ActionError(
                f"{self.action.label} modified its input(s) {', '.join(touched)}",
                hint="actions must write only their declared outputs; copy an input before changing it",
            )

    def collect(self, label: str) -> tuple[list[tuple[str, str, bool, int]], list[str], list[tuple[str, str]]]:
        """Declared outputs as (path relative to the target's outdir, file, executable, size),
        directories, and in-tree symlinks; raise ActionError on anything missing or escaping."""
        outdir = output_dir(label)
        files, directories, symlinks = [], [], []
        for path in self.action.outputs:
            st = self._plain_file(path)
            if st is not None:  # a regular file: nothing more to check, no Path to build
                plain = f"{self.root}/{path}"
                files.append((_relative(path, outdir), plain, os.access(plain, os.X_OK), st.st_size))
                continue
            full = self.root / path
            if not os.path.lexists(full):
                raise ActionError(
                    f"{label} did not produce its declared output '{_relative(path, outdir)}'",
                    hint=f"the command must write {path} (relative to its working directory); "
                    "use {{out}} or {{out:NAME}} in the command",
                )
            resolved = self._inside(full, label)
            st = _stat_or_none(resolved)
            if st is None or not stat.S_ISREG(st.st_mode):
                raise ActionError(f"{label}: declared output '{_relative(path, outdir)}' is not a regular file",
                                  hint="declare directories under out_dirs")
            files.append((_relative(path, outdir), str(resolved), os.access(resolved, os.X_OK), st.st_size))
        for path in self.action.output_dirs:
            full = self.root / path
            if not full.is_dir() or full.is_symlink():
                raise ActionError(f"{label} did not produce its declared output directory '{_relative(path, outdir)}'")
            directories.append(_relative(path, outdir))
            for current, subdirs, names in os.walk(full):
                for name in sorted(subdirs + names):
                    entry = Path(current) / name
                    relative = _relative(str(entry.relative_to(self.root)), outdir)
                    if entry.is_symlink():
                        target = os.readlink(entry)
                        self._inside(entry, label, within=full)
                        symlinks.append((relative, target))
                    elif entry.is_dir():
                        directories.append(relative)
                    elif (st := _stat_or_none(entry)) is not None and stat.S_ISREG(st.st_mode):
                        files.append((relative, str(entry), os.access(entry, os.X_OK), st.st_size))
                    else:
                        raise ActionError(f"{label}: output '{relative}' is not a file, directory or symlink")
                subdirs[:] = [d for d in subdirs if not (Path(current) / d).is_symlink()]
        return files, directories, symlinks

    def _plain_file(self, path: str) -> os.stat_result | None:
        """The stat of sandbox path `path` if it is a regular file reached through no symlink:
        then it is where it reads, inside the sandbox, and needs no resolving (a few lstats,
        not dozens); else None."""
        current = str(self.root)
        for part in path.split("/"):
            if part in ("", ".", ".."):
                return None
            current = f"{current}/{part}"
            try:
                st = os.lstat(current)
            except OSError:
                return None
            if stat.S_ISLNK(st.st_mode):
                return None
        return st if stat.S_ISREG(st.st_mode) else None

    def _inside(self, path: Path, label: str, within: Path | None = None) -> Path:
        """The real path of `path`, which must stay inside `within` (default: the sandbox)."""
        boundary = (within or self.root).resolve()
        resolved = path.resolve()
        if resolved != boundary and boundary not in resolved.parents:
            raise ActionError(
                f"{label}: output '{path.relative_to(self.root)}' is a symlink escaping the sandbox "
                f"(points to {os.readlink(path) if path.is_symlink() else resolved})",
                hint="outputs must be real files inside the action's output directory",
            )
        return resolved

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


class Disposal:
    """Disposes of used sandboxes off the build's critical path, and keeps their inodes.

    Making a directory or a file is among the dearest steps of a trivial action, and dearer the
    more inodes were freed in the last minutes (ext4 without a journal skips every inode freed
    in the last 1-6 minutes when it allocates one, one buffer lookup each: measured, 22% of a
    2,000-action build's CPU, most of it for the files a sandbox creates and deletes: staged
    copies of inputs, stdout, stderr). So a used sandbox's inodes are kept for later sandboxes
    instead of freed: its directories, emptied, and its plain files (at most one block, no
    other link), when they are this process's own and carry no extended attributes, join a
    pool of spares, with modes reset; a later sandbox renames a spare directory where it would
    mkdir, and a spare file where it is about to create and fill one (`place_file`). A used
    sandbox root is kept whole with the directories most sandboxes have (`_SKELETON`: `.home`,
    `.tmp`, `out`), emptied and checked like any spare but left where they are: a later
    sandbox's root comes with them (`make_root`), which spares two renames for each.
    Freeing a file's data blocks is dear too where the filesystem discards them at once (ext4
    mounted with `discard` and without a journal waits for the device in the syscall that frees
    them: measured, 2.3 s of each worker's 13 s in a 2,000-action build). So a spare file keeps
    its block: one holding data goes only where data is written, which overwrites it and cuts
    it to size (`_copy`), and an empty file (a log) gets a spare holding none.
    Other files are unlinked, but those whose unlinking would free data blocks go to the trash,
    with what cannot be emptied that way (an unusual tree, a directory it cannot empty): each
    is renamed into a trash directory (one syscall), and every `batch` of them, one `rm -rf`
    child process deletes the lot, so thousands of small trees cost mlbuild neither CPU, nor
    the GIL, nor a wait for the device. The spares and the trash are named after this process,
    so `sweep_stale` removes what a killed build left."""

    def __init__(self, base: Path, batch: int = 256, spares: int = 2048):
        self.base = base
        self.batch = batch
        self.max_spares = spares  # of each kind
        self._lock = threading.Lock()
        self._trash: Path | None = None
        self._count = 0
        self._removers: list[tuple[subprocess.Popen, Path]] = []
        self._spare_dir = base / f"{os.getpid()}-spares-{uuid.uuid4().hex[:8]}"
        self._spare_directories: list[str] = []  # empty, in _spare_dir
        self._spare_files: list[str] = []  # holding no data block, in _spare_dir
        self._spare_files_with_data: list[str] = []  # holding one block, in _spare_dir
        self._spare_roots: list[str] = []  # in _spare_dir
        self._skeletons: dict[str, frozenset[str]] = {}  # spare root -> the skeleton directories it holds
        self._spare_count = 0

    def make_directories(self, path: Path | str) -> None:
        """`mkdir -p path`, each missing directory a spare when there is one."""
        path = os.fspath(path)
        if os.path.isdir(path) or self._place(self._spare_directories, path):
            return
        parent = os.path.dirname(path)
        if not os.path.isdir(parent):
            self.make_directories(parent)
        self.make_directory(path)

    def make_root(self, path: str) -> frozenset[str]:
        """A sandbox's root at `path`: a used one when there is one; the names of the skeleton
        directories it holds (empty, as mkdir makes them)."""
        spare = self._place(self._spare_roots, path)
        if spare is not None:
            with self._lock:
                return self._skeletons.pop(spare)
        self.make_directories(path)
        return frozenset()

    def make_directory(self, path: str) -> None:
        """`path`, whose parent exists: a spare when there is one."""
        if not self._place(self._spare_directories, path):
            _mkdir(path)

    def place_file(self, path: Path | str, size: int) -> bool:
        """Put a spare file at `path` (missing) when there is one, for the caller to fill with
        `size` bytes from its start and cut to that size; whether one was placed. One holding
        data only where data will be written: cutting it to nothing would free its block."""
        if size and self._place(self._spare_files_with_data, path):
            return True
        return self._place(self._spare_files, path) is not None

    def _place(self, spares: list[str], path: Path | str) -> str | None:
        """Rename a spare to `path` (missing: a rename never replaces anything here) and say
        which; None if there is none, or its parent is missing (then the spare stays one)."""
        with self._lock:
            spare = spares.pop() if spares else None
        if spare is None:
            return None
        try:
            os.rename(spare, path)
        except OSError:
            with self._lock:
                spares.append(spare)
            return None
        return spare

    def discard(self, path: Path | str) -> None:
        """Empty `path` into the spares, or else send it to the trash."""
        self._dispose(path, self._recycle)

    def discard_sandbox(self, root: Path | str) -> None:
        """Like `discard`, keeping `root` whole as a spare root with its skeleton directories."""
        self._dispose(root, self._recycle_root)

    def _dispose(self, path: Path | str, recycle: Callable[[str], None]) -> None:
        """`recycle(path)`, which leaves nothing at `path` when it returns; where it fails, the
        trash takes what is left."""
        try:
            recycle(os.fspath(path))
            return
        except (OSError, RecursionError):
            pass
        if os.path.lexists(path):
            self._throw_away(path)

    def _recycle(self, top: str) -> None:
        """Keep `top`, emptied, and everything it holds as spares; an error leaves the rest in
        place. A directory that held many entries is removed instead: it keeps the blocks it
        grew to."""
        held, _ = self._recycle_entries(top)
        if held > _SPARE_MAX_ENTRIES or not (self._reset_directory(top) and self._keep(self._spare_directories, top)):
            os.rmdir(top)

    def _recycle_root(self, top: str) -> None:
        """Keep what sandbox root `top` holds as spares, but its skeleton directories, emptied,
        in place; and the root with them as a spare root."""
        held, skeleton = self._recycle_entries(top, _SKELETON)
        if held > _SPARE_MAX_ENTRIES or not (self._reset_directory(top)
                                             and self._keep(self._spare_roots, top, skeleton)):
            for name in skeleton:
                self._recycle(f"{top}/{name}")
            os.rmdir(top)

    def _recycle_entries(self, top: str, skeleton: frozenset[str] = frozenset()) -> tuple[int, frozenset[str]]:
        """Keep what `top` holds as spares, bottom up, but the `skeleton` directories among it,
        emptied, where they are when they can serve another sandbox as they are: (how many
        entries `top` held, the names of those left)."""
        held, left = 0, []
        with os.scandir(top) as entries:
            for entry in entries:
                held += 1
                if not entry.is_dir(follow_symlinks=False):
                    self.discard_file(entry.path, entry.stat(follow_symlinks=False))
                elif entry.name not in skeleton:
                    self._recycle(entry.path)
                elif self._recycle_entries(entry.path)[0] <= _SPARE_MAX_ENTRIES and self._reset_directory(entry.path):
                    left.append(entry.name)
                else:
                    os.rmdir(entry.path)
        return held, frozenset(left)

    def _reset_directory(self, path: str) -> bool:
        """Whether emptied directory `path` can serve another sandbox: nothing of the action
        comes with it, and it has the mode mkdir gives (set again if the action changed it)."""
        return _reset(path, os.lstat(path), _DIRECTORY_MODE)

    def discard_file(self, path: str, st: os.stat_result) -> None:
        """Keep used file `path` (`st`: its lstat) as a spare, or else delete it: unlinked, or
        sent to the trash if unlinking it would free data blocks."""
        if self.reusable(path, st) and self._keep(self._spare_files_with_data if st.st_blocks else self._spare_files,
                                                  path):
            return
        if stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and st.st_blocks:
            self._throw_away(path)
        else:
            os.unlink(path)

    def reusable(self, path: str, st: os.stat_result) -> bool:
        """Whether used file `path` (`st`: its lstat) can serve again as a new file would: a plain
        file, small, with no other link, and nothing of the action attached; its mode is reset."""
        return (stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and st.st_blocks * 512 <= _SPARE_FILE_MAX_ALLOCATED
                and _reset(path, st, _FILE_MODE))

    def _keep(self, spares: list[str], path: str, skeleton: frozenset[str] | None = None) -> bool:
        """Move `path` into `spares` (a root with the `skeleton` it holds), unless they are full."""
        with self._lock:
            if len(spares) >= self.max_spares:
                return False
            if self._spare_count == 0:
                self._spare_dir.mkdir(parents=True, exist_ok=True)
            self._spare_count += 1
            spare = f"{self._spare_dir}/{self._spare_count}"
        os.rename(path, spare)
        with self._lock:
            if skeleton is not None:
                self._skeletons[spare] = skeleton
            spares.append(spare)
        return True

    def _throw_away(self, path: Path | str) -> None:
        with self._lock:
            if self._trash is None:
                self._trash = self.base / f"{os.getpid()}-trash-{uuid.uuid4().hex[:8]}"
                self._trash.mkdir(parents=True)
            self._count += 1
            os.rename(path, self._trash / str(self._count))
            if self._count % self.batch == 0:
                self._empty()

    def _empty(self) -> None:
        trash, self._trash = self._trash, None
        if trash is not None:
            remover = subprocess.Popen(["rm", "-rf", "--", str(trash)], stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self._removers.append((remover, trash))

    def finish(self) -> None:
        """Delete everything discarded so far, spares included, and wait for it."""
        with self._lock:
            self._spare_directories, self._spare_roots, self._skeletons = [], [], {}
            self._spare_files, self._spare_files_with_data = [], []
            made, self._spare_count = self._spare_count > 0, 0
        if made:
            self._throw_away(self._spare_dir)
        with self._lock:
            self._empty()
            removers, self._removers = self._removers, []
        for remover, trash in removers:
            remover.wait()
            shutil.rmtree(trash, ignore_errors=True)  # if rm was interrupted


def sweep_stale(base: Path) -> None:
    """Remove sandboxes whose mlbuild process died (kill -9 leaves them behind)."""
    if not base.is_dir():
        return
    for entry in base.iterdir():
        pid = entry.name.split("-", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(entry, ignore_errors=True)
        except PermissionError:
            pass  # alive, another user's


def _nothing_attached(path: str, st: os.stat_result) -> bool:
    """Owned as a new inode would be, and without extended attributes (user data, security
    labels, ACLs: a directory's default ACL would shape the files a later action makes in it)."""
    return (st.st_uid, st.st_gid) == _OWNER and not os.listxattr(path, follow_symlinks=False)


def _reset(path: str, st: os.stat_result, mode: int) -> bool:
    """Whether used `path` (`st`: its lstat) carries nothing of the action, given back `mode`
    (what mkdir or open(O_CREAT) makes), whatever mode the action gave it."""
    if not _nothing_attached(path, st):
        return False
    if stat.S_IMODE(st.st_mode) != mode:
        os.chmod(path, mode)
    return True


def _mkdir(path: str) -> None:
    try:
        os.mkdir(path)
    except FileExistsError:  # another sandbox made it (a parent they share), or a symlink's parent
        if not os.path.isdir(path):
            raise


def _copy(src: Path | str, dest: str, st: os.stat_result, placed: bool) -> None:
    """Copy a file's bytes, mode and times (`st`: src's stat) into `dest`, a `placed` spare
    overwritten and then cut to size (truncating it first would free its block: Disposal):
    seven syscalls where shutil.copy2 makes about twenty (and no extended attributes: nothing
    but the bytes, mode and times of an input reaches an action)."""
    source = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (0 if placed else os.O_TRUNC), 0o600)
        try:
            copied = 0
            while copied < st.st_size and (sent := os.sendfile(target, source, copied, st.st_size - copied)):
                copied += sent
            if placed:
                os.ftruncate(target, copied)
            os.fchmod(target, stat.S_IMODE(st.st_mode))
            os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(target)
    finally:
        os.close(source)


def _stat_or_none(path: Path) -> os.stat_result | None:
    """os.stat of `path`, None where nothing is there to stat (a dangling symlink's target)."""
    try:
        return os.stat(path)
    except OSError:
        return None


def _relative(path: str, outdir: str) -> str:
    return path[len(outdir) + 1:] if path.startswith(outdir + "/") else path
