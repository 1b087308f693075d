"""Fetching checksum-pinned files over HTTP (with distdirs, mirrors, resume) and extracting archives safely.

The names below are imported on first use (PEP 562): `requests` costs ~0.1 s to
import, and every mlbuild command that downloads nothing should not pay for them.
"""

import importlib

_HOMES = {
    "MD5_WARNING": "checksum", "Checksum": "checksum", "safe_extract": "extract",
    "execute_download": "action", "DownloadProgress": "http", "NullProgress": "http", "fetch": "http", "load_rewrites": "http",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
