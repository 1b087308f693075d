"""Host toolchains: the Python interpreter, CUDA, TensorRT and generic tools found on PATH."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

from .base import ResolvedToolchain, ToolchainMissing, check_version, run_probe


def _which(binary: str, extra_dirs=()) -> str:
    for directory in extra_dirs:
        candidate = Path(directory) / binary
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(binary)
    if not found:
        raise ToolchainMissing(f"'{binary}' not found on PATH")
    return found


def detect_python(name: str, decl: dict) -> ResolvedToolchain:
    """The interpreter running mlbuild (or `interpreter:`), with exact versions of `packages`."""
    interpreter = decl.get("interpreter")
    python = _which(interpreter) if interpreter else sys.executable
    packages = decl.get("packages") or {}
    probe = (
        "import sys, json, importlib.metadata as m\n"
        "out = {'version': '%d.%d.%d' % sys.version_info[:3], 'packages': {}}\n"
        "for p in sys.argv[1:]:\n"
        "    try: out['packages'][p] = m.version(p)\n"
        "    except m.PackageNotFoundError: out['packages'][p] = None\n"
        "print(json.dumps(out))\n"
    )
    import json

    facts = json.loads(run_probe([python, "-c", probe, *packages]))
    check_version(name, facts["version"], decl.get("version"))
    for package, constraint in packages.items():
        found = facts["packages"][package]
        if found is None:
            raise ToolchainMissing(f"Python package '{package}' is not installed for {python}")
        check_version(package, found, constraint)
    return ResolvedToolchain(
        name, "python", {"kind": "python", **facts}, paths={"python": python},
        bin_dirs=(str(Path(python).parent),),
    )


def detect_cuda(name: str, decl: dict) -> ResolvedToolchain:
    """nvcc's release, and the GPUs' names, compute capabilities and driver via nvidia-smi."""
    cuda_home = decl.get("cuda_home") or os.environ.get("CUDA_HOME") or "/usr/local/cuda"
    nvcc = _which("nvcc", [Path(cuda_home) / "bin"])
    match = re.search(r"release (\d+\.\d+)", run_probe([nvcc, "--version"]))
    if not match:
        raise ToolchainMissing(f"could not read the CUDA release from '{nvcc} --version'")
    version = match.group(1)
    check_version(name, version, decl.get("version"))
    visible = gpus()
    if decl.get("require_gpu", True) and not visible:
        raise ToolchainMissing(f"CUDA {version} (nvcc) is installed but no NVIDIA GPU is visible (nvidia-smi found none)")
    fingerprint = {"kind": "cuda", "version": version, "gpus": visible}
    return ResolvedToolchain(
        name, "cuda", fingerprint, paths={"nvcc": nvcc},
        env={"CUDA_HOME": str(Path(nvcc).parent.parent)}, bin_dirs=(str(Path(nvcc).parent),),
    )


def gpus() -> list[dict]:
    """The visible NVIDIA GPUs (name, compute capability, driver); none without nvidia-smi."""
    try:
        out = run_probe(["nvidia-smi", "--query-gpu=name,compute_cap,driver_version", "--format=csv,noheader"])
    except ToolchainMissing:
        return []
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            gpus.append({"name": parts[0], "arch": parts[1], "driver": parts[2]})
    return gpus


def detect_tensorrt(name: str, decl: dict) -> ResolvedToolchain:
    """trtexec (from `trtexec:`, $TENSORRT_ROOT/bin or PATH) and the TensorRT version it reports."""
    explicit = decl.get("trtexec") or os.environ.get("MLBUILD_TRTEXEC")
    root = decl.get("tensorrt_root") or os.environ.get("TENSORRT_ROOT")
    trtexec = explicit if explicit and os.access(explicit, os.X_OK) else _which("trtexec", [Path(root) / "bin"] if root else [])
    banner = run_probe([trtexec, "--help"])
    match = re.search(r"TensorRT v(\d+)", banner)
    if not match:
        raise ToolchainMissing(f"could not read the TensorRT version from '{trtexec} --help'")
    number = int(match.group(1))  # e.g. 100300 → 10.3.0
    version = f"{number // 10000}.{number // 100 % 100}.{number % 100}"
    check_version(name, version, decl.get("version"))
    return ResolvedToolchain(
        name, "tensorrt", {"kind": "tensorrt", "version": version, "gpus": gpus()},
        paths={"trtexec": trtexec}, bin_dirs=(str(Path(trtexec).parent),),
    )


def detect_tool(name: str, decl: dict) -> ResolvedToolchain:
    """Any binary: its version read from `version_args` output by `version_regex`."""
    binary = _which(decl.get("binary", name))
    args = decl.get("version_args", ["--version"])
    match = re.search(decl.get("version_regex", r"(\d+(?:\.\d+)+)"), run_probe([binary, *args]))
    if not match or not match.group(1):
        raise ToolchainMissing(f"could not read a version from '{binary} {' '.join(args)}'")
    check_version(name, match.group(1), decl.get("version"))
    return ResolvedToolchain(
        name, "tool", {"kind": "tool", "binary": Path(binary).name, "version": match.group(1)},
        paths={name: binary}, bin_dirs=(str(Path(binary).parent),),
    )


_CPU_FLAGS_THAT_CHANGE_KERNELS = ("sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw",
                                  "avx512vl", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8",
                                  "amx_bf16", "asimd", "sve")


def cpu_features() -> tuple[str, ...]:
    """The CPU flags that decide which kernels an optimized CPU engine bakes in."""
    import platform

    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    flags.update(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    return (platform.machine(), *sorted(flags.intersection(_CPU_FLAGS_THAT_CHANGE_KERNELS)))
