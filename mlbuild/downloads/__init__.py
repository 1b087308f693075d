"""Fetching checksum-pinned files over HTTP (with distdirs, mirrors, resume) and extracting archives safely."""

from mlbuild.downloads.checksum import MD5_WARNING, Checksum
from mlbuild.downloads.extract import safe_extract
from mlbuild.downloads.http import (
    DownloadProgress,
    NullProgress,
    RichDownloadProgress,
    default_progress,
    fetch,
    load_rewrites,
)

__all__ = [
    "MD5_WARNING",
    "Checksum",
    "DownloadProgress",
    "NullProgress",
    "RichDownloadProgress",
    "default_progress",
    "fetch",
    "load_rewrites",
    "safe_extract",
]
