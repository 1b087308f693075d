"""The remote cache client against a real nginx: sharing works, and no remote fault breaks a build."""

from __future__ import annotations

import os
import re
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest

from mlbuild.errors import UserError
from mlbuild.hashing import digest_bytes
from mlbuild.storage.action_cache import ActionResult, OutputFile
from mlbuild.storage.remote import RemoteOptions

KEY = digest_bytes(b"action: train digits")
OTHER_KEY = digest_bytes(b"action: never built")
CREDENTIALS_HINT = "check credentials (netrc, URL userinfo or MLBUILD_REMOTE_TOKEN)"


def with_userinfo(server, userinfo: str) -> str:
    return f"http://{userinfo}@{server.host}:{server.port}"


def put_requests(server, kind: str) -> int:
    """How many PUTs of /cas/ or /ac/ nginx logged; stops the server, which finishes the log."""
    server.stop()
    return sum(line.startswith(f"PUT /{kind}/") for line in server.access_log.read_text().splitlines())


def seed(server, key, result, local) -> None:
    """Put an entry and its blobs straight into nginx's data dir, the way a PUT would."""
    for kind in ("ac", "cas"):
        (server.data_dir / kind).mkdir(exist_ok=True)
    (server.data_dir / "ac" / key).write_bytes(result.to_json())
    for output in result.outputs:
        blob = local.cas.blob_path(output.digest, output.executable).read_bytes()
        (server.data_dir / "cas" / output.digest).write_bytes(blob)
    stdout = local.cas.blob_path(result.stdout_digest).read_bytes()
    (server.data_dir / "cas" / result.stdout_digest).write_bytes(stdout)


@pytest.fixture
def source(make_cache, make_result):
    """A local cache holding one result: a model, an executable and a log."""
    local = make_cache("source")
    result = make_result(
        local, {"model.onnx": b"weights" * 1000, "bin/run": (b"#!/bin/sh\necho\n", True)}
    )
    return local, result


def test_a_fetched_entry_keeps_the_key_components_for_explain(server, make_remote, make_cache, source):
    local, result = source
    remote = make_remote(server.url)
    remote.publish(KEY, result, local)
    dest = make_cache("dest")
    assert remote.fetch(KEY, dest, key_components=b'{"argv":["run"]}') == result
    assert dest.actions.lookup(KEY) == result
    assert dest.actions.key_components(KEY) == {"argv": ["run"]}


def test_publish_then_fetch_into_an_empty_cache(server, make_remote, make_cache, source, warnings):
    local, result = source
    remote = make_remote(server.url)
    remote.publish(KEY, result, local)
    dest = make_cache("dest")

    assert remote.fetch(KEY, dest) == result
    for output in result.outputs:
        fetched = dest.cas.blob_path(output.digest, output.executable)
        assert fetched.read_bytes() == local.cas.blob_path(output.digest, output.executable).read_bytes()
        assert bool(fetched.stat().st_mode & 0o111) == output.executable
    assert dest.cas.blob_path(result.stdout_digest).read_bytes() == b"done\n"
    assert dest.actions.lookup(KEY) == result
    blob_bytes = sum(o.size for o in result.outputs) + len(b"done\n")
    assert (remote.stats.uploads, remote.stats.hits) == (3, 1)
    assert remote.stats.bytes_up == remote.stats.bytes_down == blob_bytes

    assert remote.fetch(KEY, dest) == result  # blobs already verified locally: not downloaded again
    assert remote.stats.bytes_down == blob_bytes
    assert remote.fetch(OTHER_KEY, dest) is None
    assert (remote.stats.misses, remote.stats.errors, warnings) == (1, 0, [])


def test_empty_blobs_round_trip(server, make_remote, make_cache, make_result, warnings):
    """Actions often print nothing: an empty log is a blob like any other."""
    local = make_cache("source")
    result = make_result(local, {"empty.txt": b""}, stdout=b"")
    remote = make_remote(server.url)
    remote.publish(KEY, result, local)
    assert warnings == []
    assert remote.fetch(KEY, make_cache("dest")) == result


def test_second_publish_skips_blobs_the_server_has(server, make_remote, source):
    local, result = source
    remote = make_remote(server.url)
    remote.publish(KEY, result, local)
    remote.publish(KEY, result, local)

    assert (remote.stats.uploads, remote.stats.skipped_uploads) == (3, 3)
    assert (put_requests(server, "cas"), put_requests(server, "ac")) == (3, 2)


def test_manifest_is_not_published_when_a_blob_upload_fails(start_nginx, make_remote, source, warnings):
    local, result = source
    failing = result.outputs[0].digest
    server = start_nginx(server_extra=f"location = /cas/{failing} {{ return 500; }}")
    remote = make_remote(server.url, retries=0)
    remote.publish(KEY, result, local)

    assert not (server.data_dir / "ac" / KEY).exists()
    assert put_requests(server, "ac") == 0
    assert warnings == [
        f"remote cache {server.url} failed (500 Internal Server Error); continuing with local cache only"
    ]


