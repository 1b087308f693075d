"""Faults during a Ray build: a node dies, the remote cache goes down, the user presses Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from core.conftest import MLBUILD_COMMAND, ROOT_BUILD, check_cache_consistent, write_tree

from mlbuild.errors import EXIT_BUILD_FAILED, EXIT_INTERRUPTED


def _waiting_actions(count: int, markers: Path) -> str:
    """Targets that record each start in `markers`, then wait until `markers/release` exists."""
    lines = []
    for i in range(count):
        lines.append(
            f'w{i}: {{rule: command, outs: [o.txt], cmd: "echo $$ >> {markers}/w{i}; '
            f'while [ ! -e {markers}/release ]; do sleep 0.05; done; echo w{i} > {{{{out}}}}"}}')
    return "\n".join(lines) + "\n"


def _wait_for(condition, what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _start(root: Path, cache: Path, *args) -> subprocess.Popen:
    return subprocess.Popen(
        [*MLBUILD_COMMAND, "--cache-dir", str(cache), *map(str, args)],
        cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_node_dying_mid_build_has_its_actions_retried_elsewhere(ray_cluster, cache_server, tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    ray_cluster.add_node("doomed_node")
    try:
        doomed = ray_cluster.node_id("doomed_node")
        slots = 8  # 4 nodes x 2 CPUs: all run at once, so two of them run on the doomed node
        root = write_tree(tmp_path / "ws", {"BUILD.yaml": ROOT_BUILD,
                                            "targets/p/BUILD.yaml": _waiting_actions(slots, markers)})
        client = _start(root, tmp_path / "cache", "build", "//p/...", "--executor=ray",
                        "--ray-address", ray_cluster.address, "--remote-cache", cache_server.url)
        _wait_for(lambda: len(list(markers.glob("w*"))) == slots, "every action to start")
        ray_cluster.remove_node("doomed_node")
    except BaseException:
        if "doomed_node" in ray_cluster.nodes:
            ray_cluster.remove_node("doomed_node")
        raise

    def starts() -> dict[str, int]:
        return {m.name: len(m.read_text().split()) for m in markers.glob("w*")}

    (markers / "release").touch()  # the others finish, freeing slots for the dead node's two
    _, stderr = client.communicate(timeout=300)
    assert client.returncode == 0, stderr
    assert f"{slots} executed remotely" in stderr
    restarted = [name for name, count in starts().items() if count > 1]
    assert len(restarted) == 2, (starts(), stderr)
    assert f"on node {doomed[:8]}" not in stderr
    for name in restarted:
        assert (root / f"mlbuild-out/default/p/{name}/o.txt").read_text() == f"{name}\n"


def test_ctrl_c_cancels_the_remote_tasks(ray_cluster, cache_server, tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    root = write_tree(tmp_path / "ws", {"BUILD.yaml": ROOT_BUILD, "targets/p/BUILD.yaml": _waiting_actions(2, markers)})
    client = _start(root, tmp_path / "cache", "build", "//p/...", "--executor=ray",
                    "--ray-address", ray_cluster.address, "--remote-cache", cache_server.url)
    _wait_for(lambda: len(list(markers.glob("w*"))) == 2, "both actions to start")
    shells = [int(m.read_text()) for m in markers.glob("w*")]
    client.send_signal(signal.SIGINT)
    _, stderr = client.communicate(timeout=120)
    assert client.returncode == EXIT_INTERRUPTED, stderr
    assert "Traceback" not in stderr

    def gone(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    _wait_for(lambda: all(gone(pid) for pid in shells), "the actions' processes to be killed on the nodes", 60)
    assert not (markers / "release").exists()  # they were killed, not released


def test_the_remote_cache_going_down_fails_the_build_clearly(ray_cluster, start_nginx, tmp_path):
    server = start_nginx()
    markers = tmp_path / "markers"
    markers.mkdir()
    root = write_tree(tmp_path / "ws", {"BUILD.yaml": ROOT_BUILD, "targets/p/BUILD.yaml": _waiting_actions(1, markers)})
    cache = tmp_path / "cache"
    client = _start(root, cache, "build", "//p:w0", "--executor=ray", "--ray-address", ray_cluster.address,
                    "--remote-cache", server.url, "--remote-download=all", "--remote-timeout", "2")
    _wait_for(lambda: (markers / "w0").exists(), "the action to start")
    server.stop()
    (markers / "release").touch()
    _, stderr = client.communicate(timeout=120)
    assert client.returncode == EXIT_BUILD_FAILED, stderr
    assert "cannot upload blob" in stderr and "unreachable" in stderr, stderr
    assert "hint: remote execution keeps every input and output in the remote cache" in stderr
    assert "Traceback" not in stderr
    check_cache_consistent(cache)
