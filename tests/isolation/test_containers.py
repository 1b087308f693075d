"""Container toolchains in the real docker daemon, with images built here from local files.

An action naming a container toolchain runs inside its image: same outputs as the same action
run locally, the image digest in its key, network off unless declared, the container removed
when the action times out (also one deaf to SIGTERM, which outlives its killed client); and a
missing runtime, a missing image or a digest mismatch is a clear exit-4 error before anything
runs.
"""

from __future__ import annotations

import subprocess

import pytest
from core.conftest import ROOT_BUILD

from mlbuild.actions import Action, Resources
from mlbuild.execution.isolation import container_command

SUMMARY_PY = """\
import hashlib, json, sys
data = open(sys.argv[1], "rb").read()
json.dump({"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
           "words": sorted(data.decode().split())}, open(sys.argv[2], "w"), sort_keys=True)
"""


def _toolchain(image_id: str, extra: str = "") -> str:
    return f"img:\n  kind: container\n  digest: {image_id}\n{extra}"


def _summary_workspace(workspace, image_id: str):
    target = ("  rule: command\n  srcs: [summary.py, input.txt]\n  outs: [summary.json]\n"
              "  cmd: python3 {{src:summary.py}} {{src:input.txt}} {{out}}\n")
    return workspace({
        "BUILD.yaml": ROOT_BUILD,
        "toolchains/images.yaml": _toolchain(image_id),
        "targets/pkg/summary.py": SUMMARY_PY,
        "targets/pkg/input.txt": "the quick brown fox jumps over the lazy dog\n",
        "targets/pkg/BUILD.yaml": f"local:\n{target}\nin_container:\n{target}  toolchains: [img]\n",
    })


def test_a_container_action_produces_what_the_same_local_action_does(workspace, python_image):
    image_id, _ = python_image
    ws = _summary_workspace(workspace, image_id)
    result = ws.ok("build", "//pkg:local", "//pkg:in_container")
    assert result.built == {"//pkg:local", "//pkg:in_container"}
    local = ws.out("", "//pkg:local", "summary.json").read_bytes()
    assert ws.out("", "//pkg:in_container", "summary.json").read_bytes() == local
    assert b'"bytes": 44' in local


def _echo_workspace(workspace, image_id: str, target_extra: str = ""):
    return workspace({
        "BUILD.yaml": ROOT_BUILD,
        "toolchains/images.yaml": _toolchain(image_id),
        "targets/pkg/BUILD.yaml": ("hello:\n  rule: command\n  toolchains: [img]\n  outs: [hello.txt]\n"
                                   "  cmd: cat /etc/motd > {{out}} && id -u >> {{out}}\n" + target_extra),
    })


def test_the_image_digest_is_in_the_key(workspace, busybox_image):
    first, second = busybox_image({"etc/motd": "first image\n"}), busybox_image({"etc/motd": "second image\n"})
    ws = _echo_workspace(workspace, first)
    assert ws.ok("build", "//pkg:hello").built == {"//pkg:hello"}
    assert ws.out("", "//pkg:hello", "hello.txt").read_text().startswith("first image\n")
    ws.write({"toolchains/images.yaml": _toolchain(second)})
    assert ws.ok("build", "//pkg:hello").built == {"//pkg:hello"}, "another image must re-run the action"
    output = ws.out("", "//pkg:hello", "hello.txt").read_text()
    assert output.splitlines() == ["second image", str(__import__("os").getuid())], "runs as the caller's uid"
    ws.write({"toolchains/images.yaml": _toolchain(first)})
    assert ws.ok("build", "//pkg:hello").hits == {"//pkg:hello"}


def test_network_is_off_in_a_container_unless_declared(workspace, busybox_image, file_server, no_proxies):
    image_id = busybox_image()
    url = file_server.add("page.txt", b"served")
    fetch = f"  cmd: wget -q -O {{{{out}}}} {url}\n"
    ws = _echo_workspace(workspace, image_id).root
    blocked = workspace({"BUILD.yaml": ROOT_BUILD, "toolchains/images.yaml": _toolchain(image_id),
                         "targets/pkg/BUILD.yaml": "get:\n  rule: command\n  toolchains: [img]\n  outs: [p]\n" + fetch},
                        name="blocked")
    assert blocked("build", "//pkg:get").code == 1
    assert file_server.paths() == []
    allowed = workspace({"BUILD.yaml": ROOT_BUILD, "toolchains/images.yaml": _toolchain(image_id),
                         "targets/pkg/BUILD.yaml": ("get:\n  rule: command\n  toolchains: [img]\n  outs: [p]\n"
                                                    "  network: true\n" + fetch)},
                        name="allowed", cache=ws / "other-cache")
    allowed.ok("build", "//pkg:get")
    assert allowed.out("", "//pkg:get", "p").read_text() == "served"


