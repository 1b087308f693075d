"""The air-gapped flow a user follows: `mlbuild fetch` on a connected host, then a build with
no network at all (`unshare --net`), an empty cache and no toolchains, from the vendored
directory alone: the venv toolchain from its wheels, a download by checksum, the benchmark."""

import hashlib
import json
import os

from core.conftest import MLBUILD_COMMAND

from mlbuild.execution.isolation import network_namespace_prefix

WEIGHTS = b"pretend model weights\n" * 100


def test_fetch_then_build_without_network_from_the_vendored_directory(copy_example, mlbuild, file_server,
                                                                    no_proxies, tmp_path):
    root = copy_example("airgapped")
    url = file_server.add("weights.bin", WEIGHTS)
    (root / "targets" / "vendored").mkdir()
    (root / "targets" / "vendored" / "BUILD.yaml").write_text(
        f"weights:\n  rule: download\n  urls: [{url}]\n  checksum: sha256:{hashlib.sha256(WEIGHTS).hexdigest()}\n"
        "size:\n  rule: command\n  deps: [':weights']\n  outs: [size.txt]\n"
        "  cmd: wc -c < {{dep::weights}} > {{out}}\n")
    targets = ["//bench:digits_offline", "//vendored:size"]
    vendored = tmp_path / "vendored"
    done = mlbuild(root, tmp_path / "connected-cache", "fetch", *targets, "--into", str(vendored))
    assert done.returncode == 0, done.stderr
    manifest = json.loads((vendored / "MANIFEST.json").read_text())
    assert manifest["downloads"] == ["weights.bin"]
    assert any(name.startswith("onnxruntime-") for name in manifest["wheels"])
    assert (vendored / "weights.bin").read_bytes() == WEIGHTS
    requests_while_fetching = len(file_server.paths())

    # The target machine: no network, nothing cached, no toolchain built, pip's settings gone.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["MLBUILD_TOOLCHAIN_DIR"] = str(tmp_path / "target-toolchains")
    command = [*network_namespace_prefix("test"), *MLBUILD_COMMAND,
               "--cache-dir", str(tmp_path / "target-cache"), "test", *targets, "--distdir", str(vendored)]
    import subprocess

    offline = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    assert offline.returncode == 0, offline.stderr + offline.stdout
    assert f"from {vendored} only" in offline.stderr
    assert "PASSED" in offline.stdout
    assert (root / "mlbuild-bin" / "vendored" / "size" / "size.txt").read_text().strip() == str(len(WEIGHTS))
    assert len(file_server.paths()) == requests_while_fetching, "the offline build reached the server"
