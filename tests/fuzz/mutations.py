"""Mutated workspaces, as a new user's mistakes would come: a small valid workspace, then a
few random edits of its YAML trees, its bytes, its file system and the `--config` tokens.

Everything is drawn from one `random.Random(seed)`, so a case is reproduced from its seed
alone (`python3 tests/fuzz/campaign.py --replay SEED`).
"""

from __future__ import annotations

import copy
import hashlib
import os
import random
import socket
from dataclasses import dataclass, field
from pathlib import Path

import yaml

WEIGHTS = b"fuzz weights\n"

ROOT_BUILD = {
    "workspace": {"name": "fuzz"},
    "config": {
        "device": {"doc": "where it runs", "default": "cpu",
                   "values": {"cpu": {}, "sim": {"env": {"SIM": "1"}, "implies": ["precision=fp16"]}}},
        "precision": {"default": "fp32", "values": {"fp32": {}, "fp16": {}, "int8": {}}},
        "batch_size": {"type": "int", "default": 4},
        "scale": {"type": "float", "default": 1.5},
        "verbose": {"type": "bool", "default": False},
        "tag": {"type": "str", "default": "t"},
        "scenario": {"default": "Offline", "values": {"Offline": {}, "SingleStream": {}}},
    },
    "config_rules": {
        "incompatible": [["device=cpu", "precision=int8"]],
        "combinations": [{"when": ["device=sim", "precision=fp16"], "env": {"HALF": "1"}}],
        "bundles": {"fast": ["device=sim", "batch_size=8"]},
    },
}

TOOLCHAINS = {
    "py": {"kind": "python", "version": ">=3.8"},
    "shell": {"kind": "tool", "binary": "bash", "version_args": ["--version"],
              "version_regex": r"version (\d+\.\d+)"},
}

PACKAGE_A = {
    "gen": {"rule": "command", "srcs": ["input.txt"], "outs": ["gen.txt"], "env": {"GREETING": "hello"},
            "cmd": "cat {{src:input.txt}} > {{out}}; echo $GREETING {{config:batch_size}} >> {{out}}"},
    "both": {"rule": "command", "deps": [":gen"], "outs": ["x.txt", "y.txt"], "out_dirs": ["d"],
             "cmd": "cp {{dep::gen}} {{out:x.txt}}; echo {{config:scale}} > {{out:y.txt}}; "
                    "mkdir -p {{outdir}}/d; echo z > {{outdir}}/d/z",
             "resources": {"cpus": 1, "memory_mb": 10}, "timeout": 30},
    "sel": {"rule": "command", "outs": ["s.txt"], "tags": ["fuzz"],
            "deps": {"select": {"device=sim": [":gen"], "default": []}},
            "cmd": {"select": {"device=sim,precision=fp16": "echo half > {{out}}",
                               "default": "echo {{config:device}} > {{out}}"}}},
    "py": {"rule": "python", "toolchain": "py", "main": "tool.py", "args": ["{{out}}", "{{config:tag}}"],
           "outs": ["py.txt"]},
    "data": {"rule": "command", "data_dir": "@DATA@", "outs": ["n.txt"],
             "argv": ["/bin/sh", "-c", "ls {{data_dir}} > {{out}}"]},
    "check": {"rule": "command", "argv": ["/bin/sh", "-c", "test -s {{dep://b:lib}}"], "deps": ["//b:lib"],
              "test": True},
}

PACKAGE_B = {
    "lib": {"rule": "command", "srcs": ["*.txt"], "outs": ["lib.txt"], "toolchains": ["shell"],
            "configs": ["precision"], "cmd": "cat {{srcs}} > {{out}}"},
    "name": {"rule": "alias", "actual": ":lib"},
    "all": {"rule": "group", "deps": [":name", "//a:both"]},
    "weights": {"rule": "download", "urls": ["file://@DIST@/weights.bin"],
                "checksum": "sha256:" + hashlib.sha256(WEIGHTS).hexdigest(), "out": "w.bin"},
}

PACKAGE_M = {  # analyzed by `query deps(//m:bench)`, never built: it needs onnx and LoadGen
    "model": {"rule": "command", "outs": ["model.onnx"], "cmd": "echo onnx > {{out}}", "tags": ["manual"]},
    "dataset": {"rule": "command", "outs": ["data.npz"], "cmd": "echo npz > {{out}}", "tags": ["manual"]},
    "engine": {"rule": "engine", "model": ":model", "toolchain": "py", "deps": [":model"], "tags": ["manual"],
               "backend": "onnxruntime", "workspace_mib": 64},
    "bench": {"rule": "bench", "engine": ":engine", "dataset": ":dataset data.npz", "toolchain": "py",
              "deps": [":engine", ":dataset"], "tags": ["manual"], "accuracy_reference": 0.9,
              "model_name": "resnet50", "run_style": "test", "user_conf": {"min_duration": 100},
              "modes": ["performance"]},
}