@pytest.mark.parametrize("cmd", [
    "sleep 60",
    # Deaf to the SIGTERM docker passes on: the client is killed outright after the grace
    # period, the container outlives it, and mlbuild's own `docker rm --force` removes it.
    "trap '' TERM; sleep 60",
])
def test_a_timed_out_container_is_removed(workspace, busybox_image, docker, cmd):
    ws = workspace({"BUILD.yaml": ROOT_BUILD, "toolchains/images.yaml": _toolchain(busybox_image()),
                    "targets/pkg/BUILD.yaml": ("slow:\n  rule: command\n  toolchains: [img]\n  outs: [o]\n"
                                               f"  timeout: 1\n  cmd: \"{cmd}\"\n")})
    result = ws("build", "//pkg:slow")
    assert result.code == 1 and "timed out after 1 s" in result.stderr, result
    # This build's containers only: those of tests running beside it (pytest -n) mount other caches.
    mounts = subprocess.run([docker, "ps", "--all", "--no-trunc", "--filter", "name=mlbuild-", "--format",
                             "{{.Mounts}}"], capture_output=True, text=True, check=True).stdout.split()
    assert [m for line in mounts for m in line.split(",") if m.startswith(f"{ws.cache}/")] == []


def test_missing_runtime_image_and_digest_mismatch_are_exit_4(workspace, busybox_image, docker, tmp_path):
    image_id = busybox_image({"etc/motd": "saved\n"})
    other = busybox_image({"etc/motd": "other\n"})
    tarball = tmp_path / "saved.tar"
    subprocess.run([docker, "save", "--output", str(tarball), image_id], check=True)
    cases = {
        _toolchain(image_id, "  runtime: no-such-runtime\n"): "no container runtime: no-such-runtime is not installed",
        _toolchain("sha256:" + "0" * 64): "is not loaded in docker and no tarball holding it was found",
        _toolchain("sha256:" + "1" * 64, f"  tarball: {tarball}\n"): "image digest mismatch for 'img'",
        "img:\n  kind: container\n  image: busybox:latest\n": "is not pinned by digest",
    }
    for declaration, message in cases.items():
        ws = _echo_workspace(workspace, other)
        ws.write({"toolchains/images.yaml": declaration})
        result = ws("build", "//pkg:hello")
        assert result.code == 4, result
        assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
        assert "//pkg:hello needs toolchain 'img'" in result.stderr
        assert result.built == set()


def test_an_image_loads_from_a_distdir_tarball_by_digest(workspace, busybox_image, docker, tmp_path):
    image_id = busybox_image({"etc/motd": "vendored\n"})
    distdir = tmp_path / "distdir"
    (distdir / "images").mkdir(parents=True)
    subprocess.run([docker, "save", "--output", str(distdir / "images" / (image_id.replace(":", "-") + ".tar")),
                    image_id], check=True)
    subprocess.run([docker, "rmi", image_id], check=True, capture_output=True)
    ws = _echo_workspace(workspace, image_id)
    listed = ws.ok("toolchain", "list", "--distdir", str(distdir)).stdout
    assert f"img              ok       container {{'digest': '{image_id}'}}" in listed
    ws.ok("build", "//pkg:hello", "--distdir", str(distdir))
    assert ws.out("", "//pkg:hello", "hello.txt").read_text().startswith("vendored\n")


def test_gpu_and_resource_limits_become_docker_flags_argv_double():
    """No GPU here: the docker command line a `gpus: 1` action gets is checked as argv (the
    same function builds it for real runs); the device machine check runs it with --gpus."""
    action = Action(label="//t:gpu", mnemonic="Command", implementation="command/1", argv=("nvidia-smi",),
                    resources=Resources(cpus=2, gpus=1, memory_mb=512), container="sha256:" + "a" * 64)
    from pathlib import Path

    command = container_command(action, ["nvidia-smi"], {"HOME": "/s/.home"}, Path("/s")).argv
    assert command[command.index("--gpus") + 1] == "1"
    assert command[command.index("--memory") + 1] == "512m"
    assert command[command.index("--cpus") + 1] == "2"
    assert command[command.index("--network") + 1] == "none"
    assert command[-2:] == ["sha256:" + "a" * 64, "nvidia-smi"]


def test_a_command_missing_from_the_image_says_so(workspace, busybox_image):
    ws = workspace({"BUILD.yaml": ROOT_BUILD, "toolchains/images.yaml": _toolchain(busybox_image()),
                    "targets/pkg/BUILD.yaml": ("gone:\n  rule: command\n  toolchains: [img]\n  outs: [o]\n"
                                               "  argv: [python3, -c, 'print(1)']\n")})
    result = ws("build", "//pkg:gone")
    assert result.code == 1 and "command not found (exit 127)" in result.stderr, result
    assert "in a container the command must exist in image sha256:" in result.stderr
