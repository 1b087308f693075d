"""Air-gapped toolchains: venvs built from a distdir's wheels only, and pip's own error when
one is missing; `mlbuild fetch` laying out what a small workspace needs."""

from __future__ import annotations

import hashlib
import json

from core.conftest import ROOT_BUILD

TINY = "packaging==26.4"  # a pure-Python wheel in the wheelhouse


def _venv_workspace(workspace, requirement: str, name: str = "ws"):
    return workspace({
        "BUILD.yaml": ROOT_BUILD,
        "toolchains/python.yaml": f"py_tiny:\n  kind: python_venv\n  requirements: [\"{requirement}\"]\n",
        "targets/pkg/BUILD.yaml": ("version:\n  rule: command\n  toolchains: [py_tiny]\n  outs: [v.txt]\n"
                                   "  cmd: \"{{toolchain:py_tiny.python}} -c 'import packaging; print(packaging.__version__)'"
                                   " > {{out}}\"\n"),
    }, name=name)


def test_a_missing_wheel_shows_pips_error_and_the_requirement(workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("MLBUILD_TOOLCHAIN_DIR", str(tmp_path / "toolchains"))
    empty = tmp_path / "distdir"
    empty.mkdir()
    result = _venv_workspace(workspace, "packaging==9.9.9")("build", "//pkg:version", "--distdir", str(empty))
    assert result.code == 4, result
    assert "pip could not install packaging==9.9.9 (no package index: only wheels in" in result.stderr
    assert "  | ERROR: Could not find a version that satisfies the requirement packaging==9.9.9" in result.stderr
    assert "  | ERROR: No matching distribution found for packaging==9.9.9" in result.stderr
    assert "Traceback" not in result.stderr


def test_fetch_vendors_wheels_and_downloads_that_an_offline_build_uses(workspace, file_server, no_proxies,
                                                                      tmp_path, monkeypatch):
    data = b"vendored bytes\n"
    url = file_server.add("data.bin", data)
    ws = _venv_workspace(workspace, TINY)
    ws.write({"targets/pkg/BUILD.yaml": (ws.root / "targets/pkg/BUILD.yaml").read_text() + (
        f"data:\n  rule: download\n  urls: [{url}]\n  checksum: sha256:{hashlib.sha256(data).hexdigest()}\n")})
    into = tmp_path / "vendored"
    fetched = ws.ok("fetch", "//pkg:version", "//pkg:data", "--into", str(into))
    assert "1 downloads" in fetched.stdout and f"--distdir {into}" in fetched.stdout
    assert (into / "data.bin").read_bytes() == data
    manifest = json.loads((into / "MANIFEST.json").read_text())
    assert "packaging-26.4-py3-none-any.whl" in manifest["wheels"]
    assert manifest["targets"] == ["//pkg:data", "//pkg:version"]

    # Another machine: a new toolchain dir and cache, the server gone, pip's index settings unset.
    monkeypatch.setenv("MLBUILD_TOOLCHAIN_DIR", str(tmp_path / "offline-toolchains"))
    for variable in ("PIP_FIND_LINKS", "PIP_NO_INDEX", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"):
        monkeypatch.delenv(variable, raising=False)
    file_server.not_found.add("/data.bin")
    # The distdir as a workspace setting this time, instead of --distdir.
    offline = workspace({"BUILD.yaml": ROOT_BUILD.replace("workspace: {name: t}",
                                                          f"workspace: {{name: t, distdir: {into}}}")},
                        name="ws", cache=tmp_path / "offline-cache")
    offline.ok("build", "//pkg:version", "//pkg:data")
    assert offline.out("", "//pkg:version", "v.txt").read_text().strip() == "26.4"
    assert offline.out("", "//pkg:data", "data.bin").read_bytes() == data


def test_fetch_saves_container_images_that_load_by_digest_elsewhere(workspace, busybox_image, docker, tmp_path):
    import subprocess

    image_id = busybox_image({"etc/motd": "fetched image\n"})
    ws = workspace({
        "BUILD.yaml": ROOT_BUILD,
        "toolchains/images.yaml": f"img:\n  kind: container\n  digest: {image_id}\n",
        "targets/pkg/BUILD.yaml": ("motd:\n  rule: command\n  toolchains: [img]\n  outs: [motd.txt]\n"
                                   "  cmd: cat /etc/motd > {{out}}\n"),
    })
    into = tmp_path / "vendored"
    assert "1 container images" in ws.ok("fetch", "//pkg:motd", "--into", str(into)).stdout
    tarball = into / "images" / (image_id.replace(":", "-") + ".tar")
    assert json.loads((into / "MANIFEST.json").read_text())["images"] == [tarball.name]
    subprocess.run([docker, "rmi", image_id], check=True, capture_output=True)  # the air-gapped daemon lacks it
    offline = workspace({}, name="ws", cache=tmp_path / "offline-cache")
    offline.ok("build", "//pkg:motd", "--distdir", str(into))
    assert offline.out("", "//pkg:motd", "motd.txt").read_text() == "fetched image\n"