YAML_FILES = {
    "BUILD.yaml": ROOT_BUILD, "toolchains/host.yaml": TOOLCHAINS, "targets/a/BUILD.yaml": PACKAGE_A,
    "targets/b/BUILD.yaml": PACKAGE_B, "targets/m/BUILD.yaml": PACKAGE_M,
}
PLAIN_FILES = {
    "targets/a/input.txt": "input\n", "targets/a/tool.py": "import sys\nopen(sys.argv[1], 'w').write('ok')\n",
    "targets/b/one.txt": "one\n", "targets/b/two.txt": "two\n",
}

COMMANDS = [["query", "//..."], ["query", "deps(//m:bench)"], ["config", "list"], ["build", "//..."]]

KEYS = sorted({
    "values", "default", "type", "implies", "toolchains", "env", "doc", "when", "incompatible", "combinations",
    "bundles", "workspace", "config", "config_rules", "rule", "srcs", "outs", "out_dirs", "deps", "cmd", "argv",
    "run", "test", "data_dir", "tags", "configs", "resources", "timeout", "toolchain", "main", "args", "actual",
    "urls", "checksum", "out", "extract", "strip_components", "model", "backend", "precision", "batch_size",
    "workspace_mib", "optimization_level", "calibration", "engine", "dataset", "scenario", "modes", "settings",
    "label_offset", "kind", "version", "packages", "interpreter", "binary", "version_args", "version_regex",
    "requirements", "cuda_home", "require_gpu", "trtexec", "tensorrt_root", "cpus", "gpus", "memory_mb",
    "exclusive", "remote_cache", "remote_upload", "remote_timeout", "remote_max_upload_size", "name", "select",
    "min_duration", "user_conf", "model_name", "run_style", "accuracy_checker", "accuracy_ratio", "min_accuracy", "target_latency_ms", "max_latency_p99_ms",
})

SCALARS = [
    None, True, False, 0, -1, 1, 7, 2**64, 10**30, -(10**30), 1.5, -0.0, float("inf"), float("-inf"), float("nan"),
    "", " ", "x", "=", "a=b", "A=B", "a\x00b", "\t", "{{sandbox}}", "{{out}}", "{{out:nope}}", "{{outdir}}",
    "{{config:nope}}", "{{config:batch_size}}", "{{dep:nope}}", "{{dep::gen}}", "{{toolchain:nope}}",
    "{{toolchain:py.python}}", "{{src:nope}}", "{{srcs}}", "{{data_dir}}", "{{", "}}", "{{ weird }}",
    "{{out:../x}}", "{{dep:://x}}", "//a:gen", ":gen", ":lib", "//nope:x", "//a:", "//a/../b:x", "..", "../x",
    "a/../../x", "/etc/passwd", "/", "/proc", "/proc/self", "/dev/null", "/dev", "/sys", "x" * 300, "d/" * 40,
    "(((", r"(\d+)", r"\d+", "[", "*", "**/*", "~", "$HOME", "\u65e5\u672c", "\u00e9", "-inf", "1e400", "0x10",
    "yes", "cpu", "sim", "device=sim", "device=nope", "batch_size=8", "precision=int8", "fast", "manual", "test",
    "command", "python", "alias", "group", "engine", "bench", "download", "tool", "python_venv", "cuda",
    "sha256:00", "md5:abc", "http://127.0.0.1:9/x", "file:///etc/hostname", ">=3", ">=>=", "==1.*", "1.0",
    "exclusive", "Offline", "Server", "performance", "tensorrt", "tool.py", "input.txt", "gen.txt",
]


