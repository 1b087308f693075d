"""Actions run without network unless they declare it: a loopback server the test starts is
out of reach of a plain action, and reachable from one tagged (or attributed) `network`; the
empty namespace a plain action runs in serves the next one only while nothing of it remains."""

from __future__ import annotations

import os
import signal
import sys

import pytest
from core.conftest import ROOT_BUILD

FETCH_PY = """\
import sys, urllib.request
open(sys.argv[2], "w").write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())
"""


def _workspace(workspace, url: str, declared: str = "", name: str = "ws"):
    return workspace({
        "BUILD.yaml": ROOT_BUILD,
        "targets/net/fetch.py": FETCH_PY,
        "targets/net/BUILD.yaml": (
            "fetch:\n  rule: command\n  srcs: [fetch.py]\n  outs: [page.txt]\n"
            f"  cmd: python3 {{{{src:fetch.py}}}} {url} {{{{out}}}}\n{declared}"),
    }, name=name)


def test_an_action_without_network_cannot_reach_a_loopback_server(workspace, file_server, no_proxies):
    url = file_server.add("page.txt", b"served")
    result = _workspace(workspace, url)("build", "//net:fetch")
    assert result.code == 1, result
    assert "//net:fetch" in result.failed
    assert "Network is unreachable" in result.stderr, result.stderr
    assert file_server.paths() == [], "the request must never reach the server"


def test_a_network_tag_or_attribute_lets_it_reach_the_server(workspace, file_server, no_proxies):
    url = file_server.add("page.txt", b"served")
    for name, declared in (("tagged", "  tags: [network]\n"), ("attributed", "  network: true\n")):
        ws = _workspace(workspace, url, declared, name)
        ws.cache = ws.root / "cache"  # network is not in the key: a cache shared with the other would hit
        ws.ok("build", "//net:fetch")
        assert ws.out("", "//net:fetch", "page.txt").read_text() == "served"
    assert file_server.paths() == ["/page.txt", "/page.txt"]


def test_without_root_a_user_namespace_blocks_the_network(file_server, no_proxies, monkeypatch):
    """The non-root path, taken here by pretending not to be root: unshare --user --map-current-user."""
    import subprocess

    from mlbuild.execution import isolation

    url = file_server.add("page.txt", b"served")
    monkeypatch.setattr(isolation.os, "geteuid", lambda: 1000)
    isolation._namespace_prefix.cache_clear()
    try:
        prefix = isolation.network_namespace_prefix("//t:x")
    finally:
        monkeypatch.undo()
        isolation._namespace_prefix.cache_clear()
    assert "--user" in prefix and "--net" in prefix
    done = subprocess.run([*prefix, sys.executable, "-c", FETCH_PY, url, "/dev/null"], capture_output=True, text=True)
    assert done.returncode != 0 and "Network is unreachable" in done.stderr
    assert file_server.paths() == []


def test_where_no_namespace_can_be_made_the_action_fails_saying_how_to_fix_it(monkeypatch):
    from mlbuild.errors import ActionError
    from mlbuild.execution import isolation

    monkeypatch.setattr(isolation.shutil, "which", lambda name: None)
    isolation._namespace_prefix.cache_clear()
    try:
        with pytest.raises(ActionError) as caught:
            isolation.network_namespace_prefix("//t:x")
    finally:
        monkeypatch.undo()
        isolation._namespace_prefix.cache_clear()
    assert "//t:x: cannot run without network: util-linux's `unshare` is not installed" in caught.value.message
    assert "tag the target `network`" in caught.value.hint


@pytest.fixture
def lent_action(tmp_path):
    """Run an action without network through a ProcessRunner, as root (where namespaces are
    lent and reused); the words it printed."""
    from mlbuild.execution import isolation
    from mlbuild.execution.processes import ProcessRunner

    if not isolation._threads_can_unshare():
        pytest.skip("namespaces are lent by the spawning thread only as root")
    runner = ProcessRunner()

    def run(*argv: str) -> list[str]:
        with open(tmp_path / "out", "w+") as out:
            result = runner.run(list(argv), tmp_path, {}, out, None, 30, no_network=True)
            out.seek(0)
            assert result.exit_code == 0, out.read()
            return out.read().split()
    return run


