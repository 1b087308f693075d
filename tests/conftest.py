"""Test-session settings and the fixtures every test directory shares.

Toolchain virtual environments are built once per session into one directory and reused by
every test workspace (as they would be across a user's workspaces). When `make setup` has
filled the wheelhouse, pip installs from it only: the tests never reach a package index.
Scripts that tests run directly get one BLAS/OpenMP thread, as mlbuild's action env gives
them: on 2 shared cores oversubscription is slow and changes results.

Shared fixtures (used beyond the directory that introduced them): `workspace` (a scratch
workspace bound to the in-process CLI of tests/core/conftest.py), the real nginx servers
(`start_nginx`, `echo_module`, `unused_port`) and the loopback `file_server` with its
per-path fault injection (`no_proxies` keeps loopback requests off any configured proxy).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mlbuild.errors import ToolchainError
from mlbuild.storage.nginx import NginxServer, find_nginx

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True, scope="session")
def offline_toolchains():
    pinned = {var: "1" for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    saved = {k: os.environ.get(k) for k in ("MLBUILD_TOOLCHAIN_DIR", "PIP_NO_INDEX", "PIP_FIND_LINKS", *pinned)}
    os.environ.update(pinned)
    os.environ["MLBUILD_TOOLCHAIN_DIR"] = str(REPO / ".mlbuild" / "test-toolchains")
    wheelhouse = REPO / ".wheelhouse"
    if wheelhouse.is_dir() and any(wheelhouse.iterdir()):
        os.environ["PIP_NO_INDEX"] = "1"
        os.environ["PIP_FIND_LINKS"] = str(wheelhouse)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


# -- scratch workspaces (helpers in tests/core/conftest.py) --------------------------------------

@pytest.fixture
def workspace(tmp_path):
    """Factory: workspace(files, name="ws", cache=None) -> Mlbuild."""
    from core.conftest import Mlbuild, write_tree

    def make(files: dict, name: str = "ws", cache: Path | None = None) -> Mlbuild:
        root = tmp_path / name
        root.mkdir(parents=True, exist_ok=True)
        (root / "targets").mkdir(exist_ok=True)
        write_tree(root, files)
        return Mlbuild(root, cache or tmp_path / "cache")

    return make


# -- real nginx remote caches on 127.0.0.1 -------------------------------------------------------

ECHO_MODULE = Path("/usr/lib/nginx/modules/ngx_http_echo_module.so")  # libnginx-mod-http-echo


@pytest.fixture
def echo_module() -> str:
    """The nginx module whose echo_sleep makes a slow server."""
    if not ECHO_MODULE.exists():
        pytest.skip("needs libnginx-mod-http-echo (echo_sleep) for a slow nginx")
    return str(ECHO_MODULE)


@pytest.fixture(scope="session")
def nginx_installed() -> None:
    try:
        find_nginx()
    except ToolchainError:
        pytest.skip(
            "nginx is not installed (apt-get install nginx-light): these tests need a real server"
        )


@pytest.fixture
def start_nginx(nginx_installed, tmp_path):
    """Start an nginx cache (kwargs as NginxServer's) on a free port; all are stopped at teardown."""
    servers: list[NginxServer] = []

    def start(name: str = "server", **kwargs) -> NginxServer:
        server = NginxServer(tmp_path / name / "data", run_dir=tmp_path / name / "run", **kwargs)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def unused_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- a loopback HTTP file server whose failures tests script per path ----------------------------

@dataclass(frozen=True)
class Request:
    method: str
    path: str
    range: str | None


@dataclass
class FileServer:
    """Serves files from `root`; the sets and dicts below script misbehaviour per URL path."""

    root: Path
    base_url: str = ""
    requests: list[Request] = field(default_factory=list)
    not_found: set[str] = field(default_factory=set)  # answer 404
    errors_before_success: dict[str, int] = field(default_factory=dict)  # answer 500 this many times
    cut_after: dict[str, int] = field(default_factory=dict)  # first request: send K bytes, then close
    ignore_range: set[str] = field(default_factory=set)  # answer 200 with the whole file to Range requests
    lock: threading.Lock = field(default_factory=threading.Lock)
    _seen: defaultdict = field(default_factory=lambda: defaultdict(int))

    def add(self, name: str, data: bytes) -> str:
        """Write a file to serve and return its URL."""
        (self.root / name).write_bytes(data)
        return self.url(name)

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}"

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ThreadingHTTPServer

    def log_message(self, format, *args):  # keep test output clean
        pass

    def do_GET(self):
        state: FileServer = self.server.state
        path = self.path.split("?", 1)[0]
        range_header = self.headers.get("Range")
        with state.lock:
            state.requests.append(Request("GET", self.path, range_header))
            state._seen[path] += 1
            first = state._seen[path] == 1
            if state.errors_before_success.get(path, 0) > 0:
                state.errors_before_success[path] -= 1
                return self._empty(500)
        file = state.root / path.lstrip("/")
        if path in state.not_found or not file.is_file():
            return self._empty(404)
        size = file.stat().st_size
        start = 0
        found = re.fullmatch(r"bytes=(\d+)-", range_header or "")
        if found and path not in state.ignore_range:
            start = int(found.group(1))
            if start >= size:
                return self._empty(416, {"Content-Range": f"bytes */{size}"})
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(size - start))
        self.end_headers()
        with open(file, "rb") as f:
            f.seek(start)
            if first and path in state.cut_after:
                self.wfile.write(f.read(state.cut_after[path]))
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
            else:
                shutil.copyfileobj(f, self.wfile, 64 * 1024)

    def _empty(self, status: int, headers: dict[str, str] | None = None):
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def file_server(tmp_path):
    """A FileServer on 127.0.0.1 (free port), stopped after the test."""
    root = tmp_path / "served"
    root.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    state = FileServer(root, base_url=f"http://127.0.0.1:{httpd.server_address[1]}")
    httpd.state = state
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def no_proxies(monkeypatch):
    """Loopback requests must not be sent to a proxy configured in the environment."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


# -- container images built from local files, in the real docker daemon ---------------------------

@pytest.fixture(scope="session")
def docker() -> str:
    """The docker client, once its daemon answers (`make setup` installs and starts it)."""
    import subprocess

    client = shutil.which("docker")
    if client is None or subprocess.run([client, "version"], capture_output=True).returncode != 0:
        pytest.skip("needs a docker daemon (make setup installs docker.io and starts dockerd)")
    return client


@pytest.fixture(scope="session")
def busybox_image(docker, tmp_path_factory):
    """A factory: busybox_image(extra_files={path: text}) -> image ID, by `docker import` of a
    busybox-static root filesystem (images differing in a file differ in ID); its /bin/bash
    is busybox's POSIX shell. The images are removed at the end of the session."""
    import subprocess
    import tarfile

    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("needs busybox-static (make setup installs it)")
    built: list[str] = []

    def build(extra_files: dict | None = None) -> str:
        rootfs = tmp_path_factory.mktemp("rootfs")
        (rootfs / "bin").mkdir()
        shutil.copy2(busybox, rootfs / "bin" / "busybox")
        for applet in ("sh", "cat", "echo", "sleep", "wc", "id", "sort", "wget", "ls"):
            os.symlink("busybox", rootfs / "bin" / applet)
        (rootfs / "bin" / "bash").write_text('#!/bin/sh\nexec /bin/sh "$@"\n')  # `cmd` runs /bin/bash -c
        (rootfs / "bin" / "bash").chmod(0o755)
        (rootfs / "tmp").mkdir(mode=0o1777)
        for relative, text in (extra_files or {}).items():
            (rootfs / relative).parent.mkdir(parents=True, exist_ok=True)
            (rootfs / relative).write_text(text)
        archive = rootfs.with_suffix(".tar")
        with tarfile.open(archive, "w") as tar:
            tar.add(rootfs, arcname=".")
        done = subprocess.run([docker, "import", str(archive)], capture_output=True, text=True, check=True)
        built.append(done.stdout.strip())
        return built[-1]

    yield build
    if built:
        subprocess.run([docker, "rmi", "--force", *built], capture_output=True)


@pytest.fixture(scope="session")
def python_image(docker, tmp_path_factory) -> tuple[str, Path]:
    """(image ID, docker save tarball) of scripts/build_image.py's image: this host's Python
    with numpy and mlperf-logging from the wheelhouse, as //training:digits_container runs in."""
    import subprocess
    import sys

    tarball = tmp_path_factory.mktemp("images") / "digits-train.tar"
    packages = [line.strip() for line in (REPO / "toolchains/requirements/training.txt").read_text().splitlines()
                if line.startswith(("numpy==", "mlperf-logging=="))]
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts/build_image.py"), "--tag", "mlbuild/digits-train:test",
         "--out", str(tarball), *[arg for p in packages for arg in ("--package", p)]],
        capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip(), tarball
