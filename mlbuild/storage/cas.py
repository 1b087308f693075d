"""The local content-addressed store: immutable blobs named by their blake3 digest.

Layout: `<root>/cas/<first two hex>/<digest>` (mode 0444), and `<digest>.x` (0555) for blobs
that must be materialized executable: a hardlink shares its inode's mode, so the two modes
need two files. A blob appears only whole: by an atomic rename of a fully written temp file,
or, for a file handed over complete (a sandbox's output), as a hardlink of it, which is as
atomic and needs no temp name. Blobs are not fsynced one by one: the action
cache syncs the filesystem once before it records the entries naming a batch of them
(action_cache.py), so no entry outlives its blobs in a power cut.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from ..hashing import StatCache, digest_bytes, digest_file
from .atomic import in_directory_made, temp_name_beside, temp_path_beside, unlink_quietly, write_atomically

_LARGE_COPY_WARNING_BYTES = 64 << 20


class ContentStore:
    def __init__(self, root: Path, stat_cache: StatCache | None = None):
        self.root = root / "cas"
        self.root.mkdir(parents=True, exist_ok=True)
        self._stat_cache = stat_cache or StatCache(None)

    def blob_path(self, digest: str, executable: bool = False) -> Path:
        return Path(self.blob_file(digest, executable))

    def blob_file(self, digest: str, executable: bool = False) -> str:
        """blob_path as a string: a check on every input of every action need not build a Path."""
        return f"{self.root}/{digest[:2]}/{digest}.x" if executable else f"{self.root}/{digest[:2]}/{digest}"

    def contains(self, digest: str, executable: bool = False) -> bool:
        return os.path.isfile(self.blob_file(digest, executable))

    def holds(self, result) -> bool:
        """Whether every output blob of an ActionResult is here (build without the bytes leaves
        a remotely built one's in the remote CAS)."""
        return all(self.contains(o.digest, o.executable) for o in result.outputs)

    def put_bytes(self, data: bytes) -> str:
        digest = digest_bytes(data)
        dest = self.blob_file(digest)
        if not os.path.exists(dest):
            write_atomically(dest, data, durable=False)
        return digest

    def put_file(
        self, src: Path | str, executable: bool = False, digest: str | None = None, take: bool = False
    ) -> str:
        """Store `src` and return its digest; `src` is hashed unless the caller knows the digest.

        With `take=True` (a sandbox output about to be thrown away) the blob is a hardlink of
        `src` and `src` turns read-only; otherwise the bytes are copied and `src` is untouched.
        """
        digest = digest or digest_file(src)
        dest = self.blob_file(digest, executable)
        if os.path.exists(dest):
            return digest
        mode = 0o555 if executable else 0o444
        if take and _linked(src, dest, mode):
            return digest
        tmp = temp_name_beside(dest)
        try:
            in_directory_made(lambda: shutil.copyfile(src, tmp), tmp)
            os.chmod(tmp, mode)
            os.replace(tmp, dest)
        except BaseException:
            unlink_quietly(tmp)
            raise
        return digest

    def adopt(self, tmp: Path, expected_digest: str, executable: bool = False) -> bool:
        """Move a downloaded temp file into the store if its bytes hash to `expected_digest`.

        The temp file must live on the store's filesystem. On mismatch it is deleted and False
        is returned: nothing unverified ever enters the store.
        """
        if digest_file(tmp) != expected_digest:
            os.unlink(tmp)
            return False
        dest = self.blob_path(expected_digest, executable)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(tmp, 0o555 if executable else 0o444)
        os.replace(tmp, dest)
        return True

    def incoming_path(self, digest: str) -> Path:
        """A temp path on the store's filesystem for a blob being downloaded."""
        return temp_path_beside(self.blob_path(digest))

    def verify(self, digest: str, executable: bool = False) -> bool:
        """True if the blob exists and its bytes match its name; a corrupt blob is deleted.

        Uses the stat cache, so an untouched blob is hashed once, not on every cache hit.
        """
        path = self.blob_path(digest, executable)
        try:
            actual = self._stat_cache.digest(path)
        except FileNotFoundError:
            return False
        if actual == digest:
            return True
        self._stat_cache.forget(path)
        path.unlink(missing_ok=True)
        return False

    def materialize(self, digest: str, dest: Path | str, executable: bool = False) -> None:
        """Make `dest` hold the blob: a hardlink, or a copy (with a warning when large)."""
        src = self.blob_file(digest, executable)
        try:
            os.link(src, dest)  # the common case: a fresh directory, the same filesystem
            return
        except OSError:
            pass
        src, dest = Path(src), Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.is_symlink() or dest.exists():
            if not dest.is_dir() or dest.is_symlink():
                dest.unlink()
            else:
                shutil.rmtree(dest)
        try:
            os.link(src, dest)
        except OSError:
            size = src.stat().st_size
            if size >= _LARGE_COPY_WARNING_BYTES:
                print(
                    f"warning: copying {size >> 20} MiB to {dest}: the output tree and the cache "
                    "are on different filesystems; put --cache-dir on the workspace's filesystem "
                    "to get hardlinks",
                    file=sys.stderr,
                )
            shutil.copy2(src, dest)

    def iter_blobs(self):
        """Yield (path, digest, size, mtime) of every blob, for stats and garbage collection."""
        for shard in self.root.iterdir():
            if not shard.is_dir():
                continue
            for entry in os.scandir(shard):
                if entry.name.endswith(".tmp"):
                    continue
                st = entry.stat()
                yield Path(entry.path), entry.name.removesuffix(".x"), st.st_size, st.st_mtime


def _linked(src: Path | str, blob: str, mode: int) -> bool:
    """Publish complete file `src` as `blob` by a hardlink, src turning `mode` (they share the
    inode); False where no link can be made (another filesystem, a link limit): then copy."""
    os.chmod(src, mode)
    try:
        in_directory_made(lambda: os.link(src, blob), blob)
    except FileExistsError:
        pass  # the same bytes, published meanwhile by another build
    except FileNotFoundError:
        raise  # src is gone
    except OSError:
        return False
    return True