LOOPBACK_PY = """\
import fcntl, os, socket, struct, sys
probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
flags = struct.unpack_from("16sH", fcntl.ioctl(probe, 0x8913, struct.pack("16sH14x", b"lo", 0)))[1]
if sys.argv[1:] == ["up"]:
    fcntl.ioctl(probe, 0x8914, struct.pack("16sH14x", b"lo", flags | 1))
print(os.readlink("/proc/self/ns/net"), "up" if flags & 1 else "down")
"""

# Prints its namespace, opens an abstract unix socket and an inet one; closed when it exits.
OPENS_SOCKETS_PY = """\
import os, socket, sys, time
print(os.readlink("/proc/self/ns/net"))
listener = socket.socket(socket.AF_UNIX)
listener.bind("\\0mlbuild-test")
socket.socket()
"""

# ... and leaves a process of a session of its own behind, holding the listening socket; prints its pid.
LEAVES_A_LISTENER_PY = OPENS_SOCKETS_PY + """\
listener.listen()
ready_read, ready_write = os.pipe()
child = os.fork()
if child == 0:
    os.setsid()
    os.write(ready_write, b"x")
    time.sleep(120)
os.read(ready_read, 1)
print(child)
"""


def test_an_empty_namespace_serves_the_next_action_until_one_leaves_loopback_up(lent_action):
    """Namespaces are reused (making one costs more than a trivial action), but never one that an
    action changed: the action after one that brought loopback up finds it down again."""
    first, loopback = lent_action(sys.executable, "-c", LOOPBACK_PY)
    assert first != os.readlink("/proc/self/ns/net") and loopback == "down"
    assert lent_action(sys.executable, "-c", LOOPBACK_PY, "up") == [first, "down"], \
        "the action that brings loopback up runs in the same empty namespace"
    after, loopback = lent_action(sys.executable, "-c", LOOPBACK_PY)
    assert loopback == "down" and after != first, "the next one gets a new namespace"
    assert lent_action(sys.executable, "-c", LOOPBACK_PY) == [after, "down"]


def test_a_namespace_where_a_process_left_behind_holds_a_socket_is_not_lent_again(lent_action):
    """An action's sockets close with it and the namespace serves the next action; a process it
    left running in a session of its own (out of its process group), listening on an abstract
    socket, keeps the next ones out of it."""
    [first] = lent_action(sys.executable, "-c", OPENS_SOCKETS_PY)
    assert lent_action(sys.executable, "-c", OPENS_SOCKETS_PY) == [first], \
        "sockets closed with their action leave the namespace empty"
    namespace, listener = lent_action(sys.executable, "-c", LEAVES_A_LISTENER_PY)
    try:
        assert namespace == first
        assert lent_action(sys.executable, "-c", OPENS_SOCKETS_PY) != [first], \
            "the listener left behind keeps the next action out"
    finally:
        os.kill(int(listener), signal.SIGKILL)


def test_a_namespace_where_an_action_left_processes_running_is_not_lent_again(lent_action):
    """A background process the action started and did not wait for may open a socket or bring
    loopback up later, while the next action runs: that action gets a new namespace."""
    namespace_of = "readlink /proc/self/ns/net"
    [first] = lent_action("/bin/sh", "-c", namespace_of)
    namespace, background = lent_action("/bin/sh", "-c", f"{namespace_of}; sleep 120 >/dev/null & echo $!")
    try:
        assert namespace == first
        assert lent_action("/bin/sh", "-c", namespace_of) != [first]
    finally:
        os.kill(int(background), signal.SIGKILL)
