"""The `download` rule through the CLI, against a real loopback HTTP file server.

Checksums are mandatory and verified before anything is cached; a file is fetched once per
cache whoever names it; `--distdir` and `--downloader-config` serve offline machines and
internal mirrors; archives are unpacked only when every member is safe.
"""

from __future__ import annotations

import hashlib
import io
import tarfile

import pytest
from core.conftest import ROOT_BUILD, check_cache_consistent

from mlbuild.hashing import digest_bytes

from .conftest import files_containing, warning_lines

DATA = b"weights " * 4096 + b"end\n"  # 32 KiB of a "model"
SHA256 = hashlib.sha256(DATA).hexdigest()


@pytest.fixture(autouse=True)
def _loopback_without_proxies(no_proxies):
    """Requests to 127.0.0.1 must reach the file server, not a proxy from the environment."""


def download(name: str, urls: list[str], checksum: str, **attrs) -> str:
    """A `download` target as BUILD.yaml text."""
    lines = [f"{name}:", "  rule: download", "  urls:"] + [f"    - {u!r}" for u in urls]
    lines.append(f"  checksum: {checksum!r}")
    lines += [f"  {key}: {value!r}" if isinstance(value, str) else f"  {key}: {str(value).lower()}"
              for key, value in attrs.items()]
    return "\n".join(lines) + "\n"


def files(*targets: str, package: str = "m") -> dict:
    return {"BUILD.yaml": ROOT_BUILD, f"targets/{package}/BUILD.yaml": "".join(targets)}


def requests_for(server, name: str) -> int:
    return sum(1 for path in server.paths() if path.split("?", 1)[0] == f"/{name}")


def test_verified_file_lands_in_mlbuild_bin(workspace, file_server):
    url = file_server.add("weights.bin", DATA)
    ws = workspace(files(download("weights", [url], f"sha256:{SHA256}")))
    result = ws.ok("build", "//...")
    assert result.built == {"//m:weights"}
    landed = ws.root / "mlbuild-bin" / "m" / "weights" / "weights.bin"
    assert hashlib.sha256(landed.read_bytes()).hexdigest() == SHA256
    assert requests_for(file_server, "weights.bin") == 1
    assert check_cache_consistent(ws.cache)["entries"] == 1


def test_wrong_checksum_fails_naming_both_digests_and_caches_nothing(workspace, file_server):
    url = file_server.add("weights.bin", DATA)
    wrong = hashlib.sha256(b"some other file").hexdigest()
    ws = workspace(files(download("weights", [url], f"sha256:{wrong}")))
    for attempt in (1, 2):  # a rerun fails again: nothing was remembered
        result = ws("build", "//...")
        assert result.code == 1, str(result)
        assert "Traceback" not in result.stderr
        assert f"sha256:{wrong}" in result.stderr  # expected
        assert f"sha256:{SHA256}" in result.stderr  # actual
        assert result.failed == {"//m:weights"}
        assert requests_for(file_server, "weights.bin") == attempt
    downloads = ws.cache / "downloads"
    assert not downloads.exists() or list(downloads.iterdir()) == []
    assert check_cache_consistent(ws.cache)["entries"] == 0
    assert files_containing(ws.cache, DATA[:64]) == []  # the wrong bytes were not kept anywhere
    assert not (ws.root / "mlbuild-bin" / "m" / "weights" / "weights.bin").exists()


def test_same_file_in_two_targets_and_two_workspaces_is_fetched_once(workspace, file_server, tmp_path):
    url = file_server.add("weights.bin", DATA)
    checksum = f"sha256:{SHA256}"
    shared_cache = tmp_path / "shared-cache"
    first = workspace(files(download("a", [url], checksum, out="a.bin"),
                            download("b", [url], checksum, out="b.bin")), name="one", cache=shared_cache)
    second = workspace(files(download("c", [url], checksum, out="c.bin"), package="other"),
                       name="two", cache=shared_cache)
    # Different outputs make two actions, run side by side.
    assert first.ok("build", "//...", "-j", "2").built == {"//m:a", "//m:b"}
    assert second.ok("build", "//...").built == {"//other:c"}
    assert requests_for(file_server, "weights.bin") == 1
    for ws, label, name in ((first, "//m:a", "a.bin"), (first, "//m:b", "b.bin"), (second, "//other:c", "c.bin")):
        assert ws.out("", label, name).read_bytes() == DATA
    check_cache_consistent(shared_cache)


