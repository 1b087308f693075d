"""Tests for fetch/Checksum/load_rewrites against a real loopback HTTP server."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import tracemalloc

import pytest

from mlbuild.downloads import Checksum, fetch, load_rewrites
from mlbuild.downloads.http import CHUNK_BYTES
from mlbuild.errors import ActionError, BuildFileError
from mlbuild.progress import TransferProgress

DATA = bytes(range(256)) * 12_345  # ~3 MiB: several chunks, so a cut transfer leaves partial data
# requests hands over data in whole chunks: bytes of a chunk cut short are lost, so cut on a boundary.
CUT = CHUNK_BYTES


def sha256(data: bytes) -> Checksum:
    return Checksum("sha256", hashlib.sha256(data).hexdigest())


def quick(urls, checksum, dest, **kwargs):
    """fetch without backoff delays, collecting warnings."""
    warnings: list[str] = []
    kwargs.setdefault("backoff_s", 0)
    result = fetch(urls, checksum, dest, warn=warnings.append, **kwargs)
    return result, warnings


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_download_verifies_and_writes_dest(server, tmp_path):
    url = server.add("model.bin", DATA)
    dest = tmp_path / "out" / "model.bin"
    result, warnings = quick([url], sha256(DATA), dest)
    assert result == dest
    assert dest.read_bytes() == DATA
    assert not (tmp_path / "out" / "model.bin.part").exists()
    assert server.requests[0].range is None
    assert warnings == []


def test_wrong_checksum_raises_and_leaves_nothing(server, tmp_path):
    url = server.add("model.bin", DATA)
    wrong = sha256(b"something else")
    dest = tmp_path / "model.bin"
    with pytest.raises(ActionError) as caught:
        quick([url], wrong, dest)
    message = str(caught.value)
    assert url in message
    assert f"expected {wrong}" in message
    assert f"got {sha256(DATA)}" in message
    assert "update the checksum" in message
    assert os.listdir(tmp_path) == ["served"]


def test_404_moves_to_next_mirror(server, tmp_path):
    server.add("model.bin", DATA)
    server.add("other.bin", DATA)
    server.not_found.add("/model.bin")
    dest = tmp_path / "model.bin"
    _, warnings = quick([server.url("model.bin"), server.url("other.bin")], sha256(DATA), dest)
    assert dest.read_bytes() == DATA
    assert server.paths() == ["/model.bin", "/other.bin"]  # a 404 is not retried
    assert len(warnings) == 1 and "HTTP 404" in warnings[0]


@pytest.mark.parametrize("retries, succeeds", [(3, True), (2, False)])
def test_500_is_retried(server, tmp_path, retries, succeeds):
    url = server.add("model.bin", DATA)
    server.errors_before_success["/model.bin"] = 2
    dest = tmp_path / "model.bin"
    if succeeds:
        quick([url], sha256(DATA), dest, retries=retries)
        assert dest.read_bytes() == DATA
    else:
        with pytest.raises(ActionError, match=r"HTTP 500 Internal Server Error \(2 attempts\)"):
            quick([url], sha256(DATA), dest, retries=retries)
    assert server.paths() == ["/model.bin"] * min(retries, 3)


def test_interrupted_transfer_resumes_with_range(server, tmp_path):
    url = server.add("model.bin", DATA)
    server.cut_after["/model.bin"] = CUT
    dest = tmp_path / "model.bin"
    quick([url], sha256(DATA), dest)
    assert dest.read_bytes() == DATA
    assert [r.range for r in server.requests] == [None, f"bytes={CUT}-"]


def test_200_answer_to_range_request_starts_over(server, tmp_path):
    url = server.add("model.bin", DATA)
    server.cut_after["/model.bin"] = CUT
    server.ignore_range.add("/model.bin")
    dest = tmp_path / "model.bin"
    quick([url], sha256(DATA), dest)
    assert dest.read_bytes() == DATA
    assert [r.range for r in server.requests] == [None, f"bytes={CUT}-"]


def test_partial_file_from_earlier_run_is_resumed(server, tmp_path):
    url = server.add("model.bin", DATA)
    dest = tmp_path / "model.bin"
    (tmp_path / "model.bin.part").write_bytes(DATA[:5000])
    quick([url], sha256(DATA), dest)
    assert dest.read_bytes() == DATA
    assert [r.range for r in server.requests] == ["bytes=5000-"]


def test_stale_partial_file_is_discarded_when_it_does_not_verify(server, tmp_path):
    url = server.add("model.bin", DATA)
    dest = tmp_path / "model.bin"
    (tmp_path / "model.bin.part").write_bytes(b"x" * 5000)  # e.g. left by an older version of the file
    quick([url], sha256(DATA), dest)
    assert dest.read_bytes() == DATA
    assert [r.range for r in server.requests] == ["bytes=5000-", None]


def test_complete_partial_file_needs_no_request(server, tmp_path):
    url = server.add("model.bin", DATA)
    dest = tmp_path / "model.bin"
    (tmp_path / "model.bin.part").write_bytes(DATA)
    quick([url], sha256(DATA), dest)
    assert dest.read_bytes() == DATA
    assert server.requests == []


def test_distdir_hit_makes_no_request(server, tmp_path):
    url = server.add("model.bin", DATA)
    distdir = tmp_path / "distdir"
    distdir.mkdir()
    (distdir / "model.bin").write_bytes(DATA)
    dest = tmp_path / "out" / "renamed.bin"
    quick([url + "?download=1"], sha256(DATA), dest, distdirs=[tmp_path / "missing", distdir])
    assert dest.read_bytes() == DATA
    assert server.requests == []
    assert (distdir / "model.bin").read_bytes() == DATA


def test_distdir_file_with_wrong_checksum_is_skipped(server, tmp_path):
    url = server.add("model.bin", DATA)
    distdir = tmp_path / "distdir"
    distdir.mkdir()
    (distdir / "model.bin").write_bytes(b"stale")
    dest = tmp_path / "model.bin"
    _, warnings = quick([url], sha256(DATA), dest, distdirs=[distdir])
    assert dest.read_bytes() == DATA
    assert server.paths() == ["/model.bin"]
    assert len(warnings) == 1
    assert str(distdir / "model.bin") in warnings[0] and str(sha256(b"stale")) in warnings[0]


def test_all_mirrors_failing_explains_the_offline_route(server, tmp_path):
    server.add("weights-v2.tar.gz", DATA)
    server.not_found.add("/weights-v2.tar.gz")
    dead = f"http://127.0.0.1:{unused_port()}/mirror/weights-v2.tar.gz"
    dest = tmp_path / "weights.tar.gz"
    with pytest.raises(ActionError) as caught:
        quick([server.url("weights-v2.tar.gz"), dead], sha256(DATA), dest, distdirs=[tmp_path], retries=2)
    message = str(caught.value)
    assert f"{server.url('weights-v2.tar.gz')}: HTTP 404 Not Found" in message
    assert f"{dead}: connection failed: Connection refused (2 attempts)" in message
    assert "--distdir" in message and "(file name: weights-v2.tar.gz)" in message
    assert "rewrite" in caught.value.hint
    assert caught.value.exit_code == 1
    assert not dest.exists()


def test_md5_is_accepted_as_legacy(server, tmp_path):
    url = server.add("old.tgz", DATA)
    checksum = Checksum.parse("md5:" + hashlib.md5(DATA).hexdigest().upper())
    assert checksum.is_legacy and not sha256(DATA).is_legacy
    assert checksum.hexdigest == hashlib.md5(DATA).hexdigest()
    quick([url], checksum, tmp_path / "old.tgz")
    assert (tmp_path / "old.tgz").read_bytes() == DATA


def test_checksum_parse_round_trip():
    text = "sha256:" + "ab" * 32
    assert str(Checksum.parse(" " + text + "\n")) == text


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("ab" * 32, "did you mean 'sha256:"),
        ("sha265:" + "ab" * 32, "did you mean 'sha256'"),
        ("sha1:" + "ab" * 20, "unsupported checksum algorithm 'sha1'"),
        ("sha256:" + "ab" * 31, "64 hex digits"),
        ("md5:" + "zz" * 16, "32 hex digits"),
        ("", "no algorithm"),
    ],
)
def test_checksum_parse_errors(text, fragment):
    with pytest.raises(BuildFileError) as caught:
        Checksum.parse(text)
    assert fragment in str(caught.value)


def test_unsupported_scheme_is_a_build_file_error(tmp_path):
    with pytest.raises(BuildFileError, match="only http, https and file URLs"):
        quick(["ftp://example.com/x.bin"], sha256(DATA), tmp_path / "x.bin")


def test_file_url_mirror(tmp_path):
    source = tmp_path / "local.bin"
    source.write_bytes(DATA)
    dest = tmp_path / "out.bin"
    quick(["file://" + str(source)], sha256(DATA), dest)
    assert dest.read_bytes() == DATA


def test_rewrite_sends_unreachable_host_to_mirror(server, tmp_path):
    (server.root / "hf").mkdir()
    server.add("hf/model.bin", DATA)
    rules = [
        (r"^https://unrelated\.example/", "http://0.0.0.0:1/"),
        (r"^https://huggingface\.invalid/(.*)$", server.base_url + r"/hf/\1"),
        (r"huggingface", "never-applied"),  # the first matching rule wins
    ]
    dest = tmp_path / "model.bin"
    quick(["https://huggingface.invalid/model.bin"], sha256(DATA), dest, rewrites=rules)
    assert dest.read_bytes() == DATA
    assert server.paths() == ["/hf/model.bin"]


def test_load_rewrites(tmp_path):
    config = tmp_path / "downloader.cfg"
    config.write_text("# internal mirror\n\nrewrite ^https://github\\.com/(.*) https://mirror.corp/gh/\\1\n")
    assert load_rewrites(config) == [(r"^https://github\.com/(.*)", r"https://mirror.corp/gh/\1")]


@pytest.mark.parametrize(
    "line, fragment",
    [
        ("rewrite ^https://(.* https://x/", "bad rewrite"),
        ("rewrite ^https://(.*) https://x/\\2", "invalid group reference"),
        ("rewrite onlyone", "expected 'rewrite REGEX REPLACEMENT'"),
        ("allow example.com", "unknown directive 'allow'"),
    ],
)
def test_load_rewrites_errors_name_the_line(tmp_path, line, fragment):
    config = tmp_path / "downloader.cfg"
    config.write_text(f"# header\nrewrite a b\n{line}\n")
    with pytest.raises(BuildFileError) as caught:
        load_rewrites(config)
    assert str(caught.value).startswith(f"{config}:3: error:")
    assert fragment in str(caught.value)


def test_a_downloader_config_that_is_not_utf8_names_the_byte(tmp_path):
    config = tmp_path / "downloader.cfg"
    config.write_bytes(b"rewrite a b\nrewrite \xff b\n")
    with pytest.raises(BuildFileError) as caught:
        load_rewrites(config)
    assert str(caught.value).startswith(f"{config}:2:9: error: not UTF-8 text: byte 0xff at byte offset 20")


def test_memory_stays_bounded_for_large_files(server, tmp_path):
    block = hashlib.sha256(b"seed").digest() * (1 << 15)  # 1 MiB
    hasher = hashlib.sha256()
    with open(server.root / "big.bin", "wb") as f:
        for i in range(64):
            chunk = i.to_bytes(4, "big") + block[4:]
            f.write(chunk)
            hasher.update(chunk)
    checksum = Checksum("sha256", hasher.hexdigest())
    dest = tmp_path / "big.bin"
    tracemalloc.start()
    try:
        quick([server.url("big.bin")], checksum, dest)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert dest.stat().st_size == 64 << 20
    assert peak < 8 << 20, f"peak traced allocation {peak / 2**20:.1f} MiB"


def test_progress_counts_bytes_rate_and_eta(server, tmp_path):
    """What the live display shows on a download's line (mlbuild/progress.py)."""
    url = server.add("model.bin", DATA)
    progress = TransferProgress()
    quick([url], sha256(DATA), tmp_path / "model.bin", progress=progress)
    assert (progress.done, progress.total) == (len(DATA), len(DATA))
    assert re.search(r"MiB/s, ETA \d+s", progress.describe())
