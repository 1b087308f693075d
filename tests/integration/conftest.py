"""Helpers for the integration tests: what a CLI build reported, and what it left on disk.

The fixtures these tests use are shared from tests/conftest.py (`workspace`, `start_nginx`,
`echo_module`, `unused_port`, `file_server`); the CLI runner and the cache consistency checker
are tests/core/conftest.py's `Mlbuild` and `check_cache_consistent`.
"""

from __future__ import annotations

import re
from pathlib import Path

_REMOTE_HITS = re.compile(r"^Build (?:OK|FAILED): .*?, (\d+) remote hits", re.MULTILINE)


def remote_hits(result) -> set[str]:
    """Labels the build reported as `remote hit`."""
    return {label for label, what in result.events.items() if what == "remote hit"}


def remote_hit_count(result) -> int:
    """The remote-hit figure of the `Build OK: ...` summary line."""
    match = _REMOTE_HITS.search(result.stderr)
    assert match, f"no build summary with remote hits in stderr:\n{result.stderr}"
    return int(match.group(1))


def warning_lines(result) -> list[str]:
    """Every line the build printed as a warning."""
    return [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("warning:")]


def output_tree(ws, config: str = "") -> dict[str, tuple[bytes, bool]]:
    """{path: (bytes, executable)} of every file the last build of `config` left in the output tree."""
    root = ws.root / "mlbuild-out" / ws.config_dir(config)
    return {
        str(path.relative_to(root)): (path.read_bytes(), bool(path.stat().st_mode & 0o111))
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def files_containing(root: Path, needle: bytes) -> list[Path]:
    """Every regular file under `root` whose bytes contain `needle` (symlinks are not followed)."""
    found = []
    for path in Path(root).rglob("*"):
        if path.is_file() and not path.is_symlink() and needle in path.read_bytes():
            found.append(path)
    return found


def stored_files(directory: Path) -> list[Path]:
    """The files a remote cache server holds under `directory` (its `cas/` or `ac/`)."""
    return sorted(p for p in Path(directory).rglob("*") if p.is_file()) if Path(directory).is_dir() else []
