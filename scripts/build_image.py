#!/usr/bin/env python3
"""Build a small container image from files already on this machine, and load it into docker.

No registry is touched: the root filesystem holds busybox (Debian's busybox-static), bash, a
Python interpreter with its standard library (copied from this host, with the shared
libraries it and its extension modules load) and the pure-file wheels named with
`--package` (installed by pip, from the wheelhouse when PIP_FIND_LINKS/PIP_NO_INDEX say so).
The image is written as a `docker save` tarball whose bytes depend only on those files (sorted
entries, zero mtimes), so the same files give the same image ID, then `docker load`ed.

    scripts/build_image.py --tag mlbuild/digits-train:local \\
        --package numpy==2.4.6 --package mlperf-logging==4.1.68 \\
        --out .mlbuild/images/digits-train.tar --toolchain digits_image=toolchains/digits_image.yaml

prints the image ID (sha256:…), and with --toolchain writes a container toolchain declaration
pinning it.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

_SKIPPED_STDLIB = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "site-packages",
                   "dist-packages", "__pycache__", "config-3.11-x86_64-linux-gnu"}
_ENV_PATH = "PATH=/usr/local/bin:/usr/bin:/bin"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tag", required=True, help="repository:tag the loaded image gets")
    parser.add_argument("--out", required=True, type=Path, help="the docker save tarball to write")
    parser.add_argument("--python", default="/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable,
                        help="the interpreter to copy in (default: /usr/bin/python3)")
    parser.add_argument("--package", action="append", default=[], help="a pinned pip requirement to install")
    parser.add_argument("--toolchain", metavar="NAME=FILE", help="write a container toolchain declaration")
    parser.add_argument("--runtime", default="docker")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="mlbuild-image-") as scratch:
        rootfs = Path(scratch) / "rootfs"
        assemble_rootfs(rootfs, Path(args.python), args.package)
        layer = Path(scratch) / "layer.tar"
        write_deterministic_tar(rootfs, layer)
        image_id = write_docker_save(layer, args.tag, args.out)
    subprocess.run([args.runtime, "load", "--input", str(args.out)], check=True, stdout=subprocess.DEVNULL)
    if args.toolchain:
        name, _, file = args.toolchain.partition("=")
        Path(file).parent.mkdir(parents=True, exist_ok=True)
        tarball = os.path.relpath(args.out.resolve(), Path(file).resolve().parent)
        Path(file).write_text(
            f"# Written by scripts/build_image.py: {args.tag}, built from this machine's files.\n"
            f"{name}:\n  kind: container\n  tarball: {tarball}\n  digest: {image_id}\n")
    print(image_id)
    return 0


def assemble_rootfs(rootfs: Path, python: Path, packages: list[str]) -> None:
    busybox = shutil.which("busybox")
    if busybox is None:
        sys.exit("build_image: busybox is not installed (apt-get install busybox-static)")
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy2(busybox, rootfs / "bin" / "busybox")
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        if not (rootfs / "bin" / applet).exists():
            os.symlink("busybox", rootfs / "bin" / applet)
    for directory in ("tmp", "usr/bin", "etc"):
        (rootfs / directory).mkdir(parents=True, exist_ok=True)
    (rootfs / "tmp").chmod(0o1777)
    (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n")

    _copy_file(Path("/bin/bash"), rootfs)  # mlbuild runs `cmd` attributes with /bin/bash -c
    interpreter = Path(os.path.realpath(python))
    probe = ("import site, sys, sysconfig; print(sysconfig.get_paths()['stdlib']); "
             "print('%d.%d' % sys.version_info[:2]); print(site.getsitepackages()[0])")
    stdlib, version, site_packages = subprocess.run([str(interpreter), "-c", probe], capture_output=True,
                                                    text=True, check=True).stdout.split()
    _copy_file(interpreter, rootfs)
    for alias in ("python3", "python"):
        link = rootfs / "usr" / "bin" / alias
        if not link.exists():
            os.symlink(str(interpreter), link)
    for current, subdirs, files in os.walk(stdlib):
        subdirs[:] = sorted(d for d in subdirs if d not in _SKIPPED_STDLIB and not d.startswith("config-"))
        for name in files:
            if not name.endswith((".pyc", ".exe")):
                _copy_file(Path(current) / name, rootfs)

    if packages:
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
               "--no-compile", "--only-binary=:all:", "--target", str(rootfs / site_packages.lstrip("/")), *packages]
        if f"{sys.version_info[0]}.{sys.version_info[1]}" != version:
            pip[4:4] = ["--python-version", version]
        subprocess.run(pip, check=True)

    libraries = set()
    for path in [Path("/bin/bash"), interpreter, *rootfs.rglob("*.so*")]:
        libraries.update(_shared_libraries(path))
    for library in sorted(libraries):
        inside = library.startswith(str(rootfs) + "/")  # a wheel's bundled library, found by its rpath
        if not inside and not (rootfs / library.lstrip("/")).exists():
            _copy_file(Path(library), rootfs, keep_name=True)


def _shared_libraries(path: Path) -> list[str]:
    done = subprocess.run(["ldd", str(path)], capture_output=True, text=True)
    found = []
    for line in done.stdout.splitlines():
        match = re.search(r"(/\S+) \(0x", line)
        if match:
            found.append(match.group(1))
    return found


def _copy_file(source: Path, rootfs: Path, keep_name: bool = False) -> None:
    """Copy `source` to the same absolute path under `rootfs` (following symlinks)."""
    dest = rootfs / str(source).lstrip("/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(os.path.realpath(source) if keep_name else source, dest)
    shutil.copymode(os.path.realpath(source), dest)


def write_deterministic_tar(rootfs: Path, out: Path) -> None:
    """A tar of `rootfs` whose bytes depend only on names, contents, modes and link targets."""
    with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as archive:
        for current, subdirs, files in os.walk(rootfs):
            subdirs.sort()
            for name in sorted(subdirs + files):
                path = Path(current) / name
                info = archive.gettarinfo(str(path), arcname=str(path.relative_to(rootfs)))
                info.mtime = 0
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                if info.isreg():
                    with open(path, "rb") as f:
                        archive.addfile(info, f)
                else:
                    archive.addfile(info)


def write_docker_save(layer: Path, tag: str, out: Path) -> str:
    """A one-layer `docker save` tarball (the format `docker load` reads); the image ID."""
    diff_id = "sha256:" + _sha256_file(layer)
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": [_ENV_PATH], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "scripts/build_image.py"}],
    }, sort_keys=True, separators=(",", ":")).encode()
    image_hex = hashlib.sha256(config).hexdigest()
    layer_dir = diff_id.split(":")[1]
    manifest = json.dumps([{"Config": f"{image_hex}.json", "RepoTags": [tag],
                            "Layers": [f"{layer_dir}/layer.tar"]}]).encode()
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".part")
    with tarfile.open(partial, "w", format=tarfile.GNU_FORMAT) as archive:
        _add_bytes(archive, f"{image_hex}.json", config)
        _add_bytes(archive, f"{layer_dir}/VERSION", b"1.0")
        info = tarfile.TarInfo(f"{layer_dir}/layer.tar")
        info.size = layer.stat().st_size
        with open(layer, "rb") as f:
            archive.addfile(info, f)
        _add_bytes(archive, "manifest.json", manifest)
    os.replace(partial, out)
    return f"sha256:{image_hex}"


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


if __name__ == "__main__":
    sys.exit(main())