def test_blob_above_the_upload_limit_keeps_the_entry_local(server, make_remote, source, warnings):
    local, result = source
    remote = make_remote(server.url, max_upload_bytes=1000)
    remote.publish(KEY, result, local)

    assert not (server.data_dir / "ac").exists() and not (server.data_dir / "cas").exists()
    assert len(warnings) == 1 and "upload limit" in warnings[0]


def test_corrupted_blob_on_the_server_is_never_adopted(
    server, make_remote, make_cache, source, warnings
):
    local, result = source
    remote = make_remote(server.url)
    remote.publish(KEY, result, local)
    bad = result.outputs[0]
    on_server = server.data_dir / "cas" / bad.digest
    on_server.write_bytes(b"X" * on_server.stat().st_size)
    dest = make_cache("dest")

    assert remote.fetch(KEY, dest) is None
    assert remote.fetch(KEY, dest) is None
    assert warnings == [
        f"remote cache: blob {bad.digest} from {server.url} does not match its digest; ignoring entry {KEY}"
    ]
    assert not dest.cas.contains(bad.digest) and not dest.cas.contains(bad.digest, executable=True)
    assert list(dest.cas.root.rglob("*.tmp")) == []
    assert dest.actions.lookup(KEY) is None
    assert (remote.stats.hits, remote.stats.errors) == (0, 2)


def test_entry_naming_a_missing_blob_is_a_miss(server, make_remote, make_cache, source, warnings):
    local, result = source
    remote = make_remote(server.url)
    remote.publish(KEY, result, local)
    (server.data_dir / "cas" / result.stdout_digest).unlink()

    assert remote.fetch(KEY, make_cache("dest")) is None
    assert len(warnings) == 1 and "missing from" in warnings[0] and result.stdout_digest in warnings[0]


@pytest.mark.parametrize(
    "manifest",
    [
        b"<html>not a manifest</html>",
        b'{"version": 1}',
        (
            b'{"version": 1, "outputs": [{"path": "a", "digest": ["x"], "size": 1}], '
            b'"directories": [], "symlinks": []}'
        ),
        "escape",
    ],
    ids=["not-json", "incomplete", "wrong-types", "path-escapes"],
)
def test_malformed_manifest_is_a_miss(server, make_remote, make_cache, source, warnings, manifest):
    local, result = source
    remote = make_remote(server.url)
    remote.publish(KEY, result, local)
    if manifest == "escape":
        manifest = replace(result, outputs=(replace(result.outputs[0], path="../../.bashrc"),)).to_json()
    (server.data_dir / "ac" / KEY).write_bytes(manifest)

    assert remote.fetch(KEY, make_cache("dest")) is None
    assert len(warnings) == 1 and "is not a valid action result" in warnings[0]


def test_unreachable_server_costs_one_warning_then_nothing(
    make_remote, make_cache, source, warnings, unused_port
):
    local, result = source
    remote = make_remote(f"http://alice:s3cret@127.0.0.1:{unused_port}", timeout_s=1)
    start = time.monotonic()

    assert remote.fetch(KEY, make_cache("dest")) is None
    assert time.monotonic() - start < 2
    assert warnings == [
        f"remote cache http://127.0.0.1:{unused_port} unreachable (Connection refused); continuing with local cache only"
    ]
    sent = remote.stats.requests
    assert sent == 3  # the first attempt and two retries opened the circuit breaker

    assert remote.fetch(OTHER_KEY, make_cache("dest")) is None
    remote.publish(KEY, result, local)
    assert remote.stats.requests == sent and len(warnings) == 1


def test_server_answering_500_degrades_to_local(start_nginx, make_remote, make_cache, source, warnings):
    local, result = source
    server = start_nginx(server_extra="return 500;")
    remote = make_remote(server.url)

    assert remote.fetch(KEY, make_cache("dest")) is None
    remote.publish(KEY, result, local)
    assert warnings == [
        f"remote cache {server.url} failed (500 Internal Server Error); continuing with local cache only"
    ]
    assert remote.stats.requests == 3  # then the breaker stopped the publish before it began


def test_transient_failures_are_retried(fake_server, make_remote, make_cache, source, warnings):
    local, result = source
    fake = fake_server(fail_first=2)
    remote = make_remote(fake.url)
    remote.publish(KEY, result, local)

    assert remote.fetch(KEY, make_cache("dest")) == result
    assert warnings == [] and remote.stats.errors == 0


@pytest.mark.parametrize("slow", ["manifest", "blob"])
def test_slow_server_times_out(
    start_nginx, echo_module, make_remote, make_cache, source, warnings, slow
):
    local, result = source
    blob = result.outputs[0].digest
    stall = (
        f"location = /ac/{KEY} {{ echo_sleep 5; echo late; }}"
        if slow == "manifest"  # the blob stalls after its first bytes
        else f"location = /cas/{blob} {{ echo start; echo_flush; echo_sleep 5; echo late; }}"
    )
    server = start_nginx(server_extra=stall, modules=(echo_module,))
    seed(server, KEY, result, local)
    remote = make_remote(server.url, timeout_s=0.5, retries=0)
    start = time.monotonic()

    assert remote.fetch(KEY, make_cache("dest")) is None
    assert time.monotonic() - start < 3
    assert warnings == [
        f"remote cache {server.url} timed out after 0.5 s; continuing with local cache only"
    ]


