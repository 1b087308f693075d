"""Actions run without network unless they declare it: a loopback server the test starts is
out of reach of a plain action, and reachable from one tagged (or attributed) `network`."""

from __future__ import annotations

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
    import sys

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
    import pytest

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