def test_distdir_makes_no_http_request(workspace, file_server, tmp_path):
    url = file_server.add("weights.bin", DATA)
    distdir = tmp_path / "distdir"
    distdir.mkdir()
    (distdir / "weights.bin").write_bytes(DATA)
    ws = workspace(files(download("weights", [url], f"sha256:{SHA256}")))
    result = ws.ok("build", "//...", "--distdir", distdir)
    assert result.built == {"//m:weights"}
    assert file_server.requests == []
    assert ws.out("", "//m:weights", "weights.bin").read_bytes() == DATA


def test_downloader_config_rewrites_an_unreachable_host_to_a_mirror(workspace, file_server, tmp_path):
    file_server.add("weights.bin", DATA)
    config = tmp_path / "mirrors.txt"
    config.write_text(f"# internal mirror\nrewrite ^https://example\\.invalid/(.*)$ {file_server.base_url}/\\1\n")
    ws = workspace(files(download("weights", ["https://example.invalid/weights.bin"], f"sha256:{SHA256}")))
    result = ws.ok("build", "//...", "--downloader-config", config)
    assert result.built == {"//m:weights"}
    assert file_server.paths() == ["/weights.bin"]
    assert ws.out("", "//m:weights", "weights.bin").read_bytes() == DATA


def tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_extract_unpacks_an_archive(workspace, file_server):
    archive = tar_gz({"data/train.csv": b"x,y\n1,2\n", "data/sub/labels.txt": b"cat\ndog\n"})
    url = file_server.add("dataset.tar.gz", archive)
    checksum = f"sha256:{hashlib.sha256(archive).hexdigest()}"
    ws = workspace(files(download("dataset", [url], checksum, out="dataset", extract=True, strip_components=1)))
    assert ws.ok("build", "//...").built == {"//m:dataset"}
    unpacked = ws.root / "mlbuild-bin" / "m" / "dataset" / "dataset"
    assert (unpacked / "train.csv").read_bytes() == b"x,y\n1,2\n"
    assert (unpacked / "sub" / "labels.txt").read_bytes() == b"cat\ndog\n"
    check_cache_consistent(ws.cache)


def test_archive_with_an_escaping_member_fails_and_caches_nothing(workspace, file_server, tmp_path):
    payload = b"planted outside the output tree\n"
    archive = tar_gz({"ok.txt": b"fine\n", "../evil": payload})
    url = file_server.add("evil.tar.gz", archive)
    checksum = f"sha256:{hashlib.sha256(archive).hexdigest()}"
    ws = workspace(files(download("evil", [url], checksum, out="unpacked", extract=True)))
    result = ws("build", "//...")
    assert result.code == 1, str(result)
    assert "Traceback" not in result.stderr
    assert result.failed == {"//m:evil"}
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "'../evil'" in error
    # Clear means it says which target or archive: not only a sandbox path deleted by now.
    assert "//m:evil" in error or "evil.tar.gz" in error, error
    assert check_cache_consistent(ws.cache)["entries"] == 0
    assert files_containing(ws.cache, payload) == []
    assert not (ws.cache / "cas" / digest_bytes(payload)[:2] / digest_bytes(payload)).exists()
    # Written nowhere, inside the workspace or outside it (the served archive is compressed).
    assert [p for p in files_containing(tmp_path, payload) if file_server.root not in p.parents] == []
    assert not (ws.root / "mlbuild-bin" / "m" / "evil").exists()


def test_md5_checksum_is_accepted_with_the_legacy_warning(workspace, file_server):
    url = file_server.add("weights.bin", DATA)
    md5 = hashlib.md5(DATA).hexdigest()
    ws = workspace(files(download("weights", [url], f"md5:{md5}")))
    result = ws.ok("build", "//...")
    assert result.built == {"//m:weights"}
    warnings = warning_lines(result)
    assert len(warnings) == 1 and "md5" in warnings[0] and "sha256" in warnings[0] and "//m:weights" in warnings[0]
    assert ws.out("", "//m:weights", "weights.bin").read_bytes() == DATA


def test_adding_a_mirror_does_not_rerun_the_download(workspace, file_server):
    url = file_server.add("weights.bin", DATA)
    mirror = file_server.add("mirror-weights.bin", DATA)
    checksum = f"sha256:{SHA256}"
    ws = workspace(files(download("weights", [url], checksum, out="weights.bin")))
    assert ws.ok("build", "//...").built == {"//m:weights"}
    key = ws.key("", "//m:weights")

    ws.write(files(download("weights", [mirror, url], checksum, out="weights.bin")))
    again = ws.ok("build", "//...")
    assert again.summary["executed"] == 0
    assert again.built == set()
    assert ws.key("", "//m:weights") == key
    assert file_server.paths() == ["/weights.bin"]  # the mirror was never needed
