"""The correctBuild oracle ("Build Systems à la Carte", §3): after any sequence of edits, every
build leaves every output equal to what a clean build from scratch produces, and runs nothing
that did not need to run.

Hypothesis draws a random DAG of command actions and a random sequence of edits: a source's
content, a command's text, a dependency edge, the configuration, `cache gc`, tampering with a
file in the output tree or a blob in the CAS, and a switch to a second local cache that can
only hit through a remote (a real nginx). It drives the Builder directly (no CLI), and keeps a
model of the build: each target's output is a pure function of its command, sources, config
and dependencies' outputs, and its *signature* (everything its action key covers) says which
cache tiers know it. After every build the model predicts each target's status exactly:
  up-to-date  its last result in this configuration had this signature and its tree is intact;
  cached      else the local cache holds the signature (its entry, with intact output blobs:
              read from the cache before the build, since `cache gc`, tampering and re-adoption
              of blobs from the tree all change it);
  remote      else the remote holds it (every signature executed while the remote was on);
  executed    otherwise.
Every output file must hold the model's content, and at the end of each example a real build
in a fresh workspace and cache must agree with the model (checking the oracle itself).

The default example count keeps this under a minute; MLBUILD_ORACLE_EXAMPLES=500 raises it.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlbuild.analysis.analyzer import Analyzer
from mlbuild.execution.builder import BuildOptions, Builder
from mlbuild.execution.outcome import Status
from mlbuild.hashing import digest_bytes
from mlbuild.loading.labels import Label
from mlbuild.loading.workspace import Workspace
from mlbuild.storage.action_cache import read_manifest
from mlbuild.storage.local import LocalCache
from mlbuild.storage.remote import RemoteCache, RemoteOptions
from mlbuild.toolchains import ToolchainRegistry

from .conftest import ROOT_BUILD, check_cache_consistent

EXAMPLES = int(os.environ.get("MLBUILD_ORACLE_EXAMPLES", "30"))
SOURCES = 3
CONFIGS = ("cpu", "gpu_sim")  # ROOT_BUILD's device group; gpu_sim sets SIM_DEVICE=1


# -- the model -------------------------------------------------------------------------------------

@dataclass
class Target:
    name: str
    text: str  # part of the command: editing it changes the action
    sources: tuple[int, ...]
    deps: tuple[int, ...]  # indices of earlier targets: the graph stays acyclic
    reads_config: bool


@dataclass
class Model:
    salt: str  # in every command, so examples never share cache entries through the remote
    targets: list[Target]
    sources: list[str]
    config: str = "cpu"
    cache: str = "a"
    remote: set = field(default_factory=set)  # signatures the remote holds
    built: dict = field(default_factory=dict)  # (config, target) -> signature of its intact tree
    keys: dict = field(default_factory=dict)  # signature -> the action key the builder gave it

    def device(self, target: Target) -> str:
        return "1" if target.reads_config and self.config == "gpu_sim" else ""

    def outputs(self) -> dict[str, str]:
        """Each target's output content, as a clean build makes it."""
        contents: dict[str, str] = {}
        for target in self.targets:
            text = f"{target.name} {target.text} {self.salt} {self.device(target)}\n"
            text += "".join(self.sources[i] for i in target.sources)
            text += "".join(contents[self.targets[d].name] for d in target.deps)
            contents[target.name] = text
        return contents

    def signatures(self) -> dict[str, str]:
        """What each action key covers: the command, its env and its inputs' contents."""
        contents = self.outputs()
        signatures = {}
        for target in self.targets:
            inputs = [self.sources[i] for i in target.sources]
            inputs += [f"{self.targets[d].name}={contents[self.targets[d].name]}" for d in target.deps]
            signatures[target.name] = digest_bytes(repr(
                (target.name, target.text, self.salt, self.device(target), target.sources, inputs)).encode())
        return signatures

    def expect_build(self, in_local_cache, use_remote: bool) -> dict[str, Status]:
        """Each target's status in the next build, and the model updated as the build will be."""
        expected = {}
        signatures = self.signatures()
        for target in self.targets:
            signature = signatures[target.name]
            if self.built.get((self.config, target.name)) == signature:
                status = Status.UP_TO_DATE
            elif in_local_cache(self.keys.get(signature)):
                status = Status.LOCAL_HIT
            elif use_remote and signature in self.remote:
                status = Status.REMOTE_HIT
            else:
                status = Status.EXECUTED
            expected[target.name] = status
            if use_remote:
                self.remote.add(signature)
            self.built[(self.config, target.name)] = signature
        return expected

    def learn_keys(self, keys: dict[str, str]) -> None:
        """Record the builder's key per signature; one signature must never get two keys."""
        for name, signature in self.signatures().items():
            assert self.keys.setdefault(signature, keys[name]) == keys[name], f"{name}: same signature, new key"


