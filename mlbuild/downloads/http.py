"""Fetch one checksum-pinned file: --distdir copies first, then mirrors with retries and resume."""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Protocol
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

import requests

from mlbuild.downloads.checksum import Checksum
from mlbuild.errors import ActionError, BuildFileError, Location
from mlbuild.loading.yamlsource import decode_text

CHUNK_BYTES = 1 << 20
SCHEMES = ("http", "https", "file")

Rewrite = tuple[str, str]  # (regex, replacement)
Source = tuple[int, int | None, Iterator[bytes]]  # (offset of the first byte, total size, chunks)


class DownloadProgress(Protocol):
    """Receives the progress of one transfer at a time (start, advance..., finish)."""

    def start(self, url: str, total_bytes: int | None) -> None: ...

    def advance(self, n: int) -> None: ...

    def finish(self) -> None: ...


class NullProgress:
    """Shows nothing."""

    def start(self, url: str, total_bytes: int | None) -> None:
        pass

    def advance(self, n: int) -> None:
        pass

    def finish(self) -> None:
        pass


def _warn_to_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


class _Transient(Exception):
    """A failure another attempt at the same URL may fix; `restart` discards the partial file."""

    def __init__(self, reason: str, restart: bool = False):
        super().__init__(reason)
        self.restart = restart


class _MirrorFailed(Exception):
    """This URL cannot give us the file; move on to the next one."""

    def __init__(self, reason: str, mismatch: bool = False):
        super().__init__(reason)
        self.mismatch = mismatch


