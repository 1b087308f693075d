"""A Ray build that cannot work is refused with one clear message before anything runs."""

from __future__ import annotations

import pytest
from core.conftest import ROOT_BUILD, write_tree

from mlbuild.errors import EXIT_BAD_INPUT, EXIT_USAGE


def _workspace(tmp_path, resources: str):
    target = f'big: {{rule: command, outs: [o.txt], resources: {resources}, cmd: "echo ran > {{{{out}}}}"}}\n'
    return write_tree(tmp_path / "ws", {"BUILD.yaml": ROOT_BUILD, "targets/p/BUILD.yaml": target})


def test_ray_without_a_remote_cache_is_a_usage_error(mlbuild_process, tmp_path):
    root = _workspace(tmp_path, "{cpus: 1}")
    done = mlbuild_process(root, tmp_path / "cache", "build", "//p:big", "--executor=ray",
                           "--ray-address", "127.0.0.1:6379")
    assert done.returncode == EXIT_USAGE, done.stderr
    assert "error: --executor=ray needs a remote cache" in done.stderr
    assert "hint: pass --remote-cache URL" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_address_nothing_answers_at_fails_in_seconds(mlbuild_process, tmp_path, unused_port):
    root = _workspace(tmp_path, "{cpus: 1}")
    done = mlbuild_process(root, tmp_path / "cache", "build", "//p:big", "--executor=ray",
                           "--ray-address", f"127.0.0.1:{unused_port}", "--remote-cache", "http://127.0.0.1:1",
                           timeout=60)
    assert done.returncode == EXIT_USAGE, done.stderr
    assert f"error: no Ray cluster answers at 127.0.0.1:{unused_port}: Connection refused" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("resources, reason", [
    ("{gpus: 2}", "needs 2 GPU(s), the most any node has is 1"),
    ("{cpus: 8}", "needs 8 CPU(s), the most any node has is 2"),
    ("{custom: {accelerator_type_H100: 1}}",
     "needs 1 of custom resource 'accelerator_type_H100', the most any node has is 0"),
])
def test_resources_no_node_has_are_refused_before_anything_runs(
        ray_cluster, cache_server, mlbuild_process, tmp_path, resources, reason):
    root = _workspace(tmp_path, resources)
    done = mlbuild_process(root, tmp_path / "cache", "build", "//p:big", "--executor=ray",
                           "--ray-address", ray_cluster.address, "--remote-cache", cache_server.url)
    assert done.returncode == EXIT_BAD_INPUT, done.stderr
    assert f"error: //p:big cannot run on the Ray cluster at {ray_cluster.address}: {reason}" in done.stderr
    assert "Build" not in done.stderr and not (root / "mlbuild-out").exists()  # nothing ran


def test_custom_resources_must_be_amounts(mlbuild_process, tmp_path):
    root = _workspace(tmp_path, "{custom: {accelerator_type_H100: -1}}")
    done = mlbuild_process(root, tmp_path / "cache", "build", "//p:big")
    assert done.returncode == EXIT_BAD_INPUT, done.stderr
    assert "targets/p/BUILD.yaml:1:" in done.stderr and "accelerator_type_H100" in done.stderr, done.stderr
    assert "expected a number from 0 to 4096, got the integer -1" in done.stderr, done.stderr


def test_a_misspelt_executor_setting_is_located(mlbuild_process, tmp_path):
    root = _workspace(tmp_path, "{cpus: 1}")
    (root / "BUILD.yaml").write_text(ROOT_BUILD.replace("workspace: {name: t}", "workspace: {name: t, executor: rayy}"))
    done = mlbuild_process(root, tmp_path / "cache", "build", "//p:big")
    assert done.returncode == EXIT_BAD_INPUT, done.stderr
    assert "BUILD.yaml:1:" in done.stderr and "setting 'executor'" in done.stderr and "rayy" in done.stderr, done.stderr