# -- the workspace and the builder -----------------------------------------------------------------

def build_file(model: Model) -> str:
    lines = []
    for target in model.targets:
        srcs = [f"src{i}.txt" for i in target.sources]
        deps = [f":{model.targets[d].name}" for d in target.deps]
        reads = " ".join([f"{{{{src:{s}}}}}" for s in srcs] + [f"{{{{dep:{d}}}}}" for d in deps])
        cmd = f"{{ echo \"{target.name} {target.text} {model.salt} $SIM_DEVICE\"; cat {reads} /dev/null; }} > {{{{out}}}}"
        entry = [f"{target.name}:", "  rule: command", f"  srcs: {srcs}", f"  deps: {deps}",
                 "  outs: [o.txt]", f"  cmd: '{cmd}'"]
        if target.reads_config:
            entry.append("  configs: [device]")
        lines.append("\n".join(entry))
    return "\n".join(lines) + "\n"


class Files:
    """Writes the workspace; every write gets a distinct mtime, as edits a person makes do
    (two same-size writes within one clock tick are indistinguishable by stat for any tool)."""

    def __init__(self, root: Path):
        self.root = root
        self.clock_ns = 1_000_000_000 * 1_000_000_000  # 2001, one second further per write

    def write(self, relative: str, text: str) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        self.clock_ns += 1_000_000_000
        os.utime(path, ns=(self.clock_ns, self.clock_ns))

    def write_all(self, model: Model) -> None:
        self.write("BUILD.yaml", ROOT_BUILD)
        for i, text in enumerate(model.sources):
            self.write(f"targets/p/src{i}.txt", text)
        self.write("targets/p/BUILD.yaml", build_file(model))


def build(root: Path, cache_dir: Path, model: Model, remote_url: str | None):
    workspace = Workspace(root)
    cache = LocalCache(cache_dir)
    configuration = workspace.configs.resolve([f"device={model.config}"])
    toolchains = ToolchainRegistry(workspace.toolchain_decls, cache.root, lambda message: None)
    labels = [Label.parse(f"//p:{t.name}") for t in model.targets]
    graph = Analyzer(workspace, configuration, toolchains).analyze(labels)
    remote = RemoteCache(RemoteOptions(remote_url), warn=pytest.fail) if remote_url else None
    builder = Builder(workspace, cache, configuration, remote=remote, options=BuildOptions(jobs=2))
    try:
        summary = builder.build(graph)
    finally:
        if remote is not None:
            remote.close()
    assert summary.ok, summary.failures()
    statuses = {label.name: outcome.status for label, outcome in summary.outcomes.items()}
    keys = {label.name: builder.state.get(str(label)).key for label in graph}
    return statuses, keys, builder.output_root


def entry_usable(cache_dir: Path, key: str | None) -> bool:
    """Would the local action cache answer `key`: its entry exists and its output blobs are intact?"""
    if key is None:
        return False
    try:
        result = read_manifest(cache_dir / "ac" / key[:2] / key)
    except FileNotFoundError:
        return False
    for output in result.outputs:
        blob = cache_dir / "cas" / output.digest[:2] / output.digest
        if not blob.is_file() or digest_bytes(blob.read_bytes()) != output.digest:
            return False
    return True


def check_outputs(output_root: Path, model: Model) -> None:
    for name, content in model.outputs().items():
        assert (output_root / "p" / name / "o.txt").read_text() == content, name


# -- tampering, observed from outside ----------------------------------------------------------------

def forget_damaged_trees(model: Model, root: Path) -> None:
    """After a CAS blob changed in place: the trees hardlinked to it changed too."""
    current = model.config
    for config, name in list(model.built):
        model.config = config
        expected = model.outputs()[name]
        path = root / "mlbuild-out" / config_dir(root, config) / "p" / name / "o.txt"
        if not path.is_file() or path.read_text() != expected:
            del model.built[(config, name)]
    model.config = current


def config_dir(root: Path, config: str) -> str:
    return Workspace(root).configs.resolve([f"device={config}"]).name


# -- the property -----------------------------------------------------------------------------------

@st.composite
def graphs(draw):
    count = draw(st.integers(1, 6))
    targets = []
    for i in range(count):
        deps = tuple(sorted(draw(st.sets(st.integers(0, i - 1), max_size=2)))) if i else ()
        sources = tuple(sorted(draw(st.sets(st.integers(0, SOURCES - 1), max_size=2))))
        targets.append(Target(f"t{i}", "v0", sources, deps, draw(st.booleans())))
    return targets