def load_rewrites(path: Path) -> list[Rewrite]:
    """Read `rewrite REGEX REPLACEMENT` lines; blank lines and lines starting with # are skipped."""
    try:
        lines = decode_text(Path(path).read_bytes(), str(path)).splitlines()
    except OSError as e:
        raise BuildFileError(f"cannot read downloader config {path}: {e.strerror}", Location(str(path))) from e
    rules = []
    for number, line in enumerate(lines, 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        where = Location(str(path), number)
        if words[0] != "rewrite":
            raise BuildFileError(f"unknown directive {words[0]!r}; expected 'rewrite REGEX REPLACEMENT'", where)
        if len(words) != 3:
            raise BuildFileError(f"expected 'rewrite REGEX REPLACEMENT', got {line.strip()!r}", where)
        _compile_rewrite(words[1], words[2], where)
        rules.append((words[1], words[2]))
    return rules


def _compile_rewrite(pattern: str, replacement: str, where: Location | None) -> tuple[re.Pattern, str]:
    """Compile a rule, checking both the regex and the group references of the replacement."""
    try:
        compiled = re.compile(pattern)
        compiled.sub(replacement, "")
    except (re.error, RecursionError, OverflowError) as e:
        raise BuildFileError(f"bad rewrite {pattern!r} -> {replacement!r}: {e}", where) from e
    return compiled, replacement


def _rewrite(url: str, rules: Sequence[tuple[re.Pattern, str]]) -> str:
    """Apply the first rule whose regex matches `url` (Python `\\1` group syntax)."""
    for pattern, replacement in rules:
        if pattern.search(url):
            return pattern.sub(replacement, url, count=1)
    return url


def _check_url(url: str, original: str) -> None:
    parts = urlsplit(url)
    origin = "" if url == original else f" (rewritten from {original!r})"
    if parts.scheme.lower() not in SCHEMES:
        raise BuildFileError(f"cannot download {url!r}{origin}: only http, https and file URLs are supported")
    if parts.scheme.lower() == "file" and parts.netloc not in ("", "localhost"):
        raise BuildFileError(f"cannot download {url!r}{origin}: file URLs must be local (file:///path)")


def _basename(url: str) -> str | None:
    """The file name in the URL's path (query and fragment ignored), or None when there is none."""
    name = unquote(PurePosixPath(urlsplit(url).path).name)
    return name if name not in ("", "..") and "/" not in name else None


def fetch(
    urls: Sequence[str],
    checksum: Checksum,
    dest: Path,
    *,
    distdirs: Sequence[Path] = (),
    rewrites: Sequence[Rewrite] = (),
    session: requests.Session | None = None,
    retries: int = 3,
    backoff_s: float = 0.5,
    timeout_s: float = 30.0,
    progress: DownloadProgress | None = None,
    warn: Callable[[str], None] = _warn_to_stderr,
) -> Path:
    """Put the file matching `checksum` at `dest`, from a distdir or the first URL that works.

    A distdir file is used when its name is the basename of a URL (before or after rewriting) and
    its checksum matches; it is hardlinked when possible, so callers must not modify `dest` in place.

    `urls` are mirrors tried in order after `rewrites` (first matching regex wins). Transient
    failures are retried `retries` times per URL; partial data is kept in `dest`.part and resumed
    with a Range request, also across mirrors and runs. Raises ActionError when no source gave
    the right bytes; `dest` is then untouched.
    """
    dest = Path(dest)
    if not urls:
        raise BuildFileError(f"no URLs to download {dest.name} from")
    if retries < 1:
        raise ValueError(f"retries must be at least 1, got {retries}")
    rules = [_compile_rewrite(pattern, replacement, None) for pattern, replacement in rewrites]
    mirrors = [(_rewrite(url, rules), url) for url in urls]
    for url, original in mirrors:
        _check_url(url, original)
    names = list(dict.fromkeys(name for pair in mirrors for name in map(_basename, pair) if name))
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.parent / (dest.name + ".part")

    if _copy_from_distdirs(distdirs, names, checksum, part, warn):
        return _commit(part, dest)

    owned = session is None
    session = session or requests.Session()
    transfer = partial(
        _download_verified,
        part=part,
        checksum=checksum,
        session=session,
        retries=retries,
        backoff_s=backoff_s,
        timeout_s=timeout_s,
        progress=progress or NullProgress(),
    )
    failures: list[tuple[str, _MirrorFailed]] = []
    try:
        for index, (url, original) in enumerate(mirrors):
            shown = url if url == original else f"{url} (rewritten from {original})"
            try:
                transfer(url)
            except _MirrorFailed as e:
                failures.append((shown, e))
                if index + 1 < len(mirrors):
                    warn(f"download from {shown} failed: {e}; trying the next URL")
                continue
            return _commit(part, dest)
    finally:
        if owned:
            session.close()
    raise _all_failed(failures, names[0] if names else dest.name, checksum, distdirs)


def _all_failed(failures, name: str, checksum: Checksum, distdirs: Sequence[Path]) -> ActionError:
    lines = [f"could not download {name} ({checksum}):"]
    lines += [f"  {url}: {failure}" for url, failure in failures]
    if distdirs:
        searched = ", ".join(str(d) for d in distdirs)
        lines.append(f"  no file with this name and checksum in --distdir: {searched}")
    hint = (
        f"put the file in a directory passed with --distdir DIR (file name: {name}), "
        "or add a rewrite to an internal mirror"
    )
    if all(failure.mismatch for _, failure in failures):
        hint = f"if the file changed upstream on purpose, update the checksum; otherwise {hint}"
    return ActionError("\n".join(lines), hint=hint)


def _copy_from_distdirs(distdirs, names, checksum: Checksum, part: Path, warn) -> bool:
    """Hardlink (or copy) the first distdir file with a URL's basename and the right checksum to `part`."""
    for directory in distdirs:
        for name in names:
            candidate = Path(directory) / name
            if not candidate.is_file():
                continue
            actual = checksum.hash_file(candidate).hexdigest()
            if actual != checksum.hexdigest:
                warn(f"ignoring {candidate}: expected {checksum}, got {checksum.algorithm}:{actual}")
                continue
            part.unlink(missing_ok=True)
            try:
                os.link(candidate, part)
            except OSError:
                shutil.copyfile(candidate, part)
            return True
    return False


def _commit(part: Path, dest: Path) -> Path:
    with open(part, "rb") as f:
        os.fsync(f.fileno())
    os.replace(part, dest)
    return dest


def _download_verified(url: str, *, part: Path, checksum: Checksum, **transfer) -> None:
    """Leave the verified file at `part`, or raise _MirrorFailed (deleting a file that does not verify)."""
    digest, resumed = _download(url, part, checksum, **transfer)
    if digest != checksum.hexdigest and resumed:  # stale partial data (e.g. from an older version): start over
        part.unlink()
        digest, _ = _download(url, part, checksum, **transfer)
    if digest != checksum.hexdigest:
        part.unlink()
        raise _MirrorFailed(
            f"checksum mismatch: expected {checksum}, got {checksum.algorithm}:{digest}", mismatch=True
        )


_RETRYABLE = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


def _download(url, part, checksum, *, session, retries, backoff_s, timeout_s, progress) -> tuple[str, bool]:
    """Transfer `url` into `part` with retries; the hex digest and whether existing bytes were kept."""
    if url.lower().startswith("file:"):
        open_source = _open_file
    else:
        open_source = partial(_open_http, session=session, timeout_s=timeout_s)
    for attempt in range(retries):
        if attempt:
            time.sleep(backoff_s * 2 ** (attempt - 1))
        try:
            return _attempt(url, part, checksum, open_source, progress)
        except requests.exceptions.SSLError as e:
            raise _MirrorFailed(_describe(e)) from e
        except _RETRYABLE as e:
            reason = _describe(e)
        except _Transient as e:
            reason = str(e)
            if e.restart:
                part.unlink(missing_ok=True)
        except requests.RequestException as e:
            raise _MirrorFailed(_describe(e)) from e
    raise _MirrorFailed(f"{reason} ({retries} attempt{'s' if retries > 1 else ''})")


def _attempt(url, part: Path, checksum: Checksum, open_source, progress: DownloadProgress) -> tuple[str, bool]:
    """One transfer, appending to `part` when the source can resume from its current size."""
    offset = part.stat().st_size if part.exists() else 0
    if offset:
        hasher = checksum.hash_file(part)
        if hasher.hexdigest() == checksum.hexdigest:  # a complete file left by an earlier run
            return checksum.hexdigest, True
    with open_source(url, offset) as (start, total, chunks):
        if not start:
            hasher = checksum.new_hasher()
        progress.start(url, total)
        try:
            progress.advance(start)
            with open(part, "ab" if start else "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
                    hasher.update(chunk)
                    progress.advance(len(chunk))
        finally:
            progress.finish()
    return hasher.hexdigest(), start > 0


@contextmanager
def _open_http(url: str, offset: int, *, session: requests.Session, timeout_s: float) -> Iterator[Source]:
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    with session.get(url, headers=headers, stream=True, timeout=timeout_s) as response:
        status = f"HTTP {response.status_code} {response.reason or ''}".rstrip()
        if response.status_code == 200:
            length = response.headers.get("Content-Length", "")
            yield 0, int(length) if length.isdigit() else None, response.iter_content(CHUNK_BYTES)
        elif response.status_code == 206 and offset:
            start, total = _content_range(response.headers.get("Content-Range", ""))
            if start != offset:
                raise _Transient(f"server resumed at byte {start}, not {offset}", restart=True)
            yield start, total, response.iter_content(CHUNK_BYTES)
        elif response.status_code == 416 and offset:
            raise _Transient(f"{status} for a resume from byte {offset}", restart=True)
        elif response.status_code == 429 or response.status_code >= 500:
            raise _Transient(status)
        else:
            raise _MirrorFailed(status)


def _content_range(header: str) -> tuple[int | None, int | None]:
    """(first byte, total size) from `bytes FIRST-LAST/TOTAL`; (None, None) if malformed."""
    found = re.fullmatch(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)\s*", header)
    if not found:
        return None, None
    return int(found.group(1)), int(found.group(2)) if found.group(2) != "*" else None


@contextmanager
def _open_file(url: str, offset: int) -> Iterator[Source]:
    path = Path(url2pathname(urlsplit(url).path))
    try:
        f = open(path, "rb")
    except OSError as e:
        raise _MirrorFailed(f"cannot read {path}: {e.strerror}") from e
    with f:
        size = os.fstat(f.fileno()).st_size
        start = offset if offset < size else 0
        f.seek(start)
        yield start, size, iter(partial(f.read, CHUNK_BYTES), b"")


def _describe(error: requests.RequestException) -> str:
    """A short reason for a requests failure, without urllib3's nested reprs."""
    if isinstance(error, requests.Timeout):
        return "timed out"
    if isinstance(error, requests.exceptions.ChunkedEncodingError):
        return "connection broken during the transfer"
    found = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(error))
    if found:
        return f"connection failed: {found.group(1).strip()}"
    return f"{type(error).__name__}: {error}"