def test_wrong_credentials_stop_uploads_but_not_reads(
    start_nginx, make_remote, make_cache, source, warnings
):
    local, result = source
    server = start_nginx(auth=("alice", "s3cret"))
    wrong = make_remote(with_userinfo(server, "alice:wrong"))
    wrong.publish(KEY, result, local)

    assert warnings == [f"remote cache rejected upload (401 Unauthorized): {CREDENTIALS_HINT}"]
    assert not (server.data_dir / "ac" / KEY).exists() and wrong.stats.uploads == 0
    sent = wrong.stats.requests
    wrong.publish(OTHER_KEY, result, local)
    assert wrong.stats.requests == sent  # uploads stopped for the rest of the process

    right = make_remote(with_userinfo(server, "alice:s3cret"))
    right.publish(KEY, result, local)
    assert (server.data_dir / "ac" / KEY).exists() and right.stats.uploads == 3
    assert wrong.fetch(KEY, make_cache("reader")) == result  # reads are anonymous
    assert len(warnings) == 1


def test_netrc_credentials_are_used(start_nginx, make_remote, source, warnings, tmp_path, monkeypatch):
    local, result = source
    server = start_nginx(auth=("alice", "s3cret"))
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine {server.host} login alice password s3cret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    remote = make_remote(server.url)
    remote.publish(KEY, result, local)

    assert (server.data_dir / "ac" / KEY).exists() and warnings == []


def test_bearer_token_is_sent_and_only_cache_paths_are_used(
    fake_server, make_remote, make_cache, source
):
    local, result = source
    fake = fake_server()
    remote = make_remote(fake.url, bearer_token="tok-123")
    remote.publish(KEY, result, local)
    assert remote.fetch(KEY, make_cache("dest")) == result

    assert {headers["Authorization"] for _, _, headers in fake.requests} == {"Bearer tok-123"}
    assert {method for method, _, _ in fake.requests} == {"HEAD", "PUT", "GET"}
    assert all(re.fullmatch(r"/(cas|ac)/[0-9a-f]{64}", path) for _, path, _ in fake.requests)


def test_tls_needs_the_private_ca(fake_server, self_signed, make_remote, make_cache, source, warnings):
    local, result = source
    fake = fake_server(tls=self_signed)
    trusting = make_remote(fake.url, ca_bundle=str(self_signed[0]))
    trusting.publish(KEY, result, local)
    assert trusting.fetch(KEY, make_cache("dest")) == result and warnings == []

    assert make_remote(fake.url).fetch(KEY, make_cache("other")) is None
    assert (
        len(warnings) == 1 and "TLS failed" in warnings[0] and "certificate verify failed" in warnings[0]
    )


def test_options_from_settings(tmp_path, monkeypatch):
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    monkeypatch.setenv("MLBUILD_REMOTE_TOKEN", "from-env")
    settings = {"upload": True, "timeout_s": 5}

    assert (
        RemoteOptions.from_settings("http://c:8080", **settings, token_file=token_file).bearer_token
        == "from-file"
    )
    assert RemoteOptions.from_settings("http://c:8080", **settings).bearer_token == "from-env"
    with pytest.raises(UserError, match="cannot read remote cache token file"):
        RemoteOptions.from_settings("http://c:8080", **settings, token_file=tmp_path / "absent")
    with pytest.raises(UserError, match="not an http") as error:
        RemoteOptions.from_settings("ftp://alice:s3cret@c", **settings)
    assert "s3cret" not in str(error.value)


def test_parallel_fetches_share_one_client(server, make_remote, make_cache, make_result):
    local = make_cache("source")
    results = {
        digest_bytes(b"action %d" % i): make_result(local, {"out": b"%d" % i * 5000}) for i in range(12)
    }
    remote = make_remote(server.url)
    for key, result in results.items():
        remote.publish(key, result, local)
    dest = make_cache("dest")

    with ThreadPoolExecutor(8) as pool:
        fetched = dict(zip(results, pool.map(lambda key: remote.fetch(key, dest), results)))
    assert fetched == results and remote.stats.hits == 12


def test_large_blob_streams_in_bounded_memory(server, make_remote, make_cache, tmp_path):
    size_mib = 256
    blob = tmp_path / "model.bin"
    chunk = os.urandom(1 << 20)
    with open(blob, "wb") as f:
        f.writelines(i.to_bytes(8, "little") + chunk[8:] for i in range(size_mib))
    local = make_cache("source")
    digest = local.cas.put_file(blob, take=True)
    result = ActionResult(outputs=(OutputFile("model.bin", digest, size_mib << 20),))
    remote = make_remote(server.url, timeout_s=30)
    dest = make_cache("dest")

    tracemalloc.start()
    try:
        remote.publish(KEY, result, local)
        assert remote.fetch(KEY, dest) == result
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"peak {peak / (1 << 20):.1f} MiB"
    assert remote.stats.bytes_up == remote.stats.bytes_down == size_mib << 20
    assert dest.cas.verify(digest)
