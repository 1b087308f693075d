"""Remote cache faults seen through the CLI: each degrades to local work with ONE warning line.

Every fault is a real server misbehaving on 127.0.0.1 (or nothing listening at all): the
build must exit 0 with correct outputs, say what went wrong once, and leave a local cache
whose every action-cache entry names blobs that exist and hash to their names (DESIGN §4).
Undeclared environment values (secrets) must reach neither the cache nor the server.
"""

from __future__ import annotations

import time

import pytest
from core.conftest import ROOT_BUILD, check_cache_consistent

from mlbuild.storage.action_cache import ActionResult

from .conftest import (
    files_containing,
    output_tree,
    remote_hits,
    stored_files,
    warning_lines,
)

PKG = """\
gen:   {rule: command, srcs: [in.txt], outs: [out.txt], cmd: "cat {{src:in.txt}} > {{out}}"}
up:    {rule: command, deps: [":gen"], outs: [up.txt], cmd: "tr a-z A-Z < {{dep::gen}} > {{out}}"}
other: {rule: command, srcs: [other.txt], outs: [o.txt], cmd: "rev {{src:other.txt}} > {{out}}"}
tool:  {rule: command, outs: [run.sh], cmd: "printf '#!/bin/sh\\\\necho tool\\\\n' > {{out}} && chmod +x {{out}}"}
"""
ALL = {"//a:gen", "//a:up", "//a:other", "//a:tool"}
FILES = {
    "BUILD.yaml": ROOT_BUILD,
    "targets/a/BUILD.yaml": PKG,
    "targets/a/in.txt": "hello\n",
    "targets/a/other.txt": "abc\n",
}
EXPECTED = {
    "a/gen/out.txt": (b"hello\n", False),
    "a/up/up.txt": (b"HELLO\n", False),
    "a/other/o.txt": (b"cba\n", False),
    "a/tool/run.sh": (b"#!/bin/sh\necho tool\n", True),
}


def build_through_fault(ws, url: str, *extra: str):
    """Build //... against a misbehaving remote: exit 0, correct outputs, consistent cache."""
    result = ws.ok("build", "//...", "--remote-cache", url, *extra)
    assert output_tree(ws) == EXPECTED
    assert result.summary["ok"]
    check_cache_consistent(ws.cache)
    return result


def the_one_warning(result) -> str:
    warnings = warning_lines(result)
    assert len(warnings) == 1, f"expected exactly one warning line, got {warnings}\n{result}"
    assert "remote cache" in warnings[0]
    return warnings[0]


# -- the server misbehaves for every request ---------------------------------------------------

def test_server_down(workspace, unused_port):
    ws = workspace(FILES)
    result = build_through_fault(ws, f"http://127.0.0.1:{unused_port}")
    assert result.built == ALL
    warning = the_one_warning(result)
    assert "unreachable" in warning and str(unused_port) in warning


def test_server_answering_500(workspace, start_nginx):
    server = start_nginx(server_extra="return 500;")
    ws = workspace(FILES)
    result = build_through_fault(ws, server.url)
    assert result.built == ALL
    assert "500" in the_one_warning(result)


def test_slow_server_past_the_remote_timeout(workspace, start_nginx, echo_module):
    stall = 'location ~ "^/(ac|cas)/" { echo_sleep 5; echo late; }'
    server = start_nginx(server_extra=stall, modules=(echo_module,))
    ws = workspace(FILES)
    start = time.monotonic()
    result = build_through_fault(ws, server.url, "--remote-timeout", "0.5")
    elapsed = time.monotonic() - start
    assert result.built == ALL
    assert "timed out after 0.5 s" in the_one_warning(result)
    # One stalled request takes 5 s: the build gave up on the server long before that, once.
    assert elapsed < 4.5, f"a slow remote cost {elapsed:.1f} s"


def test_wrong_credentials_refuse_uploads_but_the_build_goes_on(workspace, start_nginx):
    server = start_nginx(auth=("alice", "right-password"))
    ws = workspace(FILES)
    url = server.url.replace("http://", "http://alice:wrong-password@")
    result = build_through_fault(ws, url)
    assert result.built == ALL
    warning = the_one_warning(result)
    assert "401" in warning and "credentials" in warning
    assert "wrong-password" not in result.stdout + result.stderr
    assert files_containing(ws.cache, b"wrong-password") == []
    assert files_containing(ws.root, b"wrong-password") == []
    assert stored_files(server.data_dir / "ac") == []
    assert stored_files(server.data_dir / "cas") == []


