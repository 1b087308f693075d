"""Vendoring: everything some targets need from outside, collected into one directory.

MLPerf machines are often air-gapped ("even pip install fails"): prepare on a connected host,
carry a directory, build on the target. `mlbuild fetch TARGETS --into DIR` lays out

    DIR/<file name>                    each download, by its URL's file name, checksum-verified
    DIR/wheels/*.whl                   the wheels of every pinned venv toolchain, for this platform
    DIR/images/sha256-<hex>.tar        each container image, `docker save`d, named by its digest
    DIR/MANIFEST.json                  what was vendored, for a reader

and `--distdir DIR` on the target makes downloads, venv builds (pip with no index) and image
loads use that directory. Downloads are built by the builder like any download target (so the
cache and remote cache serve them), then copied out of the cache by checksum.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from .downloads import Checksum
from .downloads.action import download_index
from .errors import ActionError, ToolchainError
from .toolchains.container import tarball_name
from .toolchains.venv import pip_failure, requirement_lines


def download_targets(graph: dict) -> dict:
    """The targets of `graph` that download a file."""
    return {label: t for label, t in graph.items() if t.action is not None and t.action.executor == "download"}


def copy_downloads(downloads: dict, cache, into: Path) -> list[str]:
    """Copy each (already built) download's verified file from the cache to `into`/<URL file name>."""
    names: dict[str, str] = {}
    for label, target in sorted(downloads.items(), key=lambda item: str(item[0])):
        params = dict(target.action.params)
        checksum = Checksum.parse(params["checksum"])
        name = PurePosixPath(urlparse(target.action.urls[0]).path).name
        if names.get(name, str(checksum)) != str(checksum):
            raise ActionError(f"{label} and another download share the file name '{name}' with different "
                              "checksums: a distdir finds files by name", hint="vendor them in two fetches")
        names[name] = str(checksum)
        cache.cas.materialize(download_index(cache.root, checksum).read_text().strip(), into / name)
    return sorted(names)


def download_wheels(name: str, decl: dict, toolchain_file: Path, into: Path) -> None:
    """`pip download` a venv toolchain's pinned requirements (and their dependencies) with its
    base interpreter, so the wheels match the platform and Python it will be built with."""
    requirements = requirement_lines(decl, toolchain_file)
    if not requirements:
        return
    into.mkdir(parents=True, exist_ok=True)
    base = decl.get("interpreter") or sys.executable
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as listing:
        listing.write("\n".join(requirements) + "\n")
        listing.flush()
        # setuptools and wheel too: a requirement only published as an sdist builds with them.
        for args in (["-r", listing.name], ["setuptools", "wheel"]):
            done = subprocess.run([base, "-m", "pip", "download", "--disable-pip-version-check", "--no-input",
                                   "--progress-bar", "off", "--dest", str(into), *args],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                raise ToolchainError(pip_failure(f"downloading the wheels of '{name}'", done.stdout, done.stderr))


def save_image(toolchain, into: Path) -> str:
    """`docker save` a resolved container toolchain's image as images/sha256-<hex>.tar."""
    into.mkdir(parents=True, exist_ok=True)
    dest = into / tarball_name(toolchain.fingerprint["digest"])
    if not dest.exists():
        partial = dest.with_name(dest.name + ".part")
        done = subprocess.run([toolchain.paths["runtime"], "save", "--output", str(partial), toolchain.paths["image"]],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise ToolchainError(f"saving image {toolchain.paths['image']} of '{toolchain.name}' failed: "
                                 f"{done.stderr.strip()}")
        partial.replace(dest)
    return dest.name


def vendor_toolchains(graph: dict, registry, into: Path) -> None:
    """Wheels of every venv toolchain and tarballs of every container image the graph uses."""
    names = sorted({name for t in graph.values() if t.action is not None for name, _ in t.action.toolchains})
    for name in names:
        decl, file = registry.declaration(name)
        if decl.get("kind") == "python_venv":
            download_wheels(name, decl, Path(file), into / "wheels")
        elif decl.get("kind") == "container":
            save_image(registry.resolve(name), into / "images")


def write_manifest(into: Path, targets: list[str], downloads: list[str]) -> dict:
    """Record what `into` holds (merged with earlier fetches into it); the counts by kind."""
    manifest = into / "MANIFEST.json"
    previous = json.loads(manifest.read_text()) if manifest.exists() else {}
    listing = {
        "targets": sorted(set(previous.get("targets", [])) | set(targets)),
        "downloads": sorted(set(previous.get("downloads", [])) | set(downloads)),
        "wheels": sorted(p.name for p in (into / "wheels").glob("*") if p.is_file()),
        "images": sorted(p.name for p in (into / "images").glob("*.tar")),
    }
    manifest.write_text(json.dumps(listing, indent=1) + "\n")
    return {kind: len(names) for kind, names in listing.items()}
