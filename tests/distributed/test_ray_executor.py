"""`--executor=ray` on a real Ray cluster of three simulated nodes, with a real nginx remote cache."""

from __future__ import annotations

import json
import re

from core.conftest import ROOT_BUILD, write_tree

from mlbuild.hashing import digest_bytes, digest_file

from .conftest import SIMULATED_GPU_NODE

PIPELINE = """\
gen:     {rule: command, srcs: [in.txt], outs: [out.txt], cmd: "sleep 0.1; cat {{src:in.txt}} > {{out}}"}
up:      {rule: command, deps: [":gen"], outs: [up.txt], cmd: "sleep 0.1; tr a-z A-Z < {{dep::gen}} > {{out}}"}
tool:    {rule: command, outs: [bin/run.sh], cmd: "sleep 0.1; printf '#!/bin/sh\\\\necho tool\\\\n' > {{out}} && chmod +x {{out}}"}
on_gpu:  {rule: command, deps: [":up"], outs: [gpu.txt], resources: {gpus: 1},
          cmd: "sleep 0.1; echo CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES > {{out}}; cat {{dep::up}} >> {{out}}"}
final:   {rule: command, deps: [":on_gpu", ":tool"], outs: [final.txt],
          cmd: "sleep 0.1; {{dep::tool bin/run.sh}} > {{out}}; cat {{dep::on_gpu}} >> {{out}}"}
"""
FILES = {"BUILD.yaml": ROOT_BUILD, "targets/p/BUILD.yaml": PIPELINE, "targets/p/in.txt": "hello\n"}
NODE_LINE = re.compile(r"^\[\d+/\d+\] built (//\S+) \(\w+, [\d.]+s\) on node (\w+)$", re.MULTILINE)


def test_pipeline_runs_on_the_cluster_with_gpu_actions_on_the_gpu_node(
        ray_cluster, cache_server, mlbuild_process, tmp_path):
    root = write_tree(tmp_path / "ws", FILES)
    profile = tmp_path / "profile.json"
    done = mlbuild_process(root, tmp_path / "cache", "build", "//p:final", "--executor=ray",
                           "--ray-address", ray_cluster.address, "--remote-cache", cache_server.url,
                           "--remote-download=all", "--profile", profile)
    assert done.returncode == 0, done.stderr
    ran_on = dict(NODE_LINE.findall(done.stderr))
    assert set(ran_on) == {"//p:gen", "//p:up", "//p:tool", "//p:on_gpu", "//p:final"}, done.stderr
    assert ray_cluster.node_id(SIMULATED_GPU_NODE).startswith(ran_on["//p:on_gpu"])
    assert "5 executed remotely" in done.stderr
    events = {e["name"]: e for e in json.loads(profile.read_text())["traceEvents"] if e.get("ph") == "X"}
    assert events["//p:on_gpu"]["args"]["node"] == ray_cluster.node_id(SIMULATED_GPU_NODE)

    out = root / "mlbuild-out/default/p"
    assert (out / "final/final.txt").read_text() == "tool\nCUDA_VISIBLE_DEVICES=0\nHELLO\n"  # the GPU Ray assigned
    assert (out / "tool/bin/run.sh").stat().st_mode & 0o111


def test_second_client_gets_remote_hits_and_only_the_toplevel_outputs(
        ray_cluster, cache_server, mlbuild_process, tmp_path):
    """Build without the bytes: intermediates stay in the remote CAS until something here needs them."""
    settings = (f"workspace: {{name: t, executor: ray, ray_address: '{ray_cluster.address}', "
                f"remote_cache: '{cache_server.url}'}}\n")
    files = {**FILES, "BUILD.yaml": ROOT_BUILD.replace("workspace: {name: t}\n", settings),
             "targets/p/in.txt": "second client\n",
             "targets/p/here.txt": 'here: {rule: command, deps: ["//p:up"], outs: [n.txt], tags: [local], '
                                   'cmd: "wc -c < {{dep://p:up}} > {{out}}"}\n'}
    files["targets/p/BUILD.yaml"] = PIPELINE + files.pop("targets/p/here.txt")
    alice, bob = write_tree(tmp_path / "alice", files), write_tree(tmp_path / "bob", files)
    first = mlbuild_process(alice, tmp_path / "alice-cache", "build", "//p:final")
    assert first.returncode == 0, first.stderr
    assert "5 executed remotely" in first.stderr
    intermediates = {digest_bytes(b) for b in (b"second client\n", b"SECOND CLIENT\n", b"#!/bin/sh\necho tool\n",
                                               b"CUDA_VISIBLE_DEVICES=0\nSECOND CLIENT\n")}
    assert _output_blobs(alice, "final") <= _blobs(tmp_path / "alice-cache")  # toplevel only, by default
    assert not intermediates & _blobs(tmp_path / "alice-cache")

    second = mlbuild_process(bob, tmp_path / "bob-cache", "build", "//p:final")
    assert second.returncode == 0, second.stderr
    assert "5 targets, 0 executed, 0 cached (0 up to date, 0 local hits), 5 remote hits" in second.stderr
    assert _output_blobs(bob, "final") <= _blobs(tmp_path / "bob-cache")
    assert not intermediates & _blobs(tmp_path / "bob-cache")
    assert sorted(p.name for p in (bob / "mlbuild-out/default/p").iterdir()) == ["final"]

    local = mlbuild_process(bob, tmp_path / "bob-cache", "build", "//p:here")  # a local action reads :up
    assert local.returncode == 0, local.stderr
    assert (bob / "mlbuild-out/default/p/here/n.txt").read_text().strip() == str(len("SECOND CLIENT\n"))
    assert re.search(r"built //p:here \(Command, [\d.]+s\)$", local.stderr, re.MULTILINE), local.stderr
    assert digest_bytes(b"SECOND CLIENT\n") in _blobs(tmp_path / "bob-cache")  # fetched when needed


def _blobs(cache) -> set[str]:
    return {p.name.removesuffix(".x") for p in (cache / "cas").rglob("*") if p.is_file()}


def _output_blobs(root, name: str) -> set[str]:
    return {digest_file(p) for p in (root / "mlbuild-out/default/p" / name).rglob("*") if p.is_file()}


def test_the_example_graph_builds_on_the_cluster_byte_identical_to_a_local_build(
        ray_cluster, cache_server, mlbuild_process, copy_example, tmp_path):
    """The digits pipeline (venv toolchain resolved on each node, numpy/sklearn/onnx work)."""
    local, distributed = copy_example("local"), copy_example("distributed")
    assert mlbuild_process(local, tmp_path / "local-cache", "build", "//digits:report").returncode == 0
    done = mlbuild_process(distributed, tmp_path / "cache", "build", "//digits:report", "--executor=ray",
                           "--ray-address", ray_cluster.address, "--remote-cache", cache_server.url,
                           "--remote-download=all")
    assert done.returncode == 0, done.stderr
    assert "7 executed remotely" in done.stderr, done.stderr
    assert _tree(distributed) == _tree(local)


def _tree(root) -> dict[str, bytes]:
    base = root / "mlbuild-out"
    return {str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}