# -- one entry on the server is bad ------------------------------------------------------------

@pytest.fixture
def published(workspace, start_nginx, tmp_path):
    """(server, Alice's workspace) after Alice published every result of //... to the server."""
    server = start_nginx()
    alice = workspace(FILES, name="alice", cache=tmp_path / "cache-alice")
    assert alice.ok("build", "//...", "--remote-cache", server.url).built == ALL
    return server, alice


def blob_of(ws, label: str) -> str:
    (output,) = ws.state("").get(label).result.outputs
    return output.digest


def test_corrupted_blob_on_the_server_is_never_used(published, workspace, tmp_path):
    server, alice = published
    digest = blob_of(alice, "//a:other")
    stored = server.data_dir / "cas" / digest
    assert stored.read_bytes() == b"cba\n"
    stored.write_bytes(b"BAD\n")  # same size, wrong bytes: only hashing can tell

    bob = workspace(FILES, name="bob", cache=tmp_path / "cache-bob")
    result = build_through_fault(bob, server.url)
    assert result.built == {"//a:other"}
    assert remote_hits(result) == ALL - {"//a:other"}
    warning = the_one_warning(result)
    assert digest in warning and "does not match" in warning
    assert files_containing(bob.cache, b"BAD\n") == []


def test_corrupted_blob_is_repaired_by_the_teammate_who_rebuilt_it(published, workspace, tmp_path):
    """A poisoned blob must not stay poisoned: Bob, having run the action, holds the right bytes.

    Otherwise every later teammate re-runs the action and sees the same warning, forever.
    """
    server, alice = published
    digest = blob_of(alice, "//a:other")
    stored = server.data_dir / "cas" / digest
    stored.write_bytes(b"BAD\n")
    bob = workspace(FILES, name="bob", cache=tmp_path / "cache-bob")
    assert build_through_fault(bob, server.url).built == {"//a:other"}
    assert stored.read_bytes() == b"cba\n", "the corrupted blob is still on the server"

    carol = workspace(FILES, name="carol", cache=tmp_path / "cache-carol")
    result = build_through_fault(carol, server.url)
    assert result.built == set()
    assert remote_hits(result) == ALL
    assert warning_lines(result) == []


def test_entry_naming_a_missing_blob_is_a_miss(published, workspace, tmp_path):
    server, alice = published
    digest = blob_of(alice, "//a:up")
    (server.data_dir / "cas" / digest).unlink()

    bob = workspace(FILES, name="bob", cache=tmp_path / "cache-bob")
    result = build_through_fault(bob, server.url)
    assert result.built == {"//a:up"}
    assert remote_hits(result) == ALL - {"//a:up"}
    warning = the_one_warning(result)
    assert digest in warning and "missing" in warning
    # Bob ran it and published it again: the server is whole once more.
    assert (server.data_dir / "cas" / digest).read_bytes() == b"HELLO\n"


# -- secrets -----------------------------------------------------------------------------------

SECRET = "s3cr3t-value"
ENV_DUMP = """\
envdump: {rule: command, outs: [env.txt], cmd: "env > {{out}}; env; env >&2"}
"""


def test_undeclared_env_secret_reaches_neither_cache_nor_remote(workspace, start_nginx):
    server = start_nginx()
    ws = workspace({"BUILD.yaml": ROOT_BUILD, "targets/s/BUILD.yaml": ENV_DUMP})
    result = ws.process("build", "//...", "--remote-cache", server.url, env={"MLBUILD_TEST_SECRET": SECRET})
    assert result.code == 0, str(result)
    dumped = ws.out("", "//s:envdump", "env.txt").read_text()
    assert "PATH=" in dumped  # the action did dump its environment...
    assert SECRET not in dumped and "MLBUILD_TEST_SECRET" not in dumped  # ...which was scrubbed
    # The result and its logs (the same env dump) were uploaded.
    entry = ActionResult.from_json((server.data_dir / "ac" / ws.key("", "//s:envdump")).read_bytes())
    for digest in (entry.outputs[0].digest, entry.stdout_digest, entry.stderr_digest):
        assert (server.data_dir / "cas" / digest).is_file()
    needle = SECRET.encode()
    assert files_containing(server.data_dir, needle) == []
    assert files_containing(server.run_dir, needle) == []  # nginx's logs
    assert files_containing(ws.cache, needle) == []
    assert files_containing(ws.root, needle) == []  # build state, output tree
