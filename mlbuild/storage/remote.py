"""Remote cache client: shares action results with teammates and CI over the Bazel HTTP cache shape.

Layout on the server: `<base>/cas/<blake3 digest>` holds blobs, `<base>/ac/<action key>` holds
`ActionResult.to_json()` manifests; GET, HEAD and PUT are the whole protocol, so a stock nginx
with WebDAV PUT serves it (see `nginx.py` and deploy/nginx/).

The remote is an optimization, never a dependency: every failure (down, slow, 5xx, refused
credentials, wrong bytes) turns into a miss or a skipped upload plus at most one warning per
kind of failure, and a circuit breaker stops talking to a server that keeps failing so a dead
cache costs one timeout per build, not one per action. Nothing from the server is trusted:
a blob streams into a temp file and enters the local store only if its blake3 digest matches,
and a manifest is uploaded only after all of its blobs, so a reader never finds an entry whose
blobs are missing (bazel#4276).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase

from ..errors import ActionError, UserError
from ..hashing import is_digest
from .action_cache import ActionResult
from .local import LocalCache

TOKEN_ENV = "MLBUILD_REMOTE_TOKEN"
CHUNK_SIZE = 1 << 20  # streaming unit both ways: big enough for full speed, bounded memory
POOL_SIZE = 32  # connections kept per process: more than any sensible --jobs
BREAKER_THRESHOLD = 3  # consecutive transient failures after which the remote is abandoned
_BACKOFF_S = 0.1  # first retry delay, doubled on each further retry
_CREDENTIALS_HINT = f"check credentials (netrc, URL userinfo or {TOKEN_ENV})"

T = TypeVar("T")


@dataclass
class RemoteOptions:
    url: str
    upload: bool = True
    timeout_s: float = 10.0  # connect timeout, and the longest silence while reading
    retries: int = 2  # extra attempts after a transient failure (connection, timeout, 5xx)
    ca_bundle: str | None = None  # TLS with a custom CA (requests verify=)
    bearer_token: str | None = None  # Authorization: Bearer
    max_upload_bytes: int | None = None  # blobs above this are not uploaded (entry not published)

    @classmethod
    def from_settings(
        cls,
        url: str,
        *,
        upload: bool,
        timeout_s: float,
        token_env: str | None = TOKEN_ENV,
        token_file: str | os.PathLike | None = None,
        ca_bundle: str | None = None,
        max_upload_bytes: int | None = None,
    ) -> RemoteOptions:
        """Options from command-line flags; the bearer token comes from `token_file`, else `$token_env`.

        A file is the safer place (not visible in `ps` or in environment dumps); a bad URL or
        an unreadable token file is the user's to fix, so it is a UserError, not a warning.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UserError(
                f"remote cache URL {_redact(url)!r} is not an http:// or https:// URL",
                hint="e.g. --remote-cache http://cache.example.com:8080",
            )
        token = None
        if token_file is not None:
            try:
                token = Path(token_file).expanduser().read_text().strip() or None
            except OSError as exc:
                raise UserError(
                    f"cannot read remote cache token file {token_file}: {exc.strerror}"
                ) from None
        elif token_env:
            token = os.environ.get(token_env, "").strip() or None
        return cls(
            url=url,
            upload=upload,
            timeout_s=timeout_s,
            ca_bundle=ca_bundle,
            bearer_token=token,
            max_upload_bytes=max_upload_bytes,
        )


@dataclass
class RemoteStats:
    hits: int = 0  # entries fetched with all their blobs
    misses: int = 0  # entries the server does not have
    uploads: int = 0  # blobs uploaded
    skipped_uploads: int = 0  # blobs the server already had
    bytes_down: int = 0  # blob bytes downloaded
    bytes_up: int = 0  # blob bytes uploaded
    errors: int = 0  # fetches and publishes given up because of the remote
    requests: int = 0  # HTTP requests sent, retries included


