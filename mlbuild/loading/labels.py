"""Labels (`//pkg:name`, `:name`) and target patterns (`//pkg/...`, `//...`, `//pkg:all`).

A package is a directory under `targets/` holding a BUILD.yaml; `//bench:resnet50` is target
`resnet50` of `targets/bench/BUILD.yaml`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

from ..errors import BuildFileError, Location

_PACKAGE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*(/[A-Za-z0-9_][A-Za-z0-9_.\-]*)*$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+=,@~\-]*$")


def _check_package(package: str, text: str, location: Location | None) -> None:
    if not _PACKAGE_RE.fullmatch(package) or any(p == ".." for p in package.split("/")):
        raise BuildFileError(
            f"invalid package in label '{text}'",
            location,
            "packages are paths under targets/ made of letters, digits, '_', '-', '.'",
        )


class Label(NamedTuple):
    """`//package:name`; a tuple, so hashing and ordering are C-speed (graphs hash labels a lot)."""

    package: str
    name: str

    @classmethod
    def parse(cls, text: str, current_package: str | None = None, location: Location | None = None) -> "Label":
        if not isinstance(text, str):
            raise BuildFileError(f"expected a label string, got {text!r}", location)
        known = _PARSED.get((text, current_package))
        if known is not None:
            return known
        label = cls._parse(text, current_package, location)
        _PARSED[(text, current_package)] = label
        return label

    @classmethod
    def _parse(cls, text, current_package, location) -> "Label":
        if text.startswith(":"):
            if current_package is None:
                raise BuildFileError(
                    f"relative label '{text}' used outside a package", location, "write it as //pkg:name"
                )
            package, name = current_package, text[1:]
        elif text.startswith("//"):
            body = text[2:]
            package, sep, name = body.partition(":")
            if not sep:
                name = package.rsplit("/", 1)[-1]
        else:
            raise BuildFileError(
                f"invalid label '{text}'", location, "labels look like //pkg:name or :name"
            )
        _check_package(package, text, location)
        if not _NAME_RE.fullmatch(name):
            raise BuildFileError(f"invalid target name in label '{text}'", location)
        return cls(package, name)

    def __str__(self) -> str:
        return f"//{self.package}:{self.name}"


_PARSED: dict[tuple[str, str | None], Label] = {}  # successful parses; errors are not cached


@dataclass(frozen=True)
class Pattern:
    """`//pkg:name` (one target), `//pkg:all` (a package), `//pkg/...` (a subtree), `//...`."""

    package: str  # "" only for //...
    name: str | None  # None = every target of the package(s)
    recursive: bool

    @classmethod
    def parse(cls, text: str) -> "Pattern":
        if text in ("//...", "//..."):
            return cls("", None, True)
        if text.endswith("/..."):
            package = text[2:-4] if text.startswith("//") else ""
            if not text.startswith("//"):
                raise BuildFileError(f"invalid pattern '{text}'", hint="patterns look like //pkg/...")
            _check_package(package, text, None)
            return cls(package, None, True)
        if text.endswith((":all", ":*")) and text.startswith("//"):
            package = text[2:].rsplit(":", 1)[0]
            _check_package(package, text, None)
            return cls(package, None, False)
        label = Label.parse(text)
        return cls(label.package, label.name, False)

    def matches_package(self, package: str) -> bool:
        if not self.recursive:
            return package == self.package
        return not self.package or package == self.package or package.startswith(self.package + "/")