EDITS = st.one_of(
    st.tuples(st.just("source"), st.integers(0, SOURCES - 1), st.sampled_from(["x", "yy", "x\n", ""])),
    st.tuples(st.just("command"), st.integers(0, 5), st.sampled_from(["v0", "v1", "w2"])),
    st.tuples(st.just("edge"), st.integers(0, 5), st.integers(0, 5)),
    st.tuples(st.just("config"), st.sampled_from(CONFIGS)),
    st.tuples(st.just("gc")),
    st.tuples(st.just("tamper_tree"), st.integers(0, 5)),
    st.tuples(st.just("tamper_blob"), st.integers(0, 5), st.booleans()),
    st.tuples(st.just("switch_cache")),
)


@pytest.fixture(scope="module")
def nginx(nginx_installed, tmp_path_factory):
    from mlbuild.storage.nginx import NginxServer

    base = tmp_path_factory.mktemp("oracle-remote")
    server = NginxServer(base / "data", run_dir=base / "run").start()
    yield server
    server.stop()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                      HealthCheck.too_slow])
@given(targets=graphs(), edits=st.lists(EDITS, max_size=6), use_remote=st.booleans())
def test_every_build_is_correct_and_minimal(targets, edits, use_remote, nginx, tmp_path_factory):
    base = tmp_path_factory.mktemp("oracle")
    root, caches = base / "ws", {"a": base / "cache-a", "b": base / "cache-b"}
    model = Model(uuid.uuid4().hex[:8], targets, [f"source {i}\n" for i in range(SOURCES)])
    files = Files(root)
    files.write_all(model)
    url = nginx.url if use_remote else None
    tampered = set()  # caches whose blobs the test damaged: their invariants hold again only after gc

    def build_and_check(step: str) -> None:
        cache_dir = caches[model.cache]
        expected = model.expect_build(lambda key: entry_usable(cache_dir, key), use_remote)
        statuses, keys, output_root = build(root, cache_dir, model, url)
        assert statuses == expected, f"after {step}"
        model.learn_keys(keys)
        check_outputs(output_root, model)
        if model.cache not in tampered:
            check_cache_consistent(cache_dir)

    build_and_check("the first build")
    for edit in edits:
        kind = edit[0]
        if kind == "source":
            _, i, text = edit
            model.sources[i] = model.sources[i] + text if text else f"source {i} rewritten\n"
            files.write(f"targets/p/src{i}.txt", model.sources[i])
        elif kind == "command":
            _, i, text = edit
            model.targets[i % len(targets)].text = text
            files.write("targets/p/BUILD.yaml", build_file(model))
        elif kind == "edge":
            _, a, b = edit
            low, high = sorted((a % len(targets), b % len(targets)))
            if low == high:
                continue
            target = model.targets[high]
            target.deps = tuple(sorted(set(target.deps) ^ {low}))
            files.write("targets/p/BUILD.yaml", build_file(model))
        elif kind == "config":
            model.config = edit[1]
        elif kind == "gc":
            LocalCache(caches[model.cache]).gc(0)
            tampered.discard(model.cache)
        elif kind == "tamper_tree":  # a user overwrites an output: a new file where the link was
            name = model.targets[edit[1] % len(targets)].name
            path = root / "mlbuild-out" / config_dir(root, model.config) / "p" / name / "o.txt"
            if not path.exists():
                continue
            path.unlink()
            path.write_text("tampered\n")
            model.built.pop((model.config, name), None)
        elif kind == "tamper_blob":  # bytes of a CAS blob change in place, or it vanishes
            _, i, delete = edit
            name = model.targets[i % len(targets)].name
            content = model.outputs()[name]
            blob = caches[model.cache] / "cas" / digest_bytes(content.encode())[:2] / digest_bytes(content.encode())
            if not blob.exists():
                continue
            if delete:
                blob.unlink()
            else:
                with open(blob, "a") as f:
                    f.write("tampered\n")
            forget_damaged_trees(model, root)
            tampered.add(model.cache)
        elif kind == "switch_cache":
            model.cache = "b" if model.cache == "a" else "a"
        build_and_check(f"{edit}")

    # The oracle's own check: a clean build in a fresh workspace and cache makes the same files.
    clean = base / "clean"
    shutil.copytree(root / "targets", clean / "targets")
    shutil.copy(root / "BUILD.yaml", clean / "BUILD.yaml")
    statuses, _, output_root = build(clean, base / "cache-clean", model, None)
    assert set(statuses.values()) == {Status.EXECUTED}
    check_outputs(output_root, model)