def nasty_value(rng: random.Random, depth: int = 0):
    roll = rng.random()
    if roll < 0.6 or depth > 2:
        return rng.choice(SCALARS)
    if roll < 0.75:
        return [nasty_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if roll < 0.9:
        return {rng.choice(KEYS + [str(rng.choice(SCALARS))]): nasty_value(rng, depth + 1)
                for _ in range(rng.randint(0, 3))}
    return {"select": {rng.choice(["default", "device=sim", "precision=fp16", "nope", "device=sim,precision=int8",
                                   "batch_size=8", ""]): nasty_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}}


def _containers(node, found):
    if isinstance(node, (dict, list)):
        found.append(node)
        for child in (node.values() if isinstance(node, dict) else node):
            _containers(child, found)
    return found


def mutate_tree(rng: random.Random, doc):
    """One random edit somewhere in a YAML tree (returns the new root)."""
    containers = _containers(doc, [])
    if not containers:
        return nasty_value(rng)
    node = rng.choice(containers)
    op = rng.randrange(8)
    if isinstance(node, dict):
        keys = list(node)
        if op == 0 or not keys:
            node[rng.choice(KEYS + ["nope", "Rule", "srcss", 5, True])] = nasty_value(rng)
        elif op == 1:
            del node[rng.choice(keys)]
        elif op == 2:
            key = rng.choice(keys)
            node[rng.choice(KEYS + [key + "x", key.upper() if isinstance(key, str) else key])] = node.pop(key)
        elif op == 3:
            key = rng.choice(keys)
            node[key] = copy.deepcopy(rng.choice(containers))
        elif op == 4:
            key = rng.choice(keys)
            node[key] = [node[key]] if rng.random() < 0.5 else {"select": {"default": node[key]}}
        else:
            node[rng.choice(keys)] = nasty_value(rng)
    else:
        if op == 0 or not node:
            node.append(nasty_value(rng))
        elif op == 1:
            node.pop(rng.randrange(len(node)))
        elif op == 2:
            node.append(copy.deepcopy(rng.choice(node)))
        else:
            node[rng.randrange(len(node))] = nasty_value(rng)
    return doc


def _deep(rng: random.Random) -> str:
    depth = rng.choice([50, 500, 3000, 20000, 200000])
    if rng.random() < 0.5:
        return "x: " + "[" * depth + "]" * depth + "\n"
    return "x:\n" + "".join(" " * i + "a:\n" for i in range(min(depth, 3000))) + " " * 3000 + "b: 1\n" \
        if depth <= 3000 else "x: " + "{a: " * depth + "1" + "}" * depth + "\n"


def _alias_bomb(rng: random.Random) -> str:
    levels = rng.choice([3, 6, 9])
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + f"\nbomb: *a{levels - 1}\n"


def mutate_bytes(rng: random.Random, text: bytes) -> bytes:
    op = rng.randrange(9)
    pos = rng.randint(0, len(text))
    if op == 0:
        return text[:pos] + rng.choice([b"\xff\xfe", b"\x00", b"\xc3", b"\xed\xa0\x80", bytes(rng.randrange(256)
                                        for _ in range(8))]) + text[pos:]
    if op == 1:
        return text[:pos]
    if op == 2:
        return text + _deep(rng).encode()
    if op == 3:
        return _alias_bomb(rng).encode() + (text if rng.random() < 0.5 else b"")
    if op == 4:
        return text[:pos] + rng.choice([b"\t", b":", b"- ", b"&x ", b"*x ", b"!!python/object:os.system ",
                                        b"<<: *y\n", b"{", b"]", b"'", b"%YAML 9.9\n", b"---\n", b"!!binary |\n"]) \
            + text[pos:]
    if op == 5:
        return bytes(rng.randrange(256) for _ in range(rng.randint(1, 200)))
    if op == 6:
        lines = text.split(b"\n")
        i = rng.randrange(len(lines))
        return b"\n".join(lines[:i] + [lines[i]] + lines[i:])  # a duplicated line, often a duplicate key
    if op == 7:
        return text.replace(b"  ", b" ", 1)
    return b"\xef\xbb\xbf" + text  # a BOM


@dataclass
class Case:
    seed: int
    files: dict = field(default_factory=dict)  # relative path -> bytes
    special: list = field(default_factory=list)  # file-system edits applied after writing files
    configs: list = field(default_factory=list)
    notes: list = field(default_factory=list)


CONFIG_TOKENS = [
    "cpu", "sim", "fp16", "int8", "fp32", "fast", "device=sim", "device=cpu", "precision=int8", "batch_size=8",
    "batch_size=0", "batch_size=-3", "batch_size=999999999999999999999999999999", "batch_size=1.5",
    "batch_size=", "scale=-inf", "scale=inf", "scale=nan", "scale=1e400", "scale=abc", "verbose=maybe",
    "verbose=yes", "tag=", "tag=/proc", "tag=" + "t" * 300, "tag={{sandbox}}", "tag=a b", "tag=../..",
    "nope", "=", "=cpu", "device=", "a=b=c", "device=sim=x", "\u00e9", "Offline", "scenario=Server", ",", " ",
]


def make_case(seed: int | None) -> Case:
    """The case of `seed`; None is the valid workspace itself."""
    rng = random.Random(seed)
    docs = copy.deepcopy(YAML_FILES)
    case = Case(seed)
    if seed is None:
        case.files = {path: yaml.safe_dump(doc, sort_keys=False).encode() for path, doc in docs.items()}
        case.files.update((path, text.encode()) for path, text in PLAIN_FILES.items())
        return case
    for _ in range(rng.choice([0, 1, 1, 1, 2, 2, 3, 5])):
        path = rng.choice(list(docs))
        docs[path] = mutate_tree(rng, docs[path])
    for path, doc in docs.items():
        case.files[path] = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).encode()
    for path, text in PLAIN_FILES.items():
        case.files[path] = text.encode()
    if rng.random() < 0.25:
        path = rng.choice(list(YAML_FILES))
        case.files[path] = mutate_bytes(rng, case.files[path])
        case.notes.append(f"bytes of {path}")
    if rng.random() < 0.15:
        case.special.append(rng.choice([
            "state-dir-file", "output-root-file", "output-package-file", "fifo-source", "socket-in-data",
            "fifo-in-data", "symlink-source-outside", "symlink-data-outside", "data-proc", "data-root", "data-dev",
            "data-sys", "overlap-package", "build-file-dir", "package-symlink-loop", "source-dir",
        ]))
    if rng.random() < 0.5:
        case.configs = [rng.choice(CONFIG_TOKENS) for _ in range(rng.randint(1, 3))]
    return case


