"""Checksums that pin downloaded files: parsing `sha256:<hex>` / `md5:<hex>` and hashing files."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from mlbuild.errors import BuildFileError, Location, did_you_mean

MD5_WARNING = "md5 is accepted for legacy CM metadata; prefer sha256"

_HEX_DIGITS = {"sha256": 64, "md5": 32}
_FORMAT = "'sha256:<64 hex digits>' (or 'md5:<32 hex digits>' for legacy metadata)"


@dataclass(frozen=True)
class Checksum:
    """An expected digest: `algorithm` is "sha256" or "md5", `hexdigest` lowercase hex."""

    algorithm: str
    hexdigest: str

    @classmethod
    def parse(cls, text: str, location: Location | None = None) -> Checksum:
        """Parse `sha256:<64 hex>` or `md5:<32 hex>`; BuildFileError otherwise."""
        algorithm, colon, digest = text.strip().partition(":")
        algorithm, digest = algorithm.lower(), digest.lower()
        if not colon:
            bare_sha256 = re.fullmatch(r"[0-9a-fA-F]{64}", text.strip())
            hint = f"did you mean 'sha256:{text.strip()}'?" if bare_sha256 else None
            raise BuildFileError(f"checksum {text!r} has no algorithm; expected {_FORMAT}", location, hint)
        if algorithm not in _HEX_DIGITS:
            raise BuildFileError(
                f"unsupported checksum algorithm {algorithm!r} in {text!r}; expected {_FORMAT}",
                location,
                did_you_mean(algorithm, _HEX_DIGITS),
            )
        length = _HEX_DIGITS[algorithm]
        if not re.fullmatch(f"[0-9a-f]{{{length}}}", digest):
            raise BuildFileError(
                f"{algorithm} checksum must be {length} hex digits, got {digest!r} ({len(digest)} characters)",
                location,
            )
        return cls(algorithm, digest)

    def new_hasher(self):
        """A fresh hashlib object for this algorithm."""
        if self.algorithm == "md5":
            return hashlib.md5(usedforsecurity=False)
        return hashlib.new(self.algorithm)

    def hash_file(self, path: Path):
        """A hasher already fed with the bytes of `path` (callers may keep updating it)."""
        hasher = self.new_hasher()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                hasher.update(chunk)
        return hasher

    @property
    def is_legacy(self) -> bool:
        """True for md5, which callers accept with MD5_WARNING."""
        return self.algorithm == "md5"

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hexdigest}"
