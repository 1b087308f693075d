"""Two teammates share results through a real nginx remote cache, driving the real CLI.

Alice and Bob each have their own clone of the workspace (a separate directory: no shared
build state or output tree) and their own local cache; only the remote is shared. What one
of them built, the other gets as verified remote hits, byte for byte, and a change one makes
reaches the other as hits for exactly the affected actions.
"""

from __future__ import annotations

import shutil

from core.conftest import ROOT_BUILD, check_cache_consistent

from .conftest import (
    output_tree,
    remote_hit_count,
    remote_hits,
    stored_files,
    warning_lines,
)

PKG_A = """\
gen:   {rule: command, srcs: [in.txt], outs: [out.txt], cmd: "cat {{src:in.txt}} > {{out}}"}
up:    {rule: command, deps: [":gen"], outs: [up.txt], cmd: "tr a-z A-Z < {{dep::gen}} > {{out}}"}
other: {rule: command, srcs: [other.txt], outs: [o.txt], cmd: "rev {{src:other.txt}} > {{out}}"}
tool:  {rule: command, outs: [run.sh], cmd: "printf '#!/bin/sh\\\\necho tool\\\\n' > {{out}} && chmod +x {{out}}"}
empty: {rule: command, outs: [e.txt], cmd: ": > {{out}}"}
"""
PKG_B = """\
combine: {rule: command, deps: ["//a:up", "//a:other"], outs: [all.txt],
          cmd: "cat {{dep://a:up}} {{dep://a:other}} > {{out}}"}
count:   {rule: command, deps: ["//a:other"], outs: [n.txt], cmd: "wc -c < {{dep://a:other}} > {{out}}"}
"""
ALL = {"//a:gen", "//a:up", "//a:other", "//a:tool", "//a:empty", "//b:combine", "//b:count"}
AFFECTED_BY_IN_TXT = {"//a:gen", "//a:up", "//b:combine"}

FILES = {
    "BUILD.yaml": ROOT_BUILD,
    "targets/a/BUILD.yaml": PKG_A,
    "targets/a/in.txt": "hello\n",
    "targets/a/other.txt": "abc\n",
    "targets/b/BUILD.yaml": PKG_B,
}


def clones(workspace, tmp_path, extra: dict | None = None):
    """Alice's and Bob's clones of the same sources, each with its own local cache."""
    files = {**FILES, **(extra or {})}
    alice = workspace(files, name="alice", cache=tmp_path / "cache-alice")
    bob = workspace(files, name="bob", cache=tmp_path / "cache-bob")
    return alice, bob


def test_teammate_reuses_everything_then_changes_reach_each_other_as_hits(workspace, start_nginx, tmp_path):
    server = start_nginx()
    alice, bob = clones(workspace, tmp_path)
    remote = ("--remote-cache", server.url)

    first = alice.ok("build", "//...", *remote)
    assert first.built == ALL
    assert first.summary["executed"] == len(ALL)
    assert warning_lines(first) == []
    assert len(stored_files(server.data_dir / "ac")) == len(ALL)

    # Bob: a fresh clone and an empty cache; everything comes from the remote, nothing runs.
    fetched = bob.ok("build", "//...", *remote)
    assert fetched.summary["executed"] == 0
    assert fetched.built == set()
    assert remote_hits(fetched) == ALL
    assert remote_hit_count(fetched) == len(ALL)
    assert warning_lines(fetched) == []
    assert output_tree(bob) == output_tree(alice)  # bytes and executable bits
    assert output_tree(bob)["a/tool/run.sh"] == (b"#!/bin/sh\necho tool\n", True)
    assert output_tree(bob)["b/combine/all.txt"][0] == b"HELLO\ncba\n"
    check_cache_consistent(bob.cache)

    # Bob edits one source: exactly its dependents run, and their results go to the remote.
    bob.write({"targets/a/in.txt": "hello bob\n"})
    changed = bob.ok("build", "//...", *remote)
    assert changed.built == AFFECTED_BY_IN_TXT
    assert changed.summary["executed"] == len(AFFECTED_BY_IN_TXT)
    assert remote_hits(changed) == set()
    assert output_tree(bob)["b/combine/all.txt"][0] == b"HELLO BOB\ncba\n"
    assert len(stored_files(server.data_dir / "ac")) == len(ALL) + len(AFFECTED_BY_IN_TXT)

    # Alice pulls Bob's change: his new results arrive as remote hits, nothing runs.
    alice.write({"targets/a/in.txt": "hello bob\n"})
    pulled = alice.ok("build", "//...", *remote)
    assert pulled.summary["executed"] == 0
    assert pulled.built == set()
    assert remote_hits(pulled) == AFFECTED_BY_IN_TXT
    assert remote_hit_count(pulled) == len(AFFECTED_BY_IN_TXT)
    assert output_tree(alice) == output_tree(bob)
    for ws in (alice, bob):
        check_cache_consistent(ws.cache)
    assert alice.key("", "//b:combine") == bob.key("", "//b:combine")

    # What came from the remote is in Bob's local cache: offline, he rebuilds nothing.
    server.stop()
    shutil.rmtree(bob.root / "mlbuild-out")
    offline = bob.ok("build", "//...")
    assert offline.built == set()
    assert offline.hits == ALL


