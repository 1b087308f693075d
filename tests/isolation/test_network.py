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
