"""Fixtures for the remote cache tests: local caches, results, a recording fake server.

The real nginx fixtures (start_nginx, echo_module, unused_port) live in tests/conftest.py.
"""

from __future__ import annotations

import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mlbuild.storage.action_cache import ActionResult, OutputFile
from mlbuild.storage.local import LocalCache
from mlbuild.storage.nginx import NginxServer
from mlbuild.storage.remote import RemoteCache, RemoteOptions


@pytest.fixture
def server(start_nginx) -> NginxServer:
    return start_nginx()


@pytest.fixture
def warnings() -> list[str]:
    """Every line the remote cache warned, in order (pass `warnings.append` as `warn`)."""
    return []


@pytest.fixture
def make_remote(warnings):
    remotes: list[RemoteCache] = []

    def make(url: str, **options) -> RemoteCache:
        remote = RemoteCache(RemoteOptions(url, **options), warn=warnings.append)
        remotes.append(remote)
        return remote

    yield make
    for remote in remotes:
        remote.close()


@pytest.fixture
def make_cache(tmp_path):
    return lambda name: LocalCache(tmp_path / "caches" / name)


@pytest.fixture
def make_result():
    """Store outputs ({path: bytes, or (bytes, executable)}) and a stdout log in `local`'s CAS."""

    def make(local: LocalCache, outputs: dict, stdout: bytes = b"done\n") -> ActionResult:
        files = []
        for path, content in outputs.items():
            data, executable = content if isinstance(content, tuple) else (content, False)
            blob = local.root / "src" / path
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(data)
            digest = local.cas.put_file(blob, executable=executable)
            files.append(OutputFile(path, digest, len(data), executable))
        return ActionResult(outputs=tuple(files), stdout_digest=local.cas.put_bytes(stdout))

    return make


class FakeServer:
    """A tiny in-memory HTTP cache that records every request; fails the first `fail_first` with 503.

    For what the nginx helper cannot show: the headers a client sent, a server that recovers,
    HTTPS with a private CA (`tls=(certificate, key)`).
    """

    def __init__(self, fail_first: int = 0, tls: tuple[Path, Path] | None = None):
        self.requests: list[tuple[str, str, dict]] = []  # (method, path, headers)
        self.store: dict[str, bytes] = {}
        self.fail_first = fail_first
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self, status: int, body: bytes = b"", send_body: bool = True):
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if send_body:
                    self.wfile.write(body)

            def _handle(self):
                fake.requests.append((self.command, self.path, dict(self.headers)))
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if len(fake.requests) <= fake.fail_first:
                    return self._answer(503)
                if self.command == "PUT":
                    fake.store[self.path] = body
                    return self._answer(201)
                if self.path not in fake.store:
                    return self._answer(404)
                self._answer(200, fake.store[self.path], send_body=self.command == "GET")

            do_GET = do_HEAD = do_PUT = _handle

            def log_message(self, *args):
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        scheme = "http" if tls is None else "https"
        self.url = f"{scheme}://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def self_signed(tmp_path) -> tuple[Path, Path]:
    """(certificate, key) for 127.0.0.1; the certificate is its own CA."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    try:
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
                "-keyout",
                str(key),
                "-out",
                str(cert),
            ],
            check=True,
            capture_output=True,
        )
    except FileNotFoundError:
        pytest.skip("openssl is needed to make a test certificate")
    return cert, key


@pytest.fixture
def fake_server():
    servers: list[FakeServer] = []

    def start(**kwargs) -> FakeServer:
        servers.append(FakeServer(**kwargs))
        return servers[-1]

    yield start
    for fake in servers:
        fake.close()