def test_no_remote_upload_reads_but_never_writes(workspace, start_nginx, tmp_path):
    server = start_nginx()
    alice, bob = clones(workspace, tmp_path)
    carol = workspace(FILES, name="carol", cache=tmp_path / "cache-carol")
    remote = ("--remote-cache", server.url)

    read_only = alice.ok("build", "//...", *remote, "--no-remote-upload")
    assert read_only.built == ALL
    assert f"remote cache {server.url}: 0 hits, " in read_only.stderr  # it was consulted...
    assert "0 blobs uploaded" in read_only.stderr
    assert stored_files(server.data_dir / "ac") == []  # ...and given nothing
    assert stored_files(server.data_dir / "cas") == []

    bob.ok("build", "//...", *remote)  # a read-write teammate publishes
    entries = stored_files(server.data_dir / "ac")
    blobs = stored_files(server.data_dir / "cas")
    assert len(entries) == len(ALL)

    # A read-only clone (CI on a pull request) gets hits, and still uploads nothing of its own.
    carol.write({"targets/a/other.txt": "xyz\n"})
    ci = carol.ok("build", "//...", *remote, "--no-remote-upload")
    assert ci.built == {"//a:other", "//b:combine", "//b:count"}
    assert remote_hits(ci) == ALL - ci.built
    assert stored_files(server.data_dir / "ac") == entries
    assert stored_files(server.data_dir / "cas") == blobs
    assert carol.key("", "//a:other") != bob.key("", "//a:other")
    assert not (server.data_dir / "ac" / carol.key("", "//a:other")).exists()
    check_cache_consistent(carol.cache)


NO_REMOTE = """\
local_only: {rule: command, tags: [no-remote], outs: [l.txt], cmd: "echo kept on this machine > {{out}}"}
shared: {rule: command, outs: [s.txt], cmd: "echo shared > {{out}}"}
"""


def test_target_tagged_no_remote_is_never_uploaded_nor_fetched(workspace, start_nginx, tmp_path):
    from mlbuild.hashing import digest_bytes

    server = start_nginx()
    alice, bob = clones(workspace, tmp_path, {"targets/c/BUILD.yaml": NO_REMOTE})
    remote = ("--remote-cache", server.url)

    alice.ok("build", "//c/...", *remote)
    local_key, shared_key = alice.key("", "//c:local_only"), alice.key("", "//c:shared")
    assert (server.data_dir / "ac" / shared_key).is_file()
    assert not (server.data_dir / "ac" / local_key).exists()
    assert not (server.data_dir / "cas" / digest_bytes(b"kept on this machine\n")).exists()

    second = bob.ok("build", "//c/...", *remote)
    assert second.built == {"//c:local_only"}  # the remote is not even asked
    assert remote_hits(second) == {"//c:shared"}
    assert bob.key("", "//c:local_only") == local_key  # same action: a fetch could have hit
    assert not (server.data_dir / "ac" / local_key).exists()
    server.stop()  # the access log is complete once nginx has exited
    requests = server.access_log.read_text()
    assert shared_key in requests
    assert local_key not in requests
    assert digest_bytes(b"kept on this machine\n") not in requests