class RemoteCacheRequired(ActionError):
    """The remote cache failed while remote execution depended on it: the action cannot go on."""


class _Failure(Exception):
    """A remote problem, classified: `kind` selects the single warning a build prints for it.

    `transient` failures are retried and count toward the circuit breaker; `stops` says what the
    rest of the process gives up: "all" remote use, or just "uploads". A failure with no kind
    is silent (the remote was abandoned meanwhile and that was already reported).
    """

    def __init__(self, kind: str | None, message: str = "", *, transient=False, stops=None):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.transient = transient
        self.stops = stops


class _BearerAuth(AuthBase):
    """An auth object rather than a session header, so requests does not replace it by netrc."""

    def __init__(self, token: str):
        self._token = token

    def __call__(self, request):
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request


class _Adapter(HTTPAdapter):
    """Reads and sends a file body CHUNK_SIZE at a time, not urllib3's 16 KiB: fewer syscalls per GB."""

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, blocksize=CHUNK_SIZE, **kwargs)


class RemoteCache:
    """One remote cache for the whole process; safe to share between the build's threads."""

    def __init__(self, options: RemoteOptions, warn: Callable[[str], None]):
        """`warn` gets one line per kind of failure, without a "warning:" prefix."""
        self.options = options
        self.stats = RemoteStats()
        self._warn = warn
        parts = urlsplit(options.url)
        self.url = _redact(options.url).rstrip("/")  # the only form of the URL ever printed
        self._timeout = (options.timeout_s, options.timeout_s)
        self._verify = options.ca_bundle or True  # per request: REQUESTS_CA_BUNDLE can't override it
        self._session = requests.Session()
        adapter = _Adapter(pool_connections=1, pool_maxsize=POOL_SIZE, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers["Accept-Encoding"] = "identity"  # bytes as stored: nothing to undo
        if parts.username is not None:
            self._session.auth = (unquote(parts.username), unquote(parts.password or ""))
        elif options.bearer_token:
            self._session.auth = _BearerAuth(options.bearer_token)
        # else requests reads ~/.netrc for the host, as curl --netrc does.
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self._consecutive_failures = 0
        self._abandoned = False  # the circuit breaker is open, or reads were refused
        self._uploads_refused = False
        # Blobs the server served with wrong bytes: uploaded again without trusting HEAD, so
        # the teammate who rebuilds them repairs the server for everyone.
        self._corrupt_on_server: set[str] = set()
        # Blobs this process uploaded or found on the server: not asked about again (one HEAD
        # per blob per process, e.g. the empty log every action has, on a remote worker).
        self._on_server: set[str] = set()

    def fetch(self, key: str, local: LocalCache, *, blobs: bool = True,
              key_components: bytes | None = None) -> ActionResult | None:
        """The result the remote holds for `key`, with every blob verified into `local`; else None.

        On success the entry is also recorded in `local`'s action cache (with `key_components`,
        the key's canonical encoding, for `explain`). With `blobs=False`
        only the manifest comes (build without the bytes): its blobs stay on the server until
        something needs them (`fetch_blob`), and `local` records nothing.
        """
        if self._abandoned:
            return None
        try:
            body = self._retrying(partial(self._get_manifest, key))
            if body is None:
                self._count(misses=1)
                return None
            result = self._parse(key, body)
            for digest, executable in sorted(_blobs(result)) if blobs else ():
                if not local.cas.verify(digest, executable):
                    self._retrying(partial(self._download, key, digest, executable, local))
        except _Failure as failure:
            self._fail(failure)
            return None
        if blobs:
            local.actions.store(key, result, key_components)
        self._count(hits=1)
        return result

    def publish(self, key: str, result: ActionResult, local: LocalCache) -> None:
        """Upload `result`'s missing blobs from `local`, then its manifest: the manifest goes last."""
        if not self.options.upload or self._abandoned or self._uploads_refused:
            return
        blobs = dict(sorted(_blobs(result)))  # the server keeps one copy per digest, no mode
        cap = self.options.max_upload_bytes
        if cap is not None:
            for digest, executable in blobs.items():
                size = local.cas.blob_path(digest, executable).stat().st_size
                if size > cap:
                    self._warn_once(
                        "too_large",
                        f"remote cache: not uploading blob {digest} ({size >> 20} MiB, above the "
                        f"{cap >> 20} MiB upload limit); actions producing it stay local",
                    )
                    return
        try:
            for digest, executable in blobs.items():
                self._retrying(partial(self._upload, key, digest, executable, local))
            self._retrying(partial(self._put_manifest, key, result.to_json()))
        except _Failure as failure:
            self._fail(failure)

    # -- remote execution: the remote is where inputs and outputs live, so failures raise --

    def fetch_blob(self, digest: str, executable: bool, local: LocalCache, needed_by: str) -> None:
        """Bring one blob into `local`'s CAS, verified, unless it is already there."""
        if not local.cas.verify(digest, executable):
            self._required(partial(self._download, needed_by, digest, executable, local),
                           f"{needed_by}: cannot fetch blob {digest}")

    def upload_file(self, digest: str, path: Path, needed_by: str) -> None:
        """Put a file the caller has hashed (a workspace source) unless the server has it."""
        self._required(partial(self._put_blob, needed_by, digest, path, None), f"{needed_by}: cannot upload {path}")

    def upload_blob(self, digest: str, executable: bool, local: LocalCache, needed_by: str) -> None:
        """Put one blob of `local`'s CAS unless the server has it."""
        self._required(partial(self._upload, needed_by, digest, executable, local),
                       f"{needed_by}: cannot upload blob {digest}")

    def upload_result(self, key: str, result: ActionResult, local: LocalCache, *, manifest: bool) -> None:
        """Put every blob of `result` from `local`, then (if `manifest`) its action-cache entry."""
        for digest, executable in dict(sorted(_blobs(result))).items():
            self.upload_blob(digest, executable, local, key)
        if manifest:
            self._required(partial(self._put_manifest, key, result.to_json()), f"cannot upload entry {key}")

    def _required(self, attempt: Callable[[], T], what: str) -> T:
        """`attempt`, retried like any exchange, but its failure is the action's: no local fallback."""
        try:
            return self._retrying(attempt)
        except _Failure as failure:
            reason = failure.message.split("; ")[0] or f"remote cache {self.url} abandoned after repeated failures"
            raise RemoteCacheRequired(
                f"{what}: {reason}",
                hint="remote execution keeps every input and output in the remote cache: "
                "check that it is up and reachable from the client and every node",
            ) from None

    def close(self) -> None:
        self._session.close()

    # -- one attempt of each exchange; `_retrying` repeats them on transient failures --

    def _get_manifest(self, key: str) -> bytes | None:
        with self._request("GET", f"ac/{key}") as resp:
            if resp.status_code == 404:
                return None
            self._expect(resp, 200)
            return resp.content

    def _download(self, key: str, digest: str, executable: bool, local: LocalCache) -> None:
        """Stream one blob to a temp file in the local store, which adopts it only if it matches.

        adopt() hashes the finished file (memory-mapped, multi-threaded blake3): as fast as
        hashing in this loop, which would only add single-threaded work between reads.
        """
        tmp = local.cas.incoming_path(digest)
        try:
            with self._request("GET", f"cas/{digest}", stream=True) as resp:
                if resp.status_code == 404:
                    raise _Failure(
                        "missing",
                        f"remote cache: entry {key} names blob {digest}, missing from {self.url}; "
                        "ignoring the entry",
                    )
                self._expect(resp, 200)
                with open(tmp, "wb") as f:
                    f.writelines(resp.iter_content(CHUNK_SIZE))
                    size = f.tell()
            if not local.cas.adopt(tmp, digest, executable):
                self._corrupt_on_server.add(digest)
                self._on_server.discard(digest)
                raise _Failure(
                    "corrupt",
                    f"remote cache: blob {digest} from {self.url} does not match its digest; "
                    f"ignoring entry {key}",
                )
        finally:
            tmp.unlink(missing_ok=True)  # gone already when adopted
        self._count(bytes_down=size)

    def _upload(self, key: str, digest: str, executable: bool, local: LocalCache) -> None:
        """PUT one blob unless the server has it; a local blob that fails verification never goes."""
        self._put_blob(key, digest, local.cas.blob_path(digest, executable),
                       partial(local.cas.verify, digest, executable))

    def _put_blob(self, key: str, digest: str, path: Path, verify: Callable[[], bool] | None) -> None:
        if digest in self._on_server:
            self._count(skipped_uploads=1)
            return
        size = path.stat().st_size
        if digest not in self._corrupt_on_server:
            with self._request("HEAD", f"cas/{digest}") as resp:
                if resp.status_code == 200 and resp.headers.get("Content-Length") == str(size):
                    self._on_server.add(digest)
                    self._count(skipped_uploads=1)
                    return
                self._expect(resp, 200, 404)
        if verify is not None and not verify():
            raise _Failure(
                "local_corrupt",
                f"remote cache: local blob {digest} does not match its digest (deleted); "
                f"not uploading entry {key}",
            )
        with (
            open(path, "rb") as body,
            self._request(
                # An empty file would make requests fall back to chunked encoding beside our
                # Content-Length, which nginx rejects with 400: send empty bytes instead.
                "PUT", f"cas/{digest}", data=body if size else b"", headers={"Content-Length": str(size)}
            ) as resp,
        ):
            self._expect(resp, 200, 201, 204)
        self._on_server.add(digest)
        self._count(uploads=1, bytes_up=size)

    def _put_manifest(self, key: str, body: bytes) -> None:
        with self._request("PUT", f"ac/{key}", data=body) as resp:
            self._expect(resp, 200, 201, 204)

    # -- plumbing --

    def _request(self, method: str, path: str, **kwargs) -> requests.Response:
        """Send one request; a 5xx raises a transient failure, 401/403 a permanent one."""
        self._count(requests=1)
        resp = self._session.request(
            method, f"{self.url}/{path}", timeout=self._timeout, verify=self._verify, **kwargs
        )
        status = f"{resp.status_code} {resp.reason}"
        if resp.status_code >= 500:
            resp.close()
            raise _Failure(
                "server_error",
                f"remote cache {self.url} failed ({status}); continuing with local cache only",
                transient=True,
            )
        with self._lock:
            self._consecutive_failures = 0
        if resp.status_code in (401, 403):
            resp.close()
            if method == "PUT":
                raise _Failure(
                    "upload_refused",
                    f"remote cache rejected upload ({status}): {_CREDENTIALS_HINT}",
                    stops="uploads",
                )
            raise _Failure(
                "read_refused",
                f"remote cache rejected read ({status}): {_CREDENTIALS_HINT}; "
                "continuing with local cache only",
                stops="all",
            )
        return resp

    def _expect(self, resp: requests.Response, *statuses: int) -> None:
        """Any other status is a failure; to a PUT it means this server takes no uploads from us."""
        if resp.status_code in statuses:
            return
        method, status = resp.request.method, f"{resp.status_code} {resp.reason}"
        if method == "PUT":
            raise _Failure(
                f"PUT {resp.status_code}",
                f"remote cache {self.url} refused an upload ({status}); no more uploads this build",
                stops="uploads",
            )
        raise _Failure(
            f"{method} {resp.status_code}",
            f"remote cache {self.url} answered {status} to a {method}; continuing with local cache only",
        )

    def _retrying(self, attempt: Callable[[], T]) -> T:
        """Run `attempt`, again after a backoff while failures are transient, unless abandoned."""
        failure = _Failure(None)
        for n in range(self.options.retries + 1):
            if self._abandoned:
                break
            if n:
                time.sleep(_BACKOFF_S * 2 ** (n - 1))
            try:
                return attempt()
            except _Failure as exc:
                if not exc.transient:
                    raise
                failure = exc
            except requests.RequestException as exc:
                failure = self._classify(exc)
                if not failure.transient:
                    raise failure from None
            with self._lock:
                self._consecutive_failures += 1
                if self._consecutive_failures >= BREAKER_THRESHOLD:
                    self._abandoned = True
        raise failure

    def _classify(self, exc: requests.RequestException) -> _Failure:
        cause = exc.args[0] if exc.args else None
        if isinstance(exc, requests.Timeout) or isinstance(cause, urllib3.exceptions.ReadTimeoutError):
            return _Failure(
                "timeout",
                f"remote cache {self.url} timed out after {self.options.timeout_s:g} s; "
                "continuing with local cache only",
                transient=True,
            )
        if isinstance(exc, requests.exceptions.SSLError):
            return _Failure(
                "tls",
                f"remote cache {self.url}: TLS failed ({_reason(exc)}); is its CA bundle "
                "configured? continuing with local cache only",
                stops="all",
            )
        if isinstance(exc, (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
            return _Failure(
                "unreachable",
                f"remote cache {self.url} unreachable ({_reason(exc)}); "
                "continuing with local cache only",
                transient=True,
            )
        return _Failure(
            "error",
            f"remote cache {self.url}: {_reason(exc)}; continuing with local cache only",
            stops="all",
        )

    def _parse(self, key: str, body: bytes) -> ActionResult:
        """A manifest from the server, refused unless its digests and paths are well-formed."""
        try:
            result = ActionResult.from_json(body)
            if not all(isinstance(d, str) and is_digest(d) for d, _ in _blobs(result)):
                raise ValueError("a blob name is not a blake3 digest")
            paths = [o.path for o in result.outputs] + list(result.directories)
            paths += [path for path, _target in result.symlinks]
            if not all(_is_inside(p) for p in paths):
                raise ValueError("an output path leaves the output directory")
            return result
        # Untrusted bytes: whatever fails to parse them, they are not a manifest.
        except Exception as exc:  # noqa: BLE001
            raise _Failure(
                "manifest",
                f"remote cache: entry {key} from {self.url} is not a valid action result "
                f"({exc}); ignoring it",
            ) from None

    def _fail(self, failure: _Failure) -> None:
        if failure.kind is None:
            return
        with self._lock:
            self.stats.errors += 1
            if failure.stops == "all":
                self._abandoned = True
            elif failure.stops == "uploads":
                self._uploads_refused = True
        self._warn_once(failure.kind, failure.message)

    def _warn_once(self, kind: str, message: str) -> None:
        with self._lock:
            if kind in self._warned:
                return
            self._warned.add(kind)
        self._warn(message)

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self.stats, name, getattr(self.stats, name) + delta)


def _blobs(result: ActionResult) -> set[tuple[str, bool]]:
    """(digest, executable) of every blob a result names; logs are never executable."""
    logs = {(d, False) for d in (result.stdout_digest, result.stderr_digest) if d}
    return {(o.digest, o.executable) for o in result.outputs} | logs


def _is_inside(path) -> bool:
    return (
        isinstance(path, str)
        and path not in ("", ".")
        and not path.startswith("/")
        and ".." not in PurePosixPath(path).parts
    )


def _redact(url: str) -> str:
    """`url` without its userinfo, so no message or log ever shows a password."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _reason(exc: BaseException) -> str:
    """The innermost OS-level reason ("Connection refused") behind a requests exception."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return current.strerror
        reason = getattr(current, "reason", None)
        nested = [a for a in current.args if isinstance(a, BaseException)]
        current = (
            reason
            if isinstance(reason, BaseException)
            else current.__cause__ or current.__context__ or (nested[0] if nested else None)
        )
    return type(exc).__name__
