"""The `download` executor: fetch (or reuse by checksum), verify, and unpack safely if asked.

It runs in-process under the executor contract (write only the declared output under the
sandbox). The cache indexes downloads by checksum (→ blake3 digest) under `downloads/`, with
a lock per checksum, so the same file named by two targets, builds or workspaces is fetched
once.
"""

from __future__ import annotations

import time
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from ..execution.executors import Execution, ExecutorContext
from ..execution.sandbox import Sandbox
from ..storage.atomic import write_atomically
from .checksum import MD5_WARNING, Checksum


def download_index(cache_root: Path, checksum: Checksum) -> Path:
    """The file naming (by blake3 digest) the CAS blob of the download with `checksum`."""
    return cache_root / "downloads" / f"{checksum.algorithm}-{checksum.hexdigest}"


def execute_download(ctx: ExecutorContext, sandbox: Sandbox, logs: Path) -> Execution:
    from .extract import safe_extract  # tarfile, zipfile, requests: imported only by builds that download
    from .http import NullProgress, fetch

    action = sandbox.action
    params = dict(action.params)
    checksum = Checksum.parse(params["checksum"])
    if checksum.is_legacy:
        ctx.warn(f"{action.label}: {MD5_WARNING}")
    start = time.monotonic()
    dest = sandbox.root / (action.outputs or action.output_dirs)[0]
    file_name = PurePosixPath(urlparse(action.urls[0]).path).name or dest.name
    fetched = sandbox.root / ".tmp" / file_name if params["extract"] else dest
    index = download_index(ctx.cache_root, checksum)
    with ctx.lock(f"download-{index.name}"):
        known = index.read_text().strip() if index.exists() else None
        if known and ctx.cas.verify(known):
            ctx.cas.materialize(known, fetched)
        else:
            progress = ctx.progress(action.label) if ctx.progress else NullProgress()
            fetch(list(action.urls), checksum, fetched, distdirs=ctx.distdirs, rewrites=ctx.rewrites,
                  progress=progress, warn=ctx.warn)
            write_atomically(index, ctx.cas.put_file(fetched).encode())
    if params["extract"]:
        safe_extract(fetched, dest, strip_components=params["strip_components"],
                     name=f"{action.label}'s archive {file_name} ({action.urls[0]})")
    stdout, stderr = logs / "stdout", logs / "stderr"
    stdout.write_text(f"{checksum} verified\n"), stderr.touch()
    return Execution(0, time.monotonic() - start, stdout, stderr)