def write_case(case: Case, root: Path) -> Path:
    """Write the case's workspace under root/ws (data under root/data, downloads under root/dist)."""
    workspace, data, dist = root / "ws", root / "data", root / "dist"
    for directory in (workspace / "targets", data / "sub", dist):
        directory.mkdir(parents=True, exist_ok=True)
    (data / "sub" / "one.bin").write_bytes(b"1")
    (data / "two.bin").write_bytes(b"22")
    (dist / "weights.bin").write_bytes(WEIGHTS)
    for relative, content in case.files.items():
        path = workspace / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.replace(b"@DATA@", str(data).encode()).replace(b"@DIST@", str(dist).encode()))
    for special in case.special:
        _special(special, workspace, data)
    return workspace


def _set_data_dir(workspace: Path, value: str) -> None:
    path = workspace / "targets/a/BUILD.yaml"
    text = path.read_bytes()
    path.write_bytes(text.replace(b"data_dir: " + str(workspace.parent / "data").encode(), f"data_dir: {value}".encode()))


def _special(kind: str, workspace: Path, data: Path) -> None:
    if kind == "state-dir-file":
        (workspace / ".mlbuild").write_text("")
    elif kind == "output-root-file":
        (workspace / "mlbuild-out").write_text("")
    elif kind == "output-package-file":
        (workspace / "mlbuild-out" / "default").mkdir(parents=True)
        (workspace / "mlbuild-out" / "default" / "a").write_text("")
    elif kind == "fifo-source":
        os.mkfifo(workspace / "targets/b/fifo.txt")
    elif kind == "socket-in-data":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(data / "sock"))
        sock.close()
    elif kind == "fifo-in-data":
        os.mkfifo(data / "pipe")
    elif kind == "symlink-source-outside":
        (workspace / "targets/b/outside.txt").symlink_to("/etc/hostname")
    elif kind == "symlink-data-outside":
        (data / "link.bin").symlink_to("/etc/hostname")
    elif kind.startswith("data-"):
        _set_data_dir(workspace, {"data-proc": "/proc", "data-root": "/", "data-dev": "/dev",
                                  "data-sys": "/sys"}[kind])
    elif kind == "overlap-package":
        (workspace / "targets/a/gen").mkdir()
        (workspace / "targets/a/gen/BUILD.yaml").write_text(
            "gen.txt:\n  rule: command\n  outs: [x]\n  cmd: echo x > {{out}}\n")
    elif kind == "build-file-dir":
        (workspace / "targets/c/BUILD.yaml").mkdir(parents=True)
    elif kind == "package-symlink-loop":
        (workspace / "targets/loop").symlink_to("loop")
    elif kind == "source-dir":
        (workspace / "targets/b/dir.txt").mkdir()
