"""Python-framework toolchains: virtual environments built from pinned requirements.

A venv is named by a digest of (base interpreter version, requirement lines), so it is built
once per distinct requirement set and reused by every action, workspace and configuration
that names it. Building takes a lock, so concurrent mlbuild processes build it once; a
`.complete` marker written last means a killed build is started over, never half-used.
The fingerprint is the exact installed set (`pip freeze`), not the requested pins.

On an air-gapped machine, distdirs (`--distdir`, filled by `mlbuild fetch`) make pip install
with no index, finding wheels only in those directories (and their `wheels/` subdirectory).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import filelock

from ..hashing import digest_bytes
from ..storage.atomic import write_atomically
from .base import ResolvedToolchain, ToolchainMissing, check_version, run_probe

_MARKER = ".complete"
_FINGERPRINT = "mlbuild-fingerprint.json"


def requirement_lines(decl: dict, toolchain_file: Path) -> list[str]:
    """Requirements inline (`requirements: [...]`) or from a file beside the toolchain file."""
    requirements = decl.get("requirements") or []
    if isinstance(requirements, str):
        path = toolchain_file.parent / requirements
        try:
            text = path.read_text()
        except OSError as exc:
            raise ToolchainMissing(f"cannot read requirements file {path}: {exc.strerror}") from None
        requirements = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    return sorted(line for line in map(str, requirements) if line)


def interpreter_version(base: str, venv_root: Path) -> str:
    """The base interpreter's version, probed once per binary (by its stat), not per command."""
    binary = shutil.which(base) or base
    try:
        st = os.stat(binary)
        stamp = f"{os.path.realpath(binary)}:{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        stamp = None
    memo = venv_root / "interpreters.json"
    try:
        known = json.loads(memo.read_text())
    except (OSError, ValueError):
        known = {}
    if stamp and stamp in known:
        return known[stamp]
    version = run_probe([base, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"]).strip()
    if stamp:
        venv_root.mkdir(parents=True, exist_ok=True)
        write_atomically(memo, json.dumps({**known, stamp: version}).encode(), mode=0o644, durable=False)
    return version


def resolve_venv(name: str, decl: dict, toolchain_file: Path, venv_root: Path, log,
                 distdirs: tuple[Path, ...] = ()) -> ResolvedToolchain:
    base = decl.get("interpreter") or sys.executable
    base_version = interpreter_version(base, venv_root)
    check_version(name, base_version, decl.get("version"))
    requirements = requirement_lines(decl, toolchain_file)
    identity = json.dumps({"python": base_version, "requirements": requirements})
    venv = venv_root / f"{name}-{digest_bytes(identity.encode())[:16]}"
    if not (venv / _MARKER).exists():
        venv_root.mkdir(parents=True, exist_ok=True)
        with filelock.FileLock(str(venv) + ".lock"):
            if not (venv / _MARKER).exists():
                _build(name, base, venv, requirements, log, distdirs)
    fingerprint = json.loads((venv / _FINGERPRINT).read_text())
    python = str(venv / "bin" / "python")
    requirements_file = decl.get("requirements")
    evidence = [str(toolchain_file), str(venv / _FINGERPRINT), str(venv / _MARKER), shutil.which(base) or base]
    if isinstance(requirements_file, str):
        evidence.append(str(toolchain_file.parent / requirements_file))
    return ResolvedToolchain(
        name, "python_venv", fingerprint, paths={"python": python},
        env={"VIRTUAL_ENV": str(venv)}, bin_dirs=(str(venv / "bin"),), root=str(venv),
        evidence=tuple(evidence),
    )


def wheel_dirs(distdirs) -> list[Path]:
    """Where pip looks for wheels on an air-gapped machine: each distdir and its wheels/."""
    return [d for directory in distdirs for d in (Path(directory), Path(directory) / "wheels") if d.is_dir()]


def pip_sources(distdirs) -> tuple[list[str], dict | None]:
    """pip's options and env: with distdirs, no index and only their wheels (pip's config files
    and PIP_* variables ignored, so nothing else is reached); without, pip's own settings."""
    if not distdirs:
        return [], None
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    return ["--no-index", *[arg for d in wheel_dirs(distdirs) for arg in ("--find-links", str(d))]], env


def _build(name: str, base: str, venv: Path, requirements: list[str], log, distdirs=()) -> None:
    if venv.exists():
        shutil.rmtree(venv)
    where = f" from {', '.join(map(str, distdirs))} only" if distdirs else ""
    log(f"toolchain {name}: creating virtual environment ({len(requirements)} pinned requirements{where})")
    done = subprocess.run([base, "-m", "venv", str(venv)], capture_output=True, text=True)
    if done.returncode != 0:
        raise ToolchainMissing(f"creating the virtual environment for '{name}' with {base} failed:\n"
                               + _quoted(done.stderr or done.stdout))
    if requirements:
        requirements_file = venv.with_suffix(".requirements.txt")
        requirements_file.write_text("\n".join(requirements) + "\n")
        sources, env = pip_sources(distdirs)
        done = subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check",
             "--no-input", "--progress-bar", "off", *sources, "-r", str(requirements_file)],
            capture_output=True, text=True, env=env,
        )
        if done.returncode != 0:
            raise ToolchainMissing(pip_failure(f"building virtual environment for '{name}'", done.stdout,
                                               done.stderr, distdirs))
    frozen = run_probe([str(venv / "bin" / "python"), "-m", "pip", "freeze", "--all", "--disable-pip-version-check"])
    version = run_probe([str(venv / "bin" / "python"), "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"])
    fingerprint = {
        "kind": "python_venv",
        "version": version.strip(),
        "packages": sorted(line for line in frozen.splitlines() if line and not line.startswith("#")),
    }
    (venv / _FINGERPRINT).write_text(json.dumps(fingerprint, indent=1))
    (venv / _MARKER).write_text("")


# pip's ways of naming the requirement it could not satisfy or build.
_FAILED_REQUIREMENT = (
    re.compile(r"No matching distribution found for (\S+)"),
    re.compile(r"Could not find a version that satisfies the requirement (\S+)"),
    re.compile(r"Failed to build (\S+)"),
)


def pip_failure(doing: str, stdout: str, stderr: str, distdirs=()) -> str:
    """pip's own error, whole lines from its first `ERROR:` on, with the requirement it names."""
    lines = (stderr or stdout).rstrip().splitlines()
    first_error = next((i for i, line in enumerate(lines) if line.startswith("ERROR:")), max(0, len(lines) - 20))
    message = lines[first_error:][:40]
    requirement = next((m.group(1) for pattern in _FAILED_REQUIREMENT
                        for m in [pattern.search("\n".join(message))] if m), None)
    what = f"pip could not install {requirement}" if requirement else "pip install failed"
    if distdirs:
        searched = ", ".join(str(d) for d in wheel_dirs(distdirs)) or ", ".join(map(str, distdirs))
        what += f" (no package index: only wheels in {searched})"
    return f"{doing} failed: {what}\n" + _quoted("\n".join(message))


def _quoted(text: str) -> str:
    return "\n".join(f"  | {line}" for line in text.strip().splitlines())
