"""Shared helpers for the core tests: scratch workspaces, an in-process CLI, cache checks.

The `workspace(files)` fixture (in tests/conftest.py, so every test directory has it) writes a
workspace from a dict {relative path: text} and returns an `Mlbuild` bound to it and to a
per-test cache directory. Calling it runs the real CLI entry point (`mlbuild.cli.main.main`,
so UserErrors become exit codes exactly as for users) in this process, capturing stdout and
stderr; `.process(...)` runs the installed console script in a real child process instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlbuild.execution.state import BuildState
from mlbuild.hashing import digest_file, is_digest
from mlbuild.storage.action_cache import read_manifest

MLBUILD_SCRIPT = shutil.which("mlbuild")
# mlbuild in a child process of this interpreter, entered as the executable enters it (its own end of process
# included), whether or not the console script is installed.
MLBUILD_COMMAND = [sys.executable, "-c", "from mlbuild.cli.executable import run; run()"]

# A workspace whose one config group has two values, neither needing a toolchain.
ROOT_BUILD = """\
workspace: {name: t}
config:
  device: {default: cpu, values: {cpu: {}, gpu_sim: {env: {SIM_DEVICE: "1"}}}}
"""

_LINE = re.compile(r"^\[\d+/\d+\] (built|cache hit|remote hit|FAILED) (//\S+)", re.MULTILINE)
_SUMMARY = re.compile(
    r"Build (OK|FAILED): (\d+) targets, (\d+) executed, (\d+) cached "
    r"\((\d+) up to date, (\d+) local hits\)"
)


def write_tree(root: Path, files: dict) -> Path:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str
    events: dict = field(default_factory=dict)  # label -> "built" | "cache hit" | "FAILED" ...

    @property
    def built(self) -> set[str]:
        return {label for label, what in self.events.items() if what == "built"}

    @property
    def hits(self) -> set[str]:
        return {label for label, what in self.events.items() if what == "cache hit"}

    @property
    def failed(self) -> set[str]:
        return {label for label, what in self.events.items() if what == "FAILED"}

    @property
    def summary(self) -> dict:
        match = _SUMMARY.search(self.stderr)
        assert match, f"no build summary in stderr:\n{self.stderr}"
        verdict, targets, executed, cached, up_to_date, hits = match.groups()
        return {"ok": verdict == "OK", "targets": int(targets), "executed": int(executed),
                "cached": int(cached), "up_to_date": int(up_to_date), "hits": int(hits)}

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def _parse(code, stdout, stderr) -> Result:
    events = {label: what for what, label in _LINE.findall(stderr)}
    return Result(code, stdout, stderr, events)


class Mlbuild:
    """The CLI bound to one workspace directory and one cache directory."""

    def __init__(self, root: Path, cache: Path):
        self.root = root
        self.cache = cache

    def write(self, files: dict) -> None:
        write_tree(self.root, files)

    def argv(self, args) -> list[str]:
        return ["-C", str(self.root), "--cache-dir", str(self.cache), *map(str, args)]

    def __call__(self, *args, env: dict | None = None) -> Result:
        """Run `mlbuild ARGS` in this process through the real entry point."""
        from mlbuild.cli.main import main

        runner = CliRunner()
        with runner.isolation(env=env) as streams:
            try:
                main(self.argv(args))
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            out, err = streams[0].getvalue().decode(), streams[1].getvalue().decode()
        return _parse(code, out, err)

    def ok(self, *args, **kwargs) -> Result:
        result = self(*args, **kwargs)
        assert result.code == 0, str(result)
        assert "Traceback" not in result.stderr
        return result

    def process(self, *args, timeout: float = 60, env: dict | None = None) -> Result:
        """Run the installed `mlbuild` console script in a child process."""
        done = subprocess.run(self.popen_argv(*args), check=False, capture_output=True, text=True,
                              timeout=timeout, env={**os.environ, **(env or {})})
        return _parse(done.returncode, done.stdout, done.stderr)

    def popen_argv(self, *args) -> list[str]:
        command = [MLBUILD_SCRIPT] if MLBUILD_SCRIPT else MLBUILD_COMMAND
        return [*command, *self.argv(args)]

    # -- inspecting what a build left ---------------------------------------------------------
    def config_dir(self, config: str) -> str:
        """The output-tree name of the configuration `--config=CONFIG` (comma-separated tokens)."""
        from mlbuild.loading.workspace import Workspace

        tokens = [t for t in config.split(",") if t]
        return Workspace(self.root).configs.resolve(tokens).name

    def out(self, config: str, label: str, name: str) -> Path:
        package, _, target = label[2:].partition(":")
        return self.root / "mlbuild-out" / self.config_dir(config) / package / target / name

    def state(self, config: str) -> BuildState:
        return BuildState(self.root / ".mlbuild" / "state" / f"{self.config_dir(config)}.pickle")

    def key(self, config: str, label: str) -> str:
        entry = self.state(config).get(label)
        assert entry is not None, f"{label} has no state under {config}"
        return entry.key


def settle(root: Path) -> None:
    """Date every file and directory under `root` a minute back, as if written long ago: the
    analysis cache and the no-op manifest trust no stamp of a file changed while analysis ran."""
    then = time.time() - 60
    for directory, _, files in os.walk(root):
        for path in [directory, *(os.path.join(directory, f) for f in files)]:
            os.utime(path, (then, then), follow_symlinks=False)


@pytest.fixture
def analyses(monkeypatch):
    """The labels of each analysis the analyzer ran (a spy on Analyzer.nodes)."""
    from mlbuild.analysis.analyzer import Analyzer

    calls = []
    real = Analyzer.nodes

    def spy(self, labels, configuration=None):
        calls.append(labels)
        return real(self, labels, configuration)

    monkeypatch.setattr(Analyzer, "nodes", spy)
    return calls


def check_cache_consistent(cache_root: Path, allow_temp: bool = False) -> dict:
    """The crash-safety invariants of DESIGN §4, checked from the outside.

    - every blob's bytes hash to its name (no partial or corrupt blob is published);
    - no temp file lies around the published areas (sandboxes are scratch, ignored), unless
      `allow_temp` (a kill -9 at an arbitrary instant may leave one: unpublished, harmless);
    - every action-cache entry parses and every blob it names exists.
    Returns counts for the caller's own assertions.
    """
    cas = cache_root / "cas"
    blobs = {}
    if cas.is_dir():
        for path in cas.rglob("*"):
            if path.is_dir():
                continue
            if path.name.endswith(".tmp"):
                assert allow_temp, f"temp file left in the CAS: {path}"
                continue
            name = path.name.removesuffix(".x")
            assert is_digest(name), f"stray file in the CAS: {path}"
            assert path.parent.name == name[:2], f"blob in the wrong shard: {path}"
            assert digest_file(path) == name, f"blob {path} does not match its digest"
            blobs[path.name] = path
    entries = 0
    ac = cache_root / "ac"
    if ac.is_dir():
        for path in ac.rglob("*"):
            if path.is_dir():
                continue
            if path.name.endswith(".tmp"):
                assert allow_temp, f"temp file left in the action cache: {path}"
                continue
            result = read_manifest(path)
            for output in result.outputs:
                blob = output.digest + (".x" if output.executable else "")
                assert blob in blobs, f"AC entry {path.name} names missing output blob {blob}"
            for digest in (result.stdout_digest, result.stderr_digest):
                if digest:
                    assert digest in blobs or digest + ".x" in blobs, \
                        f"AC entry {path.name} names missing log blob {digest}"
            entries += 1
    return {"blobs": len(blobs), "entries": entries}
