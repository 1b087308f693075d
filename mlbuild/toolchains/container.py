"""Container toolchains: an image pinned by digest, run through docker (or podman).

    nvidia_mxnet:
      kind: container
      image: nvcr.io/nvidia/mxnet:22.04-py3@sha256:<64 hex>   # a registry image, by digest
    digits_image:
      kind: container
      tarball: images/digits-train.tar                         # or a `docker save` tarball...
      digest: sha256:<64 hex>                                  # ...with the image ID it must hold

The digest is the fingerprint: two images can share a tag, never a digest. Resolution checks,
before anything runs, that a runtime answers and that the image with that digest is present,
loading it when missing from the declared tarball or from a distdir's `images/` (where
`mlbuild fetch` vendors it as sha256-<hex>.tar), and pulling it by digest only when no distdir
is given (a connected machine). A tarball's image ID is checked before loading: it is the
sha256 of the image config the tarball carries, and the config pins every layer's digest.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tarfile
from pathlib import Path

from .base import ResolvedToolchain, ToolchainMissing, run_probe

RUNTIMES = ("docker", "podman")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def tarball_name(digest: str) -> str:
    """The file name a vendored image has in a distdir's images/ directory."""
    return digest.replace(":", "-") + ".tar"


def runtime_for(decl: dict) -> str:
    """The container runtime binary: `runtime:` if declared, else docker, else podman."""
    wanted = decl.get("runtime")
    for name in [wanted] if wanted else RUNTIMES:
        found = shutil.which(name)
        if found:
            break
    else:
        raise ToolchainMissing(
            f"no container runtime: {' or '.join([wanted] if wanted else RUNTIMES)} is not installed "
            "(Debian: apt-get install docker.io, then start dockerd)")
    try:
        run_probe([found, "version", "--format", "{{.Server.Version}}"])
    except ToolchainMissing as exc:
        raise ToolchainMissing(f"the container runtime does not answer ({exc}); start its daemon "
                               "(dockerd) or check permissions on its socket") from None
    return found


def pinned_digest(name: str, decl: dict) -> tuple[str, str | None]:
    """(sha256:<hex> digest, repository or None) from `image: REPO@sha256:…` or `digest:`."""
    image = str(decl.get("image") or "")
    repository, _, digest = image.partition("@")
    digest = digest or str(decl.get("digest") or "")
    if not _DIGEST.fullmatch(digest):
        raise ToolchainMissing(
            f"container toolchain '{name}' is not pinned by digest: give `image: REPO@sha256:<64 hex>` "
            "or `tarball:` with `digest: sha256:<64 hex>` (`docker image inspect --format {{.Id}} IMAGE`)")
    return digest, repository or None


def tarball_image_id(tarball: Path) -> str:
    """The image ID (sha256 of its config) of a one-image `docker save` tarball."""
    try:
        with tarfile.open(tarball) as archive:
            manifest = json.load(archive.extractfile("manifest.json"))
            if len(manifest) != 1:
                raise ToolchainMissing(f"{tarball} holds {len(manifest)} images; save exactly one")
            config = archive.extractfile(manifest[0]["Config"]).read()
    except (OSError, KeyError, tarfile.TarError, ValueError, AttributeError) as exc:
        raise ToolchainMissing(f"{tarball} is not a `docker save` tarball: {exc}") from None
    return "sha256:" + hashlib.sha256(config).hexdigest()


def resolve_container(name: str, decl: dict, toolchain_file: Path, distdirs=()) -> ResolvedToolchain:
    digest, repository = pinned_digest(name, decl)
    runtime = runtime_for(decl)
    reference = f"{repository}@{digest}" if repository else digest
    image_id = _image_id(runtime, reference) or _load_or_pull(
        name, decl, toolchain_file, runtime, digest, repository, distdirs)
    return ResolvedToolchain(
        name, "container", {"kind": "container", "digest": digest},
        paths={"image": image_id, "runtime": runtime},
    )


def _image_id(runtime: str, reference: str) -> str | None:
    try:
        return run_probe([runtime, "image", "inspect", "--format", "{{.Id}}", reference]).strip()
    except ToolchainMissing:
        return None


def _load_or_pull(name, decl, toolchain_file: Path, runtime: str, digest: str, repository, distdirs) -> str:
    """Load the image from a tarball (declared, or vendored in a distdir), or pull it; its ID."""
    candidates = [Path(d) / "images" / tarball_name(digest) for d in distdirs]
    if decl.get("tarball"):
        candidates.insert(0, toolchain_file.parent / str(decl["tarball"]))
    for tarball in candidates:
        if not tarball.is_file():
            continue
        image_id = tarball_image_id(tarball)
        # A registry digest names the manifest, which `docker save` does not keep: a vendored
        # tarball of REPO@sha256:… is trusted by its name; a plain image's ID is checked.
        if image_id != digest and not repository:
            raise ToolchainMissing(
                f"image digest mismatch for '{name}': {tarball} holds {image_id}, the declaration pins {digest}")
        run_probe([runtime, "load", "--input", str(tarball)], timeout_s=600)
        return image_id
    if repository and not distdirs:
        try:
            run_probe([runtime, "pull", f"{repository}@{digest}"], timeout_s=3600)
        except ToolchainMissing as exc:
            raise ToolchainMissing(f"image {repository}@{digest} for '{name}' is not here and pulling it "
                                   f"failed: {exc}") from None
        return _image_id(runtime, f"{repository}@{digest}") or digest
    searched = ", ".join(str(c) for c in candidates) or "no tarball declared, no --distdir"
    raise ToolchainMissing(
        f"image {digest} for '{name}' is not loaded in {Path(runtime).name} and no tarball holding it was "
        f"found (searched: {searched}); on a connected machine, `mlbuild fetch TARGETS --into DIR` vendors it")
